//! Packet sources: where raw frames come from (a pcap/pcapng file today, live
//! interfaces later). A source hands out borrowed frames with their capture
//! timestamp; it does no decoding and keeps no flow state.

pub mod file;

pub use file::FileSource;

use crate::exchange::Timestamp;
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
}

/// One captured frame, borrowed from the source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
}
