//! The exchange record: one HTTP request paired with its response (either may be
//! missing), owned and bounded. It is the only type that leaves the flow workers;
//! everything inside it was truncated to the configured caps before it got here.
//! This module owns the record's shape and its JSON form, not how it is built
//! (that is `http1`).

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

/// Short text fields (method, host, content type, reason, ...) are stored
/// inline up to 24 bytes, so most exchanges need no allocation for them.
pub type Text = compact_str::CompactString;

/// `Text` from wire bytes, replacing invalid UTF-8 (see `lossy_str`).
pub fn text_lossy(bytes: &[u8]) -> Text {
    Text::from(lossy_str(bytes))
}

/// Wire bytes as text, borrowed when valid UTF-8 (nearly all of it): one
/// validation pass. `str::from_utf8` checks ASCII a word at a time;
/// `String::from_utf8_lossy` goes through `Utf8Chunks`, which was a sixth
/// of the JSON writer's time on headers.
fn lossy_str(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Decimal digits of `v` (ASCII) in `buf`, without allocating.
pub(crate) fn decimal_digits(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Packet time in nanoseconds since the Unix epoch. Every stage takes time from
/// here, never from the wall clock, so replays are deterministic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_secs_nanos(secs: u64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(nanos as u64),
        )
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub const fn secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
    /// Whole seconds elapsed from `earlier` to `self`, zero when time went back
    /// (captures from several interfaces are not strictly ordered).
    pub const fn secs_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000_000_000
    }
}

/// Serialised as epoch seconds with microsecond precision, Zeek's convention.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let micros = self.0 / 1_000;
        s.serialize_f64(micros as f64 / 1e6)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// Which way bytes travel inside a TCP connection once roles are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    pub const fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
    pub const fn opposite(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// HTTP version of a message as it appeared on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    /// A request line without a version, or a response without a status line.
    Http09,
    Http10,
    Http11,
}

impl HttpVersion {
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http09 => "0.9",
            HttpVersion::Http10 => "1.0",
            HttpVersion::Http11 => "1.1",
        }
    }
}

impl Serialize for HttpVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Header fields of one message in wire order, in one buffer so a message
/// costs one allocation however many headers it has: a table of spans (four
/// little-endian u32 per field: name offset and length, value offset and
/// length, relative to the text), then the text they point into. A parsed
/// header block is copied into the text whole, with one copy instead of two
/// per field. Bytes are kept as sent (they may not be UTF-8); the JSON form
/// replaces invalid sequences.
///
/// The text starts with the message's start line (`start_line`), copied
/// with the block at no extra cost: the record's fields taken from that
/// line can so be built later, off the packet path (see
/// `http1::finish_decoding`). It is not a field and counts against no cap
/// of the fields.
#[derive(Clone, Default)]
pub struct Headers {
    buf: Vec<u8>,
    /// Span slots in front of the text (`count` of them used).
    span_slots: u32,
    /// Bytes of the start line (with its line ending) at the text's start.
    line_len: u32,
    count: u32,
    /// Name and value bytes of the kept fields, what `max_bytes` limits.
    text_bytes: u32,
    /// Fields that did not fit under the caps.
    pub dropped: u32,
}

const SPAN_BYTES: usize = 16;

