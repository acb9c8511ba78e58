//! API discovery: the inventory of hosts → endpoints → profiles built from
//! exchanges, its OpenAPI export, drift against a spec and the posture
//! findings visible from traffic alone. Fed one exchange at a time (with the
//! facts the classifier extracted from it) on one thread; it never sees
//! packets and never blocks. Memory is bounded by `[inventory]`: hosts,
//! trie nodes plus per-method profiles, literal children per node, path
//! depth, and a byte budget for profile entries; everything a cap refused
//! is counted in [`Counters`]. Templates are computed at query time from
//! counts (see `template`), so they depend only on what was observed.

pub mod auth;
pub mod drift;
pub mod openapi;
pub mod posture;
pub mod profile;
pub mod report;
pub mod template;

use crate::config::InventorySettings;
use crate::event::Event;
use crate::exchange::{Exchange, Request, Text};
use profile::{Budget, Caps, FieldType, Observation, PostureCounts, Profile};
use serde::Serialize;
use std::collections::BTreeMap;
use template::{Label, Node, NotFoundOnly, Rules, SegKind, Step, View};

/// One sensitive value the classifier found in an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveHit {
    /// e.g. `email`, `kr_rrn`, `aws_access_key_id`.
    pub data_type: String,
    /// e.g. `pii`, `credential`, `financial`.
    pub category: String,
    /// `query`, `header`, `cookie`, `body` or `path`.
    pub location: String,
    /// Parameter, header or JSON path the value was in.
    pub field: String,
    /// 0–100.
    pub confidence: u8,
}

/// What analysis extracted from one exchange for the inventory: sensitive
/// data (from the classifier) and the flat JSON field lists of the bodies
/// (path with arrays as `[]`, type name: `string`, `integer`, `number`,
/// `bool`, `null`, `object`, `array`, `uuid`, `email`, `date_time`, `date`,
/// `uri`, `ip`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeFacts {
    pub request_sensitive: Vec<SensitiveHit>,
    pub response_sensitive: Vec<SensitiveHit>,
    pub request_fields: Vec<(String, String)>,
    pub response_fields: Vec<(String, String)>,
}

/// Deepest JSON nesting walked for field paths.
pub const MAX_JSON_DEPTH: usize = 16;
/// Field entries taken from one body at most.
pub const MAX_JSON_FIELDS: usize = 256;
/// Array elements of one array walked for field paths.
const MAX_ARRAY_ELEMENTS: usize = 16;

impl ExchangeFacts {
    /// Field lists from the JSON bodies; no sensitive data (the classifier
    /// fills that).
    pub fn from_exchange_basic(ex: &Exchange) -> ExchangeFacts {
        let fields = |ct: Option<&Text>, data: &[u8]| {
            if looks_json(ct.map(Text::as_str), data) {
                json_fields(data)
            } else {
                Vec::new()
            }
        };
        ExchangeFacts {
            request_fields: ex
                .request
                .as_ref()
                .map(|r| fields(r.content_type.as_ref(), &r.body.data))
                .unwrap_or_default(),
            response_fields: ex
                .response
                .as_ref()
                .map(|r| fields(r.content_type.as_ref(), &r.body.data))
                .unwrap_or_default(),
            ..ExchangeFacts::default()
        }
    }
}

fn looks_json(ct: Option<&str>, data: &[u8]) -> bool {
    let first = data.iter().find(|c| !c.is_ascii_whitespace());
    let bracket = matches!(first, Some(b'{') | Some(b'['));
    bracket && ct.is_none_or(|c| c.to_ascii_lowercase().contains("json") || !c.contains('/'))
}

/// Flat (path, type) list of a JSON document: `user.cards[].number`; each
/// pair once. Empty when `data` is not JSON (or was cut short).
pub fn json_fields(data: &[u8]) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    walk_json(&value, "", 0, &mut out, &mut seen);
    out
}

fn json_type(v: &serde_json::Value) -> FieldType {
    use serde_json::Value;
    match v {
        Value::Null => FieldType::Null,
        Value::Bool(_) => FieldType::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => FieldType::Integer,
        Value::Number(_) => FieldType::Number,
        Value::String(s) => match FieldType::of_string(s) {
            FieldType::Number => FieldType::String,
            t => t,
        },
        Value::Array(_) => FieldType::Array,
        Value::Object(_) => FieldType::Object,
    }
}

