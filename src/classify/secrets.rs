//! Credentials: JWTs (header and claims decoded), cloud and SaaS keys with
//! self-identifying formats (AWS, GCP, Azure, GitHub, GitLab, Slack, Stripe,
//! Twilio, SendGrid), PEM private keys, connection strings and URLs with
//! passwords, HTTP Basic and Bearer credentials, and opaque secrets,
//! passwords and session ids under credential-like keys.

use super::keys::Hint;
use super::value::{is_placeholder_value, is_uuid, token_like};
use super::{Cand, DataType, Val};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub(super) fn detect(v: &Val, hint: Hint, c: &mut Cand) {
    let s = v.s;
    if s.len() < 3 {
        return;
    }
    if s.contains("-----BEGIN ") {
        if is_pem_private_key(s) {
            c.offer(DataType::PemPrivateKey, 98);
        }
        return;
    }
    if let Some((scheme, rest)) = s.split_once(' ') {
        if auth_scheme(scheme, rest.trim(), c) {
            return;
        }
    }
    if let Some(conf) = url_credentials(s) {
        c.offer(conf.0, conf.1);
        return;
    }
    if s.contains(';') && s.contains('=') {
        if let Some((t, conf)) = connection_string(s) {
            c.offer(t, conf);
            return;
        }
    }
    if s.contains("sig=") {
        if let Some(conf) = azure_sas(s) {
            c.offer(DataType::AzureSasToken, conf);
            return;
        }
    }
    if v.has_space {
        if hint == Hint::Password && password_ok(s) {
            c.offer(DataType::Password, 90);
        }
        return;
    }
    if let Some((t, conf)) = prefixed_token(s) {
        c.offer(t, conf);
        return;
    }
    keyed(v, hint, c);
}

/// Secrets under credential keys, recognised by key plus a plausible value.
fn keyed(v: &Val, hint: Hint, c: &mut Cand) {
    let s = v.s;
    if !hint.is_credential() || is_placeholder_value(s) || fake_secret(s) {
        return;
    }
    let opaque = token_like(s) || is_uuid(s);
    match hint {
        Hint::Password if password_ok(s) => c.offer(DataType::Password, 92),
        Hint::AwsSecret => {
            if is_aws_secret(s) {
                c.offer(DataType::AwsSecretAccessKey, 96);
            } else if opaque {
                c.offer(DataType::Secret, 88);
            }
        }
        Hint::AzureKey | Hint::Secret => {
            if is_azure_storage_key(s) {
                c.offer(DataType::AzureStorageKey, 95);
            } else if opaque {
                c.offer(DataType::Secret, 88);
            }
        }
        Hint::Token | Hint::Authorization if opaque => c.offer(DataType::BearerToken, 88),
        Hint::Session
            if opaque || (s.len() >= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric())) =>
        {
            c.offer(DataType::SessionToken, 88)
        }
        _ => {}
    }
}

fn password_ok(s: &str) -> bool {
    (4..=128).contains(&s.len())
        && !is_placeholder_value(s)
        && !s.chars().any(char::is_control)
        && !s.eq_ignore_ascii_case("string")
}

/// Documentation stand-ins: `your-api-key`, `EXAMPLE`, `changeme`...
fn fake_secret(s: &str) -> bool {
    const MARKS: &[&str] = &[
        "your",
        "example",
        "placeholder",
        "dummy",
        "insert",
        "replace_me",
        "redacted",
        "<",
        ">",
    ];
    let lower = s.to_ascii_lowercase();
    MARKS.iter().any(|m| lower.contains(m))
}

/// `Bearer x`, `Basic x`, `Token x`, `AWS4-HMAC-SHA256 Credential=...`: true
/// when the value was an authorization header value (found or not).
fn auth_scheme(scheme: &str, rest: &str, c: &mut Cand) -> bool {
    if scheme.eq_ignore_ascii_case("basic") {
        if basic_credentials(rest) {
            c.offer(DataType::BasicAuth, 96);
        }
        return true;
    }
    if ["bearer", "token", "jwt", "bearer:"]
        .iter()
        .any(|x| scheme.eq_ignore_ascii_case(x))
    {
        if rest.contains(' ') || is_placeholder_value(rest) || fake_secret(rest) {
            return true;
        }
        if let Some((t, conf)) = prefixed_token(rest) {
            c.offer(t, conf);
        } else if token_like(rest) || is_uuid(rest) {
            c.offer(DataType::BearerToken, 92);
        }
        return true;
    }
    if scheme.starts_with("AWS4-HMAC-SHA256") {
        if let Some(akid) = rest
            .split("Credential=")
            .nth(1)
            .and_then(|x| x.split('/').next())
        {
            if is_aws_key_id(akid) {
                c.offer(DataType::AwsAccessKeyId, 96);
            }
        }
        return true;
    }
    false
}

