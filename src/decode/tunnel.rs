//! Decapsulation of cloud traffic-mirroring tunnels, so the mirrored packet
//! inside goes through the same decode path as a packet captured directly:
//!
//! * **VXLAN** (RFC 7348) on the UDP destination ports `decode.vxlan_ports`
//!   (4789: AWS VPC Traffic Mirroring, Azure vTAP): 8-byte header, inner Ethernet.
//! * **GENEVE** (RFC 8926) on `decode.geneve_ports` (6081): 8-byte header plus
//!   options, inner Ethernet (0x6558), IPv4 or IPv6.
//! * **GRE** (IP protocol 47, RFC 2784 / 2890 optional checksum, key and
//!   sequence fields): transparent Ethernet bridging (0x6558), IPv4, IPv6, and
//!   **ERSPAN** (0x88BE: type I without a GRE sequence number, type II with an
//!   8-byte header; 0x22EB: type III, 12-byte header plus an optional 8-byte
//!   platform subheader), all carrying Ethernet.
//!
//! This module only reads tunnel headers over borrowed bytes and hands the
//! inner bytes back to `decode_net`; it owns no state and never allocates.
//! Nesting is bounded by `decode.max_tunnel_depth` (counted in
//! `tunnel_depth_exceeded`), so a packet of nested tunnels cannot recurse
//! without limit. A tunnel header that is cut short or inconsistent counts
//! `tunnel_malformed`; a well-formed tunnel carrying something we do not decode
//! (MPLS, PPP, ERSPAN III IP frames) counts `other_ethertype`.
//!
//! **Flow key.** The flow key stays the inner 5-tuple: the VNI, the GRE key,
//! the ERSPAN session and the outer tunnel endpoints are not part of it. Two
//! VPCs with overlapping address space mirrored to one sensor therefore share
//! flows when their inner 5-tuples collide (rare for TCP, whose client ports
//! differ, but possible). A later change could return the VNI / session id
//! with the `TcpSegment` (a `tunnel_id: u32`, 0 when not tunnelled) and mix it
//! into `flow::key` and the worker hash; nothing here would need to change but
//! returning the value the parsers below already read.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use super::defrag::Defragmenter;
use super::{decode_net, link, Ctx, TcpSegment};
use crate::config::DecodeSettings;
use etherparse::EtherType;

/// Transparent Ethernet bridging: the payload is a whole Ethernet frame.
const ETHERTYPE_TEB: u16 = 0x6558;
/// ERSPAN type I and II (GRE protocol).
const ETHERTYPE_ERSPAN_II: u16 = 0x88be;
/// ERSPAN type III (GRE protocol).
const ETHERTYPE_ERSPAN_III: u16 = 0x22eb;

const UDP_HEADER_LEN: usize = 8;
const VXLAN_HEADER_LEN: usize = 8;
const GENEVE_HEADER_LEN: usize = 8;
const ERSPAN_II_HEADER_LEN: usize = 8;
const ERSPAN_III_HEADER_LEN: usize = 12;
const ERSPAN_III_SUBHEADER_LEN: usize = 8;

/// Tunnel settings resolved once from `DecodeSettings`.
#[derive(Debug, Clone)]
pub(super) struct Tunnels {
    /// 0 when decapsulation is off.
    max_depth: u8,
    vxlan_ports: Vec<u16>,
    geneve_ports: Vec<u16>,
}

impl Tunnels {
    pub(super) fn new(settings: &DecodeSettings) -> Self {
        Tunnels {
            max_depth: if settings.decapsulate {
                settings.max_tunnel_depth
            } else {
                0
            },
            vxlan_ports: settings.vxlan_ports.clone(),
            geneve_ports: settings.geneve_ports.clone(),
        }
    }

    /// Whether any decapsulation happens: off, tunnels are plain UDP / IP.
    pub(super) fn enabled(&self) -> bool {
        self.max_depth > 0
    }
}

/// What follows a tunnel header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inner<'a> {
    Ethernet(&'a [u8]),
    /// An IP packet without link header; the EtherType says which version.
    Ip(EtherType, &'a [u8]),
    /// A well-formed tunnel carrying a payload type we do not decode.
    Unsupported,
}

/// The tunnel header is cut short or inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpTunnel {
    Vxlan,
    Geneve,
}

