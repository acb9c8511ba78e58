//! Inputs shared by the apisensor fuzz targets, and their byte encoding.
//!
//! The structure-aware targets take these types through `arbitrary`
//! (`fuzz_target!(|input: T| ...)`, i.e. `T::arbitrary_take_rest`). Their byte
//! layout is kept simple on purpose so that `Encode` can write it back, which
//! is how `examples/make_seeds.rs` turns the fixtures into seed inputs:
//!
//! * integers: little-endian, fixed width (`arbitrary`'s own layout);
//! * `bool`: one byte, odd = true;
//! * enums (derived): a `u32` tag, variant = `(tag * variants) >> 32`;
//! * `Bytes<CAP>`: a `u16` length then that many bytes (clamped to `CAP` and
//!   to what is left) — inline, unlike `Vec<u8>` whose length `arbitrary`
//!   takes from the end of the input;
//! * the trailing `Vec<T>` of a top-level input: each element preceded by an
//!   odd byte; an even byte or the end of the input stops the list.

use apisensor::config::{FlowSettings, HttpSettings};
use apisensor::exchange::Direction;
use apisensor::flow::WorkerLimits;
use apisensor::http1::script::Action;
use arbitrary::{Arbitrary, Result, Unstructured};
use std::fmt;

/// Writes a value in the layout `Arbitrary` reads it back from.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

macro_rules! encode_int {
    ($($t:ty)*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_int!(u8 u16 u32 u64);

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

/// The smallest derived-enum tag that selects variant `index` of `count`.
pub fn enum_tag(index: u32, count: u32) -> u32 {
    (((index as u64) << 32).div_ceil(count as u64)) as u32
}

fn encode_variant(index: u32, count: u32, out: &mut Vec<u8>) {
    enum_tag(index, count).encode(out);
}

/// Encodes the trailing list of a top-level input (`arbitrary_take_rest`).
pub fn encode_rest<T: Encode>(items: &[T], out: &mut Vec<u8>) {
    for item in items {
        out.push(1);
        item.encode(out);
    }
}

/// A byte string with an inline `u16` length, at most `CAP` (<= 65535) bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes<const CAP: usize>(pub Vec<u8>);

impl<'a, const CAP: usize> Arbitrary<'a> for Bytes<CAP> {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let want = usize::from(u16::arbitrary(u)?);
        let len = want.min(CAP).min(u.len());
        Ok(Bytes(u.bytes(len)?.to_vec()))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (2, Some(2 + CAP))
    }
}

impl<const CAP: usize> Encode for Bytes<CAP> {
    fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.0.len() <= CAP && CAP <= 65535, "Bytes over its cap");
        (self.0.len() as u16).encode(out);
        out.extend_from_slice(&self.0);
    }
}

impl<const CAP: usize> fmt::Debug for Bytes<CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

// ---------------------------------------------------------------- reassembly

/// One direction of a TCP stream: caps, initial sequence number, operations.
#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub struct ReassemblyInput {
    pub isn: u32,
    /// `max_ooo_segments_per_direction` = 1 + x % 64.
    pub max_ooo_segments: u8,
    /// `max_ooo_bytes_per_direction` = 1 + x (1..=65536).
    pub max_ooo_bytes: u16,
    /// The worker's `max_ooo_bytes` share = per-direction cap + x (config
    /// validation requires at least the per-direction cap).
    pub worker_slack: u16,
    /// `overlap_check_bytes` = x % 4097.
    pub overlap_check_bytes: u16,
    /// Payload bytes are ignored and replaced by a function of their sequence
    /// number, so every copy of a byte agrees: delivered bytes can then be
    /// checked exactly and no overlap may be called inconsistent.
    pub consistent: bool,
    pub ops: Vec<ReassemblyOp>,
}

#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub enum ReassemblyOp {
    /// Sequence number `isn + seq_offset`.
    Segment {
        seq_offset: u32,
        syn: bool,
        fin: bool,
        payload: Bytes<2000>,
        /// Bytes the snaplen cut after the payload.
        missing: u16,
    },
    /// The peer acknowledged `isn + x`.
    PeerAck(u32),
    Flush,
}

