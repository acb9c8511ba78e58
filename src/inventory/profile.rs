//! Endpoint profiles: what one (host, method, raw path) was seen doing —
//! methods' status codes, content types, query parameters and JSON field
//! paths with inferred types, authentication, sensitive data, first/last
//! seen, request count, distinct clients, and the counts posture findings
//! are made from. Every collection has a per-profile cap, and new entries
//! also draw on a shared byte budget ([`Budget`]); what did not fit is
//! counted. Profiles merge (when templating folds raw paths together), and
//! merging is commutative, so templates do not depend on arrival order.

use crate::exchange::{Text, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Inferred type of a query parameter or JSON field: the classifier's.
pub use crate::classify::FieldType;

impl FieldType {
    pub const ALL: [FieldType; 13] = [
        FieldType::String,
        FieldType::Integer,
        FieldType::Number,
        FieldType::Bool,
        FieldType::Null,
        FieldType::Object,
        FieldType::Array,
        FieldType::Uuid,
        FieldType::Email,
        FieldType::DateTime,
        FieldType::Date,
        FieldType::Uri,
        FieldType::Ip,
    ];

    /// The classifier's type names; unknown names are plain strings.
    pub fn parse(name: &str) -> FieldType {
        FieldType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .unwrap_or(match name {
                "boolean" => FieldType::Bool,
                _ => FieldType::String,
            })
    }

    /// Infers the type of a text value (query string, string JSON value).
    pub fn of_text(v: &str) -> FieldType {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 19 && v.parse::<i64>().is_ok() {
            return FieldType::Integer;
        }
        if v == "true" || v == "false" {
            return FieldType::Bool;
        }
        FieldType::of_string(v)
    }

    /// Subtype of a JSON string.
    pub fn of_string(v: &str) -> FieldType {
        use super::template::{classify_segment, SegKind};
        match classify_segment(v, usize::MAX) {
            Some(SegKind::Uuid) => return FieldType::Uuid,
            Some(SegKind::Email) => return FieldType::Email,
            Some(SegKind::Date) => {
                return if v.len() == 10 {
                    FieldType::Date
                } else {
                    FieldType::DateTime
                }
            }
            _ => {}
        }
        if v.starts_with("http://") || v.starts_with("https://") {
            return FieldType::Uri;
        }
        if v.len() >= 7 && v.parse::<std::net::IpAddr>().is_ok() {
            return FieldType::Ip;
        }
        if !v.is_empty()
            && v.bytes().any(|c| c == b'.')
            && v.parse::<f64>().is_ok_and(f64::is_finite)
        {
            return FieldType::Number;
        }
        FieldType::String
    }
}

/// How often a parameter or field was seen, and as which types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldStat {
    pub count: u64,
    pub types: [u64; FieldType::ALL.len()],
}

impl FieldStat {
    fn add(&mut self, t: FieldType) {
        self.count += 1;
        if let Some(slot) = self.types.get_mut(t as usize) {
            *slot += 1;
        }
    }

    fn merge(&mut self, other: &FieldStat) {
        self.count += other.count;
        for (a, b) in self.types.iter_mut().zip(other.types.iter()) {
            *a += b;
        }
    }

    /// Types seen, most frequent first (ties in `FieldType` order).
    pub fn types_seen(&self) -> Vec<FieldType> {
        let mut v: Vec<(u64, FieldType)> = FieldType::ALL
            .into_iter()
            .zip(self.types)
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| (n, t))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// The most frequent type other than null, and whether null was seen.
    pub fn dominant(&self) -> (FieldType, bool) {
        let seen = self.types_seen();
        let null = seen.contains(&FieldType::Null);
        let t = seen
            .into_iter()
            .find(|t| *t != FieldType::Null)
            .unwrap_or(FieldType::Null);
        (t, null)
    }
}

/// Distinct-count sketch: exact up to a small number of hashes, then a
/// HyperLogLog with 256 one-byte registers (about 6.5% standard error).
/// The final state depends only on the set of inputs, not their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Distinct {
    Exact(Vec<u64>),
    Sketch(Box<[u8; 256]>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(Vec::new())
    }
}

