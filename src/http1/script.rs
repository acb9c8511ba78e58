//! Stream scripts: a small text format describing the bytes of one
//! connection (client chunks, server chunks, gaps, FINs) and the exchanges
//! expected from it. Used by `tests/http_streams.rs` on `fixtures/streams/`,
//! by unit tests, and meant for fuzz targets. The format is documented in
//! `fixtures/streams/README.md`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use super::{ConnInfo, HttpConnection, HttpContext, HttpStats};
use crate::config::HttpSettings;
use crate::exchange::{Direction, Exchange, Timestamp};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Data(Direction, Vec<u8>),
    Gap(Direction, u64),
    Fin(Direction),
}

/// A parsed script: settings, actions, and expectation lines (kept as text).
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub settings: HttpSettings,
    pub actions: Vec<Action>,
    pub expects: Vec<(usize, String)>,
}

/// Decodes `\r \n \t \\ \xNN \s` (space) escapes.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = b.get(i).copied().ok_or("dangling backslash")?;
        i += 1;
        match e {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b's' => out.push(b' '),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s.get(i..i + 2).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("bad \\x{hex}: {e}"))?);
                i += 2;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

fn dir_of(s: &str) -> Result<Direction, String> {
    match s {
        ">" => Ok(Direction::ToServer),
        "<" => Ok(Direction::ToClient),
        _ => Err(format!("direction must be > or <, got {s:?}")),
    }
}

/// Parses script text.
pub fn parse_script(text: &str) -> Result<Script, String> {
    let mut sc = Script::default();
    for (no, raw) in text.lines().enumerate() {
        let lineno = no + 1;
        let err = |m: String| format!("line {lineno}: {m}");
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        if let Some(rest) = raw
            .strip_prefix("> ")
            .or(if raw == ">" { Some("") } else { None })
        {
            sc.actions.push(Action::Data(
                Direction::ToServer,
                unescape(rest).map_err(err)?,
            ));
        } else if let Some(rest) =
            raw.strip_prefix("< ")
                .or(if raw == "<" { Some("") } else { None })
        {
            sc.actions.push(Action::Data(
                Direction::ToClient,
                unescape(rest).map_err(err)?,
            ));
        } else {
            let mut w = raw.split_whitespace();
            match w.next().unwrap_or_default() {
                "gap" => {
                    let d = dir_of(w.next().unwrap_or_default()).map_err(err)?;
                    let n = w
                        .next()
                        .unwrap_or_default()
                        .parse::<u64>()
                        .map_err(|e| err(e.to_string()))?;
                    sc.actions.push(Action::Gap(d, n));
                }
                "fin" => {
                    let d = dir_of(w.next().unwrap_or_default()).map_err(err)?;
                    sc.actions.push(Action::Fin(d));
                }
                "set" => {
                    let key = w.next().unwrap_or_default();
                    let val = w.next().unwrap_or_default();
                    let num = || val.parse::<usize>().map_err(|e| err(format!("{key}: {e}")));
                    let s = &mut sc.settings;
                    match key {
                        "max_header_bytes" => s.max_header_bytes = num()?,
                        "max_headers" => s.max_headers = num()?,
                        "max_body_bytes" => s.max_body_bytes = num()?,
                        "max_decoded_body_bytes" => s.max_decoded_body_bytes = num()?,
                        "max_pending_requests" => s.max_pending_requests = num()?,
                        "decode_content" => s.decode_content = val == "true",
                        _ => return Err(err(format!("unknown setting {key}"))),
                    }
                }
                w0 if w0.starts_with("expect") => sc.expects.push((lineno, raw.to_string())),
                other => return Err(err(format!("unknown line kind {other:?}"))),
            }
        }
    }
    Ok(sc)
}

/// Feeds actions through one `HttpConnection` (each action 1 ms after the
/// previous one), then `finish`. Returns the exchanges and the counters.
pub fn run_actions(settings: &HttpSettings, actions: &[Action]) -> (Vec<Exchange>, HttpStats) {
    run_connection(settings, actions, false)
}

/// Like [`run_actions`], with the text fields and content decoding deferred
/// by the connection and finished afterwards as the pipeline's writer does:
/// the result must not differ.
pub fn run_actions_deferred(
    settings: &HttpSettings,
    actions: &[Action],
) -> (Vec<Exchange>, HttpStats) {
    let (mut out, mut stats) = run_connection(settings, actions, true);
    for e in &mut out {
        super::finish_decoding(e, &mut stats);
    }
    (out, stats)
}

