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
use std::borrow::Cow;
use std::collections::BTreeMap;
use template::{Label, Node, Outcome, ResponseKind, Rules, Sample, SegKind, Step};

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
/// `uri`, `ip`), and whether the path carried an attack payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeFacts {
    pub request_sensitive: Vec<SensitiveHit>,
    pub response_sensitive: Vec<SensitiveHit>,
    pub request_fields: Vec<(String, String)>,
    pub response_fields: Vec<(String, String)>,
    /// The request target carried an attack payload (a probe).
    pub path_payload: bool,
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

/// What caps refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub exchanges: u64,
    /// Responses without a request: no path to file them under.
    pub exchanges_without_request: u64,
    /// Requests to a new host beyond `inventory.max_hosts`.
    pub hosts_capped: u64,
    /// Requests whose path needed trie nodes beyond `inventory.max_path_nodes`
    /// (their new segments went to an overflow parameter instead).
    pub paths_capped: u64,
    /// Requests with more than `inventory.max_path_segments` segments.
    pub paths_too_deep: u64,
    /// Literal segments folded into an overflow child (`max_children_per_node`).
    pub segments_overflowed: u64,
    /// Requests with a new method on a path that has `max_methods_per_path`.
    pub methods_capped: u64,
    /// Profile entries (parameters, fields, types ...) refused by a cap or the byte budget.
    pub profile_entries_capped: u64,
    /// Trie nodes plus per-method profiles in use.
    pub path_nodes: u64,
    /// Bytes the profile entries are estimated to use.
    pub profile_bytes: u64,
}

/// The endpoint an exchange belongs to: the one key the inventory, the
/// baselines, the detectors and the posture findings use for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct EndpointKey {
    /// Host header (lower case, `:80` dropped) or the server address.
    pub host: Text,
    pub method: Text,
    /// The learned template: `/users/{name}/orders/{id}`.
    pub template: Text,
}

impl std::fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}{}", self.method, self.host, self.template)
    }
}

/// A value at a parameter position of the template: an object id (a
/// number, a UUID, a name, a slug, a title).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathValue {
    /// The parameter's name in the template.
    pub name: String,
    pub kind: SegKind,
    pub value: Text,
}

/// Where an exchange belongs in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub key: EndpointKey,
    /// The values at the template's parameters, in path order.
    pub values: Vec<PathValue>,
}

/// Why a path is, or is not, listed as an ordinary endpoint of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathClass {
    /// An endpoint of the API.
    Api,
    /// Never answered successfully: not found, refused, or errors only.
    Unconfirmed,
    /// Framework documentation, specifications and consoles (`/docs`,
    /// `/openapi.json`, `/swagger-ui`, `/static/...`).
    Documentation,
    /// `HEAD` and `OPTIONS`, which frameworks answer for every route.
    AutomaticMethod,
    /// Every request to it carried an attack payload in its target.
    Probe,
    /// Every client that called it was flagged as a scanner.
    ScannerOnly,
    /// On a host only one client used (an attacker-supplied `Host`).
    UntrustedHost,
}

impl PathClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            PathClass::Api => "api",
            PathClass::Unconfirmed => "unconfirmed",
            PathClass::Documentation => "documentation",
            PathClass::AutomaticMethod => "automatic_method",
            PathClass::Probe => "probe",
            PathClass::ScannerOnly => "scanner_only",
            PathClass::UntrustedHost => "untrusted_host",
        }
    }
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
    pub class: PathClass,
}

/// The inventory at one moment: endpoints sorted by host, path, method;
/// `other` holds what is not an ordinary endpoint, each with why.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub endpoints: Vec<Endpoint>,
    pub other: Vec<Endpoint>,
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
    /// Clients (digests) flagged as scanners, for the `scanner_only` class.
    scanners: std::collections::BTreeSet<u32>,
    known: template::KnownValues,
    /// Per host: the page it answers any unknown path with, if any.
    catch_all: BTreeMap<Text, CatchAllPages>,
}

