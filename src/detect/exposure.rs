//! Excessive data exposure: a response carrying sensitive types its
//! endpoint (once learned) does not normally return, a client receiving
//! far more sensitive values per minute than any other (and than a few of
//! the API's largest responses), and responses exposing stack traces or
//! database errors.

use super::report::Finding;
use super::rules::RuleId;
use crate::analysis::facts::Facts;
use crate::baseline::learned::{Baselines, MinuteCounts};

/// Markers of stack traces and internal errors in response bodies.
const ERROR_MARKERS: &[&str] = &[
    "traceback (most recent call last)",
    "exception in thread \"",
    "\n\tat java.",
    "\n\tat org.",
    "\n   at system.",
    "stack trace:",
    "stacktrace",
    "sqlstate[",
    "ora-0",
    "pg::",
    "you have an error in your sql syntax",
    "unclosed quotation mark",
    "fatal error: ",
    "warning: mysql",
    "node_modules/",
    "goroutine 1 [running]",
    "panicked at",
    "debug = true",
    "werkzeug debugger",
];

/// Response data a client may receive in a minute before its volume is
/// judged (1 MiB).
const MIN_DATA_VOLUME_KIB: u64 = 1024;

/// Largest responses (in sensitive values) a client may receive in a minute
/// before its volume is judged.
const LARGEST_RESPONSES_PER_MINUTE: u64 = 5;

/// Contact details (e-mail, phone) in one answer before their newness is
/// unusual.
const MIN_NEW_CONTACTS: u64 = 3;

/// Sensitive types this endpoint (or the API) rarely returns, in a
/// successful response.
pub fn unusual_types(f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
    if !f.succeeded() || f.data.sensitive_types.is_empty() {
        return;
    }
    // Judged against the endpoint's own answers only: what the rest of
    // the API returns says little about a new endpoint (a ping log lists
    // client addresses, a form page carries a CSRF token).
    let Some(e) = baselines.learned_endpoint(&f.key, f.now) else {
        return;
    };
    let (types, successes) = (&e.response_types, e.successes);
    // A response handing out credentials (a login) carries tokens by design.
    let issues_tokens = !f.issued.jwts.is_empty();
    let new: Vec<&String> = f
        .data
        .sensitive_types
        .iter()
        .filter(|t| !(issues_tokens && t.as_str() == "jwt"))
        .filter(|t| types.get(*t).copied().unwrap_or(0) * 100 <= successes)
        .collect();
    // A member's e-mail or phone number newly shown beside shared data
    // (a project listing its new manager) is what collaborative APIs do;
    // contact details are unusual when several come at once.
    let contact = |t: &&String| {
        crate::classify::DataType::from_name(t)
            .is_some_and(|d| matches!(d.as_str(), "email" | "phone_number" | "kr_mobile_number"))
    };
    if new.is_empty() || new.iter().all(contact) && f.data.sensitive_values < MIN_NEW_CONTACTS {
        return;
    }
    out.push(
        Finding::new(
            RuleId::UnusualSensitiveData,
            75,
            format!(
                "{} returned {:?} to {}, types that its {successes} earlier successful responses did not carry.",
                f.key,
                new,
                f.actor_label()
            ),
            format!(
                "{}|{}",
                f.key,
                new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            ),
        )
        .counts(&[("sensitive_values", f.data.sensitive_values)]),
    );
}

/// Far more sensitive values in one minute than any other client receives.
pub fn volume(f: &Facts<'_>, minute: &MinuteCounts, baselines: &Baselines, out: &mut Vec<Finding>) {
    let population = &baselines.sensitive_population;
    if population.actors() < baselines.limits.learn_actors || minute.sensitive == 0 {
        return;
    }
    let p999 = population
        .quantile_excluding(0.999, minute.sensitive_peak)
        .unwrap_or(0);
    // Far above the other clients, and more than a few of the largest
    // responses the API gives (an administrator reading the user list once
    // is not a dump; reading it a hundred times a minute is).
    let largest = baselines
        .largest_sensitive_response
        .max(f.data.sensitive_values);
    let bar = (p999 * 10)
        .max(50)
        .max(largest * LARGEST_RESPONSES_PER_MINUTE);
    if minute.sensitive >= bar {
        out.push(
            Finding::new(
                RuleId::SensitiveVolume,
                75,
                format!(
                    "{} received {} sensitive values within one minute (last from {}); the other clients' highest minute was {p999}, the largest single response {largest}.",
                    f.actor_label(),
                    minute.sensitive,
                    f.key
                ),
                f.who.to_string(),
            )
            .counts(&[
                ("sensitive_values_per_minute", minute.sensitive),
                ("population_p999", p999),
            ]),
        );
    }
}

/// Far more response data in one minute than any other client receives,
/// and than its own busiest minute: bulk download, whatever the data.
pub fn data_volume(
    f: &Facts<'_>,
    minute: &MinuteCounts,
    baselines: &Baselines,
    out: &mut Vec<Finding>,
) {
    let population = &baselines.kib_population;
    if population.actors() < baselines.limits.learn_actors * 2 {
        return;
    }
    let p999 = population
        .quantile_excluding(0.999, minute.kib_peak)
        .unwrap_or(0);
    let above_own = minute
        .kib_peak
        .is_none_or(|peak| minute.kib >= peak.saturating_mul(4));
    if minute.kib >= (p999 * 10).max(MIN_DATA_VOLUME_KIB) && above_own {
        out.push(
            Finding::new(
                RuleId::DataVolume,
                70,
                format!(
                    "{} received {} KiB within one minute (last from {}); the other clients' busiest minute was {p999} KiB.",
                    f.actor_label(),
                    minute.kib,
                    f.key
                ),
                f.who.to_string(),
            )
            .counts(&[("kib_per_minute", minute.kib), ("population_p999_kib", p999)]),
        );
    }
}

/// Whether `marker` occurs in `text` with some detail: not only as the
/// name of an empty JSON field (Bitwarden-style error models carry
/// `"exceptionStackTrace": null` in every error).
fn carries_detail(text: &str, marker: &str) -> bool {
    text.match_indices(marker).any(|(at, m)| {
        let rest = text.get(at + m.len()..).unwrap_or_default();
        let Some(value) = rest
            .strip_prefix('"')
            .and_then(|r| r.trim_start().strip_prefix(':'))
        else {
            return true;
        };
        let value = value.trim_start();
        !["null", "\"\"", "[]", "{}"]
            .iter()
            .any(|empty| value.starts_with(empty))
    })
}

/// A stack trace or database error in a response body.
pub fn verbose_errors(f: &Facts<'_>, out: &mut Vec<Finding>) {
    let Some(response) = f.response else {
        return;
    };
    if response.body.data.is_empty() {
        return;
    }
    let head = response
        .body
        .data
        .get(..8192)
        .unwrap_or(&response.body.data);
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    // `contains` first: its SIMD search is several times faster than the
    // `match_indices` walk, and almost no answer has a marker at all.
    if let Some(marker) = ERROR_MARKERS
        .iter()
        .find(|m| text.contains(*m) && carries_detail(&text, m))
    {
        out.push(
            Finding::new(
                RuleId::VerboseError,
                85,
                format!(
                    "{} answered {} with an internal error detail ({:?}) in the body.",
                    f.key,
                    f.status().unwrap_or(0),
                    marker.trim()
                ),
                f.key.to_string(),
            )
            .counts(&[("status", u64::from(f.status().unwrap_or(0)))]),
        );
    }
}
