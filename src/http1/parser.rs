//! Message heads: start lines (parsed here, leniently, so that lower-case
//! versions, missing URIs and HTTP/0.9 lines are understood), header blocks
//! (`httparse::parse_headers` on the fast path, a lenient line parser when
//! httparse refuses: obs-fold, invalid lines, more fields than the stack array),
//! framing facts taken from the headers, and the scanners that find the next
//! plausible message start when resynchronising. Pure functions over borrowed
//! bytes; nothing here keeps state or allocates except the owned `Headers`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use super::Annot;
use crate::config::HttpSettings;
use crate::exchange::{text_lossy, Anomaly, Headers, HttpVersion, Text};
use memchr::{memchr, memmem};
use std::ops::Range;
use std::sync::LazyLock;

/// Header fields parsed by httparse at once; longer blocks go to the lenient parser.
const FAST_HEADERS: usize = 96;
/// Header array tried first.
const SMALL_HEADERS: usize = 24;

/// Longest method token accepted as a message start when resynchronising.
const MAX_METHOD_LEN: usize = 32;

/// A parsed request line, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestLine<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: HttpVersion,
    /// Version token not exactly `HTTP/1.0` or `HTTP/1.1`.
    pub nonstandard: bool,
}

/// A parsed status line, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusLine<'a> {
    /// HTTP/1.1 when the version token does not parse (`invalid` then).
    pub version: HttpVersion,
    /// `None` when the line has no valid code (`invalid` then).
    pub status: Option<u16>,
    pub reason: &'a [u8],
    pub nonstandard: bool,
    /// Starts with `HTTP/` but is not a valid status line.
    pub invalid: bool,
}

/// The line at the start of `v` without its line ending, and the length
/// including the LF; `None` while no LF has arrived.
pub(crate) fn first_line(v: &[u8]) -> Option<(&[u8], usize)> {
    let lf = memchr(b'\n', v)?;
    let line = v.get(..lf).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, lf.saturating_add(1)))
}

/// Offset just past the empty line ending the header block, searching LF
/// positions from `from` (a resume point; pass 0 the first time).
pub(crate) fn find_head_end(v: &[u8], from: usize) -> Option<usize> {
    static LF_CRLF: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\n\r\n"));
    static LF_LF: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\n\n"));
    let tail = v.get(from..)?;
    // The first LF followed by LF or CRLF: two vectorised searches instead
    // of a stop at every line end. A bare-LF end can only come first if it
    // starts before the CRLF one, so the second search stops there.
    let crlf = LF_CRLF.find(tail);
    let lf_limit = crlf.map_or(tail.len(), |a| a.saturating_add(1).min(tail.len()));
    let lf = LF_LF.find(tail.get(..lf_limit).unwrap_or_default());
    match (lf, crlf) {
        (Some(b), _) => Some(from.saturating_add(b).saturating_add(2)),
        (None, Some(a)) => Some(from.saturating_add(a).saturating_add(3)),
        (None, None) => None,
    }
}

#[cfg(test)]
fn find_head_end_reference(v: &[u8], from: usize) -> Option<usize> {
    let tail = v.get(from..)?;
    for lf in memchr::memchr_iter(b'\n', tail) {
        let i = from.saturating_add(lf);
        match (v.get(i.saturating_add(1)), v.get(i.saturating_add(2))) {
            (Some(b'\n'), _) => return Some(i.saturating_add(2)),
            (Some(b'\r'), Some(b'\n')) => return Some(i.saturating_add(3)),
            _ => {}
        }
    }
    None
}

