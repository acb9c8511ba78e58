//! One direction of a TCP stream put back in order. In-order payload is passed
//! on straight from the packet (no copy); only segments that arrive ahead of a
//! hole are copied, into a buffer capped in segments and bytes per direction
//! and in bytes per worker.
//!
//! Policy for overlapping and retransmitted data, one rule everywhere: **the
//! first bytes delivered for a sequence range win.** A later copy of the same
//! range is dropped; where its bytes can still be compared (the last
//! `overlap_check_bytes` delivered, or another buffered segment delivered
//! first) and differ, it is counted in `overlaps_inconsistent` — an evasion
//! indicator (a target host may have kept the other copy). Buffered segments
//! are delivered in sequence order; of two with the same start, the one that
//! arrived first.
//!
//! Lost bytes become `Chunk::Gap(len)`. A hole is declared lost when the
//! receiver acknowledges data beyond it (so the capture missed it, the host did
//! not), when the buffer caps are reached, when the snaplen cut a segment, or
//! when the direction ends or the flow is flushed with holes left.
//! Sequence numbers wrap: all comparisons are `wrapping_sub` as `i32`.
//!
//! Every captured payload byte ends in one counter (see `FlowStats`): sent on
//! (`bytes_delivered`), or discarded as `bytes_retransmitted` (at or before
//! the delivery point), `bytes_before_start`, `bytes_after_end` or
//! `bytes_out_of_window`; until then it is buffered (`buffered_bytes`).
//! Snaplen-cut bytes become `snaplen_gap_bytes` or `snaplen_bytes_dropped`.
//! Only plain counter adds, never per-byte work.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use super::FlowStats;
use crate::config::FlowSettings;
use std::cell::RefCell;

/// A piece of one direction's byte stream, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream were not captured.
    Gap(u64),
}

/// Per-worker state shared by all reassemblers of that worker.
pub struct ReassemblyContext<'a> {
    pub settings: &'a FlowSettings,
    pub stats: &'a mut FlowStats,
    /// Out-of-order bytes currently buffered by the whole worker.
    pub worker_ooo_bytes: &'a mut usize,
    /// The most the whole worker may buffer (its share of `flow.max_ooo_bytes`).
    pub worker_ooo_cap: usize,
}

/// Largest TCP window (65535 << 14): data or acknowledgements further
/// ahead than this cannot belong to the stream.
const MAX_WINDOW: i64 = 1 << 30;

/// Signed distance from `b` to `a` in sequence space.
#[inline]
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

#[derive(Debug)]
struct OooSegment {
    seq: u32,
    data: Vec<u8>,
    /// Bytes after `data` that the snaplen cut.
    missing: u32,
}

impl OooSegment {
    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.data.len() as u32)
            .wrapping_add(self.missing)
    }
}

/// Smallest comparison window allocated. The window grows with the bytes a
/// direction delivered (doubling, up to `overlap_check_bytes`), so a
/// connection that carried one small request costs a few hundred bytes, not
/// the whole window: 300,000 such connections took 2.6 GB when every
/// direction's first byte allocated the full 4 KiB.
const MIN_RING_BYTES: usize = 256;
/// Size classes of spare rings: 256 B to 1 MiB (the largest window allowed).
const RING_CLASSES: usize = 13;

/// Rings kept per thread and size class for the next flows: a short
/// connection would otherwise allocate and zero a fresh window per
/// direction, which costs more than its whole reassembly.
const MAX_SPARE_RINGS: usize = 64;

thread_local! {
    static SPARE_RINGS: RefCell<[Vec<Vec<u8>>; RING_CLASSES]> =
        const { RefCell::new([const { Vec::new() }; RING_CLASSES]) };
}

/// The spare-ring class of a power-of-two length, if it has one.
fn ring_class(len: usize) -> Option<usize> {
    let class = len
        .trailing_zeros()
        .checked_sub(MIN_RING_BYTES.trailing_zeros())? as usize;
    (len.is_power_of_two() && class < RING_CLASSES).then_some(class)
}

/// A zeroed-or-stale ring of `len` bytes (a power of two), from the spares
/// when there is one. Stale bytes are never read: `valid` says which count.
fn take_ring(len: usize) -> Vec<u8> {
    ring_class(len)
        .and_then(|class| SPARE_RINGS.with(|spare| spare.borrow_mut().get_mut(class)?.pop()))
        .unwrap_or_else(|| vec![0; len])
}

fn give_ring(ring: Vec<u8>) {
    let Some(class) = ring_class(ring.len()) else {
        return;
    };
    SPARE_RINGS.with(|spare| {
        if let Some(list) = spare.borrow_mut().get_mut(class) {
            if list.len() < MAX_SPARE_RINGS {
                list.push(ring);
            }
        }
    });
}

/// Copies `data`, which starts at sequence number `seq`, into `ring` at
/// positions `seq % ring.len()` (at most two copies: up to the end of the
/// ring, then from its start). `data` must not be longer than the ring.
fn ring_write(ring: &mut [u8], seq: u32, data: &[u8]) {
    let capacity = ring.len();
    if capacity == 0 {
        return;
    }
    let pos = seq as usize % capacity;
    let first_len = data.len().min(capacity - pos);
    let (first, second) = data.split_at(first_len);
    if let Some(dst) = ring.get_mut(pos..pos + first_len) {
        dst.copy_from_slice(first);
    }
    if let Some(dst) = ring.get_mut(..second.len()) {
        dst.copy_from_slice(second);
    }
}

/// The last delivered bytes, to compare retransmissions with.
#[derive(Debug, Default)]
struct RecentBytes {
    ring: Vec<u8>,
    /// Sequence number just after the newest byte in the ring.
    end_seq: u32,
    /// Valid bytes before `end_seq` (<= ring.len()).
    valid: usize,
}

impl RecentBytes {
    fn record(&mut self, capacity: usize, seq: u32, data: &[u8]) {
        if capacity == 0 {
            return;
        }
        if self.valid > 0 && self.end_seq != seq {
            self.valid = 0;
        }
        // Ring positions are `seq % len`; a power of two keeps them
        // continuous when the sequence number wraps past 2^32.
        let capacity = capacity.next_power_of_two();
        let wanted = (self.valid + data.len())
            .min(capacity)
            .next_power_of_two()
            .max(MIN_RING_BYTES.min(capacity));
        if self.ring.len() < wanted {
            self.grow(wanted);
        }
        let capacity = self.ring.len();
        let keep = data.len().min(capacity);
        let tail = data.get(data.len() - keep..).unwrap_or_default();
        let start_seq = seq.wrapping_add((data.len() - keep) as u32);
        ring_write(&mut self.ring, start_seq, tail);
        self.end_seq = seq.wrapping_add(data.len() as u32);
        self.valid = (self.valid + data.len()).min(capacity);
    }

