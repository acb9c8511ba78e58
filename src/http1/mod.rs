//! HTTP/1.0 and 1.1 over one reassembled TCP connection: message framing,
//! request/response pairing, bodies, and resynchronisation after gaps. It owns
//! everything from ordered stream bytes to `Exchange`; it never sees packets,
//! sequence numbers or the flow table.
//!
//! The flow layer calls, per connection and in stream order:
//! `on_data` with the next bytes of one direction, `on_gap` when bytes were
//! lost in capture, `on_fin` when a direction ended, and `finish` once when
//! the connection is gone (closed, evicted, or the capture ended). Completed
//! exchanges are pushed to `HttpContext::out`.
//!
//! Files: `parser.rs` (start lines, header blocks, resync scanners),
//! `body.rs` (framing, de-chunking, content decoding), `state.rs`
//! (`HttpConnection`: per-direction state, pairing, gaps, tunnels),
//! `script.rs` (the stream-script harness shared by tests and fuzzing).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::config::HttpSettings;
use crate::counters;
use crate::exchange::{Anomaly, Exchange, ExchangeFlags, Exchanges};
use std::net::SocketAddr;

pub(crate) mod body;
mod inflate;
pub(crate) mod parser;
pub mod script;
mod state;

pub use body::PendingDecode;
pub use state::HttpConnection;

counters! {
    /// HTTP/1 parsing outcomes and everything the parser had to skip.
    ///
    /// Byte ledger: every byte reassembly delivered ends in exactly one
    /// bucket, so once every connection has finished (e.g. after a replay)
    ///
    /// `bytes_in = head_bytes + body_bytes + tunnel_bytes +
    /// bytes_between_messages + resync_bytes_skipped + garbage_bytes_skipped +
    /// head_bytes_truncated + stall_bytes_dropped`
    ///
    /// (before that, add the partial heads still buffered). Gap bytes are not
    /// in it: they were never delivered. See [`HttpStats::bytes_accounted`].
    pub struct HttpStats {
        /// Stream bytes delivered by reassembly (`flow.bytes_delivered`).
        bytes_in,
        /// Bytes of message heads parsed: start line, header fields, blank line.
        head_bytes,
        /// Bytes of message bodies as sent (chunk framing included); the
        /// part not kept is also counted in `body_bytes_not_kept`.
        body_bytes,
        /// Line ends and blanks before a message start, skipped (harmless).
        bytes_between_messages,
        requests,
        responses,
        exchanges,
        /// Requests that never got a response before the connection ended.
        unanswered_requests,
        /// Responses that matched no pending request.
        responses_without_request,
        /// Interim 1xx responses (not paired, not counted in `responses`).
        interim_responses,
        /// Messages whose start line or headers could not be parsed.
        parse_errors,
        /// Header blocks over `max_header_bytes`.
        headers_too_large,
        /// Header fields not kept because of `max_headers` / `max_header_bytes`.
        header_fields_dropped,
        /// Gaps reported by reassembly and their lost bytes.
        gaps,
        gap_bytes,
        /// Bytes skipped while looking for the next message start after a
        /// gap or a framing error, and heads over `max_header_bytes`.
        resync_bytes_skipped,
        /// Bytes skipped while looking for a message start after bytes that
        /// were not one (`garbage_before_message`).
        garbage_bytes_skipped,
        /// Bytes of partial message heads cut by a gap or by the end of the
        /// direction (the message is reported truncated if its start line parses).
        head_bytes_truncated,
        /// Bytes left unparsed because the parser stopped making progress
        /// (a safety net; expected to stay 0).
        stall_bytes_dropped,
        /// Body bytes not kept because of `max_body_bytes`.
        body_bytes_not_kept,
        /// Bodies whose content decoding failed or hit `max_decoded_body_bytes`.
        decompression_errors,
        decompression_limit_hits,
        /// Connections handed to the opaque state (CONNECT, Upgrade), and the
        /// delivered bytes it skipped (gaps in a tunnel are only in `gap_bytes`).
        tunnels,
        tunnel_bytes,
        /// Requests flushed unanswered because `max_pending_requests` was reached.
        pending_requests_overflow,
        /// Protocol anomalies flagged on exchanges (smuggling indicators, bad lengths, ...).
        anomalies,
    }
}

