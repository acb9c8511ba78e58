//! No secret leaves the sensor raw, by default. A capture with planted
//! credentials (bearer JWTs, Basic auth, session and custom cookies, an API
//! key that looks like nothing, passwords, tokens and a card number in URLs,
//! passwords, PINs and security answers in JSON bodies, tokens in responses,
//! a password-spraying campaign) is run through every command that writes
//! something: `replay` (exchanges on stdout, with and without `--bodies`),
//! `replay --events` with a file sink, a spool, a baseline snapshot and
//! `--stats-json`, and `inventory` with its JSON report and OpenAPI export.
//! Every file written and every stdout and stderr is then searched for each
//! raw secret: none may appear. `--raw` is checked to be the opt-out it says.

mod gen;
mod support;

use gen::{conversation, Conn, Framing, PcapFile};
use std::path::{Path, PathBuf};
use std::process::Command;

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ1c2VyIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const RESPONSE_JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.q4sY0ZkZ8o3mN1vB2cX5jL7kP9wR6tA0eD3fG5hJ8kM";
/// `user:Hunter2Basic!` in base64.
const BASIC: &str = "dXNlcjpIdW50ZXIyQmFzaWMh";
const SECRETS: &[&str] = &[
    JWT,
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    RESPONSE_JWT,
    BASIC,
    "Hunter2Basic!",
    "S3ss10nS3cr3tValue99",
    "Zx9Q8w7E6r5T4y3U",
    "hunter2hunter2",
    "Pa55w0rdInUrl",
    "tok_live_abcdef123456",
    "4111111111111111",
    "CorrectHorseBattery9",
    "MaidenNameSmith",
    "RespS3ss10nValue77",
    "ak_9f8e7d6c5b4a3210",
    "SprayP4ssw0rd!",
];

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: api.example.test\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    r.into_bytes()
}

/// Frames of `conn` with the client address changed to 10.1.<net>.<host>.
fn from_client(frames: Vec<Vec<u8>>, client: [u8; 4]) -> Vec<Vec<u8>> {
    frames
        .into_iter()
        .map(|mut f| {
            // Ethernet + IPv4: source at 26..30, destination at 30..34.
            let client_is_source = f[26..30] == [10, 1, 0, 1];
            let at = if client_is_source { 26 } else { 30 };
            f[at..at + 4].copy_from_slice(&client);
            f
        })
        .collect()
}