    /// Moves the valid bytes into a ring of `len` bytes (their positions
    /// change with the ring's length).
    fn grow(&mut self, len: usize) {
        let mut ring = take_ring(len);
        if self.valid > 0 && !self.ring.is_empty() {
            let old = self.ring.len();
            let start = self.end_seq.wrapping_sub(self.valid as u32);
            let pos = start as usize % old;
            let first_len = self.valid.min(old - pos);
            let first = self.ring.get(pos..pos + first_len).unwrap_or_default();
            let second = self.ring.get(..self.valid - first_len).unwrap_or_default();
            ring_write(&mut ring, start, first);
            ring_write(&mut ring, start.wrapping_add(first_len as u32), second);
        }
        give_ring(std::mem::replace(&mut self.ring, ring));
    }

    /// Heap bytes of the window.
    fn heap_bytes(&self) -> usize {
        self.ring.capacity()
    }

    fn forget(&mut self) {
        self.valid = 0;
    }

    /// Hands the ring to the thread's spares. Stale bytes in it are never
    /// read: `valid` starts at 0.
    fn recycle(&mut self) {
        self.valid = 0;
        give_ring(std::mem::take(&mut self.ring));
    }

    /// Compares `data` (starting at `seq`) with what was delivered there.
    /// `None` when no byte of it is still in the window.
    fn matches(&self, seq: u32, data: &[u8]) -> Option<bool> {
        let capacity = self.ring.len();
        if self.valid == 0 || capacity == 0 || data.is_empty() {
            return None;
        }
        let window_start = self.end_seq.wrapping_sub(self.valid as u32);
        // Clip data to [window_start, end_seq).
        let skip = seq_diff(window_start, seq).max(0) as usize;
        let until_end = seq_diff(self.end_seq, seq);
        if until_end <= 0 || skip >= data.len() {
            return None;
        }
        let end = (until_end as usize).min(data.len());
        let part = data.get(skip..end)?;
        let first = seq.wrapping_add(skip as u32);
        let pos = first as usize % capacity;
        let first_len = part.len().min(capacity - pos);
        let (a, b) = part.split_at(first_len);
        Some(self.ring.get(pos..pos + first_len) == Some(a) && self.ring.get(..b.len()) == Some(b))
    }
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct Reassembler {
    started: bool,
    /// Next sequence number to deliver.
    next_seq: u32,
    /// Sequence number of the FIN, once seen.
    fin_seq: Option<u32>,
    /// Everything up to the FIN was delivered (or the flow was flushed).
    ended: bool,
    /// Highest sequence number the peer acknowledged beyond `next_seq`.
    acked_beyond: Option<u32>,
    /// Where the direction started (after its SYN, or the first segment seen
    /// mid-stream), to tell bytes from before it; forgotten once the stream
    /// is more than `MAX_WINDOW` past it.
    start_seq: Option<u32>,
    ooo: Vec<OooSegment>,
    ooo_bytes: usize,
    recent: RecentBytes,
}

impl Reassembler {
    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether `seq` is exactly the next sequence number this direction expects.
    pub fn expects(&self, seq: u32) -> bool {
        self.next_seq == seq
    }

    pub fn buffered_bytes(&self) -> usize {
        self.ooo_bytes
    }

    /// Heap bytes this direction holds: buffered segments (each copied to
    /// its exact length) and the comparison window.
    pub fn heap_bytes(&self) -> usize {
        (self.ooo.capacity() * std::mem::size_of::<OooSegment>())
            .saturating_add(self.ooo_bytes)
            .saturating_add(self.recent.heap_bytes())
    }

    /// Feeds one segment of this direction. Returns true when this call
    /// delivered the end of the direction (everything up to its FIN).
    #[allow(clippy::too_many_arguments)]
    pub fn on_segment(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        missing: u32,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) -> bool {
        if self.ended {
            // Late copies of delivered bytes are retransmissions; the rest
            // lies past the end.
            let data_seq = seq.wrapping_add(u32::from(syn));
            let old = seq_diff(self.next_seq, data_seq).clamp(0, payload.len() as i64) as u64;
            let late = payload.len() as u64 - old;
            self.count_old_bytes(ctx, data_seq, old);
            if late > 0 {
                ctx.stats.segments_after_end += 1;
            } else if old > 0 {
                ctx.stats.segments_retransmitted += 1;
            }
            ctx.stats.bytes_after_end += late;
            ctx.stats.snaplen_bytes_dropped += u64::from(missing);
            return false;
        }
        let mut seq = seq;
        if syn {
            // The SYN occupies one sequence number before the first data byte.
            seq = seq.wrapping_add(1);
            if !self.started {
                self.started = true;
                self.next_seq = seq;
                self.start_seq = Some(seq);
            }
        }
        if !self.started {
            self.started = true;
            self.next_seq = seq;
            self.start_seq = Some(seq);
            ctx.stats.directions_started_midstream += 1;
        }
        let total = payload.len() as u64 + u64::from(missing);
        // The earliest FIN at or after the delivery point fixes where the
        // direction ends: no byte past a FIN the receiver may have accepted
        // is stream data (conflicting FINs are an evasion trick). It is set
        // before this segment's data is placed, so nothing buffered behind
        // it can be delivered past it.
        if fin {
            let fin_seq = seq.wrapping_add(total as u32);
            let earlier = self.fin_seq.is_none_or(|old| seq_diff(fin_seq, old) < 0);
            if earlier && seq_diff(fin_seq, self.next_seq) >= 0 {
                self.fin_seq = Some(fin_seq);
            }
        }
        if total > 0 {
            self.insert(ctx, seq, payload, missing, deliver);
        }
        self.check_end()
    }

    /// Bytes that may still be delivered before the FIN (unbounded without one).
    fn room_before_fin(&self) -> u64 {
        match self.fin_seq {
            Some(fin) => seq_diff(fin, self.next_seq).max(0) as u64,
            None => u64::MAX,
        }
    }

    /// Moves the delivery point; forgets an acknowledgement it has passed.
    fn advance(&mut self, len: u64) {
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        if self
            .start_seq
            .is_some_and(|s| !(0..=MAX_WINDOW).contains(&seq_diff(self.next_seq, s)))
        {
            self.start_seq = None;
        }
        if self
            .acked_beyond
            .is_some_and(|a| seq_diff(a, self.next_seq) <= 0)
        {
            self.acked_beyond = None;
        }
    }

