//! The HTTP/1 connection state machine: client/server chunks, gaps (up to
//! `u64::MAX`) and FINs in any order, under small random caps.
//!
//! Checked: no panic; one exchange per `exchanges` count; kept bodies and
//! header lists within their caps; the byte ledger (every byte fed in is in
//! exactly one `HttpStats` bucket).
#![no_main]

use apisensor::exchange::{Body, Exchange, Headers};
use apisensor::http1::script::{check_ledger, run_actions};
use apisensor_fuzz::HttpInput;
use libfuzzer_sys::fuzz_target;

fn check_part(what: &str, body: &Body, headers: &Headers, max_body: usize, max_headers: usize) {
    assert!(
        body.data.len() <= max_body,
        "{what} body keeps {} bytes, cap {max_body}",
        body.data.len()
    );
    assert!(
        body.data.len() as u64 <= body.decoded_len,
        "{what} body keeps {} bytes of {} decoded",
        body.data.len(),
        body.decoded_len
    );
    assert!(
        headers.len() <= max_headers,
        "{what} keeps {} headers, cap {max_headers}",
        headers.len()
    );
}

pub fn check_exchange(e: &Exchange, max_body: usize, max_headers: usize) {
    assert!(e.request.is_some() || e.response.is_some(), "empty exchange");
    if let Some(r) = &e.request {
        check_part("request", &r.body, &r.headers, max_body, max_headers);
    }
    if let Some(r) = &e.response {
        check_part("response", &r.body, &r.headers, max_body, max_headers);
    }
    assert!(e.anomalies.windows(2).all(|w| w[0] < w[1]), "anomalies not sorted/unique");
}

fuzz_target!(|input: HttpInput| {
    let settings = input.settings();
    let actions = input.script_actions();
    let (exchanges, stats) = run_actions(&settings, &actions);
    assert_eq!(stats.exchanges, exchanges.len() as u64);
    if let Err(e) = check_ledger(&actions, &stats) {
        panic!("{e}");
    }
    for e in &exchanges {
        check_exchange(e, settings.max_body_bytes, settings.max_headers);
    }
});
