//! Threads and channels: capture reader(s) (read + decode), N flow workers,
//! one output writer. A reader decodes each frame just far enough to know
//! its flow, then appends the segment to that worker's batch: a flow always
//! lands on the same worker (symmetric hash), so workers share nothing and
//! take no locks. Batches are recycled through a return channel, so the
//! steady state allocates nothing per packet. Every channel is bounded:
//! replay waits when a queue is full (a file cannot overrun); live capture
//! drops and counts (the capture ring must keep moving). Replay and live
//! capture run the same stages; only the sources and that policy differ.
//! This module never looks inside packet bytes beyond handing them on.
//!
//! While the writer keeps up, workers leave the inflation of gzip bodies and
//! the building of the record's text fields (method, target, path, query,
//! host, content type, reason) to it (see [`writer_keeps_up`]): together
//! they were a third of a worker's time on gzip-heavy API traffic, and
//! their only readers (detectors, output) run on the writer anyway.
//! Compressed bodies also hold less memory in the queue. Which thread does
//! the work never changes what is written: the same code runs on the same
//! bytes.

use crate::analysis::Analysis;
use crate::analysis::AnalysisStats;
use crate::capture::{FileSource, Next, PacketSource};
use crate::config::Settings;
use crate::decode::{Decoder, LinkType, TcpFlags, TcpSegment};
use crate::exchange::{Exchange, Exchanges, Timestamp};
use crate::flow::{FlowKey, FlowTable, Segment, Side, WorkerLimits};
use crate::forward::EventHandle;
use crate::http1::HttpStats;
use crate::order::{OrderKey, OrderedMerge, WorkerOutput};
use crate::output::ExchangeWriter;
use crate::telemetry::{Stats, StatsHub};
use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a full queue means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Wait for the consumer (replay: nothing is lost).
    Block,
    /// Drop and count (live capture: the ring must keep moving).
    Drop,
}

/// Queue depth (batches) replay uses at most: enough to keep every thread busy.
const REPLAY_QUEUE_DEPTH: usize = 16;

/// Longest time a live capture keeps a partial batch.
const LIVE_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Longest a capture thread keeps reading already-buffered packets after a stop.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(500);

/// Longest time written exchanges wait in the output buffer.
const OUTPUT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// A replay reader that finds a worker's queue full naps in steps this
/// long until the worker has emptied half of it, then refills it in one go.
/// A blocking send wakes the reader for every batch the worker takes, after
/// spinning through `sched_yield`: on the benchmark capture that was most
/// of 120 k context switches and 0.4 s of system time, on the cores the
/// workers need.
const QUEUE_NAP: Duration = Duration::from_micros(250);
/// 50 ms: a worker that is gone never drains its queue.
const MAX_QUEUE_NAPS: u32 = 200;

/// Packets read between watermarks sent to every worker.
const WATERMARK_INTERVAL_PACKETS: u64 = 4096;

/// How often threads copy their counters to the hub.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// Spent exchanges go back to their worker this many at a time (or fewer,
/// when they hold [`Spent`]'s byte limit), with at most `SPENT_QUEUE_DEPTH`
/// batches waiting: at most 1,280 exchanges per worker wait to be freed, a
/// fiftieth of what `output_queue_exchanges` lets wait for the writer.
const SPENT_BATCH: usize = 256;
const SPENT_QUEUE_DEPTH: usize = 4;

/// A decoded segment inside a batch; its payload lives in `Batch::payload`.
#[derive(Debug, Clone, Copy)]
struct Record {
    ts: Timestamp,
    /// Newest packet time read so far (packet times can step back).
    clock: Timestamp,
    packet_index: u64,
    key: FlowKey,
    side: Side,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    payload_start: u32,
    payload_len: u32,
    missing_payload: u32,
    fragment_overlap: bool,
}

#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    payload: Vec<u8>,
    /// Packet time when the batch was sent; lets a quiet worker expire idle
    /// flows (live capture sends empty batches as ticks).
    now: Timestamp,
    /// Packets read (all workers) when the batch was sent: with `now`, the
    /// worker's watermark once it has processed the batch.
    sent_index: u64,
}

impl Batch {
    fn push(
        &mut self,
        ts: Timestamp,
        clock: Timestamp,
        packet_index: u64,
        key: FlowKey,
        side: Side,
        seg: &TcpSegment<'_>,
    ) {
        let payload_start = self.payload.len() as u32;
        self.payload.extend_from_slice(seg.payload);
        self.records.push(Record {
            ts,
            clock,
            packet_index,
            key,
            side,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            payload_start,
            payload_len: seg.payload.len() as u32,
            missing_payload: seg.missing_payload,
            fragment_overlap: seg.fragment_overlap,
        });
    }

    fn clear(&mut self) {
        self.records.clear();
        self.payload.clear();
    }
}

/// What a run produced, for the summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub stats: Stats,
    pub exchanges_written: u64,
    /// The first error writing exchanges to the output (they are counted
    /// in `pipeline.exchanges_write_errors`).
    pub output_error: Option<String>,
    pub elapsed: Duration,
    pub workers: usize,
    /// Packets read per source, in order (once per pass when looping).
    pub files: Vec<(PathBuf, u64)>,
    /// Extra passes over the files (`replay_looped`); 0 for one pass.
    pub passes: u64,
}

/// Progress callback: (bytes read so far across files, total bytes).
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, u64);

/// Workers and writer, running; fed through `queues`.
struct Stages {
    queues: Vec<Sender<Batch>>,
    pool: Receiver<Batch>,
    workers: Vec<JoinHandle<Stats>>,
    writer: JoinHandle<WriterResult>,
}

/// Signals the writer reads: reopen the output file.
#[derive(Default)]
pub struct WriterControl {
    pub reopen: AtomicBool,
}