impl HttpStats {
    /// Delivered bytes with a final outcome, one bucket each. Equals
    /// `bytes_in` once no connection holds a partial head.
    pub fn bytes_accounted(&self) -> u64 {
        [
            self.head_bytes,
            self.body_bytes,
            self.tunnel_bytes,
            self.bytes_between_messages,
            self.resync_bytes_skipped,
            self.garbage_bytes_skipped,
            self.head_bytes_truncated,
            self.stall_bytes_dropped,
        ]
        .iter()
        .fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// Addresses and identity of the connection, fixed for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub flow_id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// What each call may read and write besides the connection's own state.
pub struct HttpContext<'a> {
    pub settings: &'a HttpSettings,
    pub stats: &'a mut HttpStats,
    pub out: &'a mut Exchanges,
    /// Leave building the record's text fields and the one-shot inflation of
    /// gzip bodies to whoever takes the exchanges next ([`finish_decoding`]);
    /// see `pipeline::run_worker`.
    pub defer_decoding: bool,
}

/// Builds the text fields and runs the content decoding an exchange still
/// owes (a worker deferred them, see [`HttpContext::defer_decoding`]);
/// nothing otherwise. Afterwards the exchange and `stats` are as if the
/// worker had done it.
pub fn finish_decoding(e: &mut Exchange, stats: &mut HttpStats) {
    if let Some(req) = e.request.as_mut() {
        state::finish_request_text(req);
    }
    if let Some(resp) = e.response.as_mut() {
        state::finish_response_text(resp);
    }
    let mut annot = Annot::default();
    let bodies = [
        e.request.as_mut().map(|r| &mut r.body),
        e.response.as_mut().map(|r| &mut r.body),
    ];
    for body in bodies.into_iter().flatten() {
        body::finish_pending(body, stats, &mut annot);
    }
    let added = annot.apply(e);
    stats.anomalies = stats.anomalies.saturating_add(added);
}

/// Every `Anomaly`, in declaration order: bit `i` of `Annot::anoms` is `ALL_ANOMALIES[i]`.
const ALL_ANOMALIES: [Anomaly; 26] = [
    Anomaly::GarbageBeforeMessage,
    Anomaly::MalformedHeaders,
    Anomaly::HeadersTooLarge,
    Anomaly::TooManyHeaders,
    Anomaly::InvalidContentLength,
    Anomaly::ContentLengthLeadingZeros,
    Anomaly::ConflictingContentLength,
    Anomaly::TransferEncodingWithContentLength,
    Anomaly::UnusualTransferEncoding,
    Anomaly::ObsFoldHeader,
    Anomaly::InvalidChunkSize,
    Anomaly::BodyIncomplete,
    Anomaly::DecompressionError,
    Anomaly::DecompressionLimit,
    Anomaly::ResponseWithoutRequest,
    Anomaly::PendingRequestsOverflow,
    Anomaly::NonStandardVersion,
    Anomaly::InconsistentRetransmission,
    Anomaly::NulOrBareCrInHeader,
    Anomaly::WhitespaceBeforeColon,
    Anomaly::MissingVersion,
    Anomaly::InvalidStatusLine,
    Anomaly::AfterAmbiguousFraming,
    Anomaly::StackedContentEncoding,
    Anomaly::UndecodedContentEncoding,
    Anomaly::OverlappingFragments,
];

// `Annot` keeps one bit per anomaly in a u32.
const _: () = assert!(ALL_ANOMALIES.len() <= u32::BITS as usize);

/// Flags and anomalies of one message while it is being parsed: a few bytes
/// instead of a `Vec`, turned into `ExchangeFlags` and `Exchange::anomalies`
/// when the exchange is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Annot {
    anoms: u32,
    pub gap: bool,
    pub truncated: bool,
    pub parse_error: bool,
}

impl Annot {
    pub fn anomaly(&mut self, a: Anomaly) {
        self.anoms |= 1u32 << (a as u32);
    }

    #[cfg(test)]
    pub fn has(&self, a: Anomaly) -> bool {
        self.anoms & (1u32 << (a as u32)) != 0
    }

    /// The bits of `list`, for [`Annot::has_any`].
    pub const fn mask(mut list: &[Anomaly]) -> u32 {
        let mut bits = 0u32;
        while let [first, rest @ ..] = list {
            bits |= 1u32 << (*first as u32);
            list = rest;
        }
        bits
    }

    /// Whether any anomaly of `mask` (see [`Annot::mask`]) is set.
    pub fn has_any(&self, mask: u32) -> bool {
        self.anoms & mask != 0
    }

    pub fn merge(&mut self, o: Annot) {
        self.anoms |= o.anoms;
        self.gap |= o.gap;
        self.truncated |= o.truncated;
        self.parse_error |= o.parse_error;
    }

    /// Copies everything into the exchange; returns how many anomalies were new there.
    fn apply(&self, e: &mut Exchange) -> u64 {
        let mut n = 0u64;
        // Only the set bits, lowest first (declaration order, as before).
        let mut bits = self.anoms;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(a) = ALL_ANOMALIES.get(i) {
                if !e.anomalies.contains(a) {
                    e.add_anomaly(*a);
                    n = n.saturating_add(1);
                }
            }
        }
        let f: &mut ExchangeFlags = &mut e.flags;
        f.gap |= self.gap;
        f.truncated |= self.truncated;
        f.parse_error |= self.parse_error;
        n
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_table_matches_declaration_order() {
        for (i, a) in ALL_ANOMALIES.iter().enumerate() {
            assert_eq!(*a as usize, i);
        }
    }
}
