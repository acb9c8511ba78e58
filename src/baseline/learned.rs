//! What the detectors learn about the API and its clients, per endpoint
//! (keyed by the inventory's `EndpointKey`) and per actor, in packet time.
//! Detectors read it to judge an exchange; [`Baselines::learn`] adds the
//! exchange afterwards, so nothing is judged against itself. Everything
//! here is serialisable: it is the baseline snapshot (`detect.baseline_path`).
//! Bounded: endpoints, (actor, endpoint) pairs, actors, owned object ids
//! and request fields each have a cap and a counter.

use super::sketch::{Distinct, Population, Quantiles};
use crate::analysis::facts::{ActorKey, Facts, ParamSource};
use crate::inventory::template::Outcome;
use crate::inventory::EndpointKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Paging parameters whose values are learned per endpoint.
pub const PAGING_PARAMS: &[&str] = &[
    "limit",
    "per_page",
    "perpage",
    "page_size",
    "pagesize",
    "size",
    "count",
    "top",
    "max",
    "take",
    "first",
    "rows",
];

/// Request fields counted per endpoint at most.
const MAX_FIELDS: usize = 256;
/// Sensitive types counted per endpoint at most.
const MAX_TYPES: usize = 256;

/// Limits of the learned state.
#[derive(Debug, Clone)]
pub struct BaselineLimits {
    /// Exchanges an endpoint needs before its baseline is trusted.
    pub learn_exchanges: u64,
    /// Packet time an endpoint needs besides its exchanges.
    pub learn_secs: u64,
    /// Distinct actors a population comparison needs.
    pub learn_actors: u64,
    /// Endpoints tracked; beyond, new endpoints are not baselined (counted).
    pub max_endpoints: usize,
    /// (actor, endpoint) pairs and actors tracked; beyond, new ones are
    /// refused (counted) rather than evicting others.
    pub max_actor_endpoints: usize,
    /// Object ids whose first principal is remembered, per endpoint.
    pub max_owned_ids: usize,
    /// Actors quiet this long (packet time) are forgotten and leave the
    /// population statistics.
    pub actor_idle_secs: u64,
}

impl Default for BaselineLimits {
    fn default() -> Self {
        BaselineLimits {
            learn_exchanges: 20,
            learn_secs: 60,
            learn_actors: 5,
            max_endpoints: 10_000,
            max_actor_endpoints: 1_000_000,
            max_owned_ids: 100_000,
            actor_idle_secs: 3600,
        }
    }
}

/// One endpoint's baseline.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EndpointBaseline {
    pub first_secs: Option<u64>,
    pub exchanges: u64,
    pub successes: u64,
    /// Requests carrying credentials, and those of them that succeeded.
    pub credentialed: u64,
    pub credentialed_successes: u64,
    /// Requests without credentials that succeeded, and that were refused (401/403).
    pub anonymous_successes: u64,
    pub anonymous_rejected: u64,
    /// Requests with credentials refused (401/403): the endpoint checks them.
    pub credentialed_rejected: u64,
    /// Distinct principals that called it.
    pub principals_seen: Distinct,
    /// Successful calls by privileged and by other principals.
    pub privileged_successes: u64,
    pub unprivileged_successes: u64,
    /// Request body field names of successful calls, with counts.
    pub request_fields: BTreeMap<String, u64>,
    /// Sensitive types in successful responses, with counts.
    pub response_types: BTreeMap<String, u64>,
    /// Distinct objects (values at the template's parameters) per actor,
    /// over the population of actors, whatever the answer.
    pub objects_per_actor: Population,
    /// Principals that used objects here, and how many of them used
    /// objects first used by another principal.
    pub principals: u64,
    pub principals_foreign: u64,
    /// Successful calls by a principal, and those whose path named the
    /// principal itself (a self-service endpoint: `/users/{me}/...`).
    pub principal_calls: u64,
    pub self_named_calls: u64,
    /// Values of paging parameters.
    pub page_sizes: BTreeMap<String, Quantiles>,
    /// Response body bytes and latency of successful calls.
    pub response_bytes: Quantiles,
    pub latency_ms: Quantiles,
    /// Answers by status class (1xx..5xx, other).
    pub status_classes: [u64; 6],
}

