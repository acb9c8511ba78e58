//! Which parts of a request carry credentials, and what each one is: the one
//! vocabulary the inventory, the detectors and the posture findings share
//! (before it, six lists disagreed: a request with only `X-Token` was
//! authenticated for the inventory and anonymous for the detectors).
//!
//! A credential is found where it rides: the `Authorization` and
//! `Proxy-Authorization` headers (any scheme: `Bearer`, `Token`, `JWT`,
//! `Basic`, ...), any header, cookie or query parameter whose name says it
//! carries one (the classifier's key vocabulary: `X-Api-Key`, `X-Auth-Token`,
//! `sessionid`, `access_token`, ...), and any header or cookie holding a
//! JWT, whatever its name. Values are never kept: each credential carries a
//! keyed digest ([`SecretHasher`]) so the same secret can be recognised
//! again.

use super::SecretHasher;
use crate::classify::keys::{self, Hint};
use crate::exchange::Request;
use crate::jwt::Jwt;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Credentials read from one request at most (a request with more is
/// either broken or hostile; the rest are not looked at).
const MAX_CREDENTIALS: usize = 8;

/// What a credential is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A JSON Web Token, in any carrier.
    Jwt,
    /// HTTP Basic: user and password.
    Basic,
    /// An API key (`X-Api-Key`, `api_key=`, `Authorization: ApiKey ...`).
    ApiKey,
    /// A session identifier (a session cookie or header).
    Session,
    /// Any other opaque token (`Bearer <opaque>`, `X-Auth-Token`, ...).
    Token,
}

impl CredentialKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::Basic => "basic",
            CredentialKind::ApiKey => "api_key",
            CredentialKind::Session => "session",
            CredentialKind::Token => "token",
        }
    }
}

/// Where a credential rides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    /// `Authorization` or `Proxy-Authorization`.
    Authorization,
    Header,
    Cookie,
    Query,
}

/// One credential of a request: what it is, where it was, and a keyed
/// digest of its value (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: CredentialKind,
    pub carrier: Carrier,
    /// Header, cookie or parameter name, lower case; for `Authorization`,
    /// the scheme (`bearer`, `token`, ...), or "" without one.
    pub name: String,
    pub digest: [u8; 16],
}

/// The credentials of one request, with the JWT and the Basic user they
/// carry (the first of each).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub found: Vec<Credential>,
    pub jwt: Option<Jwt>,
    /// Keyed digest of the JWT's text (to match it with issued tokens).
    pub jwt_digest: Option<[u8; 16]>,
    pub basic_user: Option<String>,
    /// The password of Basic credentials, as a keyed digest.
    pub basic_password: Option<[u8; 16]>,
    /// Credentials past [`MAX_CREDENTIALS`], not looked at.
    pub skipped: u64,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn has(&self, kind: CredentialKind) -> bool {
        self.found.iter().any(|c| c.kind == kind)
    }
}

/// Whether a header of this name carries a credential (besides JWTs, which
/// are recognised in any header).
pub fn is_credential_header(name: &str) -> bool {
    is_authorization(name) || keys::hint(name).is_credential()
}

fn is_authorization(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization")
}

/// Whether a cookie or query parameter of this name carries a credential.
pub fn is_credential_name(name: &str) -> bool {
    keys::hint(name).is_credential()
}

/// The kind an opaque (non-JWT) value under `name` is.
fn opaque_kind(hint: Hint) -> CredentialKind {
    match hint {
        Hint::Session => CredentialKind::Session,
        Hint::Secret | Hint::AwsSecret | Hint::AzureKey => CredentialKind::ApiKey,
        _ => CredentialKind::Token,
    }
}

/// Whether `value` is JWT-shaped and decodes (cheap refusal first).
fn as_jwt(value: &str) -> Option<Jwt> {
    value
        .trim()
        .starts_with("eyJ")
        .then(|| Jwt::decode(value))?
}