/// Distinct paths one HTML page must answer before it is the host's
/// catch-all page (a single-page app's shell, a soft "not found").
const CATCH_ALL_PATHS: usize = 4;
/// Pages followed per host before one is known as its catch-all, and
/// catch-all pages known per host.
const CATCH_ALL_CANDIDATES: usize = 16;
/// Bytes of a page digested.
const PAGE_DIGEST_BYTES: usize = 4096;
/// Smallest page that can be a catch-all page.
const MIN_PAGE_BYTES: usize = 256;

/// The pages a host answered for several different paths, byte for byte:
/// what it serves for any path it has no route for (a single-page app's
/// index, a "not found" page sent with 200). Such answers are not
/// endpoints, and say nothing about the paths they answer.
#[derive(Debug, Default)]
struct CatchAllPages {
    /// (page digest, digests of the paths it answered), the first few.
    candidates: Vec<(u64, Vec<u64>)>,
    pages: Vec<u64>,
}

impl CatchAllPages {
    /// Notes `page` as the answer to `path`; whether it is a catch-all page.
    fn answered(&mut self, page: u64, path: &str) -> bool {
        if self.pages.contains(&page) {
            return true;
        }
        let path = profile::stable_hash(path.as_bytes());
        let at = match self.candidates.iter().position(|(p, _)| *p == page) {
            Some(at) => at,
            None if self.candidates.len() < CATCH_ALL_CANDIDATES => {
                self.candidates.push((page, Vec::new()));
                self.candidates.len() - 1
            }
            None => return false,
        };
        let paths = &mut self.candidates[at].1;
        if !paths.contains(&path) {
            paths.push(path);
        }
        if paths.len() >= CATCH_ALL_PATHS && self.pages.len() < CATCH_ALL_CANDIDATES {
            self.candidates.swap_remove(at);
            self.pages.push(page);
            return true;
        }
        false
    }
}

/// Digest of a successful HTML answer to a GET: its length and first bytes.
fn page_digest(ex: &Exchange, method: &str, outcome: Outcome, kind: ResponseKind) -> Option<u64> {
    let r = ex.response.as_ref()?;
    if method != "GET" || outcome != Outcome::Success || kind != ResponseKind::Html {
        return None;
    }
    let body = &r.body.data;
    // A document, not a short answer sent as text/html ("OK" from a ping).
    let document = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    if !document || body.len() < MIN_PAGE_BYTES {
        return None;
    }
    let head = &body[..body.len().min(PAGE_DIGEST_BYTES)];
    Some(profile::stable_hash(head) ^ (r.body.decoded_len.rotate_left(32)))
}