fn walk_json(
    v: &serde_json::Value,
    path: &str,
    depth: usize,
    out: &mut Vec<(String, String)>,
    seen: &mut std::collections::BTreeSet<(String, FieldType)>,
) {
    use serde_json::Value;
    if depth >= MAX_JSON_DEPTH {
        return;
    }
    fn emit(
        p: String,
        t: FieldType,
        out: &mut Vec<(String, String)>,
        seen: &mut std::collections::BTreeSet<(String, FieldType)>,
    ) {
        if out.len() < MAX_JSON_FIELDS && seen.insert((p.clone(), t)) {
            out.push((p, t.as_str().to_string()));
        }
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter().take(MAX_JSON_FIELDS) {
                let key: String = k.chars().take(64).collect();
                let p = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                emit(p.clone(), json_type(child), out, seen);
                if out.len() >= MAX_JSON_FIELDS {
                    return;
                }
                walk_json(child, &p, depth + 1, out, seen);
            }
        }
        Value::Array(items) => {
            let p = format!("{path}[]");
            for item in items.iter().take(MAX_ARRAY_ELEMENTS) {
                emit(p.clone(), json_type(item), out, seen);
                walk_json(item, &p, depth + 1, out, seen);
            }
        }
        _ => {}
    }
}

/// What caps refused, and what is not an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub exchanges: u64,
    /// Responses without a request: no path to file them under.
    pub exchanges_without_request: u64,
    /// Requests to a new host beyond `inventory.max_hosts`.
    pub hosts_capped: u64,
    /// Requests whose path needed trie nodes beyond `inventory.max_path_nodes`.
    pub paths_capped: u64,
    /// Requests with more than `inventory.max_path_segments` segments.
    pub paths_too_deep: u64,
    /// Literal segments folded into an overflow child (`max_children_per_node`).
    pub segments_overflowed: u64,
    /// Requests with a new method on a path that has `max_methods_per_path`.
    pub methods_capped: u64,
    /// Profile entries (parameters, fields, types ...) refused by a cap or the byte budget.
    pub profile_entries_capped: u64,
    /// Distinct raw paths (per method) that only ever answered 404, and their requests.
    pub not_found_only_paths: u64,
    pub not_found_only_requests: u64,
    /// Trie nodes plus per-method profiles in use.
    pub path_nodes: u64,
    /// Bytes the profile entries are estimated to use.
    pub profile_bytes: u64,
}

/// One endpoint: a templated path and method on a host, with its profile.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub method: String,
    /// OpenAPI-style template: `/users/{id}`.
    pub path: String,
    /// Path parameters in order: (name, kind).
    pub params: Vec<(String, SegKind)>,
    pub profile: Profile,
}

/// The inventory at one moment: endpoints sorted by host, path, method.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub endpoints: Vec<Endpoint>,
    pub counters: Counters,
}

#[derive(Debug, Default)]
struct Host {
    root: Node,
}

/// The API inventory.
#[derive(Debug)]
pub struct Inventory {
    settings: InventorySettings,
    hosts: BTreeMap<Text, Host>,
    budget: Budget,
    counters: Counters,
}

impl Inventory {
    pub fn new(settings: &InventorySettings) -> Inventory {
        Inventory {
            settings: settings.clone(),
            hosts: BTreeMap::new(),
            budget: Budget {
                max_bytes: settings.max_profile_bytes,
                ..Budget::default()
            },
            counters: Counters::default(),
        }
    }

    fn caps(&self) -> Caps {
        Caps {
            params: self.settings.max_params_per_endpoint,
            fields: self.settings.max_fields_per_endpoint,
            small: 32,
            exact_clients: 64,
        }
    }

    fn rules(&self) -> Rules {
        Rules {
            param_min_distinct: self.settings.param_min_distinct,
            param_min_distinct_ratio: self.settings.param_min_distinct_ratio,
            fixed_min_requests: self.settings.fixed_min_requests,
            fixed_share_factor: self.settings.fixed_share_factor,
        }
    }

