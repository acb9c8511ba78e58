//! Shipping events: the [`EventHandle`] producers emit into, the
//! write-ahead [`spool`], and one task per configured sink on a tokio
//! runtime of its own thread. Owns delivery (batching, retry with backoff,
//! acknowledgement cursors, metrics); never looks at packets or exchanges.
//!
//! Delivery is at least once: `emit` puts the event on a bounded channel
//! (or, when that is full, appends it to the spool itself — one local
//! buffered write, never a wait on a network sink); the intake thread
//! appends everything to the spool before any sink sees it; each sink reads
//! the spool through its own cursor and moves the cursor (persisted to disk)
//! only after the sink acknowledged. A crash or SIGKILL therefore loses only
//! the events still on the in-memory channel; everything appended is sent
//! again after a restart (duplicates are expected; the stable event id lets
//! downstream de-duplicate). The spool cap evicts oldest-first and counts.

pub mod file;
pub mod fluent;
pub mod nats;
pub mod net;
pub mod relp;
pub mod spool;
pub mod stdout;
pub mod syslog;
pub mod webhook;

use crate::config::{EventSettings, SinkSettings, SinkType, SyslogProtocol};
use crate::event::{Event, EventKind, Severity};
use crate::files::FileOwner;
use crate::telemetry::Stats;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::Serialize;
use spool::{Losses, SinkCursor, Spool, SpoolReader};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: connection refused or lost, timeout, 5xx, no ack.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (the receiver rejected the batch): dropped and counted.
    #[error("{0}")]
    Permanent(String),
    /// The receiver confirmed the first `confirmed` events of the batch, then
    /// the attempt failed (worth retrying for the rest).
    #[error("{error} (after {confirmed} confirmed)")]
    Partial { confirmed: usize, error: String },
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError::Transient(e.to_string())
    }
}

/// The name a sink's metrics and cursor go by.
pub fn sink_name(sink: &SinkSettings, index: usize) -> String {
    if sink.name.is_empty() {
        format!("{}-{index}", sink.kind.as_str())
    } else {
        sink.name.clone()
    }
}

/// One configured sink, ready to send batches.
pub enum Sink {
    File(file::FileSink),
    Stdout(stdout::StdoutSink),
    Fluent(fluent::FluentSink),
    Nats(nats::NatsSink),
    Syslog(syslog::SyslogSink),
    Relp(relp::RelpSink),
    Webhook(webhook::WebhookSink),
}

impl Sink {
    /// `owner`: who the files of a `file` sink belong to (the service user
    /// the process switches to after start).
    pub fn build(
        settings: &SinkSettings,
        events: &EventSettings,
        owner: Option<FileOwner>,
    ) -> Result<Sink, String> {
        Ok(match settings.kind {
            SinkType::File => Sink::File(file::FileSink::new(settings, events, owner)),
            SinkType::Stdout => Sink::Stdout(stdout::StdoutSink),
            SinkType::Fluent => Sink::Fluent(fluent::FluentSink::new(settings)?),
            SinkType::Nats => Sink::Nats(nats::NatsSink::new(settings)),
            SinkType::Syslog => match settings.protocol.unwrap_or(SyslogProtocol::Tcp) {
                SyslogProtocol::Tcp => Sink::Syslog(syslog::SyslogSink::new(settings)?),
                SyslogProtocol::Relp => Sink::Relp(relp::RelpSink::new(settings)?),
            },
            SinkType::Webhook => Sink::Webhook(webhook::WebhookSink::new(settings)?),
        })
    }

    /// Whether a successful `send` means the receiver confirmed the events.
    /// Plain TCP syslog has no acknowledgement: a write that returned only
    /// means the kernel took the bytes, and a receiver that died a moment
    /// ago loses them without either side noticing.
    pub fn confirms(&self) -> bool {
        !matches!(self, Sink::Syslog(_))
    }

    /// Ends the session politely (RELP `close`), bounded by the caller.
    pub async fn close(&mut self) {
        if let Sink::Relp(s) = self {
            s.close().await;
        }
    }

    /// Delivers a batch; Ok means the receiver acknowledged all of it.
    pub async fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        match self {
            Sink::File(s) => s.send(batch),
            Sink::Stdout(s) => s.send(batch),
            Sink::Fluent(s) => s.send(batch).await,
            Sink::Nats(s) => s.send(batch).await,
            Sink::Syslog(s) => s.send(batch).await,
            Sink::Relp(s) => s.send(batch).await,
            Sink::Webhook(s) => s.send(batch).await,
        }
    }

    /// Drops any connection after a failure, so the next attempt starts clean.
    pub fn reset(&mut self) {
        match self {
            Sink::File(s) => s.reset(),
            Sink::Stdout(_) => {}
            Sink::Fluent(s) => s.reset(),
            Sink::Nats(s) => s.reset(),
            Sink::Syslog(s) => s.reset(),
            Sink::Relp(s) => s.reset(),
            Sink::Webhook(_) => {}
        }
    }
}