/// A UDP datagram (header included, as the IP payload or the reassembled
/// datagram). Tunnel ports are decapsulated; anything else counts `udp`.
pub(super) fn udp<'a>(
    ctx: &mut Ctx<'_>,
    defrag: Option<&'a mut Defragmenter>,
    datagram: &'a [u8],
) -> Option<TcpSegment<'a>> {
    let kind = match be16(datagram, 2) {
        Some(port) if ctx.tunnels.enabled() && ctx.tunnels.vxlan_ports.contains(&port) => {
            UdpTunnel::Vxlan
        }
        Some(port) if ctx.tunnels.enabled() && ctx.tunnels.geneve_ports.contains(&port) => {
            UdpTunnel::Geneve
        }
        _ => {
            ctx.stats.udp += 1;
            return None;
        }
    };
    if !enter(ctx) {
        return None;
    }
    let parsed = udp_payload(datagram).and_then(|payload| match kind {
        UdpTunnel::Vxlan => vxlan(payload),
        UdpTunnel::Geneve => geneve(payload),
    });
    let Ok(inner_packet) = parsed else {
        ctx.stats.tunnel_malformed += 1;
        return None;
    };
    match kind {
        UdpTunnel::Vxlan => ctx.stats.vxlan += 1,
        UdpTunnel::Geneve => ctx.stats.geneve += 1,
    }
    inner(ctx, defrag, inner_packet)
}

/// A VXLAN or GENEVE payload as a UDP socket delivers it (no outer
/// Ethernet/IP/UDP headers): the mirror-target case without libpcap.
pub(super) fn socket_payload<'a>(
    ctx: &mut Ctx<'_>,
    defrag: Option<&'a mut Defragmenter>,
    geneve_encapsulation: bool,
    payload: &'a [u8],
) -> Option<TcpSegment<'a>> {
    if !enter(ctx) {
        return None;
    }
    let parsed = if geneve_encapsulation {
        geneve(payload)
    } else {
        vxlan(payload)
    };
    let Ok(inner_packet) = parsed else {
        ctx.stats.tunnel_malformed += 1;
        return None;
    };
    if geneve_encapsulation {
        ctx.stats.geneve += 1;
    } else {
        ctx.stats.vxlan += 1;
    }
    inner(ctx, defrag, inner_packet)
}

/// A GRE packet (the IP payload of protocol 47, or the reassembled datagram).
pub(super) fn gre<'a>(
    ctx: &mut Ctx<'_>,
    defrag: Option<&'a mut Defragmenter>,
    ip_payload: &'a [u8],
) -> Option<TcpSegment<'a>> {
    if !ctx.tunnels.enabled() {
        ctx.stats.other_ip_protocol += 1;
        return None;
    }
    if !enter(ctx) {
        return None;
    }
    let Ok((inner_packet, erspan)) = parse_gre(ip_payload) else {
        ctx.stats.tunnel_malformed += 1;
        return None;
    };
    ctx.stats.gre += 1;
    if erspan {
        ctx.stats.erspan += 1;
    }
    inner(ctx, defrag, inner_packet)
}

/// One more tunnel level; false (and counted) when it would exceed the limit.
fn enter(ctx: &mut Ctx<'_>) -> bool {
    if ctx.depth >= ctx.tunnels.max_depth {
        ctx.stats.tunnel_depth_exceeded += 1;
        return false;
    }
    ctx.depth += 1;
    true
}

/// Sends the inner packet down the ordinary path with the same counters.
fn inner<'a>(
    ctx: &mut Ctx<'_>,
    defrag: Option<&'a mut Defragmenter>,
    packet: Inner<'a>,
) -> Option<TcpSegment<'a>> {
    match packet {
        Inner::Ethernet(frame) => match link::ethernet(frame) {
            Ok(layer) => decode_net(ctx, defrag, layer),
            Err(_) => {
                ctx.stats.malformed_link += 1;
                None
            }
        },
        // Never fails here: an unusable IP header comes back as
        // `malformed`, which `decode_net` counts as `malformed_ip`.
        Inner::Ip(ether_type, bytes) => decode_net(ctx, defrag, link::network(ether_type, bytes)),
        Inner::Unsupported => {
            ctx.stats.other_ethertype += 1;
            None
        }
    }
}