impl Distinct {
    pub fn insert(&mut self, hash: u64, exact_max: usize) {
        match self {
            Distinct::Exact(v) => {
                if let Err(pos) = v.binary_search(&hash) {
                    v.insert(pos, hash);
                    if v.len() > exact_max {
                        let mut regs = Box::new([0u8; 256]);
                        for h in v.iter() {
                            hll_add(&mut regs, *h);
                        }
                        *self = Distinct::Sketch(regs);
                    }
                }
            }
            Distinct::Sketch(regs) => hll_add(regs, hash),
        }
    }

    pub fn merge(&mut self, other: &Distinct, exact_max: usize) {
        match other {
            Distinct::Exact(v) => {
                for h in v {
                    self.insert(*h, exact_max);
                }
            }
            Distinct::Sketch(o) => {
                let mut regs = match std::mem::take(self) {
                    Distinct::Sketch(r) => r,
                    Distinct::Exact(v) => {
                        let mut r = Box::new([0u8; 256]);
                        for h in v {
                            hll_add(&mut r, h);
                        }
                        r
                    }
                };
                for (a, b) in regs.iter_mut().zip(o.iter()) {
                    *a = (*a).max(*b);
                }
                *self = Distinct::Sketch(regs);
            }
        }
    }

    pub fn estimate(&self) -> u64 {
        match self {
            Distinct::Exact(v) => v.len() as u64,
            Distinct::Sketch(regs) => {
                let m = 256.0f64;
                let sum: f64 = regs.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
                let zeros = regs.iter().filter(|r| **r == 0).count();
                let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
                let est = if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                };
                est.round() as u64
            }
        }
    }
}

fn hll_add(regs: &mut [u8; 256], hash: u64) {
    let index = (hash >> 56) as usize;
    let rank = ((hash << 8) | 0x80).leading_zeros() as u8 + 1;
    if let Some(r) = regs.get_mut(index) {
        *r = (*r).max(rank);
    }
}

/// A stable 64-bit hash (FNV-1a, then a SplitMix64 finaliser).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Sensitive data counted by (data type, category, location).
pub type SensitiveKey = (Text, Text, Text);

/// Counts posture findings are made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostureCounts {
    /// 2xx responses carrying sensitive data to a request without credentials.
    pub unauth_sensitive_responses: u64,
    pub unauth_sensitive_types: BTreeSet<Text>,
    /// Requests with sensitive data in the path or query string.
    pub sensitive_in_url: u64,
    pub sensitive_in_url_types: BTreeSet<Text>,
    /// Requests with a credential-named query parameter.
    pub credentials_in_query: u64,
    pub credential_query_keys: BTreeSet<Text>,
    /// Requests carrying credentials over cleartext HTTP.
    pub cleartext_credentials: u64,
    pub cleartext_kinds: BTreeSet<Text>,
    /// Responses echoing a password or secret field or credential data.
    pub secret_echoes: u64,
    pub secret_echo_fields: BTreeSet<Text>,
    /// 2xx/3xx responses (an endpoint is "reachable").
    pub success: u64,
}

impl PostureCounts {
    fn merge(&mut self, o: &PostureCounts, cap: usize) {
        self.unauth_sensitive_responses += o.unauth_sensitive_responses;
        self.sensitive_in_url += o.sensitive_in_url;
        self.credentials_in_query += o.credentials_in_query;
        self.cleartext_credentials += o.cleartext_credentials;
        self.secret_echoes += o.secret_echoes;
        self.success += o.success;
        for (dst, src) in [
            (&mut self.unauth_sensitive_types, &o.unauth_sensitive_types),
            (&mut self.sensitive_in_url_types, &o.sensitive_in_url_types),
            (&mut self.credential_query_keys, &o.credential_query_keys),
            (&mut self.cleartext_kinds, &o.cleartext_kinds),
            (&mut self.secret_echo_fields, &o.secret_echo_fields),
        ] {
            for v in src {
                if dst.len() < cap {
                    dst.insert(v.clone());
                }
            }
        }
    }
}

/// Per-profile caps (from `[inventory]`).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub params: usize,
    pub fields: usize,
    pub small: usize,
    pub exact_clients: usize,
}

impl Caps {
    /// Caps used when merging (query time): the observe caps were already applied.
    pub const MERGE: Caps = Caps {
        params: 4096,
        fields: 4096,
        small: 256,
        exact_clients: 64,
    };
}

