//! Path templating: segment classification and a per-host path trie whose
//! templates are computed at query time. Owns the raw trie and the rule that
//! turns it into templates; knows nothing of profiles beyond merging them.
//!
//! Two steps, on purpose:
//! 1. **Observe** (cheap, bounded): each path segment is classified once.
//!    Segments with an unambiguous shape — integer, UUID, date, email, long
//!    hex, base64-like token — become typed children; anything else is kept
//!    literally, at most `max_children_per_node` literals per node, the rest
//!    folded into one overflow child. Every node counts the requests that
//!    reached it and how many of them answered 404.
//! 2. **Resolve** (at query time, from counts only): literal siblings are
//!    merged into one `{name}` parameter when their cardinality says they
//!    are values — at least `param_min_distinct` distinct literals that
//!    make up at least `param_min_distinct_ratio` of the requests through
//!    that position, with a dominant response shape (or an overflow, which
//!    always means "values"). From a merged group, a literal is kept as a
//!    fixed route when it has at least `fixed_min_requests` requests and
//!    its own traffic shows a distinct profile (a 2xx JSON response shape
//!    unlike the siblings' majority, or a method no sibling uses), or when
//!    its requests are at least `fixed_share_factor` times the siblings'
//!    median. Subtrees that only ever answered 404 are not endpoints.
//!
//! Because resolve reads only counts, the templates depend only on the
//! multiset of observations, not their order, as long as no cap was
//! reached (then which literals kept their own node depends on arrival
//! order; the overflow is counted).

use super::profile::Profile;
use crate::exchange::Text;
use std::collections::BTreeMap;

/// Shape of a segment recognised on sight, without learning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SegKind {
    Int,
    Uuid,
    Hex,
    Date,
    Email,
    Token,
    /// Free text that learned cardinality turned into a parameter.
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
/// recognised on sight, `None` for free text kept literally.
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
    None
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
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if digits < 2 || letters < 2 {
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

/// One classified segment of an observed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Lit(&'a str),
    Typed(SegKind),
}

/// A node of the raw trie.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub literals: BTreeMap<Text, Node>,
    pub typed: BTreeMap<SegKind, Node>,
    /// Free-text literals beyond `max_children_per_node`, folded together.
    pub overflow: Option<Box<Node>>,
    /// Requests that reached this node (ended here or passed through).
    pub hits: u64,
    /// Of those, answered 404.
    pub not_found: u64,
    /// Requests ending here, by method.
    pub methods: BTreeMap<Text, Profile>,
}

