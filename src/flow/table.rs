//! The flow table of one worker. Flows are kept in least-recently-active order,
//! so idle expiry and capacity eviction both take from the front in O(1).
//! A closed flow is finished at once (its exchanges leave immediately) and its
//! key lingers in a small `closing` table for `closed_timeout_secs`, so late
//! retransmissions and final ACKs do not start a bogus mid-stream flow.

use super::reassembly::{Chunk, Reassembler, ReassemblyContext};
use super::{FlowKey, FlowStats, Segment, Side, WorkerLimits};
use crate::config::{FlowSettings, HttpSettings};
use crate::exchange::{Anomaly, Direction, Exchanges, Timestamp};
use crate::http1::{ConnInfo, HttpConnection, HttpContext, HttpStats};
use hashlink::LinkedHashMap;

/// Idle sweeps run at whole multiples of this much packet time.
pub const SWEEP_INTERVAL_NANOS: u64 = 1_000_000_000;

/// The first sweep time at or after `nanos`.
const fn ceil_to_sweep(nanos: u64) -> u64 {
    nanos
        .div_ceil(SWEEP_INTERVAL_NANOS)
        .saturating_mul(SWEEP_INTERVAL_NANOS)
}

struct Flow {
    id: u64,
    key: FlowKey,
    last_ts: Timestamp,
    dirs: [Reassembler; 2],
    /// Which side is the client, once known (SYN, SYN-ACK, first payload, ports).
    client_side: Option<Side>,
    /// Created when the first byte of either direction is delivered.
    http: Option<HttpConnection>,
    /// An evasion indicator seen before any byte was delivered, for the
    /// first message of that side.
    pending_evasion: Option<(Side, Anomaly)>,
    /// What the table charged this flow against its memory share, as of
    /// its last segment ([`Flow::footprint`]).
    charged: usize,
}

impl Flow {
    fn new(id: u64, key: FlowKey, ts: Timestamp) -> Self {
        Flow {
            id,
            key,
            last_ts: ts,
            dirs: [Reassembler::default(), Reassembler::default()],
            client_side: None,
            http: None,
            pending_evasion: None,
            charged: 0,
        }
    }

    /// Flags the message `side` is sending (or its next one) with an
    /// evasion indicator found below TCP.
    fn evasion(&mut self, side: Side, a: Anomaly) {
        match self.http.as_mut() {
            Some(http) => http.on_evasion(direction(self.client_side, side), a),
            None => self.pending_evasion = Some((side, a)),
        }
    }

    /// Bytes this flow holds: its table entry, both directions' buffers and
    /// the HTTP state with its queued requests and bodies.
    fn footprint(&self) -> usize {
        let [a, b] = &self.dirs;
        FlowTable::bytes_per_idle_flow()
            .saturating_add(a.heap_bytes())
            .saturating_add(b.heap_bytes())
            .saturating_add(self.http.as_ref().map_or(0, HttpConnection::heap_bytes))
    }
}

/// What a key lingering in the `closing` table costs: key, time and the
/// map's links.
const CLOSING_ENTRY_BYTES: usize = std::mem::size_of::<FlowKey>()
    + std::mem::size_of::<Timestamp>()
    + 4 * std::mem::size_of::<usize>();

/// How a flow left the table, for the counters.
#[derive(Clone, Copy)]
enum EndReason {
    Closed,
    Idle,
    Capacity,
    Memory,
    Reused,
    EndOfCapture,
}

pub struct FlowTable {
    open: LinkedHashMap<FlowKey, Flow>,
    /// Keys of recently closed flows and when they closed.
    closing: LinkedHashMap<FlowKey, Timestamp>,
    shared: Shared,
    /// Packet time (ns) of the next idle sweep.
    next_sweep_ns: u64,
}

/// Everything but the tables, so a flow borrowed from the table and the
/// counters can be used at the same time.
struct Shared {
    flow_settings: FlowSettings,
    http_settings: HttpSettings,
    limits: WorkerLimits,
    /// Sum of the open flows' `charged` bytes.
    flow_bytes: usize,
    stats: FlowStats,
    http_stats: HttpStats,
    worker_ooo_bytes: usize,
    /// See [`FlowTable::defer_decoding`].
    defer_decoding: bool,
}

