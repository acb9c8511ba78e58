//! Each rule of [`super::rules`] with its benign twin, run the way
//! `Analysis::observe` runs them: the classifier reads the exchange, its
//! facts are worked out once, a real inventory gives the endpoint (the
//! learned template) and the object ids, and [`Detectors::observe`] judges.
//! Events are checked for their rule, their endpoint (the template, never
//! the raw path) and their actor; twins must raise nothing at all.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::{DetectLimits, Detectors};
use crate::analysis::facts::{ClientAddress, Facts, FactsContext};
use crate::classify::Classifier;
use crate::config::{ClassifySettings, InventorySettings};
use crate::event::{Event, Severity};
use crate::exchange::{Body, Exchange, Headers, HttpVersion, Request, Response, Text, Timestamp};
use crate::identity::{IdentityBook, SecretHasher};
use crate::inventory::Inventory;
use crate::jwt::sign_hs256;
use serde_json::{json, Value};

/// Packet time of the first exchange of every scenario (Unix seconds).
/// A whole minute, so scenarios can place requests in minutes of packet time.
pub(crate) const T0: u64 = 1_700_000_040;

/// One exchange to build: a request from `client` and, unless the status
/// is 0, its answer. Times are seconds after [`T0`].
#[derive(Debug, Clone)]
pub(crate) struct Call {
    client: String,
    method: String,
    uri: String,
    host: String,
    headers: Vec<(String, String)>,
    body: String,
    status: u16,
    reply_headers: Vec<(String, String)>,
    reply: String,
    reply_len: Option<u64>,
    secs: u64,
}

/// A request from `client` (an IP address) with a 200 `{}` answer at [`T0`].
pub(crate) fn call(client: &str, method: &str, uri: &str) -> Call {
    Call {
        client: client.to_owned(),
        method: method.to_owned(),
        uri: uri.to_owned(),
        host: "api.test".to_owned(),
        headers: Vec::new(),
        body: String::new(),
        status: 200,
        reply_headers: Vec::new(),
        reply: "{}".to_owned(),
        reply_len: None,
        secs: 0,
    }
}

pub(crate) fn get(client: &str, uri: &str) -> Call {
    call(client, "GET", uri)
}

impl Call {
    /// Seconds after [`T0`].
    pub(crate) fn at(mut self, secs: u64) -> Call {
        self.secs = secs;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn bearer(self, token: &str) -> Call {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub(crate) fn host(mut self, host: &str) -> Call {
        self.host = host.to_owned();
        self
    }

    /// A JSON request body.
    pub(crate) fn json(mut self, body: &str) -> Call {
        self.body = body.to_owned();
        self.header("Content-Type", "application/json")
    }

    /// A form-encoded request body.
    pub(crate) fn form(mut self, body: &str) -> Call {
        self.body = body.to_owned();
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// The answer's status; 0 = no answer seen.
    pub(crate) fn status(mut self, status: u16) -> Call {
        self.status = status;
        self
    }

    /// The answer's (JSON) body.
    pub(crate) fn reply(mut self, body: &str) -> Call {
        self.reply = body.to_owned();
        self
    }

    pub(crate) fn reply_header(mut self, name: &str, value: &str) -> Call {
        self.reply_headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The answer's size on the wire (its captured body stays as given).
    pub(crate) fn reply_len(mut self, bytes: u64) -> Call {
        self.reply_len = Some(bytes);
        self
    }

    pub(crate) fn exchange(&self) -> Exchange {
        let headers = |fields: &[(String, String)]| {
            let mut h = Headers::with_capacity(fields.len(), 256);
            for (n, v) in fields {
                h.push(n.as_bytes(), v.as_bytes(), 64, 1 << 16);
            }
            h
        };
        let content_type = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| Text::from(v.as_str()));
        let body = |data: &str, wire: Option<u64>| Body {
            wire_len: wire.unwrap_or(data.len() as u64),
            decoded_len: data.len() as u64,
            data: data.as_bytes().to_vec(),
            ..Body::default()
        };
        // Path and query as the HTTP parser splits them (absolute-form too).
        let target = self.uri.split('#').next().unwrap_or_default();
        let (path, query) = crate::http1::parser::split_target_at(target.as_bytes());
        let path = target.get(path).unwrap_or_default();
        let query = query.and_then(|q| target.get(q));
        let secs = T0 + self.secs;
        Exchange {
            flow_id: self.secs,
            client: format!("{}:40000", self.client).parse().unwrap(),
            server: "10.9.9.9:80".parse().unwrap(),
            request: Some(Request {
                ts: Timestamp::from_secs_nanos(secs, 0),
                end_ts: Timestamp::from_secs_nanos(secs, 0),
                method: self.method.as_str().into(),
                uri: self.uri.as_str().into(),
                path: path.into(),
                query: query.map(Text::from),
                version: HttpVersion::Http11,
                host: Some(self.host.as_str().into()),
                content_type,
                headers: headers(&self.headers),
                body: body(&self.body, None),
                pending_text: false,
            }),
            response: (self.status != 0).then(|| Response {
                ts: Timestamp::from_secs_nanos(secs, 1_000_000),
                end_ts: Timestamp::from_secs_nanos(secs, 2_000_000),
                version: HttpVersion::Http11,
                status: Some(self.status),
                reason: "".into(),
                content_type: Some("application/json".into()),
                headers: headers(&self.reply_headers),
                body: body(&self.reply, self.reply_len),
                pending_text: false,
            }),
            tunnel: false,
            flags: Default::default(),
            anomalies: Vec::new(),
        }
    }
}

/// An HS256 token with a key no dictionary has.
pub(crate) fn token(claims: Value) -> String {
    sign_hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        "k-9f3a-7c1e-strong-and-random-0b55",
    )
}

/// A user's token: `sub`, a `role` and a matching `email`.
pub(crate) fn user_token(sub: &str, role: &str) -> String {
    token(json!({"sub": sub, "role": role, "email": format!("{sub}@example.com")}))
}

/// The analysis stage cut down to what the detectors need, wired as
/// `Analysis::observe` wires it.
pub(crate) struct Harness {
    pub(crate) detectors: Detectors,
    inventory: Inventory,
    classifier: Classifier,
    hasher: SecretHasher,
    identities: IdentityBook,
    client_address: ClientAddress,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        Harness::with(Detectors::new(DetectLimits::default()))
    }

    pub(crate) fn with(detectors: Detectors) -> Harness {
        Harness {
            detectors,
            inventory: Inventory::new(&InventorySettings::default()),
            classifier: Classifier::new(&ClassifySettings::default()),
            hasher: SecretHasher::default(),
            identities: IdentityBook::default(),
            client_address: ClientAddress::default(),
        }
    }

    /// Judges one exchange; returns the events it raised.
    pub(crate) fn observe(&mut self, call: &Call) -> Vec<Event> {
        let exchange = call.exchange();
        let (mut inventory_facts, data) = crate::analysis::facts_of(
            &self.classifier,
            &exchange,
            &mut crate::classify::ClassifyStats::default(),
        );
        let mut facts = Facts::new(
            &exchange,
            data,
            FactsContext {
                hasher: &self.hasher,
                identities: &mut self.identities,
                client_address: &self.client_address,
            },
        )
        .unwrap();
        inventory_facts.path_payload = facts.path_payload();
        // Where the inventory's caps refuse a path, `Analysis` files it
        // under one endpoint per host and method.
        let located = self
            .inventory
            .observe(&exchange, &inventory_facts)
            .unwrap_or_else(|| crate::analysis::unlisted(&facts.key));
        facts.locate(located);
        let mut out = Vec::new();
        let verdict = self.detectors.observe(&facts, &mut out);
        if verdict.scanner {
            self.inventory
                .mark_scanner(crate::inventory::client_digest(&exchange));
        }
        out
    }

    /// Judges every exchange in order; returns all events raised.
    pub(crate) fn run(&mut self, calls: impl IntoIterator<Item = Call>) -> Vec<Event> {
        calls.into_iter().flat_map(|c| self.observe(&c)).collect()
    }
}

/// Runs `calls` through a fresh harness.
pub(crate) fn run(calls: impl IntoIterator<Item = Call>) -> Vec<Event> {
    Harness::new().run(calls)
}

pub(crate) fn rules(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.rule.as_str()).collect()
}

/// "METHOD host/template" of an event.
fn endpoint(e: &Event) -> String {
    let ep = e.endpoint.as_ref().unwrap();
    format!("{} {}{}", ep.method, ep.host, ep.path)
}

fn actor_ip(e: &Event) -> String {
    e.actor.as_ref().unwrap().ip.unwrap().to_string()
}

fn principal(e: &Event) -> Option<&str> {
    e.actor.as_ref().unwrap().principal.as_deref()
}

/// Asserts exactly one event of `rule`, and returns it.
#[track_caller]
fn only<'a>(events: &'a [Event], rule: &str) -> &'a Event {
    assert_eq!(rules(events), vec![rule], "{}", describe(events));
    &events[0]
}

/// Asserts there are no events.
#[track_caller]
fn none(events: &[Event]) {
    assert!(events.is_empty(), "{}", describe(events));
}

fn describe(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| format!("{} at {}: {}", e.rule, endpoint(e), e.text.what_happened))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The address and token of user `n` (`user{n}`, role `user`).
fn user(n: u64) -> (String, String) {
    (
        format!("10.0.1.{}", n + 1),
        user_token(&format!("user{n}"), "user"),
    )
}

/// A GET by user `n`, with their token.
fn user_get(n: u64, uri: &str) -> Call {
    let (ip, token) = user(n);
    get(&ip, uri).bearer(&token)
}

// ---------------------------------------------------------------- injection

