//! Resource consumption: a client's request rate far above every other
//! client's busiest minute (and its own), page sizes far above what
//! clients normally ask for, and responses far larger than the endpoint
//! returns. Judged against the population and the endpoint's own
//! baseline, never against fixed rates alone.

use super::report::Finding;
use super::rules::RuleId;
use crate::analysis::facts::{Facts, ParamSource};
use crate::baseline::learned::{Baselines, MinuteCounts, PAGING_PARAMS};
use crate::event::Severity;

/// A minute this many times the population's p99 is worth a look (low
/// severity): scripted clients (mirrors, batch jobs) run ten or twenty
/// times a person's pace, and their first burst has no history of its own.
const RATE_ABOVE_FACTOR: u64 = 4;
/// Never below this many requests in a minute, whatever the population.
const RATE_ABOVE_MIN: u64 = 120;
/// This many times the p99 is abuse (medium), reported again if it was
/// first seen above the lower bar.
const RATE_FAR_FACTOR: u64 = 20;

/// A client's busiest minute against the population's.
pub fn rate(f: &Facts<'_>, minute: &MinuteCounts, baselines: &Baselines, out: &mut Vec<Finding>) {
    let population = &baselines.rate_population;
    let actors = population.actors();
    if actors < baselines.limits.learn_actors * 2 {
        return;
    }
    let p99 = population
        .quantile_excluding(0.99, minute.requests_peak)
        .unwrap_or(0);
    // Above the population, and above this client's own busiest finished
    // minute (a client that is always this busy is not new), not counting
    // the minute just before, where this burst may have begun.
    let above_own = minute
        .requests_history
        .is_none_or(|peak| minute.requests >= peak.saturating_mul(4));
    let above = (p99 * RATE_ABOVE_FACTOR).max(RATE_ABOVE_MIN);
    let far = (p99 * RATE_FAR_FACTOR).max(above);
    if !above_own || minute.requests < above {
        return;
    }
    let is_far = minute.requests >= far;
    let mut finding = Finding::new(
        RuleId::RateAbuse,
        75,
        format!(
            "{} sent {} requests within one minute; 99% of the other {} clients never sent more than {p99} in a minute.",
            f.actor_label(),
            minute.requests,
            actors.saturating_sub(1)
        ),
        if is_far {
            format!("{}|far", f.who)
        } else {
            f.who.to_string()
        },
    )
    .counts(&[("requests_per_minute", minute.requests), ("population_p99", p99)]);
    if !is_far {
        finding = finding
            .severity(Severity::Low)
            .title("Request rate well above other clients".into());
    }
    out.push(finding);
}

/// Paging parameters far above what clients normally ask this endpoint for.
pub fn page_size(f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
    if !f.succeeded() {
        return;
    }
    let learn = baselines.limits.learn_exchanges;
    let endpoint = baselines.endpoint(&f.key);
    for param in &f.params {
        let name = param.name.to_ascii_lowercase();
        if param.source != ParamSource::Query || !PAGING_PARAMS.contains(&name.as_str()) {
            continue;
        }
        let Ok(value) = param.value.trim().parse::<u64>() else {
            continue;
        };
        let p99 = endpoint
            .and_then(|e| e.page_sizes.get(&name))
            .filter(|q| q.count() >= learn)
            .and_then(|q| q.quantile(0.99));
        let abusive = match p99 {
            Some(p99) => value as f64 >= (p99 * 10.0).max(1000.0),
            None => value >= 10_000,
        };
        if abusive {
            out.push(
                Finding::new(
                    RuleId::PageSizeAbuse,
                    75,
                    format!(
                        "{} asked {} for `{name}={value}`; clients normally ask for at most {} and the API answered {}.",
                        f.actor_label(),
                        f.key,
                        p99.map_or("small pages".to_string(), |p| format!("{p:.0}")),
                        f.status().unwrap_or(0)
                    ),
                    // One per client and parameter: a client asking every
                    // collection for huge pages is one campaign.
                    format!("{}|{name}", f.who),
                )
                .title(format!("Page size `{name}={value}` far above normal"))
                .counts(&[("requested", value)]),
            );
        }
    }
}

/// A response far larger than the endpoint's 99th percentile.
pub fn oversized(f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
    if !f.succeeded() {
        return;
    }
    let Some(e) = baselines.learned_endpoint(&f.key, f.now) else {
        return;
    };
    let bytes = f
        .response
        .map_or(0, |r| r.body.wire_len.max(r.body.decoded_len));
    if let Some(p99) = e.response_bytes.quantile(0.99) {
        if bytes as f64 >= (p99 * 20.0).max(1_000_000.0) {
            out.push(
                Finding::new(
                    RuleId::OversizedResponse,
                    70,
                    format!(
                        "{} returned {bytes} bytes to {}; 99% of its {} earlier successful responses were at most {p99:.0} bytes.",
                        f.key,
                        f.actor_label(),
                        e.successes
                    ),
                    format!("{}|{}", f.key, f.who),
                )
                .counts(&[("bytes", bytes)]),
            );
        }
    }
}
