//! Detectors that judge a request against what the API and its population
//! of clients normally do, learned online from the traffic itself:
//! object-level authorization (BOLA), function-level authorization, a
//! normally authenticated endpoint answering without credentials, mass
//! assignment, excessive data exposure, request-rate and pagination abuse,
//! verbose errors and unknown hosts. Each baseline detector waits for a
//! learning period (exchanges seen, and distinct actors where it compares
//! against the population) before it judges.
//!
//! Endpoints are keyed by host, method and the path with recognisable
//! values (numbers, UUIDs, hex, tokens, emails, dates) replaced; those
//! values are the object ids an actor touches.

use super::request::RequestView;
use crate::baseline::sketch::{Distinct, Population, Quantiles};
use crate::event::{Actor, Owasp, Severity};
use crate::inventory::template::classify_segment;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Tunables of the baseline detectors.
#[derive(Debug, Clone)]
pub struct BehaviorLimits {
    /// Exchanges an endpoint needs before its baseline is trusted.
    pub learn_exchanges: u64,
    /// Packet time an endpoint needs besides its exchanges.
    pub learn_secs: u64,
    /// Distinct actors a population comparison needs.
    pub learn_actors: u64,
    /// Endpoints tracked; beyond, new endpoints are not baselined (counted).
    pub max_endpoints: usize,
    /// (actor, endpoint) pairs tracked; beyond, the oldest are forgotten.
    pub max_actor_endpoints: usize,
    /// Object ids whose first accessor is remembered, per endpoint.
    pub max_owned_ids: usize,
    /// Actors quiet this long (packet time) are forgotten, and leave the
    /// population statistics.
    pub actor_idle_secs: u64,
}

impl Behavior {
    /// The settings that are not learned state (see `Detectors::adopt`).
    pub(super) fn take_config(&mut self) -> (BehaviorLimits, Option<super::spec::SpecWatch>) {
        (std::mem::take(&mut self.limits), self.spec.take())
    }

    pub(super) fn restore_config(
        &mut self,
        limits: BehaviorLimits,
        spec: Option<super::spec::SpecWatch>,
    ) {
        self.limits = limits;
        self.spec = spec;
    }
}

