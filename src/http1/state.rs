//! `HttpConnection`: the per-connection state machine. Each direction is in
//! one phase (looking for a message start, resynchronising, in a body, or
//! tunnelled); requests wait in a bounded queue for their responses, and an
//! exchange is emitted when the oldest request and its response are both
//! complete, so exchanges leave in request order even when the server
//! answers before the upload ends.
//!
//! Idle cost: two small direction records and an empty `VecDeque`; the head
//! buffer of a direction is only allocated while a head is split across
//! calls and freed as soon as it is parsed. A head that arrives whole is
//! parsed straight from the caller's slice.
//!
//! Gaps and pairing: a gap inside a body of known remaining length (or a
//! close-delimited body) is accounted and parsing stays in sync. Any other gap
//! cuts the message in progress (flagged `gap` + `truncated`) and the
//! direction resynchronises on the next plausible start line. When a gap
//! starts at a message boundary, at least the start of one message was lost:
//! on the server side the oldest unanswered request is taken to have been
//! answered by that lost response (emitted unanswered, with `gap`), so the
//! responses after the gap pair with the requests they answer; on the client
//! side a stand-in request is queued so the lost request's response pairs
//! with it (emitted with `request: None` and `gap`). A gap that cuts a
//! chunked body may also have taken the next message's start: it did when
//! the bytes the resync skips hold no last chunk (`ChunkEndWatch`). This
//! assumes one message per lost region, which is exact for the common
//! single lost segment.
//!
//! A versionless request line waits for the next line: a header field makes
//! it a versionless HTTP/1.x request (`missing_version`), anything else (or
//! the reply starting, the direction ending) an HTTP/0.9 one. After
//! ambiguous framing in one direction, the next message in it is flagged
//! `after_ambiguous_framing`.
//!
//! Byte ledger: each byte given to `on_data` is counted once, in one
//! `HttpStats` bucket (head, body, tunnel, between messages, resync, garbage,
//! truncated head, stalled) when its fate is known; until then it waits in a
//! head buffer. Bytes parsed again from a buffer go through `feed`, not
//! `on_data`, so they are not counted in twice.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use super::body::{advance, BodyState, Chunk, Framing, Step};
use super::parser::{
    find_head_end, first_line, head_scan_resume, is_tchar, may_start_request, may_start_status,
    parse_header_block, parse_request_line, parse_status_line, parse_strict_block, percent_decode,
    scan_request_start, scan_status_start, split_target_at, HeadInfo, RequestLine, Scan,
    StatusLine, StrictBlock,
};
use super::{Annot, ConnInfo, HttpContext};
use crate::config::HttpSettings;
use crate::exchange::{
    Anomaly, Body, Direction, Exchange, ExchangeFlags, Headers, HttpVersion, Request, Response,
    Text, Timestamp,
};
use std::collections::VecDeque;

/// Bytes of an incomplete line kept while resynchronising on requests.
const RESYNC_KEEP: usize = 8192;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Expecting a message start.
    #[default]
    Start,
    /// Skipping bytes until a plausible message start.
    Resync,
    Body(Framing),
    /// Opaque bytes after CONNECT or Upgrade.
    Tunnel,
}

/// One direction of the connection.
#[derive(Debug, Default)]
struct Dir {
    phase: Phase,
    /// Partial head (or partial line while resynchronising); empty and
    /// unallocated otherwise.
    buf: Vec<u8>,
    /// Where the head-end search resumes in `buf`.
    scan_from: usize,
    /// Time of the first byte of the message being accumulated.
    msg_ts: Timestamp,
    /// Flags and anomalies for the next message of this direction.
    carry: Annot,
    body: BodyState,
    fin: bool,
    /// The current resync began at bytes that were not a message start
    /// (rather than at a gap or an error): what it skips is garbage.
    garbage: bool,
    /// The current resync began at a gap that cut a chunked body.
    cut: Option<ChunkEndWatch>,
    /// (Responses) a gap took a response's start, and the next start found
    /// has not been paired yet: how many whole responses the gap took with
    /// it is unknown (see `pair_after_lost_start`).
    lost_start: bool,
}

/// After a gap cut a chunked body (whose end it may have taken, and the
/// next message's start with it), what the resynchronisation skips tells
/// whether the body ended in sight: a last-chunk line (`0`, maybe with
/// extensions) among the skipped bytes says it did, so the start found
/// next is the next message's. Skipped bytes without one (blank lines
/// aside) are the rest of a message whose start the gap took. Fed byte by
/// byte, so it does not matter how the bytes were cut into reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChunkEndWatch {
    line: ChunkLine,
    end_seen: bool,
    /// Bytes other than blanks and line ends were skipped.
    skipped: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkLine {
    /// At the start of a line (or of the bytes after the gap).
    #[default]
    Start,
    /// `0`s so far.
    Zeros,
    /// After `0`s: an extension, blanks or a CR.
    Ext,
    Other,
}

impl ChunkEndWatch {
    fn skip(&mut self, bytes: &[u8]) {
        if self.end_seen {
            return;
        }
        for &b in bytes {
            self.skipped |= !matches!(b, b'\r' | b'\n' | b' ' | b'\t');
            self.line = match (self.line, b) {
                (ChunkLine::Zeros | ChunkLine::Ext, b'\n') => {
                    self.end_seen = true;
                    return;
                }
                (_, b'\n') => ChunkLine::Start,
                (ChunkLine::Start | ChunkLine::Zeros, b'0') => ChunkLine::Zeros,
                (ChunkLine::Zeros, b'\r' | b';' | b' ' | b'\t') | (ChunkLine::Ext, _) => {
                    ChunkLine::Ext
                }
                _ => ChunkLine::Other,
            };
        }
    }

    /// Whether a message start was lost between the cut body and the next start.
    fn start_lost(&self) -> bool {
        self.skipped && !self.end_seen
    }
}

impl Dir {
    fn heap_bytes(&self) -> usize {
        self.buf.capacity().saturating_add(self.body.heap_bytes())
    }

    fn clear_buf(&mut self) {
        self.buf = Vec::new();
        self.scan_from = 0;
    }
}

/// A response being received, or received and waiting for its request to end.
#[derive(Debug)]
struct RespCur {
    resp: Response,
    annot: Annot,
    /// A request was waiting when the status line arrived.
    paired: bool,
    tunnel: bool,
}

impl RespCur {
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>().saturating_add(self.resp.heap_bytes())
    }
}

/// A request in the queue.
#[derive(Debug)]
struct Pending {
    /// The exchange this request starts, boxed now and filled in place (see
    /// [`Exchanges`]). Its request is `None` when it was lost in a gap, kept
    /// so its response pairs with it.
    exchange: Box<Exchange>,
    annot: Annot,
    /// The whole request (head and body) has arrived.
    done: bool,
    head: bool,
    connect: bool,
    http09: bool,
    resp: Option<Box<RespCur>>,
    /// Its response was lost in a gap.
    resp_lost: bool,
}

impl Pending {
    fn heap_bytes(&self) -> usize {
        let resp = self.resp.as_ref().map_or(0, |r| r.heap_bytes());
        std::mem::size_of::<Exchange>()
            .saturating_add(self.exchange.heap_bytes())
            .saturating_add(resp)
    }

    fn has_request(&self) -> bool {
        self.exchange.request.is_some()
    }

    fn answered(&self) -> bool {
        self.resp.is_some() || self.resp_lost
    }
}

/// The start line of a complete head, parsed once by `scan`, with the
/// length of that line including its LF.
#[derive(Clone, Copy)]
enum StartLine<'a> {
    Request(RequestLine<'a>, usize),
    Status(StatusLine<'a>, usize),
}

/// What the start of a direction's bytes holds.
enum HeadStep<'a> {
    /// Need more bytes; the first `drop` bytes can be discarded.
    NeedMore { drop: usize },
    /// Skip `n` bytes (line ends between messages, or resync skipping).
    Skip { n: usize, counted: bool },
    /// Not a message start: resynchronise (flagged as garbage).
    Garbage,
    /// A complete head of this many bytes, its start line, and its header
    /// block if httparse already parsed it.
    Head(usize, StartLine<'a>, Option<StrictBlock>),
    /// The server sends no status line: an HTTP/0.9 response starts here.
    Http09Response,
}

/// HTTP/1.x state of one TCP connection.
#[derive(Debug)]
pub struct HttpConnection {
    info: ConnInfo,
    to_server: Dir,
    to_client: Dir,
    pending: VecDeque<Pending>,
    resp: Option<Box<RespCur>>,
    /// Responses lost in a gap while no request was waiting: the request
    /// they answered was lost too, and its gap cancels one of these.
    lost_responses: u8,
    /// The last message in this direction (by `Direction::index`) had
    /// ambiguous framing: the next one is flagged `after_ambiguous_framing`
    /// (its exchange, then, whichever side it is).
    ambiguous_framing: [bool; 2],
}

/// Framing anomalies after which the two ends of a connection may disagree
/// on where the next message starts.
const AMBIGUOUS_FRAMING: u32 = Annot::mask(&[
    Anomaly::ConflictingContentLength,
    Anomaly::InvalidContentLength,
    Anomaly::TransferEncodingWithContentLength,
]);

/// Whether `rest` starts with a header field (`name:`, blanks allowed
/// before the colon); `None` until enough of it has arrived to tell.
fn starts_with_field(rest: &[u8]) -> Option<bool> {
    let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
    let blanks = rest
        .get(name..)?
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match rest.get(name.saturating_add(blanks)) {
        None => None,
        Some(b':') => Some(name > 0),
        Some(_) => Some(false),
    }
}

/// Flags of a status line that is not clean.
fn status_line_anomalies(sl: &StatusLine<'_>, annot: &mut Annot) {
    if sl.nonstandard {
        annot.anomaly(Anomaly::NonStandardVersion);
    }
    if sl.invalid {
        annot.anomaly(Anomaly::InvalidStatusLine);
        annot.parse_error = true;
    }
}

fn target<'a>(
    dir: Direction,
    pending: &'a mut VecDeque<Pending>,
    resp: &'a mut Option<Box<RespCur>>,
) -> Option<(&'a mut Body, &'a mut Annot, &'a mut Timestamp)> {
    match dir {
        Direction::ToServer => {
            let p = pending.back_mut().filter(|p| !p.done)?;
            let r = p.exchange.request.as_mut()?;
            Some((&mut r.body, &mut p.annot, &mut r.end_ts))
        }
        Direction::ToClient => {
            let r = resp.as_mut()?;
            Some((&mut r.resp.body, &mut r.annot, &mut r.resp.end_ts))
        }
    }
}

fn lossy(b: &[u8]) -> Text {
    crate::exchange::text_lossy(b)
}

impl HttpConnection {
    pub fn new(info: ConnInfo) -> Self {
        HttpConnection {
            info,
            to_server: Dir::default(),
            to_client: Dir::default(),
            pending: VecDeque::new(),
            resp: None,
            lost_responses: 0,
            ambiguous_framing: [false; 2],
        }
    }

    /// Flags a message that follows ambiguous framing, and remembers when
    /// this one's framing is ambiguous (once its own flags are known).
    fn note_framing(&mut self, dir: Direction, annot: &mut Annot) {
        let Some(seen) = self.ambiguous_framing.get_mut(dir.index()) else {
            return;
        };
        // The message right after is the one the two ends may read
        // differently (the smuggled one); one ambiguous itself is flagged
        // for that already. Flagging every later message too would turn
        // one attempt into an event per request of a long connection.
        let ambiguous = annot.has_any(AMBIGUOUS_FRAMING);
        if *seen && !ambiguous {
            annot.anomaly(Anomaly::AfterAmbiguousFraming);
        }
        *seen = ambiguous;
    }

    /// Heap bytes this connection holds: partial heads, decoders, queued
    /// requests with their bodies and early responses, the response being
    /// received. O(queued requests), at most `max_pending_requests`; the
    /// flow table charges it to the memory budget after every segment.
    pub fn heap_bytes(&self) -> usize {
        let queued = self
            .pending
            .iter()
            .fold(0usize, |sum, p| sum.saturating_add(p.heap_bytes()));
        let resp = self.resp.as_ref().map_or(0, |r| r.heap_bytes());
        (self.pending.capacity() * std::mem::size_of::<Pending>())
            .saturating_add(queued)
            .saturating_add(resp)
            .saturating_add(self.to_server.heap_bytes())
            .saturating_add(self.to_client.heap_bytes())
    }

    fn dir_mut(&mut self, dir: Direction) -> &mut Dir {
        match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }

    fn first_unanswered(&self) -> Option<usize> {
        self.pending.iter().position(|p| !p.answered())
    }

    /// A new exchange of this connection; `emit` completes it.
    fn new_exchange(&self, request: Option<Request>) -> Box<Exchange> {
        Box::new(Exchange {
            flow_id: self.info.flow_id,
            client: self.info.client,
            server: self.info.server,
            request,
            response: None,
            tunnel: false,
            flags: ExchangeFlags::default(),
            anomalies: Vec::new(),
        })
    }

