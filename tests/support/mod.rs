//! Helpers shared by the integration tests: where things are, and running the
//! `apisensor` binary on a capture with a time limit.
//!
//! Each integration test crate that says `mod support;` compiles this file on
//! its own and uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The repository (or worktree) root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared evaluation corpus, `<repo>/../shared/corpus`. CI clones the
/// repository with `shared/` beside it, so a missing corpus is an error,
/// never a reason to skip.
pub fn shared_corpus_root() -> PathBuf {
    let dir = repo_root().join("..").join("shared").join("corpus");
    assert!(
        dir.join("zeek-http").is_dir(),
        "evaluation corpus not found at {} (expected `shared/` checked out beside the \
         repository, as CI does: <repo>/../shared/corpus/zeek-http); refusing to skip",
        dir.display()
    );
    dir.canonicalize().unwrap_or(dir)
}

/// `<repo>/../shared/corpus/zeek-http`, the Zeek HTTP traces with ground truth.
pub fn zeek_http_corpus() -> PathBuf {
    shared_corpus_root().join("zeek-http")
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`): the parent of the
/// per-package scratch directory cargo gives integration tests.
pub fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

/// A fresh scratch directory under `target/tmp/<name>` (emptied first).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// How a run of the binary ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Exit status 0 and no panic message on stderr.
    Ok,
    /// Non-zero exit, death by signal, or a panic message on stderr.
    Crash(String),
    /// Still running at the time limit; the child was killed.
    Hang,
}

/// One `apisensor replay` run.
#[derive(Debug)]
pub struct ReplayRun {
    pub end: RunEnd,
    /// Parsed output lines (one JSON object per exchange); empty unless `Ok`.
    pub exchanges: Vec<serde_json::Value>,
    /// The `--stats-json` document; `Null` unless `Ok`.
    pub stats: serde_json::Value,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `apisensor replay --raw --workers <workers> --out .. --stats-json ..
/// <trace>` with its files in `out_dir`, killing it after `timeout`. Raw:
/// the exchanges are compared with what other tools parsed, as sent.
pub fn run_replay(trace: &Path, out_dir: &Path, workers: usize, timeout: Duration) -> ReplayRun {
    let stem = trace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    let out_path = out_dir.join(format!("{stem}.out.jsonl"));
    let stats_path = out_dir.join(format!("{stem}.stats.json"));
    let stderr_path = out_dir.join(format!("{stem}.stderr.txt"));
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&stats_path);
    let stderr_file = fs::File::create(&stderr_path).expect("create stderr file");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("replay")
        .arg("--raw")
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--out")
        .arg(&out_path)
        .arg("--stats-json")
        .arg(&stats_path)
        .arg(trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr_file))
        .spawn()
        .expect("spawn apisensor");
    let status: Option<ExitStatus> = loop {
        match child.try_wait().expect("wait for apisensor") {
            Some(status) => break Some(status),
            None if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let elapsed = start.elapsed();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut run = ReplayRun {
        end: RunEnd::Ok,
        exchanges: Vec::new(),
        stats: serde_json::Value::Null,
        stderr,
        elapsed,
    };
    let Some(status) = status else {
        run.end = RunEnd::Hang;
        return run;
    };
    if !status.success() {
        run.end = RunEnd::Crash(format!("{status}: {}", last_lines(&run.stderr, 5)));
        return run;
    }
    if run.stderr.contains("panicked at") {
        run.end = RunEnd::Crash(format!("panic: {}", last_lines(&run.stderr, 5)));
        return run;
    }
    let out = match fs::read_to_string(&out_path) {
        Ok(out) => out,
        Err(e) => {
            run.end = RunEnd::Crash(format!("no output file {}: {e}", out_path.display()));
            return run;
        }
    };
    for (i, line) in out.lines().enumerate() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => run.exchanges.push(v),
            Err(e) => {
                run.end = RunEnd::Crash(format!("output line {} is not JSON: {e}", i + 1));
                return run;
            }
        }
    }
    match fs::read(&stats_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(stats) => run.stats = stats,
        Err(e) => run.end = RunEnd::Crash(format!("bad stats file: {e}")),
    }
    run
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Number of packet records in a pcap/pcapng file, read with libpcap.
pub fn pcap_record_count(path: &Path) -> u64 {
    let mut cap = pcap::Capture::from_file(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut n = 0;
    loop {
        match cap.next_packet() {
            Ok(_) => n += 1,
            Err(pcap::Error::NoMorePackets) => return n,
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }
}

/// The Python interpreter of `target/test-venv`, which `scripts/setup.sh`
/// fills from `scripts/requirements-test.txt`. Missing is an error: the
/// README's test command runs the set-up first.
pub fn test_python() -> PathBuf {
    let python = target_dir().join("test-venv").join("bin").join("python");
    assert!(
        python.exists(),
        "{} not found: run `bash scripts/setup.sh` (the README's test command does)",
        python.display()
    );
    python
}

/// The byte ledgers every replay must balance exactly, each
/// `(what, left, terms)`: `left = sum of terms`, counters named as in the
/// stats JSON under `stats.` (see `FlowStats` and `HttpStats`). Gap bytes,
/// never captured, are in none of them.
pub const LEDGERS: [(&str, &str, &[&str]); 3] = [
    (
        "TCP payload",
        "flow.payload_bytes_in",
        &[
            "flow.bytes_delivered",
            "flow.bytes_retransmitted",
            "flow.bytes_before_start",
            "flow.bytes_after_end",
            "flow.bytes_after_close",
            "flow.bytes_out_of_window",
            "flow.bytes_with_rst",
            "gauges.ooo_bytes_buffered",
        ],
    ),
    (
        "TCP snaplen-cut payload",
        "flow.snaplen_bytes_in",
        &["flow.snaplen_gap_bytes", "flow.snaplen_bytes_dropped"],
    ),
    (
        "HTTP",
        "http.bytes_in",
        &[
            "http.head_bytes",
            "http.body_bytes",
            "http.tunnel_bytes",
            "http.bytes_between_messages",
            "http.resync_bytes_skipped",
            "http.garbage_bytes_skipped",
            "http.head_bytes_truncated",
            "http.stall_bytes_dropped",
        ],
    ),
];

/// Every counter of `LEDGERS` once, then the gap bytes (outside the
/// ledgers), for totals over many runs.
pub fn ledger_counters() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (_, left, terms) in LEDGERS {
        for name in std::iter::once(left).chain(terms.iter().copied()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.extend(["flow.gap_bytes", "http.gap_bytes"]);
    names
}

/// `stats.<name>` of a `--stats-json` document.
pub fn stats_counter(stats: &serde_json::Value, name: &str) -> Option<u64> {
    name.split('.')
        .try_fold(&stats["stats"], |v, k| v.get(k))
        .and_then(serde_json::Value::as_u64)
}

/// What is wrong with the byte ledgers of a finished run (`--stats-json`
/// document): each unbalanced ledger with every term, bytes still buffered
/// out of order, and delivered bytes the HTTP layer did not get.
pub fn byte_ledger_problems(stats: &serde_json::Value) -> Vec<String> {
    let value = |n: &str| stats_counter(stats, n);
    let mut problems = Vec::new();
    for (what, left, terms) in LEDGERS {
        let missing: Vec<&str> = std::iter::once(left)
            .chain(terms.iter().copied())
            .filter(|n| value(n).is_none())
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{what} ledger: counters missing: {missing:?}"));
            continue;
        }
        let l = value(left).unwrap_or(0);
        let sum: u64 = terms.iter().map(|n| value(n).unwrap_or(0)).sum();
        if l != sum {
            let listed: Vec<String> = terms
                .iter()
                .map(|n| format!("{n} {}", value(n).unwrap_or(0)))
                .collect();
            problems.push(format!(
                "{what} ledger: {left} {l} != {sum} = {}",
                listed.join(" + ")
            ));
        }
    }
    match value("gauges.ooo_bytes_buffered") {
        Some(0) => {}
        n => problems.push(format!(
            "gauges.ooo_bytes_buffered = {n:?} after the final flush, expected 0"
        )),
    }
    let (delivered, http_in) = (value("flow.bytes_delivered"), value("http.bytes_in"));
    if delivered.is_none() || delivered != http_in {
        problems.push(format!(
            "flow.bytes_delivered = {delivered:?} but http.bytes_in = {http_in:?}"
        ));
    }
    problems
}
