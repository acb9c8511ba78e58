//! Writes the seed inputs under `fuzz/seeds/<target>/` from the repository's
//! fixtures (`fixtures/pcap/*.pcap`, `fixtures/streams/*.txt`, `sensor.toml`)
//! plus a few synthetic ones. Run from anywhere:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
//!
//! Structured seeds are checked to decode back to what was encoded.

use apisensor::http1::script::{parse_script, Action};
use apisensor::Direction;
use apisensor_fuzz::*;
use arbitrary::{Arbitrary, Unstructured};
use std::fmt::Debug;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

struct Pcap {
    link: u32,
    /// (timestamp ns, original length, captured bytes)
    packets: Vec<(u64, u32, Vec<u8>)>,
}

fn read_pcap(path: &Path) -> Pcap {
    let b = fs::read(path).unwrap();
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        _ => panic!("{}: not a classic pcap", path.display()),
    };
    let rd = |at: usize| {
        let x: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    };
    let link = rd(20);
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let (sec, frac, incl, orig) = (rd(at), rd(at + 4), rd(at + 8), rd(at + 12));
        let ns = u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nanos { 1 } else { 1000 };
        let data = b[at + 16..at + 16 + incl as usize].to_vec();
        packets.push((ns, orig, data));
        at += 16 + incl as usize;
    }
    Pcap { link, packets }
}

/// TCP payload length of an Ethernet/IPv4/TCP frame, if it is one.
fn tcp_payload_len(f: &[u8]) -> Option<usize> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let doff = usize::from(f[14 + ihl + 12] >> 4) * 4;
    Some(total.saturating_sub(ihl + doff))
}

struct Writer {
    root: PathBuf,
    total: usize,
}

impl Writer {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
        self.total += bytes.len();
    }

    /// Encodes, checks that the target decodes it back, writes.
    fn put_structured<T>(&mut self, target: &str, name: &str, v: &T)
    where
        T: Encode + for<'a> Arbitrary<'a> + PartialEq + Debug,
    {
        let bytes = to_bytes(v);
        let back = T::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert!(&back == v, "{target}/{name} does not round-trip");
        self.put(target, name, &bytes);
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// A classic pcap, or `None` when the file is something else (pcapng).
fn try_read_pcap(path: &Path) -> Option<Pcap> {
    let b = fs::read(path).ok()?;
    let magic = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
    matches!(magic, 0xa1b2c3d4 | 0xa1b23c4d | 0xd4c3b2a1 | 0x4d3cb2a1).then(|| read_pcap(path))
}

/// (src, sport, dst, dport, seq, ack, flags, payload) of an Ethernet/IPv4/TCP frame.
type TcpView<'a> = ([u8; 4], u16, [u8; 4], u16, u32, u32, u8, &'a [u8]);

fn tcp_view(f: &[u8]) -> Option<TcpView<'_>> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let t = 14 + ihl;
    let doff = usize::from(*f.get(t + 12)? >> 4) * 4;
    let be32 = |at: usize| u32::from_be_bytes(f[at..at + 4].try_into().unwrap());
    let end = (14 + total).min(f.len());
    Some((
        f[26..30].try_into().unwrap(),
        u16::from_be_bytes([f[t], f[t + 1]]),
        f[30..34].try_into().unwrap(),
        u16::from_be_bytes([f[t + 2], f[t + 3]]),
        be32(t + 4),
        be32(t + 8),
        f[t + 13],
        f.get(t + doff..end).unwrap_or_default(),
    ))
}

/// Client and server byte streams of the first TCP connection of a capture,
/// in sequence order (retransmissions and out-of-order copies skipped).
fn tcp_streams(p: &Pcap) -> (Vec<u8>, Vec<u8>) {
    let mut client_addr = None;
    let mut next: [Option<u32>; 2] = [None, None];
    let mut streams = (Vec::new(), Vec::new());
    for (_, _, f) in &p.packets {
        let Some((src, sport, _, _, seq, _, flags, payload)) = tcp_view(f) else {
            continue;
        };
        let client = *client_addr.get_or_insert((src, if flags & 0x12 == 0x12 { 0 } else { sport }));
        let from_client = client == (src, sport) || (client.1 == 0 && client.0 != src);
        let i = usize::from(!from_client);
        let start = seq.wrapping_add(u32::from(flags & 0x02 != 0));
        let want = *next[i].get_or_insert(start);
        if payload.is_empty() || seq != want {
            continue;
        }
        next[i] = Some(seq.wrapping_add(payload.len() as u32));
        let s = if from_client { &mut streams.0 } else { &mut streams.1 };
        s.extend_from_slice(payload);
    }
    streams
}

