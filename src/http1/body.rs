//! Message bodies: framing (Content-Length, chunked with extensions and
//! trailers, until close) and what happens to the bytes (counted, kept up to
//! `max_body_bytes`, content-decoded with flate2 up to
//! `max_decoded_body_bytes`). Framing never buffers: it consumes what it can
//! from each slice. Decoding runs incrementally into a bounded sink, so a
//! decompression bomb costs at most the decoder's own window plus the cap.
//!
//! When `max_body_bytes` is 0 (nothing is kept) bodies are not decoded at all
//! and `decoded_len` equals `wire_len`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use super::inflate::{ContentDecoder, Stop, Wrapping};
use super::parser::{Codings, Encoding, MAX_CODINGS};
use super::{Annot, HttpStats};
use crate::config::HttpSettings;
use crate::exchange::{Anomaly, Body, Text};

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: u32 = 4096;

/// How the end of a body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes remain.
    Length(u64),
    Chunked(Chunk),
    /// Until the direction closes.
    Close,
}

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Reading a chunk-size line.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
        len: u32,
    },
    /// Inside chunk data, this many bytes remain.
    Data(u64),
    /// After chunk data, expecting CRLF (tolerated missing).
    DataEnd,
    /// Reading trailer fields; `len` bytes of the current line so far.
    Trailer { len: u32 },
}

impl Chunk {
    pub const START: Chunk = Chunk::Size {
        value: 0,
        digits: 0,
        ext: false,
        len: 0,
    };
}

/// What one `advance` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Consumed this many bytes; the body continues.
    More(usize),
    /// Consumed this many bytes and the body ended.
    Done(usize),
    /// Malformed chunk size after this many bytes; the message is over.
    Invalid(usize),
}

/// Consumes body bytes from `data` according to `framing`, handing the
/// payload (de-chunked) to `sink`.
pub(crate) fn advance(framing: &mut Framing, data: &[u8], mut sink: impl FnMut(&[u8])) -> Step {
    match framing {
        Framing::Close => {
            sink(data);
            Step::More(data.len())
        }
        Framing::Length(rem) => {
            let n = usize::try_from(*rem).unwrap_or(usize::MAX).min(data.len());
            sink(data.get(..n).unwrap_or_default());
            *rem = rem.saturating_sub(n as u64);
            if *rem == 0 {
                Step::Done(n)
            } else {
                Step::More(n)
            }
        }
        Framing::Chunked(c) => chunked(c, data, &mut sink),
    }
}

fn chunked(c: &mut Chunk, data: &[u8], sink: &mut impl FnMut(&[u8])) -> Step {
    let mut pos = 0usize;
    while pos < data.len() {
        match c {
            Chunk::Data(rem) => {
                let avail = data.get(pos..).unwrap_or_default();
                let n = usize::try_from(*rem).unwrap_or(usize::MAX).min(avail.len());
                sink(avail.get(..n).unwrap_or_default());
                pos = pos.saturating_add(n);
                *rem = rem.saturating_sub(n as u64);
                if *rem == 0 {
                    *c = Chunk::DataEnd;
                }
            }
            Chunk::DataEnd => match data.get(pos) {
                Some(b'\r') => pos = pos.saturating_add(1),
                Some(b'\n') => {
                    pos = pos.saturating_add(1);
                    *c = Chunk::START;
                }
                // Missing CRLF after the data: read the next size line here.
                _ => *c = Chunk::START,
            },
            Chunk::Size {
                value,
                digits,
                ext,
                len,
            } => {
                let Some(&b) = data.get(pos) else { break };
                pos = pos.saturating_add(1);
                *len = len.saturating_add(1);
                if *len > MAX_CHUNK_LINE {
                    return Step::Invalid(pos);
                }
                match b {
                    b'\n' => {
                        if *digits == 0 {
                            if *ext {
                                return Step::Invalid(pos);
                            }
                            // Stray empty line between chunks: tolerated.
                            *len = 0;
                            continue;
                        }
                        *c = if *value == 0 {
                            Chunk::Trailer { len: 0 }
                        } else {
                            Chunk::Data(*value)
                        };
                    }
                    b'\r' => {}
                    _ if *ext => {}
                    b';' | b' ' | b'\t' => {
                        if *digits == 0 && b == b';' {
                            return Step::Invalid(pos);
                        }
                        *ext = *digits > 0;
                    }
                    _ => {
                        let Some(d) = (b as char).to_digit(16) else {
                            return Step::Invalid(pos);
                        };
                        match value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                        {
                            Some(v) => *value = v,
                            None => return Step::Invalid(pos),
                        }
                        *digits = digits.saturating_add(1);
                    }
                }
            }
            Chunk::Trailer { len } => {
                let Some(&b) = data.get(pos) else { break };
                pos = pos.saturating_add(1);
                match b {
                    b'\n' if *len == 0 => return Step::Done(pos),
                    b'\n' => *len = 0,
                    b'\r' => {}
                    _ => *len = len.saturating_add(1),
                }
            }
        }
    }
    Step::More(pos)
}