impl EndpointBaseline {
    /// Whether the endpoint has enough calls and packet time to be judged.
    pub fn learned(&self, limits: &BaselineLimits, now: u64) -> bool {
        self.exchanges >= limits.learn_exchanges
            && self
                .first_secs
                .is_some_and(|first| now.saturating_sub(first) >= limits.learn_secs)
    }

    /// Shown to require credentials: nearly every call carried them, none
    /// without them ever succeeded, and calls without them were refused.
    pub fn requires_credentials(&self) -> bool {
        self.anonymous_successes == 0
            && self.anonymous_rejected > 0
            && self.credentialed * 100 >= self.exchanges * 90
    }

    /// Learned, and every call carried credentials, from several
    /// principals: what an endpoint that requires them looks like before
    /// anyone was refused on it.
    pub fn always_credentialed(&self, limits: &BaselineLimits, now: u64) -> bool {
        self.learned(limits, now)
            && self.anonymous_successes == 0
            && self.anonymous_rejected == 0
            && self.credentialed == self.exchanges
            && self.principals_seen.estimate() >= limits.learn_actors
    }

    /// Answers requests with and without credentials alike (public,
    /// perhaps personalised when a token is sent).
    pub fn optional_credentials(&self) -> bool {
        self.anonymous_successes > 0
    }

    /// Shown to check the credentials it gets: it refused some and has
    /// never served an anonymous request.
    pub fn checks_credentials(&self) -> bool {
        self.credentialed_rejected > 0 && self.anonymous_successes == 0
    }

    /// Callers name themselves in its path: most principal calls did.
    pub fn self_service(&self) -> bool {
        self.principal_calls >= 5 && self.self_named_calls * 10 >= self.principal_calls * 9
    }

    /// Objects here are private: never served to anonymous callers, used
    /// by the principal that used them first and rarely by others (judged
    /// over `others` principals).
    pub fn private_objects(&self, others: u64, others_foreign: u64) -> bool {
        self.anonymous_successes == 0 && others >= 5 && others_foreign * 10 <= others
    }
}

/// One actor's use of one endpoint.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ActorEndpoint {
    pub last_secs: u64,
    /// Distinct objects it named, whatever the answer.
    pub objects: Distinct,
    pub objects_estimate: Option<u64>,
    /// Objects other principals had used first.
    pub foreign_objects: u64,
    /// Counted among the endpoint's principals.
    pub owner_seen: bool,
    /// Requests here the API answered with success, and with a refusal or
    /// an error (401, 403, 404, other 4xx).
    #[serde(default)]
    pub successes: u64,
    #[serde(default)]
    pub failures: u64,
    /// Of `objects`, those it neither created nor was listed: guessed.
    #[serde(default)]
    pub guessed: Distinct,
}

/// One actor's request rate.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ActorRate {
    pub minute: u64,
    pub count: u64,
    /// Highest per-minute count in a finished minute (in the population).
    pub peak: Option<u64>,
    pub sensitive_minute: u64,
    pub sensitive_count: u64,
    pub sensitive_peak: Option<u64>,
    /// Response body KiB received.
    pub kib_minute: u64,
    pub kib_count: u64,
    pub kib_peak: Option<u64>,
    /// The busiest finished minute before the minute just before this one,
    /// and that minute's count when it adjoins this one (0 otherwise): a
    /// burst that began late in it is one burst, not a history of its own.
    #[serde(default)]
    pub peak_before_last: Option<u64>,
    #[serde(default)]
    pub last_count: u64,
}

