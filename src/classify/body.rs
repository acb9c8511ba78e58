//! Walking message bodies: JSON through a streaming serde visitor (no value
//! tree, bounded by depth, bytes and value count, never recursing past the
//! configured depth), url-encoded and multipart forms, and free text scanned
//! for self-identifying values only.

use super::keys::{self, Hint};
use super::value::percent_decode;
use super::{
    cap_path, BodyShape, Classifier, ClassifyStats, DataType, FieldType, Location, Sink,
    MAX_PATH_BYTES, MAX_SHAPE_FIELDS, MAX_VALUE_BYTES,
};
use crate::exchange::decimal_digits;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// What a body scan produced besides findings.
pub(super) struct Scan {
    pub shape: Option<BodyShape>,
    pub limited: bool,
}

/// How a body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Json,
    Form,
    Multipart(String),
    Text,
    Binary,
}

/// The body kind from its content type, sniffing when there is none.
pub(super) fn kind(content_type: Option<&str>, data: &[u8]) -> Kind {
    let ct = content_type.unwrap_or_default().trim();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") || essence == "text/json" {
        return Kind::Json;
    }
    if essence == "application/x-www-form-urlencoded" {
        return Kind::Form;
    }
    if essence == "multipart/form-data" {
        let boundary = ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        });
        return match boundary {
            Some(b) if !b.is_empty() => Kind::Multipart(b),
            _ => Kind::Text,
        };
    }
    const BINARY: &[&str] = &["image/", "audio/", "video/", "font/"];
    const BINARY_APP: &[&str] = &[
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-protobuf",
        "application/protobuf",
        "application/grpc",
        "application/wasm",
        "application/msgpack",
        "application/vnd.ms-excel",
    ];
    if BINARY.iter().any(|p| essence.starts_with(p))
        || BINARY_APP.iter().any(|p| essence.starts_with(p))
    {
        return Kind::Binary;
    }
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if essence.is_empty() && matches!(first, Some(b'{' | b'[')) {
        return Kind::Json;
    }
    // Text when the start is printable UTF-8.
    let head = data.get(..data.len().min(512)).unwrap_or_default();
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.valid_up_to() + 4 >= head.len(),
    };
    let printable = head
        .iter()
        .all(|&b| b >= 0x20 || b == b'\n' || b == b'\r' || b == b'\t');
    if valid && printable {
        Kind::Text
    } else {
        Kind::Binary
    }
}

pub(super) fn scan(
    cls: &Classifier,
    content_type: Option<&str>,
    data: &[u8],
    sink: &mut Sink,
    stats: &mut ClassifyStats,
) -> Scan {
    let mut out = Scan {
        shape: None,
        limited: false,
    };
    if data.is_empty() {
        return out;
    }
    let max = cls.settings.max_body_bytes;
    let data = if data.len() > max {
        stats.limited_bytes += 1;
        out.limited = true;
        data.get(..max).unwrap_or_default()
    } else {
        data
    };
    match kind(content_type, data) {
        Kind::Json => {
            stats.bodies_json += 1;
            let walked = json(cls, data, sink, stats);
            out.limited |= walked.limited;
            out.shape = walked.shape;
        }
        Kind::Form => {
            stats.bodies_form += 1;
            let text = String::from_utf8_lossy(data);
            out.shape = Some(form(cls, &text, sink, stats));
        }
        Kind::Multipart(boundary) => {
            stats.bodies_form += 1;
            multipart(cls, data, &boundary, sink, stats);
        }
        Kind::Text => {
            stats.bodies_text += 1;
            let text = String::from_utf8_lossy(data);
            let mut budget = cls.settings.max_values_per_body;
            free_text(cls, &text, &mut budget, &mut |_, _, t, c| {
                sink.push(t, Location::Body, || "$".to_string(), c)
            });
            if budget == 0 {
                stats.limited_values += 1;
                out.limited = true;
            }
        }
        Kind::Binary => {}
    }
    out
}

/// Error message a visitor uses to stop the walk at the value cap.
const STOP: &str = "apisensor-classify: value limit reached";

struct Walker<'a> {
    cls: &'a Classifier,
    sink: &'a mut Sink,
    stats: &'a mut ClassifyStats,
    path: String,
    shape: Vec<(String, FieldType)>,
    shape_index: HashMap<String, usize>,
    hints: HashMap<Box<str>, Hint>,
    values: usize,
    depth_hit: bool,
    values_hit: bool,
}

