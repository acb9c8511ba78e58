//! Offline capture files (pcap and pcapng, any link type libpcap reads) through
//! the `pcap` crate, always with nanosecond timestamps.

use super::{CaptureError, Next, PacketSource, RawPacket};
use crate::decode::LinkType;
use nix::libc;
use pcap::{Capture, Offline, Precision};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

pub struct FileSource {
    /// Declared before `_read_buffer`: closing the capture closes its
    /// stream, which must happen while the stream's buffer still exists.
    capture: Capture<Offline>,
    _read_buffer: Option<ReadBuffer>,
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
        let opened = if path.as_os_str() == "-" {
            // libpcap's own name for standard input.
            Capture::from_file_with_precision(path, Precision::Nano)
                .map(|capture| (capture, None))
                .map_err(|e| e.to_string())
        } else {
            open_buffered(path).map(|(capture, buffer)| (capture, Some(buffer)))
        };
        let (capture, read_buffer) = opened.map_err(|message| CaptureError::Open {
            path: display.clone(),
            message,
        })?;
        let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let dlt = capture.get_datalink().0;
        Ok(FileSource {
            capture,
            _read_buffer: read_buffer,
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

/// Stdio buffer for a capture file. libpcap reads each record with two
/// `fread`s from a stream that glibc buffers by the file's block size
/// (4 KiB), one `read` system call per few packets: about a tenth of
/// replay's reader time went to those calls. One MiB makes them rare.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// The stream buffer handed to `setvbuf`; freed only after the stream is
/// closed.
struct ReadBuffer(Box<[u8]>);

extern "C" {
    // libpcap, which the `pcap` crate links; the crate only opens files by
    // path or descriptor, leaving the stream's buffer at the default.
    fn pcap_fopen_offline_with_tstamp_precision(
        file: *mut libc::FILE,
        precision: libc::c_uint,
        errbuf: *mut libc::c_char,
    ) -> *mut libc::c_void;
}

/// Opens `path` for libpcap with nanosecond timestamps, like
/// `Capture::from_file_with_precision`, but with a large stream buffer.
fn open_buffered(path: &Path) -> Result<(Capture<Offline>, ReadBuffer), String> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "the path contains a NUL byte".to_string())?;
    let mut buffer = ReadBuffer(vec![0u8; READ_BUFFER_BYTES].into_boxed_slice());
    let mut errbuf = [0 as libc::c_char; PCAP_ERRBUF_SIZE];
    // SAFETY: `c_path` and the mode are NUL-terminated; `setvbuf` runs
    // before any I/O on the new stream, with a buffer that outlives it (see
    // `FileSource`); on success libpcap owns the stream and closes it when
    // the capture is dropped, on failure it is closed here.
    unsafe {
        let file = libc::fopen(c_path.as_ptr(), c"rb".as_ptr());
        if file.is_null() {
            return Err(std::io::Error::last_os_error().to_string());
        }
        if libc::setvbuf(
            file,
            buffer.0.as_mut_ptr().cast(),
            libc::_IOFBF,
            buffer.0.len(),
        ) != 0
        {
            libc::fclose(file);
            return Err("cannot set the read buffer".into());
        }
        let handle = pcap_fopen_offline_with_tstamp_precision(
            file,
            PCAP_TSTAMP_PRECISION_NANO,
            errbuf.as_mut_ptr(),
        );
        match NonNull::new(handle.cast()) {
            Some(handle) => Ok((Capture::from(handle), buffer)),
            None => {
                libc::fclose(file);
                Err(std::ffi::CStr::from_ptr(errbuf.as_ptr())
                    .to_string_lossy()
                    .into_owned())
            }
        }
    }
}

/// libpcap's `PCAP_ERRBUF_SIZE` and `PCAP_TSTAMP_PRECISION_NANO`.
const PCAP_ERRBUF_SIZE: usize = 256;
const PCAP_TSTAMP_PRECISION_NANO: libc::c_uint = 1;
