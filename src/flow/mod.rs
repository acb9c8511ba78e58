//! Connections: the flow table of one worker (bounded, idle eviction in packet
//! time), client/server roles, and per-direction TCP reassembly feeding the
//! HTTP layer. It owns flow lifetime and byte order; it does not parse HTTP
//! and never touches raw packets (the decoder ran before).

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod key;
pub mod reassembly;
mod table;

pub use key::{FlowKey, Side};
pub use reassembly::{Chunk, Reassembler};
pub use table::FlowTable;

/// What one worker's flow table may hold: its equal share of the global
/// caps (`flow.max_flows`, `flow.max_ooo_bytes`) and of the memory budget's
/// flow part, so memory does not grow with the number of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLimits {
    pub max_flows: usize,
    pub max_ooo_bytes: usize,
    /// Bytes all flows of the worker may hold together (see
    /// [`FlowTable`]); beyond it the least recently active flows are
    /// flushed and counted in `flows_evicted_memory`.
    pub memory_bytes: usize,
}

impl WorkerLimits {
    /// Worker `workers`' share of the global caps.
    pub fn share(settings: &crate::Settings, workers: usize) -> WorkerLimits {
        let workers = workers.max(1);
        let f = &settings.flow;
        WorkerLimits {
            max_flows: f.max_flows.div_ceil(workers).max(1),
            max_ooo_bytes: (f.max_ooo_bytes / workers).max(f.max_ooo_bytes_per_direction),
            memory_bytes: settings.memory_plan().flows_bytes / workers,
        }
    }

    /// The whole of the caps, for one table alone (tests, fuzzing, benches).
    pub fn whole(settings: &crate::Settings) -> WorkerLimits {
        WorkerLimits::share(settings, 1)
    }
}

use crate::counters;
use crate::decode::TcpFlags;
use crate::exchange::Timestamp;

counters! {
    /// Flow lifetime and reassembly outcomes, including every byte given up on.
    ///
    /// Byte ledger (exact once every flow has ended, e.g. after a replay;
    /// before that, add the bytes still buffered out of order):
    ///
    /// `payload_bytes_in = bytes_delivered + bytes_retransmitted +
    /// bytes_before_start + bytes_after_end + bytes_after_close +
    /// bytes_out_of_window + bytes_with_rst`
    ///
    /// and, for the payload the snaplen cut (announced by the IP header, never
    /// captured): `snaplen_bytes_in = snaplen_gap_bytes + snaplen_bytes_dropped`.
    /// Gaps for bytes no segment carried are not in either: they were never
    /// handed to the table. See [`FlowStats::payload_bytes_accounted`].
    pub struct FlowStats {
        /// Captured TCP payload bytes handed to the flow table.
        payload_bytes_in,
        /// Payload bytes delivered in order to the HTTP layer (`http.bytes_in`).
        bytes_delivered,
        flows_created,
        /// Closed by FIN in both directions or by RST.
        flows_closed,
        /// Closed after `idle_timeout_secs` without packets.
        flows_evicted_idle,
        /// Evicted (least recently active first) because the table was full.
        flows_evicted_capacity,
        /// Evicted (least recently active first) because the worker's flows
        /// held their whole share of `memory.budget_bytes`; flushed, like
        /// every eviction, so their completed exchanges are not lost.
        flows_evicted_memory,
        /// Still open when the capture ended; flushed.
        flows_flushed_at_end,
        /// A SYN reused the addresses of a flow still in the table.
        flows_reused_by_syn,
        /// Packets of a flow that had already closed (late retransmits, final ACKs).
        packets_after_close,
        /// Directions picked up without seeing their SYN.
        directions_started_midstream,
        segments_out_of_order,
        /// Segments or ACKs further ahead than any TCP window (dropped).
        segments_out_of_window,
        ooo_bytes_buffered,
        /// Holes given up on because an out-of-order buffer cap was reached.
        ooo_cap_gaps,
        segments_retransmitted,
        /// Payload bytes at or before the delivery point (delivered or given
        /// up as a gap already): retransmissions and overlaps, discarded.
        bytes_retransmitted,
        /// Payload bytes before the point where the direction started (its
        /// SYN, or the first segment seen when picked up mid-stream), discarded.
        bytes_before_start,
        /// Retransmitted or overlapping bytes that differ from what was delivered.
        overlaps_inconsistent,
        /// Data after the end of a direction (after its FIN was delivered).
        segments_after_end,
        /// Payload bytes at or past a direction's FIN (or after it was
        /// flushed), discarded.
        bytes_after_end,
        /// Payload bytes of packets counted in `packets_after_close`, discarded.
        bytes_after_close,
        /// Payload bytes of segments counted in `segments_out_of_window`, discarded.
        bytes_out_of_window,
        /// Payload bytes carried by RST segments (diagnostic text, not stream
        /// data), discarded.
        bytes_with_rst,
        /// Payload bytes the IP header announced but the snaplen cut off.
        snaplen_bytes_in,
        /// Part of the above that became no gap: in a range already
        /// delivered, or dropped for one of the reasons of the byte counters.
        snaplen_bytes_dropped,
        /// Gaps (lost bytes) reported to the HTTP layer, and their size.
        gaps,
        gap_bytes,
        /// Part of the above: payload cut by the capture's snaplen.
        snaplen_gap_bytes,
        /// Part of the above: holes still open when a direction ended.
        gaps_at_end,
        /// Part of the above: bytes the peer acknowledged that the capture never saw.
        gaps_acked,
    }
}

impl FlowStats {
    /// Payload bytes with a final outcome: delivered or discarded for a
    /// counted reason. Equals `payload_bytes_in` once nothing is buffered.
    pub fn payload_bytes_accounted(&self) -> u64 {
        [
            self.bytes_delivered,
            self.bytes_retransmitted,
            self.bytes_before_start,
            self.bytes_after_end,
            self.bytes_after_close,
            self.bytes_out_of_window,
            self.bytes_with_rst,
        ]
        .iter()
        .fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// A decoded TCP segment as the flow stage sees it: already keyed and
/// directed, payload borrowed from the batch it arrived in.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub ts: Timestamp,
    /// Ordinal of the packet in the capture (1-based); the first one of a
    /// flow becomes its id, which makes ids independent of the worker count.
    pub packet_index: u64,
    pub key: FlowKey,
    pub side: Side,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub payload: &'a [u8],
    pub missing_payload: u32,
    /// A notice, not data: a datagram of this connection was dropped for
    /// overlapping IP fragments (see `decode::defrag`).
    pub fragment_overlap: bool,
}
