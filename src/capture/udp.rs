//! A UDP mirror target without libpcap: cloud traffic mirroring (AWS VPC
//! Traffic Mirroring, Azure vTAP, GCP Packet Mirroring collectors) sends
//! VXLAN or GENEVE datagrams to a host port; each datagram payload is a
//! tunnel header plus the mirrored frame. Packet time is the receive time,
//! since the datagrams carry none. What the kernel drops because the
//! socket's receive buffer is full is read from the socket itself
//! (`SO_MEMINFO`, the drop count /proc/net/udp shows) with the stats.

use super::{CaptureError, Next, PacketSource, RawPacket};
use crate::config::{UdpEncapsulation, UdpSourceSettings};
use crate::decode::LinkType;
use crate::exchange::Timestamp;
use crate::telemetry::CaptureStats;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest UDP payload.
const DATAGRAM_BYTES: usize = 65_536;
/// How long a read waits before returning `Next::Idle`.
const POLL: Duration = Duration::from_millis(100);

pub struct UdpSource {
    socket: UdpSocket,
    name: String,
    link: LinkType,
    buf: Vec<u8>,
    datagrams: u64,
    errors: u64,
    /// Datagrams the kernel dropped on the socket, summed over the reads of
    /// its 32-bit drop count (so a wrap loses nothing).
    dropped_kernel: u64,
    /// The drop count as last read.
    drops_read: u32,
}

impl UdpSource {
    pub fn open(settings: &UdpSourceSettings) -> Result<UdpSource, CaptureError> {
        let name = format!("udp:{}", settings.listen);
        let err = |e: std::io::Error| CaptureError::Open {
            path: name.clone(),
            message: e.to_string(),
        };
        let socket = Socket::new(
            Domain::for_address(settings.listen),
            Type::DGRAM,
            Some(Protocol::UDP),
        )
        .map_err(err)?;
        set_receive_buffer(&socket, settings.buffer_bytes).map_err(err)?;
        // The kernel doubles the size asked for (bookkeeping overhead) and
        // caps a plain SO_RCVBUF at net.core.rmem_max.
        let granted = socket.recv_buffer_size().map_err(err)? / 2;
        if granted < settings.buffer_bytes as usize {
            tracing::warn!(
                "capture.udp {}: buffer_bytes is {} but the kernel granted {granted}: \
                 raise net.core.rmem_max, or run with CAP_NET_ADMIN (SO_RCVBUFFORCE); \
                 what overflows it is counted in capture.udp_dropped_kernel",
                settings.listen,
                settings.buffer_bytes
            );
        }
        socket.bind(&settings.listen.into()).map_err(err)?;
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(Some(POLL)).map_err(err)?;
        let drops_read = socket_drops(&socket).map_err(|e| CaptureError::Open {
            path: name.clone(),
            message: format!(
                "cannot read the socket's drop count (SO_MEMINFO, Linux 4.12 or later): {e}"
            ),
        })?;
        Ok(UdpSource {
            socket,
            name,
            link: match settings.encapsulation {
                UdpEncapsulation::Vxlan => LinkType::VxlanPayload,
                UdpEncapsulation::Geneve => LinkType::GenevePayload,
            },
            buf: vec![0; DATAGRAM_BYTES],
            datagrams: 0,
            errors: 0,
            dropped_kernel: u64::from(drops_read),
            drops_read,
        })
    }

    /// The bound address (useful when the settings asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }
}

impl PacketSource for UdpSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        self.link
    }

    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        match self.socket.recv(&mut self.buf) {
            Ok(n) => {
                self.datagrams += 1;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let data = self.buf.get(..n).unwrap_or_default();
                Ok(Next::Packet(RawPacket {
                    ts: Timestamp::from_secs_nanos(now.as_secs(), now.subsec_nanos()),
                    data,
                    wire_len: n as u32,
                }))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(Next::Idle)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Next::Idle),
            Err(_) => {
                // ICMP-induced errors and the like: count and keep reading.
                self.errors += 1;
                Ok(Next::Idle)
            }
        }
    }

    fn add_stats(&mut self, stats: &mut CaptureStats) {
        stats.udp_datagrams += self.datagrams;
        stats.udp_receive_errors += self.errors;
        if let Ok(drops) = socket_drops(&self.socket) {
            let new = drops.wrapping_sub(self.drops_read);
            self.dropped_kernel += u64::from(new);
            self.drops_read = drops;
        }
        stats.udp_dropped_kernel += self.dropped_kernel;
    }
}

/// SO_RCVBUFFORCE (with CAP_NET_ADMIN: the size asked for even beyond
/// net.core.rmem_max), else SO_RCVBUF.
fn set_receive_buffer(socket: &Socket, bytes: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid descriptor, and an int option of the size passed.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced == 0 {
        return Ok(());
    }
    socket.set_recv_buffer_size(bytes as usize)
}

/// The socket's count of datagrams dropped for want of buffer space
/// (`sk_drops`, the `drops` column of /proc/net/udp), from SO_MEMINFO. The
/// kernel keeps it in 32 bits; the stats read it about once a second, far
/// more often than it can wrap.
fn socket_drops(socket: &UdpSocket) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    const SK_MEMINFO_VARS: usize = libc::SK_MEMINFO_DROPS as usize + 1;
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: a valid descriptor; the kernel writes at most `len` bytes
    // into `info` and sets `len` to what it wrote.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let filled = len as usize / std::mem::size_of::<u32>();
    match info.get(libc::SK_MEMINFO_DROPS as usize) {
        Some(&drops) if filled >= SK_MEMINFO_VARS => Ok(drops),
        _ => Err(std::io::Error::new(
            ErrorKind::Unsupported,
            "SO_MEMINFO has no drop count on this kernel",
        )),
    }
}
