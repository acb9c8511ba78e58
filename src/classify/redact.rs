//! Evidence without the secrets: header values, URIs, query strings and
//! bodies with every sensitive value replaced by
//! `[REDACTED:<type>:<12 hex of a keyed BLAKE3 hash>]`. The same value always
//! gets the same tag under one key, so evidence can be correlated without
//! being readable.

use super::body::{free_text, kind, Kind};
use super::keys::{self, Hint};
use super::value::percent_decode;
use super::{secrets, Classifier, DataType};

/// Authorization schemes kept in front of a redacted credential.
const SCHEMES: &[&str] = &[
    "bearer",
    "basic",
    "token",
    "jwt",
    "digest",
    "negotiate",
    "aws4-hmac-sha256",
];

/// The type a value under a credential-named key is redacted as, whatever
/// its shape: `X-Api-Key: hunter2hunter2`, `pin=1234` and `secret_answer`
/// hold secrets that look like nothing in particular. Classification needs
/// a shape to report a finding; redaction does not.
fn credential_type(hint: Hint) -> Option<DataType> {
    match hint {
        Hint::Password => Some(DataType::Password),
        Hint::Secret | Hint::AwsSecret | Hint::AzureKey => Some(DataType::Secret),
        Hint::Token | Hint::Authorization => Some(DataType::BearerToken),
        Hint::Session => Some(DataType::SessionToken),
        _ => None,
    }
}

/// The type `value` under `hint` is redacted as, if it is redacted.
fn sensitive(cls: &Classifier, hint: Hint, value: &str) -> Option<DataType> {
    if value.is_empty() {
        return None;
    }
    cls.classify_raw(hint, value)
        .map(|(t, _)| t)
        .or_else(|| credential_type(hint))
}

pub(super) fn text(cls: &Classifier, key_context: &str, text: &str) -> String {
    let hint = keys::hint(key_context);
    let trimmed = text.trim();
    let ctx = key_context.to_ascii_lowercase();
    if ctx == "cookie" || ctx == "set-cookie" {
        return cookies(cls, text, ctx == "set-cookie");
    }
    // A request target in origin form (`/path?query`) is not one value:
    // its segments and parameters are judged below.
    let origin_form = key_context.is_empty() && trimmed.starts_with('/');
    let whole = if origin_form {
        None
    } else {
        sensitive(cls, hint, trimmed)
    };
    if let Some(t) = whole {
        if let Some((scheme, rest)) = trimmed.split_once(' ') {
            if SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
                return format!("{scheme} {}", cls.redaction_tag(t, rest.trim()));
            }
        }
        return cls.redaction_tag(t, trimmed);
    }
    if let Some((path, query)) = text.split_once('?') {
        let mut out = String::with_capacity(text.len());
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&free(cls, seg));
        }
        out.push('?');
        out.push_str(&pairs(cls, query, '&', true));
        return out;
    }
    if text.contains('=') && !text.contains(' ') {
        return pairs(cls, text, '&', true);
    }
    free(cls, text)
}

/// Whether a cookie value is a plain setting (`theme=dark`, `lang=en-US`,
/// `step=2`), too short and too regular to be anybody's session.
fn plain_cookie_value(value: &str) -> bool {
    let word = value.len() <= 16
        && value
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
    let small_number = value.len() <= 3 && value.bytes().all(|b| b.is_ascii_digit());
    word || small_number
}

