//! Authentication: logins (credential stuffing, brute force on one
//! account, password spraying across accounts and addresses), endpoints
//! that require credentials answering without them, and clients probing
//! such endpoints without credentials. Login failure is learned per login
//! endpoint: once it has been seen handing out a token or session, an
//! answer without one is a failure whatever its status (many APIs answer
//! 200 with an error body).

use super::report::Finding;
use super::rules::RuleId;
use super::scanner::trim;
use crate::analysis::facts::{Facts, LoginAttempt};
use crate::baseline::learned::{BaselineLimits, Baselines};
use crate::inventory::EndpointKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

/// Windows and thresholds.
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    pub login_window_secs: u64,
    pub stuffing_min_usernames: usize,
    pub brute_force_min_failures: u64,
    pub spraying_min_usernames: usize,
    pub spraying_min_ips: usize,
    /// Distinct endpoints that require credentials a client must be
    /// refused on, without credentials, within `probe_window_secs`, and
    /// refusals in all.
    pub probe_min_endpoints: usize,
    pub probe_min_refusals: usize,
    pub probe_window_secs: u64,
    /// Clients (and passwords) tracked at once; beyond, refused and counted.
    pub max_actors: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            login_window_secs: 600,
            stuffing_min_usernames: 10,
            brute_force_min_failures: 10,
            spraying_min_usernames: 10,
            spraying_min_ips: 3,
            probe_min_endpoints: 3,
            probe_min_refusals: 6,
            probe_window_secs: 300,
            max_actors: 100_000,
        }
    }
}

#[derive(Debug, Default)]
struct LoginWindow {
    attempts: VecDeque<u64>,
    failures: VecDeque<(u64, String)>,
}

/// Login attempts (and failures) remembered per client.
const MAX_LOGINS_KEPT: usize = 256;
/// Failed logins remembered per window (spread stuffing, one password).
const MAX_FAILURES_KEPT: usize = 10_000;
/// Refusals remembered per probing client.
const MAX_PROBES_KEPT: usize = 256;

#[derive(Debug, Default)]
struct ProbeWindow {
    refused: VecDeque<(u64, EndpointKey)>,
    /// Last time the client succeeded with credentials.
    last_credentialed_success: Option<u64>,
}

/// Failed logins within the login window: those of clients that failed
/// for several accounts and succeeded for none (spread stuffing), or
/// those with one password (spraying). The distinct accounts and
/// addresses are counted as failures come and go once there are more
/// than a few, so judging stays cheap however many there are; most
/// windows (a password tried once) stay a few entries without counts.
#[derive(Debug, Default)]
struct FailureWindow {
    window: VecDeque<(u64, String, IpAddr)>,
    /// Kept once the window held `COUNTED_FROM` failures.
    accounts: HashMap<String, u32>,
    /// Ordered, for the sources an event lists.
    addresses: BTreeMap<IpAddr, u32>,
    /// The window (packet time / window length) last reported.
    reported: Option<u64>,
}

/// Failures in a window below which distinct values are counted by a scan.
const COUNTED_FROM: usize = 16;

impl FailureWindow {
    fn counted(&self) -> bool {
        !self.addresses.is_empty()
    }

    fn count(&mut self, account: &str, ip: IpAddr) {
        match self.accounts.get_mut(account) {
            Some(n) => *n += 1,
            None => {
                self.accounts.insert(account.to_owned(), 1);
            }
        }
        *self.addresses.entry(ip).or_default() += 1;
    }

    fn push(&mut self, now: u64, account: &str, ip: IpAddr) {
        if self.window.len() >= MAX_FAILURES_KEPT {
            self.pop();
        }
        self.window.push_back((now, account.to_owned(), ip));
        if self.counted() {
            self.count(account, ip);
        } else if self.window.len() >= COUNTED_FROM {
            let window = std::mem::take(&mut self.window);
            for (_, account, ip) in &window {
                self.count(account, *ip);
            }
            self.window = window;
        }
    }

