//! Authorization: object level (an actor walking far more objects than the
//! population does on an endpoint; a principal using objects other
//! principals own; a principal naming another on a self-service endpoint),
//! function level (a principal refused on, or using, functions only
//! privileged principals use) and object properties (privileged fields set
//! in writes). Attempts the API refused are findings too, at lower
//! severity: they are what an attacker does before a flaw is found.
//!
//! Object ids are the values at the inventory's learned parameters: names,
//! slugs and titles as well as numbers. Privileged principals are learned,
//! not only read from role claims: a principal that succeeds on an
//! endpoint others are refused on (403) is privileged; one refused there
//! is not. Privileged principals (administrators, batch jobs) legitimately
//! reach every object and are not judged by the object-level rules.

use super::report::Finding;
use super::rules::RuleId;
use super::scanner::trim;
use crate::analysis::facts::{ActorKey, Facts};
use crate::baseline::learned::Baselines;
use crate::event::Severity;
use crate::inventory::template::Outcome;
use crate::inventory::EndpointKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};

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
    "issuperuser",
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
    "owner_id",
    "ownerid",
    "user_id",
];

/// Distinct objects an actor must have named on one endpoint before the
/// population comparison, and how far above the population's 99th
/// percentile it must be.
const ENUMERATION_MIN_OBJECTS: u64 = 20;
const ENUMERATION_FACTOR: u64 = 3;
/// Objects of other principals a principal must have used.
const FOREIGN_MIN_OBJECTS: u64 = 2;
/// Distinct restricted endpoints a principal must be refused on, in the window.
const FUNCTION_PROBE_MIN_ENDPOINTS: usize = 3;
const FUNCTION_PROBE_WINDOW_SECS: u64 = 600;
/// Successful calls by privileged principals an endpoint needs, and none
/// by others, to be an administrative function.
const MIN_PRIVILEGED_CALLS: u64 = 2;
/// Principals remembered as privileged or not, endpoints remembered as restricted.
const MAX_PRINCIPALS: usize = 100_000;
const MAX_RESTRICTED: usize = 10_000;
/// Object ids whose owner is remembered, over every path.
const MAX_OWNED: usize = 1_000_000;

/// Adds a principal to a bounded set.
fn mark(set: &mut BTreeSet<String>, principal: &str) {
    if set.len() < MAX_PRINCIPALS && !set.contains(principal) {
        set.insert(principal.to_owned());
    }
}

/// Authorization state (the object counts live in the baselines). What
/// was learned (privilege, restricted endpoints, owners) is part of the
/// baseline snapshot; recent refusals are not.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Authorization {
    /// Principals seen succeeding on restricted endpoints (or with a
    /// privileged role claim), and principals refused there.
    privileged: BTreeSet<String>,
    unprivileged: BTreeSet<String>,
    /// Endpoints some principal was refused on (403) while another succeeded.
    restricted: BTreeSet<EndpointKey>,
    /// Per endpoint: principals that succeeded and that were refused (small).
    callers: HashMap<EndpointKey, (BTreeSet<String>, BTreeSet<String>)>,
    /// Object owners shared by the methods of one path: (host, template)
    /// and value → owning principal, and whether others used it too.
    owners: HashMap<(String, String), HashMap<String, (String, bool)>>,
    /// Object ids remembered over every path (bounded by `MAX_OWNED`).
    owned: usize,
    /// Restricted endpoints each principal was refused on, recently.
    #[serde(skip)]
    refusals: HashMap<String, VecDeque<(u64, EndpointKey)>>,
    #[serde(skip)]
    pub refused: u64,
}

impl Authorization {
    /// Whether the facts' principal is privileged: a role claim says so,
    /// or it was seen succeeding where others are refused.
    pub fn privileged(&self, f: &Facts<'_>) -> Option<bool> {
        let p = f.principal.as_ref()?;
        if f.jwt().is_some_and(|j| j.is_privileged()) || self.privileged.contains(&p.id) {
            return Some(true);
        }
        let roles = f.jwt().is_some_and(|j| !j.roles().is_empty());
        (roles || self.unprivileged.contains(&p.id)).then_some(false)
    }

    /// Judges one exchange; returns what is known of its principal's
    /// privilege (for the baselines).
    pub fn observe(
        &mut self,
        f: &Facts<'_>,
        baselines: &mut Baselines,
        out: &mut Vec<Finding>,
    ) -> Option<bool> {
        // Judged on what was known before this exchange taught anything.
        let privilege = self.privileged(f);
        self.learn_privilege(f);
        let privileged = privilege == Some(true);
        self.function_level(f, privilege, baselines, out);
        if !privileged {
            self.enumeration(f, baselines, out);
            self.foreign_objects(f, baselines, out);
            self.self_service(f, baselines, out);
        }
        self.mass_assignment(f, baselines, out);
        privilege
    }

