//! Offline capture files (pcap and pcapng, any link type libpcap reads) through
//! the `pcap` crate, always with nanosecond timestamps.

use super::{CaptureError, Next, PacketSource, RawPacket};
use crate::decode::LinkType;
use pcap::{Capture, Offline, Precision};
use std::path::Path;

pub struct FileSource {
    capture: Capture<Offline>,
    path: String,
    link: Option<LinkType>,
    dlt: i32,
    packets: u64,
    /// File size, for progress reporting.
    file_bytes: u64,
    /// Bytes of records read so far (headers included), for progress.
    bytes_read: u64,
}

/// libpcap's per-record header size in pcap files; close enough for pcapng progress.
const RECORD_HEADER_BYTES: u64 = 16;

impl FileSource {
    pub fn open(path: &Path) -> Result<FileSource, CaptureError> {
        let display = path.display().to_string();
        let capture = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| {
            CaptureError::Open {
                path: display.clone(),
                message: e.to_string(),
            }
        })?;
        let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let dlt = capture.get_datalink().0;
        Ok(FileSource {
            capture,
            path: display,
            link: LinkType::from_dlt(dlt),
            dlt,
            packets: 0,
            file_bytes,
            bytes_read: 0,
        })
    }

    /// The file's libpcap link type (`DLT_*`).
    pub fn datalink(&self) -> i32 {
        self.dlt
    }

    /// The decodable link type, `None` when apisensor does not decode the
    /// file's (its packets are then counted as `unsupported_link_type`).
    pub fn decodable_link(&self) -> Option<LinkType> {
        self.link
    }

    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }
}

impl PacketSource for FileSource {
    fn name(&self) -> &str {
        &self.path
    }

    fn link_type(&self) -> LinkType {
        self.link.unwrap_or(LinkType::Ethernet)
    }

    /// A damaged record ends the file with an error: libpcap cannot
    /// resynchronise inside one.
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        match self.capture.next_packet() {
            Ok(packet) => {
                self.packets += 1;
                self.bytes_read += RECORD_HEADER_BYTES + u64::from(packet.header.caplen);
                Ok(Next::Packet(RawPacket::from_pcap(&packet)))
            }
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(e) => Err(CaptureError::Read {
                path: self.path.clone(),
                packets: self.packets,
                message: e.to_string(),
            }),
        }
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.bytes_read, self.file_bytes))
    }
}
