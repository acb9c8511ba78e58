//! Sensitive-data classification: finds personal data, financial numbers,
//! Korean identifiers, network identifiers and credentials in an exchange's
//! query string, headers, cookies and bodies, and redacts them for evidence.
//!
//! A finding combines two signals: the key the value sits under (normalised by
//! `keys`: camelCase, snake_case, kebab-case and Korean key names alike) and a
//! validator for the value (checksums, date rules, issuer ranges, decoded
//! structure), one file per family of types. Together they give a confidence
//! 0-100; only findings at or above `min_confidence` are reported. Types that
//! identify themselves (a JWT, an AWS key id, a PEM key, an IBAN with a valid
//! check) are reported on their value alone; weak ones (bank accounts,
//! passports, names) only under a matching key; look-alike contexts (`order_id`,
//! `version`, `timestamp`) lower the confidence of everything that is not
//! self-identifying.
//!
//! This module owns the types, the confidence rules and the walk over bodies
//! (JSON bounded by depth, bytes and value count; forms; multipart text fields;
//! pattern-only scanning of other text). It never keeps a value: findings carry
//! the type, where it was and how sure we are; `redact_*` give evidence text
//! with every sensitive value replaced by `[REDACTED:<type>:<keyed hash>]`.
//! It does not decide what a finding means (detectors do) and does not touch
//! the pipeline.

mod body;
mod contact;
mod financial;
pub mod keys;
mod korea;
mod network;
mod personal;
mod redact;
pub mod secrets;
mod value;

use crate::config::ClassifySettings;
use crate::exchange::{Exchange, Headers};
use keys::Hint;
use serde::Serialize;
pub use value::Val;

/// Longest value examined; longer ones (whole documents in one field) are
/// scanned as free text instead.
const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Distinct findings kept per message side; more are counted and dropped.
const MAX_FINDINGS_PER_SIDE: usize = 256;
/// Distinct JSON paths kept in a body shape; more are counted and dropped.
pub const MAX_SHAPE_FIELDS: usize = 256;
/// Longest JSON path kept in a finding or shape; longer paths are cut.
const MAX_PATH_BYTES: usize = 256;
/// Free-text findings need at least this confidence whatever the setting:
/// without a key only strongly self-identifying values are trusted.
const FREE_TEXT_MIN_CONFIDENCE: u8 = 80;

/// Broad class of a data type, for policies and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Personal data: contact details, identity documents, demographics.
    Pii,
    /// Payment cards and bank identifiers.
    Financial,
    /// Passwords, keys, tokens, connection strings.
    Credential,
    /// Addresses identifying hosts and devices.
    Network,
    /// Korean personal identifiers (PIPA unique identification information and the like).
    Korea,
}

impl Category {
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Pii => "pii",
            Category::Financial => "financial",
            Category::Credential => "credential",
            Category::Network => "network",
            Category::Korea => "korea",
        }
    }
}

