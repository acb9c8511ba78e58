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
        let split = client.len().min(65535) as u16;
        let mut seed = vec![7u8];
        seed.extend_from_slice(&split.to_le_bytes());
        seed.extend_from_slice(&client);
        seed.extend_from_slice(&server);
        assert_eq!(seed.len() - STREAM_HEADER_LEN, client.len() + server.len());
        w.put("http1_stream", &stem(&path), &seed);
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

    // ------------------------------------------------------------ config
    w.put("config", "sensor.toml", &fs::read(repo.join("sensor.toml")).unwrap());
    for (name, text) in [
        ("empty", ""),
        ("flow", "[flow]\nmax_ooo_bytes_per_direction = 1\nmax_ooo_bytes_per_worker = 1\n"),
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