impl Headers {
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(fields.saturating_mul(SPAN_BYTES).saturating_add(bytes));
        buf.resize(fields.saturating_mul(SPAN_BYTES), 0);
        Headers {
            buf,
            span_slots: fields as u32,
            ..Headers::default()
        }
    }

    /// Headers whose text is `head` verbatim, a start line of `line_len`
    /// bytes and then the header block, with room for `fields` spans; fields
    /// are then added with `push_from_head`.
    pub(crate) fn from_head(head: &[u8], line_len: usize, fields: usize) -> Self {
        let mut h = Headers::with_capacity(fields, head.len());
        h.buf.extend_from_slice(head);
        h.line_len = line_len.min(head.len()) as u32;
        h
    }

    /// Empty headers after the start line `line`; fields are then added with `push`.
    pub(crate) fn after_start_line(line: &[u8]) -> Self {
        Headers::from_head(line, line.len(), 0)
    }

    /// The message's start line with its line ending, as sent; empty when
    /// the headers were not built from a message.
    pub fn start_line(&self) -> &[u8] {
        let (text, _) = self.parts();
        text.get(..self.line_len as usize).unwrap_or_default()
    }

    /// Appends a field unless that would pass `max_fields` or `max_bytes`, in
    /// which case it is counted in `dropped`. Returns whether it was kept.
    pub fn push(&mut self, name: &[u8], value: &[u8], max_fields: usize, max_bytes: usize) -> bool {
        if !self.admit(name.len() + value.len(), max_fields, max_bytes) {
            return false;
        }
        let name_at = self.text_len();
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(value);
        self.add_span(name_at, name.len(), name_at + name.len(), value.len());
        true
    }

    /// Like `push`, for a name and value that are slices of `head`, which
    /// must be the one given to `from_head`: only their position is stored.
    /// Slices from elsewhere are copied as `push` does.
    pub(crate) fn push_from_head(
        &mut self,
        head: &[u8],
        name: &[u8],
        value: &[u8],
        max_fields: usize,
        max_bytes: usize,
    ) -> bool {
        let offset_in_head = |part: &[u8]| {
            let at = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
            (at.checked_add(part.len())? <= head.len()).then_some(at)
        };
        let (Some(name_at), Some(value_at)) = (offset_in_head(name), offset_in_head(value)) else {
            return self.push(name, value, max_fields, max_bytes);
        };
        if !self.admit(name.len() + value.len(), max_fields, max_bytes) {
            return false;
        }
        self.add_span(name_at, name.len(), value_at, value.len());
        true
    }

    /// Counts a field of `bytes` name and value bytes against the caps: true
    /// when it fits (its bytes now count towards `max_bytes`), false when it
    /// does not (it now counts in `dropped`).
    fn admit(&mut self, bytes: usize, max_fields: usize, max_bytes: usize) -> bool {
        let room = max_bytes.saturating_sub(self.text_bytes as usize);
        if self.count as usize >= max_fields || bytes > room {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        // Fits in u32: max_bytes is validated to be far below 4 GiB.
        self.text_bytes += bytes as u32;
        true
    }

    fn text_start(&self) -> usize {
        self.span_slots as usize * SPAN_BYTES
    }

    fn text_len(&self) -> usize {
        self.buf.len().saturating_sub(self.text_start())
    }

    /// Doubling keeps pushes one at a time linear; parsed blocks come with
    /// the right number of slots and never get here.
    #[cold]
    fn grow_spans(&mut self) {
        let slots = self.span_slots.saturating_mul(2).max(4);
        let old_start = self.text_start();
        let grow = (slots - self.span_slots) as usize * SPAN_BYTES;
        self.buf
            .splice(old_start..old_start, std::iter::repeat_n(0, grow));
        self.span_slots = slots;
    }

    #[inline]
    fn add_span(&mut self, name_at: usize, name_len: usize, value_at: usize, value_len: usize) {
        if self.count >= self.span_slots {
            self.grow_spans();
        }
        let mut span = [0u8; SPAN_BYTES];
        let words = [name_at, name_len, value_at, value_len];
        for (dst, word) in span.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&(word as u32).to_le_bytes());
        }
        let at = self.count as usize * SPAN_BYTES;
        if let Some(slot) = self.buf.get_mut(at..at + SPAN_BYTES) {
            slot.copy_from_slice(&span);
        }
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The text the spans point into, and the spans in use.
    fn parts(&self) -> (&[u8], &[u8]) {
        let (spans, text) = self.buf.split_at(self.text_start().min(self.buf.len()));
        let used = spans.get(..self.len() * SPAN_BYTES).unwrap_or_default();
        (text, used)
    }

    /// Each field's name and value as ranges of the text.
    fn ranges(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        let (_, spans) = self.parts();
        spans.chunks_exact(SPAN_BYTES).map(|span| {
            let word = |i: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(span.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]));
                u32::from_le_bytes(w) as usize
            };
            let (name_at, value_at) = (word(0), word(2));
            (name_at..name_at + word(1), value_at..value_at + word(3))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let (text, _) = self.parts();
        self.ranges().map(move |(name, value)| {
            (
                text.get(name).unwrap_or_default(),
                text.get(value).unwrap_or_default(),
            )
        })
    }

    /// First value of the field `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let (text, _) = self.parts();
        // Lengths first: most names differ in length, and only the match's
        // value is looked at.
        let (_, value) = self.ranges().find(|(n, _)| {
            n.len() == name.len()
                && text
                    .get(n.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        })?;
        text.get(value)
    }

    /// Value of the field at `index` (in wire order among the kept fields).
    pub fn value_at(&self, index: usize) -> Option<&[u8]> {
        self.iter().nth(index).map(|(_, v)| v)
    }

    /// First value of `name` as text, lossily converted.
    pub fn get_str(&self, name: &str) -> Option<Text> {
        self.get(name).map(text_lossy)
    }

    /// Replaces the values `replace` returns a new one for (given each
    /// field's name and value); names, order and the dropped count stay.
    /// Nothing is rebuilt when nothing is replaced.
    pub fn replace_values(&mut self, mut replace: impl FnMut(&[u8], &[u8]) -> Option<String>) {
        let new: Vec<Option<String>> = self.iter().map(|(n, v)| replace(n, v)).collect();
        if new.iter().all(Option::is_none) {
            return;
        }
        let mut rebuilt = Headers::with_capacity(self.len(), self.text_len());
        for ((name, value), new) in self.iter().zip(&new) {
            let value = new.as_deref().map_or(value, str::as_bytes);
            rebuilt.push(name, value, usize::MAX, u32::MAX as usize);
        }
        rebuilt.dropped = self.dropped;
        *self = rebuilt;
    }
}