    fn trim(&mut self, now: u64, window: u64) {
        while self
            .window
            .front()
            .is_some_and(|(t, _, _)| now.saturating_sub(*t) > window)
        {
            self.pop();
        }
    }

    fn pop(&mut self) {
        let Some((_, account, ip)) = self.window.pop_front() else {
            return;
        };
        if !self.counted() {
            return;
        }
        if let Some(n) = self.accounts.get_mut(&account) {
            *n -= 1;
            if *n == 0 {
                self.accounts.remove(&account);
            }
        }
        if let Some(n) = self.addresses.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.addresses.remove(&ip);
            }
        }
    }

    /// Distinct accounts and addresses in the window.
    fn distinct(&self) -> (usize, usize) {
        if self.counted() {
            return (self.accounts.len(), self.addresses.len());
        }
        let accounts: BTreeSet<&str> = self.window.iter().map(|(_, a, _)| a.as_str()).collect();
        (accounts.len(), self.sources(usize::MAX).len())
    }

    /// The first `n` addresses, in order.
    fn sources(&self, n: usize) -> Vec<String> {
        if self.counted() {
            return self
                .addresses
                .keys()
                .take(n)
                .map(ToString::to_string)
                .collect();
        }
        let ips: BTreeSet<IpAddr> = self.window.iter().map(|(_, _, ip)| *ip).collect();
        ips.iter().take(n).map(ToString::to_string).collect()
    }
}

/// Authentication state. The login endpoints learned are part of the
/// baseline snapshot; the windows are not.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Authentication {
    #[serde(skip)]
    pub(super) limits: AuthLimits,
    /// Login endpoints seen handing out tokens or sessions.
    issuing: BTreeSet<EndpointKey>,
    #[serde(skip)]
    logins: HashMap<IpAddr, LoginWindow>,
    #[serde(skip)]
    sprays: HashMap<[u8; 16], FailureWindow>,
    #[serde(skip)]
    probes: HashMap<IpAddr, ProbeWindow>,
    #[serde(skip)]
    spread_failures: FailureWindow,
    #[serde(skip)]
    pub actors_refused: u64,
}

impl Authentication {
    pub fn new(limits: AuthLimits) -> Authentication {
        Authentication {
            limits,
            ..Authentication::default()
        }
    }

    pub fn observe(&mut self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        self.missing_auth(f, baselines, out);
        self.probing(f, baselines, out);
        let (Some(login), Some(response)) = (&f.login, f.response) else {
            return;
        };
        let issued = !f.issued.is_empty();
        if issued
            && response.status.is_some_and(|s| (200..400).contains(&s))
            && self.issuing.len() < 10_000
        {
            self.issuing.insert(f.key.clone());
        }
        let failed = login_failed(response, issued, self.issuing.contains(&f.key));
        let stranger = self.logins(f, login, failed, out);
        if failed {
            self.spraying(f, login, out);
            if stranger {
                self.spread_stuffing(f, login, out);
            }
        }
    }

