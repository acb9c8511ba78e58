//! Resource bounds under hostile traffic. Each test builds a capture, replays
//! it with the real binary (`apisensor replay`), measures the child's peak
//! resident memory from the kernel — `VmHWM` of `/proc/<pid>/status`, polled
//! while it runs, and the child's own final `VmHWM` (`peak_rss_kib` in its
//! `--stats-json`), the larger of the two — and asserts
//! a bound, the counters that explain what was capped, and that a normal
//! exchange interleaved with the flood is still parsed ("never stall other
//! flows"). Numbers are printed; see them with
//! `cargo test --test floods -- --nocapture --test-threads 1`.
//!
//! Bounds are "the sensor's memory with only the normal flow" (measured) plus
//! what the configured caps allow for the flood, so they hold for debug and
//! release builds alike.

mod gen;
mod support;

use gen::{frame, Conn, Framing, ACK, FIN, PSH, SYN};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NORMAL_REQUEST: &[u8] = b"GET /normal/flow HTTP/1.1\r\nHost: ok\r\n\r\n";
const NORMAL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A classic pcap written as it is generated (the SYN flood is ~350 MB).
struct StreamPcap {
    out: BufWriter<fs::File>,
    ts_micros: u64,
}

impl StreamPcap {
    fn create(path: &Path) -> StreamPcap {
        let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
        out.write_all(&gen::PcapFile::new(Framing::Ethernet.dlt()).into_bytes())
            .unwrap();
        StreamPcap {
            out,
            ts_micros: 1_700_000_000_000_000,
        }
    }

    /// One frame, `step_micros` after the previous one.
    fn packet(&mut self, step_micros: u64, frame: &[u8]) {
        self.ts_micros += step_micros;
        let len = (frame.len() as u32).to_le_bytes();
        self.out
            .write_all(&((self.ts_micros / 1_000_000) as u32).to_le_bytes())
            .unwrap();
        self.out
            .write_all(&((self.ts_micros % 1_000_000) as u32).to_le_bytes())
            .unwrap();
        self.out.write_all(&len).unwrap();
        self.out.write_all(&len).unwrap();
        self.out.write_all(frame).unwrap();
    }

    fn frames(&mut self, frames: &[Vec<u8>]) {
        for f in frames {
            self.packet(100, f);
        }
    }

    fn finish(mut self) {
        self.out.flush().unwrap();
    }
}

/// Removes a (large) generated file when the test ends, pass or fail.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The frames of one direction's `data`, cut into segments of `mss` bytes.
fn segments(
    conn: &Conn,
    from_client: bool,
    seq: u32,
    ack: u32,
    data: &[u8],
    mss: usize,
) -> Vec<Vec<u8>> {
    let mut s = seq;
    data.chunks(mss)
        .map(|part| {
            let f = frame(
                Framing::Ethernet,
                conn,
                from_client,
                s,
                ack,
                ACK | PSH,
                part,
            );
            s = s.wrapping_add(part.len() as u32);
            f
        })
        .collect()
}

/// Handshake frames of `conn`.
fn handshake(conn: &Conn) -> Vec<Vec<u8>> {
    let (c, s) = (conn.client_isn, conn.server_isn);
    vec![
        frame(Framing::Ethernet, conn, true, c, 0, SYN, b""),
        frame(Framing::Ethernet, conn, false, s, c + 1, SYN | ACK, b""),
        frame(Framing::Ethernet, conn, true, c + 1, s + 1, ACK, b""),
    ]
}

/// A whole request/response connection, bodies cut into `mss`-byte segments.
fn exchange_frames(conn: &Conn, request: &[u8], response: &[u8], mss: usize) -> Vec<Vec<u8>> {
    let (c, s) = (conn.client_isn + 1, conn.server_isn + 1);
    let mut frames = handshake(conn);
    frames.extend(segments(conn, true, c, s, request, mss));
    let c2 = c + request.len() as u32;
    frames.extend(segments(conn, false, s, c2, response, mss));
    let s2 = s + response.len() as u32;
    frames.push(frame(Framing::Ethernet, conn, true, c2, s2, FIN | ACK, b""));
    frames.push(frame(
        Framing::Ethernet,
        conn,
        false,
        s2,
        c2 + 1,
        FIN | ACK,
        b"",
    ));
    frames.push(frame(
        Framing::Ethernet,
        conn,
        true,
        c2 + 1,
        s2 + 1,
        ACK,
        b"",
    ));
    frames
}

/// The normal connection every test interleaves with its flood.
fn normal_conn() -> Conn {
    Conn {
        client_port: 2_222,
        ..Conn::default()
    }
}