impl Node {
    /// Nodes `walk` would have to create for `steps`.
    pub fn nodes_needed(&self, steps: &[Step<'_>], max_children: usize) -> usize {
        let mut node = self;
        for (i, step) in steps.iter().enumerate() {
            let next = match step {
                Step::Lit(s) => match node.literals.get(*s) {
                    Some(n) => Some(n),
                    None if node.literals.len() < max_children => None,
                    None => node.overflow.as_deref(),
                },
                Step::Typed(k) => node.typed.get(k),
            };
            match next {
                Some(n) => node = n,
                None => return steps.len() - i,
            }
        }
        0
    }

    /// Follows (creating as needed) the nodes for `steps`, counting the
    /// request on each; returns the last node and how many literals went to
    /// an overflow child.
    pub fn walk(
        &mut self,
        steps: &[Step<'_>],
        max_children: usize,
        not_found: bool,
    ) -> (&mut Node, u64) {
        let mut overflowed = 0;
        let mut node = self;
        for step in steps {
            node.hits += 1;
            node.not_found += u64::from(not_found);
            node = match step {
                Step::Lit(s) => {
                    if node.literals.contains_key(*s) || node.literals.len() < max_children {
                        node.literals.entry(Text::from(*s)).or_default()
                    } else {
                        overflowed += 1;
                        node.overflow.get_or_insert_with(Box::default)
                    }
                }
                Step::Typed(k) => node.typed.entry(*k).or_default(),
            };
        }
        node.hits += 1;
        node.not_found += u64::from(not_found);
        (node, overflowed)
    }

    /// Adds `other` (a whole subtree) into `self`; profiles are merged.
    pub fn absorb(&mut self, other: &Node) {
        self.hits += other.hits;
        self.not_found += other.not_found;
        for (k, v) in &other.literals {
            self.literals.entry(k.clone()).or_default().absorb(v);
        }
        for (k, v) in &other.typed {
            self.typed.entry(*k).or_default().absorb(v);
        }
        if let Some(o) = &other.overflow {
            self.overflow.get_or_insert_with(Box::default).absorb(o);
        }
        for (m, p) in &other.methods {
            self.methods.entry(m.clone()).or_default().merge(p);
        }
    }

    /// Every request here answered 404.
    fn not_found_only(&self) -> bool {
        self.hits > 0 && self.not_found >= self.hits
    }

    /// Distinct raw paths (nodes where requests ended) in this subtree.
    pub fn ending_paths(&self) -> u64 {
        u64::from(!self.methods.is_empty())
            + self.literals.values().map(Node::ending_paths).sum::<u64>()
            + self.typed.values().map(Node::ending_paths).sum::<u64>()
            + self.overflow.as_deref().map_or(0, Node::ending_paths)
    }

    /// Signature of the 2xx JSON response shape of requests ending here.
    fn shape(&self) -> Option<u64> {
        let mut merged = Profile::default();
        for p in self.methods.values() {
            merged.merge(p);
        }
        merged.shape_signature()
    }
}

/// The learned-cardinality thresholds (from `[inventory]`).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub param_min_distinct: usize,
    pub param_min_distinct_ratio: f64,
    pub fixed_min_requests: u64,
    pub fixed_share_factor: f64,
}

/// A segment of a template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Label {
    Lit(Text),
    Param(SegKind),
}

/// The resolved (templated) tree of one host.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub methods: BTreeMap<Text, Profile>,
    pub children: Vec<(Label, View)>,
}

/// What resolving left out because it only ever answered 404.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotFoundOnly {
    pub paths: u64,
    pub requests: u64,
}

/// Turns a raw trie into templates (see the module comment for the rule).
pub fn resolve(node: &Node, rules: &Rules, dropped: &mut NotFoundOnly) -> View {
    let mut view = View::default();
    for (method, profile) in &node.methods {
        if profile.requests > 0 && profile.not_found >= profile.requests {
            dropped.paths += 1;
            dropped.requests += profile.requests;
        } else if profile.requests > 0 {
            view.methods.insert(method.clone(), profile.clone());
        }
    }
    let mut keep = |n: &Node| -> bool {
        if n.not_found_only() {
            dropped.paths += n.ending_paths();
            dropped.requests += n.hits;
            false
        } else {
            n.hits > 0
        }
    };
    let lits: Vec<(&Text, &Node)> = node.literals.iter().filter(|(_, n)| keep(n)).collect();
    let typed: Vec<(SegKind, &Node)> = node
        .typed
        .iter()
        .filter(|(_, n)| keep(n))
        .map(|(k, n)| (*k, n))
        .collect();
    let overflow = node.overflow.as_deref().filter(|n| keep(n));

    let mut children: Vec<(Label, Node)> = Vec::new();
    if overflow.is_some() || values_not_routes(&lits, rules) {
        let fixed = fixed_routes(&lits, rules);
        let mut param = Node::default();
        for (name, n) in &lits {
            if fixed.contains(name) {
                children.push((Label::Lit((*name).clone()), (*n).clone()));
            } else {
                param.absorb(n);
            }
        }
        if let Some(o) = overflow {
            param.absorb(o);
        }
        // Free text subsumes the typed shapes at the same position.
        for (_, n) in &typed {
            param.absorb(n);
        }
        children.push((Label::Param(SegKind::Text), param));
    } else {
        for (name, n) in &lits {
            children.push((Label::Lit((*name).clone()), (*n).clone()));
        }
        // Several typed shapes at one position are one parameter, named
        // after the shape with the most requests (ties: the first kind).
        if let Some(&(first, _)) = typed.first() {
            let mut kind = first;
            let mut best = 0;
            let mut param = Node::default();
            for (k, n) in &typed {
                if n.hits > best {
                    best = n.hits;
                    kind = *k;
                }
                param.absorb(n);
            }
            children.push((Label::Param(kind), param));
        }
    }
    for (label, child) in children {
        view.children.push((label, resolve(&child, rules, dropped)));
    }
    view.children.sort_by(|a, b| a.0.cmp(&b.0));
    view
}

