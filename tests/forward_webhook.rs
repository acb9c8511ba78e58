//! The `webhook` sink against a real local HTTP server run by the test:
//! three webhook sinks at once (generic, Slack, ticket templates), a 503 on
//! the first request is retried, and every event arrives.

mod fwd;
mod gen;
mod support;

use fwd::{last_value, sink_test, sink_test_id, write_config};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (path, JSON body) of every request answered 200.
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// Serves HTTP/1.1 on a loopback port: the first POST gets 503, the rest 200.
fn start_receiver() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
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
                continue; // the client gave up mid-request
            }
            let status = if first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if !first {
                let json = serde_json::from_slice(&body).expect("webhook body is JSON");
                store.lock().unwrap().push((path, json));
            }
            first = false;
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, received)
}

#[test]
fn webhook_templates_receive_every_event_and_5xx_is_retried() {
    let dir = support::scratch_dir("forward_webhook");
    let (port, received) = start_receiver();
    let sink = |name: &str, template: &str| {
        format!(
            "[[events.sinks]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}/{name}\"\n\
             template = \"{template}\"\nbatch_events = 10\nretry_initial_ms = 50\n"
        )
    };
    let config = write_config(
        &dir,
        "",
        &format!(
            "{}{}{}project = \"SOC\"\n",
            sink("generic", "generic"),
            sink("slack", "slack"),
            sink("ticket", "ticket")
        ),
    );
    let (mut run, stderr) = sink_test(
        &config,
        &dir,
        "sink-test",
        &["--count", "30", "--rate", "0"],
    );
    let code = run.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(0), "{log}");
    assert!(last_value(&stderr, "retried=").is_some());
    assert!(log.contains("retried=10"), "the 503 must be retried: {log}");
    let received = received.lock().unwrap().clone();
    let ids: Vec<String> = (0..30).map(|seq| sink_test_id("sink-test", seq)).collect();
    let bodies = |path: &str| -> Vec<&serde_json::Value> {
        received
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b)
            .collect()
    };
    // generic: {"events": [...]} per batch.
    let generic: Vec<String> = bodies("/generic")
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().iter())
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        assert!(generic.contains(id), "generic is missing {id}");
    }
    // slack: text + blocks per batch, naming each event id.
    let slack = bodies("/slack");
    assert!(slack
        .iter()
        .all(|b| b["text"].is_string() && b["blocks"].is_array()));
    let text: String = slack.iter().map(|b| b["text"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| text.contains(id.as_str())));
    // ticket: one issue per event, labelled with the event id.
    let tickets = bodies("/ticket");
    assert_eq!(tickets.len(), 30);
    for (ticket, id) in tickets.iter().zip(&ids) {
        assert_eq!(ticket["fields"]["project"]["key"], "SOC");
        assert!(ticket["fields"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Sink test event"));
        let labels = ticket["fields"]["labels"].as_array().unwrap();
        assert!(labels.iter().any(|l| *l == format!("apisensor-{id}")));
    }
}