fn normal_frames() -> Vec<Vec<u8>> {
    exchange_frames(&normal_conn(), NORMAL_REQUEST, NORMAL_RESPONSE, 1460)
}

/// One measured `apisensor replay` run.
struct Measured {
    max_rss_kib: u64,
    elapsed: Duration,
    stats: serde_json::Value,
    exchanges: Vec<serde_json::Value>,
}

impl Measured {
    fn counter(&self, group: &str, name: &str) -> u64 {
        self.stats["stats"][group][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {group}.{name}"))
    }

    fn normal_exchange_parsed(&self) -> bool {
        self.exchanges
            .iter()
            .any(|e| e["uri"] == "/normal/flow" && e["response"]["status"].as_u64() == Some(200))
    }

    fn with_uri(&self, uri: &str) -> Vec<&serde_json::Value> {
        self.exchanges.iter().filter(|e| e["uri"] == uri).collect()
    }
}

fn has_anomaly(e: &serde_json::Value, name: &str) -> bool {
    e["anomalies"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == name))
}

/// Runs the binary on `pcap` with `config` (TOML text, may be empty), kills it
/// after `timeout`, and reads its peak RSS. Not `ru_maxrss` of `wait4`: a
/// child spawned with `posix_spawn`/vfork carries the test process's own
/// high-water mark into it (measured: every run reported the harness's 93 MiB).
fn replay_measured(
    name: &str,
    pcap: &Path,
    config: &str,
    workers: usize,
    timeout: Duration,
) -> Measured {
    replay_measured_keeping(name, pcap, config, workers, timeout, None)
}

/// `replay_measured`, parsing only the output lines that contain one of
/// `keep` (a flood's hundreds of thousands of exchanges are counted from
/// the stats instead).
fn replay_measured_keeping(
    name: &str,
    pcap: &Path,
    config: &str,
    workers: usize,
    timeout: Duration,
    keep: Option<&[&str]>,
) -> Measured {
    let dir = support::scratch_dir(&format!("floods-run-{name}"));
    let cfg = dir.join("sensor.toml");
    fs::write(&cfg, config).unwrap();
    let out = dir.join("out.jsonl");
    let stats = dir.join("stats.json");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("--config")
        .arg(&cfg)
        .args(["replay", "--workers", &workers.to_string(), "--out"])
        .arg(&out)
        .arg("--stats-json")
        .arg(&stats)
        .arg(pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            fs::File::create(dir.join("stderr.txt")).unwrap(),
        ))
        .spawn()
        .expect("spawn apisensor");
    let pid = child.id();
    let mut polled_kib = 0u64;
    let status = loop {
        if let Some(k) = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| apisensor::telemetry::proc_status_kib(&s, "VmHWM:"))
        {
            polled_kib = polled_kib.max(k);
        }
        if let Some(status) = child.try_wait().expect("wait for apisensor") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: apisensor still running after {timeout:?} (a stall)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let stderr = fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    assert!(
        status.success() && !stderr.contains("panicked"),
        "{name}: apisensor failed ({status}): {stderr}"
    );
    let exchanges = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| keep.is_none_or(|k| k.iter().any(|m| l.contains(m))))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stats: serde_json::Value = serde_json::from_slice(&fs::read(&stats).unwrap()).unwrap();
    let reported_kib = stats["peak_rss_kib"]
        .as_u64()
        .expect("peak_rss_kib in the stats");
    let max_rss_kib = polled_kib.max(reported_kib);
    // Under every flood, each byte is still accounted for.
    let problems = support::byte_ledger_problems(&stats);
    assert!(problems.is_empty(), "{name}: {}", problems.join("\n"));
    Measured {
        max_rss_kib,
        elapsed,
        stats,
        exchanges,
    }
}

/// Peak RSS of the sensor replaying only the normal connection, with the
/// default settings and 2 workers: the fixed overhead every bound starts from.
fn baseline_kib() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let dir = support::scratch_dir("floods-baseline-pcap");
        let path = dir.join("normal.pcap");
        let mut p = StreamPcap::create(&path);
        p.frames(&normal_frames());
        p.finish();
        let m = replay_measured("baseline", &path, "", 2, Duration::from_secs(60));
        assert!(m.normal_exchange_parsed());
        println!(
            "baseline (normal flow only): peak RSS {} KiB",
            m.max_rss_kib
        );
        m.max_rss_kib
    })
}

