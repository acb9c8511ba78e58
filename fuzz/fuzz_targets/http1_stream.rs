//! The HTTP/1 parser on plain bytes with the default settings. Input:
//! `[chunk][split lo][split hi][bytes]` — the bytes before `split` are the
//! client's, the rest the server's (see `apisensor_fuzz::STREAM_HEADER_LEN`).
//!
//! Each direction is fed in pieces of `chunk` bytes (client first, then
//! server), and also as one piece: how a stream is cut into reads must not
//! change the exchanges (method, URI, status, headers, flags, anomalies,
//! bodies); the pieces run also leaves the text fields and content decoding
//! to be finished afterwards, as workers do while the writer keeps up,
//! which must not change them either. A third run interleaves client and
//! server pieces and is only checked for panics (interleaving legitimately
//! changes pairing).
#![no_main]

use apisensor::config::HttpSettings;
use apisensor::exchange::{Direction, Exchange};
use apisensor::http1::script::{run_actions, run_actions_deferred, Action};
use apisensor_fuzz::STREAM_HEADER_LEN;
use libfuzzer_sys::fuzz_target;

/// What must not depend on how the bytes were cut.
fn summary(ex: &[Exchange]) -> Vec<String> {
    ex.iter()
        .map(|e| {
            let rq = e.request.as_ref().map(|r| {
                format!(
                    "{} {} {:?} {:?} {:?}",
                    r.method, r.uri, r.headers, r.body.data, r.body.decoded_len
                )
            });
            let rs = e.response.as_ref().map(|r| {
                format!(
                    "{:?} {:?} {:?} {:?}",
                    r.status, r.headers, r.body.data, r.body.decoded_len
                )
            });
            format!(
                "{rq:?} | {rs:?} | tunnel={} {:?} {:?}",
                e.tunnel, e.flags, e.anomalies
            )
        })
        .collect()
}

fn pieces(dir: Direction, bytes: &[u8], chunk: usize) -> Vec<Action> {
    if bytes.is_empty() {
        return Vec::new();
    }
    if chunk == 0 {
        return vec![Action::Data(dir, bytes.to_vec())];
    }
    bytes
        .chunks(chunk)
        .map(|c| Action::Data(dir, c.to_vec()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < STREAM_HEADER_LEN {
        return;
    }
    let chunk = usize::from(data[0]);
    let split = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let body = &data[STREAM_HEADER_LEN..];
    let (client, server) = body.split_at(split.min(body.len()));
    let settings = HttpSettings::default();
    let (c, s) = (Direction::ToServer, Direction::ToClient);
    let fins = [Action::Fin(c), Action::Fin(s)];

    let mut whole = pieces(c, client, 0);
    whole.extend(pieces(s, server, 0));
    whole.extend(fins.clone());
    let (whole_ex, whole_stats) = run_actions(&settings, &whole);
    assert_eq!(whole_stats.exchanges, whole_ex.len() as u64);

    if chunk != 0 {
        let mut cut = pieces(c, client, chunk);
        cut.extend(pieces(s, server, chunk));
        cut.extend(fins.clone());
        let (cut_ex, _) = run_actions_deferred(&settings, &cut);
        assert_eq!(
            summary(&cut_ex),
            summary(&whole_ex),
            "exchanges differ when each direction is fed in {chunk}-byte pieces"
        );

        // Interleaved: only must not panic.
        let cp = pieces(c, client, chunk);
        let sp = pieces(s, server, chunk);
        let mut mixed = Vec::new();
        for i in 0..cp.len().max(sp.len()) {
            mixed.extend(cp.get(i).cloned());
            mixed.extend(sp.get(i).cloned());
        }
        mixed.extend(fins);
        let (mixed_ex, mixed_stats) = run_actions(&settings, &mixed);
        assert_eq!(mixed_stats.exchanges, mixed_ex.len() as u64);
    }
});