/// Makes room for `more` bytes in `data`, which never holds more than
/// `cap`. Room is reserved by what arrived, never by what a header
/// announced (a `Content-Length: 65536` with no body behind it must not cost
/// 64 KiB): capacity doubles as bytes come, but not past `cap`.
fn keep_room(data: &mut Vec<u8>, more: usize, cap: usize) {
    let needed = data.len().saturating_add(more);
    if needed > data.capacity() {
        let target = needed
            .max(data.capacity().saturating_mul(2))
            .min(cap.max(needed));
        data.reserve_exact(target.saturating_sub(data.len()));
    }
}

/// The content codings a decoder undoes, in the order they were applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Applied {
    list: [Wrapping; MAX_CODINGS],
    len: u8,
}

impl Applied {
    fn of(codings: &[Encoding]) -> Applied {
        let mut a = Applied::default();
        for (slot, coding) in a.list.iter_mut().zip(codings) {
            *slot = match coding {
                Encoding::Gzip => Wrapping::Gzip,
                Encoding::Deflate => Wrapping::Deflate,
            };
            a.len = a.len.saturating_add(1);
        }
        a
    }

    fn as_slice(&self) -> &[Wrapping] {
        self.list.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// A body being received: its record, decoder, and whether decoding stopped.
#[derive(Debug, Default)]
pub(crate) struct BodyState {
    pub decoder: Option<Box<ContentDecoder>>,
    /// The codings `decoder` undoes (what a deferred decoding rebuilds).
    applied: Applied,
    /// Decoding failed or hit its limit; later bytes are only counted.
    pub stopped: bool,
    /// More than one content coding (flagged once the body has bytes).
    stacked: bool,
    /// A content coding that decoding was on for but could not undo.
    undecoded: bool,
}

impl BodyState {
    /// Heap bytes of the decoder, if a body is being decoded.
    pub fn heap_bytes(&self) -> usize {
        self.decoder.as_ref().map_or(0, |d| d.heap_bytes())
    }

    pub fn new(codings: Codings, s: &HttpSettings, body: &mut Body) -> BodyState {
        if codings.is_identity() {
            return BodyState::default();
        }
        let decoding = s.decode_content && s.max_body_bytes > 0;
        let applied = codings
            .decodable()
            .filter(|list| decoding && !list.is_empty())
            .map(Applied::of)
            .unwrap_or_default();
        let decoder = ContentDecoder::chain(
            applied.as_slice(),
            s.max_body_bytes,
            s.max_decoded_body_bytes as u64,
        )
        .map(Box::new);
        if decoder.is_some() {
            body.content_encoding = Some(applied_names(&applied));
        }
        BodyState {
            decoder,
            applied,
            stopped: false,
            stacked: codings.stacked(),
            undecoded: decoding && codings.decodable().is_none(),
        }
    }

    /// Takes body payload bytes.
    pub fn write(
        &mut self,
        body: &mut Body,
        data: &[u8],
        s: &HttpSettings,
        stats: &mut HttpStats,
        annot: &mut Annot,
    ) {
        if data.is_empty() {
            return;
        }
        body.wire_len = body.wire_len.saturating_add(data.len() as u64);
        let Some(dec) = self.decoder.as_mut() else {
            let room = s.max_body_bytes.saturating_sub(body.data.len());
            let n = room.min(data.len());
            keep_room(&mut body.data, n, s.max_body_bytes);
            body.data
                .extend_from_slice(data.get(..n).unwrap_or_default());
            let dropped = data.len().saturating_sub(n);
            if dropped > 0 {
                body.data_truncated = true;
                stats.body_bytes_not_kept =
                    stats.body_bytes_not_kept.saturating_add(dropped as u64);
            }
            return;
        };
        if self.stopped {
            return;
        }
        if let Err(stop) = dec.write(data) {
            self.stop(stop, annot, stats);
        }
    }

    fn stop(&mut self, why: Stop, annot: &mut Annot, stats: &mut HttpStats) {
        self.stopped = true;
        if why == Stop::Limit {
            annot.anomaly(Anomaly::DecompressionLimit);
            stats.decompression_limit_hits = stats.decompression_limit_hits.saturating_add(1);
        } else {
            annot.anomaly(Anomaly::DecompressionError);
            stats.decompression_errors = stats.decompression_errors.saturating_add(1);
        }
    }

    /// Bytes were lost: decoding cannot continue, but what arrived before
    /// the loss is still decoded.
    pub fn lost(&mut self, body: &mut Body, len: u64, stats: &mut HttpStats, annot: &mut Annot) {
        body.wire_len = body.wire_len.saturating_add(len);
        body.data_truncated = true;
        if self.decoder.is_some() {
            self.decode_held(annot, stats);
            self.stopped = true;
        }
    }

    /// Decodes the compressed bytes the decoder holds back (see
    /// `ContentDecoder::flush`), unless decoding has stopped.
    fn decode_held(&mut self, annot: &mut Annot, stats: &mut HttpStats) {
        if self.stopped {
            return;
        }
        if let Some(Err(stop)) = self.decoder.as_mut().map(|dec| dec.flush()) {
            self.stop(stop, annot, stats);
        }
    }

    /// The body ended (complete or not): finish decoding, fill the lengths.
    /// With `defer`, a gzip body still held whole is not inflated here: it
    /// travels with the exchange as `Body::pending_decode`, and
    /// [`finish_pending`] does the rest later, with the same result.
    pub fn finish(
        mut self,
        body: &mut Body,
        complete: bool,
        defer: bool,
        stats: &mut HttpStats,
        annot: &mut Annot,
    ) {
        if body.wire_len > 0 {
            if self.stacked {
                annot.anomaly(Anomaly::StackedContentEncoding);
            }
            if self.undecoded {
                annot.anomaly(Anomaly::UndecodedContentEncoding);
            }
        }
        if defer && !self.stopped {
            if let Some(dec) = self.decoder.as_mut() {
                if let Some((held, announced)) = dec.take_held() {
                    // The output buffer is allocated here, on the thread
                    // that will free the exchange (see `pipeline::Spent`).
                    if announced <= dec.keep() && announced as u64 <= dec.limit() {
                        body.data.reserve_exact(announced);
                    }
                    body.pending_decode = Some(Box::new(PendingDecode {
                        held,
                        applied: self.applied,
                        keep: dec.keep(),
                        limit: dec.limit(),
                        complete,
                    }));
                    return;
                }
            }
        }
        // Held-back bytes fail like streamed ones would have while arriving;
        // only then is an unfinished stream judged by whether the body was.
        self.decode_held(annot, stats);
        let Some(mut dec) = self.decoder.take() else {
            body.decoded_len = body.wire_len;
            return;
        };
        if !self.stopped && body.wire_len > 0 && dec.finish().is_err() {
            if complete {
                self.stop(Stop::Error, annot, stats);
            } else {
                body.data_truncated = true;
            }
        }
        body.decoded_len = dec.decoded();
        body.data = dec.take_data();
        if self.stopped || body.decoded_len > body.data.len() as u64 {
            body.data_truncated = true;
        }
        if body.decoded_len > body.data.len() as u64 {
            let extra = body.decoded_len.saturating_sub(body.data.len() as u64);
            stats.body_bytes_not_kept = stats.body_bytes_not_kept.saturating_add(extra);
        }
    }
}

/// Content decoding a body still owes: its compressed bytes, held whole,
/// and what `BodyState::finish` needs to finish them.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingDecode {
    held: Vec<u8>,
    applied: Applied,
    keep: usize,
    limit: u64,
    complete: bool,
}

impl PendingDecode {
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>().saturating_add(self.held.capacity())
    }
}