/// Whether literal siblings are values of one parameter.
fn values_not_routes(lits: &[(&Text, &Node)], rules: &Rules) -> bool {
    let distinct = lits.len();
    if distinct < rules.param_min_distinct.max(2) {
        return false;
    }
    let requests: u64 = lits.iter().map(|(_, n)| n.hits).sum();
    if (distinct as f64) < rules.param_min_distinct_ratio * requests as f64 {
        return false;
    }
    // Static siblings answer with different shapes; values of one
    // parameter mostly share one.
    let shapes: Vec<u64> = lits.iter().filter_map(|(_, n)| n.shape()).collect();
    if shapes.len() >= 2 {
        let (_, top) = majority(&shapes);
        if top * 2 < shapes.len() {
            return false;
        }
    }
    true
}

/// Most common value and its count (ties: the smallest value).
fn majority(values: &[u64]) -> (u64, usize) {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(*v).or_default() += 1;
    }
    counts.into_iter().fold(
        (0, 0),
        |best, (v, c)| if c > best.1 { (v, c) } else { best },
    )
}

/// Literals of a merged group that their own traffic shows to be fixed routes.
fn fixed_routes<'a>(lits: &[(&'a Text, &Node)], rules: &Rules) -> Vec<&'a Text> {
    let mut hits: Vec<u64> = lits.iter().map(|(_, n)| n.hits).collect();
    hits.sort_unstable();
    let median = hits.get(hits.len() / 2).copied().unwrap_or(0) as f64;
    let shapes: Vec<Option<u64>> = lits.iter().map(|(_, n)| n.shape()).collect();
    let known: Vec<u64> = shapes.iter().flatten().copied().collect();
    let common_shape = (known.len() >= 2).then(|| majority(&known).0);
    let mut method_users: BTreeMap<&Text, usize> = BTreeMap::new();
    for (_, n) in lits {
        for m in n.methods.keys() {
            *method_users.entry(m).or_default() += 1;
        }
    }
    let mut fixed = Vec::new();
    for ((name, n), shape) in lits.iter().zip(&shapes) {
        let own_shape = matches!((shape, common_shape), (Some(s), Some(c)) if *s != c);
        let own_method = n
            .methods
            .keys()
            .any(|m| method_users.get(m).copied() == Some(1));
        let distinct_profile = n.hits >= rules.fixed_min_requests && (own_shape || own_method);
        let dominant = n.hits >= rules.fixed_min_requests
            && n.hits as f64 >= rules.fixed_share_factor * median.max(1.0);
        if distinct_profile || dominant {
            fixed.push(*name);
        }
    }
    fixed
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
pub fn template(labels: &[&Label]) -> Template {
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
        let c = |s| classify_segment(s, 128);
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
    }

    #[test]
    fn parameter_names_are_unique_and_readable() {
        let labels = [
            Label::Lit("users".into()),
            Label::Param(SegKind::Int),
            Label::Lit("orders".into()),
            Label::Param(SegKind::Int),
        ];
        let refs: Vec<&Label> = labels.iter().collect();
        assert_eq!(template(&refs).path, "/users/{id}/orders/{orderId}");
        let labels = [Label::Param(SegKind::Int), Label::Param(SegKind::Int)];
        let refs: Vec<&Label> = labels.iter().collect();
        assert_eq!(template(&refs).path, "/{id}/{id2}");
        assert_eq!(singular_ident("categories"), "category");
        assert_eq!(singular_ident("user-groups"), "userGroup");
    }
}
