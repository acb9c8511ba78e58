//! Streaming content decoding (gzip, x-gzip, zlib-wrapped and raw deflate)
//! into a bounded sink. The gzip and zlib wrappers are parsed here so that a
//! single kind of engine, raw inflate, does all the work: its state (tens of
//! KiB) is reset and reused from a small per-thread pool instead of being
//! allocated and zeroed for every compressed body, which matters when most
//! API responses are gzip. Trailers (CRC32/ISIZE, Adler-32) are not verified:
//! the sensor wants the bytes the client saw, and a bad checksum is not a
//! reason to hide them.
//!
//! A gzip body is not inflated as its segments arrive: its compressed bytes
//! (up to `DEFER_MAX_BYTES`) are held until the body ends and then inflated
//! in one call by libdeflate, straight into a buffer of the size the gzip
//! trailer announces. libdeflate has no streaming interface but inflates
//! about 1.5 times as fast as zlib, and the whole-body call skips the
//! per-segment calls and copies: content decoding is most of a worker's
//! time on gzip-heavy API traffic (replay of the benchmark capture: 13 %
//! faster). Larger bodies, and bodies whose one-shot inflate does not give
//! exactly the announced bytes (a lying ISIZE, a corrupt or cut stream),
//! are streamed by zlib from their start, so what is kept never depends
//! on which path ran. The one call may also be made later, on another
//! thread: `take_held` hands the held bytes over and `resume` rebuilds this
//! state from them (see `body::PendingDecode`).
//!
//! A gzip body may hold several members (RFC 1952 §2.2): each is decoded
//! and their output joined; bytes after a member that do not start another
//! are ignored, as before. A body with stacked codings (`Content-Encoding:
//! gzip, gzip`) is decoded by a chain of decoders, each feeding the next
//! its output and each stopping at `max_decoded_body_bytes`; only the
//! outermost one holds bytes back, so a deferred chain is rebuilt the same
//! way. Every stage has its own scratch buffer (by its depth in the chain).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use flate2::{Decompress, FlushDecompress, Status};
use memchr::memmem;
use std::cell::RefCell;
use std::sync::LazyLock;

/// Inflaters kept per thread for reuse.
const POOL_SIZE: usize = 32;
/// Output produced per inflate call before it is handed to the sink.
const SCRATCH_BYTES: usize = 16 * 1024;
/// Compressed bytes of a gzip body held for one-shot inflation; no more
/// than the inflater's own window a streamed body would hold meanwhile.
const DEFER_MAX_BYTES: usize = 32 * 1024;
/// What a streaming inflater holds while a body uses it: zlib's state
/// (about 7 KiB with its tables) and its 32 KiB window. An estimate the
/// memory budget charges, from zlib's `inflate_state` and `wsize`.
const INFLATER_BYTES: usize = 40 * 1024;

/// The first bytes of a gzip member (magic, CM = deflate).
static MEMBER_START: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(&[0x1f, 0x8b, 0x08]));

/// Most decoders in one chain (`parser::MAX_CODINGS`).
const MAX_STAGES: usize = super::parser::MAX_CODINGS;

thread_local! {
    static POOL: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
    /// Output buffers shared by all decoders of the thread (filled, then
    /// drained into the sink before the next call), so no call zeroes one;
    /// one per depth, since a stage hands its output to the next stage
    /// while it still holds its own.
    static SCRATCH: [RefCell<Vec<u8>>; MAX_STAGES] =
        const { [const { RefCell::new(Vec::new()) }; MAX_STAGES] };
    /// The one-shot inflater (a few KiB of tables, reused by every body).
    static WHOLE: RefCell<libdeflater::Decompressor> =
        RefCell::new(libdeflater::Decompressor::new());
}

fn take_inflater() -> Decompress {
    POOL.with(|p| p.borrow_mut().pop())
        .map(|mut d| {
            d.reset(false);
            d
        })
        .unwrap_or_else(|| Decompress::new(false))
}

fn return_inflater(d: Decompress) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_SIZE {
            pool.push(d);
        }
    });
}