impl FlowTable {
    pub fn new(
        flow_settings: &FlowSettings,
        http_settings: &HttpSettings,
        limits: WorkerLimits,
    ) -> Self {
        FlowTable {
            open: LinkedHashMap::new(),
            closing: LinkedHashMap::new(),
            shared: Shared {
                flow_settings: flow_settings.clone(),
                http_settings: http_settings.clone(),
                limits,
                flow_bytes: 0,
                stats: FlowStats::default(),
                http_stats: HttpStats::default(),
                worker_ooo_bytes: 0,
                defer_decoding: false,
            },
            next_sweep_ns: 0,
        }
    }

    pub fn stats(&self) -> &FlowStats {
        &self.shared.stats
    }

    pub fn http_stats(&self) -> &HttpStats {
        &self.shared.http_stats
    }

    /// Whether exchanges completed from now on may leave building their text
    /// fields and inflating gzip bodies to their consumer, who must then run
    /// [`crate::http1::finish_decoding`] on them (off by default).
    pub fn defer_decoding(&mut self, defer: bool) {
        self.shared.defer_decoding = defer;
    }

    pub fn open_flows(&self) -> usize {
        self.open.len()
    }

    /// Bytes the table holds: every open flow's footprint (as of its last
    /// segment) and the keys lingering after a close. Kept within
    /// `WorkerLimits::memory_bytes` by evicting the least recently active
    /// flows, so at most one flow's growth past it is ever held.
    pub fn memory_bytes(&self) -> usize {
        self.shared
            .flow_bytes
            .saturating_add(self.closing.len() * CLOSING_ENTRY_BYTES)
    }

    /// What one flow that buffers nothing costs the table: its entry (key
    /// and state, one allocation) plus the hash-map slot and list links.
    /// The memory budget charges each flow this plus what it buffers
    /// (out-of-order bytes, overlap window, HTTP state, queued requests).
    pub fn bytes_per_idle_flow() -> usize {
        std::mem::size_of::<FlowKey>()
            + std::mem::size_of::<Flow>()
            + 4 * std::mem::size_of::<usize>()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.shared.worker_ooo_bytes
    }

    /// Processes one segment; completed exchanges are appended to `out`.
    /// Idle flows are not swept here: callers run the sweeps due first
    /// ([`FlowTable::next_sweep`]), so each sweep's output can be told apart.
    pub fn process(&mut self, seg: &Segment<'_>, out: &mut Exchanges) {
        if seg.fragment_overlap {
            // A notice about a live connection; it never opens one.
            if let Some(flow) = self.open.get_mut(&seg.key) {
                flow.evasion(seg.side, Anomaly::OverlappingFragments);
            }
            return;
        }
        self.shared.stats.payload_bytes_in += seg.payload.len() as u64;
        self.shared.stats.snaplen_bytes_in += u64::from(seg.missing_payload);
        let opens_connection = seg.flags.syn() && !seg.flags.ack();
        let idle_timeout = self.shared.flow_settings.idle_timeout_secs;
        let FlowTable {
            open,
            closing,
            shared,
            ..
        } = self;

        // Fast path: a live flow, moved to the back (most recently active).
        let mut replaced = None;
        if let Some(flow) = open.to_back(&seg.key) {
            if seg.ts.secs_since(flow.last_ts) >= idle_timeout {
                replaced = Some(EndReason::Idle);
            } else if opens_connection && is_new_connection(flow, seg) {
                replaced = Some(EndReason::Reused);
            } else {
                let ended = shared.feed(flow, seg, out);
                shared.recharge(flow);
                if ended {
                    self.close(seg, out);
                } else {
                    self.shed_memory(out);
                }
                return;
            }
        }

        // Slow path: the first packet of a flow.
        match replaced {
            Some(reason) => {
                if let Some(old) = open.remove(&seg.key) {
                    shared.end_flow(old, reason, out);
                }
            }
            None => {
                // The linger time is checked here, not only by the periodic
                // sweep, so the outcome does not depend on how often a worker
                // sweeps (which depends on the worker count).
                let linger = shared.flow_settings.closed_timeout_secs;
                if let Some(&closed_at) = closing.get(&seg.key) {
                    let lingering = seg.ts.secs_since(closed_at) < linger;
                    if lingering && !opens_connection {
                        shared.stats.packets_after_close += 1;
                        shared.stats.bytes_after_close += seg.payload.len() as u64;
                        shared.stats.snaplen_bytes_dropped += u64::from(seg.missing_payload);
                        return;
                    }
                    closing.remove(&seg.key);
                }
            }
        }
        if open.len() >= shared.limits.max_flows {
            if let Some((_, victim)) = open.pop_front() {
                shared.end_flow(victim, EndReason::Capacity, out);
            }
        }
        shared.stats.flows_created += 1;
        let mut flow = Flow::new(seg.packet_index, seg.key, seg.ts);
        let ended = shared.feed(&mut flow, seg, out);
        shared.recharge(&mut flow);
        if ended {
            shared.end_flow(flow, EndReason::Closed, out);
            self.remember_closed(seg);
        } else {
            open.insert(seg.key, flow);
            self.shed_memory(out);
        }
    }