impl Stages {
    /// Starts `workers` flow workers and the writer. Worker `i` publishes its
    /// counters to hub slot `i`, the writer to slot `workers`.
    fn start(
        settings: &Settings,
        workers: usize,
        writer: ExchangeWriter,
        policy: QueuePolicy,
        hub: &Arc<StatsHub>,
        control: &Arc<WriterControl>,
        analysis: Option<Analysis>,
    ) -> Result<Stages> {
        // Replay waits instead of dropping, so deep queues would only hold
        // memory (a packet batch is ~100 KiB, an exchange batch carries kept
        // bodies); live capture needs the depth to ride out stalls.
        let depth = |configured: usize| match policy {
            QueuePolicy::Block => configured.min(REPLAY_QUEUE_DEPTH),
            QueuePolicy::Drop => configured,
        };
        let output_depth = depth(
            (settings.pipeline.output_queue_exchanges / settings.pipeline.batch_packets).max(4),
        );
        let (exchange_tx, exchange_rx) = bounded::<WorkerOutput>(output_depth);
        let in_flight = Arc::new(InFlight {
            bytes: AtomicUsize::new(0),
            cap: settings.memory_plan().exchanges_in_flight_bytes,
            marks: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        });
        // A worker hands its exchanges on before they hold more than this,
        // so the queue holds at most the in-flight share (see `InFlight`).
        let hand_over_bytes = (in_flight.cap / output_depth).max(MIN_HAND_OVER_BYTES);
        let (spent_tx, spent_rx): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| bounded(SPENT_QUEUE_DEPTH)).unzip();
        // What waits to be freed counts as in flight too: each worker's
        // spent batches hold at most an equal part of the share.
        let spent_batch_bytes =
            (in_flight.cap / (workers * (SPENT_QUEUE_DEPTH + 1))).max(MIN_HAND_OVER_BYTES);
        let writer_control = Arc::clone(control);
        let writer_hub = Arc::clone(hub);
        let writer_in_flight = Arc::clone(&in_flight);
        let writer = std::thread::Builder::new()
            .name("apisensor-writer".into())
            .spawn(move || {
                let spent = Spent::new(spent_tx, spent_batch_bytes);
                let publish = |http: &HttpStats, analysis: &AnalysisStats, lost: u64| {
                    let mut stats = Stats {
                        http: http.clone(),
                        classify: analysis.classify.clone(),
                        detect: analysis.detect.clone(),
                        ..Stats::default()
                    };
                    stats.gauges.exchanges_in_flight_bytes =
                        writer_in_flight.bytes.load(Ordering::Relaxed) as u64;
                    stats.pipeline.exchanges_write_errors = lost;
                    writer_hub.publish(workers, &stats);
                };
                write_exchanges(
                    writer,
                    exchange_rx,
                    spent,
                    &writer_control,
                    &writer_in_flight,
                    analysis,
                    publish,
                )
            })
            .context("cannot start writer thread")?;
        // Batches in flight are bounded: each queue, plus one being filled and
        // one being processed per worker and source.
        let (pool_tx, pool_rx) = bounded::<Batch>(workers * (settings.pipeline.queue_batches + 4));
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for (index, spent) in spent_rx.into_iter().enumerate() {
            let (tx, rx) = bounded::<Batch>(depth(settings.pipeline.queue_batches));
            let ctx = WorkerContext {
                settings: settings.clone(),
                limits: WorkerLimits::share(settings, workers),
                queue: rx,
                exchanges: exchange_tx.clone(),
                in_flight: Arc::clone(&in_flight),
                hand_over_bytes,
                spent,
                pool: pool_tx.clone(),
                policy,
                hub: Arc::clone(hub),
                slot: index,
            };
            let handle = std::thread::Builder::new()
                .name(format!("apisensor-worker-{index}"))
                .spawn(move || run_worker(ctx))
                .context("cannot start worker thread")?;
            queues.push(tx);
            handles.push(handle);
        }
        Ok(Stages {
            queues,
            pool: pool_rx,
            workers: handles,
            writer,
        })
    }

    fn reader(&self, settings: &Settings, policy: QueuePolicy) -> Reader {
        Reader {
            decoder: Decoder::new(&settings.decode),
            batches: (0..self.queues.len()).map(|_| Batch::default()).collect(),
            queues: self.queues.clone(),
            pool: self.pool.clone(),
            policy,
            batch_packets: settings.pipeline.batch_packets,
            stats: Stats::default(),
            packet_index: 0,
            next_expiry: 0,
            last_ts: Timestamp::default(),
            last_packet_at: Instant::now(),
            live: false,
            last_tick: Instant::now(),
            pace: None,
            ts_shift: 0,
            pass_span: None,
        }
    }

    /// Closes the queues, waits for workers to drain and the writer to
    /// finish; returns the merged worker counters and (written, write errors).
    fn finish(self) -> Result<(Stats, WriterResult)> {
        drop(self.queues);
        drop(self.pool);
        let mut stats = Stats::default();
        for handle in self.workers {
            let worker_stats = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a flow worker panicked"))?;
            stats.merge(&worker_stats);
        }
        let written = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
        stats.http.merge(&written.http);
        stats.classify.merge(&written.analysis_stats.classify);
        stats.detect.merge(&written.analysis_stats.detect);
        Ok((stats, written))
    }
}

/// What a replay does besides reading and writing exchanges.
#[derive(Default)]
pub struct ReplayOptions<'a> {
    /// Flow workers (at least 1).
    pub workers: usize,
    pub progress: Option<ProgressFn<'a>>,
    /// Inventory and detectors on the merged stream; handed back at the end.
    pub analysis: Option<Analysis>,
    /// Replay at this multiple of the recorded speed (`--pace`).
    pub pace: Option<f64>,
    /// Read the files again and again for this long (`--loop-for-secs`).
    pub loop_for: Option<Duration>,
}

/// Packet time between the end of one replay pass and the start of the next.
const LOOP_PASS_GAP_NANOS: u64 = 1_000_000_000;

