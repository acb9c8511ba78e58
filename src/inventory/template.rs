//! Path templating: which path segments are values of a parameter and which
//! are routes, learned online from traffic, per host, in a trie. The same
//! trie answers both questions the sensor asks: which endpoint an exchange
//! belongs to, now (the `EndpointKey` every detector keys its state on),
//! and which endpoints the API has (the inventory report).
//!
//! A segment is a value **on sight** when its shape says so: an integer,
//! UUID, date, email, long hex, base64-like token, or text no route name
//! has (whitespace, quotes, commas, other punctuation, non-ASCII). So is
//! the object a path asks for when its own answer names it
//! (`GET /users/alice` answered `{"username": "alice"}`): its position
//! becomes a parameter at once. Names so seen, and compound names served at
//! learned parameters, are remembered per host, and make a position with no
//! literal yet a parameter (a recipe's slug, then
//! `/users/{id}/ratings/<that slug>`). Other segments are kept literally
//! until their siblings show what they are.
//!
//! Siblings are values of one parameter when **many of them share one
//! structure**: the same methods succeed on them, they answer with the same
//! kind of response (a JSON object with mostly the same keys, a redirect,
//! a page), and — unless there are many of them — each is used by few
//! clients while the position as a whole is used by several (each user
//! their own few values). None of this decays as a capture grows: distinct
//! values and clients only accumulate, and once a position is learned to
//! be a parameter it stays one. A rule of "distinct values per request"
//! did decay: it fell as users re-read their own objects.
//!
//! Beside a learned parameter, a literal stays a **route** when it differs
//! from the values: a response of another kind or shape, a method the
//! values never answered, a leading underscore — even if it was called
//! only once or twice. Answers that say "not found" (404, 410, or a 400 /
//! 200 whose body says so) and rejections before any lookup (401, 403) are
//! no evidence either way: a value that does not exist is still a value.
//!
//! Memory is bounded: literal children per node (`max_children_per_node`,
//! the rest fold into an overflow child that is always a parameter), and a
//! learned parameter absorbs its values' subtrees, so its position holds
//! one child whatever the number of values.

use super::profile::{Distinct, Profile};
use crate::exchange::Text;
use std::collections::BTreeMap;

/// Shape of a parameter's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SegKind {
    Int,
    Uuid,
    Hex,
    Date,
    Email,
    Token,
    /// Names, slugs, titles: text learned (or seen) to be a value.
    Text,
}

impl SegKind {
    /// Default parameter name in a template.
    pub const fn param_name(self) -> &'static str {
        match self {
            SegKind::Int => "id",
            SegKind::Uuid => "uuid",
            SegKind::Hex => "hex",
            SegKind::Date => "date",
            SegKind::Email => "email",
            SegKind::Token => "token",
            SegKind::Text => "name",
        }
    }

    /// OpenAPI (type, format) of the parameter.
    pub const fn schema(self) -> (&'static str, Option<&'static str>) {
        match self {
            SegKind::Int => ("integer", None),
            SegKind::Uuid => ("string", Some("uuid")),
            SegKind::Date => ("string", Some("date")),
            SegKind::Email => ("string", Some("email")),
            SegKind::Hex | SegKind::Token | SegKind::Text => ("string", None),
        }
    }
}

/// Classifies one (percent-decoded) path segment: `Some(kind)` for a value
/// recognised on sight, `None` for text that may be a route.
pub fn classify_segment(seg: &str, max_segment_bytes: usize) -> Option<SegKind> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() <= 20 && b.iter().all(u8::is_ascii_digit) {
        return Some(SegKind::Int);
    }
    if is_uuid(b) {
        return Some(SegKind::Uuid);
    }
    if is_date(b) {
        return Some(SegKind::Date);
    }
    if is_email(seg) {
        return Some(SegKind::Email);
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit) {
        return Some(SegKind::Hex);
    }
    if is_token(b) || b.len() > max_segment_bytes {
        return Some(SegKind::Token);
    }
    // A keyed value (`userId:1925094799891760160`, `urn:isbn:0451450523`):
    // what follows the last colon says what it is. (`name:action`, a
    // custom method, stays a route.)
    if let Some((key, value)) = seg.rsplit_once(':') {
        if !key.is_empty() {
            if let Some(kind @ (SegKind::Int | SegKind::Uuid | SegKind::Hex | SegKind::Token)) =
                classify_segment(value, max_segment_bytes)
            {
                return Some(kind);
            }
        }
    }
    if !b.iter().all(|c| is_route_char(*c)) {
        return Some(SegKind::Text);
    }
    None
}

/// A route beside a parameter by its name: `_health`, `_internal`, a
/// leading underscore followed by a lower-case word (not a random value
/// that happens to start with one, like a signature `_PdBTNpn-2`).
fn reserved_route(seg: &str) -> bool {
    seg.strip_prefix('_').is_some_and(|rest| {
        rest.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
            && rest
                .bytes()
                .all(|c| c.is_ascii_lowercase() || matches!(c, b'_' | b'-'))
    })
}