/// Scanner clients remembered for the report.
const MAX_SCANNERS: usize = 10_000;

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
            scanners: Default::default(),
            known: Default::default(),
            catch_all: BTreeMap::new(),
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
            param_many_distinct: self.settings.param_many_distinct,
            max_children: self.settings.max_children_per_node,
            at_node_cap: false,
            node_room: u64::MAX,
        }
    }

    /// Remembers that `client` (a digest, see [`client_digest`]) was
    /// flagged as a scanner: paths only such clients called are listed
    /// apart.
    pub fn mark_scanner(&mut self, client: u32) {
        if self.scanners.len() < MAX_SCANNERS {
            self.scanners.insert(client);
        }
    }

    /// Files one exchange under its host, path and method, learning the
    /// path's template as it goes; returns where it belongs (`None` for a
    /// response without a request, or a path a cap refused).
    pub fn observe(&mut self, ex: &Exchange, facts: &ExchangeFacts) -> Option<Located> {
        self.counters.exchanges += 1;
        let Some(req) = &ex.request else {
            self.counters.exchanges_without_request += 1;
            return None;
        };
        let rules = self.rules();
        let s = &self.settings;
        let host = host_of(req, ex);
        if !self.hosts.contains_key(&host) && self.hosts.len() >= s.max_hosts {
            self.counters.hosts_capped += 1;
            return None;
        }
        let segments = path_segments(&req.uri);
        if segments.len() > s.max_path_segments {
            self.counters.paths_too_deep += 1;
            return None;
        }
        let known = &self.known;
        let mut steps: Vec<Step<'_>> = segments
            .iter()
            .map(
                |seg| match template::classify_segment(seg, s.max_segment_bytes) {
                    Some(kind) => Step::Typed(kind),
                    None if known.contains(&host, seg) => Step::Known(seg),
                    None => Step::Lit(seg.as_ref()),
                },
            )
            .collect();
        // How the exchange ended and what it answered, read once: the
        // templating evidence and the checks below all need them.
        let mut outcome = outcome(ex);
        let kind = response_kind(ex);
        // The object a path asks for, named in its own answer, is a value.
        let echoed = match (steps.last(), segments.last()) {
            (Some(Step::Lit(_) | Step::Known(_)), Some(seg))
                if names_itself(ex, seg, outcome, kind) =>
            {
                Some(seg.as_ref())
            }
            _ => None,
        };
        if let (Some(seg), Some(last)) = (echoed, steps.last_mut()) {
            *last = Step::Named(seg);
        }
        let method = Text::from(
            req.method
                .chars()
                .take(16)
                .collect::<String>()
                .to_ascii_uppercase(),
        );
        let status = ex.response.as_ref().and_then(|r| r.status);
        let max_methods = s.max_methods_per_path;
        let max_nodes = s.max_path_nodes as u64;
        // Near the cap, new segments fold into their position's overflow
        // child (a parameter) instead of growing the trie.
        let rules = Rules {
            at_node_cap: self.counters.path_nodes + steps.len() as u64 + 2 > max_nodes,
            // The host root and a profile may be needed besides the path's nodes.
            node_room: max_nodes.saturating_sub(self.counters.path_nodes + 2),
            ..rules
        };
        let caps = self.caps();
        let query = parse_query(req.query.as_deref());
        let auth = auth::detect(req, &query);
        let success = status.is_some_and(|s| (200..300).contains(&s));
        let client = client_digest(ex);
        let json_keys = top_level_keys(&facts.response_fields);
        let page = page_digest(ex, &method, outcome, kind);
        if let Some(page) = page {
            let pages = self.catch_all.entry(host.clone()).or_default();
            if pages.answered(page, &req.path) {
                outcome = Outcome::NotFound;
            }
        }
        let sample = Sample {
            method: &method,
            client,
            outcome,
            kind,
            json_keys: &json_keys,
        };
        let obs = Observation {
            ts: req.ts,
            client_hash: u64::from(client),
            status,
            outcome,
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
            page,
            request_sensitive: &facts.request_sensitive,
            response_sensitive: &facts.response_sensitive,
            posture: posture_counts(req, status, &query, &auth, facts),
        };
        let new_host = !self.hosts.contains_key(&host);
        let host_entry = self.hosts.entry(host.clone()).or_default();
        let mut labels = Vec::with_capacity(steps.len());
        let (node, walked) = host_entry.root.walk(&steps, &sample, &rules, &mut labels);
        node.probes += u64::from(facts.path_payload);
        // Only values the API served: a guesser's misses are no one's values.
        let served = outcome == Outcome::Success;
        for (i, seg) in segments.iter().enumerate() {
            if served && walked.into_params & (1u64 << i) != 0 && template::known_value(seg) {
                self.known.insert(&host, seg);
            }
        }
        for seg in walked.absorbed.iter().filter(|v| template::known_value(v)) {
            self.known.insert(&host, seg);
        }
        if let Some(seg) = echoed {
            self.known.insert(&host, seg);
        }
        self.counters.segments_overflowed += walked.overflowed;
        self.counters.paths_capped += u64::from(walked.capped > 0);
        let new_method = !node.methods.contains_key(&method);
        let capped = new_method && (node.methods.len() >= max_methods || rules.at_node_cap);
        if !capped {
            node.methods
                .entry(method.clone())
                .or_default()
                .observe(&obs, &caps, &mut self.budget);
        }
        self.counters.path_nodes = self
            .counters
            .path_nodes
            .saturating_add(walked.created + u64::from(new_host))
            .saturating_sub(walked.merged)
            .saturating_add(u64::from(new_method && !capped));
        if capped {
            self.counters.methods_capped += 1;
        }
        self.counters.profile_entries_capped = self.budget.entries_capped;
        self.counters.profile_bytes = self.budget.used_bytes as u64;
        let template = template::template(&labels);
        let values = labels
            .iter()
            .zip(&segments)
            .filter(|(l, _)| matches!(l, Label::Param(_)))
            .zip(&template.params)
            .map(|((_, seg), (name, kind))| PathValue {
                name: name.clone(),
                kind: *kind,
                value: Text::from(seg.as_ref()),
            })
            .collect();
        Some(Located {
            key: EndpointKey {
                host,
                method,
                template: Text::from(template.path),
            },
            values,
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Lists every endpoint, sorted by host, path, method: the API's in
    /// `endpoints`, the rest (see [`PathClass`]) in `other`.
    pub fn snapshot(&self) -> Snapshot {
        let busiest = self
            .hosts
            .iter()
            .max_by_key(|(_, h)| h.root.evidence.successes)
            .map(|(name, _)| name.clone());
        let mut all = Vec::new();
        for (host, h) in &self.hosts {
            let trusted = busiest.as_ref() == Some(host) || h.root.evidence.clients() >= 2;
            let mut labels = Vec::new();
            self.flatten(host, trusted, &h.root, &mut labels, &mut all);
        }
        all.sort_by(|a, b| (&a.host, &a.path, &a.method).cmp(&(&b.host, &b.path, &b.method)));
        let (endpoints, other) = all.into_iter().partition(|e| e.class == PathClass::Api);
        Snapshot {
            endpoints,
            other,
            counters: self.counters.clone(),
        }
    }

    fn flatten(
        &self,
        host: &str,
        trusted: bool,
        node: &Node,
        labels: &mut Vec<Label>,
        out: &mut Vec<Endpoint>,
    ) {
        if !node.methods.is_empty() {
            let t = template::template(labels);
            for (method, profile) in &node.methods {
                out.push(Endpoint {
                    host: host.to_string(),
                    method: method.to_string(),
                    class: self.class_of(host, trusted, &t.path, method, profile, node),
                    path: t.path.clone(),
                    params: t.params.clone(),
                    profile: profile.clone(),
                });
            }
        }
        for (name, child) in &node.literals {
            labels.push(Label::Lit(name.clone()));
            self.flatten(host, trusted, child, labels, out);
            labels.pop();
        }
        // Typed values of several shapes at one position are one parameter:
        // their profiles merge into the busiest shape's.
        let mut params: Vec<(SegKind, &Node)> = self_typed(node);
        if let Some(p) = node.param.as_deref() {
            params.push((SegKind::Text, p));
        }
        if let Some(o) = node.overflow.as_deref() {
            params.push((SegKind::Text, o));
        }
        if params.len() == 1 {
            if let Some((kind, child)) = params.pop() {
                labels.push(Label::Param(kind));
                self.flatten(host, trusted, child, labels, out);
                labels.pop();
            }
        } else if !params.is_empty() {
            let kind = params
                .iter()
                .max_by_key(|(k, n)| (n.evidence.hits, std::cmp::Reverse(*k)))
                .map_or(SegKind::Text, |(k, _)| *k);
            let mut merged = Node::default();
            for (_, n) in params {
                merged.absorb(n.clone());
            }
            labels.push(Label::Param(kind));
            self.flatten(host, trusted, &merged, labels, out);
            labels.pop();
        }
    }

    /// Whether every successful answer of `profile` was `host`'s catch-all page.
    fn catch_all_page(&self, host: &str, profile: &Profile) -> bool {
        let profile::Pages::One(page) = profile.pages else {
            return false;
        };
        self.catch_all
            .get(host)
            .is_some_and(|c| c.pages.contains(&page))
    }

    fn class_of(
        &self,
        host: &str,
        trusted: bool,
        path: &str,
        method: &str,
        profile: &Profile,
        node: &Node,
    ) -> PathClass {
        if !trusted {
            PathClass::UntrustedHost
        } else if node.probes > 0 && node.probes >= node.evidence.hits {
            PathClass::Probe
        } else if node
            .evidence
            .known_clients()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| self.scanners.contains(c)))
        {
            PathClass::ScannerOnly
        } else if is_documentation(path) || is_documentation_page(path, profile) {
            PathClass::Documentation
        } else if method == "HEAD" || method == "OPTIONS" {
            PathClass::AutomaticMethod
        } else if profile.successes == 0 || self.catch_all_page(host, profile) {
            PathClass::Unconfirmed
        } else {
            PathClass::Api
        }
    }

    /// Posture findings as events, in a deterministic order.
    pub fn posture_findings(&self, sensor: &str) -> Vec<Event> {
        posture::findings(&self.snapshot().endpoints, sensor)
    }
}

