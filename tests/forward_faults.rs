//! Faults on the event path and the exchanges output, with real receivers
//! and real filesystems started by the test: every event or exchange is
//! either delivered or counted as lost, exactly, and the loss is reported.
//!
//! * the spool on a small tmpfs that fills: events in = events delivered +
//!   `spool_lost`, and the `sensor.spool_loss` event reaches the sink;
//! * a webhook receiver that stalls the batch in flight while the spool cap
//!   evicts: the sink's `dropped` counts each lost event once, and the loss
//!   event is delivered;
//! * plain TCP syslog never reports acknowledgements;
//! * exchanges written to a full tmpfs: only lines on disk count as
//!   written, the rest as lost, and replay exits non-zero;
//! * every file the sensor creates is 0600 or 0640.
//!
//! Mounting tmpfs needs root, as CI runs; the test fails (never skips)
//! without it.

mod fwd;
mod gen;
mod support;

use fwd::{last_value, sink_test, sink_test_id, write_config};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted on a directory of the test's own; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount(8)");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (this test runs as root, as CI does)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn value(path: &Path, key: &str) -> u64 {
    last_value(path, key).unwrap_or_else(|| {
        panic!(
            "no {key} in {}",
            std::fs::read_to_string(path).unwrap_or_default()
        )
    })
}

#[test]
fn spool_on_a_full_tmpfs_counts_every_lost_event_and_reports_it() {
    let dir = support::scratch_dir("forward_faults_spool_full");
    // 2 MiB for ~7 MB of events: most appends fail while the sink drains.
    let tmpfs = Tmpfs::mount(&dir.join("spool"), "2m");
    let events = dir.join("events.jsonl");
    let config = write_config(
        &dir,
        "spool_segment_bytes = 262144\nspool_max_bytes = 104857600\n",
        &format!(
            "[[events.sinks]]\ntype = \"file\"\nname = \"file\"\npath = \"{}\"\n",
            events.display()
        ),
    );
    const COUNT: u64 = 20_000;
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &[
            "--count",
            &COUNT.to_string(),
            "--rate",
            "0",
            "--label",
            "full",
        ],
    );
    let code = run.wait(Duration::from_secs(120));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    // Events were lost, so sink-test says so.
    assert_eq!(code, Some(2), "{log}");
    let emitted = value(&stderr, "emitted=");
    let appended = value(&stderr, "appended=");
    let lost = value(&stderr, "spool_lost=");
    let write_failed = value(&stderr, "lost_write_failed=");
    eprintln!("spool on 2 MiB tmpfs: emitted={emitted} appended={appended} spool_lost={lost}");
    assert!(write_failed > 0, "the tmpfs never filled: {log}");
    assert_eq!(lost, write_failed, "{log}");
    assert_eq!(emitted, appended + lost, "{log}");
    assert_eq!(value(&stderr, "dropped="), 0, "{log}");
    assert_eq!(value(&stderr, "lag="), 0, "{log}");

    // What the sink received: every appended event, once.
    let received = lines(&events);
    assert_eq!(received.len() as u64, appended, "{log}");
    let ids: HashSet<&str> = received.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), received.len());
    let test_events = (0..COUNT)
        .filter(|&seq| ids.contains(sink_test_id("full", seq).as_str()))
        .count() as u64;
    let loss_events: Vec<&serde_json::Value> = received
        .iter()
        .filter(|e| e["rule"] == "sensor.spool_loss")
        .collect();
    assert!(
        !loss_events.is_empty(),
        "no sensor.spool_loss event arrived"
    );
    // In = out + counted loss, exactly; the loss events are the extra emits.
    assert_eq!(test_events + loss_events.len() as u64, appended, "{log}");
    assert_eq!(emitted, test_events + loss_events.len() as u64 + lost);
    let reported: u64 = loss_events
        .iter()
        .map(|e| e["counts"]["total_lost"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(reported, lost, "the newest loss event tells the whole loss");
    for e in &loss_events {
        assert_eq!(e["severity"], "high", "{e}");
        assert!(e["counts"]["events_lost"].as_u64() > Some(0), "{e}");
        let what = e["text"]["what_happened"].as_str().unwrap();
        assert!(what.contains("could not be written to the spool"), "{what}");
    }
    drop(tmpfs);
}

/// Every event of every batch answered 200.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// A webhook receiver (one request per connection) that holds every request
/// until `stall` has passed since it started, then answers 200.
fn stalling_receiver(stall: Duration) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    let until = Instant::now() + stall;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            let mut stream = reader.into_inner();
            let answered = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .and_then(|()| stream.flush());
            if answered.is_ok() {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let mut store = store.lock().unwrap();
                for event in json["events"].as_array().unwrap() {
                    store.push(event.clone());
                }
            }
        }
    });
    (port, received)
}