impl ReassemblyInput {
    pub fn settings(&self) -> FlowSettings {
        let per_dir = 1 + usize::from(self.max_ooo_bytes);
        FlowSettings {
            max_ooo_segments_per_direction: 1 + usize::from(self.max_ooo_segments % 64),
            max_ooo_bytes_per_direction: per_dir,
            max_ooo_bytes: self.worker_ooo_cap(),
            overlap_check_bytes: usize::from(self.overlap_check_bytes % 4097),
            ..FlowSettings::default()
        }
    }

    /// What the one worker may buffer out of order.
    pub fn worker_ooo_cap(&self) -> usize {
        1 + usize::from(self.max_ooo_bytes) + usize::from(self.worker_slack)
    }
}

/// The byte the `consistent` mode puts at sequence number `seq`.
pub fn consistent_byte(seq: u32) -> u8 {
    (seq.wrapping_mul(0x9E37_79B1) >> 24) as u8
}

impl Encode for ReassemblyOp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ReassemblyOp::Segment {
                seq_offset,
                syn,
                fin,
                payload,
                missing,
            } => {
                encode_variant(0, 3, out);
                seq_offset.encode(out);
                syn.encode(out);
                fin.encode(out);
                payload.encode(out);
                missing.encode(out);
            }
            ReassemblyOp::PeerAck(a) => {
                encode_variant(1, 3, out);
                a.encode(out);
            }
            ReassemblyOp::Flush => encode_variant(2, 3, out),
        }
    }
}

impl Encode for ReassemblyInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.isn.encode(out);
        self.max_ooo_segments.encode(out);
        self.max_ooo_bytes.encode(out);
        self.worker_slack.encode(out);
        self.overlap_check_bytes.encode(out);
        self.consistent.encode(out);
        encode_rest(&self.ops, out);
    }
}

// ---------------------------------------------------------------------- flow

/// Whole TCP connections through one worker's flow table: segments of up to
/// four connections, each `(connection, direction, seq, ack, flags, payload)`,
/// under small table and buffer caps. Sequence and acknowledgement numbers are
/// offsets from each direction's initial sequence number, so fixture
/// captures encode compactly and the fuzzer can mutate them in place.
#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub struct FlowInput {
    /// ISN of the client (`Side::Client`) and server directions.
    pub isn: [u32; 2],
    /// `max_flows` = 1 + x % 4; bits 2-3 pick the flows' memory share
    /// ([`FlowInput::limits`]): unbounded, 4, 16 or 64 KiB.
    pub max_flows: u8,
    /// `max_ooo_segments_per_direction` = 1 + x % 64.
    pub max_ooo_segments: u8,
    /// `max_ooo_bytes_per_direction` = 1 + x; the worker cap is twice that.
    pub max_ooo_bytes: u16,
    /// `overlap_check_bytes` = x % 4097.
    pub overlap_check_bytes: u16,
    pub ops: Vec<FlowOp>,
}

#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub enum FlowOp {
    Segment {
        /// Connection `x % 4` (client port 40000 + x % 4 to server port 80).
        conn: u8,
        side: Side,
        /// Packet time advances by x × 100 ms before this segment.
        ts_step: u8,
        /// Offset from this direction's ISN.
        seq_offset: u32,
        /// Offset from the peer direction's ISN (used when `ACK` is set).
        ack_offset: u32,
        /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
        flags: u8,
        payload: Bytes<2000>,
        /// Bytes the snaplen cut after the payload.
        missing: u16,
    },
    /// Idle expiry at packet time + x seconds.
    Expire(u8),
}

pub const FLOW_TS_UNIT_NANOS: u64 = 100_000_000;

