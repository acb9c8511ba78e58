//! Protocol-anomaly detector: request-smuggling and desync indicators the
//! HTTP parser already flagged on an exchange become Detection events. It
//! runs on the flow worker right after an exchange is completed, so it does
//! only cheap work: a scan of the (usually empty) anomaly list, and an event
//! built only when something matched.
//!
//! OWASP mapping: ambiguous message framing (both Transfer-Encoding and
//! Content-Length, conflicting or malformed lengths, obfuscated
//! Transfer-Encoding, obsolete folding, bad chunk sizes, whitespace before a
//! colon, NUL or bare CR in a field, a request line without its version,
//! and any message after ambiguous framing) is accepted by some server in
//! the chain, which is API8:2023 Security Misconfiguration. A response
//! without a request or bytes before a message are desync symptoms that a
//! lossy capture also produces, and stacked content codings hide a body
//! from inspection rather than confuse a server: they carry no OWASP
//! category and a lower confidence. Anomalies that are no attack (caps, a
//! broken status line, a coding the sensor cannot undo) have no rule.

use crate::event::{
    epoch_ms, Actor, EndpointRef, Event, EventKind, Evidence, NetEndpoint, Owasp, Severity,
};
use crate::exchange::{Anomaly, Exchange, Headers};

/// What one indicator means.
struct Rule {
    anomaly: Anomaly,
    rule: &'static str,
    severity: Severity,
    confidence: u8,
    owasp: Option<Owasp>,
    title: &'static str,
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        anomaly: Anomaly::TransferEncodingWithContentLength,
        rule: "protocol.te_with_content_length",
        severity: Severity::High,
        confidence: 80,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP message with both Transfer-Encoding and Content-Length",
        why: "A proxy and a back end that disagree on which header frames the body can be made to \
              read the rest as a second, hidden request (request smuggling, CL.TE / TE.CL).",
    },
    Rule {
        anomaly: Anomaly::ConflictingContentLength,
        rule: "protocol.conflicting_content_length",
        severity: Severity::High,
        confidence: 80,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP message with conflicting Content-Length values",
        why: "Servers that pick different Content-Length values split the stream differently, \
              which lets a request be smuggled past a front end.",
    },
    Rule {
        anomaly: Anomaly::UnusualTransferEncoding,
        rule: "protocol.unusual_transfer_encoding",
        severity: Severity::High,
        confidence: 70,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP message with an unusual or obfuscated Transfer-Encoding",
        why: "Obfuscated Transfer-Encoding values are the classic way to make one server honour \
              chunked framing while another ignores it (TE.TE request smuggling).",
    },
    Rule {
        anomaly: Anomaly::InvalidContentLength,
        rule: "protocol.invalid_content_length",
        severity: Severity::Medium,
        confidence: 70,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP message with an invalid Content-Length",
        why: "A Content-Length that is not a plain number is parsed differently by different \
              servers, a precondition for request smuggling and cache poisoning.",
    },
    Rule {
        anomaly: Anomaly::ContentLengthLeadingZeros,
        rule: "protocol.content_length_leading_zeros",
        severity: Severity::Medium,
        confidence: 60,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP message with leading zeros in Content-Length",
        why: "Some parsers read leading zeros as octal or reject them, so the body length is \
              ambiguous along the proxy chain.",
    },
    Rule {
        anomaly: Anomaly::InvalidChunkSize,
        rule: "protocol.invalid_chunk_size",
        severity: Severity::Medium,
        confidence: 60,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP chunked body with a malformed chunk size",
        why: "Malformed or overflowing chunk sizes are used to desynchronise servers that \
              tolerate them differently.",
    },
    Rule {
        anomaly: Anomaly::ObsFoldHeader,
        rule: "protocol.obs_fold_header",
        severity: Severity::Medium,
        confidence: 60,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP header with obsolete line folding",
        why: "RFC 9112 forbids folded headers; servers that unfold them and servers that do not \
              see different headers, which hides Transfer-Encoding from one of them.",
    },
    Rule {
        anomaly: Anomaly::WhitespaceBeforeColon,
        rule: "protocol.whitespace_before_colon",
        severity: Severity::High,
        confidence: 70,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP header with whitespace before the colon",
        why:
            "RFC 9112 requires a 400 for `Name : value`, yet some servers strip the space and use \
              the field: `Transfer-Encoding : chunked` is then framing for one server and an \
              unknown header for the next (request smuggling).",
    },
    Rule {
        anomaly: Anomaly::NulOrBareCrInHeader,
        rule: "protocol.nul_or_bare_cr_in_header",
        severity: Severity::Medium,
        confidence: 60,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP header with a NUL or a bare CR",
        why: "Servers that end a field at a NUL or a lone CR and servers that keep the bytes read \
              different headers; a bare CR is also read as a line end by some, which hides a \
              header from the others.",
    },
    Rule {
        anomaly: Anomaly::MissingVersion,
        rule: "protocol.missing_version",
        severity: Severity::Medium,
        confidence: 60,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP request line without a version, followed by header fields",
        why: "A server that reads it as HTTP/0.9 ignores the header fields that a server reading \
              it as HTTP/1.x honours, so the two disagree on the request and on where the next \
              one starts.",
    },
    Rule {
        anomaly: Anomaly::AfterAmbiguousFraming,
        rule: "protocol.after_ambiguous_framing",
        severity: Severity::Medium,
        confidence: 50,
        owasp: Some(Owasp::SecurityMisconfiguration),
        title: "HTTP message after ambiguous framing on the same connection",
        why: "An earlier message on this connection had conflicting or invalid lengths; servers \
              that framed it differently disagree on where this message starts, which is how a \
              smuggled request reaches the back end.",
    },
    Rule {
        anomaly: Anomaly::StackedContentEncoding,
        rule: "protocol.stacked_content_encoding",
        severity: Severity::Medium,
        confidence: 50,
        owasp: None,
        title: "HTTP body compressed several times",
        why: "No legitimate client or server needs `Content-Encoding: gzip, gzip`; stacking \
              codings hides a body from inspection that decodes only one layer.",
    },
    Rule {
        anomaly: Anomaly::InconsistentRetransmission,
        rule: "protocol.inconsistent_retransmission",
        severity: Severity::Medium,
        confidence: 60,
        owasp: None,
        title: "TCP retransmission carrying different bytes",
        why: "Overlapping segments with different content are a classic way to show a monitor \
              one request while the server reassembles another (TCP evasion).",
    },
    Rule {
        anomaly: Anomaly::OverlappingFragments,
        rule: "protocol.overlapping_fragments",
        severity: Severity::Medium,
        confidence: 60,
        owasp: None,
        title: "IP fragments overlapping with different bytes",
        why: "Fragments that overlap with other content (or a teardrop end) are reassembled \
              differently by different hosts: a way to show a monitor one request while the \
              server reads another (IP evasion). The sensor dropped the datagram.",
    },
    Rule {
        anomaly: Anomaly::ResponseWithoutRequest,
        rule: "protocol.response_without_request",
        severity: Severity::Low,
        confidence: 40,
        owasp: None,
        title: "HTTP response without a matching request",
        why: "An extra response on a connection is what a smuggled request produces; it is also \
              what a capture that missed packets produces.",
    },
    Rule {
        anomaly: Anomaly::GarbageBeforeMessage,
        rule: "protocol.garbage_before_message",
        severity: Severity::Low,
        confidence: 40,
        owasp: None,
        title: "Bytes that are not HTTP before a message",
        why: "Leftover bytes between messages show the two ends disagreed on where a message \
              ended (desync); a capture gap can cause it too.",
    },
];