/// Counters of one sink, as a plain snapshot.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkMetrics {
    pub sent: u64,
    /// Confirmed by the receiver.
    pub acked: u64,
    /// Written to a receiver that cannot confirm (plain TCP syslog).
    pub unconfirmed: u64,
    pub retried: u64,
    pub spooled: u64,
    pub dropped: u64,
    /// Events appended to the spool and not yet acknowledged by this sink.
    pub lag_events: u64,
}

/// Forwarder counters, as a plain snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForwardMetrics {
    /// Events producers emitted.
    pub emitted: u64,
    /// Emitted while the channel was full (by count or bytes): appended by
    /// the emitting thread.
    pub overflow_spooled: u64,
    /// Events on the in-memory channel, not yet in the spool (lost if the
    /// process dies now), and their approximate size.
    pub queued_events: u64,
    pub queued_bytes: u64,
    /// Events in a spool segment (fsynced with `fsync = "always"`).
    pub spool_appended: u64,
    /// Events the spool lost, all reasons: `spool_lost_evicted` +
    /// `spool_lost_write_failed` + `spool_lost_unencodable`.
    pub spool_lost: u64,
    /// Evicted by `spool_max_bytes` before every sink had them.
    pub spool_lost_evicted: u64,
    /// Never appended: the spool write failed (disk full, I/O error).
    pub spool_lost_write_failed: u64,
    /// Never appended: the event could not be encoded.
    pub spool_lost_unencodable: u64,
    pub spool_bytes: u64,
    pub spool_segments: u64,
    pub sinks: BTreeMap<String, SinkMetrics>,
}

impl ForwardMetrics {
    /// One line for the stats log.
    pub fn line(&self) -> String {
        let mut line = format!(
            "events emitted={} overflow_spooled={} queued={} appended={} spool_bytes={} \
             spool_lost={} lost_evicted={} lost_write_failed={} lost_unencodable={}",
            self.emitted,
            self.overflow_spooled,
            self.queued_events,
            self.spool_appended,
            self.spool_bytes,
            self.spool_lost,
            self.spool_lost_evicted,
            self.spool_lost_write_failed,
            self.spool_lost_unencodable
        );
        for (name, m) in &self.sinks {
            line.push_str(&format!(
                " | {name} sent={} acked={} unconfirmed={} retried={} spooled={} dropped={} lag={}",
                m.sent, m.acked, m.unconfirmed, m.retried, m.spooled, m.dropped, m.lag_events
            ));
            if m.unconfirmed > 0 {
                line.push_str(
                    " (plain TCP syslog cannot confirm delivery; protocol = \"relp\" can)",
                );
            }
        }
        line
    }

    /// Prometheus text: `apisensor_events_*` and `apisensor_sink_*{sink="…"}`.
    pub fn prometheus_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (name, value, kind) in [
            ("apisensor_events_emitted_total", self.emitted, "counter"),
            (
                "apisensor_events_overflow_spooled_total",
                self.overflow_spooled,
                "counter",
            ),
            (
                "apisensor_events_spool_appended_total",
                self.spool_appended,
                "counter",
            ),
            (
                "apisensor_events_spool_lost_total",
                self.spool_lost,
                "counter",
            ),
            ("apisensor_events_queued", self.queued_events, "gauge"),
            ("apisensor_events_queued_bytes", self.queued_bytes, "gauge"),
            ("apisensor_events_spool_bytes", self.spool_bytes, "gauge"),
        ] {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
        }
        let name = "apisensor_events_spool_lost_by_reason_total";
        let _ = writeln!(out, "# TYPE {name} counter");
        for (reason, value) in [
            ("evicted", self.spool_lost_evicted),
            ("write_failed", self.spool_lost_write_failed),
            ("unencodable", self.spool_lost_unencodable),
        ] {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
        }
        type Field = fn(&SinkMetrics) -> u64;
        let fields: [(&str, &str, Field); 7] = [
            ("sent_events_total", "counter", |m| m.sent),
            ("acked_events_total", "counter", |m| m.acked),
            ("unconfirmed_events_total", "counter", |m| m.unconfirmed),
            ("retried_events_total", "counter", |m| m.retried),
            ("spooled_events_total", "counter", |m| m.spooled),
            ("dropped_events_total", "counter", |m| m.dropped),
            ("lag_events", "gauge", |m| m.lag_events),
        ];
        for (suffix, kind, get) in fields {
            let _ = writeln!(out, "# TYPE apisensor_sink_{suffix} {kind}");
            for (sink, m) in &self.sinks {
                let _ = writeln!(out, "apisensor_sink_{suffix}{{sink=\"{sink}\"}} {}", get(m));
            }
        }
        out
    }
}

