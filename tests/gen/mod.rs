//! Builds small captures for integration tests: a TCP conversation carrying
//! HTTP, framed for any supported link type, written as a classic pcap file.
#![allow(dead_code)]

use etherparse::PacketBuilder;
use std::path::Path;

/// Link framing of generated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Ethernet,
    Vlan,
    QinQ,
    LinuxSll,
    LinuxSll2,
    RawIp,
    NullLoopback,
}

impl Framing {
    pub fn dlt(self) -> u32 {
        match self {
            Framing::Ethernet | Framing::Vlan | Framing::QinQ => 1,
            Framing::LinuxSll => 113,
            Framing::LinuxSll2 => 276,
            Framing::RawIp => 101,
            Framing::NullLoopback => 0,
        }
    }
}

/// A classic little-endian, microsecond pcap file.
pub struct PcapFile {
    bytes: Vec<u8>,
}

impl PcapFile {
    pub fn new(dlt: u32) -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&262_144u32.to_le_bytes());
        bytes.extend_from_slice(&dlt.to_le_bytes());
        PcapFile { bytes }
    }

    pub fn packet(&mut self, ts_micros: u64, frame: &[u8]) {
        self.bytes
            .extend_from_slice(&((ts_micros / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((ts_micros % 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(frame);
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.bytes).unwrap();
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// One endpoint pair; `ipv6` picks the address family.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub ipv6: bool,
    pub client_port: u16,
    pub server_port: u16,
    pub client_isn: u32,
    pub server_isn: u32,
}

impl Default for Conn {
    fn default() -> Self {
        Conn {
            ipv6: false,
            client_port: 40_000,
            server_port: 80,
            client_isn: 1_000,
            server_isn: 5_000,
        }
    }
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const PSH: u8 = 0x08;
pub const RST: u8 = 0x04;

/// A frame of `conn` in the given direction.
pub fn frame(
    framing: Framing,
    conn: &Conn,
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (sport, dport) = if from_client {
        (conn.client_port, conn.server_port)
    } else {
        (conn.server_port, conn.client_port)
    };
    let (c4, s4) = ([10, 1, 0, 1], [10, 1, 0, 2]);
    let (c6, s6) = (
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    );
    let ip_only = || {
        if conn.ipv6 {
            let (s, d) = if from_client { (c6, s6) } else { (s6, c6) };
            PacketBuilder::ipv6(s, d, 64)
        } else {
            let (s, d) = if from_client { (c4, s4) } else { (s4, c4) };
            PacketBuilder::ipv4(s, d, 64)
        }
    };
    let tcp = |b: etherparse::PacketBuilderStep<etherparse::IpHeaders>| {
        let mut t = b.tcp(sport, dport, seq, 64_000);
        if flags & SYN != 0 {
            t = t.syn();
        }
        if flags & ACK != 0 {
            t = t.ack(ack);
        }
        if flags & FIN != 0 {
            t = t.fin();
        }
        if flags & PSH != 0 {
            t = t.psh();
        }
        if flags & RST != 0 {
            t = t.rst();
        }
        t
    };
    // The IP packet, then the link header in front of it.
    let mut ip = Vec::new();
    tcp(ip_only()).write(&mut ip, payload).unwrap();
    let ether_type: u16 = if conn.ipv6 { 0x86dd } else { 0x0800 };
    let mut out = Vec::new();
    match framing {
        Framing::Ethernet | Framing::Vlan | Framing::QinQ => {
            out.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
            out.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
            if framing == Framing::QinQ {
                out.extend_from_slice(&0x88a8u16.to_be_bytes());
                out.extend_from_slice(&100u16.to_be_bytes());
            }
            if framing != Framing::Ethernet {
                out.extend_from_slice(&0x8100u16.to_be_bytes());
                out.extend_from_slice(&200u16.to_be_bytes());
            }
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        Framing::LinuxSll => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        Framing::LinuxSll2 => {
            out.extend_from_slice(&ether_type.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        Framing::RawIp => {}
        Framing::NullLoopback => {
            let family: u32 = if conn.ipv6 { 30 } else { 2 };
            out.extend_from_slice(&family.to_le_bytes());
        }
    }
    out.extend_from_slice(&ip);
    out
}

/// A complete connection: handshake, each (request, response) pair in turn
/// as single segments, then FIN from both sides.
pub fn conversation(framing: Framing, conn: &Conn, exchanges: &[(&[u8], &[u8])]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut c = conn.client_isn;
    let mut s = conn.server_isn;
    frames.push(frame(framing, conn, true, c, 0, SYN, b""));
    frames.push(frame(framing, conn, false, s, c + 1, SYN | ACK, b""));
    c += 1;
    s += 1;
    frames.push(frame(framing, conn, true, c, s, ACK, b""));
    for (request, response) in exchanges {
        frames.push(frame(framing, conn, true, c, s, ACK | PSH, request));
        c += request.len() as u32;
        frames.push(frame(framing, conn, false, s, c, ACK | PSH, response));
        s += response.len() as u32;
        frames.push(frame(framing, conn, true, c, s, ACK, b""));
    }
    frames.push(frame(framing, conn, true, c, s, FIN | ACK, b""));
    frames.push(frame(framing, conn, false, s, c + 1, FIN | ACK, b""));
    frames.push(frame(framing, conn, true, c + 1, s + 1, ACK, b""));
    frames
}

/// Writes frames as a pcap, 1 ms apart starting at `start_micros`.
pub fn write_pcap(path: &Path, framing: Framing, frames: &[Vec<u8>], start_micros: u64) {
    let mut file = PcapFile::new(framing.dlt());
    for (i, f) in frames.iter().enumerate() {
        file.packet(start_micros + i as u64 * 1_000, f);
    }
    file.write(path);
}

/// Cloud traffic-mirroring encapsulations of a captured Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// UDP 4789, VNI 7 (AWS VPC Traffic Mirroring, Azure vTAP).
    Vxlan,
    /// UDP 6081 with one 8-byte option, inner Ethernet.
    Geneve,
    /// GRE with key and sequence number, transparent Ethernet bridging.
    GreTeb,
    /// Plain GRE carrying the IP packet (the frame's Ethernet header removed).
    GreIp,
    /// GRE (sequence number) + ERSPAN type II.
    ErspanII,
    /// GRE (sequence number) + ERSPAN type III with the platform subheader.
    ErspanIII,
}

impl Tunnel {
    pub const ALL: [Tunnel; 6] = [
        Tunnel::Vxlan,
        Tunnel::Geneve,
        Tunnel::GreTeb,
        Tunnel::GreIp,
        Tunnel::ErspanII,
        Tunnel::ErspanIII,
    ];
}

/// Wraps an untagged Ethernet `frame` as a mirroring appliance would send it:
/// outer Ethernet + IPv4 (192.0.2.1 → 192.0.2.2) + UDP or GRE + tunnel header.
/// The result is an Ethernet frame (`Framing::Ethernet`).
pub fn encapsulate(tunnel: Tunnel, frame: &[u8], seq: u32) -> Vec<u8> {
    let outer =
        || PacketBuilder::ethernet2([6; 6], [8; 6]).ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64);
    let mut body = Vec::new();
    let mut out = Vec::new();
    let gre = |body: &mut Vec<u8>, flags: u8, protocol: u16| {
        body.extend_from_slice(&[flags, 0]);
        body.extend_from_slice(&protocol.to_be_bytes());
        if flags & 0x20 != 0 {
            body.extend_from_slice(&0x0000_0007u32.to_be_bytes()); // key
        }
        if flags & 0x10 != 0 {
            body.extend_from_slice(&seq.to_be_bytes());
        }
    };
    match tunnel {
        Tunnel::Vxlan | Tunnel::Geneve => {
            let port = if tunnel == Tunnel::Vxlan {
                body.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 7, 0]);
                4789
            } else {
                body.extend_from_slice(&[0x02, 0, 0x65, 0x58, 0, 0, 7, 0]);
                body.extend_from_slice(&[0x01, 0x02, 0x03, 0x01, 0xca, 0xfe, 0xf0, 0x0d]);
                6081
            };
            body.extend_from_slice(frame);
            outer().udp(49_152, port).write(&mut out, &body).unwrap();
            return out;
        }
        Tunnel::GreTeb => gre(&mut body, 0x30, 0x6558),
        Tunnel::GreIp => {
            let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
            gre(&mut body, 0, ether_type);
            body.extend_from_slice(&frame[14..]);
        }
        Tunnel::ErspanII => {
            gre(&mut body, 0x10, 0x88be);
            // Version 1, VLAN 0, session 42, index 0.
            body.extend_from_slice(&[0x10, 0x00, 0x00, 0x2a, 0, 0, 0, 0]);
        }
        Tunnel::ErspanIII => {
            gre(&mut body, 0x10, 0x22eb);
            // Version 2, session 42, timestamp, SGT, frame type 0, O flag set.
            body.extend_from_slice(&[0x20, 0x00, 0x00, 0x2a]);
            body.extend_from_slice(&seq.to_be_bytes());
            body.extend_from_slice(&[0, 0, 0, 0x01]);
            body.extend_from_slice(&[0; 8]);
        }
    }
    if tunnel != Tunnel::GreIp {
        body.extend_from_slice(frame);
    }
    outer()
        .write(&mut out, etherparse::IpNumber::GRE, &body)
        .unwrap();
    out
}