impl Default for BehaviorLimits {
    fn default() -> Self {
        BehaviorLimits {
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

/// A finding before it becomes an event (the engine adds the common fields).
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub owasp: Owasp,
    pub confidence: u8,
    pub title: String,
    pub what: String,
    pub why: &'static str,
    pub todo: &'static str,
    pub counts: Vec<(&'static str, u64)>,
    /// What the finding is about, for de-duplication.
    pub subject: String,
}

/// What the classifier found in the response, for exposure detectors.
#[derive(Debug, Default, Clone)]
pub struct ResponseData {
    pub sensitive_values: u64,
    pub sensitive_types: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Endpoint {
    first_secs: Option<u64>,
    exchanges: u64,
    successes: u64,
    authenticated: u64,
    /// Successful calls by privileged and by other known roles.
    privileged_callers: u64,
    unprivileged_callers: u64,
    /// Request body field names of successful calls, with counts.
    request_fields: BTreeMap<String, u64>,
    /// Sensitive types in successful responses, with counts.
    response_types: BTreeMap<String, u64>,
    /// Distinct object ids per actor over the population.
    ids_per_actor: Population,
    /// Object id → (first accessor, whether others accessed it too).
    owners: HashMap<String, (String, bool)>,
    exclusive_ids: u64,
    shared_ids: u64,
    /// Principals that used ids here, and how many of them used ids first
    /// used by another principal.
    principals: u64,
    principals_foreign: u64,
    /// Values of paging parameters.
    page_sizes: BTreeMap<String, Quantiles>,
    /// Response body bytes and latency (request start to response end, ms)
    /// of successful calls; answers by status class (1xx..5xx, other).
    response_bytes: Quantiles,
    latency_ms: Quantiles,
    status_classes: [u64; 6],
    /// Exchanges per minute of packet time: the current minute and the
    /// distribution over finished ones.
    minute: u64,
    minute_count: u64,
    per_minute: Quantiles,
}

#[derive(Default, Serialize, Deserialize)]
struct ActorEndpoint {
    last_secs: u64,
    ids: Distinct,
    ids_estimate: Option<u64>,
    foreign_objects: u64,
    /// Counted among the endpoint's principals.
    owner_seen: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct ActorRate {
    minute: u64,
    count: u64,
    /// Highest per-minute count in a finished minute (in the population).
    peak: Option<u64>,
    sensitive_minute: u64,
    sensitive_count: u64,
    sensitive_peak: Option<u64>,
}

/// Starts `minute` for one per-minute counter (its minute, count and
/// busiest finished minute): a finished minute's count raises the peak,
/// which moves the actor in `population`.
fn roll_minute(
    minute: u64,
    (current, count, peak): (&mut u64, &mut u64, &mut Option<u64>),
    population: &mut Population,
) {
    if *current == minute {
        return;
    }
    if *count > 0 {
        let busiest = peak.unwrap_or(0).max(*count);
        if *peak != Some(busiest) {
            population.moved(*peak, busiest);
            *peak = Some(busiest);
        }
    }
    *current = minute;
    *count = 0;
}

/// Everything learned is serialisable: the baseline snapshot is this state.
#[derive(Default, Serialize, Deserialize)]
pub struct Behavior {
    #[serde(skip)]
    limits: BehaviorLimits,
    endpoints: HashMap<String, Endpoint>,
    actor_endpoints: HashMap<(String, String), ActorEndpoint>,
    rates: HashMap<String, ActorRate>,
    /// Per-actor peak requests per minute, over the population.
    rate_population: Population,
    sensitive_population: Population,
    hosts: BTreeMap<String, u64>,
    /// Actors caught enumerating objects: their first uses of ids do not
    /// make them owners (the real owners coming later are not accused).
    enumerators: std::collections::BTreeSet<String>,
    /// Sensitive types in successful responses over the whole API, and how
    /// many successful responses: the baseline for endpoints too new to have one.
    api_types: BTreeMap<String, u64>,
    api_successes: u64,
    exchanges: u64,
    first_secs: Option<u64>,
    #[serde(skip)]
    pub endpoints_not_tracked: u64,
    #[serde(skip)]
    pub actors_forgotten: u64,
    /// The API's OpenAPI document, when configured (shadow and deprecated calls).
    #[serde(skip)]
    pub spec: Option<super::spec::SpecWatch>,
    #[serde(skip)]
    next_sweep_secs: u64,
    #[serde(skip)]
    pub actors_expired: u64,
}

/// Request properties that only privileged code paths should set.
const PRIVILEGED_FIELDS: &[&str] = &[
    "role",
    "roles",
    "is_admin",
    "isadmin",
    "admin",
    "is_staff",
    "isstaff",
    "is_superuser",
    "superuser",
    "permissions",
    "scopes",
    "group",
    "groups",
    "privileges",
    "account_type",
    "accounttype",
    "verified",
    "is_verified",
    "balance",
    "credit",
    "discount",
];

const PAGING_PARAMS: &[&str] = &[
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

/// Hosts a client may use that the learning period did not show.
const LEARN_HOSTS_SECS: u64 = 120;

impl Behavior {
    pub fn new(limits: BehaviorLimits) -> Self {
        Behavior {
            limits,
            endpoints: HashMap::new(),
            actor_endpoints: HashMap::new(),
            rates: HashMap::new(),
            rate_population: Population::default(),
            sensitive_population: Population::default(),
            hosts: BTreeMap::new(),
            enumerators: std::collections::BTreeSet::new(),
            api_types: BTreeMap::new(),
            api_successes: 0,
            exchanges: 0,
            first_secs: None,
            endpoints_not_tracked: 0,
            actors_forgotten: 0,
            spec: None,
            next_sweep_secs: 0,
            actors_expired: 0,
        }
    }

    pub fn observe(
        &mut self,
        view: &RequestView<'_>,
        actor: &Actor,
        data: &ResponseData,
        out: &mut Vec<Finding>,
    ) {
        self.exchanges += 1;
        let now = view.request.ts.secs();
        let first = *self.first_secs.get_or_insert(now);
        let host = view.host();
        let (template, ids) = template_of(&view.request.path);
        let key = format!("{host} {} {template}", view.request.method);
        let actor_key = actor_key(actor);
        let success = view.succeeded();
        let roles: Vec<String> = view.bearer.as_ref().map(|t| t.roles()).unwrap_or_default();
        let privileged = view.bearer.as_ref().is_some_and(|t| t.is_privileged());
        let has_credentials = has_credentials(view);

        self.expire(now);
        self.verbose_errors(view, &key, out);
        if let (Some(spec), Some(status)) = (&self.spec, view.status()) {
            spec.check(&view.request.method, &host, &template, status, out);
        }
        self.unknown_host(view, &host, now, first, success, out);
        self.rate(view, &actor_key, now, data, out);

        if !self.endpoints.contains_key(&key) && self.endpoints.len() >= self.limits.max_endpoints {
            self.endpoints_not_tracked += 1;
            return;
        }
        let learn = self.limits.learn_exchanges;
        let learn_actors = self.limits.learn_actors;
        let endpoint = self.endpoints.entry(key.clone()).or_default();
        let first_secs = *endpoint.first_secs.get_or_insert(now);
        // Learned once it has both enough calls and enough packet time.
        let learned =
            endpoint.exchanges >= learn && now.saturating_sub(first_secs) >= self.limits.learn_secs;

        // A normally authenticated endpoint answering a request without credentials.
        if learned
            && success
            && !has_credentials
            && endpoint.authenticated * 100 >= endpoint.exchanges * 95
        {
            out.push(Finding {
                rule: "detect.auth.missing_auth_accepted",
                severity: Severity::High,
                owasp: Owasp::BrokenAuthentication,
                confidence: 80,
                title: "Endpoint that requires credentials answered without them".into(),
                what: format!(
                    "{} called {key} without any credentials and got {}, although {} of the {} earlier calls to it carried credentials.",
                    super::actor::label(actor), view.status().unwrap_or(0), endpoint.authenticated, endpoint.exchanges
                ),
                why: "An endpoint that is called with credentials almost always but also serves requests without them is missing its authentication check.",
                todo: "Enforce authentication on this endpoint for every method and path variant; review what was served to unauthenticated callers.",
                counts: vec![("authenticated_calls", endpoint.authenticated), ("calls", endpoint.exchanges)],
                subject: format!("{key}|{actor_key}"),
            });
        }

        // Function level: a known non-privileged role succeeding where only
        // privileged roles (or admin-looking paths) are normal.
        let admin_path = is_admin_path(&template);
        let privileged_only =
            endpoint.privileged_callers >= 3 && endpoint.unprivileged_callers == 0;
        if success && !roles.is_empty() && !privileged && (admin_path || privileged_only) {
            out.push(Finding {
                rule: "detect.authz.function_level",
                severity: Severity::High,
                owasp: Owasp::BrokenFunctionLevelAuthorization,
                confidence: if admin_path && privileged_only { 90 } else { 75 },
                title: "Non-privileged role used an administrative function".into(),
                what: format!(
                    "{} with role {:?} called {key} and got {}; {}.",
                    super::actor::label(actor),
                    roles,
                    view.status().unwrap_or(0),
                    if privileged_only {
                        format!("until now only privileged roles had used it ({} calls)", endpoint.privileged_callers)
                    } else {
                        "the path is an administrative one".into()
                    }
                ),
                why: "Administrative functions that do not check the caller's role let any user act as an administrator.",
                todo: "Check the caller's role on the server for this function; review what this principal did with it.",
                counts: vec![("privileged_calls", endpoint.privileged_callers)],
                subject: format!("{key}|{actor_key}"),
            });
        }

        // Mass assignment: privileged properties that normal requests never send.
        if success && learned {
            let fields = body_field_names(view);
            let unusual: Vec<&String> = fields
                .iter()
                .filter(|f| PRIVILEGED_FIELDS.contains(&f.to_ascii_lowercase().as_str()))
                .filter(|f| {
                    endpoint.request_fields.get(*f).copied().unwrap_or(0) * 100
                        <= endpoint.successes
                })
                .collect();
            if !unusual.is_empty() {
                out.push(Finding {
                    rule: "detect.authz.mass_assignment",
                    severity: Severity::High,
                    owasp: Owasp::BrokenObjectPropertyLevelAuthorization,
                    confidence: 80,
                    title: "Request set privileged properties and was accepted".into(),
                    what: format!(
                        "{} sent {:?} to {key}, properties that none of its {} earlier successful requests set, and got {}.",
                        super::actor::label(actor), unusual, endpoint.successes, view.status().unwrap_or(0)
                    ),
                    why: "APIs that bind every request property to the stored object let clients grant themselves roles or change fields they must not.",
                    todo: "Allow-list the properties clients may set on this endpoint; check whether the privileged properties were stored.",
                    counts: vec![("earlier_successes", endpoint.successes)],
                    subject: format!("{key}|{actor_key}"),
                });
            }
        }

        // Excessive data exposure: sensitive types this endpoint does not
        // normally return (an endpoint too new to judge is judged against
        // what the whole API returns).
        let api_learned = self.api_successes >= learn * 10;
        if success && (learned || api_learned) && !data.sensitive_types.is_empty() {
            let (types, successes) = if learned {
                (&endpoint.response_types, endpoint.successes)
            } else {
                (&self.api_types, self.api_successes)
            };
            let new: Vec<&String> = data
                .sensitive_types
                .iter()
                .filter(|t| types.get(*t).copied().unwrap_or(0) * 100 <= successes)
                .collect();
            if !new.is_empty() {
                out.push(Finding {
                    rule: "detect.exposure.unusual_sensitive_data",
                    severity: Severity::High,
                    owasp: Owasp::BrokenObjectPropertyLevelAuthorization,
                    confidence: 75,
                    title: "Response carried sensitive data this endpoint does not normally return".into(),
                    what: format!(
                        "{key} returned {:?} to {}, types that {} {successes} earlier successful responses did not carry.",
                        new,
                        super::actor::label(actor),
                        if learned { "its" } else { "the API's" }
                    ),
                    why: "A response that suddenly carries new kinds of personal or secret data usually means an authorization or serialization flaw is exposing more than intended.",
                    todo: "Check which code path produced this response and filter the fields it returns to what the client needs.",
                    counts: vec![("sensitive_values", data.sensitive_values)],
                    subject: format!("{key}|{}", new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")),
                });
            }
        }

        // Pagination abuse: a page size far above what clients normally ask.
        for param in &view.params {
            let name = param.name.to_ascii_lowercase();
            if param.source != super::request::ParamSource::Query
                || !PAGING_PARAMS.contains(&name.as_str())
            {
                continue;
            }
            let Ok(value) = param.value.trim().parse::<u64>() else {
                continue;
            };
            let sizes = endpoint.page_sizes.entry(name.clone()).or_default();
            let p99 = (sizes.count() >= learn)
                .then(|| sizes.quantile(0.99))
                .flatten();
            let abusive = match p99 {
                Some(p99) => value as f64 >= (p99 * 10.0).max(1000.0),
                None => value >= 10_000,
            };
            if abusive && success {
                out.push(Finding {
                    rule: "detect.resource.page_size_abuse",
                    severity: Severity::Medium,
                    owasp: Owasp::UnrestrictedResourceConsumption,
                    confidence: 75,
                    title: format!("Page size `{name}={value}` far above normal"),
                    what: format!(
                        "{} asked {key} for `{name}={value}`; clients normally ask for at most {} and the API answered {}.",
                        super::actor::label(actor),
                        p99.map_or("small pages".to_string(), |p| format!("{p:.0}")),
                        view.status().unwrap_or(0)
                    ),
                    why: "Unbounded page sizes let one request pull whole tables, exhausting the server and exfiltrating data in bulk.",
                    todo: "Cap the page size on the server and reject larger values.",
                    counts: vec![("requested", value)],
                    subject: format!("{key}|{actor_key}|{name}"),
                });
            } else if !abusive {
                sizes.add(value as f64);
            }
        }

        // BOLA: objects first used by another principal, or far more
        // distinct objects than the population touches.
        if success && !ids.is_empty() && !privileged {
            let pair = (actor_key.clone(), key.clone());
            if !self.actor_endpoints.contains_key(&pair)
                && self.actor_endpoints.len() >= self.limits.max_actor_endpoints
            {
                self.actors_forgotten += 1;
            } else {
                let mine = self.actor_endpoints.entry(pair).or_default();
                mine.last_secs = now;
                let mut changed = false;
                for id in &ids {
                    changed |= mine.ids.insert(id.as_bytes());
                }
                let estimate = mine.ids.estimate();
                if changed && mine.ids_estimate != Some(estimate) {
                    endpoint.ids_per_actor.moved(mine.ids_estimate, estimate);
                    mine.ids_estimate = Some(estimate);
                }
                let others = endpoint
                    .ids_per_actor
                    .quantile_excluding(0.99, mine.ids_estimate);
                if endpoint.ids_per_actor.actors() > learn_actors {
                    if let Some(p99) = others {
                        if estimate >= 30 && estimate >= (p99 * 3).max(p99 + 20) {
                            if self.enumerators.len() < 100_000 {
                                self.enumerators.insert(actor_key.clone());
                            }
                            out.push(Finding {
                                rule: "detect.authz.bola_enumeration",
                                severity: Severity::High,
                                owasp: Owasp::BrokenObjectLevelAuthorization,
                                confidence: 80,
                                title: "Actor enumerated far more objects than other clients".into(),
                                what: format!(
                                    "{} accessed about {estimate} different objects through {key}; 99% of the other {} clients accessed at most {p99}.",
                                    super::actor::label(actor), endpoint.ids_per_actor.actors().saturating_sub(1)
                                ),
                                why: "Walking object ids is how attackers harvest other users' data when the API does not check who owns an object.",
                                todo: "Verify the API checks object ownership on this endpoint; review which objects this actor received and block it.",
                                counts: vec![("distinct_objects", estimate), ("population_p99", p99)],
                                subject: format!("{key}|{actor_key}"),
                            });
                        }
                    }
                }
                // Ownership: the first principal to use an id owns it, on
                // endpoints where ids are normally used by one principal.
                if actor.principal.is_some() {
                    if !mine.owner_seen {
                        mine.owner_seen = true;
                        endpoint.principals += 1;
                    }
                    let mut foreign = 0u64;
                    for id in &ids {
                        let room = endpoint.owners.len() < self.limits.max_owned_ids;
                        match endpoint.owners.get_mut(id) {
                            Some((owner, _)) if self.enumerators.contains(owner.as_str()) => {
                                // Claimed by an enumerator: the first honest user owns it.
                                *owner = actor_key.clone();
                            }
                            Some((owner, shared)) if *owner != actor_key => {
                                if !*shared {
                                    *shared = true;
                                    endpoint.exclusive_ids =
                                        endpoint.exclusive_ids.saturating_sub(1);
                                    endpoint.shared_ids += 1;
                                }
                                foreign += 1;
                            }
                            Some(_) => {}
                            None if room => {
                                endpoint
                                    .owners
                                    .insert(id.clone(), (actor_key.clone(), false));
                                endpoint.exclusive_ids += 1;
                            }
                            None => {}
                        }
                    }
                    // Public catalogues are shared by many principals;
                    // private objects (orders, profiles) are used only by the
                    // principal that used them first. Judged over the other
                    // principals, so the suspect does not decide.
                    let was_foreign = mine.foreign_objects > 0;
                    let others = endpoint.principals.saturating_sub(1);
                    let others_foreign = endpoint
                        .principals_foreign
                        .saturating_sub(u64::from(was_foreign));
                    let private = others >= 10 && others_foreign * 10 <= others;
                    mine.foreign_objects += foreign;
                    if !was_foreign && mine.foreign_objects > 0 {
                        endpoint.principals_foreign += 1;
                    }
                    if foreign > 0 && private && mine.foreign_objects >= 2 {
                        out.push(Finding {
                            rule: "detect.authz.bola_foreign_object",
                            severity: Severity::High,
                            owasp: Owasp::BrokenObjectLevelAuthorization,
                            confidence: 70,
                            title: "Principal accessed objects that belong to other principals".into(),
                            what: format!(
                                "{} accessed {} objects through {key} that other principals had used first, on an endpoint whose objects are normally used by a single principal ({} of {} ids).",
                                super::actor::label(actor), mine.foreign_objects, endpoint.exclusive_ids, endpoint.exclusive_ids + endpoint.shared_ids
                            ),
                            why: "Reading or changing another user's objects is the most common API flaw (broken object-level authorization).",
                            todo: "Check ownership of the object on every request to this endpoint; review the objects this principal reached.",
                            counts: vec![("foreign_objects", mine.foreign_objects)],
                            subject: format!("{key}|{actor_key}"),
                        });
                    }
                }
            }
        }

        // Response volume far above what this endpoint normally returns.
        let bytes = view
            .response
            .map_or(0, |r| r.body.wire_len.max(r.body.decoded_len));
        if success && learned {
            if let Some(p99) = endpoint.response_bytes.quantile(0.99) {
                if bytes as f64 >= (p99 * 20.0).max(1_000_000.0) {
                    out.push(Finding {
                        rule: "detect.resource.oversized_response",
                        severity: Severity::Medium,
                        owasp: Owasp::UnrestrictedResourceConsumption,
                        confidence: 70,
                        title: "Response far larger than this endpoint returns".into(),
                        what: format!(
                            "{key} returned {bytes} bytes to {}; 99% of its {} earlier successful responses were at most {p99:.0} bytes.",
                            super::actor::label(actor),
                            endpoint.successes
                        ),
                        why: "An unusually large answer is how bulk data leaves an API in one request (missing limits, injected filters, broken pagination).",
                        todo: "Check what this response contained and cap the amount of data one request can return.",
                        counts: vec![("bytes", bytes)],
                        subject: format!("{key}|{actor_key}"),
                    });
                }
            }
        }

        // Learn from this exchange (after judging it).
        endpoint.exchanges += 1;
        if let Some(status) = view.status() {
            let class = usize::from(status / 100).saturating_sub(1).min(5);
            if let Some(n) = endpoint.status_classes.get_mut(class) {
                *n += 1;
            }
        }
        if endpoint.minute != now / 60 {
            if endpoint.minute_count > 0 {
                endpoint.per_minute.add(endpoint.minute_count as f64);
            }
            endpoint.minute = now / 60;
            endpoint.minute_count = 0;
        }
        endpoint.minute_count += 1;
        if success {
            endpoint.response_bytes.add(bytes as f64);
            if let Some(response) = view.response {
                let ms = response
                    .end_ts
                    .as_nanos()
                    .saturating_sub(view.request.ts.as_nanos()) as f64
                    / 1e6;
                endpoint.latency_ms.add(ms);
            }
        }
        if has_credentials {
            endpoint.authenticated += 1;
        }
        if success {
            endpoint.successes += 1;
            if privileged {
                endpoint.privileged_callers += 1;
            } else if !roles.is_empty() {
                endpoint.unprivileged_callers += 1;
            }
            for field in body_field_names(view) {
                if endpoint.request_fields.len() < 256
                    || endpoint.request_fields.contains_key(&field)
                {
                    *endpoint.request_fields.entry(field).or_default() += 1;
                }
            }
            for t in &data.sensitive_types {
                *endpoint.response_types.entry(t.clone()).or_default() += 1;
                if self.api_types.len() < 256 || self.api_types.contains_key(t) {
                    *self.api_types.entry(t.clone()).or_default() += 1;
                }
            }
            self.api_successes += 1;
        }
    }

    /// Forgets actors quiet for `actor_idle_secs` (checked each minute of
    /// packet time); they leave the population statistics with their values.
    fn expire(&mut self, now: u64) {
        if now < self.next_sweep_secs {
            return;
        }
        self.next_sweep_secs = now.saturating_add(60);
        let idle = self.limits.actor_idle_secs;
        let (rates, sensitive) = (&mut self.rate_population, &mut self.sensitive_population);
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
            }
            keep
        });
        let endpoints = &mut self.endpoints;
        self.actor_endpoints.retain(|(_, key), a| {
            let keep = now.saturating_sub(a.last_secs) <= idle;
            if !keep {
                if let (Some(estimate), Some(endpoint)) = (a.ids_estimate, endpoints.get_mut(key)) {
                    endpoint.ids_per_actor.left(estimate);
                }
            }
            keep
        });
        self.actors_expired += expired;
        shrink(&mut self.rates);
        shrink(&mut self.actor_endpoints);
    }

    fn verbose_errors(&self, view: &RequestView<'_>, key: &str, out: &mut Vec<Finding>) {
        let Some(response) = view.response else {
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
        if let Some(marker) = ERROR_MARKERS.iter().find(|m| text.contains(*m)) {
            out.push(Finding {
                rule: "detect.exposure.verbose_error",
                severity: Severity::Medium,
                owasp: Owasp::SecurityMisconfiguration,
                confidence: 85,
                title: "Response exposes a stack trace or internal error".into(),
                what: format!(
                    "{key} answered {} with an internal error detail ({:?}) in the body.",
                    view.status().unwrap_or(0),
                    marker.trim()
                ),
                why: "Stack traces and database errors reveal code paths, file names, versions and queries that help attackers aim their next request.",
                todo: "Return generic error messages to clients and log the details on the server only.",
                counts: vec![("status", u64::from(view.status().unwrap_or(0)))],
                subject: key.to_owned(),
            });
        }
    }

    fn unknown_host(
        &mut self,
        view: &RequestView<'_>,
        host: &str,
        now: u64,
        first: u64,
        success: bool,
        out: &mut Vec<Finding>,
    ) {
        let learning = now.saturating_sub(first) < LEARN_HOSTS_SECS
            || self.exchanges < self.limits.learn_exchanges * 10;
        let known = self.hosts.contains_key(host);
        if !known && self.hosts.len() < 4096 {
            self.hosts.insert(host.to_owned(), now);
        }
        if known || learning || !success {
            return;
        }
        out.push(Finding {
            rule: "detect.inventory.unknown_host",
            severity: Severity::Medium,
            owasp: Owasp::ImproperInventoryManagement,
            confidence: 60,
            title: format!("API answered for a host it was not known to serve: {host}"),
            what: format!(
                "A request named the host {host:?} and was answered {} by {}, which until then served only {:?}.",
                view.status().unwrap_or(0),
                view.exchange.server,
                self.hosts.keys().filter(|h| h.as_str() != host).take(5).collect::<Vec<_>>()
            ),
            why: "Servers that answer any Host name expose staging or internal virtual hosts and enable host-header attacks.",
            todo: "Configure the server to reject unknown Host names; inventory the virtual hosts it really serves.",
            counts: vec![("known_hosts", self.hosts.len() as u64)],
            subject: host.to_owned(),
        });
    }

    fn rate(
        &mut self,
        view: &RequestView<'_>,
        actor_key: &str,
        now: u64,
        data: &ResponseData,
        out: &mut Vec<Finding>,
    ) {
        let minute = now / 60;
        if !self.rates.contains_key(actor_key)
            && self.rates.len() >= self.limits.max_actor_endpoints
        {
            self.actors_forgotten += 1;
            return;
        }
        let rate = self.rates.entry(actor_key.to_owned()).or_default();
        roll_minute(
            minute,
            (&mut rate.minute, &mut rate.count, &mut rate.peak),
            &mut self.rate_population,
        );
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
        rate.sensitive_count += data.sensitive_values;
        let count = rate.count;
        let sensitive = rate.sensitive_count;
        let own_peak = rate.peak;
        let own_sensitive_peak = rate.sensitive_peak;
        let actors = self.rate_population.actors();
        if actors >= self.limits.learn_actors * 2 {
            let p99 = self
                .rate_population
                .quantile_excluding(0.99, own_peak)
                .unwrap_or(0);
            // Far above the population, and above this client's own busiest
            // finished minute (a client that is always this busy is not new).
            let above_own = own_peak.is_none_or(|peak| count >= peak.saturating_mul(4));
            if count >= (p99 * 4).max(120) && above_own {
                out.push(Finding {
                    rule: "detect.resource.rate_abuse",
                    severity: Severity::Medium,
                    owasp: Owasp::UnrestrictedResourceConsumption,
                    confidence: 75,
                    title: "Request rate far above every other client".into(),
                    what: format!(
                        "{actor_key} sent {count} requests within one minute; 99% of the other {} clients never sent more than {p99} in a minute.",
                        actors.saturating_sub(1)
                    ),
                    why: "Request floods from one client scrape data, brute-force identifiers and exhaust the API for everyone else.",
                    todo: "Rate-limit per client and per principal; check what this client collected.",
                    counts: vec![("requests_per_minute", count), ("population_p99", p99)],
                    subject: actor_key.to_owned(),
                });
            }
        }
        if self.sensitive_population.actors() >= self.limits.learn_actors && sensitive > 0 {
            let p999 = self
                .sensitive_population
                .quantile_excluding(0.999, own_sensitive_peak)
                .unwrap_or(0);
            if sensitive >= (p999 * 10).max(50) {
                out.push(Finding {
                    rule: "detect.exposure.sensitive_volume",
                    severity: Severity::High,
                    owasp: Owasp::BrokenObjectPropertyLevelAuthorization,
                    confidence: 75,
                    title: "Client received far more sensitive records than any other".into(),
                    what: format!(
                        "{actor_key} received {sensitive} sensitive values within one minute (last from {} {}); the other clients' highest minute was {p999}.",
                        view.request.method, view.request.path
                    ),
                    why: "Bulk access to personal or secret data is how breaches through APIs happen, even when each single response looks legitimate.",
                    todo: "Find which endpoint returns this data in bulk, restrict it to what clients need, and review this client's access.",
                    counts: vec![("sensitive_values_per_minute", sensitive), ("population_p999", p999)],
                    subject: actor_key.to_owned(),
                });
            }
        }
    }
}

/// Gives memory back after many entries left (a retained map keeps its capacity).
pub(super) fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 1024 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

/// The path with recognisable values replaced, and those values (the object ids).
pub fn template_of(path: &str) -> (String, Vec<String>) {
    let mut template = String::with_capacity(path.len());
    let mut ids = Vec::new();
    for segment in path.split('/').filter(|s| !s.is_empty()).take(32) {
        template.push('/');
        match classify_segment(segment, 128) {
            Some(kind) => {
                template.push('{');
                template.push_str(kind.param_name());
                template.push('}');
                ids.push(segment.to_owned());
            }
            None => template.push_str(segment),
        }
    }
    if template.is_empty() {
        template.push('/');
    }
    (template, ids)
}

fn is_admin_path(template: &str) -> bool {
    template.split('/').any(|s| {
        matches!(
            s.to_ascii_lowercase().as_str(),
            "admin" | "administrator" | "manage" | "management" | "internal" | "superuser" | "sudo"
        )
    })
}

fn has_credentials(view: &RequestView<'_>) -> bool {
    let h = &view.request.headers;
    h.get("authorization").is_some()
        || h.get("x-api-key").is_some()
        || h.get("api-key").is_some()
        || h.get("cookie").is_some()
        || view
            .param(&["api_key", "apikey", "access_token", "token"])
            .is_some()
}

/// Names of request body fields (JSON leaves' last component, form names).
fn body_field_names(view: &RequestView<'_>) -> Vec<String> {
    let mut names: Vec<String> = view
        .params
        .iter()
        .filter(|p| {
            matches!(
                p.source,
                super::request::ParamSource::Json | super::request::ParamSource::Form
            )
        })
        .map(|p| {
            p.name
                .rsplit('.')
                .next()
                .unwrap_or(&p.name)
                .trim_end_matches("[]")
                .to_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn actor_key(actor: &Actor) -> String {
    actor
        .principal
        .clone()
        .or_else(|| actor.ip.map(|i| i.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::jwt::sign_hs256;
    use super::super::request::tests::exchange;
    use super::*;
    use crate::exchange::Exchange;
    use serde_json::json;

    fn token(sub: &str, role: &str) -> String {
        format!(
            "Bearer {}",
            sign_hs256(
                &json!({"alg":"HS256"}),
                &json!({"sub": sub, "role": role}),
                "k-9f3a-strong"
            )
        )
    }

    fn run(exchanges: &[Exchange], data: &ResponseData) -> Vec<&'static str> {
        let mut b = Behavior::new(BehaviorLimits::default());
        let mut out = Vec::new();
        for e in exchanges {
            let view = RequestView::new(e).unwrap();
            let actor = super::super::actor::identify(&view, &Default::default());
            b.observe(&view, &actor, data, &mut out);
        }
        out.iter().map(|f| f.rule).collect()
    }

    fn user_call(i: u64, path: &str, auth: bool, body: &str, t: u64) -> Exchange {
        let tok = token(&format!("user{}", i % 8), "user");
        let mut headers = vec![("Content-Type", "application/json")];
        if auth {
            headers.push(("Authorization", tok.as_str()));
        }
        exchange(
            &format!("10.0.1.{}", i % 8 + 1),
            "GET",
            path,
            &headers,
            body,
            200,
            "{}",
            t,
        )
    }

    #[test]
    fn missing_auth_on_an_authenticated_endpoint_and_its_twin() {
        let mut calls: Vec<Exchange> = (0..25)
            .map(|i| user_call(i, &format!("/api/users/{i}"), true, "", i))
            .collect();
        let twin = run(&calls, &ResponseData::default());
        assert!(twin.is_empty(), "{twin:?}");
        calls.push(user_call(99, "/api/users/5", false, "", 100));
        assert_eq!(
            run(&calls, &ResponseData::default()),
            vec!["detect.auth.missing_auth_accepted"]
        );
        // A public endpoint answered without credentials is normal.
        let public: Vec<Exchange> = (0..30)
            .map(|i| user_call(i, &format!("/api/products/{i}"), i % 2 == 0, "", i))
            .collect();
        assert!(run(&public, &ResponseData::default()).is_empty());
    }

    #[test]
    fn mass_assignment_and_its_twin() {
        let mut calls: Vec<Exchange> = (0..25)
            .map(|i| {
                let mut e = user_call(
                    i,
                    "/api/users/7",
                    true,
                    r#"{"phone":"010-1234-5678"}"#,
                    i * 5,
                );
                e.request.as_mut().unwrap().method = "PATCH".into();
                e
            })
            .collect();
        assert!(run(&calls, &ResponseData::default()).is_empty());
        let mut attack = user_call(
            3,
            "/api/users/7",
            true,
            r#"{"phone":"1","role":"admin"}"#,
            200,
        );
        attack.request.as_mut().unwrap().method = "PATCH".into();
        calls.push(attack);
        assert_eq!(
            run(&calls, &ResponseData::default()),
            vec!["detect.authz.mass_assignment"]
        );
    }

    #[test]
    fn page_size_abuse_and_its_twin() {
        let mut calls: Vec<Exchange> = (0..30)
            .map(|i| user_call(i, "/api/products?limit=20", true, "", i))
            .collect();
        calls.push(user_call(1, "/api/products?limit=50", true, "", 40));
        assert!(
            run(&calls, &ResponseData::default()).is_empty(),
            "a slightly larger page is fine"
        );
        calls.push(user_call(2, "/api/products?limit=100000", true, "", 41));
        assert_eq!(
            run(&calls, &ResponseData::default()),
            vec!["detect.resource.page_size_abuse"]
        );
    }

    #[test]
    fn function_level_and_its_twin() {
        let admin = token("root", "admin");
        let user = token("bob", "user");
        let call = |auth: &str, t| {
            exchange(
                "10.0.0.5",
                "GET",
                "/api/admin/users",
                &[("Authorization", auth)],
                "",
                200,
                "[]",
                t,
            )
        };
        assert!(run(
            &[call(&admin, 1), call(&admin, 2)],
            &ResponseData::default()
        )
        .is_empty());
        assert_eq!(
            run(&[call(&admin, 1), call(&user, 2)], &ResponseData::default()),
            vec!["detect.authz.function_level"]
        );
    }

    #[test]
    fn verbose_error_and_its_twin() {
        let trace = exchange(
            "10.0.0.5",
            "GET",
            "/api/orders/abc",
            &[],
            "",
            500,
            "Traceback (most recent call last):\n  File \"app.py\"",
            1,
        );
        let plain = exchange(
            "10.0.0.5",
            "GET",
            "/api/orders/abc",
            &[],
            "",
            500,
            r#"{"error":"internal error"}"#,
            1,
        );
        assert_eq!(
            run(&[trace], &ResponseData::default()),
            vec!["detect.exposure.verbose_error"]
        );
        assert!(run(&[plain], &ResponseData::default()).is_empty());
    }

    #[test]
    fn bola_enumeration_and_its_twin() {
        let mut calls = Vec::new();
        // Eight users each read their own three orders.
        for u in 0..8u64 {
            for k in 0..3u64 {
                calls.push(user_call(
                    u,
                    &format!("/api/orders/{}", 1000 + u * 10 + k),
                    true,
                    "",
                    u * 3 + k,
                ));
            }
        }
        assert!(run(&calls, &ResponseData::default()).is_empty());
        let thief = token("mallory", "user");
        for id in 0..60u64 {
            calls.push(exchange(
                "10.0.9.9",
                "GET",
                &format!("/api/orders/{}", 5000 + id),
                &[("Authorization", &thief)],
                "",
                200,
                "{}",
                100 + id,
            ));
        }
        let rules = run(&calls, &ResponseData::default());
        assert!(
            rules.contains(&"detect.authz.bola_enumeration"),
            "{rules:?}"
        );
    }

    #[test]
    fn unusual_sensitive_types_and_their_twin() {
        let calls: Vec<Exchange> = (0..25)
            .map(|i| user_call(i, "/api/users/me", true, "", i))
            .collect();
        let usual = ResponseData {
            sensitive_values: 1,
            sensitive_types: vec!["email".into()],
        };
        assert!(run(&calls, &usual).is_empty());
        let mut b = Behavior::new(BehaviorLimits::default());
        let mut out = Vec::new();
        for e in &calls {
            let view = RequestView::new(e).unwrap();
            let actor = super::super::actor::identify(&view, &Default::default());
            b.observe(&view, &actor, &usual, &mut out);
        }
        let leak = ResponseData {
            sensitive_values: 2,
            sensitive_types: vec!["email".into(), "us_ssn".into()],
        };
        let e = user_call(3, "/api/users/me", true, "", 99);
        let view = RequestView::new(&e).unwrap();
        let actor = super::super::actor::identify(&view, &Default::default());
        b.observe(&view, &actor, &leak, &mut out);
        let rules: Vec<&str> = out.iter().map(|f| f.rule).collect();
        assert_eq!(rules, vec!["detect.exposure.unusual_sensitive_data"]);
    }

    #[test]
    fn oversized_response_and_its_twin() {
        let mut calls: Vec<Exchange> = (0..30)
            .map(|i| {
                let mut e = user_call(i, "/api/report", true, "", i * 5);
                e.response.as_mut().unwrap().body.wire_len = 2_000 + i * 10;
                e
            })
            .collect();
        let mut bigger = user_call(1, "/api/report", true, "", 200);
        bigger.response.as_mut().unwrap().body.wire_len = 30_000;
        calls.push(bigger);
        assert!(
            run(&calls, &ResponseData::default()).is_empty(),
            "15x and under 1 MB is fine"
        );
        let mut dump = user_call(2, "/api/report", true, "", 201);
        dump.response.as_mut().unwrap().body.wire_len = 5_000_000;
        calls.push(dump);
        assert_eq!(
            run(&calls, &ResponseData::default()),
            vec!["detect.resource.oversized_response"]
        );
    }

    #[test]
    fn rate_abuse_and_its_twin() {
        let client = |c: u64, t: u64| {
            let auth = token(&format!("c{c}"), "user");
            exchange(
                &format!("10.0.2.{c}"),
                "GET",
                "/api/items",
                &[("Authorization", &auth)],
                "",
                200,
                "{}",
                t,
            )
        };
        // Twelve clients at a human pace for three minutes, one of them busier.
        let mut calls = Vec::new();
        for minute in 0..3u64 {
            for c in 0..12u64 {
                let n = if c == 0 { 40 } else { 8 };
                for k in 0..n {
                    calls.push(client(c, minute * 60 + k));
                }
            }
        }
        assert!(
            run(&calls, &ResponseData::default()).is_empty(),
            "a busy human is not abuse"
        );
        for k in 0..200u64 {
            calls.push(client(99, 200 + k / 4));
        }
        assert!(run(&calls, &ResponseData::default()).contains(&"detect.resource.rate_abuse"));
    }

    #[test]
    fn sensitive_volume_and_its_twin() {
        let normal = ResponseData {
            sensitive_values: 2,
            sensitive_types: vec!["email".into()],
        };
        let mut b = Behavior::new(BehaviorLimits::default());
        let mut out = Vec::new();
        let feed = |b: &mut Behavior, e: &Exchange, d: &ResponseData, out: &mut Vec<Finding>| {
            let view = RequestView::new(e).unwrap();
            let actor = super::super::actor::identify(&view, &Default::default());
            b.observe(&view, &actor, d, out);
        };
        // Ten clients each read their own profile a few times a minute for two minutes.
        for minute in 0..2u64 {
            for c in 0..10u64 {
                for k in 0..3u64 {
                    feed(
                        &mut b,
                        &user_call(c, "/api/users/me", true, "", minute * 60 + k),
                        &normal,
                        &mut out,
                    );
                }
            }
        }
        assert!(out.is_empty());
        // One client pulls an export with hundreds of sensitive values.
        let bulk = ResponseData {
            sensitive_values: 400,
            sensitive_types: vec!["email".into()],
        };
        feed(
            &mut b,
            &user_call(3, "/api/users/me", true, "", 150),
            &bulk,
            &mut out,
        );
        let rules: Vec<&str> = out.iter().map(|f| f.rule).collect();
        assert!(
            rules.contains(&"detect.exposure.sensitive_volume"),
            "{rules:?}"
        );
    }

    #[test]
    fn unknown_host_after_learning_and_its_twin() {
        let mut calls: Vec<Exchange> = (0..250)
            .map(|i| user_call(i, "/api/items", true, "", i))
            .collect();
        assert!(
            run(&calls, &ResponseData::default()).is_empty(),
            "the learning period names the hosts"
        );
        let mut odd = user_call(1, "/api/items", true, "", 300);
        odd.request.as_mut().unwrap().host = Some("staging.internal".into());
        let mut refused = odd.clone();
        refused.response.as_mut().unwrap().status = Some(421);
        calls.push(refused);
        assert!(
            run(&calls, &ResponseData::default()).is_empty(),
            "a host the server refuses is fine"
        );
        calls.pop();
        calls.push(odd);
        assert_eq!(
            run(&calls, &ResponseData::default()),
            vec!["detect.inventory.unknown_host"]
        );
    }

    #[test]
    fn templates_replace_ids() {
        assert_eq!(
            template_of("/api/users/42/orders/550e8400-e29b-41d4-a716-446655440000"),
            (
                "/api/users/{id}/orders/{uuid}".to_string(),
                vec![
                    "42".to_string(),
                    "550e8400-e29b-41d4-a716-446655440000".to_string()
                ]
            )
        );
        assert_eq!(template_of("/").0, "/");
    }
}
