//! Capture link types and the link-layer header in front of IP.

use etherparse::{
    EtherType, Ethernet2Slice, LaxIpSlice, LaxNetSlice, LaxSlicedPacket, SingleVlanSlice,
};

/// Link types we decode. Anything else is counted as unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Linux cooked capture v1 (`any` interface, 16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// IPv4 or IPv6 with no link header (version from the first nibble).
    RawIp,
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback: 4-byte address family, big-endian.
    Loop,
    /// A VXLAN header and its inner Ethernet frame, as a UDP mirror socket
    /// receives them (no libpcap link type; used by `capture::udp`).
    VxlanPayload,
    /// A GENEVE header and its inner packet, as a UDP mirror socket receives them.
    GenevePayload,
}

impl LinkType {
    /// Maps a libpcap `DLT_*` value (as `pcap_datalink` reports it).
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            // DLT_RAW is 12 on most systems, 14 on OpenBSD; 101 is LINKTYPE_RAW;
            // 228/229 are LINKTYPE_IPV4/IPV6.
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Malformed,
    NotIp,
    /// No link header: a VXLAN/GENEVE payload the tunnel decoder takes.
    TunnelPayload {
        geneve: bool,
    },
}

const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;

/// What lies under the link header: the network layer, when there is one.
#[derive(Debug, PartialEq, Eq)]
pub struct NetLayer<'a> {
    /// `None` with `malformed` when a VLAN or IP header is cut or invalid,
    /// `None` alone when the ether type is not IP or ARP.
    pub net: Option<LaxNetSlice<'a>>,
    pub malformed: bool,
    pub vlan_tagged: bool,
}

impl<'a> NetLayer<'a> {
    fn from_sliced(packet: LaxSlicedPacket<'a>) -> Self {
        NetLayer {
            malformed: packet.net.is_none() && packet.stop_err.is_some(),
            vlan_tagged: !packet.link_exts.is_empty(),
            net: packet.net,
        }
    }

    /// An IP header (either version) with nothing in front of it.
    fn ip(bytes: &'a [u8]) -> Result<Self, LinkError> {
        let (ip, _) = LaxIpSlice::from_slice(bytes).map_err(|_| LinkError::Malformed)?;
        Ok(NetLayer {
            net: Some(ip.into()),
            malformed: false,
            vlan_tagged: false,
        })
    }
}

/// VLAN tags followed, as many as etherparse's own slicer keeps.
const MAX_VLAN_TAGS: usize = 3;

/// The network layer of an Ethernet payload of type `ether_type`.
///
/// Plain and VLAN-tagged IP, nearly every mirrored frame, is sliced here
/// header by header: `LaxSlicedPacket` is a 328-byte value moved through
/// each layer, and it also slices a transport header that `decode` slices
/// again; that was a fifth of replay's reader time. Anything else (ARP,
/// MACsec, a fourth tag, unknown types) is sliced by `LaxSlicedPacket`
/// from the start, so it gives what it always gave.
pub fn network(ether_type: EtherType, payload: &[u8]) -> NetLayer<'_> {
    let (mut next_type, mut rest) = (ether_type, payload);
    let mut tags = 0usize;
    loop {
        match next_type {
            EtherType::IPV4 | EtherType::IPV6 => {
                let ip = LaxIpSlice::from_slice(rest).ok();
                return NetLayer {
                    malformed: ip.is_none(),
                    net: ip.map(|(ip, _)| ip.into()),
                    vlan_tagged: tags > 0,
                };
            }
            EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
                if tags < MAX_VLAN_TAGS =>
            {
                let Ok(vlan) = SingleVlanSlice::from_slice(rest) else {
                    return NetLayer {
                        net: None,
                        malformed: true,
                        vlan_tagged: tags > 0,
                    };
                };
                tags += 1;
                next_type = vlan.ether_type();
                rest = vlan.payload_slice();
            }
            _ => {
                return NetLayer::from_sliced(LaxSlicedPacket::from_ether_type(ether_type, payload))
            }
        }
    }
}

/// An Ethernet II frame (no FCS) down to its network layer.
pub fn ethernet(frame: &[u8]) -> Result<NetLayer<'_>, LinkError> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| LinkError::Malformed)?;
    Ok(network(eth.ether_type(), eth.payload_slice()))
}

