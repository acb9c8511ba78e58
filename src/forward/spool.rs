//! The write-ahead spool: every event is appended here before any sink sees
//! it, and sinks read it back through their own cursor. Owns the segment
//! files and the per-sink cursor files in `events.spool_dir`; knows nothing
//! about sinks beyond their cursors.
//!
//! On disk: `<first-seq>.seg` segments, each a run of records framed as a
//! little-endian `u32` length and a MessagePack event (`to_vec_named`), plus
//! one `cursor.<sink>` file per sink holding the next sequence number that
//! sink has not acknowledged. A torn record at the end of the newest segment
//! (a crash mid-append) is cut off on open. Segments every sink has passed
//! are deleted; beyond `spool_max_bytes` the oldest segment is evicted even
//! if a sink still needs it, and what it held for each sink is counted as
//! dropped (and reported as lost once, for the health event).

use crate::config::{EventSettings, FsyncPolicy};
use crate::event::Event;
use crate::files::{self, FileOwner, PRIVATE_MODE};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Largest record accepted when reading back; anything bigger is damage.
const MAX_RECORD_BYTES: u32 = 16 << 20;

/// Counters of one sink, shared between its task, the spool and the metrics.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Events written to the sink (every attempt, retries included).
    pub sent: AtomicU64,
    /// Events the receiver confirmed (ack, publish ack, 2xx, RELP `200 OK`,
    /// a local write that returned).
    pub acked: AtomicU64,
    /// Events written to a receiver that cannot confirm anything (plain TCP
    /// syslog): the cursor moves past them, but whether they arrived is
    /// unknown.
    pub unconfirmed: AtomicU64,
    /// Events of failed attempts that were sent again.
    pub retried: AtomicU64,
    /// Events appended while this sink was down or stalled: they waited in the spool.
    pub spooled: AtomicU64,
    /// Events this sink never got, each counted once: evicted by the spool
    /// cap before the sink read them (or while it held them and then gave
    /// up), rejected for good (4xx, encoding), or unreadable.
    pub dropped: AtomicU64,
}

/// A sink as the spool sees it: its durable cursor and health.
#[derive(Debug)]
pub struct SinkCursor {
    pub name: String,
    /// Next sequence number not yet acknowledged by the sink.
    pub acked_seq: AtomicU64,
    /// End (exclusive) of the batch the sink holds in memory and is sending;
    /// 0 = none. Eviction leaves these events to the sink to count.
    inflight_end: AtomicU64,
    /// False after a failed attempt until the next success.
    pub live: AtomicBool,
    /// Milliseconds since the spool opened when the attempt in flight
    /// started; 0 = none in flight.
    pub attempt_started_ms: AtomicU64,
    pub counters: SinkCounters,
    /// acked_seq last written to the cursor file, and when.
    persisted: Mutex<(u64, Option<Instant>)>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    first: u64,
    count: u64,
    bytes: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.count
    }
}

struct State {
    segments: VecDeque<Segment>,
    /// The newest segment, open for writing at its `bytes` offset.
    file: Option<File>,
    /// The newest segment may hold a torn tail that could not be cut off:
    /// the next append starts a new segment.
    sealed: bool,
    next_seq: u64,
    total_bytes: u64,
    last_fsync: Instant,
    dirty: bool,
    /// When the last write error was logged (errors repeat on a full disk).
    last_error_log: Option<Instant>,
}

/// Events the spool lost, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    /// Evicted by `spool_max_bytes` before every sink had them (the most any
    /// one sink missed).
    pub evicted: u64,
    /// Never appended: the write failed (disk full, I/O error) or, with
    /// `fsync = "always"`, the fsync did.
    pub write_failed: u64,
    /// Never appended: the event could not be encoded (or was over 16 MiB).
    pub unencodable: u64,
}

impl Losses {
    pub fn total(&self) -> u64 {
        self.evicted + self.write_failed + self.unencodable
    }
}