/// Which wrapper the compressed stream has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Wrapping {
    #[default]
    Gzip,
    /// `Content-Encoding: deflate`: zlib-wrapped per the RFC, raw in practice
    /// from some servers; decided from the first two bytes.
    Deflate,
}

/// Position in the wrapper around the deflate data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// Gzip fixed header: 10 bytes, `flags` read from byte 3.
    GzipFixed {
        have: u8,
        flags: u8,
    },
    GzipExtraLen {
        have: u8,
        len: u16,
        flags: u8,
    },
    GzipExtra {
        remaining: u16,
        flags: u8,
    },
    GzipName {
        flags: u8,
    },
    GzipComment {
        flags: u8,
    },
    GzipHeaderCrc {
        have: u8,
    },
    /// Deflate: waiting for the first two bytes to tell zlib from raw.
    DeflateStart {
        first: Option<u8>,
    },
    /// Inside deflate data.
    Body,
    /// After a gzip member's deflate data: its CRC32 and ISIZE (not checked).
    GzipTrailer {
        have: u8,
    },
    /// After a gzip member's trailer: another member may start here.
    GzipMember,
    /// The stream ended; trailing bytes are ignored.
    Ended,
}

const GZIP_FHCRC: u8 = 0x02;
const GZIP_FEXTRA: u8 = 0x04;
const GZIP_FNAME: u8 = 0x08;
const GZIP_FCOMMENT: u8 = 0x10;

/// Why decoding stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not a valid stream.
    Error,
    /// `max_decoded_body_bytes` reached.
    Limit,
}

/// Decodes one body: keeps up to `keep` bytes, counts up to `limit`. In a
/// chain, each stage but the last hands its output to `next` instead of
/// keeping it.
pub(crate) struct ContentDecoder {
    inflater: Option<Decompress>,
    header: Header,
    /// Compressed bytes not inflated yet (gzip, see the module comment).
    deferred: Vec<u8>,
    /// Whether body bytes still go to `deferred`.
    defer: bool,
    data: Vec<u8>,
    decoded: u64,
    keep: usize,
    limit: u64,
    /// The stream is gzip (members and trailers), not zlib or raw deflate.
    gzip: bool,
    /// Gzip members decoded so far (after the first, a missing member
    /// header is the end of the body, not an error).
    members: u32,
    /// The coding applied before this one: decodes this stage's output.
    next: Option<Box<ContentDecoder>>,
    /// Stages in front of this one; picks its scratch buffer.
    depth: u8,
}

impl std::fmt::Debug for ContentDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDecoder")
            .field("header", &self.header)
            .field("decoded", &self.decoded)
            .finish()
    }
}

impl Drop for ContentDecoder {
    fn drop(&mut self) {
        if let Some(d) = self.inflater.take() {
            return_inflater(d);
        }
    }
}

impl ContentDecoder {
    pub fn new(wrapping: Wrapping, keep: usize, limit: u64) -> Self {
        ContentDecoder {
            inflater: None,
            header: match wrapping {
                Wrapping::Gzip => Header::GzipFixed { have: 0, flags: 0 },
                Wrapping::Deflate => Header::DeflateStart { first: None },
            },
            deferred: Vec::new(),
            defer: wrapping == Wrapping::Gzip && keep > 0,
            data: Vec::new(),
            decoded: 0,
            keep,
            limit,
            gzip: wrapping == Wrapping::Gzip,
            members: 0,
            next: None,
            depth: 0,
        }
    }

    /// A decoder for a body whose codings were applied in the order of
    /// `applied` (at most `MAX_STAGES`): the last one applied is undone
    /// first. `None` for an empty or too long list.
    pub fn chain(applied: &[Wrapping], keep: usize, limit: u64) -> Option<Self> {
        if applied.len() > MAX_STAGES {
            return None;
        }
        let mut inner: Option<Box<ContentDecoder>> = None;
        for (i, &wrapping) in applied.iter().enumerate() {
            let mut stage = ContentDecoder::new(wrapping, keep, limit);
            stage.depth = (applied.len() - 1 - i) as u8;
            // Only the outermost stage sees the body's bytes as they come.
            stage.defer &= stage.depth == 0;
            stage.next = inner.take();
            inner = Some(Box::new(stage));
        }
        inner.map(|stage| *stage)
    }