    /// The peer acknowledged `ack`: any hole below it was received by the
    /// host but missed by the capture, so stop waiting for it.
    pub fn on_peer_ack(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        ack: u32,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) -> bool {
        let ahead = seq_diff(ack, self.next_seq);
        if !self.started || self.ended || ahead <= 0 || ahead > MAX_WINDOW {
            return false;
        }
        // An ACK of the FIN covers one sequence number that is not data.
        let ack = match self.fin_seq {
            Some(fin) if seq_diff(ack, fin) > 0 => fin,
            _ => ack,
        };
        match self.acked_beyond {
            Some(prev) if seq_diff(ack, prev) <= 0 => {}
            _ => self.acked_beyond = Some(ack),
        }
        while let Some(first) = self.ooo.first() {
            if seq_diff(ack, first.seq) <= 0 {
                break;
            }
            self.skip_to_first_buffered(ctx, deliver);
        }
        // Acknowledged bytes with nothing buffered: a whole segment (often a
        // whole request) was lost. Saying so now, before the peer's answer is
        // parsed, keeps request/response pairing right.
        if self.ooo.is_empty() {
            let lost = seq_diff(ack, self.next_seq);
            if lost > 0 {
                ctx.stats.gaps_acked += 1;
                self.emit_gap(ctx, lost as u64, deliver);
            }
        }
        self.check_end()
    }

    /// The flow is ending: deliver what is buffered, with gaps for the holes,
    /// and a final gap for acknowledged or FIN-announced bytes never seen.
    pub fn flush(&mut self, ctx: &mut ReassemblyContext<'_>, deliver: &mut dyn FnMut(Chunk<'_>)) {
        if !self.started || self.ended {
            self.release(ctx);
            return;
        }
        while !self.ooo.is_empty() {
            self.skip_to_first_buffered(ctx, deliver);
        }
        let known_end = [self.fin_seq, self.acked_beyond]
            .into_iter()
            .flatten()
            .filter(|&s| seq_diff(s, self.next_seq) > 0)
            .max_by(|a, b| seq_diff(*a, *b).cmp(&0));
        if let Some(end) = known_end {
            let lost = seq_diff(end, self.next_seq) as u64;
            self.emit_gap(ctx, lost, deliver);
            ctx.stats.gaps_at_end += 1;
        }
        self.ended = true;
        self.release(ctx);
    }

    /// Frees buffered data (flow evicted or closed).
    pub fn release(&mut self, ctx: &mut ReassemblyContext<'_>) {
        self.release_buffered(ctx);
        self.recent.recycle();
    }

    fn check_end(&mut self) -> bool {
        if self.ended || !self.ooo.is_empty() {
            return false;
        }
        match self.fin_seq {
            Some(fin) if fin == self.next_seq => {
                self.ended = true;
                self.recent.recycle();
                true
            }
            _ => false,
        }
    }

    fn insert(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        seq: u32,
        payload: &[u8],
        missing: u32,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) {
        let rel = seq_diff(seq, self.next_seq);
        if rel <= 0 {
            self.deliver_overlapping(ctx, seq, payload, missing, deliver);
            self.drain(ctx, deliver);
            return;
        }
        if rel > MAX_WINDOW {
            // Further ahead than any TCP window can reach (2^30 with window
            // scaling): not this stream's data, and buffering it would make
            // a gigabyte-sized gap out of nothing.
            ctx.stats.segments_out_of_window += 1;
            ctx.stats.bytes_out_of_window += payload.len() as u64;
            ctx.stats.snaplen_bytes_dropped += u64::from(missing);
            return;
        }
        if self.room_before_fin() <= rel as u64 {
            // Entirely past the FIN.
            ctx.stats.segments_after_end += 1;
            ctx.stats.bytes_after_end += payload.len() as u64;
            ctx.stats.snaplen_bytes_dropped += u64::from(missing);
            return;
        }
        ctx.stats.segments_out_of_order += 1;
        let len = payload.len();
        let settings = ctx.settings;
        let worker_cap = ctx.worker_ooo_cap;
        let over_caps = move |r: &Reassembler, worker: usize| {
            r.ooo.len() >= settings.max_ooo_segments_per_direction
                || r.ooo_bytes + len > settings.max_ooo_bytes_per_direction
                || worker + len > worker_cap
        };
        // No room: the oldest hole is given up on, which delivers what was
        // buffered behind it and frees room.
        while over_caps(self, *ctx.worker_ooo_bytes) && !self.ooo.is_empty() {
            ctx.stats.ooo_cap_gaps += 1;
            self.skip_to_first_buffered(ctx, deliver);
        }
        let rel = seq_diff(seq, self.next_seq);
        if rel <= 0 {
            self.deliver_overlapping(ctx, seq, payload, missing, deliver);
            self.drain(ctx, deliver);
            return;
        }
        if over_caps(self, *ctx.worker_ooo_bytes) {
            // Even an empty buffer cannot take it: skip straight to it.
            ctx.stats.ooo_cap_gaps += 1;
            self.emit_gap(ctx, rel as u64, deliver);
            self.deliver_in_order(ctx, payload, missing, deliver);
            self.drain(ctx, deliver);
            return;
        }
        let pos = self
            .ooo
            .partition_point(|s| seq_diff(s.seq, self.next_seq) <= rel);
        self.ooo.insert(
            pos,
            OooSegment {
                seq,
                data: payload.to_vec(),
                missing,
            },
        );
        self.ooo_bytes += len;
        *ctx.worker_ooo_bytes += len;
        ctx.stats.ooo_bytes_buffered += len as u64;
    }

    /// A segment starting at or before `next_seq`: compare the part already
    /// delivered, pass on the rest.
    fn deliver_overlapping(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        seq: u32,
        payload: &[u8],
        missing: u32,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) {
        let overlap = (-seq_diff(seq, self.next_seq)) as u64;
        let total = payload.len() as u64 + u64::from(missing);
        if overlap > 0 {
            let old = payload
                .get(..(overlap.min(payload.len() as u64) as usize))
                .unwrap_or_default();
            self.count_old_bytes(ctx, seq, old.len() as u64);
            ctx.stats.snaplen_bytes_dropped += overlap.min(total) - old.len() as u64;
            if overlap >= total {
                ctx.stats.segments_retransmitted += 1;
            }
            if self.recent.matches(seq, old) == Some(false) {
                ctx.stats.overlaps_inconsistent += 1;
            }
        }
        if overlap >= total {
            return;
        }
        if overlap >= payload.len() as u64 {
            // Only snaplen-cut bytes are new.
            self.deliver_in_order(ctx, &[], (total - overlap) as u32, deliver);
            return;
        }
        let fresh = payload.get(overlap as usize..).unwrap_or_default();
        self.deliver_in_order(ctx, fresh, missing, deliver);
    }