/// Equal when the kept fields and the dropped count are: how the text was
/// laid out (a copied block or pushed fields) does not matter.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.dropped == other.dropped && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (lossy_str(n), lossy_str(v))))
            .finish()?;
        if self.dropped > 0 {
            write!(f, " (+{} dropped)", self.dropped)?;
        }
        Ok(())
    }
}

/// `[[name, value], ...]`: order and duplicates matter for security analysis,
/// so this is a list of pairs rather than a map.
impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        let (text, _) = self.parts();
        // One UTF-8 check for the whole text instead of two per field (they
        // were a tenth of the JSON writer's instructions): a range of valid
        // text is valid where both ends are character boundaries, which
        // `str::get` checks.
        let valid = std::str::from_utf8(text).ok();
        for (name, value) in self.ranges() {
            let checked = valid.and_then(|t| Some((t.get(name.clone())?, t.get(value.clone())?)));
            match checked {
                Some(pair) => seq.serialize_element(&pair)?,
                None => {
                    let part = |r: Range<usize>| lossy_str(text.get(r).unwrap_or_default());
                    seq.serialize_element(&(part(name), part(value)))?
                }
            }
        }
        seq.end()
    }
}

/// A message body as seen on the wire and after content decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Body {
    /// Bytes of the body on the wire (after de-chunking, before content decoding).
    pub wire_len: u64,
    /// Bytes after content decoding (equal to `wire_len` without Content-Encoding).
    pub decoded_len: u64,
    /// `Content-Encoding` that was decoded, if any (a chain as listed:
    /// `gzip, gzip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<Text>,
    /// The decoded body, up to the configured cap; only serialised when the
    /// output asks for bodies.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_lossy"
    )]
    pub data: Vec<u8>,
    /// `data` holds less than `decoded_len` bytes (cap reached, gap, or decoder stop).
    pub data_truncated: bool,
    /// Content decoding not done yet: a worker left it to the writer, which
    /// finishes it (`http1::finish_decoding`) before anything reads the body.
    #[serde(skip)]
    pub pending_decode: Option<Box<crate::http1::PendingDecode>>,
}

fn serialize_lossy<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lossy_str(data))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// First byte of the request line.
    pub ts: Timestamp,
    /// Last byte of the body (or of the headers when there is none).
    pub end_ts: Timestamp,
    pub method: Text,
    /// The request target exactly as sent (lossily converted when not UTF-8).
    pub uri: Text,
    /// Percent-decoded path of the target, without the query.
    pub path: Text,
    /// Percent-decoded query string, without the `?`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<Text>,
    pub version: HttpVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Text>,
    pub headers: Headers,
    pub body: Body,
    /// The text fields above (method to content type) not built yet: a
    /// worker left them to the writer, which builds them from the request
    /// line kept in `headers` (`http1::finish_decoding`) before anything
    /// reads them.
    #[serde(skip)]
    pub pending_text: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    /// First byte of the status line (of the body for HTTP/0.9, which has none).
    pub ts: Timestamp,
    /// Last byte of the body.
    pub end_ts: Timestamp,
    /// "1.1" when a status line's version did not parse (`invalid_status_line`).
    pub version: HttpVersion,
    /// `None` (JSON `null`) when the reply had no valid status line: an
    /// HTTP/0.9 reply (`version` "0.9"), bytes without a status line, or a
    /// line starting `HTTP/` whose code is not three digits from 100
    /// (`invalid_status_line`).
    pub status: Option<u16>,
    pub reason: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Text>,
    pub headers: Headers,
    pub body: Body,
    /// `reason` and `content_type` not built yet; see `Request::pending_text`.
    #[serde(skip)]
    pub pending_text: bool,
}

