//! The `syslog` sink against a real rsyslogd (imtcp, octet-counted framing)
//! started by the test, writing each received message raw to a file: every
//! event arrives, and each line parses as RFC 5424 carrying a CEF payload.

mod fwd;
mod gen;
mod support;

use fwd::{free_port, last_value, sink_test, sink_test_id, wait_for_port, write_config, Guard};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// rsyslogd in the foreground with only imtcp loaded.
fn start_rsyslog(dir: &Path, port: u16) -> Guard {
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
             module(load=\"imtcp\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"events\")\n\
             ruleset(name=\"events\") {{ action(type=\"omfile\" file=\"{dir}/received.log\" template=\"raw\") }}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("rsyslogd.log")).unwrap();
    let guard = Guard::spawn(
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log)),
    );
    wait_for_port(port, Duration::from_secs(10));
    guard
}

fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || start.elapsed() > timeout {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Splits off one space-separated header token.
fn token(s: &str) -> (&str, &str) {
    s.split_once(' ').unwrap_or((s, ""))
}

fn printusascii(s: &str, max: usize) -> bool {
    s == "-" || (!s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b)))
}

fn rfc3339(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && (ts.ends_with('Z') || ts.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-'))
}

/// Structured data: "-" or `[id k="v" ...]...`; returns the rest (MSG).
fn structured_data(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    if let Some(rest) = s.strip_prefix("- ") {
        return Ok((BTreeMap::new(), rest));
    }
    let mut params = BTreeMap::new();
    let mut rest = s;
    while let Some(body) = rest.strip_prefix('[') {
        let (id, mut r) = body.split_once(' ').ok_or("SD-ID without params")?;
        if !printusascii(id, 32) {
            return Err(format!("bad SD-ID {id}"));
        }
        loop {
            if let Some(after) = r.strip_prefix(']') {
                rest = after;
                break;
            }
            let (name, after) = r
                .trim_start()
                .split_once("=\"")
                .ok_or("param without =\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("unterminated param value")?;
            params.insert(name.to_owned(), value);
            r = &after[end..];
        }
    }
    let msg = rest.strip_prefix(' ').ok_or("no space before MSG")?;
    Ok((params, msg))
}

/// CEF: 7 header fields split on unescaped '|', then key=value extensions.
fn cef(msg: &str) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
    let body = msg.strip_prefix("CEF:0|").ok_or("MSG is not CEF:0")?;
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = body.chars();
    while fields.len() < 6 {
        match chars.next().ok_or("CEF header has fewer than 7 fields")? {
            '\\' => current.push(chars.next().ok_or("dangling escape")?),
            '|' => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.insert(0, "0".into());
    let ext: String = chars.collect();
    // Keys are [A-Za-z0-9]+ followed by an unescaped '='.
    let mut map = BTreeMap::new();
    let mut key: Option<String> = None;
    let mut value = String::new();
    let mut word = String::new();
    let mut it = ext.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                let n = it.next().ok_or("dangling escape in extension")?;
                word.push(match n {
                    'n' => '\n',
                    'r' => '\r',
                    other => other,
                });
            }
            '=' => {
                // `word` ends with the new key, after the last space.
                let (before, k) = match word.rfind(' ') {
                    Some(i) => (word[..i].to_owned(), word[i + 1..].to_owned()),
                    None => (String::new(), word.clone()),
                };
                if !k.chars().all(|c| c.is_ascii_alphanumeric()) || k.is_empty() {
                    return Err(format!("bad extension key {k:?}"));
                }
                if let Some(prev) = key.take() {
                    value.push_str(&before);
                    map.insert(prev, std::mem::take(&mut value));
                }
                key = Some(k);
                word.clear();
            }
            c => word.push(c),
        }
    }
    if let Some(k) = key {
        map.insert(k, word);
    }
    Ok((fields, map))
}

/// Parses one RFC 5424 message; returns (SD params, CEF header, CEF extensions).
/// (SD params, CEF header fields, CEF extensions).
type Parsed = (
    BTreeMap<String, String>,
    Vec<String>,
    BTreeMap<String, String>,
);

