//! Inventory tests: templating on synthetic exchanges, determinism,
//! posture findings from hand-filled facts.

use super::*;
use crate::exchange::{Body, ExchangeFlags, Headers, HttpVersion, Response, Timestamp};

pub(crate) fn exchange(
    method: &str,
    path_and_query: &str,
    status: u16,
    headers: &[(&str, &str)],
    response_body: &str,
    client: u8,
    ts: u64,
) -> Exchange {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(Text::from(q))),
        None => (path_and_query, None),
    };
    let mut h = Headers::default();
    h.push(b"Host", b"api.test", 64, 4096);
    for (n, v) in headers {
        h.push(n.as_bytes(), v.as_bytes(), 64, 4096);
    }
    let body = |s: &str| Body {
        wire_len: s.len() as u64,
        decoded_len: s.len() as u64,
        data: s.as_bytes().to_vec(),
        ..Body::default()
    };
    Exchange {
        flow_id: 1,
        client: format!("10.0.0.{client}:40000").parse().unwrap(),
        server: "10.0.0.100:80".parse().unwrap(),
        request: Some(crate::exchange::Request {
            ts: Timestamp(ts * 1_000_000_000),
            end_ts: Timestamp(ts * 1_000_000_000),
            method: Text::from(method),
            uri: Text::from(path_and_query),
            path: Text::from(path),
            query,
            version: HttpVersion::Http11,
            host: Some(Text::from("api.test")),
            content_type: None,
            headers: h,
            body: Body::default(),
            pending_text: false,
        }),
        response: Some(Response {
            ts: Timestamp(ts * 1_000_000_000 + 1),
            end_ts: Timestamp(ts * 1_000_000_000 + 1),
            version: HttpVersion::Http11,
            status: Some(status),
            reason: Text::from("X"),
            content_type: Some(Text::from("application/json")),
            headers: Headers::default(),
            body: body(response_body),
            pending_text: false,
        }),
        tunnel: false,
        flags: ExchangeFlags::default(),
        anomalies: Vec::new(),
    }
}

fn templates(inv: &Inventory) -> Vec<(String, String)> {
    inv.snapshot()
        .endpoints
        .into_iter()
        .map(|e| (e.method, e.path))
        .collect()
}

fn feed(inv: &mut Inventory, exchanges: &[Exchange]) {
    for ex in exchanges {
        inv.observe(ex, &ExchangeFacts::from_exchange_basic(ex));
    }
}

