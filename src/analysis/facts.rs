//! What an exchange says, worked out once and read by every later stage:
//! the endpoint it belongs to (the inventory's learned template) and the
//! values at its parameters (object ids: numbers, UUIDs, names, slugs),
//! how it ended, who sent it (client address, credentials, principal), the
//! parameters a client controls, a login attempt, the credentials a
//! response hands out, the attack payloads and the sensitive data. Typed
//! values, not strings: detectors, baselines, the inventory's posture and
//! the events all read the same facts.

use crate::detect::injection::{self, PayloadKind};
use crate::event::Actor;
use crate::exchange::{Exchange, Request, Response};
use crate::identity::{credentials, Credentials, IdentityBook, Principal, SecretHasher};
use crate::inventory::template::Outcome;
use crate::inventory::{EndpointKey, PathValue};
use crate::jwt::Jwt;
use serde_json::Value;
use std::net::IpAddr;

/// Request bodies larger than this are not parsed for parameters.
const MAX_PARSED_BODY_BYTES: usize = 256 * 1024;
/// Parameters kept per request; the rest are not inspected (counted).
const MAX_PARAMS: usize = 512;
/// JSON nesting followed when collecting parameters.
const MAX_JSON_DEPTH: usize = 32;
/// Tokens taken from one response body at most.
const MAX_ISSUED: usize = 8;
/// Fields that identify whom a JSON object describes.
pub const IDENTITY_FIELDS: &[&str] = &[
    "id",
    "uuid",
    "user_id",
    "userid",
    "username",
    "user_name",
    "email",
    "sub",
    "login",
];
/// Response bodies larger than this are not searched for the principal,
/// and the JSON objects looked at in one.
const MAX_SEARCHED_BODY_BYTES: usize = 256 * 1024;
const MAX_SEARCHED_OBJECTS: usize = 200;

/// Where a parameter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamSource {
    Query,
    Form,
    Json,
    Path,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub source: ParamSource,
    /// Name, or JSON path (`user.roles[]`); a path segment's index for `Path`.
    pub name: String,
    pub value: String,
}

/// Username and password of a login attempt. The password itself is never
/// kept: only a keyed hash, enough to see one password tried on many users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    pub username: String,
    pub password_hash: [u8; 16],
}

/// Credentials a response hands out: JWTs in its body, cookies it sets.
#[derive(Debug, Clone, Default)]
pub struct Issued {
    pub jwts: Vec<(Jwt, [u8; 16])>,
    /// Keyed digests of the values of cookies set.
    pub cookies: Vec<[u8; 16]>,
}

impl Issued {
    pub fn is_empty(&self) -> bool {
        self.jwts.is_empty() && self.cookies.is_empty()
    }

    pub fn digests(&self) -> Vec<[u8; 16]> {
        self.jwts
            .iter()
            .map(|(_, d)| *d)
            .chain(self.cookies.iter().copied())
            .collect()
    }
}

/// An attack payload in a client-controlled value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub kind: PayloadKind,
    pub parameter: String,
    /// The value, cut to 200 characters (evidence is redacted later).
    pub sample: String,
}

/// What the classifier found in the response, for exposure detectors.
#[derive(Debug, Default, Clone)]
pub struct ResponseData {
    pub sensitive_values: u64,
    /// Type names, sorted, each once.
    pub sensitive_types: Vec<String>,
}

/// Who sent a request, for de-duplication and state: the principal when
/// there is one, else the client address.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ActorKey {
    Principal(String),
    Address(IpAddr),
}

impl std::fmt::Display for ActorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActorKey::Principal(p) => write!(f, "principal {p}"),
            ActorKey::Address(a) => write!(f, "{a}"),
        }
    }
}

/// Where the real client address comes from behind a proxy.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    /// Lower-case header name (e.g. `x-forwarded-for`); empty = the TCP peer.
    pub header: String,
    /// Proxies in front of the API that append to the header; the client is
    /// the entry this many places from the right (1 = the last one).
    pub trusted_hops: usize,
}

impl ClientAddress {
    pub fn client_ip(&self, exchange: &Exchange, request: &Request) -> IpAddr {
        let peer = exchange.client.ip();
        if self.header.is_empty() || self.trusted_hops == 0 {
            return peer;
        }
        let Some(value) = request.headers.get(&self.header) else {
            return peer;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return peer;
        };
        let hops: Vec<&str> = value.split(',').map(str::trim).collect();
        hops.len()
            .checked_sub(self.trusted_hops)
            .and_then(|i| hops.get(i))
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(peer)
    }
}

