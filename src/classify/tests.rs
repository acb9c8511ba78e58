//! Tests of the classifier as a whole: exchange walking, limits, redaction.
//! Per-type positives and negatives live beside each family's validators and
//! use the helpers here.

use super::*;
use crate::exchange::{Body, ExchangeFlags, HttpVersion, Request, Response, Timestamp};
use std::sync::OnceLock;

pub(super) fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        Classifier::new(&ClassifySettings {
            redaction_key_hex: "00".repeat(32),
            ..ClassifySettings::default()
        })
    })
}

/// `value` under `key` is found as `t`.
#[track_caller]
pub(super) fn is(key: &str, value: &str, t: DataType) {
    let got = classifier().classify_value(key, value);
    assert_eq!(
        got.as_ref().map(|f| f.data_type),
        Some(t),
        "{key:?} = {value:?}: got {got:?}"
    );
}

/// `value` under `key` is not reported at all.
#[track_caller]
pub(super) fn not(key: &str, value: &str) {
    let got = classifier().classify_value(key, value);
    assert!(got.is_none(), "{key:?} = {value:?}: got {got:?}");
}

fn headers(list: &[(&str, &str)]) -> Headers {
    let mut h = Headers::default();
    for (n, v) in list {
        h.push(n.as_bytes(), v.as_bytes(), 100, 1 << 20);
    }
    h
}

fn exchange(
    uri: &str,
    req_headers: &[(&str, &str)],
    req_ct: Option<&str>,
    req_body: &[u8],
    resp_headers: &[(&str, &str)],
    resp_body: &[u8],
) -> Exchange {
    let body = |b: &[u8]| Body {
        wire_len: b.len() as u64,
        decoded_len: b.len() as u64,
        content_encoding: None,
        data: b.to_vec(),
        data_truncated: false,
        pending_decode: None,
    };
    Exchange {
        flow_id: 1,
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "10.0.0.2:80".parse().unwrap(),
        request: Some(Request {
            ts: Timestamp(1),
            end_ts: Timestamp(1),
            method: "POST".into(),
            uri: uri.into(),
            path: uri.split('?').next().unwrap().into(),
            query: uri.split_once('?').map(|(_, q)| q.into()),
            version: HttpVersion::Http11,
            host: Some("api.example.com".into()),
            content_type: req_ct.map(Into::into),
            headers: headers(req_headers),
            body: body(req_body),
            pending_text: false,
        }),
        response: Some(Response {
            ts: Timestamp(2),
            end_ts: Timestamp(2),
            version: HttpVersion::Http11,
            status: Some(200),
            reason: "OK".into(),
            content_type: Some("application/json".into()),
            headers: headers(resp_headers),
            body: body(resp_body),
            pending_text: false,
        }),
        tunnel: false,
        flags: ExchangeFlags::default(),
        anomalies: Vec::new(),
    }
}

fn has(findings: &[Finding], t: DataType, loc: Location, field: &str) -> bool {
    findings
        .iter()
        .any(|f| f.data_type == t && f.location == loc && f.field == field)
}

#[test]
fn at_least_forty_types_with_unique_snake_case_names() {
    assert!(DataType::ALL.len() >= 40, "{}", DataType::ALL.len());
    let mut names: Vec<&str> = DataType::ALL.iter().map(|t| t.as_str()).collect();
    assert!(names.iter().all(|n| n
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), DataType::ALL.len());
    for t in DataType::ALL {
        assert_eq!(DataType::from_name(t.as_str()), Some(*t));
    }
    assert_eq!(
        serde_json::to_string(&DataType::KrRrn).unwrap(),
        "\"kr_rrn\""
    );
}

#[test]
fn classifier_is_shareable() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Classifier>();
    check::<std::sync::Arc<Classifier>>();
}