/// The segments of a request target's path, each percent-decoded after the
/// split: an encoded slash (`..%2F..%2Fetc`) is data inside one segment, as
/// the server's router sees it, not a separator.
fn path_segments(uri: &str) -> Vec<Cow<'_, str>> {
    // Cut at ASCII bytes, so the slice is on character boundaries.
    let (path, _) = crate::http1::parser::split_target_at(uri.as_bytes());
    let path = uri.get(path).unwrap_or_default();
    path.split('/')
        .filter(|p| !p.is_empty())
        .map(|seg| {
            if seg.contains('%') {
                Cow::Owned(crate::http1::parser::percent_decode(seg.as_bytes()).to_string())
            } else {
                Cow::Borrowed(seg)
            }
        })
        .collect()
}

fn self_typed(node: &Node) -> Vec<(SegKind, &Node)> {
    node.typed.iter().map(|(k, n)| (*k, n)).collect()
}

/// A page under `docs` answered with HTML (`/docs/api`): documentation,
/// where a document API under `/docs/{id}` would answer JSON.
fn is_documentation_page(path: &str, profile: &Profile) -> bool {
    let under_docs = path
        .split('/')
        .find(|s| !s.is_empty())
        .is_some_and(|s| s.eq_ignore_ascii_case("docs") || s.eq_ignore_ascii_case("documentation"));
    let html = profile
        .response_content_types
        .iter()
        .max_by_key(|(_, n)| **n)
        .is_some_and(|(ct, _)| ct.as_str() == "text/html");
    under_docs && html
}