/// Replays capture files through the whole pipeline; returns the summary
/// and the analysis stage, finished, for its inventory. With `loop_for`
/// the files are read again and again until that much wall-clock time has
/// passed (a soak test in one process); each pass is shifted in packet time
/// to start [`LOOP_PASS_GAP_NANOS`] after the previous one ended, so flows
/// of earlier passes leave the table only the normal ways (FIN/RST, idle
/// timeout, a SYN reusing their addresses, capacity), never wholesale.
pub fn replay(
    settings: &Settings,
    files: &[PathBuf],
    writer: ExchangeWriter,
    options: ReplayOptions<'_>,
) -> Result<(RunSummary, Option<Analysis>)> {
    let ReplayOptions {
        workers,
        progress,
        pace,
        loop_for,
        ..
    } = options;
    let started = Instant::now();
    let workers = workers.max(1);
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        sources.push((path.clone(), FileSource::open(path)?));
    }
    let total_bytes: u64 = sources.iter().map(|(_, s)| s.file_bytes()).sum();
    let hub = StatsHub::new(workers + 1);
    let stages = Stages::start(
        settings,
        workers,
        writer,
        QueuePolicy::Block,
        &hub,
        &Arc::default(),
        options.analysis,
    )?;
    let mut reader = stages.reader(settings, QueuePolicy::Block);
    reader.pace = pace.filter(|p| *p > 0.0).map(|factor| Pace {
        factor,
        first: None,
    });
    let mut summary = RunSummary {
        workers,
        ..RunSummary::default()
    };
    let mut progress = progress;
    let mut bytes_before = 0u64;
    let mut sources: Vec<(PathBuf, Option<FileSource>)> =
        sources.into_iter().map(|(p, s)| (p, Some(s))).collect();
    loop {
        for (path, source) in sources.iter_mut() {
            let mut source = match source.take() {
                Some(s) => s,
                None => FileSource::open(path)?,
            };
            let before = reader.packet_index;
            let mut report = |done: u64| {
                if let Some(p) = progress.as_mut() {
                    p(bytes_before + done, total_bytes);
                }
            };
            // A damaged or truncated file (a capture killed mid-write) still
            // yields everything before the damage; the error is counted and the
            // next file is read.
            let link = source.decodable_link();
            if let Err(e) = reader.read(&mut source, link, &mut report) {
                reader.stats.pipeline.read_errors += 1;
                tracing::warn!("{e:#}");
            }
            bytes_before += source.file_bytes();
            summary
                .files
                .push((path.clone(), reader.packet_index - before));
        }
        if loop_for.is_none_or(|d| started.elapsed() >= d) || reader.pass_span.is_none() {
            break;
        }
        reader.next_pass();
        summary.passes += 1;
    }
    reader.flush_batches();
    let mut stats = reader.finish();
    let (worker_stats, written) = stages.finish()?;
    stats.merge(&worker_stats);
    stats.pipeline.exchanges_write_errors += written.errors;
    stats.gauges = Default::default();
    summary.stats = stats;
    summary.exchanges_written = written.exchanges;
    summary.output_error = written.output_error;
    summary.elapsed = started.elapsed();
    Ok((summary, written.analysis))
}

/// A running live sensor: one capture thread per source, the workers and
/// the writer. Counters are in `hub`; `stop` ends it.
pub struct Live {
    stages: Stages,
    readers: Vec<JoinHandle<Stats>>,
    pub hub: Arc<StatsHub>,
    stop: Arc<AtomicBool>,
    started: Instant,
    workers: usize,
}

impl Live {
    /// Starts capturing from already opened `sources` (opened first so a
    /// caller can drop privileges before any thread starts).
    pub fn start(
        settings: &Settings,
        sources: Vec<Box<dyn PacketSource>>,
        workers: usize,
        writer: ExchangeWriter,
        control: &Arc<WriterControl>,
        events: Option<EventHandle>,
    ) -> Result<Live> {
        let workers = workers.max(1);
        // Slots: the workers, the writer, then the capture threads.
        let hub = StatsHub::new(workers + 1 + sources.len());
        let stages = Stages::start(
            settings,
            workers,
            writer,
            QueuePolicy::Drop,
            &hub,
            control,
            Some(Analysis::new(settings, events, false)?),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::with_capacity(sources.len());
        for (i, mut source) in sources.into_iter().enumerate() {
            let mut reader = stages.reader(settings, QueuePolicy::Drop);
            let stop = Arc::clone(&stop);
            let hub = Arc::clone(&hub);
            let slot = workers + 1 + i;
            let handle = std::thread::Builder::new()
                .name(format!("apisensor-capture-{i}"))
                .spawn(move || {
                    let link = Some(source.link_type());
                    let mut last_publish = Instant::now();
                    let mut publish = |reader: &mut Reader, source: &mut dyn PacketSource| {
                        if last_publish.elapsed() >= PUBLISH_INTERVAL {
                            last_publish = Instant::now();
                            hub.publish(slot, &reader.snapshot(source));
                        }
                    };
                    if let Err(e) = reader.read_live(source.as_mut(), link, &stop, &mut publish) {
                        reader.stats.pipeline.read_errors += 1;
                        tracing::error!("capture {} stopped: {e:#}", source.name());
                    }
                    // Capture is over: the last partial batches may wait for
                    // the draining workers rather than be dropped.
                    reader.policy = QueuePolicy::Block;
                    reader.flush_batches();
                    reader.decoder.finish();
                    let stats = reader.snapshot(source.as_mut());
                    hub.publish(slot, &stats);
                    stats
                })
                .context("cannot start capture thread")?;
            readers.push(handle);
        }
        Ok(Live {
            stages,
            readers,
            hub,
            stop,
            started: Instant::now(),
            workers,
        })
    }

    /// Whether every capture thread has stopped on its own (source errors).
    pub fn sources_finished(&self) -> bool {
        self.readers.iter().all(JoinHandle::is_finished)
    }

    /// Stops capture, drains the workers (their open flows are flushed, so
    /// no completed exchange is lost) and the writer.
    pub fn shutdown(self) -> Result<RunSummary> {
        self.stop.store(true, Ordering::SeqCst);
        let mut stats = Stats::default();
        for handle in self.readers {
            if let Ok(s) = handle.join() {
                stats.merge(&s);
            }
        }
        let (worker_stats, written) = self.stages.finish()?;
        stats.merge(&worker_stats);
        stats.pipeline.exchanges_write_errors += written.errors;
        stats.gauges = Default::default();
        Ok(RunSummary {
            stats,
            exchanges_written: written.exchanges,
            output_error: written.output_error,
            elapsed: self.started.elapsed(),
            workers: self.workers,
            files: Vec::new(),
            passes: 0,
        })
    }
}

struct Reader {
    decoder: Decoder,
    batches: Vec<Batch>,
    queues: Vec<Sender<Batch>>,
    pool: Receiver<Batch>,
    policy: QueuePolicy,
    batch_packets: usize,
    stats: Stats,
    packet_index: u64,
    next_expiry: u64,
    /// Newest packet time seen, and when (wall clock) it was seen, so a
    /// quiet live link can still move packet time forward for expiry. Only
    /// live capture reads the wall clock: a file is never quiet, and a
    /// clock read per packet is a measurable share of replay.
    last_ts: Timestamp,
    last_packet_at: Instant,
    live: bool,
    last_tick: Instant,
    /// Replay at the capture's own speed (`replay --pace`).
    pace: Option<Pace>,
    /// Added to every file timestamp (looped replay passes).
    ts_shift: u64,
    /// Earliest and latest file timestamp (unshifted) of the current pass.
    pass_span: Option<(u64, u64)>,
}

/// Keeps replay at recorded speed: packet `ts` is handed on no earlier than
/// `(ts - first ts) / factor` after the first packet (wall clock). Only
/// the reader sleeps; packet time stays what the capture says.
struct Pace {
    factor: f64,
    first: Option<(Timestamp, Instant)>,
}

impl Reader {
    fn pace(&mut self, ts: Timestamp) {
        let Some(pace) = self.pace.as_mut() else {
            return;
        };
        let (first_ts, started) = *pace.first.get_or_insert((ts, Instant::now()));
        let offset = ts.as_nanos().saturating_sub(first_ts.as_nanos()) as f64 / pace.factor;
        let due = started + Duration::from_nanos(offset as u64);
        let now = Instant::now();
        if due > now {
            // Hand over what is batched so exchanges are not held back by the wait.
            if due - now > Duration::from_millis(5) {
                self.flush_batches();
            }
            std::thread::sleep(due - now);
        }
    }