#[test]
fn exchange_request_and_response_findings() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let auth = format!("Bearer {jwt}");
    let body = r#"{"user":{"email":"jane.doe@example.com","phone":"+1 415 555 2671",
        "cards":[{"number":"4111 1111 1111 1111","cvv":"123"},{"number":"5555555555554444","cvv":"456"}],
        "order_id":"4111111111111111","version":"1.2.3.4","id":"123e4567-e89b-12d3-a456-426614174000",
        "주민번호":"900101-1234568","note":"call me at jane.doe@example.com please","age":41}}"#
        .as_bytes();
    let ex = exchange(
        "/v1/users/jane@example.com/orders?api_key=q8F2kLm0Qz7Rt2WxB4nV&page=2",
        &[
            ("Host", "api.example.com"),
            ("Authorization", &auth),
            (
                "Cookie",
                "theme=dark; JSESSIONID=8E1C2B3A4D5F6E7A8B9C0D1E2F3A4B5C",
            ),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
        Some("application/json; charset=utf-8"),
        body,
        &[(
            "Set-Cookie",
            "sid=Zx81kQ0pLm2Nb7Vc4Xa9Ws3E; Path=/; HttpOnly",
        )],
        br#"{"items":[{"iban":"DE89370400440532013000"}],"aws":{"key":"AKIAIOSFODNN7EXAMPLE"}}"#,
    );
    let c = classifier().classify_exchange(&ex);
    let r = &c.request;
    assert!(has(r, DataType::Email, Location::Path, "path[2]"), "{r:#?}");
    assert!(
        has(r, DataType::Secret, Location::Query, "api_key"),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::Jwt, Location::Header, "authorization"),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::SessionToken, Location::Cookie, "JSESSIONID"),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::Email, Location::Body, "user.email"),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::PhoneNumber, Location::Body, "user.phone"),
        "{r:#?}"
    );
    assert!(
        has(
            r,
            DataType::CreditCard,
            Location::Body,
            "user.cards[].number"
        ),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::CardCvv, Location::Body, "user.cards[].cvv"),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::KrRrn, Location::Body, "user.주민번호"),
        "{r:#?}"
    );
    assert!(
        has(r, DataType::Email, Location::Body, "user.note"),
        "{r:#?}"
    );
    // Look-alikes stay quiet, and the card in an array is one finding.
    assert!(!r
        .iter()
        .any(|f| f.field == "user.order_id" || f.field == "user.version" || f.field == "user.id"));
    assert!(!r.iter().any(|f| f.data_type == DataType::Ipv4), "{r:#?}");
    assert_eq!(
        r.iter()
            .filter(|f| f.data_type == DataType::CreditCard)
            .count(),
        1
    );
    let resp = &c.response;
    assert!(
        has(resp, DataType::SessionToken, Location::Cookie, "sid"),
        "{resp:#?}"
    );
    assert!(
        has(resp, DataType::Iban, Location::Body, "items[].iban"),
        "{resp:#?}"
    );
    assert!(
        has(resp, DataType::AwsAccessKeyId, Location::Body, "aws.key"),
        "{resp:#?}"
    );
    let shape = c.request_shape.unwrap();
    let get = |p: &str| shape.fields.iter().find(|(n, _)| n == p).map(|(_, t)| *t);
    assert_eq!(get("user"), Some(FieldType::Object));
    assert_eq!(get("user.email"), Some(FieldType::Email));
    assert_eq!(get("user.cards"), Some(FieldType::Array));
    assert_eq!(get("user.cards[].number"), Some(FieldType::String));
    assert_eq!(get("user.id"), Some(FieldType::Uuid));
    assert_eq!(get("user.age"), Some(FieldType::Integer));
    assert!(!c.limited);
    assert!(c.stats.values_examined > 10);
}

