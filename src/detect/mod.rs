//! Detectors: turn the facts of each exchange into findings, and findings
//! into [`crate::event::Event`]s. One file per detector family, one rule
//! table ([`rules`]), one place that builds events ([`report`]). They read
//! the same [`Facts`] (the inventory's endpoint and object ids, the
//! principal, the parameters) and the same learned [`Baselines`], so an
//! endpoint means the same thing to every detector and to the inventory.
//! Pure functions of their input and packet time: they never touch sinks,
//! threads or the wall clock.

pub mod access;
pub mod auth;
pub mod exposure;
pub mod hosts;
pub mod incident;
pub mod injection;
pub use crate::jwt;
pub mod protocol;
pub mod report;
pub mod resource;
pub mod rules;
pub mod scanner;
pub mod tokens;

#[cfg(test)]
pub(crate) mod tests;

use crate::analysis::facts::Facts;
use crate::baseline::learned::{BaselineLimits, Baselines};
use crate::event::Event;
use access::Authorization;
use auth::{AuthLimits, Authentication};
use hosts::Hosts;
use report::{Finding, Reporter};
use scanner::{ScannerLimits, Scanners};
use serde::{Deserialize, Serialize};
use tokens::Tokens;

/// Format version of the baseline snapshot.
const SNAPSHOT_VERSION: u32 = 2;

/// Packet time between sweeps of idle state.
const SWEEP_SECS: u64 = 60;

crate::counters! {
    /// What the detectors did, and what their bounds turned away.
    pub struct DetectStats {
        /// Exchanges judged (with a request).
        exchanges,
        /// Events raised, and findings already reported for the same rule
        /// and subject (counted instead of sent again).
        events,
        repeats,
        /// Times the de-duplication memory was full and emptied.
        dedup_forgotten,
        /// Request parameters not inspected (past the per-request cap, or
        /// in bodies too large to parse).
        params_skipped,
        /// Endpoints past the baseline cap (not baselined).
        endpoints_not_tracked,
        /// Actors, clients and principals a detector's cap refused to track.
        actors_refused,
        /// Actors forgotten after `actor_idle_secs` of packet time.
        actors_expired,
        /// Detections dropped by a `[[detect.suppress]]` rule.
        suppressed,
        incidents_opened,
        /// Unreadable baseline snapshots set aside at start.
        baseline_corrupt,
        /// Issued tokens not profiled (issuer cap) or whose shape found no
        /// room; endpoints whose token checking is not learned (cap).
        tokens_not_profiled,
        token_endpoints_not_tracked,
        /// Presented tokens checked against the whole secret wordlist, and
        /// those not checked: the per-second budget was spent, or one check
        /// would cost more than the burst.
        weak_secret_checks,
        weak_secret_not_checked_budget,
        weak_secret_not_checked_too_costly,
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct DetectLimits {
    pub sensor: String,
    /// Keys the token memory (the redaction key).
    pub hasher: crate::identity::SecretHasher,
    pub baseline: BaselineLimits,
    pub scanner: ScannerLimits,
    pub auth: AuthLimits,
}

impl Default for DetectLimits {
    fn default() -> Self {
        DetectLimits {
            sensor: "apisensor".into(),
            hasher: crate::identity::SecretHasher::default(),
            baseline: BaselineLimits::default(),
            scanner: ScannerLimits::default(),
            auth: AuthLimits::default(),
        }
    }
}

impl DetectLimits {
    /// The caps on tracked actors, lowered to what the analysis stage's
    /// share of `memory.budget_bytes` holds: half of it for the baselines
    /// (about 700 bytes per actor and endpoint), an eighth each for the
    /// scanner and authentication windows (a few KiB per client at most).
    /// The inventory has its own byte budget (`inventory.max_profile_bytes`).
    pub fn within(mut self, analysis_bytes: usize) -> DetectLimits {
        let fit = |share: usize, per: usize, configured: usize, floor: usize| {
            (share / per).max(floor).min(configured)
        };
        let b = &mut self.baseline;
        b.max_actor_endpoints = fit(analysis_bytes / 2, 700, b.max_actor_endpoints, 1_000);
        self.scanner.max_clients = fit(analysis_bytes / 8, 6 * 1024, self.scanner.max_clients, 100);
        self.auth.max_actors = fit(analysis_bytes / 8, 16 * 1024, self.auth.max_actors, 100);
        self
    }
}

/// What a snapshot holds: everything learned, no windows or counters.
#[derive(Serialize)]
struct Snapshot<'a> {
    version: u32,
    baselines: &'a Baselines,
    authorization: &'a Authorization,
    authentication: &'a Authentication,
    hosts: &'a Hosts,
}

#[derive(Deserialize)]
struct OwnedSnapshot {
    version: u32,
    baselines: Baselines,
    authorization: Authorization,
    authentication: Authentication,
    hosts: Hosts,
}

/// Every detector family, the baselines they share and the reporter.
pub struct Detectors {
    limits: DetectLimits,
    baselines: Baselines,
    scanners: Scanners,
    authentication: Authentication,
    tokens: Tokens,
    authorization: Authorization,
    hosts: Hosts,
    reporter: Reporter,
    stats: DetectStats,
    next_sweep_secs: u64,
    findings: Vec<Finding>,
}

/// What judging one exchange showed besides its events.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verdict {
    /// The client was flagged as a scanner (by this or an earlier request).
    pub scanner: bool,
}