    /// Next in-order bytes of one direction.
    pub fn on_data(
        &mut self,
        ctx: &mut HttpContext<'_>,
        dir: Direction,
        ts: Timestamp,
        data: &[u8],
    ) {
        ctx.stats.bytes_in = ctx.stats.bytes_in.saturating_add(data.len() as u64);
        self.feed(ctx, dir, ts, data);
    }

    /// Parses bytes of one direction; each byte ends in one `HttpStats`
    /// bucket (or waits in the head buffer). Buffered bytes parsed again
    /// come back through here, not through `on_data`.
    fn feed(&mut self, ctx: &mut HttpContext<'_>, dir: Direction, ts: Timestamp, data: &[u8]) {
        let mut data = data;
        let mut stalls = 0u32;
        while !data.is_empty() {
            let n = self.step(ctx, dir, ts, data);
            if n == 0 {
                // A phase change without consuming; never more than a few in a row.
                stalls = stalls.saturating_add(1);
                if stalls > 8 {
                    ctx.stats.stall_bytes_dropped = ctx
                        .stats
                        .stall_bytes_dropped
                        .saturating_add(data.len() as u64);
                    break;
                }
            } else {
                stalls = 0;
            }
            data = data.get(n..).unwrap_or_default();
        }
    }

    fn step(
        &mut self,
        ctx: &mut HttpContext<'_>,
        dir: Direction,
        ts: Timestamp,
        data: &[u8],
    ) -> usize {
        match self.dir_mut(dir).phase {
            Phase::Tunnel => {
                ctx.stats.tunnel_bytes = ctx.stats.tunnel_bytes.saturating_add(data.len() as u64);
                data.len()
            }
            Phase::Body(framing) => self.body_step(ctx, dir, ts, data, framing),
            Phase::Start | Phase::Resync => self.head_step(ctx, dir, ts, data),
        }
    }

    fn body_step(
        &mut self,
        ctx: &mut HttpContext<'_>,
        dir: Direction,
        ts: Timestamp,
        data: &[u8],
        mut framing: Framing,
    ) -> usize {
        let HttpConnection {
            to_server,
            to_client,
            pending,
            resp,
            ..
        } = self;
        let d = match dir {
            Direction::ToServer => to_server,
            Direction::ToClient => to_client,
        };
        let (mut dummy_body, mut dummy_annot, mut dummy_ts) =
            (Body::default(), Annot::default(), Timestamp::default());
        let (body, annot, end_ts) = target(dir, pending, resp).unwrap_or((
            &mut dummy_body,
            &mut dummy_annot,
            &mut dummy_ts,
        ));
        let s = ctx.settings;
        let stats = &mut *ctx.stats;
        let bstate = &mut d.body;
        let step = advance(&mut framing, data, |chunk| {
            bstate.write(body, chunk, s, stats, annot)
        });
        *end_ts = ts;
        let (Step::More(n) | Step::Done(n) | Step::Invalid(n)) = step;
        ctx.stats.body_bytes = ctx.stats.body_bytes.saturating_add(n as u64);
        match step {
            Step::More(n) => {
                d.phase = Phase::Body(framing);
                n
            }
            Step::Done(n) => {
                d.phase = Phase::Start;
                self.complete(ctx, dir, true);
                n
            }
            Step::Invalid(n) => {
                annot.anomaly(Anomaly::InvalidChunkSize);
                annot.parse_error = true;
                annot.truncated = true;
                d.phase = Phase::Resync;
                d.garbage = false;
                self.complete(ctx, dir, false);
                n
            }
        }
    }