/// The UDP payload, bounded by the UDP length when it is consistent; a
/// snaplen cut (length beyond what was captured) keeps what was captured, and
/// the inner IP header then reports the rest as missing.
fn udp_payload(datagram: &[u8]) -> Result<&[u8], Malformed> {
    let declared = usize::from(be16(datagram, 4).ok_or(Malformed)?);
    let end = if (UDP_HEADER_LEN..=datagram.len()).contains(&declared) {
        declared
    } else {
        datagram.len()
    };
    datagram.get(UDP_HEADER_LEN..end).ok_or(Malformed)
}

/// RFC 7348: flags (I bit = VNI valid), 24 reserved bits, 24-bit VNI, 8
/// reserved bits; then an Ethernet frame.
fn vxlan(payload: &[u8]) -> Result<Inner<'_>, Malformed> {
    const FLAG_I: u8 = 0x08;
    let flags = *payload.first().ok_or(Malformed)?;
    let rest = payload.get(VXLAN_HEADER_LEN..).ok_or(Malformed)?;
    // The I flag MUST be set; other flag bits are extensions (GBP, GPE) whose
    // fields live in reserved bits and do not change the framing.
    if flags & FLAG_I == 0 {
        return Err(Malformed);
    }
    Ok(Inner::Ethernet(rest))
}

/// RFC 8926: version (2 bits, 0), option length (6 bits, in 4-byte words),
/// O and C flags, protocol type, VNI, reserved; then the options.
fn geneve(payload: &[u8]) -> Result<Inner<'_>, Malformed> {
    let first = *payload.first().ok_or(Malformed)?;
    if first >> 6 != 0 {
        // An unknown version has an unknown layout.
        return Err(Malformed);
    }
    let options_len = usize::from(first & 0x3f) * 4;
    let protocol = be16(payload, 2).ok_or(Malformed)?;
    // Critical options (C flag) are not interpreted: a passive sensor still
    // wants to see the traffic the endpoint may have accepted.
    let rest = payload
        .get(GENEVE_HEADER_LEN + options_len..)
        .ok_or(Malformed)?;
    Ok(by_ether_type(protocol, rest))
}

/// RFC 2784 / 2890 GRE: returns the inner packet and whether it was ERSPAN.
fn parse_gre(data: &[u8]) -> Result<(Inner<'_>, bool), Malformed> {
    const CHECKSUM: u8 = 0x80;
    const ROUTING: u8 = 0x40;
    const KEY: u8 = 0x20;
    const SEQUENCE: u8 = 0x10;
    let flags = *data.first().ok_or(Malformed)?;
    let version = data.get(1).ok_or(Malformed)? & 0x07;
    let protocol = be16(data, 2).ok_or(Malformed)?;
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE carrying PPP: a different header
        // we do not decode.
        return Ok((Inner::Unsupported, false));
    }
    if flags & ROUTING != 0 {
        // RFC 1701 source routes were dropped by RFC 2784 and are not parsed;
        // without them the payload offset is unknown.
        return Err(Malformed);
    }
    let mut len = 4;
    for bit in [CHECKSUM, KEY, SEQUENCE] {
        if flags & bit != 0 {
            len += 4;
        }
    }
    let rest = data.get(len..).ok_or(Malformed)?;
    Ok(match protocol {
        ETHERTYPE_ERSPAN_II if flags & SEQUENCE == 0 => {
            // Type I has neither a GRE sequence number nor an ERSPAN header.
            (Inner::Ethernet(rest), true)
        }
        ETHERTYPE_ERSPAN_II => (erspan_ii(rest)?, true),
        ETHERTYPE_ERSPAN_III => (erspan_iii(rest)?, true),
        _ => (by_ether_type(protocol, rest), false),
    })
}

/// ERSPAN type II: version 1 (4 bits), VLAN, CoS, En, T, session id,
/// reserved, index: 8 bytes, then the mirrored Ethernet frame.
fn erspan_ii(data: &[u8]) -> Result<Inner<'_>, Malformed> {
    let version = data.first().ok_or(Malformed)? >> 4;
    let rest = data.get(ERSPAN_II_HEADER_LEN..).ok_or(Malformed)?;
    if version != 1 {
        return Err(Malformed);
    }
    Ok(Inner::Ethernet(rest))
}