    /// Counts `len` captured bytes at `seq`, behind the delivery point, as
    /// discarded: those before the start of the direction were never part of
    /// the stream; the others were delivered (or given up as a gap) already.
    fn count_old_bytes(&self, ctx: &mut ReassemblyContext<'_>, seq: u32, len: u64) {
        let before_start = self
            .start_seq
            .map_or(0, |s| seq_diff(s, seq).clamp(0, len as i64) as u64);
        ctx.stats.bytes_before_start += before_start;
        ctx.stats.bytes_retransmitted += len - before_start;
    }

    fn deliver_in_order(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        data: &[u8],
        missing: u32,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) {
        // Nothing is delivered past the FIN: bytes there are not part of
        // what the receiver's application reads.
        let room = self.room_before_fin();
        let (data, missing) = if data.len() as u64 + u64::from(missing) > room {
            ctx.stats.segments_after_end += 1;
            let kept = data
                .get(..(room.min(data.len() as u64) as usize))
                .unwrap_or_default();
            let kept_missing = (room - kept.len() as u64) as u32;
            ctx.stats.bytes_after_end += (data.len() - kept.len()) as u64;
            ctx.stats.snaplen_bytes_dropped += u64::from(missing - kept_missing);
            (kept, kept_missing)
        } else {
            (data, missing)
        };
        if !data.is_empty() {
            self.recent
                .record(ctx.settings.overlap_check_bytes, self.next_seq, data);
            ctx.stats.bytes_delivered += data.len() as u64;
            deliver(Chunk::Data(data));
            self.advance(data.len() as u64);
        }
        if missing > 0 {
            ctx.stats.snaplen_gap_bytes += u64::from(missing);
            self.emit_gap(ctx, u64::from(missing), deliver);
        }
    }

    fn emit_gap(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        len: u64,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) {
        let len = len.min(self.room_before_fin());
        if len == 0 {
            return;
        }
        ctx.stats.gaps += 1;
        ctx.stats.gap_bytes += len;
        deliver(Chunk::Gap(len));
        self.advance(len);
        self.recent.forget();
    }