    /// Classifies the bytes at the start of `v` for a direction in Start or Resync.
    fn scan<'a>(
        &self,
        dir: Direction,
        v: &'a [u8],
        resync: bool,
        scan_from: usize,
        s: &HttpSettings,
    ) -> HeadStep<'a> {
        if resync {
            let sc = match dir {
                Direction::ToServer => scan_request_start(v, RESYNC_KEEP),
                Direction::ToClient => scan_status_start(v),
            };
            match sc {
                Scan::Found(0) => {}
                Scan::Found(n) => return HeadStep::Skip { n, counted: true },
                Scan::Keep(k) => return HeadStep::NeedMore { drop: k },
            }
        } else {
            let lead = v
                .iter()
                .take_while(|&&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
                .count();
            if lead > 0 {
                return HeadStep::Skip {
                    n: lead,
                    counted: false,
                };
            }
        }
        let garbage = if resync {
            // A verified start that does not parse: step over it.
            HeadStep::Skip {
                n: 1,
                counted: true,
            }
        } else {
            HeadStep::Garbage
        };
        match dir {
            Direction::ToServer => {
                if !may_start_request(v) {
                    return garbage;
                }
                let Some((line, ll)) = first_line(v) else {
                    return HeadStep::NeedMore { drop: 0 };
                };
                match parse_request_line(line) {
                    None => garbage,
                    // Without a version the next line decides: a header
                    // field (a versionless HTTP/1.x request) or anything
                    // else (an HTTP/0.9 line). Until it shows, the line
                    // waits; the server's reply or the end of the direction
                    // settles it as 0.9 (`settle_versionless_request`).
                    Some(rl) if rl.version == HttpVersion::Http09 => {
                        match starts_with_field(v.get(ll..).unwrap_or_default()) {
                            Some(true) => head_end(v, StartLine::Request(rl, ll), ll, scan_from, s),
                            Some(false) => HeadStep::Head(ll, StartLine::Request(rl, ll), None),
                            None if self.to_server.fin => {
                                HeadStep::Head(ll, StartLine::Request(rl, ll), None)
                            }
                            None => HeadStep::NeedMore { drop: 0 },
                        }
                    }
                    Some(rl) => head_end(v, StartLine::Request(rl, ll), ll, scan_from, s),
                }
            }
            Direction::ToClient => {
                let idx = self.first_unanswered();
                let waiting = idx.and_then(|i| self.pending.get(i));
                if !resync && waiting.is_some_and(|p| p.http09) {
                    // A versionless request answered with a valid status
                    // line got an HTTP/1.x response (RFC 9112 §2.3, §4).
                    if !may_start_status(v) {
                        return HeadStep::Http09Response;
                    }
                    let Some((line, ll)) = first_line(v) else {
                        if self.to_client.fin {
                            return HeadStep::Http09Response;
                        }
                        return HeadStep::NeedMore { drop: 0 };
                    };
                    return match parse_status_line(line) {
                        Some(sl) if !sl.invalid => {
                            head_end(v, StartLine::Status(sl, ll), ll, scan_from, s)
                        }
                        _ => HeadStep::Http09Response,
                    };
                }
                if !may_start_status(v) {
                    if resync {
                        return garbage;
                    }
                    // Decide on a whole first line (or 512 bytes of one), so
                    // the outcome does not depend on how the bytes were split.
                    if memchr::memchr(b'\n', v).is_none() && v.len() < 512 && !self.to_client.fin {
                        return HeadStep::NeedMore { drop: 0 };
                    }
                    let line_end = memchr::memchr(b'\n', v).unwrap_or(v.len()).min(512);
                    let head = v.get(..line_end).unwrap_or_default();
                    let has_status = matches!(scan_status_start(head), Scan::Found(_));
                    if waiting.is_some() && !has_status {
                        return HeadStep::Http09Response;
                    }
                    return garbage;
                }
                let Some((line, ll)) = first_line(v) else {
                    return HeadStep::NeedMore { drop: 0 };
                };
                let Some(sl) = parse_status_line(line) else {
                    return garbage;
                };
                head_end(v, StartLine::Status(sl, ll), ll, scan_from, s)
            }
        }
    }

    /// `n` bytes skipped while resynchronising: garbage, or after a gap or error.
    fn skipped(ctx: &mut HttpContext<'_>, garbage: bool, n: usize) {
        let counter = if garbage {
            &mut ctx.stats.garbage_bytes_skipped
        } else {
            &mut ctx.stats.resync_bytes_skipped
        };
        *counter = counter.saturating_add(n as u64);
    }

    /// `n` bytes skipped where a message may start: counted resync bytes,
    /// or blanks between messages.
    fn skipped_at_start(ctx: &mut HttpContext<'_>, counted: bool, garbage: bool, n: usize) {
        if counted {
            Self::skipped(ctx, garbage, n);
        } else {
            ctx.stats.bytes_between_messages =
                ctx.stats.bytes_between_messages.saturating_add(n as u64);
        }
    }

    fn head_parsed(ctx: &mut HttpContext<'_>, len: usize) {
        ctx.stats.head_bytes = ctx.stats.head_bytes.saturating_add(len as u64);
    }

    fn head_truncated(ctx: &mut HttpContext<'_>, len: usize) {
        ctx.stats.head_bytes_truncated = ctx.stats.head_bytes_truncated.saturating_add(len as u64);
    }

    fn head_step(
        &mut self,
        ctx: &mut HttpContext<'_>,
        dir: Direction,
        ts: Timestamp,
        data: &[u8],
    ) -> usize {
        let max = ctx.settings.max_header_bytes;
        if dir == Direction::ToClient && !self.to_server.buf.is_empty() {
            self.settle_versionless_request(ctx, true);
        }
        let d = self.dir_mut(dir);
        let garbage = d.garbage;
        if d.buf.is_empty() {
            let resync = d.phase == Phase::Resync;
            match self.scan(dir, data, resync, 0, ctx.settings) {
                HeadStep::Skip { n, counted } => {
                    let n = n.max(1).min(data.len());
                    Self::skipped_at_start(ctx, counted, garbage, n);
                    self.watch_skipped(dir, data.get(..n).unwrap_or_default());
                    n
                }
                HeadStep::Garbage => {
                    let d = self.dir_mut(dir);
                    d.carry.anomaly(Anomaly::GarbageBeforeMessage);
                    d.phase = Phase::Resync;
                    d.garbage = true;
                    0
                }
                HeadStep::Head(len, start, fields) => {
                    self.start_found_after_cut(ctx, dir);
                    self.dir_mut(dir).msg_ts = ts;
                    let head = data.get(..len).unwrap_or_default();
                    if len > max {
                        self.too_large(ctx, dir, ts, head);
                    } else {
                        Self::head_parsed(ctx, head.len());
                        self.on_head(ctx, ts, head, start, fields);
                    }
                    len
                }
                HeadStep::Http09Response => {
                    self.start_09_response(ctx, ts);
                    0
                }
                HeadStep::NeedMore { drop } => {
                    // Only a resync drops bytes here (`drop` is 0 otherwise).
                    let drop = drop.min(data.len());
                    Self::skipped(ctx, garbage, drop);
                    self.watch_skipped(dir, data.get(..drop).unwrap_or_default());
                    let rest = data.get(drop..).unwrap_or_default();
                    if rest.len() > max {
                        self.too_large(ctx, dir, ts, rest);
                    } else {
                        let d = self.dir_mut(dir);
                        d.msg_ts = ts;
                        d.buf.extend_from_slice(rest);
                        d.scan_from = head_scan_resume(rest.len());
                    }
                    data.len()
                }
            }
        } else {
            let room = max.saturating_add(1).saturating_sub(d.buf.len());
            let take = room.min(data.len());
            d.buf
                .extend_from_slice(data.get(..take).unwrap_or_default());
            self.drain_buf(ctx, dir, ts);
            take
        }
    }

    /// Works through the head buffer after bytes were appended.
    fn drain_buf(&mut self, ctx: &mut HttpContext<'_>, dir: Direction, ts: Timestamp) {
        let max = ctx.settings.max_header_bytes;
        for _ in 0..64 {
            let d = self.dir_mut(dir);
            if d.buf.is_empty() {
                d.clear_buf();
                return;
            }
            let resync = d.phase == Phase::Resync;
            let garbage = d.garbage;
            let scan_from = d.scan_from;
            let buf = std::mem::take(&mut d.buf);
            let step = match self.scan(dir, &buf, resync, scan_from, ctx.settings) {
                HeadStep::Head(len, start, fields) => {
                    self.dir_mut(dir).clear_buf();
                    self.start_found_after_cut(ctx, dir);
                    let head = buf.get(..len).unwrap_or_default();
                    if len > max {
                        self.too_large(ctx, dir, ts, head);
                    } else {
                        Self::head_parsed(ctx, head.len());
                        self.on_head(ctx, ts, head, start, fields);
                    }
                    let rest = buf.get(len..).unwrap_or_default();
                    if !rest.is_empty() {
                        self.feed(ctx, dir, ts, rest);
                    }
                    return;
                }
                HeadStep::Http09Response => {
                    self.dir_mut(dir).clear_buf();
                    self.start_09_response(ctx, ts);
                    self.feed(ctx, dir, ts, &buf);
                    return;
                }
                HeadStep::Skip { n, counted } => HeadStep::Skip { n, counted },
                HeadStep::Garbage => HeadStep::Garbage,
                HeadStep::NeedMore { drop } => HeadStep::NeedMore { drop },
            };
            let d = self.dir_mut(dir);
            d.buf = buf;
            match step {
                HeadStep::Head(..) | HeadStep::Http09Response => {}
                HeadStep::Skip { n, counted } => {
                    let n = n.max(1).min(d.buf.len());
                    Self::skipped_at_start(ctx, counted, garbage, n);
                    if let Some(watch) = d.cut.as_mut() {
                        watch.skip(d.buf.get(..n).unwrap_or_default());
                    }
                    d.buf.drain(..n);
                    d.scan_from = 0;
                }
                HeadStep::Garbage => {
                    d.carry.anomaly(Anomaly::GarbageBeforeMessage);
                    d.phase = Phase::Resync;
                    d.garbage = true;
                }
                HeadStep::NeedMore { drop } => {
                    let drop = drop.min(d.buf.len());
                    Self::skipped(ctx, garbage, drop);
                    if let Some(watch) = d.cut.as_mut() {
                        watch.skip(d.buf.get(..drop).unwrap_or_default());
                    }
                    d.buf.drain(..drop);
                    if drop > 0 {
                        d.scan_from = 0;
                    } else {
                        d.scan_from = head_scan_resume(d.buf.len());
                    }
                    if d.buf.len() > max {
                        let buf = std::mem::take(&mut d.buf);
                        d.clear_buf();
                        self.too_large(ctx, dir, ts, &buf);
                    }
                    if self.dir_mut(dir).buf.is_empty() {
                        self.dir_mut(dir).clear_buf();
                    }
                    return;
                }
            }
        }
    }

    /// A versionless request line waits in the client's head buffer for the
    /// byte that tells HTTP/0.9 from a versionless request with fields (see
    /// `scan`). It is settled as a whole HTTP/0.9 request when the reply to
    /// it starts (`reply`: only if no earlier request waits for one), when
    /// the direction ends, or before a gap.
    fn settle_versionless_request(&mut self, ctx: &mut HttpContext<'_>, reply: bool) {
        if self.to_server.phase != Phase::Start
            || self.to_server.buf.is_empty()
            || (reply && self.first_unanswered().is_some())
        {
            return;
        }
        let buf = std::mem::take(&mut self.to_server.buf);
        let line = first_line(&buf)
            .filter(|&(_, ll)| ll == buf.len())
            .and_then(|(line, ll)| Some((parse_request_line(line)?, ll)))
            .filter(|(rl, _)| rl.version == HttpVersion::Http09);
        let Some((rl, ll)) = line else {
            self.to_server.buf = buf;
            return;
        };
        self.to_server.clear_buf();
        let ts = self.to_server.msg_ts;
        Self::head_parsed(ctx, ll);
        self.on_head(ctx, ts, &buf, StartLine::Request(rl, ll), None);
    }

    /// Resynchronisation after a cut chunked body skipped these bytes.
    fn watch_skipped(&mut self, dir: Direction, bytes: &[u8]) {
        if let Some(watch) = self.dir_mut(dir).cut.as_mut() {
            watch.skip(bytes);
        }
    }

    /// A message start was found: if the resync it ends began at a gap in a
    /// chunked body and the skipped bytes were the rest of another message,
    /// that message's start was lost too, and is accounted as such so the
    /// messages after it pair with the right partners.
    fn start_found_after_cut(&mut self, ctx: &mut HttpContext<'_>, dir: Direction) {
        let lost = self
            .dir_mut(dir)
            .cut
            .take()
            .is_some_and(|watch| watch.start_lost());
        if lost {
            self.lost_message_start(ctx, dir, Annot::default());
        }
        if dir == Direction::ToClient {
            self.pair_after_lost_start(ctx);
        }
    }

    /// The first response start found after a gap that took a response's
    /// start. The gap may have taken more whole responses than that one (a
    /// lost segment holds several small ones), and nothing on the wire says
    /// how many: with one request still waiting, the response is its
    /// answer; with several, it answers one of them, unknown which, so none
    /// is given it (RFC 9112 §9.3: a request must never get the response of
    /// one after it). They end unanswered with the gap flag, and the
    /// response is kept without a request.
    fn pair_after_lost_start(&mut self, ctx: &mut HttpContext<'_>) {
        if !std::mem::take(&mut self.to_client.lost_start) {
            return;
        }
        if self.pending.iter().filter(|p| !p.answered()).count() < 2 {
            return;
        }
        for p in self.pending.iter_mut().filter(|p| !p.answered()) {
            p.resp_lost = true;
            p.annot.gap = true;
        }
        self.drain(ctx);
    }

    /// A head block over `max_header_bytes`: keep what the start line says,
    /// flag it, and resynchronise.
    fn too_large(
        &mut self,
        ctx: &mut HttpContext<'_>,
        dir: Direction,
        ts: Timestamp,
        bytes: &[u8],
    ) {
        ctx.stats.headers_too_large = ctx.stats.headers_too_large.saturating_add(1);
        Self::skipped(ctx, false, bytes.len());
        let mut extra = Annot::default();
        extra.anomaly(Anomaly::HeadersTooLarge);
        extra.truncated = true;
        self.emit_partial_head(ctx, dir, ts, bytes, extra, false);
        let d = self.dir_mut(dir);
        d.phase = Phase::Resync;
        d.garbage = false;
    }

    /// Records a message whose head was cut (too large, gap, end of stream)
    /// from its start line, if it has one. Returns whether it did.
    fn emit_partial_head(
        &mut self,
        ctx: &mut HttpContext<'_>,
        dir: Direction,
        ts: Timestamp,
        bytes: &[u8],
        extra: Annot,
        gap: bool,
    ) -> bool {
        let d = self.dir_mut(dir);
        let msg_ts = if d.msg_ts == Timestamp::default() {
            ts
        } else {
            d.msg_ts
        };
        let mut annot = std::mem::take(&mut d.carry);
        annot.merge(extra);
        let line = first_line(bytes).map(|(l, _)| l);
        match dir {
            Direction::ToServer => {
                let Some(rl) = line.and_then(parse_request_line) else {
                    if gap {
                        self.lost_message_start(ctx, dir, annot);
                    }
                    return false;
                };
                let req = build_request(msg_ts, ts, &rl, Headers::default(), false);
                ctx.stats.requests = ctx.stats.requests.saturating_add(1);
                self.note_framing(Direction::ToServer, &mut annot);
                let p = Pending {
                    exchange: self.new_exchange(Some(req)),
                    annot,
                    done: true,
                    head: rl.method == b"HEAD",
                    connect: rl.method.eq_ignore_ascii_case(b"CONNECT"),
                    http09: rl.version == HttpVersion::Http09,
                    resp: None,
                    resp_lost: false,
                };
                self.push_request(ctx, p);
                self.drain(ctx);
                true
            }
            Direction::ToClient => {
                let Some(sl) = line.and_then(parse_status_line) else {
                    if gap {
                        self.lost_message_start(ctx, dir, annot);
                    }
                    return false;
                };
                ctx.stats.responses = ctx.stats.responses.saturating_add(1);
                status_line_anomalies(&sl, &mut annot);
                self.note_framing(Direction::ToClient, &mut annot);
                let paired = self.first_unanswered().is_some();
                self.resp = Some(Box::new(RespCur {
                    resp: Response {
                        ts: msg_ts,
                        end_ts: ts,
                        version: sl.version,
                        status: sl.status,
                        reason: lossy(sl.reason),
                        content_type: None,
                        headers: Headers::default(),
                        body: Body::default(),
                        pending_text: false,
                    },
                    annot,
                    paired,
                    tunnel: false,
                }));
                self.complete(ctx, dir, false);
                true
            }
        }
    }

    /// The start of a message of `dir` was lost (see the module comment).
    fn lost_message_start(&mut self, ctx: &mut HttpContext<'_>, dir: Direction, mut annot: Annot) {
        annot.gap = true;
        match dir {
            Direction::ToServer if self.lost_responses > 0 => {
                // Request and response both lost: nothing to pair, nothing to emit.
                self.lost_responses -= 1;
                self.to_server.carry.merge(annot);
            }
            Direction::ToServer => {
                let p = Pending {
                    exchange: self.new_exchange(None),
                    annot,
                    done: true,
                    head: false,
                    connect: false,
                    http09: false,
                    resp: None,
                    resp_lost: false,
                };
                self.push_request(ctx, p);
            }
            Direction::ToClient => {
                if let Some(p) = self
                    .first_unanswered()
                    .and_then(|i| self.pending.get_mut(i))
                {
                    p.resp_lost = true;
                    p.annot.merge(annot);
                    self.to_client.lost_start = true;
                    self.drain(ctx);
                } else {
                    self.lost_responses = self.lost_responses.saturating_add(1);
                    self.to_client.carry.merge(annot);
                }
            }
        }
    }

    fn push_request(&mut self, ctx: &mut HttpContext<'_>, p: Pending) {
        if p.has_request() {
            // Responses lost before a request that did arrive answered
            // requests before it; they can no longer cancel a later gap.
            self.lost_responses = 0;
        }
        if self.pending.len() >= ctx.settings.max_pending_requests.max(1) {
            if let Some(mut old) = self.pending.pop_front() {
                ctx.stats.pending_requests_overflow =
                    ctx.stats.pending_requests_overflow.saturating_add(1);
                old.annot.anomaly(Anomaly::PendingRequestsOverflow);
                self.emit(ctx, old);
            }
        }
        self.pending.push_back(p);
    }

    /// A complete head whose start line `scan` parsed.
    fn on_head(
        &mut self,
        ctx: &mut HttpContext<'_>,
        ts: Timestamp,
        head: &[u8],
        start: StartLine<'_>,
        fields: Option<StrictBlock>,
    ) {
        let s = ctx.settings;
        match start {
            StartLine::Request(rl, ll) => {
                let d = &mut self.to_server;
                let mut annot = std::mem::take(&mut d.carry);
                let msg_ts = d.msg_ts;
                if rl.nonstandard {
                    annot.anomaly(Anomaly::NonStandardVersion);
                }
                let mut headers = Headers::default();
                let info = if rl.version == HttpVersion::Http09 && head.len() <= ll {
                    headers = Headers::after_start_line(head.get(..ll).unwrap_or_default());
                    HeadInfo::default()
                } else {
                    if rl.version == HttpVersion::Http09 {
                        annot.anomaly(Anomaly::MissingVersion);
                    }
                    parse_header_block(head, ll, fields, &mut headers, s, &mut annot)
                };
                ctx.stats.header_fields_dropped = ctx
                    .stats
                    .header_fields_dropped
                    .saturating_add(u64::from(headers.dropped));
                let framing = if info.te_chunked {
                    if info.content_length.is_some() || info.cl_invalid {
                        annot.anomaly(Anomaly::TransferEncodingWithContentLength);
                    }
                    Some(Framing::Chunked(Chunk::START))
                } else {
                    // No length, or an invalid one (treated as 0, like Zeek).
                    info.content_length.filter(|&n| n > 0).map(Framing::Length)
                };
                self.note_framing(Direction::ToServer, &mut annot);
                let mut exchange = self.new_exchange(Some(build_request(
                    msg_ts,
                    ts,
                    &rl,
                    headers,
                    ctx.defer_decoding,
                )));
                ctx.stats.requests = ctx.stats.requests.saturating_add(1);
                self.to_server.body = match (framing, exchange.request.as_mut()) {
                    (Some(_), Some(req)) => BodyState::new(info.codings, s, &mut req.body),
                    _ => BodyState::default(),
                };
                let p = Pending {
                    exchange,
                    annot,
                    done: framing.is_none(),
                    head: rl.method == b"HEAD",
                    connect: rl.method.eq_ignore_ascii_case(b"CONNECT"),
                    http09: rl.version == HttpVersion::Http09,
                    resp: None,
                    resp_lost: false,
                };
                self.push_request(ctx, p);
                match framing {
                    Some(f) => self.to_server.phase = Phase::Body(f),
                    None => {
                        self.to_server.phase = Phase::Start;
                        self.drain(ctx);
                    }
                }
            }
            StartLine::Status(sl, ll) => {
                let d = &mut self.to_client;
                let mut annot = std::mem::take(&mut d.carry);
                let msg_ts = d.msg_ts;
                status_line_anomalies(&sl, &mut annot);
                let mut headers = Headers::default();
                let info = parse_header_block(head, ll, fields, &mut headers, s, &mut annot);
                ctx.stats.header_fields_dropped = ctx
                    .stats
                    .header_fields_dropped
                    .saturating_add(u64::from(headers.dropped));
                d.phase = Phase::Start;
                let code = sl.status;
                if code.is_some_and(|c| (100..200).contains(&c) && c != 101) {
                    // Interim: the request still waits for its final response.
                    ctx.stats.interim_responses = ctx.stats.interim_responses.saturating_add(1);
                    d.carry.merge(annot);
                    return;
                }
                ctx.stats.responses = ctx.stats.responses.saturating_add(1);
                let idx = self.first_unanswered();
                let req = idx.and_then(|i| self.pending.get(i));
                let (head_req, connect) = req.map_or((false, false), |p| (p.head, p.connect));
                let success = code.is_some_and(|c| (200..300).contains(&c));
                let tunnel = code == Some(101) || (connect && success);
                let no_body = matches!(code, Some(204 | 304));
                let framing = if head_req || no_body || tunnel {
                    None
                } else if info.te_chunked {
                    if info.content_length.is_some() || info.cl_invalid {
                        annot.anomaly(Anomaly::TransferEncodingWithContentLength);
                    }
                    Some(Framing::Chunked(Chunk::START))
                } else if info.te_present {
                    Some(Framing::Close)
                } else {
                    match info.content_length {
                        Some(0) => None,
                        Some(n) => Some(Framing::Length(n)),
                        None => Some(Framing::Close),
                    }
                };
                self.note_framing(Direction::ToClient, &mut annot);
                let mut resp = Response {
                    ts: msg_ts,
                    end_ts: ts,
                    version: sl.version,
                    status: sl.status,
                    reason: Text::default(),
                    content_type: None,
                    headers,
                    body: Body::default(),
                    pending_text: ctx.defer_decoding,
                };
                if !resp.pending_text {
                    ResponseText::new(sl.reason, &resp.headers).apply(&mut resp);
                }
                let d = &mut self.to_client;
                d.body = match framing {
                    Some(_) => BodyState::new(info.codings, s, &mut resp.body),
                    None => BodyState::default(),
                };
                self.resp = Some(Box::new(RespCur {
                    resp,
                    annot,
                    paired: idx.is_some(),
                    tunnel,
                }));
                match framing {
                    Some(f) => self.to_client.phase = Phase::Body(f),
                    None => self.complete(ctx, Direction::ToClient, true),
                }
            }
        }
    }

    fn start_09_response(&mut self, ctx: &mut HttpContext<'_>, ts: Timestamp) {
        self.pair_after_lost_start(ctx);
        ctx.stats.responses = ctx.stats.responses.saturating_add(1);
        let paired = self.first_unanswered().is_some();
        let d = &mut self.to_client;
        let mut annot = std::mem::take(&mut d.carry);
        d.body = BodyState::default();
        d.phase = Phase::Body(Framing::Close);
        self.note_framing(Direction::ToClient, &mut annot);
        self.resp = Some(Box::new(RespCur {
            resp: Response {
                ts,
                end_ts: ts,
                version: HttpVersion::Http09,
                status: None,
                reason: Text::default(),
                content_type: None,
                headers: Headers::default(),
                body: Body::default(),
                pending_text: false,
            },
            annot,
            paired,
            tunnel: false,
        }));
    }

    /// The message in progress in `dir` ended (`complete`: its framing says so).
    fn complete(&mut self, ctx: &mut HttpContext<'_>, dir: Direction, complete: bool) {
        let bstate = std::mem::take(&mut self.dir_mut(dir).body);
        match dir {
            Direction::ToServer => {
                if let Some(p) = self.pending.back_mut().filter(|p| !p.done) {
                    p.done = true;
                    if let Some(r) = p.exchange.request.as_mut() {
                        bstate.finish(
                            &mut r.body,
                            complete,
                            ctx.defer_decoding,
                            ctx.stats,
                            &mut p.annot,
                        );
                    }
                }
                self.drain(ctx);
            }
            Direction::ToClient => {
                let Some(mut rc) = self.resp.take() else {
                    return;
                };
                bstate.finish(
                    &mut rc.resp.body,
                    complete,
                    ctx.defer_decoding,
                    ctx.stats,
                    &mut rc.annot,
                );
                if rc.tunnel {
                    self.enter_tunnel(ctx);
                }
                let idx = self.first_unanswered();
                match idx.and_then(|i| self.pending.get_mut(i)) {
                    Some(p) if rc.paired => p.resp = Some(rc),
                    _ => {
                        rc.annot.anomaly(Anomaly::ResponseWithoutRequest);
                        ctx.stats.responses_without_request =
                            ctx.stats.responses_without_request.saturating_add(1);
                        let p = Pending {
                            exchange: self.new_exchange(None),
                            annot: Annot::default(),
                            done: true,
                            head: false,
                            connect: false,
                            http09: false,
                            resp: Some(rc),
                            resp_lost: false,
                        };
                        self.emit(ctx, p);
                    }
                }
                self.drain(ctx);
            }
        }
    }

    fn enter_tunnel(&mut self, ctx: &mut HttpContext<'_>) {
        ctx.stats.tunnels = ctx.stats.tunnels.saturating_add(1);
        if matches!(self.to_server.phase, Phase::Body(_)) {
            self.complete(ctx, Direction::ToServer, false);
        }
        for d in [&mut self.to_server, &mut self.to_client] {
            ctx.stats.tunnel_bytes = ctx.stats.tunnel_bytes.saturating_add(d.buf.len() as u64);
            d.clear_buf();
            d.phase = Phase::Tunnel;
        }
    }

    /// Emits the exchanges at the front of the queue that are complete.
    fn drain(&mut self, ctx: &mut HttpContext<'_>) {
        while self.pending.front().is_some_and(|p| p.done && p.answered()) {
            if let Some(p) = self.pending.pop_front() {
                self.emit(ctx, p);
            }
        }
    }

    fn emit(&self, ctx: &mut HttpContext<'_>, p: Pending) {
        let Pending {
            exchange: mut e,
            annot,
            resp,
            resp_lost,
            ..
        } = p;
        if e.request.is_none() && resp.is_none() {
            return;
        }
        let mut n = annot.apply(&mut e);
        let mut errors = u64::from(annot.parse_error);
        if let Some(rc) = resp {
            n = n.saturating_add(rc.annot.apply(&mut e));
            errors = errors.saturating_add(u64::from(rc.annot.parse_error));
            e.tunnel = rc.tunnel;
            e.response = Some(rc.resp);
        }
        if e.request.is_none() && !e.anomalies.contains(&Anomaly::ResponseWithoutRequest) {
            e.add_anomaly(Anomaly::ResponseWithoutRequest);
            n = n.saturating_add(1);
            ctx.stats.responses_without_request =
                ctx.stats.responses_without_request.saturating_add(1);
        }
        if e.request.is_some() && e.response.is_none() {
            e.flags.unanswered = true;
            ctx.stats.unanswered_requests = ctx.stats.unanswered_requests.saturating_add(1);
        }
        if resp_lost {
            e.flags.gap = true;
        }
        ctx.stats.anomalies = ctx.stats.anomalies.saturating_add(n);
        ctx.stats.parse_errors = ctx.stats.parse_errors.saturating_add(errors);
        ctx.stats.exchanges = ctx.stats.exchanges.saturating_add(1);
        ctx.out.push(e);
    }

    /// `len` bytes of `dir` were lost in capture.
    pub fn on_gap(&mut self, ctx: &mut HttpContext<'_>, dir: Direction, ts: Timestamp, len: u64) {
        ctx.stats.gaps = ctx.stats.gaps.saturating_add(1);
        ctx.stats.gap_bytes = ctx.stats.gap_bytes.saturating_add(len);
        if len == 0 {
            return;
        }
        let phase = self.dir_mut(dir).phase;
        match phase {
            // Lost tunnel bytes are only gap bytes: `tunnel_bytes` counts delivered ones.
            Phase::Tunnel => {}
            Phase::Body(framing) => {
                let HttpConnection {
                    to_server,
                    to_client,
                    pending,
                    resp,
                    ..
                } = self;
                let d = match dir {
                    Direction::ToServer => to_server,
                    Direction::ToClient => to_client,
                };
                let mut rest_after_body = 0u64;
                let mut ended = false;
                if let Some((body, annot, end_ts)) = target(dir, pending, resp) {
                    annot.gap = true;
                    annot.truncated = true;
                    *end_ts = ts;
                    match framing {
                        Framing::Length(rem) if rem > len => {
                            d.body.lost(body, len, ctx.stats, annot);
                            d.phase = Phase::Body(Framing::Length(rem.saturating_sub(len)));
                        }
                        Framing::Length(rem) if rem == len => {
                            d.body.lost(body, len, ctx.stats, annot);
                            d.phase = Phase::Start;
                            ended = true;
                        }
                        Framing::Close => d.body.lost(body, len, ctx.stats, annot),
                        Framing::Length(rem) => {
                            d.body.lost(body, rem, ctx.stats, annot);
                            annot.anomaly(Anomaly::BodyIncomplete);
                            rest_after_body = len.saturating_sub(rem);
                            d.phase = Phase::Resync;
                            d.garbage = false;
                            ended = true;
                        }
                        Framing::Chunked(_) => {
                            d.body.lost(body, 0, ctx.stats, annot);
                            annot.anomaly(Anomaly::BodyIncomplete);
                            d.phase = Phase::Resync;
                            d.garbage = false;
                            d.carry.gap = true;
                            d.cut = Some(ChunkEndWatch::default());
                            ended = true;
                        }
                    }
                } else {
                    d.phase = Phase::Resync;
                    d.garbage = false;
                }
                if ended {
                    self.complete(ctx, dir, false);
                }
                if rest_after_body > 0 {
                    // The bytes after the body held the next message's start.
                    self.lost_message_start(ctx, dir, Annot::default());
                }
            }
            Phase::Start | Phase::Resync => {
                if dir == Direction::ToServer {
                    // A whole line before the gap is a whole request.
                    self.settle_versionless_request(ctx, false);
                }
                let d = self.dir_mut(dir);
                let was_start = d.phase == Phase::Start;
                let garbage = d.garbage;
                d.phase = Phase::Resync;
                d.garbage = false;
                let buf = std::mem::take(&mut d.buf);
                d.clear_buf();
                if !was_start {
                    d.carry.gap = true;
                    if let Some(watch) = d.cut.as_mut() {
                        watch.skip(&buf);
                    }
                    Self::skipped(ctx, garbage, buf.len());
                    return;
                }
                let extra = Annot {
                    gap: true,
                    truncated: true,
                    ..Annot::default()
                };
                if buf.is_empty() {
                    self.lost_message_start(ctx, dir, Annot::default());
                } else {
                    Self::head_truncated(ctx, buf.len());
                    self.emit_partial_head(ctx, dir, ts, &buf, extra, true);
                }
                self.dir_mut(dir).carry.gap = true;
            }
        }
    }

    /// Reassembly or IP defragmentation saw bytes of `dir` sent twice with
    /// different content (an evasion indicator, `a`): the message being
    /// received in that direction is flagged, or the next one if none is in
    /// progress.
    pub fn on_evasion(&mut self, dir: Direction, a: Anomaly) {
        let HttpConnection {
            to_server,
            to_client,
            pending,
            resp,
            ..
        } = self;
        let d = match dir {
            Direction::ToServer => to_server,
            Direction::ToClient => to_client,
        };
        if matches!(d.phase, Phase::Body(_)) {
            if let Some((_, annot, _)) = target(dir, pending, resp) {
                annot.anomaly(a);
                return;
            }
        }
        // Between messages: the bytes retransmitted belong to the message
        // that just ended, if it has not left yet.
        if d.phase == Phase::Start && d.buf.is_empty() {
            let last = match dir {
                Direction::ToServer => pending.back_mut().map(|p| &mut p.annot),
                Direction::ToClient => resp.as_mut().map(|r| &mut r.annot),
            };
            if let Some(annot) = last {
                annot.anomaly(a);
                return;
            }
        }
        d.carry.anomaly(a);
    }

    /// The direction ended (FIN or RST).
    pub fn on_fin(&mut self, ctx: &mut HttpContext<'_>, dir: Direction, ts: Timestamp) {
        let d = self.dir_mut(dir);
        d.fin = true;
        match d.phase {
            Phase::Tunnel => {}
            Phase::Body(Framing::Close) => {
                d.phase = Phase::Start;
                self.complete(ctx, dir, true);
            }
            Phase::Body(_) => {
                d.phase = Phase::Start;
                if let Some((_, annot, _)) = target(dir, &mut self.pending, &mut self.resp) {
                    annot.truncated = true;
                    annot.anomaly(Anomaly::BodyIncomplete);
                }
                self.complete(ctx, dir, false);
            }
            Phase::Start | Phase::Resync => {
                let was_start = d.phase == Phase::Start;
                if dir == Direction::ToServer {
                    self.settle_versionless_request(ctx, false);
                }
                let waiting_09 = self
                    .first_unanswered()
                    .and_then(|i| self.pending.get(i))
                    .is_some_and(|p| p.http09);
                let d = self.dir_mut(dir);
                // A reply's first line held back until it was complete is
                // judged now that no more will come (HTTP/0.9 body or junk).
                if dir == Direction::ToClient
                    && was_start
                    && !d.buf.is_empty()
                    && (!may_start_status(&d.buf) || waiting_09)
                {
                    let held = std::mem::take(&mut d.buf);
                    d.clear_buf();
                    self.feed(ctx, dir, ts, &held);
                    let d = self.dir_mut(dir);
                    if d.buf.is_empty() || d.phase != Phase::Start {
                        return self.on_fin(ctx, dir, ts);
                    }
                }
                let d = self.dir_mut(dir);
                let garbage = d.garbage;
                let buf = std::mem::take(&mut d.buf);
                d.clear_buf();
                if buf.is_empty() {
                    return;
                }
                if !was_start {
                    Self::skipped(ctx, garbage, buf.len());
                } else {
                    Self::head_truncated(ctx, buf.len());
                    let extra = Annot {
                        truncated: true,
                        ..Annot::default()
                    };
                    // A versionless last line without its line end is a 0.9 request.
                    let mut line = buf;
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    self.emit_partial_head(ctx, dir, ts, &line, extra, false);
                }
            }
        }
    }

    /// The connection is gone: flush everything.
    pub fn finish(&mut self, ctx: &mut HttpContext<'_>, ts: Timestamp) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            let d = self.dir_mut(dir);
            if !d.fin || !d.buf.is_empty() || matches!(d.phase, Phase::Body(_)) {
                self.on_fin(ctx, dir, ts);
            }
        }
        if self.resp.is_some() {
            self.complete(ctx, Direction::ToClient, false);
        }
        while let Some(p) = self.pending.pop_front() {
            self.emit(ctx, p);
        }
        // `on_fin` took every partial head above; anything left is counted.
        let left = self.to_server.buf.len() + self.to_client.buf.len();
        Self::head_truncated(ctx, left);
        self.to_server.clear_buf();
        self.to_client.clear_buf();
    }
}