/// ERSPAN type III: version 2, VLAN, CoS, BSO, T, session id, timestamp, SGT,
/// P, frame type (5 bits), hardware id, D, granularity, O: 12 bytes, then an
/// 8-byte platform-specific subheader when O is set, then the frame.
fn erspan_iii(data: &[u8]) -> Result<Inner<'_>, Malformed> {
    let version = data.first().ok_or(Malformed)? >> 4;
    let frame_type = (data.get(10).ok_or(Malformed)? >> 2) & 0x1f;
    let optional = data.get(11).ok_or(Malformed)? & 0x01 != 0;
    if version != 2 {
        return Err(Malformed);
    }
    let len = ERSPAN_III_HEADER_LEN
        + if optional {
            ERSPAN_III_SUBHEADER_LEN
        } else {
            0
        };
    let rest = data.get(len..).ok_or(Malformed)?;
    // Frame type 0 is Ethernet; 2 (IP without link header) is not decoded.
    Ok(if frame_type == 0 {
        Inner::Ethernet(rest)
    } else {
        Inner::Unsupported
    })
}

/// The inner packet of a tunnel whose header names its payload by EtherType.
fn by_ether_type(protocol: u16, rest: &[u8]) -> Inner<'_> {
    match EtherType(protocol) {
        EtherType(ETHERTYPE_TEB) => Inner::Ethernet(rest),
        t @ (EtherType::IPV4 | EtherType::IPV6) => Inner::Ip(t, rest),
        _ => Inner::Unsupported,
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::config::DecodeSettings;
    use crate::decode::{DecodeStats, Decoder, LinkType};
    use crate::exchange::Timestamp;
    use etherparse::PacketBuilder;

    const HTTP: &[u8] = b"GET /tunnel HTTP/1.1\r\nHost: t\r\n\r\n";

    fn inner_ip() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(1)
            .write(&mut out, HTTP)
            .unwrap();
        out
    }

    fn inner_eth() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(1)
            .write(&mut out, HTTP)
            .unwrap();
        out
    }

    fn outer_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([3; 6], [4; 6])
            .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
            .udp(55555, dport)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// Outer Ethernet + IPv4 protocol 47 + `gre` (GRE header and payload).
    fn outer_gre(gre: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([3; 6], [4; 6])
            .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
            .write(&mut out, etherparse::IpNumber::GRE, gre)
            .unwrap();
        out
    }

    fn vxlan(inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0x08, 0, 0, 0, 0, 0x12, 0x34, 0];
        v.extend_from_slice(inner);
        v
    }

    fn gre_header(flags: u8, protocol: u16, optional_words: usize) -> Vec<u8> {
        let mut v = vec![flags, 0];
        v.extend_from_slice(&protocol.to_be_bytes());
        for i in 0..optional_words {
            v.extend_from_slice(&(i as u32 + 1).to_be_bytes());
        }
        v
    }

    fn decode_with(settings: &DecodeSettings, frame: &[u8]) -> (Option<Vec<u8>>, DecodeStats) {
        let mut d = Decoder::new(settings);
        let payload = d
            .decode(LinkType::Ethernet, Timestamp(1), frame, frame.len() as u32)
            .map(|s| {
                assert_eq!(s.dst_port, 80);
                assert_eq!(s.src.to_string(), "10.9.0.1");
                s.payload.to_vec()
            });
        (payload, d.stats.clone())
    }

    fn decode(frame: &[u8]) -> (Option<Vec<u8>>, DecodeStats) {
        decode_with(&DecodeSettings::default(), frame)
    }

    #[test]
    fn vxlan_inner_ethernet_ipv4_tcp() {
        let (payload, s) = decode(&outer_udp(4789, &vxlan(&inner_eth())));
        assert_eq!(payload.as_deref(), Some(HTTP));
        assert_eq!((s.packets, s.vxlan, s.udp), (1, 1, 0));
        assert_eq!((s.ipv4, s.tcp_segments), (2, 1), "outer and inner IPv4");
        // The I flag is mandatory.
        let mut no_i = vxlan(&inner_eth());
        no_i[0] = 0;
        let (payload, s) = decode(&outer_udp(4789, &no_i));
        assert!(payload.is_none());
        assert_eq!((s.tunnel_malformed, s.vxlan), (1, 0));
    }

    #[test]
    fn geneve_with_options_and_inner_ip() {
        // Two 4-byte words of options: one option class/type/len + 4 bytes data.
        let mut g = vec![0x02, 0x00, 0x65, 0x58, 0, 0, 7, 0];
        g.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        g.extend_from_slice(&inner_eth());
        let (payload, s) = decode(&outer_udp(6081, &g));
        assert_eq!(payload.as_deref(), Some(HTTP));
        assert_eq!(s.geneve, 1);
        // Inner IPv4 without Ethernet.
        let mut g = vec![0x00, 0x00, 0x08, 0x00, 0, 0, 7, 0];
        g.extend_from_slice(&inner_ip());
        let (payload, s) = decode(&outer_udp(6081, &g));
        assert_eq!(payload.as_deref(), Some(HTTP));
        assert_eq!(s.geneve, 1);
        // Options longer than the packet; then an unknown version.
        let (_, s) = decode(&outer_udp(6081, &[0x3f, 0, 0x65, 0x58, 0, 0, 0, 0]));
        assert_eq!(s.tunnel_malformed, 1);
        let (_, s) = decode(&outer_udp(6081, &[0x40, 0, 0x65, 0x58, 0, 0, 0, 0]));
        assert_eq!(s.tunnel_malformed, 1);
    }

    #[test]
    fn gre_plain_teb_and_key_sequence() {
        let mut plain = gre_header(0, 0x0800, 0);
        plain.extend_from_slice(&inner_ip());
        let (payload, s) = decode(&outer_gre(&plain));
        assert_eq!(payload.as_deref(), Some(HTTP));
        assert_eq!((s.gre, s.erspan, s.other_ip_protocol), (1, 0, 0));

        let mut teb = gre_header(0, 0x6558, 0);
        teb.extend_from_slice(&inner_eth());
        assert_eq!(decode(&outer_gre(&teb)).0.as_deref(), Some(HTTP));

        // Checksum + key + sequence: three optional words.
        let mut all = gre_header(0x80 | 0x20 | 0x10, 0x6558, 3);
        all.extend_from_slice(&inner_eth());
        assert_eq!(decode(&outer_gre(&all)).0.as_deref(), Some(HTTP));
        let mut key_seq = gre_header(0x20 | 0x10, 0x0800, 2);
        key_seq.extend_from_slice(&inner_ip());
        assert_eq!(decode(&outer_gre(&key_seq)).0.as_deref(), Some(HTTP));

        // Unsupported payload (MPLS) and PPTP's version 1 are counted, not malformed.
        let (_, s) = decode(&outer_gre(&gre_header(0, 0x8847, 0)));
        assert_eq!((s.gre, s.other_ethertype, s.tunnel_malformed), (1, 1, 0));
        let mut pptp = gre_header(0x30, 0x880b, 2);
        pptp[1] = 0x81;
        let (_, s) = decode(&outer_gre(&pptp));
        assert_eq!((s.gre, s.other_ethertype), (1, 1));
        // Source routing is not parsed.
        let (_, s) = decode(&outer_gre(&gre_header(0x40, 0x0800, 1)));
        assert_eq!(s.tunnel_malformed, 1);
    }

    fn erspan_ii(version: u8) -> Vec<u8> {
        let mut v = gre_header(0x10, 0x88be, 1);
        v.extend_from_slice(&[version << 4, 0x00, 0x00, 0x2a, 0, 0, 0, 0]);
        v.extend_from_slice(&inner_eth());
        v
    }

    fn erspan_iii(optional: bool) -> Vec<u8> {
        let mut v = gre_header(0x10, 0x22eb, 1);
        v.extend_from_slice(&[0x20, 0x00, 0x00, 0x2a]); // version 2, session 42
        v.extend_from_slice(&[1, 2, 3, 4]); // timestamp
        v.extend_from_slice(&[0, 0, 0x00, u8::from(optional)]); // FT 0 = Ethernet
        if optional {
            v.extend_from_slice(&[9; 8]);
        }
        v.extend_from_slice(&inner_eth());
        v
    }

    #[test]
    fn erspan_types_i_ii_iii() {
        let (payload, s) = decode(&outer_gre(&erspan_ii(1)));
        assert_eq!(payload.as_deref(), Some(HTTP));
        assert_eq!((s.gre, s.erspan), (1, 1));
        // Version 2 on the type II protocol is refused.
        let (payload, s) = decode(&outer_gre(&erspan_ii(2)));
        assert!(payload.is_none());
        assert_eq!(s.tunnel_malformed, 1);
        // Type I: no GRE sequence number, no ERSPAN header.
        let mut type_i = gre_header(0, 0x88be, 0);
        type_i.extend_from_slice(&inner_eth());
        assert_eq!(decode(&outer_gre(&type_i)).0.as_deref(), Some(HTTP));
        for optional in [false, true] {
            let (payload, s) = decode(&outer_gre(&erspan_iii(optional)));
            assert_eq!(payload.as_deref(), Some(HTTP), "O={optional}");
            assert_eq!(s.erspan, 1);
        }
        // Type III frame type 2 (IP) is counted as not decoded.
        let mut ip_frame = erspan_iii(false);
        ip_frame[8 + 10] = 2 << 2;
        let (payload, s) = decode(&outer_gre(&ip_frame));
        assert!(payload.is_none());
        assert_eq!(s.other_ethertype, 1);
    }

    #[test]
    fn nesting_is_bounded_by_max_tunnel_depth() {
        // VXLAN inside GRE: depth 2.
        let inner_vxlan = outer_udp(4789, &vxlan(&inner_eth()));
        let mut two = gre_header(0, 0x6558, 0);
        two.extend_from_slice(&inner_vxlan);
        let (payload, s) = decode(&outer_gre(&two));
        assert_eq!(payload.as_deref(), Some(HTTP));
        assert_eq!((s.gre, s.vxlan, s.packets, s.ipv4), (1, 1, 1, 3));
        // One more VXLAN level: depth 3 is refused with the default of 2.
        let mut three = gre_header(0, 0x6558, 0);
        three.extend_from_slice(&outer_udp(4789, &vxlan(&inner_vxlan)));
        let (payload, s) = decode(&outer_gre(&three));
        assert!(payload.is_none());
        assert_eq!((s.gre, s.vxlan, s.tunnel_depth_exceeded), (1, 1, 1));
        let deeper = DecodeSettings {
            max_tunnel_depth: 3,
            ..DecodeSettings::default()
        };
        assert_eq!(
            decode_with(&deeper, &outer_gre(&three)).0.as_deref(),
            Some(HTTP)
        );
    }

    #[test]
    fn truncated_tunnels_never_panic_and_count_malformed() {
        let outer_len = outer_udp(4789, &[]).len();
        let gre_outer_len = outer_gre(&[]).len();
        // (frame, shortest cut that shows it is a tunnel (UDP: the destination
        // port), first byte after the tunnel headers)
        let cases = [
            (
                outer_udp(4789, &vxlan(&inner_eth())),
                outer_len - 4,
                outer_len + 8,
            ),
            (
                {
                    let mut g = vec![0x01, 0, 0x65, 0x58, 0, 0, 0, 0, 1, 2, 3, 4];
                    g.extend_from_slice(&inner_eth());
                    outer_udp(6081, &g)
                },
                outer_len - 4,
                outer_len + 12,
            ),
            (
                outer_gre(&{
                    let mut g = gre_header(0xb0, 0x6558, 3);
                    g.extend_from_slice(&inner_eth());
                    g
                }),
                gre_outer_len,
                gre_outer_len + 16,
            ),
            (outer_gre(&erspan_ii(1)), gre_outer_len, gre_outer_len + 16),
            (
                outer_gre(&erspan_iii(true)),
                gre_outer_len,
                gre_outer_len + 28,
            ),
        ];
        for (frame, tunnel_start, header_end) in cases {
            for cut in 0..frame.len() {
                // The IP header still claims the full length: a snaplen cut.
                let mut d = Decoder::new(&DecodeSettings::default());
                let seg = d
                    .decode(
                        LinkType::Ethernet,
                        Timestamp(1),
                        &frame[..cut],
                        frame.len() as u32,
                    )
                    .is_some();
                let malformed = d.stats.tunnel_malformed;
                if (tunnel_start..header_end).contains(&cut) {
                    assert_eq!(malformed, 1, "cut {cut} in [{tunnel_start}, {header_end})");
                } else {
                    assert_eq!(malformed, 0, "cut {cut}");
                }
                if cut < frame.len() - HTTP.len() {
                    assert!(!seg, "cut {cut}");
                }
            }
        }
    }

    #[test]
    fn fragmented_tunnel_packets_are_reassembled_then_decapsulated() {
        use etherparse::{IpFragOffset, IpNumber, Ipv4Header};
        // A UDP datagram carrying VXLAN, split into two IPv4 fragments.
        let inner = inner_eth();
        let vx = vxlan(&inner);
        let mut udp = Vec::new();
        etherparse::UdpHeader::without_ipv4_checksum(55555, 4789, vx.len())
            .unwrap()
            .write(&mut udp)
            .unwrap();
        udp.extend_from_slice(&vx);
        let fragment = |offset: usize, more: bool, data: &[u8]| {
            let mut h = Ipv4Header::new(
                data.len() as u16,
                64,
                IpNumber::UDP,
                [172, 16, 0, 1],
                [172, 16, 0, 2],
            )
            .unwrap();
            h.identification = 9;
            h.more_fragments = more;
            h.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap();
            let mut out = Vec::new();
            h.write(&mut out).unwrap();
            out.extend_from_slice(data);
            out
        };
        let split = 48;
        let a = fragment(0, true, &udp[..split]);
        let b = fragment(split, false, &udp[split..]);
        let mut d = Decoder::new(&DecodeSettings::default());
        assert!(d.decode(LinkType::RawIp, Timestamp(1), &a, 0).is_none());
        let seg = d.decode(LinkType::RawIp, Timestamp(2), &b, 0).unwrap();
        assert_eq!(seg.payload, HTTP);
        assert_eq!((d.stats.fragments_reassembled, d.stats.vxlan), (1, 1));
        assert_eq!(d.stats.udp, 0);

        // GRE carrying a fragmented inner IPv4 packet: the inner fragments use
        // the same table.
        let mut tcp = Vec::new();
        etherparse::TcpHeader::new(40000, 80, 1000, 100)
            .write(&mut tcp)
            .unwrap();
        tcp.extend_from_slice(HTTP);
        let inner_fragment = |offset: usize, more: bool, data: &[u8]| {
            let mut h = Ipv4Header::new(
                data.len() as u16,
                64,
                IpNumber::TCP,
                [10, 9, 0, 1],
                [10, 9, 0, 2],
            )
            .unwrap();
            h.identification = 3;
            h.more_fragments = more;
            h.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap();
            let mut g = gre_header(0, 0x0800, 0);
            h.write(&mut g).unwrap();
            g.extend_from_slice(data);
            outer_gre(&g)
        };
        let mut d = Decoder::new(&DecodeSettings::default());
        let first = inner_fragment(0, true, &tcp[..24]);
        let second = inner_fragment(24, false, &tcp[24..]);
        assert!(d
            .decode(LinkType::Ethernet, Timestamp(1), &first, 0)
            .is_none());
        let seg = d
            .decode(LinkType::Ethernet, Timestamp(2), &second, 0)
            .unwrap();
        assert_eq!(seg.payload, HTTP);
        assert_eq!((d.stats.gre, d.stats.fragments_reassembled), (2, 1));
    }

    #[test]
    fn plain_udp_and_disabled_decapsulation() {
        let (_, s) = decode(&outer_udp(53, &vxlan(&inner_eth())));
        assert_eq!((s.udp, s.vxlan), (1, 0));
        for off in [
            DecodeSettings {
                decapsulate: false,
                ..DecodeSettings::default()
            },
            DecodeSettings {
                max_tunnel_depth: 0,
                ..DecodeSettings::default()
            },
        ] {
            let (payload, s) = decode_with(&off, &outer_udp(4789, &vxlan(&inner_eth())));
            assert!(payload.is_none());
            assert_eq!((s.udp, s.vxlan, s.tunnel_depth_exceeded), (1, 0, 0));
            let mut g = gre_header(0, 0x0800, 0);
            g.extend_from_slice(&inner_ip());
            let (_, s) = decode_with(&off, &outer_gre(&g));
            assert_eq!((s.other_ip_protocol, s.gre), (1, 0));
        }
        // Other configured ports.
        let custom = DecodeSettings {
            vxlan_ports: vec![8472],
            ..DecodeSettings::default()
        };
        let (payload, _) = decode_with(&custom, &outer_udp(8472, &vxlan(&inner_eth())));
        assert_eq!(payload.as_deref(), Some(HTTP));
    }
}