fn planted_capture(path: &Path) {
    let bearer = format!("Bearer {JWT}");
    let basic = format!("Basic {BASIC}");
    let ok = response("200 OK", &[], r#"{"ok":true}"#);
    let login_ok = response(
        "200 OK",
        &[("Set-Cookie", "session=RespS3ss10nValue77; Path=/; HttpOnly")],
        &format!(r#"{{"access_token":"{RESPONSE_JWT}","api_key":"ak_9f8e7d6c5b4a3210"}}"#),
    );
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            request("GET", "/users/me", &[("Authorization", &bearer)], ""),
            ok.clone(),
        ),
        (
            request("GET", "/reports", &[("Authorization", &basic)], ""),
            ok.clone(),
        ),
        (
            request(
                "GET",
                "/cart",
                &[(
                    "Cookie",
                    "theme=dark; sessionid=S3ss10nS3cr3tValue99; _custom_auth=Zx9Q8w7E6r5T4y3U",
                )],
                "",
            ),
            ok.clone(),
        ),
        (
            request("GET", "/items", &[("X-Api-Key", "hunter2hunter2")], ""),
            ok.clone(),
        ),
        (
            request(
                "GET",
                "/login?user=alice&password=Pa55w0rdInUrl&token=tok_live_abcdef123456",
                &[],
                "",
            ),
            ok.clone(),
        ),
        (
            request("GET", "/pay?card=4111111111111111&amount=10", &[], ""),
            ok.clone(),
        ),
        (
            request(
                "POST",
                "/login",
                &[],
                r#"{"username":"alice","password":"CorrectHorseBattery9","pin":"4321","secret_answer":"MaidenNameSmith"}"#,
            ),
            login_ok,
        ),
    ];
    let pairs: Vec<(&[u8], &[u8])> = exchanges
        .iter()
        .map(|(q, r)| (q.as_slice(), r.as_slice()))
        .collect();
    let mut frames = conversation(Framing::Ethernet, &Conn::default(), &pairs);
    // Password spraying: one password on twelve accounts from four addresses.
    let denied = response(
        "401 Unauthorized",
        &[],
        r#"{"error":"invalid credentials"}"#,
    );
    for i in 0..12u8 {
        let body = format!(r#"{{"username":"user{i}","password":"SprayP4ssw0rd!"}}"#);
        let req = request("POST", "/login", &[], &body);
        let conn = Conn {
            client_port: 30_000 + u16::from(i),
            ..Conn::default()
        };
        let conv = conversation(Framing::Ethernet, &conn, &[(&req, &denied)]);
        frames.extend(from_client(conv, [10, 9, 0, 10 + i % 4]));
    }
    let mut pcap = PcapFile::new(Framing::Ethernet.dlt());
    for (i, f) in frames.iter().enumerate() {
        pcap.packet(1_700_000_000_000_000 + i as u64 * 200_000, f);
    }
    pcap.write(path);
}

struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn apisensor(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(args)
        .current_dir(dir)
        .env("APISENSOR_LOG", "info")
        .output()
        .expect("run apisensor");
    assert!(
        out.status.success(),
        "apisensor {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `(where, secret)` for every planted secret found in `bytes`.
fn leaks(name: &str, bytes: &[u8]) -> Vec<String> {
    SECRETS
        .iter()
        .filter(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        .map(|s| format!("{name}: {s}"))
        .collect()
}

#[test]
fn no_output_carries_a_planted_secret_with_default_settings() {
    let dir = support::scratch_dir("secrets");
    let pcap = dir.join("planted.pcap");
    planted_capture(&pcap);
    let pcap = pcap.to_str().unwrap().to_owned();
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[events]\nspool_dir = \"{0}/spool\"\n\n[[events.sinks]]\ntype = \"file\"\npath = \"{0}/events.jsonl\"\n\n\
             [detect]\nbaseline_path = \"{0}/baseline.msgpack\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut runs = vec![
        ("replay", apisensor(&dir, &["replay", &pcap])),
        (
            "replay --bodies",
            apisensor(&dir, &["replay", "--bodies", &pcap]),
        ),
        (
            "replay --events",
            apisensor(
                &dir,
                &[
                    "--config",
                    &config,
                    "replay",
                    "--events",
                    "--bodies",
                    "--exchanges",
                    "exchanges.jsonl",
                    "--stats-json",
                    "stats.json",
                    &pcap,
                ],
            ),
        ),
        (
            "inventory",
            apisensor(
                &dir,
                &[
                    "inventory",
                    "--format",
                    "json",
                    "--openapi",
                    "openapi.yaml",
                    &pcap,
                ],
            ),
        ),
    ];
    // The outputs exist and carry what they should, redacted.
    let exchanges = String::from_utf8_lossy(&runs[0].1.stdout).into_owned();
    assert_eq!(exchanges.lines().count(), 7 + 12);
    assert!(exchanges.contains("Bearer [REDACTED:jwt:"), "{exchanges}");
    assert!(exchanges.contains("[REDACTED:secret:"), "{exchanges}");
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(
        events.contains("detect.auth.password_spraying"),
        "the spraying campaign is detected: {events}"
    );
    for f in [
        "exchanges.jsonl",
        "stats.json",
        "openapi.yaml",
        "baseline.msgpack",
    ] {
        assert!(dir.join(f).is_file(), "{f} was not written");
    }
    let mut found = Vec::new();
    for (name, run) in runs.drain(..) {
        found.extend(leaks(&format!("{name} stdout"), &run.stdout));
        found.extend(leaks(&format!("{name} stderr"), &run.stderr));
    }
    let written = files_under(&dir);
    assert!(written.iter().any(|p| p.starts_with(dir.join("spool"))));
    for path in written {
        if path.extension().is_some_and(|e| e == "pcap") {
            continue;
        }
        found.extend(leaks(
            &path.display().to_string(),
            &std::fs::read(&path).unwrap(),
        ));
    }
    assert!(
        found.is_empty(),
        "raw secrets in the output:\n{}",
        found.join("\n")
    );
}

#[test]
fn raw_output_is_the_opt_out_it_says() {
    let dir = support::scratch_dir("secrets-raw");
    let pcap = dir.join("planted.pcap");
    planted_capture(&pcap);
    let run = apisensor(&dir, &["replay", "--raw", pcap.to_str().unwrap()]);
    assert!(
        !leaks("stdout", &run.stdout).is_empty(),
        "--raw should print exchanges as sent"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("unredacted"), "no warning: {stderr}");
}
