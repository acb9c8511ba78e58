//! Posture findings from traffic alone: weaknesses an endpoint's profile
//! shows without any attack happening. Each becomes an [`Event`] of kind
//! `Posture` with a severity, its OWASP API Security Top 10 (2023) category
//! and the three plain-language paragraphs filled from counts; its id is
//! keyed on (host, method, template, rule), so re-runs give the same ids.
//! Reads endpoint profiles only; knows nothing of packets or the trie.

use super::Endpoint;
use crate::event::{epoch_ms, EndpointRef, Event, EventKind, Owasp, Severity};
use crate::exchange::Text;
use std::collections::BTreeSet;

/// Rules, in the order findings of one endpoint are listed.
pub const RULES: &[(&str, Severity, Owasp)] = &[
    (
        "posture.unauthenticated_sensitive_data",
        Severity::High,
        Owasp::BrokenAuthentication,
    ),
    (
        "posture.credentials_in_url",
        Severity::High,
        Owasp::BrokenAuthentication,
    ),
    (
        "posture.sensitive_data_in_url",
        Severity::Medium,
        Owasp::SecurityMisconfiguration,
    ),
    (
        "posture.cleartext_credentials",
        Severity::High,
        Owasp::SecurityMisconfiguration,
    ),
    (
        "posture.secret_in_response",
        Severity::High,
        Owasp::BrokenObjectPropertyLevelAuthorization,
    ),
    (
        "posture.debug_endpoint_exposed",
        Severity::Medium,
        Owasp::SecurityMisconfiguration,
    ),
];

/// Path segments of internal, debug or documentation endpoints, with the
/// severity of one answering 2xx/3xx.
const DEBUG_SEGMENTS: &[(&str, Severity)] = &[
    ("actuator", Severity::High),
    ("heapdump", Severity::High),
    ("jolokia", Severity::High),
    ("pprof", Severity::High),
    ("phpinfo.php", Severity::High),
    (".env", Severity::High),
    (".git", Severity::High),
    ("h2-console", Severity::High),
    ("debug", Severity::Medium),
    ("_debug", Severity::Medium),
    ("__debug__", Severity::Medium),
    ("_profiler", Severity::Medium),
    ("console", Severity::Medium),
    ("server-status", Severity::Medium),
    ("server-info", Severity::Medium),
    ("elmah.axd", Severity::Medium),
    ("trace.axd", Severity::Medium),
    ("graphiql", Severity::Low),
    ("swagger", Severity::Low),
    ("swagger-ui", Severity::Low),
    ("swagger-ui.html", Severity::Low),
    ("swagger.json", Severity::Low),
    ("api-docs", Severity::Low),
    ("openapi.json", Severity::Low),
    ("openapi.yaml", Severity::Low),
];

/// The debug-looking segment of `path` and its severity, if any.
pub fn debug_segment(path: &str) -> Option<(&'static str, Severity)> {
    path.split('/')
        .filter(|s| !s.starts_with('{'))
        .find_map(|s| {
            let s = s.to_ascii_lowercase();
            DEBUG_SEGMENTS.iter().find(|(d, _)| *d == s).copied()
        })
}