/// The head whose start line (`ll` bytes) begins `v`. On the first look
/// (`scan_from` 0) httparse parses the header block straight from `v`: a
/// head that arrived whole, the common case, is then found and parsed in
/// one pass. A head still arriving is searched for its end from where the
/// last search stopped, so it costs one httparse attempt, not one per
/// segment, and is parsed once whole.
fn head_end<'a>(
    v: &'a [u8],
    start: StartLine<'a>,
    ll: usize,
    scan_from: usize,
    s: &HttpSettings,
) -> HeadStep<'a> {
    let mut tried = None;
    if scan_from == 0 {
        // Only as far as a head may reach: a longer one is cut off by the
        // end search below, without parsing what will not be kept.
        let within_cap = v.get(..v.len().min(s.max_header_bytes)).unwrap_or_default();
        match parse_strict_block(within_cap, ll, s) {
            StrictBlock::Parsed(block) => {
                return HeadStep::Head(
                    ll.saturating_add(block.len),
                    start,
                    Some(StrictBlock::Parsed(block)),
                );
            }
            StrictBlock::Refused => tried = Some(StrictBlock::Refused),
            StrictBlock::Partial => {}
        }
    }
    match find_head_end(v, scan_from.max(ll.saturating_sub(1))) {
        Some(e) => HeadStep::Head(e, start, tried),
        None => HeadStep::NeedMore { drop: 0 },
    }
}