    /// Feeds compressed bytes.
    pub fn write(&mut self, mut input: &[u8]) -> Result<(), Stop> {
        while !input.is_empty() {
            let used = match self.header {
                Header::Body if self.defer => return self.hold(input),
                Header::Body => self.inflate(input)?,
                Header::Ended => return Ok(()),
                _ => self.header_byte(input)?,
            };
            input = input.get(used..).unwrap_or_default();
        }
        Ok(())
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Heap bytes this decoder holds (itself, boxed, included): what the
    /// memory budget charges while a body is being decoded.
    pub fn heap_bytes(&self) -> usize {
        let inflater = if self.inflater.is_some() {
            INFLATER_BYTES
        } else {
            0
        };
        std::mem::size_of::<Self>()
            .saturating_add(self.deferred.capacity())
            .saturating_add(self.data.capacity())
            .saturating_add(inflater)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The stage that keeps the decoded bytes (the last of a chain).
    fn last(&self) -> &ContentDecoder {
        match &self.next {
            Some(next) => next.last(),
            None => self,
        }
    }

    fn last_mut(&mut self) -> &mut ContentDecoder {
        match self.next {
            Some(ref mut next) => next.last_mut(),
            None => self,
        }
    }

    /// Decoded bytes counted (up to the limit) by the last stage.
    pub fn decoded(&self) -> u64 {
        self.last().decoded
    }

    /// The decoded bytes kept (up to `keep`).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.last_mut().data)
    }

    /// The held-back compressed bytes, when they are all this decoder has
    /// seen of the deflate data (nothing streamed, nothing decoded yet), for
    /// a one-shot inflation elsewhere; with the size the gzip trailer
    /// announces (0 for a chain, whose decoded size it does not give).
    /// `None`, with nothing changed, otherwise.
    pub fn take_held(&mut self) -> Option<(Vec<u8>, usize)> {
        let only_held = self.defer && self.header == Header::Body && self.data.is_empty();
        if !only_held || self.deferred.is_empty() {
            return None;
        }
        let announced = match self.next {
            Some(_) => 0,
            None => announced_size(&self.deferred).unwrap_or(0),
        };
        Some((std::mem::take(&mut self.deferred), announced))
    }

    /// A decoder back in the state `take_held` found it in: `applied` as
    /// given to `chain` (its last coding gzip), holding `held` and writing
    /// into `data` (empty; its capacity is used as it is).
    pub fn resume(
        applied: &[Wrapping],
        held: Vec<u8>,
        keep: usize,
        limit: u64,
        data: Vec<u8>,
    ) -> Option<Self> {
        let mut dec = ContentDecoder::chain(applied, keep, limit)?;
        dec.header = Header::Body;
        dec.deferred = held;
        let last = dec.last_mut();
        last.data = data;
        last.data.clear();
        Some(dec)
    }

    /// The body is over: was every compressed stream of the chain complete?
    pub fn finish(&mut self) -> Result<(), Stop> {
        self.flush()?;
        let ended = matches!(
            self.header,
            Header::Ended | Header::GzipTrailer { .. } | Header::GzipMember
        );
        if !ended {
            return Err(Stop::Error);
        }
        match self.next.as_mut() {
            Some(next) => next.finish(),
            None => Ok(()),
        }
    }

    /// Consumes wrapper bytes; returns how many.
    fn header_byte(&mut self, input: &[u8]) -> Result<usize, Stop> {
        let Some(&b) = input.first() else {
            return Ok(0);
        };
        self.header = match self.header {
            Header::GzipFixed { have, flags } => {
                let ok = match have {
                    0 => b == 0x1f,
                    1 => b == 0x8b,
                    2 => b == 8, // CM = deflate
                    _ => true,
                };
                if !ok && self.members > 0 {
                    // Not another member: trailing bytes, ignored.
                    self.header = Header::Ended;
                    return Ok(input.len());
                }
                if !ok {
                    return Err(Stop::Error);
                }
                let flags = if have == 3 { b } else { flags };
                if have < 9 {
                    Header::GzipFixed {
                        have: have + 1,
                        flags,
                    }
                } else {
                    gzip_after(flags, GZIP_FEXTRA)
                }
            }
            Header::GzipExtraLen { have, len, flags } => {
                let len = len | (u16::from(b) << (8 * have));
                if have == 0 {
                    Header::GzipExtraLen {
                        have: 1,
                        len,
                        flags,
                    }
                } else if len == 0 {
                    gzip_after(flags, GZIP_FNAME)
                } else {
                    Header::GzipExtra {
                        remaining: len,
                        flags,
                    }
                }
            }
            Header::GzipExtra { remaining, flags } => {
                // Skip as much of the extra field as this slice holds.
                let n = input.len().min(usize::from(remaining));
                let remaining = remaining - n as u16;
                self.header = if remaining == 0 {
                    gzip_after(flags, GZIP_FNAME)
                } else {
                    Header::GzipExtra { remaining, flags }
                };
                return Ok(n);
            }
            Header::GzipName { flags } => {
                return Ok(match memchr::memchr(0, input) {
                    Some(end) => {
                        self.header = gzip_after(flags, GZIP_FCOMMENT);
                        end + 1
                    }
                    None => input.len(),
                });
            }
            Header::GzipComment { flags } => {
                return Ok(match memchr::memchr(0, input) {
                    Some(end) => {
                        self.header = gzip_after(flags, GZIP_FHCRC);
                        end + 1
                    }
                    None => input.len(),
                });
            }
            Header::GzipHeaderCrc { have } => {
                if have == 0 {
                    Header::GzipHeaderCrc { have: 1 }
                } else {
                    Header::Body
                }
            }
            Header::GzipTrailer { have } => {
                let n = input.len().min(usize::from(8 - have));
                self.header = if usize::from(have) + n == 8 {
                    Header::GzipMember
                } else {
                    Header::GzipTrailer {
                        have: have + n as u8,
                    }
                };
                return Ok(n);
            }
            Header::GzipMember => {
                if b != 0x1f {
                    self.header = Header::Ended;
                    return Ok(input.len());
                }
                Header::GzipFixed { have: 1, flags: 0 }
            }
            Header::DeflateStart { first: None } => Header::DeflateStart { first: Some(b) },
            Header::DeflateStart { first: Some(a) } => {
                // zlib: CM = 8, the 16-bit header a multiple of 31, no preset dictionary.
                let zlib = a & 0x0f == 8 && (u16::from(a) * 256 + u16::from(b)) % 31 == 0;
                if zlib {
                    if b & 0x20 != 0 {
                        return Err(Stop::Error);
                    }
                    Header::Body
                } else {
                    // Raw deflate: the two bytes are data; replay them.
                    self.header = Header::Body;
                    self.inflate(&[a])?;
                    return Ok(0);
                }
            }
            Header::Body | Header::Ended => return Ok(0),
        };
        Ok(1)
    }

    /// Inflates what is held back. Done when the body ends, and before the
    /// body is cut short (a gap), so the bytes before it are kept.
    pub fn flush(&mut self) -> Result<(), Stop> {
        self.defer = false;
        if self.deferred.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.deferred);
        if self.inflate_whole(&held) {
            return Ok(());
        }
        self.write(&held)
    }