fn list(set: &BTreeSet<Text>) -> String {
    set.iter().map(Text::as_str).collect::<Vec<_>>().join(", ")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Findings of every endpoint, sorted by (host, path, method, rule order).
pub fn findings(endpoints: &[Endpoint], sensor: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for ep in endpoints {
        let p = &ep.profile;
        let pc = &p.posture;
        let target = format!("{} {}{}", ep.method, ep.host, ep.path);
        for (rule, severity, owasp) in RULES {
            let (count, severity, title, what, why, todo, detail): (
                u64,
                Severity,
                String,
                String,
                &str,
                &str,
                Vec<String>,
            ) = match *rule {
                "posture.unauthenticated_sensitive_data" if pc.unauth_sensitive_responses > 0 => (
                    pc.unauth_sensitive_responses,
                    *severity,
                    format!("Sensitive data returned without authentication by {target}"),
                    format!(
                        "{} of {} returned sensitive data ({}) to requests that carried no credentials.",
                        plural(pc.unauth_sensitive_responses, "successful response", "successful responses"),
                        target,
                        list(&pc.unauth_sensitive_types)
                    ),
                    "Anyone who can reach this endpoint can read this data; there is no identity to attribute access to or to rate-limit.",
                    "Require authentication on this endpoint, or stop returning these fields to anonymous callers.",
                    pc.unauth_sensitive_types.iter().map(|t| t.to_string()).collect(),
                ),
                "posture.credentials_in_url" if pc.credentials_in_query > 0 => (
                    pc.credentials_in_query,
                    *severity,
                    format!("Credentials in the query string of {target}"),
                    format!(
                        "{} to {} carried credentials in the query string (parameters: {}).",
                        plural(pc.credentials_in_query, "request", "requests"),
                        target,
                        list(&pc.credential_query_keys)
                    ),
                    "URLs are written to proxy, server and browser logs and sent in Referer headers, so these credentials leak to anyone who reads those.",
                    "Move credentials to the Authorization header or the request body, and rotate the ones already logged.",
                    pc.credential_query_keys.iter().map(|t| t.to_string()).collect(),
                ),
                "posture.sensitive_data_in_url" if pc.sensitive_in_url > 0 => (
                    pc.sensitive_in_url,
                    *severity,
                    format!("Sensitive data in the URL of {target}"),
                    format!(
                        "{} to {} carried sensitive data ({}) in the path or query string.",
                        plural(pc.sensitive_in_url, "request", "requests"),
                        target,
                        list(&pc.sensitive_in_url_types)
                    ),
                    "URLs end up in access logs, caches and analytics, where this data is kept outside the controls that protect it.",
                    "Send these values in the request body (POST) or use opaque identifiers instead.",
                    pc.sensitive_in_url_types.iter().map(|t| t.to_string()).collect(),
                ),
                "posture.cleartext_credentials" if pc.cleartext_credentials > 0 => (
                    pc.cleartext_credentials,
                    *severity,
                    format!("Credentials sent over cleartext HTTP to {target}"),
                    format!(
                        "{} to {} carried credentials ({}) over unencrypted HTTP.",
                        plural(pc.cleartext_credentials, "request", "requests"),
                        target,
                        list(&pc.cleartext_kinds)
                    ),
                    "Anyone on the network path can read and replay these credentials.",
                    "Serve this API over HTTPS only (redirect or refuse HTTP) and rotate credentials that crossed in cleartext.",
                    pc.cleartext_kinds.iter().map(|t| t.to_string()).collect(),
                ),
                "posture.secret_in_response" if pc.secret_echoes > 0 => (
                    pc.secret_echoes,
                    *severity,
                    format!("Response of {target} contains passwords or secrets"),
                    format!(
                        "{} of {} contained password or secret fields ({}).",
                        plural(pc.secret_echoes, "response", "responses"),
                        target,
                        list(&pc.secret_echo_fields)
                    ),
                    "Secrets returned to clients can be harvested by any caller of this endpoint and end up in client logs and caches.",
                    "Remove these properties from the response model (return only what the client needs).",
                    pc.secret_echo_fields.iter().map(|t| t.to_string()).collect(),
                ),
                "posture.debug_endpoint_exposed" if pc.success > 0 => {
                    let Some((segment, sev)) = debug_segment(&ep.path) else {
                        continue;
                    };
                    (
                        pc.success,
                        sev,
                        format!("Internal or debug endpoint reachable: {target}"),
                        format!(
                            "{} answered {} successfully; its path contains `{}`, which names an internal, debug or documentation interface.",
                            target,
                            plural(pc.success, "request", "requests"),
                            segment
                        ),
                        "Debug and management interfaces expose configuration, memory contents or the full API surface to whoever finds them.",
                        "Disable this interface in production or restrict it to an internal network or authenticated operators.",
                        vec![segment.to_string()],
                    )
                }
                _ => continue,
            };
            let time = p.last_seen.map_or(0, epoch_ms);
            let mut event = Event::new(
                EventKind::Posture,
                rule,
                sensor,
                &[&ep.host, &ep.method, &ep.path, rule],
                time,
                severity,
                title,
            );
            event.owasp = Some(*owasp);
            event.start_time = p.first_seen.map(epoch_ms);
            event.end_time = p.last_seen.map(epoch_ms);
            event.count = count;
            event.counts.insert("matching".into(), count);
            event.counts.insert("requests".into(), p.requests);
            event.endpoint = Some(EndpointRef {
                host: ep.host.clone(),
                method: ep.method.clone(),
                path: ep.path.clone(),
            });
            event.text.what_happened = what;
            event.text.why_it_matters = why.to_string();
            event.text.what_to_do = todo.to_string();
            event
                .attributes
                .insert("detail".into(), serde_json::json!(detail));
            out.push(event);
        }
    }
    out
}