    /// Declares the hole before the first buffered segment lost.
    fn skip_to_first_buffered(
        &mut self,
        ctx: &mut ReassemblyContext<'_>,
        deliver: &mut dyn FnMut(Chunk<'_>),
    ) {
        if let Some(first) = self.ooo.first() {
            let hole = seq_diff(first.seq, self.next_seq);
            if hole > 0 {
                self.emit_gap(ctx, hole as u64, deliver);
            }
        }
        self.drain(ctx, deliver);
        // Still ahead at the FIN: the gap stopped there, so what is buffered
        // lies past the end of the direction and never counts. (Ahead before
        // the FIN is only the next hole: that data is kept.)
        if self.room_before_fin() == 0
            && self
                .ooo
                .first()
                .is_some_and(|f| seq_diff(f.seq, self.next_seq) > 0)
        {
            ctx.stats.segments_after_end += self.ooo.len() as u64;
            self.release_buffered(ctx);
        }
    }

    /// Discards what is buffered: it lies past the end of the direction
    /// (callers deliver everything before it first).
    fn release_buffered(&mut self, ctx: &mut ReassemblyContext<'_>) {
        ctx.stats.bytes_after_end += self.ooo_bytes as u64;
        ctx.stats.snaplen_bytes_dropped +=
            self.ooo.iter().map(|s| u64::from(s.missing)).sum::<u64>();
        *ctx.worker_ooo_bytes = ctx.worker_ooo_bytes.saturating_sub(self.ooo_bytes);
        self.ooo = Vec::new();
        self.ooo_bytes = 0;
    }

    /// Delivers buffered segments that are now in order.
    fn drain(&mut self, ctx: &mut ReassemblyContext<'_>, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(first) = self.ooo.first() {
            if seq_diff(first.seq, self.next_seq) > 0 {
                break;
            }
            let seg = self.ooo.remove(0);
            self.ooo_bytes -= seg.data.len();
            *ctx.worker_ooo_bytes = ctx.worker_ooo_bytes.saturating_sub(seg.data.len());
            if seq_diff(seg.end(), self.next_seq) <= 0 {
                // Entirely covered by what was delivered before it.
                ctx.stats.segments_retransmitted += 1;
                ctx.stats.bytes_retransmitted += seg.data.len() as u64;
                ctx.stats.snaplen_bytes_dropped += u64::from(seg.missing);
                if self.recent.matches(seg.seq, &seg.data) == Some(false) {
                    ctx.stats.overlaps_inconsistent += 1;
                }
                continue;
            }
            self.deliver_overlapping(ctx, seg.seq, &seg.data, seg.missing, deliver);
        }
        if self.ooo.is_empty() && self.ooo.capacity() > 16 {
            self.ooo = Vec::new();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Collects the stream as delivered: bytes, with `#N#` for a gap of N.
    struct Harness {
        settings: FlowSettings,
        stats: FlowStats,
        worker: usize,
        r: Reassembler,
        out: Vec<u8>,
        /// Data bytes delivered (`out` without its gap markers).
        delivered_data: u64,
        ended: bool,
    }

    impl Harness {
        fn new() -> Self {
            Self::with(FlowSettings::default())
        }
        fn with(settings: FlowSettings) -> Self {
            Harness {
                settings,
                stats: FlowStats::default(),
                worker: 0,
                r: Reassembler::default(),
                out: Vec::new(),
                delivered_data: 0,
                ended: false,
            }
        }
        /// Runs one reassembler call, recording what it delivers as text
        /// (`#N#` for a gap of N) and whether it ended the direction.
        fn call(
            &mut self,
            op: impl FnOnce(
                &mut Reassembler,
                &mut ReassemblyContext<'_>,
                &mut dyn FnMut(Chunk<'_>),
            ) -> bool,
        ) {
            let out = &mut self.out;
            let delivered_data = &mut self.delivered_data;
            let mut ctx = ReassemblyContext {
                settings: &self.settings,
                stats: &mut self.stats,
                worker_ooo_bytes: &mut self.worker,
                worker_ooo_cap: self.settings.max_ooo_bytes,
            };
            let ended = op(&mut self.r, &mut ctx, &mut |c| match c {
                Chunk::Data(d) => {
                    *delivered_data += d.len() as u64;
                    out.extend_from_slice(d);
                }
                Chunk::Gap(n) => out.extend_from_slice(format!("#{n}#").as_bytes()),
            });
            self.ended |= ended;
            self.check_ledger();
        }
        /// After every call, each byte fed in is accounted for exactly:
        /// delivered, discarded for a counted reason, or still buffered.
        fn check_ledger(&self) {
            let st = &self.stats;
            assert_eq!(st.bytes_delivered, self.delivered_data, "bytes_delivered");
            assert_eq!(self.worker, self.r.ooo_bytes, "worker gauge");
            assert_eq!(
                st.payload_bytes_in,
                st.payload_bytes_accounted() + self.r.ooo_bytes as u64,
                "payload ledger: {st:?}"
            );
            let missing_buffered: u64 = self.r.ooo.iter().map(|s| u64::from(s.missing)).sum();
            assert_eq!(
                st.snaplen_bytes_in,
                st.snaplen_gap_bytes + st.snaplen_bytes_dropped + missing_buffered,
                "snaplen ledger: {st:?}"
            );
        }
        fn seg_full(&mut self, seq: u32, syn: bool, fin: bool, data: &[u8], missing: u32) {
            self.stats.payload_bytes_in += data.len() as u64;
            self.stats.snaplen_bytes_in += u64::from(missing);
            self.call(|r, ctx, deliver| r.on_segment(ctx, seq, syn, fin, data, missing, deliver));
        }
        fn seg(&mut self, seq: u32, data: &[u8]) {
            self.seg_full(seq, false, false, data, 0);
        }
        fn ack(&mut self, ack: u32) {
            self.call(|r, ctx, deliver| r.on_peer_ack(ctx, ack, deliver));
        }
        fn flush(&mut self) {
            self.call(|r, ctx, deliver| {
                r.flush(ctx, deliver);
                false
            });
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.out).into_owned()
        }
    }

    #[test]
    fn in_order_after_syn() {
        let mut h = Harness::new();
        h.seg_full(99, true, false, b"", 0);
        h.seg(100, b"hello ");
        h.seg(106, b"world");
        h.seg_full(111, false, true, b"", 0);
        assert_eq!(h.text(), "hello world");
        assert!(h.ended);
    }

    #[test]
    fn reorder_is_buffered_then_delivered() {
        let mut h = Harness::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg(4, b"def");
        h.seg(7, b"ghi");
        assert_eq!(h.text(), "");
        assert_eq!(h.worker, 6);
        h.seg(1, b"abc");
        assert_eq!(h.text(), "abcdefghi");
        assert_eq!(h.worker, 0);
        assert_eq!(h.stats.segments_out_of_order, 2);
    }

    #[test]
    fn identical_retransmission_is_dropped() {
        let mut h = Harness::new();
        h.seg(1, b"abc");
        h.seg(1, b"abc");
        h.seg(4, b"def");
        assert_eq!(h.text(), "abcdef");
        assert_eq!(h.stats.segments_retransmitted, 1);
        assert_eq!(h.stats.overlaps_inconsistent, 0);
    }

    #[test]
    fn recycled_window_only_vouches_for_its_own_flow() {
        // The first flow leaves "GET /a" in a ring that goes back to the
        // thread's spares; the next flow on this thread gets it.
        let mut first = Harness::new();
        first.seg_full(0, true, false, b"", 0);
        first.seg(1, b"GET /a");
        first.seg_full(7, false, true, b"", 0);
        assert!(first.ended);
        let mut next = Harness::new();
        next.seg(1, b"GE");
        // Only the two bytes this flow delivered are compared: the rest of
        // the retransmission lies outside its window, stale bytes or not.
        next.seg(1, b"GET /b");
        assert_eq!(next.stats.overlaps_inconsistent, 0);
        next.seg(1, b"XE");
        assert_eq!(next.stats.overlaps_inconsistent, 1);
        assert_eq!(next.text(), "GET /b");
    }

    #[test]
    fn comparison_window_grows_with_what_was_delivered() {
        let mut h = Harness::new();
        h.seg(1, b"GET /a HTTP/1.1");
        // A short direction holds the smallest window, not the whole 4 KiB.
        assert_eq!(h.r.heap_bytes(), MIN_RING_BYTES);
        let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        h.seg(16, &body);
        assert_eq!(h.r.heap_bytes(), 4096);
        // Bytes delivered before each growth are still compared: the first
        // segment's retransmission with other bytes is caught...
        h.seg(1, b"GET /b HTTP/1.1");
        assert_eq!(h.stats.overlaps_inconsistent, 1);
        // ...and an identical one is not.
        h.seg(1, b"GET /a HTTP/1.1");
        h.seg(16, &body[..100]);
        assert_eq!(h.stats.overlaps_inconsistent, 1);
        // Never more than `overlap_check_bytes`, however much is delivered.
        h.seg(3016, &vec![b'x'; 100_000]);
        assert_eq!(h.r.heap_bytes(), 4096);
    }

    #[test]
    fn retransmission_with_different_bytes_keeps_first_and_counts() {
        let mut h = Harness::new();
        h.seg(1, b"GET /a");
        h.seg(1, b"GET /b");
        assert_eq!(h.text(), "GET /a");
        assert_eq!(h.stats.overlaps_inconsistent, 1);
    }

    #[test]
    fn partial_overlap_delivers_only_new_bytes() {
        let mut h = Harness::new();
        h.seg(1, b"abcd");
        h.seg(3, b"cdXY");
        assert_eq!(h.text(), "abcdXY");
        h.seg(5, b"ZZ"); // differs from delivered "XY"
        assert_eq!(h.stats.overlaps_inconsistent, 1);
    }

    #[test]
    fn overlapping_buffered_segments_first_in_sequence_wins() {
        let mut h = Harness::new();
        h.seg(1, b"a");
        h.seg(4, b"DEF");
        h.seg(3, b"cdX"); // overlaps "DE" with "dX"
        h.seg(2, b"b");
        assert_eq!(h.text(), "abcdXF");
        assert_eq!(h.stats.overlaps_inconsistent, 1);
    }

    #[test]
    fn sequence_wraparound() {
        let mut h = Harness::new();
        let start = u32::MAX - 2;
        h.seg_full(start - 1, true, false, b"", 0);
        h.seg(start, b"abc");
        h.seg(0, b"def"); // wrapped
        h.seg(3, b"ghi");
        assert_eq!(h.text(), "abcdefghi");
        // Out of order across the wrap.
        let mut h = Harness::new();
        h.seg(u32::MAX - 1, b"ab");
        h.seg(2, b"ef");
        h.seg(0, b"cd");
        assert_eq!(h.text(), "abcdef");
    }

    #[test]
    fn ack_beyond_hole_declares_gap() {
        let mut h = Harness::new();
        h.seg(1, b"abc");
        h.seg(10, b"jkl");
        h.ack(8); // receiver has bytes up to 8: still before buffered 10
        assert_eq!(h.text(), "abc");
        h.ack(13);
        assert_eq!(h.text(), "abc#6#jkl");
        assert_eq!(h.stats.gaps, 1);
        assert_eq!(h.stats.gap_bytes, 6);
        // Acknowledged but never seen, nothing buffered: a lost segment.
        h.ack(20);
        assert_eq!(h.text(), "abc#6#jkl#7#");
        assert_eq!(h.stats.gaps_acked, 1);
        h.seg(20, b"x");
        assert_eq!(h.text(), "abc#6#jkl#7#x");
    }

    #[test]
    fn midstream_start_without_syn() {
        let mut h = Harness::new();
        h.seg(5000, b"HTTP/1.1 200 OK\r\n");
        assert_eq!(h.text(), "HTTP/1.1 200 OK\r\n");
        assert_eq!(h.stats.directions_started_midstream, 1);
    }

    /// The cap gives up the oldest hole and bounds memory; what lies behind
    /// the next hole stays buffered for it (found by the byte ledger: it was
    /// thrown away and counted as data after the end, with no FIN anywhere).
    #[test]
    fn caps_force_gap_and_keep_data_behind_the_next_hole() {
        let settings = FlowSettings {
            max_ooo_segments_per_direction: 2,
            ..FlowSettings::default()
        };
        let mut h = Harness::with(settings);
        h.seg(1, b"a");
        h.seg(3, b"c");
        h.seg(5, b"e");
        h.seg(7, b"g"); // cap: hole at 2 given up, "c" delivered, "e" kept
        assert_eq!(h.text(), "a#1#c");
        assert!(h.stats.ooo_cap_gaps >= 1);
        assert!(h.r.ooo.len() <= 2);
        assert_eq!(h.r.buffered_bytes(), 2);
        h.flush();
        assert_eq!(h.text(), "a#1#c#1#e#1#g");
        assert_eq!(h.stats.segments_after_end, 0);
        assert_eq!(h.stats.bytes_after_end, 0);
        // Acknowledging past the first hole only gives up that one too.
        let mut h = Harness::new();
        h.seg(1, b"a");
        h.seg(3, b"c");
        h.seg(5, b"e");
        h.ack(4);
        assert_eq!(h.text(), "a#1#c");
        h.seg(4, b"d");
        assert_eq!(h.text(), "a#1#cde");
        assert_eq!(h.stats.bytes_after_end, 0);
    }

    #[test]
    fn flush_reports_holes_and_unseen_tail() {
        let mut h = Harness::new();
        h.seg(1, b"ab");
        h.seg(5, b"ef");
        h.seg_full(7, false, true, b"gh", 0);
        assert!(!h.ended);
        h.flush();
        assert_eq!(h.text(), "ab#2#efgh");
        let mut h = Harness::new();
        h.seg(1, b"ab");
        h.seg_full(3, false, true, b"", 0);
        h.seg(6, b"late"); // after the FIN: not delivered
        h.flush();
        assert_eq!(h.text(), "ab");
    }

    #[test]
    fn snaplen_cut_becomes_gap() {
        let mut h = Harness::new();
        h.seg_full(1, false, false, b"abc", 5);
        h.seg(9, b"xyz");
        assert_eq!(h.text(), "abc#5#xyz");
    }

    #[test]
    fn rst_mid_body_flushes_buffered_with_gap() {
        let mut h = Harness::new();
        h.seg(1, b"body-part-1");
        h.seg(20, b"tail");
        h.flush(); // what the flow does on RST
        assert_eq!(h.text(), "body-part-1#8#tail");
        assert_eq!(h.worker, 0);
    }

    #[test]
    fn data_after_end_is_counted_not_delivered() {
        let mut h = Harness::new();
        h.seg_full(1, false, true, b"a", 0);
        assert!(h.ended);
        h.seg(2, b"late");
        assert_eq!(h.text(), "a");
        assert_eq!(h.stats.segments_after_end, 1);
    }

    /// Fuzz regression (reassembly-ack-of-fin-after-hole): the ACK of a FIN
    /// behind a hole covers the FIN's own sequence number, which is not data.
    #[test]
    fn ack_of_fin_after_hole_ends_the_direction() {
        let mut h = Harness::new();
        h.seg_full(100, true, false, b"", 0);
        h.seg(101, b"abc");
        h.seg_full(110, false, true, b"", 0); // 104..110 lost, then FIN
        assert!(!h.ended);
        h.ack(111);
        assert_eq!(h.text(), "abc#6#");
        assert!(h.ended, "the FIN is reached after the gap");
        h.seg(111, b"after-fin");
        assert_eq!(h.text(), "abc#6#");
    }

    /// Fuzz regressions (reassembly-*-huge-flush-gap): acknowledgements far
    /// beyond the FIN, or old ones, never make a gap past the FIN.
    #[test]
    fn stale_or_wild_acks_never_gap_past_the_fin() {
        let mut h = Harness::new();
        h.seg(1, b"ab");
        h.seg_full(10, false, true, b"xy", 0); // FIN at 12
        h.ack(0x8000_0000);
        h.ack(0x7fff_0000);
        h.flush();
        assert_eq!(h.text(), "ab#7#xy");
        assert!(h.stats.gap_bytes <= 7);
        // Data that would run past the FIN is cut there.
        let mut h = Harness::new();
        h.seg_full(1, false, true, b"", 0); // FIN at 1, nothing before
        h.seg(1, b"late");
        assert_eq!(h.text(), "");
    }

    /// Fuzz regression (reassembly timeout): with the FIN known, buffered
    /// data beyond it could not be skipped to and the cap loop never ended.
    #[test]
    fn buffer_cap_with_fin_inside_a_hole_terminates() {
        let settings = FlowSettings {
            max_ooo_segments_per_direction: 1,
            ..FlowSettings::default()
        };
        let mut h = Harness::with(settings);
        h.seg(1, b"a");
        h.seg(5, b"e"); // buffered
        h.seg_full(3, false, true, b"", 0); // FIN at 3, inside the hole
        h.seg(9, b"i"); // cap reached: must give up, not loop
        h.seg(11, b"k");
        h.flush();
        assert_eq!(h.text(), "a#1#"); // byte 2 lost, then the FIN
        assert_eq!(h.worker, 0);
    }

    /// Fuzz regression (reassembly-fin-with-data-behind-buffered-tail): a
    /// FIN segment whose data reaches a buffered segment must not let that
    /// segment's tail (here snaplen-missing bytes) run past the FIN.
    #[test]
    fn fin_is_known_before_its_segment_drains_the_buffer() {
        let mut h = Harness::new();
        h.seg_full(0, true, false, b"", 0);
        h.seg_full(5, false, false, b"ef", 20); // buffered, tail reaches 27
        h.seg_full(1, false, true, b"abcdefgh", 0); // FIN at 9
        assert_eq!(h.text(), "abcdefgh");
        assert!(h.ended);
    }

    /// Fuzz regression (reassembly-ring-wrap): with a window that is not a
    /// power of two, ring positions jumped at the 2^32 wrap and identical
    /// retransmissions were called inconsistent.
    #[test]
    fn overlap_check_is_continuous_across_sequence_wrap() {
        let settings = FlowSettings {
            overlap_check_bytes: 1675,
            ..FlowSettings::default()
        };
        let mut h = Harness::with(settings);
        let isn = u32::MAX - 11;
        let stream: Vec<u8> = (0..60u8).collect();
        let at = |i: usize| isn.wrapping_add(1 + i as u32);
        h.seg_full(isn, true, false, b"", 0);
        h.seg(at(0), &stream[0..10]);
        h.seg(at(25), &stream[25..43]); // buffered, crosses the wrap
        h.seg(at(10), &stream[10..32]); // overlaps the buffered one
        h.seg(at(0), &stream[0..43]); // identical retransmission
        assert_eq!(h.out, stream[..43].to_vec());
        assert_eq!(h.stats.overlaps_inconsistent, 0);
    }

    /// Fuzz regression (reassembly-out-of-window): a segment half the
    /// sequence space away is dropped, not turned into a 2 GiB gap.
    #[test]
    fn segments_beyond_any_window_are_dropped() {
        let mut h = Harness::new();
        h.seg_full(0x8000_0000, true, false, b"", 0);
        h.seg(0, b"late"); // 2^31 - 1 ahead
        h.ack(0x8000_0001u32.wrapping_add(0x7fff_0000));
        h.flush();
        assert_eq!(h.text(), "");
        assert_eq!(h.stats.segments_out_of_window, 1);
        assert_eq!(h.stats.gap_bytes, 0);
    }

    /// A seeded generator of numbers below `n`, so random tests replay.
    fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        }
    }

