//! What [`Facts::new`] reads from one exchange: parameters, login
//! attempts, the client address behind proxies, the credentials a response
//! hands out, the principal, payloads, and the caps on all of it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::detect::tests::{call, get, token, Call};
use crate::exchange::Text;
use crate::identity::PrincipalKind;
use crate::inventory::template::SegKind;
use crate::inventory::Located;
use serde_json::json;

/// The context [`Facts::new`] needs, kept across exchanges like the
/// analysis stage keeps it.
struct Reader {
    hasher: SecretHasher,
    identities: IdentityBook,
    address: ClientAddress,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            hasher: SecretHasher::default(),
            identities: IdentityBook::default(),
            address: ClientAddress::default(),
        }
    }

    fn behind(header: &str, trusted_hops: usize) -> Reader {
        Reader {
            address: ClientAddress {
                header: header.to_owned(),
                trusted_hops,
            },
            ..Reader::new()
        }
    }

    fn read<'e>(&mut self, exchange: &'e Exchange) -> Facts<'e> {
        Facts::new(
            exchange,
            ResponseData::default(),
            FactsContext {
                hasher: &self.hasher,
                identities: &mut self.identities,
                client_address: &self.address,
            },
        )
        .unwrap()
    }
}

fn params<'f>(f: &'f Facts<'_>) -> Vec<(ParamSource, &'f str, &'f str)> {
    f.params
        .iter()
        .map(|p| (p.source, p.name.as_str(), p.value.as_str()))
        .collect()
}

fn login_of(call: Call) -> Option<LoginAttempt> {
    let mut reader = Reader::new();
    let exchange = call.exchange();
    reader.read(&exchange).login
}

#[test]
fn params_from_query_path_and_json_with_operator_keys() {
    let exchange = call("10.0.0.1", "POST", "/a/b%2Fc?q=x%20y&n=1")
        .json(
            r#"{"user":{"name":"n","tags":["t1","t2"],"$where":"1"},"k":2,"ok":true,"gone":null,
                "filter":{"password":{"$ne":null}}}"#,
        )
        .exchange();
    let f = Reader::new().read(&exchange);
    let got = params(&f);
    for want in [
        (ParamSource::Query, "q", "x y"),
        (ParamSource::Query, "n", "1"),
        // The raw target: segments are not decoded, and the whole path is
        // a parameter too (multi-segment payloads).
        (ParamSource::Path, "path", "/a/b%2Fc"),
        (ParamSource::Path, "0", "a"),
        (ParamSource::Path, "1", "b%2Fc"),
        (ParamSource::Json, "user.name", "n"),
        (ParamSource::Json, "user.tags[]", "t1"),
        (ParamSource::Json, "user.tags[]", "t2"),
        (ParamSource::Json, "user.$where", "$where"),
        (ParamSource::Json, "user.$where", "1"),
        (ParamSource::Json, "k", "2"),
        (ParamSource::Json, "ok", "true"),
        (ParamSource::Json, "filter.password.$ne", "$ne"),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
    assert_eq!(got.len(), 13, "{got:?}");
    assert!(f.json.is_some());
    assert_eq!(f.params_skipped, 0);
    assert_eq!(
        f.body_field_names(),
        ["$ne", "$where", "k", "name", "ok", "tags"]
    );
    // Operator keys are payloads.
    assert_eq!(
        f.payloads.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [PayloadKind::NoSql]
    );
    // `param` reads query and body values by their last name part, never the path.
    assert_eq!(f.param(&["name"]), Some("n"));
    assert_eq!(f.param(&["Q"]), Some("x y"));
    assert_eq!(f.param(&["0"]), None);
}