#[test]
fn injection_is_reported_once_per_actor_and_kind_at_the_template() {
    let attacker = "10.0.0.66";
    let events = run([
        get(attacker, "/api/items/5?q=%27%20OR%201%3D1--").at(10),
        // The same kind again, on another raw path: a repeat.
        get(attacker, "/api/items/6?q=1%27%20or%20%271%27%3D%271").at(11),
        get(attacker, "/api/items/7?q=%3Cscript%3Ealert(1)%3C/script%3E").at(12),
        // Another actor with the first payload: its own event.
        get("10.0.0.67", "/api/items/8?q=%27%20OR%201%3D1--").at(13),
    ]);
    assert_eq!(
        rules(&events),
        [
            "detect.injection.sql",
            "detect.injection.xss",
            "detect.injection.sql"
        ],
        "{}",
        describe(&events)
    );
    for e in &events {
        assert_eq!(endpoint(e), "GET api.test/api/items/{id}");
        assert_eq!(e.attributes["parameter"], "q");
    }
    assert_eq!(actor_ip(&events[0]), attacker);
    assert_eq!(actor_ip(&events[1]), attacker);
    assert_eq!(actor_ip(&events[2]), "10.0.0.67");
    assert_eq!(events[0].severity, Severity::High);
    assert!(
        events[0].text.what_happened.contains("`q`"),
        "{}",
        events[0].text.what_happened
    );
}

/// A fuzzer trying every payload kind from one address gives two injection
/// events (the other kinds are repeats); two addresses with two kinds each
/// give two each (the twin).
#[test]
fn a_fuzzer_gets_two_injection_events_per_address() {
    let payloads = [
        "/api/items/5?q=%27%20OR%201%3D1--",
        "/api/items/6?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/api/files?name=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/ping?host=127.0.0.1%3B%20whoami",
        "/api/fetch?url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
    ];
    let fuzzer: Vec<Call> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| get("10.0.0.66", p).at(10 + i as u64))
        .collect();
    let events = run(fuzzer);
    let injections = |events: &[Event]| {
        events
            .iter()
            .filter(|e| e.rule.starts_with("detect.injection."))
            .count()
    };
    assert_eq!(injections(&events), 2, "{}", describe(&events));
    let two_each: Vec<Call> = payloads[..2]
        .iter()
        .chain(&payloads[..2])
        .enumerate()
        .map(|(i, p)| get(["10.0.0.66", "10.0.0.67"][i / 2], p).at(10 + i as u64))
        .collect();
    assert_eq!(injections(&run(two_each)), 4);
}