/// Where a resumed `find_head_end` may start without missing a terminator.
pub(crate) fn head_scan_resume(len: usize) -> usize {
    len.saturating_sub(3)
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) || *last == b'\r' {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// `HTTP/x.y` (any case) → version and whether it was non-standard.
fn parse_version(tok: &[u8]) -> Option<(HttpVersion, bool)> {
    let prefix = tok.get(..5)?;
    if !prefix.eq_ignore_ascii_case(b"HTTP/") {
        return None;
    }
    let lower = prefix != b"HTTP/";
    let rest = tok.get(5..).unwrap_or_default();
    let v = match rest {
        b"1.1" => HttpVersion::Http11,
        b"1.0" => HttpVersion::Http10,
        b"0.9" => return Some((HttpVersion::Http09, true)),
        [d, ..] if d.is_ascii_digit() => return Some((HttpVersion::Http11, true)),
        _ => return None,
    };
    Some((v, lower))
}

/// A target that makes a versionless line a plausible HTTP/0.9 request.
fn plausible_09_target(t: &[u8]) -> bool {
    matches!(t.first(), Some(b'/') | Some(b'*')) || memmem::find(t, b"://").is_some()
}

/// Request line, leniently: several spaces between parts, a target with
/// spaces, no target at all (`GET HTTP/1.1`), no version (HTTP/0.9).
pub(crate) fn parse_request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let line = trim(line);
    let sp = line.iter().position(|&b| is_ws(b)).unwrap_or(line.len());
    let method = line.get(..sp)?;
    if !method.first().is_some_and(u8::is_ascii_alphabetic) || !method.iter().all(|&b| is_tchar(b))
    {
        return None;
    }
    let rest = trim(line.get(sp..).unwrap_or_default());
    if rest.is_empty() {
        return None;
    }
    let last_sp = rest.iter().rposition(|&b| is_ws(b));
    let last = match last_sp {
        Some(i) => rest.get(i.saturating_add(1)..).unwrap_or_default(),
        None => rest,
    };
    if let Some((version, nonstandard)) = parse_version(last) {
        let target = match last_sp {
            Some(i) => trim(rest.get(..i).unwrap_or_default()),
            None => &[][..],
        };
        return Some(RequestLine {
            method,
            target,
            version,
            nonstandard,
        });
    }
    if last_sp.is_some() || !plausible_09_target(rest) {
        return None;
    }
    Some(RequestLine {
        method,
        target: rest,
        version: HttpVersion::Http09,
        nonstandard: false,
    })
}

/// Status line `HTTP/x.y SP 3DIGIT [SP reason]`, version in any case. A
/// line that starts with `HTTP/` but is not one (a code that is not three
/// digits from 100, a version that does not parse) is still the reply's
/// start line: it comes back `invalid`, with the code if one is there and
/// the rest of the line as its reason.
pub(crate) fn parse_status_line(line: &[u8]) -> Option<StatusLine<'_>> {
    valid_status_line(line).or_else(|| invalid_status_line(line))
}

/// The common case, a well-formed status line, on its own short path.
fn valid_status_line(line: &[u8]) -> Option<StatusLine<'_>> {
    let sp = line.iter().position(|&b| is_ws(b))?;
    let (version, nonstandard) = parse_version(line.get(..sp)?)?;
    let rest = trim(line.get(sp..).unwrap_or_default());
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || code.first() == Some(&b'0') {
        return None;
    }
    let after = rest.get(3..).unwrap_or_default();
    if after.first().is_some_and(|&b| !is_ws(b)) {
        return None;
    }
    let status = code.iter().fold(0u16, |a, &d| {
        a.saturating_mul(10).saturating_add(u16::from(d - b'0'))
    });
    Some(StatusLine {
        version,
        status: Some(status),
        reason: trim(after),
        nonstandard,
        invalid: false,
    })
}

#[cold]
fn invalid_status_line(line: &[u8]) -> Option<StatusLine<'_>> {
    if !line
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"HTTP/"))
    {
        return None;
    }
    let sp = line.iter().position(|&b| is_ws(b)).unwrap_or(line.len());
    let version = parse_version(line.get(..sp).unwrap_or_default());
    let rest = trim(line.get(sp..).unwrap_or_default());
    let code = rest
        .get(..3)
        .filter(|c| c.iter().all(u8::is_ascii_digit) && c.first().is_some_and(|&d| d != b'0'));
    let after = match code {
        Some(_) => rest.get(3..).unwrap_or_default(),
        None => rest,
    };
    let code_ends = after.first().is_none_or(|&b| is_ws(b));
    let status = code
        .filter(|_| code_ends)
        .map(|c| c.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0')));
    let reason = if status.is_some() { trim(after) } else { rest };
    Some(StatusLine {
        version: version.map_or(HttpVersion::Http11, |(v, _)| v),
        status,
        reason,
        nonstandard: version.is_none_or(|(_, nonstandard)| nonstandard),
        invalid: true,
    })
}

