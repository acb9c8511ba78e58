//! JSON Web Tokens as the sensor sees them: decoded, never trusted. This is
//! the one place tokens are taken apart; what the sensor concludes about a
//! token (issued by the API or not, signed with a guessable secret, accepted
//! where it should not be) lives in `identity::tokens` and
//! `identity::jwt_secrets`.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

/// Longer tokens are not decoded (no real JWT is this large).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The `alg` header as a closed set: the registered JWS algorithms, the
/// header missing, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Alg {
    /// `none`, in any case: no signature at all.
    None,
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
    /// No `alg` header, or one that is not a string.
    Missing,
    /// A string that is none of the above (`hs256`, `HS265`, …).
    Other,
}

impl Alg {
    fn parse(alg: Option<&str>) -> Alg {
        let Some(alg) = alg else {
            return Alg::Missing;
        };
        if alg.eq_ignore_ascii_case("none") {
            return Alg::None;
        }
        match alg {
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "EdDSA" => Alg::EdDsa,
            _ => Alg::Other,
        }
    }

    /// The registered name (`HS256`), or `missing` / `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::None => "none",
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
            Alg::EdDsa => "EdDSA",
            Alg::Missing => "missing",
            Alg::Other => "other",
        }
    }

    /// HS256/HS384/HS512: signed with a shared secret, which a wordlist can guess.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::Hs256 | Alg::Hs384 | Alg::Hs512)
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded token.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// Bytes of `header.payload`, what the signature covers.
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Decodes a compact JWS (`header.payload.signature`); `None` when it is
    /// not one (wrong shape, bad base64, header or claims not JSON objects).
    pub fn decode(token: &str) -> Option<Jwt> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES || !token.starts_with("eyJ") {
            return None;
        }
        let Parts {
            header,
            claims,
            signature,
            ..
        } = Parts::split(token)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .ok()?;
        let signing_input = token.get(..token.rfind('.')?)?.to_owned();
        Some(Jwt {
            header,
            claims,
            signing_input,
            signature,
        })
    }

    /// The `alg` header, as written.
    pub fn alg(&self) -> &str {
        self.header_str("alg").unwrap_or("")
    }

    /// The `alg` header as one of the known algorithms.
    pub fn algorithm(&self) -> Alg {
        Alg::parse(self.header_str("alg"))
    }

    /// `alg: none` (any case) or an empty signature: an unsigned token.
    pub fn is_unsigned(&self) -> bool {
        self.alg().eq_ignore_ascii_case("none") || self.signature.is_empty()
    }

    /// A string header field (`typ`, `kid`, `cty`, …).
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// The `kid` header: which of the issuer's keys signed the token.
    pub fn kid(&self) -> Option<&str> {
        self.header_str("kid")
    }

    /// The `typ` header (`JWT`, `at+jwt`, …).
    pub fn typ(&self) -> Option<&str> {
        self.header_str("typ")
    }

    /// `header.payload` as written: what the signature covers.
    pub fn signing_input(&self) -> &str {
        &self.signing_input
    }

    /// The header segment as written (base64url): identical headers give
    /// identical segments, so it names a signing configuration.
    pub fn header_segment(&self) -> &str {
        self.signing_input
            .split_once('.')
            .map_or(self.signing_input.as_str(), |(header, _)| header)
    }

    /// The decoded signature bytes (empty for an unsigned token).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn subject(&self) -> Option<&str> {
        self.claim_str("sub")
    }

    /// A NumericDate claim (`exp`, `iat`, `nbf`) in Unix seconds; fractions
    /// are dropped, negative or non-numeric values read as absent.
    pub fn numeric_date(&self, name: &str) -> Option<u64> {
        self.claims.get(name).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
    }

    /// `exp` in Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        self.numeric_date("exp")
    }

    /// `iat` in Unix seconds.
    pub fn issued_at(&self) -> Option<u64> {
        self.numeric_date("iat")
    }

    /// `nbf` in Unix seconds.
    pub fn not_before(&self) -> Option<u64> {
        self.numeric_date("nbf")
    }

    /// `exp − iat`: how long the issuer lets the token live (`None` without
    /// both, or when `exp` precedes `iat`).
    pub fn lifetime_secs(&self) -> Option<u64> {
        self.expires_at()?.checked_sub(self.issued_at()?)
    }

    /// The claim names, in the decoder's order.
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.claims.keys().map(String::as_str)
    }

    /// The header field names, in the decoder's order.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.header.keys().map(String::as_str)
    }

    /// Whether the token had expired at `now_secs` (a token without `exp` never does).
    pub fn expired_at(&self, now_secs: u64) -> bool {
        self.expires_at().is_some_and(|exp| exp < now_secs)
    }

    /// Role-like claims joined (`role`, `roles`, `scope`, `groups`, `admin`), lower-cased.
    pub fn roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        for name in ["role", "roles", "scope", "scopes", "groups", "authorities"] {
            match self.claims.get(name) {
                Some(Value::String(s)) => roles.extend(
                    s.split([' ', ','])
                        .filter(|r| !r.is_empty())
                        .map(str::to_ascii_lowercase),
                ),
                Some(Value::Array(items)) => roles.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_ascii_lowercase),
                ),
                _ => {}
            }
        }
        for name in ["admin", "is_admin", "isAdmin"] {
            if self.claims.get(name) == Some(&Value::Bool(true)) {
                roles.push("admin".into());
            }
        }
        roles.sort();
        roles.dedup();
        roles
    }

    /// Whether a role claim names a privileged role.
    pub fn is_privileged(&self) -> bool {
        self.roles().iter().any(|r| is_privileged_role(r))
    }
}

