//! One direction of TCP reassembly under small caps, checked against a model
//! of where the stream is (see `apisensor_fuzz::ReassemblyInput`).
//!
//! Invariants checked after every operation:
//! * delivered `Data` bytes + `Gap` bytes equal the distance the reassembler
//!   moved (`expects()` agrees with the model position), and never pass the
//!   furthest sequence number any segment, FIN or ACK announced;
//! * no empty `Data`, no `Gap(0)`;
//! * buffered bytes stay under the per-direction cap and the worker counter
//!   equals this (only) reassembler's buffered bytes; both are 0 after a flush;
//! * nothing is delivered after the direction ended, and no gap runs over
//!   the FIN's sequence number;
//! * `consistent` inputs: every delivered byte is the one at its sequence
//!   number, and no overlap is called inconsistent;
//! * the byte ledger: every payload byte fed in is delivered
//!   (`bytes_delivered` equals the `Data` bytes), discarded for a counted
//!   reason, or still buffered; after a flush, every snaplen-cut byte is a
//!   snaplen gap byte or counted dropped.
#![no_main]

use apisensor::flow::reassembly::{Chunk, Reassembler, ReassemblyContext};
use apisensor::flow::FlowStats;
use apisensor_fuzz::{consistent_byte, ReassemblyInput, ReassemblyOp};
use libfuzzer_sys::fuzz_target;

/// Signed distance from `b` to `a` in sequence space (as the reassembler sees it).
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Where the model thinks the stream is, in unwrapped sequence space.
struct Model {
    /// Unwrapped position of the next byte to deliver (None before start).
    pos: Option<(i64, u32)>,
    /// Furthest unwrapped sequence number announced so far.
    frontier: i64,
    /// Unwrapped sequence number of the latest FIN (the reassembler keeps the latest).
    fin: Option<i64>,
}

impl Model {
    /// Extends the frontier to `seq` (interpreted around the current position).
    fn announce(&mut self, seq: u32) {
        if let Some((pos, wrapped)) = self.pos {
            self.frontier = self.frontier.max(pos + seq_diff(seq, wrapped));
        }
    }

    fn unwrap(&self, seq: u32) -> Option<i64> {
        self.pos.map(|(pos, wrapped)| pos + seq_diff(seq, wrapped))
    }
}