struct Shared {
    spool: Arc<Spool>,
    emitted: AtomicU64,
    overflow: AtomicU64,
    /// Approximate bytes of the events on the channel, and their cap.
    queued_bytes: AtomicU64,
    queue_max_bytes: u64,
    sensor: String,
}

/// An event on the channel with the size it was charged.
type Queued = (Event, u64);

/// Where producers put events. Cheap to clone; `emit` never waits on a sink.
#[derive(Clone)]
pub struct EventHandle {
    tx: Sender<Queued>,
    shared: Arc<Shared>,
}

/// Roughly the heap bytes an event holds: the strings it carries (evidence
/// headers and bodies are the bulk) and a fixed part. Cheap enough to run
/// on every emit; what bounds the channel in bytes.
pub fn approx_event_bytes(event: &Event) -> u64 {
    fn json_bytes(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => 24 + s.len(),
            serde_json::Value::Array(a) => 24 + a.iter().map(json_bytes).sum::<usize>(),
            serde_json::Value::Object(o) => {
                24 + o
                    .iter()
                    .map(|(k, v)| 48 + k.len() + json_bytes(v))
                    .sum::<usize>()
            }
            _ => 16,
        }
    }
    let text = &event.text;
    let mut n = std::mem::size_of::<Event>()
        + event.id.len()
        + event.rule.len()
        + event.sensor.len()
        + event.title.len()
        + text.what_happened.len()
        + text.why_it_matters.len()
        + text.what_to_do.len();
    if let Some(actor) = &event.actor {
        n += actor.principal.as_ref().map_or(0, String::len);
        n += actor.principal_kind.as_ref().map_or(0, String::len);
    }
    if let Some(ep) = &event.endpoint {
        n += ep.host.len() + ep.method.len() + ep.path.len();
    }
    n += event.counts.keys().map(|k| 48 + k.len()).sum::<usize>();
    for e in &event.evidence {
        n += std::mem::size_of_val(e) + e.method.len() + e.uri.len();
        for (k, v) in e.request_headers.iter().chain(&e.response_headers) {
            n += 48 + k.len() + v.len();
        }
        n += e.request_body.as_ref().map_or(0, String::len);
        n += e.response_body.as_ref().map_or(0, String::len);
    }
    n += event
        .attributes
        .iter()
        .map(|(k, v)| 48 + k.len() + json_bytes(v))
        .sum::<usize>();
    n as u64
}

impl EventHandle {
    /// Queues an event for every sink. When the queue is full — by count
    /// (`events.queue_events`) or by bytes (`events.queue_max_bytes`) — the
    /// event is appended to the spool by this thread (one local write) and
    /// counted in `overflow_spooled`; it is never dropped for lack of room.
    pub fn emit(&self, event: Event) {
        let shared = &self.shared;
        shared.emitted.fetch_add(1, Ordering::Relaxed);
        let bytes = approx_event_bytes(&event);
        let before = shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let event = if before + bytes > shared.queue_max_bytes {
            shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            event
        } else {
            match self.tx.try_send((event, bytes)) {
                Ok(()) => return,
                Err(TrySendError::Full((event, _)))
                | Err(TrySendError::Disconnected((event, _))) => {
                    shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                    event
                }
            }
        };
        shared.overflow.fetch_add(1, Ordering::Relaxed);
        shared.spool.append(std::slice::from_ref(&event));
    }

    /// The sensor name events should carry.
    pub fn sensor(&self) -> &str {
        &self.shared.sensor
    }
}

/// What drives the forwarder's health events: a source of pipeline
/// counters (None: no periodic stats events, as in replay).
pub type StatsSource = Arc<dyn Fn() -> Stats + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// Intake is closed: send what is spooled, then stop; give up at the
    /// deadline. Not `patient`: a sink that is failing stops at once.
    Draining(Instant, bool),
}

