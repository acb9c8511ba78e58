//! Whole TCP connections through one worker's flow table: sequences of
//! `(connection, direction, seq, ack, flags, payload)` segments — handshakes,
//! retransmissions with other data, holes, RST, SYN reuse, capacity and idle
//! eviction — reassembled per direction and parsed as HTTP/1 (see
//! `apisensor_fuzz::FlowInput`).
//!
//! Checked after every segment: no panic; open flows within `max_flows`;
//! buffered out-of-order bytes within the worker cap; the table's memory
//! within its share unless one flow alone holds more;
//! every exchange has a request or a response and is counted once; the TCP
//! payload ledger (every byte in is delivered, discarded for a counted
//! reason, or buffered). After the final flush nothing is open and nothing is
//! buffered, and the snaplen and HTTP ledgers balance too, with
//! `flow.bytes_delivered == http.bytes_in`.
#![no_main]

use apisensor::config::HttpSettings;
use apisensor::decode::TcpFlags;
use apisensor::flow::{FlowKey, FlowTable, Segment};
use apisensor::Timestamp;
use apisensor_fuzz::{FlowInput, FlowOp, Side, FLOW_TS_UNIT_NANOS};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

fuzz_target!(|input: FlowInput| {
    let settings = input.settings();
    let http = HttpSettings {
        max_header_bytes: 1024,
        max_body_bytes: 4096,
        max_decoded_body_bytes: 64 * 1024,
        max_pending_requests: 4,
        ..HttpSettings::default()
    };
    let limits = input.limits();
    let mut table = FlowTable::new(&settings, &http, limits);
    let mut out = Vec::new();
    let mut ts = 1_300_000_000_000_000_000u64;
    for (i, op) in input.ops.iter().enumerate() {
        match op {
            FlowOp::Segment {
                conn,
                side,
                ts_step,
                seq_offset,
                ack_offset,
                flags,
                payload,
                missing,
            } => {
                ts += u64::from(*ts_step) * FLOW_TS_UNIT_NANOS;
                let port = 40_000 + u16::from(*conn % 4);
                let (me, peer) = match side {
                    Side::Client => (0, 1),
                    Side::Server => (1, 0),
                };
                let (key, key_side) = match side {
                    Side::Client => FlowKey::new(CLIENT, port, SERVER, 80),
                    Side::Server => FlowKey::new(SERVER, 80, CLIENT, port),
                };
                let seg = Segment {
                    ts: Timestamp(ts),
                    packet_index: i as u64 + 1,
                    key,
                    side: key_side,
                    seq: input.isn[me].wrapping_add(*seq_offset),
                    ack: input.isn[peer].wrapping_add(*ack_offset),
                    flags: TcpFlags(*flags),
                    payload: &payload.0,
                    missing_payload: u32::from(*missing),
                    // A bit the decoder never sets (CWR) stands for the
                    // overlapping-fragments notice, so it is fuzzed too.
                    fragment_overlap: *flags & 0x80 != 0,
                };
                table.process(&seg, &mut out);
            }
            FlowOp::Expire(secs) => {
                ts += u64::from(*secs) * 1_000_000_000;
                table.expire(Timestamp(ts), &mut out);
            }
        }
        assert!(table.open_flows() <= limits.max_flows);
        assert!(
            table.memory_bytes() <= limits.memory_bytes || table.open_flows() <= 1,
            "{} bytes held by {} flows over a share of {}",
            table.memory_bytes(),
            table.open_flows(),
            limits.memory_bytes
        );
        let s = table.stats();
        assert_eq!(
            s.payload_bytes_in,
            s.payload_bytes_accounted() + table.buffered_bytes() as u64,
            "payload ledger: {s:?}"
        );
        assert!(
            table.buffered_bytes() <= limits.max_ooo_bytes,
            "worker buffers {} bytes, cap {}",
            table.buffered_bytes(),
            limits.max_ooo_bytes
        );
    }
    table.flush_all(&mut out);
    assert_eq!(table.open_flows(), 0);
    assert_eq!(table.buffered_bytes(), 0, "bytes left buffered after flush");
    assert_eq!(table.http_stats().exchanges, out.len() as u64);
    for e in &out {
        assert!(e.request.is_some() || e.response.is_some(), "empty exchange");
        assert!(e.request.as_ref().is_none_or(|r| r.body.data.len() <= http.max_body_bytes));
        assert!(e.response.as_ref().is_none_or(|r| r.body.data.len() <= http.max_body_bytes));
    }
    let s = table.stats();
    assert_eq!(
        s.flows_created,
        s.flows_closed
            + s.flows_evicted_idle
            + s.flows_evicted_capacity
            + s.flows_evicted_memory
            + s.flows_reused_by_syn
            + s.flows_flushed_at_end,
        "every flow created leaves the table once, for one counted reason"
    );
    assert_eq!(s.payload_bytes_in, s.payload_bytes_accounted(), "payload ledger: {s:?}");
    assert_eq!(
        s.snaplen_bytes_in,
        s.snaplen_gap_bytes + s.snaplen_bytes_dropped,
        "snaplen ledger: {s:?}"
    );
    let h = table.http_stats();
    assert_eq!(s.bytes_delivered, h.bytes_in, "delivered bytes the HTTP layer did not get");
    assert_eq!(h.bytes_in, h.bytes_accounted(), "HTTP ledger: {h:?}");
});