    fn hold(&mut self, input: &[u8]) -> Result<(), Stop> {
        let needed = self.deferred.len().saturating_add(input.len());
        if needed > DEFER_MAX_BYTES {
            self.flush()?;
            return self.write(input);
        }
        // Doubling, but never past the cap.
        if needed > self.deferred.capacity() {
            let target = needed.saturating_mul(2).min(DEFER_MAX_BYTES);
            self.deferred.reserve_exact(target - self.deferred.len());
        }
        self.deferred.extend_from_slice(input);
        Ok(())
    }

    /// One call over the whole deflate stream into a buffer of the size the
    /// gzip trailer announces. False, with nothing changed, unless that gave
    /// exactly the announced bytes, all of which fit under `keep` and `limit`.
    /// Only for a single member kept here: the trailer read is the last
    /// member's, and one call stops at the first member's end. A second
    /// member starts with the bytes `1f 8b 08`; a body without them has
    /// one (the search is over at most `DEFER_MAX_BYTES` compressed bytes:
    /// under 1 % of inflating them, measured on 0.5 to 60 KB JSON bodies;
    /// a chance match in the deflate data only sends the body to the
    /// streaming path, which gives the same).
    fn inflate_whole(&mut self, held: &[u8]) -> bool {
        let Some(size) = announced_size(held) else {
            return false;
        };
        if self.next.is_some()
            || self.members > 0
            || !self.data.is_empty()
            || size > self.keep
            || size as u64 > self.limit
            || MEMBER_START.find(held).is_some()
        {
            return false;
        }
        self.data.resize(size, 0);
        let inflated = WHOLE.with(|d| d.borrow_mut().deflate_decompress(held, &mut self.data));
        if inflated.is_ok_and(|n| n == size) {
            self.decoded = size as u64;
            // Where the streamed path is after a member and its trailer.
            self.members = 1;
            self.header = Header::GzipMember;
            return true;
        }
        self.data.clear();
        false
    }

