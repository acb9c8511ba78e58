//! The `nats` sink against a real `nats-server -js` started by each test:
//! every event arrives with its id as the JetStream message id, a 20 s
//! broker outage in a minute-long run loses nothing, and a SIGKILLed
//! forwarder resumes from its spool after a restart.

mod fwd;
mod gen;
mod support;

use futures_util::StreamExt;
use fwd::{last_value, sink_test, tally, write_config, NatsServer};
use std::time::{Duration, Instant};

const STREAM: &str = "APISENSOR";

fn nats_sink(url: &str, extra: &str) -> String {
    format!(
        "[[events.sinks]]\ntype = \"nats\"\naddress = \"{url}\"\nsubject = \"apisensor.events\"\n\
         stream = \"{STREAM}\"\ntimeout_ms = 2000\nretry_initial_ms = 200\nretry_max_ms = 2000\n{extra}\n"
    )
}

/// Every message of the stream: (id in the payload, Nats-Msg-Id header).
fn read_stream(url: &str) -> Vec<(String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
        let client = async_nats::connect(url).await.expect("connect to nats");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(STREAM).await.expect("stream exists");
        let total = stream.info().await.expect("stream info").state.messages as usize;
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .expect("stream message within 10 s")
                .expect("stream open")
                .expect("message");
            let json: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("payload is JSON");
            let header = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push((json["id"].as_str().unwrap_or_default().to_owned(), header));
        }
        out
    })
}

#[test]
fn nats_jetstream_receives_every_event_with_matching_message_ids() {
    let dir = support::scratch_dir("forward_nats_roundtrip");
    let server = NatsServer::start(&dir.join("nats"));
    let config = write_config(&dir, "", &nats_sink(&server.url(), "batch_events = 50"));
    let (mut run, stderr) = sink_test(&config, &dir, "run", &["--count", "500", "--rate", "0"]);
    let code = run.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(0), "sink-test failed: {log}");
    let messages = read_stream(&server.url());
    assert_eq!(messages.len(), 500, "{log}");
    for (id, header) in &messages {
        assert_eq!(id, header, "Nats-Msg-Id must be the event id");
    }
    let ids: Vec<String> = messages.into_iter().map(|(id, _)| id).collect();
    let (missing, duplicates) = tally(&ids, "sink-test", 500);
    assert!(missing.is_empty(), "missing {missing:?}");
    assert_eq!(duplicates, 0);
    assert_eq!(last_value(&stderr, "acked="), Some(500), "{log}");
}

#[test]
fn nats_outage_of_20s_mid_run_loses_no_event() {
    let dir = support::scratch_dir("forward_nats_outage");
    let mut server = NatsServer::start(&dir.join("nats"));
    let config = write_config(
        &dir,
        "drain_timeout_secs = 60",
        &nats_sink(&server.url(), "batch_events = 100"),
    );
    const COUNT: u64 = 12_000;
    let started = Instant::now();
    // 190 events/s: 12,000 events over about 63 s.
    let (mut run, stderr) = sink_test(&config, &dir, "run", &["--count", "12000", "--rate", "190"]);
    std::thread::sleep(Duration::from_secs(15));
    server.stop();
    let killed_at = started.elapsed();
    std::thread::sleep(Duration::from_secs(20));
    server.restart();
    let code = run.wait(Duration::from_secs(150));
    let elapsed = started.elapsed();
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(code, Some(0), "sink-test failed: {log}");
    let ids: Vec<String> = read_stream(&server.url())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (missing, duplicates) = tally(&ids, "sink-test", COUNT);
    let retried = last_value(&stderr, "retried=").unwrap_or(0);
    let spooled = last_value(&stderr, "spooled=").unwrap_or(0);
    eprintln!(
        "nats outage: {COUNT} events over {:.1}s, broker down from {:.1}s for 20s; \
         stream holds {} messages, {} missing, {duplicates} duplicates; \
         sink retried {retried} and spooled {spooled} events",
        elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        ids.len(),
        missing.len()
    );
    assert!(
        elapsed >= Duration::from_secs(60),
        "run shorter than a minute"
    );
    assert!(
        missing.is_empty(),
        "lost {} events, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(retried > 0, "the outage must have caused retries: {log}");
    assert!(spooled > 0, "events must have waited in the spool: {log}");
}

#[test]
fn sigkill_mid_run_then_restart_resumes_from_the_spool() {
    let dir = support::scratch_dir("forward_nats_sigkill");
    let server = NatsServer::start(&dir.join("nats"));
    // Large, slow batches keep a backlog in the spool at the moment of the kill.
    let config = write_config(
        &dir,
        "fsync = \"always\"",
        &nats_sink(
            &server.url(),
            "batch_events = 1000\nbatch_timeout_ms = 1500",
        ),
    );
    let (mut first, first_log) = sink_test(
        &config,
        &dir,
        "first",
        &["--count", "3000", "--rate", "300"],
    );
    std::thread::sleep(Duration::from_millis(4500));
    first.kill(); // SIGKILL
    let durable = last_value(&first_log, "appended=").expect("progress line before the kill");
    let (mut second, second_log) = sink_test(&config, &dir, "second", &["--count", "0"]);
    let code = second.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(&second_log).unwrap_or_default();
    assert_eq!(code, Some(0), "restart failed: {log}");
    let resumed = last_value(&second_log, "acked=").unwrap_or(0);
    let ids: Vec<String> = read_stream(&server.url())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (missing, duplicates) = tally(&ids, "sink-test", durable);
    eprintln!(
        "sigkill: {durable} events durable at the kill, {} in the stream, restart sent {resumed} \
         from the spool, {} missing, {duplicates} duplicates",
        ids.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "lost after restart: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(
        resumed > 0,
        "the restart must have sent what the spool held: {log}"
    );
}
