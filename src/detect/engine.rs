//! The detectors that need no baseline and fire from the first exchange:
//! attack payloads, scanners, token abuse (unsigned, expired or weakly
//! signed JWTs accepted, privileged tokens never issued) and credential
//! attacks (stuffing, brute force, password spraying). They run on the
//! merged exchange stream, so their events do not depend on the worker
//! count; all windows are in packet time.

use super::actor::{identify, ClientAddress};
use super::behavior::{Behavior, BehaviorLimits, Finding, ResponseData};
use super::injection::{self, PayloadKind};
use super::request::{LoginAttempt, RequestView};
use crate::event::{epoch_ms, Actor, EndpointRef, Event, EventKind, Evidence, Owasp, Severity};
use crate::exchange::Exchange;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

/// Format version of the baseline snapshot.
const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Snapshot<'a> {
    version: u32,
    detectors: &'a Detectors,
}

#[derive(Deserialize)]
struct OwnedSnapshot {
    version: u32,
    detectors: Detectors,
}

/// Tunables; defaults fit a ten-minute investigation capture.
#[derive(Debug, Clone)]
pub struct DetectLimits {
    pub sensor: String,
    pub client_address: ClientAddress,
    /// Window for scanner and login counting, seconds of packet time.
    pub scanner_window_secs: u64,
    pub scanner_min_not_found_paths: usize,
    pub login_window_secs: u64,
    pub stuffing_min_usernames: usize,
    pub brute_force_min_failures: u64,
    pub spraying_min_usernames: usize,
    pub spraying_min_ips: usize,
    /// Actors tracked at once by the windowed detectors; the least recently
    /// seen are forgotten beyond it (counted).
    pub max_actors: usize,
    /// Keys the hashes of principals' secrets and of login passwords.
    pub hasher: crate::identity::SecretHasher,
    /// Learning periods of the baseline detectors.
    pub learn_exchanges: u64,
    pub learn_secs: u64,
    pub learn_actors: u64,
}

impl Default for DetectLimits {
    fn default() -> Self {
        DetectLimits {
            sensor: "apisensor".into(),
            client_address: ClientAddress::default(),
            scanner_window_secs: 60,
            scanner_min_not_found_paths: 20,
            login_window_secs: 600,
            stuffing_min_usernames: 10,
            brute_force_min_failures: 10,
            spraying_min_usernames: 10,
            spraying_min_ips: 3,
            max_actors: 100_000,
            hasher: crate::identity::SecretHasher::default(),
            learn_exchanges: 20,
            learn_secs: 60,
            learn_actors: 5,
        }
    }
}

/// Counters of the detector stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectStats {
    pub exchanges: u64,
    pub events: u64,
    /// The same finding again (same rule and subject): counted, not re-sent.
    pub repeats: u64,
    pub actors_forgotten: u64,
    pub params_skipped: u64,
    pub endpoints_not_tracked: u64,
    pub actors_forgotten_behavior: u64,
    /// Detections dropped by a `[[detect.suppress]]` rule.
    pub suppressed: u64,
    pub incidents_opened: u64,
    /// Unreadable baseline snapshots set aside at start.
    pub baseline_corrupt: u64,
}

/// User agents of well-known attack and reconnaissance tools, lower case.
const SCANNER_AGENTS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nuclei",
    "gobuster",
    "dirbuster",
    "dirb/",
    "wfuzz",
    "ffuf",
    "feroxbuster",
    "masscan",
    "zgrab",
    "nmap",
    "acunetix",
    "nessus",
    "openvas",
    "wpscan",
    "hydra",
    "jaeles",
    "arachni",
    "w3af",
    "whatweb",
    "commix",
];

#[derive(Default, Serialize, Deserialize)]
struct ScanWindow {
    /// (request time secs, path) of not-found answers in the window.
    not_found: VecDeque<(u64, String)>,
    requests: VecDeque<u64>,
}

#[derive(Default, Serialize, Deserialize)]
struct LoginWindow {
    /// (time secs, username) of failed attempts.
    failures: VecDeque<(u64, String)>,
    attempts: VecDeque<u64>,
}

/// What a login endpoint's answers have shown so far.
#[derive(Default, Serialize, Deserialize)]
struct LoginEndpoint {
    /// It has issued a token or session at least once.
    issues_tokens: bool,
}

/// The detectors and all they learned; serialisable as the baseline snapshot
/// (counters and caches are not part of it).
#[derive(Default, Serialize, Deserialize)]
pub struct Detectors {
    #[serde(skip)]
    limits: DetectLimits,
    #[serde(skip)]
    stats: DetectStats,
    scans: HashMap<IpAddr, ScanWindow>,
    logins: HashMap<IpAddr, LoginWindow>,
    /// Per password hash: (time, username, ip) of failed attempts.
    sprays: HashMap<[u8; 16], VecDeque<(u64, String, IpAddr)>>,
    login_endpoints: HashMap<(String, String), LoginEndpoint>,
    /// Hashes of tokens seen issued in responses, per host; and when the
    /// first was seen (tokens issued before that could not have been).
    issued: HashMap<String, (u64, HashSet<[u8; 16]>)>,
    /// Weak-secret checks (budgeted, each token once).
    #[serde(skip)]
    tokens: crate::identity::tokens::Tokens,
    /// (rule, subject) already reported, with repeats. Not part of the
    /// snapshot: after a restart a finding is reported again, with the same
    /// stable id, so downstream de-duplication still holds.
    #[serde(skip)]
    next_sweep_secs: u64,
    #[serde(skip)]
    reported: BTreeMap<(String, String), u64>,
    behavior: Behavior,
}