/// Bytes all profiles may still add, shared across the inventory, and
/// entries refused for lack of it (or of a per-profile cap).
#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub used_bytes: usize,
    pub max_bytes: usize,
    pub entries_capped: u64,
}

/// Approximate heap cost of one map entry besides its key.
const ENTRY_OVERHEAD: usize = 64;

impl Budget {
    /// Reserves room for a new entry keyed `key` under a per-map `cap`.
    fn take(&mut self, len_now: usize, cap: usize, key: &str) -> bool {
        let cost = key.len() + ENTRY_OVERHEAD;
        if len_now >= cap || self.used_bytes + cost > self.max_bytes {
            self.entries_capped += 1;
            return false;
        }
        self.used_bytes += cost;
        true
    }
}

/// Counts `key` in a capped map.
fn bump<'m, V: Default>(
    map: &'m mut BTreeMap<Text, V>,
    key: &str,
    cap: usize,
    budget: &mut Budget,
) -> Option<&'m mut V> {
    if !map.contains_key(key) && !budget.take(map.len(), cap, key) {
        return None;
    }
    Some(map.entry(Text::from(key)).or_default())
}

fn add_to_set(set: &mut BTreeSet<Text>, key: &str, cap: usize, budget: &mut Budget) {
    if !set.contains(key) && budget.take(set.len(), cap, key) {
        set.insert(Text::from(key));
    }
}

/// Everything known about requests with one method to one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub requests: u64,
    /// Answers that said the thing does not exist (404, 410, or a page or
    /// error body saying so), and successful answers (not those).
    pub not_found: u64,
    pub successes: u64,
    /// Status code → responses; 0 counts requests without a response.
    pub statuses: BTreeMap<u16, u64>,
    pub request_content_types: BTreeMap<Text, u64>,
    pub response_content_types: BTreeMap<Text, u64>,
    pub query_params: BTreeMap<Text, FieldStat>,
    pub request_fields: BTreeMap<Text, FieldStat>,
    /// Fields of 2xx JSON responses.
    pub response_fields: BTreeMap<Text, FieldStat>,
    /// 2xx responses with a JSON body that parsed.
    pub json_2xx: u64,
    /// Authentication kind → requests (`none` when no credential was seen).
    pub auth: BTreeMap<Text, u64>,
    pub jwt_claims: BTreeSet<Text>,
    pub api_key_names: BTreeSet<Text>,
    pub request_sensitive: BTreeMap<SensitiveKey, u64>,
    pub response_sensitive: BTreeMap<SensitiveKey, u64>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub clients: Distinct,
    pub posture: PostureCounts,
    /// What its successful answers were: all one HTML page (its digest),
    /// or not (see `Inventory`'s catch-all pages).
    pub pages: Pages,
}

/// The successful answers of a profile, as pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pages {
    #[default]
    NoSuccess,
    /// Every one was this HTML page (a digest of its bytes).
    One(u64),
    Mixed,
}

impl Pages {
    fn add(self, page: Option<u64>) -> Pages {
        match (self, page) {
            (Pages::NoSuccess, Some(p)) => Pages::One(p),
            (Pages::One(a), Some(b)) if a == b => self,
            _ => Pages::Mixed,
        }
    }

    fn merge(self, o: Pages) -> Pages {
        match (self, o) {
            (Pages::NoSuccess, x) | (x, Pages::NoSuccess) => x,
            (Pages::One(a), Pages::One(b)) if a == b => self,
            _ => Pages::Mixed,
        }
    }
}

/// One exchange, digested for a profile (built by `Inventory::observe`).
#[derive(Debug)]
pub struct Observation<'a> {
    pub ts: Timestamp,
    pub client_hash: u64,
    pub status: Option<u16>,
    pub outcome: super::template::Outcome,
    pub request_content_type: Option<&'a str>,
    pub response_content_type: Option<&'a str>,
    pub query: Vec<(&'a str, FieldType)>,
    pub request_fields: &'a [(String, String)],
    /// Empty unless the response was 2xx.
    pub response_fields: &'a [(String, String)],
    pub json_2xx: bool,
    pub auth: &'a super::auth::AuthSeen,
    /// Digest of a successful HTML answer's page.
    pub page: Option<u64>,
    pub request_sensitive: &'a [super::SensitiveHit],
    pub response_sensitive: &'a [super::SensitiveHit],
    pub posture: PostureCounts,
}