impl Walker<'_> {
    fn hint(&mut self, key: &str) -> Hint {
        if let Some(&h) = self.hints.get(key) {
            return h;
        }
        let h = keys::hint(key);
        if self.hints.len() < 512 {
            self.hints.insert(key.into(), h);
        }
        h
    }

    fn record(&mut self, t: FieldType) {
        if self.path.is_empty() {
            return;
        }
        if self.path.len() > MAX_PATH_BYTES {
            self.stats.shape_fields_dropped += 1;
            return;
        }
        if let Some(&i) = self.shape_index.get(self.path.as_str()) {
            if let Some(entry) = self.shape.get_mut(i) {
                if entry.1 == FieldType::Null && t != FieldType::Null {
                    entry.1 = t;
                }
            }
            return;
        }
        if self.shape.len() >= MAX_SHAPE_FIELDS {
            self.stats.shape_fields_dropped += 1;
            return;
        }
        self.shape_index.insert(self.path.clone(), self.shape.len());
        self.shape.push((self.path.clone(), t));
    }

    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        if self.values >= self.cls.settings.max_values_per_body {
            self.values_hit = true;
            return Err(E::custom(STOP));
        }
        self.values += 1;
        self.stats.values_examined += 1;
        Ok(())
    }

    fn field(&self) -> String {
        if self.path.is_empty() {
            "$".to_string()
        } else {
            cap_path(&self.path)
        }
    }

    fn leaf_str<E: de::Error>(&mut self, hint: Hint, v: &str) -> Result<(), E> {
        self.count()?;
        let v = v.trim();
        if v.is_empty() {
            return Ok(());
        }
        if v.len() <= MAX_VALUE_BYTES {
            if let Some((t, c)) = self.cls.classify_raw(hint, v) {
                let field = self.field();
                self.sink.push(t, Location::Body, || field, c);
                return Ok(());
            }
        }
        if v.len() >= 8 && (v.len() > MAX_VALUE_BYTES || v.contains(char::is_whitespace)) {
            // Prose in a field ("message", "notes"): self-identifying values only.
            let field = self.field();
            let mut budget = 256usize;
            let sink = &mut *self.sink;
            free_text(self.cls, v, &mut budget, &mut |_, _, t, c| {
                sink.push(t, Location::Body, || field.clone(), c)
            });
        }
        Ok(())
    }

    fn leaf_u64<E: de::Error>(&mut self, hint: Hint, v: u64) -> Result<(), E> {
        self.count()?;
        // Short numbers are counts, ids, amounts: nothing we look for.
        if v < 100_000 {
            return Ok(());
        }
        let mut buf = [0u8; 20];
        let s = std::str::from_utf8(decimal_digits(v, &mut buf)).unwrap_or_default();
        if let Some((t, c)) = self.cls.classify_raw(hint, s) {
            let field = self.field();
            self.sink.push(t, Location::Body, || field, c);
        }
        Ok(())
    }
}