/// Heap bytes of a text field: nothing while it fits inline.
fn text_heap_bytes(text: &Text) -> usize {
    if text.is_heap_allocated() {
        text.capacity()
    } else {
        0
    }
}

impl Headers {
    /// Heap bytes of the field buffer.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }
}

impl Body {
    /// Heap bytes of the kept bytes and of compressed bytes still to decode.
    pub fn heap_bytes(&self) -> usize {
        let pending = self.pending_decode.as_ref().map_or(0, |p| p.heap_bytes());
        self.data.capacity().saturating_add(pending)
    }
}

impl Request {
    pub fn heap_bytes(&self) -> usize {
        let texts = [&self.method, &self.uri, &self.path]
            .into_iter()
            .chain(self.query.as_ref())
            .chain(self.host.as_ref())
            .chain(self.content_type.as_ref())
            .map(text_heap_bytes)
            .sum::<usize>();
        texts
            .saturating_add(self.headers.heap_bytes())
            .saturating_add(self.body.heap_bytes())
    }
}

impl Response {
    pub fn heap_bytes(&self) -> usize {
        let texts = [&self.reason]
            .into_iter()
            .chain(self.content_type.as_ref())
            .map(text_heap_bytes)
            .sum::<usize>();
        texts
            .saturating_add(self.headers.heap_bytes())
            .saturating_add(self.body.heap_bytes())
    }
}

/// Anomalies seen while parsing an exchange: protocol violations, evasion
/// indicators, and caps that cut something off. Data, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// Bytes that are not HTTP where a message should start; skipped to the next message.
    GarbageBeforeMessage,
    /// Start line or header block httparse rejected.
    MalformedHeaders,
    /// Header block longer than `max_header_bytes`.
    HeadersTooLarge,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// Content-Length not a plain decimal that fits in u64 (negative, overflow, junk).
    InvalidContentLength,
    /// Content-Length with leading zeros.
    ContentLengthLeadingZeros,
    /// Several Content-Length fields (or a list) with different values.
    ConflictingContentLength,
    /// Both Transfer-Encoding and Content-Length: a request-smuggling indicator.
    TransferEncodingWithContentLength,
    /// Transfer-Encoding with several codings or an unknown one.
    UnusualTransferEncoding,
    /// Obsolete line folding in a header (RFC 9112 §5.2).
    ObsFoldHeader,
    /// Chunk size line malformed or overflowing u64.
    InvalidChunkSize,
    /// Body ended by the capture or connection before its declared length.
    BodyIncomplete,
    /// Content decoding (gzip, deflate) failed part-way.
    DecompressionError,
    /// Decoded body passed `max_decoded_body_bytes`; decoding stopped there.
    DecompressionLimit,
    /// A response that no pending request matched.
    ResponseWithoutRequest,
    /// More pipelined requests than `max_pending_requests`; the oldest was flushed unanswered.
    PendingRequestsOverflow,
    /// A lower-case or otherwise non-standard version token.
    NonStandardVersion,
    /// Bytes of this direction were retransmitted (or overlapped) with
    /// different content — a TCP evasion indicator. The first copy was kept;
    /// the host may have kept the other (`flow.overlaps_inconsistent`).
    InconsistentRetransmission,
    /// A NUL or a CR not followed by LF in a header field (RFC 9112 §2.2,
    /// §5.5): servers that cut the value there and servers that keep it
    /// see different headers. The field is kept as sent.
    NulOrBareCrInHeader,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1 requires
    /// a 400): `Transfer-Encoding : chunked` is honoured by some servers and
    /// ignored by others. The name is read without the whitespace.
    WhitespaceBeforeColon,
    /// A request line without an HTTP version followed by header fields:
    /// neither HTTP/0.9 (one line) nor HTTP/1.x. The fields are kept.
    MissingVersion,
    /// A reply line starting `HTTP/` whose version or code does not parse
    /// (a code not three digits from 100): kept as a response with status
    /// `null` and the `parse_error` flag.
    InvalidStatusLine,
    /// A message after one whose framing was ambiguous (conflicting or
    /// invalid Content-Length, Transfer-Encoding with Content-Length) on the
    /// same connection: the two ends may disagree on where it starts, so it
    /// may be smuggled.
    AfterAmbiguousFraming,
    /// More than one content coding (`Content-Encoding: gzip, gzip`): never
    /// needed by a legitimate server, a way to hide a body from inspection.
    /// Decoded when all codings are known and there are at most three.
    StackedContentEncoding,
    /// A body whose Content-Encoding was not decoded (an unknown coding
    /// such as `br`, or more than three codings): `data` holds the bytes
    /// as sent.
    UndecodedContentEncoding,
    /// IP fragments of a segment of this direction overlapped with other
    /// bytes (or a teardrop end): hosts differ in which copy they keep, so
    /// the sensor dropped the datagram (RFC 5722) and this message may not
    /// be what the server read (`decode.fragment_overlaps`).
    OverlappingFragments,
}