impl std::fmt::Debug for PendingDecode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDecode")
            .field("held_bytes", &self.held.len())
            .field("complete", &self.complete)
            .finish()
    }
}

/// Finishes the content decoding `BodyState::finish` deferred, if any:
/// the body ends up as it would have without the deferral.
pub(crate) fn finish_pending(body: &mut Body, stats: &mut HttpStats, annot: &mut Annot) {
    let Some(p) = body.pending_decode.take().map(|p| *p) else {
        return;
    };
    let data = std::mem::take(&mut body.data);
    let decoder = ContentDecoder::resume(p.applied.as_slice(), p.held, p.keep, p.limit, data);
    let state = BodyState {
        decoder: decoder.map(Box::new),
        applied: p.applied,
        ..BodyState::default()
    };
    state.finish(body, p.complete, false, stats, annot);
}

/// `gzip`, or the chain as the header lists it: `gzip, deflate`.
fn applied_names(applied: &Applied) -> Text {
    let name = |w: &Wrapping| match w {
        Wrapping::Gzip => Encoding::Gzip.name(),
        Wrapping::Deflate => Encoding::Deflate.name(),
    };
    if let [one] = applied.as_slice() {
        return Text::const_new(name(one));
    }
    let mut names = Text::default();
    for (i, w) in applied.as_slice().iter().enumerate() {
        if i > 0 {
            names.push_str(", ");
        }
        names.push_str(name(w));
    }
    names
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn run(f: &mut Framing, data: &[u8]) -> (Step, Vec<u8>) {
        let mut out = Vec::new();
        let st = advance(f, data, |d| out.extend_from_slice(d));
        (st, out)
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let mut f = Framing::Chunked(Chunk::START);
        let (st, out) = run(
            &mut f,
            b"5;ext=1\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT",
        );
        assert_eq!(out, b"hello world");
        assert_eq!(st, Step::Done(44));
    }

    #[test]
    fn chunked_byte_by_byte() {
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        let mut f = Framing::Chunked(Chunk::START);
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            let st = advance(&mut f, std::slice::from_ref(b), |d| {
                out.extend_from_slice(d)
            });
            if i + 1 == input.len() {
                assert_eq!(st, Step::Done(1));
            } else {
                assert_eq!(st, Step::More(1));
            }
        }
        assert_eq!(out, b"abc");
    }

    #[test]
    fn chunk_size_overflow_is_invalid() {
        let mut f = Framing::Chunked(Chunk::START);
        let (st, _) = run(&mut f, b"10000000000000000\r\n");
        assert!(matches!(st, Step::Invalid(_)));
        let mut f = Framing::Chunked(Chunk::START);
        assert!(matches!(run(&mut f, b"zz\r\n").0, Step::Invalid(_)));
    }

    #[test]
    fn room_is_reserved_by_what_arrived_not_by_what_was_announced() {
        let s = HttpSettings::default();
        let mut body = Body::default();
        let mut state = BodyState::new(Codings::default(), &s, &mut body);
        // `Content-Length: 65536` and nothing yet: nothing reserved.
        assert_eq!(body.data.capacity(), 0);
        let (mut stats, mut annot) = (HttpStats::default(), Annot::default());
        state.write(&mut body, &[7u8; 100], &s, &mut stats, &mut annot);
        assert!(body.data.capacity() >= 100 && body.data.capacity() < 1024);
        // Growth doubles, and never past what may be kept.
        for _ in 0..2000 {
            state.write(&mut body, &[7u8; 100], &s, &mut stats, &mut annot);
        }
        assert_eq!(body.data.len(), s.max_body_bytes);
        assert_eq!(body.data.capacity(), s.max_body_bytes);
    }

    #[test]
    fn length_framing() {
        let mut f = Framing::Length(3);
        assert_eq!(run(&mut f, b"ab").0, Step::More(2));
        assert_eq!(run(&mut f, b"cd").0, Step::Done(1));
    }

    fn decode(enc: Encoding, wire: &[u8], s: &HttpSettings) -> (Body, Annot) {
        let (body, a, _) = decode_with(&[enc], wire, s, true, false);
        (body, a)
    }

    /// `complete`: the framing says the body is whole; `defer`: inflation
    /// is left to `finish_pending`, run right after.
    fn decode_with(
        codings: &[Encoding],
        wire: &[u8],
        s: &HttpSettings,
        complete: bool,
        defer: bool,
    ) -> (Body, Annot, HttpStats) {
        let mut body = Body::default();
        let codings = Codings::from_list(codings);
        let mut st = BodyState::new(codings, s, &mut body);
        let mut stats = HttpStats::default();
        let mut a = Annot::default();
        for part in wire.chunks(7) {
            st.write(&mut body, part, s, &mut stats, &mut a);
        }
        st.finish(&mut body, complete, defer, &mut stats, &mut a);
        let outer_gzip = codings.decodable().and_then(<[_]>::last) == Some(&Encoding::Gzip);
        if wire.len() <= 32 * 1024 {
            assert_eq!(body.pending_decode.is_some(), defer && outer_gzip);
        }
        finish_pending(&mut body, &mut stats, &mut a);
        assert!(body.pending_decode.is_none());
        (body, a, stats)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut g = GzEncoder::new(Vec::new(), Compression::fast());
        g.write_all(data).unwrap();
        g.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    /// A body with the codings of `header` (a Content-Encoding value),
    /// decoded inline and deferred (which must agree), complete.
    fn decode_header(header: &str, wire: &[u8], s: &HttpSettings) -> (Body, Annot, HttpStats) {
        let run = |defer: bool| {
            let mut body = Body::default();
            let codings = Codings::parse(header.as_bytes());
            let mut st = BodyState::new(codings, s, &mut body);
            let mut stats = HttpStats::default();
            let mut a = Annot::default();
            for part in wire.chunks(700) {
                st.write(&mut body, part, s, &mut stats, &mut a);
            }
            st.finish(&mut body, true, defer, &mut stats, &mut a);
            finish_pending(&mut body, &mut stats, &mut a);
            (body, a, stats)
        };
        let inline = run(false);
        assert_eq!(run(true), inline, "{header}: deferred decoding differs");
        inline
    }

    #[test]
    fn stacked_codings_are_undone_last_first_and_flagged() {
        let s = HttpSettings::default();
        let json = br#"{"user":"kim","card":"4111111111111111"}"#.repeat(20);
        let cases: [(&str, Vec<u8>); 5] = [
            ("gzip, gzip", gzip(&gzip(&json))),
            ("gzip,deflate", zlib(&gzip(&json))),
            ("deflate, gzip", gzip(&zlib(&json))),
            ("x-gzip, identity, gzip", gzip(&gzip(&json))),
            ("gzip, gzip, gzip", gzip(&gzip(&gzip(&json)))),
        ];
        for (header, wire) in cases {
            let (b, a, _) = decode_header(header, &wire, &s);
            assert_eq!(b.data, json, "{header}");
            assert_eq!(
                (b.wire_len, b.decoded_len),
                (wire.len() as u64, json.len() as u64)
            );
            assert!(a.has(Anomaly::StackedContentEncoding), "{header}");
            assert!(!a.has(Anomaly::UndecodedContentEncoding), "{header}");
            assert!(!a.has(Anomaly::DecompressionError), "{header}");
        }
        let (b, _, _) = decode_header("deflate, gzip", &gzip(&zlib(&json)), &s);
        assert_eq!(b.content_encoding.as_deref(), Some("deflate, gzip"));
        // A chain whose last coding is gzip is left to the consumer whole,
        // like a single gzip body (the comparison above is not trivial).
        let mut body = Body::default();
        let codings = Codings::parse(b"deflate, gzip");
        let mut st = BodyState::new(codings, &s, &mut body);
        let (mut stats, mut a) = (HttpStats::default(), Annot::default());
        st.write(&mut body, &gzip(&zlib(&json)), &s, &mut stats, &mut a);
        st.finish(&mut body, true, true, &mut stats, &mut a);
        assert!(body.pending_decode.is_some() && body.data.is_empty());
        // One coding is not stacked, and decodes as before.
        let (b, a, _) = decode_header("gzip", &gzip(&json), &s);
        assert_eq!((b.data, a), (json.clone(), Annot::default()));
        assert_eq!(b.content_encoding.as_deref(), Some("gzip"));
    }

    #[test]
    fn codings_that_are_not_undone_keep_the_bytes_and_are_flagged() {
        let s = HttpSettings::default();
        let json = br#"{"id":1}"#.repeat(10);
        let four = gzip(&gzip(&gzip(&gzip(&json))));
        for (header, wire, stacked) in [
            ("gzip, gzip, gzip, gzip", four.clone(), true),
            ("br", b"\x1b\x07\x00opaque".to_vec(), false),
            ("gzip, br", b"brotli bytes".to_vec(), true),
            ("zstd", b"zstd bytes".to_vec(), false),
        ] {
            let (b, a, _) = decode_header(header, &wire, &s);
            assert_eq!(b.data, wire, "{header}: kept as sent");
            assert_eq!(b.content_encoding, None, "{header}");
            assert!(a.has(Anomaly::UndecodedContentEncoding), "{header}");
            assert_eq!(a.has(Anomaly::StackedContentEncoding), stacked, "{header}");
        }
        // Identity is no coding; decoding switched off is no failure.
        let (_, a, _) = decode_header("identity", b"plain", &s);
        assert_eq!(a, Annot::default());
        let off = HttpSettings {
            decode_content: false,
            ..HttpSettings::default()
        };
        let (b, a, _) = decode_header("br", b"opaque", &off);
        assert_eq!(b.data, b"opaque");
        assert!(!a.has(Anomaly::UndecodedContentEncoding));
    }

    #[test]
    fn every_stage_of_a_chain_stops_at_the_decoded_limit() {
        let s = HttpSettings {
            max_body_bytes: 1000,
            max_decoded_body_bytes: 100_000,
            ..HttpSettings::default()
        };
        // The inner bomb: 10 MB of zeros, then compressed again.
        let bomb = {
            let mut g = GzEncoder::new(Vec::new(), Compression::best());
            g.write_all(&vec![0u8; 10_000_000]).unwrap();
            g.finish().unwrap()
        };
        let (b, a, stats) = decode_header("gzip, gzip", &gzip(&bomb), &s);
        assert!(a.has(Anomaly::DecompressionLimit));
        assert_eq!(stats.decompression_limit_hits, 1);
        assert_eq!((b.decoded_len, b.data.len()), (100_000, 1000));
        assert!(b.data_truncated);
        // An outer layer bigger than the limit stops the chain as well.
        let tight = HttpSettings {
            max_decoded_body_bytes: 50,
            ..HttpSettings::default()
        };
        let (_, a, _) = decode_header("gzip, gzip", &gzip(&gzip(&[7u8; 5000])), &tight);
        assert!(a.has(Anomaly::DecompressionLimit));
    }

    #[test]
    fn every_gzip_member_is_decoded() {
        let s = HttpSettings::default();
        let (one, two) = (b"first member, ".repeat(30), b"second member".repeat(30));
        let mut wire = gzip(&one);
        wire.extend_from_slice(&gzip(&two));
        let (b, a, _) = decode_header("gzip", &wire, &s);
        assert_eq!(b.data, [one.clone(), two.clone()].concat());
        assert_eq!(a, Annot::default());
        // Members of the same size: the last trailer announces the first
        // member's size too, which must not end decoding after it.
        let mut twins = gzip(b"twin");
        twins.extend_from_slice(&gzip(b"twin"));
        let (b, _, _) = decode_header("gzip", &twins, &s);
        assert_eq!(b.data, b"twintwin");
        // Bytes after a member that start no other are ignored, as before.
        let mut trailing = gzip(&one);
        trailing.extend_from_slice(b"\r\n\0\0junk");
        let (b, a, _) = decode_header("gzip", &trailing, &s);
        assert_eq!((b.data.as_slice(), a), (one.as_slice(), Annot::default()));
        // A second member cut short is an error, with what came before kept.
        let mut cut = gzip(&one);
        let second = gzip(&two);
        cut.extend_from_slice(&second[..second.len() / 2]);
        let (b, a, _) = decode_header("gzip", &cut, &s);
        assert!(a.has(Anomaly::DecompressionError));
        assert!(b.data.starts_with(&one));
    }

    #[test]
    fn deferred_inflation_gives_the_same_body_anomalies_and_counters() {
        let gzip = |data: &[u8], level: u32| {
            let mut g = GzEncoder::new(Vec::new(), Compression::new(level));
            g.write_all(data).unwrap();
            g.finish().unwrap()
        };
        let json = br#"{"id":7,"name":"Kim","email":"kim@example.com"}"#.repeat(40);
        let good = gzip(&json, 1);
        let mut lying_size = good.clone();
        let n = lying_size.len();
        lying_size[n - 4..].copy_from_slice(&5u32.to_le_bytes());
        let mut corrupt = good.clone();
        corrupt[10] = 0xff; // first deflate block: type 3, which does not exist
        let cut = good[..good.len() / 2].to_vec();
        let bomb = gzip(&vec![0u8; 10_000_000], 9);
        let small = HttpSettings {
            max_body_bytes: 100,
            ..HttpSettings::default()
        };
        let capped = HttpSettings {
            max_body_bytes: 1000,
            max_decoded_body_bytes: 100_000,
            ..HttpSettings::default()
        };
        let s = HttpSettings::default();
        let cases: [(&[u8], &HttpSettings, bool); 8] = [
            (&good, &s, true),
            (&good, &small, true),
            (&lying_size, &s, true),
            (&corrupt, &s, true),
            (&cut, &s, true),
            (&cut, &s, false),
            (&bomb, &capped, true),
            (b"\x1f\x8b\x08\0\0\0\0\0\0\x03not deflate", &s, true),
        ];
        for (i, (wire, settings, complete)) in cases.into_iter().enumerate() {
            let inline = decode_with(&[Encoding::Gzip], wire, settings, complete, false);
            let deferred = decode_with(&[Encoding::Gzip], wire, settings, complete, true);
            assert_eq!(inline, deferred, "case {i}");
        }
        // The cases reach every outcome.
        let (b, a, _) = decode_with(&[Encoding::Gzip], &good, &s, true, true);
        assert_eq!((b.data.as_slice(), a), (json.as_slice(), Annot::default()));
        let (_, a, stats) = decode_with(&[Encoding::Gzip], &corrupt, &s, true, true);
        assert!(a.has(Anomaly::DecompressionError) && stats.decompression_errors == 1);
        let (_, a, _) = decode_with(&[Encoding::Gzip], &bomb, &capped, true, true);
        assert!(a.has(Anomaly::DecompressionLimit));
        let (b, _, stats) = decode_with(&[Encoding::Gzip], &good, &small, true, true);
        assert!(b.data_truncated && stats.body_bytes_not_kept > 0);
    }

    #[test]
    fn gzip_zlib_and_raw_deflate() {
        let s = HttpSettings::default();
        let plain = b"hello hello hello hello";
        let mut g = GzEncoder::new(Vec::new(), Compression::default());
        g.write_all(plain).unwrap();
        let (b, a) = decode(Encoding::Gzip, &g.finish().unwrap(), &s);
        assert_eq!(b.data, plain);
        assert_eq!(b.decoded_len, plain.len() as u64);
        assert_eq!(a, Annot::default());
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(plain).unwrap();
        assert_eq!(
            decode(Encoding::Deflate, &z.finish().unwrap(), &s).0.data,
            plain
        );
        let mut r = DeflateEncoder::new(Vec::new(), Compression::default());
        r.write_all(plain).unwrap();
        assert_eq!(
            decode(Encoding::Deflate, &r.finish().unwrap(), &s).0.data,
            plain
        );
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let s = HttpSettings {
            max_body_bytes: 1000,
            max_decoded_body_bytes: 100_000,
            ..HttpSettings::default()
        };
        let mut g = GzEncoder::new(Vec::new(), Compression::best());
        g.write_all(&vec![0u8; 10_000_000]).unwrap();
        let wire = g.finish().unwrap();
        let (b, a) = decode(Encoding::Gzip, &wire, &s);
        assert_eq!(b.data.len(), 1000);
        assert_eq!(b.decoded_len, 100_000);
        assert!(b.data_truncated);
        assert!(a.has(Anomaly::DecompressionLimit));
        assert_eq!(b.wire_len, wire.len() as u64);
    }

    #[test]
    fn bad_gzip_is_an_error_but_counted() {
        let s = HttpSettings::default();
        let (b, a) = decode(Encoding::Gzip, b"this is not gzip at all", &s);
        assert!(a.has(Anomaly::DecompressionError));
        assert_eq!(b.wire_len, 23);
    }
}