/// The three parts of a compact JWS with header and payload decoded: the
/// one place tokens are taken apart (detectors, classifier, inventory each
/// add their own checks on top).
pub struct Parts<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// The payload as written (base64url).
    pub payload: &'a str,
    /// The signature as written (base64url).
    pub signature: &'a str,
}

impl<'a> Parts<'a> {
    /// `header.payload.signature`, header and payload base64url JSON objects.
    pub fn split(token: &'a str) -> Option<Parts<'a>> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Parts {
            header: decode_object(header)?,
            claims: decode_object(payload)?,
            payload,
            signature,
        })
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The bearer token of an `Authorization` header value, if any.
pub fn bearer_token(authorization: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(authorization).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Signs `header.claims` with HS256 and `secret` (tests and fixtures).
pub fn sign_hs256(header: &Value, claims: &Value, secret: &str) -> String {
    sign_hmac(Alg::Hs256, header, claims, secret.as_bytes())
}

/// Signs `header.claims` with an HMAC algorithm and `secret` (tests,
/// fixtures, benches); any other `alg` gives an unsigned token.
pub fn sign_hmac(alg: Alg, header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    fn mac<M: Mac + KeyInit>(secret: &[u8], input: &str) -> Vec<u8> {
        <M as KeyInit>::new_from_slice(secret)
            .map(|mut mac| {
                mac.update(input.as_bytes());
                mac.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default()
    }
    let signature = match alg {
        Alg::Hs256 => mac::<Hmac<Sha256>>(secret, &input),
        Alg::Hs384 => mac::<Hmac<Sha384>>(secret, &input),
        Alg::Hs512 => mac::<Hmac<Sha512>>(secret, &input),
        _ => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Whether a role name (a claim, a field of a user record) is an
/// administrator's.
pub fn is_privileged_role(role: &str) -> bool {
    let r = role.trim().to_ascii_lowercase();
    matches!(
        r.as_str(),
        "admin" | "administrator" | "root" | "superuser" | "superadmin" | "staff" | "owner"
    ) || r.ends_with(":admin")
        || r.starts_with("admin:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hs256(claims: Value, secret: &str) -> String {
        sign_hs256(&json!({"alg": "HS256", "typ": "JWT"}), &claims, secret)
    }

    #[test]
    fn decodes_claims_roles_and_expiry() {
        let t = hs256(
            json!({"sub": "alice", "role": "admin", "exp": 1_700_000_000u64}),
            "a-long-random-server-secret-4f9c1e",
        );
        let jwt = Jwt::decode(&t).unwrap();
        assert_eq!(jwt.subject(), Some("alice"));
        assert_eq!(jwt.alg(), "HS256");
        assert!(jwt.is_privileged());
        assert!(jwt.expired_at(1_700_000_001));
        assert!(!jwt.expired_at(1_699_999_999));
        assert!(!jwt.is_unsigned());
    }

    #[test]
    fn accessors_read_header_times_and_names() {
        let t = sign_hmac(
            Alg::Hs384,
            &json!({"alg": "HS384", "typ": "at+jwt", "kid": "k1"}),
            &json!({"sub": "bob", "iat": 1_000, "nbf": 1_000, "exp": 1_900.5}),
            b"k",
        );
        let jwt = Jwt::decode(&t).unwrap();
        assert_eq!(jwt.algorithm(), Alg::Hs384);
        assert!(jwt.algorithm().is_hmac());
        assert_eq!(jwt.signature().len(), 48);
        assert_eq!((jwt.kid(), jwt.typ()), (Some("k1"), Some("at+jwt")));
        assert_eq!(
            (jwt.issued_at(), jwt.not_before()),
            (Some(1_000), Some(1_000))
        );
        assert_eq!(jwt.lifetime_secs(), Some(900));
        let mut names: Vec<&str> = jwt.claim_names().collect();
        names.sort_unstable();
        assert_eq!(names, ["exp", "iat", "nbf", "sub"]);
        assert_eq!(jwt.header_names().count(), 3);
        assert!(t.starts_with(jwt.header_segment()));
        assert_eq!(t.rsplit_once('.').unwrap().0, jwt.signing_input());
        // exp before iat: no lifetime rather than a wrapped one.
        let odd = sign_hs256(&json!({"alg": "HS256"}), &json!({"iat": 10, "exp": 5}), "k");
        assert_eq!(Jwt::decode(&odd).unwrap().lifetime_secs(), None);
    }

    #[test]
    fn algorithms_are_a_closed_set() {
        let alg = |a: Value| {
            let t = format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(json!({ "alg": a }).to_string()),
                URL_SAFE_NO_PAD.encode("{}")
            );
            Jwt::decode(&t).unwrap().algorithm()
        };
        assert_eq!(alg(json!("RS256")), Alg::Rs256);
        assert_eq!(alg(json!("EdDSA")), Alg::EdDsa);
        assert_eq!(alg(json!("nOnE")), Alg::None);
        assert_eq!(alg(json!("hs256")), Alg::Other);
        assert_eq!(alg(json!(7)), Alg::Missing);
        assert!(!Alg::Rs256.is_hmac());
        assert_eq!(Alg::Ps512.to_string(), "PS512");
    }

    #[test]
    fn alg_none_and_empty_signature_are_unsigned() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","role":"admin"}"#)
        );
        let jwt = Jwt::decode(&none).unwrap();
        assert!(jwt.is_unsigned());
        assert_eq!(jwt.algorithm(), Alg::None);
        let upper = none.replacen(
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            &URL_SAFE_NO_PAD.encode(r#"{"alg":"NoNe"}"#),
            1,
        );
        assert!(Jwt::decode(&upper).unwrap().is_unsigned());
    }

    #[test]
    fn non_tokens_are_rejected() {
        for s in [
            "",
            "abc.def.ghi",
            "eyJ.eyJ",
            "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig",
            "eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.a.b",
        ] {
            assert!(Jwt::decode(s).is_none(), "{s}");
        }
        assert!(Jwt::decode(&"eyJ".repeat(4000)).is_none());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
    }
}
