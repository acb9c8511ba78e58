//! Threads and channels: one reader (capture + decode), N flow workers, one
//! output writer. The reader decodes each frame just far enough to know its
//! flow, then appends the segment to that worker's batch: a flow always lands
//! on the same worker (symmetric hash), so workers share nothing and take no
//! locks. Batches are recycled through a return channel, so the steady state
//! allocates nothing per packet. Every channel is bounded: replay waits when a
//! queue is full (a file cannot overrun), live capture drops and counts.
//! This module never looks inside packet bytes beyond handing them on.

use crate::capture::FileSource;
use crate::config::Settings;
use crate::decode::{Decoder, LinkType, TcpFlags, TcpSegment};
use crate::exchange::{Exchange, Timestamp};
use crate::flow::{FlowKey, FlowTable, Segment, Side};
use crate::output::ExchangeWriter;
use crate::telemetry::Stats;
use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a full worker queue means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Wait for the worker (replay: nothing is lost).
    Block,
    /// Drop the batch and count it (live capture: the ring must keep moving).
    Drop,
}

/// A decoded segment inside a batch; its payload lives in `Batch::payload`.
#[derive(Debug, Clone, Copy)]
struct Record {
    ts: Timestamp,
    packet_index: u64,
    key: FlowKey,
    side: Side,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    payload_start: u32,
    payload_len: u32,
    missing_payload: u32,
}

#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    payload: Vec<u8>,
}

impl Batch {
    fn push(
        &mut self,
        ts: Timestamp,
        packet_index: u64,
        key: FlowKey,
        side: Side,
        seg: &TcpSegment<'_>,
    ) {
        let payload_start = self.payload.len() as u32;
        self.payload.extend_from_slice(seg.payload);
        self.records.push(Record {
            ts,
            packet_index,
            key,
            side,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            payload_start,
            payload_len: seg.payload.len() as u32,
            missing_payload: seg.missing_payload,
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
    pub elapsed: Duration,
    pub workers: usize,
    /// Packets read per file, in order.
    pub files: Vec<(PathBuf, u64)>,
}

/// Progress callback: (bytes read so far across files, total bytes).
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, u64);

/// Replays capture files through the whole pipeline.
pub fn replay(
    settings: &Settings,
    files: &[PathBuf],
    workers: usize,
    writer: ExchangeWriter,
    progress: Option<ProgressFn<'_>>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let workers = workers.max(1);
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        sources.push((path.clone(), FileSource::open(path)?));
    }
    let total_bytes: u64 = sources.iter().map(|(_, s)| s.file_bytes).sum();

    let (exchange_tx, exchange_rx) = bounded::<Vec<Exchange>>(
        (settings.pipeline.output_queue_exchanges / settings.pipeline.batch_packets).max(4),
    );
    let writer_handle = std::thread::Builder::new()
        .name("apisensor-writer".into())
        .spawn(move || write_exchanges(writer, exchange_rx))
        .context("cannot start writer thread")?;

    // Batches in flight are bounded: each queue, plus one being filled and one
    // being processed per worker.
    let (pool_tx, pool_rx) = bounded::<Batch>(workers * (settings.pipeline.queue_batches + 2));
    let mut queues = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for index in 0..workers {
        let (tx, rx) = bounded::<Batch>(settings.pipeline.queue_batches);
        let worker_settings = settings.clone();
        let exchanges = exchange_tx.clone();
        let pool = pool_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("apisensor-worker-{index}"))
            .spawn(move || run_worker(&worker_settings, rx, exchanges, pool))
            .context("cannot start worker thread")?;
        queues.push(tx);
        handles.push(handle);
    }
    drop(exchange_tx);
    drop(pool_tx);

    let mut reader = Reader {
        decoder: Decoder::new(&settings.decode),
        batches: (0..workers).map(|_| Batch::default()).collect(),
        queues,
        pool: pool_rx,
        policy: QueuePolicy::Block,
        batch_packets: settings.pipeline.batch_packets,
        stats: Stats::default(),
        packet_index: 0,
        next_expiry: 0,
    };
    let mut summary = RunSummary {
        workers,
        ..RunSummary::default()
    };
    let mut progress = progress;
    let mut bytes_before = 0u64;
    for (path, mut source) in sources {
        let before = reader.packet_index;
        // A damaged or truncated file (a capture killed mid-write) still
        // yields everything before the damage; the error is counted and the
        // next file is read.
        if let Err(e) = reader.read_file(&mut source, bytes_before, total_bytes, &mut progress) {
            reader.stats.pipeline.read_errors += 1;
            tracing::warn!("{e:#}");
        }
        bytes_before += source.file_bytes;
        summary.files.push((path, reader.packet_index - before));
    }
    reader.finish();
    let mut stats = reader.stats;
    for handle in handles {
        let worker_stats = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a flow worker panicked"))?;
        stats.merge(&worker_stats);
    }
    let (written, write_errors) = writer_handle
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    stats.pipeline.exchanges_write_errors += write_errors;
    summary.stats = stats;
    summary.exchanges_written = written;
    summary.elapsed = started.elapsed();
    Ok(summary)
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
}

