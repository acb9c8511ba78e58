//! Memory of the detectors' baselines, measured with a counting allocator:
//! one million actors over 10,000 endpoints (each actor signed in, touching
//! object ids) stay within the documented budget, and actors quiet for
//! longer than `actor_idle_secs` are forgotten. One test, so nothing else
//! allocates in this process while it measures.

use apisensor::analysis::Analysis;
use apisensor::config::Settings;
use apisensor::exchange::{Body, Exchange, Headers, HttpVersion, Request, Response, Timestamp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            CURRENT.fetch_add(layout.size(), Ordering::Relaxed);
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
/// The documented budget (README "Detection"): 1 million actors over
/// 10,000 endpoints in at most this much.
const BUDGET_MIB: f64 = 1024.0;

fn exchange(actor: u32, endpoint: u32, object: u32, secs: u64) -> Exchange {
    let mut headers = Headers::with_capacity(2, 64);
    headers.push(b"Host", b"api.test", 16, 1024);
    let path = format!("/api/e{endpoint}/{object}");
    Exchange {
        flow_id: u64::from(actor),
        client: std::net::SocketAddr::from((actor.to_be_bytes(), 40000)),
        server: "10.255.0.1:80".parse().unwrap(),
        request: Some(Request {
            ts: Timestamp::from_secs_nanos(secs, 0),
            end_ts: Timestamp::from_secs_nanos(secs, 0),
            method: "GET".into(),
            uri: path.as_str().into(),
            path: path.as_str().into(),
            query: None,
            version: HttpVersion::Http11,
            host: Some("api.test".into()),
            content_type: None,
            headers,
            body: Body::default(),
            pending_text: false,
        }),
        response: Some(Response {
            ts: Timestamp::from_secs_nanos(secs, 0),
            end_ts: Timestamp::from_secs_nanos(secs, 0),
            version: HttpVersion::Http11,
            status: Some(200),
            reason: "OK".into(),
            content_type: None,
            headers: Headers::default(),
            body: Body::default(),
            pending_text: false,
        }),
        tunnel: false,
        flags: Default::default(),
        anomalies: Vec::new(),
    }
}

#[test]
fn a_million_actors_fit_the_budget_and_old_ones_expire() {
    let before = CURRENT.load(Ordering::Relaxed);
    // The whole analysis stage (inventory, facts, detectors), learning only.
    let mut analysis = Analysis::learn_only(&Settings::default()).unwrap();
    let actors = 1_000_000u32;
    // One exchange per actor over 100 s of packet time, spread over 10,000
    // endpoints, each with its own object id.
    for actor in 0..actors {
        let e = exchange(
            actor + 1,
            actor % 10_000,
            actor,
            1_000 + u64::from(actor) / 10_000,
        );
        analysis.observe(&e);
    }
    let held = (CURRENT.load(Ordering::Relaxed) - before) as f64 / MIB;
    eprintln!(
        "baselines: {actors} actors over 10000 endpoints hold {held:.1} MiB ({:.0} bytes per actor); budget {BUDGET_MIB} MiB",
        held * MIB / f64::from(actors)
    );
    assert!(held < BUDGET_MIB, "{held:.1} MiB");

    // Two hours later one client is active: everyone else has expired.
    let e = exchange(1, 0, 7, 1_000 + 7_300);
    analysis.observe(&e);
    let after = (CURRENT.load(Ordering::Relaxed) - before) as f64 / MIB;
    eprintln!("after the idle period: {after:.1} MiB");
    assert!(after < held / 4.0, "{after:.1} MiB still held");
}