fn is_framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

/// Header names, with values only for the framing headers.
fn redacted(headers: &Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let value = if is_framing(n) {
                String::from_utf8_lossy(v).chars().take(128).collect()
            } else {
                String::new()
            };
            (
                String::from_utf8_lossy(n).chars().take(128).collect(),
                value,
            )
        })
        .collect()
}

fn count_framing(headers: &Headers, name: &str) -> u64 {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .count() as u64
}

/// Detection events for every smuggling / desync indicator on `exchange`
/// (none for a clean exchange, the common case), appended to `out`.
pub fn check(exchange: &Exchange, sensor: &str, out: &mut Vec<Event>) {
    if exchange.anomalies.is_empty() {
        return;
    }
    let matched: Vec<&Rule> = RULES
        .iter()
        .filter(|r| exchange.anomalies.contains(&r.anomaly))
        .collect();
    if matched.is_empty() {
        return;
    }
    let time = epoch_ms(exchange.start_ts());
    let req = exchange.request.as_ref();
    let resp = exchange.response.as_ref();
    let method = req.map(|r| r.method.to_string()).unwrap_or_default();
    let path = req.map(|r| r.path.to_string()).unwrap_or_default();
    let host = req
        .and_then(|r| r.host.as_ref())
        .map(|h| h.to_string())
        .unwrap_or_else(|| exchange.server.ip().to_string());
    let evidence = Evidence {
        time,
        flow_id: exchange.flow_id,
        method: method.clone(),
        uri: req
            .map(|r| r.uri.chars().take(2048).collect())
            .unwrap_or_default(),
        status: resp.and_then(|r| r.status),
        request_headers: req.map(|r| redacted(&r.headers)).unwrap_or_default(),
        response_headers: resp.map(|r| redacted(&r.headers)).unwrap_or_default(),
        request_body: None,
        response_body: None,
    };
    let cl = req.map_or(0, |r| count_framing(&r.headers, "content-length"))
        + resp.map_or(0, |r| count_framing(&r.headers, "content-length"));
    let te = req.map_or(0, |r| count_framing(&r.headers, "transfer-encoding"))
        + resp.map_or(0, |r| count_framing(&r.headers, "transfer-encoding"));
    let indicators = exchange.anomalies.len() as u64;
    let flow = exchange.flow_id.to_string();
    let start = exchange.start_ts().as_nanos().to_string();
    for rule in matched {
        let mut event = Event::new(
            EventKind::Detection,
            rule.rule,
            sensor,
            &[&flow, &start],
            time,
            rule.severity,
            rule.title.to_owned(),
        );
        event.confidence = rule.confidence;
        event.owasp = rule.owasp;
        event.start_time = Some(time);
        event.end_time = resp.map(|r| epoch_ms(r.end_ts)).or(Some(time));
        event.actor = Some(Actor {
            ip: Some(exchange.client.ip()),
            ..Actor::default()
        });
        event.endpoint = req.map(|_| EndpointRef {
            host: host.clone(),
            method: method.clone(),
            path: path.clone(),
        });
        event.src_endpoint = Some(NetEndpoint {
            ip: exchange.client.ip(),
            port: exchange.client.port(),
        });
        event.dst_endpoint = Some(NetEndpoint {
            ip: exchange.server.ip(),
            port: exchange.server.port(),
        });
        event.counts.insert("anomalies".into(), indicators);
        event.counts.insert("content_length_fields".into(), cl);
        event.counts.insert("transfer_encoding_fields".into(), te);
        event.evidence = vec![evidence.clone()];
        let target = if method.is_empty() {
            format!("a connection to {}", exchange.server)
        } else {
            format!("{method} {host}{path}")
        };
        let status = match resp.map(|r| r.status) {
            None => "no response was seen".to_owned(),
            Some(None) => "the server's reply had no valid status line".to_owned(),
            Some(Some(code)) => format!("the server answered {code}"),
        };
        event.text.what_happened = format!(
            "{} from {} to {target}: {indicators} protocol anomal{} on this exchange, \
             {cl} Content-Length and {te} Transfer-Encoding header field{}; {status}.",
            rule.title,
            exchange.client.ip(),
            if indicators == 1 { "y" } else { "ies" },
            if cl + te == 1 { "" } else { "s" },
        );
        event.text.why_it_matters = rule.why.to_owned();
        event.text.what_to_do = format!(
            "Check whether {} came from a legitimate client; make every proxy and server in \
             front of {host} reject ambiguous framing (RFC 9112 §6.3: refuse messages with both \
             headers or invalid lengths, close the connection after an error), and look for \
             other requests from {} on the same connection (flow {}).",
            exchange.client.ip(),
            exchange.client.ip(),
            exchange.flow_id
        );
        out.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{HttpVersion, Request, Timestamp};

    fn exchange(anomalies: Vec<Anomaly>) -> Exchange {
        let mut headers = Headers::default();
        headers.push(b"Host", b"api.example.com", 10, 1000);
        headers.push(b"Authorization", b"Bearer secret", 10, 1000);
        headers.push(b"Transfer-Encoding", b"chunked", 10, 1000);
        headers.push(b"Content-Length", b"4", 10, 1000);
        Exchange {
            flow_id: 7,
            client: "10.0.0.1:5555".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
            request: Some(Request {
                ts: Timestamp::from_secs_nanos(1_700_000_000, 5_000_000),
                end_ts: Timestamp::from_secs_nanos(1_700_000_000, 6_000_000),
                method: "POST".into(),
                uri: "/api/x?a=1".into(),
                path: "/api/x".into(),
                query: Some("a=1".into()),
                version: HttpVersion::Http11,
                host: Some("api.example.com".into()),
                content_type: None,
                headers,
                body: Default::default(),
                pending_text: false,
            }),
            response: None,
            tunnel: false,
            flags: Default::default(),
            anomalies,
        }
    }

    #[test]
    fn te_cl_raises_a_redacted_api8_detection_with_a_stable_id() {
        let mut out = Vec::new();
        check(
            &exchange(vec![Anomaly::TransferEncodingWithContentLength]),
            "s",
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.rule, "protocol.te_with_content_length");
        assert_eq!(e.owasp, Some(Owasp::SecurityMisconfiguration));
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.time, 1_700_000_000_005);
        let headers = &e.evidence[0].request_headers;
        assert!(headers.contains(&("Authorization".into(), String::new())));
        assert!(headers.contains(&("Transfer-Encoding".into(), "chunked".into())));
        assert!(e
            .text
            .what_happened
            .contains("1 Content-Length and 1 Transfer-Encoding"));
        let mut again = Vec::new();
        check(
            &exchange(vec![Anomaly::TransferEncodingWithContentLength]),
            "s",
            &mut again,
        );
        assert_eq!(again[0].id, e.id);
    }

    #[test]
    fn evasion_indicators_raise_their_rule_and_caps_raise_none() {
        for (anomaly, rule) in [
            (
                Anomaly::WhitespaceBeforeColon,
                "protocol.whitespace_before_colon",
            ),
            (
                Anomaly::NulOrBareCrInHeader,
                "protocol.nul_or_bare_cr_in_header",
            ),
            (Anomaly::MissingVersion, "protocol.missing_version"),
            (
                Anomaly::AfterAmbiguousFraming,
                "protocol.after_ambiguous_framing",
            ),
            (
                Anomaly::StackedContentEncoding,
                "protocol.stacked_content_encoding",
            ),
            (
                Anomaly::OverlappingFragments,
                "protocol.overlapping_fragments",
            ),
        ] {
            let mut out = Vec::new();
            check(&exchange(vec![anomaly]), "s", &mut out);
            assert_eq!(out.len(), 1, "{anomaly:?}");
            assert_eq!(out[0].rule, rule);
        }
        // A server's broken status line and a coding the sensor cannot
        // undo (`br`) are not attacks.
        let mut out = Vec::new();
        for anomaly in [
            Anomaly::InvalidStatusLine,
            Anomaly::UndecodedContentEncoding,
        ] {
            check(&exchange(vec![anomaly]), "s", &mut out);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn clean_and_unrelated_anomalies_raise_nothing() {
        let mut out = Vec::new();
        check(&exchange(vec![]), "s", &mut out);
        check(&exchange(vec![Anomaly::BodyIncomplete]), "s", &mut out);
        assert!(out.is_empty());
        check(
            &exchange(vec![Anomaly::GarbageBeforeMessage, Anomaly::ObsFoldHeader]),
            "s",
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_ne!(out[0].id, out[1].id);
        assert!(out.iter().any(|e| e.owasp.is_none()));
    }
}
