//! The `syslog` sink with `protocol = "relp"` against a real rsyslogd with
//! `imrelp` (Debian package rsyslog-relp, scripts/packages.txt) started by
//! the test and killed (SIGKILL) and restarted in the middle of a run: every
//! event reaches rsyslogd's output file, the sink counts them as acked (not
//! merely written) and nothing is dropped.
//!
//! rsyslogd runs its ruleset and action queues in direct mode, so a RELP
//! answer means the message went through omfile (a write into the file)
//! before rsyslogd acknowledged it; SIGKILL then cannot take back what was
//! acknowledged.

mod fwd;
mod gen;
mod support;

use fwd::{free_port, last_value, sink_test, sink_test_id, wait_for_port, write_config, Guard};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn start_rsyslog_relp(dir: &Path, port: u16) -> Guard {
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
             module(load=\"imrelp\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"events\")\n\
             ruleset(name=\"events\" queue.type=\"direct\") {{\n\
               action(type=\"omfile\" file=\"{dir}/received.log\" template=\"raw\" queue.type=\"direct\" flushOnTXEnd=\"on\")\n\
             }}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("rsyslogd.log"))
        .unwrap();
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

/// `externalId=` of every message rsyslogd wrote.
fn received_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let at = line.find("externalId=")? + "externalId=".len();
            Some(line[at..].split(' ').next()?.to_owned())
        })
        .collect()
}

#[test]
fn relp_sink_loses_nothing_when_rsyslog_is_killed_and_restarted() {
    let dir = support::scratch_dir("forward_relp");
    let port = free_port();
    let mut rsyslog = start_rsyslog_relp(&dir, port);
    let config = write_config(
        &dir,
        "drain_timeout_secs = 20\n",
        &format!(
            "[[events.sinks]]\ntype = \"syslog\"\nprotocol = \"relp\"\nname = \"relp\"\n\
             address = \"127.0.0.1:{port}\"\nretry_max_ms = 500\n"
        ),
    );
    const COUNT: u64 = 20_000;
    // 10 s of events; rsyslogd dies 3 s in and is back 3 s later.
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &[
            "--count",
            &COUNT.to_string(),
            "--rate",
            "2000",
            "--label",
            "relp",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    rsyslog.kill();
    let written_before_kill = received_ids(&dir.join("received.log")).len();
    std::thread::sleep(Duration::from_secs(3));
    let _rsyslog = start_rsyslog_relp(&dir, port);
    let code = run.wait(Duration::from_secs(90));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(0), "{log}");
    let ids = received_ids(&dir.join("received.log"));
    let unique: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let missing: Vec<u64> = (0..COUNT)
        .filter(|&seq| !unique.contains(sink_test_id("relp", seq).as_str()))
        .collect();
    eprintln!(
        "relp: {} messages written by rsyslogd ({} before the kill), {} distinct, {} missing",
        ids.len(),
        written_before_kill,
        unique.len(),
        missing.len()
    );
    assert!(
        written_before_kill > 0 && (written_before_kill as u64) < COUNT,
        "the kill did not fall inside the run"
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert_eq!(last_value(&stderr, "acked="), Some(COUNT), "{log}");
    assert_eq!(last_value(&stderr, "unconfirmed="), Some(0), "{log}");
    assert_eq!(last_value(&stderr, "dropped="), Some(0), "{log}");
    assert_eq!(last_value(&stderr, "spool_lost="), Some(0), "{log}");
    // At least once: a message rsyslogd wrote whose answer the kill cut
    // off is sent again, so duplicates are possible, but few.
    assert!(
        ids.len() - unique.len() < 200,
        "{} duplicates",
        ids.len() - unique.len()
    );
}

#[test]
fn check_config_rejects_relp_with_tls_and_protocol_on_other_sinks() {
    let dir = support::scratch_dir("forward_relp_config");
    for (sink, key) in [
        (
            "type = \"syslog\"\nprotocol = \"relp\"\ntls = true\naddress = \"127.0.0.1:2514\"\n",
            "events.sinks.tls",
        ),
        (
            "type = \"fluent\"\nprotocol = \"relp\"\naddress = \"127.0.0.1:24224\"\n",
            "protocol",
        ),
        (
            "type = \"syslog\"\nprotocol = \"udp\"\naddress = \"127.0.0.1:514\"\n",
            "protocol",
        ),
    ] {
        let config = write_config(&dir, "", &format!("[[events.sinks]]\n{sink}"));
        let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
            .arg("check-config")
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sink} accepted");
        assert!(err.contains(key), "{sink}: {err}");
    }
}