/// Added to every bound: mimalloc's per-thread segments and the packet
/// batches in flight between the reader and the workers grow with the amount
/// of traffic replayed, not with any flow's state (measured: +7 MiB for a
/// 200 kB trace, +16 MiB for 4 MB, then flat).
const SLACK_KIB: u64 = 48 * 1024;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The target for every flood below, with the default settings:
/// peak RSS under 256 MiB.
const DEFAULT_TARGET_KIB: u64 = 256 * 1024;

/// Writes `count` one-packet connections of `template` (an IPv4 Ethernet
/// frame of `Conn::default()`), each from its own address and port, with
/// the normal connection's packets spread through the middle of them.
fn write_one_packet_connections(path: &Path, template: &[u8], count: u32) {
    let mut p = StreamPcap::create(path);
    let mut frame = template.to_vec();
    let normal = normal_frames();
    let middle = count / 2;
    for i in 0..count {
        // Source 10.64.0.0/10 and port, so every packet starts a flow.
        let src = 0x0a40_0000u32 | (i >> 6);
        frame[26..30].copy_from_slice(&src.to_be_bytes());
        frame[34..36].copy_from_slice(&(1024 + (i & 63) as u16).to_be_bytes());
        frame[38..42].copy_from_slice(&i.wrapping_mul(7919).to_be_bytes());
        p.packet(1, &frame);
        if i >= middle && ((i - middle) as usize) < normal.len() * 10 && i % 10 == 0 {
            p.packet(1, &normal[((i - middle) / 10) as usize]);
        }
    }
    p.finish();
}

#[test]
fn syn_flood_of_3_million_flows_with_8_workers_stays_within_the_global_flow_cap() {
    const FLOWS: u32 = 3_000_000;
    const WORKERS: usize = 8;
    let base = baseline_kib();
    let dir = support::scratch_dir("floods-syn");
    let path = dir.join("syn-flood.pcap");
    let _cleanup = RemoveOnDrop(path.clone());
    let t0 = Instant::now();
    let syn = frame(Framing::Ethernet, &Conn::default(), true, 7, 0, SYN, b"");
    write_one_packet_connections(&path, &syn, FLOWS);
    let bytes = fs::metadata(&path).unwrap().len();
    let generated = t0.elapsed();
    let m = replay_measured_keeping(
        "syn",
        &path,
        "",
        WORKERS,
        Duration::from_secs(600),
        Some(&["/normal/flow"]),
    );
    let max_flows = apisensor::config::FlowSettings::default().max_flows as u64;
    println!(
        "syn flood: {FLOWS} flows, {:.0} MB pcap made in {:.1}s, replayed with {WORKERS} workers in {:.1}s; \
         peak RSS {:.1} MiB (target {:.0} MiB, baseline {:.1} MiB); evicted_capacity {}, evicted_memory {}",
        bytes as f64 / 1e6,
        generated.as_secs_f64(),
        m.elapsed.as_secs_f64(),
        mib(m.max_rss_kib),
        mib(DEFAULT_TARGET_KIB),
        mib(base),
        m.counter("flow", "flows_evicted_capacity"),
        m.counter("flow", "flows_evicted_memory"),
    );
    assert_eq!(m.counter("flow", "flows_created"), u64::from(FLOWS) + 1);
    // The cap is global: 8 workers hold no more flows than 1 would.
    let evicted =
        m.counter("flow", "flows_evicted_capacity") + m.counter("flow", "flows_evicted_memory");
    assert!(
        evicted >= u64::from(FLOWS) - max_flows,
        "the tables evicted {evicted}: more than flow.max_flows = {max_flows} stayed open"
    );
    assert!(
        m.normal_exchange_parsed(),
        "the normal flow was not parsed during the flood"
    );
    assert!(
        m.max_rss_kib <= DEFAULT_TARGET_KIB,
        "peak RSS {} KiB over the {} KiB target",
        m.max_rss_kib,
        DEFAULT_TARGET_KIB
    );
}

/// Request heads announcing a body that never comes, one packet each: the
/// body buffer was reserved from the announced length (1.38 GB for 20,000
/// of them, 13.7 GB for 200,000).
fn announced_body_heads(path: &Path, count: u32) {
    let head = b"POST /upload HTTP/1.1\r\nHost: victim\r\nContent-Length: 65536\r\n\r\n";
    let template = frame(
        Framing::Ethernet,
        &Conn::default(),
        true,
        7,
        1,
        ACK | PSH,
        head,
    );
    write_one_packet_connections(path, &template, count);
}