/// Could `v` (possibly incomplete) begin a status line? Used to decide early
/// that a server direction does not start with `HTTP/`.
pub(crate) fn may_start_status(v: &[u8]) -> bool {
    let n = v.len().min(5);
    match (v.get(..n), b"HTTP/".get(..n)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// Could `v` (possibly incomplete) begin a request line? A method token then a space.
pub(crate) fn may_start_request(v: &[u8]) -> bool {
    for (i, &b) in v.iter().enumerate() {
        if is_ws(b) {
            return i > 0;
        }
        if !is_tchar(b) || i >= MAX_METHOD_LEN {
            return false;
        }
    }
    true
}

/// Result of scanning for a message start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A verified start at this offset.
    Found(usize),
    /// Nothing before this offset can start a message; what follows might.
    Keep(usize),
}

fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Next plausible request line start in `v`: `METHOD SP target SP HTTP/d.d`
/// then a line end, the method in upper case (possibly in the middle of a
/// line, after garbage). `keep_max` bounds how much of an incomplete last line
/// is kept for the next call.
pub(crate) fn scan_request_start(v: &[u8], keep_max: usize) -> Scan {
    for h in memmem::find_iter(v, b" HTTP/") {
        let ver = v.get(h.saturating_add(1)..).unwrap_or_default();
        let ok = match ver {
            [_, _, _, _, _, a, b'.', c, e, ..] => {
                a.is_ascii_digit() && c.is_ascii_digit() && (*e == b'\r' || *e == b'\n')
            }
            _ => {
                // Incomplete: keep from the start of this line.
                let ls = v.get(..h).and_then(|s| memchr::memrchr(b'\n', s));
                return Scan::Keep(ls.map_or(0, |i| i.saturating_add(1)));
            }
        };
        if !ok {
            continue;
        }
        let line_start = v
            .get(..h)
            .and_then(|s| memchr::memrchr(b'\n', s))
            .map_or(0, |i| i.saturating_add(1));
        let before = v.get(line_start..h).unwrap_or_default();
        // Walk back over the target, then one or more spaces, then the method.
        let t_start = before.iter().rposition(|&b| is_ws(b));
        let Some(t_start) = t_start else {
            // `GET HTTP/1.1`: the word before the version is the method.
            if let Some(m) = method_suffix_start(before) {
                return Scan::Found(line_start.saturating_add(m));
            }
            continue;
        };
        let mut end = t_start;
        while end > 0 && before.get(end.saturating_sub(1)).is_some_and(|&b| is_ws(b)) {
            end -= 1;
        }
        let head = before.get(..end).unwrap_or_default();
        if let Some(m) = method_suffix_start(head) {
            return Scan::Found(line_start.saturating_add(m));
        }
    }
    // No candidate: keep the last incomplete line, bounded.
    let ls = memchr::memrchr(b'\n', v).map_or(0, |i| i.saturating_add(1));
    let keep_from = ls.max(v.len().saturating_sub(keep_max));
    Scan::Keep(keep_from)
}

/// Start of a method token ending `s` (upper case, digits, `-`, `_`).
fn method_suffix_start(s: &[u8]) -> Option<usize> {
    let start = s
        .iter()
        .rposition(|&b| !is_method_byte(b))
        .map_or(0, |i| i.saturating_add(1));
    let m = s.get(start..)?;
    let len_ok = (2..=MAX_METHOD_LEN).contains(&m.len());
    (len_ok && m.first().is_some_and(u8::is_ascii_uppercase)).then_some(start)
}

/// Next plausible status line start: `HTTP/d.d SP ddd` (either case).
pub(crate) fn scan_status_start(v: &[u8]) -> Scan {
    let mut from = 0usize;
    loop {
        let rest = v.get(from..).unwrap_or_default();
        let hit = memchr::memchr2(b'H', b'h', rest);
        let Some(h) = hit else {
            return Scan::Keep(v.len());
        };
        let at = from.saturating_add(h);
        let cand = v.get(at..).unwrap_or_default();
        match cand {
            [p0, p1, p2, p3, b'/', a, b'.', c, b' ', d0, d1, d2, ..] => {
                if [*p0, *p1, *p2, *p3].eq_ignore_ascii_case(b"HTTP")
                    && a.is_ascii_digit()
                    && c.is_ascii_digit()
                    && d0.is_ascii_digit()
                    && d1.is_ascii_digit()
                    && d2.is_ascii_digit()
                {
                    return Scan::Found(at);
                }
            }
            _ => {
                if cand.len() < 12 && may_start_status(cand) {
                    return Scan::Keep(at);
                }
            }
        }
        from = at.saturating_add(1);
    }
}

/// Framing facts gathered from one header block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeadInfo {
    pub content_length: Option<u64>,
    pub cl_invalid: bool,
    pub te_present: bool,
    pub te_chunked: bool,
    pub codings: Codings,
    pub upgrade: bool,
}

/// A content coding the body decoder understands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Encoding {
    #[default]
    Gzip,
    Deflate,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// Most content codings decoded on one body; a longer chain is not decoded.