fn parse_5424(line: &str) -> Result<Parsed, String> {
    let rest = line.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("no PRI end")?;
    let pri: u8 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 {
        return Err("PRI above 191".into());
    }
    let (version, rest) = token(rest);
    if version != "1" {
        return Err(format!("version {version}"));
    }
    let (ts, rest) = token(rest);
    if !rfc3339(ts) {
        return Err(format!("timestamp {ts}"));
    }
    let (host, rest) = token(rest);
    let (app, rest) = token(rest);
    let (procid, rest) = token(rest);
    let (msgid, rest) = token(rest);
    for (field, value, max) in [
        ("host", host, 255),
        ("app", app, 48),
        ("procid", procid, 128),
        ("msgid", msgid, 32),
    ] {
        if !printusascii(value, max) {
            return Err(format!("{field} {value:?}"));
        }
    }
    let (sd, msg) = structured_data(rest)?;
    let (header, ext) = cef(msg)?;
    Ok((sd, header, ext))
}

#[test]
fn rsyslog_receives_every_event_as_rfc5424_with_cef() {
    let dir = support::scratch_dir("forward_syslog");
    let port = free_port();
    let _rsyslog = start_rsyslog(&dir, port);
    let config = write_config(
        &dir,
        "",
        &format!("[[events.sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n"),
    );
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &["--count", "300", "--rate", "0"],
    );
    let code = run.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(0), "{log}");
    // Plain TCP syslog cannot confirm: written, never counted as acked.
    assert_eq!(last_value(&stderr, "unconfirmed="), Some(300));
    assert_eq!(last_value(&stderr, "acked="), Some(0));
    // Detections from a replay, with network and HTTP fields.
    let pcap = dir.join("te_cl.pcap");
    fwd::te_cl_pcap(&pcap, 2, 3);
    let replay_stats = dir.join("replay-stats.json");
    let status = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("-c")
        .arg(&config)
        .args(["replay", "--out", "/dev/null", "--stats-json"])
        .arg(&replay_stats)
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    // 6 protocol detections, plus the posture findings the replay's
    // inventory raises at its end.
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&replay_stats).unwrap()).unwrap();
    let replayed = stats["events"]["emitted"].as_u64().unwrap() as usize;
    assert!(replayed >= 6, "{stats}");
    let expected = 300 + replayed;
    let lines = wait_for_lines(&dir.join("received.log"), expected, Duration::from_secs(20));
    assert_eq!(
        lines.len(),
        expected,
        "rsyslog received {} of {expected} messages",
        lines.len()
    );
    let mut ids = HashSet::new();
    let mut detections = 0;
    for line in &lines {
        let (sd, header, ext) = parse_5424(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(header[1], "apisensor");
        let id = ext.get("externalId").expect("externalId").clone();
        assert_eq!(sd.get("id"), Some(&id), "{line}");
        assert!(ext.contains_key("rt") && ext.contains_key("msg"), "{line}");
        if header[4] == "protocol.te_with_content_length" {
            detections += 1;
            assert_eq!(header[6], "8", "high severity is CEF 8");
            assert_eq!(ext.get("src").map(String::as_str), Some("10.1.0.1"));
            assert_eq!(ext.get("dpt").map(String::as_str), Some("80"));
            assert_eq!(ext.get("requestMethod").map(String::as_str), Some("POST"));
            assert_eq!(
                ext.get("request").map(String::as_str),
                Some("api.example.com/api/orders")
            );
            assert!(ext["cs1"].starts_with("API8:2023"), "{line}");
        }
        ids.insert(id);
    }
    assert_eq!(detections, 6);
    for seq in 0..300 {
        assert!(
            ids.contains(&sink_test_id("sink-test", seq)),
            "event {seq} missing"
        );
    }
}

#[test]
fn cef_parser_in_this_test_reads_escapes() {
    let (h, e) = cef("CEF:0|a\\|b|p|1|r|t|5|msg=x\\=y z cs1=1 2").unwrap();
    assert_eq!(h[1], "a|b");
    assert_eq!(e["msg"], "x=y z");
    assert_eq!(e["cs1"], "1 2");
}