    /// Reference model: random segmentations, reorderings and duplicates of a
    /// stream always reassemble to the stream itself when nothing is lost.
    #[test]
    fn reference_model_random_orders() {
        let stream: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut rnd = xorshift(0x1234_5678);
        for round in 0..200 {
            let isn = (rnd(u64::from(u32::MAX)) as u32).wrapping_add(round);
            let mut segs = Vec::new();
            let mut at = 0usize;
            while at < stream.len() {
                let len = 1 + rnd(120) as usize;
                let end = (at + len).min(stream.len());
                segs.push((at, end));
                at = end;
            }
            // local shuffles and duplicates, as a lossy path would produce
            for i in 0..segs.len() {
                let j = (i + rnd(4) as usize).min(segs.len() - 1);
                segs.swap(i, j);
            }
            for _ in 0..5 {
                let i = rnd(segs.len() as u64) as usize;
                segs.push(segs[i]);
            }
            let mut h = Harness::new();
            h.seg_full(isn, true, false, b"", 0);
            for (s, e) in segs {
                h.seg(isn.wrapping_add(1 + s as u32), &stream[s..e]);
            }
            h.flush();
            assert_eq!(h.out, stream, "round {round}");
            assert_eq!(h.stats.overlaps_inconsistent, 0);
            assert_eq!(h.worker, 0);
        }
    }