/// Starts `minute` for one per-minute counter (its minute, count and
/// busiest finished minute): a finished minute's count raises the peak,
/// which moves the actor in `population`.
pub fn roll_minute(
    minute: u64,
    (current, count, peak): (&mut u64, &mut u64, &mut Option<u64>),
    population: &mut Population,
) {
    if *current == minute {
        return;
    }
    // An actor joins the population with its first finished minute, even
    // an empty one (most clients receive no sensitive data at all); minute
    // 0 is the counter's unused start, not a minute it lived through.
    if *count > 0 || (peak.is_none() && *current != 0) {
        let busiest = peak.unwrap_or(0).max(*count);
        if *peak != Some(busiest) {
            population.moved(*peak, busiest);
            *peak = Some(busiest);
        }
    }
    *current = minute;
    *count = 0;
}

/// Everything learned.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Baselines {
    #[serde(skip)]
    pub limits: BaselineLimits,
    pub endpoints: HashMap<EndpointKey, EndpointBaseline>,
    pub actor_endpoints: HashMap<(ActorKey, EndpointKey), ActorEndpoint>,
    pub rates: HashMap<ActorKey, ActorRate>,
    /// Per-actor peak requests per minute, over the population.
    pub rate_population: Population,
    pub sensitive_population: Population,
    /// Per-actor peak response KiB per minute, over the population.
    pub kib_population: Population,
    /// Actors caught enumerating objects: their first uses of ids do not
    /// make them owners (the real owners coming later are not accused).
    pub enumerators: std::collections::BTreeSet<ActorKey>,
    /// Most sensitive values one successful response carried.
    pub largest_sensitive_response: u64,
    pub exchanges: u64,
    pub first_secs: Option<u64>,
    #[serde(skip)]
    pub endpoints_not_tracked: u64,
    #[serde(skip)]
    pub actors_refused: u64,
    #[serde(skip)]
    pub actors_expired: u64,
    #[serde(skip)]
    next_sweep_secs: u64,
}

impl Baselines {
    pub fn new(limits: BaselineLimits) -> Baselines {
        Baselines {
            limits,
            ..Baselines::default()
        }
    }

    pub fn endpoint(&self, key: &EndpointKey) -> Option<&EndpointBaseline> {
        self.endpoints.get(key)
    }

    /// The endpoint's baseline once it has enough calls and packet time to
    /// judge by.
    pub fn learned_endpoint(&self, key: &EndpointKey, now: u64) -> Option<&EndpointBaseline> {
        self.endpoint(key).filter(|e| e.learned(&self.limits, now))
    }

    /// Forgets actors quiet for `actor_idle_secs` (checked each minute of
    /// packet time); they leave the population statistics with their values.
    pub fn expire(&mut self, now: u64) {
        if now < self.next_sweep_secs {
            return;
        }
        self.next_sweep_secs = now.saturating_add(60);
        let idle = self.limits.actor_idle_secs;
        let (rates, sensitive, kib) = (
            &mut self.rate_population,
            &mut self.sensitive_population,
            &mut self.kib_population,
        );
        let mut expired = 0;
        self.rates.retain(|_, r| {
            let keep = now.saturating_sub(r.minute.saturating_mul(60)) <= idle;
            if !keep {
                expired += 1;
                if let Some(peak) = r.peak {
                    rates.left(peak);
                }
                if let Some(peak) = r.sensitive_peak {
                    sensitive.left(peak);
                }
                if let Some(peak) = r.kib_peak {
                    kib.left(peak);
                }
            }
            keep
        });
        let endpoints = &mut self.endpoints;
        self.actor_endpoints.retain(|(_, key), a| {
            let keep = now.saturating_sub(a.last_secs) <= idle;
            if !keep {
                if let (Some(estimate), Some(endpoint)) =
                    (a.objects_estimate, endpoints.get_mut(key))
                {
                    endpoint.objects_per_actor.left(estimate);
                }
            }
            keep
        });
        self.actors_expired += expired;
        shrink(&mut self.rates);
        shrink(&mut self.actor_endpoints);
    }