/// The running forwarder: intake thread, runtime thread, spool.
pub struct Forwarder {
    handle: EventHandle,
    spool: Arc<Spool>,
    intake_stop: Arc<AtomicBool>,
    intake: Option<JoinHandle<()>>,
    runtime: Option<JoinHandle<()>>,
    phase: watch::Sender<Phase>,
    drain_timeout: Duration,
    health: bool,
    boot_ms: u64,
    health_seq: Arc<AtomicU64>,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A health event (`kind = health`); its id is keyed on the forwarder's
/// start time and a sequence number, so each one is distinct.
pub fn health_event(
    sensor: &str,
    rule: &str,
    boot_ms: u64,
    seq: u64,
    severity: Severity,
    title: String,
) -> Event {
    let mut event = Event::new(
        EventKind::Health,
        rule,
        sensor,
        &[&boot_ms.to_string(), &seq.to_string()],
        wall_ms(),
        severity,
        title,
    );
    event.confidence = 100;
    event
}

impl Forwarder {
    /// Opens the spool, starts the intake thread and one task per sink.
    /// `health`: emit start/stop (and, with `stats`, periodic) health events.
    /// `owner`: the user the process switches to after start
    /// (`service.user`); the spool and file sinks are created for it.
    pub fn start(
        settings: &EventSettings,
        health: bool,
        stats: Option<StatsSource>,
        owner: Option<FileOwner>,
    ) -> anyhow::Result<Forwarder> {
        use anyhow::Context;
        let names: Vec<String> = settings
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| sink_name(s, i))
            .collect();
        let mut sinks = Vec::new();
        for (i, s) in settings.sinks.iter().enumerate() {
            let sink = Sink::build(s, settings, owner)
                .map_err(|e| anyhow::anyhow!("events.sinks[{i}] ({}): {e}", names[i]))?;
            sinks.push((s.clone(), sink));
        }
        let spool = Arc::new(Spool::open(settings, &names, owner).with_context(|| {
            format!(
                "events.spool_dir: cannot open the spool in {:?} (set a writable directory)",
                settings.spool_dir
            )
        })?);
        let sensor = settings.sensor_name();
        let (tx, rx) = bounded::<Queued>(settings.queue_events);
        let shared = Arc::new(Shared {
            spool: Arc::clone(&spool),
            emitted: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            queue_max_bytes: settings.queue_max_bytes,
            sensor: sensor.clone(),
        });
        let handle = EventHandle { tx, shared };
        let intake_stop = Arc::new(AtomicBool::new(false));
        let intake = {
            let shared = Arc::clone(&handle.shared);
            let stop = Arc::clone(&intake_stop);
            std::thread::Builder::new()
                .name("apisensor-spool".into())
                .spawn(move || run_intake(rx, &shared, &stop))
                .context("cannot start the spool thread")?
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let boot_ms = wall_ms();
        let health_seq = Arc::new(AtomicU64::new(0));
        let runtime = {
            let spool = Arc::clone(&spool);
            let handle = handle.clone();
            let interval = Duration::from_secs(settings.health_interval_secs);
            let health_seq = Arc::clone(&health_seq);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the forwarder runtime")?;
            std::thread::Builder::new()
                .name("apisensor-forward".into())
                .spawn(move || {
                    rt.block_on(async move {
                        let mut tasks = Vec::new();
                        for ((settings, sink), cursor) in
                            sinks.into_iter().zip(spool.cursors.clone())
                        {
                            tasks.push(tokio::spawn(run_sink(
                                sink,
                                settings,
                                cursor,
                                Arc::clone(&spool),
                                phase_rx.clone(),
                            )));
                        }
                        let reporter = tokio::spawn(run_health(
                            handle,
                            Arc::clone(&spool),
                            stats.filter(|_| health),
                            interval,
                            boot_ms,
                            health_seq,
                            phase_rx,
                        ));
                        for task in tasks {
                            let _ = task.await;
                        }
                        reporter.abort();
                    });
                })
                .context("cannot start the forwarder thread")?
        };
        let forwarder = Forwarder {
            handle,
            spool,
            intake_stop,
            intake: Some(intake),
            runtime: Some(runtime),
            phase: phase_tx,
            drain_timeout: Duration::from_secs(settings.drain_timeout_secs),
            health,
            boot_ms,
            health_seq,
        };
        if health {
            forwarder.emit_health(
                "sensor.start",
                Severity::Info,
                format!("Sensor {sensor} started"),
                BTreeMap::new(),
            );
        }
        Ok(forwarder)
    }

    pub fn handle(&self) -> EventHandle {
        self.handle.clone()
    }