/// Whether a literal served as a parameter's value is worth remembering
/// as a value of the host's ([`Step::Known`]): compound names (slugs,
/// `my-recipe`, `report_2024`) that route names seldom repeat elsewhere.
/// Short plain words (`me`, `self`, `admin`) are routes at other
/// positions too often.
pub fn known_value(seg: &str) -> bool {
    seg.len() >= 6
        && !reserved_route(seg)
        && seg
            .bytes()
            .any(|c| c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b'~'))
}

/// Values (see [`known_value`]) each host served at learned parameters,
/// as digests of (host, value). Bounded: two generations of
/// `KNOWN_VALUES / 2`; when the newer fills, the older is dropped, so the
/// values in use stay known however long the capture.
#[derive(Debug, Default)]
pub struct KnownValues {
    current: std::collections::HashSet<u64>,
    previous: std::collections::HashSet<u64>,
}

/// Values remembered in all.
pub const KNOWN_VALUES: usize = 1 << 16;

impl KnownValues {
    fn digest(host: &str, value: &str) -> u64 {
        let h = super::profile::stable_hash(host.as_bytes());
        h ^ super::profile::stable_hash(value.as_bytes()).rotate_left(17)
    }

    pub fn contains(&self, host: &str, value: &str) -> bool {
        let d = Self::digest(host, value);
        self.current.contains(&d) || self.previous.contains(&d)
    }

    pub fn insert(&mut self, host: &str, value: &str) {
        let d = Self::digest(host, value);
        if self.previous.contains(&d) || !self.current.insert(d) {
            return;
        }
        if self.current.len() >= KNOWN_VALUES / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
    }
}

/// The caller's own object by a conventional alias (`/users/me`,
/// `/households/self`): a route beside the values, whatever its answer
/// looks like (it is the caller's object, so it looks like theirs).
pub fn self_alias(seg: &str) -> bool {
    ["me", "self", "current", "mine", "my", "myself", "whoami"]
        .iter()
        .any(|a| seg.eq_ignore_ascii_case(a))
}