fn stream_seed(client: &[u8], server: &[u8]) -> Vec<u8> {
    let client = &client[..client.len().min(65535)];
    let split = client.len() as u16;
    let mut seed = vec![7u8];
    seed.extend_from_slice(&split.to_le_bytes());
    seed.extend_from_slice(client);
    seed.extend_from_slice(&server[..server.len().min(200_000)]);
    assert_eq!(seed.len() - STREAM_HEADER_LEN, client.len() + server.len().min(200_000));
    seed
}

/// A capture's TCP segments as a `flow` input (sequence numbers as offsets
/// from each direction's first sequence number).
fn flow_input(p: &Pcap) -> Option<FlowInput> {
    let views: Vec<_> = p.packets.iter().filter_map(|(ts, _, f)| Some((*ts, tcp_view(f)?))).collect();
    let (_, first) = views.first()?;
    let client = (first.0, first.1);
    let mut isn: [Option<u32>; 2] = [None, None];
    for (_, v) in &views {
        let i = usize::from((v.0, v.1) != client);
        isn[i].get_or_insert(v.4);
    }
    let isn = [isn[0]?, isn[1].unwrap_or(0)];
    let mut last = views.first()?.0;
    let ops = views
        .iter()
        .take(64)
        .map(|(ts, v)| {
            let i = usize::from((v.0, v.1) != client);
            let step = (ts.saturating_sub(last) / FLOW_TS_UNIT_NANOS).min(255) as u8;
            last = *ts;
            FlowOp::Segment {
                conn: 0,
                side: if i == 0 { Side::Client } else { Side::Server },
                ts_step: step,
                seq_offset: v.4.wrapping_sub(isn[i]),
                ack_offset: v.5.wrapping_sub(isn[1 - i]),
                flags: v.6,
                payload: Bytes(v.7[..v.7.len().min(2000)].to_vec()),
                missing: 0,
            }
        })
        .collect();
    Some(FlowInput {
        isn,
        max_flows: 3,
        max_ooo_segments: 63,
        max_ooo_bytes: 65535,
        overlap_check_bytes: 4096,
        ops,
    })
}