impl FlowInput {
    pub fn settings(&self) -> FlowSettings {
        let per_dir = 1 + usize::from(self.max_ooo_bytes);
        FlowSettings {
            max_flows: 1 + usize::from(self.max_flows % 4),
            max_ooo_segments_per_direction: 1 + usize::from(self.max_ooo_segments % 64),
            max_ooo_bytes_per_direction: per_dir,
            max_ooo_bytes: 2 * per_dir,
            overlap_check_bytes: usize::from(self.overlap_check_bytes % 4097),
            idle_timeout_secs: 30,
            closed_timeout_secs: 2,
        }
    }

    /// The one worker's limits: the caps above, and a memory share small
    /// enough for a few connections to reach it.
    pub fn limits(&self) -> WorkerLimits {
        let settings = self.settings();
        WorkerLimits {
            max_flows: settings.max_flows,
            max_ooo_bytes: settings.max_ooo_bytes,
            memory_bytes: match (self.max_flows >> 2) % 4 {
                0 => usize::MAX,
                1 => 4 << 10,
                2 => 16 << 10,
                _ => 64 << 10,
            },
        }
    }
}

impl Encode for FlowOp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
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
                encode_variant(0, 2, out);
                conn.encode(out);
                side.encode(out);
                ts_step.encode(out);
                seq_offset.encode(out);
                ack_offset.encode(out);
                flags.encode(out);
                payload.encode(out);
                missing.encode(out);
            }
            FlowOp::Expire(s) => {
                encode_variant(1, 2, out);
                s.encode(out);
            }
        }
    }
}

impl Encode for FlowInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.isn[0].encode(out);
        self.isn[1].encode(out);
        self.max_flows.encode(out);
        self.max_ooo_segments.encode(out);
        self.max_ooo_bytes.encode(out);
        self.overlap_check_bytes.encode(out);
        encode_rest(&self.ops, out);
    }
}

// --------------------------------------------------------------------- http1

/// One HTTP/1 connection: small caps and a sequence of stream events.
#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub struct HttpInput {
    /// `max_header_bytes` = 256 + x.
    pub max_header_bytes: u16,
    /// `max_headers` = 1 + x.
    pub max_headers: u8,
    /// `max_body_bytes` = x (0..=65535).
    pub max_body_bytes: u16,
    /// `max_decoded_body_bytes` = x % (1 MiB + 1).
    pub max_decoded_body_bytes: u32,
    /// `max_pending_requests` = 1 + x % 16.
    pub max_pending_requests: u8,
    pub decode_content: bool,
    pub actions: Vec<HttpOp>,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapLen {
    Small(u8),
    Medium(u16),
    Large(u32),
    Huge(u64),
    Max,
}

#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub enum HttpOp {
    Data(Side, Bytes<8192>),
    Gap(Side, GapLen),
    Fin(Side),
}

impl Side {
    pub fn direction(self) -> Direction {
        match self {
            Side::Client => Direction::ToServer,
            Side::Server => Direction::ToClient,
        }
    }
    fn of(d: Direction) -> Side {
        match d {
            Direction::ToServer => Side::Client,
            Direction::ToClient => Side::Server,
        }
    }
}

impl GapLen {
    pub fn get(self) -> u64 {
        match self {
            GapLen::Small(x) => x.into(),
            GapLen::Medium(x) => x.into(),
            GapLen::Large(x) => x.into(),
            GapLen::Huge(x) => x,
            GapLen::Max => u64::MAX,
        }
    }
    fn of(n: u64) -> GapLen {
        if let Ok(x) = u8::try_from(n) {
            GapLen::Small(x)
        } else if let Ok(x) = u16::try_from(n) {
            GapLen::Medium(x)
        } else if let Ok(x) = u32::try_from(n) {
            GapLen::Large(x)
        } else if n == u64::MAX {
            GapLen::Max
        } else {
            GapLen::Huge(n)
        }
    }
}