    /// Counts an exchange whose endpoint the cap leaves without a
    /// baseline (once per exchange, whichever detector would have made one).
    pub fn note_endpoint(&mut self, key: &EndpointKey) {
        if !self.endpoints.contains_key(key) && self.endpoints.len() >= self.limits.max_endpoints {
            self.endpoints_not_tracked += 1;
        }
    }

    /// The endpoint's baseline and the actor's state on it together,
    /// each created if its cap leaves room.
    pub fn pair_mut(
        &mut self,
        f: &Facts<'_>,
    ) -> Option<(&mut EndpointBaseline, &mut ActorEndpoint)> {
        self.pair_mut_at(&f.key, f)
    }

    /// The same for another key of the exchange's endpoint (its path
    /// whatever the method, say).
    pub fn pair_mut_at(
        &mut self,
        key: &EndpointKey,
        f: &Facts<'_>,
    ) -> Option<(&mut EndpointBaseline, &mut ActorEndpoint)> {
        let endpoint = endpoint_entry(&mut self.endpoints, self.limits.max_endpoints, key)?;
        let pair = (f.who.clone(), key.clone());
        if !self.actor_endpoints.contains_key(&pair)
            && self.actor_endpoints.len() >= self.limits.max_actor_endpoints
        {
            self.actors_refused += 1;
            return None;
        }
        Some((endpoint, self.actor_endpoints.entry(pair).or_default()))
    }

    /// Adds one exchange to what was learned (after it was judged).
    /// `privilege`: whether the principal is privileged, when known.
    pub fn learn(&mut self, f: &Facts<'_>, privilege: Option<bool>) {
        self.exchanges += 1;
        self.first_secs.get_or_insert(f.now);
        // Redirects count: a short link's answer is one; a redirect to the
        // login page is a refusal (see `inventory::outcome`).
        let success = f.outcome == Outcome::Success;
        let rejected = f.rejected();
        let anonymous = f.anonymous();
        let Some(e) = endpoint_entry(&mut self.endpoints, self.limits.max_endpoints, &f.key) else {
            return;
        };
        e.first_secs.get_or_insert(f.now);
        e.exchanges += 1;
        if let Some(status) = f.status() {
            let class = usize::from(status / 100).saturating_sub(1).min(5);
            if let Some(n) = e.status_classes.get_mut(class) {
                *n += 1;
            }
        }
        if anonymous {
            e.anonymous_successes += u64::from(success);
            e.anonymous_rejected += u64::from(rejected);
        } else {
            e.credentialed += 1;
            if let Some(p) = &f.principal {
                e.principals_seen.insert(p.id.as_bytes());
            }
            e.credentialed_successes += u64::from(success);
            e.credentialed_rejected += u64::from(rejected);
        }
        if !success {
            return;
        }
        e.successes += 1;
        match privilege {
            Some(true) => e.privileged_successes += 1,
            Some(false) => e.unprivileged_successes += 1,
            None => {}
        }
        if let Some(p) = &f.principal {
            if !f.values.is_empty() {
                e.principal_calls += 1;
                e.self_named_calls += u64::from(f.values.iter().any(|v| p.is_named(&v.value)));
            }
        }
        let bytes = f
            .response
            .map_or(0, |r| r.body.wire_len.max(r.body.decoded_len));
        e.response_bytes.add(bytes as f64);
        if let Some(response) = f.response {
            let ms = response
                .end_ts
                .as_nanos()
                .saturating_sub(f.request.ts.as_nanos()) as f64
                / 1e6;
            e.latency_ms.add(ms);
        }
        for field in f.body_field_names() {
            if e.request_fields.len() < MAX_FIELDS || e.request_fields.contains_key(&field) {
                *e.request_fields.entry(field).or_default() += 1;
            }
        }
        for param in &f.params {
            let name = param.name.to_ascii_lowercase();
            if param.source != ParamSource::Query || !PAGING_PARAMS.contains(&name.as_str()) {
                continue;
            }
            if let Ok(value) = param.value.trim().parse::<u64>() {
                e.page_sizes.entry(name).or_default().add(value as f64);
            }
        }
        for t in &f.data.sensitive_types {
            if e.response_types.len() < MAX_TYPES || e.response_types.contains_key(t) {
                *e.response_types.entry(t.clone()).or_default() += 1;
            }
        }
        self.largest_sensitive_response =
            self.largest_sensitive_response.max(f.data.sensitive_values);
    }

