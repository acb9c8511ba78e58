//! `apisensor run` as a service without network namespaces: a UDP mirror
//! source on loopback fed with VXLAN datagrams built here, SIGHUP reopening
//! the exchanges file (logrotate), dropping root to `service.user`, and
//! SIGTERM draining. Runs as root in CI (the privilege drop needs it).

mod gen;

use gen::{conversation, Conn, Framing};
use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sensor(Child);

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apisensor-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// VXLAN header (I flag, VNI 7) in front of an Ethernet frame.
fn vxlan(frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
    d.extend_from_slice(frame);
    d
}

fn send_conversation(sock: &UdpSocket, to: &str, client_port: u16, path: &str) {
    let conn = Conn {
        client_port,
        ..Conn::default()
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: mirror.test\r\n\r\n");
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for frame in conversation(Framing::Ethernet, &conn, &[(req.as_bytes(), resp)]) {
        sock.send_to(&vxlan(&frame), to).unwrap();
        // Loopback drops bursts beyond the socket buffer; keep it gentle.
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn uris(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).expect("JSON line");
            assert_eq!(e["status"], 200, "{l}");
            e["uri"].as_str().unwrap().to_string()
        })
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn udp_mirror_sighup_reopen_privilege_drop_and_sigterm() {
    assert!(
        is_root(),
        "this test drops privileges and must run as root (CI does)"
    );
    let dir = scratch("udp");
    // `nobody` must be able to reopen the output in the directory.
    Command::new("chmod")
        .args(["777", dir.to_str().unwrap()])
        .status()
        .unwrap();
    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let out = dir.join("ex.jsonl");
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[pipeline]\nworkers = 2\n\
             [[capture.udp]]\nlisten = \"127.0.0.1:{port}\"\nencapsulation = \"vxlan\"\n\
             [service]\nuser = \"nobody\"\nexchanges_path = \"{}\"\nstats_interval_secs = 1\n",
            out.display()
        ),
    )
    .unwrap();
    // systemd readiness (Type=notify): the sensor says READY=1 on this socket.
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Command::new("chmod")
        .args(["777", notify_path.to_str().unwrap()])
        .status()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sensor = Sensor(child);
    let pid = sensor.0.id();
    // Root is dropped once the socket and the output are open.
    wait_for("the privilege drop", || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.contains("65534"))
            })
            .unwrap_or(false)
    });

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 from the sensor");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = format!("127.0.0.1:{port}");
    send_conversation(&sock, &to, 40001, "/before-rotate");
    wait_for("the first exchange", || uris(&out).len() == 1);

    // logrotate: move the file away, SIGHUP, and the sensor writes anew.
    let rotated = dir.join("ex.jsonl.1");
    std::fs::rename(&out, &rotated).unwrap();
    signal(&sensor.0, "-HUP");
    std::thread::sleep(Duration::from_millis(800));
    send_conversation(&sock, &to, 40002, "/after-rotate");
    wait_for("the exchange after SIGHUP", || uris(&out).len() == 1);
    assert_eq!(uris(&rotated), vec!["/before-rotate"]);
    assert_eq!(uris(&out), vec!["/after-rotate"]);

    // One more exchange, then SIGTERM drains everything and exits 0.
    send_conversation(&sock, &to, 40003, "/last");
    wait_for("the last exchange", || uris(&out).len() == 2);
    signal(&sensor.0, "-TERM");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = sensor.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    sensor
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        stderr.contains("run: ") && stderr.contains("decode.vxlan"),
        "{stderr}"
    );
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert_eq!(uris(&out), vec!["/after-rotate", "/last"]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