/// Flags every consumer checks before trusting an exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeFlags {
    /// Bytes were lost in capture inside or just before this exchange.
    pub gap: bool,
    /// Some part (headers, body) was cut by a cap or by the end of the stream.
    pub truncated: bool,
    /// The request got no response before the flow ended.
    pub unanswered: bool,
    /// A message of this exchange could not be parsed cleanly.
    pub parse_error: bool,
}

/// One HTTP request/response pair. A `None` request means a response that
/// matched no request (desync, or its request was lost in a gap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Unique per flow within one run (ordinal of the flow in the capture).
    pub flow_id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub request: Option<Request>,
    pub response: Option<Response>,
    /// Upgrade/CONNECT: after this exchange the connection carried another protocol.
    pub tunnel: bool,
    pub flags: ExchangeFlags,
    /// Sorted, without duplicates.
    pub anomalies: Vec<Anomaly>,
}

/// Exchanges as the HTTP parser emits them and workers hand them on. Each is
/// boxed when its request starts (a response without one: when it ends) and
/// filled in place, so the 600-byte record is not copied again on its way to
/// the writer and back (those copies were a twelfth of a worker's time).
pub type Exchanges = Vec<Box<Exchange>>;

impl Exchange {
    pub fn add_anomaly(&mut self, anomaly: Anomaly) {
        if let Err(pos) = self.anomalies.binary_search(&anomaly) {
            self.anomalies.insert(pos, anomaly);
        }
    }

    /// Time of the first byte of the exchange.
    pub fn start_ts(&self) -> Timestamp {
        match (&self.request, &self.response) {
            (Some(r), _) => r.ts,
            (None, Some(r)) => r.ts,
            (None, None) => Timestamp::default(),
        }
    }

    /// Heap bytes this record holds besides its own box: header buffers,
    /// kept bodies, text fields that did not fit inline. What the memory
    /// budget charges for an exchange while a worker holds it or it waits
    /// for the writer (capacities, not lengths: that is what is allocated).
    pub fn heap_bytes(&self) -> usize {
        let request = self.request.as_ref().map_or(0, Request::heap_bytes);
        let response = self.response.as_ref().map_or(0, Response::heap_bytes);
        request
            .saturating_add(response)
            .saturating_add(self.anomalies.capacity() * std::mem::size_of::<Anomaly>())
    }

    /// Drops kept and still-compressed body bytes under memory pressure,
    /// flagging what lost them (`truncated`, `data_truncated`); returns the
    /// heap bytes freed.
    pub fn drop_kept_bodies(&mut self) -> usize {
        let mut freed = 0usize;
        let bodies = [
            self.request.as_mut().map(|r| &mut r.body),
            self.response.as_mut().map(|r| &mut r.body),
        ];
        for body in bodies.into_iter().flatten() {
            let held = body.heap_bytes();
            if held > 0 {
                freed = freed.saturating_add(held);
                body.data = Vec::new();
                body.pending_decode = None;
                body.data_truncated = true;
                self.flags.truncated = true;
            }
        }
        freed
    }

    /// Drops kept body bytes, for output that does not want them.
    pub fn strip_bodies(&mut self) {
        if let Some(r) = self.request.as_mut() {
            r.body.data = Vec::new();
        }
        if let Some(r) = self.response.as_mut() {
            r.body.data = Vec::new();
        }
    }
}