pub(crate) const MAX_CODINGS: usize = 3;

/// The content codings of a body in the order they were applied (the
/// Content-Encoding list, several fields joined in order), `identity` left
/// out. Decoding undoes them last first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Codings {
    known: [Encoding; MAX_CODINGS],
    /// Codings named, `identity` excluded, known or not (saturating).
    count: u8,
    /// A coding the decoder does not understand (`br`, `zstd`, ...).
    unknown: bool,
}

impl Codings {
    #[cfg(test)]
    pub fn from_list(list: &[Encoding]) -> Codings {
        let mut c = Codings::default();
        for &e in list {
            c.push(Some(e));
        }
        c
    }

    /// The codings of one Content-Encoding value.
    #[cfg(test)]
    pub fn parse(value: &[u8]) -> Codings {
        let mut info = HeadInfo::default();
        content_encoding(&mut info, value);
        info.codings
    }

    fn push(&mut self, coding: Option<Encoding>) {
        match coding {
            Some(e) => {
                if let Some(slot) = self.known.get_mut(usize::from(self.count)) {
                    *slot = e;
                }
            }
            None => self.unknown = true,
        }
        self.count = self.count.saturating_add(1);
    }

    /// No coding at all (or only `identity`).
    pub fn is_identity(&self) -> bool {
        self.count == 0
    }

    /// More than one coding: flagged whether or not it is decoded.
    pub fn stacked(&self) -> bool {
        self.count > 1
    }

    /// The codings to undo, in the order they were applied, when every one
    /// is known and there are at most `MAX_CODINGS`; `None` otherwise.
    pub fn decodable(&self) -> Option<&[Encoding]> {
        if self.unknown {
            return None;
        }
        self.known.get(..usize::from(self.count))
    }
}

/// Parses one Content-Length value (possibly a list) into `info`.
fn content_length(info: &mut HeadInfo, value: &[u8], annot: &mut Annot) {
    for part in value.split(|&b| b == b',') {
        let p = trim(part);
        let parsed = if p.is_empty() || !p.iter().all(u8::is_ascii_digit) {
            None
        } else {
            // Like Zeek, a length must fit an i64: larger ones are invalid.
            p.iter()
                .try_fold(0u64, |a, &d| {
                    a.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })
                .filter(|&n| n <= i64::MAX as u64)
        };
        match parsed {
            None => {
                info.cl_invalid = true;
                annot.anomaly(Anomaly::InvalidContentLength);
                annot.parse_error = true;
            }
            Some(n) => {
                if p.len() > 1 && p.first() == Some(&b'0') {
                    annot.anomaly(Anomaly::ContentLengthLeadingZeros);
                }
                match info.content_length {
                    Some(prev) if prev != n => {
                        annot.anomaly(Anomaly::ConflictingContentLength);
                        annot.parse_error = true;
                    }
                    Some(_) => {}
                    None => info.content_length = Some(n),
                }
            }
        }
    }
}

fn transfer_encoding(info: &mut HeadInfo, value: &[u8], annot: &mut Annot) {
    info.te_present = true;
    let mut codings = 0u32;
    let mut last_chunked = false;
    for part in value.split(|&b| b == b',') {
        let p = trim(part);
        if p.is_empty() {
            continue;
        }
        codings = codings.saturating_add(1);
        last_chunked = p.eq_ignore_ascii_case(b"chunked");
        if last_chunked {
            info.te_chunked = true;
        }
    }
    // Several codings, or chunked not last (`chunked, identity`): accepted
    // as chunked like Zeek, but flagged.
    if codings != 1 || !last_chunked {
        annot.anomaly(Anomaly::UnusualTransferEncoding);
    }
}

/// Adds the codings of one Content-Encoding field to `info.codings`.
fn content_encoding(info: &mut HeadInfo, value: &[u8]) {
    for part in value.split(|&b| b == b',') {
        let p = trim(part);
        if p.is_empty() || p.eq_ignore_ascii_case(b"identity") {
            continue;
        }
        let coding = if p.eq_ignore_ascii_case(b"gzip") || p.eq_ignore_ascii_case(b"x-gzip") {
            Some(Encoding::Gzip)
        } else if p.eq_ignore_ascii_case(b"deflate") {
            Some(Encoding::Deflate)
        } else {
            None
        };
        info.codings.push(coding);
    }
}