/// `Basic` payload: base64 of `user:password` with a password.
fn basic_credentials(b64: &str) -> bool {
    let Ok(raw) = STANDARD.decode(b64) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&raw) else {
        return false;
    };
    matches!(text.split_once(':'), Some((u, p)) if !u.is_empty() && !p.is_empty() && !text.chars().any(char::is_control))
}

/// Self-identifying tokens, recognised by prefix and exact shape.
fn prefixed_token(s: &str) -> Option<(DataType, u8)> {
    let b = s.as_bytes();
    let all = |x: &[u8], f: fn(&u8) -> bool| !x.is_empty() && x.iter().all(f);
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    let b64url = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
    let lower_hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
    let (first, rest) = (b.get(..2)?, b.get(2..)?);
    match first {
        b"ey" if s.starts_with("eyJ") => decode_jwt(s).map(|_| (DataType::Jwt, 97)),
        b"AK" | b"AS" | b"AB" | b"AC" | b"AG" | b"AI" | b"AN" | b"AR" | b"AP"
            if is_aws_key_id(s) =>
        {
            Some((DataType::AwsAccessKeyId, 96))
        }
        b"AI" if s.starts_with("AIza") && b.len() == 39 && all(b.get(4..)?, b64url) => {
            Some((DataType::GcpApiKey, 96))
        }
        b"AC" if b.len() == 34 && all(rest, lower_hex) => Some((DataType::TwilioAccountSid, 88)),
        b"SK" if b.len() == 34 && all(rest, lower_hex) => Some((DataType::TwilioApiKey, 92)),
        b"SG" if is_sendgrid(s) => Some((DataType::SendgridApiKey, 97)),
        b"gh" | b"gi" => {
            let gh = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
                .iter()
                .any(|p| s.starts_with(p))
                && b.len() == 40
                && all(b.get(4..)?, alnum);
            let pat = s.starts_with("github_pat_")
                && (70..=100).contains(&b.len())
                && all(b.get(11..)?, |c| c.is_ascii_alphanumeric() || *c == b'_');
            (gh || pat).then_some((DataType::GithubToken, 97))
        }
        b"gl" => {
            const PREFIXES: &[&str] = &[
                "glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glsoat-", "glcbt-", "glimt-",
                "glagent-", "gloas-",
            ];
            let p = PREFIXES.iter().find(|p| s.starts_with(**p))?;
            let body = b.get(p.len()..)?;
            ((20..=100).contains(&body.len())
                && all(body, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
                })
                && body.iter().any(u8::is_ascii_digit))
            .then_some((DataType::GitlabToken, 96))
        }
        b"xo" | b"xa" => is_slack_token(s).then_some((DataType::SlackToken, 96)),
        b"sk" | b"rk" | b"pk" | b"wh" => stripe(s),
        _ => None,
    }
}

/// AKIA/ASIA/... + 16 characters of base32 (A-Z, 2-7): 20 in all.
pub fn is_aws_key_id(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA",
        "ASCA",
    ];
    let b = s.as_bytes();
    b.len() == 20
        && PREFIXES.iter().any(|p| s.starts_with(p))
        && b.iter()
            .skip(4)
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c))
}

/// 40 characters of base64 with upper, lower and digits (not a hex digest).
fn is_aws_secret(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 40
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'/' || *c == b'+')
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit)
}

/// 88 characters of base64 decoding to a 64-byte key.
fn is_azure_storage_key(s: &str) -> bool {
    s.len() == 88 && s.ends_with("==") && STANDARD.decode(s).is_ok_and(|k| k.len() == 64)
}