macro_rules! data_types {
    ($($(#[$m:meta])* $v:ident = $name:literal, $cat:ident, $selfid:literal;)*) => {
        /// A kind of sensitive data. `as_str` names are stable: events and the
        /// inventory store them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DataType { $($(#[$m])* $v,)* }

        impl DataType {
            /// Every type, in declaration order.
            pub const ALL: &'static [DataType] = &[$(DataType::$v),*];

            pub const fn as_str(self) -> &'static str {
                match self { $(DataType::$v => $name,)* }
            }

            pub const fn category(self) -> Category {
                match self { $(DataType::$v => Category::$cat,)* }
            }

            /// The value alone proves the type (a structure or prefix no
            /// innocent value has), so look-alike key contexts do not lower it.
            pub const fn self_identifying(self) -> bool {
                match self { $(DataType::$v => $selfid,)* }
            }

            /// The type named `name` (its `as_str`).
            pub fn from_name(name: &str) -> Option<DataType> {
                DataType::ALL.iter().copied().find(|t| t.as_str() == name)
            }
        }
    };
}

data_types! {
    /// RFC 5321 address with a real-looking domain.
    Email = "email", Pii, true;
    /// International number in E.164 form, country code and length checked.
    PhoneNumber = "phone_number", Pii, false;
    /// Korean mobile number 01x-xxxx-xxxx (or +82 10 ...).
    KrMobileNumber = "kr_mobile_number", Korea, false;
    /// 주민등록번호: date and gender-digit rules; check digit raises confidence.
    KrRrn = "kr_rrn", Korea, false;
    /// 사업자등록번호 with its check digit.
    KrBusinessRegNo = "kr_business_reg_no", Korea, false;
    /// 외국인등록번호: RRN layout with gender digit 5-8.
    KrForeignerRegNo = "kr_foreigner_reg_no", Korea, false;
    /// Korean passport number under a passport key.
    KrPassport = "kr_passport", Korea, false;
    /// Korean driver's licence number (region code, 2-2-6-2 digits).
    KrDriverLicense = "kr_driver_license", Korea, false;
    /// Korean personal name (surname + given name in Hangul) under a name key.
    KrName = "kr_name", Korea, false;
    /// Payment card number: Luhn and issuer (IIN) ranges.
    CreditCard = "credit_card", Financial, false;
    /// IBAN: per-country length and mod-97 check.
    Iban = "iban", Financial, true;
    /// Bank account number under an account key.
    BankAccount = "bank_account", Financial, false;
    /// US ABA routing number (checksum) under a routing key.
    UsRoutingNumber = "us_routing_number", Financial, false;
    /// Card verification code under a CVV/CVC key.
    CardCvv = "card_cvv", Financial, false;
    /// Card expiry date under an expiry key.
    CardExpiry = "card_expiry", Financial, false;
    /// US social security number with the SSA's invalid-area rules.
    UsSsn = "us_ssn", Pii, false;
    /// Passport number (non-Korean formats) under a passport key.
    PassportNumber = "passport_number", Pii, false;
    /// Date of birth under a birth-date key.
    DateOfBirth = "date_of_birth", Pii, false;
    /// Street address under an address key.
    StreetAddress = "street_address", Pii, false;
    /// Postal code under a zip/postal key.
    PostalCode = "postal_code", Pii, false;
    /// Person's name (Latin script) under a name key.
    PersonName = "person_name", Pii, false;
    /// Gender or sex under a gender key.
    Gender = "gender", Pii, false;
    /// IPv4 address (not a version string).
    Ipv4 = "ipv4", Network, false;
    /// IPv6 address.
    Ipv6 = "ipv6", Network, false;
    /// Ethernet MAC address.
    MacAddress = "mac_address", Network, false;
    /// JSON Web Token whose header and claims decode.
    Jwt = "jwt", Credential, true;
    /// AWS access key id (AKIA/ASIA... + 16 base32 characters).
    AwsAccessKeyId = "aws_access_key_id", Credential, true;
    /// AWS secret access key (40 base64 characters) under an AWS secret key.
    AwsSecretAccessKey = "aws_secret_access_key", Credential, false;
    /// Google Cloud API key (AIza...).
    GcpApiKey = "gcp_api_key", Credential, true;
    /// Azure storage account key (64 bytes, base64) under a key name.
    AzureStorageKey = "azure_storage_key", Credential, false;
    /// Azure shared access signature (sv=...&sig=...).
    AzureSasToken = "azure_sas_token", Credential, true;
    /// Azure storage or Service Bus connection string with its key.
    AzureConnectionString = "azure_connection_string", Credential, true;
    /// GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).
    GithubToken = "github_token", Credential, true;
    /// GitLab token (glpat- and the other gl*- prefixes).
    GitlabToken = "gitlab_token", Credential, true;
    /// Slack API token (xoxb-, xoxp-, xapp- ...).
    SlackToken = "slack_token", Credential, true;
    /// Slack incoming-webhook URL.
    SlackWebhook = "slack_webhook", Credential, true;
    /// Stripe secret, restricted or publishable key, or webhook secret.
    StripeKey = "stripe_key", Credential, true;
    /// Twilio API key SID (SK + 32 hex).
    TwilioApiKey = "twilio_api_key", Credential, true;
    /// Twilio account SID (AC + 32 hex).
    TwilioAccountSid = "twilio_account_sid", Credential, true;
    /// SendGrid API key (SG.x.y).
    SendgridApiKey = "sendgrid_api_key", Credential, true;
    /// PEM-armoured private key.
    PemPrivateKey = "pem_private_key", Credential, true;
    /// Database connection URL with a password in it.
    DatabaseUrl = "database_url", Credential, true;
    /// Other URL (http, ftp, ...) carrying user:password.
    UrlCredentials = "url_credentials", Credential, true;
    /// HTTP Basic credentials (`Basic base64(user:password)`).
    BasicAuth = "basic_auth", Credential, true;
    /// Opaque bearer / access / refresh token.
    BearerToken = "bearer_token", Credential, false;
    /// Session identifier in a session cookie or key.
    SessionToken = "session_token", Credential, false;
    /// Password under a password key.
    Password = "password", Credential, false;
    /// API key, client secret or other secret under a secret-like key.
    Secret = "secret", Credential, false;
}

impl Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where in a message a finding was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Query,
    Header,
    Cookie,
    Body,
    Path,
}