/// Cookie values are what sessions ride on, whatever the cookie's name
/// (`_myapp_key`, `remember`, `auth`): every value but a plain setting
/// ([`plain_cookie_value`]) is replaced, the names stay. In `Set-Cookie`,
/// only the first pair is the cookie; the attributes after it (`Path`,
/// `Expires`, ...) are kept.
fn cookies(cls: &Classifier, text: &str, set_cookie: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, pair) in text.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        match pair.split_once('=') {
            Some((name, value)) if i == 0 || !set_cookie => {
                let hint = keys::hint(name.trim());
                let value = value.trim();
                let t = sensitive(cls, hint, value)
                    .or_else(|| (!plain_cookie_value(value)).then_some(DataType::SessionToken));
                let Some(t) = t else {
                    out.push_str(pair);
                    continue;
                };
                out.push_str(name);
                out.push('=');
                out.push_str(&cls.redaction_tag(t, value));
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// `name=value` pairs with sensitive values replaced; layout kept.
fn pairs(cls: &Classifier, text: &str, sep: char, decode: bool) -> String {
    let sas = secrets::azure_sas(text).is_some();
    let mut out = String::with_capacity(text.len());
    for (i, pair) in text.split(sep).enumerate() {
        if i > 0 {
            out.push(sep);
        }
        let Some((name, raw)) = pair.split_once('=') else {
            out.push_str(&free(cls, pair));
            continue;
        };
        let dec_name = if decode {
            percent_decode(name.trim(), true)
        } else {
            name.trim().into()
        };
        let val = if decode {
            percent_decode(raw, true)
        } else {
            raw.into()
        };
        let hit = if sas && dec_name == "sig" {
            Some(DataType::AzureSasToken)
        } else {
            sensitive(cls, keys::hint(&dec_name), val.trim())
        };
        out.push_str(name);
        out.push('=');
        match hit {
            Some(t) => out.push_str(&cls.redaction_tag(t, val.trim())),
            None => out.push_str(&free(cls, raw)),
        }
    }
    out
}

/// Free text with self-identifying values replaced.
fn free(cls: &Classifier, text: &str) -> String {
    let mut spans: Vec<(usize, usize, DataType)> = Vec::new();
    let mut budget = cls.settings.max_values_per_body;
    free_text(cls, text, &mut budget, &mut |s, e, t, _| {
        spans.push((s, e, t))
    });
    splice(cls, text, spans)
}

fn splice(cls: &Classifier, text: &str, mut spans: Vec<(usize, usize, DataType)>) -> String {
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort_by_key(|&(s, _, _)| s);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, t) in spans {
        if s < at {
            continue;
        }
        let (Some(before), Some(value)) = (text.get(at..s), text.get(s..e)) else {
            continue;
        };
        out.push_str(before);
        out.push_str(&cls.redaction_tag(t, value));
        at = e;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

pub(super) fn body(cls: &Classifier, content_type: Option<&str>, data: &[u8]) -> String {
    let max = cls.settings.max_body_bytes;
    let (data, cut) = if data.len() > max {
        (data.get(..max).unwrap_or_default(), data.len() - max)
    } else {
        (data, 0)
    };
    let mut out = match kind(content_type, data) {
        Kind::Json => match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(mut v) => {
                json(cls, &mut v);
                serde_json::to_string(&v).unwrap_or_default()
            }
            Err(_) => free(cls, &String::from_utf8_lossy(data)),
        },
        Kind::Form => pairs(cls, &String::from_utf8_lossy(data), '&', true),
        Kind::Multipart(_) | Kind::Text => free(cls, &String::from_utf8_lossy(data)),
        Kind::Binary => format!("[{} bytes of binary body not shown]", data.len()),
    };
    if cut > 0 {
        out.push_str(&format!("…[{cut} more bytes not scanned, not shown]"));
    }
    out
}

/// Replaces sensitive leaves in place, walking with an explicit stack (the
/// parser already bounded the depth at 128).
fn json(cls: &Classifier, root: &mut serde_json::Value) {
    use serde_json::Value;
    let mut stack: Vec<(&mut Value, Hint)> = vec![(root, Hint::None)];
    while let Some((v, hint)) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    stack.push((child, keys::hint(k)));
                }
            }
            Value::Array(items) => {
                for child in items.iter_mut() {
                    stack.push((child, hint));
                }
            }
            Value::String(s) => {
                if let Some(t) = sensitive(cls, hint, s.trim()) {
                    *s = cls.redaction_tag(t, s.trim());
                } else if s.contains(char::is_whitespace) {
                    let redacted = free(cls, s);
                    *s = redacted;
                }
            }
            Value::Number(n) => {
                let digits = n.to_string();
                let hit = match credential_type(hint) {
                    Some(t) => Some(t),
                    None if n.as_u64().is_some_and(|u| u >= 100_000) => {
                        cls.classify_raw(hint, &digits).map(|(t, _)| t)
                    }
                    None => None,
                };
                if let Some(t) = hit {
                    *v = Value::String(cls.redaction_tag(t, &digits));
                }
            }
            _ => {}
        }
    }
}