#[test]
fn announced_content_lengths_reserve_nothing_and_every_request_is_reported() {
    const CONNS: u32 = 200_000;
    let base = baseline_kib();
    let dir = support::scratch_dir("floods-announced");
    let path = dir.join("announced.pcap");
    announced_body_heads(&path, CONNS);
    let m = replay_measured_keeping(
        "announced",
        &path,
        "",
        2,
        Duration::from_secs(300),
        Some(&["/normal/flow"]),
    );
    println!(
        "announced bodies: {CONNS} one-packet heads with Content-Length: 65536 in {:.1}s; \
         peak RSS {:.1} MiB (target {:.0} MiB, baseline {:.1} MiB); evicted_memory {}, requests {}",
        m.elapsed.as_secs_f64(),
        mib(m.max_rss_kib),
        mib(DEFAULT_TARGET_KIB),
        mib(base),
        m.counter("flow", "flows_evicted_memory"),
        m.counter("http", "requests"),
    );
    assert!(m.normal_exchange_parsed());
    // Evicted or not, every request leaves as an exchange: nothing is lost.
    assert_eq!(m.counter("http", "requests"), u64::from(CONNS) + 1);
    assert_eq!(
        m.stats["exchanges_written"].as_u64(),
        Some(u64::from(CONNS) + 1)
    );
    assert!(
        m.max_rss_kib <= DEFAULT_TARGET_KIB,
        "peak RSS {} KiB over the {} KiB target",
        m.max_rss_kib,
        DEFAULT_TARGET_KIB
    );
}

#[test]
fn a_small_memory_budget_holds_and_its_evictions_are_counted() {
    const CONNS: u32 = 100_000;
    const BUDGET: u64 = 64 << 20;
    let base = baseline_kib();
    let dir = support::scratch_dir("floods-budget");
    let path = dir.join("announced.pcap");
    announced_body_heads(&path, CONNS);
    let config = format!("[memory]\nbudget_bytes = {BUDGET}\n");
    let m = replay_measured_keeping(
        "budget",
        &path,
        &config,
        2,
        Duration::from_secs(300),
        Some(&["/normal/flow"]),
    );
    let evicted = m.counter("flow", "flows_evicted_memory");
    println!(
        "64 MiB budget: {CONNS} heads; peak RSS {:.1} MiB (baseline {:.1} MiB + budget {:.0} MiB); evicted_memory {evicted}",
        mib(m.max_rss_kib),
        mib(base),
        mib(BUDGET / 1024),
    );
    // The flows' share (4 MiB for 2 workers) cannot hold 100,000 of them.
    assert!(evicted > 0, "no flow was evicted for memory");
    assert!(m.normal_exchange_parsed());
    assert_eq!(
        m.stats["exchanges_written"].as_u64(),
        Some(u64::from(CONNS) + 1)
    );
    assert!(
        m.max_rss_kib <= base + BUDGET / 1024,
        "peak RSS {} KiB over baseline + budget {} KiB",
        m.max_rss_kib,
        base + BUDGET / 1024
    );
}

