//! Link, network and transport decoding over borrowed packet bytes: Ethernet
//! (802.1Q / QinQ tags), Linux cooked capture v1 and v2, BSD loopback, raw
//! IPv4/IPv6; IPv4 and IPv6 (extension headers, fragments); cloud mirroring
//! tunnels (VXLAN, GENEVE, GRE, ERSPAN: see `tunnel`); TCP. The result is
//! a `TcpSegment` view that borrows the packet, or a counted reason why there is
//! none. Checksums are deliberately not verified: mirrored traffic often carries
//! offloaded (unfilled) checksums, and an IDS must see what the host accepted.
//! This module owns no flow state; it must not allocate per packet except
//! inside the bounded fragment reassembler.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod defrag;
mod link;
mod tunnel;

pub use link::LinkType;

use crate::config::DecodeSettings;
use crate::counters;
use crate::exchange::Timestamp;
use defrag::{Defragmenter, FragmentOutcome};
use etherparse::{IpNumber, LaxNetSlice, TcpSlice};
use link::NetLayer;
use std::net::IpAddr;
use tunnel::Tunnels;

counters! {
    /// What the decoder saw and everything it did not pass on, by kind.
    pub struct DecodeStats {
        packets,
        bytes,
        /// TCP segments handed to the flow stage.
        tcp_segments,
        ipv4,
        ipv6,
        vlan_tagged,
        /// Captured shorter than on the wire (snaplen): payload after the cut is a gap.
        truncated_packets,
        arp,
        /// Link payload that is not IP or ARP (LLDP, STP, ...).
        other_ethertype,
        udp,
        icmp,
        /// IP payload that is neither TCP, UDP nor ICMP.
        other_ip_protocol,
        /// Packets too short or inconsistent at the link layer.
        malformed_link,
        malformed_ip,
        malformed_tcp,
        /// Packets whose capture link type is not supported.
        unsupported_link_type,
        ip_fragments,
        /// Datagrams rebuilt from fragments.
        fragments_reassembled,
        /// Fragments dropped: table full, overlapping/invalid, timed out, left
        /// incomplete at the end, or inside a tunnel whose outer datagram was
        /// itself reassembled (a dropped partial datagram counts once).
        fragments_dropped,
        fragments_timed_out,
        /// Fragments that repeated bytes already received, byte for byte
        /// (retransmissions): ignored.
        fragments_duplicate,
        /// Datagrams dropped because a fragment overlapped received bytes
        /// with other values, straddled their edge, or ended inside them
        /// (teardrop): RFC 5722 drops them too, and hosts disagree on which
        /// copy wins (an evasion indicator).
        fragment_overlaps,
        /// Partial datagrams still waiting for fragments when the decoder
        /// finished (end of the capture).
        fragments_incomplete_at_end,
        /// VXLAN headers decapsulated.
        vxlan,
        /// GENEVE headers decapsulated.
        geneve,
        /// GRE headers decapsulated, ERSPAN included.
        gre,
        /// ERSPAN (type I, II or III) headers decapsulated (also counted in `gre`).
        erspan,
        /// Tunnel headers cut short or inconsistent (bad version, flags, lengths).
        tunnel_malformed,
        /// Tunnels nested deeper than `decode.max_tunnel_depth`, not decoded.
        tunnel_depth_exceeded,
    }
}

/// TCP control bits the reassembler uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;

    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A decoded TCP segment borrowing its payload from the packet (or from the
/// fragment reassembler's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub payload: &'a [u8],
    /// Payload bytes the IP header announced but the capture did not keep.
    pub missing_payload: u32,
    /// Not a segment but a notice: a datagram of this connection was
    /// dropped for overlapping fragments (no payload, no flags).
    pub fragment_overlap: bool,
}

/// Stateful decoder: counters plus the bounded IP fragment table. One per
/// capture source, used from one thread.
pub struct Decoder {
    pub stats: DecodeStats,
    defrag: Defragmenter,
    tunnels: Tunnels,
}