    fn emit_health(
        &self,
        rule: &str,
        severity: Severity,
        title: String,
        attributes: BTreeMap<String, serde_json::Value>,
    ) {
        let seq = self.health_seq.fetch_add(1, Ordering::Relaxed);
        let mut event = health_event(
            self.handle.sensor(),
            rule,
            self.boot_ms,
            seq,
            severity,
            title,
        );
        event.attributes = attributes;
        event.text.what_happened = event.title.clone();
        self.handle.emit(event);
    }

    pub fn metrics(&self) -> ForwardMetrics {
        metrics(&self.handle, &self.spool)
    }

    /// Closes intake, lets sinks send what is spooled (bounded by
    /// `events.drain_timeout_secs`) and returns the final counters. With
    /// `patient` false (replay), sinks that are failing stop at once
    /// instead of retrying until the deadline. What is not delivered stays
    /// in the spool for the next start.
    pub fn shutdown(mut self, final_stats: Option<&Stats>, patient: bool) -> ForwardMetrics {
        if self.health {
            let mut attributes = BTreeMap::new();
            if let Some(stats) = final_stats {
                attributes.insert("stats".into(), stats_json(stats));
            }
            self.emit_health(
                "sensor.stop",
                Severity::Info,
                format!("Sensor {} stopping", self.handle.sensor()),
                attributes,
            );
        }
        self.intake_stop.store(true, Ordering::SeqCst);
        if let Some(intake) = self.intake.take() {
            let _ = intake.join();
        }
        // Losses since the last report go out now, before the drain, as the
        // newest events in the spool (eviction takes the oldest first). The
        // channel is closed, so `emit` appends on this thread.
        for _ in 0..3 {
            let losses = self.spool.counters.take_unreported();
            if losses.total() == 0 {
                break;
            }
            let seq = self.health_seq.fetch_add(1, Ordering::Relaxed);
            let event = spool_loss_event(
                self.handle.sensor(),
                self.boot_ms,
                seq,
                losses,
                self.spool.counters.losses(),
            );
            let appended_before = self.spool.counters.appended.load(Ordering::Relaxed);
            self.handle.emit(event);
            if self.spool.counters.appended.load(Ordering::Relaxed) == appended_before {
                // Not in the spool (itself counted as lost): report again.
                self.spool.counters.restore_unreported(losses);
            }
        }
        self.spool.sync_now();
        let _ = self.phase.send(Phase::Draining(
            Instant::now() + self.drain_timeout,
            patient,
        ));
        self.spool.notify.notify_waiters();
        if let Some(runtime) = self.runtime.take() {
            let _ = runtime.join();
        }
        for cursor in &self.spool.cursors {
            let next = cursor.acked_seq.load(Ordering::SeqCst);
            self.spool.ack(cursor, next, true);
        }
        self.spool.tick();
        self.spool.sync_now();
        self.metrics()
    }
}

fn stats_json(stats: &Stats) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for line in stats.nonzero_lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Ok(v) = v.parse::<u64>() {
                map.insert(k.to_owned(), v.into());
            }
        }
    }
    serde_json::Value::Object(map)
}

fn metrics(handle: &EventHandle, spool: &Spool) -> ForwardMetrics {
    let shared = &handle.shared;
    let next = spool.next_seq();
    let (bytes, segments) = spool.size();
    let losses = spool.counters.losses();
    let sinks = spool
        .cursors
        .iter()
        .map(|c| {
            let m = SinkMetrics {
                sent: c.counters.sent.load(Ordering::Relaxed),
                acked: c.counters.acked.load(Ordering::Relaxed),
                unconfirmed: c.counters.unconfirmed.load(Ordering::Relaxed),
                retried: c.counters.retried.load(Ordering::Relaxed),
                spooled: c.counters.spooled.load(Ordering::Relaxed),
                dropped: c.counters.dropped.load(Ordering::Relaxed),
                lag_events: next.saturating_sub(c.acked_seq.load(Ordering::SeqCst)),
            };
            (c.name.clone(), m)
        })
        .collect();
    ForwardMetrics {
        emitted: shared.emitted.load(Ordering::Relaxed),
        overflow_spooled: shared.overflow.load(Ordering::Relaxed),
        queued_events: handle.tx.len() as u64,
        queued_bytes: shared.queued_bytes.load(Ordering::Relaxed),
        spool_appended: spool.counters.appended.load(Ordering::Relaxed),
        spool_lost: losses.total(),
        spool_lost_evicted: losses.evicted,
        spool_lost_write_failed: losses.write_failed,
        spool_lost_unencodable: losses.unencodable,
        spool_bytes: bytes,
        spool_segments: segments as u64,
        sinks,
    }
}