    /// Counts the attempt in its client's window and judges the client
    /// alone. Returns whether the client failed for several accounts and
    /// succeeded for none within the window.
    fn logins(
        &mut self,
        f: &Facts<'_>,
        login: &LoginAttempt,
        failed: bool,
        out: &mut Vec<Finding>,
    ) -> bool {
        let ip = f.client_ip;
        let now = f.now;
        let window = self.limits.login_window_secs;
        if !self.logins.contains_key(&ip) && self.logins.len() >= self.limits.max_actors {
            self.actors_refused += 1;
            return false;
        }
        let logins = self.logins.entry(ip).or_default();
        // Bounded whatever one client sends: the thresholds are tens.
        if logins.attempts.len() >= MAX_LOGINS_KEPT {
            logins.attempts.pop_front();
        }
        logins.attempts.push_back(now);
        if failed {
            if logins.failures.len() >= MAX_LOGINS_KEPT {
                logins.failures.pop_front();
            }
            logins.failures.push_back((now, login.username.clone()));
        }
        trim(&mut logins.attempts, now, window, |t| *t);
        trim(&mut logins.failures, now, window, |(t, _)| *t);
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
            out.push(
                Finding::new(
                    RuleId::CredentialStuffing,
                    85,
                    format!(
                        "{} failed to log in {failures} times for {distinct_users} different accounts at {} within {window} seconds ({attempts} attempts in all).",
                        f.actor_label(),
                        f.key
                    ),
                    ip.to_string(),
                )
                .counts(&[
                    ("failed_logins", failures as u64),
                    ("distinct_usernames", distinct_users as u64),
                    ("attempts", attempts as u64),
                ])
                .count(failures as u64),
            );
        }
        if failed && same_user >= self.limits.brute_force_min_failures {
            out.push(
                Finding::new(
                    RuleId::BruteForce,
                    85,
                    format!(
                        "{} failed to log in as one account {same_user} times at {} within {window} seconds.",
                        f.actor_label(),
                        f.key
                    ),
                    format!("{ip}|{}", login.username),
                )
                .counts(&[("failed_logins", same_user)])
                .count(same_user),
            );
        }
        distinct_users >= 2 && failures == attempts
    }

    /// Stuffing spread over addresses, each below the per-client bar:
    /// clients that failed for several accounts and succeeded for none
    /// (a user mistyping fails for one account, then gets in) together
    /// failing for many accounts. Passwords hashed in the client (salted
    /// by account, as Bitwarden's are) hide a spray's one password; this
    /// sees it anyway.
    fn spread_stuffing(&mut self, f: &Facts<'_>, login: &LoginAttempt, out: &mut Vec<Finding>) {
        let (ip, now) = (f.client_ip, f.now);
        let window = self.limits.login_window_secs;
        let spread = &mut self.spread_failures;
        spread.trim(now, window);
        spread.push(now, &login.username, ip);
        let (user_count, ip_count) = spread.distinct();
        // One event per window's worth of such failures.
        let bucket = now / window.max(1);
        if user_count < self.limits.stuffing_min_usernames
            || ip_count < self.limits.spraying_min_ips
            || spread.reported == Some(bucket)
        {
            return;
        }
        spread.reported = Some(bucket);
        let (user_count, ip_count) = (user_count as u64, ip_count as u64);
        let sources = spread.sources(20);
        out.push(
            Finding::new(
                RuleId::CredentialStuffing,
                75,
                format!(
                    "{ip_count} addresses that each failed to log in for several accounts, and for none succeeded, together failed for {user_count} accounts at {} within {window} seconds ({}).",
                    f.key,
                    sources.join(", ")
                ),
                format!("spread|{bucket}"),
            )
            .title("Failed logins for many accounts, spread over several addresses".into())
            .counts(&[("distinct_usernames", user_count), ("source_addresses", ip_count)])
            .attribute("source_addresses", serde_json::json!(sources)),
        );
    }

    fn spraying(&mut self, f: &Facts<'_>, login: &LoginAttempt, out: &mut Vec<Finding>) {
        let (ip, now) = (f.client_ip, f.now);
        let window = self.limits.login_window_secs;
        if !self.sprays.contains_key(&login.password_hash)
            && self.sprays.len() >= self.limits.max_actors
        {
            self.actors_refused += 1;
            return;
        }
        let tries = self.sprays.entry(login.password_hash).or_default();
        tries.trim(now, window);
        tries.push(now, &login.username, ip);
        let (users, ips) = tries.distinct();
        if users >= self.limits.spraying_min_usernames && ips >= self.limits.spraying_min_ips {
            let (user_count, ip_count) = (users as u64, ips as u64);
            let sources = tries.sources(20);
            out.push(
                Finding::new(
                    RuleId::PasswordSpraying,
                    80,
                    format!(
                        "The same password failed for {user_count} different accounts at {} within {window} seconds, tried from {ip_count} addresses ({}).",
                        f.key,
                        sources.join(", ")
                    ),
                    hex(&login.password_hash),
                )
                .counts(&[("distinct_usernames", user_count), ("source_addresses", ip_count)])
                .attribute("source_addresses", serde_json::json!(sources)),
            );
        }
    }

    /// An endpoint that requires credentials answers a request without
    /// any: shown to require them (anonymous calls refused), or always
    /// called with them by several principals and now handing sensitive
    /// data to an anonymous caller.
    fn missing_auth(&self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        if !f.succeeded() || !f.anonymous() {
            return;
        }
        let Some(e) = baselines.endpoint(&f.key) else {
            return;
        };
        let shown = e.learned(&baselines.limits, f.now) && e.requires_credentials();
        // Public endpoints are often called with credentials by logged-in
        // clients; an anonymous answer is a finding there only when it
        // hands out sensitive data or changed something.
        let writes = f.writes();
        let implied = e.always_credentialed(&baselines.limits, f.now)
            && (f.data.sensitive_values > 0 || writes);
        if !(shown || implied) {
            return;
        }
        out.push(
            Finding::new(
                RuleId::MissingAuthAccepted,
                80,
                format!(
                    "{} called {} without any credentials and got {}, although {} of its {} earlier calls carried credentials{}.",
                    f.actor_label(),
                    f.key,
                    f.status().unwrap_or(0),
                    e.credentialed,
                    e.exchanges,
                    if shown {
                        format!(" and the {} earlier calls without them were refused", e.anonymous_rejected)
                    } else if f.data.sensitive_values > 0 {
                        format!(", from {} principals, and this answer carried {} sensitive values", e.principals_seen.estimate(), f.data.sensitive_values)
                    } else {
                        format!(", from {} principals, and this call changed data", e.principals_seen.estimate())
                    }
                ),
                format!("{}|{}", f.key, f.who),
            )
            .counts(&[("credentialed_calls", e.credentialed), ("calls", e.exchanges)]),
        );
    }

    /// A client without credentials refused on many endpoints that
    /// require them: probing for ones that do not check.
    fn probing(&mut self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        let ip = f.client_ip;
        let now = f.now;
        let window = self.limits.probe_window_secs;
        if !f.anonymous() && !f.succeeded() && !self.probes.contains_key(&ip) {
            return;
        }
        if !self.probes.contains_key(&ip) && self.probes.len() >= self.limits.max_actors {
            self.actors_refused += 1;
            return;
        }
        let probe = self.probes.entry(ip).or_default();
        if !f.anonymous() && f.succeeded() {
            probe.last_credentialed_success = Some(now);
            return;
        }
        if !(f.anonymous() && f.rejected()) {
            return;
        }
        // Shown to require credentials, or saying so itself: a 401 is the
        // server asking for authentication, on an endpoint that never
        // served anyone without it (403 may be CSRF or a policy).
        let asks = f.status() == Some(401);
        let requires = baselines.endpoint(&f.key).map_or(asks, |e| {
            requires_or_mostly_credentialed(e, &baselines.limits, now)
                || (asks && e.anonymous_successes == 0)
        });
        if !requires {
            return;
        }
        probe.refused.push_back((now, f.key.clone()));
        if probe.refused.len() > MAX_PROBES_KEPT {
            probe.refused.pop_front();
        }
        trim(&mut probe.refused, now, window, |(t, _)| *t);
        let user_of_the_api = probe
            .last_credentialed_success
            .is_some_and(|t| now.saturating_sub(t) <= window);
        let distinct: BTreeSet<&EndpointKey> = probe.refused.iter().map(|(_, k)| k).collect();
        let endpoints = distinct.len();
        let refusals = probe.refused.len();
        if endpoints >= self.limits.probe_min_endpoints
            && refusals >= self.limits.probe_min_refusals
            && !user_of_the_api
        {
            let examples: Vec<String> = distinct.iter().take(10).map(|k| k.to_string()).collect();
            out.push(
                Finding::new(
                    RuleId::UnauthenticatedProbing,
                    75,
                    format!(
                        "{} called {endpoints} endpoints that require credentials without any, {refusals} times within {window} seconds, and was refused each time, e.g. {}.",
                        f.actor_label(),
                        examples.join(", ")
                    ),
                    ip.to_string(),
                )
                .counts(&[("endpoints", endpoints as u64), ("refusals", refusals as u64)])
                .attribute("endpoints", serde_json::json!(examples)),
            );
        }
    }

    /// Forgets windows with nothing left in them.
    pub fn sweep(&mut self, now: u64) {
        let login_window = self.limits.login_window_secs;
        let probe_window = self.limits.probe_window_secs;
        self.logins.retain(|_, w| {
            w.attempts
                .back()
                .is_some_and(|t| now.saturating_sub(*t) <= login_window)
        });
        self.sprays.retain(|_, w| {
            w.window
                .back()
                .is_some_and(|(t, _, _)| now.saturating_sub(*t) <= login_window)
        });
        self.probes.retain(|_, w| {
            let recent = |t: u64| now.saturating_sub(t) <= probe_window;
            w.refused.back().is_some_and(|(t, _)| recent(*t))
                || w.last_credentialed_success.is_some_and(recent)
        });
        crate::baseline::learned::shrink(&mut self.logins);
        crate::baseline::learned::shrink(&mut self.sprays);
        crate::baseline::learned::shrink(&mut self.probes);
        self.spread_failures.trim(now, login_window);
        crate::baseline::learned::shrink(&mut self.spread_failures.accounts);
    }
}