/// Notes what framing needs from one field.
fn field(name: &[u8], value: &[u8], info: &mut HeadInfo, annot: &mut Annot) {
    match name.len() {
        14 if name.eq_ignore_ascii_case(b"content-length") => content_length(info, value, annot),
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
            transfer_encoding(info, value, annot)
        }
        16 if name.eq_ignore_ascii_case(b"content-encoding") => content_encoding(info, value),
        7 if name.eq_ignore_ascii_case(b"upgrade") => info.upgrade = true,
        _ => {}
    }
}

/// A header block that httparse parsed whole, with what it gave.
#[derive(Debug)]
pub(crate) struct ParsedBlock {
    /// Bytes of the block, up to and including its empty line.
    pub len: usize,
    headers: Headers,
    info: HeadInfo,
    annot: Annot,
}

impl ParsedBlock {
    /// Hands over the fields and their framing facts; flags join `annot`.
    pub fn take(self, headers: &mut Headers, annot: &mut Annot) -> HeadInfo {
        *headers = self.headers;
        annot.merge(self.annot);
        self.info
    }
}

/// What httparse made of the bytes after a start line.
#[derive(Debug)]
pub(crate) enum StrictBlock {
    /// A whole, well-formed block at the start of the bytes.
    Parsed(ParsedBlock),
    /// Not all here yet.
    Partial,
    /// Refused (obs-fold, invalid bytes, more fields than the big array)
    /// before its end: httparse refuses the whole block too, so the lenient
    /// parser takes it.
    Refused,
}

/// Parses the header block after the start line of `head` (its first
/// `line_len` bytes) with httparse. `head` may run past the block (the body,
/// the next message): httparse stops at the block's empty line, so a
/// complete head is found and parsed in one pass instead of a search for its
/// end followed by a parse.
pub(crate) fn parse_strict_block(head: &[u8], line_len: usize, s: &HttpSettings) -> StrictBlock {
    let rest = head.get(line_len..).unwrap_or_default();
    // Most messages have a couple of dozen fields: a small array is cheaper
    // to initialise per message; only a larger block pays for the big one.
    let mut small = [httparse::EMPTY_HEADER; SMALL_HEADERS];
    let mut large;
    let mut parsed = httparse::parse_headers(rest, &mut small);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) {
        large = [httparse::EMPTY_HEADER; FAST_HEADERS];
        parsed = httparse::parse_headers(rest, &mut large);
    }
    let (len, hs) = match parsed {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => return StrictBlock::Partial,
        Err(_) => return StrictBlock::Refused,
    };
    let head = head.get(..line_len.saturating_add(len)).unwrap_or_default();
    let mut info = HeadInfo::default();
    let mut annot = Annot::default();
    let mut headers = Headers::from_head(head, line_len, hs.len().min(s.max_headers));
    for h in hs {
        headers.push_from_head(
            head,
            h.name.as_bytes(),
            h.value,
            s.max_headers,
            s.max_header_bytes,
        );
        field(h.name.as_bytes(), h.value, &mut info, &mut annot);
    }
    check_field_count(&headers, s, &mut annot);
    StrictBlock::Parsed(ParsedBlock {
        len,
        headers,
        info,
        annot,
    })
}

/// Parses the header block of `head` (a start line of `line_len` bytes, then
/// the block up to the end of its empty line) into `headers` and returns the
/// framing facts. `tried` is what [`parse_strict_block`] already made of it,
/// if it ran.
pub(crate) fn parse_header_block(
    head: &[u8],
    line_len: usize,
    tried: Option<StrictBlock>,
    headers: &mut Headers,
    s: &HttpSettings,
    annot: &mut Annot,
) -> HeadInfo {
    match tried.unwrap_or_else(|| parse_strict_block(head, line_len, s)) {
        StrictBlock::Parsed(parsed) => parsed.take(headers, annot),
        StrictBlock::Partial | StrictBlock::Refused => {
            let (line, block) = head.split_at(line_len.min(head.len()));
            *headers = Headers::after_start_line(line);
            let mut info = HeadInfo::default();
            parse_lenient(block, headers, &mut info, s, annot);
            check_field_count(headers, s, annot);
            info
        }
    }
}

fn check_field_count(headers: &Headers, s: &HttpSettings, annot: &mut Annot) {
    let total = headers.len().saturating_add(headers.dropped as usize);
    if total > s.max_headers {
        annot.anomaly(Anomaly::TooManyHeaders);
        annot.truncated = true;
    }
}

/// Copies one field into `headers` and notes what framing needs from it.
fn push_field(
    name: &[u8],
    value: &[u8],
    headers: &mut Headers,
    info: &mut HeadInfo,
    s: &HttpSettings,
    annot: &mut Annot,
) {
    headers.push(name, value, s.max_headers, s.max_header_bytes);
    field(name, value, info, annot);
}