/// A metrics source usable after the forwarder moved (for /metrics and the stats log).
pub fn metrics_source(forwarder: &Forwarder) -> impl Fn() -> ForwardMetrics + Send + Sync {
    let handle = forwarder.handle.clone();
    let spool = Arc::clone(&forwarder.spool);
    move || metrics(&handle, &spool)
}

/// Channel → spool, in batches; periodic fsync and segment clean-up.
fn run_intake(rx: Receiver<Queued>, shared: &Shared, stop: &AtomicBool) {
    let spool = &shared.spool;
    let mut batch = Vec::with_capacity(1024);
    let mut last_tick = Instant::now();
    let take = |batch: &mut Vec<Event>, (event, bytes): Queued| {
        shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        batch.push(event);
    };
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(queued) => {
                take(&mut batch, queued);
                while batch.len() < 1024 {
                    match rx.try_recv() {
                        Ok(queued) => take(&mut batch, queued),
                        Err(_) => break,
                    }
                }
                spool.append(&batch);
                batch.clear();
            }
            Err(RecvTimeoutError::Timeout) if stopping => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            last_tick = Instant::now();
            spool.tick();
        }
    }
    // Anything emitted after this appends directly (the channel is gone).
    while let Ok(queued) = rx.try_recv() {
        take(&mut batch, queued);
    }
    if !batch.is_empty() {
        spool.append(&batch);
    }
    spool.tick();
}

/// The `sensor.spool_loss` health event: `losses` since the last report,
/// `totals` since start (so the newest report that arrives tells it all,
/// even if an earlier one was itself lost).
pub fn spool_loss_event(
    sensor: &str,
    boot_ms: u64,
    seq: u64,
    losses: Losses,
    totals: Losses,
) -> Event {
    let lost = losses.total();
    let mut event = health_event(
        sensor,
        "sensor.spool_loss",
        boot_ms,
        seq,
        Severity::High,
        format!("{lost} events lost in the event spool"),
    );
    event.count = lost;
    for (key, value) in [
        ("events_lost", lost),
        ("evicted", losses.evicted),
        ("write_failed", losses.write_failed),
        ("unencodable", losses.unencodable),
        ("total_lost", totals.total()),
        ("total_evicted", totals.evicted),
        ("total_write_failed", totals.write_failed),
        ("total_unencodable", totals.unencodable),
    ] {
        event.counts.insert(key.into(), value);
    }
    let mut what = Vec::new();
    if losses.evicted > 0 {
        what.push(format!(
            "{} undelivered events were evicted because the spool reached \
             events.spool_max_bytes while a sink was not taking events",
            losses.evicted
        ));
    }
    if losses.write_failed > 0 {
        what.push(format!(
            "{} events could not be written to the spool (disk full or I/O error \
             in events.spool_dir)",
            losses.write_failed
        ));
    }
    if losses.unencodable > 0 {
        what.push(format!(
            "{} events could not be encoded",
            losses.unencodable
        ));
    }
    event.text.what_happened = format!("{}.", what.join("; "));
    event.text.why_it_matters = "Detections in those events never reached the collector.".into();
    event.text.what_to_do = "Restore the sink, free space in events.spool_dir, or raise \
                             events.spool_max_bytes."
        .into();
    event
}

/// Periodic `sensor.stats` and `sensor.spool_loss` health events.
async fn run_health(
    handle: EventHandle,
    spool: Arc<Spool>,
    stats: Option<StatsSource>,
    interval: Duration,
    boot_ms: u64,
    seq: Arc<AtomicU64>,
    phase: watch::Receiver<Phase>,
) {
    let mut last_stats = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if *phase.borrow() != Phase::Running {
            return;
        }
        let losses = spool.counters.take_unreported();
        if losses.total() > 0 {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            handle.emit(spool_loss_event(
                handle.sensor(),
                boot_ms,
                n,
                losses,
                spool.counters.losses(),
            ));
        }
        if let Some(stats) = &stats {
            if last_stats.elapsed() >= interval {
                last_stats = Instant::now();
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let mut event = health_event(
                    handle.sensor(),
                    "sensor.stats",
                    boot_ms,
                    n,
                    Severity::Info,
                    "Sensor statistics".into(),
                );
                event
                    .attributes
                    .insert("stats".into(), stats_json(&stats()));
                let m = metrics(&handle, &spool);
                if let Ok(v) = serde_json::to_value(&m) {
                    event.attributes.insert("events".into(), v);
                }
                handle.emit(event);
            }
        }
    }
}