impl Reader {
    fn read_file(
        &mut self,
        source: &mut FileSource,
        bytes_before: u64,
        total_bytes: u64,
        progress: &mut Option<ProgressFn<'_>>,
    ) -> Result<()> {
        let link = LinkType::from_dlt(source.datalink());
        while let Some(packet) = source.next_packet()? {
            self.packet_index += 1;
            let Some(link) = link else {
                self.decoder.stats.packets += 1;
                self.decoder.stats.unsupported_link_type += 1;
                continue;
            };
            let ts = packet.ts;
            if ts.as_nanos() >= self.next_expiry {
                self.decoder.expire(ts);
                self.next_expiry = ts.as_nanos().saturating_add(1_000_000_000);
            }
            let Some(segment) = self.decoder.decode(link, ts, packet.data, packet.wire_len) else {
                continue;
            };
            let (key, side) =
                FlowKey::new(segment.src, segment.src_port, segment.dst, segment.dst_port);
            let worker = (key.shard_hash() % self.queues.len() as u64) as usize;
            if let Some(batch) = self.batches.get_mut(worker) {
                batch.push(ts, self.packet_index, key, side, &segment);
                if batch.records.len() >= self.batch_packets {
                    self.send(worker);
                }
            }
            if self.packet_index % 65_536 == 0 {
                if let Some(report) = progress.as_mut() {
                    report(bytes_before + source.bytes_read, total_bytes);
                }
            }
        }
        if let Some(report) = progress.as_mut() {
            report(bytes_before + source.bytes_read, total_bytes);
        }
        Ok(())
    }

    fn send(&mut self, worker: usize) {
        let fresh = self.pool.try_recv().unwrap_or_default();
        let (Some(slot), Some(queue)) = (self.batches.get_mut(worker), self.queues.get(worker))
        else {
            return;
        };
        let full = std::mem::replace(slot, fresh);
        match self.policy {
            QueuePolicy::Block => {
                // Only fails when the worker is gone, which join() reports.
                let _ = queue.send(full);
            }
            QueuePolicy::Drop => match queue.try_send(full) {
                Ok(()) => {}
                Err(TrySendError::Full(mut batch)) => {
                    self.stats.pipeline.batches_dropped_queue_full += 1;
                    self.stats.pipeline.packets_dropped_queue_full += batch.records.len() as u64;
                    batch.clear();
                    if let Some(slot) = self.batches.get_mut(worker) {
                        *slot = batch;
                    }
                }
                Err(TrySendError::Disconnected(_)) => {}
            },
        }
    }

    /// Sends partial batches and closes the queues so workers drain and stop.
    fn finish(&mut self) {
        for worker in 0..self.batches.len() {
            if self
                .batches
                .get(worker)
                .is_some_and(|b| !b.records.is_empty())
            {
                self.send(worker);
            }
        }
        self.queues.clear();
        self.stats.decode = self.decoder.stats.clone();
    }
}

fn run_worker(
    settings: &Settings,
    queue: Receiver<Batch>,
    exchanges: Sender<Vec<Exchange>>,
    pool: Sender<Batch>,
) -> Stats {
    let mut table = FlowTable::new(&settings.flow, &settings.http);
    let mut out: Vec<Exchange> = Vec::new();
    for mut batch in queue {
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
            };
            table.process(&segment, &mut out);
        }
        if !out.is_empty() {
            // The next batch likely yields as many: no regrowth from empty.
            let fresh = Vec::with_capacity(out.len());
            let _ = exchanges.send(std::mem::replace(&mut out, fresh));
        }
        batch.clear();
        // A full pool means enough spare batches exist; this one is freed.
        let _ = pool.try_send(batch);
    }
    table.flush_all(&mut out);
    if !out.is_empty() {
        let _ = exchanges.send(out);
    }
    Stats {
        flow: table.stats().clone(),
        http: table.http_stats().clone(),
        ..Stats::default()
    }
}

/// Returns (exchanges written, write errors).
fn write_exchanges(mut writer: ExchangeWriter, exchanges: Receiver<Vec<Exchange>>) -> (u64, u64) {
    let mut errors = 0u64;
    for mut batch in exchanges {
        for exchange in &mut batch {
            if writer.write(exchange).is_err() {
                errors += 1;
            }
        }
    }
    if writer.flush().is_err() {
        errors += 1;
    }
    (writer.written, errors)
}

/// The whole packet path on the calling thread: decode, flow table,
/// reassembly, HTTP. Threads add nothing to what this computes (a flow is
/// always handled by exactly one worker), so benches and fuzz targets use it.
pub struct InlineEngine {
    decoder: Decoder,
    table: FlowTable,
    packet_index: u64,
}

impl InlineEngine {
    pub fn new(settings: &Settings) -> Self {
        InlineEngine {
            decoder: Decoder::new(&settings.decode),
            table: FlowTable::new(&settings.flow, &settings.http),
            packet_index: 0,
        }
    }

    /// Feeds one captured frame; completed exchanges are appended to `out`.
    pub fn packet(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        frame: &[u8],
        wire_len: u32,
        out: &mut Vec<Exchange>,
    ) {
        self.packet_index += 1;
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
        };
        self.table.process(&segment, out);
    }

    /// Ends all flows and returns the counters.
    pub fn finish(mut self, out: &mut Vec<Exchange>) -> Stats {
        self.table.flush_all(out);
        Stats {
            decode: self.decoder.stats.clone(),
            flow: self.table.stats().clone(),
            http: self.table.http_stats().clone(),
            ..Stats::default()
        }
    }
}