impl Detectors {
    pub fn new(limits: DetectLimits) -> Self {
        Detectors {
            stats: DetectStats::default(),
            scans: HashMap::new(),
            logins: HashMap::new(),
            sprays: HashMap::new(),
            login_endpoints: HashMap::new(),
            issued: HashMap::new(),
            tokens: crate::identity::tokens::Tokens::new(
                limits.hasher.clone(),
                crate::identity::tokens::TokenSettings::default(),
            ),
            reported: BTreeMap::new(),
            next_sweep_secs: 0,
            behavior: Behavior::new(BehaviorLimits {
                learn_exchanges: limits.learn_exchanges,
                learn_secs: limits.learn_secs,
                learn_actors: limits.learn_actors,
                ..BehaviorLimits::default()
            }),
            limits,
        }
    }

    pub fn stats(&self) -> &DetectStats {
        &self.stats
    }

    /// The learned state, for the baseline snapshot.
    pub fn save(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(&Snapshot {
            version: SNAPSHOT_VERSION,
            detectors: self,
        })
    }

    /// Learned state from a snapshot written by `save`.
    pub fn load(bytes: &[u8]) -> Result<Detectors, String> {
        let snapshot: OwnedSnapshot = rmp_serde::from_slice(bytes).map_err(|e| e.to_string())?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot version {} (this build reads {SNAPSHOT_VERSION})",
                snapshot.version
            ));
        }
        Ok(snapshot.detectors)
    }

    /// Takes over what `learned` learned (a snapshot, an earlier capture),
    /// keeping this instance's settings, counters and spec.
    pub fn adopt(&mut self, learned: Detectors) {
        let limits = std::mem::take(&mut self.limits);
        let stats = std::mem::take(&mut self.stats);
        let (behavior_limits, spec) = self.behavior.take_config();
        *self = learned;
        // What was reported while learning is not this run's to suppress.
        self.reported.clear();
        self.limits = limits;
        self.stats = stats;
        self.behavior.restore_config(behavior_limits, spec);
    }

    /// Judges calls against the API's OpenAPI document (shadow, deprecated).
    pub fn set_spec(&mut self, spec: crate::inventory::drift::Spec) {
        self.behavior.spec = Some(super::spec::SpecWatch::new(spec));
    }

    /// Runs every detector on one exchange; new findings go to `out`.
    pub fn observe(&mut self, exchange: &Exchange, out: &mut Vec<Event>) {
        self.observe_with(exchange, &ResponseData::default(), out);
    }

    /// As `observe`, with what the classifier found in the response.
    pub fn observe_with(&mut self, exchange: &Exchange, data: &ResponseData, out: &mut Vec<Event>) {
        self.stats.exchanges += 1;
        // A copy (32 bytes): the view borrows it while the detectors change.
        let hasher = self.limits.hasher.clone();
        let Some(view) = RequestView::new(exchange, &hasher) else {
            return;
        };
        self.stats.params_skipped += view.params_skipped;
        let actor = identify(&view, &self.limits.client_address);
        let now = view.request.ts.secs();
        self.remember_issued_tokens(&view, now);
        self.payloads(&view, &actor, out);
        self.scanner(&view, &actor, now, out);
        self.tokens(&view, &actor, now, out);
        self.credentials(&view, &actor, now, out);
        let mut findings = Vec::new();
        self.behavior.observe(&view, &actor, data, &mut findings);
        for f in findings {
            self.emit(&view, &actor, f, out);
        }
        self.stats.endpoints_not_tracked = self.behavior.endpoints_not_tracked;
        self.stats.actors_forgotten_behavior = self.behavior.actors_forgotten;
        self.sweep(now);
    }

    fn payloads(&mut self, view: &RequestView<'_>, actor: &Actor, out: &mut Vec<Event>) {
        let mut found: BTreeMap<PayloadKind, (String, String)> = BTreeMap::new();
        for param in &view.params {
            for kind in injection::scan(&param.value)
                .into_iter()
                .chain(injection::scan(&param.name))
            {
                found
                    .entry(kind)
                    .or_insert_with(|| (param.name.clone(), param.value.clone()));
            }
        }
        for (kind, (name, value)) in found {
            let sample: String = value.chars().take(200).collect();
            let answered = match view.status() {
                Some(s) => format!("the API answered {s}"),
                None => "no answer was seen".into(),
            };
            let (mut event, subject) = self.finding_event(
                view,
                actor,
                Finding {
                    rule: kind.rule(),
                    severity: kind.severity(),
                    owasp: kind.owasp(),
                    confidence: 85,
                    title: format!("{} payload in `{name}`", kind.label()),
                    what: format!(
                        "{} sent a request to {} whose `{name}` value carries a {} payload ({sample:?}); {answered}.",
                        super::actor::label(actor),
                        endpoint_label(view),
                        kind.label()
                    ),
                    why: "",
                    todo: "Check the server logs and the response for signs the payload was executed; validate and parameterise this input; block or rate-limit the source if the probing continues.",
                    counts: Vec::new(),
                    subject: format!("{}|{}", actor_key(actor), endpoint_label(view)),
                },
            );
            // The only narrative that names its kind: not a fixed text.
            event.text.why_it_matters = format!(
                "{} payloads are how attackers probe for flaws that read or change data they must not reach; a 2xx answer or an unusual response size can mean the probe worked.",
                capitalise(kind.label())
            );
            event
                .attributes
                .insert("parameter".into(), serde_json::Value::String(name));
            event
                .attributes
                .insert("payload".into(), serde_json::Value::String(sample));
            self.report(event, &subject, out);
        }
    }

    fn scanner(&mut self, view: &RequestView<'_>, actor: &Actor, now: u64, out: &mut Vec<Event>) {
        let Some(ip) = actor.ip else { return };
        if let Some(agent) = view
            .request
            .headers
            .get("user-agent")
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        {
            if let Some(tool) = SCANNER_AGENTS.iter().find(|t| agent.contains(*t)) {
                let tool = tool.trim_end_matches('/');
                let finding = Finding {
                    rule: "detect.scanner.tool_user_agent",
                    severity: Severity::Medium,
                    owasp: Owasp::SecurityMisconfiguration,
                    confidence: 90,
                    title: format!("Attack tool `{tool}` in use"),
                    what: format!(
                        "{} sent requests with the user agent of the attack tool {tool}.",
                        super::actor::label(actor),
                    ),
                    why: "Automated attack tools map an API and try known exploits quickly; they often precede a targeted attack.",
                    todo: "Confirm whether this is an authorised test; if not, block the source and review what it reached.",
                    counts: Vec::new(),
                    subject: ip.to_string(),
                };
                self.emit(view, actor, finding, out);
            }
        }
        let window = self.limits.scanner_window_secs;
        if !self.scans.contains_key(&ip) && self.scans.len() >= self.limits.max_actors {
            // Refused, not evicted: eviction would let a flood of fake
            // clients push a real scanner out. Counted.
            self.stats.actors_forgotten += 1;
            return;
        }
        let scan = self.scans.entry(ip).or_default();
        scan.requests.push_back(now);
        if matches!(view.status(), Some(404 | 405)) {
            scan.not_found
                .push_back((now, view.request.path.to_string()));
        }
        trim_window(&mut scan.requests, now, window, |t| *t);
        trim_window(&mut scan.not_found, now, window, |(t, _)| *t);
        let distinct: BTreeSet<&str> = scan.not_found.iter().map(|(_, p)| p.as_str()).collect();
        let misses = scan.not_found.len();
        let total = scan.requests.len();
        if distinct.len() >= self.limits.scanner_min_not_found_paths && misses * 2 >= total {
            let examples: Vec<String> = distinct.iter().take(10).map(|p| (*p).to_owned()).collect();
            let distinct_count = distinct.len() as u64;
            let what = format!(
                "{} requested {distinct_count} different paths that do not exist ({misses} of its {total} requests answered 404/405) within {window} seconds, e.g. {}.",
                super::actor::label(actor),
                examples.join(", ")
            );
            let (mut event, subject) = self.finding_event(
                view,
                actor,
                Finding {
                    rule: "detect.scanner.not_found_burst",
                    severity: Severity::Medium,
                    owasp: Owasp::SecurityMisconfiguration,
                    confidence: 80,
                    title: "Burst of requests for paths that do not exist".into(),
                    what,
                    why: "Guessing paths at this rate is how scanners find forgotten admin pages, debug endpoints and backups.",
                    todo: "Block or rate-limit the source; make sure nothing it found (any 2xx among its requests) should be reachable.",
                    counts: vec![
                        ("not_found", misses as u64),
                        ("distinct_paths", distinct_count),
                        ("requests", total as u64),
                    ],
                    subject: ip.to_string(),
                },
            );
            event.count = misses as u64;
            event
                .attributes
                .insert("examples".into(), serde_json::json!(examples));
            self.report(event, &subject, out);
        }
    }

    fn remember_issued_tokens(&mut self, view: &RequestView<'_>, now: u64) {
        let Some(response) = view.response else {
            return;
        };
        if !(200..400).contains(&response.status) {
            return;
        }
        let host = view.host();
        let body = &response.body.data;
        let mut found = Vec::new();
        let mut rest = body.as_slice();
        // Tokens in the body (JSON `token`, `access_token`, …) start with `eyJ`.
        while let Some(at) = memchr::memmem::find(rest, b"eyJ") {
            let tail = rest.get(at..).unwrap_or_default();
            let len = tail
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
                .unwrap_or(tail.len());
            if let Some(token) = tail.get(..len).and_then(|t| std::str::from_utf8(t).ok()) {
                if super::jwt::Jwt::decode(token).is_some() {
                    found.push(token_hash(token));
                }
            }
            rest = tail.get(len.max(1)..).unwrap_or_default();
        }
        if found.is_empty() {
            return;
        }
        let entry = self
            .issued
            .entry(host)
            .or_insert_with(|| (now, HashSet::new()));
        for hash in found {
            if entry.1.len() < 1_000_000 {
                entry.1.insert(hash);
            }
        }
    }

    fn tokens(&mut self, view: &RequestView<'_>, actor: &Actor, now: u64, out: &mut Vec<Event>) {
        let Some(jwt) = &view.bearer else { return };
        if !view.succeeded() {
            return;
        }
        let status = view.status().unwrap_or(0);
        let subject = format!("{}|{}", view.host(), actor_key(actor));
        if jwt.is_unsigned() {
            let finding = Finding {
                rule: "detect.jwt.alg_none_accepted",
                severity: Severity::Critical,
                owasp: Owasp::BrokenAuthentication,
                confidence: 95,
                title: "Unsigned JWT (alg: none) accepted".into(),
                what: format!(
                    "{} called {} with a JWT whose header says `alg: {}` (no signature), and the API answered {status}.",
                    super::actor::label(actor),
                    endpoint_label(view),
                    jwt.alg()
                ),
                why: "An API that accepts unsigned tokens lets anyone claim to be any user, including administrators.",
                todo: "Configure the JWT library to accept only the expected algorithm (e.g. HS256 or RS256) and reject `none`; review every request made with unsigned tokens.",
                counts: Vec::new(),
                subject: subject.clone(),
            };
            self.emit(view, actor, finding, out);
        }
        let request_secs = view.request.ts.secs();
        if jwt.expired_at(request_secs) {
            let exp = jwt.expires_at().unwrap_or(0);
            let expired_for = request_secs.saturating_sub(exp);
            let finding = Finding {
                rule: "detect.jwt.expired_accepted",
                severity: Severity::High,
                owasp: Owasp::BrokenAuthentication,
                confidence: 90,
                title: "Expired JWT accepted".into(),
                what: format!(
                    "{} called {} with a JWT that had expired {expired_for} seconds earlier, and the API answered {status}.",
                    super::actor::label(actor),
                    endpoint_label(view),
                ),
                why: "Expiry limits how long a stolen token is useful; an API that ignores it accepts stolen tokens forever.",
                todo: "Make the API validate `exp` (and `nbf`) on every request; shorten token lifetimes and revoke the affected sessions.",
                counts: vec![("expired_for_secs", expired_for)],
                subject: subject.clone(),
            };
            self.emit(view, actor, finding, out);
        }
        let hash = token_hash(&view_token(view));
        let weak = match self.tokens.judge(&view.host(), jwt, now).weak_secret {
            crate::identity::tokens::WeakSecretCheck::Found { secret, .. } => Some(secret),
            _ => None,
        };
        if let Some(secret) = weak {
            let finding = Finding {
                rule: "detect.jwt.weak_secret",
                severity: Severity::Critical,
                owasp: Owasp::BrokenAuthentication,
                confidence: 99,
                title: "JWT signed with a guessable secret accepted".into(),
                what: format!(
                    "{} called {} with an HS256 JWT whose signature verifies with the well-known secret {secret:?}, and the API answered {status}.",
                    super::actor::label(actor),
                    endpoint_label(view),
                ),
                why: "Anyone who guesses the signing secret can mint valid tokens for any user and role.",
                todo: "Rotate the signing key to a long random secret (or move to an asymmetric algorithm) and invalidate all tokens signed with the old one.",
                counts: Vec::new(),
                subject: view.host(),
            };
            self.emit(view, actor, finding, out);
        }
        if jwt.is_privileged() {
            if let Some((watching_since, issued)) = self.issued.get(&view.host()) {
                let issued_while_watching = jwt
                    .claims
                    .get("iat")
                    .and_then(serde_json::Value::as_u64)
                    .is_none_or(|iat| iat >= *watching_since);
                if issued_while_watching && !issued.contains(&hash) && now >= *watching_since {
                    let finding = Finding {
                        rule: "detect.jwt.unissued_privileged_token",
                        severity: Severity::High,
                        owasp: Owasp::BrokenAuthentication,
                        confidence: 70,
                        title: "Privileged token the API never issued".into(),
                        what: format!(
                            "{} called {} with a token granting {:?} that the sensor never saw the API issue, although it has watched the API issue {} tokens; the API answered {status}.",
                            super::actor::label(actor),
                            endpoint_label(view),
                            jwt.roles(),
                            issued.len()
                        ),
                        why: "A privileged token that did not come from the login flow may be forged or stolen from elsewhere.",
                        todo: "Check where this token came from (signing key leaks, other issuers); revoke it if it is not legitimate.",
                        counts: Vec::new(),
                        subject,
                    };
                    self.emit(view, actor, finding, out);
                }
            }
        }
    }

    fn credentials(
        &mut self,
        view: &RequestView<'_>,
        actor: &Actor,
        now: u64,
        out: &mut Vec<Event>,
    ) {
        let (Some(login), Some(ip), Some(response)) = (&view.login, actor.ip, view.response) else {
            return;
        };
        let endpoint = self
            .login_endpoints
            .entry((view.host(), view.request.path.to_string()))
            .or_default();
        let issued = issues_session(response);
        endpoint.issues_tokens |= issued;
        let failed = login_failed(response, issued, endpoint.issues_tokens);
        let window = self.limits.login_window_secs;
        if !self.logins.contains_key(&ip) && self.logins.len() >= self.limits.max_actors {
            self.stats.actors_forgotten += 1;
            return;
        }
        let logins = self.logins.entry(ip).or_default();
        logins.attempts.push_back(now);
        if failed {
            logins.failures.push_back((now, login.username.clone()));
        }
        trim_window(&mut logins.attempts, now, window, |t| *t);
        trim_window(&mut logins.failures, now, window, |(t, _)| *t);
        let failures = logins.failures.len();
        let attempts = logins.attempts.len();
        let usernames: BTreeSet<&str> = logins.failures.iter().map(|(_, u)| u.as_str()).collect();
        let distinct_users = usernames.len();
        let same_user = logins
            .failures
            .iter()
            .filter(|(_, u)| *u == login.username)
            .count() as u64;
        if failed
            && distinct_users >= self.limits.stuffing_min_usernames
            && failures * 5 >= attempts * 4
        {
            let (mut event, subject) = self.finding_event(
                view,
                actor,
                Finding {
                    rule: "detect.auth.credential_stuffing",
                    severity: Severity::High,
                    owasp: Owasp::BrokenAuthentication,
                    confidence: 85,
                    title: "Credential stuffing: failed logins across many accounts".into(),
                    what: format!(
                        "{} failed to log in {failures} times for {distinct_users} different accounts at {} within {window} seconds ({attempts} attempts in all).",
                        super::actor::label(actor),
                        endpoint_label(view)
                    ),
                    why: "Trying many accounts with leaked username/password pairs is how attackers take over accounts whose passwords were reused elsewhere.",
                    todo: "Block or challenge the source (CAPTCHA, rate limit), check whether any of its attempts succeeded, and force a password reset for those accounts.",
                    counts: vec![
                        ("failed_logins", failures as u64),
                        ("distinct_usernames", distinct_users as u64),
                        ("attempts", attempts as u64),
                    ],
                    subject: ip.to_string(),
                },
            );
            event.count = failures as u64;
            self.report(event, &subject, out);
        }
        if failed && same_user >= self.limits.brute_force_min_failures {
            let (mut event, subject) = self.finding_event(
                view,
                actor,
                Finding {
                    rule: "detect.auth.brute_force",
                    severity: Severity::High,
                    owasp: Owasp::BrokenAuthentication,
                    confidence: 85,
                    title: "Password brute force on one account".into(),
                    what: format!(
                        "{} failed to log in as one account {same_user} times at {} within {window} seconds.",
                        super::actor::label(actor),
                        endpoint_label(view)
                    ),
                    why: "Repeated guesses against one account will eventually find a weak password.",
                    todo: "Lock or throttle the account after a few failures, alert its owner, and block the source.",
                    counts: vec![("failed_logins", same_user)],
                    subject: format!("{ip}|{}", login.username),
                },
            );
            event.count = same_user;
            self.report(event, &subject, out);
        }
        if failed {
            self.spraying(view, actor, login, ip, now, out);
        }
    }

    fn spraying(
        &mut self,
        view: &RequestView<'_>,
        actor: &Actor,
        login: &LoginAttempt,
        ip: IpAddr,
        now: u64,
        out: &mut Vec<Event>,
    ) {
        let window = self.limits.login_window_secs;
        if !self.sprays.contains_key(&login.password_hash)
            && self.sprays.len() >= self.limits.max_actors
        {
            self.stats.actors_forgotten += 1;
            return;
        }
        let tries = self.sprays.entry(login.password_hash).or_default();
        tries.push_back((now, login.username.clone(), ip));
        trim_window(tries, now, window, |(t, _, _)| *t);
        if tries.len() > 10_000 {
            tries.pop_front();
        }
        let users: BTreeSet<&str> = tries.iter().map(|(_, u, _)| u.as_str()).collect();
        let ips: BTreeSet<IpAddr> = tries.iter().map(|(_, _, i)| *i).collect();
        if users.len() >= self.limits.spraying_min_usernames
            && ips.len() >= self.limits.spraying_min_ips
        {
            let (user_count, ip_count) = (users.len() as u64, ips.len() as u64);
            let sources: Vec<String> = ips.iter().take(20).map(ToString::to_string).collect();
            let (mut event, subject) = self.finding_event(
                view,
                actor,
                Finding {
                    rule: "detect.auth.password_spraying",
                    severity: Severity::High,
                    owasp: Owasp::BrokenAuthentication,
                    confidence: 80,
                    title: "Password spraying: one password tried on many accounts from several addresses".into(),
                    what: format!(
                        "The same password failed for {user_count} different accounts at {} within {window} seconds, tried from {ip_count} addresses ({}).",
                        endpoint_label(view),
                        sources.join(", ")
                    ),
                    why: "Spreading one common password over many accounts and addresses stays under per-account lockouts and per-address limits.",
                    todo: "Block the listed addresses, require MFA, and check for successful logins from them.",
                    counts: vec![
                        ("distinct_usernames", user_count),
                        ("source_addresses", ip_count),
                    ],
                    subject: hex(&login.password_hash),
                },
            );
            event
                .attributes
                .insert("source_addresses".into(), serde_json::json!(sources));
            self.report(event, &subject, out);
        }
    }

    /// Forgets windows with nothing left in them (every minute of packet
    /// time), so state follows the active clients, not all ever seen.
    fn sweep(&mut self, now: u64) {
        if now < self.next_sweep_secs {
            return;
        }
        self.next_sweep_secs = now.saturating_add(60);
        let (scan_window, login_window) = (
            self.limits.scanner_window_secs,
            self.limits.login_window_secs,
        );
        self.scans.retain(|_, w| {
            w.requests
                .back()
                .is_some_and(|t| now.saturating_sub(*t) <= scan_window)
        });
        self.logins.retain(|_, w| {
            w.attempts
                .back()
                .is_some_and(|t| now.saturating_sub(*t) <= login_window)
        });
        self.sprays.retain(|_, w| {
            w.back()
                .is_some_and(|(t, _, _)| now.saturating_sub(*t) <= login_window)
        });
        super::behavior::shrink(&mut self.scans);
        super::behavior::shrink(&mut self.logins);
        super::behavior::shrink(&mut self.sprays);
    }

    fn event(
        &self,
        view: &RequestView<'_>,
        actor: &Actor,
        rule: &str,
        severity: Severity,
        owasp: Owasp,
        title: String,
    ) -> Event {
        let time = epoch_ms(view.request.ts);
        let mut event = Event::new(
            EventKind::Detection,
            rule,
            &self.limits.sensor,
            &[],
            time,
            severity,
            title,
        );
        event.owasp = Some(owasp);
        event.actor = Some(actor.clone());
        event.endpoint = Some(EndpointRef {
            host: view.host(),
            method: view.request.method.to_string(),
            path: view.request.path.to_string(),
        });
        event.src_endpoint = Some(crate::event::NetEndpoint {
            ip: view.exchange.client.ip(),
            port: view.exchange.client.port(),
        });
        event.dst_endpoint = Some(crate::event::NetEndpoint {
            ip: view.exchange.server.ip(),
            port: view.exchange.server.port(),
        });
        event.evidence.push(evidence(view));
        event
    }

    /// The event for `f` with the request's common fields, and the subject
    /// it is reported under; for detectors that add to it before `report`.
    fn finding_event(&self, view: &RequestView<'_>, actor: &Actor, f: Finding) -> (Event, String) {
        let mut event = self.event(view, actor, f.rule, f.severity, f.owasp, f.title);
        event.confidence = f.confidence;
        event.text.what_happened = f.what;
        event.text.why_it_matters = f.why.into();
        event.text.what_to_do = f.todo.into();
        for (name, value) in f.counts {
            event.counts.insert(name.into(), value);
        }
        (event, f.subject)
    }

    fn emit(&mut self, view: &RequestView<'_>, actor: &Actor, f: Finding, out: &mut Vec<Event>) {
        let (event, subject) = self.finding_event(view, actor, f);
        self.report(event, &subject, out);
    }

    /// Emits the first finding per (rule, subject); later ones are counted.
    fn report(&mut self, mut event: Event, subject: &str, out: &mut Vec<Event>) {
        let key = (event.rule.clone(), subject.to_owned());
        if let Some(repeats) = self.reported.get_mut(&key) {
            *repeats += 1;
            self.stats.repeats += 1;
            return;
        }
        self.reported.insert(key, 0);
        event.id = crate::event::stable_id(&self.limits.sensor, &event.rule, &[subject]);
        self.stats.events += 1;
        out.push(event);
    }
}