/// How one batch ended.
enum Outcome {
    /// Everything in it was confirmed, written or counted as dropped.
    Done,
    /// The sink gave up (drain deadline, or failing while not patient).
    Abandoned,
}

/// One sink's loop: read a batch at its cursor, send with retries, move the cursor.
async fn run_sink(
    mut sink: Sink,
    settings: SinkSettings,
    cursor: Arc<SinkCursor>,
    spool: Arc<Spool>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut reader = SpoolReader::new(Arc::clone(&spool));
    let batch_timeout = Duration::from_millis(settings.batch_timeout_ms);
    let mut partial_since: Option<Instant> = None;
    loop {
        let current = *phase.borrow();
        if let Phase::Draining(deadline, _) = current {
            if Instant::now() >= deadline {
                break;
            }
        }
        // Sinks share one thread: a sink with a backlog must let the others run.
        tokio::task::yield_now().await;
        let from = cursor.acked_seq.load(Ordering::SeqCst);
        let records = reader.read(from, settings.batch_events);
        if records.is_empty() {
            if current != Phase::Running {
                break;
            }
            partial_since = None;
            let notified = spool.notify.notified();
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(batch_timeout) => {}
                _ = phase.changed() => {}
            }
            continue;
        }
        if records.len() < settings.batch_events && current == Phase::Running {
            let since = *partial_since.get_or_insert_with(Instant::now);
            let left = batch_timeout.saturating_sub(since.elapsed());
            if !left.is_zero() {
                let notified = spool.notify.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(left) => {}
                    _ = phase.changed() => {}
                }
                continue;
            }
        }
        partial_since = None;
        let next = records.last().map_or(from, |(seq, _)| seq + 1);
        // The cap may have evicted (and counted) part of this since it was read.
        if !spool.claim(&cursor, from, next) {
            continue;
        }
        let (seqs, events): (Vec<u64>, Vec<Event>) = records
            .into_iter()
            .filter_map(|(seq, e)| e.map(|e| (seq, e)))
            .unzip();
        let unreadable = (next - from) - events.len() as u64;
        if unreadable > 0 {
            cursor
                .counters
                .dropped
                .fetch_add(unreadable, Ordering::Relaxed);
        }
        let (outcome, delivered) = send_batch(
            &mut sink, &settings, &cursor, &spool, &mut phase, &seqs, &events,
        )
        .await;
        match outcome {
            Outcome::Done => {
                spool.ack(&cursor, next, false);
                spool.release(&cursor, next, next);
            }
            Outcome::Abandoned => {
                let delivered = delivered.unwrap_or(from);
                spool.release(&cursor, delivered, next);
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(settings.timeout_ms), sink.close()).await;
    let next = cursor.acked_seq.load(Ordering::SeqCst);
    spool.ack(&cursor, next, true);
}