/// The facts of one exchange (with a request).
pub struct Facts<'e> {
    pub exchange: &'e Exchange,
    pub request: &'e Request,
    pub response: Option<&'e Response>,
    /// Packet time of the request, Unix seconds.
    pub now: u64,
    pub key: EndpointKey,
    /// Values at the template's parameters: the objects the request names.
    pub values: Vec<PathValue>,
    pub outcome: Outcome,
    pub client_ip: IpAddr,
    pub credentials: Credentials,
    pub principal: Option<Principal>,
    pub who: ActorKey,
    pub params: Vec<Param>,
    /// Parameters beyond `MAX_PARAMS` or in bodies too large to parse.
    pub params_skipped: u64,
    pub json: Option<Value>,
    pub login: Option<LoginAttempt>,
    pub issued: Issued,
    pub payloads: Vec<Payload>,
    pub data: ResponseData,
}

/// What [`Facts::new`] needs besides the exchange.
pub struct FactsContext<'a> {
    pub hasher: &'a SecretHasher,
    pub identities: &'a mut IdentityBook,
    pub client_address: &'a ClientAddress,
}

impl<'e> Facts<'e> {
    /// `None` for an exchange without a request (a response seen alone).
    /// The endpoint is the raw path until [`Facts::locate`] gives the
    /// inventory's template.
    pub fn new(
        exchange: &'e Exchange,
        data: ResponseData,
        ctx: FactsContext<'_>,
    ) -> Option<Facts<'e>> {
        let request = exchange.request.as_ref()?;
        let mut credentials = credentials::read(request, ctx.hasher);
        let anonymous_sessions = ctx.identities.take_anonymous_sessions(&mut credentials);
        let key = EndpointKey {
            host: crate::inventory::host_of(request, exchange),
            method: request.method.clone(),
            template: request.path.clone(),
        };
        let mut facts = Facts {
            exchange,
            request,
            response: exchange.response.as_ref(),
            now: request.ts.secs(),
            values: Vec::new(),
            outcome: crate::inventory::outcome(exchange),
            client_ip: ctx.client_address.client_ip(exchange, request),
            principal: None,
            who: ActorKey::Address(exchange.client.ip()),
            credentials,
            params: Vec::new(),
            params_skipped: 0,
            json: None,
            login: None,
            issued: Issued::default(),
            payloads: Vec::new(),
            data,
            key,
        };
        facts.principal = ctx.identities.identify(&facts.key.host, &facts.credentials);
        facts.who = match &facts.principal {
            Some(p) => ActorKey::Principal(p.id.clone()),
            None => ActorKey::Address(facts.client_ip),
        };
        facts.collect_query();
        facts.collect_path();
        facts.collect_body();
        facts.login = facts.login_attempt(ctx.hasher);
        facts.issued = issued(facts.response, ctx.hasher);
        facts.payloads = payloads(&facts.params);
        if let (Some(login), true) = (&facts.login, facts.outcome == Outcome::Success) {
            if !facts.issued.is_empty() {
                ctx.identities
                    .learn_login(&login.username, &facts.issued.digests());
            }
        }
        // Sessions set for visitors without credentials identify nobody;
        // a login (or a sign-in flow's step) that succeeds with one may
        // have made it a real one. Requests with credentials (once
        // anonymous sessions are taken out) have nothing to say here,
        // which spares most exchanges the path check.
        if facts.anonymous() {
            let signs_in = facts.login.is_some() || login_path(&facts.request.path);
            if signs_in && facts.outcome == Outcome::Success {
                ctx.identities.sessions_logged_in(&anonymous_sessions);
            } else if !signs_in {
                // Whatever the status: a refusal sets the visitor's session too.
                let set = session_cookies(facts.response, ctx.hasher);
                if !set.is_empty() {
                    ctx.identities.note_anonymous_sessions(&set);
                }
            }
        }
        Some(facts)
    }

    /// The endpoint and object ids the inventory's templating gives.
    pub fn locate(&mut self, located: crate::inventory::Located) {
        self.key = located.key;
        self.values = located.values;
    }

    /// Whether the request target itself carried an attack payload.
    pub fn path_payload(&self) -> bool {
        self.payloads.iter().any(|p| {
            self.params
                .iter()
                .any(|q| q.source == ParamSource::Path && q.name == p.parameter)
        })
    }

    /// The event's actor: address and principal.
    pub fn actor(&self) -> Actor {
        Actor {
            ip: Some(self.client_ip),
            principal: self.principal.as_ref().map(|p| p.id.clone()),
            principal_kind: self.principal.as_ref().map(|p| p.kind.as_str().to_owned()),
        }
    }

    /// "Client 10.0.0.7 (principal alice)", for event text.
    pub fn actor_label(&self) -> String {
        match &self.principal {
            Some(p) => format!("Client {} (principal {})", self.client_ip, p.id),
            None => format!("Client {}", self.client_ip),
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.response.and_then(|r| r.status)
    }

    /// Whether the JSON answer describes the request's principal (an
    /// object whose id, name or e-mail names it): the API acted as that
    /// principal, so it honoured the credentials. Parses the body: call it
    /// only when the answer matters (a suspicious token).
    pub fn response_names_principal(&self) -> bool {
        let (Some(p), Some(response)) = (&self.principal, self.response) else {
            return false;
        };
        let body = &response.body.data;
        let json = matches!(
            body.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        );
        if !json || body.len() > MAX_SEARCHED_BODY_BYTES {
            return false;
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let mut budget = MAX_SEARCHED_OBJECTS;
        names_principal(&value, p, 0, &mut budget)
    }

    /// 2xx.
    pub fn succeeded(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// A method that changes something (not GET, HEAD or OPTIONS).
    pub fn writes(&self) -> bool {
        !matches!(self.request.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }

    /// 401 or 403.
    pub fn rejected(&self) -> bool {
        self.outcome == Outcome::Rejected
    }

    pub fn anonymous(&self) -> bool {
        self.credentials.is_empty()
    }

    /// The JWT the request presents, if any.
    pub fn jwt(&self) -> Option<&Jwt> {
        self.credentials.jwt.as_ref()
    }

    fn push(&mut self, source: ParamSource, name: String, value: String) {
        if self.params.len() >= MAX_PARAMS {
            self.params_skipped += 1;
            return;
        }
        self.params.push(Param {
            source,
            name,
            value,
        });
    }

    fn collect_query(&mut self) {
        let uri = self.request.uri.as_str();
        let Some((_, query)) = uri.split_once('?') else {
            return;
        };
        let query = query.split('#').next().unwrap_or_default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            self.push(ParamSource::Query, name.into_owned(), value.into_owned());
        }
    }

    fn collect_path(&mut self) {
        // The raw target: decoding it is the payload scanner's job, and
        // `../` collapsed by a decoder would hide traversal.
        let raw = self.request.uri.as_str();
        let path = raw.split(['?', '#']).next().unwrap_or_default();
        // An absolute-form target (`http://host:port/path`, as proxies get
        // it): the scheme and authority are not path segments.
        let path = match path.split_once("://") {
            Some((scheme, rest)) if !scheme.contains('/') => {
                rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/")
            }
            _ => path,
        };
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // The whole path too, so multi-segment payloads (`../../etc`) are seen.
        if segments.len() > 1 {
            self.push(ParamSource::Path, "path".into(), path.to_owned());
        }
        for (i, segment) in segments.into_iter().enumerate() {
            self.push(ParamSource::Path, i.to_string(), segment);
        }
    }

    fn collect_body(&mut self) {
        let body = &self.request.body;
        if body.data.is_empty() {
            return;
        }
        if body.data.len() > MAX_PARSED_BODY_BYTES {
            self.params_skipped += 1;
            return;
        }
        let content_type = self
            .request
            .content_type
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.contains("json") || body.data.first() == Some(&b'{') {
            if let Ok(value) = serde_json::from_slice::<Value>(&body.data) {
                let mut found = Vec::new();
                let mut skipped = 0;
                json_params(&value, &mut String::new(), 0, &mut found, &mut skipped);
                self.params_skipped += skipped;
                for (name, value) in found {
                    self.push(ParamSource::Json, name, value);
                }
                self.json = Some(value);
            }
        } else if content_type.contains("x-www-form-urlencoded") {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(&body.data)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            for (name, value) in pairs {
                self.push(ParamSource::Form, name, value);
            }
        }
    }

    /// The first parameter (query, form or JSON) whose last name part is
    /// one of `names`.
    pub fn param(&self, names: &[&str]) -> Option<&str> {
        self.params
            .iter()
            .filter(|p| p.source != ParamSource::Path)
            .find(|p| {
                let leaf = p.name.rsplit('.').next().unwrap_or(&p.name);
                names.iter().any(|n| leaf.eq_ignore_ascii_case(n))
            })
            .map(|p| p.value.as_str())
    }

    /// The value of the first body or query parameter whose (last) name
    /// contains one of `words`, ignoring case.
    fn param_containing(&self, words: &[&str]) -> Option<&str> {
        self.params
            .iter()
            .filter(|p| p.source != ParamSource::Path && !p.value.is_empty())
            .find(|p| {
                let leaf = p.name.rsplit('.').next().unwrap_or(&p.name);
                let leaf = leaf.to_ascii_lowercase();
                words.iter().any(|w| leaf.contains(w))
            })
            .map(|p| p.value.as_str())
    }

    /// The value of the first of `names` (in that order of preference)
    /// that the request carries.
    fn first_param_of(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.param(&[n]))
    }

    /// Names of request body fields (JSON leaves' last component, form
    /// names), sorted, each once.
    pub fn body_field_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .params
            .iter()
            .filter(|p| matches!(p.source, ParamSource::Json | ParamSource::Form))
            .map(|p| {
                p.name
                    .rsplit('.')
                    .next()
                    .unwrap_or(&p.name)
                    .trim_end_matches("[]")
                    .to_owned()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// A login attempt: a password-like field next to a user-like one, or
    /// Basic credentials sent to a login-looking path.
    fn login_attempt(&self, hasher: &SecretHasher) -> Option<LoginAttempt> {
        let password = self.param(&["password", "passwd", "pwd", "pass", "passphrase"]);
        let username = self.first_param_of(&[
            "username",
            "user",
            "email",
            "login",
            "user_name",
            "userName",
            "account",
            "userid",
            "identifier",
            "handle",
            "nickname",
            // Last: a form's `name` beside a password is the account's
            // (CTFd-style login forms); any of the above wins over it.
            "name",
        ]);
        // Or a field whose name says it holds the account
        // (`emailOrUsername`, `loginEmail`, `user_identifier`).
        let username = username.or_else(|| self.param_containing(&["user", "email", "login"]));
        if let (Some(user), Some(password)) = (username, password) {
            return Some(LoginAttempt {
                username: user.trim().to_lowercase(),
                password_hash: password_hash(hasher, password),
            });
        }
        let user = self.credentials.basic_user.as_ref()?;
        let password = self.credentials.basic_password?;
        login_path(&self.request.path).then(|| LoginAttempt {
            username: user.to_lowercase(),
            password_hash: password,
        })
    }
}

/// A path of a sign-in flow: a login form, an OAuth callback, a magic
/// link's verification.
fn login_path(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    [
        "login", "signin", "sign-in", "auth", "token", "session", "callback", "verify", "sso",
    ]
    .iter()
    .any(|w| path.contains(w))
}

/// JSON leaves as (path, value); those past `MAX_PARAMS` or deeper than
/// `MAX_JSON_DEPTH` are counted in `skipped` instead.
fn json_params(
    value: &Value,
    path: &mut String,
    depth: usize,
    out: &mut Vec<(String, String)>,
    skipped: &mut u64,
) {
    if depth > MAX_JSON_DEPTH {
        *skipped += 1;
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                // Keys are client-controlled too (`{"$ne": …}`).
                if key.starts_with('$') {
                    push_leaf(out, skipped, path.clone(), key.clone());
                }
                json_params(child, path, depth + 1, out, skipped);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            let len = path.len();
            path.push_str("[]");
            for item in items {
                json_params(item, path, depth + 1, out, skipped);
            }
            path.truncate(len);
        }
        Value::String(s) => push_leaf(out, skipped, path.clone(), s.clone()),
        Value::Number(n) => push_leaf(out, skipped, path.clone(), n.to_string()),
        Value::Bool(b) => push_leaf(out, skipped, path.clone(), b.to_string()),
        Value::Null => {}
    }
}

fn push_leaf(out: &mut Vec<(String, String)>, skipped: &mut u64, name: String, value: String) {
    if out.len() >= MAX_PARAMS {
        *skipped += 1;
    } else {
        out.push((name, value));
    }
}

fn names_principal(value: &Value, p: &Principal, depth: usize, budget: &mut usize) -> bool {
    if depth > 3 || *budget == 0 {
        return false;
    }
    match value {
        Value::Object(map) => {
            *budget -= 1;
            map.iter().any(|(k, v)| {
                IDENTITY_FIELDS.contains(&k.to_ascii_lowercase().as_str())
                    && match v {
                        Value::String(s) => p.is_named(s),
                        Value::Number(n) => p.is_named(&n.to_string()),
                        _ => false,
                    }
            }) || map
                .values()
                .any(|v| names_principal(v, p, depth + 1, budget))
        }
        Value::Array(items) => items
            .iter()
            .any(|v| names_principal(v, p, depth + 1, budget)),
        _ => false,
    }
}

/// Keyed: the hash names a password in events (a spraying campaign's id),
/// and an unkeyed one gives the password back to a dictionary.
fn password_hash(hasher: &SecretHasher, password: &str) -> [u8; 16] {
    let digest = hasher.digest("login password", password.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    out
}

/// Calls `f` with the name and value of each cookie the response sets
/// (at most `MAX_ISSUED`).
fn for_each_set_cookie(response: &Response, mut f: impl FnMut(&str, &str)) {
    let set = response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"set-cookie"))
        .take(MAX_ISSUED);
    for (_, value) in set {
        let value = String::from_utf8_lossy(value);
        let first = value.split(';').next().unwrap_or_default();
        if let Some((name, v)) = first.split_once('=') {
            let v = v.trim().trim_matches('"');
            if !v.is_empty() {
                f(name.trim(), v);
            }
        }
    }
}

/// The keyed digest a credential value is known by (as a request's
/// credentials are: `identity::credentials`).
fn credential_digest(hasher: &SecretHasher, value: &str) -> [u8; 16] {
    let d = hasher.digest("credential", value.trim().as_bytes());
    let mut short = [0u8; 16];
    short.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
    short
}

/// Digests of the session-like cookies (not JWTs) a response sets,
/// whatever its status.
fn session_cookies(response: Option<&Response>, hasher: &SecretHasher) -> Vec<[u8; 16]> {
    let mut out = Vec::new();
    if let Some(response) = response {
        for_each_set_cookie(response, |name, v| {
            if Jwt::decode(v).is_none() && credentials::is_credential_name(name) {
                out.push(credential_digest(hasher, v));
            }
        });
    }
    out
}

/// The credentials a (successful or redirecting) response hands out.
fn issued(response: Option<&Response>, hasher: &SecretHasher) -> Issued {
    let mut out = Issued::default();
    let Some(response) = response.filter(|r| r.status.is_some_and(|s| (200..400).contains(&s)))
    else {
        return out;
    };
    let digest = |value: &str| credential_digest(hasher, value);
    for_each_set_cookie(response, |name, v| {
        // A session or token cookie hands out a credential; a CSRF token
        // or a preference does not (Django sets `csrftoken` on every form,
        // failed logins included).
        match Jwt::decode(v) {
            Some(jwt) => out.jwts.push((jwt, digest(v))),
            None if credentials::is_credential_name(name) => out.cookies.push(digest(v)),
            None => {}
        }
    });
    // Tokens in the body under a token-like name (`token`,
    // `access_token`, …), or a body that is only the token. A JWT anywhere
    // else may be one a client stored and reads back (a forged one, say):
    // not something the API issued.
    let body = response.body.data.as_slice();
    for found in crate::identity::tokens::jwts_in(body) {
        if out.jwts.len() >= MAX_ISSUED {
            break;
        }
        let named = found.field.is_some_and(is_token_field);
        let alone = found.field.is_none() && body.len() <= found.token.len() + 64;
        if !(named || alone) {
            continue;
        }
        if let Some(jwt) = Jwt::decode(found.token) {
            out.jwts.push((jwt, digest(found.token)));
        }
    }
    out
}

/// Whether a JSON key or cookie name is where an API hands out a token.
fn is_token_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "jwt",
        "access",
        "auth",
        "session",
        "bearer",
        "credential",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// Attack payloads in the parameters (values and names), one per kind.
fn payloads(params: &[Param]) -> Vec<Payload> {
    let mut found: Vec<Payload> = Vec::new();
    for param in params {
        for kind in injection::scan(&param.value)
            .into_iter()
            .chain(injection::scan(&param.name))
        {
            if found.iter().all(|p| p.kind != kind) {
                found.push(Payload {
                    kind,
                    parameter: param.name.clone(),
                    sample: param.value.chars().take(200).collect(),
                });
            }
        }
    }
    found.sort_by_key(|p| p.kind);
    found
}

#[cfg(test)]
#[path = "facts_tests.rs"]
mod tests;