#[test]
fn pipelined_compressed_bodies_are_bounded_by_the_budget() {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write as _;
    const CONNS: u16 = 1_000;
    const REQUESTS: usize = 64;
    let base = baseline_kib();
    // ~100 wire bytes that inflate to 64 KiB, in both codings.
    let zeros = vec![0u8; 64 * 1024];
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&zeros).unwrap();
    let gz = gz.finish().unwrap();
    let mut zl = ZlibEncoder::new(Vec::new(), Compression::best());
    zl.write_all(&zeros).unwrap();
    let zl = zl.finish().unwrap();
    let mut stream = Vec::new();
    for i in 0..REQUESTS {
        let (coding, body) = if i % 2 == 0 {
            ("gzip", &gz)
        } else {
            ("deflate", &zl)
        };
        stream.extend_from_slice(
            format!(
                "POST /pipelined HTTP/1.1\r\nHost: victim\r\nContent-Encoding: {coding}\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        stream.extend_from_slice(body);
    }
    let dir = support::scratch_dir("floods-pipelined");
    let path = dir.join("pipelined.pcap");
    let mut p = StreamPcap::create(&path);
    let normal = normal_frames();
    for k in 0..CONNS {
        let c = Conn {
            client_port: 10_000 + k,
            client_isn: 1_000 + u32::from(k) * 13,
            ..Conn::default()
        };
        p.frames(&handshake(&c));
        p.frames(&segments(
            &c,
            true,
            c.client_isn + 1,
            c.server_isn + 1,
            &stream,
            1460,
        ));
        if k == CONNS / 2 {
            p.frames(&normal);
        }
    }
    p.finish();
    let bytes = fs::metadata(&path).unwrap().len();
    let m = replay_measured_keeping(
        "pipelined",
        &path,
        "",
        2,
        Duration::from_secs(300),
        Some(&["/normal/flow"]),
    );
    let requests = u64::from(CONNS) * REQUESTS as u64;
    println!(
        "pipelined compressed bodies: {CONNS} connections x {REQUESTS} unanswered requests \
         ({} wire bytes each, 64 KiB decoded), {:.1} MB pcap, in {:.1}s; peak RSS {:.1} MiB \
         (target {:.0} MiB, baseline {:.1} MiB); evicted_memory {}, exchanges {}",
        gz.len(),
        bytes as f64 / 1e6,
        m.elapsed.as_secs_f64(),
        mib(m.max_rss_kib),
        mib(DEFAULT_TARGET_KIB),
        mib(base),
        m.counter("flow", "flows_evicted_memory"),
        m.stats["exchanges_written"],
    );
    assert!(m.normal_exchange_parsed());
    assert!(m.counter("flow", "flows_evicted_memory") > 0);
    assert_eq!(m.stats["exchanges_written"].as_u64(), Some(requests + 1));
    assert!(
        m.max_rss_kib <= DEFAULT_TARGET_KIB,
        "peak RSS {} KiB over the {} KiB target",
        m.max_rss_kib,
        DEFAULT_TARGET_KIB
    );
}

#[test]
fn connections_carrying_one_byte_cost_little() {
    const CONNS: u32 = 300_000;
    let base = baseline_kib();
    let dir = support::scratch_dir("floods-small");
    let path = dir.join("small.pcap");
    let template = frame(
        Framing::Ethernet,
        &Conn::default(),
        true,
        7,
        1,
        ACK | PSH,
        b"G",
    );
    write_one_packet_connections(&path, &template, CONNS);
    let m = replay_measured_keeping(
        "small",
        &path,
        "",
        2,
        Duration::from_secs(300),
        Some(&["/normal/flow"]),
    );
    println!(
        "one-byte connections: {CONNS} in {:.1}s; peak RSS {:.1} MiB (target {:.0} MiB, \
         baseline {:.1} MiB); evicted_capacity {}, evicted_memory {}",
        m.elapsed.as_secs_f64(),
        mib(m.max_rss_kib),
        mib(DEFAULT_TARGET_KIB),
        mib(base),
        m.counter("flow", "flows_evicted_capacity"),
        m.counter("flow", "flows_evicted_memory"),
    );
    assert!(m.normal_exchange_parsed());
    assert_eq!(m.counter("flow", "flows_created"), u64::from(CONNS) + 1);
    assert!(
        m.max_rss_kib <= DEFAULT_TARGET_KIB,
        "peak RSS {} KiB over the {} KiB target",
        m.max_rss_kib,
        DEFAULT_TARGET_KIB
    );
}

#[test]
fn slowloris_one_header_byte_per_packet_stays_bounded() {
    const CONNS: u16 = 5_000;
    const BYTES_EACH: usize = 120;
    let base = baseline_kib();
    let dir = support::scratch_dir("floods-slowloris");
    let path = dir.join("slowloris.pcap");
    let mut p = StreamPcap::create(&path);
    let conns: Vec<Conn> = (0..CONNS)
        .map(|i| Conn {
            client_port: 10_000 + i,
            client_isn: 1_000 + u32::from(i) * 7,
            ..Conn::default()
        })
        .collect();
    // A request head that never ends (no blank line).
    let mut head = b"GET /slow HTTP/1.1\r\nHost: victim\r\n".to_vec();
    while head.len() < BYTES_EACH {
        head.extend_from_slice(b"X-a: b\r\n");
    }
    head.truncate(BYTES_EACH);
    for c in &conns {
        p.frames(&handshake(c));
    }
    let normal = normal_frames();
    for (k, byte) in head.iter().enumerate() {
        for c in &conns {
            let f = frame(
                Framing::Ethernet,
                c,
                true,
                c.client_isn + 1 + k as u32,
                c.server_isn + 1,
                ACK | PSH,
                std::slice::from_ref(byte),
            );
            p.packet(100, &f);
        }
        // The normal connection, one packet per round, meanwhile.
        if let Some(f) = normal.get(k) {
            p.packet(100, f);
        }
    }
    p.finish();
    let m = replay_measured("slowloris", &path, "", 2, Duration::from_secs(300));
    // Each connection may hold its flow entry, the overlap-check window of
    // each direction, the partial header, and its HTTP state (4 KiB).
    let per_conn = apisensor::flow::FlowTable::bytes_per_idle_flow() as u64
        + 2 * apisensor::config::FlowSettings::default().overlap_check_bytes as u64
        + BYTES_EACH as u64
        + 4096;
    let bound = base + SLACK_KIB + u64::from(CONNS) * per_conn * 2 / 1024;
    println!(
        "slowloris: {CONNS} connections x {BYTES_EACH} header bytes one per packet, {} packets in {:.1}s; \
         peak RSS {:.1} MiB, bound {:.1} MiB; flushed at end {}, requests {}",
        m.counter("decode", "packets"),
        m.elapsed.as_secs_f64(),
        mib(m.max_rss_kib),
        mib(bound),
        m.counter("flow", "flows_flushed_at_end"),
        m.counter("http", "requests"),
    );
    assert!(m.normal_exchange_parsed());
    assert_eq!(m.counter("flow", "flows_created"), u64::from(CONNS) + 1);
    // The unfinished heads are reported when the capture ends, not dropped silently.
    assert_eq!(m.counter("flow", "flows_flushed_at_end"), u64::from(CONNS));
    assert!(
        m.max_rss_kib <= bound,
        "peak RSS {} KiB over {} KiB",
        m.max_rss_kib,
        bound
    );
}

/// A flood capture: the flood connection's frames with the normal connection's
/// spread among them.
fn write_interleaved(path: &Path, flood: &[Vec<u8>]) {
    let normal = normal_frames();
    let every = (flood.len() / (normal.len() + 1)).max(1);
    let mut p = StreamPcap::create(path);
    let mut n = normal.iter();
    for (i, f) in flood.iter().enumerate() {
        p.packet(100, f);
        if i % every == every / 2 {
            if let Some(f) = n.next() {
                p.packet(100, f);
            }
        }
    }
    for f in n {
        p.packet(100, f);
    }
    p.finish();
}

fn flood_conn() -> Conn {
    Conn {
        client_port: 3_333,
        ..Conn::default()
    }
}

#[test]
fn giant_header_is_flagged_and_the_next_request_still_parses() {
    let base = baseline_kib();
    let mut request = b"GET /giant HTTP/1.1\r\nHost: a\r\n".to_vec();
    while request.len() < 4_000_000 {
        request.extend_from_slice(
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    request.extend_from_slice(b"\r\nGET /after-giant HTTP/1.1\r\nHost: a\r\n\r\n");
    let response = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n\
                     HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let flood = exchange_frames(&flood_conn(), &request, response, 1460);
    let dir = support::scratch_dir("floods-giant");
    let path = dir.join("giant.pcap");
    write_interleaved(&path, &flood);
    let m = replay_measured("giant", &path, "", 2, Duration::from_secs(120));
    // The head is buffered up to max_header_bytes (64 KiB), never more.
    let bound = base + SLACK_KIB + 2 * 64;
    println!(
        "giant header: {} byte head, peak RSS {:.1} MiB (bound {:.1} MiB), headers_too_large {}, in {:.1}s",
        request.len(),
        mib(m.max_rss_kib),
        mib(bound),
        m.counter("http", "headers_too_large"),
        m.elapsed.as_secs_f64()
    );
    assert!(m.normal_exchange_parsed());
    assert!(m.counter("http", "headers_too_large") >= 1);
    // The bytes of the oversized head are skipped, and counted as such.
    assert!(m.counter("http", "resync_bytes_skipped") >= 4_000_000 - 2 * 65_536);
    assert!(
        m.exchanges
            .iter()
            .any(|e| has_anomaly(e, "headers_too_large")),
        "no exchange flagged headers_too_large"
    );
    assert!(
        m.max_rss_kib <= bound,
        "peak RSS {} KiB over {} KiB",
        m.max_rss_kib,
        bound
    );
}

#[test]
fn a_million_tiny_chunks_are_bounded_and_do_not_stall() {
    const CHUNKS: usize = 1_000_000;
    let base = baseline_kib();
    let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..CHUNKS {
        response.extend_from_slice(b"1\r\na\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let flood = exchange_frames(
        &flood_conn(),
        b"GET /chunks HTTP/1.1\r\nHost: a\r\n\r\n",
        &response,
        60_000,
    );
    let dir = support::scratch_dir("floods-chunks");
    let path = dir.join("chunks.pcap");
    write_interleaved(&path, &flood);
    let m = replay_measured("chunks", &path, "", 2, Duration::from_secs(120));
    // max_body_bytes kept (64 KiB); de-chunking itself buffers nothing.
    let bound = base + SLACK_KIB + 2 * 64;
    let e = m.with_uri("/chunks");
    let body = &e.first().expect("the chunked exchange")["response"]["body"];
    println!(
        "tiny chunks: {CHUNKS} chunks ({} wire bytes) in {:.1}s; decoded_len {}, peak RSS {:.1} MiB (bound {:.1} MiB), body_bytes_not_kept {}",
        response.len(),
        m.elapsed.as_secs_f64(),
        body["decoded_len"],
        mib(m.max_rss_kib),
        mib(bound),
        m.counter("http", "body_bytes_not_kept"),
    );
    assert!(m.normal_exchange_parsed());
    assert_eq!(body["decoded_len"].as_u64(), Some(CHUNKS as u64));
    assert_eq!(body["data_truncated"], true);
    // Kept up to max_body_bytes (64 KiB), the rest counted.
    assert_eq!(
        m.counter("http", "body_bytes_not_kept"),
        (CHUNKS - 64 * 1024) as u64
    );
    assert!(
        m.max_rss_kib <= bound,
        "peak RSS {} KiB over {} KiB",
        m.max_rss_kib,
        bound
    );
}

#[test]
fn hostile_lengths_are_flagged_and_the_stream_goes_on() {
    // Each request is followed on the same connection by an innocent one,
    // which must still be seen (the sensor does not swallow the stream).
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "/chunk-2pow64",
            b"POST /chunk-2pow64 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n",
            "invalid_chunk_size",
        ),
        (
            "/chunk-17f",
            b"POST /chunk-17f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n",
            "invalid_chunk_size",
        ),
        (
            "/cl-negative",
            b"POST /cl-negative HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "invalid_content_length",
        ),
        (
            "/cl-u64max",
            b"POST /cl-u64max HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            "invalid_content_length",
        ),
    ];
    let dir = support::scratch_dir("floods-lengths");
    let mut flood = Vec::new();
    for (i, (_, request, _)) in cases.iter().enumerate() {
        let conn = Conn {
            client_port: 4_000 + i as u16,
            ..Conn::default()
        };
        let mut req = request.to_vec();
        req.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
        flood.extend(exchange_frames(&conn, &req, b"", 1460));
    }
    let path = dir.join("lengths.pcap");
    write_interleaved(&path, &flood);
    let m = replay_measured("lengths", &path, "", 2, Duration::from_secs(60));
    assert!(m.normal_exchange_parsed());
    for (uri, _, anomaly) in cases {
        let e = m.with_uri(uri);
        println!(
            "{uri}: anomalies {}",
            e.first()
                .map_or("none".into(), |e| e["anomalies"].to_string())
        );
        assert!(
            e.iter().any(|e| has_anomaly(e, anomaly)),
            "{uri} not flagged {anomaly}"
        );
    }
    assert_eq!(
        m.with_uri("/after").len(),
        cases.len(),
        "a request after a hostile length was lost"
    );
}

/// A gzip member whose deflate data is one sync-flushed block of `block_zeros`
/// zeros repeated `repeats` times: `block_zeros * repeats` bytes decoded from
/// a small wire body, without compressing them all in the test.
fn gzip_bomb(block_zeros: usize, repeats: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(block_zeros / 100 + 1024);
    c.compress_vec(&vec![0u8; block_zeros], &mut block, FlushCompress::Sync)
        .unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    for _ in 0..repeats {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0x03, 0x00]); // final empty block
    out.extend_from_slice(&[0; 8]); // CRC32 and size (never reached)
    out
}

#[test]
fn gzip_bomb_is_capped_at_max_decoded_body_bytes() {
    let base = baseline_kib();
    // 1 MiB of zeros per block x 1024 = 1 GiB decoded.
    let bomb = gzip_bomb(1 << 20, 1024);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    response.extend_from_slice(&bomb);
    let flood = exchange_frames(
        &flood_conn(),
        b"GET /bomb HTTP/1.1\r\nHost: a\r\n\r\n",
        &response,
        60_000,
    );
    let dir = support::scratch_dir("floods-gzip");
    let path = dir.join("bomb.pcap");
    write_interleaved(&path, &flood);
    let m = replay_measured("gzip", &path, "", 2, Duration::from_secs(120));
    let cap = apisensor::config::HttpSettings::default().max_decoded_body_bytes as u64;
    let bound = base + SLACK_KIB + 2 * cap / 1024;
    let e = m.with_uri("/bomb");
    let body = &e.first().expect("the bomb exchange")["response"]["body"];
    println!(
        "gzip bomb: {} wire bytes (1 GiB decoded if unbounded) in {:.1}s; decoded_len {}, peak RSS {:.1} MiB (bound {:.1} MiB), limit hits {}",
        bomb.len(),
        m.elapsed.as_secs_f64(),
        body["decoded_len"],
        mib(m.max_rss_kib),
        mib(bound),
        m.counter("http", "decompression_limit_hits"),
    );
    assert!(m.normal_exchange_parsed());
    assert!(has_anomaly(e[0], "decompression_limit"));
    assert_eq!(m.counter("http", "decompression_limit_hits"), 1);
    assert!(body["decoded_len"].as_u64().unwrap() <= cap);
    assert_eq!(body["wire_len"].as_u64(), Some(bomb.len() as u64));
    assert!(
        m.max_rss_kib <= bound,
        "peak RSS {} KiB over {} KiB",
        m.max_rss_kib,
        bound
    );
}

/// VXLAN payload of a mirror target: the 8-byte header (VNI 7), then the frame.
fn vxlan(frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
    d.extend_from_slice(frame);
    d
}

/// Live: `apisensor run` with a UDP mirror listener (default settings
/// otherwise) receives 40,000 VXLAN datagrams, each a one-packet request
/// head announcing a 64 KiB body from its own flow, then a normal
/// connection. This took `run` from 16 MB to 1.98 GB in 4 s.
#[test]
fn live_vxlan_flood_of_announced_bodies_stays_bounded() {
    const DATAGRAMS: u32 = 40_000;
    let dir = support::scratch_dir("floods-live-vxlan");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exchanges = dir.join("exchanges.jsonl");
    let config = dir.join("sensor.toml");
    fs::write(
        &config,
        format!(
            "[[capture.udp]]\nlisten = \"127.0.0.1:{port}\"\nencapsulation = \"vxlan\"\n\n\
             [service]\nexchanges_path = {:?}\nstats_interval_secs = 1\n",
            exchanges.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("APISENSOR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&log).unwrap()))
        .spawn()
        .expect("spawn apisensor run");
    let pid = child.id();
    let hwm = || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| apisensor::telemetry::proc_status_kib(&s, "VmHWM:"))
            .unwrap_or(0)
    };
    let started = Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("capturing")
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "apisensor run exited: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "run did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle_kib = hwm();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = format!("127.0.0.1:{port}");
    let head = b"POST /upload HTTP/1.1\r\nHost: victim\r\nContent-Length: 65536\r\n\r\n";
    let mut flood = frame(
        Framing::Ethernet,
        &Conn::default(),
        true,
        7,
        1,
        ACK | PSH,
        head,
    );
    let mut peak_kib = idle_kib;
    for i in 0..DATAGRAMS {
        let src = 0x0a40_0000u32 | (i >> 6);
        flood[26..30].copy_from_slice(&src.to_be_bytes());
        flood[34..36].copy_from_slice(&(1024 + (i & 63) as u16).to_be_bytes());
        sender.send_to(&vxlan(&flood), &to).unwrap();
        // Paced so the socket buffer does not overflow: this is about
        // memory, not about the kernel dropping datagrams.
        if i % 500 == 499 {
            std::thread::sleep(Duration::from_millis(2));
            peak_kib = peak_kib.max(hwm());
        }
    }
    for f in normal_frames() {
        sender.send_to(&vxlan(&f), &to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the sensor work through what it received.
    std::thread::sleep(Duration::from_secs(2));
    peak_kib = peak_kib.max(hwm());
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill(1) from procps (scripts/setup.sh installs it)");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak_kib = peak_kib.max(hwm());
        assert!(Instant::now() < deadline, "run did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "run failed ({status}): {stderr}");
    let out = fs::read_to_string(&exchanges).unwrap();
    let normal = out
        .lines()
        .filter(|l| l.contains("/normal/flow"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| e["response"]["status"].as_u64() == Some(200));
    println!(
        "live VXLAN flood: {DATAGRAMS} datagrams; peak RSS {:.1} MiB (idle {:.1} MiB, target {:.0} MiB); \
         {} exchanges written",
        mib(peak_kib),
        mib(idle_kib),
        mib(DEFAULT_TARGET_KIB),
        out.lines().count()
    );
    assert!(normal, "the normal connection was not parsed: {stderr}");
    assert!(
        peak_kib <= DEFAULT_TARGET_KIB,
        "peak RSS {peak_kib} KiB over the {DEFAULT_TARGET_KIB} KiB target"
    );
}