    /// Inflates from `input` until it is used up or the deflate stream
    /// ends; returns the bytes used.
    fn inflate(&mut self, input: &[u8]) -> Result<usize, Stop> {
        SCRATCH.with(|buffers| {
            let Some(cell) = buffers.get(usize::from(self.depth)) else {
                return Err(Stop::Error);
            };
            let mut scratch = cell.borrow_mut();
            if scratch.len() != SCRATCH_BYTES {
                scratch.resize(SCRATCH_BYTES, 0);
            }
            self.inflate_into(input, &mut scratch)
        })
    }

    fn inflate_into(&mut self, whole: &[u8], scratch: &mut [u8]) -> Result<usize, Stop> {
        let mut input = whole;
        let inflater = self.inflater.get_or_insert_with(take_inflater);
        loop {
            let in_before = inflater.total_in();
            let out_before = inflater.total_out();
            // On a corrupt stream the bytes inflated before the error are
            // still taken: what is kept must not depend on how the body was
            // cut into reads (one call may reach the error that several
            // smaller calls reach only after producing output).
            let result = inflater.decompress(input, scratch, FlushDecompress::None);
            let used = (inflater.total_in() - in_before) as usize;
            let produced = (inflater.total_out() - out_before) as usize;
            input = input.get(used..).unwrap_or_default();
            let out = scratch.get(..produced).unwrap_or_default();
            let room = self.limit.saturating_sub(self.decoded);
            let counted = (produced as u64).min(room);
            // Only counted bytes are kept or passed on: nothing past the
            // limit, so the kept data never exceeds `decoded`.
            let counted_out = out.get(..counted as usize).unwrap_or_default();
            self.decoded += counted;
            match self.next.as_deref_mut() {
                Some(next) => next.write(counted_out)?,
                None => {
                    let keep_room = self.keep.saturating_sub(self.data.len());
                    let keep_now = keep_room.min(counted_out.len());
                    self.data
                        .extend_from_slice(counted_out.get(..keep_now).unwrap_or_default());
                }
            }
            if counted < produced as u64 {
                return Err(Stop::Limit);
            }
            let status = result.map_err(|_| Stop::Error)?;
            match status {
                Status::StreamEnd => {
                    self.header = if self.gzip {
                        self.members = self.members.saturating_add(1);
                        inflater.reset(false);
                        Header::GzipTrailer { have: 0 }
                    } else {
                        Header::Ended
                    };
                    return Ok(whole.len() - input.len());
                }
                // Output space ran out: more may be pending even without input.
                _ if produced == scratch.len() => continue,
                _ if input.is_empty() => return Ok(whole.len()),
                // No progress on non-empty input: corrupt stream.
                _ if used == 0 && produced == 0 => return Err(Stop::Error),
                _ => {}
            }
        }
    }
}

