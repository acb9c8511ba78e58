//! JSON Web Tokens as the sensor sees them: decoded, never trusted. The
//! sensor cannot verify a token (it does not know the key), but it can tell
//! when a server accepted one it should not have: `alg: none`, an expiry in
//! the past, or an HS256 signature made with a secret from a list of
//! well-known weak ones (anyone can forge those).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Longer tokens are not decoded (no real JWT is this large).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Secrets tried against HS256 tokens: defaults from tutorials, frameworks
/// and jwt.io, and the classic weak passwords (the kind of list APIClarity
/// and jwt_tool ship).
pub const WEAK_SECRETS: &[&str] = &[
    "secret",
    "your-256-bit-secret",
    "your-secret-key",
    "secretkey",
    "secret_key",
    "secret-key",
    "mysecret",
    "my_secret",
    "mysecretkey",
    "supersecret",
    "topsecret",
    "s3cr3t",
    "secret123",
    "jwt",
    "jwtsecret",
    "jwt_secret",
    "jwt-secret",
    "jwtkey",
    "key",
    "private",
    "privatekey",
    "password",
    "password123",
    "passw0rd",
    "changeme",
    "changeit",
    "default",
    "admin",
    "administrator",
    "test",
    "testing",
    "token",
    "hmac",
    "hs256",
    "123456",
    "12345678",
    "1234567890",
    "qwerty",
    "letmein",
    "welcome",
    "shhhhh",
    "gottacatchemall",
    "notasecret",
    "example",
    "abc123",
];

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
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }

    /// `alg: none` (any case) or an empty signature: an unsigned token.
    pub fn is_unsigned(&self) -> bool {
        self.alg().eq_ignore_ascii_case("none") || self.signature.is_empty()
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn subject(&self) -> Option<&str> {
        self.claim_str("sub")
    }

    /// `exp` in Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        self.claims.get("exp").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
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
        self.roles().iter().any(|r| {
            matches!(
                r.as_str(),
                "admin" | "administrator" | "root" | "superuser" | "superadmin" | "staff" | "owner"
            ) || r.ends_with(":admin")
                || r.starts_with("admin:")
        })
    }

    /// The weak secret an HS256 token is signed with, if it is one of `WEAK_SECRETS`.
    pub fn weak_hs256_secret(&self) -> Option<&'static str> {
        if !self.alg().eq_ignore_ascii_case("HS256") || self.signature.len() != 32 {
            return None;
        }
        WEAK_SECRETS.iter().copied().find(|secret| {
            Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .map(|mut mac| {
                    mac.update(self.signing_input.as_bytes());
                    mac.verify_slice(&self.signature).is_ok()
                })
                .unwrap_or(false)
        })
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
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        })
        .unwrap_or_default();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
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
    fn weak_secret_is_found_and_a_strong_one_is_not() {
        let weak = hs256(json!({"sub": "x"}), "secret");
        assert_eq!(
            Jwt::decode(&weak).unwrap().weak_hs256_secret(),
            Some("secret")
        );
        let strong = hs256(json!({"sub": "x"}), "k9$Lq2!vR7@pZ4#mW8^tY1&cB6*nF3");
        assert_eq!(Jwt::decode(&strong).unwrap().weak_hs256_secret(), None);
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
        assert_eq!(jwt.weak_hs256_secret(), None);
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