impl Location {
    pub const fn as_str(self) -> &'static str {
        match self {
            Location::Query => "query",
            Location::Header => "header",
            Location::Cookie => "cookie",
            Location::Body => "body",
            Location::Path => "path",
        }
    }
}

/// One kind of sensitive data at one place in a message. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub data_type: DataType,
    pub location: Location,
    /// JSON path (`user.cards[].number`, arrays as `[]`, `$` for a scalar
    /// body), header name (lower case), cookie or parameter name, or
    /// `path[i]` for the i-th path segment.
    pub field: String,
    /// 0-100.
    pub confidence: u8,
    /// Values found under this field (every element of an array counts):
    /// a 400-record export is 400 values, not one.
    pub values: u32,
}

/// JSON type of a body field, refined for common string formats. The
/// inventory's profiles and OpenAPI schemas use the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Bool,
    Null,
    Object,
    Array,
    Uuid,
    Email,
    DateTime,
    Date,
    Uri,
    Ip,
}

impl FieldType {
    pub const fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Null => "null",
            FieldType::Object => "object",
            FieldType::Array => "array",
            FieldType::Uuid => "uuid",
            FieldType::Email => "email",
            FieldType::DateTime => "date_time",
            FieldType::Date => "date",
            FieldType::Uri => "uri",
            FieldType::Ip => "ip",
        }
    }
}

/// The fields of a JSON or form body: path (arrays as `[]`) and the type first
/// seen there (a later non-null type replaces null). At most
/// `MAX_SHAPE_FIELDS` entries, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BodyShape {
    pub fields: Vec<(String, FieldType)>,
}

crate::counters! {
    /// What classification did and what its caps skipped.
    pub struct ClassifyStats {
        /// Leaf values (strings, numbers, parameters, header values) examined.
        values_examined,
        /// Bodies scanned as JSON, as forms (urlencoded or multipart), as free text.
        bodies_json,
        bodies_form,
        bodies_text,
        /// JSON bodies that did not parse to the end (truncated or invalid);
        /// what came before the error was still classified.
        json_errors,
        /// Bodies with values nested deeper than `max_json_depth` (skipped).
        limited_depth,
        /// Bodies longer than `max_body_bytes` (the rest skipped).
        limited_bytes,
        /// Bodies with more values than `max_values_per_body` (the rest skipped).
        limited_values,
        /// Findings dropped past the per-message cap.
        findings_dropped,
        /// Body shape fields dropped past `MAX_SHAPE_FIELDS`.
        shape_fields_dropped,
    }
}

/// Everything found in one exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeClassification {
    pub request: Vec<Finding>,
    pub response: Vec<Finding>,
    pub request_shape: Option<BodyShape>,
    pub response_shape: Option<BodyShape>,
    /// A cap (depth, bytes, values, findings) cut the scan short somewhere.
    pub limited: bool,
    pub stats: ClassifyStats,
}

impl ExchangeClassification {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// Best candidate type of one value; families offer, the highest confidence wins.
pub(crate) struct Cand {
    hint: Hint,
    best: Option<(DataType, u8)>,
}

impl Cand {
    fn new(hint: Hint) -> Cand {
        Cand { hint, best: None }
    }

    /// Offers `t` at `conf`; a look-alike key context lowers types that are not
    /// self-identifying by 40.
    pub(crate) fn offer(&mut self, t: DataType, conf: u8) {
        let conf = if self.hint.is_lookalike_context() && !t.self_identifying() {
            conf.saturating_sub(40)
        } else {
            conf
        };
        if self.best.is_none_or(|(_, c)| conf > c) {
            self.best = Some((t, conf.min(100)));
        }
    }
}

/// The classifier: settings and the redaction key, built once and shared.
#[derive(Clone)]
pub struct Classifier {
    settings: ClassifySettings,
    redaction_key: [u8; 32],
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("settings", &self.settings.enabled)
            .field("redaction_key", &"<hidden>")
            .finish()
    }
}