    /// Learns which functions are restricted and who may use them. Only
    /// endpoints without object ids in their path count: a 403 on
    /// `/items/{id}` is usually about the object (someone else's item),
    /// one on `/admin/users` about the function.
    fn learn_privilege(&mut self, f: &Facts<'_>) {
        let Some(p) = &f.principal else { return };
        if f.jwt().is_some_and(|j| j.is_privileged()) {
            mark(&mut self.privileged, &p.id);
        }
        let forbidden = f.status() == Some(403);
        if !(f.succeeded() || forbidden) || !f.values.is_empty() {
            return;
        }
        if !self.callers.contains_key(&f.key) && self.callers.len() >= MAX_RESTRICTED {
            self.refused += 1;
            return;
        }
        let callers = self.callers.entry(f.key.clone()).or_default();
        let set = if forbidden {
            &mut callers.1
        } else {
            &mut callers.0
        };
        if set.len() >= 64 || !set.insert(p.id.clone()) {
            return;
        }
        // A principal allowed here and refused never, or refused and
        // allowed never, on a function some are refused and others allowed.
        let (ok, refused) = (&callers.0, &callers.1);
        let allowed: Vec<&String> = ok.iter().filter(|q| !refused.contains(*q)).collect();
        let denied: Vec<&String> = refused.iter().filter(|q| !ok.contains(*q)).collect();
        if allowed.is_empty() || denied.is_empty() {
            return;
        }
        if self.restricted.len() < MAX_RESTRICTED {
            self.restricted.insert(f.key.clone());
        }
        for q in denied {
            mark(&mut self.unprivileged, q);
        }
        for q in allowed {
            // Refused on another function: not an administrator, whatever
            // it was allowed here (that may be the flaw).
            if !self.unprivileged.contains(q) {
                mark(&mut self.privileged, q);
            }
        }
    }

    /// A principal refused on several functions others use (probing), or a
    /// non-privileged one using a function only privileged principals use:
    /// one others are refused on, or one the baseline saw only privileged
    /// principals call.
    fn function_level(
        &mut self,
        f: &Facts<'_>,
        privilege: Option<bool>,
        baselines: &Baselines,
        out: &mut Vec<Finding>,
    ) {
        let Some(p) = &f.principal else { return };
        if f.status() == Some(403) {
            if !self.refusals.contains_key(&p.id) && self.refusals.len() >= MAX_PRINCIPALS {
                self.refused += 1;
                return;
            }
            let r = self.refusals.entry(p.id.clone()).or_default();
            if r.iter().all(|(_, k)| *k != f.key) {
                r.push_back((f.now, f.key.clone()));
            }
            trim(r, f.now, FUNCTION_PROBE_WINDOW_SECS, |(t, _)| *t);
            let restricted = r
                .iter()
                .filter(|(_, k)| self.restricted.contains(k))
                .count();
            if r.len() >= FUNCTION_PROBE_MIN_ENDPOINTS && restricted > 0 {
                let examples: Vec<String> = r.iter().take(10).map(|(_, k)| k.to_string()).collect();
                out.push(
                    Finding::new(
                        RuleId::FunctionLevel,
                        75,
                        format!(
                            "{} was refused (403) on {} different functions within {FUNCTION_PROBE_WINDOW_SECS} seconds, {restricted} of them used by privileged principals: {}.",
                            f.actor_label(),
                            r.len(),
                            examples.join(", ")
                        ),
                        format!("attempts|{}", f.who),
                    )
                    .severity(Severity::Medium)
                    .title("Principal tried administrative functions and was refused".into())
                    .counts(&[("functions", r.len() as u64)]),
                );
            }
            return;
        }
        if !f.succeeded() || privilege != Some(false) {
            return;
        }
        let privileged_callers = self.callers.get(&f.key).map_or(0, |(ok, refused)| {
            ok.iter()
                .filter(|q| **q != p.id && !refused.contains(*q) && self.privileged.contains(*q))
                .count() as u64
        });
        // Administrative functions are called rarely: a few calls suffice,
        // once the API as a whole and the endpoint have been watched a while.
        let limits = &baselines.limits;
        let watched = |first: Option<u64>| {
            first.is_some_and(|t| f.now.saturating_sub(t) >= limits.learn_secs)
        };
        let api_learned =
            baselines.exchanges >= limits.learn_exchanges * 10 && watched(baselines.first_secs);
        let only_privileged = baselines
            .endpoint(&f.key)
            .filter(|e| api_learned && watched(e.first_secs))
            .filter(|e| {
                e.unprivileged_successes == 0 && e.privileged_successes >= MIN_PRIVILEGED_CALLS
            })
            .map(|e| e.privileged_successes);
        let what = if let Some(calls) = only_privileged {
            format!(
                "{} is not privileged and called {}, got {}; all {calls} earlier successful calls there were by privileged principals.",
                f.actor_label(),
                f.key,
                f.status().unwrap_or(0)
            )
        } else if self.restricted.contains(&f.key) && privileged_callers > 0 {
            format!(
                "{} is not privileged and called {}, got {}; other non-privileged principals are refused there, and {privileged_callers} privileged ones use it.",
                f.actor_label(),
                f.key,
                f.status().unwrap_or(0)
            )
        } else {
            return;
        };
        out.push(
            Finding::new(
                RuleId::FunctionLevel,
                85,
                what,
                format!("{}|{}", f.key, f.who),
            )
            .counts(&[("privileged_callers", privileged_callers)]),
        );
    }