/// The credentials `request` carries.
pub fn read(request: &Request, hasher: &SecretHasher) -> Credentials {
    let mut out = Credentials::default();
    let digest = |purpose: &str, value: &str| -> [u8; 16] {
        let d = hasher.digest(purpose, value.trim().as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
        short
    };
    let push = |out: &mut Credentials,
                kind: CredentialKind,
                carrier: Carrier,
                name: &str,
                value: &str,
                jwt: Option<Jwt>| {
        if out.found.len() >= MAX_CREDENTIALS {
            out.skipped += 1;
            return;
        }
        let d = digest("credential", value);
        if let Some(jwt) = jwt {
            if out.jwt.is_none() {
                out.jwt = Some(jwt);
                out.jwt_digest = Some(d);
            }
        }
        out.found.push(Credential {
            kind,
            carrier,
            name: name.to_ascii_lowercase(),
            digest: d,
        });
    };
    for (name, value) in request.headers.iter() {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if is_authorization(name) {
            let (scheme, rest) = match value.split_once(' ') {
                Some((s, r)) => (s, r.trim()),
                None => ("", value),
            };
            if scheme.eq_ignore_ascii_case("basic") {
                if let Some((user, password)) = basic(rest) {
                    out.basic_user.get_or_insert(user);
                    out.basic_password
                        .get_or_insert_with(|| digest("basic password", &password));
                }
                push(
                    &mut out,
                    CredentialKind::Basic,
                    Carrier::Authorization,
                    "basic",
                    rest,
                    None,
                );
                continue;
            }
            let jwt = as_jwt(rest);
            let kind = match (&jwt, scheme.to_ascii_lowercase().as_str()) {
                (Some(_), _) => CredentialKind::Jwt,
                (None, "apikey" | "api-key" | "key") => CredentialKind::ApiKey,
                _ => CredentialKind::Token,
            };
            push(&mut out, kind, Carrier::Authorization, scheme, rest, jwt);
        } else if name.eq_ignore_ascii_case("cookie") {
            for pair in value.split(';') {
                let Some((cookie, v)) = pair.split_once('=') else {
                    continue;
                };
                let (cookie, v) = (cookie.trim(), v.trim().trim_matches('"'));
                if v.is_empty() {
                    continue;
                }
                let hint = keys::hint(cookie);
                if let Some(jwt) = as_jwt(v) {
                    push(
                        &mut out,
                        CredentialKind::Jwt,
                        Carrier::Cookie,
                        cookie,
                        v,
                        Some(jwt),
                    );
                } else if hint.is_credential() {
                    push(
                        &mut out,
                        opaque_kind(hint),
                        Carrier::Cookie,
                        cookie,
                        v,
                        None,
                    );
                }
            }
        } else {
            let hint = keys::hint(name);
            if let Some(jwt) = as_jwt(value) {
                let value = value.split_once(' ').map_or(value, |(_, r)| r.trim());
                push(
                    &mut out,
                    CredentialKind::Jwt,
                    Carrier::Header,
                    name,
                    value,
                    Some(jwt),
                );
            } else if hint.is_credential() {
                push(
                    &mut out,
                    opaque_kind(hint),
                    Carrier::Header,
                    name,
                    value,
                    None,
                );
            }
        }
    }
    if let Some(query) = request.query.as_deref() {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let hint = keys::hint(&name);
            if value.trim().is_empty() || !hint.is_credential() {
                continue;
            }
            let jwt = as_jwt(&value);
            let kind = if jwt.is_some() {
                CredentialKind::Jwt
            } else {
                opaque_kind(hint)
            };
            push(&mut out, kind, Carrier::Query, &name, &value, jwt);
        }
    }
    out
}

