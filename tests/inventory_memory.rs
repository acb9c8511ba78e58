//! Memory bounds of the inventory, measured with a counting allocator:
//! 100,000 distinct raw paths that collapse to 50 templates, and a flood of
//! random segments that never collapses. One test, so nothing else
//! allocates in this process while it measures.

use apisensor::config::InventorySettings;
use apisensor::exchange::{
    Body, Exchange, ExchangeFlags, Headers, HttpVersion, Request, Response, Text, Timestamp,
};
use apisensor::inventory::{ExchangeFacts, Inventory};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn exchange(path: &str, client: u32, ts: u64, body: &str) -> Exchange {
    let mut headers = Headers::default();
    headers.push(b"Host", b"api.test", 16, 1024);
    Exchange {
        flow_id: ts,
        client: std::net::SocketAddr::from(([10, 0, (client >> 8) as u8, client as u8], 40000)),
        server: "10.1.0.1:80".parse().unwrap(),
        request: Some(Request {
            ts: Timestamp(ts),
            end_ts: Timestamp(ts),
            method: Text::from("GET"),
            uri: Text::from(path),
            path: Text::from(path),
            query: Some(Text::from("page=2&sort=name")),
            version: HttpVersion::Http11,
            host: Some(Text::from("api.test")),
            content_type: None,
            headers,
            body: Body::default(),
            pending_text: false,
        }),
        response: Some(Response {
            ts: Timestamp(ts),
            end_ts: Timestamp(ts),
            version: HttpVersion::Http11,
            status: Some(200),
            reason: Text::from("OK"),
            content_type: Some(Text::from("application/json")),
            headers: Headers::default(),
            body: Body {
                wire_len: body.len() as u64,
                decoded_len: body.len() as u64,
                data: body.as_bytes().to_vec(),
                ..Body::default()
            },
            pending_text: false,
        }),
        tunnel: false,
        flags: ExchangeFlags::default(),
        anomalies: Vec::new(),
    }
}

/// Path `i` of 100,000 over 50 templates: ids, uuids, hex, emails, dates,
/// and free-text names (learned: far more than a node keeps literally).
fn collapsing_path(i: u64, rng: &mut Rng) -> String {
    let t = i % 50;
    let r = rng.next();
    match t % 6 {
        0 => format!("/svc{t}/items/{}", r % 1_000_000_000),
        1 => format!(
            "/svc{t}/docs/{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            r as u32,
            (r >> 32) as u16,
            (r >> 48) & 0xfff,
            r & 0xfff,
            r & 0xffff_ffff_ffff
        ),
        2 => format!("/svc{t}/blobs/{:016x}{:08x}", r, r >> 40),
        3 => format!("/svc{t}/people/user{}@example.com", r % 10_000_000),
        4 => format!(
            "/svc{t}/days/2024-{:02}-{:02}/{}",
            r % 12 + 1,
            r % 28 + 1,
            (r >> 16) % 1_000_000_000
        ),
        _ => format!(
            "/svc{t}/articles/story-of-{}-and-{}",
            r % 100_000,
            (r >> 20) % 100_000
        ),
    }
}

#[test]
fn inventory_memory_is_bounded() {
    let settings = InventorySettings::default();
    let body = r#"{"id":1,"name":"x","tags":["a"],"owner":{"id":2,"email":"a@b.io"}}"#;

    // 1. 100,000 distinct raw paths → 50 templates.
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut inv = Inventory::new(&settings);
    let mut rng = Rng(1);
    let mut distinct = std::collections::HashSet::new();
    for i in 0..100_000u64 {
        let path = collapsing_path(i, &mut rng);
        // Clients use every route, as an API's users do, and each route
        // answers with its own shape (fifty alike siblings, each used by a
        // fiftieth of the clients, would be values).
        let client = (rng.next() % 5000) as u32;
        let t = i % 50;
        let body = body.replace(
            "\"name\"",
            &format!("\"name{t}\":\"x\",\"kind{t}\":1,\"svc{t}\""),
        );
        let ex = exchange(&path, client, i, &body);
        inv.observe(&ex, &ExchangeFacts::from_exchange_basic(&ex));
        distinct.insert(stable(&path));
    }
    let held = CURRENT.load(Ordering::Relaxed) - base;
    let snapshot = inv.snapshot();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let templates: std::collections::BTreeSet<(String, String)> = snapshot
        .endpoints
        .iter()
        .map(|e| (e.method.clone(), e.path.clone()))
        .collect();
    println!(
        "collapsing: {} distinct raw paths → {} templates; held {:.1} MiB, peak with snapshot {:.1} MiB; {:?}",
        distinct.len(),
        templates.len(),
        held as f64 / MIB,
        peak as f64 / MIB,
        snapshot.counters
    );
    assert!(distinct.len() > 99_000, "{}", distinct.len());
    assert_eq!(templates.len(), 50, "{templates:#?}");
    assert!(peak < 64 << 20, "peak {peak} bytes");
    drop(snapshot);
    drop(inv);

    // 2. A flood of random segments that only get "not found" never
    // teaches a parameter: capped and counted, and memory stops growing
    // once the caps are reached. (Random segments that are answered are
    // learned to be values at once, and cost nothing.)
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut inv = Inventory::new(&settings);
    let mut rng = Rng(2);
    let mut held_at = Vec::new();
    for i in 0..400_000u64 {
        let depth = 1 + rng.next() % 4;
        let mut path = String::new();
        for _ in 0..depth {
            path.push_str(&format!("/w{:x}", rng.next() % 0xff_ffff));
        }
        let mut ex = exchange(&path, (i % 60_000) as u32, i, "{}");
        if let Some(r) = ex.response.as_mut() {
            r.status = Some(404);
        }
        inv.observe(&ex, &ExchangeFacts::default());
        if i == 199_999 || i == 399_999 {
            held_at.push(CURRENT.load(Ordering::Relaxed) - base);
        }
    }
    let counters = inv.counters().clone();
    let snapshot = inv.snapshot();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "flood: 400,000 random paths → {} endpoints, {} other paths; held {:.1} MiB at 200k, {:.1} MiB at 400k, peak with snapshot {:.1} MiB; {:?}",
        snapshot.endpoints.len(),
        snapshot.other.len(),
        held_at[0] as f64 / MIB,
        held_at[1] as f64 / MIB,
        peak as f64 / MIB,
        counters
    );
    assert!(counters.path_nodes <= settings.max_path_nodes as u64);
    assert!(
        counters.paths_capped + counters.segments_overflowed > 100_000,
        "{counters:?}"
    );
    assert!(peak < 64 << 20, "peak {peak} bytes");
    // No growth without bound: the second 200k paths add (almost) nothing.
    assert!(
        held_at[1] < held_at[0] + (2 << 20),
        "grew from {} to {}",
        held_at[0],
        held_at[1]
    );
}

fn stable(s: &str) -> u64 {
    apisensor::inventory::profile::stable_hash(s.as_bytes())
}