    /// An actor naming far more distinct objects on an endpoint than the
    /// other clients do, whatever the answers (slow harvesting counts).
    fn enumeration(&mut self, f: &Facts<'_>, baselines: &mut Baselines, out: &mut Vec<Finding>) {
        if f.values.is_empty() || f.outcome == Outcome::Unanswered {
            return;
        }
        let learn_actors = baselines.limits.learn_actors;
        let now = f.now;
        let Some(mine) = baselines.actor_endpoint(f) else {
            return;
        };
        mine.last_secs = now;
        let mut changed = false;
        for v in &f.values {
            changed |= mine.objects.insert(v.value.as_bytes());
        }
        let estimate = mine.objects.estimate();
        let previous = mine.objects_estimate;
        if changed && previous != Some(estimate) {
            mine.objects_estimate = Some(estimate);
        }
        let e = baselines.endpoints.entry(f.key.clone()).or_default();
        if changed && previous != Some(estimate) {
            e.objects_per_actor.moved(previous, estimate);
        }
        if e.objects_per_actor.actors() <= learn_actors || estimate < ENUMERATION_MIN_OBJECTS {
            return;
        }
        let Some(p99) = e.objects_per_actor.quantile_excluding(0.99, Some(estimate)) else {
            return;
        };
        if estimate >= (p99 * ENUMERATION_FACTOR).max(p99 + ENUMERATION_MIN_OBJECTS / 2) {
            if baselines.enumerators.len() < 100_000 {
                baselines.enumerators.insert(f.who.clone());
            }
            let refused = !f.succeeded();
            let mut finding = Finding::new(
                RuleId::BolaEnumeration,
                80,
                format!(
                    "{} named about {estimate} different objects through {}; 99% of the other {} clients named at most {p99}.{}",
                    f.actor_label(),
                    f.key,
                    e.objects_per_actor.actors().saturating_sub(1),
                    if refused { " The last was refused." } else { "" }
                ),
                format!("{}|{}", f.key, f.who),
            )
            .counts(&[("distinct_objects", estimate), ("population_p99", p99)]);
            if refused {
                finding = finding.severity(Severity::Medium);
            }
            out.push(finding);
        }
    }