impl HttpInput {
    /// `..default()` keeps this compiling when settings gain fields.
    #[allow(clippy::needless_update)]
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            max_header_bytes: 256 + usize::from(self.max_header_bytes),
            max_headers: 1 + usize::from(self.max_headers),
            max_body_bytes: usize::from(self.max_body_bytes),
            max_decoded_body_bytes: (self.max_decoded_body_bytes % ((1 << 20) + 1)) as usize,
            max_pending_requests: 1 + usize::from(self.max_pending_requests % 16),
            decode_content: self.decode_content,
            ..HttpSettings::default()
        }
    }

    pub fn script_actions(&self) -> Vec<Action> {
        self.actions
            .iter()
            .map(|a| match a {
                HttpOp::Data(s, b) => Action::Data(s.direction(), b.0.clone()),
                HttpOp::Gap(s, n) => Action::Gap(s.direction(), n.get()),
                HttpOp::Fin(s) => Action::Fin(s.direction()),
            })
            .collect()
    }

    /// The input closest to a stream script's settings and actions (settings
    /// are clamped into the fuzzer's ranges; data longer than a `Bytes` cap is
    /// split into several chunks).
    pub fn from_script(settings: &HttpSettings, actions: &[Action]) -> HttpInput {
        let clamp = |v: usize, lo: usize, hi: usize| v.clamp(lo, hi) - lo;
        let mut ops = Vec::new();
        for a in actions {
            match a {
                Action::Data(d, bytes) => {
                    if bytes.is_empty() {
                        ops.push(HttpOp::Data(Side::of(*d), Bytes(Vec::new())));
                    }
                    for c in bytes.chunks(8192) {
                        ops.push(HttpOp::Data(Side::of(*d), Bytes(c.to_vec())));
                    }
                }
                Action::Gap(d, n) => ops.push(HttpOp::Gap(Side::of(*d), GapLen::of(*n))),
                Action::Fin(d) => ops.push(HttpOp::Fin(Side::of(*d))),
            }
        }
        HttpInput {
            max_header_bytes: clamp(settings.max_header_bytes, 256, 256 + 65535) as u16,
            max_headers: clamp(settings.max_headers, 1, 256) as u8,
            max_body_bytes: settings.max_body_bytes.min(65535) as u16,
            max_decoded_body_bytes: settings.max_decoded_body_bytes.min(1 << 20) as u32,
            max_pending_requests: clamp(settings.max_pending_requests, 1, 16) as u8,
            decode_content: settings.decode_content,
            actions: ops,
        }
    }
}

impl Encode for Side {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_variant(*self as u32, 2, out);
    }
}

impl Encode for GapLen {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            GapLen::Small(x) => {
                encode_variant(0, 5, out);
                x.encode(out);
            }
            GapLen::Medium(x) => {
                encode_variant(1, 5, out);
                x.encode(out);
            }
            GapLen::Large(x) => {
                encode_variant(2, 5, out);
                x.encode(out);
            }
            GapLen::Huge(x) => {
                encode_variant(3, 5, out);
                x.encode(out);
            }
            GapLen::Max => encode_variant(4, 5, out),
        }
    }
}

impl Encode for HttpOp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            HttpOp::Data(s, b) => {
                encode_variant(0, 3, out);
                s.encode(out);
                b.encode(out);
            }
            HttpOp::Gap(s, n) => {
                encode_variant(1, 3, out);
                s.encode(out);
                n.encode(out);
            }
            HttpOp::Fin(s) => {
                encode_variant(2, 3, out);
                s.encode(out);
            }
        }
    }
}

impl Encode for HttpInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.max_header_bytes.encode(out);
        self.max_headers.encode(out);
        self.max_body_bytes.encode(out);
        self.max_decoded_body_bytes.encode(out);
        self.max_pending_requests.encode(out);
        self.decode_content.encode(out);
        encode_rest(&self.actions, out);
    }
}

// ------------------------------------------------------------------ pipeline

/// Captured Ethernet frames, in order.
#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub struct PipelineInput {
    pub frames: Vec<Frame>,
}