/// A small API's traffic: ids, uuids, slugs, logins, a fixed sibling, 404 probes.
fn traffic() -> Vec<Exchange> {
    let mut v = Vec::new();
    let mut t = 0;
    let mut push = |m: &str, p: String, s: u16, b: &str, c: u8| {
        t += 1;
        v.push(exchange(m, &p, s, &[], b, c, t));
    };
    for i in 0..40 {
        push(
            "GET",
            format!("/users/{}", 100 + i),
            200,
            r#"{"id":1,"name":"a"}"#,
            (i % 5) as u8,
        );
        push(
            "GET",
            format!(
                "/articles/post-number-{}-about-{}",
                i,
                ["rust", "go", "c"][i % 3]
            ),
            200,
            r#"{"title":"t","body":"b"}"#,
            1,
        );
        push(
            "GET",
            format!(
                "/accounts/user{}",
                ["alice", "bob", "carol", "dave"][i % 4].to_string() + &i.to_string()
            ),
            200,
            r#"{"login":"x","bio":"y"}"#,
            2,
        );
        push(
            "GET",
            format!("/orders/3f2504e0-4f89-11d3-9a0c-{:012x}", i),
            200,
            "{}",
            3,
        );
    }
    for _ in 0..12 {
        push(
            "GET",
            "/accounts/me".into(),
            200,
            r#"{"login":"x","email":"a@b.io","settings":{}}"#,
            2,
        );
        push("GET", "/users/me".into(), 200, r#"{"id":1}"#, 2);
        push("GET", "/health".into(), 200, r#"{"ok":true}"#, 4);
    }
    for p in [
        "/admin.php",
        "/.env",
        "/wp-login.php",
        "/users/1/../../etc/passwd",
    ] {
        push("GET", p.into(), 404, "", 9);
    }
    v
}

fn rules_inventory() -> Inventory {
    Inventory::new(&crate::config::InventorySettings::default())
}

#[test]
fn templates_match_the_route_table() {
    let mut inv = rules_inventory();
    feed(&mut inv, &traffic());
    assert_eq!(
        templates(&inv),
        vec![
            ("GET".to_string(), "/accounts/me".to_string()),
            ("GET".into(), "/accounts/{name}".into()),
            ("GET".into(), "/articles/{name}".into()),
            ("GET".into(), "/health".into()),
            ("GET".into(), "/orders/{uuid}".into()),
            ("GET".into(), "/users/me".into()),
            ("GET".into(), "/users/{id}".into()),
        ]
    );
    let snap = inv.snapshot();
    // The scanner's 404 probes are listed apart, not as endpoints.
    assert_eq!(
        snap.other.len(),
        4,
        "{:?}",
        snap.other
            .iter()
            .map(|e| (&e.path, e.class))
            .collect::<Vec<_>>()
    );
    assert!(snap.other.iter().all(|e| e.class == PathClass::Unconfirmed));
    let users = snap
        .endpoints
        .iter()
        .find(|e| e.path == "/users/{id}")
        .unwrap();
    assert_eq!(users.profile.requests, 40);
    assert_eq!(users.profile.clients.estimate(), 5);
    assert!(users.profile.response_fields.contains_key("name"));
}

#[test]
fn templates_do_not_depend_on_order() {
    let mut forward = rules_inventory();
    let mut backward = rules_inventory();
    let t = traffic();
    feed(&mut forward, &t);
    let mut rev = t.clone();
    rev.reverse();
    feed(&mut backward, &rev);
    let a: Vec<String> = forward
        .snapshot()
        .endpoints
        .iter()
        .map(|e| format!("{} {} {:?}", e.method, e.path, e.profile))
        .collect();
    let b: Vec<String> = backward
        .snapshot()
        .endpoints
        .iter()
        .map(|e| format!("{} {} {:?}", e.method, e.path, e.profile))
        .collect();
    assert_eq!(a, b);
}

#[test]
fn few_static_siblings_stay_literal() {
    let mut inv = rules_inventory();
    let mut v = Vec::new();
    for (i, name) in ["users", "orders", "invoices", "products", "carts"]
        .iter()
        .enumerate()
    {
        for k in 0..30 {
            v.push(exchange(
                "GET",
                &format!("/api/{name}"),
                200,
                &[],
                "[]",
                1,
                (i * 100 + k) as u64,
            ));
        }
    }
    feed(&mut inv, &v);
    assert_eq!(templates(&inv).len(), 5);
}

/// One administrator re-reading seven pages, and a second client refused on
/// two of them first: the refusals say nothing about how values spread over
/// clients, so the pages stay routes. Twin: the same seven names, each
/// re-read by its own user, are values.
#[test]
fn one_clients_pages_stay_routes_beside_anothers_refusals_and_owned_values_twin() {
    let pages = [
        "challenges",
        "config",
        "notifications",
        "statistics",
        "submissions",
        "users",
        "scoreboard",
    ];
    let run = |owner: &dyn Fn(usize) -> u8| {
        let mut inv = rules_inventory();
        let mut v = Vec::new();
        for (k, page) in ["users", "submissions"].iter().enumerate() {
            v.push(exchange(
                "GET",
                &format!("/admin/{page}"),
                403,
                &[],
                "",
                99,
                k as u64,
            ));
        }
        for round in 0..8u64 {
            for (i, page) in pages.iter().enumerate() {
                let ts = 10 + round * 100 + i as u64;
                v.push(exchange(
                    "GET",
                    &format!("/admin/{page}"),
                    200,
                    &[],
                    "<html>",
                    owner(i),
                    ts,
                ));
            }
        }
        feed(&mut inv, &v);
        templates(&inv)
    };
    let admin_only = run(&|_| 1);
    assert_eq!(admin_only.len(), 7, "{admin_only:?}");
    assert!(admin_only.iter().all(|(_, p)| !p.contains('{')));
    let owned = run(&|i| 10 + i as u8);
    assert_eq!(
        owned,
        vec![("GET".to_string(), "/admin/{name}".to_string())]
    );
}

/// Recipes named by slug (30 keys in their JSON, more than a node keeps),
/// each read and updated by its owner, then deleted: the first DELETE of a
/// known value does not pull it out of the parameter, and later reads stay
/// there. Twin: a POST action beside the values stays a route.
#[test]
fn deleting_a_known_value_keeps_it_in_its_parameter_and_the_action_twin() {
    let recipe: String = {
        let fields: Vec<String> = (0..30).map(|k| format!(r#""field{k}":{k}"#)).collect();
        format!("{{{}}}", fields.join(","))
    };
    let slugs = [
        "apple-pie",
        "banana-bread",
        "beef-stew",
        "carbonara",
        "dal-makhani",
        "fish-tacos",
        "gazpacho",
        "goulash",
    ];
    let mut inv = rules_inventory();
    let mut v = Vec::new();
    for round in 0..3u64 {
        for (i, slug) in slugs.iter().enumerate() {
            let (client, ts) = (10 + i as u8, round * 100 + 2 * i as u64);
            v.push(exchange(
                "GET",
                &format!("/api/recipes/{slug}"),
                200,
                &[],
                &recipe,
                client,
                ts,
            ));
            v.push(exchange(
                "PUT",
                &format!("/api/recipes/{slug}"),
                200,
                &[],
                &recipe,
                client,
                ts + 1,
            ));
        }
    }
    for (i, slug) in slugs.iter().enumerate() {
        let (client, ts) = (10 + i as u8, 400 + 2 * i as u64);
        v.push(exchange(
            "DELETE",
            &format!("/api/recipes/{slug}"),
            204,
            &[],
            "",
            client,
            ts,
        ));
        v.push(exchange(
            "GET",
            &format!("/api/recipes/{slug}"),
            200,
            &[],
            &recipe,
            client,
            ts + 1,
        ));
    }
    v.push(exchange(
        "POST",
        "/api/recipes/create-url",
        201,
        &[],
        r#""x""#,
        10,
        500,
    ));
    feed(&mut inv, &v);
    let got = templates(&inv);
    assert_eq!(
        got,
        vec![
            ("POST".to_string(), "/api/recipes/create-url".to_string()),
            ("DELETE".to_string(), "/api/recipes/{name}".to_string()),
            ("GET".to_string(), "/api/recipes/{name}".to_string()),
            ("PUT".to_string(), "/api/recipes/{name}".to_string()),
        ],
        "{got:?}"
    );
}

const ARTICLE: &str = r#"{"slug":"s","title":"t","body":"b","tags":[]}"#;

/// Eight articles, each read three times by its own client (enough to learn
/// the slug parameter from reads alone), then what `after(slug, client,
/// time)` gives for each.
fn articles_read_then(after: impl Fn(&str, u8, u64) -> Vec<Exchange>) -> Vec<Exchange> {
    let slugs = [
        "how-to-train",
        "why-rust",
        "on-caching",
        "tcp-tuning",
        "zero-copy",
        "ring-buffers",
        "fast-json",
        "slow-disks",
    ];
    let read = |slug: &str, client: u8, ts: u64| {
        exchange(
            "GET",
            &format!("/api/articles/{slug}"),
            200,
            &[],
            ARTICLE,
            client,
            ts,
        )
    };
    let mut v = Vec::new();
    for round in 0..3u64 {
        for (i, slug) in slugs.iter().enumerate() {
            v.push(read(slug, 10 + i as u8, round * 100 + i as u64));
        }
    }
    for (i, slug) in slugs.iter().enumerate() {
        let (client, ts) = (10 + i as u8, 400 + 3 * i as u64);
        v.extend(after(slug, client, ts));
        v.push(read(slug, client, ts + 2));
    }
    v
}

/// Articles only read until the parameter is learned, then updated (a JSON
/// answer of their shape) and patched (an empty answer): the first writes
/// of known values stay in the parameter.
#[test]
fn first_writes_of_values_only_read_so_far_stay_in_their_parameter() {
    let v = articles_read_then(|slug, client, ts| {
        let path = format!("/api/articles/{slug}");
        vec![
            exchange("PUT", &path, 200, &[], ARTICLE, client, ts),
            exchange("PATCH", &path, 204, &[], "", client, ts + 1),
        ]
    });
    let mut inv = rules_inventory();
    feed(&mut inv, &v);
    let got = templates(&inv);
    assert_eq!(
        got,
        ["GET", "PATCH", "PUT"]
            .map(|m| (m.to_string(), "/api/articles/{name}".to_string()))
            .to_vec(),
        "{got:?}"
    );
}

/// A value the host served at a learned parameter (an article's slug) is a
/// value where it first appears at a new position: a user's first rating
/// of an article is `/ratings/{name}`, and later ratings of articles not
/// yet known there join it. Twins: a name never served as a value stays
/// literal, and so does a known value beside literal routes, until
/// siblings show what it is.
#[test]
fn known_values_template_new_positions_and_their_twins() {
    let rate = |path: &str, client: u8, ts: u64| exchange("POST", path, 200, &[], "{}", client, ts);
    let mut inv = rules_inventory();
    let mut v = articles_read_then(|_, _, _| Vec::new());
    v.push(rate("/api/users/3/ratings/why-rust", 11, 500));
    v.push(rate("/api/users/4/ratings/brand-new-one", 12, 501));
    v.push(rate("/api/users/5/stars/never-served", 13, 502));
    v.push(exchange(
        "GET",
        "/api/tags/systems",
        200,
        &[],
        "[]",
        14,
        503,
    ));
    v.push(exchange(
        "GET",
        "/api/tags/zero-copy",
        200,
        &[],
        "[]",
        14,
        504,
    ));
    feed(&mut inv, &v);
    let got = templates(&inv);
    let want = [
        ("GET", "/api/articles/{name}"),
        ("GET", "/api/tags/systems"),
        ("GET", "/api/tags/zero-copy"),
        ("POST", "/api/users/{id}/ratings/{name}"),
        ("POST", "/api/users/{id}/stars/never-served"),
    ]
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .to_vec();
    assert_eq!(got, want, "{got:?}");
}

/// Three users, each reading their own account once, next to the login,
/// registration and debug routes: far too few siblings to learn from, but
/// each answer names the object its path asked for, so the names are values
/// at once (the position is a parameter), and so are they in their
/// sub-resources, and so are names never read there. Twins: the caller's
/// own account by its alias (`me`), and routes whose
/// answers do not name them (a count, a list whose items carry the word,
/// an identifying key with another value) stay literal.
#[test]
fn objects_named_in_their_own_answers_are_values_and_their_twins() {
    let mut v = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let c = 20 + i as u8;
        let t = 10 * i as u64;
        v.push(exchange(
            "POST",
            "/api/users/login",
            200,
            &[],
            r#"{"token":"x"}"#,
            c,
            t,
        ));
        let me = format!(r#"{{"username": "{user}", "email": "{user}@example.com"}}"#);
        v.push(exchange(
            "GET",
            &format!("/api/users/{user}"),
            200,
            &[],
            &me,
            c,
            t + 1,
        ));
        let email = format!("/api/users/{user}/email");
        v.push(exchange("PUT", &email, 204, &[], "", c, t + 2));
    }
    // A user whose account was never read: a value of the parameter now.
    v.push(exchange(
        "PUT",
        "/api/users/erin/email",
        204,
        &[],
        "",
        32,
        39,
    ));
    // The caller's own account by its alias answers like the values, and
    // stays a route.
    let alice = r#"{"username": "alice", "email": "alice@example.com"}"#;
    v.push(exchange("GET", "/api/users/me", 200, &[], alice, 20, 45));
    v.push(exchange(
        "POST",
        "/api/users/register",
        200,
        &[],
        r#"{"ok":true}"#,
        30,
        40,
    ));
    v.push(exchange(
        "GET",
        "/api/users/_debug",
        200,
        &[],
        r#"{"users":[]}"#,
        30,
        41,
    ));
    let answers = [
        ("stats", r#"{"count": 3}"#),
        (
            "active",
            r#"{"users": [{"status": "active"}], "tags": ["active"]}"#,
        ),
        ("export", r#"{"name": "export.csv", "format": "csv"}"#),
    ];
    for (route, answer) in answers {
        v.push(exchange(
            "GET",
            &format!("/api/users/{route}"),
            200,
            &[],
            answer,
            31,
            50,
        ));
    }
    let mut inv = rules_inventory();
    feed(&mut inv, &v);
    let got = templates(&inv);
    let want = [
        ("GET", "/api/users/_debug"),
        ("GET", "/api/users/active"),
        ("GET", "/api/users/export"),
        ("POST", "/api/users/login"),
        ("GET", "/api/users/me"),
        ("POST", "/api/users/register"),
        ("GET", "/api/users/stats"),
        ("GET", "/api/users/{name}"),
        ("PUT", "/api/users/{name}/email"),
    ]
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .to_vec();
    assert_eq!(got, want, "{got:?}");
}

/// After the parameter is learned, browsers send CORS preflights and
/// conditional GETs ("not modified") for known values: no body, no
/// evidence, and the values stay in their parameter. Twin: an HTML page
/// beside the JSON values stays a route.
#[test]
fn preflights_and_not_modified_keep_values_in_their_parameter_and_a_page_twin() {
    let mut v = articles_read_then(|slug, client, ts| {
        let path = format!("/api/articles/{slug}");
        vec![
            exchange("OPTIONS", &path, 204, &[], "", client, ts),
            exchange("GET", &path, 304, &[], "", client, ts + 1),
        ]
    });
    let mut page = exchange(
        "GET",
        "/api/articles/feed-page",
        200,
        &[],
        "<html></html>",
        10,
        500,
    );
    if let Some(r) = page.response.as_mut() {
        r.content_type = Some(Text::from("text/html"));
    }
    v.push(page);
    let mut inv = rules_inventory();
    feed(&mut inv, &v);
    let got = templates(&inv);
    assert_eq!(
        got,
        vec![
            ("GET".to_string(), "/api/articles/feed-page".to_string()),
            ("GET".to_string(), "/api/articles/{name}".to_string()),
        ],
        "{got:?}"
    );
}

#[test]
fn many_popular_static_routes_do_not_merge() {
    // Twelve routes, each called often: low distinct-per-request ratio.
    let mut inv = rules_inventory();
    let mut v = Vec::new();
    for i in 0..12 {
        for k in 0..50 {
            v.push(exchange(
                "GET",
                &format!(
                    "/api/route{}x",
                    ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"][i]
                ),
                200,
                &[],
                "{}",
                1,
                (i * 100 + k) as u64,
            ));
        }
    }
    feed(&mut inv, &v);
    assert_eq!(templates(&inv).len(), 12);
}

#[test]
fn path_flood_is_learned_or_capped_and_counted() {
    let settings = crate::config::InventorySettings {
        max_path_nodes: 500,
        max_children_per_node: 16,
        ..Default::default()
    };
    // Random paths that answer: their positions are learned to be
    // parameters, which hold one child each, so the trie stays small.
    let mut inv = Inventory::new(&settings);
    for i in 0..5000u64 {
        let p = format!("/f{}/g{}/h{}", i % 300, i, i * 7);
        let ex = exchange("GET", &p, 200, &[], "", (i % 7) as u8, i);
        inv.observe(&ex, &ExchangeFacts::default());
    }
    let c = inv.counters().clone();
    assert!(c.path_nodes <= 64, "{c:?}");
    let snap = inv.snapshot();
    assert_eq!(
        snap.endpoints
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        vec!["/{name}/{name2}/{name3}"]
    );
    // Random paths that never answer successfully teach nothing: the
    // caps hold them and count what they refused.
    let mut inv = Inventory::new(&settings);
    for i in 0..5000u64 {
        let p = format!("/f{}/g{}/h{}", i % 300, i, i * 7);
        let ex = exchange("GET", &p, 404, &[], "", 9, i);
        inv.observe(&ex, &ExchangeFacts::default());
    }
    let c = inv.counters().clone();
    assert!(c.path_nodes <= 500, "{c:?}");
    assert!(c.paths_capped > 0, "{c:?}");
    assert!(c.segments_overflowed > 1000, "{c:?}");
    let snap = inv.snapshot();
    assert!(snap.endpoints.is_empty());
    assert!(snap.other.iter().all(|e| e.class == PathClass::Unconfirmed));
}

#[test]
fn templates_hold_as_users_reread_their_own_named_objects() {
    // 30 users, each with three notes named in words, re-read over and
    // over: by the end a hundred requests per distinct value. A rule of
    // distinct values per request decays here; this one must not.
    let mut inv = rules_inventory();
    let words = ["groceries", "ideas", "travel"];
    let mut t = 0;
    let mut seen_at = Vec::new();
    for round in 0..100 {
        for user in 0..30u8 {
            for w in words {
                t += 1;
                let p = format!("/notes/{w}-{user}");
                let body = format!(r#"{{"title":"{w}","owner":{user},"text":"x"}}"#);
                let ex = exchange("GET", &p, 200, &[], &body, user, t);
                inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
            }
        }
        t += 1;
        let me = exchange(
            "GET",
            "/notes/shared",
            200,
            &[],
            r#"[{"title":"x"}]"#,
            round % 30,
            t,
        );
        inv.observe(&me, &ExchangeFacts::from_exchange_basic(&me));
        if [0, 4, 19, 99].contains(&round) {
            seen_at.push(templates(&inv));
        }
    }
    let want = vec![
        ("GET".to_string(), "/notes/shared".to_string()),
        ("GET".to_string(), "/notes/{name}".to_string()),
    ];
    for (i, got) in seen_at.iter().enumerate() {
        assert_eq!(got, &want, "after checkpoint {i}");
    }
}

#[test]
fn keys_of_exchanges_follow_the_learned_template_and_carry_the_values() {
    let mut inv = rules_inventory();
    let mut last = None;
    for i in 0..40u8 {
        let p = format!("/users/user{i}/orders/{}", 1000 + u32::from(i));
        let ex = exchange("GET", &p, 200, &[], r#"{"total":1}"#, i % 8, u64::from(i));
        last = inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
    }
    let located = last.unwrap();
    assert_eq!(located.key.template, "/users/{name}/orders/{id}");
    assert_eq!(located.key.method, "GET");
    let values: Vec<(&str, &str)> = located
        .values
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(values, vec![("name", "user39"), ("id", "1039")]);
}

#[test]
fn rare_routes_beside_values_stay_routes_and_popular_pages_do_not_merge() {
    let mut inv = rules_inventory();
    let mut t = 0;
    let mut push = |inv: &mut Inventory, m: &str, p: &str, body: &str, c: u8| {
        t += 1;
        let ex = exchange(m, p, 200, &[], body, c, t);
        inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
    };
    for i in 0..20u8 {
        push(
            &mut inv,
            "GET",
            &format!("/items/widget{i}"),
            r#"{"name":"w","price":1}"#,
            i,
        );
    }
    // Once or twice each, after the parameter was learned.
    push(
        &mut inv,
        "GET",
        "/items/_search",
        r#"{"hits":[],"total":0}"#,
        3,
    );
    push(&mut inv, "POST", "/items/import", r#"{"queued":true}"#, 4);
    push(&mut inv, "POST", "/items/import", r#"{"queued":true}"#, 4);
    // Twenty pages, each visited by most of ten clients: routes.
    for page in 0..20u8 {
        for c in 0..8u8 {
            push(&mut inv, "GET", &format!("/page{page}x"), "{}", c);
        }
    }
    let got = templates(&inv);
    assert!(
        got.contains(&("GET".into(), "/items/{name}".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("GET".into(), "/items/_search".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("POST".into(), "/items/import".into())),
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|(_, p)| p.starts_with("/page")).count(),
        20,
        "{got:?}"
    );
}

#[test]
fn not_found_answers_are_not_evidence_and_untrusted_hosts_are_apart() {
    let mut inv = rules_inventory();
    let mut t = 0;
    // Ten users, each reading their own record twice.
    for _ in 0..2 {
        for i in 0..10u8 {
            t += 1;
            let ex = exchange(
                "GET",
                &format!("/users/name{i}"),
                200,
                &[],
                r#"{"id":1}"#,
                i,
                t,
            );
            inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
        }
    }
    // A typo answered 400 "user not found": a value, not a route.
    t += 1;
    let typo = exchange(
        "GET",
        "/users/nmae3",
        400,
        &[],
        r#"{"error":"User not found"}"#,
        2,
        t,
    );
    let located = inv
        .observe(&typo, &ExchangeFacts::from_exchange_basic(&typo))
        .unwrap();
    assert_eq!(located.key.template, "/users/{name}");
    assert_eq!(outcome(&typo), Outcome::NotFound);
    // One client naming another host.
    let mut evil = exchange("GET", "/users/name1", 200, &[], r#"{"id":1}"#, 66, t + 1);
    if let Some(r) = evil.request.as_mut() {
        r.host = Some(Text::from("evil.example"));
    }
    inv.observe(&evil, &ExchangeFacts::from_exchange_basic(&evil));
    let snap = inv.snapshot();
    assert!(snap.endpoints.iter().all(|e| e.host == "api.test"));
    assert!(snap
        .other
        .iter()
        .any(|e| e.host == "evil.example" && e.class == PathClass::UntrustedHost));
}

#[test]
fn json_fields_are_flattened() {
    let f = json_fields(br#"{"user":{"id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","cards":[{"number":"4111"}],"ok":true,"n":1.5,"x":null}}"#);
    let names: Vec<String> = f.iter().map(|(p, t)| format!("{p}:{t}")).collect();
    assert_eq!(
        names,
        vec![
            "user:object",
            "user.cards:array",
            "user.cards[]:object",
            "user.cards[].number:string",
            "user.id:uuid",
            "user.n:number",
            "user.ok:bool",
            "user.x:null",
        ]
    );
    assert!(json_fields(b"{\"a\":").is_empty());
}

fn hit(data_type: &str, category: &str, location: &str) -> SensitiveHit {
    SensitiveHit {
        data_type: data_type.into(),
        category: category.into(),
        location: location.into(),
        field: "f".into(),
        confidence: 90,
    }
}

#[test]
fn posture_findings_from_facts_and_exchanges() {
    let mut inv = rules_inventory();
    // Unauthenticated endpoint returning an email and a card number.
    let ex = exchange("GET", "/profile", 200, &[], r#"{"email":"a@b.io"}"#, 1, 1);
    let facts = ExchangeFacts {
        response_sensitive: vec![
            hit("email", "pii", "body"),
            hit("credit_card", "financial", "body"),
        ],
        ..ExchangeFacts::default()
    };
    inv.observe(&ex, &facts);
    // The same data with a bearer token: not a finding of that rule.
    let ex = exchange(
        "GET",
        "/me",
        200,
        &[
            ("Authorization", "Bearer abc"),
            ("X-Forwarded-Proto", "https"),
        ],
        "{}",
        1,
        2,
    );
    inv.observe(&ex, &facts);
    // Sensitive data and credentials in the query string.
    let ex = exchange(
        "GET",
        "/search?email=a@b.io&api_key=k123",
        200,
        &[],
        "{}",
        1,
        3,
    );
    let facts_q = ExchangeFacts {
        request_sensitive: vec![hit("email", "pii", "query")],
        ..ExchangeFacts::default()
    };
    inv.observe(&ex, &facts_q);
    // Basic auth over cleartext; a TLS-terminated one is not.
    let ex = exchange(
        "GET",
        "/basic",
        200,
        &[("Authorization", "Basic dTpw")],
        "{}",
        1,
        4,
    );
    inv.observe(&ex, &ExchangeFacts::default());
    let ex = exchange(
        "GET",
        "/behind-tls",
        200,
        &[
            ("Authorization", "Basic dTpw"),
            ("X-Forwarded-Proto", "https"),
        ],
        "{}",
        1,
        5,
    );
    inv.observe(&ex, &ExchangeFacts::default());
    // A response echoing a password; a debug endpoint; a 404 debug probe.
    let ex = exchange(
        "POST",
        "/register",
        201,
        &[],
        r#"{"user":{"password":"x"}}"#,
        1,
        6,
    );
    inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
    let ex = exchange("GET", "/actuator/env", 200, &[], "{}", 1, 7);
    inv.observe(&ex, &ExchangeFacts::default());
    let ex = exchange("GET", "/debug", 404, &[], "", 1, 8);
    inv.observe(&ex, &ExchangeFacts::default());

    let events = inv.posture_findings("s1");
    let got: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let ep = e.endpoint.as_ref().unwrap();
            (
                ep.path.clone(),
                e.rule.clone(),
                e.owasp.unwrap().id().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        (
            "/actuator/env",
            "posture.debug_endpoint_exposed",
            "API8:2023",
        ),
        ("/basic", "posture.cleartext_credentials", "API8:2023"),
        (
            "/profile",
            "posture.unauthenticated_sensitive_data",
            "API2:2023",
        ),
        ("/register", "posture.secret_in_response", "API3:2023"),
        ("/search", "posture.credentials_in_url", "API2:2023"),
        ("/search", "posture.sensitive_data_in_url", "API8:2023"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    let unauth = &events[2];
    assert_eq!(unauth.kind, crate::event::EventKind::Posture);
    assert!(
        unauth.text.what_happened.contains("credit_card, email"),
        "{}",
        unauth.text.what_happened
    );
    assert_eq!(
        unauth.id,
        crate::event::stable_id(
            "s1",
            "posture.unauthenticated_sensitive_data",
            &[
                "api.test",
                "GET",
                "/profile",
                "posture.unauthenticated_sensitive_data"
            ]
        )
    );
    assert_eq!(events[0].severity, crate::event::Severity::High);
    // Same traffic, same findings.
    assert_eq!(inv.posture_findings("s1"), events);
}

/// File names with one extension under one position are values of a
/// parameter after three of them, whoever asked; format suffixes of routes
/// (`users.json`, `orders.json`) stay routes.
#[test]
fn file_names_are_values_and_format_suffixes_are_routes() {
    let mut inv = rules_inventory();
    let v: Vec<Exchange> = ["alice", "prod", "nightly"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
        .map(|(i, tag)| {
            exchange(
                "GET",
                &format!("/badge/{tag}.svg"),
                200,
                &[],
                "",
                1,
                i as u64,
            )
        })
        .collect();
    feed(&mut inv, &v);
    let t = templates(&inv);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].1.starts_with("/badge/{"), "{t:?}");
    let mut inv = rules_inventory();
    let v: Vec<Exchange> = ["users", "orders", "invoices"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
        .map(|(i, r)| {
            exchange(
                "GET",
                &format!("/api/{r}.json"),
                200,
                &[],
                "[]",
                1,
                i as u64,
            )
        })
        .collect();
    feed(&mut inv, &v);
    assert_eq!(templates(&inv).len(), 3, "{:?}", templates(&inv));
    // A format suffix on names that carry numbers names files.
    let mut inv = rules_inventory();
    let v: Vec<Exchange> = ["alice-notes-2", "bob-notes-0", "carol-todo-1"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            exchange(
                "GET",
                &format!("/attachments/{}/download/{name}.txt", 100 + i),
                200,
                &[],
                "notes",
                i as u8 + 1,
                i as u64,
            )
        })
        .collect();
    feed(&mut inv, &v);
    let t = templates(&inv);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].1.ends_with("/download/{name}"), "{t:?}");
}

/// An encoded slash is data inside its segment, as the server's router
/// sees it: a traversal payload sent as one file name lands on the file
/// parameter, not on a path of its own.
#[test]
fn encoded_slashes_stay_inside_their_segment() {
    let mut inv = rules_inventory();
    let mut v: Vec<Exchange> = (0..6)
        .map(|i| {
            let uri = format!("/files/{}/notes-{i}.pdf", 100 + i);
            exchange("GET", &uri, 200, &[], "x", i as u8 + 1, i)
        })
        .collect();
    v.push(exchange(
        "GET",
        "/files/100/..%2F..%2Fetc%2Fpasswd",
        200,
        &[],
        "x",
        9,
        10,
    ));
    feed(&mut inv, &v);
    let located = inv
        .observe(&v[6], &ExchangeFacts::from_exchange_basic(&v[6]))
        .unwrap();
    assert_eq!(located.key.template.as_str(), "/files/{id}/{name}");
    assert_eq!(located.values[1].value.as_str(), "../../etc/passwd");
    assert_eq!(templates(&inv).len(), 1, "{:?}", templates(&inv));
}

/// Before anything is re-read, a larger group of values each followed by
/// its own client (short links) is a parameter; the same number of routes
/// each called by many clients is not.
#[test]
fn values_each_with_its_own_client_and_popular_routes_twin() {
    let links = [
        "qQszSN",
        "P5XeNv",
        "kX6ksp",
        "KXuNvZ",
        "8LwNmN",
        "EKswnb",
        "alice-blog20",
        "carol-cv50",
        "mallory-cv25",
    ];
    let mut inv = rules_inventory();
    let v: Vec<Exchange> = links
        .iter()
        .enumerate()
        .map(|(i, l)| exchange("GET", &format!("/{l}"), 302, &[], "", i as u8 + 1, i as u64))
        .collect();
    feed(&mut inv, &v);
    assert_eq!(templates(&inv).len(), 1, "{:?}", templates(&inv));
    let mut inv = rules_inventory();
    let mut v = Vec::new();
    for (i, l) in links.iter().enumerate() {
        for client in 1..=8u8 {
            v.push(exchange(
                "GET",
                &format!("/{l}"),
                302,
                &[],
                "",
                client,
                (i * 10) as u64 + u64::from(client),
            ));
        }
    }
    feed(&mut inv, &v);
    assert_eq!(templates(&inv).len(), links.len());
}

/// Random keys and signatures are values: long lower-case keys without
/// separators; a leading underscore makes a route (`_search`) only before
/// a lower-case word, not before a random value.
#[test]
fn random_keys_and_underscored_values_and_their_twins() {
    use template::{classify_segment, SegKind};
    let c = |s: &str| classify_segment(s, 128);
    assert_eq!(c("4twjnlbrwgldpkgzsszyua"), Some(SegKind::Token));
    // Keyed values, and a custom method twin.
    assert_eq!(c("userId:1925094799891760160"), Some(SegKind::Int));
    assert_eq!(c("urn:isbn:0451450523"), Some(SegKind::Int));
    assert_eq!(c("projects:batchGet"), None);
    assert_eq!(c(":42"), None);
    assert_eq!(c("eleihaylmfrmpqvopzcalw"), Some(SegKind::Token));
    assert_eq!(c("notificationsettings"), None);
    // Random base64url without digits; a long kebab-case route name.
    assert_eq!(c("fkgQo-V_RBelIIZncXZhzg"), Some(SegKind::Token));
    assert_eq!(c("notification-settings-page"), None);
    assert_eq!(c("healthcheck2"), None);
    // A parameter learned at /files/{name}: `_search` beside it is a route,
    // `_PdBTNpn-2` a value.
    let mut inv = rules_inventory();
    let mut v = Vec::new();
    for i in 0..20u64 {
        v.push(exchange(
            "GET",
            &format!("/files/doc-{i}-x"),
            200,
            &[],
            "{\"name\":\"f\"}",
            (i % 10) as u8 + 1,
            i,
        ));
    }
    v.push(exchange("GET", "/files/_search", 200, &[], "[]", 1, 30));
    v.push(exchange(
        "GET",
        "/files/_PdBTNpn-2",
        200,
        &[],
        "{\"name\":\"f\"}",
        2,
        31,
    ));
    feed(&mut inv, &v);
    let t: Vec<String> = templates(&inv).into_iter().map(|(_, p)| p).collect();
    assert!(t.contains(&"/files/_search".to_string()), "{t:?}");
    assert!(!t.iter().any(|p| p.contains("_PdBTNpn")), "{t:?}");
}

/// A page under `/docs` answered with HTML is documentation, listed apart.
#[test]
fn documentation_pages_are_apart() {
    let mut inv = rules_inventory();
    let mut page = exchange("GET", "/docs/api", 200, &[], "<html></html>", 1, 1);
    if let Some(r) = page.response.as_mut() {
        r.content_type = Some(Text::from("text/html; charset=utf-8"));
    }
    feed(&mut inv, &[page]);
    let snapshot = inv.snapshot();
    assert!(snapshot.endpoints.is_empty());
    assert_eq!(
        snapshot.other.first().map(|e| e.class),
        Some(PathClass::Documentation)
    );
}

/// A single-page app answers every path it has no route for with its index
/// page (200): once the same page has answered four different paths, none
/// of the paths it answered is an endpoint, the first ones included. Twins:
/// pages of their own, and short text/html answers ("OK" from a ping),
/// stay endpoints.
#[test]
fn a_hosts_catch_all_page_is_not_an_endpoint_and_its_twins() {
    let html = |path: &str, body: &str, client: u8, ts: u64| {
        let mut ex = exchange("GET", path, 200, &[], body, client, ts);
        if let Some(r) = ex.response.as_mut() {
            r.content_type = Some(Text::from("text/html; charset=utf-8"));
        }
        ex
    };
    let index = format!(
        "<!doctype html><html><head>{}</head></html>",
        "x".repeat(400)
    );
    let mut v: Vec<Exchange> = ["/", "/boards", "/api/boards/x/cards", "/api/project", "/"]
        .iter()
        .enumerate()
        .map(|(i, p)| html(p, &index, 1 + i as u8, i as u64))
        .collect();
    let about = format!("<html><body>{}</body></html>", "about ".repeat(80));
    v.push(html("/about", &about, 9, 10));
    v.push(html("/ping/start", "OK", 9, 11));
    v.push(html("/ping/stop", "OK", 9, 12));
    v.push(html("/ping/fail", "OK", 9, 13));
    v.push(html("/ping/log", "OK", 9, 14));
    let mut inv = rules_inventory();
    feed(&mut inv, &v);
    let paths: Vec<String> = templates(&inv).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        paths,
        [
            "/about",
            "/ping/fail",
            "/ping/log",
            "/ping/start",
            "/ping/stop"
        ],
        "{paths:?}"
    );
    let apart: Vec<PathClass> = inv.snapshot().other.iter().map(|e| e.class).collect();
    assert_eq!(apart, [PathClass::Unconfirmed; 4], "{apart:?}");
}

/// The sibling that arrives last counts when the siblings are looked at:
/// eight names each fetched once by its own client make a parameter at the
/// eighth request (not at some later one), seven do not yet.
#[test]
fn the_newest_sibling_counts_when_siblings_are_looked_at() {
    let names = [
        "dave", "rupert", "xena", "frank", "chen", "erin", "niaj", "judy",
    ];
    let run = |count: usize| {
        let mut inv = rules_inventory();
        let v: Vec<Exchange> = names
            .iter()
            .take(count)
            .enumerate()
            .map(|(i, n)| {
                let path = format!("/badge/{n}/sig{i}x.svg");
                exchange("GET", &path, 200, &[], "", i as u8 + 1, i as u64)
            })
            .collect();
        feed(&mut inv, &v);
        templates(&inv)
    };
    let eight = run(8);
    assert_eq!(eight.len(), 1, "{eight:?}");
    assert!(eight[0].1.starts_with("/badge/{"), "{eight:?}");
    assert_eq!(run(7).len(), 7);
}

/// Public content read by every user (articles by slug): many siblings
/// answering JSON objects of one shape are values however popular each
/// is. Twins: as many popular routes answering objects of their own shapes,
/// or lists, stay routes.
#[test]
fn many_popular_values_of_one_shape_and_popular_routes_twin() {
    let run = |body: &dyn Fn(usize) -> String| {
        let mut inv = rules_inventory();
        let mut t = 0;
        for round in 0..3 {
            for i in 0..20usize {
                for client in 1..=30u8 {
                    t += 1;
                    let path =
                        format!("/api/articles/how-to-cook-{i}-{}", ["pasta", "rice"][i % 2]);
                    let ex = exchange("GET", &path, 200, &[], &body(i), client, t + round);
                    inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
                }
            }
        }
        templates(&inv).len()
    };
    let article = |_: usize| r#"{"article":{"slug":"s","title":"t"}}"#.to_string();
    assert_eq!(run(&article), 1);
    let own_shape = |i: usize| format!(r#"{{"field{i}":1,"other{i}":2}}"#);
    assert_eq!(run(&own_shape), 20);
    let list = |_: usize| "[]".to_string();
    assert_eq!(run(&list), 20);
}

/// Alike siblings under which the same sub-resource recurs are values
/// from five on (`/icons/{name}/icon.png`); twin: five routes each with a
/// subtree of its own stay routes.
#[test]
fn siblings_sharing_a_sub_resource_are_values_and_their_twin() {
    let run = |child: &dyn Fn(usize) -> String| {
        let mut inv = rules_inventory();
        let hosts = [
            "a.example.io",
            "b.example.net",
            "c.example.org",
            "d.corp.example",
            "e.example.com",
        ];
        let v: Vec<Exchange> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let path = format!("/icons/{h}/{}", child(i));
                exchange("GET", &path, 200, &[], "", 1, i as u64)
            })
            .collect();
        feed(&mut inv, &v);
        templates(&inv).len()
    };
    assert_eq!(run(&|_| "icon.png".to_string()), 1);
    assert_eq!(run(&|i| format!("page{i}")), 5);
}