/// Spool-wide counters.
#[derive(Debug, Default)]
pub struct SpoolCounters {
    /// Events written to a segment (and fsynced with `fsync = "always"`).
    pub appended: AtomicU64,
    pub lost_evicted: AtomicU64,
    pub lost_write_failed: AtomicU64,
    pub lost_unencodable: AtomicU64,
    /// Losses not yet reported in a `sensor.spool_loss` event.
    unreported: [AtomicU64; 3],
}

impl SpoolCounters {
    pub fn losses(&self) -> Losses {
        Losses {
            evicted: self.lost_evicted.load(Ordering::Relaxed),
            write_failed: self.lost_write_failed.load(Ordering::Relaxed),
            unencodable: self.lost_unencodable.load(Ordering::Relaxed),
        }
    }

    fn count_loss(&self, reason: usize, n: u64) {
        if n == 0 {
            return;
        }
        let total = match reason {
            0 => &self.lost_evicted,
            1 => &self.lost_write_failed,
            _ => &self.lost_unencodable,
        };
        total.fetch_add(n, Ordering::Relaxed);
        if let Some(u) = self.unreported.get(reason) {
            u.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Takes the losses not yet reported.
    pub fn take_unreported(&self) -> Losses {
        let take = |i: usize| {
            self.unreported
                .get(i)
                .map_or(0, |u| u.swap(0, Ordering::Relaxed))
        };
        Losses {
            evicted: take(0),
            write_failed: take(1),
            unencodable: take(2),
        }
    }

    /// Puts back losses whose report could not be appended, for the next report.
    pub fn restore_unreported(&self, losses: Losses) {
        for (i, n) in [losses.evicted, losses.write_failed, losses.unencodable]
            .into_iter()
            .enumerate()
        {
            if let Some(u) = self.unreported.get(i) {
                u.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

const EVICTED: usize = 0;
const WRITE_FAILED: usize = 1;
const UNENCODABLE: usize = 2;

pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
    opened: Instant,
    /// Who the files belong to when the process drops root later.
    owner: Option<FileOwner>,
    state: Mutex<State>,
    pub cursors: Vec<Arc<SinkCursor>>,
    pub counters: SpoolCounters,
    /// Woken after every append, for sinks waiting on new events.
    pub notify: tokio::sync::Notify,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn cursor_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("cursor.{name}"))
}

/// Counts whole records in a segment; returns (count, bytes of whole records).
fn scan_segment(path: &Path) -> io::Result<(u64, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let (mut count, mut good) = (0u64, 0u64);
    let mut len_buf = [0u8; 4];
    let mut skip = Vec::new();
    loop {
        if reader.read_exact(&mut len_buf).is_err() {
            break;
        }
        let len = u32::from_le_bytes(len_buf);
        if len == 0 || len > MAX_RECORD_BYTES {
            break;
        }
        skip.resize(len as usize, 0);
        if reader.read_exact(&mut skip).is_err() {
            break;
        }
        count += 1;
        good += 4 + u64::from(len);
    }
    Ok((count, good))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes all of `buf` at `offset`; on error, also says how many bytes
/// made it (the caller keeps the whole records among them).
fn write_all_at(file: &File, mut buf: &[u8], offset: u64) -> Result<(), (usize, io::Error)> {
    let mut done = 0usize;
    while !buf.is_empty() {
        match file.write_at(buf, offset + done as u64) {
            Ok(0) => {
                return Err((
                    done,
                    io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes"),
                ))
            }
            Ok(n) => {
                done += n;
                buf = buf.get(n..).unwrap_or_default();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Events encoded as spool records (`u32` length + MessagePack), back to back.
struct Encoded {
    bytes: Vec<u8>,
    /// End offset of each record in `bytes`.
    ends: Vec<usize>,
    unencodable: u64,
}

fn encode(events: &[Event]) -> Encoded {
    let mut bytes = Vec::with_capacity(events.len() * 512);
    let mut ends = Vec::with_capacity(events.len());
    let mut unencodable = 0;
    for event in events {
        let start = bytes.len();
        bytes.extend_from_slice(&[0; 4]);
        let len = match rmp_serde::encode::write_named(&mut bytes, event) {
            Ok(()) => bytes.len() - start - 4,
            Err(_) => 0,
        };
        if len == 0 || len > MAX_RECORD_BYTES as usize {
            bytes.truncate(start);
            unencodable += 1;
            continue;
        }
        if let Some(prefix) = bytes.get_mut(start..start + 4) {
            prefix.copy_from_slice(&(len as u32).to_le_bytes());
        }
        ends.push(bytes.len());
    }
    Encoded {
        bytes,
        ends,
        unencodable,
    }
}

impl Spool {
    /// Opens (creating) the spool, recovering segments and the cursors of
    /// `sink_names`. A sink without a cursor file starts at the oldest
    /// retained event. With an `owner`, the directory and every file in it
    /// are handed to that user, who will write them after the privilege drop.
    pub fn open(
        settings: &EventSettings,
        sink_names: &[String],
        owner: Option<FileOwner>,
    ) -> io::Result<Spool> {
        let dir = PathBuf::from(&settings.spool_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        files::give_path_to(&dir, owner)?;
        let mut firsts: Vec<u64> = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if owner.is_some() {
                files::give_path_to(&entry.path(), owner)?;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments = VecDeque::new();
        let mut total_bytes = 0;
        let last_index = firsts.len().saturating_sub(1);
        for (i, first) in firsts.iter().copied().enumerate() {
            let path = segment_path(&dir, first);
            let (count, good) = scan_segment(&path)?;
            let len = fs::metadata(&path)?.len();
            if good < len {
                tracing::warn!(
                    "spool: {} ends in a torn record ({} bytes); cut off",
                    path.display(),
                    len - good
                );
                OpenOptions::new().write(true).open(&path)?.set_len(good)?;
            }
            if count == 0 && i != last_index {
                fs::remove_file(&path)?;
                continue;
            }
            total_bytes += good;
            segments.push_back(Segment {
                first,
                count,
                bytes: good,
            });
        }
        let next_seq = segments.back().map_or(0, Segment::end);
        let oldest = segments.front().map_or(next_seq, |s| s.first);
        let cursors = sink_names
            .iter()
            .map(|name| {
                let saved = fs::read_to_string(cursor_path(&dir, name))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                let seq = saved.unwrap_or(oldest).clamp(oldest, next_seq);
                Arc::new(SinkCursor {
                    name: name.clone(),
                    acked_seq: AtomicU64::new(seq),
                    inflight_end: AtomicU64::new(0),
                    live: AtomicBool::new(true),
                    attempt_started_ms: AtomicU64::new(0),
                    counters: SinkCounters::default(),
                    persisted: Mutex::new((seq, None)),
                })
            })
            .collect();
        Ok(Spool {
            dir,
            segment_bytes: settings.spool_segment_bytes,
            max_bytes: settings.spool_max_bytes,
            fsync: settings.fsync,
            fsync_interval: Duration::from_millis(settings.fsync_interval_ms),
            opened: Instant::now(),
            owner,
            state: Mutex::new(State {
                segments,
                file: None,
                sealed: false,
                next_seq,
                total_bytes,
                last_fsync: Instant::now(),
                dirty: false,
                last_error_log: None,
            }),
            cursors,
            counters: SpoolCounters::default(),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// Milliseconds since the spool opened (a monotonic clock for stall checks).
    pub fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    /// Sequence number the next appended event gets.
    pub fn next_seq(&self) -> u64 {
        lock(&self.state).next_seq
    }

    /// Oldest retained sequence number.
    pub fn oldest_seq(&self) -> u64 {
        let state = lock(&self.state);
        state.segments.front().map_or(state.next_seq, |s| s.first)
    }

    /// (bytes, segments) on disk.
    pub fn size(&self) -> (u64, usize) {
        let state = lock(&self.state);
        (state.total_bytes, state.segments.len())
    }

    /// Appends events in order; returns how many were appended. An event
    /// counts as appended only once its bytes are in the segment file (and
    /// fsynced with `fsync = "always"`); one that is not is counted as lost,
    /// with its reason, and reported in a `sensor.spool_loss` event.
    /// Encoding happens before the lock is taken.
    pub fn append(&self, events: &[Event]) -> usize {
        let encoded = encode(events);
        self.counters.count_loss(UNENCODABLE, encoded.unencodable);
        if encoded.ends.is_empty() {
            return 0;
        }
        let now_ms = self.now_ms();
        let appended;
        {
            let mut state = lock(&self.state);
            appended = self.write_records(&mut state, &encoded);
            let failed = (encoded.ends.len() - appended) as u64;
            self.counters.count_loss(WRITE_FAILED, failed);
            // Sinks that are down or stalled will read these back from disk.
            for cursor in &self.cursors {
                let started = cursor.attempt_started_ms.load(Ordering::Relaxed);
                let stalled = started != 0 && now_ms.saturating_sub(started) > 1000;
                if !cursor.live.load(Ordering::Relaxed) || stalled {
                    cursor
                        .counters
                        .spooled
                        .fetch_add(appended as u64, Ordering::Relaxed);
                }
            }
            self.enforce_cap(&mut state);
        }
        self.counters
            .appended
            .fetch_add(appended as u64, Ordering::Relaxed);
        if appended > 0 {
            self.notify.notify_waiters();
        }
        appended
    }

    /// Writes the records into segments (a new one whenever the newest is
    /// full); returns how many are durably there. Stops at the first failure:
    /// the records after it are not attempted (on a full disk they would
    /// fail too) and a torn record is cut off.
    fn write_records(&self, state: &mut State, encoded: &Encoded) -> usize {
        let mut pos = 0;
        while pos < encoded.ends.len() {
            let file = match self.writable_segment(state) {
                Ok(file) => file,
                Err(e) => {
                    self.log_write_error(state, &e);
                    return pos;
                }
            };
            let Some(seg) = state.segments.back().copied() else {
                return pos;
            };
            let group_start = pos.checked_sub(1).map_or(0, |i| encoded.ends[i]);
            // Whole records up to the segment size (at least one).
            let mut end = pos + 1;
            while end < encoded.ends.len()
                && seg.bytes + ((encoded.ends[end - 1] - group_start) as u64) < self.segment_bytes
            {
                end += 1;
            }
            let group_end = encoded.ends[end - 1];
            let bytes = encoded
                .bytes
                .get(group_start..group_end)
                .unwrap_or_default();
            let written = match write_all_at(&file, bytes, seg.bytes) {
                Ok(()) if self.fsync == FsyncPolicy::Always => match file.sync_data() {
                    Ok(()) => Ok(()),
                    // Nothing of this group is known to be on disk.
                    Err(e) => Err((0, e)),
                },
                other => other,
            };
            let (complete, error) = match written {
                Ok(()) => (end - pos, None),
                Err((done, e)) => {
                    let whole = encoded.ends[pos..end]
                        .iter()
                        .take_while(|&&e| e - group_start <= done)
                        .count();
                    (whole, Some(e))
                }
            };
            let kept = pos
                .checked_add(complete)
                .and_then(|i| i.checked_sub(1))
                .filter(|_| complete > 0)
                .map_or(0, |i| encoded.ends[i] - group_start) as u64;
            if let Some(seg) = state.segments.back_mut() {
                seg.count += complete as u64;
                seg.bytes += kept;
            }
            state.total_bytes += kept;
            state.next_seq += complete as u64;
            state.dirty = true;
            pos += complete;
            if let Some(e) = error {
                // Cut the torn record so the segment stays a run of whole
                // records; if even that fails, never append to it again.
                let good = state.segments.back().map_or(0, |s| s.bytes);
                if file.set_len(good).is_err() {
                    state.sealed = true;
                }
                self.log_write_error(state, &e);
                return pos;
            }
            state.file = Some(file);
        }
        pos
    }

    fn log_write_error(&self, state: &mut State, error: &io::Error) {
        if state
            .last_error_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            state.last_error_log = Some(Instant::now());
            tracing::error!(
                "spool: cannot append to {}: {error}; the events are lost and counted \
                 (spool_lost_write_failed); free space there or move events.spool_dir",
                self.dir.display()
            );
        }
    }

    /// The newest segment's file, opened (or a new segment started) as
    /// needed; taken out of the state, the caller puts it back after a
    /// successful write.
    fn writable_segment(&self, state: &mut State) -> io::Result<File> {
        let newest = state.segments.back().copied();
        let full = newest.is_none_or(|s| s.bytes >= self.segment_bytes);
        if !full && !state.sealed {
            if let Some(file) = state.file.take() {
                return Ok(file);
            }
        }
        if let Some(file) = state.file.take() {
            if self.fsync != FsyncPolicy::Never && file.sync_data().is_err() {
                tracing::warn!("spool: fsync of a finished segment failed");
            }
        }
        let first = match newest {
            // A segment that never got a record is started over.
            Some(s) if s.count == 0 => {
                let _ = fs::remove_file(segment_path(&self.dir, s.first));
                state.segments.pop_back();
                s.first
            }
            // Reopen the newest segment while it has room (after a restart
            // or an error), otherwise start the next one.
            Some(s) if !full && !state.sealed => {
                let file = files::open(
                    &segment_path(&self.dir, s.first),
                    OpenOptions::new().write(true).create(true),
                    PRIVATE_MODE,
                    self.owner,
                )?;
                return Ok(file);
            }
            _ => state.next_seq,
        };
        state.sealed = false;
        let file = files::open(
            &segment_path(&self.dir, first),
            OpenOptions::new().write(true).create(true).truncate(true),
            PRIVATE_MODE,
            self.owner,
        )?;
        state.segments.push_back(Segment {
            first,
            count: 0,
            bytes: 0,
        });
        Ok(file)
    }

    fn sync(&self, state: &mut State) {
        if let Some(file) = &state.file {
            if let Err(e) = file.sync_data() {
                tracing::error!("spool: fsync in {} failed: {e}", self.dir.display());
            }
        }
        state.dirty = false;
        state.last_fsync = Instant::now();
    }

    /// Evicts the oldest segments while over the cap, counting for each sink
    /// the events it had not acknowledged and does not hold in flight.
    fn enforce_cap(&self, state: &mut State) {
        while state.total_bytes > self.max_bytes && state.segments.len() > 1 {
            let Some(seg) = state.segments.pop_front() else {
                break;
            };
            let mut lost = if self.cursors.is_empty() {
                seg.count
            } else {
                0
            };
            for cursor in &self.cursors {
                let acked = cursor.acked_seq.fetch_max(seg.end(), Ordering::SeqCst);
                // A batch the sink holds is its own to deliver or count.
                let inflight = cursor.inflight_end.load(Ordering::SeqCst);
                let from = acked.max(inflight).max(seg.first);
                if from < seg.end() {
                    let missed = seg.end() - from;
                    cursor.counters.dropped.fetch_add(missed, Ordering::Relaxed);
                    lost = lost.max(missed);
                }
            }
            state.total_bytes = state.total_bytes.saturating_sub(seg.bytes);
            let _ = fs::remove_file(segment_path(&self.dir, seg.first));
            if lost > 0 {
                self.counters.count_loss(EVICTED, lost);
                tracing::warn!(
                    "spool: over events.spool_max_bytes; evicted {lost} undelivered events"
                );
            }
        }
    }

    /// Hands `from..next` to the sink that read it, unless the cap evicted
    /// part of it since (then the cursor moved and the caller reads again).
    /// From here on, eviction leaves those events to the sink to count.
    pub fn claim(&self, cursor: &SinkCursor, from: u64, next: u64) -> bool {
        let _state = lock(&self.state);
        if cursor.acked_seq.load(Ordering::SeqCst) != from {
            return false;
        }
        cursor.inflight_end.store(next, Ordering::SeqCst);
        true
    }

    /// The sink is done with its batch `from..next`: it acknowledged (or
    /// counted) everything below `delivered`. What it gives up on that the
    /// cap evicted meanwhile is gone from disk, so it is counted as dropped
    /// here; the rest stays in the spool for the next attempt or start.
    pub fn release(&self, cursor: &SinkCursor, delivered: u64, next: u64) {
        let _state = lock(&self.state);
        cursor.inflight_end.store(0, Ordering::SeqCst);
        let acked = cursor.acked_seq.load(Ordering::SeqCst);
        let gone = acked.min(next).saturating_sub(delivered);
        if gone > 0 {
            cursor.counters.dropped.fetch_add(gone, Ordering::Relaxed);
            self.counters.count_loss(EVICTED, gone);
        }
    }

    /// Periodic work: fsync by policy and delete segments every sink passed.
    pub fn tick(&self) {
        let mut state = lock(&self.state);
        if state.dirty
            && self.fsync == FsyncPolicy::Interval
            && state.last_fsync.elapsed() >= self.fsync_interval
        {
            self.sync(&mut state);
        }
        if self.cursors.is_empty() {
            return;
        }
        let min_acked = self
            .cursors
            .iter()
            .map(|c| c.acked_seq.load(Ordering::SeqCst))
            .min()
            .unwrap_or(0);
        // The newest segment is kept: it carries the sequence numbers on.
        while state.segments.len() > 1 {
            match state.segments.front() {
                Some(seg) if seg.end() <= min_acked => {
                    let seg = *seg;
                    state.segments.pop_front();
                    state.total_bytes = state.total_bytes.saturating_sub(seg.bytes);
                    let _ = fs::remove_file(segment_path(&self.dir, seg.first));
                }
                _ => break,
            }
        }
    }

    /// Fsyncs whatever was appended (shutdown).
    pub fn sync_now(&self) {
        self.sync(&mut lock(&self.state));
    }

    /// Records that `cursor` acknowledged everything before `next`, and
    /// writes the cursor file (at most every 200 ms unless `force`, or
    /// always with `fsync = "always"`).
    pub fn ack(&self, cursor: &SinkCursor, next: u64, force: bool) {
        cursor.acked_seq.fetch_max(next, Ordering::SeqCst);
        let mut persisted = lock(&cursor.persisted);
        let seq = cursor.acked_seq.load(Ordering::SeqCst);
        let due = persisted
            .1
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(200));
        if seq == persisted.0 || !(force || due || self.fsync == FsyncPolicy::Always) {
            return;
        }
        let path = cursor_path(&self.dir, &cursor.name);
        let tmp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let f = files::open(
                &tmp,
                OpenOptions::new().write(true).create(true).truncate(true),
                PRIVATE_MODE,
                self.owner,
            )?;
            f.write_all_at(seq.to_string().as_bytes(), 0)?;
            if self.fsync != FsyncPolicy::Never {
                f.sync_data()?;
            }
            fs::rename(&tmp, &path)
        };
        match write() {
            Ok(()) => *persisted = (seq, Some(Instant::now())),
            Err(e) => tracing::warn!("spool: cannot write {}: {e}", path.display()),
        }
    }

    fn segments_snapshot(&self) -> (Vec<Segment>, u64) {
        let state = lock(&self.state);
        (state.segments.iter().copied().collect(), state.next_seq)
    }
}

/// One sink's read position in the spool.
pub struct SpoolReader {
    spool: Arc<Spool>,
    /// (segment first seq, reader, seq of the next record in the reader).
    open: Option<(u64, BufReader<File>, u64)>,
}

/// A record read back: its sequence number and the event (None if the
/// record could not be decoded; it is counted as dropped by the caller).
pub type SpooledEvent = (u64, Option<Event>);

impl SpoolReader {
    pub fn new(spool: Arc<Spool>) -> SpoolReader {
        SpoolReader { spool, open: None }
    }

    /// Up to `max` events from sequence `from` on (skipping forward past
    /// evicted segments).
    pub fn read(&mut self, from: u64, max: usize) -> Vec<SpooledEvent> {
        let mut out = Vec::new();
        let (segments, next_seq) = self.spool.segments_snapshot();
        let mut seq = from;
        while out.len() < max && seq < next_seq {
            let Some(seg) = segments.iter().find(|s| seq < s.end()).copied() else {
                break;
            };
            if seq < seg.first {
                seq = seg.first;
            }
            let positioned =
                matches!(&self.open, Some((first, _, at)) if *first == seg.first && *at == seq);
            if !positioned && self.position(seg, seq).is_err() {
                // The segment vanished (evicted) or is unreadable: skip it.
                self.open = None;
                seq = seg.end();
                continue;
            }
            let Some((_, reader, at)) = self.open.as_mut() else {
                break;
            };
            while out.len() < max && seq < seg.end() {
                match read_record(reader) {
                    Ok(bytes) => {
                        out.push((seq, rmp_serde::from_slice::<Event>(&bytes).ok()));
                        seq += 1;
                        *at = seq;
                    }
                    Err(_) => {
                        self.open = None;
                        return out;
                    }
                }
            }
        }
        out
    }

    fn position(&mut self, seg: Segment, seq: u64) -> io::Result<()> {
        self.open = None;
        let file = File::open(segment_path(&self.spool.dir, seg.first))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut len_buf = [0u8; 4];
        for _ in seg.first..seq {
            reader.read_exact(&mut len_buf)?;
            reader.seek(SeekFrom::Current(i64::from(u32::from_le_bytes(len_buf))))?;
        }
        self.open = Some((seg.first, reader, seq));
        Ok(())
    }
}

fn read_record(reader: &mut BufReader<File>) -> io::Result<Vec<u8>> {
    let mut len_buf = [0u8; 4];
    reader.read_exact(&mut len_buf)?;
    let len = u32::from_le_bytes(len_buf);
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record length",
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Severity};
    use std::io::Write;

    fn settings(dir: &Path) -> EventSettings {
        EventSettings {
            spool_dir: dir.display().to_string(),
            spool_segment_bytes: 4096,
            spool_max_bytes: 16384,
            ..EventSettings::default()
        }
    }

    fn event(i: u64) -> Event {
        Event::new(
            EventKind::Health,
            "sensor.sink_test",
            "s",
            &[&i.to_string()],
            i,
            Severity::Info,
            format!("event {i}"),
        )
    }

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("apisensor-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn append_read_restart_and_resume_from_cursor() {
        let dir = tmp("resume");
        let names = vec!["a".to_string()];
        {
            let spool = Arc::new(Spool::open(&settings(&dir), &names, None).unwrap());
            let events: Vec<Event> = (0..50).map(event).collect();
            assert_eq!(spool.append(&events), 50);
            let mut reader = SpoolReader::new(Arc::clone(&spool));
            let got = reader.read(0, 20);
            assert_eq!(got.len(), 20);
            assert_eq!(got[3].1.as_ref().unwrap().title, "event 3");
            spool.ack(&spool.cursors[0], 20, true);
        }
        // A torn record at the end, as after SIGKILL mid-append.
        let mut newest: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        newest.sort();
        let mut f = OpenOptions::new()
            .append(true)
            .open(newest.last().unwrap())
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let spool = Arc::new(Spool::open(&settings(&dir), &names, None).unwrap());
        assert_eq!(spool.next_seq(), 50);
        let from = spool.cursors[0].acked_seq.load(Ordering::SeqCst);
        assert_eq!(from, 20);
        let mut reader = SpoolReader::new(Arc::clone(&spool));
        let got = reader.read(from, 1000);
        assert_eq!(got.len(), 30);
        assert_eq!(got[0].0, 20);
        assert!(got.iter().all(|(_, e)| e.is_some()));
        spool.append(&[event(50)]);
        assert_eq!(reader.read(50, 10)[0].0, 50);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn cap_evicts_oldest_and_counts_loss_per_sink() {
        let dir = tmp("cap");
        let spool = Spool::open(&settings(&dir), &["slow".to_string()], None).unwrap();
        for i in 0..400 {
            spool.append(&[event(i)]);
        }
        let (bytes, _) = spool.size();
        assert!(bytes <= 16384, "{bytes}");
        let lost = spool.counters.lost_evicted.load(Ordering::Relaxed);
        assert!(lost > 0);
        assert_eq!(
            spool.cursors[0].counters.dropped.load(Ordering::Relaxed),
            lost
        );
        assert_eq!(
            spool.cursors[0].acked_seq.load(Ordering::SeqCst),
            spool.oldest_seq()
        );
        // Acknowledged segments are deleted.
        spool.ack(&spool.cursors[0], spool.next_seq(), true);
        spool.tick();
        assert_eq!(spool.size().1, 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_batch_in_flight_is_the_sinks_to_count_when_evicted() {
        let dir = tmp("inflight");
        let spool = Spool::open(&settings(&dir), &["s".to_string()], None).unwrap();
        let cursor = &spool.cursors[0];
        spool.append(&(0..10).map(event).collect::<Vec<_>>());
        // Read 0..10, then claimed: eviction leaves these to the sink.
        assert!(spool.claim(cursor, 0, 10));
        for i in 10..400 {
            spool.append(&[event(i)]);
        }
        let lost = spool.counters.lost_evicted.load(Ordering::Relaxed);
        let dropped = cursor.counters.dropped.load(Ordering::Relaxed);
        assert!(lost > 0);
        assert_eq!(dropped, lost);
        let acked = cursor.acked_seq.load(Ordering::SeqCst);
        assert_eq!(dropped, acked - 10, "the 10 in flight are not counted");
        // Delivered: nothing more is counted.
        spool.ack(cursor, 10, false);
        spool.release(cursor, 10, 10);
        assert_eq!(cursor.counters.dropped.load(Ordering::Relaxed), dropped);
        // A claim of a batch the cap evicted since it was read is refused.
        assert!(!spool.claim(cursor, 10, 20));
        // Given up after eviction: the 5 not delivered are dropped, once.
        let from = cursor.acked_seq.load(Ordering::SeqCst);
        assert!(spool.claim(cursor, from, from + 10));
        for i in 400..800 {
            spool.append(&[event(i)]);
        }
        let before = cursor.counters.dropped.load(Ordering::Relaxed);
        spool.release(cursor, from + 5, from + 10);
        assert_eq!(cursor.counters.dropped.load(Ordering::Relaxed), before + 5);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn segments_and_cursors_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp("modes");
        let spool = Spool::open(&settings(&dir), &["s".to_string()], None).unwrap();
        spool.append(&[event(1)]);
        spool.ack(&spool.cursors[0], 1, true);
        let mut seen = 0;
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", entry.path().display());
            seen += 1;
        }
        assert_eq!(seen, 2);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = fs::remove_dir_all(&dir);
    }
}