/// Media type without parameters, lower case, bounded.
pub fn media_type(ct: &str) -> Text {
    let base = ct.split(';').next().unwrap_or("").trim();
    let base = base.get(..base.len().min(64)).unwrap_or("");
    Text::from(base.to_ascii_lowercase())
}

impl Profile {
    pub fn observe(&mut self, o: &Observation<'_>, caps: &Caps, budget: &mut Budget) {
        self.requests += 1;
        let status = o.status.unwrap_or(0);
        self.not_found += u64::from(o.outcome == super::template::Outcome::NotFound);
        self.successes += u64::from(o.outcome == super::template::Outcome::Success);
        if o.outcome == super::template::Outcome::Success {
            self.pages = self.pages.add(o.page);
        }
        *self.statuses.entry(status).or_default() += 1;
        self.first_seen = Some(self.first_seen.map_or(o.ts, |t| t.min(o.ts)));
        self.last_seen = Some(self.last_seen.map_or(o.ts, |t| t.max(o.ts)));
        self.clients.insert(o.client_hash, caps.exact_clients);
        for (ct, map) in [
            (o.request_content_type, &mut self.request_content_types),
            (o.response_content_type, &mut self.response_content_types),
        ] {
            if let Some(ct) = ct {
                if let Some(n) = bump(map, &media_type(ct), caps.small, budget) {
                    *n += 1;
                }
            }
        }
        let mut seen_query: BTreeSet<&str> = BTreeSet::new();
        for (name, t) in &o.query {
            if seen_query.insert(name) {
                if let Some(s) = bump(&mut self.query_params, name, caps.params, budget) {
                    s.add(*t);
                }
            }
        }
        for (fields, map) in [
            (o.request_fields, &mut self.request_fields),
            (o.response_fields, &mut self.response_fields),
        ] {
            for (path, t) in fields {
                if let Some(s) = bump(map, path, caps.fields, budget) {
                    s.add(FieldType::parse(t));
                }
            }
        }
        self.json_2xx += u64::from(o.json_2xx);
        let kinds = o.auth.kind_names();
        for k in &kinds {
            if let Some(n) = bump(&mut self.auth, k, caps.small, budget) {
                *n += 1;
            }
        }
        for c in &o.auth.jwt_claims {
            add_to_set(&mut self.jwt_claims, c, caps.small, budget);
        }
        for k in &o.auth.api_key_names {
            add_to_set(&mut self.api_key_names, k, caps.small, budget);
        }
        for (hits, map) in [
            (o.request_sensitive, &mut self.request_sensitive),
            (o.response_sensitive, &mut self.response_sensitive),
        ] {
            let mut once: BTreeSet<SensitiveKey> = BTreeSet::new();
            for h in hits {
                let key = (
                    Text::from(h.data_type.as_str()),
                    Text::from(h.category.as_str()),
                    Text::from(h.location.as_str()),
                );
                if !once.insert(key.clone()) {
                    continue;
                }
                if !map.contains_key(&key) && !budget.take(map.len(), caps.small, &h.data_type) {
                    continue;
                }
                *map.entry(key).or_default() += 1;
            }
        }
        let before = self.posture.clone();
        self.posture.merge(&o.posture, caps.small);
        let added = count_set_entries(&self.posture) - count_set_entries(&before);
        budget.used_bytes += added * ENTRY_OVERHEAD;
    }