    /// Flushes the least recently active flows while the table holds more
    /// than its memory share. The flow just fed is the most recent one and
    /// goes last: it is only evicted when it alone is over the share.
    fn shed_memory(&mut self, out: &mut Exchanges) {
        while self.memory_bytes() > self.shared.limits.memory_bytes {
            if let Some((_, victim)) = self.open.pop_front() {
                self.shared.end_flow(victim, EndReason::Memory, out);
            } else if self.closing.pop_front().is_none() {
                break;
            }
        }
    }

    fn close(&mut self, seg: &Segment<'_>, out: &mut Exchanges) {
        if let Some(flow) = self.open.remove(&seg.key) {
            self.shared.end_flow(flow, EndReason::Closed, out);
        }
        self.remember_closed(seg);
    }

    fn remember_closed(&mut self, seg: &Segment<'_>) {
        self.closing.insert(seg.key, seg.ts);
        if self.closing.len() > self.shared.limits.max_flows {
            self.closing.pop_front();
        }
    }

    /// Ends every open flow (end of capture or shutdown).
    pub fn flush_all(&mut self, out: &mut Exchanges) {
        while let Some((_, flow)) = self.open.pop_front() {
            self.shared.end_flow(flow, EndReason::EndOfCapture, out);
        }
        self.closing.clear();
    }

    /// The next idle sweep due at packet time `now`, if any; advances past it.
    ///
    /// Sweeps run at whole multiples of [`SWEEP_INTERVAL_NANOS`] of packet
    /// time, not whenever a packet happens to reach this table, and a flow
    /// is ended by the first sweep at or after its deadline. So which sweep
    /// ends a flow depends only on that flow's own packets, never on which
    /// other flows share the worker: that keeps the output order the same
    /// whatever the worker count. Sweeps that could not end anything (the
    /// least recently active flow is not due yet) are skipped.
    pub fn next_sweep(&mut self, now: Timestamp) -> Option<Timestamp> {
        let idle_ns = self
            .shared
            .flow_settings
            .idle_timeout_secs
            .saturating_mul(1_000_000_000);
        // The least recently active flow is due first; nothing is due before it.
        let (_, front) = self.open.front()?;
        let due = self.next_sweep_ns.max(ceil_to_sweep(
            front.last_ts.as_nanos().saturating_add(idle_ns),
        ));
        if due > now.as_nanos() || due == u64::MAX {
            return None;
        }
        // Never the same sweep twice, even if packet times went backwards.
        self.next_sweep_ns = due.saturating_add(SWEEP_INTERVAL_NANOS);
        Some(Timestamp(due))
    }

    /// Runs every sweep due at packet time `now`.
    pub fn advance_to(&mut self, now: Timestamp, out: &mut Exchanges) {
        while let Some(at) = self.next_sweep(now) {
            self.expire(at, out);
        }
    }

    /// Ends flows idle for longer than the timeout at packet time `now`.
    pub fn expire(&mut self, now: Timestamp, out: &mut Exchanges) {
        let idle = self.shared.flow_settings.idle_timeout_secs;
        while let Some((_, flow)) = self.open.front() {
            if now.secs_since(flow.last_ts) < idle {
                break;
            }
            if let Some((_, flow)) = self.open.pop_front() {
                self.shared.end_flow(flow, EndReason::Idle, out);
            }
        }
        let linger = self.shared.flow_settings.closed_timeout_secs;
        while let Some((_, &closed_at)) = self.closing.front() {
            if now.secs_since(closed_at) < linger {
                break;
            }
            self.closing.pop_front();
        }
    }
}