    /// Objects other principals used first, on an endpoint whose objects
    /// are private. Ownership is shared by the methods of a path, seeded by
    /// whoever used the object first (not an enumerator) and by identity
    /// (a value naming a principal is that principal's).
    fn foreign_objects(
        &mut self,
        f: &Facts<'_>,
        baselines: &mut Baselines,
        out: &mut Vec<Finding>,
    ) {
        let Some(p) = &f.principal else { return };
        if f.values.is_empty() || matches!(f.outcome, Outcome::NotFound | Outcome::Unanswered) {
            return;
        }
        let path = (f.key.host.to_string(), f.key.template.to_string());
        if !self.owners.contains_key(&path) && self.owners.len() >= MAX_RESTRICTED {
            self.refused += 1;
            return;
        }
        let me = p.id.clone();
        let enumerator = baselines.enumerators.contains(&f.who);
        let owners = self.owners.entry(path).or_default();
        let mut foreign = 0u64;
        for v in &f.values {
            let value = v.value.to_string();
            let room = owners.len() < baselines.limits.max_owned_ids && self.owned < MAX_OWNED;
            match owners.get_mut(&value) {
                Some((owner, _)) if *owner != me && p.is_named(&value) => {
                    // The value names the caller: it is the caller's, whoever
                    // used it first.
                    *owner = me.clone();
                }
                Some((owner, _))
                    if baselines
                        .enumerators
                        .contains(&ActorKey::Principal(owner.clone())) =>
                {
                    // Claimed by an enumerator: the first honest user owns
                    // it (another enumerator does not).
                    let honest = !enumerator;
                    if honest {
                        *owner = me.clone();
                    }
                }
                Some((owner, shared)) if *owner != me => {
                    *shared = true;
                    foreign += 1;
                }
                Some(_) => {}
                None if room => {
                    // A value naming a principal is that principal's.
                    let owner = if p.is_named(&value) || !enumerator {
                        me.clone()
                    } else {
                        continue;
                    };
                    owners.insert(value, (owner, false));
                    self.owned += 1;
                }
                None => {}
            }
        }
        let e = baselines.endpoints.entry(f.key.clone()).or_default();
        let Some(mine) = baselines
            .actor_endpoints
            .get_mut(&(f.who.clone(), f.key.clone()))
        else {
            return;
        };
        if !mine.owner_seen {
            mine.owner_seen = true;
            e.principals += 1;
        }
        let was_foreign = mine.foreign_objects > 0;
        let others = e.principals.saturating_sub(1);
        let others_foreign = e.principals_foreign.saturating_sub(u64::from(was_foreign));
        let private = e.private_objects(others, others_foreign);
        mine.foreign_objects += foreign;
        if !was_foreign && mine.foreign_objects > 0 {
            e.principals_foreign += 1;
        }
        if foreign > 0 && private && mine.foreign_objects >= FOREIGN_MIN_OBJECTS {
            let refused = !f.succeeded();
            let mut finding = Finding::new(
                RuleId::BolaForeignObject,
                75,
                format!(
                    "{} used {} objects through {} that other principals own, on an endpoint whose objects are used by their owner alone; the last answer was {}.",
                    f.actor_label(),
                    mine.foreign_objects,
                    f.key,
                    f.status().unwrap_or(0)
                ),
                format!("{}|{}", f.key.template, f.who),
            )
            .counts(&[("foreign_objects", mine.foreign_objects)]);
            if refused {
                finding = finding
                    .severity(Severity::Medium)
                    .title("Principal tried to use objects that belong to other principals".into());
            }
            out.push(finding);
        }
    }

    /// On an endpoint whose callers name themselves in its path, a
    /// principal naming someone else: from one request.
    fn self_service(&self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        let Some(p) = &f.principal else { return };
        if f.values.is_empty() || matches!(f.outcome, Outcome::NotFound | Outcome::Unanswered) {
            return;
        }
        let Some(e) = baselines.endpoint(&f.key) else {
            return;
        };
        if !e.self_service() || f.values.iter().any(|v| p.is_named(&v.value)) {
            return;
        }
        let named: Vec<&str> = f.values.iter().map(|v| v.value.as_str()).collect();
        let mut finding = Finding::new(
            RuleId::SelfServiceOtherPrincipal,
            85,
            format!(
                "{} called {} naming {:?}, not itself, on an endpoint where {} of {} calls by principals named the caller; the API answered {}.",
                f.actor_label(),
                f.key,
                named,
                e.self_named_calls,
                e.principal_calls,
                f.status().unwrap_or(0)
            ),
            format!("{}|{}", f.key.template, f.who),
        )
        .counts(&[("self_named_calls", e.self_named_calls), ("principal_calls", e.principal_calls)]);
        if !f.succeeded() {
            finding = finding.severity(Severity::Medium);
        }
        out.push(finding);
    }

    /// Privileged properties that normal successful requests never set.
    fn mass_assignment(&self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        if !f.succeeded() {
            return;
        }
        let Some(e) = baselines.endpoint(&f.key) else {
            return;
        };
        if !e.learned(&baselines.limits, f.now) {
            return;
        }
        let fields = f.body_field_names();
        let unusual: Vec<&String> = fields
            .iter()
            .filter(|name| PRIVILEGED_FIELDS.contains(&name.to_ascii_lowercase().as_str()))
            .filter(|name| e.request_fields.get(*name).copied().unwrap_or(0) * 100 <= e.successes)
            .collect();
        if unusual.is_empty() {
            return;
        }
        out.push(
            Finding::new(
                RuleId::MassAssignment,
                80,
                format!(
                    "{} sent {:?} to {}, properties that at most 1% of its {} earlier successful requests set, and got {}.",
                    f.actor_label(),
                    unusual,
                    f.key,
                    e.successes,
                    f.status().unwrap_or(0)
                ),
                format!("{}|{}", f.key.template, f.who),
            )
            .counts(&[("earlier_successes", e.successes)]),
        );
    }

    pub fn sweep(&mut self, now: u64) {
        self.refusals.retain(|_, r| {
            r.back()
                .is_some_and(|(t, _)| now.saturating_sub(*t) <= FUNCTION_PROBE_WINDOW_SECS)
        });
        crate::baseline::learned::shrink(&mut self.refusals);
    }
}