/// Line-by-line header parsing for what httparse refuses: obs-fold lines are
/// joined to the previous value, lines without a colon are skipped, names
/// with trailing spaces are trimmed (and still used for framing, as lenient
/// servers do), NUL and bare CR are kept; each case is flagged.
fn parse_lenient(
    block: &[u8],
    headers: &mut Headers,
    info: &mut HeadInfo,
    s: &HttpSettings,
    annot: &mut Annot,
) {
    let mut cur_name: &[u8] = &[];
    let mut cur_val: Vec<u8> = Vec::new();
    let mut have = false;
    let mut rest = block;
    while !rest.is_empty() {
        let (line, n) = match first_line(rest) {
            Some(x) => x,
            None => (rest.strip_suffix(b"\r").unwrap_or(rest), rest.len()),
        };
        rest = rest.get(n..).unwrap_or_default();
        if line.is_empty() {
            break;
        }
        // Only blocks httparse refused get here, so this is no extra pass
        // over well-formed heads; httparse refuses both bytes.
        if memchr::memchr2(0, b'\r', line).is_some() {
            annot.anomaly(Anomaly::NulOrBareCrInHeader);
        }
        if line.first().is_some_and(|&b| is_ws(b)) {
            if have {
                annot.anomaly(Anomaly::ObsFoldHeader);
                let t = trim(line);
                if !t.is_empty() {
                    if !cur_val.is_empty() {
                        cur_val.push(b' ');
                    }
                    cur_val.extend_from_slice(t);
                }
            } else {
                annot.anomaly(Anomaly::MalformedHeaders);
            }
            continue;
        }
        if have {
            push_field(cur_name, &cur_val, headers, info, s, annot);
            have = false;
        }
        let Some(colon) = memchr(b':', line) else {
            annot.anomaly(Anomaly::MalformedHeaders);
            continue;
        };
        let raw_name = line.get(..colon).unwrap_or_default();
        let name = trim(raw_name);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            annot.anomaly(Anomaly::MalformedHeaders);
            if name.is_empty() {
                continue;
            }
        }
        if raw_name.last().is_some_and(|&b| is_ws(b)) {
            annot.anomaly(Anomaly::WhitespaceBeforeColon);
        }
        cur_name = name;
        cur_val.clear();
        cur_val.extend_from_slice(trim(
            line.get(colon.saturating_add(1)..).unwrap_or_default(),
        ));
        have = true;
    }
    if have {
        push_field(cur_name, &cur_val, headers, info, s, annot);
    }
}

/// Percent-decodes `s` (lossy UTF-8); a `%` not followed by two hex digits stays.
pub(crate) fn percent_decode(s: &[u8]) -> Text {
    if memchr(b'%', s).is_none() {
        return text_lossy(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0usize;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hex = |o: usize| {
                s.get(i.saturating_add(o))
                    .and_then(|c| (*c as char).to_digit(16))
            };
            if let (Some(h), Some(l)) = (hex(1), hex(2)) {
                out.push((h * 16 + l) as u8);
                i = i.saturating_add(3);
                continue;
            }
        }
        out.push(b);
        i = i.saturating_add(1);
    }
    text_lossy(&out)
}

/// Path and query of a request target: origin-form as is, absolute-form
/// (`http://host/x?q`, any scheme case) from the first `/` after the authority.
#[cfg(test)]
pub(crate) fn split_target(t: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (path, query) = split_target_at(t);
    (
        t.get(path).unwrap_or_default(),
        query.map(|q| t.get(q).unwrap_or_default()),
    )
}