impl Detectors {
    pub fn new(limits: DetectLimits) -> Detectors {
        Detectors {
            baselines: Baselines::new(limits.baseline.clone()),
            scanners: Scanners::new(limits.scanner),
            authentication: Authentication::new(limits.auth),
            tokens: Tokens::new(limits.hasher.clone()),
            authorization: Authorization::default(),
            hosts: Hosts::default(),
            reporter: Reporter::new(&limits.sensor),
            stats: DetectStats::default(),
            next_sweep_secs: 0,
            findings: Vec::new(),
            limits,
        }
    }

    /// Judges calls against the API's OpenAPI document (shadow, deprecated).
    pub fn set_spec(&mut self, spec: crate::inventory::drift::Spec) {
        self.hosts.spec = Some(spec);
    }

    /// Runs every detector on one exchange's facts, then learns from it;
    /// new events go to `out`.
    pub fn observe(&mut self, f: &Facts<'_>, out: &mut Vec<Event>) -> Verdict {
        self.stats.exchanges += 1;
        self.stats.params_skipped += f.params_skipped;
        if f.now >= self.next_sweep_secs {
            self.sweep(f.now);
        }
        self.baselines.note_endpoint(&f.key);
        let found = &mut self.findings;
        injection::observe(f, found);
        self.scanners.observe(f, found);
        let scanner = self.scanners.is_scanner(&f.client_ip);
        self.authentication.observe(f, &self.baselines, found);
        let bad_token = self.tokens.observe(f, &self.baselines, found);
        let privilege = self
            .authorization
            .observe(f, bad_token, &mut self.baselines, found);
        if let Some(minute) = self.baselines.count_minute(f) {
            // Administrators and their batch jobs page through everything;
            // the sensitive data they receive is still judged (a stolen
            // administrator account dumping every user is a breach).
            if privilege != Some(true) {
                resource::rate(f, &minute, &self.baselines, found);
            }
            exposure::volume(f, &minute, &self.baselines, found);
            exposure::data_volume(f, &minute, &self.baselines, found);
        }
        exposure::unusual_types(f, &self.baselines, found);
        exposure::verbose_errors(f, found);
        resource::page_size(f, &self.baselines, found);
        resource::oversized(f, &self.baselines, found);
        self.hosts
            .observe(f, self.limits.baseline.learn_exchanges, found);
        // Scanners, attack payloads and whatever raised a finding are not
        // what the API normally sees: learning from them would make the
        // next attack look normal (one anonymous success on an endpoint
        // that requires credentials would make it look public).
        if !scanner && f.payloads.is_empty() && self.findings.is_empty() {
            self.baselines.learn(f, privilege);
        }
        for finding in self.findings.drain(..) {
            self.reporter.report(f, finding, out);
        }
        Verdict { scanner }
    }

    /// Forgets idle windows and actors, once a minute of packet time.
    fn sweep(&mut self, now: u64) {
        self.next_sweep_secs = now.saturating_add(SWEEP_SECS);
        self.scanners.sweep(now);
        self.authentication.sweep(now);
        self.tokens.sweep(now);
        self.authorization.sweep(now);
        self.baselines.expire(now);
    }

    /// The counters, with those of every family.
    pub fn stats(&self) -> DetectStats {
        let mut stats = self.stats.clone();
        stats.events = self.reporter.events;
        stats.repeats = self.reporter.repeats;
        stats.dedup_forgotten = self.reporter.forgotten;
        stats.endpoints_not_tracked = self.baselines.endpoints_not_tracked;
        stats.actors_expired = self.baselines.actors_expired;
        stats.actors_refused = self.baselines.actors_refused
            + self.scanners.clients_refused
            + self.authentication.actors_refused
            + self.tokens.refused
            + self.authorization.refused;
        let tokens = self.tokens.counters();
        stats.tokens_not_profiled = tokens.issuers_not_profiled + tokens.shapes_not_learned;
        stats.token_endpoints_not_tracked = self.tokens.endpoints_not_tracked();
        stats.weak_secret_checks = tokens.weak_full_checks;
        stats.weak_secret_not_checked_budget = tokens.weak_not_checked_budget;
        stats.weak_secret_not_checked_too_costly = tokens.weak_not_checked_too_costly;
        stats
    }

    /// The learned state, for the baseline snapshot.
    pub fn save(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(&Snapshot {
            version: SNAPSHOT_VERSION,
            baselines: &self.baselines,
            authorization: &self.authorization,
            authentication: &self.authentication,
            hosts: &self.hosts,
        })
    }

    /// Reads a snapshot written by [`Detectors::save`] into these
    /// detectors (keeping their settings, counters and spec).
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snapshot: OwnedSnapshot = rmp_serde::from_slice(bytes).map_err(|e| e.to_string())?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot version {} (this build reads {SNAPSHOT_VERSION})",
                snapshot.version
            ));
        }
        self.take_learned(
            snapshot.baselines,
            snapshot.authorization,
            snapshot.authentication,
            snapshot.hosts,
        );
        Ok(())
    }

    /// Takes over what `learned` learned (an earlier capture), keeping this
    /// instance's settings, counters and spec. What was reported while
    /// learning is not this run's to suppress.
    pub fn adopt(&mut self, learned: Detectors) {
        self.take_learned(
            learned.baselines,
            learned.authorization,
            learned.authentication,
            learned.hosts,
        );
    }

    fn take_learned(
        &mut self,
        mut baselines: Baselines,
        authorization: Authorization,
        mut authentication: Authentication,
        mut hosts: Hosts,
    ) {
        baselines.limits = self.limits.baseline.clone();
        self.baselines = baselines;
        self.authorization = authorization;
        authentication.limits = self.limits.auth;
        self.authentication = authentication;
        hosts.spec = self.hosts.spec.take();
        self.hosts = hosts;
    }
}
