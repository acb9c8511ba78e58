//! Who sent a request: the client address (the TCP peer, or the address a
//! trusted proxy put in a forwarding header) and, where the request names
//! one, the principal — JWT `sub` (decoded, not verified), Basic-auth user,
//! or a keyed hash of an API key or session cookie (never the secret itself).

use super::request::RequestView;
use crate::event::Actor;
use std::net::IpAddr;

/// API-key headers, lower case.
const API_KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
];

/// Session cookie names, lower case.
const SESSION_COOKIES: &[&str] = &[
    "session",
    "sessionid",
    "session_id",
    "sid",
    "jsessionid",
    "phpsessid",
    "connect.sid",
    "asp.net_sessionid",
    "laravel_session",
    "_session_id",
];

/// Where the real client address comes from behind a proxy.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    /// Lower-case header name (e.g. `x-forwarded-for`); empty = the TCP peer.
    pub header: String,
    /// Proxies in front of the API that append to the header; the client is
    /// the entry this many places from the right (1 = the last one).
    pub trusted_hops: usize,
}

impl ClientAddress {
    pub fn client_ip(&self, view: &RequestView<'_>) -> IpAddr {
        let peer = view.exchange.client.ip();
        if self.header.is_empty() || self.trusted_hops == 0 {
            return peer;
        }
        let Some(value) = view.request.headers.get(&self.header) else {
            return peer;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return peer;
        };
        let hops: Vec<&str> = value.split(',').map(str::trim).collect();
        hops.len()
            .checked_sub(self.trusted_hops)
            .and_then(|i| hops.get(i))
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(peer)
    }
}

/// The actor of a request.
pub fn identify(view: &RequestView<'_>, address: &ClientAddress) -> Actor {
    let (principal, kind) = principal(view).unzip();
    Actor {
        ip: Some(address.client_ip(view)),
        principal,
        principal_kind: kind.map(str::to_owned),
    }
}

fn principal(view: &RequestView<'_>) -> Option<(String, &'static str)> {
    if let Some(sub) = view.bearer.as_ref().and_then(|t| t.subject()) {
        return Some((sub.to_owned(), "jwt_sub"));
    }
    if let Some(user) = &view.basic_user {
        return Some((user.clone(), "basic_user"));
    }
    let headers = &view.request.headers;
    for name in API_KEY_HEADERS {
        if let Some(value) = headers.get(name).filter(|v| !v.is_empty()) {
            return Some((view.hasher.short_hex("api key", value), "api_key_hash"));
        }
    }
    let cookie = headers.get("cookie")?;
    let cookie = std::str::from_utf8(cookie).ok()?;
    cookie.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        let known = SESSION_COOKIES.contains(&name.to_ascii_lowercase().as_str());
        (known && !value.is_empty()).then(|| {
            (
                view.hasher.short_hex("session", value.as_bytes()),
                "session_hash",
            )
        })
    })
}

/// "Client 10.0.0.7 (principal alice)", for event text.
pub fn label(actor: &Actor) -> String {
    let ip = actor
        .ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "an unknown address".into());
    match &actor.principal {
        Some(p) => format!("Client {ip} (principal {p})"),
        None => format!("Client {ip}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::jwt::sign_hs256;
    use super::super::request::tests::{exchange, TEST_HASHER};
    use super::*;
    use serde_json::json;

    #[test]
    fn principal_from_jwt_basic_api_key_and_session() {
        let token = sign_hs256(&json!({"alg":"HS256"}), &json!({"sub":"alice"}), "k");
        let auth = format!("Bearer {token}");
        type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (vec![("Authorization", auth.as_str())], Some("jwt_sub")),
            (
                vec![("Authorization", "Basic Ym9iOnNlY3JldA==")],
                Some("basic_user"),
            ),
            (vec![("X-Api-Key", "k-123")], Some("api_key_hash")),
            (
                vec![("Cookie", "theme=dark; sessionid=abc")],
                Some("session_hash"),
            ),
            (vec![("Cookie", "theme=dark")], None),
        ];
        for (headers, kind) in cases {
            let e = exchange("10.0.0.1", "GET", "/x", &headers, "", 200, "", 1);
            let view = RequestView::new(&e, &TEST_HASHER).unwrap();
            let actor = identify(&view, &ClientAddress::default());
            assert_eq!(actor.principal_kind.as_deref(), kind, "{headers:?}");
            if kind == Some("api_key_hash") {
                assert!(!actor.principal.unwrap().contains("k-123"));
            }
        }
    }

    #[test]
    fn forwarded_address_honours_trusted_hops() {
        let e = exchange(
            "10.0.0.9",
            "GET",
            "/x",
            &[("X-Forwarded-For", "6.6.6.6, 203.0.113.5, 10.0.0.8")],
            "",
            200,
            "",
            1,
        );
        let view = RequestView::new(&e, &TEST_HASHER).unwrap();
        let at = |hops| {
            ClientAddress {
                header: "x-forwarded-for".into(),
                trusted_hops: hops,
            }
            .client_ip(&view)
            .to_string()
        };
        assert_eq!(at(0), "10.0.0.9", "no trusted proxy: the TCP peer");
        assert_eq!(at(1), "10.0.0.8");
        assert_eq!(at(2), "203.0.113.5");
        assert_eq!(at(9), "10.0.0.9", "fewer entries than hops: the peer");
    }
}
