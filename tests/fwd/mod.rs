//! Helpers for the forwarder tests: free loopback ports, child processes
//! that are killed when the test ends (even on a failed assertion), and
//! `apisensor sink-test` runs with a generated config.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until something accepts on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "nothing listens on port {port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn spawn(cmd: &mut Command) -> Guard {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Guard(Some(child))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the child to exit; returns its exit code (None: signal / timeout).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        let child = self.0.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.0 = None;
                return status.code();
            }
            if start.elapsed() > timeout {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `nats-server -js` on a free loopback port with its store in `dir`.
pub struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    guard: Guard,
}

impl NatsServer {
    pub fn start(dir: &Path) -> NatsServer {
        let port = free_port();
        let mut server = NatsServer {
            port,
            dir: dir.to_path_buf(),
            guard: Guard(None),
        };
        server.restart();
        server
    }

    pub fn stop(&mut self) {
        self.guard.kill();
    }

    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::File::create(self.dir.join("nats-server.log")).unwrap();
        self.guard = Guard::spawn(
            Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .arg("-sd")
                .arg(&self.dir)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log)),
        );
        wait_for_port(self.port, Duration::from_secs(10));
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Writes a config with `[events]` keys and sink tables (TOML text).
pub fn write_config(dir: &Path, events: &str, sinks: &str) -> PathBuf {
    let path = dir.join("sensor.toml");
    let text = format!(
        "[events]\nspool_dir = \"{}\"\nsensor_name = \"test-sensor\"\n{events}\n{sinks}\n",
        dir.join("spool").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `apisensor -c config sink-test ...` with stderr to `dir/<name>.stderr`.
pub fn sink_test(config: &Path, dir: &Path, name: &str, args: &[&str]) -> (Guard, PathBuf) {
    let stderr_path = dir.join(format!("{name}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let guard = Guard::spawn(
        Command::new(env!("CARGO_BIN_EXE_apisensor"))
            .arg("-c")
            .arg(config)
            .arg("sink-test")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr)),
    );
    (guard, stderr_path)
}

/// The id `sink-test --label label` gives event `seq`.
pub fn sink_test_id(label: &str, seq: u64) -> String {
    apisensor::event::stable_id(
        "test-sensor",
        "sensor.sink_test",
        &[label, &seq.to_string()],
    )
}

/// How often each id occurs; (missing of 0..count, duplicates).
pub fn tally(ids: &[String], label: &str, count: u64) -> (Vec<u64>, u64) {
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for id in ids {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let missing: Vec<u64> = (0..count)
        .filter(|&seq| !seen.contains_key(sink_test_id(label, seq).as_str()))
        .collect();
    let duplicates = seen.values().map(|n| n - 1).sum();
    (missing, duplicates)
}

/// The last value of `key=` on the lines of a stderr file.
pub fn last_value(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|v| v.parse::<u64>().ok()))
    })
}

/// A capture of `conns` connections with `per_conn` exchanges each, every
/// request carrying both `Transfer-Encoding: chunked` and `Content-Length`
/// (one protocol-anomaly detection per exchange).
pub fn te_cl_pcap(path: &Path, conns: u16, per_conn: usize) {
    use crate::gen::{conversation, write_pcap, Conn, Framing};
    let request: &[u8] = b"POST /api/orders HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer s3cr3t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
    let response: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let exchanges = vec![(request, response); per_conn];
    let mut frames = Vec::new();
    for i in 0..conns {
        let conn = Conn {
            client_port: 20_000 + i,
            ..Conn::default()
        };
        frames.extend(conversation(Framing::Ethernet, &conn, &exchanges));
    }
    write_pcap(path, Framing::Ethernet, &frames, 1_700_000_000_000_000);
}