fuzz_target!(|input: ReassemblyInput| {
    let settings = input.settings();
    let mut stats = FlowStats::default();
    let mut worker = 0usize;
    let mut r = Reassembler::default();
    let mut model = Model {
        pos: None,
        frontier: 0,
        fin: None,
    };
    let consistent = input.consistent;
    let mut delivered_data = 0u64;
    let debug = std::env::var_os("REASSEMBLY_DEBUG").is_some();

    for op in &input.ops {
        let was_ended = r.ended();
        let was_started = r.started();
        // Chunks delivered by this operation.
        let mut chunks: Vec<(bool, u64, Vec<u8>)> = Vec::new();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(d) => chunks.push((true, d.len() as u64, d.to_vec())),
            Chunk::Gap(n) => chunks.push((false, n, Vec::new())),
        };
        let mut ctx = ReassemblyContext {
            settings: &settings,
            stats: &mut stats,
            worker_ooo_bytes: &mut worker,
            worker_ooo_cap: input.worker_ooo_cap(),
        };
        let mut flushed_started = false;
        match op {
            ReassemblyOp::Segment {
                seq_offset,
                syn,
                fin,
                payload,
                missing,
            } => {
                ctx.stats.payload_bytes_in += payload.0.len() as u64;
                ctx.stats.snaplen_bytes_in += u64::from(*missing);
                let seq = input.isn.wrapping_add(*seq_offset);
                let data_seq = seq.wrapping_add(u32::from(*syn));
                let payload: Vec<u8> = if consistent {
                    (0..payload.0.len() as u32)
                        .map(|i| consistent_byte(data_seq.wrapping_add(i)))
                        .collect()
                } else {
                    payload.0.clone()
                };
                if model.pos.is_none() && !was_ended {
                    // The first segment starts the direction at its data.
                    model.pos = Some((1i64 << 40, data_seq));
                    model.frontier = 1i64 << 40;
                }
                let end = data_seq
                    .wrapping_add(payload.len() as u32)
                    .wrapping_add(u32::from(*missing));
                model.announce(end);
                if *fin && !was_ended {
                    // The reassembler keeps the earliest FIN (see its docs).
                    let new_fin = model.unwrap(end);
                    model.fin = match (model.fin, new_fin) {
                        (Some(old), Some(new)) => Some(old.min(new)),
                        (old, new) => new.or(old),
                    };
                }
                r.on_segment(
                    &mut ctx,
                    seq,
                    *syn,
                    *fin,
                    &payload,
                    u32::from(*missing),
                    &mut sink,
                );
            }
            ReassemblyOp::PeerAck(a) => {
                let ack = input.isn.wrapping_add(*a);
                model.announce(ack);
                r.on_peer_ack(&mut ctx, ack, &mut sink);
            }
            ReassemblyOp::Flush => {
                flushed_started = was_started;
                r.flush(&mut ctx, &mut sink);
            }
        }

        if debug {
            eprintln!("{op:?}\n  -> {:?}", chunks.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>());
            eprintln!("  model pos {:?} frontier {} fin {:?}", model.pos, model.frontier, model.fin);
        }
        // What was delivered.
        if was_ended {
            assert!(chunks.is_empty(), "delivered after the end: {chunks:?}");
        }
        if !chunks.is_empty() {
            let (mut pos, mut wrapped) = model.pos.expect("delivery before the first segment");
            for (is_data, len, bytes) in &chunks {
                assert!(*len > 0, "empty chunk (data: {is_data})");
                if let (false, Some(fin)) = (*is_data, model.fin) {
                    // A gap is lost data: it cannot run over the FIN (the
                    // FIN's own sequence number is not data either).
                    assert!(
                        !(pos <= fin && fin < pos + *len as i64),
                        "gap of {len} bytes at +{} runs over the FIN at +{}",
                        pos - (1i64 << 40),
                        fin - (1i64 << 40)
                    );
                }
                if consistent && *is_data {
                    for (i, b) in bytes.iter().enumerate() {
                        let s = wrapped.wrapping_add(i as u32);
                        assert_eq!(
                            *b,
                            consistent_byte(s),
                            "byte at seq {s:#x} is not the one sent there"
                        );
                    }
                }
                pos += *len as i64;
                wrapped = wrapped.wrapping_add(*len as u32);
            }
            assert!(
                pos <= model.frontier,
                "delivered {} bytes past the furthest announced sequence number",
                pos - model.frontier
            );
            model.pos = Some((pos, wrapped));
        }
        if let Some((_, wrapped)) = model.pos {
            if r.started() {
                assert!(
                    r.expects(wrapped),
                    "reassembler position differs from the delivered byte count"
                );
            }
        }

        // Byte ledger.
        delivered_data += chunks.iter().filter(|c| c.0).map(|c| c.1).sum::<u64>();
        assert_eq!(stats.bytes_delivered, delivered_data, "bytes_delivered drifted");
        assert_eq!(
            stats.payload_bytes_in,
            stats.payload_bytes_accounted() + r.buffered_bytes() as u64,
            "payload ledger: {stats:?}"
        );
        if matches!(op, ReassemblyOp::Flush) {
            assert_eq!(
                stats.snaplen_bytes_in,
                stats.snaplen_gap_bytes + stats.snaplen_bytes_dropped,
                "snaplen ledger: {stats:?}"
            );
        }

        // Memory.
        assert_eq!(worker, r.buffered_bytes(), "worker counter drifted");
        assert!(r.buffered_bytes() <= settings.max_ooo_bytes_per_direction);
        if matches!(op, ReassemblyOp::Flush) {
            assert_eq!(worker, 0, "buffered bytes left after flush");
            if flushed_started {
                assert!(r.ended(), "a flushed direction must be ended");
            }
        }
        if consistent {
            assert_eq!(
                stats.overlaps_inconsistent, 0,
                "identical retransmission flagged as inconsistent (overlap_check_bytes {})",
                settings.overlap_check_bytes
            );
        }
    }
});