fn run_connection(
    settings: &HttpSettings,
    actions: &[Action],
    defer_decoding: bool,
) -> (Vec<Exchange>, HttpStats) {
    let info = ConnInfo {
        flow_id: 1,
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80),
    };
    let mut stats = HttpStats::default();
    let mut out = Vec::new();
    let mut conn = HttpConnection::new(info);
    let mut ts = Timestamp::from_secs_nanos(1_000, 0);
    {
        let mut ctx = HttpContext {
            settings,
            stats: &mut stats,
            out: &mut out,
            defer_decoding,
        };
        for a in actions {
            ts = Timestamp(ts.0.saturating_add(1_000_000));
            match a {
                Action::Data(d, bytes) => conn.on_data(&mut ctx, *d, ts, bytes),
                Action::Gap(d, n) => conn.on_gap(&mut ctx, *d, ts, *n),
                Action::Fin(d) => conn.on_fin(&mut ctx, *d, ts),
            }
        }
        conn.finish(&mut ctx, Timestamp(ts.0.saturating_add(1_000_000)));
    }
    (out.into_iter().map(|e| *e).collect(), stats)
}

/// Checks the byte ledger after `run_actions`: the data bytes of the actions
/// are `bytes_in`, and each of them is in exactly one bucket (see `HttpStats`).
pub fn check_ledger(actions: &[Action], stats: &HttpStats) -> Result<(), String> {
    let fed: u64 = actions
        .iter()
        .map(|a| match a {
            Action::Data(_, bytes) => bytes.len() as u64,
            _ => 0,
        })
        .sum();
    if stats.bytes_in != fed || stats.bytes_in != stats.bytes_accounted() {
        return Err(format!(
            "byte ledger: fed {fed}, bytes_in {} != head {} + body {} + tunnel {} + between {} \
             + resync {} + garbage {} + head_truncated {} + stall {} (= {})",
            stats.bytes_in,
            stats.head_bytes,
            stats.body_bytes,
            stats.tunnel_bytes,
            stats.bytes_between_messages,
            stats.resync_bytes_skipped,
            stats.garbage_bytes_skipped,
            stats.head_bytes_truncated,
            stats.stall_bytes_dropped,
            stats.bytes_accounted(),
        ));
    }
    Ok(())
}

fn flag(e: &Exchange, name: &str) -> Result<bool, String> {
    Ok(match name {
        "gap" => e.flags.gap,
        "truncated" => e.flags.truncated,
        "unanswered" => e.flags.unanswered,
        "parse_error" => e.flags.parse_error,
        "tunnel" => e.tunnel,
        _ => return Err(format!("unknown flag {name}")),
    })
}