    /// Folds `other` in; commutative and associative.
    pub fn merge(&mut self, o: &Profile) {
        let caps = Caps::MERGE;
        self.requests += o.requests;
        self.not_found += o.not_found;
        self.successes += o.successes;
        self.pages = self.pages.merge(o.pages);
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (dst, src) in [
            (&mut self.request_content_types, &o.request_content_types),
            (&mut self.response_content_types, &o.response_content_types),
            (&mut self.auth, &o.auth),
        ] {
            for (k, v) in src {
                *dst.entry(k.clone()).or_default() += v;
            }
        }
        for (dst, src) in [
            (&mut self.query_params, &o.query_params),
            (&mut self.request_fields, &o.request_fields),
            (&mut self.response_fields, &o.response_fields),
        ] {
            for (k, v) in src {
                dst.entry(k.clone()).or_default().merge(v);
            }
        }
        self.json_2xx += o.json_2xx;
        self.jwt_claims.extend(o.jwt_claims.iter().cloned());
        self.api_key_names.extend(o.api_key_names.iter().cloned());
        for (dst, src) in [
            (&mut self.request_sensitive, &o.request_sensitive),
            (&mut self.response_sensitive, &o.response_sensitive),
        ] {
            for (k, v) in src {
                *dst.entry(k.clone()).or_default() += v;
            }
        }
        self.first_seen = match (self.first_seen, o.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_seen = match (self.last_seen, o.last_seen) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.clients.merge(&o.clients, caps.exact_clients);
        self.posture.merge(&o.posture, caps.small);
    }

    /// Hash of the top-level keys present in at least half of the 2xx JSON
    /// responses; `None` without such responses.
    pub fn shape_signature(&self) -> Option<u64> {
        if self.json_2xx == 0 {
            return None;
        }
        let mut keys = String::new();
        for (path, stat) in &self.response_fields {
            let top = !path.contains('.') && !path.contains("[]");
            if top && stat.count * 2 >= self.json_2xx {
                keys.push_str(path);
                keys.push('\n');
            }
        }
        Some(stable_hash(keys.as_bytes()))
    }

    /// Status codes seen (without the 0 of unanswered requests).
    pub fn status_codes(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses
            .iter()
            .filter(|(s, _)| **s != 0)
            .map(|(s, n)| (*s, *n))
    }
}

fn count_set_entries(p: &PostureCounts) -> usize {
    p.unauth_sensitive_types.len()
        + p.sensitive_in_url_types.len()
        + p.credential_query_keys.len()
        + p.cleartext_kinds.len()
        + p.secret_echo_fields.len()
}

/// JSON form of a field or parameter: count and types seen.
#[derive(Debug, Serialize)]
pub struct FieldJson {
    pub name: String,
    pub count: u64,
    pub types: Vec<&'static str>,
}

pub fn fields_json(map: &BTreeMap<Text, FieldStat>) -> Vec<FieldJson> {
    map.iter()
        .map(|(k, v)| FieldJson {
            name: k.to_string(),
            count: v.count,
            types: v.types_seen().into_iter().map(FieldType::as_str).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_is_exact_then_sketched_and_order_free() {
        let mut a = Distinct::default();
        let mut b = Distinct::default();
        for i in 0..1000u64 {
            a.insert(stable_hash(&i.to_le_bytes()), 64);
            b.insert(stable_hash(&(999 - i).to_le_bytes()), 64);
        }
        assert_eq!(a, b);
        let est = a.estimate() as f64;
        assert!((800.0..1200.0).contains(&est), "{est}");
        let mut small = Distinct::default();
        for i in 0..10u64 {
            small.insert(stable_hash(&i.to_le_bytes()), 64);
            small.insert(stable_hash(&i.to_le_bytes()), 64);
        }
        assert_eq!(small.estimate(), 10);
    }

    #[test]
    fn text_types_are_inferred() {
        assert_eq!(FieldType::of_text("42"), FieldType::Integer);
        assert_eq!(FieldType::of_text("true"), FieldType::Bool);
        assert_eq!(FieldType::of_text("a@b.io"), FieldType::Email);
        assert_eq!(FieldType::of_text("2024-01-02"), FieldType::Date);
        assert_eq!(
            FieldType::of_text("2024-01-02T10:00:00Z"),
            FieldType::DateTime
        );
        assert_eq!(FieldType::of_text("1.5"), FieldType::Number);
        assert_eq!(FieldType::of_text("10.0.0.1"), FieldType::Ip);
        assert_eq!(FieldType::of_text("hello"), FieldType::String);
    }

    #[test]
    fn budget_refuses_and_counts() {
        let mut budget = Budget {
            max_bytes: 200,
            ..Budget::default()
        };
        let mut map: BTreeMap<Text, u64> = BTreeMap::new();
        assert!(bump(&mut map, "a", 10, &mut budget).is_some());
        assert!(bump(&mut map, "b", 10, &mut budget).is_some());
        assert!(bump(&mut map, "c", 10, &mut budget).is_some());
        assert!(bump(&mut map, "d", 10, &mut budget).is_none());
        assert!(bump(&mut map, "a", 10, &mut budget).is_some());
        assert_eq!(budget.entries_capped, 1);
        assert!(bump(&mut map, "e", 3, &mut budget).is_none());
    }
}