impl Shared {
    /// The reassembly and HTTP contexts over this worker's settings and counters.
    fn contexts<'s>(
        &'s mut self,
        out: &'s mut Exchanges,
    ) -> (ReassemblyContext<'s>, HttpContext<'s>) {
        (
            ReassemblyContext {
                settings: &self.flow_settings,
                stats: &mut self.stats,
                worker_ooo_bytes: &mut self.worker_ooo_bytes,
                worker_ooo_cap: self.limits.max_ooo_bytes,
            },
            HttpContext {
                settings: &self.http_settings,
                stats: &mut self.http_stats,
                out,
                defer_decoding: self.defer_decoding,
            },
        )
    }

    /// Runs the segment through reassembly into HTTP. Returns true when the
    /// connection is over (RST, or both directions delivered up to their FIN).
    fn feed(&mut self, flow: &mut Flow, seg: &Segment<'_>, out: &mut Exchanges) -> bool {
        flow.last_ts = seg.ts;
        if flow.client_side.is_none() && seg.flags.syn() {
            flow.client_side = Some(if seg.flags.ack() {
                seg.side.other()
            } else {
                seg.side
            });
        }
        let (mut rctx, mut hctx) = self.contexts(out);
        let Flow {
            id,
            key,
            dirs,
            client_side,
            http,
            pending_evasion,
            ..
        } = flow;
        let [lo_dir, hi_dir] = dirs;
        let (this_dir, peer_dir) = match seg.side {
            Side::FromLo => (lo_dir, hi_dir),
            Side::FromHi => (hi_dir, lo_dir),
        };
        let mut sink = HttpSink {
            ctx: &mut hctx,
            http,
            client_side,
            pending_evasion,
            flow_id: *id,
            key: *key,
            ts: seg.ts,
        };
        let side = seg.side;
        let peer = side.other();

        if seg.flags.rst() {
            // An RST's payload is diagnostic text, not stream data.
            rctx.stats.bytes_with_rst += seg.payload.len() as u64;
            rctx.stats.snaplen_bytes_dropped += u64::from(seg.missing_payload);
            this_dir.flush(&mut rctx, &mut |c| sink.deliver(side, c));
            peer_dir.flush(&mut rctx, &mut |c| sink.deliver(peer, c));
            sink.end_direction(side);
            sink.end_direction(peer);
            return true;
        }
        // The ACK speaks of data the sender received before it sent this
        // segment, so it is applied first: a request lost in capture becomes a
        // gap before the response to it is parsed.
        if seg.flags.ack()
            && peer_dir.on_peer_ack(&mut rctx, seg.ack, &mut |c| sink.deliver(peer, c))
        {
            sink.end_direction(peer);
        }
        let inconsistent_before = rctx.stats.overlaps_inconsistent;
        let ended_this = this_dir.on_segment(
            &mut rctx,
            seg.seq,
            seg.flags.syn(),
            seg.flags.fin(),
            seg.payload,
            seg.missing_payload,
            &mut |c| sink.deliver(side, c),
        );
        if rctx.stats.overlaps_inconsistent != inconsistent_before {
            sink.inconsistent_overlap(side);
        }
        if ended_this {
            sink.end_direction(side);
        }
        this_dir.ended() && peer_dir.ended()
    }

    /// Charges the flow's current footprint in place of its last one.
    fn recharge(&mut self, flow: &mut Flow) {
        let now = flow.footprint();
        self.flow_bytes = self
            .flow_bytes
            .saturating_sub(flow.charged)
            .saturating_add(now);
        flow.charged = now;
    }

    fn end_flow(&mut self, mut flow: Flow, reason: EndReason, out: &mut Exchanges) {
        self.flow_bytes = self.flow_bytes.saturating_sub(flow.charged);
        match reason {
            EndReason::Closed => self.stats.flows_closed += 1,
            EndReason::Idle => self.stats.flows_evicted_idle += 1,
            EndReason::Capacity => self.stats.flows_evicted_capacity += 1,
            EndReason::Memory => self.stats.flows_evicted_memory += 1,
            EndReason::Reused => self.stats.flows_reused_by_syn += 1,
            EndReason::EndOfCapture => self.stats.flows_flushed_at_end += 1,
        }
        let (mut rctx, mut hctx) = self.contexts(out);
        let Flow {
            id,
            key,
            last_ts,
            dirs,
            client_side,
            http,
            pending_evasion,
            ..
        } = &mut flow;
        // Flushed messages take the flow's last packet time, never the time
        // the flush ran, so output does not depend on the worker count.
        let mut sink = HttpSink {
            ctx: &mut hctx,
            http,
            client_side,
            pending_evasion,
            flow_id: *id,
            key: *key,
            ts: *last_ts,
        };
        let [lo_dir, hi_dir] = dirs;
        lo_dir.flush(&mut rctx, &mut |c| sink.deliver(Side::FromLo, c));
        hi_dir.flush(&mut rctx, &mut |c| sink.deliver(Side::FromHi, c));
        sink.finish();
    }
}