/// User and password of a Basic credential (`base64(user:password)`).
pub fn basic(encoded: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8_lossy(&decoded);
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use crate::exchange::{Body, Headers, HttpVersion, Text, Timestamp};
    use crate::jwt::sign_hs256;
    use serde_json::json;

    pub(crate) fn request(headers: &[(&str, &str)], query: Option<&str>) -> Request {
        let mut h = Headers::default();
        for (n, v) in headers {
            h.push(n.as_bytes(), v.as_bytes(), 64, 1 << 16);
        }
        Request {
            ts: Timestamp(0),
            end_ts: Timestamp(0),
            method: Text::from("GET"),
            uri: Text::from("/x"),
            path: Text::from("/x"),
            query: query.map(Text::from),
            version: HttpVersion::Http11,
            host: None,
            content_type: None,
            headers: h,
            body: Body::default(),
            pending_text: false,
        }
    }

    fn kinds(headers: &[(&str, &str)], query: Option<&str>) -> Vec<(CredentialKind, Carrier)> {
        read(&request(headers, query), &SecretHasher::default())
            .found
            .iter()
            .map(|c| (c.kind, c.carrier))
            .collect()
    }

    #[test]
    fn a_jwt_is_recognised_whatever_carries_it() {
        let token = sign_hs256(&json!({"alg":"HS256"}), &json!({"sub":"alice"}), "k");
        for (name, value) in [
            ("Authorization", format!("Bearer {token}")),
            ("Authorization", format!("Token {token}")),
            ("Authorization", format!("JWT {token}")),
            ("Authorization", token.clone()),
            ("X-Identity", token.clone()),
            ("Cookie", format!("theme=dark; jwt_cookie={token}")),
        ] {
            let c = read(&request(&[(name, &value)], None), &SecretHasher::default());
            assert_eq!(c.found.len(), 1, "{name}: {value}");
            assert_eq!(c.found[0].kind, CredentialKind::Jwt, "{name}");
            assert_eq!(c.jwt.as_ref().unwrap().claim_str("sub"), Some("alice"));
        }
        let in_query = format!("access_token={token}");
        assert_eq!(
            kinds(&[], Some(&in_query)),
            vec![(CredentialKind::Jwt, Carrier::Query)]
        );
    }

    #[test]
    fn opaque_credentials_by_carrier_and_name() {
        assert_eq!(
            kinds(&[("X-Api-Key", "hunter2hunter2")], None),
            vec![(CredentialKind::ApiKey, Carrier::Header)]
        );
        assert_eq!(
            kinds(&[("X-Token", "abc")], None),
            vec![(CredentialKind::Token, Carrier::Header)]
        );
        assert_eq!(
            kinds(&[("Authorization", "Bearer opaque-123")], None),
            vec![(CredentialKind::Token, Carrier::Authorization)]
        );
        assert_eq!(
            kinds(&[("Cookie", "theme=dark; sessionid=abc123")], None),
            vec![(CredentialKind::Session, Carrier::Cookie)]
        );
        assert_eq!(
            kinds(&[], Some("q=x&api_key=k1")),
            vec![(CredentialKind::ApiKey, Carrier::Query)]
        );
        let c = read(
            &request(&[("Authorization", "Basic Ym9iOnNlY3JldA==")], None),
            &SecretHasher::default(),
        );
        assert_eq!(c.basic_user.as_deref(), Some("bob"));
        assert!(c.basic_password.is_some());
    }

    #[test]
    fn anonymous_requests_carry_nothing() {
        // Negative twins: plain settings, CSRF tokens, paging tokens.
        for headers in [
            vec![("Cookie", "theme=dark; lang=en")],
            vec![("X-CSRF-Token", "abc")],
            vec![("Accept", "application/json")],
        ] {
            assert!(kinds(&headers, None).is_empty(), "{headers:?}");
        }
        assert!(kinds(&[], Some("page_token=abc&q=hi")).is_empty());
    }

    #[test]
    fn the_same_secret_has_the_same_digest_and_values_are_not_kept() {
        let hasher = SecretHasher::default();
        let a = read(&request(&[("X-Api-Key", "k1")], None), &hasher);
        let b = read(&request(&[], Some("api_key=k1")), &hasher);
        assert_eq!(a.found[0].digest, b.found[0].digest);
        assert!(!format!("{:?}", a.found).contains("k1"));
    }
}
