//! Capture link types and the link-layer header in front of IP.

use etherparse::{EtherType, LaxSlicedPacket};

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

/// Slices the frame down to the network layer.
pub fn slice(link: LinkType, frame: &[u8]) -> Result<LaxSlicedPacket<'_>, LinkError> {
    match link {
        LinkType::Ethernet => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| LinkError::Malformed)
        }
        LinkType::RawIp => LaxSlicedPacket::from_ip(frame).map_err(|_| LinkError::Malformed),
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
                2 | 10 | 24 | 28 | 30 => {
                    LaxSlicedPacket::from_ip(rest).map_err(|_| LinkError::Malformed)
                }
                _ => Err(LinkError::NotIp),
            }
        }
    }
}

fn from_ether_type(ether_type: u16, rest: &[u8]) -> Result<LaxSlicedPacket<'_>, LinkError> {
    match EtherType(ether_type) {
        EtherType::IPV4
        | EtherType::IPV6
        | EtherType::ARP
        | EtherType::VLAN_TAGGED_FRAME
        | EtherType::PROVIDER_BRIDGING
        | EtherType::VLAN_DOUBLE_TAGGED_FRAME => Ok(LaxSlicedPacket::from_ether_type(
            EtherType(ether_type),
            rest,
        )),
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
}