    // Byte ledger. `Harness::call` checks after every call that each payload
    // byte fed in is delivered, discarded for a counted reason, or buffered;
    // the tests below also pin which bucket each byte lands in.

    /// The (in, delivered, retransmitted, before start, after end, out of
    /// window) payload counters.
    fn buckets(h: &Harness) -> [u64; 6] {
        let s = &h.stats;
        [
            s.payload_bytes_in,
            s.bytes_delivered,
            s.bytes_retransmitted,
            s.bytes_before_start,
            s.bytes_after_end,
            s.bytes_out_of_window,
        ]
    }

    #[test]
    fn ledger_overlap_with_different_bytes_counts_the_old_part() {
        let mut h = Harness::new();
        h.seg(1, b"abcd");
        h.seg(3, b"XYZW"); // "XY" over delivered "cd": dropped, "ZW" new
        assert_eq!(h.text(), "abcdZW");
        assert_eq!(buckets(&h), [8, 6, 2, 0, 0, 0]);
        assert_eq!(h.stats.overlaps_inconsistent, 1);
    }

    #[test]
    fn ledger_retransmissions_of_delivered_and_buffered_bytes() {
        let mut h = Harness::new();
        h.seg(1, b"abc");
        h.seg(7, b"ghi");
        h.seg(7, b"ghi"); // buffered twice
        assert_eq!(h.r.buffered_bytes(), 6);
        h.seg(4, b"def"); // delivers both; the second copy is a duplicate
        h.seg(1, b"abc");
        assert_eq!(h.text(), "abcdefghi");
        assert_eq!(buckets(&h), [15, 9, 6, 0, 0, 0]);
        assert_eq!(h.r.buffered_bytes(), 0);
    }

    #[test]
    fn ledger_ooo_cap_overflow_delivers_after_a_gap() {
        let settings = FlowSettings {
            max_ooo_bytes_per_direction: 3,
            ..FlowSettings::default()
        };
        let mut h = Harness::with(settings);
        h.seg(1, b"a");
        h.seg(3, b"cc"); // buffered
        h.seg(6, b"ff"); // over the cap: hole 2 given up, "cc" delivered
        assert_eq!(h.text(), "a#1#cc");
        h.seg(20, b"tttt"); // larger than the cap even when empty
        assert_eq!(h.text(), "a#1#cc#1#ff#12#tttt");
        assert!(h.stats.ooo_cap_gaps >= 2);
        // Nothing captured was lost, only the holes.
        assert_eq!(buckets(&h), [9, 9, 0, 0, 0, 0]);
        assert_eq!(h.stats.gap_bytes, 14);
    }