#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub struct Frame {
    /// Packet time advances by x × 250 ms before this frame (idle and
    /// fragment timeouts are tens of seconds).
    pub ts_delta: u8,
    /// Bytes on the wire beyond the captured ones (snaplen cut).
    pub cut: u8,
    pub data: Bytes<9216>,
}

pub const PIPELINE_TS_UNIT_NANOS: u64 = 250_000_000;

impl Encode for Frame {
    fn encode(&self, out: &mut Vec<u8>) {
        self.ts_delta.encode(out);
        self.cut.encode(out);
        self.data.encode(out);
    }
}

impl Encode for PipelineInput {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_rest(&self.frames, out);
    }
}

// -------------------------------------------------------------- plain inputs

/// `decode` input: `[link][frame]`, several frames separated by this marker.
/// `link % 6` picks the link type; `link / 6 * 64` bytes are added to the
/// wire length (a snaplen cut).
pub const FRAME_SEPARATOR: &[u8] = b"\xf0FRAME\x0f";

/// `http1_stream` input: `[chunk][split lo][split hi][bytes]`: the bytes
/// before `split` (a little-endian u16, clamped) are the client's, the rest
/// the server's, each fed in pieces of `chunk` bytes (0: one piece).
pub const STREAM_HEADER_LEN: usize = 3;

/// Encodes any value with `Encode`.
pub fn to_bytes<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Encode + for<'a> Arbitrary<'a> + PartialEq + fmt::Debug>(v: T) {
        let bytes = to_bytes(&v);
        let back = T::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn encodings_round_trip() {
        round_trip(ReassemblyInput {
            isn: 0xdead_beef,
            max_ooo_segments: 3,
            max_ooo_bytes: 999,
            worker_slack: 7,
            overlap_check_bytes: 4096,
            consistent: true,
            ops: vec![
                ReassemblyOp::Segment {
                    seq_offset: 0,
                    syn: true,
                    fin: false,
                    payload: Bytes(vec![]),
                    missing: 0,
                },
                ReassemblyOp::Segment {
                    seq_offset: 5,
                    syn: false,
                    fin: true,
                    payload: Bytes(b"hello".to_vec()),
                    missing: 9,
                },
                ReassemblyOp::PeerAck(77),
                ReassemblyOp::Flush,
            ],
        });
        round_trip(HttpInput {
            max_header_bytes: 1,
            max_headers: 2,
            max_body_bytes: 3,
            max_decoded_body_bytes: 4,
            max_pending_requests: 5,
            decode_content: true,
            actions: vec![
                HttpOp::Data(Side::Client, Bytes(b"GET / HTTP/1.1\r\n\r\n".to_vec())),
                HttpOp::Gap(Side::Server, GapLen::Small(1)),
                HttpOp::Gap(Side::Server, GapLen::Medium(300)),
                HttpOp::Gap(Side::Server, GapLen::Large(70000)),
                HttpOp::Gap(Side::Server, GapLen::Huge(1 << 40)),
                HttpOp::Gap(Side::Client, GapLen::Max),
                HttpOp::Fin(Side::Server),
                HttpOp::Data(Side::Server, Bytes(vec![])),
            ],
        });
        round_trip(FlowInput {
            isn: [1, u32::MAX],
            max_flows: 2,
            max_ooo_segments: 3,
            max_ooo_bytes: 100,
            overlap_check_bytes: 64,
            ops: vec![
                FlowOp::Segment {
                    conn: 1,
                    side: Side::Server,
                    ts_step: 3,
                    seq_offset: 0,
                    ack_offset: 1,
                    flags: 0x12,
                    payload: Bytes(b"HTTP/1.1 200 OK\r\n".to_vec()),
                    missing: 2,
                },
                FlowOp::Expire(40),
            ],
        });
        round_trip(PipelineInput {
            frames: vec![
                Frame {
                    ts_delta: 1,
                    cut: 0,
                    data: Bytes(vec![1, 2, 3]),
                },
                Frame {
                    ts_delta: 0,
                    cut: 9,
                    data: Bytes(vec![]),
                },
            ],
        });
    }
}