#[test]
fn params_from_forms_and_unlabelled_json() {
    let exchange = call("10.0.0.1", "POST", "/x")
        .form("user=ann&note=a%26b+c")
        .exchange();
    let f = Reader::new().read(&exchange);
    let got = params(&f);
    assert!(got.contains(&(ParamSource::Form, "user", "ann")), "{got:?}");
    assert!(
        got.contains(&(ParamSource::Form, "note", "a&b c")),
        "{got:?}"
    );
    assert!(f.json.is_none());
    // A JSON object without a content type is still read as JSON.
    let mut unlabelled = call("10.0.0.1", "POST", "/x").exchange();
    unlabelled.request.as_mut().unwrap().body.data = br#"{"a":"b"}"#.to_vec();
    let f = Reader::new().read(&unlabelled);
    assert!(params(&f).contains(&(ParamSource::Json, "a", "b")));
    // Other bodies carry no parameters.
    let text = call("10.0.0.1", "POST", "/x")
        .header("Content-Type", "text/plain")
        .exchange();
    let mut text = text;
    text.request.as_mut().unwrap().body.data = b"a=b&c=d".to_vec();
    let f = Reader::new().read(&text);
    assert!(f.params.iter().all(|p| p.source == ParamSource::Path));
}

/// A form's `name` beside a password is the account (CTFd-style login);
/// a more specific field wins over it (a registration's `email`).
#[test]
fn login_account_under_name_and_more_specific_fields_first() {
    let form = login_of(call("10.0.0.1", "POST", "/login").form("name=Alice&password=x&nonce=1"));
    assert_eq!(form.unwrap().username, "alice");
    let both = login_of(
        call("10.0.0.1", "POST", "/register").form("name=Alice+B&email=alice%40x.org&password=x"),
    );
    assert_eq!(both.unwrap().username, "alice@x.org");
    // Twin: no password field, no login.
    assert!(login_of(call("10.0.0.1", "POST", "/items").form("name=lamp&price=3")).is_none());
}