    /// Starts the next looped replay pass right after the current one in
    /// packet time.
    fn next_pass(&mut self) {
        if let Some((first, last)) = self.pass_span.take() {
            let span = last.saturating_sub(first);
            self.ts_shift = self
                .ts_shift
                .saturating_add(span)
                .saturating_add(LOOP_PASS_GAP_NANOS);
        }
    }

    /// Reads a source to its end. `link` `None` counts every packet as an
    /// unsupported link type.
    fn read(
        &mut self,
        source: &mut dyn PacketSource,
        link: Option<LinkType>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        loop {
            match source.next_packet()? {
                Next::Packet(packet) => {
                    self.packet_index += 1;
                    let Some(link) = link else {
                        self.decoder.stats.packets += 1;
                        self.decoder.stats.unsupported_link_type += 1;
                        continue;
                    };
                    let raw = packet.ts.as_nanos();
                    self.pass_span = Some(match self.pass_span {
                        Some((first, last)) => (first.min(raw), last.max(raw)),
                        None => (raw, raw),
                    });
                    let ts = Timestamp(raw.saturating_add(self.ts_shift));
                    if self.pace.is_some() {
                        self.pace(ts);
                    }
                    self.packet(link, ts, packet.data, packet.wire_len);
                    if self.packet_index % 65_536 == 0 {
                        if let Some((done, _)) = source.progress() {
                            progress(done);
                        }
                    }
                }
                Next::Idle => self.tick(),
                Next::End => break,
            }
        }
        if let Some((done, _)) = source.progress() {
            progress(done);
        }
        Ok(())
    }

    fn read_live(
        &mut self,
        source: &mut dyn PacketSource,
        link: Option<LinkType>,
        stop: &AtomicBool,
        publish: &mut dyn FnMut(&mut Reader, &mut dyn PacketSource),
    ) -> Result<()> {
        self.live = true;
        let mut draining: Option<Instant> = None;
        loop {
            if draining.is_none() && stop.load(Ordering::Relaxed) {
                // Packets already captured before the stop are still read,
                // so exchanges completed before SIGTERM are not lost;
                // bounded, in case traffic never pauses.
                draining = Some(Instant::now());
            }
            if draining.is_some_and(|since| since.elapsed() >= SHUTDOWN_DRAIN) {
                return Ok(());
            }
            match source.next_packet()? {
                Next::Idle if draining.is_some() => return Ok(()),
                Next::Packet(packet) => {
                    self.packet_index += 1;
                    if let Some(link) = link {
                        self.packet(link, packet.ts, packet.data, packet.wire_len);
                    }
                    if self.packet_index % 1024 == 0 {
                        // A busy link never goes idle: hand partial batches
                        // over regularly so no worker's exchanges wait.
                        if self.last_tick.elapsed() >= LIVE_FLUSH_INTERVAL {
                            self.tick();
                        }
                        publish(self, source);
                    }
                }
                Next::Idle => {
                    self.tick();
                    publish(self, source);
                }
                Next::End => return Ok(()),
            }
        }
    }

    fn packet(&mut self, link: LinkType, ts: Timestamp, frame: &[u8], wire_len: u32) {
        self.route(link, ts, frame, wire_len);
        // Every worker hears regularly how far the capture got, even one no
        // packet went to, so the writer's ordered merge never waits long.
        if self.packet_index % WATERMARK_INTERVAL_PACKETS == 0 {
            self.send_all();
        }
    }

    fn route(&mut self, link: LinkType, ts: Timestamp, frame: &[u8], wire_len: u32) {
        if ts > self.last_ts {
            self.last_ts = ts;
            if self.live {
                self.last_packet_at = Instant::now();
            }
        }
        if ts.as_nanos() >= self.next_expiry {
            self.decoder.expire(ts);
            self.next_expiry = ts.as_nanos().saturating_add(1_000_000_000);
        }
        let Some(segment) = self.decoder.decode(link, ts, frame, wire_len) else {
            return;
        };
        let (key, side) =
            FlowKey::new(segment.src, segment.src_port, segment.dst, segment.dst_port);
        let worker = (key.shard_hash() % self.queues.len() as u64) as usize;
        let full = match self.batches.get_mut(worker) {
            Some(batch) => {
                batch.push(ts, self.last_ts, self.packet_index, key, side, &segment);
                batch.records.len() >= self.batch_packets
            }
            None => false,
        };
        if full {
            self.send(worker);
        }
    }

    /// The link is quiet: hand partial batches over (so exchanges do not
    /// wait for more traffic) and tell workers how far packet time got.
    fn tick(&mut self) {
        self.last_tick = Instant::now();
        let now = Timestamp(
            self.last_ts
                .as_nanos()
                .saturating_add(self.last_packet_at.elapsed().as_nanos() as u64),
        );
        for batch in &mut self.batches {
            batch.now = now;
        }
        self.send_all();
    }

