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
use crate::analysis::facts::{ActorKey, Facts, ParamSource};
use crate::baseline::learned::Baselines;
use crate::event::Severity;
use crate::exchange::Text;
use crate::inventory::template::Outcome;
use crate::inventory::EndpointKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

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
    // Set by the server when an object is made: who made it, and when.
    "creator_id",
    "creatorid",
    "creatoruserid",
    "created_by",
    "createdby",
    "created_at",
    "createdat",
];

/// Distinct objects an actor must have named on one endpoint before the
/// population comparison, and how far above the population's 99th
/// percentile it must be.
const ENUMERATION_MIN_OBJECTS: u64 = 20;
const ENUMERATION_FACTOR: u64 = 3;
/// Object ids remembered as disclosed to actors (all actors together; the
/// table is emptied when full), ids taken from one answer, and the largest
/// answer read for them.
const MAX_DISCLOSED_IDS: usize = 262_144;
const DISCLOSED_PER_ANSWER: usize = 2048;
const MAX_DISCLOSING_BODY_BYTES: usize = 512 * 1024;
/// Objects of other principals a principal must have used.
const FOREIGN_MIN_OBJECTS: u64 = 2;
/// Other principals a principal's failing writes must name.
const NAMED_OTHERS_MIN: usize = 3;
/// Different objects a principal's writes to one path must be refused on.
const REFUSED_WRITES_MIN_OBJECTS: usize = 5;
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

/// Responses read per principal looking for one that describes it, their
/// size, and the JSON objects looked at in one.
const MAX_DESCRIPTION_TRIES: u8 = 16;
const MAX_DESCRIBED_BODY_BYTES: usize = 256 * 1024;
const MAX_DESCRIBED_OBJECTS: usize = 1000;
/// Boolean fields that say an account is privileged.
const ADMIN_FLAGS: &[&str] = &[
    "is_superuser",
    "issuperuser",
    "is_admin",
    "isadmin",
    "is_staff",
    "isstaff",
    "superuser",
    "admin",
    "staff",
];
/// Fields that hold an account's role(s).
const ROLE_FIELDS: &[&str] = &[
    "role",
    "roles",
    "account_type",
    "accounttype",
    "user_type",
    "usertype",
];

/// Ids taken from one creation answer at most.
const MAX_CREATED_IDS: usize = 64;