#[test]
fn login_attempts_from_json_form_and_basic() {
    let json = login_of(
        call("10.0.0.1", "POST", "/api/login").json(r#"{"username":"Alice","password":"hunter2"}"#),
    )
    .unwrap();
    assert_eq!(json.username, "alice");
    let hasher = SecretHasher::default();
    let mut reader = Reader {
        hasher: hasher.clone(),
        ..Reader::new()
    };
    let pair = [
        call("10.0.0.1", "POST", "/api/login").json(r#"{"username":"Alice","password":"hunter2"}"#),
        call("10.0.0.1", "POST", "/signin").form("email=alice&pwd=hunter2"),
        call("10.0.0.1", "POST", "/signin").form("email=alice&pwd=hunter3"),
    ]
    .map(|c| c.exchange());
    let logins: Vec<LoginAttempt> = pair.iter().map(|e| reader.read(e).login.unwrap()).collect();
    assert_eq!(
        logins[0], logins[1],
        "same user and password, whatever the encoding"
    );
    assert_ne!(logins[1].password_hash, logins[2].password_hash);
    // The password itself is kept nowhere.
    assert!(!format!("{:?}", logins[0]).contains("hunter2"));
    // Basic credentials to a login-looking path are a login; elsewhere not.
    let basic =
        login_of(get("10.0.0.1", "/auth/token").header("Authorization", "Basic Ym9iOnNlY3JldA=="))
            .unwrap();
    assert_eq!(basic.username, "bob");
    assert!(login_of(
        get("10.0.0.1", "/api/items").header("Authorization", "Basic Ym9iOnNlY3JldA==")
    )
    .is_none());
    // A field whose name says it holds the account, beside a password.
    let either = login_of(
        call("10.0.0.1", "POST", "/api/access-tokens")
            .json(r#"{"emailOrUsername":"Ann@Example.org","password":"pw"}"#),
    )
    .unwrap();
    assert_eq!(either.username, "ann@example.org");
    // A user-like field alone is no login, nor a password beside fields
    // that name no account.
    assert!(login_of(call("10.0.0.1", "POST", "/api/users").json(r#"{"username":"x"}"#)).is_none());
    assert!(login_of(
        call("10.0.0.1", "POST", "/api/vault").json(r#"{"title":"x","password":"pw"}"#)
    )
    .is_none());
    assert!(login_of(call("10.0.0.1", "POST", "/api/items").json("{}")).is_none());
}

#[test]
fn client_address_through_forwarded_for_with_trusted_hops() {
    let exchange = get("10.0.0.9", "/x")
        .header("X-Forwarded-For", "6.6.6.6, 203.0.113.5, 10.0.0.8")
        .exchange();
    let at = |hops| {
        let mut reader = Reader::behind("x-forwarded-for", hops);
        let f = reader.read(&exchange);
        assert_eq!(f.who, ActorKey::Address(f.client_ip));
        assert_eq!(f.actor().ip, Some(f.client_ip));
        f.client_ip.to_string()
    };
    assert_eq!(at(0), "10.0.0.9", "no trusted proxy: the TCP peer");
    assert_eq!(at(1), "10.0.0.8");
    assert_eq!(at(2), "203.0.113.5");
    assert_eq!(at(3), "6.6.6.6");
    assert_eq!(at(9), "10.0.0.9", "fewer entries than hops: the peer");
    // No header configured, the header missing, or an unreadable entry: the peer.
    let f = Reader::new().read(&exchange);
    assert_eq!(f.client_ip.to_string(), "10.0.0.9");
    let bare = get("10.0.0.9", "/x").exchange();
    let f = Reader::behind("x-forwarded-for", 1).read(&bare);
    assert_eq!(f.client_ip.to_string(), "10.0.0.9");
    let garbled = get("10.0.0.9", "/x")
        .header("X-Forwarded-For", "unknown")
        .exchange();
    let f = Reader::behind("x-forwarded-for", 1).read(&garbled);
    assert_eq!(f.client_ip.to_string(), "10.0.0.9");
}

#[test]
fn issued_tokens_from_a_login_body_and_set_cookie() {
    let access = token(json!({"sub": "ann", "iat": 1}));
    let refresh = token(json!({"sub": "ann", "typ": "refresh"}));
    let cookie_jwt = token(json!({"sub": "ann", "aud": "web"}));
    let login = call("10.0.0.1", "POST", "/api/login")
        .json(r#"{"username":"Ann","password":"pw"}"#)
        .reply(&format!(
            r#"{{"access_token":"{access}","refresh_token":"{refresh}","user":{{"name":"ann"}}}}"#
        ))
        .reply_header("Set-Cookie", "sessionid=s3ss; HttpOnly; Path=/")
        .reply_header("Set-Cookie", &format!("jwt={cookie_jwt}; Secure"))
        .reply_header("Set-Cookie", "theme=; Max-Age=0");
    let mut reader = Reader::new();
    let exchange = login.exchange();
    let f = reader.read(&exchange);
    assert_eq!(f.issued.jwts.len(), 3);
    assert_eq!(f.issued.cookies.len(), 1);
    assert_eq!(f.issued.digests().len(), 4);
    let subjects: Vec<&str> = f
        .issued
        .jwts
        .iter()
        .filter_map(|(j, _)| j.subject())
        .collect();
    assert_eq!(subjects, ["ann", "ann", "ann"]);
    // The login taught whom these credentials act for.
    let later = get("10.0.0.1", "/api/me")
        .header("Cookie", "sessionid=s3ss")
        .exchange();
    let p = reader.read(&later).principal.unwrap();
    assert_eq!(p.kind, PrincipalKind::Session);
    assert!(p.is_named("ann"), "{p:?}");
    let later = get("10.0.0.1", "/api/me").bearer(&access).exchange();
    let p = reader.read(&later).principal.unwrap();
    assert!(p.is_named("ann"), "{p:?}");
    // A refused login hands nothing out.
    let refused = call("10.0.0.1", "POST", "/api/login")
        .json(r#"{"username":"ann","password":"pw"}"#)
        .status(401)
        .reply(&format!(r#"{{"token":"{access}"}}"#))
        .reply_header("Set-Cookie", "sessionid=x")
        .exchange();
    assert!(Reader::new().read(&refused).issued.is_empty());
    // At most `MAX_ISSUED` tokens from one body.
    let many: Vec<String> = (0..12)
        .map(|i| format!("{{\"access_token\":\"{}\"}}", token(json!({"sub": i}))))
        .collect();
    let flood = get("10.0.0.1", "/api/tokens")
        .reply(&format!("[{}]", many.join(",")))
        .exchange();
    assert_eq!(Reader::new().read(&flood).issued.jwts.len(), MAX_ISSUED);
    // A token under another name (a note a client stored and reads back)
    // is not one the API issued.
    let stored = get("10.0.0.1", "/api/notes/1")
        .reply(&format!(r#"{{"note":"{access}"}}"#))
        .exchange();
    assert!(Reader::new().read(&stored).issued.is_empty());
}

#[test]
fn principal_from_jwt_basic_and_api_key() {
    let mut reader = Reader::new();
    let jwt = get("10.0.0.1", "/x")
        .bearer(&token(json!({"sub": "alice", "email": "a@x.io"})))
        .exchange();
    let f = reader.read(&jwt);
    let p = f.principal.as_ref().unwrap();
    assert_eq!((p.id.as_str(), p.kind), ("alice", PrincipalKind::Jwt));
    assert_eq!(f.who, ActorKey::Principal("alice".into()));
    assert_eq!(f.actor().principal_kind.as_deref(), Some("jwt_claim"));
    assert_eq!(f.actor_label(), "Client 10.0.0.1 (principal alice)");
    assert!(f.jwt().is_some() && !f.anonymous());

    let basic = get("10.0.0.1", "/x")
        .header("Authorization", "Basic Ym9iOnNlY3JldA==")
        .exchange();
    let f = reader.read(&basic);
    assert_eq!(f.principal.as_ref().unwrap().id, "bob");
    assert_eq!(f.actor().principal_kind.as_deref(), Some("basic_user"));

    let key = get("10.0.0.1", "/x")
        .header("X-Api-Key", "k-123")
        .exchange();
    let f = reader.read(&key);
    let p = f.principal.as_ref().unwrap();
    assert_eq!(p.kind, PrincipalKind::ApiKey);
    assert!(!p.id.contains("k-123") && p.id.len() == 16, "{}", p.id);
    assert_eq!(f.actor().principal_kind.as_deref(), Some("api_key_hash"));
    // The same key is the same principal; another key another.
    let same = reader.read(&key).principal.unwrap();
    assert_eq!(same.id, p.id);
    let other = get("10.0.0.1", "/x")
        .header("X-Api-Key", "k-124")
        .exchange();
    assert_ne!(reader.read(&other).principal.unwrap().id, p.id);

    let anonymous = get("10.0.0.1", "/x")
        .header("Cookie", "theme=dark")
        .exchange();
    let f = reader.read(&anonymous);
    assert!(f.principal.is_none() && f.anonymous());
    assert_eq!(f.who, ActorKey::Address("10.0.0.1".parse().unwrap()));
    assert_eq!(f.actor_label(), "Client 10.0.0.1");
}

#[test]
fn parameters_past_the_caps_are_counted() {
    let query: Vec<String> = (0..600).map(|i| format!("p{i}=v")).collect();
    let exchange = get("10.0.0.1", &format!("/x?{}", query.join("&"))).exchange();
    let f = Reader::new().read(&exchange);
    assert_eq!(f.params.len(), MAX_PARAMS);
    // 600 query parameters and the path's one segment.
    assert_eq!(f.params_skipped, 600 + 1 - MAX_PARAMS as u64);
    // A body too large to parse is skipped whole, and counted once.
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_PARSED_BODY_BYTES));
    let exchange = call("10.0.0.1", "POST", "/x").json(&big).exchange();
    let f = Reader::new().read(&exchange);
    assert!(f.json.is_none());
    assert!(f.params.iter().all(|p| p.source == ParamSource::Path));
    assert_eq!(f.params_skipped, 1);
    // Deep nesting is followed to `MAX_JSON_DEPTH`, not further.
    let nested = |depth: usize| {
        let mut body = r#""leaf""#.to_owned();
        for _ in 0..depth {
            body = format!(r#"{{"a":{body}}}"#);
        }
        body
    };
    let shallow = call("10.0.0.1", "POST", "/x")
        .json(&nested(MAX_JSON_DEPTH))
        .exchange();
    let f = Reader::new().read(&shallow);
    assert!(f.params.iter().any(|p| p.value == "leaf"));
    let deep = call("10.0.0.1", "POST", "/x")
        .json(&nested(MAX_JSON_DEPTH + 8))
        .exchange();
    let f = Reader::new().read(&deep);
    assert!(f.params.iter().all(|p| p.value != "leaf"));
}

#[test]
fn json_parameters_past_the_cap_are_counted() {
    let fields: Vec<String> = (0..600).map(|i| format!(r#""f{i}":"v""#)).collect();
    let exchange = call("10.0.0.1", "POST", "/x")
        .json(&format!("{{{}}}", fields.join(",")))
        .exchange();
    let f = Reader::new().read(&exchange);
    assert_eq!(f.params.len(), MAX_PARAMS);
    // The path's one segment and 600 fields.
    assert_eq!(f.params_skipped, 1 + 600 - MAX_PARAMS as u64);
}

#[test]
fn payloads_one_per_kind_and_where_they_were() {
    let long = format!("' OR 1=1--{}", "x".repeat(300));
    let exchange = get(
        "10.0.0.1",
        &format!(
            "/search?q={}&r=%27%20OR%202%3D2--&s=%3Cscript%3Ealert(1)%3C/script%3E",
            long
        ),
    )
    .exchange();
    let f = Reader::new().read(&exchange);
    let kinds: Vec<PayloadKind> = f.payloads.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [PayloadKind::Sql, PayloadKind::Xss]);
    assert_eq!(f.payloads[0].parameter, "q");
    assert_eq!(f.payloads[0].sample.chars().count(), 200);
    assert_eq!(f.payloads[1].parameter, "s");
    assert!(!f.path_payload(), "the payloads are in the query");
    let traversal = get("10.0.0.1", "/files/../../etc/passwd").exchange();
    let f = Reader::new().read(&traversal);
    assert_eq!(f.payloads[0].kind, PayloadKind::PathTraversal);
    assert!(f.path_payload());
    let benign = get("10.0.0.1", "/search?q=O%27Brien").exchange();
    assert!(Reader::new().read(&benign).payloads.is_empty());
}

#[test]
fn absolute_form_targets_give_their_path_segments() {
    let exchange = get("10.0.0.1", "http://127.0.0.1:8080/api/items?q=1").exchange();
    let f = Reader::new().read(&exchange);
    let path: Vec<(&str, &str)> = f
        .params
        .iter()
        .filter(|p| p.source == ParamSource::Path)
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(path, [("path", "/api/items"), ("0", "api"), ("1", "items")]);
    assert!(f.payloads.is_empty(), "{:?}", f.payloads);
}

#[test]
fn endpoint_and_outcome_until_and_after_locate() {
    let exchange = get("10.0.0.1", "/api/orders/17").status(403).exchange();
    let mut f = Reader::new().read(&exchange);
    assert_eq!(f.key.template, "/api/orders/17");
    assert_eq!(
        (f.key.method.as_str(), f.key.host.as_str()),
        ("GET", "api.test")
    );
    assert!(f.rejected() && !f.succeeded());
    assert_eq!(f.status(), Some(403));
    f.locate(Located {
        key: EndpointKey {
            template: Text::from("/api/orders/{id}"),
            ..f.key.clone()
        },
        values: vec![PathValue {
            name: "id".into(),
            kind: SegKind::Int,
            value: Text::from("17"),
        }],
    });
    assert_eq!(f.key.template, "/api/orders/{id}");
    assert_eq!(f.values[0].value, "17");
    // Unanswered: no status, neither success nor rejection.
    let unanswered = get("10.0.0.1", "/x").status(0).exchange();
    let f = Reader::new().read(&unanswered);
    assert_eq!(f.status(), None);
    assert_eq!(f.outcome, Outcome::Unanswered);
    assert!(!f.succeeded() && !f.rejected());
    // A response seen alone has no facts.
    let mut alone = get("10.0.0.1", "/x").exchange();
    alone.request = None;
    let mut reader = Reader::new();
    assert!(Facts::new(
        &alone,
        ResponseData::default(),
        FactsContext {
            hasher: &reader.hasher,
            identities: &mut reader.identities,
            client_address: &reader.address,
        },
    )
    .is_none());
}

/// A session cookie the API sets for a visitor without credentials (even
/// on a refusal) identifies nobody: requests presenting only it are
/// anonymous. Twins: a session set at a login is a credential, and an
/// anonymous session that a login succeeds with becomes one (frameworks
/// that keep the session id at login).
#[test]
fn anonymous_visitors_sessions_are_not_credentials() {
    let mut reader = Reader::new();
    let visit = get("10.0.0.9", "/api/me")
        .status(403)
        .reply_header("Set-Cookie", "session=anon-1; Path=/; HttpOnly")
        .exchange();
    assert!(reader.read(&visit).anonymous());
    let again = get("10.0.0.9", "/api/items")
        .header("Cookie", "session=anon-1")
        .status(403)
        .exchange();
    let f = reader.read(&again);
    assert!(f.anonymous() && f.principal.is_none());
    // A login that succeeds with it makes it a credential.
    let login = call("10.0.0.9", "POST", "/login")
        .header("Cookie", "session=anon-1")
        .form("name=alice&password=x")
        .status(302)
        .exchange();
    reader.read(&login);
    assert!(!reader.read(&again).anonymous());
    // A session set by a login answer is a credential from the start.
    let login = call("10.0.0.8", "POST", "/login")
        .form("name=bob&password=y")
        .status(302)
        .reply_header("Set-Cookie", "session=bob-1; Path=/")
        .exchange();
    reader.read(&login);
    let bob = get("10.0.0.8", "/api/items")
        .header("Cookie", "session=bob-1")
        .exchange();
    assert!(!reader.read(&bob).anonymous());
}

/// The session cookie a server renews on every answer is the caller's own
/// credential, not data the API handed out: only the body's values count
/// toward the volume detectors, and it is not a type the answer carried.
#[test]
fn sensitive_values_count_the_body_only() {
    use crate::analysis::response_data;
    use crate::classify::{DataType, Finding, Location};
    let found = |data_type, location, values| Finding {
        data_type,
        location,
        field: "x".into(),
        confidence: 90,
        values,
    };
    let data = response_data(&[
        found(DataType::SessionToken, Location::Header, 1),
        found(DataType::Email, Location::Body, 3),
    ]);
    assert_eq!(data.sensitive_values, 3);
    assert_eq!(data.sensitive_types, vec!["email"]);
    let cookie_only = response_data(&[found(DataType::SessionToken, Location::Header, 1)]);
    assert_eq!(cookie_only.sensitive_values, 0);
    assert!(cookie_only.sensitive_types.is_empty());
    let set_cookie = response_data(&[found(DataType::SessionToken, Location::Cookie, 1)]);
    assert!(set_cookie.sensitive_types.is_empty());
    // A session token in the body was handed out as data.
    let in_body = response_data(&[found(DataType::SessionToken, Location::Body, 1)]);
    assert_eq!(in_body.sensitive_types, vec!["session_token"]);
}