    /// Files one exchange under its host, path and method.
    pub fn observe(&mut self, ex: &Exchange, facts: &ExchangeFacts) {
        self.counters.exchanges += 1;
        let Some(req) = &ex.request else {
            self.counters.exchanges_without_request += 1;
            return;
        };
        let s = &self.settings;
        let host = host_of(req, ex);
        if !self.hosts.contains_key(&host) && self.hosts.len() >= s.max_hosts {
            self.counters.hosts_capped += 1;
            return;
        }
        let segments: Vec<&str> = req.path.split('/').filter(|p| !p.is_empty()).collect();
        if segments.len() > s.max_path_segments {
            self.counters.paths_too_deep += 1;
            return;
        }
        let steps: Vec<Step<'_>> = segments
            .iter()
            .map(
                |seg| match template::classify_segment(seg, s.max_segment_bytes) {
                    Some(kind) => Step::Typed(kind),
                    None => Step::Lit(seg),
                },
            )
            .collect();
        let method = Text::from(
            req.method
                .chars()
                .take(16)
                .collect::<String>()
                .to_ascii_uppercase(),
        );
        let status = ex.response.as_ref().and_then(|r| r.status);
        let max_children = s.max_children_per_node;
        let max_methods = s.max_methods_per_path;
        let max_nodes = s.max_path_nodes as u64;
        let root_needed = u64::from(!self.hosts.contains_key(&host));
        let needed = root_needed
            + self.hosts.get(&host).map_or(steps.len() + 1, |h| {
                h.root.nodes_needed(&steps, max_children)
            }) as u64;
        // A new path needs its nodes and a profile.
        if needed > 0 && self.counters.path_nodes + needed + 1 > max_nodes {
            self.counters.paths_capped += 1;
            return;
        }
        let caps = self.caps();
        let query = parse_query(req.query.as_deref());
        let auth = auth::detect(req, &query);
        let success = status.is_some_and(|s| (200..300).contains(&s));
        let obs = Observation {
            ts: req.ts,
            client_hash: profile::stable_hash(ex.client.ip().to_string().as_bytes()),
            status,
            request_content_type: req.content_type.as_deref(),
            response_content_type: ex.response.as_ref().and_then(|r| r.content_type.as_deref()),
            query: query
                .iter()
                .map(|(k, v)| (*k, FieldType::of_text(v)))
                .collect(),
            request_fields: &facts.request_fields,
            response_fields: if success { &facts.response_fields } else { &[] },
            json_2xx: success && !facts.response_fields.is_empty(),
            auth: &auth,
            request_sensitive: &facts.request_sensitive,
            response_sensitive: &facts.response_sensitive,
            posture: posture_counts(req, status, &query, &auth, facts),
        };
        let host_entry = self.hosts.entry(host).or_default();
        let (node, overflowed) = host_entry
            .root
            .walk(&steps, max_children, status == Some(404));
        self.counters.path_nodes += needed;
        self.counters.segments_overflowed += overflowed;
        if !node.methods.contains_key(&method) {
            if node.methods.len() >= max_methods || self.counters.path_nodes + 1 > max_nodes {
                self.counters.methods_capped += 1;
                return;
            }
            self.counters.path_nodes += 1;
        }
        node.methods
            .entry(method)
            .or_default()
            .observe(&obs, &caps, &mut self.budget);
        self.counters.profile_entries_capped = self.budget.entries_capped;
        self.counters.profile_bytes = self.budget.used_bytes as u64;
    }

    /// Counters so far (without the query-time not-found counts).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Resolves templates and lists every endpoint, sorted by host, path, method.
    pub fn snapshot(&self) -> Snapshot {
        let rules = self.rules();
        let mut dropped = NotFoundOnly::default();
        let mut endpoints = Vec::new();
        for (host, h) in &self.hosts {
            let view = template::resolve(&h.root, &rules, &mut dropped);
            let mut labels = Vec::new();
            flatten(host, &view, &mut labels, &mut endpoints);
        }
        endpoints.sort_by(|a, b| (&a.host, &a.path, &a.method).cmp(&(&b.host, &b.path, &b.method)));
        let mut counters = self.counters.clone();
        counters.not_found_only_paths = dropped.paths;
        counters.not_found_only_requests = dropped.requests;
        Snapshot {
            endpoints,
            counters,
        }
    }

    /// Posture findings as events, in a deterministic order.
    pub fn posture_findings(&self, sensor: &str) -> Vec<Event> {
        posture::findings(&self.snapshot().endpoints, sensor)
    }
}

fn flatten<'a>(host: &str, view: &'a View, labels: &mut Vec<&'a Label>, out: &mut Vec<Endpoint>) {
    if !view.methods.is_empty() {
        let t = template::template(labels);
        for (method, profile) in &view.methods {
            out.push(Endpoint {
                host: host.to_string(),
                method: method.to_string(),
                path: t.path.clone(),
                params: t.params.clone(),
                profile: profile.clone(),
            });
        }
    }
    for (label, child) in &view.children {
        labels.push(label);
        flatten(host, child, labels, out);
        labels.pop();
    }
}