impl Classifier {
    /// Settings are expected validated (`Settings::validate`); a malformed
    /// `redaction_key_hex` falls back to a random key like an empty one.
    pub fn new(settings: &ClassifySettings) -> Classifier {
        let redaction_key = parse_key_hex(&settings.redaction_key_hex).unwrap_or_else(random_key);
        let mut settings = settings.clone();
        settings.redaction_key_hex = String::new();
        Classifier {
            settings,
            redaction_key,
        }
    }

    pub fn settings(&self) -> &ClassifySettings {
        &self.settings
    }

    /// One value with its key context (`key` may be ""). Returns the most
    /// likely type if its confidence reaches `min_confidence`. The location
    /// is `Body` and the field is `key`.
    pub fn classify_value(&self, key: &str, value: &str) -> Option<Finding> {
        let (t, c) = self.classify_raw(keys::hint(key), value)?;
        Some(Finding {
            data_type: t,
            location: Location::Body,
            field: key.to_string(),
            confidence: c,
            values: 1,
        })
    }

    /// Type and confidence of `value` under `hint`, thresholded.
    pub(crate) fn classify_raw(&self, hint: Hint, value: &str) -> Option<(DataType, u8)> {
        let v = value.trim();
        if v.is_empty() || v.len() > MAX_VALUE_BYTES {
            return None;
        }
        let (t, c) = detect(hint, v)?;
        (c >= self.settings.min_confidence).then_some((t, c))
    }

    /// A token of free text (no key): only confident findings.
    pub(crate) fn classify_free(&self, token: &str) -> Option<(DataType, u8)> {
        let min = self.settings.min_confidence.max(FREE_TEXT_MIN_CONFIDENCE);
        let (t, c) = detect(Hint::None, token)?;
        (c >= min).then_some((t, c))
    }

    /// Headers and body (content type, bytes) of one message into `sink`:
    /// the body's shape, and whether a limit cut the scan short.
    fn scan_message(
        &self,
        headers: &crate::exchange::Headers,
        (content_type, body): (Option<&str>, &[u8]),
        sink: &mut Sink,
        stats: &mut ClassifyStats,
    ) -> (Option<BodyShape>, bool) {
        self.scan_headers(headers, sink, stats);
        let scan = body::scan(self, content_type, body, sink, stats);
        stats.findings_dropped += sink.dropped;
        (scan.shape, scan.limited || sink.dropped > 0)
    }

    /// Everything found in one exchange: the request's path segments, query
    /// string, headers (Authorization, Cookie, API-key headers ...) and body;
    /// the response's headers (Set-Cookie ...) and body.
    pub fn classify_exchange(&self, exchange: &Exchange) -> ExchangeClassification {
        let mut out = ExchangeClassification::default();
        if !self.settings.enabled {
            return out;
        }
        let mut stats = ClassifyStats::default();
        let mut limited = false;
        if let Some(req) = &exchange.request {
            let mut sink = Sink::default();
            self.scan_uri(&req.uri, Location::Query, None, &mut sink, &mut stats);
            let body = (req.content_type.as_deref(), req.body.data.as_slice());
            let (shape, cut) = self.scan_message(&req.headers, body, &mut sink, &mut stats);
            limited |= cut;
            out.request_shape = shape;
            out.request = sink.findings;
        }
        if let Some(resp) = &exchange.response {
            let mut sink = Sink::default();
            let body = (resp.content_type.as_deref(), resp.body.data.as_slice());
            let (shape, cut) = self.scan_message(&resp.headers, body, &mut sink, &mut stats);
            limited |= cut;
            out.response_shape = shape;
            out.response = sink.findings;
        }
        out.limited = limited;
        out.stats = stats;
        out
    }

