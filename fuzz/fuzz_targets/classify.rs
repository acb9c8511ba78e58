//! The sensitive-data classifier on arbitrary bodies, keys and values: JSON
//! (bounded depth and value count), forms, multipart, free text, redaction.
//!
//! Input: `[mode][depth][bytes]`. `mode % 5` picks the content type (JSON,
//! form, multipart, text, none = sniffed); `depth % 40 + 1` is
//! `max_json_depth`. The bytes are the request and response body; their first
//! line, split at the first `=`, is also classified as one key and value.
#![no_main]

use apisensor::classify::Classifier;
use apisensor::config::ClassifySettings;
use apisensor::exchange::{Body, Exchange, ExchangeFlags, Headers, HttpVersion, Request, Response, Timestamp};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=b"),
    Some("text/plain"),
    None,
];

fuzz_target!(|data: &[u8]| {
    let [mode, depth, body @ ..] = data else {
        return;
    };
    let settings = ClassifySettings {
        max_json_depth: usize::from(depth % 40) + 1,
        max_values_per_body: 500,
        max_body_bytes: 64 * 1024,
        redaction_key_hex: "00".repeat(32),
        ..ClassifySettings::default()
    };
    let cls = Classifier::new(&settings);
    let ct = TYPES[usize::from(mode % 5)];
    let text = String::from_utf8_lossy(body);
    let first_line = text.lines().next().unwrap_or_default();

    let mut headers = Headers::default();
    headers.push(b"Authorization", first_line.as_bytes(), 16, 1 << 16);
    headers.push(b"Cookie", first_line.as_bytes(), 16, 1 << 16);
    let b = Body {
        wire_len: body.len() as u64,
        decoded_len: body.len() as u64,
        content_encoding: None,
        data: body.to_vec(),
        data_truncated: false,
        pending_decode: None,
    };
    let ex = Exchange {
        flow_id: 1,
        client: "10.0.0.1:1000".parse().unwrap(),
        server: "10.0.0.2:80".parse().unwrap(),
        request: Some(Request {
            ts: Timestamp(0),
            end_ts: Timestamp(0),
            method: "POST".into(),
            uri: format!("/{first_line}?{first_line}").into(),
            path: "/".into(),
            query: None,
            version: HttpVersion::Http11,
            host: None,
            content_type: ct.map(Into::into),
            headers: headers.clone(),
            body: b.clone(),
            pending_text: false,
        }),
        response: Some(Response {
            ts: Timestamp(0),
            end_ts: Timestamp(0),
            version: HttpVersion::Http11,
            status: Some(200),
            reason: "OK".into(),
            content_type: ct.map(Into::into),
            headers,
            body: b,
            pending_text: false,
        }),
        tunnel: false,
        flags: ExchangeFlags::default(),
        anomalies: Vec::new(),
    };
    let c = cls.classify_exchange(&ex);
    for f in c.request.iter().chain(&c.response) {
        assert!(f.confidence >= settings.min_confidence && f.confidence <= 100);
        assert!(!f.field.is_empty());
    }
    for shape in [&c.request_shape, &c.response_shape].into_iter().flatten() {
        assert!(shape.fields.len() <= apisensor::classify::MAX_SHAPE_FIELDS);
    }

    let (key, value) = first_line.split_once('=').unwrap_or(("", first_line));
    if let Some(f) = cls.classify_value(key, value) {
        // A reported value never survives its own redaction.
        let redacted = cls.redact_text(key, value);
        assert!(redacted.contains("[REDACTED:"), "{key:?}={value:?} -> {redacted:?} ({f:?})");
    }
    let _ = cls.redact_body(ct, body);
    let _ = cls.redact_text("", &text);
});