/// Characters route names are made of. Anything else (whitespace, quotes,
/// commas, parentheses, non-ASCII...) is in values: titles, names, search
/// words.
fn is_route_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b':' | b'@' | b'$')
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DD`, optionally followed by a time (`T...`).
fn is_date(b: &[u8]) -> bool {
    let Some(head) = b.get(..10) else {
        return false;
    };
    let shape = head.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    shape && (b.len() == 10 || b.get(10).is_some_and(|c| *c == b'T' || *c == b' '))
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.bytes().all(|c| c.is_ascii_graphic())
}

/// Base64-like: long, token charset, several digits and letters, and the
/// character class (lower, upper, digit) changing often. Slugs
/// (`hello-world-2024`) and camel-case route names have few digits or few
/// changes and stay literal.
fn is_token(b: &[u8]) -> bool {
    if b.len() < 16 {
        return false;
    }
    let charset = |c: &u8| c.is_ascii_alphanumeric() || b"-_+/=.~".contains(c);
    if !b.iter().all(charset) {
        return false;
    }
    // Random lower-case keys (base32, `4twjnlbrwgldpkgzsszyua`): long, no
    // separators, and a digit with far fewer vowels than words have, or
    // longer than route names run without a separator.
    let plain = b.iter().all(u8::is_ascii_alphanumeric);
    if plain && b.len() >= 22 {
        return true;
    }
    if plain && b.iter().any(u8::is_ascii_digit) {
        let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
        let vowels = b
            .iter()
            .filter(|c| {
                matches!(
                    c.to_ascii_lowercase(),
                    b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
                )
            })
            .count();
        if b.len() >= 20 || vowels * 4 < letters {
            return true;
        }
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    // Base64url of 16 random bytes (22 characters) has no digit one time
    // in eight; that long, frequent case changes are enough.
    let long_mixed_case = b.len() >= 20
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase);
    if letters < 2 || (digits < 2 && !long_mixed_case) {
        return false;
    }
    let class = |c: u8| match c {
        b'a'..=b'z' => 1,
        b'A'..=b'Z' => 2,
        b'0'..=b'9' => 3,
        _ => 0,
    };
    let changes = b
        .windows(2)
        .filter(|w| match w {
            [x, y] => class(*x) != 0 && class(*y) != 0 && class(*x) != class(*y),
            _ => false,
        })
        .count();
    changes * 4 >= b.len()
}

/// How an exchange ended, as evidence about its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx or 3xx.
    Success,
    /// The server says the resource does not exist (404, 410, or a body that says so).
    NotFound,
    /// 401 or 403: refused before (or without) any lookup.
    Rejected,
    /// Other 4xx and 5xx.
    Error,
    /// No response seen.
    Unanswered,
}

/// The kind of a successful response, as evidence about its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Json,
    Html,
    Redirect,
    Empty,
    Other,
}

impl ResponseKind {
    const fn bit(self) -> u8 {
        match self {
            ResponseKind::Json => 1,
            ResponseKind::Html => 2,
            ResponseKind::Redirect => 4,
            ResponseKind::Empty => 8,
            ResponseKind::Other => 16,
        }
    }
}

/// What one exchange tells about its path: the facts templating reads.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub method: &'a str,
    /// Who called (a digest of the client address).
    pub client: u32,
    pub outcome: Outcome,
    pub kind: ResponseKind,
    /// Top-level keys of a successful JSON response, hashed.
    pub json_keys: &'a [u32],
}

/// A client digest spread over 64 bits for the sketch (the digest itself
/// sits in the high half, so [`Evidence::known_clients`] gives it back).
fn client_hash(client: u32) -> u64 {
    let low = super::profile::stable_hash(&client.to_le_bytes()) & 0xffff_ffff;
    (u64::from(client) << 32) | low
}

/// Bit of a method in [`Evidence::methods`].
fn method_bit(method: &str) -> u16 {
    match method {
        "GET" => 1,
        "POST" => 2,
        "PUT" => 4,
        "PATCH" => 8,
        "DELETE" => 16,
        "HEAD" => 32,
        "OPTIONS" => 64,
        _ => 128,
    }
}

/// Clients remembered exactly per node; beyond, a HyperLogLog sketch.
const CLIENTS_EXACT: usize = 16;
/// Top-level JSON keys remembered per node.
const KEYS_KEPT: usize = 24;

/// Adds `new` key hashes to `keys`, sorted, keeping the `KEYS_KEPT`
/// smallest: two answers of one shape keep the same keys whatever their
/// order or size, so shapes of more than `KEYS_KEPT` keys still compare
/// (a bottom-k sample of the key set).
fn keep_smallest(keys: &mut Vec<u32>, new: &[u32]) {
    for k in new {
        if let Err(at) = keys.binary_search(k) {
            if at < KEYS_KEPT {
                keys.insert(at, *k);
                keys.truncate(KEYS_KEPT);
            }
        }
    }
}

/// What the requests through a node (ending there or deeper) showed.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub hits: u64,
    pub successes: u64,
    /// Methods that succeeded.
    methods: u16,
    /// Kinds of successful responses.
    kinds: u8,
    /// Hashed top-level keys of successful JSON responses (the smallest
    /// `KEYS_KEPT`, sorted).
    keys: Vec<u32>,
    clients: Distinct,
    /// Clients that got a successful answer: the spread of values over
    /// clients is judged on them alone, so that one client's refused
    /// probes beside another's pages do not look like several users each
    /// with their own values.
    served: Distinct,
}

impl Evidence {
    fn add(&mut self, s: &Sample<'_>) {
        self.hits += 1;
        self.clients.insert(client_hash(s.client), CLIENTS_EXACT);
        if s.outcome != Outcome::Success {
            return;
        }
        self.successes += 1;
        self.served.insert(client_hash(s.client), CLIENTS_EXACT);
        self.methods |= method_bit(s.method);
        self.kinds |= s.kind.bit();
        keep_smallest(&mut self.keys, s.json_keys);
    }

    fn merge(&mut self, o: &Evidence) {
        self.hits += o.hits;
        self.successes += o.successes;
        self.methods |= o.methods;
        self.kinds |= o.kinds;
        keep_smallest(&mut self.keys, &o.keys);
        self.clients.merge(&o.clients, CLIENTS_EXACT);
        self.served.merge(&o.served, CLIENTS_EXACT);
    }

    /// Distinct clients (estimated beyond `CLIENTS_EXACT`).
    pub fn clients(&self) -> u64 {
        self.clients.estimate()
    }

    /// The clients' digests, when all of them are known.
    pub fn known_clients(&self) -> Option<Vec<u32>> {
        match &self.clients {
            Distinct::Exact(hashes) => Some(hashes.iter().map(|h| (*h >> 32) as u32).collect()),
            Distinct::Sketch(_) => None,
        }
    }

    /// Whether two nodes look like values of one parameter: the same
    /// methods succeed, the same kinds of answers, mostly the same JSON
    /// keys (two thirds of them: optional fields come and go). Nodes
    /// without successes say nothing against anything.
    fn alike(&self, o: &Evidence) -> bool {
        if self.successes == 0 || o.successes == 0 {
            return true;
        }
        if self.methods & o.methods == 0 || self.kinds & o.kinds == 0 {
            return false;
        }
        same_shape(&self.keys, &o.keys)
    }

    /// Whether one request to a new literal beside a learned parameter
    /// fits the parameter's values (`self`): only a successful answer of
    /// another method or kind, or a JSON object sharing no key, says no.
    fn admits(&self, s: &Sample<'_>) -> bool {
        if s.outcome != Outcome::Success || self.successes == 0 {
            return true;
        }
        // Answers without a body to reads a client or browser sends on its
        // own (a CORS preflight, HEAD, a conditional GET's "not modified")
        // say nothing about what the path is.
        if matches!(s.method, "GET" | "HEAD" | "OPTIONS") && s.kind == ResponseKind::Empty {
            return true;
        }
        // Values (objects) are read, then changed and deleted: a first PUT,
        // PATCH or DELETE must not pull a known value out of a parameter
        // whose values were read or changed, and the answer to a write
        // (often empty) says little of their shape. Actions beside values
        // are POSTs, and still stand apart.
        let object_methods =
            method_bit("GET") | method_bit("PUT") | method_bit("PATCH") | method_bit("DELETE");
        let lifecycle =
            matches!(s.method, "PUT" | "PATCH" | "DELETE") && self.methods & object_methods != 0;
        if lifecycle {
            if s.method == "DELETE" || s.kind != ResponseKind::Json {
                return true;
            }
        } else if self.methods & method_bit(s.method) == 0 || self.kinds & s.kind.bit() == 0 {
            return false;
        }
        let mut keys = Vec::new();
        keep_smallest(&mut keys, s.json_keys);
        if lifecycle && (self.keys.is_empty() || keys.is_empty()) {
            return true;
        }
        same_shape(&self.keys, &keys)
    }
}

/// Whether two kept key sets (see `keep_smallest`) are of one shape: two
/// thirds of their keys in common (optional fields come and go). Answers
/// without keys are alike, and unlike answers with keys.
fn same_shape(a: &[u32], b: &[u32]) -> bool {
    if a.is_empty() || b.is_empty() {
        return a.is_empty() == b.is_empty();
    }
    let common = a.iter().filter(|k| b.contains(k)).count();
    let union = a.len() + b.len() - common;
    common * 3 >= union * 2
}

/// Thresholds of the learned rule (from `[inventory]`).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Alike siblings needed before a position can be a parameter.
    pub param_min_distinct: usize,
    /// With this many alike siblings, they are values whoever uses them.
    pub param_many_distinct: usize,
    pub max_children: usize,
    /// The trie is near `max_path_nodes`: new literals and shapes fold into
    /// the overflow child of their position instead of getting nodes.
    pub at_node_cap: bool,
    /// Nodes a walk may still create; past it, a segment stays on its
    /// parent's node (the hard cap).
    pub node_room: u64,
}

/// A node of the trie: one position of a path.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub literals: BTreeMap<Text, Node>,
    pub typed: BTreeMap<SegKind, Node>,
    /// The learned parameter at this position, its values merged (set
    /// once learned, never unset). Typed values merge into it too.
    pub param: Option<Box<Node>>,
    /// Literals beyond `max_children` before any parameter was learned:
    /// always values.
    pub overflow: Option<Box<Node>>,
    /// Requests ending here, by method.
    pub methods: BTreeMap<Text, Profile>,
    /// Requests through this node (ending here or deeper).
    pub evidence: Evidence,
    /// Requests ending here whose target carried an attack payload.
    pub probes: u64,
    /// `evidence.hits` at the last look at the literals (see `maybe_learn`).
    looked_at: u64,
}

/// What a walk changed besides counting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walked {
    /// Literals that went to an overflow child.
    pub overflowed: u64,
    /// Nodes created.
    pub created: u64,
    /// Nodes merged away by learning a parameter.
    pub merged: u64,
    /// Segments folded into an overflow child because the trie was full.
    pub capped: u64,
    /// Bit `i`: the literal at step `i` went to a learned parameter.
    pub into_params: u64,
    /// Served literals a parameter learned here took in as its values.
    pub absorbed: Vec<Text>,
}

/// One classified segment of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Lit(&'a str),
    Typed(SegKind),
    /// A literal the host has served as a value of a learned parameter
    /// elsewhere, or that an answer named (see [`KnownValues`]).
    Known(&'a str),
    /// A literal the answer to this very request names: the object asked for.
    Named(&'a str),
}

/// Where a segment went in the trie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    Lit(Text),
    Param(SegKind),
}

impl Node {
    /// Follows `steps` from this node, creating nodes as needed and
    /// learning parameters as evidence accumulates, and counts `sample` on
    /// every node it passes. Returns the node the path ends at, the labels
    /// of the path (its template) and how many literals overflowed.
    pub fn walk(
        &mut self,
        steps: &[Step<'_>],
        sample: &Sample<'_>,
        rules: &Rules,
        labels: &mut Vec<Label>,
    ) -> (&mut Node, Walked) {
        let mut walked = Walked::default();
        let mut node = self;
        node.evidence.add(sample);
        for (i, step) in steps.iter().enumerate() {
            node.relearn(rules, &mut walked);
            let had_param = node.param.is_some();
            let (next, label, counted) = node.child(step, sample, rules, &mut walked);
            if had_param && matches!(label, Label::Param(_)) && !matches!(step, Step::Typed(_)) {
                walked.into_params |= 1u64.checked_shl(i as u32).unwrap_or(0);
            }
            labels.push(label);
            node = next;
            if !counted {
                node.evidence.add(sample);
            }
        }
        (node, walked)
    }

    /// The child `step` goes to (created if needed), its label, and
    /// whether `sample` is already counted on it (a new sibling is counted
    /// before its siblings are looked at, so that the look sees it).
    fn child(
        &mut self,
        step: &Step<'_>,
        sample: &Sample<'_>,
        rules: &Rules,
        walked: &mut Walked,
    ) -> (&mut Node, Label, bool) {
        if self.must_stay(step, rules, walked) {
            walked.capped += 1;
            return (self, Label::Param(SegKind::Text), false);
        }
        match *step {
            // A known value where no literal has been seen yet makes this
            // position a parameter (`/users/{id}/ratings/veggie-lasagna`
            // after `/recipes/veggie-lasagna`); beside literals it waits
            // for the siblings' evidence like any other value.
            Step::Known(_)
                if self.param.is_none()
                    && self.literals.is_empty()
                    && self.overflow.is_none()
                    && !rules.at_node_cap =>
            {
                self.install_param(Vec::new(), walked);
            }
            // An object named in its own answer makes its position a
            // parameter at once, taking in the siblings that answered
            // alike (or not at all); routes beside it stay.
            Step::Named(_) if self.param.is_none() && !rules.at_node_cap => {
                let mut named = Evidence::default();
                named.add(sample);
                let values = self
                    .literals
                    .iter()
                    .filter(|(name, n)| {
                        !reserved_route(name) && !self_alias(name) && n.evidence.alike(&named)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                self.install_param(values, walked);
            }
            _ => {}
        }
        if let (Step::Known(_) | Step::Named(_), Some(_)) = (step, &self.param) {
            if !matches!(step, Step::Known(seg) if self.literals.contains_key(*seg)) {
                return (self.param_node(), Label::Param(SegKind::Text), false);
            }
        }
        let seg = match *step {
            Step::Typed(kind) => {
                if self.param.is_some() {
                    return (self.param_node(), Label::Param(SegKind::Text), false);
                }
                if !self.typed.contains_key(&kind) {
                    if rules.at_node_cap {
                        walked.capped += 1;
                        walked.created += u64::from(self.overflow.is_none());
                        return (
                            self.overflow.get_or_insert_with(Box::default),
                            Label::Param(SegKind::Text),
                            false,
                        );
                    }
                    walked.created += 1;
                }
                return (
                    self.typed.entry(kind).or_default(),
                    Label::Param(kind),
                    false,
                );
            }
            Step::Lit(seg) | Step::Known(seg) | Step::Named(seg) => seg,
        };
        if self.literals.contains_key(seg) {
            return (
                self.literals.entry(Text::from(seg)).or_default(),
                Label::Lit(Text::from(seg)),
                false,
            );
        }
        if let Some(param) = &self.param {
            let route = (reserved_route(seg) || self_alias(seg) || !param.evidence.admits(sample))
                && self.literals.len() < rules.max_children
                && !rules.at_node_cap;
            if !route {
                return (self.param_node(), Label::Param(SegKind::Text), false);
            }
        } else if self.literals.len() >= rules.max_children || rules.at_node_cap {
            if rules.at_node_cap {
                walked.capped += 1;
            } else {
                walked.overflowed += 1;
            }
            walked.created += u64::from(self.overflow.is_none());
            return (
                self.overflow.get_or_insert_with(Box::default),
                Label::Param(SegKind::Text),
                false,
            );
        } else {
            // A new sibling: time to look at what the siblings are.
            self.looked_at = 0;
        }
        let mut fresh = Node::default();
        fresh.evidence.add(sample);
        self.literals.insert(Text::from(seg), fresh);
        walked.created += 1;
        self.maybe_learn(rules, walked);
        if self.param.is_some() && !self.literals.contains_key(seg) {
            return (self.param_node(), Label::Param(SegKind::Text), true);
        }
        (
            self.literals.entry(Text::from(seg)).or_default(),
            Label::Lit(Text::from(seg)),
            true,
        )
    }

    /// Whether `step` needs a node the trie has no room for.
    fn must_stay(&self, step: &Step<'_>, rules: &Rules, walked: &Walked) -> bool {
        if walked.created < rules.node_room {
            return false;
        }
        let exists = match step {
            Step::Typed(kind) => self.param.is_some() || self.typed.contains_key(kind),
            Step::Lit(seg) | Step::Known(seg) | Step::Named(seg) => {
                self.literals.contains_key(*seg) || self.param.is_some()
            }
        };
        !exists && self.overflow.is_none()
    }

    fn param_node(&mut self) -> &mut Node {
        self.param.get_or_insert_with(Box::default)
    }

    /// Looks at the literal children (again, when there are new ones or
    /// twice the traffic since the last look) and learns a parameter when
    /// enough of them are alike values.
    fn maybe_learn(&mut self, rules: &Rules, walked: &mut Walked) {
        if self.param.is_some() || self.literals.len() < min_siblings(rules) {
            return;
        }
        if self.looked_at != 0 && self.evidence.hits < self.looked_at.saturating_mul(2) {
            return;
        }
        self.looked_at = self.evidence.hits.max(1);
        let values = values_among(&self.literals, rules);
        if values.is_empty() {
            return;
        }
        self.install_param(values, walked);
    }

    /// Makes this position a parameter holding `values` (literal
    /// children), the overflow child and the typed children.
    fn install_param(&mut self, values: Vec<Text>, walked: &mut Walked) {
        // Each absorbed subtree is counted once, when it moves: the cost
        // is that of the move, not of the trie.
        let mut param = Node::default();
        let mut moved = 0usize;
        let mut take = |param: &mut Node, n: Node| {
            moved += n.count();
            param.absorb(n);
        };
        for name in values {
            if let Some(n) = self.literals.remove(&name) {
                if n.evidence.successes > 0 {
                    walked.absorbed.push(name);
                }
                take(&mut param, n);
            }
        }
        if let Some(o) = self.overflow.take() {
            take(&mut param, *o);
        }
        for (_, n) in std::mem::take(&mut self.typed) {
            take(&mut param, n);
        }
        // The parameter node is new unless moved roots became it.
        walked.created += u64::from(moved == 0);
        walked.merged += moved.saturating_sub(param.count()) as u64;
        self.param = Some(Box::new(param));
    }

    /// Re-checks the literals after traffic grew (called on the path of
    /// every request, cheap unless the traffic through here doubled).
    pub fn relearn(&mut self, rules: &Rules, walked: &mut Walked) {
        if self.param.is_none()
            && self.literals.len() >= min_siblings(rules)
            && self.evidence.hits >= self.looked_at.saturating_mul(2)
        {
            self.maybe_learn(rules, walked);
        }
    }

    /// Adds `other` (a whole subtree) into `self`.
    pub fn absorb(&mut self, other: Node) {
        self.evidence.merge(&other.evidence);
        for (k, v) in other.literals {
            match self.literals.get_mut(&k) {
                Some(mine) => mine.absorb(v),
                None => {
                    self.literals.insert(k, v);
                }
            }
        }
        for (k, v) in other.typed {
            self.typed.entry(k).or_default().absorb(v);
        }
        if let Some(p) = other.param {
            self.param_node().absorb(*p);
        }
        if let Some(o) = other.overflow {
            self.overflow.get_or_insert_with(Box::default).absorb(*o);
        }
        for (m, p) in other.methods {
            self.methods.entry(m).or_default().merge(&p);
        }
        self.probes += other.probes;
        self.looked_at = 0;
    }

    /// Nodes in this subtree (this one included).
    pub fn count(&self) -> usize {
        1 + self.literals.values().map(Node::count).sum::<usize>()
            + self.typed.values().map(Node::count).sum::<usize>()
            + self.param.as_deref().map_or(0, Node::count)
            + self.overflow.as_deref().map_or(0, Node::count)
    }
}

/// File names with one extension that make a parameter.
const MIN_FILE_NAMES: usize = 3;

/// Literal siblings below which no rule can find values.
fn min_siblings(rules: &Rules) -> usize {
    rules.param_min_distinct.clamp(2, MIN_FILE_NAMES)
}

/// Extensions that select a representation of a route rather than name a file.
const FORMAT_SUFFIXES: &[&str] = &[
    "json", "xml", "html", "htm", "yaml", "yml", "js", "css", "txt",
];

/// The literal children that are values of one parameter: the largest group
/// of alike siblings, when it is large enough and either very large or
/// spread the way values are (each used by few clients, the position by
/// several). Empty when the siblings look like routes.
fn values_among(literals: &BTreeMap<Text, Node>, rules: &Rules) -> Vec<Text> {
    // Greedy grouping of the siblings that answered successfully, busiest
    // first: a sibling joins the first group whose first member it is
    // alike. Siblings that never did (not found, refused, not answered
    // yet) say nothing about their kind: they go with the largest group,
    // values if anything.
    let mut order: Vec<(&Text, &Node)> = literals
        .iter()
        .filter(|(_, n)| n.evidence.successes > 0)
        .collect();
    order.sort_by(|a, b| b.1.evidence.hits.cmp(&a.1.evidence.hits).then(a.0.cmp(b.0)));
    let mut groups: Vec<Vec<(&Text, &Node)>> = Vec::new();
    for (name, node) in order {
        match groups.iter_mut().find(|g| {
            g.first()
                .is_some_and(|(_, first)| first.evidence.alike(&node.evidence))
        }) {
            Some(g) => g.push((name, node)),
            None => groups.push(vec![(name, node)]),
        }
    }
    let Some(mut largest) = groups.into_iter().max_by_key(Vec::len) else {
        return Vec::new();
    };
    let confirmed = largest.len();
    // Or file names: several distinct names with one file extension
    // (`alice.svg`, `prod.svg`) are values of `{name}.svg`, whoever asked.
    // Format suffixes are not (`users.json`, `orders.json` are two routes)
    // unless the names carry numbers, as file names do and route names
    // seldom (`alice-notes-2.txt`, `export-2024-05.json`).
    let extension = |name: &str| {
        name.rsplit_once('.')
            .filter(|(stem, ext)| !stem.is_empty() && (1..=5).contains(&ext.len()))
            .filter(|(stem, ext)| {
                !FORMAT_SUFFIXES.contains(&ext.to_ascii_lowercase().as_str())
                    || stem.bytes().any(|c| c.is_ascii_digit())
            })
            .map(|(_, ext)| ext.to_ascii_lowercase())
    };
    let first_extension = largest.first().and_then(|(n, _)| extension(n));
    let files = confirmed >= MIN_FILE_NAMES
        && first_extension.is_some()
        && largest.iter().all(|(n, _)| extension(n) == first_extension);
    if confirmed < rules.param_min_distinct && !files {
        return Vec::new();
    }
    let many = confirmed >= rules.param_many_distinct;
    let mut per_value: Vec<u64> = largest
        .iter()
        .map(|(_, n)| n.evidence.served.estimate())
        .collect();
    per_value.sort_unstable();
    let median = per_value.get(per_value.len() / 2).copied().unwrap_or(0);
    let mut everyone = Distinct::default();
    for (_, n) in &largest {
        everyone.merge(&n.evidence.served, CLIENTS_EXACT);
    }
    let position_clients = everyone.estimate();
    // Values are each used by few of the position's clients (their owner,
    // someone they shared it with); routes (pages, collections) each by a
    // good part of them. With one client there is no telling, and only the
    // count speaks.
    let few_each = median <= (position_clients / 10).max(2);
    // Re-read by the one or two clients that use them: what users do with
    // their own objects. One request each proves nothing yet (the first
    // calls to a handful of routes look the same).
    let reread = largest
        .iter()
        .filter(|(_, n)| n.evidence.successes >= 2 && n.evidence.served.estimate() <= 2)
        .count();
    // Or, before anything was re-read: a larger group, nearly one client
    // per value and none shared by more than two (each user following
    // their own link), which routes called for the first time are not.
    // (A few values shared by many, like a `prod` tag every user has,
    // do not change that.)
    let most = per_value.get(per_value.len() * 3 / 4).copied().unwrap_or(0);
    let own_each = confirmed >= rules.param_min_distinct + 3
        && most <= 2
        && position_clients + 2 >= confirmed as u64;
    // Alike siblings under which the same sub-resource recurs
    // (`/icons/a.example/icon.png`, `/icons/b.example/icon.png`): routes
    // rarely share their subtrees.
    let shared = confirmed >= rules.param_min_distinct && shared_child(&largest, confirmed);
    let spread = files
        || shared
        || median <= 2
            && position_clients >= 2
            && few_each
            && (reread >= rules.param_min_distinct || own_each);
    // Many alike siblings that answer JSON objects of one shape (or share
    // a sub-resource) are values however popular each is: public content
    // (articles, products) read by every user. Popular routes answer with
    // shapes of their own.
    let structured = largest.iter().all(|(_, n)| !n.evidence.keys.is_empty())
        || shared_child(&largest, confirmed);
    let many = many && (position_clients <= 1 || few_each || structured);
    if !(many || spread) {
        return Vec::new();
    }
    largest.extend(literals.iter().filter(|(_, n)| n.evidence.successes == 0));
    largest.into_iter().map(|(name, _)| name.clone()).collect()
}

/// Whether most of `group` (three quarters) have a child of the same name:
/// `/articles/a/comments`, `/articles/b/comments`...
fn shared_child(group: &[(&Text, &Node)], size: usize) -> bool {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, n) in group {
        for child in n.literals.keys() {
            *counts.entry(child.as_str()).or_default() += 1;
        }
    }
    counts.values().any(|c| c * 4 >= size * 3)
}

/// One template path with its parameters, named OpenAPI style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub path: String,
    /// (name, kind) in path order.
    pub params: Vec<(String, SegKind)>,
}

/// Names the parameters of `labels` and writes the template: the first
/// parameter of a kind gets the kind's name (`{id}`), a later one of the
/// same name is prefixed with the literal before it (`{orderId}`).
pub fn template(labels: &[Label]) -> Template {
    let mut path = String::new();
    let mut params: Vec<(String, SegKind)> = Vec::new();
    let mut previous: Option<&str> = None;
    for label in labels {
        path.push('/');
        match label {
            Label::Lit(s) => {
                path.push_str(s);
                previous = Some(s.as_str());
            }
            Label::Param(kind) => {
                let base = kind.param_name();
                let used = |n: &str| params.iter().any(|(p, _)| p == n);
                let mut name = base.to_string();
                if used(&name) {
                    if let Some(prev) = previous.map(singular_ident).filter(|p| !p.is_empty()) {
                        name = format!("{prev}{}{}", base[..1].to_uppercase(), &base[1..]);
                    }
                }
                let stem = name.clone();
                let mut n = 2;
                while used(&name) {
                    name = format!("{stem}{n}");
                    n += 1;
                }
                path.push('{');
                path.push_str(&name);
                path.push('}');
                params.push((name, *kind));
                previous = None;
            }
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    Template { path, params }
}

/// `orders` → `order`, `user-groups` → `userGroup`: an identifier prefix.
fn singular_ident(seg: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in seg.chars() {
        if c.is_ascii_alphanumeric() {
            if upper && !out.is_empty() {
                out.push(c.to_ascii_uppercase());
            } else if out.is_empty() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if let Some(stem) = out.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if out.ends_with('s') && !out.ends_with("ss") && out.len() > 1 {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_classified_by_shape() {
        let c = |s: &str| classify_segment(s, 128);
        assert_eq!(c("42"), Some(SegKind::Int));
        assert_eq!(
            c("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            Some(SegKind::Uuid)
        );
        assert_eq!(c("2024-01-31"), Some(SegKind::Date));
        assert_eq!(c("alice@example.com"), Some(SegKind::Email));
        assert_eq!(c("507f1f77bcf86cd799439011"), Some(SegKind::Hex));
        assert_eq!(c("dXNlcjEyMzpzZWNyZXQ0NTY3OA"), Some(SegKind::Token));
        assert_eq!(c("hello-world-2024"), None);
        assert_eq!(c("getUserProfileById"), None);
        assert_eq!(c("me"), None);
        assert_eq!(c("v1"), None);
        assert_eq!(c(&"x".repeat(200)), Some(SegKind::Token));
        // Text no route name has: whitespace, quotes, commas, punctuation.
        assert_eq!(c("My first post"), Some(SegKind::Text));
        assert_eq!(c("O'Brien"), Some(SegKind::Text));
        assert_eq!(c("red,green"), Some(SegKind::Text));
        assert_eq!(c("what?!"), Some(SegKind::Text));
        assert_eq!(c("서울"), Some(SegKind::Text));
        assert_eq!(c("_search"), None);
        assert_eq!(c("openapi.json"), None);
    }

    /// One shape of more keys than a node keeps, in two orders, and a
    /// superset of it: the kept keys are the same (the smallest hashes).
    #[test]
    fn kept_keys_do_not_depend_on_order_or_extra_keys() {
        let keys: Vec<u32> = (0..40u32).map(|k| k.wrapping_mul(2_654_435_761)).collect();
        let mut reversed = keys.clone();
        reversed.reverse();
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        keep_smallest(&mut a, &keys);
        keep_smallest(&mut b, &reversed);
        keep_smallest(&mut c, &keys[..35]);
        keep_smallest(&mut c, &keys[35..]);
        assert_eq!(a.len(), KEYS_KEPT);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn parameter_names_are_unique_and_readable() {
        let labels = [
            Label::Lit("users".into()),
            Label::Param(SegKind::Int),
            Label::Lit("orders".into()),
            Label::Param(SegKind::Int),
        ];
        assert_eq!(template(&labels).path, "/users/{id}/orders/{orderId}");
        let labels = [Label::Param(SegKind::Int), Label::Param(SegKind::Int)];
        assert_eq!(template(&labels).path, "/{id}/{id2}");
        assert_eq!(singular_ident("categories"), "category");
        assert_eq!(singular_ident("user-groups"), "userGroup");
    }

    /// Known values stay within `KNOWN_VALUES` however many are served,
    /// the newest stay known, and a host's values are its own.
    #[test]
    fn known_values_are_bounded_recent_and_per_host() {
        let mut known = KnownValues::default();
        let total = KNOWN_VALUES * 3;
        for i in 0..total {
            known.insert("api.test", &format!("value-{i}"));
        }
        assert!(known.current.len() + known.previous.len() <= KNOWN_VALUES);
        assert!(known.contains("api.test", &format!("value-{}", total - 1)));
        assert!(!known.contains("api.test", "value-0"));
        assert!(!known.contains("other.test", &format!("value-{}", total - 1)));
        assert!(known_value("veggie-lasagna") && known_value("report2024"));
        assert!(!known_value("self") && !known_value("_debug") && !known_value("settings"));
    }
}