    /// Path segments (free-text rules) and query parameters of a request
    /// target. `header` names the header when the URI came from one
    /// (Referer, Location): findings are then reported under it.
    fn scan_uri(
        &self,
        uri: &str,
        query_loc: Location,
        header: Option<&str>,
        sink: &mut Sink,
        stats: &mut ClassifyStats,
    ) {
        let uri = uri.split('#').next().unwrap_or_default();
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        for (i, seg) in path
            .split('/')
            .filter(|s| !s.is_empty())
            .enumerate()
            .take(32)
        {
            let seg = value::percent_decode(seg, false);
            stats.values_examined += 1;
            if let Some((t, c)) = self.classify_free(&seg) {
                match header {
                    Some(h) => sink.push(t, Location::Header, || h.to_string(), c),
                    None => sink.push(t, Location::Path, || format!("path[{i}]"), c),
                }
            }
        }
        if let Some(q) = query {
            self.scan_pairs(q, b'&', query_loc, header, sink, stats);
        }
    }

    /// `name=value` pairs separated by `sep` (query strings, form bodies,
    /// cookies), percent-decoded unless they are cookies.
    fn scan_pairs(
        &self,
        text: &str,
        sep: u8,
        loc: Location,
        header: Option<&str>,
        sink: &mut Sink,
        stats: &mut ClassifyStats,
    ) {
        if let Some(c) = secrets::azure_sas(text) {
            let field = header.unwrap_or("sig");
            sink.push(DataType::AzureSasToken, loc, || field.to_string(), c);
        }
        let decode = loc != Location::Cookie;
        for pair in text.split(sep as char).take(1024) {
            let pair = pair.trim_start();
            let (name, val) = pair.split_once('=').unwrap_or(("", pair));
            if val.is_empty() {
                continue;
            }
            let name = if decode {
                value::percent_decode(name, true)
            } else {
                name.into()
            };
            let val = if decode {
                value::percent_decode(val, true)
            } else {
                val.into()
            };
            stats.values_examined += 1;
            let found = if name.is_empty() {
                self.classify_free(&val)
            } else {
                self.classify_raw(keys::hint(&name), &val)
            };
            if let Some((t, c)) = found {
                let field = header.unwrap_or(&name);
                sink.push(t, loc, || cap_path(field), c);
            }
        }
    }

    fn scan_headers(&self, headers: &Headers, sink: &mut Sink, stats: &mut ClassifyStats) {
        for (name, val) in headers.iter() {
            let Ok(val) = std::str::from_utf8(val) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            match keys::header_kind(name) {
                keys::HeaderKind::Skip => {}
                keys::HeaderKind::Cookie => {
                    self.scan_pairs(val, b';', Location::Cookie, None, sink, stats)
                }
                keys::HeaderKind::SetCookie => {
                    let first = val.split(';').next().unwrap_or_default();
                    self.scan_pairs(first, b';', Location::Cookie, None, sink, stats)
                }
                keys::HeaderKind::Uri => {
                    let lower = name.to_ascii_lowercase();
                    self.scan_uri(val, Location::Header, Some(&lower), sink, stats)
                }
                keys::HeaderKind::Value => {
                    stats.values_examined += 1;
                    if let Some((t, c)) = self.classify_raw(keys::hint(name), val) {
                        sink.push(t, Location::Header, || name.to_ascii_lowercase(), c);
                    }
                }
            }
        }
    }

    /// `[REDACTED:<type>:<12 hex of the keyed BLAKE3 hash of the value>]`.
    pub fn redaction_tag(&self, t: DataType, value: &str) -> String {
        let hash = blake3::keyed_hash(&self.redaction_key, value.as_bytes());
        let hex = hash.to_hex();
        format!("[REDACTED:{}:{}]", t.as_str(), &hex.as_str()[..12])
    }

    /// Text (a header value, query string or URI) with every sensitive value
    /// replaced by its redaction tag. `key_context` is the header or field
    /// name the text came from ("" if none).
    pub fn redact_text(&self, key_context: &str, text: &str) -> String {
        redact::text(self, key_context, text)
    }