/// Flat JSON line: the fields investigators grep for first, then the details.
impl Serialize for Exchange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("ts", &self.start_ts())?;
        m.serialize_entry("flow_id", &self.flow_id)?;
        m.serialize_entry("client", &AddrText(self.client))?;
        m.serialize_entry("server", &AddrText(self.server))?;
        if let Some(r) = &self.request {
            m.serialize_entry("method", &r.method)?;
            m.serialize_entry("uri", &r.uri)?;
        }
        // A response without a status line (HTTP/0.9, a non-HTTP server)
        // has status `null`; an exchange without a response has none.
        if let Some(r) = &self.response {
            m.serialize_entry("status", &r.status)?;
        }
        m.serialize_entry("request", &self.request)?;
        m.serialize_entry("response", &self.response)?;
        if self.tunnel {
            m.serialize_entry("tunnel", &true)?;
        }
        m.serialize_entry("flags", &self.flags)?;
        if !self.anomalies.is_empty() {
            m.serialize_entry("anomalies", &self.anomalies)?;
        }
        m.end()
    }
}

/// An address as serde writes it (`1.2.3.4:80`), without `core::fmt` for
/// IPv4: serde formats through `Display`, which was a tenth of the JSON
/// writer's instructions (two addresses per exchange).
struct AddrText(SocketAddr);

impl Serialize for AddrText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let SocketAddr::V4(v4) = self.0 else {
            return self.0.serialize(s);
        };
        if !s.is_human_readable() {
            return self.0.serialize(s);
        }
        let mut text = AsciiBuf::default();
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                text.push(b'.');
            }
            text.decimal(octet.into());
        }
        text.push(b':');
        text.decimal(v4.port());
        s.serialize_str(text.as_str())
    }
}

/// Room for the longest `a.b.c.d:port`.
#[derive(Default)]
struct AsciiBuf {
    bytes: [u8; 21],
    len: usize,
}

impl AsciiBuf {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn decimal(&mut self, n: u16) {
        let mut digits = [0u8; 20];
        for &d in decimal_digits(n.into(), &mut digits) {
            self.push(d);
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_serialise_each_field_as_its_own_lossy_text() {
        let long = "v".repeat(20_000);
        let fields: [(&[u8], &[u8]); 6] = [
            (b"Host", b"example.com"),
            (b"X-Long", long.as_bytes()),
            (b"X-Utf8", "caf\u{e9} \u{d55c}".as_bytes()),
            (b"X-Bad", b"a\xff\xfeb"),
            // Valid UTF-8 only across the name/value boundary: `é` split.
            (b"X-Split\xc3", b"\xa9"),
            (b"", b""),
        ];
        let mut headers = Headers::default();
        for (name, value) in fields {
            assert!(headers.push(name, value, 10, 1 << 20));
        }
        let expected: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| (lossy_str(n).into_owned(), lossy_str(v).into_owned()))
            .collect();
        assert_eq!(
            serde_json::to_string(&headers).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(headers.iter().collect::<Vec<_>>(), fields.to_vec());
    }

    #[test]
    fn addresses_serialise_like_serde() {
        let addrs = [
            "0.0.0.0:0",
            "1.2.3.4:80",
            "255.255.255.255:65535",
            "10.0.0.1:8080",
            "[2001:db8::1]:443",
        ];
        for text in addrs {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(
                serde_json::to_string(&AddrText(addr)).unwrap(),
                serde_json::to_string(&addr).unwrap()
            );
        }
    }

    #[test]
    fn headers_keep_order_and_respect_caps() {
        let mut h = Headers::default();
        assert!(h.push(b"Host", b"a", 2, 100));
        assert!(h.push(b"host", b"b", 2, 100));
        assert!(!h.push(b"X", b"c", 2, 100));
        assert_eq!(h.dropped, 1);
        assert_eq!(h.get("HOST"), Some(&b"a"[..]));
        let mut small = Headers::default();
        assert!(!small.push(b"Name", b"value", 10, 5));
        assert_eq!(small.len(), 0);
    }

    #[test]
    fn headers_from_a_head_match_pushed_ones() {
        // A field dropped by the cap leaves invalid UTF-8 in the copied text;
        // the kept fields must still serialise as their own text.
        let line = b"GET /\xff HTTP/1.1\r\n";
        let head = b"GET /\xff HTTP/1.1\r\nHost: a\r\nX-Split: \xc3\xa9\r\nX-Bad: \xff\r\n\r\n";
        let fields: [(&[u8], &[u8]); 3] = [
            (b"Host", b"a"),
            (b"X-Split", b"\xc3\xa9"),
            (b"X-Bad", b"\xff"),
        ];
        let slices = |name: &str| {
            let at = head
                .windows(name.len())
                .position(|w| w == name.as_bytes())
                .unwrap();
            let end = at + head[at..].iter().position(|&b| b == b'\r').unwrap();
            (&head[at..at + name.len()], &head[at + name.len() + 2..end])
        };
        let mut parsed = Headers::from_head(head, line.len(), 3);
        let mut pushed = Headers::after_start_line(line);
        for (name, value) in fields {
            let (n, v) = slices(std::str::from_utf8(name).unwrap());
            assert_eq!((n, v), (name, value));
            let max_bytes = 14; // room for Host and X-Split only
            assert_eq!(
                parsed.push_from_head(head, n, v, 3, max_bytes),
                pushed.push(name, value, 3, max_bytes)
            );
        }
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed.dropped, 1);
        assert_eq!(parsed, pushed);
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"[["Host","a"],["X-Split","é"]]"#
        );
        // A slice from outside the head is copied, not referenced.
        let elsewhere = b"X-Other".to_vec();
        assert!(parsed.push_from_head(head, &elsewhere, b"v", 4, 100));
        assert_eq!(parsed.value_at(2), Some(&b"v"[..]));
        assert_eq!(parsed.get("x-other"), Some(&b"v"[..]));
        // The start line is kept as sent, whichever way the fields came.
        for headers in [&parsed, &pushed] {
            assert_eq!(headers.start_line(), line);
        }
        assert_eq!(Headers::default().start_line(), b"");
    }