/// Per-packet decoding state passed down the layers (and into tunnels).
struct Ctx<'s> {
    stats: &'s mut DecodeStats,
    tunnels: &'s Tunnels,
    ts: Timestamp,
    /// Tunnels decapsulated so far for this packet (0 = the captured packet).
    depth: u8,
}

impl Decoder {
    pub fn new(settings: &DecodeSettings) -> Self {
        Decoder {
            stats: DecodeStats::default(),
            defrag: Defragmenter::new(settings),
            tunnels: Tunnels::new(settings),
        }
    }

    /// Decodes one captured frame. `None` means the packet carries no TCP
    /// segment we can use; the reason has been counted.
    pub fn decode<'a>(
        &'a mut self,
        link: LinkType,
        ts: Timestamp,
        frame: &'a [u8],
        wire_len: u32,
    ) -> Option<TcpSegment<'a>> {
        // Split borrows: the fragment table and the counters are used apart.
        let Decoder {
            stats,
            defrag,
            tunnels,
        } = self;
        stats.packets += 1;
        stats.bytes += u64::from(wire_len.max(frame.len() as u32));
        let mut ctx = Ctx {
            stats,
            tunnels,
            ts,
            depth: 0,
        };
        let packet = match link::slice(link, frame) {
            Ok(p) => p,
            Err(link::LinkError::TunnelPayload { geneve }) => {
                return tunnel::socket_payload(&mut ctx, Some(defrag), geneve, frame);
            }
            Err(link::LinkError::Malformed) => {
                ctx.stats.malformed_link += 1;
                return None;
            }
            Err(link::LinkError::NotIp) => {
                ctx.stats.other_ethertype += 1;
                return None;
            }
        };
        decode_net(&mut ctx, Some(defrag), packet)
    }

    /// Packet time moves on: expire partial datagrams.
    pub fn expire(&mut self, now: Timestamp) {
        let expired = self.defrag.expire(now);
        self.stats.fragments_timed_out += expired;
        self.stats.fragments_dropped += expired;
    }

    /// The capture ended: partial datagrams will never complete; they are
    /// dropped and counted (`fragments_incomplete_at_end`).
    pub fn finish(&mut self) {
        let left = self.defrag.finish();
        self.stats.fragments_incomplete_at_end += left;
        self.stats.fragments_dropped += left;
    }
}

/// Decodes from the network layer down. Called again by `tunnel` for an inner
/// packet. `defrag` is `None` when the bytes being decoded live in the
/// fragment table's own buffer (a reassembled tunnel datagram): that buffer is
/// borrowed for the result, so an inner fragment cannot be added to the table
/// and is dropped and counted instead.
fn decode_net<'a>(
    ctx: &mut Ctx<'_>,
    defrag: Option<&'a mut Defragmenter>,
    packet: NetLayer<'a>,
) -> Option<TcpSegment<'a>> {
    let stats = &mut *ctx.stats;
    if packet.vlan_tagged {
        stats.vlan_tagged += 1;
    }
    let net = match packet.net {
        Some(net) => net,
        None => {
            if packet.malformed {
                stats.malformed_ip += 1;
            } else {
                stats.other_ethertype += 1;
            }
            return None;
        }
    };
    let (src, dst, payload, declared_len) = match &net {
        LaxNetSlice::Ipv4(v4) => {
            stats.ipv4 += 1;
            let h = v4.header();
            let declared = usize::from(h.total_len()).saturating_sub(h.slice().len());
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v4.payload(),
                declared,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            stats.ipv6 += 1;
            let h = v6.header();
            let ext_len = v6.extensions().slice().len();
            let declared = usize::from(h.payload_length()).saturating_sub(ext_len);
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v6.payload(),
                declared,
            )
        }
        LaxNetSlice::Arp(_) => {
            stats.arp += 1;
            return None;
        }
    };
    if payload.fragmented {
        stats.ip_fragments += 1;
        let Some(defrag) = defrag else {
            stats.fragments_dropped += 1;
            return None;
        };
        return match defrag.add(ctx.ts, &net) {
            FragmentOutcome::Complete {
                src,
                dst,
                ip_number,
            } => {
                stats.fragments_reassembled += 1;
                let datagram = defrag.completed();
                if ip_number != IpNumber::TCP {
                    // Mirror tunnels over a 1500-byte MTU are often fragmented:
                    // the rebuilt UDP / GRE datagram is decapsulated too.
                    return not_tcp(ctx, None, ip_number, datagram);
                }
                tcp_segment(ctx.stats, src, dst, datagram, datagram.len())
            }
            FragmentOutcome::Pending => None,
            FragmentOutcome::Duplicate => {
                stats.fragments_duplicate += 1;
                None
            }
            FragmentOutcome::Overlap { tcp } => {
                stats.fragment_overlaps += 1;
                stats.fragments_dropped += 1;
                // The connection's next message is flagged (an evasion
                // indicator with an event), when the ports are known.
                tcp.map(|f| TcpSegment {
                    src: f.src,
                    dst: f.dst,
                    src_port: f.src_port,
                    dst_port: f.dst_port,
                    seq: 0,
                    ack: 0,
                    flags: TcpFlags(0),
                    payload: &[],
                    missing_payload: 0,
                    fragment_overlap: true,
                })
            }
            FragmentOutcome::Dropped => {
                stats.fragments_dropped += 1;
                None
            }
        };
    }
    if payload.ip_number != IpNumber::TCP {
        return not_tcp(ctx, defrag, payload.ip_number, payload.payload);
    }
    // IPv6 jumbograms announce length 0; trust what was captured then.
    let declared = if declared_len == 0 {
        payload.payload.len()
    } else {
        declared_len
    };
    tcp_segment(stats, src, dst, payload.payload, declared)
}

