//! Authentication seen on a request, from its headers and query string
//! alone: Basic, Bearer (a JWT's claim names decoded from its payload, never
//! its values), API-key headers or query parameters, and session cookies.
//! Credentials themselves are never kept.

use crate::exchange::Request;

/// Header names that carry API keys.
const API_KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-api-token",
    "x-auth-token",
    "x-access-token",
    "x-token",
    "ocp-apim-subscription-key",
];

/// Query parameter names that carry credentials.
pub const CREDENTIAL_QUERY_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "auth_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "session",
    "sessionid",
    "jwt",
];

/// Cookie names that look like a session.
fn is_session_cookie(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("session")
        || n.contains("sess")
        || n == "sid"
        || n.ends_with("_sid")
        || n.contains("token")
        || n.contains("auth")
        || n == "jwt"
}

/// Whether a query parameter name is a credential.
pub fn is_credential_key(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    CREDENTIAL_QUERY_KEYS.contains(&n.as_str())
}

/// Kinds of credentials a request carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSeen {
    pub basic: bool,
    pub bearer_jwt: bool,
    /// A bearer token that is not a JWT.
    pub bearer: bool,
    pub api_key_header: bool,
    pub api_key_query: bool,
    pub cookie_session: bool,
    /// Claim names of the JWT payload, sorted.
    pub jwt_claims: Vec<String>,
    /// API-key header or query names.
    pub api_key_names: Vec<String>,
}

impl AuthSeen {
    pub fn none(&self) -> bool {
        !(self.basic
            || self.bearer_jwt
            || self.bearer
            || self.api_key_header
            || self.api_key_query
            || self.cookie_session)
    }

    /// Names for the profile's histogram; `["none"]` without credentials.
    pub fn kind_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.basic, "basic"),
            (self.bearer_jwt, "bearer_jwt"),
            (self.bearer, "bearer"),
            (self.api_key_header, "api_key_header"),
            (self.api_key_query, "api_key_query"),
            (self.cookie_session, "cookie_session"),
        ] {
            if on {
                v.push(name);
            }
        }
        if v.is_empty() {
            v.push("none");
        }
        v
    }

    /// Credentials that travel with every request and would be exposed on
    /// a cleartext link (not a session cookie, which has its own flag).
    pub fn header_credential_kinds(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.basic, "basic"),
            (self.bearer_jwt, "bearer_jwt"),
            (self.bearer, "bearer"),
            (self.api_key_header, "api_key_header"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

/// Reads the credentials of `req`; `query` is its parsed query string.
pub fn detect(req: &Request, query: &[(&str, &str)]) -> AuthSeen {
    let mut seen = AuthSeen::default();
    if let Some(value) = req.headers.get("authorization") {
        let value = String::from_utf8_lossy(value);
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            seen.basic = true;
        } else if scheme.eq_ignore_ascii_case("bearer") {
            match jwt_claims(rest.trim()) {
                Some(claims) => {
                    seen.bearer_jwt = true;
                    seen.jwt_claims = claims;
                }
                None => seen.bearer = true,
            }
        } else if !scheme.is_empty() {
            // Other schemes (Digest, AWS4-HMAC-SHA256, Token ...) are API keys in effect.
            seen.api_key_header = true;
            seen.api_key_names.push("authorization".into());
        }
    }
    for (name, _) in req.headers.iter() {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if API_KEY_HEADERS.contains(&name.as_str()) && !seen.api_key_names.contains(&name) {
            seen.api_key_header = true;
            seen.api_key_names.push(name);
        }
    }
    if let Some(cookies) = req.headers.get("cookie") {
        let cookies = String::from_utf8_lossy(cookies);
        seen.cookie_session = cookies
            .split(';')
            .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim()))
            .any(is_session_cookie);
    }
    for (name, _) in query {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "api_key" | "apikey" | "api-key" | "key" | "access_token" | "token" | "auth_token"
        ) {
            seen.api_key_query = true;
            if !seen.api_key_names.contains(&lower) {
                seen.api_key_names.push(lower);
            }
        }
    }
    seen.api_key_names.sort();
    seen
}

/// Claim names of a JWT (`header.payload.signature`, base64url), or `None`
/// when the token is not one.
pub fn jwt_claims(token: &str) -> Option<Vec<String>> {
    let parts = crate::jwt::Parts::split(token)?;
    if parts.payload.len() > 16 * 1024 {
        return None;
    }
    parts.header.get("alg")?;
    let payload = parts.claims;
    let mut claims: Vec<String> = payload
        .keys()
        .take(64)
        .map(|k| k.chars().take(64).collect())
        .collect();
    claims.sort();
    Some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn jwt_claim_names_are_decoded() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"sub":"42","exp":1,"scope":"read"}"#);
        let token = format!("{h}.{p}.c2ln");
        assert_eq!(
            jwt_claims(&token),
            Some(vec!["exp".into(), "scope".into(), "sub".into()])
        );
        assert_eq!(jwt_claims("opaque-token"), None);
        assert_eq!(jwt_claims("a.b.c"), None);
    }

    #[test]
    fn credential_keys_and_cookies() {
        assert!(is_credential_key("Password"));
        assert!(is_credential_key("api_key"));
        assert!(!is_credential_key("page"));
        assert!(is_session_cookie("JSESSIONID"));
        assert!(is_session_cookie("connect.sid") || is_session_cookie("sid"));
        assert!(!is_session_cookie("theme"));
    }
}