fn is_sendgrid(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>, n: usize| {
        p.is_some_and(|p| {
            p.len() == n
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
    };
    parts.next() == Some("SG")
        && ok(parts.next(), 22)
        && ok(parts.next(), 43)
        && parts.next().is_none()
}

/// xoxb-/xoxp-/xoxa-/xoxr-/xoxs-/xoxo-/xoxe- and xapp- tokens: dash-separated
/// groups, the first of digits.
fn is_slack_token(s: &str) -> bool {
    let rest = [
        "xoxb-",
        "xoxp-",
        "xoxa-",
        "xoxr-",
        "xoxs-",
        "xoxo-",
        "xoxe-",
        "xoxe.xoxp-",
        "xapp-",
    ]
    .iter()
    .find_map(|p| s.strip_prefix(p));
    let Some(rest) = rest else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    (20..=250).contains(&rest.len())
        && groups.len() >= 3
        && groups
            .first()
            .is_some_and(|g| !g.is_empty() && g.bytes().all(|c| c.is_ascii_digit()))
        && groups
            .iter()
            .all(|g| !g.is_empty() && g.bytes().all(|c| c.is_ascii_alphanumeric()))
}

fn stripe(s: &str) -> Option<(DataType, u8)> {
    let (conf, body) = if let Some(b) = s.strip_prefix("whsec_") {
        (95, b)
    } else {
        let (kind, rest) = s.split_once('_')?;
        let (mode, body) = rest.split_once('_')?;
        if mode != "live" && mode != "test" {
            return None;
        }
        let conf = match kind {
            "sk" | "rk" => 97,
            "pk" => 80,
            _ => return None,
        };
        (conf, body)
    };
    ((20..=250).contains(&body.len()) && body.bytes().all(|c| c.is_ascii_alphanumeric()))
        .then_some((DataType::StripeKey, conf))
}

/// What a decoded JWT says, without claim values (they may be personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtInfo {
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
    /// Claim names in the payload, sorted.
    pub claims: Vec<String>,
    /// `exp` claim (seconds since the epoch).
    pub exp: Option<i64>,
    /// The signature part is non-empty.
    pub signed: bool,
}

/// Decodes a compact JWS: header with `alg`, payload a JSON object.
pub fn decode_jwt(token: &str) -> Option<JwtInfo> {
    if token.len() > 16 * 1024 {
        return None;
    }
    let crate::jwt::Parts {
        header,
        claims,
        signature: sig,
        ..
    } = crate::jwt::Parts::split(token)?;
    if !sig
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'=')
    {
        return None;
    }
    let alg = header.get("alg")?.as_str()?.to_string();
    let text = |k: &str| header.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Some(JwtInfo {
        typ: text("typ"),
        kid: text("kid"),
        alg,
        exp: claims.get("exp").and_then(serde_json::Value::as_i64),
        claims: claims.keys().cloned().collect(),
        signed: !sig.is_empty(),
    })
}

/// `-----BEGIN ... PRIVATE KEY-----` followed by a key body.
fn is_pem_private_key(s: &str) -> bool {
    let Some(start) = s.find("-----BEGIN ") else {
        return false;
    };
    let after = s.get(start + 11..).unwrap_or_default();
    let Some(end) = after.find("-----") else {
        return false;
    };
    let label = after.get(..end).unwrap_or_default();
    let body = after.get(end + 5..).unwrap_or_default();
    let body_chars = body
        .bytes()
        .take_while(|&c| c != b'-')
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .count();
    (label.ends_with("PRIVATE KEY") || label == "PGP PRIVATE KEY BLOCK") && body_chars >= 32
}

const DB_SCHEMES: &[&str] = &[
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "mongodb",
    "mongodb+srv",
    "redis",
    "rediss",
    "amqp",
    "amqps",
    "mssql",
    "sqlserver",
    "oracle",
    "cockroachdb",
    "clickhouse",
    "cassandra",
    "couchdb",
    "neo4j",
    "neo4j+s",
    "bolt",
    "memcached",
    "kafka",
    "nats",
    "elasticsearch",
    "db2",
    "snowflake",
    "mysqlx",
    "postgis",
    "timescaledb",
];

/// URL with a password in its user info (or a `password=` parameter for
/// database URLs): database URLs apart from the rest.
fn url_credentials(s: &str) -> Option<(DataType, u8)> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme
        .strip_prefix("jdbc:")
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    if !scheme
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-' | b':'))
        || scheme.is_empty()
    {
        return None;
    }
    if scheme == "https" && rest.starts_with("hooks.slack.com/") {
        return slack_webhook(rest).then_some((DataType::SlackWebhook, 97));
    }
    let is_db = DB_SCHEMES.contains(&scheme.as_str())
        || scheme.starts_with("sqlserver")
        || scheme.starts_with("oracle");
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or_default();
    let password_in_userinfo = authority.rsplit_once('@').is_some_and(|(userinfo, host)| {
        !host.is_empty()
            && userinfo
                .split_once(':')
                .is_some_and(|(_, p)| !p.is_empty() && !is_placeholder_value(p) && !fake_secret(p))
    });
    let password_param = is_db
        && rest.split(['?', '&', ';']).any(|kv| {
            kv.split_once('=').is_some_and(|(k, v)| {
                (k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pwd"))
                    && !v.is_empty()
                    && !is_placeholder_value(v)
            })
        });
    if !(password_in_userinfo || password_param) {
        return None;
    }
    Some(if is_db {
        (DataType::DatabaseUrl, 97)
    } else {
        (DataType::UrlCredentials, 92)
    })
}