/// An IP payload that is not TCP: a tunnel to decapsulate, or counted by kind.
fn not_tcp<'a>(
    ctx: &mut Ctx<'_>,
    defrag: Option<&'a mut Defragmenter>,
    ip_number: IpNumber,
    ip_payload: &'a [u8],
) -> Option<TcpSegment<'a>> {
    match ip_number {
        IpNumber::UDP => return tunnel::udp(ctx, defrag, ip_payload),
        IpNumber::GRE => return tunnel::gre(ctx, defrag, ip_payload),
        IpNumber::ICMP | IpNumber::IPV6_ICMP => ctx.stats.icmp += 1,
        _ => ctx.stats.other_ip_protocol += 1,
    }
    None
}

/// `ip_payload` is what was captured of the IP payload; `declared_len` is how
/// long the IP header says it is, so a snaplen cut can be reported as missing.
fn tcp_segment<'a>(
    stats: &mut DecodeStats,
    src: IpAddr,
    dst: IpAddr,
    ip_payload: &'a [u8],
    declared_len: usize,
) -> Option<TcpSegment<'a>> {
    let tcp = match TcpSlice::from_slice(ip_payload) {
        Ok(t) => t,
        Err(_) => {
            stats.malformed_tcp += 1;
            return None;
        }
    };
    let payload = tcp.payload();
    let header_len = ip_payload.len() - payload.len();
    let missing = declared_len
        .saturating_sub(header_len)
        .saturating_sub(payload.len());
    if missing > 0 {
        stats.truncated_packets += 1;
    }
    let mut flags = 0u8;
    for (set, bit) in [
        (tcp.fin(), TcpFlags::FIN),
        (tcp.syn(), TcpFlags::SYN),
        (tcp.rst(), TcpFlags::RST),
        (tcp.ack(), TcpFlags::ACK),
    ] {
        if set {
            flags |= bit;
        }
    }
    stats.tcp_segments += 1;
    Some(TcpSegment {
        src,
        dst,
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(flags),
        payload,
        missing_payload: u32::try_from(missing).unwrap_or(u32::MAX),
        fragment_overlap: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn decoder() -> Decoder {
        Decoder::new(&DecodeSettings::default())
    }

    fn eth_tcp(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77);
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let frame = eth_tcp(b"GET / HTTP/1.1\r\n\r\n");
        let mut d = decoder();
        let seg = d
            .decode(LinkType::Ethernet, Timestamp(1), &frame, frame.len() as u32)
            .unwrap();
        assert_eq!(seg.src_port, 40000);
        assert_eq!(seg.dst_port, 80);
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.ack, 77);
        assert!(seg.flags.ack() && !seg.flags.syn());
        assert_eq!(seg.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(seg.missing_payload, 0);
    }

    #[test]
    fn snaplen_cut_is_reported_as_missing_payload() {
        let frame = eth_tcp(&[b'x'; 100]);
        let cut = &frame[..frame.len() - 40];
        let mut d = decoder();
        let seg = d
            .decode(LinkType::Ethernet, Timestamp(1), cut, frame.len() as u32)
            .unwrap();
        assert_eq!(seg.payload.len(), 60);
        assert_eq!(seg.missing_payload, 40);
        assert_eq!(d.stats.truncated_packets, 1);
    }

    #[test]
    fn qinq_tagged_frame_decodes() {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(
                etherparse::VlanId::try_new(10).unwrap(),
                etherparse::VlanId::try_new(20).unwrap(),
            )
            .ipv6([1; 16], [2; 16], 64)
            .tcp(1, 2, 3, 4);
        let mut frame = Vec::new();
        builder.write(&mut frame, b"hi").unwrap();
        let mut d = decoder();
        let seg = d
            .decode(LinkType::Ethernet, Timestamp(1), &frame, frame.len() as u32)
            .unwrap();
        assert_eq!(seg.payload, b"hi");
        assert_eq!(d.stats.vlan_tagged, 1);
        assert_eq!(d.stats.ipv6, 1);
    }

    #[test]
    fn udp_and_garbage_are_counted_not_errors() {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(53, 53);
        let mut frame = Vec::new();
        builder.write(&mut frame, b"dns").unwrap();
        let mut d = decoder();
        assert!(d
            .decode(LinkType::Ethernet, Timestamp(1), &frame, 0)
            .is_none());
        assert_eq!(d.stats.udp, 1);
        assert!(d
            .decode(LinkType::Ethernet, Timestamp(1), &[0u8; 5], 5)
            .is_none());
        assert_eq!(d.stats.malformed_link, 1);
        // Every prefix of a valid frame decodes to something or to a counted reason.
        for cut in 0..frame.len() {
            let _ = d.decode(LinkType::Ethernet, Timestamp(1), &frame[..cut], 0);
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let mut tcp = Vec::new();
        etherparse::TcpHeader::new(1234, 80, 7, 1000)
            .write(&mut tcp)
            .unwrap();
        tcp.extend_from_slice(b"GET");
        // Hop-by-hop (8 bytes, padding) then destination options (8 bytes), then TCP.
        let mut exts = vec![60, 0, 1, 4, 0, 0, 0, 0];
        exts.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        let payload_len = (exts.len() + tcp.len()) as u16;
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&payload_len.to_be_bytes());
        ip.extend_from_slice(&[0, 64]); // next header: hop-by-hop
        ip.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&exts);
        ip.extend_from_slice(&tcp);
        let mut d = decoder();
        let seg = d.decode(LinkType::RawIp, Timestamp(1), &ip, 0).unwrap();
        assert_eq!(seg.payload, b"GET");
        assert_eq!(seg.dst_port, 80);
        assert_eq!(seg.missing_payload, 0);
    }

    #[test]
    fn raw_ip_and_null_loopback() {
        let builder = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(1, 80, 5, 6);
        let mut ip = Vec::new();
        builder.write(&mut ip, b"abc").unwrap();
        let mut d = decoder();
        assert_eq!(
            d.decode(LinkType::RawIp, Timestamp(1), &ip, 0)
                .unwrap()
                .payload,
            b"abc"
        );
        let mut null = 2u32.to_ne_bytes().to_vec(); // AF_INET, host byte order
        null.extend_from_slice(&ip);
        assert_eq!(
            d.decode(LinkType::Null, Timestamp(1), &null, 0)
                .unwrap()
                .payload,
            b"abc"
        );
    }
}