fn ipv4_header(protocol: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, protocol, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

const OUTER_ETH: [u8; 14] = [8, 8, 8, 8, 8, 8, 6, 6, 6, 6, 6, 6, 0x08, 0x00];

/// Outer Ethernet + IPv4 + UDP (checksum 0) to `port`, then `header` and `inner`.
fn udp_tunnel(port: u16, header: &[u8], inner: &[u8]) -> Vec<u8> {
    let udp_len = 8 + header.len() + inner.len();
    let mut f = OUTER_ETH.to_vec();
    f.extend_from_slice(&ipv4_header(17, udp_len));
    f.extend_from_slice(&49152u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(header);
    f.extend_from_slice(inner);
    f
}

/// Outer Ethernet + IPv4 (protocol 47) + GRE/ERSPAN `header`, then `inner`.
fn gre_tunnel(header: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut f = OUTER_ETH.to_vec();
    f.extend_from_slice(&ipv4_header(47, header.len() + inner.len()));
    f.extend_from_slice(header);
    f.extend_from_slice(inner);
    f
}

fn main() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz_dir.parent().unwrap().to_path_buf();
    let root = fuzz_dir.join("seeds");
    if root.exists() {
        fs::remove_dir_all(&root).unwrap();
    }
    let mut w = Writer { root, total: 0 };

    // ------------------------------------------------------------ decode
    let pcaps = sorted_files(&repo.join("fixtures/pcap"), "pcap");
    let mut a_data_frame = None;
    for path in &pcaps {
        let p = read_pcap(path);
        assert_eq!(p.link, 1, "{}: expected Ethernet", path.display());
        let mut picked = 0;
        let mut seen_sizes = Vec::new();
        for (i, (_, _, f)) in p.packets.iter().enumerate() {
            let payload = tcp_payload_len(f).unwrap_or(0);
            // The handshake, then data frames of distinct sizes.
            let take = i < 3 || (payload > 0 && !seen_sizes.contains(&f.len()));
            if !take || f.len() > 1600 || picked >= 8 {
                continue;
            }
            seen_sizes.push(f.len());
            picked += 1;
            let mut seed = vec![0u8];
            seed.extend_from_slice(f);
            w.put("decode", &format!("{}-{i}", stem(path)), &seed);
            if payload > 32 && a_data_frame.is_none() {
                a_data_frame = Some(f.clone());
            }
        }
    }
    let eth = a_data_frame.expect("a data frame in the fixtures");
    let ip = &eth[14..];
    // The same segment on every other link type (selector = index in LINKS).
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
    sll2.extend_from_slice(ip);
    let mut null = vec![2, 0, 0, 0];
    null.extend_from_slice(ip);
    let mut lp = vec![0, 0, 0, 2];
    lp.extend_from_slice(ip);
    for (sel, name, frame) in [
        (1u8, "sll", &sll),
        (2, "sll2", &sll2),
        (3, "raw-ip", &ip.to_vec()),
        (4, "null", &null),
        (5, "loop", &lp),
    ] {
        let mut seed = vec![sel];
        seed.extend_from_slice(frame);
        w.put("decode", &format!("link-{name}"), &seed);
    }
    // 802.1Q tag.
    let mut vlan = eth[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    vlan.extend_from_slice(&eth[12..]);
    w.put("decode", "vlan", &[&[0u8][..], &vlan].concat());
    // Snaplen cut: selector 6 = Ethernet with 64 more bytes on the wire, and
    // the frame cut 20 bytes short of its IP length.
    w.put("decode", "snaplen-cut", &[&[6u8][..], &eth[..eth.len() - 20]].concat());
    // The IPv4 datagram in two fragments (offset 16), two frames.
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let (head, l4) = ip.split_at(ihl);
    let frag = |part: &[u8], offset8: u16, more: bool| {
        let mut h = head.to_vec();
        let total = (ihl + part.len()) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        let ff = offset8 | if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&ff.to_be_bytes());
        let mut f = eth[..14].to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(part);
        f
    };
    let f1 = frag(&l4[..16], 0, true);
    let f2 = frag(&l4[16..], 2, false);
    let mut seed = vec![0u8];
    seed.extend_from_slice(&f2);
    seed.extend_from_slice(FRAME_SEPARATOR);
    seed.extend_from_slice(&f1);
    w.put("decode", "ipv4-fragments", &seed);
    // Overlapping fragments: a second copy of bytes 8..24 with other
    // values (the datagram is dropped), and a teardrop (a last fragment
    // ending inside the first).
    let mut evil = l4[8..24].to_vec();
    evil[4] ^= 0xff;
    let mut seed = vec![0u8];
    for (i, f) in [frag(&l4[..16], 0, true), frag(&evil, 1, true), f2.clone()]
        .iter()
        .enumerate()
    {
        if i > 0 {
            seed.extend_from_slice(FRAME_SEPARATOR);
        }
        seed.extend_from_slice(f);
    }
    w.put("decode", "ipv4-fragments-overlap", &seed);
    let mut seed = vec![0u8];
    seed.extend_from_slice(&frag(&l4[..24], 0, true));
    seed.extend_from_slice(FRAME_SEPARATOR);
    seed.extend_from_slice(&frag(&l4[8..16], 1, false));
    w.put("decode", "ipv4-fragments-teardrop", &seed);
    // The Ethernet frame inside every mirroring tunnel the decoder unwraps,
    // and VXLAN inside VXLAN (depth 2).
    for (name, wrapped) in [
        ("tunnel-vxlan", udp_tunnel(4789, &[0x08, 0, 0, 0, 0, 0, 7, 0], &eth)),
        (
            "tunnel-geneve",
            udp_tunnel(
                6081,
                &[0x02, 0, 0x65, 0x58, 0, 0, 7, 0, 0x01, 0x02, 0x03, 0x01, 0xca, 0xfe, 0xf0, 0x0d],
                &eth,
            ),
        ),
        ("tunnel-gre-teb", gre_tunnel(&[0x30, 0, 0x65, 0x58, 0, 0, 0, 7, 0, 0, 0, 1], &eth)),
        ("tunnel-gre-ip", gre_tunnel(&[0, 0, 0x08, 0x00], ip)),
        (
            "tunnel-erspan2",
            gre_tunnel(&[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0, 0x2a, 0, 0, 0, 0], &eth),
        ),
        (
            "tunnel-erspan3",
            gre_tunnel(
                &[
                    0x10, 0, 0x22, 0xeb, 0, 0, 0, 1, 0x20, 0, 0, 0x2a, 0, 0, 0, 1, 0, 0, 0, 1, 0,
                    0, 0, 0, 0, 0, 0, 0,
                ],
                &eth,
            ),
        ),
        (
            "tunnel-vxlan-in-vxlan",
            udp_tunnel(
                4789,
                &[0x08, 0, 0, 0, 0, 0, 8, 0],
                &udp_tunnel(4789, &[0x08, 0, 0, 0, 0, 0, 7, 0], &eth),
            ),
        ),
    ] {
        w.put("decode", name, &[&[0u8][..], &wrapped].concat());
    }

    // ---------------------------------------------------------- pipeline
    for name in ["get", "get-gzip", "websocket", "pipelined-requests"] {
        let p = read_pcap(&repo.join(format!("fixtures/pcap/{name}.pcap")));
        let mut last = p.packets.first().map_or(0, |x| x.0);
        let frames = p
            .packets
            .iter()
            .map(|(ts, orig, f)| {
                let step = (ts.saturating_sub(last) / PIPELINE_TS_UNIT_NANOS).min(255) as u8;
                last = *ts;
                let data = f[..f.len().min(9216)].to_vec();
                Frame {
                    ts_delta: step,
                    cut: orig.saturating_sub(data.len() as u32).min(255) as u8,
                    data: Bytes(data),
                }
            })
            .collect();
        w.put_structured("pipeline", name, &PipelineInput { frames });
    }

    // The evasion and hostile-input traces of the shared corpus (Ethernet,
    // classic pcap, small), when `../shared/corpus` is checked out beside.
    let shared = repo.join("../shared/corpus/zeek-http");
    if shared.is_dir() {
        for path in sorted_files(&shared, "pcap") {
            let name = stem(&path);
            let wanted = name.starts_with("261-variant-")
                || name.starts_with("http-desync")
                || name.starts_with("smuggle")
                || name.contains("content-length")
                || name.contains("chunk")
                || name.contains("09");
            let Some(p) = wanted.then(|| try_read_pcap(&path)).flatten() else {
                continue;
            };
            if p.link != 1 || p.packets.len() > 64 {
                continue;
            }
            let frames = p
                .packets
                .iter()
                .map(|(_, orig, f)| {
                    let data = f[..f.len().min(9216)].to_vec();
                    Frame {
                        ts_delta: 1,
                        cut: orig.saturating_sub(data.len() as u32).min(255) as u8,
                        data: Bytes(data),
                    }
                })
                .collect();
            w.put_structured("pipeline", &format!("shared-{name}"), &PipelineInput { frames });
            let (client, server) = tcp_streams(&p);
            w.put("http1_stream", &format!("shared-{name}"), &stream_seed(&client, &server));
        }
    }

    // -------------------------------------------- http1, http1_stream
    for path in sorted_files(&repo.join("fixtures/streams"), "txt") {
        let text = fs::read_to_string(&path).unwrap();
        let script = parse_script(&text).unwrap();
        let input = HttpInput::from_script(&script.settings, &script.actions);
        w.put_structured("http1", &stem(&path), &input);

        let (mut client, mut server) = (Vec::new(), Vec::new());
        for a in &script.actions {
            if let Action::Data(d, b) = a {
                match d {
                    Direction::ToServer => client.extend_from_slice(b),
                    Direction::ToClient => server.extend_from_slice(b),
                }
            }
        }
        w.put("http1_stream", &stem(&path), &stream_seed(&client, &server));
    }
    // Body decoders: the gzip capture's streams, and a chunked gzip response.
    for name in ["get-gzip", "pipelined-requests", "100-continue"] {
        let p = read_pcap(&repo.join(format!("fixtures/pcap/{name}.pcap")));
        let (client, server) = tcp_streams(&p);
        w.put("http1_stream", &format!("pcap-{name}"), &stream_seed(&client, &server));
    }
    let json = br#"{"user":"alice","card":"4111111111111111","items":[1,2,3]}"#.repeat(8);
    for (name, enc) in [("gzip", "gzip"), ("deflate", "deflate")] {
        let z = if enc == "gzip" {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&json).unwrap();
            e.finish().unwrap()
        } else {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&json).unwrap();
            e.finish().unwrap()
        };
        let client = b"GET /api/users HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n".to_vec();
        let mut server = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {enc}\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for part in z.chunks(40) {
            server.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            server.extend_from_slice(part);
            server.extend_from_slice(b"\r\n");
        }
        server.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        w.put("http1_stream", &format!("chunked-{name}"), &stream_seed(&client, &server));
        // The same body with a length, as a request (POST) too.
        let mut post = format!(
            "POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Encoding: {enc}\r\nContent-Length: {}\r\n\r\n",
            z.len()
        )
        .into_bytes();
        post.extend_from_slice(&z);
        w.put(
            "http1_stream",
            &format!("post-{name}"),
            &stream_seed(&post, b"HTTP/1.1 204 No Content\r\n\r\n"),
        );
    }

    // Stacked codings (undone last first, deferred as a chain) and a gzip
    // body of two members, chunked: each direction fed in pieces must give
    // what it gives whole.
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let zl = |data: &[u8]| {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let members = [gz(&json[..200]), gz(&json[200..])].concat();
    for (name, enc, body) in [
        ("gzip-gzip", "gzip, gzip", gz(&gz(&json))),
        ("deflate-gzip", "deflate, gzip", gz(&zl(&json))),
        ("gzip-members", "gzip", members),
    ] {
        let client = b"GET /api/users HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let mut server = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: {enc}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for part in body.chunks(50) {
            server.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            server.extend_from_slice(part);
            server.extend_from_slice(b"\r\n");
        }
        server.extend_from_slice(b"0\r\n\r\n");
        w.put("http1_stream", &format!("chunked-{name}"), &stream_seed(&client, &server));
    }

    // -------------------------------------------------------- reassembly
    let req = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n";
    let seg = |off: u32, syn: bool, fin: bool, data: &[u8], missing: u16| ReassemblyOp::Segment {
        seq_offset: off,
        syn,
        fin,
        payload: Bytes(data.to_vec()),
        missing,
    };
    let base = |isn: u32, consistent: bool, ops: Vec<ReassemblyOp>| ReassemblyInput {
        isn,
        max_ooo_segments: 7,
        max_ooo_bytes: 4095,
        worker_slack: 0,
        overlap_check_bytes: 64,
        consistent,
        ops,
    };
    let (a, b, c) = (&req[..10], &req[10..25], &req[25..]);
    w.put_structured(
        "reassembly",
        "in-order",
        &base(
            1000,
            false,
            vec![
                seg(0, true, false, b"", 0),
                seg(1, false, false, a, 0),
                seg(11, false, false, b, 0),
                seg(26, false, true, c, 0),
            ],
        ),
    );
    w.put_structured(
        "reassembly",
        "reorder-retransmit-ack-flush",
        &base(
            7,
            true,
            vec![
                seg(0, true, false, b"", 0),
                seg(26, false, false, c, 0),
                seg(11, false, false, b, 0),
                seg(11, false, false, b, 0),
                seg(1, false, false, a, 0),
                seg(70, false, false, b"late", 0),
                ReassemblyOp::PeerAck(80),
                seg(80, false, true, b"", 0),
                ReassemblyOp::Flush,
            ],
        ),
    );
    w.put_structured(
        "reassembly",
        "wraparound",
        &base(
            u32::MAX - 12,
            true,
            vec![
                seg(0, true, false, b"", 0),
                seg(1, false, false, a, 0),
                seg(26, false, false, c, 0),
                seg(11, false, false, b, 0),
                ReassemblyOp::Flush,
            ],
        ),
    );
    w.put_structured(
        "reassembly",
        "snaplen-and-caps",
        &ReassemblyInput {
            max_ooo_segments: 1,
            max_ooo_bytes: 15,
            ..base(
                0,
                false,
                vec![
                    seg(0, false, false, a, 300),
                    seg(500, false, false, b, 0),
                    seg(600, false, false, c, 0),
                    seg(310, false, false, a, 0),
                    ReassemblyOp::PeerAck(2000),
                    ReassemblyOp::Flush,
                ],
            )
        },
    );

    // -------------------------------------------------------------- flow
    for name in ["get", "get-gzip", "pipelined-requests", "100-continue", "websocket"] {
        let p = read_pcap(&repo.join(format!("fixtures/pcap/{name}.pcap")));
        if let Some(input) = flow_input(&p) {
            w.put_structured("flow", name, &input);
        }
    }

    // ------------------------------------------------------------ config
    w.put("config", "sensor.toml", &fs::read(repo.join("sensor.toml")).unwrap());
    for (name, text) in [
        ("empty", ""),
        ("flow", "[flow]\nmax_ooo_bytes_per_direction = 1\nmax_ooo_bytes = 1\n"),
        ("http", "[http]\nmax_header_bytes = 256\nmax_headers = 1\ndecode_content = false\n"),
        ("pipeline", "[pipeline]\nworkers = 2\nbatch_packets = 65536\n"),
        ("output", "[output]\ninclude_bodies = true\n[decode]\nfragment_timeout_secs = 1\n"),
        ("bad-key", "[flow]\nidle_timeout_sec = 3\n"),
        ("bad-value", "[http]\nmax_headers = 0\n"),
    ] {
        w.put("config", name, text.as_bytes());
    }

    println!("seeds written under {} ({} bytes)", w.root.display(), w.total);
    assert!(w.total < 1 << 20, "seeds must stay under 1 MB");
}