#[test]
fn each_injection_kind_raises_its_rule() {
    let cases = [
        (
            call("10.0.0.66", "POST", "/api/login")
                .json(r#"{"username":"admin","password":{"$ne":null}}"#),
            "detect.injection.nosql",
            "POST api.test/api/login",
        ),
        (
            get("10.0.0.66", "/api/ping?host=127.0.0.1%3B%20whoami"),
            "detect.injection.command",
            "GET api.test/api/ping",
        ),
        (
            get(
                "10.0.0.66",
                "/api/files?name=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            ),
            "detect.injection.path_traversal",
            "GET api.test/api/files",
        ),
        (
            call("10.0.0.66", "POST", "/api/hooks/12")
                .json(r#"{"url":"http://169.254.169.254/latest/meta-data/"}"#),
            "detect.injection.ssrf",
            "POST api.test/api/hooks/{id}",
        ),
    ];
    for (attack, rule, at) in cases {
        let events = run([attack]);
        let e = only(&events, rule);
        assert_eq!(endpoint(e), at);
        assert_eq!(actor_ip(e), "10.0.0.66");
    }
}

#[test]
fn benign_values_twin_raises_no_injection() {
    none(&run([
        get("10.0.0.5", "/api/search?q=O%27Brien%20rock%20and%20roll").at(1),
        get("10.0.0.5", "/api/docs?next=../home").at(2),
        get(
            "10.0.0.5",
            "/api/callback?url=https%3A%2F%2Fexample.com%2Fdone%3Fnext%3D%2Fhome",
        )
        .at(3),
        call("10.0.0.5", "POST", "/api/contacts")
            .json(r#"{"name":"Tom's diner","email":"jane.doe@example.com","note":"cats & dogs"}"#)
            .at(4),
    ]));
}

// ------------------------------------------------------------------ scanner

#[test]
fn scanner_tool_user_agent_and_its_twin() {
    let events = run([get("10.0.0.78", "/api/items/3")
        .header("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")
        .at(5)]);
    let e = only(&events, "detect.scanner.tool_user_agent");
    assert_eq!(endpoint(e), "GET api.test/api/items/{id}");
    assert_eq!(actor_ip(e), "10.0.0.78");
    assert!(e.title.contains("sqlmap"), "{}", e.title);
    none(&run([
        get("10.0.0.5", "/api/items/3")
            .header("User-Agent", "curl/8.4.0")
            .at(5),
        get("10.0.0.5", "/api/items/4")
            .header(
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            )
            .at(6),
    ]));
}

#[test]
fn scanner_not_found_burst_and_its_twins() {
    let probes = (0..25).map(|i| {
        get("10.0.0.77", &format!("/files/{}", 100 + i))
            .status(404)
            .reply("")
            .at(i)
    });
    let events = run(probes);
    let e = only(&events, "detect.scanner.not_found_burst");
    assert_eq!(endpoint(e), "GET api.test/files/{id}");
    assert_eq!(actor_ip(e), "10.0.0.77");
    assert_eq!(e.counts["distinct_paths"], 20);
    // A user following a few stale links while browsing normally.
    let browsing = (0..60).map(|i| {
        if i % 15 == 0 {
            get("10.0.0.5", &format!("/old/{i}")).status(404).at(i)
        } else {
            get("10.0.0.5", "/api/items").at(i)
        }
    });
    none(&run(browsing));
    // The same 25 misses, one a minute: no burst.
    let slow = (0..25).map(|i| {
        get("10.0.0.77", &format!("/files/{}", 100 + i))
            .status(404)
            .at(i * 61)
    });
    none(&run(slow));
}

// ------------------------------------------------------------------- logins

fn login(ip: &str, user: &str, password: &str, status: u16, reply: &str, t: u64) -> Call {
    call(ip, "POST", "/api/login")
        .json(&format!(
            r#"{{"username":"{user}","password":"{password}"}}"#
        ))
        .status(status)
        .reply(reply)
        .at(t)
}

/// A login answer handing out a token, as the API issues them.
fn issued_reply(sub: &str, iat: u64) -> String {
    let issued = token(json!({"sub": sub, "role": "user", "iat": iat, "exp": iat + 3600}));
    format!(r#"{{"ok":true,"token":"{issued}"}}"#)
}

const LOGIN_FAILED_200: &str = r#"{"ok":false,"error":"invalid credentials"}"#;

#[test]
fn credential_stuffing_with_200_error_bodies_and_its_typo_twin() {
    let mut attack = vec![login(
        "10.0.0.2",
        "ann",
        "right",
        200,
        &issued_reply("ann", T0),
        1,
    )];
    for i in 0..12 {
        attack.push(login(
            "10.0.0.66",
            &format!("user{i}"),
            &format!("guess{i}"),
            200,
            LOGIN_FAILED_200,
            10 + i,
        ));
    }
    let events = run(attack);
    let e = only(&events, "detect.auth.credential_stuffing");
    assert_eq!(endpoint(e), "POST api.test/api/login");
    assert_eq!(actor_ip(e), "10.0.0.66");
    assert_eq!(e.counts["distinct_usernames"], 10);
    // A person mistyping twice, then getting in.
    none(&run([
        login("10.0.0.5", "ann", "wrong1", 200, LOGIN_FAILED_200, 1),
        login("10.0.0.5", "ann", "wrong2", 200, LOGIN_FAILED_200, 2),
        login("10.0.0.5", "ann", "right", 200, &issued_reply("ann", T0), 3),
    ]));
}

/// A login page re-rendered with its error far down (after a page's
/// worth of markup) is a failure; twin: the same page without the error.
#[test]
fn failed_login_page_with_the_error_far_down() {
    let page = |error: &str| format!("<html>{}<div>{error}</div></html>", " ".repeat(9_000));
    let attempts = |error: &str| {
        run((0..12).map(|i| {
            call("10.0.0.66", "POST", "/login")
                .form(&format!("name=user{i}&password=guess{i}"))
                .reply_header("Content-Type", "text/html")
                .reply(&page(error))
                .at(10 + i)
        }))
    };
    only(
        &attempts("Your username or password is incorrect"),
        "detect.auth.credential_stuffing",
    );
    none(&attempts("Welcome back"));
}

#[test]
fn brute_force_and_its_twin() {
    let refused = |ip: &str, pw: &str, t| login(ip, "root", pw, 401, r#"{"error":"nope"}"#, t);
    let events = run((0..10).map(|i| refused("10.0.0.70", &format!("p{i}"), i)));
    let e = only(&events, "detect.auth.brute_force");
    assert_eq!(endpoint(e), "POST api.test/api/login");
    assert_eq!(actor_ip(e), "10.0.0.70");
    assert_eq!(e.counts["failed_logins"], 10);
    // Nine failures on one account stay under the threshold.
    none(&run(
        (0..9).map(|i| refused("10.0.0.71", &format!("p{i}"), i))
    ));
}

#[test]
fn password_spraying_and_its_twin() {
    let refused = |i: u64, pw: &str| {
        login(
            &format!("10.0.2.{}", i % 4),
            &format!("u{i}"),
            pw,
            401,
            r#"{"error":"nope"}"#,
            i,
        )
    };
    // One password, twelve accounts, four addresses.
    let events = run((0..12).map(|i| refused(i, "Winter2024!")));
    let e = only(&events, "detect.auth.password_spraying");
    assert_eq!(endpoint(e), "POST api.test/api/login");
    assert_eq!(e.counts["source_addresses"], 4);
    assert_eq!(e.counts["distinct_usernames"], 10);
    // Twelve users each mistyping their own password once.
    none(&run((0..12).map(|i| refused(i, &format!("pw{i}")))));
}

/// Passwords hashed in the client differ per account, so a spray shows as
/// four addresses each failing for five accounts (under the per-client
/// bar) and succeeding for none: one event. Twin: twenty users behind the
/// same four addresses each mistyping once, then getting in.
#[test]
fn stuffing_spread_over_addresses_and_the_shared_address_twin() {
    let attempt = |i: u64, ok: bool, t: u64| {
        let (status, reply) = if ok {
            (200, issued_reply(&format!("u{i}"), T0))
        } else {
            (401, r#"{"error":"nope"}"#.to_string())
        };
        login(
            &format!("10.0.2.{}", i % 4),
            &format!("u{i}"),
            &format!("hash-of-u{i}-{ok}"),
            status,
            &reply,
            t,
        )
    };
    let events = run((0..20).map(|i| attempt(i, false, i)));
    let e = only(&events, "detect.auth.credential_stuffing");
    assert_eq!(e.counts["source_addresses"], 4);
    assert_eq!(e.counts["distinct_usernames"], 10);
    none(&run((0..20).flat_map(|i| {
        [attempt(i, false, 2 * i), attempt(i, true, 2 * i + 1)]
    })));
}

// ----------------------------------------------------- missing auth, probing

/// 25 calls with credentials by eight users to their own accounts over
/// 120 s, answered with their email address.
fn accounts_with_credentials() -> Vec<Call> {
    (0..25)
        .map(|i| {
            let n = i % 8;
            user_get(n, &format!("/api/accounts/{}", 100 + n))
                .reply(&format!(
                    r#"{{"id":{},"email":"user{n}@example.com"}}"#,
                    100 + n
                ))
                .at(i * 5)
        })
        .collect()
}

#[test]
fn missing_auth_shown_by_refusals_and_its_public_twin() {
    let mut calls = accounts_with_credentials();
    // A call without credentials was refused: the endpoint requires them.
    calls.push(
        get("10.0.0.40", "/api/accounts/103")
            .status(401)
            .reply(r#"{"error":"unauthorized"}"#)
            .at(60),
    );
    let mut h = Harness::new();
    none(&h.run(calls));
    let events = h.observe(
        &get("10.0.0.41", "/api/accounts/105")
            .reply(r#"{"id":105}"#)
            .at(130),
    );
    let e = only(&events, "detect.auth.missing_auth_accepted");
    assert_eq!(endpoint(e), "GET api.test/api/accounts/{id}");
    assert_eq!(actor_ip(e), "10.0.0.41");
    assert_eq!(principal(e), None);
    // A public endpoint answers with and without credentials alike.
    let public = (0..30).map(|i| {
        let c = if i % 2 == 0 {
            user_get(i % 8, &format!("/api/products/{i}"))
        } else {
            get("10.0.0.42", &format!("/api/products/{i}"))
        };
        c.reply(r#"{"name":"tea"}"#).at(i * 5)
    });
    let mut h = Harness::new();
    none(&h.run(public));
    none(&h.observe(&get("10.0.0.41", "/api/products/3").at(200)));
}

#[test]
fn missing_auth_implied_by_sensitive_data_and_its_twin() {
    let mut h = Harness::new();
    none(&h.run(accounts_with_credentials()));
    // Never refused anyone, but always called with credentials by eight
    // principals: an anonymous caller receiving an email address is wrong.
    let events = h.observe(
        &get("10.0.0.41", "/api/accounts/105")
            .reply(r#"{"id":105,"email":"user5@example.com"}"#)
            .at(130),
    );
    let e = only(&events, "detect.auth.missing_auth_accepted");
    assert_eq!(endpoint(e), "GET api.test/api/accounts/{id}");
    assert_eq!(actor_ip(e), "10.0.0.41");
    // Twin: the same anonymous success without sensitive data.
    let mut h = Harness::new();
    none(&h.run(accounts_with_credentials()));
    none(
        &h.observe(
            &get("10.0.0.41", "/api/accounts/105")
                .reply(r#"{"id":105}"#)
                .at(130),
        ),
    );
}

#[test]
fn missing_auth_is_reported_for_each_anonymous_client() {
    let mut calls = accounts_with_credentials();
    calls.push(get("10.0.0.40", "/api/accounts/103").status(401).at(60));
    let mut h = Harness::new();
    none(&h.run(calls));
    let first = h.observe(&get("10.0.0.41", "/api/accounts/105").at(130));
    only(&first, "detect.auth.missing_auth_accepted");
    let second = h.observe(&get("10.0.0.42", "/api/accounts/106").at(131));
    let e = only(&second, "detect.auth.missing_auth_accepted");
    assert_eq!(actor_ip(e), "10.0.0.42");
}

/// Six endpoints, each used successfully with credentials by user 0.
fn credentialed_endpoints() -> Vec<Call> {
    [
        "orders", "invoices", "payments", "messages", "settings", "contacts",
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| {
        user_get(0, &format!("/api/{name}"))
            .reply(&format!(r#"{{"{name}":[],"total_{name}":0}}"#))
            .at(i as u64)
    })
    .collect()
}

#[test]
fn unauthenticated_probing_and_its_logged_out_user_twin() {
    let names = [
        "orders", "invoices", "payments", "messages", "settings", "contacts",
    ];
    let refused = |ip: &str, name: &str, t| {
        get(ip, &format!("/api/{name}"))
            .status(401)
            .reply(r#"{"error":"unauthorized"}"#)
            .at(t)
    };
    let mut h = Harness::new();
    none(&h.run(credentialed_endpoints()));
    let events = h.run(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| refused("10.0.0.50", n, 20 + i as u64)),
    );
    let e = only(&events, "detect.auth.unauthenticated_probing");
    assert_eq!(endpoint(e), "GET api.test/api/contacts");
    assert_eq!(actor_ip(e), "10.0.0.50");
    assert_eq!(e.counts["endpoints"], 6);
    assert_eq!(e.counts["refusals"], 6);
    // The user whose session ended: refused without credentials on the
    // endpoints it was just using.
    let mut h = Harness::new();
    none(&h.run(credentialed_endpoints()));
    let (ip, _) = user(0);
    none(
        &h.run(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| refused(&ip, n, 20 + i as u64)),
        ),
    );
}

/// Endpoints no credentialed client was seen using yet still say they need
/// credentials when they answer 401: probing them counts. Twin: 403s on
/// such endpoints (a CSRF check, a policy) do not.
#[test]
fn probing_endpoints_that_answer_401_and_the_403_twin() {
    let unseen = ["vault", "vault/items", "vault/export"];
    let probe = |status: u16| {
        let mut h = Harness::new();
        none(&h.run(credentialed_endpoints()));
        h.run((0..6u64).map(|i| {
            get("10.0.0.51", &format!("/api/{}", unseen[i as usize % 3]))
                .status(status)
                .reply(r#"{"error":"unauthorized"}"#)
                .at(20 + i)
        }))
    };
    let events = probe(401);
    let e = only(&events, "detect.auth.unauthenticated_probing");
    assert_eq!(e.counts["endpoints"], 3);
    none(&probe(403));
}

// ---------------------------------------------------------------------- JWT

fn unsigned(claims: Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn jwt_alg_none_accepted_and_its_refused_twin() {
    // Accepted: the answer is about the principal the token claims.
    let forged = unsigned(json!({"sub": "mallory", "role": "admin"}));
    let events = run([get("10.0.0.9", "/api/admin/users")
        .bearer(&forged)
        .reply(r#"[{"username":"mallory","role":"admin"}]"#)
        .at(10)]);
    let e = only(&events, "detect.jwt.alg_none_accepted");
    assert_eq!(endpoint(e), "GET api.test/api/admin/users");
    assert_eq!(actor_ip(e), "10.0.0.9");
    assert_eq!(principal(e), Some("mallory"));
    // Twins: refused; and served by an endpoint not shown to act on
    // tokens (one such attempt is not yet a finding).
    none(&run([get("10.0.0.8", "/api/admin/users")
        .bearer(&forged)
        .status(401)
        .reply("")
        .at(10)]));
    none(&run([get("10.0.0.8", "/api/catalog")
        .bearer(&forged)
        .reply(r#"[{"sku":"a1"}]"#)
        .at(10)]));
}

/// `/api/me`, checked: eight users with valid tokens, one bad token refused.
/// `/api/catalog`, public: anonymous calls succeed.
fn me_and_catalog() -> Vec<Call> {
    let mut calls: Vec<Call> = (0..8)
        .map(|n| {
            let (ip, _) = user(n);
            let valid = token(json!({"sub": format!("user{n}"), "exp": T0 + 3600}));
            get(&ip, "/api/me").bearer(&valid).at(n)
        })
        .collect();
    calls.push(
        get("10.0.0.30", "/api/me")
            .bearer("not-a-token")
            .status(401)
            .at(9),
    );
    calls.extend((0..5).map(|i| get("10.0.0.31", "/api/catalog").at(10 + i)));
    calls
}

#[test]
fn jwt_expired_accepted_only_where_credentials_are_checked() {
    let expired = token(json!({"sub": "user3", "exp": T0 + 10}));
    let mut h = Harness::new();
    none(&h.run(me_and_catalog()));
    let events = h.observe(&get("10.0.1.4", "/api/me").bearer(&expired).at(910));
    let e = only(&events, "detect.jwt.expired_accepted");
    assert_eq!(endpoint(e), "GET api.test/api/me");
    assert_eq!(actor_ip(e), "10.0.1.4");
    assert_eq!(principal(e), Some("user3"));
    assert_eq!(e.counts["expired_for_secs"], 900);
    // Twins: a public endpoint that ignores the token, the same token
    // within the clock skew, and within the leeway JWT libraries allow by
    // default (a minute to five past `exp`).
    let mut h = Harness::new();
    none(&h.run(me_and_catalog()));
    none(&h.observe(&get("10.0.1.4", "/api/catalog").bearer(&expired).at(910)));
    none(&h.observe(&get("10.0.1.4", "/api/me").bearer(&expired).at(13)));
    none(&h.observe(&get("10.0.1.4", "/api/me").bearer(&expired).at(100)));
}

#[test]
fn jwt_weak_secret_and_its_twin() {
    let weak = sign_hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"sub": "eve"}),
        "secret",
    );
    let me = r#"{"username":"eve"}"#;
    let events = run([get("10.0.0.6", "/api/me").bearer(&weak).reply(me).at(10)]);
    let e = only(&events, "detect.jwt.weak_secret");
    assert_eq!(endpoint(e), "GET api.test/api/me");
    assert_eq!(principal(e), Some("eve"));
    none(&run([get("10.0.0.6", "/api/me")
        .bearer(&token(json!({"sub": "eve"})))
        .reply(me)
        .at(10)]));
}

/// Three logins, each handing out a one-hour token.
fn three_logins() -> Vec<Call> {
    ["ann", "bo", "cy"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            login(
                &format!("10.0.0.{}", 2 + i),
                name,
                "right",
                200,
                &issued_reply(name, T0 + i as u64),
                i as u64,
            )
        })
        .collect()
}

#[test]
fn jwt_forged_accepted_and_its_twins() {
    let mut h = Harness::new();
    none(&h.run(three_logins()));
    // Twins: an issued token, and a token of the issued shape from a login
    // this sensor did not see.
    let issued = token(json!({"sub": "ann", "role": "user", "iat": T0, "exp": T0 + 3600}));
    let me = |name: &str| format!(r#"{{"sub":"{name}"}}"#);
    none(
        &h.observe(
            &get("10.0.0.2", "/api/me")
                .bearer(&issued)
                .reply(&me("ann"))
                .at(20),
        ),
    );
    let unseen = token(json!({"sub": "dee", "role": "user", "iat": T0 + 5, "exp": T0 + 3605}));
    none(
        &h.observe(
            &get("10.0.0.7", "/api/me")
                .bearer(&unseen)
                .reply(&me("dee"))
                .at(21),
        ),
    );
    // Another claim set and a ten-year lifetime: not what the API issues.
    let forged = token(json!({
        "sub": "ann", "role": "user", "admin": true, "iat": T0, "exp": T0 + 315_360_000
    }));
    let events = h.observe(
        &get("10.0.0.66", "/api/me")
            .bearer(&forged)
            .reply(&me("ann"))
            .at(30),
    );
    let e = only(&events, "detect.jwt.forged_token_accepted");
    assert_eq!(endpoint(e), "GET api.test/api/me");
    assert_eq!(actor_ip(e), "10.0.0.66");
    let reasons = e.attributes["reasons"].to_string();
    assert!(
        reasons.contains("ClaimsDiffer") && reasons.contains("LifetimeDiffers"),
        "{reasons}"
    );
}

#[test]
fn jwt_forgery_attempts_and_their_twin() {
    // Two different unsigned tokens, both refused.
    let attempts = [
        unsigned(json!({"sub": "admin"})),
        unsigned(json!({"sub": "root"})),
    ];
    let events = run(attempts.iter().enumerate().map(|(i, t)| {
        get("10.0.0.66", "/api/admin/users")
            .bearer(t)
            .status(401)
            .at(i as u64)
    }));
    let e = only(&events, "detect.jwt.forgery_attempts");
    assert_eq!(endpoint(e), "GET api.test/api/admin/users");
    assert_eq!(actor_ip(e), "10.0.0.66");
    assert_eq!(e.severity, Severity::Medium);
    assert_eq!(e.counts["forged_tokens"], 2);
    // Expired tokens of two principals replayed, refused.
    let stolen = ["ann", "bo"].map(|s| token(json!({"sub": s, "exp": T0 - 100})));
    let events = run(stolen.iter().enumerate().map(|(i, t)| {
        get("10.0.0.67", "/api/me")
            .bearer(t)
            .status(401)
            .at(i as u64)
    }));
    let e = only(&events, "detect.jwt.forgery_attempts");
    assert_eq!(e.counts["principals"], 2);
    // Twins: a user's own expired token refused three times, and two
    // well-formed tokens of one principal refused (a revoked session,
    // then a stale tab) from one address.
    let own = token(json!({"sub": "ann", "exp": T0 - 100}));
    none(&run((0..3).map(|i| {
        get("10.0.0.5", "/api/me").bearer(&own).status(401).at(i)
    })));
    let revoked = [T0 + 3600, T0 + 7200].map(|exp| token(json!({"sub": "ann", "exp": exp})));
    none(&run(revoked.iter().enumerate().map(|(i, t)| {
        get("10.0.0.5", "/api/me")
            .bearer(t)
            .status(401)
            .at(i as u64)
    })));
}

// ----------------------------------------------------------- authorization

/// Users 0..users each read `each` orders of their own.
fn own_orders(users: u64, each: u64) -> Vec<Call> {
    let mut calls = Vec::new();
    for k in 0..each {
        for u in 0..users {
            calls.push(
                user_get(u, &format!("/api/orders/{}", 1000 + u * 10 + k))
                    .reply(&format!(r#"{{"order":{},"total":3}}"#, 1000 + u * 10 + k))
                    .at(k * 10 + u),
            );
        }
    }
    calls
}

#[test]
fn bola_enumeration_and_its_twin() {
    let mut h = Harness::new();
    none(&h.run(own_orders(8, 3)));
    let thief = user_token("mallory", "user");
    let events = h.run((0..60).map(|id| {
        get("10.0.9.9", &format!("/api/orders/{}", 5000 + id))
            .bearer(&thief)
            .at(100 + id)
    }));
    let e = only(&events, "detect.authz.bola_enumeration");
    assert_eq!(endpoint(e), "GET api.test/api/orders/{id}");
    assert_eq!(principal(e), Some("mallory"));
    assert_eq!(actor_ip(e), "10.0.9.9");
    // Twins: many clients, each reading a few objects of their own; and
    // a catalog every client browses widely, where nobody stands out.
    none(&run(own_orders(30, 5)));
    let mut browsing = Vec::new();
    for k in 0..40 {
        for c in 0..8 {
            browsing.push(
                get(
                    &format!("10.0.3.{c}"),
                    &format!("/api/catalog/{}", c * 3 + k),
                )
                .at(k),
            );
        }
    }
    none(&run(browsing));
}

/// A mirror that reads a collection and then every object it listed
/// follows the API's links (twins: the same walk after a list that named
/// other ids, its own, is an enumeration). The population is the path's
/// whatever the method: users who each delete a token of their own make a
/// thief's reads of sixty stand out.
#[test]
fn listed_objects_are_followed_not_enumerated_and_methods_share_a_population() {
    let mirror = user_token("mirror", "user");
    let walk = |listed: bool| {
        let mut h = Harness::new();
        none(&h.run(own_orders(8, 3)));
        let first = if listed { 5000 } else { 9000 };
        let list: Vec<String> = (first..first + 60)
            .map(|id| format!(r#"{{"id":{id},"total":3}}"#))
            .collect();
        let mut calls = vec![get("10.0.9.9", "/api/orders")
            .bearer(&mirror)
            .reply(&format!(r#"{{"data":[{}]}}"#, list.join(",")))
            .at(99)];
        calls.extend((0..60).map(|id| {
            get("10.0.9.9", &format!("/api/orders/{}", 5000 + id))
                .bearer(&mirror)
                .reply(r#"{"order":5000,"total":3}"#)
                .at(100 + id)
        }));
        h.run(calls)
    };
    none(&walk(true));
    only(&walk(false), "detect.authz.bola_enumeration");
    let enumerations = |events: &[Event]| {
        events
            .iter()
            .filter(|e| e.rule == "detect.authz.bola_enumeration")
            .count()
    };
    let mut h = Harness::new();
    let deletes: Vec<Call> = (0..8)
        .map(|u| {
            let (ip, token) = user(u);
            call(&ip, "DELETE", &format!("/api/tokens/{}", 10 + u))
                .bearer(&token)
                .status(204)
                .at(u)
        })
        .collect();
    none(&h.run(deletes));
    let thief = user_token("mallory", "user");
    let events = h.run((0..60).map(|id| {
        get("10.0.9.9", &format!("/api/tokens/{}", 100 + id))
            .bearer(&thief)
            .status(404)
            .at(100 + id)
    }));
    assert_eq!(enumerations(&events), 1, "{}", describe(&events));
}

/// On a path nobody else uses, a logged-in actor refused (403) or told
/// "not found" on every one of many different objects is sweeping; twins:
/// the same walk answered with success (its own objects, as far as anyone
/// can tell) is not judged, and an anonymous not-found sweep is a
/// scanner's (its own rule).
#[test]
fn refused_sweep_on_an_unused_path_and_its_answered_twin() {
    let thief = user_token("mallory", "user");
    let sweep = |status: u16| {
        run((0..30).map(|id| {
            get("10.0.9.9", &format!("/api/submissions/{}", 3 * id))
                .bearer(&thief)
                .status(status)
                .at(100 + 2 * id)
        }))
    };
    let events = sweep(403);
    let e = only(&events, "detect.authz.bola_enumeration");
    assert_eq!(e.severity, Severity::Medium);
    none(&sweep(200));
    assert!(sweep(404)
        .iter()
        .any(|e| e.rule == "detect.authz.bola_enumeration"));
    let anonymous = run((0..30).map(|id| {
        get("10.0.9.8", &format!("/api/submissions/{}", 3 * id))
            .status(404)
            .at(100 + 2 * id)
    }));
    assert!(anonymous
        .iter()
        .all(|e| e.rule != "detect.authz.bola_enumeration"));
}

/// One address sweeping five paths gives three authorization events (the
/// rest are repeats); five addresses sweeping one path each give five.
#[test]
fn authorization_events_are_capped_per_address() {
    let thief = user_token("mallory", "user");
    let sweeps = |address: &dyn Fn(u64) -> String| {
        let calls: Vec<Call> = (0..5u64)
            .flat_map(|path| {
                let ip = address(path);
                let thief = thief.clone();
                (0..25u64).map(move |id| {
                    get(&ip, &format!("/api/thing{path}/{}", 3 * id))
                        .bearer(&thief)
                        .status(403)
                        .at(100 + 50 * path + id)
                })
            })
            .collect();
        run(calls)
            .iter()
            .filter(|e| e.rule == "detect.authz.bola_enumeration")
            .count()
    };
    assert_eq!(sweeps(&|_| "10.0.9.9".to_string()), 3);
    assert_eq!(sweeps(&|p| format!("10.0.9.{}", 10 + p)), 5);
}

#[test]
fn bola_foreign_object_and_its_twin() {
    let mut h = Harness::new();
    none(&h.run(own_orders(6, 3)));
    // The owners read their own objects again.
    none(&h.run(own_orders(6, 3).into_iter().map(|c| {
        let secs = c.secs + 60;
        c.at(secs)
    })));
    let mallory = user_token("mallory", "user");
    let read = |id: u64, t| {
        get("10.0.9.9", &format!("/api/orders/{id}"))
            .bearer(&mallory)
            .at(t)
    };
    none(&h.run([read(7000, 200), read(7001, 201)]));
    let events = h.run([read(1000, 202), read(1011, 203)]);
    let e = only(&events, "detect.authz.bola_foreign_object");
    assert_eq!(endpoint(e), "GET api.test/api/orders/{id}");
    assert_eq!(principal(e), Some("mallory"));
    assert_eq!(e.counts["foreign_objects"], 2);
    // Twin: objects everyone reads (articles), read by one more principal.
    let articles = (0..18).map(|i| {
        let (n, article) = (i % 6, 500 + i % 4);
        user_get(n, &format!("/api/articles/{article}")).at(i)
    });
    let mut h = Harness::new();
    none(&h.run(articles));
    none(&h.run((0..4).map(|k| {
        get("10.0.9.9", &format!("/api/articles/{}", 500 + k))
            .bearer(&mallory)
            .at(100 + k)
    })));
}

/// A creation answered with the object wrapped (`{"item": {...}}`) makes
/// its creator the owner, and an object's answer that includes others (a
/// board with its orders) lists them to the reader: a teammate following
/// the board, then the creator reading its own orders, are not foreign.
/// Twin: another principal reading the same orders unlisted is.
#[test]
fn wrapped_creations_are_owned_and_included_objects_are_listed_and_twin() {
    let mut h = Harness::new();
    none(&h.run(own_orders(6, 3)));
    let (ip0, token0) = user(0);
    let create = |id: u64, t: u64| {
        call(&ip0, "POST", "/api/orders")
            .bearer(&token0)
            .json(r#"{"total":1}"#)
            .reply(&format!(
                r#"{{"item":{{"id":{id},"total":1}},"included":{{}}}}"#
            ))
            .at(t)
    };
    none(&h.run([create(8000, 100), create(8001, 101)]));
    let board = r#"{"item":{"id":77},"included":{"orders":[{"id":8000},{"id":8001}]}}"#;
    let mut calls = vec![user_get(1, "/api/boards/77").reply(board).at(102)];
    for (t, id) in [(103, 8000), (104, 8001)] {
        calls.push(user_get(1, &format!("/api/orders/{id}")).at(t));
        calls.push(user_get(0, &format!("/api/orders/{id}")).at(t + 10));
    }
    none(&h.run(calls));
    let mallory = user_token("mallory", "user");
    let events = h.run([8000, 8001].map(|id| {
        get("10.0.9.9", &format!("/api/orders/{id}"))
            .bearer(&mallory)
            .at(200 + id % 10)
    }));
    let e = only(&events, "detect.authz.bola_foreign_object");
    assert_eq!(principal(e), Some("mallory"));
}

/// An API that filters objects by owner answers "not found" for someone
/// else's: other principals' objects refused that way are still tried.
/// Twin: "not found" for ids nobody was seen using.
#[test]
fn foreign_objects_answered_not_found_and_unknown_ids_twin() {
    let mallory = user_token("mallory", "user");
    let try_read = |id: u64, t| {
        get("10.0.9.9", &format!("/api/orders/{id}"))
            .bearer(&mallory)
            .status(404)
            .at(t)
    };
    let mut h = Harness::new();
    none(&h.run(own_orders(6, 3)));
    none(&h.run([
        try_read(7000, 200),
        try_read(7001, 201),
        try_read(7002, 202),
    ]));
    let events = h.run([try_read(1000, 203), try_read(1011, 204)]);
    let e = only(&events, "detect.authz.bola_foreign_object");
    assert_eq!(e.severity, crate::event::Severity::Medium);
    assert_eq!(e.counts["foreign_objects"], 2);
    assert_eq!(principal(e), Some("mallory"));
}

/// Refused writes naming three other principals in their bodies (moving
/// one's account onto their e-mail addresses): one event. Twins: the same
/// writes succeeding (invitations), and refused writes naming addresses no
/// principal goes by.
#[test]
fn refused_writes_naming_other_principals_and_their_twins() {
    let mallory = user_token("mallory", "user");
    let change = |to: &str, status: u16, t: u64| {
        call("10.0.9.9", "POST", "/api/accounts/email")
            .bearer(&mallory)
            .json(&format!(r#"{{"newEmail":"{to}","secret":"x"}}"#))
            .status(status)
            .reply(r#"{"message":"Email already taken"}"#)
            .at(t)
    };
    let attempts = |status: u16, domain: &str| {
        let mut h = Harness::new();
        none(&h.run((0..6).map(|n| user_get(n, "/api/accounts/profile").at(n))));
        h.run((0..3).map(|n| change(&format!("user{n}@{domain}"), status, 100 + n)))
    };
    let events = attempts(400, "example.com");
    let e = only(&events, "detect.authz.self_service_other_principal");
    assert_eq!(e.severity, crate::event::Severity::Medium);
    assert_eq!(e.counts["principals_named"], 3);
    assert_eq!(principal(e), Some("mallory"));
    none(&attempts(200, "example.com"));
    none(&attempts(400, "example.org"));
}

/// Writes refused on five different accounts by id: one event. Twins: four
/// of them, and five refused reads (enumeration judges reads against the
/// population).
#[test]
fn refused_writes_on_many_objects_and_their_twins() {
    let mallory = user_token("mallory", "user");
    let attempt = |method: &str, n: u64| {
        call("10.0.9.9", method, &format!("/api/users/{}", 20 + n))
            .bearer(&mallory)
            .json(r#"{"password":"Owned123!"}"#)
            .status(403)
            .reply(r#"{"message":"admins only"}"#)
            .at(100 + n)
    };
    let attempts = |method: &str, objects: u64| {
        let mut h = Harness::new();
        none(&h.run((0..6).map(|n| user_get(n, "/api/users/me").at(n))));
        h.run((0..objects).map(|n| attempt(method, n)))
    };
    let events = attempts("PATCH", 5);
    let e = only(&events, "detect.authz.bola_foreign_object");
    assert_eq!(e.severity, crate::event::Severity::Medium);
    assert_eq!(e.counts["refused_objects"], 5);
    assert_eq!(endpoint(e), "PATCH api.test/api/users/{id}");
    none(&attempts("PATCH", 4));
    none(&attempts("GET", 5));
}

/// Each of six users creates recipes answered by their slug alone, in its
/// own household, and re-reads them: two households both have an
/// `apple-pie`, which is a name each picks, not one object. Twin: a user
/// reading two slugs only another user created.
#[test]
fn slugs_each_tenant_creates_are_not_foreign_and_the_reader_twin() {
    let create = |n: u64, slug: &str, t: u64| {
        let (ip, token) = user(n);
        call(&ip, "POST", "/api/recipes")
            .bearer(&token)
            .json(r#"{"name":"x"}"#)
            .status(201)
            .reply(&format!(r#""{slug}""#))
            .at(t)
    };
    let read = |n: u64, slug: &str, t: u64| {
        user_get(n, &format!("/api/recipes/{slug}"))
            .reply(r#"{"name":"x","slug":"s","steps":[]}"#)
            .at(t)
    };
    let mut calls = Vec::new();
    for n in 0..6u64 {
        let own = [
            "apple-pie".to_string(),
            format!("stew-of-user{n}"),
            format!("cake-of-user{n}"),
        ];
        for (k, slug) in own.iter().enumerate() {
            let t = 100 * k as u64 + 10 * n;
            calls.push(create(n, slug, t));
            calls.push(read(n, slug, t + 1));
            calls.push(read(n, slug, t + 300));
        }
    }
    calls.sort_by_key(|c| c.secs);
    let mut h = Harness::new();
    none(&h.run(calls));
    let events = h.run([read(6, "stew-of-user1", 700), read(6, "cake-of-user2", 701)]);
    let e = only(&events, "detect.authz.bola_foreign_object");
    assert_eq!(e.counts["foreign_objects"], 2);
}

/// Six users each reading their own profile, named by their email.
fn own_profiles() -> Vec<Call> {
    (0..12)
        .map(|i| {
            let n = i % 6;
            user_get(n, &format!("/api/users/user{n}@example.com/profile")).at(i)
        })
        .collect()
}

#[test]
fn self_service_other_principal_and_its_twin() {
    let mut h = Harness::new();
    none(&h.run(own_profiles()));
    let events = h.observe(&user_get(2, "/api/users/user1@example.com/profile").at(30));
    let e = only(&events, "detect.authz.self_service_other_principal");
    assert_eq!(endpoint(e), "GET api.test/api/users/{email}/profile");
    assert_eq!(principal(e), Some("user2"));
    none(&h.observe(&user_get(3, "/api/users/user3@example.com/profile").at(31)));
}

fn role_get(sub: &str, role: &str, uri: &str, status: u16, t: u64) -> Call {
    get("10.0.0.20", uri)
        .bearer(&user_token(sub, role))
        .status(status)
        .reply("[]")
        .at(t)
}

#[test]
fn function_level_where_others_are_refused_and_its_admin_twin() {
    let mut h = Harness::new();
    // `root`'s role is no known administrator name: its privilege is
    // learned from succeeding where `bob` is refused.
    none(&h.run([
        role_get("root", "ops", "/api/admin/users", 200, 1),
        role_get("bob", "user", "/api/admin/users", 403, 2),
        role_get("root", "ops", "/api/admin/users", 200, 3),
        role_get("dana", "admin", "/api/admin/users", 200, 4),
    ]));
    let events = h.observe(&role_get("carol", "user", "/api/admin/users", 200, 5));
    let e = only(&events, "detect.authz.function_level");
    assert_eq!(endpoint(e), "GET api.test/api/admin/users");
    assert_eq!(principal(e), Some("carol"));
    assert_eq!(e.severity, Severity::High);
}

#[test]
fn function_level_only_privileged_in_the_baseline_and_its_admin_twin() {
    let mut h = Harness::new();
    // Ordinary traffic: ten users on their own items for four minutes.
    none(&h.run((0..220).map(|i| {
        let n = i % 10;
        user_get(n, &format!("/api/items/{}", 100 + n)).at(i)
    })));
    // Administrators export twice.
    none(&h.run([
        role_get("root", "admin", "/api/admin/export", 200, 10),
        role_get("dana", "admin", "/api/admin/export", 200, 20),
    ]));
    // Twin: an administrator again.
    none(&h.observe(&role_get("root", "admin", "/api/admin/export", 200, 230)));
    let events = h.observe(&role_get("carol", "user", "/api/admin/export", 200, 240));
    let e = only(&events, "detect.authz.function_level");
    assert_eq!(endpoint(e), "GET api.test/api/admin/export");
    assert_eq!(principal(e), Some("carol"));
}

#[test]
fn function_level_probing_refused_and_its_twin() {
    // Two functions known restricted: root allowed, bob refused.
    let setup = [
        role_get("root", "ops", "/api/admin/users", 200, 1),
        role_get("bob", "user", "/api/admin/users", 403, 2),
        role_get("root", "ops", "/api/admin/settings", 200, 3),
        role_get("bob", "user", "/api/admin/settings", 403, 4),
    ];
    let mut h = Harness::new();
    none(&h.run(setup.clone()));
    let events = h.run(
        ["users", "settings", "logs"]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                role_get(
                    "eve",
                    "user",
                    &format!("/api/admin/{f}"),
                    403,
                    10 + i as u64,
                )
            }),
    );
    let e = only(&events, "detect.authz.function_level");
    assert_eq!(endpoint(e), "GET api.test/api/admin/logs");
    assert_eq!(e.severity, Severity::Medium);
    assert_eq!(e.counts["functions"], 3);
    assert!(e.title.contains("refused"), "{}", e.title);
    // Refused on three endpoints none of which is known to be restricted.
    let mut h = Harness::new();
    none(&h.run(setup));
    none(
        &h.run(
            ["reports", "exports", "teams"]
                .iter()
                .enumerate()
                .map(|(i, f)| role_get("eve", "user", &format!("/api/{f}"), 403, 10 + i as u64)),
        ),
    );
}

#[test]
fn function_level_probing_answered_not_found_and_its_twin() {
    // `root` alone is served the two administrative functions; four
    // users are served the notes.
    let mut setup = vec![
        role_get("root", "ops", "/api/admin/users", 200, 1),
        role_get("root", "ops", "/api/admin/settings", 200, 2),
    ];
    for (i, u) in ["ann", "bob", "cid", "dot"].iter().enumerate() {
        setup.push(role_get(u, "user", "/api/notes", 200, 3 + i as u64));
    }
    let probe = |paths: [&'static str; 3]| {
        paths
            .into_iter()
            .enumerate()
            .map(|(i, p)| role_get("eve", "user", p, 404, 10 + i as u64))
    };
    // The API hides its functions from `eve` behind "not found".
    let mut h = Harness::new();
    none(&h.run(setup.clone()));
    let events = h.run(probe([
        "/api/admin/users",
        "/api/admin/settings",
        "/api/notes",
    ]));
    let e = only(&events, "detect.authz.function_level");
    assert_eq!(e.severity, Severity::Medium);
    assert_eq!(e.counts["functions"], 3);
    // "Not found" on paths the API never served anyone is no refusal, nor
    // on one whose 200 to others said "not found" (a typo's answer).
    let mut h = Harness::new();
    none(&h.run(setup.clone()));
    none(&h.run(probe(["/api/admin/logs", "/api/admin/keys", "/api/export"])));
    let mut h = Harness::new();
    none(&h.run(setup.clone()));
    none(
        &h.observe(
            &get("10.0.0.20", "/api/v3/notes")
                .bearer(&user_token("ann", "user"))
                .reply(r#"{"error":"Not found"}"#)
                .at(9),
        ),
    );
    none(&h.run(probe([
        "/api/admin/users",
        "/api/admin/settings",
        "/api/v3/notes",
    ])));
    // Nor is being sent to the login page (a key on pages that take
    // sessions) a refusal of the function.
    let mut h = Harness::new();
    none(&h.run(setup.clone()));
    let to_login =
        |p: &str, t| role_get("eve", "user", p, 302, t).reply_header("Location", "/login/?next=/x");
    none(&h.run([
        to_login("/api/admin/users", 10),
        to_login("/api/admin/settings", 11),
        to_login("/api/notes", 12),
    ]));
}

#[test]
fn mass_assignment_and_its_twins() {
    let patch = |n: u64, uri: &str, body: &str, t| {
        let (ip, token) = user(n);
        call(&ip, "PATCH", uri).bearer(&token).json(body).at(t)
    };
    let mut h = Harness::new();
    none(&h.run((0..25).map(|i| {
        let n = i % 8;
        patch(
            n,
            &format!("/api/users/{}", 100 + n),
            r#"{"phone":"555-0100"}"#,
            i * 5,
        )
    })));
    let events = h.observe(&patch(
        3,
        "/api/users/103",
        r#"{"phone":"555-0100","role":"admin"}"#,
        200,
    ));
    let e = only(&events, "detect.authz.mass_assignment");
    assert_eq!(endpoint(e), "PATCH api.test/api/users/{id}");
    assert_eq!(principal(e), Some("user3"));
    // Who made an object, and when, are the server's to set.
    let events = h.observe(&patch(
        4,
        "/api/users/104",
        r#"{"phone":"555-0100","creatorUserId":"1","createdAt":"2020-01-01"}"#,
        201,
    ));
    only(&events, "detect.authz.mass_assignment");
    // Twin: `role` on an endpoint whose requests always set it.
    let mut h = Harness::new();
    let member = |i: u64| {
        patch(
            i % 8,
            &format!("/api/teams/{}/members", 10 + i % 8),
            r#"{"user_id":7,"role":"editor"}"#,
            i * 5,
        )
    };
    none(&h.run((0..26).map(member)));
}

// ---------------------------------------------------------------- exposure

#[test]
fn unusual_sensitive_data_and_its_twin() {
    let profile = |i: u64, extra: &str| {
        let n = i % 8;
        user_get(n, "/api/users/me")
            .reply(&format!(r#"{{"email":"user{n}@example.com"{extra}}}"#))
            .at(i * 5)
    };
    let mut h = Harness::new();
    none(&h.run((0..25).map(|i| profile(i, ""))));
    // Twins: the same kind of answer; one new contact detail (a manager's
    // phone shown beside the profile).
    none(&h.observe(&profile(26, "")));
    none(&h.observe(&profile(26, r#","manager":{"phone":"+14155552671"}"#)));
    let events = h.observe(&profile(27, r#","card":"4111 1111 1111 1111""#));
    let e = only(&events, "detect.exposure.unusual_sensitive_data");
    assert_eq!(endpoint(e), "GET api.test/api/users/me");
    assert_eq!(principal(e), Some("user3"));
    assert!(
        e.text.what_happened.contains("credit_card"),
        "{}",
        e.text.what_happened
    );
}

/// Ten users reading their own profile three times a minute for two minutes.
fn profile_readers() -> Vec<Call> {
    let mut calls = Vec::new();
    for minute in 0..2 {
        for n in 0..10 {
            for k in 0..3 {
                calls.push(
                    user_get(n, "/api/users/me")
                        .reply(&format!(r#"{{"email":"user{n}@example.com"}}"#))
                        .at(minute * 60 + n * 3 + k),
                );
            }
        }
    }
    calls
}

#[test]
fn data_volume_and_its_twin() {
    // Ten readers of small answers, then a client pulling a 40 KiB
    // collection sixty times within a minute (2.4 MiB).
    let mut h = Harness::new();
    none(&h.run(profile_readers()));
    let key = user_token("mallory", "user");
    let events = h.run((0..60).map(|k| {
        get("10.0.9.9", "/api/checks")
            .bearer(&key)
            .reply("[]")
            .reply_len(40 * 1024)
            .at(120 + k / 2)
    }));
    let e = only(&events, "detect.exposure.data_volume");
    assert_eq!(endpoint(e), "GET api.test/api/checks");
    assert_eq!(actor_ip(e), "10.0.9.9");
    assert!(e.counts["kib_per_minute"] >= 1024, "{:?}", e.counts);
    // Twin: the same collection fetched now and then.
    let mut h = Harness::new();
    none(&h.run(profile_readers()));
    none(&h.run((0..6).map(|k| {
        get("10.0.9.9", "/api/checks")
            .bearer(&key)
            .reply("[]")
            .reply_len(40 * 1024)
            .at(120 + k * 10)
    })));
}

/// One user's several credentials (a read-write key, a read-only key)
/// used from one address are one party: reading with one what the other
/// created is not someone else's object.
#[test]
fn one_user_with_two_keys_is_not_foreign_and_its_twin() {
    let mut h = Harness::new();
    // Six users each create and read their own items with key A, and
    // read them with key B from the same address.
    for n in 0..6u64 {
        let ip = format!("10.0.7.{n}");
        let (a, b) = (format!("rw-{n}"), format!("ro-{n}"));
        let id = 500 + n;
        none(
            &h.run([
                get(&ip, &format!("/api/items/{id}"))
                    .header("X-Api-Key", &a)
                    .reply(r#"{"id":1}"#)
                    .at(n * 5),
                get(&ip, &format!("/api/items/{id}"))
                    .header("X-Api-Key", &a)
                    .reply(r#"{"id":1}"#)
                    .at(n * 5 + 1),
                get(&ip, &format!("/api/items/{id}"))
                    .header("X-Api-Key", &b)
                    .reply(r#"{"id":1}"#)
                    .at(n * 5 + 2),
                get(&ip, &format!("/api/items/{}", id + 100))
                    .header("X-Api-Key", &b)
                    .reply(r#"{"id":1}"#)
                    .at(n * 5 + 3),
                get(&ip, &format!("/api/items/{}", id + 100))
                    .header("X-Api-Key", &a)
                    .reply(r#"{"id":1}"#)
                    .at(n * 5 + 4),
            ]),
        );
    }
    // Twin: another address using two of those objects is foreign.
    let events = h.run([
        get("10.0.9.1", "/api/items/501")
            .header("X-Api-Key", "thief")
            .reply(r#"{"id":1}"#)
            .at(60),
        get("10.0.9.1", "/api/items/502")
            .header("X-Api-Key", "thief")
            .reply(r#"{"id":1}"#)
            .at(61),
    ]);
    let e = only(&events, "detect.authz.bola_foreign_object");
    assert_eq!(actor_ip(e), "10.0.9.1");
}

#[test]
fn sensitive_volume_and_its_twin() {
    let mut h = Harness::new();
    none(&h.run(profile_readers()));
    // A client paging through every user's record within one minute.
    let scraper = user_token("mallory", "user");
    let events = h.run((0..60).map(|page| {
        get("10.0.9.9", &format!("/api/directory?page={page}"))
            .bearer(&scraper)
            .reply(&format!(r#"{{"email":"person{page}@example.com"}}"#))
            .at(120 + page / 2)
    }));
    let e = only(&events, "detect.exposure.sensitive_volume");
    assert_eq!(endpoint(e), "GET api.test/api/directory");
    assert_eq!(principal(e), Some("mallory"));
    assert_eq!(e.counts["sensitive_values_per_minute"], 50);
    // Twin: the same readers a third minute, one of them twice as often.
    let mut h = Harness::new();
    none(&h.run(profile_readers()));
    none(&h.run((0..10).flat_map(|n| {
        let reads = if n == 0 { 6 } else { 3 };
        (0..reads).map(move |k| {
            user_get(n, "/api/users/me")
                .reply(&format!(r#"{{"email":"user{n}@example.com"}}"#))
                .at(120 + n * 5 + k)
        })
    })));
}

#[test]
fn sensitive_volume_counts_every_record_of_bulk_exports() {
    let records: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"email":"person{i}@example.com"}}"#))
        .collect();
    let export = format!("[{}]", records.join(","));
    // Twin: one export (an administrator's list) is not a dump.
    let mut h = Harness::new();
    none(&h.run(profile_readers()));
    none(&h.observe(&user_get(3, "/api/users/export").reply(&export).at(130)));
    // The export pulled again and again within a minute: every record
    // counts, 400 per response, and five exports are a dump.
    let mut h = Harness::new();
    none(&h.run(profile_readers()));
    let events = h.run((0..6).map(|k| user_get(3, "/api/users/export").reply(&export).at(130 + k)));
    let e = only(&events, "detect.exposure.sensitive_volume");
    assert_eq!(e.counts["sensitive_values_per_minute"], 2000);
}

#[test]
fn verbose_error_and_its_twin() {
    let events = run([get("10.0.0.5", "/api/orders/17")
        .status(500)
        .reply("Traceback (most recent call last):\n  File \"app.py\", line 3")
        .at(1)]);
    let e = only(&events, "detect.exposure.verbose_error");
    assert_eq!(endpoint(e), "GET api.test/api/orders/{id}");
    assert_eq!(actor_ip(e), "10.0.0.5");
    none(&run([get("10.0.0.5", "/api/orders/17")
        .status(500)
        .reply(r#"{"error":"internal error"}"#)
        .at(1)]));
    // An error model whose stack-trace field is empty says nothing; one
    // that fills it does.
    let model = |trace: &str| {
        run([get("10.0.0.5", "/api/orders/17")
            .status(400)
            .reply(&format!(
                r#"{{"message":"Invalid","exceptionMessage":null,"exceptionStackTrace":{trace},"object":"error"}}"#
            ))
            .at(1)])
    };
    none(&model("null"));
    only(
        &model(r#""at Vault.Api.Get()""#),
        "detect.exposure.verbose_error",
    );
}

// ---------------------------------------------------------------- resources

/// Twelve clients at eight requests a minute for three minutes; client 0
/// at `busiest` a minute.
fn steady_clients(busiest: u64) -> Vec<Call> {
    let mut calls = Vec::new();
    for minute in 0..3 {
        for c in 0..12u64 {
            let n = if c == 0 { busiest } else { 8 };
            for k in 0..n {
                calls.push(get(&format!("10.0.2.{c}"), "/api/items").at(minute * 60 + k * 59 / n));
            }
        }
    }
    calls.sort_by_key(|c| c.secs);
    calls
}

#[test]
fn rate_abuse_and_its_twin() {
    let mut h = Harness::new();
    none(&h.run(steady_clients(8)));
    // Fifteen times the others' busiest minute: worth a look (low); at
    // twenty times, abuse (medium), reported once more.
    let events = h.run((0..200).map(|k| get("10.0.2.99", "/api/items").at(180 + k * 59 / 200)));
    let [low, far] = events.as_slice() else {
        panic!("{events:?}")
    };
    for e in [low, far] {
        assert_eq!(e.rule, "detect.resource.rate_abuse");
        assert_eq!(endpoint(e), "GET api.test/api/items");
        assert_eq!(actor_ip(e), "10.0.2.99");
    }
    assert_eq!(low.severity, crate::event::Severity::Low);
    assert_eq!(low.counts["requests_per_minute"], 120);
    assert_eq!(far.severity, crate::event::Severity::Medium);
    assert_eq!(far.counts["requests_per_minute"], 160);
    // A scripted client's first burst at sixteen times the others' pace
    // (a mirror): low only.
    let mut h = Harness::new();
    none(&h.run(steady_clients(8)));
    let events = h.run((0..130).map(|k| get("10.0.2.98", "/api/items").at(180 + k * 59 / 130)));
    let e = only(&events, "detect.resource.rate_abuse");
    assert_eq!(e.severity, crate::event::Severity::Low);
    // A client that is always this busy, from the start.
    none(&run(steady_clients(150)));
}

/// A burst that begins late in one minute is judged whole: its first
/// seconds are not a history that the next minute must quadruple. Twin: a
/// busy minute with a quiet one between is history.
#[test]
fn a_burst_across_a_minute_boundary_and_its_twin() {
    let burst = |start: u64| {
        let mut calls: Vec<Call> = (0..60)
            .map(|k| get("10.0.2.97", "/api/items").at(start + k / 6))
            .collect();
        calls.extend((0..200).map(|k| get("10.0.2.97", "/api/items").at(180 + k * 59 / 200)));
        calls
    };
    let mut h = Harness::new();
    let mut calls = steady_clients(8);
    calls.extend(burst(170));
    calls.sort_by_key(|c| c.secs);
    let events = h.run(calls);
    assert!(
        events
            .iter()
            .any(|e| e.rule == "detect.resource.rate_abuse"),
        "{events:?}"
    );
    let mut h = Harness::new();
    let mut calls = steady_clients(8);
    calls.extend(burst(110));
    calls.sort_by_key(|c| c.secs);
    none(&h.run(calls));
}

#[test]
fn page_size_abuse_and_its_twin() {
    let page = |n: u64, limit: u64, t| user_get(n, &format!("/api/products?limit={limit}")).at(t);
    let mut h = Harness::new();
    none(&h.run((0..30).map(|i| page(i % 8, 20, i))));
    none(&h.observe(&page(1, 50, 40)));
    let events = h.observe(&page(2, 100_000, 41));
    let e = only(&events, "detect.resource.page_size_abuse");
    assert_eq!(endpoint(e), "GET api.test/api/products");
    assert_eq!(principal(e), Some("user2"));
    assert!(e.title.contains("limit=100000"), "{}", e.title);
    // The same client asking another collection is the same campaign.
    none(&h.observe(&user_get(2, "/api/orders?limit=100000").at(42)));
    // Without a baseline, only huge pages count.
    none(&run([page(1, 5000, 1)]));
    only(
        &run([page(1, 50_000, 1)]),
        "detect.resource.page_size_abuse",
    );
}

#[test]
fn oversized_response_and_its_twin() {
    let report = |i: u64, bytes: u64, t| user_get(i % 8, "/api/report").reply_len(bytes).at(t);
    let mut h = Harness::new();
    none(&h.run((0..30).map(|i| report(i, 2_000 + i * 10, i * 5))));
    none(&h.observe(&report(1, 30_000, 200)));
    let events = h.observe(&report(2, 5_000_000, 201));
    let e = only(&events, "detect.resource.oversized_response");
    assert_eq!(endpoint(e), "GET api.test/api/report");
    assert_eq!(principal(e), Some("user2"));
    assert_eq!(e.counts["bytes"], 5_000_000);
}

// ---------------------------------------------------------------- inventory

#[test]
fn unknown_host_after_learning_and_its_twins() {
    let mut h = Harness::new();
    // Learning names the hosts, including a second one.
    let mut learning: Vec<Call> = (0..250)
        .map(|i| user_get(i % 8, "/api/items").at(i))
        .collect();
    learning.push(user_get(1, "/api/items").host("admin.api.test").at(10));
    learning.sort_by_key(|c| c.secs);
    none(&h.run(learning));
    none(&h.observe(&user_get(1, "/api/items").host("admin.api.test").at(300)));
    // A host the server refuses is fine.
    none(
        &h.observe(
            &user_get(1, "/api/items")
                .host("staging.internal")
                .status(421)
                .at(301),
        ),
    );
    let events = h.observe(&user_get(1, "/api/items").host("staging.internal").at(302));
    let e = only(&events, "detect.inventory.unknown_host");
    assert_eq!(endpoint(e), "GET staging.internal/api/items");
    assert_eq!(principal(e), Some("user1"));
}

const SPEC: &str = r#"
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /api/users/{userId}:
    get: {responses: {"200": {description: ok}}}
  /api/v0/users/{userId}:
    get: {deprecated: true, responses: {"200": {description: ok}}}
"#;

#[test]
fn shadow_and_deprecated_api_and_their_twins() {
    let mut detectors = Detectors::new(DetectLimits::default());
    detectors.set_spec(crate::inventory::drift::Spec::parse(SPEC, "spec").unwrap());
    let mut h = Harness::with(detectors);
    // Documented, and a miss that is no API at all.
    none(&h.observe(&get("10.0.0.5", "/api/users/42").at(1)));
    none(&h.observe(&get("10.0.0.5", "/admin.php").status(404).at(2)));
    let shadow = h.observe(&get("10.0.0.5", "/api/internal/export").at(3));
    let e = only(&shadow, "detect.inventory.shadow_api");
    assert_eq!(endpoint(e), "GET api.test/api/internal/export");
    let deprecated = h.run([
        get("10.0.0.5", "/api/v0/users/42").at(4),
        // Another object of the same template: a repeat.
        get("10.0.0.6", "/api/v0/users/43").at(5),
    ]);
    let e = only(&deprecated, "detect.inventory.deprecated_api");
    assert_eq!(endpoint(e), "GET api.test/api/v0/users/{id}");
    assert_eq!(actor_ip(e), "10.0.0.5");
    let method = h.observe(
        &call("10.0.0.5", "DELETE", "/api/users/42")
            .status(204)
            .at(6),
    );
    let e = only(&method, "detect.inventory.shadow_api");
    assert_eq!(endpoint(e), "DELETE api.test/api/users/{id}");
}

// ------------------------------------------------- snapshot and counters

#[test]
fn baseline_snapshot_round_trips() {
    let mut calls = accounts_with_credentials();
    calls.push(get("10.0.0.40", "/api/accounts/103").status(401).at(60));
    let mut learned = Harness::new();
    none(&learned.run(calls));
    let bytes = learned.detectors.save().unwrap();
    let anonymous = get("10.0.0.41", "/api/accounts/105")
        .reply(r#"{"id":105}"#)
        .at(130);
    // What was learned judges the next run, in a fresh inventory too.
    let mut loaded = Detectors::new(DetectLimits::default());
    loaded.load(&bytes).unwrap();
    let mut h = Harness::with(loaded);
    only(&h.observe(&anonymous), "detect.auth.missing_auth_accepted");
    // Without it the endpoint is unknown.
    none(&Harness::new().observe(&anonymous));
    // Garbage and other versions are refused, not half-read.
    let mut fresh = Detectors::new(DetectLimits::default());
    assert!(fresh.load(b"not a snapshot").is_err());
    let other = rmp_serde::to_vec_named(&super::Snapshot {
        version: super::SNAPSHOT_VERSION + 1,
        baselines: &learned.detectors.baselines,
        authorization: &learned.detectors.authorization,
        authentication: &learned.detectors.authentication,
        hosts: &learned.detectors.hosts,
    })
    .unwrap();
    let err = fresh.load(&other).unwrap_err();
    assert!(err.contains("version"), "{err}");
    // `--baseline-from`: another run's detectors hand over what they learned.
    let mut adopting = Detectors::new(DetectLimits::default());
    adopting.adopt(learned.detectors);
    only(
        &Harness::with(adopting).observe(&anonymous),
        "detect.auth.missing_auth_accepted",
    );
}

#[test]
fn events_name_the_template_and_keep_credentials_out_of_evidence() {
    let events = run([
        get("10.0.0.1", "/api/items/42?q=%3Cscript%3E&api_key=abc123")
            .header("Authorization", "Bearer zzz-opaque")
            .header("User-Agent", "curl/8"),
    ]);
    let e = only(&events, "detect.injection.xss");
    assert_eq!(endpoint(e), "GET api.test/api/items/{id}");
    assert_eq!(e.owasp, Some(crate::event::Owasp::SecurityMisconfiguration));
    let src = e.src_endpoint.as_ref().unwrap();
    assert_eq!((src.ip.to_string(), src.port), ("10.0.0.1".into(), 40000));
    // The evidence is the exchange itself: the raw target, minus secrets.
    let ev = &e.evidence[0];
    assert_eq!(ev.uri, "/api/items/42?q=%3Cscript%3E&api_key=[REDACTED]");
    assert_eq!(ev.status, Some(200));
    let header = |name: &str| {
        ev.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert!(header("Authorization").unwrap().starts_with("[REDACTED"));
    assert_eq!(header("User-Agent"), Some("curl/8"));
    assert!(ev.request_body.is_none() && ev.response_body.is_none());
}

#[test]
fn stats_count_exchanges_events_and_repeats() {
    let mut h = Harness::new();
    let events = h.run([
        get("10.0.0.66", "/api/items/5?q=%27%20OR%201%3D1--").at(1),
        get("10.0.0.66", "/api/items/6?q=%27%20OR%202%3D2--").at(2),
        get("10.0.0.66", "/api/items/7?q=%27%20OR%203%3D3--").at(3),
    ]);
    assert_eq!(rules(&events), ["detect.injection.sql"]);
    let stats = h.detectors.stats();
    assert_eq!(stats.exchanges, 3);
    assert_eq!(stats.events, 1);
    assert_eq!(stats.repeats, 2);
    // Parameters past the per-request cap are counted.
    let query: Vec<String> = (0..600).map(|i| format!("p{i}=v")).collect();
    none(&h.observe(&get("10.0.0.5", &format!("/search?{}", query.join("&"))).at(4)));
    // 600 query parameters and one path segment, 512 kept.
    assert_eq!(h.detectors.stats().params_skipped, 600 + 1 - 512);
}

#[test]
fn caps_refuse_and_count() {
    let mut limits = DetectLimits::default();
    limits.baseline.max_endpoints = 1;
    limits.scanner.max_clients = 1;
    let mut h = Harness::with(Detectors::new(limits));
    none(&h.run([
        get("10.0.0.1", "/api/items").at(1),
        get("10.0.0.2", "/api/orders").at(2),
    ]));
    let stats = h.detectors.stats();
    assert_eq!(stats.endpoints_not_tracked, 1);
    assert!(stats.actors_refused >= 1, "{stats:?}");
    assert_eq!(h.detectors.baselines.endpoints.len(), 1);
}

#[test]
fn endpoint_cap_holds_for_endpoints_with_object_ids() {
    let mut limits = DetectLimits::default();
    limits.baseline.max_endpoints = 1;
    let mut h = Harness::with(Detectors::new(limits));
    none(&h.run([
        get("10.0.0.1", "/api/items").at(1),
        user_get(1, "/api/orders/7").at(2),
        user_get(1, "/api/invoices/8").at(3),
    ]));
    assert_eq!(h.detectors.baselines.endpoints.len(), 1);
    assert_eq!(h.detectors.stats().endpoints_not_tracked, 2);
}

#[test]
fn every_rule_is_covered_here() {
    // Each rule id must appear in a test of this file: a rule added to the
    // table without a test fails here.
    let source = include_str!("tests.rs");
    for rule in super::rules::RuleId::ALL {
        let id = rule.id();
        assert!(source.contains(&format!("\"{id}\"")), "{id} has no test");
    }
}