/// `split_target` as ranges of `t`, so that a caller holding `t` as text
/// can take the parts without validating them again.
pub(crate) fn split_target_at(t: &[u8]) -> (Range<usize>, Option<Range<usize>>) {
    let mut path = 0..t.len();
    // An origin-form target (`/...`) cannot hold a scheme: its first byte
    // is not a scheme character, so the search is skipped.
    let found = if t.first() == Some(&b'/') {
        None
    } else {
        memmem::find(t, b"://")
    };
    if let Some(p) = found {
        let scheme = t.get(..p).unwrap_or_default();
        if !scheme.is_empty()
            && scheme
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
        {
            let after_start = p.saturating_add(3).min(t.len());
            let after = t.get(after_start..).unwrap_or_default();
            let end = after
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(after.len());
            path = after_start.saturating_add(end)..t.len();
        }
    }
    let path_bytes = t.get(path.clone()).unwrap_or_default();
    match memchr(b'?', path_bytes) {
        Some(q) => {
            let q = path.start.saturating_add(q);
            (path.start..q, Some(q.saturating_add(1)..path.end))
        }
        None => (path, None),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A head found by httparse in bytes running past it ends where the
    /// end search says, and gives what parsing the block alone gives.
    #[test]
    fn strict_block_in_longer_bytes_agrees_with_end_search() {
        let s = HttpSettings::default();
        let many = |n: usize| (0..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
        let blocks = [
            "\r\n".to_string(),
            "Host: a\r\nContent-Length: 3\r\n\r\n".to_string(),
            "Host: a\nTransfer-Encoding: chunked\n\n".to_string(),
            "Host: a\r\nContent-Encoding: gzip\r\n\n".to_string(),
            format!("{}\r\n", many(30)),
            format!("{}\r\n", many(120)),
            "Host: a\r\nX: b\r\n c\r\n\r\n".to_string(),
            "Host a\r\nX: b\r\n\r\n".to_string(),
            "X: \x01\r\n\r\n".to_string(),
        ];
        for block in &blocks {
            let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
            let ll = bytes.len();
            bytes.extend_from_slice(block.as_bytes());
            let end = find_head_end(&bytes, ll - 1).unwrap();
            bytes.extend_from_slice(b"body\r\n\r\nmore\n\n");
            let (mut alone, mut alone_annot) = (Headers::default(), Annot::default());
            let alone_info =
                parse_header_block(&bytes[..end], ll, None, &mut alone, &s, &mut alone_annot);
            let tried = match parse_strict_block(&bytes, ll, &s) {
                StrictBlock::Parsed(p) => {
                    assert_eq!(ll + p.len, end, "{block:?}");
                    StrictBlock::Parsed(p)
                }
                other => other,
            };
            assert!(!matches!(tried, StrictBlock::Partial), "{block:?}");
            let (mut passed, mut passed_annot) = (Headers::default(), Annot::default());
            let passed_info = parse_header_block(
                &bytes[..end],
                ll,
                Some(tried),
                &mut passed,
                &s,
                &mut passed_annot,
            );
            assert_eq!(passed, alone, "{block:?}");
            assert_eq!(passed_info, alone_info, "{block:?}");
            assert_eq!(passed_annot, alone_annot, "{block:?}");
            // Strict or lenient, the start line is kept before the fields.
            for headers in [&passed, &alone] {
                assert_eq!(headers.start_line(), b"GET / HTTP/1.1\r\n", "{block:?}");
            }
        }
        let cut = b"Host: a\r\nX: b\r\n";
        assert!(matches!(
            parse_strict_block(cut, 0, &s),
            StrictBlock::Partial
        ));
    }

    #[test]
    fn request_lines() {
        let r = parse_request_line(b"GET /a?b HTTP/1.1").unwrap();
        assert_eq!(
            (r.method, r.target, r.version),
            (&b"GET"[..], &b"/a?b"[..], HttpVersion::Http11)
        );
        let r = parse_request_line(b"GET   /a   HTTP/1.0").unwrap();
        assert_eq!(r.target, b"/a");
        assert_eq!(r.version, HttpVersion::Http10);
        let r = parse_request_line(b"GET HTTP/1.1").unwrap();
        assert_eq!(r.target, b"");
        let r = parse_request_line(b"GET /x").unwrap();
        assert_eq!(r.version, HttpVersion::Http09);
        let r = parse_request_line(b"get /x http/1.1").unwrap();
        assert!(r.nonstandard);
        assert!(parse_request_line(b"hello world").is_none());
        assert!(parse_request_line(b".... GET /txt HTTP/1.1").is_none());
        assert!(parse_request_line(b"").is_none());
    }

    #[test]
    fn status_lines() {
        let s = parse_status_line(b"HTTP/1.1 200 OK").unwrap();
        assert_eq!(
            (s.status, s.reason, s.nonstandard, s.invalid),
            (Some(200), &b"OK"[..], false, false)
        );
        let s = parse_status_line(b"http/1.1 200 OK").unwrap();
        assert!(s.nonstandard && !s.invalid);
        let s = parse_status_line(b"HTTP/1.0 404").unwrap();
        assert_eq!((s.status, s.invalid), (Some(404), false));
        assert!(parse_status_line(b"HTTX/1.1 200 OK").is_none());
        assert!(parse_status_line(b"HTTP").is_none());
        // Starts like a status line but is not one: still the reply's
        // start line, without a status.
        for (line, reason) in [
            (&b"HTTP/1.1 20 OK"[..], &b"20 OK"[..]),
            (b"HTTP/1.1 abc OK", b"abc OK"),
            (b"HTTP/1.1 200OK", b"200OK"),
            (b"HTTP/1.1 099 Low", b"099 Low"),
            (b"HTTP/1.1", b""),
        ] {
            let s = parse_status_line(line).unwrap();
            assert_eq!(
                (s.status, s.invalid, s.reason),
                (None, true, reason),
                "{line:?}"
            );
            assert_eq!(s.version, HttpVersion::Http11);
        }
        // A broken version keeps a valid code (as Zeek reads it).
        let s = parse_status_line(b"HTTP/!.4 206 Partial").unwrap();
        assert_eq!(
            (s.status, s.invalid, s.nonstandard, s.reason),
            (Some(206), true, true, &b"Partial"[..])
        );
    }

    #[test]
    fn head_end_search_matches_reference() {
        // Every string over a small alphabet up to length 9, every start.
        let alphabet = [b'\r', b'\n', b'a'];
        let mut v = Vec::new();
        for len in 0..=9u32 {
            for mut code in 0..3usize.pow(len) {
                v.clear();
                for _ in 0..len {
                    v.push(alphabet[code % 3]);
                    code /= 3;
                }
                for from in 0..=v.len() + 1 {
                    assert_eq!(
                        find_head_end(&v, from),
                        find_head_end_reference(&v, from),
                        "{v:?} from {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn head_end_bare_lf_and_crlf() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nX", 0),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\n\nX", 0), Some(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
    }

    #[test]
    fn scanners() {
        assert_eq!(
            scan_request_start(b".... GET /txt HTTP/1.1\r\n", 100),
            Scan::Found(5)
        );
        assert_eq!(
            scan_request_start(b"xx\nPOST /a HTTP/1.0\n", 100),
            Scan::Found(3)
        );
        assert_eq!(
            scan_request_start(b"junk\nGET /a HTTP/1", 100),
            Scan::Keep(5)
        );
        assert_eq!(scan_request_start(b"junk junk", 100), Scan::Keep(0));
        assert_eq!(scan_status_start(b"abc HTTP/1.1 200 OK"), Scan::Found(4));
        assert_eq!(scan_status_start(b"abcHTTP/1."), Scan::Keep(3));
        assert_eq!(scan_status_start(b"abcdef"), Scan::Keep(6));
    }

    #[test]
    fn content_length_cases() {
        let s = HttpSettings::default();
        let mut a = Annot::default();
        let mut h = Headers::default();
        let i = parse_header_block(b"Content-Length: 0005\r\n\r\n", 0, None, &mut h, &s, &mut a);
        assert_eq!(i.content_length, Some(5));
        assert!(a.has(Anomaly::ContentLengthLeadingZeros));
        for bad in [
            &b"-1"[..],
            b"18446744073709551615",
            b"99999999999999999999",
            b"abc",
        ] {
            let mut a = Annot::default();
            let mut block = b"Content-Length: ".to_vec();
            block.extend_from_slice(bad);
            block.extend_from_slice(b"\r\n\r\n");
            let i = parse_header_block(&block, 0, None, &mut Headers::default(), &s, &mut a);
            assert!(i.cl_invalid && a.has(Anomaly::InvalidContentLength));
        }
        let mut a = Annot::default();
        parse_header_block(
            b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
            0,
            None,
            &mut Headers::default(),
            &s,
            &mut a,
        );
        assert!(a.has(Anomaly::ConflictingContentLength));
    }

    #[test]
    fn obs_fold_joins_value() {
        let s = HttpSettings::default();
        let mut a = Annot::default();
        let mut h = Headers::default();
        let i = parse_header_block(
            b"Host: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
            0,
            None,
            &mut h,
            &s,
            &mut a,
        );
        assert!(i.te_chunked);
        assert!(a.has(Anomaly::ObsFoldHeader));
        assert_eq!(h.get("transfer-encoding"), Some(&b"chunked"[..]));
    }

    #[test]
    fn targets() {
        assert_eq!(split_target(b"/a/b?x=1"), (&b"/a/b"[..], Some(&b"x=1"[..])));
        assert_eq!(split_target(b"HTTP://bro.org/"), (&b"/"[..], None));
        assert_eq!(split_target(b"http://h"), (&b""[..], None));
        assert_eq!(percent_decode(b"/a%20b%"), "/a b%");
    }
}
