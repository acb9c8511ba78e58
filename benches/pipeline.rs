//! Decode + reassemble + HTTP parse on an in-memory capture, on one thread
//! (`InlineEngine`, the same code a worker runs). Measures packets/s and
//! bytes/s without file I/O or thread hand-off.
//!
//! The capture is synthetic API traffic (keep-alive and one-shot connections
//! with JSON bodies, interleaved) so the bench runs anywhere; set
//! `APISENSOR_BENCH_PCAP=/path/file.pcap` to bench a real capture instead
//! (its first 200k packets are loaded).
//!
//! `http1_keepalive` measures the HTTP layer alone: small GET/200 exchanges
//! on one keep-alive connection, no packets.

#[path = "../tests/gen/mod.rs"]
mod gen;

use apisensor::decode::LinkType;
use apisensor::pipeline::InlineEngine;
use apisensor::{Settings, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gen::{conversation, Conn, Framing};
use std::hint::black_box;

struct Capture {
    link: LinkType,
    packets: Vec<(Timestamp, Vec<u8>)>,
}

fn synthetic() -> Capture {
    let mut per_conn = Vec::new();
    for i in 0..400u32 {
        let conn = Conn {
            client_port: 20_000 + i as u16,
            client_isn: i.wrapping_mul(7_919),
            server_isn: i.wrapping_mul(104_729),
            ..Conn::default()
        };
        let requests = if i % 3 == 0 { 1 } else { 8 };
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..requests)
            .map(|r| {
                let body = format!(
                    "{{\"id\":{i},\"order\":{r},\"items\":[{}],\"status\":\"paid\"}}",
                    (0..(r * 20 + 5)).map(|n| n.to_string()).collect::<Vec<_>>().join(",")
                );
                let req = format!(
                    "GET /api/v1/orders/{i}/items/{r}?expand=true HTTP/1.1\r\nHost: api.example.test\r\n\
                     User-Agent: bench/1.0\r\nAccept: application/json\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n"
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
                    body.len()
                );
                (req.into_bytes(), resp.into_bytes())
            })
            .collect();
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        per_conn.push(conversation(Framing::Ethernet, &conn, &refs));
    }
    let mut packets = Vec::new();
    let longest = per_conn.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        for frames in &per_conn {
            if let Some(f) = frames.get(step) {
                let ts = Timestamp(1_700_000_000_000_000_000 + packets.len() as u64 * 10_000);
                packets.push((ts, f.clone()));
            }
        }
    }
    Capture {
        link: LinkType::Ethernet,
        packets,
    }
}

fn from_file(path: &str) -> Capture {
    let mut cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
        .expect("open bench pcap");
    let link = LinkType::from_dlt(cap.get_datalink().0).expect("supported link type");
    let mut packets = Vec::new();
    while let Ok(p) = cap.next_packet() {
        let ts = Timestamp::from_secs_nanos(p.header.ts.tv_sec as u64, p.header.ts.tv_usec as u32);
        packets.push((ts, p.data.to_vec()));
        if packets.len() >= 200_000 {
            break;
        }
    }
    Capture { link, packets }
}

fn bench_pipeline(c: &mut Criterion) {
    let capture = match std::env::var("APISENSOR_BENCH_PCAP") {
        Ok(path) => from_file(&path),
        Err(_) => synthetic(),
    };
    let settings = Settings::default();
    let bytes: usize = capture.packets.iter().map(|(_, p)| p.len()).sum();
    let mut group = c.benchmark_group("inline_engine");
    group.sample_size(20);
    group.throughput(Throughput::Elements(capture.packets.len() as u64));
    group.bench_function("packets", |b| {
        b.iter(|| {
            let mut engine = InlineEngine::new(&settings);
            let mut out = Vec::with_capacity(4096);
            let mut exchanges = 0usize;
            for (ts, frame) in &capture.packets {
                engine.packet(capture.link, *ts, frame, frame.len() as u32, &mut out);
                exchanges += out.len();
                out.clear();
            }
            engine.finish(&mut out);
            black_box(exchanges + out.len())
        })
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            let mut engine = InlineEngine::new(&settings);
            let mut out = Vec::with_capacity(4096);
            for (ts, frame) in &capture.packets {
                engine.packet(capture.link, *ts, frame, frame.len() as u32, &mut out);
                out.clear();
            }
            engine.finish(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn bench_http1(c: &mut Criterion) {
    use apisensor::config::HttpSettings;
    use apisensor::http1::script::{run_actions, Action};
    use apisensor::Direction;
    let n = 20_000;
    let mut actions = Vec::with_capacity(2 * n);
    for i in 0..n {
        actions.push(Action::Data(
            Direction::ToServer,
            format!(
                "GET /api/v1/items/{i}?q=1 HTTP/1.1\r\nHost: example.com\r\n\
                 User-Agent: bench\r\nAccept: */*\r\n\r\n"
            )
            .into_bytes(),
        ));
        actions.push(Action::Data(
            Direction::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
              Content-Length: 13\r\n\r\n{\"ok\":true}\r\n"
                .to_vec(),
        ));
    }
    let settings = HttpSettings::default();
    let mut group = c.benchmark_group("http1_keepalive");
    group.sample_size(20);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("exchanges", |b| {
        b.iter(|| {
            let (exchanges, _) = run_actions(&settings, &actions);
            assert_eq!(exchanges.len(), n);
            black_box(exchanges.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_pipeline, bench_http1);
criterion_main!(benches);