    /// Counts the facts' request (and the sensitive values its answer
    /// carried) in its actor's current minute; returns the counts and the
    /// actor's busiest finished minutes, or `None` when no actor can be
    /// added (counted).
    pub fn count_minute(&mut self, f: &Facts<'_>) -> Option<MinuteCounts> {
        let minute = f.now / 60;
        if !self.rates.contains_key(&f.who) && self.rates.len() >= self.limits.max_actor_endpoints {
            self.actors_refused += 1;
            return None;
        }
        let rate = self.rates.entry(f.who.clone()).or_default();
        let (was_minute, was_count, was_peak) = (rate.minute, rate.count, rate.peak);
        roll_minute(
            minute,
            (&mut rate.minute, &mut rate.count, &mut rate.peak),
            &mut self.rate_population,
        );
        if was_minute != minute {
            let adjoining = was_minute + 1 == minute;
            rate.peak_before_last = was_peak;
            rate.last_count = if adjoining { was_count } else { 0 };
        }
        rate.count += 1;
        roll_minute(
            minute,
            (
                &mut rate.sensitive_minute,
                &mut rate.sensitive_count,
                &mut rate.sensitive_peak,
            ),
            &mut self.sensitive_population,
        );
        rate.sensitive_count += f.data.sensitive_values;
        roll_minute(
            minute,
            (
                &mut rate.kib_minute,
                &mut rate.kib_count,
                &mut rate.kib_peak,
            ),
            &mut self.kib_population,
        );
        let bytes = f
            .response
            .map_or(0, |r| r.body.wire_len.max(r.body.decoded_len));
        rate.kib_count += bytes / 1024;
        Some(MinuteCounts {
            requests: rate.count,
            requests_peak: rate.peak,
            // The last minute is where this burst began when this one
            // already doubles it (a steady client's minutes are alike).
            requests_history: if rate.last_count > 0 && rate.count >= rate.last_count * 2 {
                rate.peak_before_last
            } else {
                rate.peak
            },
            sensitive: rate.sensitive_count,
            sensitive_peak: rate.sensitive_peak,
            kib: rate.kib_count,
            kib_peak: rate.kib_peak,
        })
    }
}

/// One actor's current minute, and its busiest finished minutes.
#[derive(Debug, Clone, Copy)]
pub struct MinuteCounts {
    pub requests: u64,
    pub requests_peak: Option<u64>,
    /// `requests_peak`, without the minute just before this one when this
    /// minute is the same burst grown (at least double it).
    pub requests_history: Option<u64>,
    pub sensitive: u64,
    pub sensitive_peak: Option<u64>,
    /// Response body KiB.
    pub kib: u64,
    pub kib_peak: Option<u64>,
}

/// The endpoint's baseline, created if the cap leaves room (refusals are
/// counted by `Baselines::note_endpoint`).
fn endpoint_entry<'a>(
    endpoints: &'a mut HashMap<EndpointKey, EndpointBaseline>,
    max: usize,
    key: &EndpointKey,
) -> Option<&'a mut EndpointBaseline> {
    if !endpoints.contains_key(key) && endpoints.len() >= max {
        return None;
    }
    Some(endpoints.entry(key.clone()).or_default())
}

/// Gives memory back after many entries left (a retained map keeps its capacity).
pub fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 1024 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}