#[test]
fn eviction_while_a_batch_is_in_flight_counts_each_lost_event_once() {
    let dir = support::scratch_dir("forward_faults_evict");
    let (port, received) = stalling_receiver(Duration::from_secs(2));
    // A small cap: the sink's first batch waits 2 s at the receiver while
    // 20,000 events go through a spool that holds ~800.
    let config = write_config(
        &dir,
        "spool_segment_bytes = 65536\nspool_max_bytes = 262144\n",
        &format!(
            "[[events.sinks]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/\"\n\
             batch_events = 100\ntimeout_ms = 10000\n"
        ),
    );
    const COUNT: u64 = 20_000;
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &[
            "--count",
            &COUNT.to_string(),
            "--rate",
            "0",
            "--label",
            "evict",
        ],
    );
    let code = run.wait(Duration::from_secs(120));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(2), "{log}");
    let emitted = value(&stderr, "emitted=");
    let lost = value(&stderr, "spool_lost=");
    let dropped = value(&stderr, "dropped=");
    let acked = value(&stderr, "acked=");
    let received = received.lock().unwrap().clone();
    let ids: HashSet<&str> = received.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let test_events = (0..COUNT)
        .filter(|&seq| ids.contains(sink_test_id("evict", seq).as_str()))
        .count() as u64;
    eprintln!(
        "eviction: emitted={emitted} received={} (test events {test_events}) dropped={dropped} \
         spool_lost={lost} acked={acked}",
        ids.len()
    );
    assert!(dropped > 0, "nothing was evicted: {log}");
    // One sink: what it missed is what the spool lost.
    assert_eq!(dropped, lost, "{log}");
    assert_eq!(value(&stderr, "lag="), 0, "{log}");
    // Every emitted event was received or counted as dropped, exactly once.
    assert_eq!(ids.len() as u64 + dropped, emitted, "{log}");
    assert_eq!(acked, ids.len() as u64, "{log}");
    // (The batch held at the receiver while its segment was evicted is in
    // `ids`; counting it as dropped too, as before, broke the sum above.)
    let loss: Vec<&serde_json::Value> = received
        .iter()
        .filter(|e| e["rule"] == "sensor.spool_loss")
        .collect();
    assert!(
        !loss.is_empty(),
        "no sensor.spool_loss event arrived: {log}"
    );
    let reported = loss
        .iter()
        .map(|e| e["counts"]["total_evicted"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(reported, lost);
}

#[test]
fn plain_tcp_syslog_reports_unconfirmed_never_acked() {
    let dir = support::scratch_dir("forward_faults_tcp_syslog");
    // A receiver that reads and counts bytes, like any syslog collector.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            store.lock().unwrap().extend_from_slice(&buf);
        }
    });
    let config = write_config(
        &dir,
        "",
        &format!(
            "[[events.sinks]]\ntype = \"syslog\"\nname = \"sys\"\naddress = \"127.0.0.1:{port}\"\n"
        ),
    );
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &["--count", "200", "--rate", "0"],
    );
    assert_eq!(run.wait(Duration::from_secs(60)), Some(0));
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(value(&stderr, "acked="), 0, "{log}");
    assert_eq!(value(&stderr, "unconfirmed="), 200, "{log}");
    assert!(
        log.contains("plain TCP syslog cannot confirm delivery"),
        "{log}"
    );
}