/// A JSON object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// One JSON value at `depth` under a key that hints `hint`.
struct Node<'w, 'a> {
    w: &'w mut Walker<'a>,
    depth: usize,
    hint: Hint,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > self.w.cls.settings.max_json_depth {
            // Skipped, not walked: serde_json's own recursion limit (128)
            // still bounds the stack while it is read past.
            self.w.depth_hit = true;
            return <IgnoredAny as de::Deserialize>::deserialize(d).map(|_| ());
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.w.record(FieldType::Bool);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.w.record(FieldType::Null);
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.w.record(FieldType::Null);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.w.record(FieldType::Integer);
        match u64::try_from(v) {
            Ok(u) => self.w.leaf_u64(self.hint, u),
            Err(_) => self.w.count(),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.w.record(FieldType::Integer);
        self.w.leaf_u64(self.hint, v)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.w.record(FieldType::Number);
        self.w.count()
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.w.record(string_type(v));
        self.w.leaf_str(self.hint, v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Node { w, depth, hint } = self;
        w.record(FieldType::Array);
        let len = w.path.len();
        w.path.push_str("[]");
        while seq
            .next_element_seed(Node {
                w: &mut *w,
                depth: depth + 1,
                hint,
            })?
            .is_some()
        {}
        w.path.truncate(len);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Node {
            w,
            depth,
            hint: own,
        } = self;
        w.record(FieldType::Object);
        let len = w.path.len();
        while let Some(Key(k)) = map.next_key::<Key>()? {
            if len > 0 {
                w.path.push('.');
            }
            // Keys past 64 bytes are cut (on a character boundary).
            let mut end = k.len().min(64);
            while !k.is_char_boundary(end) {
                end -= 1;
            }
            w.path.push_str(k.get(..end).unwrap_or_default());
            let mut hint = w.hint(&k);
            if own.is_specific() && keys::is_generic(&k) {
                hint = own;
            }
            map.next_value_seed(Node {
                w: &mut *w,
                depth: depth + 1,
                hint,
            })?;
            w.path.truncate(len);
        }
        Ok(())
    }
}

/// Field type of a JSON string by its format.
pub(super) fn string_type(s: &str) -> FieldType {
    let b = s.as_bytes();
    if super::value::is_uuid(s) {
        return FieldType::Uuid;
    }
    if b.len() >= 10 && super::value::parse_date(s.get(..10).unwrap_or_default()).is_some() {
        if b.len() == 10 {
            return FieldType::Date;
        }
        if matches!(b.get(10), Some(b'T' | b't' | b' ')) && b.get(13) == Some(&b':') {
            return FieldType::DateTime;
        }
    }
    if b.len() <= 254 && s.contains('@') && super::contact::is_email(s) {
        return FieldType::Email;
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return FieldType::Uri;
    }
    if b.len() <= 45
        && (super::network::parse_ipv4(s).is_some()
            || (s.contains(':') && s.parse::<std::net::Ipv6Addr>().is_ok()))
    {
        return FieldType::Ip;
    }
    FieldType::String
}

struct Walked {
    shape: Option<BodyShape>,
    limited: bool,
}

fn json(cls: &Classifier, data: &[u8], sink: &mut Sink, stats: &mut ClassifyStats) -> Walked {
    let mut w = Walker {
        cls,
        sink,
        stats,
        path: String::new(),
        shape: Vec::new(),
        shape_index: HashMap::new(),
        hints: HashMap::new(),
        values: 0,
        depth_hit: false,
        values_hit: false,
    };
    let mut de = serde_json::Deserializer::from_slice(data);
    let result = Node {
        w: &mut w,
        depth: 0,
        hint: Hint::None,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    let mut limited = false;
    if let Err(e) = result {
        let msg = e.to_string();
        if w.values_hit || msg.contains(STOP) {
            w.stats.limited_values += 1;
            limited = true;
        } else if msg.contains("recursion limit") {
            w.stats.limited_depth += 1;
            w.depth_hit = false;
            limited = true;
        } else {
            w.stats.json_errors += 1;
            if w.values == 0 && w.shape.is_empty() {
                // Not JSON after all: scan it as text.
                let text = String::from_utf8_lossy(data);
                let mut budget = cls.settings.max_values_per_body;
                let sink = &mut *w.sink;
                free_text(cls, &text, &mut budget, &mut |_, _, t, c| {
                    sink.push(t, Location::Body, || "$".to_string(), c)
                });
            }
        }
    }
    if w.depth_hit {
        w.stats.limited_depth += 1;
        limited = true;
    }
    Walked {
        shape: (!w.shape.is_empty()).then_some(BodyShape { fields: w.shape }),
        limited,
    }
}

fn form(cls: &Classifier, text: &str, sink: &mut Sink, stats: &mut ClassifyStats) -> BodyShape {
    let mut shape = BodyShape::default();
    for pair in text.split('&').take(cls.settings.max_values_per_body) {
        let (name, val) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name, true);
        let val = percent_decode(val, true);
        if !name.is_empty() && !shape.fields.iter().any(|(n, _)| *n == *name) {
            if shape.fields.len() < MAX_SHAPE_FIELDS {
                let t = if !val.is_empty() && val.bytes().all(|b| b.is_ascii_digit()) {
                    FieldType::Integer
                } else {
                    string_type(&val)
                };
                shape.fields.push((cap_path(&name), t));
            } else {
                stats.shape_fields_dropped += 1;
            }
        }
        let val = val.trim();
        if val.is_empty() {
            continue;
        }
        stats.values_examined += 1;
        if let Some((t, c)) = cls.classify_raw(keys::hint(&name), val) {
            sink.push(t, Location::Body, || cap_path(&name), c);
        }
    }
    shape
}

/// Text fields of a multipart/form-data body (file parts are skipped).
fn multipart(
    cls: &Classifier,
    data: &[u8],
    boundary: &str,
    sink: &mut Sink,
    stats: &mut ClassifyStats,
) {
    let delim = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let starts: Vec<usize> = finder.find_iter(data).take(1024).collect();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(data.len());
        let part = data.get(start + delim.len()..end).unwrap_or_default();
        let Some(hdr_end) = memchr::memmem::find(part, b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| memchr::memmem::find(part, b"\n\n").map(|p| (p, 2)))
        else {
            continue;
        };
        let headers = String::from_utf8_lossy(part.get(..hdr_end.0).unwrap_or_default());
        let lower = headers.to_ascii_lowercase();
        if lower.contains("filename=") {
            continue;
        }
        let Some(name) = lower.find("name=\"").and_then(|p| {
            let rest = headers.get(p + 6..)?;
            rest.split('"').next().map(str::to_string)
        }) else {
            continue;
        };
        let body = part.get(hdr_end.0 + hdr_end.1..).unwrap_or_default();
        let body = body
            .strip_suffix(b"\r\n")
            .or_else(|| body.strip_suffix(b"\n"))
            .unwrap_or(body);
        let val = String::from_utf8_lossy(body);
        let val = val.trim();
        if val.is_empty() {
            continue;
        }
        stats.values_examined += 1;
        if let Some((t, c)) = cls.classify_raw(keys::hint(&name), val) {
            sink.push(t, Location::Body, || cap_path(&name), c);
        }
    }
}

fn is_delim(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'"' | b'\''
                | b'<'
                | b'>'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b','
                | b';'
                | b'|'
                | b'`'
                | b'\\'
        )
}

