//! Link/IP/TCP decoding and IP fragment reassembly on arbitrary frames.
//! Input: `[link][frame]([FRAME_SEPARATOR][frame])*` (see `apisensor_fuzz`).
#![no_main]

use apisensor::config::DecodeSettings;
use apisensor::decode::{Decoder, LinkType};
use apisensor::Timestamp;
use apisensor_fuzz::FRAME_SEPARATOR;
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
    LinkType::Loop,
];

fn split_frames(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let Some(at) = rest
        .windows(FRAME_SEPARATOR.len())
        .position(|w| w == FRAME_SEPARATOR)
    {
        frames.push(&rest[..at]);
        rest = &rest[at + FRAME_SEPARATOR.len()..];
    }
    frames.push(rest);
    frames
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(sel) % LINKS.len()];
    let cut = u32::from(sel) / LINKS.len() as u32 * 64;
    let settings = DecodeSettings {
        max_fragmented_datagrams: 4,
        fragment_timeout_secs: 2,
        ..DecodeSettings::default()
    };
    let mut decoder = Decoder::new(&settings);
    let mut ts = 1_000_000_000_000u64;
    for frame in split_frames(rest) {
        let wire_len = (frame.len() as u32).saturating_add(cut);
        if let Some(seg) = decoder.decode(link, Timestamp(ts), frame, wire_len) {
            // The payload is borrowed from the frame or the fragment buffer;
            // touching it makes ASan check the borrow.
            std::hint::black_box(seg.payload.iter().fold(0u8, |a, b| a ^ b));
            // Announced by a 16-bit IP length field.
            assert!(
                seg.missing_payload <= 65_535,
                "missing_payload {} beyond any IP length",
                seg.missing_payload
            );
        }
        ts += 1_000_000_000;
        decoder.expire(Timestamp(ts));
    }
    decoder.expire(Timestamp(ts + 60_000_000_000));
    let s = &decoder.stats;
    assert!(s.tcp_segments <= s.packets);
});