#[test]
fn form_multipart_and_text_bodies() {
    let ex = exchange(
        "/login",
        &[],
        Some("application/x-www-form-urlencoded"),
        b"username=jane&password=hunter22&email=jane%40example.com",
        &[],
        b"",
    );
    let r = classifier().classify_exchange(&ex).request;
    assert!(
        has(&r, DataType::Password, Location::Body, "password"),
        "{r:#?}"
    );
    assert!(has(&r, DataType::Email, Location::Body, "email"), "{r:#?}");

    let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"ssn\"\r\n\r\n536-22-1234\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n4111111111111111\r\n--XyZ--\r\n";
    let ex = exchange(
        "/upload",
        &[],
        Some("multipart/form-data; boundary=XyZ"),
        mp,
        &[],
        b"",
    );
    let r = classifier().classify_exchange(&ex).request;
    assert!(has(&r, DataType::UsSsn, Location::Body, "ssn"), "{r:#?}");
    assert_eq!(r.len(), 1, "{r:#?}");

    let text = b"deploy log: using key AKIAIOSFODNN7EXAMPLE and version 1.2.3.4, db postgres://app:pw1234@db/x\n";
    let ex = exchange("/logs", &[], Some("text/plain"), text, &[], b"");
    let r = classifier().classify_exchange(&ex).request;
    assert!(
        has(&r, DataType::AwsAccessKeyId, Location::Body, "$"),
        "{r:#?}"
    );
    assert!(
        has(&r, DataType::DatabaseUrl, Location::Body, "$"),
        "{r:#?}"
    );
    assert!(!r.iter().any(|f| f.data_type == DataType::Ipv4), "{r:#?}");

    let ex = exchange(
        "/img",
        &[],
        Some("image/png"),
        b"\x89PNG\r\n\x1a\nAKIAIOSFODNN7EXAMPLE",
        &[],
        b"",
    );
    assert!(classifier().classify_exchange(&ex).request.is_empty());

    // Unnamed pairs still name a field (found by the fuzz target).
    let ex = exchange(
        "/?=jane@example.com",
        &[("Cookie", "=jane@example.com")],
        None,
        b"",
        &[],
        b"",
    );
    let r = classifier().classify_exchange(&ex).request;
    assert!(has(&r, DataType::Email, Location::Query, "$"), "{r:#?}");
    assert!(has(&r, DataType::Email, Location::Cookie, "$"), "{r:#?}");
}

#[test]
fn deep_nesting_is_bounded_and_never_overflows() {
    let deep = vec![b'['; 100_000];
    let ex = exchange("/", &[], Some("application/json"), &deep, &[], b"");
    let c = classifier().classify_exchange(&ex);
    assert!(c.limited);
    assert!(c.stats.limited_depth >= 1);

    // Deeper than max_json_depth but within serde_json's limit: skipped, counted.
    let mut nested = String::new();
    for _ in 0..40 {
        nested.push_str("{\"a\":");
    }
    nested.push_str("\"jane@example.com\"");
    for _ in 0..40 {
        nested.push('}');
    }
    let body = format!("{{\"email\":\"top@example.com\",\"deep\":{nested}}}");
    let ex = exchange(
        "/",
        &[],
        Some("application/json"),
        body.as_bytes(),
        &[],
        b"",
    );
    let c = classifier().classify_exchange(&ex);
    assert!(c.limited && c.stats.limited_depth == 1, "{:?}", c.stats);
    assert_eq!(c.request.len(), 1, "{:#?}", c.request);
}

#[test]
fn value_and_byte_caps() {
    let settings = ClassifySettings {
        max_values_per_body: 5,
        max_body_bytes: 200,
        ..ClassifySettings::default()
    };
    let cls = Classifier::new(&settings);
    let items: Vec<String> = (0..20).map(|i| format!("\"u{i}@example.com\"")).collect();
    let body = format!("{{\"a\":1,\"emails\":[{}]}}", items.join(","));
    let ex = exchange(
        "/",
        &[],
        Some("application/json"),
        body.as_bytes(),
        &[],
        b"",
    );
    let c = cls.classify_exchange(&ex);
    assert!(c.limited);
    assert_eq!(c.stats.limited_values, 1);
    assert_eq!(c.stats.limited_bytes, 1);
    assert!(has(&c.request, DataType::Email, Location::Body, "emails[]"));

    let disabled = Classifier::new(&ClassifySettings {
        enabled: false,
        ..ClassifySettings::default()
    });
    assert!(disabled.classify_exchange(&ex).is_empty());
}

#[test]
fn malformed_json_keeps_what_came_first() {
    let ex = exchange(
        "/",
        &[],
        Some("application/json"),
        br#"{"email":"a@example.com","x":[1,2"#,
        &[],
        b"",
    );
    let c = classifier().classify_exchange(&ex);
    assert!(has(&c.request, DataType::Email, Location::Body, "email"));
    assert_eq!(c.stats.json_errors, 1);
    let ex = exchange(
        "/",
        &[],
        Some("application/json"),
        b"token AKIAIOSFODNN7EXAMPLE",
        &[],
        b"",
    );
    let c = classifier().classify_exchange(&ex);
    assert!(
        has(&c.request, DataType::AwsAccessKeyId, Location::Body, "$"),
        "{:#?}",
        c.request
    );
}