/// A SYN on a flow in the table starts a new connection unless it is a
/// retransmission of the SYN that opened it.
fn is_new_connection(flow: &Flow, seg: &Segment<'_>) -> bool {
    let dir = match seg.side {
        Side::FromLo => &flow.dirs[0],
        Side::FromHi => &flow.dirs[1],
    };
    dir.started() && !dir.expects(seg.seq.wrapping_add(1))
}

/// Delivers reassembled chunks of either direction to the connection's HTTP
/// state, deciding client and server roles on the first delivered byte.
struct HttpSink<'c, 'a> {
    ctx: &'c mut HttpContext<'a>,
    http: &'c mut Option<HttpConnection>,
    client_side: &'c mut Option<Side>,
    pending_evasion: &'c mut Option<(Side, Anomaly)>,
    flow_id: u64,
    key: FlowKey,
    ts: Timestamp,
}

/// The direction `side` sends in, given which side is the client.
fn direction(client_side: Option<Side>, side: Side) -> Direction {
    if client_side == Some(side) {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

impl HttpSink<'_, '_> {
    fn direction(&self, side: Side) -> Direction {
        direction(*self.client_side, side)
    }

    fn deliver(&mut self, side: Side, chunk: Chunk<'_>) {
        if self.http.is_none() {
            let key = self.key;
            let client = *self
                .client_side
                .get_or_insert_with(|| guess_client_side(&key, side, chunk));
            *self.http = Some(HttpConnection::new(ConnInfo {
                flow_id: self.flow_id,
                client: key.sender(client),
                server: key.sender(client.other()),
            }));
            if let (Some((early, a)), Some(http)) =
                (self.pending_evasion.take(), self.http.as_mut())
            {
                http.on_evasion(direction(*self.client_side, early), a);
            }
        }
        let dir = self.direction(side);
        if let Some(http) = self.http.as_mut() {
            match chunk {
                Chunk::Data(data) => http.on_data(self.ctx, dir, self.ts, data),
                Chunk::Gap(len) => http.on_gap(self.ctx, dir, self.ts, len),
            }
        }
    }

    /// The segment just fed to `side` contradicted bytes already seen.
    fn inconsistent_overlap(&mut self, side: Side) {
        let dir = self.direction(side);
        if let Some(http) = self.http.as_mut() {
            http.on_evasion(dir, Anomaly::InconsistentRetransmission);
        }
    }

    fn end_direction(&mut self, side: Side) {
        let dir = self.direction(side);
        if let Some(http) = self.http.as_mut() {
            http.on_fin(self.ctx, dir, self.ts);
        }
    }

    fn finish(&mut self) {
        if let Some(mut http) = self.http.take() {
            http.finish(self.ctx, self.ts);
        }
    }
}

/// Roles when the handshake was not captured: what the first bytes say, else
/// the endpoint with the lower port is the server.
fn guess_client_side(key: &FlowKey, side: Side, first: Chunk<'_>) -> Side {
    if let Chunk::Data(data) = first {
        if starts_like_response(data) {
            return side.other();
        }
        if starts_like_request(data) {
            return side;
        }
    }
    let sender_port = key.sender(side).port();
    let receiver_port = key.sender(side.other()).port();
    if receiver_port <= sender_port {
        side
    } else {
        side.other()
    }
}

fn starts_like_response(data: &[u8]) -> bool {
    data.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"HTTP/"))
}