/// Host header (lower case, default port dropped) or the server address.
fn host_of(req: &Request, ex: &Exchange) -> Text {
    match req.host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => {
            let h = h.get(..h.len().min(255)).unwrap_or(h).to_ascii_lowercase();
            let h = h.strip_suffix(":80").unwrap_or(&h);
            Text::from(h)
        }
        None => Text::from(ex.server.to_string()),
    }
}

/// `a=1&b=x` → [("a","1"), ("b","x")]; at most 64 pairs, names ≤ 64 bytes.
pub fn parse_query(query: Option<&str>) -> Vec<(&str, &str)> {
    let Some(q) = query else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .filter(|(k, _)| !k.is_empty() && k.len() <= 64)
        .collect()
}

/// Field names whose value is a secret when a response carries it.
fn is_secret_field(path: &str) -> bool {
    let last = path.rsplit(['.', ']']).next().unwrap_or(path);
    let l = last.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "password"
            | "passwd"
            | "pwd"
            | "secret"
            | "client_secret"
            | "clientsecret"
            | "private_key"
            | "privatekey"
            | "secret_key"
            | "secretkey"
            | "api_key"
            | "apikey"
            | "password_hash"
            | "passwordhash"
    ) || l.ends_with("_password")
        || l.ends_with("_secret")
}

/// Credential types an API legitimately hands to its clients (login and
/// token endpoints); seeing them in a response is not a leak by itself.
const ISSUED_CREDENTIALS: &[&str] = &["jwt", "bearer_token", "session_token"];

/// The posture counts of one exchange.
fn posture_counts(
    req: &Request,
    status: Option<u16>,
    query: &[(&str, &str)],
    auth: &auth::AuthSeen,
    facts: &ExchangeFacts,
) -> PostureCounts {
    let mut p = PostureCounts::default();
    let success = status.is_some_and(|s| (200..300).contains(&s));
    p.success = u64::from(status.is_some_and(|s| (200..400).contains(&s)));
    // A token or session handed out is what a login endpoint is for, not
    // a leak; everything else sensitive in a response counts.
    let leaked: Vec<&SensitiveHit> = facts
        .response_sensitive
        .iter()
        .filter(|h| !ISSUED_CREDENTIALS.contains(&h.data_type.as_str()))
        .collect();
    if auth.none() && success && !leaked.is_empty() {
        p.unauth_sensitive_responses = 1;
        p.unauth_sensitive_types = leaked
            .iter()
            .map(|h| Text::from(h.data_type.as_str()))
            .collect();
    }
    let in_url: Vec<&SensitiveHit> = facts
        .request_sensitive
        .iter()
        .filter(|h| h.location == "query" || h.location == "path")
        .collect();
    if !in_url.is_empty() {
        p.sensitive_in_url = 1;
        p.sensitive_in_url_types = in_url
            .iter()
            .map(|h| Text::from(h.data_type.as_str()))
            .collect();
    }
    let keys: Vec<&str> = query
        .iter()
        .filter(|(k, v)| !v.is_empty() && auth::is_credential_key(k))
        .map(|(k, _)| *k)
        .collect();
    if !keys.is_empty() {
        p.credentials_in_query = 1;
        p.credential_query_keys = keys
            .iter()
            .map(|k| Text::from(k.to_ascii_lowercase()))
            .collect();
    }
    let kinds = auth.header_credential_kinds();
    if !kinds.is_empty() && cleartext(req) {
        p.cleartext_credentials = 1;
        p.cleartext_kinds = kinds.into_iter().map(Text::from).collect();
    }
    let mut echoed: Vec<Text> = facts
        .response_fields
        .iter()
        .filter(|(path, t)| t != "null" && t != "object" && t != "array" && is_secret_field(path))
        .map(|(path, _)| Text::from(path.as_str()))
        .collect();
    echoed.extend(
        leaked
            .iter()
            .filter(|h| h.category == "credential")
            .map(|h| Text::from(h.data_type.as_str())),
    );
    if !echoed.is_empty() {
        p.secret_echoes = 1;
        p.secret_echo_fields = echoed.into_iter().collect();
    }
    p
}

/// The sensor sees the request in plaintext; it crossed the network in
/// cleartext unless a TLS-terminating proxy says the client used HTTPS.
fn cleartext(req: &Request) -> bool {
    let https = |v: &[u8]| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("https")
    };
    !(req.headers.get("x-forwarded-proto").is_some_and(https)
        || req.headers.get("forwarded").is_some_and(|v| {
            String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("proto=https")
        }))
}

#[cfg(test)]
pub(crate) mod tests;