/// A request whose text fields (method, target, path, query, host, content
/// type) are built now, or left to the exchange's consumer when `defer`
/// (`Request::pending_text`, see [`finish_request_text`]).
fn build_request(
    ts: Timestamp,
    end_ts: Timestamp,
    rl: &RequestLine<'_>,
    headers: Headers,
    defer: bool,
) -> Request {
    let mut req = Request {
        ts,
        end_ts,
        method: Text::default(),
        uri: Text::default(),
        path: Text::default(),
        query: None,
        version: rl.version,
        host: None,
        content_type: None,
        headers,
        body: Body::default(),
        pending_text: defer,
    };
    if !defer {
        RequestText::new(rl, &req.headers).apply(&mut req);
    }
    req
}

/// Builds the text fields a worker left to the consumer, from the request
/// line kept in the headers; parsing that line again gives what the worker
/// parsed, so the request comes out as if built on the worker.
pub(super) fn finish_request_text(req: &mut Request) {
    if !req.pending_text {
        return;
    }
    let line = first_line(req.headers.start_line()).and_then(|(line, _)| parse_request_line(line));
    if let Some(text) = line.map(|rl| RequestText::new(&rl, &req.headers)) {
        text.apply(req);
    }
    req.pending_text = false;
}

/// Like [`finish_request_text`], for a response's reason and content type.
pub(super) fn finish_response_text(resp: &mut Response) {
    if !resp.pending_text {
        return;
    }
    let line = first_line(resp.headers.start_line()).and_then(|(line, _)| parse_status_line(line));
    if let Some(text) = line.map(|sl| ResponseText::new(sl.reason, &resp.headers)) {
        text.apply(resp);
    }
    resp.pending_text = false;
}

struct RequestText {
    method: Text,
    uri: Text,
    path: Text,
    query: Option<Text>,
    host: Option<Text>,
    content_type: Option<Text>,
}

impl RequestText {
    fn new(rl: &RequestLine<'_>, headers: &Headers) -> Self {
        // The target is validated as UTF-8 once; path and query without a `%`
        // are then slices of that text (when on character boundaries).
        let uri_str = std::str::from_utf8(rl.target).ok();
        let uri = match uri_str {
            Some(u) => Text::from(u),
            None => lossy(rl.target),
        };
        let part = |r: std::ops::Range<usize>| -> Text {
            let bytes = rl.target.get(r.clone()).unwrap_or_default();
            if memchr::memchr(b'%', bytes).is_none() {
                if let Some(s) = uri_str.and_then(|u| u.get(r)) {
                    return Text::from(s);
                }
            }
            percent_decode(bytes)
        };
        let (path, query) = split_target_at(rl.target);
        RequestText {
            method: lossy(rl.method),
            uri,
            path: part(path),
            query: query.map(part),
            host: headers.get("host").map(lossy),
            content_type: headers.get("content-type").map(lossy),
        }
    }

    fn apply(self, req: &mut Request) {
        req.method = self.method;
        req.uri = self.uri;
        req.path = self.path;
        req.query = self.query;
        req.host = self.host;
        req.content_type = self.content_type;
    }
}

struct ResponseText {
    reason: Text,
    content_type: Option<Text>,
}

impl ResponseText {
    fn new(reason: &[u8], headers: &Headers) -> Self {
        ResponseText {
            reason: lossy(reason),
            content_type: headers.get("content-type").map(lossy),
        }
    }