/// The ids of the objects a creation answer describes.
fn created_ids(value: &serde_json::Value, depth: usize, out: &mut Vec<String>) {
    use serde_json::Value;
    if depth > 2 || out.len() >= MAX_CREATED_IDS {
        return;
    }
    match value {
        Value::Object(map) => {
            push_ids(map, &["id", "uuid", "_id", "slug"], out);
            if let Some(data) = map.get("data") {
                created_ids(data, depth + 1, out);
            } else if depth == 0 {
                // The object wrapped under its kind or a generic name
                // (`{"article": {...}}`, `{"item": {...}, "included": ...}`).
                for child in map.values().filter(|v| v.is_object()) {
                    created_ids(child, depth + 1, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                created_ids(item, depth + 1, out);
            }
        }
        // An answer that is only a string names what was created (`"apple-pie"`).
        Value::String(s) if depth == 0 && !s.is_empty() && s.len() <= 128 => out.push(s.clone()),
        _ => {}
    }
}

/// The values of an object's id fields named `keys` (strings up to 128
/// bytes, numbers).
fn push_ids(
    map: &serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    for key in keys {
        match map.get(*key) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => out.push(s.clone()),
            Some(Value::Number(n)) => out.push(n.to_string()),
            _ => {}
        }
    }
}

/// The ids of the objects a collection answer lists: `id`, `uuid`, `_id`
/// or `slug` of objects at the top, in lists, or one level into objects
/// (`{"data": [...]}`, `{"ciphers": [...]}`).
fn listed_ids(value: &serde_json::Value, depth: usize, out: &mut Vec<String>) {
    use serde_json::Value;
    if depth > 3 || out.len() >= DISCLOSED_PER_ANSWER {
        return;
    }
    match value {
        Value::Object(map) => {
            push_ids(map, &["id", "uuid", "_id", "slug"], out);
            for child in map.values().filter(|v| v.is_array() || v.is_object()) {
                listed_ids(child, depth + 1, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                listed_ids(item, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// An id (or an id on one host, `(host, id)`) as remembered.
fn id_hash(id: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The first byte of a body that is not whitespace: what a JSON answer
/// opens with.
fn opening(body: &[u8]) -> Option<u8> {
    body.iter().find(|b| !b.is_ascii_whitespace()).copied()
}

/// Whether `value` (or an object in it) describes `p` as privileged.
fn description(
    value: &serde_json::Value,
    p: &crate::identity::Principal,
    depth: usize,
    budget: &mut usize,
) -> Option<bool> {
    use serde_json::Value;
    if depth > 3 || *budget == 0 {
        return None;
    }
    match value {
        Value::Object(map) => {
            *budget -= 1;
            let names_caller = map.iter().any(|(k, v)| {
                crate::analysis::facts::IDENTITY_FIELDS.contains(&k.to_ascii_lowercase().as_str())
                    && match v {
                        Value::String(s) => p.is_named(s),
                        Value::Number(n) => p.is_named(&n.to_string()),
                        _ => false,
                    }
            });
            if names_caller {
                let mut verdict = None;
                for (k, v) in map {
                    let k = k.to_ascii_lowercase();
                    if ADMIN_FLAGS.contains(&k.as_str()) {
                        if let Value::Bool(b) = v {
                            verdict = Some(verdict.unwrap_or(false) || *b);
                        }
                    } else if ROLE_FIELDS.contains(&k.as_str()) {
                        let roles: Vec<&str> = match v {
                            Value::String(s) => vec![s.as_str()],
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            _ => continue,
                        };
                        let admin = roles.iter().any(|r| crate::jwt::is_privileged_role(r));
                        verdict = Some(verdict.unwrap_or(false) || admin);
                    }
                }
                if verdict.is_some() {
                    return verdict;
                }
            }
            map.values()
                .find_map(|v| description(v, p, depth + 1, budget))
        }
        Value::Array(items) => items
            .iter()
            .find_map(|v| description(v, p, depth + 1, budget)),
        _ => None,
    }
}

/// Functions remembered per principal refused on them recently.
const MAX_REFUSALS_KEPT: usize = 64;
/// Principals remembered per function, allowed or refused; a function
/// more principals are allowed is not an administrator's.
const MAX_CALLERS: usize = 64;
const MAX_ADMINS: usize = 8;

/// Who owns or created an object: a principal, and the address it came
/// from. One user often holds several credentials (a read-write key, a
/// read-only key, a browser session) used from one place: they are one
/// party for ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Party {
    principal: String,
    address: std::net::IpAddr,
}

impl Party {
    fn is(&self, other: &Party) -> bool {
        self.principal == other.principal || self.address == other.address
    }
}

/// Who was allowed and who refused one function.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Callers {
    allowed: BTreeSet<String>,
    refused: BTreeSet<String>,
}

impl Callers {
    /// (principal, privileged) for everyone this function says something
    /// about: when a few principals were allowed it and others refused
    /// (and never allowed), the first are privileged, the others not.
    fn verdicts(&self) -> Vec<(String, bool)> {
        let allowed: Vec<&String> = self
            .allowed
            .iter()
            .filter(|q| !self.refused.contains(*q))
            .collect();
        let denied: Vec<&String> = self
            .refused
            .iter()
            .filter(|q| !self.allowed.contains(*q))
            .collect();
        if allowed.is_empty() || denied.is_empty() || allowed.len() > MAX_ADMINS {
            return Vec::new();
        }
        allowed
            .into_iter()
            .map(|q| (q.clone(), true))
            .chain(denied.into_iter().map(|q| (q.clone(), false)))
            .collect()
    }
}

/// Per principal: restricted functions it is allowed, and refused.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Verdicts {
    counts: HashMap<String, (u32, u32)>,
}

impl Verdicts {
    fn add(&mut self, principal: &str, privileged: bool) {
        if !self.counts.contains_key(principal) && self.counts.len() >= MAX_PRINCIPALS {
            return;
        }
        let c = self.counts.entry(principal.to_owned()).or_default();
        if privileged {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }

    fn withdraw(&mut self, principal: &str, privileged: bool) {
        if let Some(c) = self.counts.get_mut(principal) {
            if privileged {
                c.0 = c.0.saturating_sub(1);
            } else {
                c.1 = c.1.saturating_sub(1);
            }
            if *c == (0, 0) {
                self.counts.remove(principal);
            }
        }
    }

    /// Refused on any restricted function: not privileged, whatever else
    /// it was allowed (that may be the flaw).
    fn of(&self, principal: &str) -> Option<bool> {
        match self.counts.get(principal) {
            Some((_, refused)) if *refused > 0 => Some(false),
            Some((allowed, _)) if *allowed > 0 => Some(true),
            _ => None,
        }
    }
}

/// Authorization state (the object counts live in the baselines). What
/// was learned (privilege, restricted endpoints, owners) is part of the
/// baseline snapshot; recent refusals are not.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Authorization {
    /// What restricted functions say about each principal.
    verdicts: Verdicts,
    /// Principals seen (bounded), to tell a function only a few use.
    principals: BTreeSet<String>,
    /// Functions (endpoints without object ids) restricted now.
    restricted: BTreeSet<EndpointKey>,
    /// Per function: principals allowed and refused (403) there.
    callers: HashMap<EndpointKey, Callers>,
    /// Object owners shared by the methods of one path: (host, template)
    /// and value → owning principal, and whether others used it too.
    owners: HashMap<(Text, Text), HashMap<String, (Party, bool)>>,
    /// Principals' privilege as responses describing them said, and how
    /// many responses were read looking for it.
    described: HashMap<String, bool>,
    #[serde(skip)]
    description_tries: HashMap<String, u8>,
    /// Per host: ids of objects a principal's request created (from the
    /// answers to its POSTs and PUTs), with that principal.
    created: HashMap<String, HashMap<String, Party>>,
    /// Object ids remembered over every path (bounded by `MAX_OWNED`).
    owned: usize,
    /// Restricted endpoints each principal was refused on, recently.
    #[serde(skip)]
    refusals: HashMap<String, VecDeque<(u64, EndpointKey)>>,
    /// Hashes of the object ids the API listed to each actor (in answers
    /// to its reads of collections), and how many are held.
    #[serde(skip)]
    disclosed: HashMap<ActorKey, HashSet<u64>>,
    #[serde(skip)]
    disclosed_ids: usize,
    /// Names principals go by (login names, e-mail and username claims),
    /// lower case, with the principal.
    #[serde(skip)]
    names: HashMap<String, String>,
    /// Hashes of (host, value) for ids that different parties each
    /// created: per-tenant names, not evidence of ownership. Bounded with
    /// the created ids (`MAX_OWNED`).
    #[serde(skip)]
    reused_names: HashSet<u64>,
    /// Per principal: other principals its refused writes named in their
    /// bodies, recently.
    #[serde(skip)]
    naming_others: HashMap<String, VecDeque<(u64, String)>>,
    /// Per principal and path: objects its writes were refused on,
    /// recently (hashed values).
    #[serde(skip)]
    refused_writes: HashMap<(String, EndpointKey), VecDeque<(u64, u64)>>,
    #[serde(skip)]
    pub refused: u64,
}

impl Authorization {
    /// Whether the facts' principal is privileged: a role claim says so,
    /// or it was seen succeeding where others are refused.
    pub fn privileged(&self, f: &Facts<'_>) -> Option<bool> {
        let p = f.principal.as_ref()?;
        if let Some(described) = self.described.get(&p.id) {
            return Some(*described);
        }
        if f.jwt().is_some_and(|j| j.is_privileged()) {
            return Some(true);
        }
        if f.jwt().is_some_and(|j| !j.roles().is_empty()) {
            return Some(false);
        }
        self.verdicts.of(&p.id)
    }

    /// An endpoint only a few principals (other than `principal`) were
    /// ever allowed, on an API many principals use: an administrator's.
    fn administrative(&self, key: &EndpointKey, principal: &str) -> bool {
        self.callers.get(key).is_some_and(|c| {
            let others = c.allowed.iter().filter(|q| *q != principal).count();
            others > 0 && others <= MAX_ADMINS && self.principals.len() >= others * 4
        })
    }

    /// "Not found" on a function (no object named in its path) the API
    /// serves to other principals: many APIs hide what a caller may not use
    /// rather than refuse it, so this is a refusal too.
    fn hidden_from(&self, f: &Facts<'_>, principal: &str) -> bool {
        f.outcome == Outcome::NotFound
            && f.values.is_empty()
            && self
                .callers
                .get(&f.key)
                .is_some_and(|c| c.allowed.iter().any(|q| q != principal))
    }

    /// Judges one exchange; returns what is known of its principal's
    /// privilege (for the baselines).
    /// `bad_token`: the request's token is one the API should refuse
    /// (expired, forged), so a refusal is about the token, not the function.
    pub fn observe(
        &mut self,
        f: &Facts<'_>,
        bad_token: bool,
        baselines: &mut Baselines,
        out: &mut Vec<Finding>,
    ) -> Option<bool> {
        // Judged on what was known before this exchange taught anything.
        let privilege = self.privileged(f);
        self.describe(f);
        self.learn_created(f);
        self.learn_disclosed(f);
        if !bad_token {
            self.learn_privilege(f);
            self.function_level(f, privilege, baselines, out);
        }
        let privileged = privilege == Some(true);
        if !privileged {
            // Objects the API listed to the actor (following its links is
            // not guessing ids), asked once for both judges.
            let listed = self.listed_to(f);
            self.enumeration(f, listed, baselines, out);
            self.foreign_objects(f, listed, baselines, out);
            self.self_service(f, baselines, out);
            self.writes_naming_others(f, out);
            if !bad_token {
                self.refused_writes(f, out);
            }
        }
        self.learn_names(f);
        self.mass_assignment(f, baselines, out);
        privilege
    }

    /// Learns a principal's privilege from a response that describes it:
    /// an object whose id, name or e-mail names the caller, with a role or
    /// an admin flag (`/users/me`, a user list the caller is in). Each
    /// principal's responses are read until one describes it, at most
    /// `MAX_DESCRIPTION_TRIES` of them.
    fn describe(&mut self, f: &Facts<'_>) {
        let (Some(p), Some(response)) = (&f.principal, f.response) else {
            return;
        };
        if !f.succeeded() || self.described.contains_key(&p.id) {
            return;
        }
        let body = &response.body.data;
        let json = matches!(opening(body), Some(b'{' | b'['));
        if !json || body.len() > MAX_DESCRIBED_BODY_BYTES {
            return;
        }
        // Parsed only when it could say something: part of a privilege
        // field's name is in it (`is_admin`, `isAdmin`, `superuser`,
        // `is_staff`, `role`, `roles`).
        let mentions = |word: &[u8]| memchr::memmem::find(body, word).is_some();
        if !(mentions(b"dmin") || mentions(b"uperuser") || mentions(b"taff") || mentions(b"ole")) {
            return;
        }
        if !self.description_tries.contains_key(&p.id)
            && self.description_tries.len() >= MAX_PRINCIPALS
        {
            self.refused += 1;
            return;
        }
        let tries = self.description_tries.entry(p.id.clone()).or_default();
        if *tries >= MAX_DESCRIPTION_TRIES {
            return;
        }
        *tries += 1;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let mut budget = MAX_DESCRIBED_OBJECTS;
        if let Some(privileged) = description(&value, p, 0, &mut budget) {
            if self.described.len() < MAX_PRINCIPALS {
                self.described.insert(p.id.clone(), privileged);
            }
        }
    }

    /// Remembers the ids in a successful POST's or PUT's JSON answer (`id`,
    /// `uuid`, `_id`, at the top, under `data`, or in a list) as objects
    /// its principal created.
    fn learn_created(&mut self, f: &Facts<'_>) {
        let (Some(p), Some(response)) = (&f.principal, f.response) else {
            return;
        };
        let writes = matches!(f.request.method.as_str(), "POST" | "PUT");
        let body = &response.body.data;
        if !writes || !f.succeeded() || body.len() > MAX_DESCRIBED_BODY_BYTES {
            return;
        }
        if !matches!(opening(body), Some(b'{' | b'[' | b'"')) {
            return;
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let mut ids = Vec::new();
        created_ids(&value, 0, &mut ids);
        let host = f.key.host.as_str();
        if !self.created.contains_key(host) && self.created.len() >= MAX_RESTRICTED {
            self.refused += 1;
            return;
        }
        let created = self.created.entry(host.to_owned()).or_default();
        for id in ids {
            if self.owned >= MAX_OWNED {
                self.refused += 1;
                break;
            }
            let creator = Party {
                principal: p.id.clone(),
                address: f.client_ip,
            };
            match created.get(&id) {
                // Created again by someone else: a name each tenant picks
                // (`/recipes/apple-pie` in every household), not one
                // object's id, so it says nothing about ownership.
                Some(first) if !first.is(&creator) => {
                    self.reused_names.insert(id_hash((host, id.as_str())));
                }
                Some(_) => {}
                None => {
                    created.insert(id, creator);
                    self.owned += 1;
                }
            }
        }
    }

    /// Remembers the object ids a GET's answer listed to the actor: a
    /// collection's items, or the objects an object's answer includes (a
    /// board's cards, an article's comments), but not the objects its
    /// path named, which are judged, not listed.
    fn learn_disclosed(&mut self, f: &Facts<'_>) {
        let Some(response) = f.response else { return };
        let body = &response.body.data;
        if f.request.method != "GET"
            || f.outcome != Outcome::Success
            || body.len() > MAX_DISCLOSING_BODY_BYTES
            || !matches!(opening(body), Some(b'{' | b'['))
        {
            return;
        }
        // An object's answer lists others only if it has ids besides its own.
        if !f.values.is_empty() && memchr::memmem::find_iter(body, b"id\"").nth(1).is_none() {
            return;
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let mut ids = Vec::new();
        listed_ids(&value, 0, &mut ids);
        ids.retain(|id| !f.values.iter().any(|v| v.value.as_str() == id));
        if ids.is_empty() {
            return;
        }
        if self.disclosed_ids + ids.len() > MAX_DISCLOSED_IDS {
            self.disclosed.clear();
            self.disclosed_ids = 0;
            self.refused += 1;
        }
        let mine = self.disclosed.entry(f.who.clone()).or_default();
        for id in ids {
            if mine.insert(id_hash(id.as_str())) {
                self.disclosed_ids += 1;
            }
        }
    }

    /// Whether every object this request names was listed to its actor
    /// and the API answers with success: following the API's own links is
    /// not guessing ids.
    fn listed_to(&self, f: &Facts<'_>) -> bool {
        f.outcome == Outcome::Success
            && !f.values.is_empty()
            && self.disclosed.get(&f.who).is_some_and(|ids| {
                f.values
                    .iter()
                    .all(|v| ids.contains(&id_hash(v.value.as_str())))
            })
    }

    /// Learns which functions are restricted and who may use them. Only
    /// endpoints without object ids in their path count: a 403 on
    /// `/items/{id}` is usually about the object (someone else's item),
    /// one on `/admin/users` about the function. A function is restricted
    /// while a few principals are allowed it and others refused it (and
    /// never allowed); what that says about each principal is withdrawn
    /// when it stops holding (the refused one succeeds after all: its token
    /// had expired).
    fn learn_privilege(&mut self, f: &Facts<'_>) {
        let Some(p) = &f.principal else { return };
        if self.principals.len() < MAX_PRINCIPALS && !self.principals.contains(&p.id) {
            self.principals.insert(p.id.clone());
        }
        let forbidden = f.status() == Some(403);
        // A 200 whose body says "not found" (a catch-all page, an error
        // object) served nothing.
        let served = f.succeeded() && f.outcome == Outcome::Success;
        if !(served || forbidden) {
            return;
        }
        if !self.callers.contains_key(&f.key) && self.callers.len() >= MAX_RESTRICTED {
            self.refused += 1;
            return;
        }
        let callers = self.callers.entry(f.key.clone()).or_default();
        let before = callers.verdicts();
        let set = if forbidden {
            &mut callers.refused
        } else {
            &mut callers.allowed
        };
        if set.len() >= MAX_CALLERS || !set.insert(p.id.clone()) || !f.values.is_empty() {
            return;
        }
        let after = callers.verdicts();
        if before == after {
            return;
        }
        for (principal, privileged) in &before {
            self.verdicts.withdraw(principal, *privileged);
        }
        for (principal, privileged) in &after {
            self.verdicts.add(principal, *privileged);
        }
        if after.is_empty() {
            self.restricted.remove(&f.key);
        } else if self.restricted.len() < MAX_RESTRICTED {
            self.restricted.insert(f.key.clone());
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
        // A key or token sent to the login page says the credential does
        // not log in there (a page that takes sessions), not that a
        // function was refused to the principal. (A session sent there, as
        // Django's admin does to non-staff users, is refused.)
        let login_redirect = f.status().is_some_and(|s| (300..400).contains(&s))
            && p.kind != crate::identity::PrincipalKind::Session;
        if f.rejected() && !login_redirect || self.hidden_from(f, &p.id) {
            if !self.refusals.contains_key(&p.id) && self.refusals.len() >= MAX_PRINCIPALS {
                self.refused += 1;
                return;
            }
            // Out of the map while it is judged against the callers.
            let mut r = self.refusals.remove(&p.id).unwrap_or_default();
            if r.iter().all(|(_, k)| *k != f.key) {
                if r.len() >= MAX_REFUSALS_KEPT {
                    r.pop_front();
                }
                r.push_back((f.now, f.key.clone()));
            }
            trim(&mut r, f.now, FUNCTION_PROBE_WINDOW_SECS, |(t, _)| *t);
            let restricted = r
                .iter()
                .filter(|(_, k)| self.restricted.contains(k) || self.administrative(k, &p.id))
                .count();
            let functions = r.len();
            let examples: Vec<String> = r.iter().take(10).map(|(_, k)| k.to_string()).collect();
            self.refusals.insert(p.id.clone(), r);
            if functions >= FUNCTION_PROBE_MIN_ENDPOINTS && restricted >= 2 {
                out.push(
                    Finding::new(
                        RuleId::FunctionLevel,
                        75,
                        format!(
                            "{} was refused (or told that a function others use does not exist) on {} different functions within {FUNCTION_PROBE_WINDOW_SECS} seconds, {restricted} of them used only by privileged principals or a few others: {}.",
                            f.actor_label(),
                            functions,
                            examples.join(", ")
                        ),
                        format!("attempts|{}", f.who),
                    )
                    .severity(Severity::Medium)
                    .title("Principal tried administrative functions and was refused".into())
                    .counts(&[("functions", functions as u64)]),
                );
            }
            return;
        }
        if !f.succeeded() || privilege != Some(false) {
            return;
        }
        let privileged_callers = self.callers.get(&f.key).map_or(0, |c| {
            c.allowed
                .iter()
                .filter(|q| **q != p.id && !c.refused.contains(*q))
                .filter(|q| self.verdicts.of(q) == Some(true))
                .count() as u64
        });
        // Administrative functions are called rarely, by few principals: a
        // few calls by privileged ones (and none by others) suffice, once
        // the API as a whole and the endpoint have been watched a while.
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
                e.unprivileged_successes == 0
                    && e.privileged_successes >= MIN_PRIVILEGED_CALLS
                    && self.administrative(&f.key, &p.id)
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

    /// An actor naming far more distinct objects on a path (whatever the
    /// method: reading and deleting one's own token is one object) than the
    /// other clients do, whatever the answers (slow harvesting counts). On
    /// a path no population uses yet, a logged-in actor failing (refused,
    /// not found, an error) on many different objects and never answered is
    /// sweeping for ones it may use.
    fn enumeration(
        &mut self,
        f: &Facts<'_>,
        listed: bool,
        baselines: &mut Baselines,
        out: &mut Vec<Finding>,
    ) {
        if f.values.is_empty() || f.outcome == Outcome::Unanswered {
            return;
        }
        // Objects the API listed to the actor count in the population (the
        // path's use) but not against the actor.
        let learn_actors = baselines.limits.learn_actors;
        let now = f.now;
        let path = EndpointKey {
            host: f.key.host.clone(),
            method: Text::from("*"),
            template: f.key.template.clone(),
        };
        let Some((e, mine)) = baselines.pair_mut_at(&path, f) else {
            return;
        };
        mine.last_secs = now;
        mine.successes += u64::from(f.outcome == Outcome::Success);
        mine.failures += u64::from(matches!(
            f.outcome,
            Outcome::Rejected | Outcome::NotFound | Outcome::Error
        ));
        // Objects the actor created itself (a bulk import read back) are
        // not someone else's to enumerate; like listed ones they count in
        // the population, not against the actor.
        let created = self.created.get(f.key.host.as_str());
        let own = |value: &str| {
            f.principal
                .as_ref()
                .zip(created.and_then(|c| c.get(value)))
                .is_some_and(|(p, creator)| {
                    creator.principal == p.id || creator.address == f.client_ip
                })
        };
        let mut changed = false;
        for v in &f.values {
            changed |= mine.objects.insert(v.value.as_bytes());
            if !listed && !own(&v.value) {
                mine.guessed.insert(v.value.as_bytes());
            }
        }
        let estimate = mine.objects.estimate();
        let previous = mine.objects_estimate;
        if changed && previous != Some(estimate) {
            mine.objects_estimate = Some(estimate);
            e.objects_per_actor.moved(previous, estimate);
        }
        let actors = e.objects_per_actor.actors();
        let guessed = mine.guessed.estimate();
        if guessed < ENUMERATION_MIN_OBJECTS {
            return;
        }
        let compared = if actors > learn_actors {
            let Some(p99) = e.objects_per_actor.quantile_excluding(0.99, Some(estimate)) else {
                return;
            };
            if guessed < (p99 * ENUMERATION_FACTOR).max(p99 + ENUMERATION_MIN_OBJECTS / 2) {
                return;
            }
            Some(p99)
        } else if f.principal.is_some()
            && mine.successes == 0
            && mine.failures >= ENUMERATION_MIN_OBJECTS
        {
            // A logged-in caller: an anonymous sweep of ids that do not
            // exist is a scanner's.
            None
        } else {
            return;
        };
        if baselines.enumerators.len() < 100_000 {
            baselines.enumerators.insert(f.who.clone());
        }
        let refused = f.outcome != Outcome::Success;
        let what = match compared {
            Some(p99) => format!(
                "{} named about {guessed} different objects through {}; 99% of the other {} clients named at most {p99}.{}",
                f.actor_label(),
                f.key,
                actors.saturating_sub(1),
                if refused { " The last was refused." } else { "" }
            ),
            None => format!(
                "{} named about {guessed} different objects through {} and was refused every one; too few other clients use it to compare.",
                f.actor_label(),
                f.key,
            ),
        };
        let mut finding = Finding::new(
            RuleId::BolaEnumeration,
            80,
            what,
            format!("{}|{}|{}", f.key.host, f.key.template, f.who),
        )
        .counts(&[
            ("distinct_objects", guessed),
            ("population_p99", compared.unwrap_or(0)),
        ]);
        if refused {
            finding = finding.severity(Severity::Medium);
        }
        out.push(finding);
    }

    /// Objects other principals used first, on an endpoint whose objects
    /// are private. Ownership is shared by the methods of a path, seeded by
    /// whoever used the object first (not an enumerator) and by identity
    /// (a value naming a principal is that principal's).
    fn foreign_objects(
        &mut self,
        f: &Facts<'_>,
        listed: bool,
        baselines: &mut Baselines,
        out: &mut Vec<Finding>,
    ) {
        let Some(p) = &f.principal else { return };
        if f.values.is_empty() || f.outcome == Outcome::Unanswered {
            return;
        }
        // APIs that filter objects by owner answer "not found" for someone
        // else's: for an object another principal was seen creating or
        // using, that is a refusal. Nothing is learned from it.
        let not_found = f.outcome == Outcome::NotFound;
        // Objects the API listed to the caller are not used behind their
        // owner's back (a mirror of public profiles); ownership is still
        // learned from the call (an owner reading what its list gave it).
        let path = (f.key.host.clone(), f.key.template.clone());
        if !self.owners.contains_key(&path) && self.owners.len() >= MAX_RESTRICTED {
            self.refused += 1;
            return;
        }
        let me = Party {
            principal: p.id.clone(),
            address: f.client_ip,
        };
        let enumerator = baselines.enumerators.contains(&f.who);
        let created = self.created.get(f.key.host.as_str());
        let owners = self.owners.entry(path).or_default();
        let mut foreign = 0u64;
        let host = f.key.host.as_str();
        for v in &f.values {
            let value = v.value.to_string();
            if self.reused_names.contains(&id_hash((host, value.as_str()))) {
                continue;
            }
            if not_found {
                let owner = owners
                    .get(&value)
                    .map(|(owner, _)| owner)
                    .or_else(|| created.and_then(|c| c.get(&value)));
                if owner.is_some_and(|o| !o.is(&me)) && !p.is_named(&value) {
                    foreign += 1;
                }
                continue;
            }
            let room = owners.len() < baselines.limits.max_owned_ids && self.owned < MAX_OWNED;
            match owners.get_mut(&value) {
                Some((owner, _)) if !owner.is(&me) && p.is_named(&value) => {
                    // The value names the caller: it is the caller's, whoever
                    // used it first.
                    *owner = me.clone();
                }
                Some((owner, _))
                    if baselines
                        .enumerators
                        .contains(&ActorKey::Principal(owner.principal.clone())) =>
                {
                    // Claimed by an enumerator: the first honest user owns
                    // it (another enumerator does not).
                    let honest = !enumerator;
                    if honest {
                        *owner = me.clone();
                    }
                }
                Some((owner, shared)) if !owner.is(&me) => {
                    *shared = true;
                    foreign += 1;
                }
                Some(_) => {}
                None if room => {
                    // Its creator's, when its creation was seen; a value
                    // naming a principal is that principal's.
                    let creator = created.and_then(|c| c.get(&value));
                    let owner = match creator {
                        Some(creator) if !p.is_named(&value) => creator.clone(),
                        _ if p.is_named(&value) || !enumerator => me.clone(),
                        _ => continue,
                    };
                    if !owner.is(&me) {
                        foreign += 1;
                    }
                    owners.insert(value, (owner, false));
                    self.owned += 1;
                }
                None => {}
            }
        }
        if listed {
            foreign = 0;
        }
        let Some((e, mine)) = baselines.pair_mut(f) else {
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
            let refused = f.outcome != Outcome::Success;
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

    /// Remembers the names the caller goes by.
    fn learn_names(&mut self, f: &Facts<'_>) {
        let Some(p) = &f.principal else { return };
        for name in &p.names {
            if !self.names.contains_key(name) {
                if self.names.len() >= MAX_PRINCIPALS {
                    self.refused += 1;
                    return;
                }
                self.names.insert(name.clone(), p.id.clone());
            }
        }
    }

    /// A principal whose writes, refused or failing, name other principals
    /// in their bodies (an account's e-mail set to someone else's, a
    /// transfer to their login): trying to act on their accounts through
    /// its own. Successful writes naming others are ordinary (invitations,
    /// sharing), and one refused write is a typo.
    fn writes_naming_others(&mut self, f: &Facts<'_>, out: &mut Vec<Finding>) {
        let Some(p) = &f.principal else { return };
        if !f.writes() || !matches!(f.outcome, Outcome::Rejected | Outcome::Error) {
            return;
        }
        let mut named: Vec<&String> = Vec::new();
        for param in &f.params {
            if !matches!(param.source, ParamSource::Json | ParamSource::Form) {
                continue;
            }
            let value = param.value.trim();
            if value.is_empty() || value.len() > 256 || p.is_named(value) {
                continue;
            }
            if let Some(other) = self.names.get(&value.to_lowercase()) {
                if *other != p.id && !named.contains(&other) {
                    named.push(other);
                }
            }
        }
        if named.is_empty() {
            return;
        }
        if !self.naming_others.contains_key(&p.id) && self.naming_others.len() >= MAX_PRINCIPALS {
            self.refused += 1;
            return;
        }
        let window = self.naming_others.entry(p.id.clone()).or_default();
        for other in named {
            if window.len() >= MAX_REFUSALS_KEPT {
                window.pop_front();
            }
            window.push_back((f.now, other.clone()));
        }
        trim(window, f.now, FUNCTION_PROBE_WINDOW_SECS, |(t, _)| *t);
        let others: BTreeSet<&str> = window.iter().map(|(_, o)| o.as_str()).collect();
        if others.len() < NAMED_OTHERS_MIN {
            return;
        }
        out.push(
            Finding::new(
                RuleId::SelfServiceOtherPrincipal,
                75,
                format!(
                    "{} sent writes naming {} other principals in their bodies within {FUNCTION_PROBE_WINDOW_SECS} seconds, and was refused or failed each time; the last was {} ({}).",
                    f.actor_label(),
                    others.len(),
                    f.key,
                    f.status().unwrap_or(0)
                ),
                format!("body|{}", f.who),
            )
            .severity(Severity::Medium)
            .title("Principal tried to act on other principals' accounts".into())
            .counts(&[("principals_named", others.len() as u64)]),
        );
    }

    /// A principal refused (401/403, with a token the API honours) on
    /// writes to many different objects of one path: trying to change
    /// objects that are not its own (other users' accounts by id). Its own
    /// objects are not refused; a mistaken write is one object.
    fn refused_writes(&mut self, f: &Facts<'_>, out: &mut Vec<Finding>) {
        let Some(p) = &f.principal else { return };
        if !f.writes() || f.values.is_empty() || f.outcome != Outcome::Rejected {
            return;
        }
        let key = (p.id.clone(), f.key.clone());
        if !self.refused_writes.contains_key(&key) && self.refused_writes.len() >= MAX_PRINCIPALS {
            self.refused += 1;
            return;
        }
        let window = self.refused_writes.entry(key).or_default();
        for v in f.values.iter().filter(|v| !p.is_named(&v.value)) {
            let object = id_hash(v.value.as_str());
            if window.iter().all(|(_, o)| *o != object) {
                if window.len() >= MAX_REFUSALS_KEPT {
                    window.pop_front();
                }
                window.push_back((f.now, object));
            }
        }
        trim(window, f.now, FUNCTION_PROBE_WINDOW_SECS, |(t, _)| *t);
        let objects = window.len();
        if objects < REFUSED_WRITES_MIN_OBJECTS {
            return;
        }
        out.push(
            Finding::new(
                RuleId::BolaForeignObject,
                75,
                format!(
                    "{} was refused on writes to {objects} different objects through {} within {FUNCTION_PROBE_WINDOW_SECS} seconds; the last answer was {}.",
                    f.actor_label(),
                    f.key,
                    f.status().unwrap_or(0)
                ),
                format!("writes|{}|{}", f.key, f.who),
            )
            .severity(Severity::Medium)
            .title("Principal tried to change objects that are not its own".into())
            .counts(&[("refused_objects", objects as u64)]),
        );
    }

    /// Privileged properties that normal successful requests never set.
    fn mass_assignment(&self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        if !f.succeeded() {
            return;
        }
        let Some(e) = baselines.learned_endpoint(&f.key, f.now) else {
            return;
        };
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
        forget_quiet(&mut self.refusals, now);
        forget_quiet(&mut self.naming_others, now);
        forget_quiet(&mut self.refused_writes, now);
    }
}

/// Drops the windows whose newest entry is older than the function-probe
/// window, and gives their memory back.
fn forget_quiet<K: std::hash::Hash + Eq, T>(
    windows: &mut HashMap<K, VecDeque<(u64, T)>>,
    now: u64,
) {
    windows.retain(|_, w| {
        w.back()
            .is_some_and(|(t, _)| now.saturating_sub(*t) <= FUNCTION_PROBE_WINDOW_SECS)
    });
    crate::baseline::learned::shrink(windows);
}
