//! Attack payloads in what a client controls: SQL and NoSQL injection,
//! OS command injection, path traversal, cross-site scripting and server-side
//! request forgery targets, in query and form parameters, path segments and
//! JSON string values and keys. Needs no baseline: a payload is a payload
//! from the first request on.
//!
//! Values are normalised before matching the way a server would see them:
//! percent-decoded up to twice (double encoding is an evasion of its own),
//! JSON escapes already undone by the JSON parser, lower-cased, and SQL
//! comments and runs of whitespace folded into one space. The signatures
//! need attack structure (a quote closing a string then a tautology, two or
//! more `../` levels or a sensitive file, a shell separator then a command),
//! so names like O'Brien, "rock and roll" or a relative `../home` link do
//! not match.

use super::report::Finding;
use super::rules::RuleId;
use crate::analysis::facts::Facts;
use percent_encoding::percent_decode_str;
use regex::{Regex, RegexSet};
use std::sync::OnceLock;

/// What kind of payload matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PayloadKind {
    Sql,
    NoSql,
    Command,
    PathTraversal,
    Xss,
    Ssrf,
}

impl PayloadKind {
    pub const fn label(self) -> &'static str {
        match self {
            PayloadKind::Sql => "SQL injection",
            PayloadKind::NoSql => "NoSQL injection",
            PayloadKind::Command => "OS command injection",
            PayloadKind::PathTraversal => "path traversal",
            PayloadKind::Xss => "cross-site scripting",
            PayloadKind::Ssrf => "server-side request forgery",
        }
    }
}