/// Checks one expectation line against the exchanges; `cur` is the index of
/// the exchange the last `expect` line matched.
fn check(line: &str, ex: &[Exchange], stats: &HttpStats, next: &mut usize) -> Result<(), String> {
    let mut w = line.split_whitespace();
    let kind = w.next().unwrap_or_default();
    let args: Vec<&str> = w.collect();
    let arg = |i: usize| args.get(i).copied().unwrap_or_default();
    let cur = || {
        next.checked_sub(1)
            .and_then(|i| ex.get(i))
            .ok_or_else(|| "no exchange selected by a previous `expect`".to_string())
    };
    match kind {
        "expect" => {
            let e = ex.get(*next).ok_or_else(|| {
                format!(
                    "expected exchange #{} but only {} exist",
                    *next + 1,
                    ex.len()
                )
            })?;
            let method = e
                .request
                .as_ref()
                .map_or("-".to_string(), |r| r.method.to_string());
            let uri = e.request.as_ref().map_or("-".to_string(), |r| {
                if r.uri.is_empty() {
                    "(empty)".to_string()
                } else {
                    r.uri.to_string()
                }
            });
            let status = match e.response.as_ref().map(|r| r.status) {
                None => "-".to_string(),
                Some(None) => "null".to_string(),
                Some(Some(code)) => code.to_string(),
            };
            let got = format!("{method} {uri} {status}");
            let want = format!("{} {} {}", arg(0), arg(1), arg(2));
            if got != want {
                return Err(format!(
                    "exchange #{}: got `{got}`, want `{want}`",
                    *next + 1
                ));
            }
            *next += 1;
        }
        "expect-count" => {
            let n: usize = arg(0).parse().map_err(|e| format!("{e}"))?;
            if ex.len() != n {
                return Err(format!("got {} exchanges, want {n}", ex.len()));
            }
        }
        "expect-flag" | "expect-no-flag" => {
            let v = flag(cur()?, arg(0))?;
            if v != (kind == "expect-flag") {
                return Err(format!("flag {} is {v}", arg(0)));
            }
        }
        "expect-anomaly" | "expect-no-anomaly" => {
            let e = cur()?;
            let names: Vec<String> = e
                .anomalies
                .iter()
                .map(|a| {
                    serde_json::to_string(a)
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_string()
                })
                .collect();
            let has = names.iter().any(|n| n == arg(0));
            if has != (kind == "expect-anomaly") {
                return Err(format!(
                    "anomaly {} presence is {has}; anomalies: {names:?}",
                    arg(0)
                ));
            }
        }
        "expect-resp-body" | "expect-req-body" => {
            let e = cur()?;
            let body = if kind == "expect-resp-body" {
                e.response.as_ref().map(|r| &r.body)
            } else {
                e.request.as_ref().map(|r| &r.body)
            };
            let want = unescape(line.split_once(' ').map_or("", |x| x.1))?;
            let got = body.map(|b| b.data.clone()).unwrap_or_default();
            if got != want {
                return Err(format!(
                    "body {:?}, want {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                ));
            }
        }
        "expect-resp-len" | "expect-req-len" => {
            let e = cur()?;
            let body = if kind == "expect-resp-len" {
                e.response.as_ref().map(|r| &r.body)
            } else {
                e.request.as_ref().map(|r| &r.body)
            };
            let (wire, dec) = body.map_or((0, 0), |b| (b.wire_len, b.decoded_len));
            let want_wire: u64 = arg(0).parse().map_err(|e| format!("{e}"))?;
            let want_dec: u64 = args
                .get(1)
                .map_or(Ok(want_wire), |s| s.parse())
                .map_err(|e| format!("{e}"))?;
            if (wire, dec) != (want_wire, want_dec) {
                return Err(format!("body lengths (wire, decoded) = ({wire}, {dec}), want ({want_wire}, {want_dec})"));
            }
        }
        "expect-version" => {
            let e = cur()?;
            let rq = e.request.as_ref().map_or("-", |r| r.version.as_str());
            let rs = e.response.as_ref().map_or("-", |r| r.version.as_str());
            if (rq, rs) != (arg(0), arg(1)) {
                return Err(format!("versions {rq} {rs}, want {} {}", arg(0), arg(1)));
            }
        }
        "expect-host" => {
            let e = cur()?;
            let h = e
                .request
                .as_ref()
                .and_then(|r| r.host.clone())
                .unwrap_or("-".into());
            if h != arg(0) {
                return Err(format!("host {h}, want {}", arg(0)));
            }
        }
        "expect-path" => {
            let e = cur()?;
            let p = e
                .request
                .as_ref()
                .map(|r| r.path.clone())
                .unwrap_or_default();
            if p != arg(0) {
                return Err(format!("path {p}, want {}", arg(0)));
            }
        }
        "expect-stat" => {
            let want: u64 = arg(1).parse().map_err(|e| format!("{e}"))?;
            let got = stats
                .entries()
                .into_iter()
                .find(|(n, _)| *n == arg(0))
                .map(|(_, v)| v)
                .ok_or_else(|| format!("unknown counter {}", arg(0)))?;
            if got != want {
                return Err(format!("counter {} = {got}, want {want}", arg(0)));
            }
        }
        _ => return Err(format!("unknown expectation {kind}")),
    }
    Ok(())
}

/// Runs a script and checks its expectations and the byte ledger; returns
/// the exchanges, or a message naming the first failed expectation.
pub fn run_script(text: &str) -> Result<Vec<Exchange>, String> {
    let sc = parse_script(text)?;
    let (ex, stats) = run_actions(&sc.settings, &sc.actions);
    check_ledger(&sc.actions, &stats)?;
    let (deferred, deferred_stats) = run_actions_deferred(&sc.settings, &sc.actions);
    if deferred != ex || deferred_stats != stats {
        return Err(
            "deferred decoding (text fields, content) changed the exchanges or counters".into(),
        );
    }
    let mut next = 0usize;
    for (lineno, line) in &sc.expects {
        check(line, &ex, &stats, &mut next).map_err(|m| format!("line {lineno} `{line}`: {m}"))?;
    }
    Ok(ex)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\r\n\x41\\\s").unwrap(), b"a\r\nA\\ ");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
    }

    #[test]
    fn a_script_runs_and_fails_with_the_line() {
        let ok = "> GET / HTTP/1.1\\r\\n\\r\\n\n< HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n\nexpect GET / 200\nexpect-count 1\n";
        assert_eq!(run_script(ok).unwrap().len(), 1);
        let bad = "> GET / HTTP/1.1\\r\\n\\r\\n\nexpect GET / 404\n";
        assert!(run_script(bad).unwrap_err().contains("line 2"));
    }
}