    fn apply(self, resp: &mut Response) {
        resp.reason = self.reason;
        resp.content_type = self.content_type;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::http1::script::{check_ledger, run_actions, run_actions_deferred, Action};
    use crate::http1::HttpStats;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use flate2::Compression;
    use std::io::Write;
    use Direction::{ToClient as S, ToServer as C};

    fn d(dir: Direction, b: &[u8]) -> Action {
        Action::Data(dir, b.to_vec())
    }

    /// Runs the actions and checks that every byte fed is accounted for.
    fn run(actions: &[Action]) -> (Vec<Exchange>, HttpStats) {
        run_with(&HttpSettings::default(), actions)
    }

    /// Also checks that deferring content decoding changes nothing.
    fn run_with(settings: &HttpSettings, actions: &[Action]) -> (Vec<Exchange>, HttpStats) {
        let (ex, st) = run_actions(settings, actions);
        if let Err(e) = check_ledger(actions, &st) {
            panic!("{e}");
        }
        assert_eq!(
            run_actions_deferred(settings, actions),
            (ex.clone(), st.clone())
        );
        (ex, st)
    }

    /// Fuzz regression (http1_stream-garbage-then-status-line): a reply whose
    /// first line is not finished yet must not be judged early.
    #[test]
    fn unfinished_first_reply_line_is_judged_whole() {
        let request = d(C, b"GET / HTTP/1.1\r\n\r\n");
        let reply = b"XHTTP/1.1 200 OK";
        let whole = run(&[request.clone(), d(S, reply), Action::Fin(S), Action::Fin(C)]);
        let mut split = vec![request];
        split.extend(reply.chunks(7).map(|c| d(S, c)));
        split.extend([Action::Fin(S), Action::Fin(C)]);
        let pieces = run(&split);
        assert_eq!(summary(&whole.0), summary(&pieces.0));
        assert_eq!(whole.0, pieces.0);
    }

    fn summary(ex: &[Exchange]) -> Vec<String> {
        ex.iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.request.as_ref().map_or("-", |r| r.method.as_str()),
                    e.request.as_ref().map_or("-", |r| r.uri.as_str()),
                    e.response.as_ref().map_or("-".into(), |r| match r.status {
                        Some(code) => code.to_string(),
                        None => "null".into(),
                    })
                )
            })
            .collect()
    }

    const OK0: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn idle_connection_is_small() {
        assert!(
            std::mem::size_of::<HttpConnection>() <= 320,
            "{}",
            std::mem::size_of::<HttpConnection>()
        );
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let (ex, st) = run(&[
            d(C, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
            d(S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 404 NF\r\nContent-Length: 1\r\n\r\nc"),
        ]);
        assert_eq!(summary(&ex), ["GET /a 200", "GET /b 404"]);
        assert_eq!(ex[0].response.as_ref().unwrap().body.data, b"ab");
        assert_eq!(ex[0].request.as_ref().unwrap().host.as_deref(), Some("h"));
        assert_eq!((st.requests, st.responses, st.exchanges), (2, 2, 2));
        assert!(ex
            .iter()
            .all(|e| e.flags == ExchangeFlags::default() && e.anomalies.is_empty()));
    }

    /// A worker that defers leaves the record's text unbuilt, with what is
    /// needed to build it; the consumer's finish gives the inline record,
    /// whichever parser (strict, lenient, HTTP/0.9) took the head.
    #[test]
    fn record_text_left_to_the_consumer_comes_out_as_built_inline() {
        let settings = HttpSettings::default();
        let heads = [
            b"POST /p%20q?x=%41 HTTP/1.1\r\nHost: a\r\nhost: b\r\nContent-Type: t/p\r\nContent-Length: 1\r\n\r\na".to_vec(),
            b"GET /\xff?\xc3 HTTP/1.1\r\nX: a\r\n b\r\nHost: lenient\r\n\r\n".to_vec(),
            b"GET /old\r\n".to_vec(),
        ];
        for head in heads {
            let response =
                b"HTTP/1.1 404 Not \xffFound\r\nContent-Type: text/x\r\nContent-Length: 0\r\n\r\n";
            let actions = [d(C, &head), d(S, response)];
            let (inline, _) = run_actions(&settings, &actions);
            let mut stats = HttpStats::default();
            let mut left = Vec::new();
            let mut ctx = HttpContext {
                settings: &settings,
                stats: &mut stats,
                out: &mut left,
                defer_decoding: true,
            };
            let mut conn = HttpConnection::new(ConnInfo {
                flow_id: 1,
                client: "10.0.0.1:40000".parse().unwrap(),
                server: "10.0.0.2:80".parse().unwrap(),
            });
            let mut ts = Timestamp::from_secs_nanos(1_000, 0);
            for action in &actions {
                ts = Timestamp(ts.0 + 1_000_000);
                if let Action::Data(dir, bytes) = action {
                    conn.on_data(&mut ctx, *dir, ts, bytes);
                }
            }
            conn.finish(&mut ctx, Timestamp(ts.0 + 1_000_000));
            let (req, resp) = (left[0].request.as_ref(), left[0].response.as_ref());
            assert!(
                req.unwrap().pending_text && req.unwrap().method.is_empty(),
                "{head:?}"
            );
            // The versionless request's reply has a status line, so it is
            // a full response too.
            assert!(resp.unwrap().pending_text, "{head:?}");
            let mut finished: Vec<Exchange> = left.iter().map(|e| *e.clone()).collect();
            for e in &mut finished {
                crate::http1::finish_decoding(e, &mut stats);
            }
            assert_eq!(finished, inline);
            assert!(!inline[0].request.as_ref().unwrap().method.is_empty());
        }
    }

    #[test]
    fn request_fields_and_timestamps() {
        let (ex, _) = run(&[
            d(C, b"POST /p%20q?x=%41 HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\na"),
            d(C, b"bc"),
            d(S, OK0),
        ]);
        let r = ex[0].request.as_ref().unwrap();
        assert_eq!((r.path.as_str(), r.query.as_deref()), ("/p q", Some("x=A")));
        assert_eq!(r.uri, "/p%20q?x=%41");
        assert_eq!(r.version, HttpVersion::Http10);
        assert_eq!(r.content_type.as_deref(), Some("text/plain"));
        assert_eq!(r.body.data, b"abc");
        assert!(r.end_ts > r.ts);
        let (ex, _) = run(&[d(C, b"GET HTTP://bro.org/x HTTP/1.1\r\n\r\n"), d(S, OK0)]);
        assert_eq!(ex[0].request.as_ref().unwrap().path, "/x");
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let (ex, _) = run(&[
            d(C, b"GET / HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"),
            d(C, b"GET /2 HTTP/1.1\r\n\r\n"),
            d(S, OK0),
        ]);
        assert_eq!(summary(&ex), ["GET / 200", "GET /2 200"]);
        assert_eq!(ex[0].response.as_ref().unwrap().body.data, b"abcde");
    }

    #[test]
    fn close_delimited_response() {
        let (ex, _) = run(&[
            d(C, b"GET / HTTP/1.0\r\n\r\n"),
            d(S, b"HTTP/1.0 200 OK\r\n\r\nsome body"),
            d(S, b" more"),
            Action::Fin(S),
        ]);
        let b = &ex[0].response.as_ref().unwrap().body;
        assert_eq!(b.data, b"some body more");
        assert_eq!(ex[0].flags, ExchangeFlags::default());
    }

    #[test]
    fn head_204_304_have_no_body() {
        let (ex, _) = run(&[
            d(C, b"HEAD / HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
            d(S, b"HTTP/1.1 204 No\r\nContent-Length: 10\r\n\r\n"),
            d(S, b"HTTP/1.1 304 NM\r\n\r\n"),
            d(S, OK0),
        ]);
        assert_eq!(
            summary(&ex),
            ["HEAD / 200", "GET /a 204", "GET /b 304", "GET /c 200"]
        );
    }

    #[test]
    fn continue_100_does_not_consume_the_request() {
        let (ex, st) = run(&[
            d(
                C,
                b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
            ),
            d(S, b"HTTP/1.1 100 Continue\r\n\r\n"),
            d(C, b"data"),
            d(
                S,
                b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            ),
        ]);
        assert_eq!(summary(&ex), ["POST /u 201"]);
        assert_eq!(st.interim_responses, 2);
    }

    #[test]
    fn upgrade_101_and_connect_tunnel() {
        let (ex, st) = run(&[
            d(
                C,
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            ),
            d(
                S,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            ),
            d(C, b"\x81\x85abcdGET / HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(summary(&ex), ["GET /ws 101"]);
        assert!(ex[0].tunnel);
        assert_eq!((st.tunnels, st.tunnel_bytes), (1, 7 + 24));
        let (ex, _) = run(&[
            d(C, b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"),
            d(S, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            d(C, b"\x16\x03\x01\x00\x05hello"),
            d(S, b"\x16\x03\x03\x00\x05world"),
        ]);
        assert_eq!(summary(&ex), ["CONNECT h:443 200"]);
        assert!(ex[0].tunnel);
        let (ex, _) = run(&[
            d(
                C,
                b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: x\r\n\r\n",
            ),
            d(
                S,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0\r\n",
            ),
        ]);
        assert_eq!(ex.len(), 1);
        assert!(ex[0].tunnel);
    }

    #[test]
    fn gzip_and_raw_deflate_bodies() {
        let mut g = GzEncoder::new(Vec::new(), Compression::default());
        g.write_all(b"hello gzip").unwrap();
        let gz = g.finish().unwrap();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        resp.extend_from_slice(&gz);
        let (ex, _) = run(&[d(C, b"GET / HTTP/1.1\r\n\r\n"), d(S, &resp)]);
        let b = &ex[0].response.as_ref().unwrap().body;
        assert_eq!(b.data, b"hello gzip");
        assert_eq!((b.wire_len, b.decoded_len), (gz.len() as u64, 10));
        assert_eq!(b.content_encoding.as_deref(), Some("gzip"));
        let mut r = DeflateEncoder::new(Vec::new(), Compression::default());
        r.write_all(b"raw deflate").unwrap();
        let raw = r.finish().unwrap();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n",
            raw.len()
        )
        .into_bytes();
        resp.extend_from_slice(&raw);
        let (ex, _) = run(&[d(C, b"GET / HTTP/1.1\r\n\r\n"), d(S, &resp)]);
        assert_eq!(ex[0].response.as_ref().unwrap().body.data, b"raw deflate");
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let mut g = GzEncoder::new(Vec::new(), Compression::best());
        g.write_all(&vec![b'a'; 50_000_000]).unwrap();
        let gz = g.finish().unwrap();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        resp.extend_from_slice(&gz);
        let (ex, st) = run(&[
            d(C, b"GET / HTTP/1.1\r\n\r\n"),
            d(S, &resp),
            d(C, b"GET /next HTTP/1.1\r\n\r\n"),
            d(S, OK0),
        ]);
        let b = &ex[0].response.as_ref().unwrap().body;
        assert_eq!(b.decoded_len, 8 * 1024 * 1024);
        assert_eq!(b.data.len(), 64 * 1024);
        assert!(ex[0].anomalies.contains(&Anomaly::DecompressionLimit));
        assert_eq!(st.decompression_limit_hits, 1);
        assert_eq!(summary(&ex)[1], "GET /next 200");
    }

    #[test]
    fn invalid_content_lengths_are_zero_for_requests() {
        for cl in [
            "-1",
            "18446744073709551615",
            "99999999999999999999999",
            "12abc",
        ] {
            let req = format!(
                "POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
            );
            let (ex, _) = run(&[d(C, req.as_bytes())]);
            assert_eq!(summary(&ex), ["POST / -", "GET /smuggled -"], "{cl}");
            assert!(ex[0].anomalies.contains(&Anomaly::InvalidContentLength));
            assert!(ex[0].flags.parse_error);
        }
        // An invalid response length makes the body run until close.
        let (ex, _) = run(&[
            d(C, b"GET / HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabcdef"),
            Action::Fin(S),
        ]);
        assert_eq!(ex[0].response.as_ref().unwrap().body.data, b"abcdef");
    }

    #[test]
    fn leading_zeros_and_te_with_cl() {
        let (ex, _) = run(&[d(
            C,
            b"POST / HTTP/1.1\r\nContent-Length: 0005\r\n\r\nhelloGET /n HTTP/1.1\r\n\r\n",
        )]);
        assert_eq!(summary(&ex), ["POST / -", "GET /n -"]);
        assert_eq!(ex[0].request.as_ref().unwrap().body.data, b"hello");
        assert!(ex[0]
            .anomalies
            .contains(&Anomaly::ContentLengthLeadingZeros));
        let (ex, _) = run(&[d(C, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\nGET /te-cl HTTP/1.1\r\n\r\n")]);
        assert_eq!(summary(&ex), ["POST / -", "GET /te-cl -"]);
        assert!(ex[0]
            .anomalies
            .contains(&Anomaly::TransferEncodingWithContentLength));
    }

    #[test]
    fn chunk_size_overflow_resyncs_to_next_request() {
        let (ex, _) = run(&[d(C, b"POST / HTTP/1.1\r\nHost: target\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nGET /smuggled-chunk-2pow64 HTTP/1.1\r\nHost: target\r\n\r\n")]);
        assert_eq!(summary(&ex), ["POST / -", "GET /smuggled-chunk-2pow64 -"]);
        assert!(ex[0].anomalies.contains(&Anomaly::InvalidChunkSize));
    }

    #[test]
    fn te_obs_fold_and_multi_value_te() {
        let (ex, _) = run(&[d(C, b"POST / HTTP/1.1\r\nHost: target\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /smuggled-obsfold HTTP/1.1\r\nHost: target\r\n\r\n")]);
        assert_eq!(summary(&ex), ["POST / -", "GET /smuggled-obsfold -"]);
        assert!(ex[0].anomalies.contains(&Anomaly::ObsFoldHeader));
        let (ex, _) = run(&[d(C, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /m HTTP/1.1\r\n\r\n")]);
        assert_eq!(summary(&ex), ["POST / -", "GET /m -"]);
        assert!(ex[0].anomalies.contains(&Anomaly::UnusualTransferEncoding));
    }

    #[test]
    fn bare_lf_and_lowercase_status() {
        let (ex, _) = run(&[
            d(C, b"GET / HTTP/1.1\nHost: h\n\n"),
            d(
                S,
                b"http/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
            ),
        ]);
        assert_eq!(summary(&ex), ["GET / 200"]);
        assert_eq!(ex[0].response.as_ref().unwrap().body.data, b"abc");
        assert!(ex[0].anomalies.contains(&Anomaly::NonStandardVersion));
    }

    #[test]
    fn garbage_before_request() {
        let (ex, st) = run(&[
            d(C, b".... GET /txt HTTP/1.1\r\nHost: h\r\n\r\n"),
            d(S, OK0),
        ]);
        assert_eq!(summary(&ex), ["GET /txt 200"]);
        assert!(ex[0].anomalies.contains(&Anomaly::GarbageBeforeMessage));
        assert_eq!((st.garbage_bytes_skipped, st.resync_bytes_skipped), (5, 0));
    }

    #[test]
    fn http09_request_and_headerless_response() {
        let (ex, _) = run(&[
            d(C, b"GET /zeek.html\r\n"),
            d(S, b"<html>hi</html>\n"),
            Action::Fin(S),
        ]);
        assert_eq!(summary(&ex), ["GET /zeek.html null"]);
        let r = ex[0].response.as_ref().unwrap();
        assert_eq!(
            (r.version, r.body.data.as_slice()),
            (HttpVersion::Http09, &b"<html>hi</html>\n"[..])
        );
        assert_eq!(ex[0].request.as_ref().unwrap().version, HttpVersion::Http09);
        // A 1.1 request answered without a status line.
        let (ex, _) = run(&[
            d(C, b"GET /zeek.html HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            d(S, b"plain body"),
            Action::Fin(S),
        ]);
        assert_eq!(summary(&ex), ["GET /zeek.html null"]);
        assert_eq!(ex[0].response.as_ref().unwrap().body.data, b"plain body");
    }

    /// RFC 9112 §2.3, §4: a versionless request line followed by fields is
    /// not HTTP/0.9; its fields are kept, and a reply with a status line is
    /// a full response, however the bytes were cut.
    #[test]
    fn versionless_request_with_fields_keeps_them_and_its_full_response() {
        let req = b"GET /nv?q=1\r\nHost: h.example\r\nUser-Agent: probe/1\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for piece in [1, 7, req.len()] {
            let mut acts: Vec<Action> = req.chunks(piece).map(|c| d(C, c)).collect();
            acts.push(d(S, resp));
            acts.push(d(C, b"GET /next HTTP/1.1\r\n\r\n"));
            acts.push(d(S, OK0));
            let (ex, st) = run(&acts);
            assert_eq!(
                summary(&ex),
                ["GET /nv?q=1 200", "GET /next 200"],
                "{piece}"
            );
            let r = ex[0].request.as_ref().unwrap();
            assert_eq!(r.version, HttpVersion::Http09);
            assert_eq!(r.host.as_deref(), Some("h.example"));
            assert_eq!(r.headers.get("user-agent"), Some(&b"probe/1"[..]));
            assert_eq!(ex[0].anomalies, [Anomaly::MissingVersion], "{piece}");
            let rs = ex[0].response.as_ref().unwrap();
            assert_eq!(
                (rs.version, rs.body.data.as_slice()),
                (HttpVersion::Http11, &b"ok"[..])
            );
            assert!(ex[1].anomalies.is_empty());
            assert_eq!(
                st.head_bytes,
                (req.len() + resp.len() - 2 + 22 + OK0.len()) as u64
            );
        }
        // A field with blanks before its colon counts as a field too.
        let (ex, _) = run(&[
            d(
                C,
                b"POST /nv\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            ),
            d(S, OK0),
        ]);
        assert_eq!(summary(&ex), ["POST /nv 200"]);
        assert_eq!(
            ex[0].anomalies,
            [Anomaly::WhitespaceBeforeColon, Anomaly::MissingVersion]
        );
    }

    /// The negative twin: a line alone is HTTP/0.9, unflagged; its reply is
    /// a full response only when it starts with a valid status line.
    #[test]
    fn versionless_line_alone_stays_http09() {
        for (reply, status, body) in [
            (&b"<html>0.9</html>"[..], None, &b"<html>0.9</html>"[..]),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nZ",
                Some(200),
                b"Z",
            ),
            (
                b"HTTP/1.1 2x0 nonsense\r\n\r\n",
                None,
                b"HTTP/1.1 2x0 nonsense\r\n\r\n",
            ),
        ] {
            let (ex, _) = run(&[d(C, b"GET /old\r\n"), d(S, reply), Action::Fin(S)]);
            assert_eq!(ex.len(), 1, "{reply:?}");
            let (rq, rs) = (
                ex[0].request.as_ref().unwrap(),
                ex[0].response.as_ref().unwrap(),
            );
            assert_eq!(rq.version, HttpVersion::Http09);
            assert!(rq.headers.is_empty());
            assert_eq!(
                (rs.status, rs.body.data.as_slice()),
                (status, body),
                "{reply:?}"
            );
            assert!(
                ex[0].anomalies.is_empty(),
                "{reply:?}: {:?}",
                ex[0].anomalies
            );
            assert!(!ex[0].flags.truncated && !ex[0].flags.unanswered);
        }
        // Ended by the client's FIN before any reply: a whole request.
        let (ex, st) = run(&[d(C, b"GET /old\r\n"), Action::Fin(C)]);
        assert_eq!(summary(&ex), ["GET /old -"]);
        assert!(!ex[0].flags.truncated);
        assert_eq!((st.head_bytes, st.head_bytes_truncated), (10, 0));
        // A line that is no header field does not make the first one a
        // versionless HTTP/1.x request, however the bytes are cut.
        let two = b"GET /a\r\nGET /b\r\n";
        for piece in [1, 9, two.len()] {
            let mut acts: Vec<Action> = two.chunks(piece).map(|c| d(C, c)).collect();
            acts.push(Action::Fin(C));
            let (ex, _) = run(&acts);
            assert_eq!(summary(&ex), ["GET /a -", "GET /b -"], "{piece}");
            assert!(ex.iter().all(|e| e.anomalies.is_empty()), "{piece}");
        }
    }

    #[test]
    fn invalid_status_line_is_a_response_with_parse_error() {
        let (ex, st) = run(&[
            d(C, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 abc Odd\r\nContent-Length: 3\r\n\r\nxyz"),
            d(S, b"HTTP/1.1 204 No Content\r\n\r\n"),
        ]);
        assert_eq!(summary(&ex), ["GET /a null", "GET /b 204"]);
        let r = ex[0].response.as_ref().unwrap();
        assert_eq!((r.status, r.reason.as_str()), (None, "abc Odd"));
        assert_eq!(r.body.data, b"xyz");
        assert!(ex[0].flags.parse_error && !ex[0].flags.unanswered);
        assert!(ex[0].anomalies.contains(&Anomaly::InvalidStatusLine));
        assert_eq!((st.parse_errors, st.unanswered_requests), (1, 0));
        assert!(ex[1].anomalies.is_empty() && !ex[1].flags.parse_error);
        // A valid line with an odd version keeps its code.
        let (ex, _) = run(&[
            d(C, b"GET / HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/!.4 206 Partial\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert_eq!(summary(&ex), ["GET / 206"]);
        assert!(ex[0].flags.parse_error);
    }

    #[test]
    fn header_whitespace_before_colon_nul_and_bare_cr_are_flagged() {
        // `Transfer-Encoding : chunked`: read as chunked (the lenient
        // servers' reading) and flagged.
        let (ex, _) = run(&[d(
            C,
            b"POST /a HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        )]);
        assert_eq!(summary(&ex), ["POST /a -", "GET /b -"]);
        assert_eq!(ex[0].request.as_ref().unwrap().body.data, b"abc");
        assert_eq!(ex[0].anomalies, [Anomaly::WhitespaceBeforeColon]);
        for block in [
            &b"X-A: a\0b\r\n"[..],
            b"X-A: a\rTransfer-Encoding: chunked\r\n",
        ] {
            let mut head = b"GET / HTTP/1.1\r\n".to_vec();
            head.extend_from_slice(block);
            head.extend_from_slice(b"\r\n");
            let (ex, _) = run(&[d(C, &head), d(S, OK0)]);
            assert_eq!(summary(&ex), ["GET / 200"], "{block:?}");
            assert_eq!(ex[0].anomalies, [Anomaly::NulOrBareCrInHeader], "{block:?}");
            let value = ex[0].request.as_ref().unwrap().headers.get("x-a").unwrap();
            assert!(
                value.starts_with(b"a") && value.len() > 2,
                "kept as sent: {value:?}"
            );
        }
        // The negative twins: the usual spellings are not flagged.
        let (ex, _) = run(&[
            d(
                C,
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX: a b\t c\r\n\r\n0\r\n\r\n",
            ),
            d(S, b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
        ]);
        assert_eq!(summary(&ex), ["POST / 200"]);
        assert!(ex[0].anomalies.is_empty(), "{:?}", ex[0].anomalies);
    }

    /// RFC 9112 §9.3: a gap that runs past a chunked body's end and takes
    /// the next response's head must not hand that response's request the
    /// one after it.
    #[test]
    fn gap_past_a_chunked_body_keeps_responses_paired() {
        let reqs = d(
            C,
            b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
        );
        let head_a = d(
            S,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        );
        let c = b"HTTP/1.1 202 C\r\nContent-Length: 0\r\n\r\n";
        // Lost: A's last chunks and end, and B's head; B's body is seen.
        let (ex, _) = run(&[
            reqs.clone(),
            head_a.clone(),
            Action::Gap(S, 40),
            d(S, b"bbbbb"),
            d(S, c),
        ]);
        assert_eq!(summary(&ex), ["GET /a 200", "GET /b -", "GET /c 202"]);
        assert!(ex[1].flags.gap && ex[1].flags.unanswered);
        // The negative twins: the gap ends inside A's body, whose end is
        // seen; or it ends right where B starts.
        for after_gap in [&b"lo\r\n0\r\n\r\n"[..], b"\r\n"] {
            let mut server = after_gap.to_vec();
            server.extend_from_slice(b"HTTP/1.1 201 B\r\nContent-Length: 0\r\n\r\n");
            server.extend_from_slice(c);
            let (ex, _) = run(&[
                reqs.clone(),
                head_a.clone(),
                Action::Gap(S, 9),
                d(S, &server),
            ]);
            assert_eq!(
                summary(&ex),
                ["GET /a 200", "GET /b 201", "GET /c 202"],
                "{after_gap:?}"
            );
        }
        // The same on the client side: the lost request gets a stand-in.
        let (ex, _) = run(&[
            d(
                C,
                b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            ),
            Action::Gap(C, 30),
            d(C, b"xyz\r\nGET /c HTTP/1.1\r\n\r\n"),
            d(S, OK0),
            d(S, b"HTTP/1.1 201 B\r\nContent-Length: 0\r\n\r\n"),
            d(S, b"HTTP/1.1 202 C\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert_eq!(summary(&ex), ["POST /a 200", "- - 201", "GET /c 202"]);
    }

    /// A gap that takes a response's end, the whole next response and the
    /// start of the one after: the response found next answers one of the
    /// requests still waiting, unknown which, so none gets it. With one
    /// request waiting it is that one's (the twin above).
    #[test]
    fn gap_taking_several_responses_pairs_no_request_with_a_later_response() {
        let reqs = d(
            C,
            b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
        );
        let head_a = d(S, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcde");
        // Lost: 5 bytes of A's body, B's whole response (38 bytes), C's
        // head (38 bytes); C's body `ccc` is seen, then D's response.
        let b = b"HTTP/1.1 201 B\r\nContent-Length: 0\r\n\r\n";
        let c_head = b"HTTP/1.1 202 C\r\nContent-Length: 3\r\n\r\n";
        let lost = 5 + b.len() + c_head.len();
        let (ex, _) = run(&[
            reqs,
            head_a,
            Action::Gap(S, lost as u64),
            d(S, b"ccc"),
            d(S, b"HTTP/1.1 204 D\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert_eq!(
            summary(&ex),
            ["GET /a 200", "GET /b -", "GET /c -", "GET /d -", "- - 204"]
        );
        assert!(ex[1..4].iter().all(|e| e.flags.gap && e.flags.unanswered));
    }

    #[test]
    fn messages_after_ambiguous_framing_are_flagged() {
        let (ex, _) = run(&[
            d(C, b"GET /0 HTTP/1.1\r\n\r\n"),
            d(S, OK0),
            d(C, b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n"),
            d(S, OK0),
            d(S, OK0),
            d(C, b"GET /later HTTP/1.1\r\n\r\n"),
            d(S, OK0),
        ]);
        assert_eq!(
            summary(&ex),
            [
                "GET /0 200",
                "POST /a 200",
                "GET /smuggled 200",
                "GET /later 200"
            ]
        );
        let after = Anomaly::AfterAmbiguousFraming;
        assert!(!ex[0].anomalies.contains(&after));
        assert!(ex[1].anomalies.contains(&Anomaly::ConflictingContentLength));
        assert!(!ex[1].anomalies.contains(&after));
        assert_eq!(ex[2].anomalies, [after]);
        assert!(ex[3].anomalies.is_empty(), "only the message right after");
        // TE with CL is ambiguous too; a clean connection flags nothing.
        let (ex, _) = run(&[d(C, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n")]);
        assert!(ex[1].anomalies.contains(&after));
        let (ex, _) = run(&[d(C, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET /n HTTP/1.1\r\n\r\n")]);
        assert!(
            ex.iter().all(|e| e.anomalies.is_empty()),
            "equal lengths are not a conflict"
        );
    }

    #[test]
    fn stacked_content_encoding_from_several_fields_is_decoded() {
        let plain = b"{\"secret\":\"hidden twice\"}";
        let mut once = GzEncoder::new(Vec::new(), Compression::default());
        once.write_all(plain).unwrap();
        let mut twice = GzEncoder::new(Vec::new(), Compression::default());
        twice.write_all(&once.finish().unwrap()).unwrap();
        let body = twice.finish().unwrap();
        for fields in [
            "Content-Encoding: gzip, gzip\r\n",
            "Content-Encoding: gzip\r\ncontent-encoding: gzip\r\n",
        ] {
            let mut resp = format!(
                "HTTP/1.1 200 OK\r\n{fields}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            resp.extend_from_slice(&body);
            let (ex, _) = run(&[d(C, b"GET / HTTP/1.1\r\n\r\n"), d(S, &resp)]);
            let b = &ex[0].response.as_ref().unwrap().body;
            assert_eq!(b.data, plain, "{fields}");
            assert_eq!(b.content_encoding.as_deref(), Some("gzip, gzip"));
            assert_eq!(ex[0].anomalies, [Anomaly::StackedContentEncoding]);
        }
    }

    #[test]
    fn request_line_without_uri() {
        let (ex, _) = run(&[d(C, b"GET HTTP/1.1\r\nHost: bro.org\r\n\r\n"), d(S, OK0)]);
        assert_eq!(summary(&ex), ["GET  200"]);
        assert_eq!(
            ex[0].request.as_ref().unwrap().host.as_deref(),
            Some("bro.org")
        );
    }

    #[test]
    fn gap_inside_content_length_body_stays_in_sync() {
        let (ex, st) = run(&[
            d(C, b"GET /a HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
            Action::Gap(S, 5),
            d(S, b"xyz"),
            d(C, b"GET /b HTTP/1.1\r\n\r\n"),
            d(S, OK0),
        ]);
        assert_eq!(summary(&ex), ["GET /a 200", "GET /b 200"]);
        assert!(ex[0].flags.gap && ex[0].flags.truncated);
        let b = &ex[0].response.as_ref().unwrap().body;
        assert_eq!(
            (b.wire_len, b.data.as_slice(), b.data_truncated),
            (10, &b"abxyz"[..], true)
        );
        assert!(!ex[1].flags.gap);
        assert_eq!((st.gaps, st.gap_bytes), (1, 5));
    }

    #[test]
    fn gap_in_headers_resyncs() {
        let (ex, _) = run(&[
            d(C, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 200 OK\r\nContent-"),
            Action::Gap(S, 30),
            d(
                S,
                b"rest of lost body\r\nHTTP/1.1 404 NF\r\nContent-Length: 0\r\n\r\n",
            ),
        ]);
        assert_eq!(summary(&ex), ["GET /a 200", "GET /b 404"]);
        assert!(ex[0].flags.gap && ex[0].flags.truncated);
    }

    #[test]
    fn lost_whole_response_leaves_its_request_unanswered() {
        let mut a = Vec::new();
        for i in 0..5 {
            a.push(d(C, format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
            if i == 2 {
                continue; // response lost; reported as a gap before the next one
            }
            if i == 3 {
                a.push(Action::Gap(S, OK0.len() as u64));
            }
            a.push(d(S, OK0));
        }
        let (ex, _) = run(&a);
        assert_eq!(
            summary(&ex),
            [
                "GET /0 200",
                "GET /1 200",
                "GET /2 -",
                "GET /3 200",
                "GET /4 200"
            ]
        );
        assert!(ex[2].flags.unanswered && ex[2].flags.gap);
    }

    #[test]
    fn lost_request_start_gets_a_stand_in() {
        let (ex, _) = run(&[
            d(C, b"GET /a HTTP/1.1\r\n\r\n"),
            d(S, OK0),
            Action::Gap(C, 20),
            d(C, b"GET /c HTTP/1.1\r\n\r\n"),
            d(S, b"HTTP/1.1 201 X\r\nContent-Length: 0\r\n\r\n"),
            d(S, b"HTTP/1.1 202 X\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert_eq!(summary(&ex), ["GET /a 200", "- - 201", "GET /c 202"]);
        assert!(ex[1].flags.gap);
    }

    #[test]
    fn response_without_request() {
        let (ex, st) = run(&[d(S, OK0)]);
        assert_eq!(summary(&ex), ["- - 200"]);
        assert!(ex[0].anomalies.contains(&Anomaly::ResponseWithoutRequest));
        assert_eq!(st.responses_without_request, 1);
    }

    #[test]
    fn pending_overflow_flushes_oldest() {
        let s = HttpSettings {
            max_pending_requests: 2,
            ..HttpSettings::default()
        };
        let (ex, st) = run_with(
            &s,
            &[
                d(
                    C,
                    b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
                ),
                d(S, OK0),
            ],
        );
        assert_eq!(summary(&ex), ["GET /1 -", "GET /2 200", "GET /3 -"]);
        assert!(ex[0].anomalies.contains(&Anomaly::PendingRequestsOverflow));
        assert_eq!(st.pending_requests_overflow, 1);
    }

    #[test]
    fn giant_header_block_is_capped() {
        let s = HttpSettings {
            max_header_bytes: 1024,
            ..HttpSettings::default()
        };
        let mut req = b"GET /big HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            req.extend_from_slice(format!("X-H{i}: vvvvvvvvvvvvvvvvvvvv\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\nGET /after HTTP/1.1\r\n\r\n");
        for chunk in [req.len(), 100] {
            let acts: Vec<Action> = req
                .chunks(chunk)
                .map(|c| d(C, c))
                .chain([d(S, OK0), d(S, OK0)])
                .collect();
            let (ex, st) = run_with(&s, &acts);
            assert_eq!(
                summary(&ex),
                ["GET /big 200", "GET /after 200"],
                "chunk {chunk}"
            );
            assert!(ex[0].anomalies.contains(&Anomaly::HeadersTooLarge));
            assert!(ex[0].flags.truncated);
            assert_eq!(st.headers_too_large, 1);
        }
    }

    /// The cap counts the whole head, start line and empty line included,
    /// whether the head arrives whole or in pieces.
    #[test]
    fn head_of_exactly_the_cap_is_kept() {
        let head = |len: usize| {
            let mut h = b"GET /a HTTP/1.1\r\nX: ".to_vec();
            h.resize(len - 4, b'v');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        let s = HttpSettings {
            max_header_bytes: 200,
            ..HttpSettings::default()
        };
        for (len, too_large) in [(200, false), (201, true)] {
            let req = head(len);
            for chunk in [req.len(), 7] {
                let acts: Vec<Action> = req
                    .chunks(chunk)
                    .map(|c| d(C, c))
                    .chain([d(S, OK0)])
                    .collect();
                let (ex, st) = run_with(&s, &acts);
                assert_eq!(summary(&ex), ["GET /a 200"], "{len} {chunk}");
                assert_eq!(st.headers_too_large, u64::from(too_large), "{len} {chunk}");
                let kept = ex[0].request.as_ref().unwrap().headers.len();
                assert_eq!(kept, usize::from(!too_large), "{len} {chunk}");
            }
        }
    }

    #[test]
    fn too_many_headers_are_counted() {
        let s = HttpSettings {
            max_headers: 3,
            ..HttpSettings::default()
        };
        let (ex, st) = run_with(
            &s,
            &[
                d(
                    C,
                    b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
                ),
                d(S, OK0),
            ],
        );
        assert_eq!(ex[0].request.as_ref().unwrap().headers.len(), 3);
        assert!(ex[0].anomalies.contains(&Anomaly::TooManyHeaders));
        assert_eq!(st.header_fields_dropped, 2);
    }

    #[test]
    fn interleaved_upload_and_response() {
        let (ex, _) = run(&[
            d(C, b"POST /up HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc"),
            d(S, b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n"),
            d(C, b"def"),
        ]);
        assert_eq!(summary(&ex), ["POST /up 413"]);
        assert_eq!(ex[0].request.as_ref().unwrap().body.data, b"abcdef");
    }

    #[test]
    fn finish_flushes_unanswered_and_truncated() {
        let (ex, st) = run(&[
            d(
                C,
                b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial",
            ),
            d(S, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"),
        ]);
        assert_eq!(summary(&ex), ["GET /1 200", "POST /2 -"]);
        assert!(ex[0].flags.truncated && ex[0].anomalies.contains(&Anomaly::BodyIncomplete));
        assert!(ex[1].flags.unanswered && ex[1].flags.truncated);
        assert_eq!(st.unanswered_requests, 1);
    }

    /// Every split point of each stream gives the same exchanges as one chunk.
    #[test]
    fn byte_splits_do_not_change_results() {
        let streams: [(&[u8], &[u8]); 9] = [
            (
                b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 201 C\r\nContent-Length: 2\r\n\r\nok",
            ),
            (b"\r\n.... GET /txt HTTP/1.1\nHost: h\n\n", b"http/1.1 200 OK\nContent-Length: 1\n\nZ"),
            (b"GET /zeek.html\r\n", b"<html>0.9</html>"),
            (b"GET / HTTP/1.1\r\n\r\n", b"garbage\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (b"GET /nv\r\nHost: h\r\nUser-Agent: u\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (b"GET /nv\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (b"GET /nv\r\n\r\n", b"HTTP/1.1 200"),
            (b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", b"HTTP/1.1 2x0 Odd\r\nContent-Length: 1\r\n\r\nZHTTP/1.1 204 No\r\n\r\n"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nX: a\0b\r\nContent-Encoding: gzip, gzip\r\n\r\n0\r\n\r\n", b""),
        ];
        for (c, s) in streams {
            let whole = run(&[d(C, c), d(S, s), Action::Fin(C), Action::Fin(S)]).0;
            for split in 0..=c.len().max(s.len()) {
                let mut acts = Vec::new();
                for (dir, b) in [(C, c), (S, s)] {
                    let k = split.min(b.len());
                    acts.push(d(dir, &b[..k]));
                    acts.push(d(dir, &b[k..]));
                }
                acts.push(Action::Fin(C));
                acts.push(Action::Fin(S));
                let got = run(&acts).0;
                assert_eq!(summary(&got), summary(&whole), "split {split}");
                for (g, w) in got.iter().zip(&whole) {
                    assert_eq!(g.anomalies, w.anomalies, "split {split}");
                    assert_eq!(g.flags, w.flags, "split {split}");
                    assert_eq!(
                        g.response.as_ref().map(|r| &r.body.data),
                        w.response.as_ref().map(|r| &r.body.data)
                    );
                }
            }
            // Byte by byte.
            let mut acts: Vec<Action> = c.iter().map(|b| d(C, &[*b])).collect();
            acts.extend(s.iter().map(|b| d(S, &[*b])));
            acts.push(Action::Fin(C));
            acts.push(Action::Fin(S));
            assert_eq!(summary(&run(&acts).0), summary(&whole));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678u32;
        for _ in 0..300 {
            let mut acts = Vec::new();
            for _ in 0..20 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let pick = b"GET / HTTP/1.1\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nff\r\n\n \t:%zz\x00\xff";
                let start = (x as usize) % pick.len();
                let len = ((x >> 8) as usize) % 40;
                let bytes = &pick[start..(start + len).min(pick.len())];
                let dir = if x & 1 == 0 { C } else { S };
                acts.push(match (x >> 20) % 10 {
                    0 => Action::Gap(dir, u64::from(x >> 24)),
                    1 => Action::Fin(dir),
                    9 => Action::Gap(dir, u64::MAX),
                    _ => d(dir, bytes),
                });
            }
            let _ = run(&acts);
        }
    }

    // Byte ledger. `run` checks that every byte fed in is in exactly one
    // bucket; the tests below also pin which one.

    /// (head, body, tunnel, between messages, resync, garbage, truncated
    /// head, stalled) bytes.
    fn buckets(st: &HttpStats) -> [u64; 8] {
        [
            st.head_bytes,
            st.body_bytes,
            st.tunnel_bytes,
            st.bytes_between_messages,
            st.resync_bytes_skipped,
            st.garbage_bytes_skipped,
            st.head_bytes_truncated,
            st.stall_bytes_dropped,
        ]
    }

    fn n(b: &[u8]) -> u64 {
        b.len() as u64
    }

    #[test]
    fn ledger_resync_after_gap_skips_to_the_next_request() {
        let head_a = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        let head_b = b"GET /b HTTP/1.1\r\n\r\n";
        let mut first = head_a.to_vec();
        first.extend_from_slice(b"01234");
        let mut after = b"6789tail\r\n".to_vec();
        after.extend_from_slice(head_b);
        // The gap takes the last 5 body bytes and 15 of what followed.
        let (ex, st) = run(&[
            d(C, &first),
            Action::Gap(C, 20),
            d(C, &after),
            d(S, OK0),
            d(S, OK0),
            d(S, OK0),
        ]);
        assert_eq!(summary(&ex), ["POST /a 200", "- - 200", "GET /b 200"]);
        let heads = n(head_a) + n(head_b) + 3 * n(OK0);
        assert_eq!(buckets(&st), [heads, 5, 0, 0, 10, 0, 0, 0]);
        assert_eq!(st.gap_bytes, 20);
    }

    #[test]
    fn ledger_garbage_and_resync_are_told_apart() {
        let head1 = b"GET /1 HTTP/1.1\r\n\r\n";
        let head2 = b"GET /2 HTTP/1.1\r\n\r\n";
        let mut first = b"junk\r\n".to_vec();
        first.extend_from_slice(head1);
        let mut second = b"lost-tail\r\n".to_vec();
        second.extend_from_slice(head2);
        let (_, st) = run(&[
            d(C, &first),      // 6 bytes of garbage before a request
            Action::Gap(C, 9), // a request lost at a message boundary
            d(C, &second),     // 11 bytes skipped resynchronising
        ]);
        let heads = n(head1) + n(head2);
        assert_eq!(buckets(&st), [heads, 0, 0, 0, 11, 6, 0, 0]);
    }

    #[test]
    fn ledger_blank_lines_between_messages() {
        let (_, st) = run(&[d(
            C,
            b"GET /1 HTTP/1.1\r\n\r\n\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
        )]);
        assert_eq!(buckets(&st), [38, 0, 0, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn ledger_upgrade_takes_buffered_and_later_bytes_but_not_gaps() {
        let req = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let pipelined = b"GET /nx HTTP/1.1\r\nHo"; // buffered when the 101 arrives
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let mut client = req.to_vec();
        client.extend_from_slice(pipelined);
        let mut server = resp.to_vec();
        server.extend_from_slice(b"\x81\x05hello");
        let (ex, st) = run(&[
            d(C, &client),
            d(S, &server),
            Action::Gap(S, 100),
            d(C, b"\x81\x85abcd"),
        ]);
        assert_eq!(summary(&ex), ["GET /ws 101"]);
        let tunnel = n(pipelined) + 7 + 6;
        assert_eq!(buckets(&st), [n(req) + n(resp), 0, tunnel, 0, 0, 0, 0, 0]);
        assert_eq!(st.gap_bytes, 100);
        // CONNECT: everything after the 200 is tunnelled.
        let connect = b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
        let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
        let (_, st) = run(&[
            d(C, connect),
            d(S, established),
            d(C, b"\x16\x03\x01\x00\x05hello"),
            d(S, b"\x16\x03\x03\x00\x05world"),
        ]);
        let heads = n(connect) + n(established);
        assert_eq!(buckets(&st), [heads, 0, 20, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ledger_truncated_body_and_heads_at_close_and_gap() {
        let req = b"GET / HTTP/1.1\r\n\r\n";
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        let mut resp = head.to_vec();
        resp.extend_from_slice(b"only part");
        let (ex, st) = run(&[d(C, req), d(S, &resp), Action::Fin(S)]);
        assert!(ex[0].flags.truncated);
        assert_eq!(buckets(&st), [n(req) + n(head), 9, 0, 0, 0, 0, 0, 0]);
        // A head cut by the end of the direction, then one cut by a gap.
        let (ex, st) = run(&[d(C, b"GET /x HTTP/1.1\r\nHost: h"), Action::Fin(C)]);
        assert_eq!(summary(&ex), ["GET /x -"]);
        assert!(ex[0].flags.truncated);
        assert_eq!(buckets(&st), [0, 0, 0, 0, 0, 0, 24, 0]);
        let (ex, st) = run(&[d(C, b"GET /y HTTP/1.1\r\nHo"), Action::Gap(C, 10)]);
        assert_eq!(summary(&ex), ["GET /y -"]);
        assert!(ex[0].flags.gap);
        assert_eq!(buckets(&st), [0, 0, 0, 0, 0, 0, 19, 0]);
    }
}