/// Drops entries older than `window` seconds before `now` from the front.
fn trim_window<T>(entries: &mut VecDeque<T>, now: u64, window: u64, time: impl Fn(&T) -> u64) {
    while entries
        .front()
        .is_some_and(|e| now.saturating_sub(time(e)) > window)
    {
        entries.pop_front();
    }
}

/// A session or token handed out by a login answer.
fn issues_session(response: &crate::exchange::Response) -> bool {
    if response.headers.get("set-cookie").is_some() {
        return true;
    }
    let body = &response.body.data;
    memchr::memmem::find(body, b"eyJ").is_some()
        || [
            "\"token\"",
            "\"access_token\"",
            "\"accessToken\"",
            "\"id_token\"",
            "\"session",
        ]
        .iter()
        .any(|k| memchr::memmem::find(body, k.as_bytes()).is_some())
}

/// Whether a login answer means failure. Where the endpoint has been seen
/// to hand out tokens, an answer without one is a failure whatever its
/// status (many APIs answer 200 with an error body); before that, only
/// 401/403 or an error-looking body count.
fn login_failed(response: &crate::exchange::Response, issued: bool, endpoint_issues: bool) -> bool {
    if issued {
        return false;
    }
    let status = response.status;
    if matches!(status, 401 | 403) {
        return true;
    }
    if endpoint_issues && (200..300).contains(&status) {
        return true;
    }
    let body = String::from_utf8_lossy(
        response
            .body
            .data
            .get(..2048)
            .unwrap_or(&response.body.data),
    )
    .to_ascii_lowercase();
    [
        "invalid",
        "incorrect",
        "failed",
        "wrong",
        "denied",
        "unauthorized",
        "\"ok\":false",
        "\"success\":false",
        "\"ok\": false",
        "\"success\": false",
    ]
    .iter()
    .any(|w| body.contains(w))
}