/// Sends one batch with retries until it is delivered, rejected, or the
/// drain gives up on it. Confirmed prefixes move the cursor as they come,
/// so a reconnect re-sends only what was not confirmed. Returns the
/// outcome and, when abandoned, the sequence number below which events
/// were delivered.
async fn send_batch(
    sink: &mut Sink,
    settings: &SinkSettings,
    cursor: &SinkCursor,
    spool: &Spool,
    phase: &mut watch::Receiver<Phase>,
    seqs: &[u64],
    events: &[Event],
) -> (Outcome, Option<u64>) {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let mut backoff = Duration::from_millis(settings.retry_initial_ms);
    let max_backoff = Duration::from_millis(settings.retry_max_ms);
    let confirms = sink.confirms();
    let mut start = 0usize;
    let delivered_below = |start: usize| seqs.get(start).copied();
    loop {
        let Some(pending) = events.get(start..).filter(|p| !p.is_empty()) else {
            return (Outcome::Done, None);
        };
        let n = pending.len() as u64;
        cursor
            .attempt_started_ms
            .store(spool.now_ms(), Ordering::Relaxed);
        cursor.counters.sent.fetch_add(n, Ordering::Relaxed);
        let attempt = tokio::time::timeout(timeout, sink.send(pending));
        // During a drain, a sink that was already failing is not waited for.
        let result = tokio::select! {
            r = attempt => Some(r),
            _ = wait_abort(phase, cursor) => None,
        };
        cursor.attempt_started_ms.store(0, Ordering::Relaxed);
        let done = if confirms {
            &cursor.counters.acked
        } else {
            &cursor.counters.unconfirmed
        };
        let error = match result {
            None => return (Outcome::Abandoned, delivered_below(start)),
            Some(Ok(Ok(()))) => {
                done.fetch_add(n, Ordering::Relaxed);
                cursor.live.store(true, Ordering::Relaxed);
                return (Outcome::Done, None);
            }
            Some(Ok(Err(SinkError::Permanent(e)))) => {
                tracing::warn!("sink {}: batch of {n} rejected, dropped: {e}", cursor.name);
                cursor.counters.dropped.fetch_add(n, Ordering::Relaxed);
                return (Outcome::Done, None);
            }
            Some(Ok(Err(SinkError::Partial { confirmed, error }))) => {
                let confirmed = confirmed.min(pending.len());
                done.fetch_add(confirmed as u64, Ordering::Relaxed);
                start += confirmed;
                if let Some(&below) = seqs.get(start) {
                    spool.ack(cursor, below, false);
                }
                error
            }
            Some(Ok(Err(SinkError::Transient(e)))) => e,
            Some(Err(_)) => format!("no answer within {} ms", settings.timeout_ms),
        };
        if cursor.live.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "sink {}: {error}; retrying, events wait in the spool",
                cursor.name
            );
        }
        sink.reset();
        let left = events.len().saturating_sub(start) as u64;
        cursor.counters.retried.fetch_add(left, Ordering::Relaxed);
        let mut wait = backoff;
        if let Phase::Draining(deadline, patient) = *phase.borrow() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !patient || remaining.is_zero() {
                return (Outcome::Abandoned, delivered_below(start));
            }
            wait = wait.min(remaining);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = phase.changed() => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Resolves when a drain starts while this sink is failing, or the drain deadline passes.
async fn wait_abort(phase: &mut watch::Receiver<Phase>, cursor: &SinkCursor) {
    loop {
        let current = *phase.borrow();
        if let Phase::Draining(deadline, patient) = current {
            if !patient && !cursor.live.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        if phase.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// RFC 3339 UTC time with milliseconds from Unix epoch milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_in_memory_queue_is_bounded_by_count_and_bytes() {
        let dir = std::env::temp_dir().join(format!("apisensor-queue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = EventSettings {
            spool_dir: dir.display().to_string(),
            queue_events: 100,
            queue_max_bytes: 64 * 1024,
            ..EventSettings::default()
        };
        let spool = Arc::new(Spool::open(&settings, &["s".to_string()], None).unwrap());
        // Nobody drains the channel: what does not fit goes to the spool.
        let (tx, rx) = bounded::<Queued>(settings.queue_events);
        let handle = EventHandle {
            tx,
            shared: Arc::new(Shared {
                spool: Arc::clone(&spool),
                emitted: AtomicU64::new(0),
                overflow: AtomicU64::new(0),
                queued_bytes: AtomicU64::new(0),
                queue_max_bytes: settings.queue_max_bytes,
                sensor: "s".into(),
            }),
        };
        let event = |i: u64, body: usize| {
            let mut e = health_event("s", "sensor.test", 0, i, Severity::Info, "t".into());
            e.text.what_happened = "x".repeat(body);
            e
        };
        // Big events: the byte bound is reached long before the count.
        for i in 0..50 {
            handle.emit(event(i, 8 * 1024));
        }
        let queued_bytes = handle.shared.queued_bytes.load(Ordering::Relaxed);
        assert!(queued_bytes <= settings.queue_max_bytes, "{queued_bytes}");
        assert!(rx.len() < 10, "{}", rx.len());
        let overflow = handle.shared.overflow.load(Ordering::Relaxed);
        assert_eq!(overflow + rx.len() as u64, 50);
        assert_eq!(spool.counters.appended.load(Ordering::Relaxed), overflow);
        // Small events: the count bound.
        while rx.try_recv().is_ok() {}
        handle.shared.queued_bytes.store(0, Ordering::Relaxed);
        for i in 0..300 {
            handle.emit(event(100 + i, 10));
        }
        assert_eq!(rx.len(), 100);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn metrics_render_per_sink_prometheus_series() {
        let mut m = ForwardMetrics::default();
        m.sinks.insert(
            "nats-0".into(),
            SinkMetrics {
                acked: 5,
                ..SinkMetrics::default()
            },
        );
        let text = m.prometheus_text();
        assert!(text.contains("apisensor_sink_acked_events_total{sink=\"nats-0\"} 5\n"));
        assert!(m.line().contains("nats-0 sent=0 acked=5"));
    }
}
