//! End-to-end tests of `apisensor replay`: link types, worker-count
//! independence, multiple files, output options and error handling.

mod gen;

use gen::{conversation, frame, write_pcap, Conn, Framing, ACK, PSH, SYN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcap")
}

fn apisensor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(args)
        .output()
        .expect("run apisensor")
}

/// Replays `files` and returns the exchanges as JSON values (stdout).
fn replay(files: &[&Path], extra: &[&str]) -> Vec<Value> {
    let mut args: Vec<&str> = vec!["replay"];
    args.extend_from_slice(extra);
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = apisensor(&args);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn summary(exchanges: &[Value]) -> Vec<(String, String, i64)> {
    let mut v: Vec<_> = exchanges
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap_or("-").to_string(),
                e["uri"].as_str().unwrap_or("-").to_string(),
                e["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

const REQUEST: &[u8] = b"GET /api/users/42?verbose=1 HTTP/1.1\r\nHost: api.test\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\": 42}\n";

#[test]
fn every_link_type_and_ip_version_yields_the_exchange() {
    let dir = tempdir();
    for framing in [
        Framing::Ethernet,
        Framing::Vlan,
        Framing::QinQ,
        Framing::LinuxSll,
        Framing::LinuxSll2,
        Framing::RawIp,
        Framing::NullLoopback,
    ] {
        for ipv6 in [false, true] {
            let conn = Conn {
                ipv6,
                ..Conn::default()
            };
            let path = dir.join(format!("{framing:?}-{ipv6}.pcap"));
            write_pcap(
                &path,
                framing,
                &conversation(framing, &conn, &[(REQUEST, RESPONSE)]),
                1_700_000_000_000_000,
            );
            let ex = replay(&[&path], &[]);
            assert_eq!(
                summary(&ex),
                vec![("GET".into(), "/api/users/42?verbose=1".into(), 200)],
                "{framing:?} ipv6={ipv6}"
            );
            let e = &ex[0];
            assert_eq!(e["request"]["path"], "/api/users/42");
            assert_eq!(e["request"]["query"], "verbose=1");
            assert_eq!(e["request"]["host"], "api.test");
            assert_eq!(e["response"]["body"]["wire_len"], 11);
            let client = e["client"].as_str().unwrap();
            assert!(client.ends_with(":40000"), "{client}");
        }
    }
}

#[test]
fn worker_count_does_not_change_exchanges_or_their_order() {
    let dir = tempdir();
    // Many connections interleaved in one capture, plus the bundled fixtures.
    let mut frames = Vec::new();
    let conns: Vec<Conn> = (0..40)
        .map(|i| Conn {
            client_port: 30_000 + i,
            ipv6: i % 3 == 0,
            ..Conn::default()
        })
        .collect();
    let per_conn: Vec<Vec<Vec<u8>>> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let req = format!("GET /items/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
            let req2 = format!("DELETE /items/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
            let body = format!("{{\"item\":{i}}}");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conversation(
                Framing::Ethernet,
                c,
                &[
                    (req.as_bytes(), resp.as_bytes()),
                    (req2.as_bytes(), b"HTTP/1.1 204 No Content\r\n\r\n"),
                ],
            )
        })
        .collect();
    let longest = per_conn.iter().map(Vec::len).max().unwrap();
    for step in 0..longest {
        for c in &per_conn {
            if let Some(f) = c.get(step) {
                frames.push(f.clone());
            }
        }
    }
    // Requests that never get an answer, then quiet connections long after:
    // the hanging flows end by idle timeout in the middle of other traffic,
    // so the order of those flushes is part of what must not change.
    let start = 1_600_000_000_000_000u64;
    let mut capture = gen::PcapFile::new(Framing::Ethernet.dlt());
    for (i, f) in frames.iter().enumerate() {
        capture.packet(start + i as u64 * 1_000, f);
    }
    for i in 0..12u16 {
        let c = Conn {
            client_port: 40_000 + i,
            ..Conn::default()
        };
        let req = format!("GET /hang/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
        let at = start + 1_000_000 + u64::from(i) * 7_000_000;
        capture.packet(
            at,
            &frame(Framing::Ethernet, &c, true, 1, 1, ACK | PSH, req.as_bytes()),
        );
    }
    for i in 0..30u16 {
        let c = Conn {
            client_port: 50_000 + i,
            ..Conn::default()
        };
        let req = format!("GET /late/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let at = start + 60_000_000 + u64::from(i) * 10_000_000;
        for (k, f) in conversation(Framing::Ethernet, &c, &[(req.as_bytes(), resp)])
            .iter()
            .enumerate()
        {
            capture.packet(at + k as u64 * 1_000, f);
        }
    }
    let mixed = dir.join("interleaved.pcap");
    capture.write(&mixed);

    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(mixed.clone());
    // Redacted output is deterministic under a configured key (a random
    // one is drawn per process otherwise).
    let keyed = dir.join("keyed.toml");
    std::fs::write(
        &keyed,
        format!("[classify]\nredaction_key_hex = \"{}\"\n", "5a".repeat(32)),
    )
    .unwrap();
    for file in &files {
        // Byte for byte, order included: the writer merges the workers'
        // exchanges into one order that does not depend on their number.
        let output = |workers: &str| {
            let out = apisensor(&[
                "--config",
                keyed.to_str().unwrap(),
                "replay",
                "--workers",
                workers,
                file.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let one = output("1");
        assert!(!one.is_empty(), "{} gave no exchanges", file.display());
        for workers in ["2", "4"] {
            assert!(
                one == output(workers),
                "{} differs with {workers} workers",
                file.display()
            );
        }
    }
    let mixed_ex = replay(&[&mixed], &["--workers", "3"]);
    assert_eq!(mixed_ex.len(), 80 + 12 + 30);
    let hung: Vec<&Value> = mixed_ex
        .iter()
        .filter(|e| e["uri"].as_str().unwrap().starts_with("/hang/"))
        .collect();
    assert_eq!(hung.len(), 12);
    assert!(hung.iter().all(|e| e["flags"]["unanswered"] == true));
    // Each hanging request is written when its flow times out, between the
    // late conversations, not all at the end.
    let first_hang = mixed_ex.iter().position(|e| e["uri"] == "/hang/0").unwrap();
    assert!(
        first_hang < mixed_ex.len() - 12,
        "idle flows flushed only at the end"
    );
}

#[test]
fn several_files_and_pcapng_in_one_run() {
    let get = fixtures().join("get.pcap");
    let ng = fixtures().join("cooper-grill-dvwa.pcapng");
    let single = replay(&[&get], &[]).len() + replay(&[&ng], &[]).len();
    let both = replay(&[&get, &ng], &[]);
    assert_eq!(both.len(), single);
    assert!(both
        .iter()
        .any(|e| e["uri"].as_str().is_some_and(|u| u.contains("sqli"))));
}

#[test]
fn out_file_stats_json_and_bodies() {
    let dir = tempdir();
    let out = dir.join("ex.jsonl");
    let stats = dir.join("stats.json");
    let get = fixtures().join("get-gzip.pcap");
    let o = apisensor(&[
        "replay",
        "--bodies",
        "--out",
        out.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        get.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty(), "exchanges go to --out, not stdout");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("packets/s") && stderr.contains("drops:"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let e: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let body = &e["response"]["body"];
    assert_eq!(body["content_encoding"], "gzip");
    assert!(body["decoded_len"].as_u64().unwrap() > body["wire_len"].as_u64().unwrap());
    assert!(
        body["data"].as_str().is_some(),
        "--bodies prints kept bodies"
    );
    let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(s["stats"]["decode"]["packets"], 14);
    assert_eq!(s["exchanges_written"], 1);
    // Without --bodies no body bytes are printed.
    let plain = replay(&[&get], &[]);
    assert!(plain[0]["response"]["body"].get("data").is_none());
}

/// Gzip bodies are inflated by the worker or, while it keeps up, by the
/// writer: either way every body is decoded and a corrupt one is flagged
/// and counted in the summary.
#[test]
fn gzip_bodies_are_decoded_and_failures_counted() {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let json = br#"{"id":42,"email":"kim@example.com","tags":["a","b"]}"#.repeat(8);
    let mut g = GzEncoder::new(Vec::new(), Compression::fast());
    g.write_all(&json).unwrap();
    let good = g.finish().unwrap();
    let mut corrupt = good.clone();
    corrupt[10] = 0xff; // a deflate block type that does not exist
    let response = |body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let (ok, bad) = (response(&good), response(&corrupt));
    let dir = tempdir();
    let path = dir.join("gzip.pcap");
    let stats = dir.join("gzip-stats.json");
    let frames = conversation(
        Framing::Ethernet,
        &Conn::default(),
        &[(REQUEST, &ok), (REQUEST, &bad), (REQUEST, &ok)],
    );
    write_pcap(&path, Framing::Ethernet, &frames, 1_700_000_000_000_000);
    let ex = replay(&[&path], &["--stats-json", stats.to_str().unwrap()]);
    assert_eq!(ex.len(), 3);
    for (i, e) in ex.iter().enumerate() {
        let body = &e["response"]["body"];
        assert_eq!(body["wire_len"], good.len(), "exchange {i}");
        let anomalies = e["anomalies"].as_array().cloned().unwrap_or_default();
        if i == 1 {
            assert!(anomalies.contains(&"decompression_error".into()), "{e}");
        } else {
            assert_eq!(body["decoded_len"], json.len(), "exchange {i}");
            assert!(anomalies.is_empty(), "{e}");
        }
    }
    let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(s["stats"]["http"]["decompression_errors"], 1, "{s}");
    assert_eq!(s["stats"]["http"]["anomalies"], 1, "{s}");
}

#[test]
fn unknown_config_key_fails_naming_it() {
    let dir = tempdir();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[flow]\nidle_timeout = 10\n").unwrap();
    let o = apisensor(&["--config", cfg.to_str().unwrap(), "replay", "x.pcap"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("idle_timeout"), "{err}");
    let o = apisensor(&["check-config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("sensor.toml");
    let o = apisensor(&["check-config", bundled.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn dash_reads_the_capture_from_stdin() {
    let get = fixtures().join("get.pcap");
    let from_file = apisensor(&["replay", get.to_str().unwrap()]);
    let from_stdin = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(["replay", "-"])
        .stdin(std::fs::File::open(&get).unwrap())
        .output()
        .unwrap();
    assert!(
        from_stdin.status.success(),
        "{}",
        String::from_utf8_lossy(&from_stdin.stderr)
    );
    assert!(!from_file.stdout.is_empty());
    assert_eq!(from_stdin.stdout, from_file.stdout);
}

#[test]
fn missing_file_is_an_error_and_truncated_file_is_counted() {
    let o = apisensor(&["replay", "/nonexistent/x.pcap"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.pcap"));

    let dir = tempdir();
    let bytes = std::fs::read(fixtures().join("pipelined-requests.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let stats = dir.join("s.json");
    let o = apisensor(&[
        "replay",
        "--stats-json",
        stats.to_str().unwrap(),
        cut.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(s["stats"]["pipeline"]["read_errors"], 1);
    assert!(s["exchanges_written"].as_u64().unwrap() >= 4);
}

#[test]
fn midstream_pickup_and_reordered_segments() {
    let dir = tempdir();
    let conn = Conn::default();
    let f = Framing::Ethernet;
    let (c, s) = (conn.client_isn + 1, conn.server_isn + 1);
    let (req_a, rest) = REQUEST.split_at(10);
    let (req_b, req_c) = rest.split_at(10);
    let (resp_a, resp_b) = RESPONSE.split_at(30);
    let req_end = c + REQUEST.len() as u32;
    // No handshake: the first segment seen starts each direction; after it,
    // segments arrive out of order.
    let frames = vec![
        frame(f, &conn, true, c, s, ACK | PSH, req_a),
        frame(f, &conn, true, c + 20, s, ACK | PSH, req_c),
        frame(f, &conn, true, c + 10, s, ACK | PSH, req_b),
        frame(f, &conn, false, s, req_end, ACK | PSH, resp_a),
        frame(f, &conn, false, s + 30, req_end, ACK | PSH, resp_b),
    ];
    let path = dir.join("mid.pcap");
    write_pcap(&path, f, &frames, 1_000_000);
    let ex = replay(&[&path], &[]);
    assert_eq!(
        summary(&ex),
        vec![("GET".into(), "/api/users/42?verbose=1".into(), 200)]
    );
    // A lone SYN flood creates flows but no exchanges and no errors.
    let syns: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            let c = Conn {
                client_port: 1024 + i,
                ..Conn::default()
            };
            frame(f, &c, true, 7, 0, SYN, b"")
        })
        .collect();
    let flood = dir.join("syn.pcap");
    write_pcap(&flood, f, &syns, 1_000_000);
    assert!(replay(&[&flood], &[]).is_empty());
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "apisensor-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// IPv4 fragments of the request segment, one of them repeating bytes of
/// another with other content (an IP evasion): the sensor drops that
/// datagram, counts it, and flags the connection's request when the client
/// sends it again whole, with a `protocol.overlapping_fragments` event.
#[test]
fn overlapping_fragments_flag_the_request_with_an_event() {
    let dir = tempdir();
    let conn = Conn::default();
    let f = Framing::RawIp;
    let (c, s) = (conn.client_isn + 1, conn.server_isn + 1);
    // The whole request as one IP packet (RawIp: the frame is the packet).
    let whole = frame(f, &conn, true, c, s, ACK | PSH, REQUEST);
    let header_len = usize::from(whole[0] & 0x0f) * 4;
    let ip_payload = &whole[header_len..];
    let fragment = |offset: usize, more: bool, data: &[u8]| {
        let mut h = etherparse::Ipv4Header::new(
            data.len() as u16,
            64,
            etherparse::IpNumber::TCP,
            [10, 1, 0, 1],
            [10, 1, 0, 2],
        )
        .unwrap();
        h.identification = 77;
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
        let mut out = Vec::new();
        h.write(&mut out).unwrap();
        out.extend_from_slice(data);
        out
    };
    let mut evil = ip_payload[24..48].to_vec();
    evil[4] ^= 0x20; // one letter of the path in another case
    let req_end = c + REQUEST.len() as u32;
    let frames = vec![
        frame(f, &conn, true, c - 1, 0, SYN, b""),
        frame(f, &conn, false, s - 1, c, SYN | ACK, b""),
        frame(f, &conn, true, c, s, ACK, b""),
        fragment(0, true, &ip_payload[..32]),
        fragment(24, true, &evil),
        fragment(48, false, &ip_payload[48..]),
        whole.clone(),
        frame(f, &conn, false, s, req_end, ACK | PSH, RESPONSE),
    ];
    let path = dir.join("overlap.pcap");
    write_pcap(&path, f, &frames, 1_000_000);
    let ex = replay(&[&path], &[]);
    assert_eq!(ex.len(), 1, "{ex:?}");
    assert_eq!(ex[0]["uri"], "/api/users/42?verbose=1");
    let anomalies = ex[0]["anomalies"].as_array().unwrap();
    assert!(
        anomalies.iter().any(|a| a == "overlapping_fragments"),
        "{anomalies:?}"
    );
    let events = replay(&[&path], &["--events"]);
    assert!(
        events
            .iter()
            .any(|e| e["rule"] == "protocol.overlapping_fragments"),
        "{events:?}"
    );
    // Twin: the same fragments without the overlap give a clean exchange.
    let clean = vec![
        frames[0].clone(),
        frames[1].clone(),
        frames[2].clone(),
        fragment(0, true, &ip_payload[..24]),
        fragment(24, true, &ip_payload[24..48]),
        fragment(48, false, &ip_payload[48..]),
        frames[7].clone(),
    ];
    let path = dir.join("clean.pcap");
    write_pcap(&path, f, &clean, 1_000_000);
    let ex = replay(&[&path], &[]);
    assert_eq!(ex.len(), 1, "{ex:?}");
    assert!(
        ex[0]["anomalies"].as_array().is_none_or(Vec::is_empty),
        "{ex:?}"
    );
}