    #[test]
    fn ledger_data_after_fin_is_counted_after_end() {
        // Cut at the FIN inside a segment, and a buffered copy covered by it.
        let mut h = Harness::new();
        h.seg(1, b"a");
        h.seg_full(5, false, true, b"e", 0); // buffered, FIN at 6
        h.seg(2, b"bcdXYZ"); // "bcdX" fits before the FIN, "YZ" does not
        assert_eq!(h.text(), "abcdX");
        assert!(h.ended);
        assert_eq!(buckets(&h), [8, 5, 1, 0, 2, 0]);
        h.seg(6, b"late");
        assert_eq!(buckets(&h), [12, 5, 1, 0, 6, 0]);
        // A late retransmission of the stream: 5 old bytes, 1 past the FIN.
        h.seg(1, b"abcdXY");
        assert_eq!(buckets(&h), [18, 5, 6, 0, 7, 0]);
        // Buffered bytes past a FIN inside a hole are released at the flush.
        let mut h = Harness::new();
        h.seg(1, b"a");
        h.seg(10, b"jj");
        h.seg_full(3, false, true, b"", 0); // FIN at 3, before "jj"
        assert_eq!(h.r.buffered_bytes(), 2);
        h.flush();
        assert_eq!(h.text(), "a#1#");
        assert_eq!(buckets(&h), [3, 1, 0, 0, 2, 0]);
        assert_eq!(h.worker, 0);
        // New data past a known FIN is dropped on arrival.
        h.seg(30, b"zz");
        assert_eq!(buckets(&h), [5, 1, 0, 0, 4, 0]);
    }

    #[test]
    fn ledger_out_of_window_bytes() {
        let mut h = Harness::new();
        h.seg(0, b"ab");
        h.seg(0x8000_0000, b"far"); // 2^31 away from the stream
        assert_eq!(buckets(&h), [5, 2, 0, 0, 0, 3]);
    }

    #[test]
    fn ledger_midstream_pickup_bytes_before_the_first_segment() {
        let mut h = Harness::new();
        h.seg(5000, b"HTTP/1.1 200 OK\r\n");
        // Reordered: the segment before the first one seen arrives later.
        h.seg(4990, b"0123456789");
        // Straddles the start: 5 bytes before it, 5 already delivered.
        h.seg(4995, b"56789HTTP/");
        assert_eq!(h.text(), "HTTP/1.1 200 OK\r\n");
        assert_eq!(buckets(&h), [37, 17, 5, 15, 0, 0]);
        // After a SYN the start is the first data byte.
        let mut h = Harness::new();
        h.seg_full(99, true, false, b"", 0);
        h.seg(90, b"0123456789"); // ends at the SYN's own number
        h.seg(100, b"ok");
        assert_eq!(buckets(&h), [12, 2, 0, 10, 0, 0]);
    }

    #[test]
    fn ledger_snaplen_cut_bytes() {
        let mut h = Harness::new();
        h.seg_full(1, false, false, b"abc", 5); // 3 captured, 5 cut
        assert_eq!(h.text(), "abc#5#");
        // The range again, cut later: 8 old bytes, 2 new cut ones.
        h.seg_full(1, false, false, b"abcdefgh", 2);
        assert_eq!(h.text(), "abc#5##2#");
        // Cut early: 2 old captured, 8 old cut (dropped), 12 new cut (gap).
        h.seg_full(1, false, false, b"ab", 20);
        assert_eq!(h.text(), "abc#5##2##12#");
        assert_eq!(buckets(&h), [13, 3, 10, 0, 0, 0]);
        assert_eq!(h.stats.snaplen_bytes_in, 27);
        assert_eq!(h.stats.snaplen_gap_bytes, 19);
        assert_eq!(h.stats.snaplen_bytes_dropped, 8);
        // After the FIN both kinds are dropped.
        h.seg_full(23, false, true, b"", 0);
        h.seg_full(23, false, false, b"zz", 3);
        assert_eq!(buckets(&h), [15, 3, 10, 0, 2, 0]);
        assert_eq!(h.stats.snaplen_bytes_dropped, 11);
        // A cut segment crossing a known FIN keeps only what is before it.
        let mut h = Harness::new();
        h.seg(1, b"a");
        h.seg_full(6, false, true, b"", 0); // FIN at 6
        h.seg_full(2, false, false, b"bc", 10); // 4 bytes fit: "bc" + 2 cut
        assert_eq!(h.text(), "abc#2#");
        assert!(h.ended);
        assert_eq!(h.stats.snaplen_gap_bytes, 2);
        assert_eq!(h.stats.snaplen_bytes_dropped, 8);
    }

    /// Random segmentations with loss, duplicates, snaplen cuts, stray
    /// segments, acknowledgements, small buffer caps and a FIN: the ledger
    /// (checked after every call) always balances, and nothing stays
    /// buffered after the flush.
    #[test]
    fn ledger_balances_under_random_loss_and_overlap() {
        let stream: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..300u32 {
            let settings = FlowSettings {
                max_ooo_segments_per_direction: 1 + rnd(8) as usize,
                max_ooo_bytes_per_direction: 50 + rnd(800) as usize,
                overlap_check_bytes: rnd(256) as usize,
                ..FlowSettings::default()
            };
            let mut h = Harness::with(settings);
            let isn = rnd(u64::from(u32::MAX)) as u32;
            let at = |i: usize| isn.wrapping_add(1 + i as u32);
            if rnd(2) == 0 {
                h.seg_full(isn, true, false, b"", 0);
            }
            let mut segs = Vec::new();
            let mut pos = 0usize;
            while pos < stream.len() {
                let end = (pos + 1 + rnd(150) as usize).min(stream.len());
                segs.push((pos, end));
                pos = end;
            }
            for i in 0..segs.len() {
                let j = (i + rnd(5) as usize).min(segs.len() - 1);
                segs.swap(i, j);
            }
            for (n, &(s, e)) in segs.iter().enumerate() {
                match rnd(20) {
                    0 => continue, // lost
                    1 => {
                        // cut by the snaplen
                        let keep = rnd((e - s) as u64) as usize;
                        h.seg_full(
                            at(s),
                            false,
                            false,
                            &stream[s..s + keep],
                            (e - s - keep) as u32,
                        );
                    }
                    2 => h.seg(at(s), &stream[s..e]), // duplicated
                    3 => h.ack(at(s)),
                    4 => h.seg(at(s).wrapping_add(0x8000_0000), b"stray"),
                    5 if round % 3 == 0 => {
                        // a different copy of the range
                        let other: Vec<u8> = stream[s..e].iter().map(|b| b ^ 1).collect();
                        h.seg(at(s), &other);
                    }
                    _ => {}
                }
                let fin = e == stream.len() && n % 2 == 0;
                h.seg_full(at(s), false, fin, &stream[s..e], 0);
            }
            h.seg_full(at(stream.len()), false, true, b"", 0);
            h.seg(at(stream.len() + 10), b"after the fin");
            h.flush();
            assert_eq!(h.r.buffered_bytes(), 0, "round {round}");
            assert_eq!(h.stats.payload_bytes_in, h.stats.payload_bytes_accounted());
            // Nothing past the FIN or outside the stream was delivered.
            let sent = h.stats.bytes_delivered + h.stats.gap_bytes;
            assert!(sent <= stream.len() as u64, "round {round}: {sent}");
        }
    }
}