/// Slices the frame down to the network layer.
pub fn slice(link: LinkType, frame: &[u8]) -> Result<NetLayer<'_>, LinkError> {
    match link {
        LinkType::Ethernet => ethernet(frame),
        LinkType::RawIp => NetLayer::ip(frame),
        LinkType::LinuxSll => {
            let ether_type = be16(frame, 14).ok_or(LinkError::Malformed)?;
            let rest = frame.get(SLL_HEADER_LEN..).ok_or(LinkError::Malformed)?;
            from_ether_type(ether_type, rest)
        }
        LinkType::LinuxSll2 => {
            let ether_type = be16(frame, 0).ok_or(LinkError::Malformed)?;
            let rest = frame.get(SLL2_HEADER_LEN..).ok_or(LinkError::Malformed)?;
            from_ether_type(ether_type, rest)
        }
        LinkType::VxlanPayload => Err(LinkError::TunnelPayload { geneve: false }),
        LinkType::GenevePayload => Err(LinkError::TunnelPayload { geneve: true }),
        LinkType::Null | LinkType::Loop => {
            let family_bytes: [u8; 4] = frame
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(LinkError::Malformed)?;
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(family_bytes)
            } else {
                // The writer's byte order is unknown: a family fits in the low
                // 16 bits, so whichever reading is small is the right one.
                let le = u32::from_le_bytes(family_bytes);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(family_bytes)
                }
            };
            let rest = frame.get(4..).ok_or(LinkError::Malformed)?;
            match family {
                // AF_INET; AF_INET6 differs by OS: Linux 10, BSDs 24/28/30.
                2 | 10 | 24 | 28 | 30 => NetLayer::ip(rest),
                _ => Err(LinkError::NotIp),
            }
        }
    }
}

fn from_ether_type(ether_type: u16, rest: &[u8]) -> Result<NetLayer<'_>, LinkError> {
    match EtherType(ether_type) {
        EtherType::IPV4
        | EtherType::IPV6
        | EtherType::ARP
        | EtherType::VLAN_TAGGED_FRAME
        | EtherType::PROVIDER_BRIDGING
        | EtherType::VLAN_DOUBLE_TAGGED_FRAME => Ok(network(EtherType(ether_type), rest)),
        _ => Err(LinkError::NotIp),
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn dlt_mapping() {
        assert_eq!(LinkType::from_dlt(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_dlt(113), Some(LinkType::LinuxSll));
        assert_eq!(LinkType::from_dlt(276), Some(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_dlt(101), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_dlt(127), None);
    }

    #[test]
    fn sll2_header_is_skipped() {
        let mut ip = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .tcp(1, 2, 3, 4)
            .write(&mut ip, b"x")
            .unwrap();
        let mut frame = vec![0x08, 0x00];
        frame.extend_from_slice(&[0; 18]);
        frame.extend_from_slice(&ip);
        assert!(slice(LinkType::LinuxSll2, &frame).unwrap().net.is_some());
        let mut sll = vec![0; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert!(slice(LinkType::LinuxSll, &sll).unwrap().net.is_some());
        assert_eq!(
            slice(LinkType::LinuxSll, &sll[..10]).unwrap_err(),
            LinkError::Malformed
        );
    }

    /// Ethernet frames with `tags` 802.1Q/802.1ad tags in front of `inner`
    /// of type `inner_type`.
    fn tagged(tag_types: &[u16], inner_type: u16, inner: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        for (i, t) in tag_types.iter().enumerate() {
            frame.extend_from_slice(&t.to_be_bytes());
            frame.extend_from_slice(&[0, 10 + i as u8]);
        }
        frame.extend_from_slice(&inner_type.to_be_bytes());
        frame.extend_from_slice(inner);
        frame
    }

    #[test]
    fn own_slicing_agrees_with_etherparse_on_every_cut() {
        let mut v4 = Vec::new();
        etherparse::PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .tcp(1, 2, 3, 4)
            .write(&mut v4, b"payload")
            .unwrap();
        let mut v6 = Vec::new();
        etherparse::PacketBuilder::ipv6([1; 16], [2; 16], 9)
            .tcp(1, 2, 3, 4)
            .write(&mut v6, b"payload")
            .unwrap();
        let arp = [0u8; 28];
        let (q, ad, qq) = (0x8100, 0x88a8, 0x9100);
        let mut frames = Vec::new();
        for inner in [(0x0800, &v4[..]), (0x86dd, &v6[..]), (0x0806, &arp[..])] {
            for tags in [
                &[][..],
                &[q],
                &[ad, q],
                &[qq, q, q],
                &[q, q, q, q],
                &[q, q, q, q, q],
            ] {
                frames.push(tagged(tags, inner.0, inner.1));
            }
            // Wrong IP version for the ether type, and an unknown type.
            frames.push(tagged(&[q], 0x0800, &v6));
            frames.push(tagged(&[q], 0x1234, inner.1));
        }
        let agree = |frame: &[u8]| {
            let ours = ethernet(frame);
            let theirs = LaxSlicedPacket::from_ethernet(frame)
                .map(NetLayer::from_sliced)
                .map_err(|_| LinkError::Malformed);
            assert_eq!(ours, theirs, "frame {frame:02x?}");
        };
        for frame in &frames {
            for cut in 0..=frame.len() {
                agree(&frame[..cut]);
            }
        }
        // Random bytes written over the headers, ether types included.
        let mut noise = vec![0u8; 3 * 20_000];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        for (i, edit) in noise.chunks_exact(3).enumerate() {
            let mut frame = frames[i % frames.len()].clone();
            let at = usize::from(edit[0]) % 40.min(frame.len());
            frame[at] = edit[1];
            if edit[2] & 1 == 1 {
                frame[at ^ 1] = edit[2];
            }
            agree(&frame);
        }
    }
}