    /// Sends every worker its batch, even an empty one (a watermark).
    fn send_all(&mut self) {
        for worker in 0..self.batches.len() {
            self.send(worker);
        }
    }

    fn send(&mut self, worker: usize) {
        let fresh = self.pool.try_recv().unwrap_or_default();
        let (Some(slot), Some(queue)) = (self.batches.get_mut(worker), self.queues.get(worker))
        else {
            return;
        };
        let mut full = std::mem::replace(slot, fresh);
        if full.now < self.last_ts {
            full.now = self.last_ts;
        }
        full.sent_index = self.packet_index;
        match self.policy {
            QueuePolicy::Block => {
                wait_for_room(queue);
                // Only fails when the worker is gone, which join() reports.
                let _ = queue.send(full);
            }
            QueuePolicy::Drop => match queue.try_send(full) {
                Ok(()) => {}
                Err(TrySendError::Full(mut batch)) => {
                    if !batch.records.is_empty() {
                        self.stats.pipeline.batches_dropped_queue_full += 1;
                        self.stats.pipeline.packets_dropped_queue_full +=
                            batch.records.len() as u64;
                    }
                    batch.clear();
                    if let Some(slot) = self.batches.get_mut(worker) {
                        *slot = batch;
                    }
                }
                Err(TrySendError::Disconnected(_)) => {}
            },
        }
    }

    /// Sends every partial batch.
    fn flush_batches(&mut self) {
        for worker in 0..self.batches.len() {
            if self
                .batches
                .get(worker)
                .is_some_and(|b| !b.records.is_empty())
            {
                self.send(worker);
            }
        }
    }

    /// This reader's counters including its source's own.
    fn snapshot(&mut self, source: &mut dyn PacketSource) -> Stats {
        let mut stats = self.stats.clone();
        stats.decode = self.decoder.stats.clone();
        source.add_stats(&mut stats.capture);
        stats.gauges.queue_batches_waiting = self.queues.iter().map(|q| q.len() as u64).sum();
        stats
    }

    fn finish(mut self) -> Stats {
        self.decoder.finish();
        self.stats.decode = std::mem::take(&mut self.decoder.stats);
        self.stats
    }
}

struct WorkerContext {
    settings: Settings,
    limits: WorkerLimits,
    queue: Receiver<Batch>,
    exchanges: Sender<WorkerOutput>,
    in_flight: Arc<InFlight>,
    /// Completed exchanges holding this many bytes are handed on at once,
    /// not at the end of the batch.
    hand_over_bytes: usize,
    /// Exchanges the writer is done with, to be freed here (see `Spent`).
    spent: Receiver<SpentBatch>,
    pool: Sender<Batch>,
    policy: QueuePolicy,
    hub: Arc<StatsHub>,
    slot: usize,
}

/// The smallest hand-over worth a message on the output queue.
const MIN_HAND_OVER_BYTES: usize = 256 * 1024;

/// Bytes of the exchanges between the workers and the writer: handed over
/// and not written yet (in the output queue or held by the merge). Workers
/// add what they hand over, the writer subtracts what it wrote.
///
/// Each hand-over holds at most `hand_over_bytes` (plus what one packet
/// completed) and the queue a fixed number of hand-overs, so the queue
/// holds about the in-flight share of `memory.budget_bytes` at most. The
/// merge holds what faster workers completed until the slowest one's
/// watermark passes it, and one packet can complete much (an evicted flow's
/// queued requests, bodies inflated from a few bytes): so when the share is
/// full, a worker waits before handing over, unless it is the slowest one,
/// whose exchanges the writer can release at once. Waiting is only for
/// replay; live capture must keep moving, and a live worker that finds the
/// share full hands its exchanges on without their kept bodies (counted in
/// `pipeline.exchange_bodies_dropped_memory` and `body_bytes_dropped_memory`).
struct InFlight {
    bytes: AtomicUsize,
    cap: usize,
    /// Each worker's last watermark, by packet index (watermarks of one
    /// capture grow in clock and packet index together).
    marks: Vec<AtomicU64>,
}

/// Longest a replay worker waits for the in-flight share (a writer that is
/// gone never frees it): then it hands over anyway.
const MAX_IN_FLIGHT_NAPS: u32 = 20_000;

impl InFlight {
    fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Saturating, so that an accounting slip can never wrap the count and
    /// make every worker wait.
    fn sub(&self, bytes: usize) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    fn full(&self, more: usize) -> bool {
        self.bytes.load(Ordering::Relaxed).saturating_add(more) > self.cap
    }

    /// Whether no other worker's watermark is behind `worker`'s.
    fn is_slowest(&self, worker: usize) -> bool {
        let Some(mine) = self.marks.get(worker).map(|m| m.load(Ordering::Relaxed)) else {
            return true;
        };
        self.marks.iter().all(|m| m.load(Ordering::Relaxed) >= mine)
    }

    /// Replay: waits while the share is full, unless nothing else can free
    /// it. The slowest worker waits only while the writer has more than one
    /// hand-over queued: the writer always takes those, and it can release
    /// the slowest worker's exchanges at once. Another worker waits for the
    /// slowest to catch up. Meanwhile `free` gives back what the writer is
    /// done with (it is in flight too).
    fn wait_for_room(
        &self,
        worker: usize,
        more: usize,
        queued: impl Fn() -> usize,
        free: impl Fn(),
    ) {
        for _ in 0..MAX_IN_FLIGHT_NAPS {
            free();
            if !self.full(more) || (self.is_slowest(worker) && queued() <= 1) {
                return;
            }
            std::thread::sleep(QUEUE_NAP);
        }
    }
}

/// What an exchange costs while it travels: the record and its heap.
fn exchange_bytes(exchange: &Exchange) -> usize {
    std::mem::size_of::<Exchange>().saturating_add(exchange.heap_bytes())
}

/// Exchanges a worker completed since its last hand-over, each with its key.
#[derive(Default)]
struct Completed {
    /// Where the flow table appends.
    fresh: Exchanges,
    keyed: Vec<(OrderKey, Box<Exchange>)>,
    /// Bytes of `keyed` ([`exchange_bytes`]).
    bytes: usize,
}

impl Completed {
    /// Stamps what the last call appended with the clock and packet index
    /// that completed it.
    fn stamp(&mut self, clock: Timestamp, packet_index: u64) {
        for exchange in self.fresh.drain(..) {
            let key = OrderKey {
                clock_ns: clock.as_nanos(),
                packet_index,
                flow_id: exchange.flow_id,
            };
            self.bytes = self.bytes.saturating_add(exchange_bytes(&exchange));
            self.keyed.push((key, exchange));
        }
    }