#[test]
fn redaction_replaces_values_with_keyed_tags() {
    let cls = classifier();
    let tag = cls.redaction_tag(DataType::Email, "jane@example.com");
    assert!(
        tag.starts_with("[REDACTED:email:") && tag.len() == "[REDACTED:email:]".len() + 12,
        "{tag}"
    );
    assert_eq!(tag, cls.redaction_tag(DataType::Email, "jane@example.com"));
    let other_key = Classifier::new(&ClassifySettings {
        redaction_key_hex: "11".repeat(32),
        ..ClassifySettings::default()
    });
    assert_ne!(
        tag,
        other_key.redaction_tag(DataType::Email, "jane@example.com")
    );

    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
    let h = cls.redact_text("Authorization", &format!("Bearer {jwt}"));
    assert!(
        h.starts_with("Bearer [REDACTED:jwt:") && !h.contains("eyJ"),
        "{h}"
    );

    let q = cls.redact_text(
        "",
        "/u/jane@example.com?api_key=q8F2kLm0Qz7Rt2WxB4nV&page=2",
    );
    assert!(
        q.starts_with("/u/[REDACTED:email:")
            && q.contains("api_key=[REDACTED:secret:")
            && q.ends_with("&page=2"),
        "{q}"
    );

    let c = cls.redact_text(
        "Cookie",
        "theme=dark; sessionid=8E1C2B3A4D5F6E7A8B9C0D1E2F3A4B5C",
    );
    assert!(
        c.starts_with("theme=dark; sessionid=[REDACTED:session_token:"),
        "{c}"
    );

    // Any cookie value that is not a plain setting, whatever its name.
    let c = cls.redact_text("Cookie", "lang=en-US; _app_key=Zm9vYmFyYmF6; step=2");
    assert!(
        c.starts_with("lang=en-US; _app_key=[REDACTED:") && c.ends_with("; step=2"),
        "{c}"
    );
    let s = cls.redact_text("Set-Cookie", "auth=s3cr3tvalue; Path=/; HttpOnly");
    assert!(
        s.starts_with("auth=[REDACTED:") && s.ends_with("; Path=/; HttpOnly"),
        "{s}"
    );

    // Under a credential-named key, a value is a secret whatever its shape.
    let k = cls.redact_text("X-Api-Key", "hunter2hunter2");
    assert!(k.starts_with("[REDACTED:secret:"), "{k}");
    let j = cls.redact_body(
        Some("application/json"),
        br#"{"pin":1234,"secret_answer":"blue","password":"x","name":"jane"}"#,
    );
    assert!(
        !j.contains("1234") && !j.contains("blue") && !j.contains("\"x\"") && j.contains("jane"),
        "{j}"
    );
    // Not a credential key: an ordinary value stays.
    assert_eq!(
        cls.redact_text("X-Request-Id", "hunter2hunter2"),
        "hunter2hunter2"
    );

    let body = br#"{"user":{"email":"jane@example.com","card":"4111111111111111","n":4111111111111111,"note":"mail jane@example.com now","ok":true}}"#;
    let r = cls.redact_body(Some("application/json"), body);
    assert!(
        !r.contains("jane@") && !r.contains("4111111111111111"),
        "{r}"
    );
    assert!(
        r.contains("\"ok\":true") && r.contains("mail [REDACTED:email:"),
        "{r}"
    );

    let f = cls.redact_body(
        Some("application/x-www-form-urlencoded"),
        b"user=jane&password=hunter22",
    );
    assert!(
        f.starts_with("user=jane&password=[REDACTED:password:"),
        "{f}"
    );

    let pem = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\nbye";
    let t = cls.redact_body(Some("text/plain"), pem.as_bytes());
    assert!(
        t.starts_with("key:\n[REDACTED:pem_private_key:") && t.ends_with("]\nbye"),
        "{t}"
    );

    let big = vec![b'a'; 2 << 20];
    let r = cls.redact_body(Some("text/plain"), &big);
    assert!(r.ends_with("more bytes not scanned, not shown]"));
}

#[test]
fn random_key_when_none_is_configured() {
    let a = Classifier::new(&ClassifySettings::default());
    let b = Classifier::new(&ClassifySettings::default());
    assert_ne!(
        a.redaction_tag(DataType::Email, "x@example.com"),
        b.redaction_tag(DataType::Email, "x@example.com")
    );
}