#[test]
fn exchanges_on_a_full_disk_are_counted_and_replay_fails() {
    let dir = support::scratch_dir("forward_faults_exchanges_full");
    let tmpfs = Tmpfs::mount(&dir.join("out"), "1m");
    let trace = support::zeek_http_corpus().join("1000-requests-one-dropped-response.pcap");
    let out = dir.join("out").join("ex.jsonl");
    let stats = dir.join("stats.json");
    let result = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(["replay", "--bodies", "--out"])
        .arg(&out)
        .arg("--stats-json")
        .arg(&stats)
        .args([&trace, &trace, &trace, &trace])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "a replay whose output failed exited 0: {err}"
    );
    assert!(err.contains("OUTPUT FAILED"), "{err}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let written = s["exchanges_written"].as_u64().unwrap();
    let lost = s["exchanges_lost"].as_u64().unwrap();
    assert_eq!(
        s["stats"]["pipeline"]["exchanges_write_errors"].as_u64(),
        Some(lost)
    );
    assert!(
        s["output_error"].as_str().unwrap().contains("No space"),
        "{s}"
    );
    // Exactly the lines counted as written are in the file, whole.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a torn line was left"
    );
    let on_disk = text.lines().count() as u64;
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("whole JSON line");
    }
    eprintln!("exchanges on 1 MiB tmpfs: on disk {on_disk}, written {written}, lost {lost}");
    assert_eq!(on_disk, written);
    assert!(lost > 0);
    // 4 passes of 1000 requests, one response dropped per pass.
    assert_eq!(
        written + lost,
        s["stats"]["http"]["exchanges"].as_u64().unwrap()
    );
    drop(tmpfs);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_the_sensor_creates_are_never_world_readable() {
    let dir = support::scratch_dir("forward_faults_modes");
    let events = dir.join("events.jsonl");
    let baseline = dir.join("baseline.msgpack");
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[events]\nspool_dir = \"{}\"\nsensor_name = \"m\"\n\
             [[events.sinks]]\ntype = \"file\"\nname = \"file\"\npath = \"{}\"\nrotate_bytes = 2000\nrotate_keep = 2\n\
             [detect]\nbaseline_path = \"{}\"\n",
            dir.join("spool").display(),
            events.display(),
            baseline.display()
        ),
    )
    .unwrap();
    let pcap = dir.join("te_cl.pcap");
    fwd::te_cl_pcap(&pcap, 2, 3);
    // A permissive umask, so the modes come from the sensor, not the shell.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec \"$0\" -c {} replay --events --out {} --stats-json {} {}",
            config.display(),
            dir.join("ex.jsonl").display(),
            dir.join("stats.json").display(),
            pcap.display()
        ))
        .arg(env!("CARGO_BIN_EXE_apisensor"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec \"$0\" inventory --openapi {} {} > /dev/null",
            dir.join("api.yaml").display(),
            pcap.display()
        ))
        .arg(env!("CARGO_BIN_EXE_apisensor"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut checked = Vec::new();
    for (path, want) in [
        (dir.join("ex.jsonl"), 0o640),
        (dir.join("stats.json"), 0o640),
        (events.clone(), 0o640),
        (dir.join("events.jsonl.1"), 0o640),
        (dir.join("api.yaml"), 0o640),
        (baseline.clone(), 0o600),
        (dir.join("spool"), 0o700),
    ] {
        assert!(path.exists(), "{} was not created", path.display());
        assert_eq!(mode(&path), want, "{}", path.display());
        checked.push(path);
    }
    let mut spool_files = 0;
    for entry in std::fs::read_dir(dir.join("spool")).unwrap().flatten() {
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        spool_files += 1;
    }
    assert!(spool_files >= 2, "segment and cursor expected");
}