    #[test]
    fn headers_pushed_one_by_one_grow_past_their_slots() {
        let mut h = Headers::with_capacity(1, 4);
        let names: Vec<String> = (0..40).map(|i| format!("X-{i}")).collect();
        for name in &names {
            assert!(h.push(name.as_bytes(), name.as_bytes(), 64, 1 << 16));
        }
        assert_eq!(h.len(), 40);
        assert!(h
            .iter()
            .eq(names.iter().map(|n| (n.as_bytes(), n.as_bytes()))));
    }

    #[test]
    fn timestamp_serialises_as_epoch_seconds() {
        let ts = Timestamp::from_secs_nanos(1_258_577_884, 844_000_000);
        assert_eq!(serde_json::to_string(&ts).unwrap(), "1258577884.844");
    }

    /// No status line is `null`, not 0, at the top and in the response;
    /// no response at all is no `status`.
    #[test]
    fn a_reply_without_status_line_has_status_null() {
        let response = |status: Option<u16>| Response {
            ts: Timestamp(2),
            end_ts: Timestamp(3),
            version: HttpVersion::Http09,
            status,
            reason: Text::default(),
            content_type: None,
            headers: Headers::default(),
            body: Body::default(),
            pending_text: false,
        };
        let mut e = Exchange {
            flow_id: 1,
            client: "10.0.0.1:1000".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
            request: None,
            response: Some(response(None)),
            tunnel: false,
            flags: ExchangeFlags::default(),
            anomalies: Vec::new(),
        };
        let json = |e: &Exchange| serde_json::to_value(e).unwrap();
        let v = json(&e);
        assert!(v["status"].is_null() && v.as_object().unwrap().contains_key("status"));
        assert!(v["response"]["status"].is_null());
        e.response = Some(response(Some(200)));
        assert_eq!(json(&e)["status"], 200);
        assert_eq!(json(&e)["response"]["status"], 200);
        e.response = None;
        assert!(!json(&e).as_object().unwrap().contains_key("status"));
    }

    #[test]
    fn anomalies_stay_sorted_and_unique() {
        let mut e = Exchange {
            flow_id: 1,
            client: "10.0.0.1:1000".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
            request: None,
            response: None,
            tunnel: false,
            flags: ExchangeFlags::default(),
            anomalies: Vec::new(),
        };
        e.add_anomaly(Anomaly::ObsFoldHeader);
        e.add_anomaly(Anomaly::GarbageBeforeMessage);
        e.add_anomaly(Anomaly::ObsFoldHeader);
        assert_eq!(
            e.anomalies,
            vec![Anomaly::GarbageBeforeMessage, Anomaly::ObsFoldHeader]
        );
    }
}
