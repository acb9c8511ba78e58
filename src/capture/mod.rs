//! Packet sources: where raw frames come from — a pcap/pcapng file, a live
//! interface through libpcap, or a UDP socket receiving mirror tunnels. A
//! source hands out borrowed frames with their capture timestamp and its own
//! drop statistics; it does no decoding and keeps no flow state.

pub mod file;
pub mod live;
pub mod udp;

pub use file::FileSource;
pub use live::LiveSource;
pub use udp::UdpSource;

use crate::decode::LinkType;
use crate::exchange::Timestamp;
use crate::telemetry::CaptureStats;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("cannot open capture {path}: {message}")]
    Open { path: String, message: String },
    #[error("error reading {path} after packet {packets}: {message}")]
    Read {
        path: String,
        packets: u64,
        message: String,
    },
    #[error("capture {path} has link type {dlt}, which apisensor does not decode")]
    LinkType { path: String, dlt: i32 },
}

/// One captured frame, borrowed from the source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
}

impl<'a> RawPacket<'a> {
    /// A libpcap packet; its timestamp is in nanoseconds (sources open
    /// captures with nanosecond precision, so `tv_usec` holds nanoseconds).
    pub fn from_pcap(packet: &pcap::Packet<'a>) -> Self {
        let h = packet.header;
        let secs = u64::try_from(h.ts.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(h.ts.tv_usec).unwrap_or(0);
        RawPacket {
            ts: Timestamp::from_secs_nanos(secs, nanos),
            data: packet.data,
            wire_len: h.len,
        }
    }
}

/// What asking a source for the next frame gave.
pub enum Next<'a> {
    Packet(RawPacket<'a>),
    /// Nothing arrived within the source's poll interval (live sources);
    /// the caller checks for shutdown and flushes partial batches.
    Idle,
    /// The source is exhausted (end of file).
    End,
}

/// A source of frames of one link type.
pub trait PacketSource: Send {
    /// Name for logs and errors (file path or interface).
    fn name(&self) -> &str;
    fn link_type(&self) -> LinkType;
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError>;
    /// Adds this source's own drop statistics (kernel, socket) to `stats`.
    fn add_stats(&mut self, _stats: &mut CaptureStats) {}
    /// Bytes read and total bytes, for progress bars (files only).
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
}
