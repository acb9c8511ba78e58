//! End-to-end tests of tunnel decapsulation: the same HTTP conversation
//! captured plainly and as cloud traffic-mirroring tunnels (VXLAN, GENEVE,
//! GRE, ERSPAN II/III) gives the same exchanges, and the tunnel is counted.

mod gen;

use gen::{conversation, encapsulate, write_pcap, Conn, Framing, Tunnel};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXCHANGES: &[(&[u8], &[u8])] = &[
    (
        b"GET /api/orders?limit=5 HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
    ),
    (
        b"POST /api/orders HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 9\r\n\r\n{\"id\":1}\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    ),
];

/// Replays `path`; returns the sorted (method, uri, status) and the stats JSON.
fn replay(path: &Path, extra: &[&str]) -> (Vec<(String, String, i64)>, Value) {
    let stats = path.with_extension("stats.json");
    let mut args = vec!["replay", "--stats-json", stats.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(&args)
        .output()
        .expect("run apisensor");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut summary: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).expect("each line is JSON");
            (
                e["method"].as_str().unwrap_or("-").to_string(),
                e["uri"].as_str().unwrap_or("-").to_string(),
                e["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    summary.sort();
    let stats: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    (summary, stats)
}

fn counter(tunnel: Tunnel) -> &'static str {
    match tunnel {
        Tunnel::Vxlan => "vxlan",
        Tunnel::Geneve => "geneve",
        Tunnel::GreTeb | Tunnel::GreIp => "gre",
        Tunnel::ErspanII | Tunnel::ErspanIII => "erspan",
    }
}

#[test]
fn tunnelled_conversation_matches_the_plain_one() {
    let dir = tempdir();
    for ipv6 in [false, true] {
        let conn = Conn {
            ipv6,
            ..Conn::default()
        };
        let frames = conversation(Framing::Ethernet, &conn, EXCHANGES);
        let plain = dir.join(format!("plain-{ipv6}.pcap"));
        write_pcap(&plain, Framing::Ethernet, &frames, 1_700_000_000_000_000);
        let (expected, plain_stats) = replay(&plain, &[]);
        assert_eq!(
            expected,
            vec![
                ("GET".into(), "/api/orders?limit=5".into(), 200),
                ("POST".into(), "/api/orders".into(), 201),
            ]
        );
        assert_eq!(plain_stats["stats"]["decode"]["vxlan"], 0);

        for tunnel in Tunnel::ALL {
            let wrapped: Vec<Vec<u8>> = frames
                .iter()
                .enumerate()
                .map(|(i, f)| encapsulate(tunnel, f, i as u32))
                .collect();
            let path = dir.join(format!("{tunnel:?}-{ipv6}.pcap"));
            write_pcap(&path, Framing::Ethernet, &wrapped, 1_700_000_000_000_000);
            let (got, stats) = replay(&path, &[]);
            assert_eq!(got, expected, "{tunnel:?} ipv6={ipv6}");
            let decode = &stats["stats"]["decode"];
            let n = frames.len() as u64;
            assert_eq!(decode[counter(tunnel)], n, "{tunnel:?}: {decode}");
            assert_eq!(decode["packets"], n, "each packet counted once");
            assert_eq!(decode["tcp_segments"], n);
            assert_eq!(decode["tunnel_malformed"], 0);
            assert_eq!(decode["udp"], 0, "tunnel UDP is not plain UDP");
            if matches!(tunnel, Tunnel::ErspanII | Tunnel::ErspanIII) {
                assert_eq!(decode["gre"], n, "ERSPAN rides on GRE");
            }
        }
    }
}

#[test]
fn decapsulation_can_be_turned_off() {
    let dir = tempdir();
    let frames = conversation(Framing::Ethernet, &Conn::default(), EXCHANGES);
    let wrapped: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| encapsulate(Tunnel::Vxlan, f, 0))
        .collect();
    let path = dir.join("vxlan-off.pcap");
    write_pcap(&path, Framing::Ethernet, &wrapped, 1_000_000);
    let cfg = dir.join("off.toml");
    std::fs::write(&cfg, "[decode]\ndecapsulate = false\n").unwrap();
    let (got, stats) = replay(&path, &["--config", cfg.to_str().unwrap()]);
    assert!(got.is_empty());
    let decode = &stats["stats"]["decode"];
    assert_eq!(decode["udp"], frames.len() as u64);
    assert_eq!(decode["vxlan"], 0);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "apisensor-tunnels-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