    /// The exchange as the output may show it: the target, its decoded path
    /// and query and every header value redacted like evidence, and the
    /// kept bodies too when `bodies` (else they are not printed anyway).
    /// Header fields that never carry a secret (`Content-Type`, `Host`,
    /// `Date`, ... the classifier's skip list) are kept as sent.
    pub fn redact_exchange(&self, e: &mut crate::exchange::Exchange, bodies: bool) {
        use crate::exchange::{Body, Headers, Text};
        let text = |field: &mut Text| {
            let redacted = self.redact_text("", field);
            if redacted != field.as_str() {
                *field = Text::from(redacted);
            }
        };
        let headers = |h: &mut Headers| {
            h.replace_values(|name, value| {
                let name = std::str::from_utf8(name).ok()?;
                if keys::header_kind(name) == keys::HeaderKind::Skip {
                    return None;
                }
                let value = String::from_utf8_lossy(value);
                let redacted = self.redact_text(name, &value);
                (redacted != value).then_some(redacted)
            })
        };
        let body = |content_type: Option<&str>, b: &mut Body| {
            if bodies && !b.data.is_empty() {
                b.data = self.redact_body(content_type, &b.data).into_bytes();
            }
        };
        if let Some(r) = e.request.as_mut() {
            let uri_was = r.uri.clone();
            text(&mut r.uri);
            // The decoded path and query are the target's own text when it
            // has no percent-escapes: then the target's redaction covers them.
            let escaped = uri_was.contains('%') || uri_was.contains('+');
            if escaped || r.uri != uri_was {
                text(&mut r.path);
                if let Some(q) = r.query.as_mut() {
                    text(q);
                }
            }
            headers(&mut r.headers);
            body(r.content_type.as_deref(), &mut r.body);
        }
        if let Some(r) = e.response.as_mut() {
            headers(&mut r.headers);
            body(r.content_type.as_deref(), &mut r.body);
        }
    }

    /// A body for evidence: JSON is re-serialised with sensitive values
    /// replaced, form bodies keep their layout, other text has pattern matches
    /// replaced. At most `max_body_bytes` of it, with a note when cut.
    pub fn redact_body(&self, content_type: Option<&str>, body: &[u8]) -> String {
        redact::body(self, content_type, body)
    }
}

/// The most likely type of a trimmed, non-empty value under `hint`, before
/// thresholding.
fn detect(hint: Hint, v: &str) -> Option<(DataType, u8)> {
    // A UUID is an identifier, whatever else it resembles; only credential
    // keys make one sensitive (session ids and API keys are often UUIDs).
    if value::is_uuid(v) && !hint.is_credential() {
        return None;
    }
    let val = Val::new(v);
    let mut cand = Cand::new(hint);
    secrets::detect(&val, hint, &mut cand);
    contact::detect(&val, hint, &mut cand);
    financial::detect(&val, hint, &mut cand);
    korea::detect(&val, hint, &mut cand);
    network::detect(&val, hint, &mut cand);
    personal::detect(&val, hint, &mut cand);
    cand.best
}

/// Findings of one message side, one per (type, location, field), keeping the
/// highest confidence, at most `MAX_FINDINGS_PER_SIDE`.
#[derive(Default)]
pub(crate) struct Sink {
    findings: Vec<Finding>,
    dropped: u64,
}

impl Sink {
    pub(crate) fn push(
        &mut self,
        t: DataType,
        loc: Location,
        field: impl FnOnce() -> String,
        conf: u8,
    ) {
        let field = field();
        if let Some(f) = self
            .findings
            .iter_mut()
            .find(|f| f.data_type == t && f.location == loc && f.field == field)
        {
            f.confidence = f.confidence.max(conf);
            f.values = f.values.saturating_add(1);
            return;
        }
        if self.findings.len() >= MAX_FINDINGS_PER_SIDE {
            self.dropped += 1;
            return;
        }
        self.findings.push(Finding {
            data_type: t,
            location: loc,
            field,
            confidence: conf,
            values: 1,
        });
    }
}

/// `s` cut to `MAX_PATH_BYTES` on a character boundary; `$` for an empty
/// name (`=value` pairs, `{"": ...}`), so a field is never empty.
pub(crate) fn cap_path(s: &str) -> String {
    if s.is_empty() {
        return "$".to_string();
    }
    if s.len() <= MAX_PATH_BYTES {
        return s.to_string();
    }
    let mut end = MAX_PATH_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub(crate) fn parse_key_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

/// A per-process key: redaction tags then only correlate within one run.
pub(crate) fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        // No OS randomness: derive something unpredictable enough from the
        // start time and addresses; tags still never reveal values.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = blake3::Hasher::new();
        h.update(&now.to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&(&key as *const _ as usize).to_le_bytes());
        key = *h.finalize().as_bytes();
    }
    key
}

#[cfg(test)]
mod tests;
