//! The whole packet path on one thread: Ethernet frames through decode, the
//! flow table, reassembly and HTTP/1, with the default settings. Input: a list
//! of frames, each with a packet-time step (see `apisensor_fuzz::Frame`).
//!
//! Checked: no panic; exchanges counted once each; every exchange leaves with
//! a request or a response.
#![no_main]

use apisensor::decode::LinkType;
use apisensor::pipeline::InlineEngine;
use apisensor::{Settings, Timestamp};
use apisensor_fuzz::{PipelineInput, PIPELINE_TS_UNIT_NANOS};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(Settings::default)
}

fuzz_target!(|input: PipelineInput| {
    let mut engine = InlineEngine::new(settings());
    let mut out = Vec::new();
    let mut ts = 1_300_000_000_000_000_000u64;
    for f in &input.frames {
        ts += u64::from(f.ts_delta) * PIPELINE_TS_UNIT_NANOS;
        let wire_len = f.data.0.len() as u32 + u32::from(f.cut);
        engine.packet(LinkType::Ethernet, Timestamp(ts), &f.data.0, wire_len, &mut out);
    }
    let stats = engine.finish(&mut out);
    assert_eq!(stats.http.exchanges, out.len() as u64);
    assert_eq!(stats.decode.packets, input.frames.len() as u64);
    for e in &out {
        assert!(e.request.is_some() || e.response.is_some(), "empty exchange");
    }
});