/// An upper-case method token followed by a space.
fn starts_like_request(data: &[u8]) -> bool {
    let token_len = data
        .iter()
        .take(24)
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
        .count();
    token_len > 0 && data.get(token_len) == Some(&b' ')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;

    const SEC: u64 = 1_000_000_000;

    struct Conn {
        key: FlowKey,
        client: Side,
    }

    fn conn(port: u16) -> Conn {
        let (key, client) = FlowKey::new(
            "10.0.0.1".parse().unwrap(),
            port,
            "10.0.0.2".parse().unwrap(),
            80,
        );
        Conn { key, client }
    }

    fn seg<'a>(
        c: &Conn,
        from_client: bool,
        ts_secs: u64,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'a [u8],
    ) -> Segment<'a> {
        Segment {
            ts: Timestamp(ts_secs * SEC),
            packet_index: ts_secs + 1,
            key: c.key,
            side: if from_client {
                c.client
            } else {
                c.client.other()
            },
            seq,
            ack,
            flags: TcpFlags(flags),
            payload,
            missing_payload: 0,
            fragment_overlap: false,
        }
    }

    const ACK: u8 = TcpFlags::ACK;
    const REQ: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    fn table(max_flows: usize) -> FlowTable {
        let flow = FlowSettings {
            max_flows,
            ..FlowSettings::default()
        };
        let settings = crate::Settings {
            flow: flow.clone(),
            ..crate::Settings::default()
        };
        FlowTable::new(
            &flow,
            &HttpSettings::default(),
            WorkerLimits::whole(&settings),
        )
    }

    #[test]
    fn retransmission_with_different_data_flags_the_exchange() {
        use crate::exchange::Anomaly;
        let mut t = table(16);
        let mut out = Vec::new();
        let c = conn(1234);
        let syn = TcpFlags::SYN;
        t.process(&seg(&c, true, 1, 0, 0, syn, b""), &mut out);
        t.process(&seg(&c, false, 1, 500, 1, syn | ACK, b""), &mut out);
        t.process(&seg(&c, true, 1, 1, 501, ACK, REQ), &mut out);
        // The same sequence range again, other bytes (`/b` for `/a`).
        let evil = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        t.process(&seg(&c, true, 2, 1, 501, ACK, evil), &mut out);
        let next = 1 + REQ.len() as u32;
        t.process(&seg(&c, false, 2, 501, next, ACK, RESP), &mut out);
        t.flush_all(&mut out);
        assert_eq!(t.stats().overlaps_inconsistent, 1);
        assert_eq!(out.len(), 1);
        let e = &out[0];
        // First copy wins; the exchange carries the indicator.
        assert_eq!(e.request.as_ref().unwrap().uri.as_str(), "/a");
        assert!(e.anomalies.contains(&Anomaly::InconsistentRetransmission));
    }

    /// A notice that a datagram of the connection was dropped for
    /// overlapping fragments flags the request that side sends next, also
    /// before any byte was delivered; a notice for an unknown connection
    /// opens no flow.
    #[test]
    fn fragment_overlap_notice_flags_the_next_message_of_its_side() {
        use crate::exchange::Anomaly;
        let notice = |c: &Conn, from_client: bool, t: u64| Segment {
            fragment_overlap: true,
            ..seg(c, from_client, t, 0, 0, 0, b"")
        };
        let mut t = table(16);
        let mut out = Vec::new();
        let stranger = conn(999);
        t.process(&notice(&stranger, true, 1), &mut out);
        assert_eq!(t.stats().flows_created, 0);
        let c = conn(1234);
        let syn = TcpFlags::SYN;
        t.process(&seg(&c, true, 1, 0, 0, syn, b""), &mut out);
        t.process(&seg(&c, false, 1, 500, 1, syn | ACK, b""), &mut out);
        t.process(&notice(&c, true, 1), &mut out);
        t.process(&seg(&c, true, 1, 1, 501, ACK, REQ), &mut out);
        let next = 1 + REQ.len() as u32;
        t.process(&seg(&c, false, 2, 501, next, ACK, RESP), &mut out);
        // Twin: the next request on the connection is not flagged.
        let second = next + REQ.len() as u32;
        t.process(
            &seg(&c, true, 3, next, 501 + RESP.len() as u32, ACK, REQ),
            &mut out,
        );
        t.process(
            &seg(&c, false, 3, 501 + RESP.len() as u32, second, ACK, RESP),
            &mut out,
        );
        t.flush_all(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].anomalies.contains(&Anomaly::OverlappingFragments));
        assert!(!out[1].anomalies.contains(&Anomaly::OverlappingFragments));
    }

    #[test]
    fn syn_flood_keeps_the_table_at_its_cap_and_counts_evictions() {
        let mut t = table(1_000);
        let mut out = Vec::new();
        for i in 0..100_000u32 {
            let (key, side) = FlowKey::new(
                std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a40_0000 | (i >> 6))),
                1024 + (i & 63) as u16,
                "10.0.0.2".parse().unwrap(),
                80,
            );
            let s = Segment {
                ts: Timestamp(SEC + u64::from(i)),
                packet_index: u64::from(i) + 1,
                key,
                side,
                seq: i,
                ack: 0,
                flags: TcpFlags(TcpFlags::SYN),
                payload: b"",
                missing_payload: 0,
                fragment_overlap: false,
            };
            t.process(&s, &mut out);
            assert!(t.open_flows() <= 1_000);
        }
        assert_eq!(t.stats().flows_created, 100_000);
        assert_eq!(t.stats().flows_evicted_capacity, 99_000);
        assert!(out.is_empty());
        // The budget the flood tests compute from: small and fixed.
        assert!(FlowTable::bytes_per_idle_flow() < 1024);
    }

    #[test]
    fn memory_share_flushes_least_recently_active_flows_and_counts_them() {
        let flow = FlowSettings::default();
        let probe = {
            let mut t = table(16);
            t.process(&seg(&conn(999), true, 0, 1, 1, ACK, REQ), &mut Vec::new());
            t.memory_bytes()
        };
        // Room for three flows holding one unanswered request each.
        let limits = WorkerLimits {
            max_flows: 1000,
            max_ooo_bytes: flow.max_ooo_bytes,
            memory_bytes: 3 * probe + probe / 2,
        };
        let mut t = FlowTable::new(&flow, &HttpSettings::default(), limits);
        let mut out = Vec::new();
        for (i, port) in (1000u16..1010).enumerate() {
            t.process(&seg(&conn(port), true, i as u64, 1, 1, ACK, REQ), &mut out);
            assert!(t.memory_bytes() <= limits.memory_bytes);
        }
        assert_eq!(t.open_flows(), 3);
        assert_eq!(t.stats().flows_evicted_memory, 7);
        // Oldest first, and each flushed with its request: nothing is lost.
        let ports: Vec<u16> = out.iter().map(|e| e.client.port()).collect();
        assert_eq!(ports, (1000..1007).collect::<Vec<_>>());
        assert!(out.iter().all(|e| e.flags.unanswered));
        // The most recent flow still works.
        let c = conn(1009);
        let next = 1 + REQ.len() as u32;
        t.process(&seg(&c, false, 20, 1, next, ACK, RESP), &mut out);
        assert_eq!(
            out.last().unwrap().response.as_ref().unwrap().status,
            Some(200)
        );
        t.flush_all(&mut out);
        assert_eq!(t.memory_bytes(), 0, "every flow's charge is given back");
    }

    #[test]
    fn capacity_evicts_least_recently_active_and_flushes_it() {
        let mut t = table(2);
        let mut out = Vec::new();
        for (i, port) in [1000u16, 1001, 1002].into_iter().enumerate() {
            let c = conn(port);
            t.process(&seg(&c, true, i as u64, 1, 1, ACK, REQ), &mut out);
        }
        assert_eq!(t.stats().flows_evicted_capacity, 1);
        assert_eq!(t.open_flows(), 2);
        assert_eq!(out.len(), 1, "the evicted flow's request is flushed");
        assert!(out[0].flags.unanswered);
        assert_eq!(out[0].client.port(), 1000);
    }

    #[test]
    fn idle_timeout_in_packet_time_ends_the_flow() {
        let mut t = table(16);
        let mut out = Vec::new();
        let c = conn(2000);
        t.process(&seg(&c, true, 0, 1, 1, ACK, REQ), &mut out);
        assert!(out.is_empty());
        // Packet time 200 s later: the sweep due at the flow's deadline
        // (120 s after its last packet, a whole second) ends it.
        assert_eq!(t.next_sweep(Timestamp::from_secs_nanos(119, 0)), None);
        let due = t.next_sweep(Timestamp::from_secs_nanos(200, 0));
        assert_eq!(due, Some(Timestamp::from_secs_nanos(120, 0)));
        t.expire(Timestamp::from_secs_nanos(120, 0), &mut out);
        assert_eq!(t.stats().flows_evicted_idle, 1);
        assert_eq!(out.len(), 1);
        assert!(out[0].flags.unanswered);
        assert_eq!(t.next_sweep(Timestamp::from_secs_nanos(200, 0)), None);
    }

    #[test]
    fn rst_mid_body_emits_truncated_exchange_and_closes() {
        let mut t = table(16);
        let mut out = Vec::new();
        let c = conn(3000);
        let req_end = 1 + REQ.len() as u32;
        t.process(&seg(&c, true, 0, 1, 1, ACK, REQ), &mut out);
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part";
        t.process(&seg(&c, false, 1, 1, req_end, ACK, partial), &mut out);
        assert!(out.is_empty());
        t.process(
            &seg(
                &c,
                false,
                2,
                1 + partial.len() as u32,
                req_end,
                TcpFlags::RST,
                b"",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.response.as_ref().unwrap().status, Some(200));
        assert!(e.flags.truncated);
        assert_eq!(t.stats().flows_closed, 1);
        assert_eq!(t.open_flows(), 0);
        // A late retransmission within the linger time starts nothing.
        t.process(&seg(&c, false, 3, 1, req_end, ACK, partial), &mut out);
        assert_eq!(t.stats().packets_after_close, 1);
        assert_eq!(t.open_flows(), 0);
    }

    #[test]
    fn syn_with_new_isn_replaces_the_connection() {
        let mut t = table(16);
        let mut out = Vec::new();
        let c = conn(4000);
        t.process(&seg(&c, true, 0, 100, 0, TcpFlags::SYN, b""), &mut out);
        t.process(&seg(&c, true, 0, 100, 0, TcpFlags::SYN, b""), &mut out); // retransmitted SYN
        assert_eq!(t.stats().flows_created, 1);
        t.process(&seg(&c, true, 1, 101, 1, ACK, REQ), &mut out);
        t.process(&seg(&c, true, 2, 9000, 0, TcpFlags::SYN, b""), &mut out);
        assert_eq!(t.stats().flows_reused_by_syn, 1);
        assert_eq!(t.stats().flows_created, 2);
        assert_eq!(out.len(), 1, "the old connection's request is flushed");
        // The new connection works normally.
        t.process(&seg(&c, true, 3, 9001, 1, ACK, REQ), &mut out);
        t.process(
            &seg(&c, false, 3, 1, 9001 + REQ.len() as u32, ACK, RESP),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].response.as_ref().unwrap().status, Some(200));
    }

    /// The byte ledgers once every flow ended: each captured payload byte
    /// delivered or discarded for a counted reason, each delivered byte in
    /// one HTTP bucket.
    fn assert_ledgers(t: &FlowTable) {
        let (f, h) = (t.stats(), t.http_stats());
        assert_eq!(t.buffered_bytes(), 0);
        assert_eq!(f.payload_bytes_in, f.payload_bytes_accounted(), "{f:?}");
        assert_eq!(f.bytes_delivered, h.bytes_in);
        assert_eq!(h.bytes_in, h.bytes_accounted(), "{h:?}");
    }

    #[test]
    fn ledger_rst_payload_and_packets_after_close() {
        let mut t = table(16);
        let mut out = Vec::new();
        let c = conn(5000);
        let req_end = 1 + REQ.len() as u32;
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part";
        t.process(&seg(&c, true, 0, 1, 1, ACK, REQ), &mut out);
        t.process(&seg(&c, false, 1, 1, req_end, ACK, partial), &mut out);
        let at = 1 + partial.len() as u32;
        let rst = TcpFlags::RST | ACK;
        let text = b"connection reset by peer";
        t.process(&seg(&c, false, 2, at, req_end, rst, text), &mut out);
        assert_eq!(t.stats().flows_closed, 1);
        // A late copy of the request, within the linger time.
        t.process(&seg(&c, true, 3, 1, 1, ACK, REQ), &mut out);
        t.flush_all(&mut out);
        let f = t.stats();
        assert_eq!(f.bytes_with_rst, text.len() as u64);
        assert_eq!(f.bytes_after_close, REQ.len() as u64);
        assert_eq!(f.bytes_delivered, (REQ.len() + partial.len()) as u64);
        assert_eq!(
            f.payload_bytes_in,
            (2 * REQ.len() + partial.len() + text.len()) as u64
        );
        assert_ledgers(&t);
        assert_eq!(t.http_stats().body_bytes, 9);
    }

    #[test]
    fn ledger_eviction_with_buffered_data_delivers_it_after_a_gap() {
        let mut t = table(1);
        let mut out = Vec::new();
        let a = conn(6000);
        // The request with 5 bytes missing after its first 10: the rest waits.
        let rest_at = 1 + 15;
        t.process(&seg(&a, true, 0, 1, 1, ACK, &REQ[..10]), &mut out);
        t.process(&seg(&a, true, 0, rest_at, 1, ACK, &REQ[15..]), &mut out);
        assert_eq!(t.buffered_bytes(), REQ.len() - 15);
        // A second flow evicts the first, which is flushed.
        let b = conn(6001);
        t.process(&seg(&b, true, 1, 1, 1, ACK, REQ), &mut out);
        assert_eq!(t.stats().flows_evicted_capacity, 1);
        assert_eq!(t.buffered_bytes(), 0);
        assert_eq!(t.stats().gap_bytes, 5);
        t.flush_all(&mut out);
        let f = t.stats();
        assert_eq!(f.payload_bytes_in, (2 * REQ.len() - 5) as u64);
        assert_eq!(f.bytes_delivered, f.payload_bytes_in);
        assert_ledgers(&t);
    }
}