/// Signatures, each with its kind. Applied to normalised text.
const SIGNATURES: &[(PayloadKind, &str)] = &[
    // A quote that closes a string, then a boolean tautology or a comment.
    (
        PayloadKind::Sql,
        r#"['"`)]\s*(or|and|\|\||&&)\s+['"(]?[\w-]*['")]?\s*(=|<>|!=|<|>|like|is)\s*['"(]?[\w-]*"#,
    ),
    (PayloadKind::Sql, r#"['"`]\s*(or|and)\s+(true|false|\d+)\b"#),
    (PayloadKind::Sql, r#"\b(or|and)\s+(\d+)\s*=\s*(\d+)\b"#),
    (
        PayloadKind::Sql,
        r#"\bunion(\s+all|\s+distinct)?\s+select\b"#,
    ),
    (
        PayloadKind::Sql,
        r#"['"`)]\s*;\s*(drop|delete|insert|update|truncate|alter|create|exec|shutdown|select)\b"#,
    ),
    (
        PayloadKind::Sql,
        r#"^\d+\s*;\s*(drop|delete|insert|update|truncate|alter|exec|shutdown)\s"#,
    ),
    (
        PayloadKind::Sql,
        r#"\b(sleep|pg_sleep|benchmark|extractvalue|updatexml|load_file)\s*\("#,
    ),
    (PayloadKind::Sql, r#"\bwaitfor\s+delay\s+'"#),
    (
        PayloadKind::Sql,
        r#"\binformation_schema\b|@@version\b|\bsysobjects\b"#,
    ),
    (PayloadKind::Sql, r#"^[\w@.-]*['"`]\s*(--|#|;)"#),
    // Operators of MongoDB-style query languages smuggled into parameters.
    (
        PayloadKind::NoSql,
        r#"\[\s*\$(ne|gt|gte|lt|lte|regex|where|in|nin|exists|or|and|not|expr)\s*\]"#,
    ),
    (
        PayloadKind::NoSql,
        r#"^\$(ne|gt|gte|lt|lte|regex|where|nin|exists|expr)$"#,
    ),
    (
        PayloadKind::NoSql,
        r#"\$where\s*[:=]|\bthis\.\w+\s*==|;\s*return\s+true"#,
    ),
    // A shell separator or substitution, then a command ending where a
    // shell word ends (base64 text such as `|lS+ga…` in an encrypted
    // field is not `ls`).
    (
        PayloadKind::Command,
        r#"(;|\||\|\||&&|\$\(|`)\s*(cat|id|whoami|uname|ls|wget|curl|nc|ncat|bash|sh|zsh|ping|nslookup|sleep|rm|chmod|python\d?|perl|powershell|cmd)(\s|$|[;|&<>)`])"#,
    ),
    (
        PayloadKind::Command,
        r#"/bin/(ba|z|da)?sh\b|\$\{ifs\}|\bcmd(\.exe)?\s+/c\b"#,
    ),
    // Two or more levels up, or any level up to a well-known sensitive file.
    (PayloadKind::PathTraversal, r#"(\.\.[/\\]){2,}"#),
    (
        PayloadKind::PathTraversal,
        r#"(\.\.[/\\]|^/)(etc/(passwd|shadow|hosts|group)|proc/self/|windows/(win\.ini|system32)|boot\.ini)"#,
    ),
    (
        PayloadKind::PathTraversal,
        r#"%c0%af|%c1%9c|\.\.%u2215|%uff0e%uff0e"#,
    ),
    (PayloadKind::Xss, r#"<\s*script\b|<\s*/\s*script\s*>"#),
    (PayloadKind::Xss, r#"\bjavascript\s*:|\bvbscript\s*:"#),
    (
        PayloadKind::Xss,
        r#"<[a-z]+[^>]*\bon(error|load|mouseover|focus|click|begin|toggle|animationstart)\s*="#,
    ),
    (
        PayloadKind::Xss,
        r#"<\s*(iframe|object|embed|svg|math)\b[^>]*>"#,
    ),
    (
        PayloadKind::Xss,
        r#"document\.(cookie|domain)|\balert\s*\(\s*(document|1|'|")"#,
    ),
    // URLs aimed at the cloud metadata service or the server itself.
    (
        PayloadKind::Ssrf,
        r#"^(https?|gopher|dict|ftp)://(169\.254\.169\.254|metadata\.google\.internal|100\.100\.100\.200|\[?::1\]?|127\.\d+\.\d+\.\d+|localhost|0\.0\.0\.0|0)(:\d+)?(/|$)"#,
    ),
    (PayloadKind::Ssrf, r#"^(file|gopher|dict)://"#),
];

struct Compiled {
    set: RegexSet,
    whitespace: Regex,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| Compiled {
        // The patterns are constants covered by the unit tests.
        #[allow(clippy::expect_used)]
        set: RegexSet::new(SIGNATURES.iter().map(|(_, p)| *p)).expect("valid signatures"),
        #[allow(clippy::expect_used)]
        whitespace: Regex::new(r"(/\*.*?\*/|\s)+").expect("valid pattern"),
    })
}

/// Longest value inspected; longer ones are cut (counted by the caller).
pub const MAX_VALUE_BYTES: usize = 4096;

/// The text a server would act on, ready for matching.
pub fn normalize(value: &str) -> String {
    let mut text: String = value.chars().take(MAX_VALUE_BYTES).collect();
    for _ in 0..2 {
        if !text.contains('%') {
            break;
        }
        let decoded = percent_decode_str(&text).decode_utf8_lossy().into_owned();
        if decoded == text {
            break;
        }
        text = decoded;
    }
    let lower = text.to_lowercase();
    compiled().whitespace.replace_all(&lower, " ").into_owned()
}

/// The payload kinds found in one client-controlled value.
pub fn scan(value: &str) -> Vec<PayloadKind> {
    if value.len() < 3 {
        return Vec::new();
    }
    // The raw text too: overlong UTF-8 escapes disappear when decoded.
    let raw = value.to_ascii_lowercase();
    let normal = normalize(value);
    let set = &compiled().set;
    let mut kinds: Vec<PayloadKind> = set
        .matches(&normal)
        .into_iter()
        .chain(set.matches(&raw))
        .filter_map(|i| SIGNATURES.get(i).map(|(k, _)| *k))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

impl PayloadKind {
    /// The rule a payload of this kind raises.
    pub const fn rule_id(self) -> RuleId {
        match self {
            PayloadKind::Sql => RuleId::InjectionSql,
            PayloadKind::NoSql => RuleId::InjectionNoSql,
            PayloadKind::Command => RuleId::InjectionCommand,
            PayloadKind::PathTraversal => RuleId::InjectionPathTraversal,
            PayloadKind::Xss => RuleId::InjectionXss,
            PayloadKind::Ssrf => RuleId::InjectionSsrf,
        }
    }
}

/// One finding per payload kind the request carried, reported once per
/// actor and kind: an injection tool walking twenty-six paths is one
/// campaign, not twenty-six alerts.
pub fn observe(f: &Facts<'_>, out: &mut Vec<Finding>) {
    for p in &f.payloads {
        let answered = match f.status() {
            Some(s) => format!("the API answered {s}"),
            None => "no answer was seen".into(),
        };
        out.push(
            Finding::new(
                p.kind.rule_id(),
                85,
                format!(
                    "{} sent a request to {} whose `{}` value carries a {} payload ({:?}); {answered}.",
                    f.actor_label(),
                    f.key,
                    p.parameter,
                    p.kind.label(),
                    p.sample
                ),
                // Per address, not per identity: one client trying a
                // payload with and without its token is one attempt.
                format!("{}|{:?}", f.client_ip, p.kind),
            )
            .title(format!("{} payload in `{}`", capitalise(p.kind.label()), p.parameter))
            .attribute("parameter", serde_json::Value::String(p.parameter.clone()))
            .attribute("payload", serde_json::Value::String(p.sample.clone())),
        );
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(v: &str) -> Vec<PayloadKind> {
        scan(v)
    }

    #[test]
    fn sql_injection_variants() {
        for v in [
            "' OR '1'='1",
            "admin'--",
            "1' or 1=1 -- -",
            "x' UNION SELECT username, password FROM users--",
            "1 UNION/**/ALL/**/SELECT null,null",
            "%27%20OR%201%3D1--",
            "%2527%2520OR%25201%253D1",
            "1; DROP TABLE users",
            "');DROP TABLE students;--",
            "1 AND SLEEP(5)",
            "'; WAITFOR DELAY '0:0:5'--",
            "1 and 1=1",
        ] {
            assert!(kinds(v).contains(&PayloadKind::Sql), "{v}");
        }
    }

    #[test]
    fn sql_look_alikes_do_not_match() {
        for v in [
            "O'Brien",
            "rock and roll",
            "Tom's diner",
            "select a plan from the list",
            "union station",
            "drop shipping",
            "1=1",
            "what's new; and more",
            "it's 5 o'clock",
            "a-b and c",
        ] {
            assert!(kinds(v).is_empty(), "{v}: {:?}", kinds(v));
        }
    }

    #[test]
    fn nosql_command_traversal_xss_ssrf() {
        let cases: &[(&str, PayloadKind)] = &[
            ("user[$ne]=x", PayloadKind::NoSql),
            ("$gt", PayloadKind::NoSql),
            ("'; return true; var x='", PayloadKind::NoSql),
            ("127.0.0.1; cat /etc/passwd", PayloadKind::Command),
            ("x | id", PayloadKind::Command),
            ("$(whoami)", PayloadKind::Command),
            ("`uname -a`", PayloadKind::Command),
            ("../../../../etc/passwd", PayloadKind::PathTraversal),
            ("..%2f..%2f..%2fetc%2fpasswd", PayloadKind::PathTraversal),
            (
                "%252e%252e%252f%252e%252e%252fwindows/win.ini",
                PayloadKind::PathTraversal,
            ),
            ("..\\..\\boot.ini", PayloadKind::PathTraversal),
            ("..%c0%af..%c0%afetc", PayloadKind::PathTraversal),
            ("<script>alert(1)</script>", PayloadKind::Xss),
            ("\"><img src=x onerror=alert(1)>", PayloadKind::Xss),
            ("javascript:alert(document.cookie)", PayloadKind::Xss),
            ("%3Csvg%20onload%3Dalert(1)%3E", PayloadKind::Xss),
            (
                "http://169.254.169.254/latest/meta-data/",
                PayloadKind::Ssrf,
            ),
            ("http://localhost:8080/admin", PayloadKind::Ssrf),
            ("file:///etc/passwd", PayloadKind::Ssrf),
        ];
        for (v, kind) in cases {
            assert!(kinds(v).contains(kind), "{v}: {:?}", kinds(v));
        }
    }

    #[test]
    fn benign_values_do_not_match() {
        for v in [
            "../home",
            "docs/../index.html",
            "cats & dogs",
            "a|b",
            "price > 10 and < 20",
            "https://example.com/callback?next=/home",
            "I love <b>bold</b> text",
            "ls -la is a command",
            // An encrypted field (Bitwarden EncString): base64 parts
            // joined by `|`, one starting `lS+`.
            "2.xJypVXeLS4SuuLIgi8+Xyg==|lS+gaSQrKufXrpP2DII+fgI65FRAO1dTClJTSY41tGo=|GOwyBHsxxMg=",
            "jane.doe@example.com",
            "550e8400-e29b-41d4-a716-446655440000",
            "The onerror handler",
            "$100",
            "C:\\Users\\me",
            "SELECT",
        ] {
            assert!(kinds(v).is_empty(), "{v}: {:?}", kinds(v));
        }
    }
}
