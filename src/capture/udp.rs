//! A UDP mirror target without libpcap: cloud traffic mirroring (AWS VPC
//! Traffic Mirroring, Azure vTAP, GCP Packet Mirroring collectors) sends
//! VXLAN or GENEVE datagrams to a host port; each datagram payload is a
//! tunnel header plus the mirrored frame. Packet time is the receive time,
//! since the datagrams carry none.

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
        socket
            .set_recv_buffer_size(settings.buffer_bytes as usize)
            .map_err(err)?;
        socket.bind(&settings.listen.into()).map_err(err)?;
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(Some(POLL)).map_err(err)?;
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
    }
}