fn view_token(view: &RequestView<'_>) -> String {
    view.request
        .headers
        .get("authorization")
        .and_then(super::jwt::bearer_token)
        .unwrap_or_default()
        .to_owned()
}

fn token_hash(token: &str) -> [u8; 16] {
    let hash = blake3::hash(token.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(hash.as_bytes().get(..16).unwrap_or(&[0u8; 16]));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn actor_key(actor: &Actor) -> String {
    match (&actor.ip, &actor.principal) {
        (Some(ip), Some(p)) => format!("{ip}|{p}"),
        (Some(ip), None) => ip.to_string(),
        (None, Some(p)) => p.clone(),
        (None, None) => String::new(),
    }
}

fn endpoint_label(view: &RequestView<'_>) -> String {
    format!(
        "{} {}{}",
        view.request.method,
        view.host(),
        view.request.path
    )
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Headers whose values are kept in evidence; every other value is
/// replaced (credentials, cookies and custom headers may hold secrets).
const EVIDENCE_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "content-type",
    "content-length",
    "transfer-encoding",
    "accept",
    "x-forwarded-for",
];

/// The triggering exchange with header values outside a safe list replaced
/// and bodies left out; query values are kept (attack payloads live there)
/// except under credential-like names.
fn evidence(view: &RequestView<'_>) -> Evidence {
    let headers = |h: &crate::exchange::Headers| -> Vec<(String, String)> {
        h.iter()
            .map(|(n, v)| {
                let name = String::from_utf8_lossy(n).into_owned();
                let value = if EVIDENCE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    String::from_utf8_lossy(v).into_owned()
                } else {
                    format!("[REDACTED:{} bytes]", v.len())
                };
                (name, value)
            })
            .collect()
    };
    Evidence {
        time: epoch_ms(view.request.ts),
        flow_id: view.exchange.flow_id,
        method: view.request.method.to_string(),
        uri: redact_query(&view.request.uri),
        status: view.status(),
        request_headers: headers(&view.request.headers),
        response_headers: view
            .response
            .map(|r| headers(&r.headers))
            .unwrap_or_default(),
        request_body: None,
        response_body: None,
    }
}

fn redact_query(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential_name(name) => format!("{name}=[REDACTED]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "session",
        "signature",
        "sig",
    ]
    .iter()
    .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::super::jwt::sign_hs256;
    use super::super::request::tests::exchange;
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    fn run(exchanges: &[Exchange]) -> Vec<Event> {
        let mut d = Detectors::new(DetectLimits::default());
        let mut out = Vec::new();
        for e in exchanges {
            d.observe(e, &mut out);
        }
        out
    }

    fn rules(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.rule.as_str()).collect()
    }

    fn login(ip: &str, user: &str, password: &str, status: u16, body: &str, t: u64) -> Exchange {
        exchange(
            ip,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
            status,
            body,
            t,
        )
    }

    #[test]
    fn injection_payload_fires_once_per_actor_and_endpoint() {
        let attack = exchange(
            "10.0.0.66",
            "GET",
            "/api/search?q=%27%20OR%201%3D1--",
            &[],
            "",
            200,
            "[]",
            10,
        );
        let again = exchange(
            "10.0.0.66",
            "GET",
            "/api/search?q=1%27%20or%20%271%27%3D%271",
            &[],
            "",
            200,
            "[]",
            11,
        );
        let events = run(&[attack, again]);
        assert_eq!(rules(&events), vec!["detect.injection.sql"]);
        let e = &events[0];
        assert_eq!(e.owasp, Some(Owasp::SecurityMisconfiguration));
        assert_eq!(
            e.actor.as_ref().unwrap().ip.unwrap().to_string(),
            "10.0.0.66"
        );
        assert!(
            e.text.what_happened.contains("`q`"),
            "{}",
            e.text.what_happened
        );
    }

    #[test]
    fn benign_search_twin_raises_nothing() {
        let benign = exchange(
            "10.0.0.5",
            "GET",
            "/api/search?q=O%27Brien%20rock%20and%20roll",
            &[],
            "",
            200,
            "[]",
            10,
        );
        assert!(run(&[benign]).is_empty());
    }

    #[test]
    fn scanner_burst_and_its_benign_twin() {
        let probes: Vec<Exchange> = (0..25)
            .map(|i| {
                exchange(
                    "10.0.0.77",
                    "GET",
                    &format!("/probe{i}.php"),
                    &[],
                    "",
                    404,
                    "",
                    100 + i,
                )
            })
            .collect();
        let events = run(&probes);
        assert_eq!(rules(&events), vec!["detect.scanner.not_found_burst"]);
        assert_eq!(events[0].counts["distinct_paths"], 20);
        // A user following a few stale links among normal browsing.
        let mut benign = Vec::new();
        for i in 0..60 {
            let (path, status) = if i % 15 == 0 {
                (format!("/old/{i}"), 404)
            } else {
                ("/api/items".to_string(), 200)
            };
            benign.push(exchange(
                "10.0.0.5",
                "GET",
                &path,
                &[],
                "",
                status,
                "",
                100 + i,
            ));
        }
        assert!(run(&benign).is_empty());
        let tool = exchange(
            "10.0.0.78",
            "GET",
            "/",
            &[("User-Agent", "sqlmap/1.7.2#stable")],
            "",
            200,
            "",
            5,
        );
        assert_eq!(rules(&run(&[tool])), vec!["detect.scanner.tool_user_agent"]);
    }

    #[test]
    fn jwt_rules_fire_only_when_the_api_accepts() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory","role":"admin"}"#)
        );
        let auth = format!("Bearer {none}");
        let accepted = exchange(
            "10.0.0.9",
            "GET",
            "/api/admin/users",
            &[("Authorization", &auth)],
            "",
            200,
            "[]",
            10,
        );
        let rejected = exchange(
            "10.0.0.8",
            "GET",
            "/api/admin/users",
            &[("Authorization", &auth)],
            "",
            401,
            "",
            10,
        );
        assert_eq!(
            rules(&run(&[accepted])),
            vec!["detect.jwt.alg_none_accepted"]
        );
        assert!(
            run(&[rejected]).is_empty(),
            "a rejected unsigned token is the API working"
        );

        let expired = sign_hs256(
            &json!({"alg":"HS256"}),
            &json!({"sub":"bob","exp":50}),
            "Zq8#strong-random-secret-value-91",
        );
        let auth = format!("Bearer {expired}");
        let late = exchange(
            "10.0.0.7",
            "GET",
            "/api/users/me",
            &[("Authorization", &auth)],
            "",
            200,
            "{}",
            100,
        );
        let on_time = exchange(
            "10.0.0.7",
            "GET",
            "/api/users/me",
            &[("Authorization", &auth)],
            "",
            200,
            "{}",
            40,
        );
        assert_eq!(rules(&run(&[late])), vec!["detect.jwt.expired_accepted"]);
        assert!(run(&[on_time]).is_empty());

        let weak = sign_hs256(&json!({"alg":"HS256"}), &json!({"sub":"eve"}), "secret");
        let auth = format!("Bearer {weak}");
        let used = exchange(
            "10.0.0.6",
            "GET",
            "/api/users/me",
            &[("Authorization", &auth)],
            "",
            200,
            "{}",
            10,
        );
        assert_eq!(rules(&run(&[used])), vec!["detect.jwt.weak_secret"]);
    }

    #[test]
    fn privileged_token_never_issued() {
        let secret = "Zq8#strong-random-secret-value-91";
        let issued = sign_hs256(
            &json!({"alg":"HS256"}),
            &json!({"sub":"ann","role":"user","iat":10}),
            secret,
        );
        let login_answer = format!(r#"{{"token":"{issued}"}}"#);
        let issue = login("10.0.0.2", "ann", "pw", 200, &login_answer, 10);
        let forged = sign_hs256(
            &json!({"alg":"HS256"}),
            &json!({"sub":"ann","role":"admin","iat":20}),
            secret,
        );
        let auth = format!("Bearer {forged}");
        let use_forged = exchange(
            "10.0.0.3",
            "GET",
            "/api/admin/users",
            &[("Authorization", &auth)],
            "",
            200,
            "[]",
            30,
        );
        let auth_issued = format!("Bearer {issued}");
        let use_issued = exchange(
            "10.0.0.2",
            "GET",
            "/api/users/me",
            &[("Authorization", &auth_issued)],
            "",
            200,
            "{}",
            30,
        );
        let events = run(&[issue, use_issued, use_forged]);
        assert_eq!(rules(&events), vec!["detect.jwt.unissued_privileged_token"]);
        assert_eq!(
            events[0].actor.as_ref().unwrap().ip.unwrap().to_string(),
            "10.0.0.3"
        );
    }

    #[test]
    fn credential_stuffing_with_200_error_bodies_and_its_typo_twin() {
        let ok = |ip: &str, user: &str, t| {
            login(
                ip,
                user,
                "right",
                200,
                r#"{"ok":true,"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}"#,
                t,
            )
        };
        let bad = |ip: &str, user: &str, t| {
            login(
                ip,
                user,
                &format!("guess{t}"),
                200,
                r#"{"ok":false,"error":"invalid credentials"}"#,
                t,
            )
        };
        let mut attack = vec![ok("10.0.0.2", "ann", 1)];
        for i in 0..12 {
            attack.push(bad("10.0.0.66", &format!("user{i}"), 10 + i));
        }
        let events = run(&attack);
        assert_eq!(rules(&events), vec!["detect.auth.credential_stuffing"]);
        assert_eq!(events[0].counts["distinct_usernames"], 10);
        // A person mistyping twice, then getting in.
        let typo = vec![
            bad("10.0.0.5", "ann", 1),
            bad("10.0.0.5", "ann", 2),
            ok("10.0.0.5", "ann", 3),
        ];
        assert!(run(&typo).is_empty());
    }

    #[test]
    fn brute_force_and_spraying() {
        let bad =
            |ip: &str, user: &str, pw: &str, t| login(ip, user, pw, 401, r#"{"error":"nope"}"#, t);
        let brute: Vec<Exchange> = (0..10)
            .map(|i| bad("10.0.0.70", "root", &format!("p{i}"), i))
            .collect();
        assert_eq!(rules(&run(&brute)), vec!["detect.auth.brute_force"]);
        // Twin: nine failures on one account stay under the threshold.
        let forgetful: Vec<Exchange> = (0..9)
            .map(|i| bad("10.0.0.71", "root", &format!("p{i}"), i))
            .collect();
        assert!(run(&forgetful).is_empty());
        // One password, twelve accounts, four addresses, three tries each.
        let spray: Vec<Exchange> = (0..12)
            .map(|i| {
                bad(
                    &format!("10.0.1.{}", i % 4),
                    &format!("u{i}"),
                    "Winter2024!",
                    i,
                )
            })
            .collect();
        assert_eq!(rules(&run(&spray)), vec!["detect.auth.password_spraying"]);
        // Twin: twelve users each mistyping their own password once, from
        // four addresses: different passwords, so no spraying.
        let typos: Vec<Exchange> = (0..12)
            .map(|i| {
                bad(
                    &format!("10.0.1.{}", i % 4),
                    &format!("u{i}"),
                    &format!("pw{i}"),
                    i,
                )
            })
            .collect();
        assert!(run(&typos).is_empty());
    }

    #[test]
    fn evidence_hides_credentials() {
        let e = exchange(
            "10.0.0.1",
            "GET",
            "/api/search?q=%3Cscript%3E&api_key=abc123",
            &[("Authorization", "Bearer zzz"), ("User-Agent", "curl/8")],
            "",
            200,
            "",
            1,
        );
        let events = run(&[e]);
        let ev = &events[0].evidence[0];
        assert!(ev.uri.ends_with("api_key=[REDACTED]"), "{}", ev.uri);
        assert!(ev
            .request_headers
            .iter()
            .any(|(n, v)| n == "Authorization" && v.starts_with("[REDACTED")));
        assert!(ev
            .request_headers
            .iter()
            .any(|(n, v)| n == "User-Agent" && v == "curl/8"));
    }
}