/// Framework documentation, specifications, consoles and static assets.
/// `docs` and `openapi` count only as the last segment: `/docs` is a
/// framework's page, `/docs/{id}` a collection of documents.
fn is_documentation(path: &str) -> bool {
    const ANYWHERE: &[&str] = &[
        "redoc",
        "swagger",
        "swagger-ui",
        "swagger-ui.html",
        "swagger.json",
        "swagger.yaml",
        "openapi.json",
        "openapi.yaml",
        "api-docs",
        "apidocs",
        "graphiql",
        "playground",
        "static",
        "assets",
        "favicon.ico",
        "robots.txt",
        ".well-known",
        "__debug__",
    ];
    const LAST: &[&str] = &["docs", "openapi"];
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    segments.iter().any(|s| ANYWHERE.contains(&s.as_str()))
        || segments.last().is_some_and(|s| LAST.contains(&s.as_str()))
}

/// A digest of the client address: who called, for templating and the
/// scanner-only class (never the address itself in reports).
pub fn client_digest(ex: &Exchange) -> u32 {
    (profile::stable_hash(ex.client.ip().to_string().as_bytes()) >> 32) as u32
}

/// Hashed top-level keys of a JSON body's field list.
fn top_level_keys(fields: &[(String, String)]) -> Vec<u32> {
    fields
        .iter()
        .filter(|(p, _)| !p.contains('.') && !p.contains("[]"))
        .map(|(p, _)| (profile::stable_hash(p.as_bytes()) >> 32) as u32)
        .collect()
}

/// How an exchange ended, as evidence about its path. "Not found" is not
/// only 404: 410, and a 400/422 or 200 whose (error) body says the thing
/// does not exist.
pub fn outcome(ex: &Exchange) -> Outcome {
    let Some(r) = &ex.response else {
        return Outcome::Unanswered;
    };
    match r.status {
        Some(404 | 410) => Outcome::NotFound,
        Some(401 | 403) => Outcome::Rejected,
        // Web frameworks send anonymous callers to the login page.
        Some(300..=399) if redirects_to_login(r) => Outcome::Rejected,
        Some(400 | 422 | 200) if says_not_found(&r.body.data) => Outcome::NotFound,
        Some(200..=399) => Outcome::Success,
        _ => Outcome::Error,
    }
}