/// `hooks.slack.com/services/T…/B…/<24 alphanumerics>`.
fn slack_webhook(rest: &str) -> bool {
    let Some(path) = rest.strip_prefix("hooks.slack.com/services/") else {
        return false;
    };
    let parts: Vec<&str> = path.split('/').collect();
    let id = |p: Option<&&str>, first: char| {
        p.is_some_and(|p| {
            p.starts_with(first)
                && p.len() >= 9
                && p.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
    };
    parts.len() == 3
        && id(parts.first(), 'T')
        && id(parts.get(1), 'B')
        && parts
            .get(2)
            .is_some_and(|s| s.len() == 24 && s.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// `key=value;` connection strings: Azure storage / Service Bus with their
/// keys, or database (ADO.NET, ODBC) strings with a password.
fn connection_string(s: &str) -> Option<(DataType, u8)> {
    let mut azure_key = false;
    let mut azure = false;
    let mut password = false;
    let mut server = false;
    for kv in s.split(';') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        match k.as_str() {
            "accountkey" | "sharedaccesskey" => azure_key = v.len() >= 20,
            "defaultendpointsprotocol" | "accountname" | "sharedaccesskeyname" | "endpoint" => {
                azure = true
            }
            "password" | "pwd" => password = !v.is_empty() && !is_placeholder_value(v),
            "server" | "data source" | "host" | "hostname" | "address" | "addr" => server = true,
            _ => {}
        }
    }
    if azure && azure_key {
        return Some((DataType::AzureConnectionString, 97));
    }
    (password && server).then_some((DataType::DatabaseUrl, 92))
}

/// Confidence that `text` (a query string or URL) is an Azure shared access
/// signature: `sv=<date>`, a `sig=` of real length, and an expiry or
/// permission parameter.
pub fn azure_sas(text: &str) -> Option<u8> {
    if !text.contains("sig=") || !text.contains("sv=") {
        return None;
    }
    let query = text.split_once('?').map_or(text, |(_, q)| q);
    let (mut sv, mut sig, mut other) = (false, false, false);
    for kv in query.split('&') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        match k {
            "sv" => sv = v.len() >= 10 && v.as_bytes().get(4) == Some(&b'-'),
            "sig" => sig = v.len() >= 20,
            "se" | "sp" | "srt" | "ss" | "sr" | "st" | "spr" => other = true,
            _ => {}
        }
    }
    (sv && sig && other).then_some(95)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is, not};
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn jwt() {
        is("", JWT, DataType::Jwt);
        is("Authorization", &format!("Bearer {JWT}"), DataType::Jwt);
        let info = decode_jwt(JWT).unwrap();
        assert_eq!(info.alg, "HS256");
        assert_eq!(info.typ.as_deref(), Some("JWT"));
        assert_eq!(info.claims, vec!["iat", "name", "sub"]);
        assert!(info.signed);
        not("", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig");
        not("", "eyJub3RhbGciOjF9.eyJhIjoxfQ.sig");
        not("", "a.b.c");
    }

    #[test]
    fn cloud_keys() {
        is("", "AKIAIOSFODNN7EXAMPLE", DataType::AwsAccessKeyId);
        is(
            "account_number",
            "ASIAY34FZKBOKMUTVV7A",
            DataType::AwsAccessKeyId,
        );
        not("account_number", "AKIA1234567890ABCDEF"); // 0, 1, 8, 9 are no base32
        not("", "AKIAIOSFODNN7EXAMPL");
        is(
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8r4Tk2Lm",
            DataType::AwsSecretAccessKey,
        );
        is(
            "AWS_SECRET",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8r4Tk2Lm",
            DataType::AwsSecretAccessKey,
        );
        not("", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8r4Tk2Lm");
        not(
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
        ); // documentation value
        not("commit", "9fceb02d0ae598e95dc970b74767f19372d61af8");
        is(
            "",
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
            DataType::GcpApiKey,
        );
        not("", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGew");
    }

    #[test]
    fn azure() {
        let key = STANDARD.encode([7u8; 64]);
        is("AccountKey", &key, DataType::AzureStorageKey);
        not("", &key);
        is(
            "",
            &format!("DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={key};EndpointSuffix=core.windows.net"),
            DataType::AzureConnectionString,
        );
        is(
            "",
            "https://acme.blob.core.windows.net/c/f.txt?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z&sig=abcdEFGHijklMNOPqrst%2Fuvwx%3D",
            DataType::AzureSasToken,
        );
        not("", "https://example.com/?sv=1&sig=short");
    }

    #[test]
    fn saas_tokens() {
        is(
            "",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            DataType::GithubToken,
        );
        is(
            "",
            &format!("github_pat_11ABCDEFG0{}", "a1B2c3D4e5".repeat(7)),
            DataType::GithubToken,
        );
        not("", "ghp_short");
        is("", "glpat-xYz12AbCdEfGhIjKlMnO", DataType::GitlabToken);
        not("", "glpat-short");
        is(
            "",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            DataType::SlackToken,
        );
        not("", "xoxb-not-a-token");
        is(
            "webhook",
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            DataType::SlackWebhook,
        );
        is("", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", DataType::StripeKey);
        is("", "rk_test_51H8x2eKq9Zz0aBcDeFgHiJk", DataType::StripeKey);
        not("", "sk_prod_4eC39HqLyjWDarjtT1zdp7dc");
        is(
            "",
            "SK0123456789abcdef0123456789abcdef",
            DataType::TwilioApiKey,
        );
        is(
            "",
            "AC0123456789abcdef0123456789abcdef",
            DataType::TwilioAccountSid,
        );
        not("", "AC0123456789ABCDEF0123456789ABCDEF");
        is(
            "",
            "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",
            DataType::SendgridApiKey,
        );
        not("", "SG.short.token");
    }

    #[test]
    fn pem_and_urls() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----";
        is("", pem, DataType::PemPrivateKey);
        not("", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1Lf\n-----END PUBLIC KEY-----");
        not("", "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQsw\n-----END CERTIFICATE-----");
        is(
            "",
            "postgres://app:s3cretPw@db.internal:5432/orders",
            DataType::DatabaseUrl,
        );
        is(
            "",
            "mongodb+srv://admin:hunter22@cluster0.example.net/test",
            DataType::DatabaseUrl,
        );
        is(
            "",
            "jdbc:mysql://db.local:3306/shop?user=app&password=Xy9",
            DataType::DatabaseUrl,
        );
        is(
            "connection_string",
            "Server=db1;Database=shop;User Id=sa;Password=P@ssw0rd1;",
            DataType::DatabaseUrl,
        );
        not("", "postgres://db.internal:5432/orders");
        not("", "postgres://app@db.internal/orders");
        not("", "postgres://app:${DB_PASSWORD}@db/orders");
        is(
            "",
            "https://bob:pa55word@example.com/private",
            DataType::UrlCredentials,
        );
        not("", "https://example.com/a:b@c");
    }

    #[test]
    fn auth_headers() {
        is(
            "authorization",
            "Basic dXNlcjpwYXNzd29yZA==",
            DataType::BasicAuth,
        );
        not("authorization", "Basic dXNlcm5vcGFzcw==");
        is(
            "authorization",
            "Bearer 8f2b1c9d0e7a4b3c6d5e8f9a0b1c2d3e",
            DataType::BearerToken,
        );
        not("authorization", "Bearer null");
        not("authorization", "Bearer ${TOKEN}");
        is(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
            DataType::AwsAccessKeyId,
        );
    }

    #[test]
    fn keyed_secrets() {
        is("password", "hunter22", DataType::Password);
        is("비밀번호", "qwer1234!", DataType::Password);
        not("password", "********");
        not("password", "null");
        not("password_policy", "min8chars");
        is("client_secret", "q8F2kLm0Qz7Rt2WxB4nV", DataType::Secret);
        is(
            "x-api-key",
            "3f9a1c2b-7d4e-4f8a-9b6c-1d2e3f4a5b6c",
            DataType::Secret,
        );
        not("api_key", "your-api-key-here");
        not("api_key", "short");
        is(
            "refresh_token",
            "def50200a1b2c3d4e5f60718293a4b5c6d7e8f90",
            DataType::BearerToken,
        );
        not("next_page_token", "CiAKGjBpNDd2Nmp2Zml2cXRpYjN0MTVh");
        not("csrf_token", "a8F3kLm0Qz7Rt2WxB4nVq8F2");
        is(
            "JSESSIONID",
            "8E1C2B3A4D5F6E7A8B9C0D1E2F3A4B5C",
            DataType::SessionToken,
        );
        is(
            "connect.sid",
            "s%3AaBcDeFgHiJkLmNoP.qRsTuVwXyZ0123456789",
            DataType::SessionToken,
        );
        not("session", "true");
        not("session", "deleted");
    }
}