/// Sensitive spans of free text: PEM private keys, and tokens (split at
/// whitespace and punctuation) that are self-identifying on their own, follow
/// `Bearer`, or are the value of a `key=value` pair. Calls `found(start, end,
/// type, confidence)` for each; stops when `budget` tokens were examined.
pub(super) fn free_text(
    cls: &Classifier,
    text: &str,
    budget: &mut usize,
    found: &mut dyn FnMut(usize, usize, DataType, u8),
) {
    let min = cls
        .settings
        .min_confidence
        .max(super::FREE_TEXT_MIN_CONFIDENCE);
    let mut pem_spans: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    while let Some(p) = text.get(from..).and_then(|t| t.find("-----BEGIN ")) {
        let start = from + p;
        let end = text
            .get(start..)
            .and_then(|t| t.find("-----END "))
            .and_then(|e| {
                let after = start + e + 9;
                text.get(after..)?.find("-----").map(|x| after + x + 5)
            })
            .unwrap_or(text.len());
        if let Some((t, c)) = text
            .get(start..end)
            .and_then(|span| cls.classify_free(span))
        {
            found(start, end, t, c);
            pem_spans.push((start, end));
        }
        from = end.max(start + 1);
        if pem_spans.len() > 64 {
            break;
        }
    }
    let b = text.as_bytes();
    let mut i = 0;
    let mut prev_bearer = false;
    while i < b.len() {
        if *budget == 0 {
            return;
        }
        if b.get(i).copied().is_some_and(is_delim) {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).is_some_and(|&c| !is_delim(c)) {
            i += 1;
        }
        if let Some(&(_, end)) = pem_spans.iter().find(|&&(s, e)| start >= s && start < e) {
            i = i.max(end);
            continue;
        }
        let mut end = i;
        while end > start && matches!(b.get(end - 1), Some(b'.' | b':' | b'!' | b'?')) {
            end -= 1;
        }
        let Some(tok) = text.get(start..end) else {
            continue;
        };
        let after_bearer = std::mem::replace(&mut prev_bearer, tok.eq_ignore_ascii_case("bearer"));
        if tok.len() < 6 {
            continue;
        }
        *budget -= 1;
        let hit = if after_bearer {
            cls.classify_raw(Hint::Token, tok)
                .filter(|&(_, c)| c >= min)
        } else {
            cls.classify_free(tok)
        };
        if let Some((t, c)) = hit {
            found(start, end, t, c);
            continue;
        }
        if let Some(eq) = tok.find('=').filter(|_| !tok.contains("://")) {
            let (k, v) = (
                tok.get(..eq).unwrap_or_default(),
                tok.get(eq + 1..).unwrap_or_default(),
            );
            if !k.is_empty() && !v.is_empty() {
                if let Some((t, c)) = cls
                    .classify_raw(keys::hint(k), v)
                    .filter(|&(_, c)| c >= min)
                {
                    found(start + eq + 1, end, t, c);
                }
            }
        }
    }
}