/// The uncompressed size a gzip trailer (ISIZE, the last four bytes)
/// announces: a hint, never trusted beyond sizing a buffer.
fn announced_size(held: &[u8]) -> Option<usize> {
    let trailer = held.len().checked_sub(4).and_then(|at| held.get(at..))?;
    let isize: [u8; 4] = trailer.try_into().ok()?;
    Some(u32::from_le_bytes(isize) as usize)
}

/// The gzip header state after the part that `done` names.
fn gzip_after(flags: u8, done: u8) -> Header {
    let mut next = done;
    loop {
        match next {
            GZIP_FEXTRA if flags & GZIP_FEXTRA != 0 => {
                return Header::GzipExtraLen {
                    have: 0,
                    len: 0,
                    flags,
                }
            }
            GZIP_FEXTRA => next = GZIP_FNAME,
            GZIP_FNAME if flags & GZIP_FNAME != 0 => return Header::GzipName { flags },
            GZIP_FNAME => next = GZIP_FCOMMENT,
            GZIP_FCOMMENT if flags & GZIP_FCOMMENT != 0 => return Header::GzipComment { flags },
            GZIP_FCOMMENT => next = GZIP_FHCRC,
            GZIP_FHCRC if flags & GZIP_FHCRC != 0 => return Header::GzipHeaderCrc { have: 0 },
            _ => return Header::Body,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::{Compression, GzBuilder};
    use std::io::Write;

    fn decode_in_pieces(w: Wrapping, wire: &[u8], piece: usize) -> (Result<(), Stop>, Vec<u8>) {
        let mut d = ContentDecoder::new(w, 1 << 20, 1 << 20);
        for part in wire.chunks(piece) {
            if let Err(e) = d.write(part) {
                return (Err(e), d.data.clone());
            }
        }
        (d.finish(), d.data.clone())
    }

    #[test]
    fn gzip_with_every_optional_header_field_any_split() {
        let plain: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8 + b'a').collect();
        let mut g = GzBuilder::new()
            .filename("name.txt")
            .comment("a comment")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::default());
        g.write_all(&plain).unwrap();
        let wire = g.finish().unwrap();
        for piece in [1, 2, 3, 7, 100, wire.len()] {
            let (r, data) = decode_in_pieces(Wrapping::Gzip, &wire, piece);
            assert_eq!(r, Ok(()), "piece {piece}");
            assert_eq!(data, plain, "piece {piece}");
        }
    }

    /// Several members, the second with every optional header field, cut
    /// anywhere, held or streamed: the output is all members joined.
    #[test]
    fn multi_member_gzip_any_split() {
        let first: Vec<u8> = (0..3000u32).map(|i| (i % 11) as u8 + b'a').collect();
        let second = b"and the second member".repeat(50);
        let mut wire = gzip(&first);
        let mut g = GzBuilder::new()
            .filename("two.txt")
            .comment("c")
            .extra(vec![9; 5])
            .write(Vec::new(), Compression::default());
        g.write_all(&second).unwrap();
        wire.extend_from_slice(&g.finish().unwrap());
        wire.extend_from_slice(&gzip(b"")); // an empty third member
        let joined = [first, second].concat();
        for piece in [1, 3, 8, 9, 64, wire.len()] {
            let (r, data) = decode_in_pieces(Wrapping::Gzip, &wire, piece);
            assert_eq!(r, Ok(()), "piece {piece}");
            assert_eq!(data, joined, "piece {piece}");
        }
        for hold in [true, false] {
            let (r, data, decoded) = decode(&wire, hold, 1 << 20, 1 << 20);
            assert_eq!((r, data.len() as u64), (Ok(()), decoded));
            assert_eq!(data, joined, "hold {hold}");
        }
    }

    /// Each stage of a chain decodes what the one before gave it.
    #[test]
    fn chain_undoes_the_last_coding_first_any_split() {
        let plain = b"stacked codings hide a body ".repeat(40);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&gzip(&plain)).unwrap();
        let wire = z.finish().unwrap(); // gzip applied first, then deflate
        for piece in [1, 5, 100, wire.len()] {
            let mut d =
                ContentDecoder::chain(&[Wrapping::Gzip, Wrapping::Deflate], 1 << 20, 1 << 20)
                    .unwrap();
            for part in wire.chunks(piece) {
                d.write(part).unwrap();
            }
            assert_eq!(d.finish(), Ok(()), "piece {piece}");
            assert_eq!(d.decoded(), plain.len() as u64);
            assert_eq!(d.take_data(), plain, "piece {piece}");
        }
        assert!(ContentDecoder::chain(&[Wrapping::Gzip; MAX_STAGES + 1], 10, 10).is_none());
        assert!(ContentDecoder::chain(&[], 10, 10).is_none());
    }

    #[test]
    fn zlib_and_raw_deflate_are_told_apart() {
        let plain = b"the same text, the same text, the same text";
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(plain).unwrap();
        let mut r = DeflateEncoder::new(Vec::new(), Compression::default());
        r.write_all(plain).unwrap();
        for (wire, name) in [(z.finish().unwrap(), "zlib"), (r.finish().unwrap(), "raw")] {
            for piece in [1, 5, 1000] {
                let (res, data) = decode_in_pieces(Wrapping::Deflate, &wire, piece);
                assert_eq!(res, Ok(()), "{name} {piece}");
                assert_eq!(data, plain, "{name} {piece}");
            }
        }
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors() {
        let mut g = GzEncoder::new(Vec::new(), Compression::default());
        g.write_all(&[7u8; 3000]).unwrap();
        let wire = g.finish().unwrap();
        let (r, _) = decode_in_pieces(Wrapping::Gzip, &wire[..wire.len() / 2], 64);
        assert_eq!(r, Err(Stop::Error));
        let (r, _) = decode_in_pieces(Wrapping::Gzip, b"not gzip", 3);
        assert_eq!(r, Err(Stop::Error));
        let mut bad = wire.clone();
        bad[12] ^= 0xff;
        bad[13] ^= 0xff;
        assert!(decode_in_pieces(Wrapping::Gzip, &bad, 64).0.is_err());
    }

    /// fuzz/regressions/http1-kept-more-than-decoded.bin: with a limit below
    /// the keep cap, the bytes past the limit were kept anyway (kept 12 of 3).
    #[test]
    fn nothing_past_the_limit_is_kept() {
        let mut r = DeflateEncoder::new(Vec::new(), Compression::default());
        r.write_all(b"twelve bytes and then some more").unwrap();
        let wire = r.finish().unwrap();
        for limit in [0u64, 3, 12] {
            let mut d = ContentDecoder::new(Wrapping::Deflate, 4096, limit);
            assert_eq!(d.write(&wire), Err(Stop::Limit), "limit {limit}");
            assert_eq!(d.decoded, limit);
            assert_eq!(d.data.len() as u64, limit, "kept past the limit {limit}");
        }
    }

    /// fuzz/regressions/http1_stream-corrupt-gzip-output-depends-on-split.bin:
    /// a corrupt deflate stream gave two decoded bytes when fed in 7-byte
    /// pieces and none in one piece (the output of the failing call was
    /// dropped). Bytes inflated before the error are now kept either way.
    #[test]
    fn corrupt_stream_keeps_the_same_bytes_however_it_is_cut() {
        let wire = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x03, 0xe3, 0x6c, 0x24, 0x52,
            0x82,
        ];
        let (whole_res, whole) = decode_in_pieces(Wrapping::Gzip, &wire, wire.len());
        assert_eq!(whole, [9, 129], "the bytes before the error");
        for piece in 1..wire.len() {
            let (res, data) = decode_in_pieces(Wrapping::Gzip, &wire, piece);
            assert_eq!(data, whole, "piece {piece}");
            assert_eq!(res.is_err(), whole_res.is_err(), "piece {piece}");
        }
    }

    #[test]
    fn bomb_stops_at_limit_and_pool_is_reused() {
        let mut g = GzEncoder::new(Vec::new(), Compression::best());
        g.write_all(&vec![0u8; 5_000_000]).unwrap();
        let wire = g.finish().unwrap();
        for _ in 0..3 {
            let mut d = ContentDecoder::new(Wrapping::Gzip, 100, 50_000);
            // Held back (small on the wire), so the limit shows at the end.
            assert_eq!(d.write(&wire).and_then(|()| d.finish()), Err(Stop::Limit));
            assert_eq!(d.decoded, 50_000);
            assert_eq!(d.data.len(), 100);
        }
        assert!(POOL.with(|p| p.borrow().len()) >= 1);
    }

    fn gzip(plain: &[u8]) -> Vec<u8> {
        let mut g = GzEncoder::new(Vec::new(), Compression::fast());
        g.write_all(plain).unwrap();
        g.finish().unwrap()
    }

    /// A gzip body decoded whole: held for the one-shot path, or streamed
    /// (zlib) from the first byte.
    fn decode(
        wire: &[u8],
        hold: bool,
        keep: usize,
        limit: u64,
    ) -> (Result<(), Stop>, Vec<u8>, u64) {
        let mut d = ContentDecoder::new(Wrapping::Gzip, keep, limit);
        d.defer = hold;
        let r = d.write(wire).and_then(|()| d.finish());
        (r, std::mem::take(&mut d.data), d.decoded)
    }

    #[test]
    fn held_body_decodes_as_streamed_whatever_the_trailer_says() {
        let plain: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let wire = gzip(&plain);
        let n = wire.len();
        let mut lying_small = wire.clone();
        lying_small[n - 4..].copy_from_slice(&100u32.to_le_bytes());
        let mut lying_large = wire.clone();
        lying_large[n - 4..].copy_from_slice(&30_000u32.to_le_bytes());
        let mut corrupt = wire.clone();
        corrupt[n / 2] ^= 0x55;
        for (name, wire) in [
            ("true", &wire),
            ("small", &lying_small),
            ("large", &lying_large),
            ("corrupt", &corrupt),
            ("cut", &wire[..n / 2].to_vec()),
        ] {
            for (keep, limit) in [(1 << 20, 1 << 20), (5_000, 1 << 20), (1 << 20, 7_000)] {
                assert_eq!(
                    decode(wire, true, keep, limit),
                    decode(wire, false, keep, limit),
                    "{name} keep {keep} limit {limit}"
                );
            }
        }
        assert_eq!(
            decode(&wire, true, 1 << 20, 1 << 20),
            (Ok(()), plain, 20_000)
        );
        let mut d = ContentDecoder::new(Wrapping::Gzip, 1 << 20, 1 << 20);
        d.write(&wire).and_then(|()| d.finish()).unwrap();
        assert!(
            d.inflater.is_none(),
            "a true trailer is inflated in one call"
        );
    }

    #[test]
    fn body_past_the_hold_cap_is_streamed_from_where_it_was() {
        // Incompressible, so the compressed body passes DEFER_MAX_BYTES.
        let mut plain = vec![0u8; 3 * DEFER_MAX_BYTES];
        blake3::Hasher::new().finalize_xof().fill(&mut plain);
        let wire = gzip(&plain);
        assert!(wire.len() > DEFER_MAX_BYTES);
        for piece in [1448, 20_000] {
            let (r, data) = decode_in_pieces(Wrapping::Gzip, &wire, piece);
            assert_eq!(r, Ok(()), "piece {piece}");
            assert_eq!(data, plain, "piece {piece}");
        }
    }

    /// A gap ends a held body early: what arrived before it is decoded.
    #[test]
    fn flush_decodes_what_was_held_before_a_cut() {
        let plain = vec![b'a'; 50_000];
        let wire = gzip(&plain);
        let mut d = ContentDecoder::new(Wrapping::Gzip, 1 << 20, 1 << 20);
        d.write(&wire[..wire.len() - 20]).unwrap();
        assert!(d.data.is_empty());
        assert_eq!(d.flush(), Ok(()));
        assert!(!d.data.is_empty() && d.data.iter().all(|&b| b == b'a'));
        assert_eq!(d.finish(), Err(Stop::Error), "the stream did not end");
    }
}