    /// Runs the idle sweeps due at `clock`, each stamped with its own time.
    fn sweep(&mut self, table: &mut FlowTable, clock: Timestamp) {
        while let Some(at) = table.next_sweep(clock) {
            table.expire(at, &mut self.fresh);
            self.stamp(at, 0);
        }
    }
}

/// Whether a worker may leave building text fields and content decoding to
/// the writer: its queue is less than three quarters full. A writer falling
/// behind (busy with detectors, slow output, many workers) so gets the work
/// handed back. Not much less: the writer shares cores with the busy workers
/// and the reader, so batches wait even when it keeps up (at half full, a
/// worker still did a twelfth of the work on the benchmark capture).
fn writer_keeps_up(queue: &Sender<WorkerOutput>) -> bool {
    queue.len().saturating_mul(4) < queue.capacity().unwrap_or(0).saturating_mul(3)
}

/// Returns once a full queue is half empty (see [`QUEUE_NAP`]).
fn wait_for_room(queue: &Sender<Batch>) {
    if !queue.is_full() {
        return;
    }
    let resume_at = queue.capacity().unwrap_or(0) / 2;
    for _ in 0..MAX_QUEUE_NAPS {
        if queue.len() <= resume_at {
            return;
        }
        std::thread::sleep(QUEUE_NAP);
    }
}

/// What a worker counted while handing exchanges on.
#[derive(Default)]
struct HandOverStats {
    /// Exchanges lost to a full output queue (live only).
    dropped_output_full: u64,
    /// Exchanges handed on without their kept bodies, and those bodies'
    /// bytes, because the in-flight share was full (live only).
    bodies_dropped_memory: u64,
    body_bytes_dropped_memory: u64,
}

fn run_worker(ctx: WorkerContext) -> Stats {
    let mut table = FlowTable::new(&ctx.settings.flow, &ctx.settings.http, ctx.limits);
    let mut done = Completed::default();
    let mut handed = HandOverStats::default();
    let mut last_publish = Instant::now();
    let worker_stats = |table: &FlowTable,
                        handed: &HandOverStats,
                        queue: &Receiver<Batch>,
                        out_q: &Sender<WorkerOutput>| {
        let mut stats = Stats {
            flow: table.stats().clone(),
            http: table.http_stats().clone(),
            ..Stats::default()
        };
        stats.pipeline.exchanges_dropped_output_full = handed.dropped_output_full;
        stats.pipeline.exchange_bodies_dropped_memory = handed.bodies_dropped_memory;
        stats.pipeline.body_bytes_dropped_memory = handed.body_bytes_dropped_memory;
        stats.gauges.flows_open = table.open_flows() as u64;
        stats.gauges.flow_memory_bytes = table.memory_bytes() as u64;
        stats.gauges.ooo_bytes_buffered = table.buffered_bytes() as u64;
        stats.gauges.queue_batches_waiting = queue.len() as u64;
        stats.gauges.output_batches_waiting = out_q.len() as u64;
        stats
    };
    let hand_over = |done: &mut Completed, watermark: OrderKey, handed: &mut HandOverStats| {
        // The next batch likely yields about as many: room for a few more
        // than this one, so a slightly larger batch does not regrow (and
        // copy) the whole vector.
        let fresh = Vec::with_capacity(done.keyed.len().saturating_add(done.keyed.len() / 4));
        let mut keyed = std::mem::replace(&mut done.keyed, fresh);
        let mut bytes = std::mem::take(&mut done.bytes);
        if ctx.policy == QueuePolicy::Block {
            ctx.in_flight.wait_for_room(
                ctx.slot,
                bytes,
                || ctx.exchanges.len(),
                || free_spent(&ctx),
            );
        } else if ctx.in_flight.full(bytes) {
            for (_, exchange) in keyed.iter_mut() {
                let freed = exchange.drop_kept_bodies();
                if freed > 0 {
                    handed.bodies_dropped_memory += 1;
                    handed.body_bytes_dropped_memory += freed as u64;
                    bytes = bytes.saturating_sub(freed);
                }
            }
        }
        ctx.in_flight.add(bytes);
        if let Some(mark) = ctx.in_flight.marks.get(ctx.slot) {
            mark.fetch_max(watermark.packet_index, Ordering::Relaxed);
        }
        let output = WorkerOutput {
            worker: ctx.slot,
            exchanges: keyed,
            watermark,
        };
        match ctx.policy {
            QueuePolicy::Block => {
                let _ = ctx.exchanges.send(output);
            }
            QueuePolicy::Drop => {
                if let Err(TrySendError::Full(lost)) = ctx.exchanges.try_send(output) {
                    handed.dropped_output_full += lost.exchanges.len() as u64;
                    let lost_bytes = lost.exchanges.iter().map(|(_, e)| exchange_bytes(e)).sum();
                    ctx.in_flight.sub(lost_bytes);
                }
            }
        }
    };
    loop {
        let mut batch = match ctx.queue.recv_timeout(PUBLISH_INTERVAL) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => {
                free_spent(&ctx);
                last_publish = Instant::now();
                ctx.hub.publish(
                    ctx.slot,
                    &worker_stats(&table, &handed, &ctx.queue, &ctx.exchanges),
                );
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        table.defer_decoding(writer_keeps_up(&ctx.exchanges));
        for record in &batch.records {
            let start = record.payload_start as usize;
            let end = start + record.payload_len as usize;
            let payload = batch.payload.get(start..end).unwrap_or_default();
            let segment = Segment {
                ts: record.ts,
                packet_index: record.packet_index,
                key: record.key,
                side: record.side,
                seq: record.seq,
                ack: record.ack,
                flags: record.flags,
                payload,
                missing_payload: record.missing_payload,
                fragment_overlap: record.fragment_overlap,
            };
            done.sweep(&mut table, record.clock);
            table.process(&segment, &mut done.fresh);
            done.stamp(record.clock, record.packet_index);
            if done.bytes >= ctx.hand_over_bytes {
                // Evicted or closed flows can complete many large exchanges
                // within one batch: they leave now. The sweeps due by this
                // packet's clock run first (as they would before the next
                // packet), so nothing this worker completes later has a key
                // below the watermark.
                done.sweep(&mut table, record.clock);
                let watermark = OrderKey::watermark(record.clock.as_nanos(), record.packet_index);
                hand_over(&mut done, watermark, &mut handed);
            }
        }
        done.sweep(&mut table, batch.now);
        free_spent(&ctx);
        let watermark = OrderKey::watermark(batch.now.as_nanos(), batch.sent_index);
        hand_over(&mut done, watermark, &mut handed);
        batch.clear();
        batch.now = Timestamp::default();
        // A full pool means enough spare batches exist; this one is freed.
        let _ = ctx.pool.try_send(batch);
        if last_publish.elapsed() >= PUBLISH_INTERVAL {
            last_publish = Instant::now();
            ctx.hub.publish(
                ctx.slot,
                &worker_stats(&table, &handed, &ctx.queue, &ctx.exchanges),
            );
        }
    }
    // Queues closed: the capture is over; every open flow is flushed so no
    // completed exchange is lost. The writer waits for these.
    table.flush_all(&mut done.fresh);
    done.stamp(Timestamp(u64::MAX), u64::MAX);
    hand_over(&mut done, OrderKey::END, &mut handed);
    let stats = worker_stats(&table, &handed, &ctx.queue, &ctx.exchanges);
    ctx.hub.publish(ctx.slot, &stats);
    stats
}

/// Frees what the writer gave back and takes it off the in-flight bytes.
fn free_spent(ctx: &WorkerContext) {
    for batch in ctx.spent.try_iter() {
        ctx.in_flight.sub(batch.bytes);
    }
}

/// Exchanges on their way back to be freed, and the bytes they hold.
#[derive(Default)]
struct SpentBatch {
    exchanges: Exchanges,
    bytes: usize,
}

/// Exchanges handed back to the worker that built them, to be freed there:
/// an allocator frees a block on the thread that allocated it far cheaper
/// than from another one (mimalloc queues foreign frees for the owner to
/// collect, which showed as a tenth of a worker's time in replay). Best
/// effort: a full queue means the worker is busy, and the writer frees the
/// batch itself. Until freed, exchanges count as in flight, so a batch also
/// leaves once it holds `batch_bytes` (bodies kept for `--bodies` or for
/// nothing, with `--format none`, are freed only here).
struct Spent {
    queues: Vec<Sender<SpentBatch>>,
    batches: Vec<SpentBatch>,
    batch_bytes: usize,
}

impl Spent {
    fn new(queues: Vec<Sender<SpentBatch>>, batch_bytes: usize) -> Self {
        let batches = queues.iter().map(|_| SpentBatch::default()).collect();
        Spent {
            queues,
            batches,
            batch_bytes,
        }
    }

    fn workers(&self) -> usize {
        self.queues.len()
    }

    /// Gives `exchange`, holding `bytes` of the in-flight share, back to
    /// `worker`; returns the bytes freed here instead (its queue was full
    /// or gone).
    fn give_back(&mut self, worker: usize, exchange: Box<Exchange>, bytes: usize) -> usize {
        let (Some(batch), Some(queue)) = (self.batches.get_mut(worker), self.queues.get(worker))
        else {
            return bytes;
        };
        if batch.exchanges.capacity() == 0 {
            batch.exchanges.reserve_exact(SPENT_BATCH);
        }
        batch.exchanges.push(exchange);
        batch.bytes = batch.bytes.saturating_add(bytes);
        if batch.exchanges.len() >= SPENT_BATCH || batch.bytes >= self.batch_bytes {
            if let Err(e) = queue.try_send(std::mem::take(batch)) {
                return e.into_inner().bytes;
            }
        }
        0
    }
}

/// What the writer thread hands back.
struct WriterResult {
    /// Exchanges whose line reached the output.
    exchanges: u64,
    /// Exchanges whose line did not (the output failed).
    errors: u64,
    /// The first output error.
    output_error: Option<String>,
    /// Counters of the decoding (text fields, content) workers left to the writer.
    http: HttpStats,
    /// The analysis stage's classifier and detector counters.
    analysis_stats: AnalysisStats,
    analysis: Option<Analysis>,
}

/// Exchanges get the decoding (text fields, content) their worker left
/// undone, go through the analysis stage (detectors, when events are
/// forwarded) in merged order, then to the output. `publish` shows the
/// decoding counters and the exchanges the output lost.
fn write_exchanges(
    mut writer: ExchangeWriter,
    outputs: Receiver<WorkerOutput>,
    mut spent: Spent,
    control: &WriterControl,
    in_flight: &InFlight,
    mut analysis: Option<Analysis>,
    publish: impl Fn(&HttpStats, &AnalysisStats, u64),
) -> WriterResult {
    let mut http = HttpStats::default();
    let mut analysis_stats = AnalysisStats::default();
    let mut merge = OrderedMerge::new(spent.workers());
    // A failed write is counted by the writer (exchanges lost) and logged
    // once per error streak here.
    let mut failing = false;
    let mut report = |result: std::io::Result<()>, writer: &ExchangeWriter| match result {
        Ok(()) => failing = false,
        Err(e) => {
            if !failing {
                tracing::error!(
                    "exchanges output: {e}; {} exchanges lost so far (pipeline.exchanges_write_errors)",
                    writer.lost
                );
            }
            failing = true;
        }
    };
    let mut write = |writer: &mut ExchangeWriter,
                     report: &mut dyn FnMut(std::io::Result<()>, &ExchangeWriter),
                     http: &mut HttpStats,
                     analysis_stats: &mut AnalysisStats,
                     worker: usize,
                     mut exchange: Box<Exchange>| {
        // What the worker charged; decoding here grows it, the output may
        // shrink it (bodies it does not print), and the in-flight bytes
        // follow, so the worker that frees it can take off what it holds.
        let charged = exchange_bytes(&exchange);
        crate::http1::finish_decoding(&mut exchange, http);
        if let Some(analysis) = analysis.as_mut().filter(|a| a.is_active()) {
            analysis.observe(&exchange);
            analysis.stats_into(analysis_stats);
        }
        let result = writer.write(&mut exchange);
        report(result, writer);
        let holds = exchange_bytes(&exchange);
        if holds > charged {
            in_flight.add(holds - charged);
        } else if holds < charged {
            in_flight.sub(charged - holds);
        }
        let freed_here = spent.give_back(worker, exchange, holds);
        if freed_here > 0 {
            in_flight.sub(freed_here);
        }
    };
    // Workers report watermarks even when idle, so the queue is rarely
    // quiet: what was written is made visible on a timer instead.
    let mut flushed_at = Instant::now();
    let mut unflushed = false;
    loop {
        if control.reopen.swap(false, Ordering::SeqCst) {
            // The old file stays in use when the new one cannot be opened.
            if let Err(e) = writer.reopen() {
                tracing::error!("cannot reopen the exchanges output: {e}");
            }
        }
        match outputs.recv_timeout(OUTPUT_FLUSH_INTERVAL) {
            Ok(output) => {
                merge.accept(output, &mut |w, e| {
                    write(
                        &mut writer,
                        &mut report,
                        &mut http,
                        &mut analysis_stats,
                        w,
                        e,
                    );
                    unflushed = true;
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if unflushed && flushed_at.elapsed() >= OUTPUT_FLUSH_INTERVAL {
            let result = writer.flush();
            report(result, &writer);
            publish(&http, &analysis_stats, writer.lost);
            flushed_at = Instant::now();
            unflushed = false;
        }
    }
    merge.finish(&mut |w, e| {
        write(
            &mut writer,
            &mut report,
            &mut http,
            &mut analysis_stats,
            w,
            e,
        )
    });
    let result = writer.flush();
    report(result, &writer);
    if let Some(analysis) = analysis.as_mut() {
        analysis.finish();
        analysis.stats_into(&mut analysis_stats);
    }
    publish(&http, &analysis_stats, writer.lost);
    WriterResult {
        exchanges: writer.written,
        errors: writer.lost,
        output_error: writer.first_error.clone(),
        http,
        analysis_stats,
        analysis,
    }
}

/// The whole packet path on the calling thread: decode, flow table,
/// reassembly, HTTP. Threads add nothing to what this computes (a flow is
/// always handled by exactly one worker), so benches and fuzz targets use it.
pub struct InlineEngine {
    decoder: Decoder,
    table: FlowTable,
    packet_index: u64,
    clock: Timestamp,
}

impl InlineEngine {
    pub fn new(settings: &Settings) -> Self {
        InlineEngine {
            decoder: Decoder::new(&settings.decode),
            table: FlowTable::new(
                &settings.flow,
                &settings.http,
                WorkerLimits::whole(settings),
            ),
            packet_index: 0,
            clock: Timestamp::default(),
        }
    }

    /// Feeds one captured frame; completed exchanges are appended to `out`.
    pub fn packet(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        frame: &[u8],
        wire_len: u32,
        out: &mut Exchanges,
    ) {
        self.packet_index += 1;
        self.clock = self.clock.max(ts);
        let Some(seg) = self.decoder.decode(link, ts, frame, wire_len) else {
            return;
        };
        let (key, side) = FlowKey::new(seg.src, seg.src_port, seg.dst, seg.dst_port);
        let segment = Segment {
            ts,
            packet_index: self.packet_index,
            key,
            side,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            payload: seg.payload,
            missing_payload: seg.missing_payload,
            fragment_overlap: seg.fragment_overlap,
        };
        self.table.advance_to(self.clock, out);
        self.table.process(&segment, out);
    }

    /// Ends all flows and returns the counters.
    pub fn finish(mut self, out: &mut Exchanges) -> Stats {
        self.decoder.finish();
        self.table.flush_all(out);
        Stats {
            decode: self.decoder.stats.clone(),
            flow: self.table.stats().clone(),
            http: self.table.http_stats().clone(),
            ..Stats::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn exchange(flow_id: u64) -> Exchange {
        let addr = std::net::SocketAddr::from(([10, 0, 0, 1], 80));
        Exchange {
            flow_id,
            client: addr,
            server: addr,
            request: None,
            response: None,
            tunnel: false,
            flags: Default::default(),
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn spent_exchanges_go_back_to_their_worker_in_batches_without_blocking() {
        let (to_0, from_0) = bounded(SPENT_QUEUE_DEPTH);
        let (to_1, from_1) = bounded(SPENT_QUEUE_DEPTH);
        let mut spent = Spent::new(vec![to_0, to_1], 1 << 30);
        for i in 0..SPENT_BATCH as u64 * 2 {
            assert_eq!(spent.give_back(0, Box::new(exchange(i)), 10), 0);
        }
        spent.give_back(1, Box::new(exchange(7)), 10);
        let batches: Vec<SpentBatch> = from_0.try_iter().collect();
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|b| b.exchanges.len() == SPENT_BATCH));
        assert!(batches.iter().all(|b| b.bytes == SPENT_BATCH * 10));
        assert_eq!(batches[1].exchanges[0].flow_id, SPENT_BATCH as u64);
        assert!(from_1.is_empty(), "a partial batch waits");
        // A worker that does not drain its queue never stalls the writer,
        // which frees the batch itself and says how much it freed.
        let mut freed_by_writer = 0;
        for i in 0..SPENT_BATCH as u64 * (SPENT_QUEUE_DEPTH as u64 + 3) {
            freed_by_writer += spent.give_back(1, Box::new(exchange(i)), 10);
        }
        assert_eq!(from_1.len(), SPENT_QUEUE_DEPTH);
        assert_eq!(freed_by_writer, 3 * SPENT_BATCH * 10);
        // Nor does one that is gone, or a worker index out of range.
        drop(from_0);
        for i in 0..SPENT_BATCH as u64 {
            spent.give_back(0, Box::new(exchange(i)), 10);
            assert_eq!(spent.give_back(9, Box::new(exchange(i)), 10), 10);
        }
    }

    #[test]
    fn spent_batches_also_leave_at_their_byte_limit() {
        let (to, from) = bounded(SPENT_QUEUE_DEPTH);
        let mut spent = Spent::new(vec![to], 1000);
        for i in 0..3 {
            spent.give_back(0, Box::new(exchange(i)), 400);
        }
        let batches: Vec<SpentBatch> = from.try_iter().collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].exchanges.len(), 3);
        assert_eq!(batches[0].bytes, 1200);
    }
}