/// Endpoints that require credentials, are always called with them, or
/// (not learned yet) whose successful calls carried them.
fn requires_or_mostly_credentialed(
    e: &crate::baseline::learned::EndpointBaseline,
    limits: &BaselineLimits,
    now: u64,
) -> bool {
    if e.anonymous_successes > 0 {
        return false;
    }
    e.requires_credentials()
        || e.always_credentialed(limits, now)
        || (!e.learned(limits, now) && e.credentialed_successes > 0)
}

/// Whether a login answer means failure. Where the endpoint has been seen
/// to hand out tokens, an answer without one is a failure whatever its
/// status; before that, only 401/403 or an error-looking body count.
fn login_failed(response: &crate::exchange::Response, issued: bool, endpoint_issues: bool) -> bool {
    if issued {
        return false;
    }
    let status = response.status.unwrap_or(0);
    // Any client error: wrong password, unknown account, or a password the
    // API's rules reject before checking it (all attempts that failed).
    if (400..500).contains(&status) {
        return true;
    }
    if endpoint_issues && (200..300).contains(&status) {
        return true;
    }
    // A re-rendered login page says it far down (after its head, styles
    // and navigation); login answers are few, so reading 16 KiB is cheap.
    let body = String::from_utf8_lossy(
        response
            .body
            .data
            .get(..16 * 1024)
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting as failures come and go gives what a scan of the window
    /// gives, below and above `COUNTED_FROM`, as the window fills, trims
    /// and overflows.
    #[test]
    fn failure_window_counts_match_a_scan() {
        let scan = |w: &FailureWindow| {
            let accounts: BTreeSet<&str> = w.window.iter().map(|(_, a, _)| a.as_str()).collect();
            let ips: BTreeSet<IpAddr> = w.window.iter().map(|(_, _, ip)| *ip).collect();
            let first: Vec<String> = ips.iter().take(3).map(ToString::to_string).collect();
            ((accounts.len(), ips.len()), first)
        };
        let mut w = FailureWindow::default();
        for t in 0..(MAX_FAILURES_KEPT as u64 + 50) {
            let ip = IpAddr::from([10, 0, (t % 7) as u8, (t % 5) as u8]);
            w.trim(t / 100, 200);
            w.push(t / 100, &format!("user{}", t % 23), ip);
            if t % 97 == 0 || t < 40 {
                assert_eq!((w.distinct(), w.sources(3)), scan(&w), "at {t}");
            }
        }
        assert!(w.window.len() <= MAX_FAILURES_KEPT);
        w.trim(1_000_000, 30);
        assert_eq!(w.distinct(), (0, 0));
        assert!(!w.counted());
    }
}