/// Bytes of a JSON answer searched for the name of what was asked for.
const SELF_NAMING_SCAN_BYTES: usize = 4096;

/// Whether a successful JSON answer names the object its path asked for:
/// the path's last segment is, near the answer's start, the string value
/// of an identifying key (`"username": "alice"`, `"slug": "my-post"`,
/// `"book_title": ...`). Routes do not name themselves so, and array
/// elements (search results, tag lists) do not count.
fn names_itself(ex: &Exchange, seg: &str, outcome: Outcome, kind: ResponseKind) -> bool {
    let Some(r) = &ex.response else {
        return false;
    };
    if seg.len() < 2
        || template::self_alias(seg)
        || outcome != Outcome::Success
        || kind != ResponseKind::Json
    {
        return false;
    }
    let body = &r.body.data[..r.body.data.len().min(SELF_NAMING_SCAN_BYTES)];
    let last_token = |upto: usize| body[..upto].iter().rposition(|c| !c.is_ascii_whitespace());
    memchr::memmem::find_iter(body, seg.as_bytes()).any(|start| {
        let end = start + seg.len();
        if start == 0 || body[start - 1] != b'"' || body.get(end) != Some(&b'"') {
            return false;
        }
        let Some(colon) = last_token(start - 1).filter(|&i| body[i] == b':') else {
            return false;
        };
        let Some(key_end) = last_token(colon).filter(|&i| body[i] == b'"') else {
            return false;
        };
        let Some(key_start) = body[..key_end].iter().rposition(|&c| c == b'"') else {
            return false;
        };
        identifying_key(&body[key_start + 1..key_end])
    })
}

/// Keys whose values name an object: `id`, `user_id`, `username`, `slug`,
/// `title`, `key`, `login`, `handle`, `code`, `uuid`, `email`.
fn identifying_key(key: &[u8]) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "id", "name", "slug", "title", "key", "login", "handle", "code", "uuid", "email",
    ]
    .iter()
    .any(|k| key.ends_with(k.as_bytes()))
}

/// Whether a redirect goes to a login page.
fn redirects_to_login(r: &crate::exchange::Response) -> bool {
    r.headers.get("location").is_some_and(|l| {
        let l = String::from_utf8_lossy(l).to_ascii_lowercase();
        let path = l.split(['?', '#']).next().unwrap_or_default();
        ["login", "signin", "sign-in", "sign_in", "/auth"]
            .iter()
            .any(|w| path.contains(w))
    })
}

/// Whether a (short) body says the requested thing does not exist.
fn says_not_found(body: &[u8]) -> bool {
    if body.is_empty() || body.len() > 4096 {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let error_body = !text.trim_start().starts_with('{')
        || text.contains("error")
        || text.contains("detail")
        || text.contains("message");
    error_body
        && [
            "not found",
            "not_found",
            "notfound",
            "does not exist",
            "doesn't exist",
            "no such",
            "unknown ",
            "could not be found",
            "cannot be found",
            "can't be found",
            "404 |",
            "404 -",
            "error 404",
            ">404<",
        ]
        .iter()
        .any(|p| text.contains(p))
}

/// The kind of a successful answer.
fn response_kind(ex: &Exchange) -> ResponseKind {
    let Some(r) = &ex.response else {
        return ResponseKind::Other;
    };
    // "Not modified" has no body: no more a redirect than an empty answer.
    if r.status
        .is_some_and(|s| (300..400).contains(&s) && s != 304)
    {
        return ResponseKind::Redirect;
    }
    if matches!(r.status, Some(204 | 304)) || r.body.wire_len == 0 {
        return ResponseKind::Empty;
    }
    let ct = r
        .content_type
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ct.contains("json") {
        ResponseKind::Json
    } else if ct.contains("html") {
        ResponseKind::Html
    } else {
        ResponseKind::Other
    }
}

/// Host header (lower case, default port dropped) or the server address.
pub fn host_of(req: &Request, ex: &Exchange) -> Text {
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
