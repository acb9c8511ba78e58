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
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
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
    /// Events the sink confirmed (ack, publish ack, 2xx, flushed write).
    pub acked: AtomicU64,
    /// Events of failed attempts that were sent again.
    pub retried: AtomicU64,
    /// Events appended while this sink was down or stalled: they waited in the spool.
    pub spooled: AtomicU64,
    /// Events this sink never got: evicted by the spool cap, rejected for
    /// good (4xx, encoding), or unreadable.
    pub dropped: AtomicU64,
}

/// A sink as the spool sees it: its durable cursor and health.
#[derive(Debug)]
pub struct SinkCursor {
    pub name: String,
    /// Next sequence number not yet acknowledged by the sink.
    pub acked_seq: AtomicU64,
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
    writer: Option<BufWriter<File>>,
    next_seq: u64,
    total_bytes: u64,
    last_fsync: Instant,
    dirty: bool,
}

/// Spool-wide counters.
#[derive(Debug, Default)]
pub struct SpoolCounters {
    pub appended: AtomicU64,
    /// Events evicted by the cap before every sink had them.
    pub lost: AtomicU64,
    /// Lost events not yet reported in a health event.
    pub lost_unreported: AtomicU64,
    pub append_errors: AtomicU64,
}

pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
    opened: Instant,
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

impl Spool {
    /// Opens (creating) the spool, recovering segments and the cursors of
    /// `sink_names`. A sink without a cursor file starts at the oldest
    /// retained event.
    pub fn open(settings: &EventSettings, sink_names: &[String]) -> io::Result<Spool> {
        let dir = PathBuf::from(&settings.spool_dir);
        fs::create_dir_all(&dir)?;
        let mut firsts: Vec<u64> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
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
            state: Mutex::new(State {
                segments,
                writer: None,
                next_seq,
                total_bytes,
                last_fsync: Instant::now(),
                dirty: false,
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

    /// Appends events in order; returns how many were appended. Encoding
    /// happens before the lock is taken.
    pub fn append(&self, events: &[Event]) -> usize {
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            match rmp_serde::to_vec_named(event) {
                Ok(bytes) if !bytes.is_empty() && bytes.len() < MAX_RECORD_BYTES as usize => {
                    encoded.push(bytes)
                }
                _ => {
                    self.counters.append_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if encoded.is_empty() {
            return 0;
        }
        let now_ms = self.now_ms();
        let mut appended = 0;
        {
            let mut state = lock(&self.state);
            for bytes in &encoded {
                match self.write_record(&mut state, bytes) {
                    Ok(()) => appended += 1,
                    Err(e) => {
                        self.counters.append_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("spool: cannot append to {}: {e}", self.dir.display());
                        state.writer = None;
                    }
                }
            }
            if let Some(w) = state.writer.as_mut() {
                if w.flush().is_err() {
                    self.counters.append_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            state.dirty = true;
            if self.fsync == FsyncPolicy::Always {
                Self::sync(&mut state);
            }
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
        self.notify.notify_waiters();
        appended
    }

    fn write_record(&self, state: &mut State, bytes: &[u8]) -> io::Result<()> {
        let need_new = match state.segments.back() {
            None => true,
            Some(seg) => seg.bytes >= self.segment_bytes || state.writer.is_none(),
        };
        if need_new {
            // Reopen the newest segment for append when it has room (after a
            // restart or an error), otherwise start the next one.
            let reuse = state
                .segments
                .back()
                .filter(|s| s.bytes < self.segment_bytes)
                .map(|s| s.first);
            if let Some(w) = state.writer.as_mut() {
                w.flush()?;
                if self.fsync != FsyncPolicy::Never {
                    w.get_ref().sync_data()?;
                }
            }
            let first = reuse.unwrap_or(state.next_seq);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, first))?;
            state.writer = Some(BufWriter::with_capacity(256 * 1024, file));
            if reuse.is_none() {
                state.segments.push_back(Segment {
                    first,
                    count: 0,
                    bytes: 0,
                });
            }
        }
        let len = bytes.len() as u32;
        if let Some(w) = state.writer.as_mut() {
            w.write_all(&len.to_le_bytes())?;
            w.write_all(bytes)?;
        }
        if let Some(seg) = state.segments.back_mut() {
            seg.count += 1;
            seg.bytes += 4 + u64::from(len);
        }
        state.total_bytes += 4 + u64::from(len);
        state.next_seq += 1;
        Ok(())
    }

    fn sync(state: &mut State) {
        if let Some(w) = state.writer.as_mut() {
            let _ = w.flush();
            let _ = w.get_ref().sync_data();
        }
        state.dirty = false;
        state.last_fsync = Instant::now();
    }

    /// Evicts the oldest segments while over the cap, counting for each sink
    /// the events it had not acknowledged.
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
                if acked < seg.end() {
                    let missed = seg.end() - acked.max(seg.first);
                    cursor.counters.dropped.fetch_add(missed, Ordering::Relaxed);
                    lost = lost.max(missed);
                }
            }
            state.total_bytes = state.total_bytes.saturating_sub(seg.bytes);
            let _ = fs::remove_file(segment_path(&self.dir, seg.first));
            if lost > 0 {
                self.counters.lost.fetch_add(lost, Ordering::Relaxed);
                self.counters
                    .lost_unreported
                    .fetch_add(lost, Ordering::Relaxed);
                tracing::warn!(
                    "spool: over events.spool_max_bytes; evicted {lost} undelivered events"
                );
            }
        }
    }

    /// Periodic work: fsync by policy and delete segments every sink passed.
    pub fn tick(&self) {
        let mut state = lock(&self.state);
        if state.dirty
            && self.fsync == FsyncPolicy::Interval
            && state.last_fsync.elapsed() >= self.fsync_interval
        {
            Self::sync(&mut state);
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

    /// Flushes and fsyncs whatever was appended (shutdown).
    pub fn sync_now(&self) {
        Self::sync(&mut lock(&self.state));
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
            let mut f = File::create(&tmp)?;
            f.write_all(seq.to_string().as_bytes())?;
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
            let spool = Arc::new(Spool::open(&settings(&dir), &names).unwrap());
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
        let spool = Arc::new(Spool::open(&settings(&dir), &names).unwrap());
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
        let spool = Spool::open(&settings(&dir), &["slow".to_string()]).unwrap();
        for i in 0..400 {
            spool.append(&[event(i)]);
        }
        let (bytes, _) = spool.size();
        assert!(bytes <= 16384, "{bytes}");
        let lost = spool.counters.lost.load(Ordering::Relaxed);
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
}
