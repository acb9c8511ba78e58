//! Scanners: attack tools announcing themselves in the User-Agent, and
//! bursts of requests for paths that do not exist ("not found" as the
//! inventory reads it: 404, 410, or a body that says so). Per client
//! address, in a sliding window of packet time. Also tells the analysis
//! stage which clients are scanners, so the inventory lists what only they
//! called apart.

use super::report::Finding;
use super::rules::RuleId;
use crate::analysis::facts::Facts;
use crate::inventory::template::Outcome;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

/// User agents of attack tools (lower case, matched as substrings).
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

/// Window and threshold of the not-found burst.
#[derive(Debug, Clone, Copy)]
pub struct ScannerLimits {
    pub window_secs: u64,
    /// Distinct not-found paths in the window.
    pub min_not_found_paths: usize,
    /// Clients tracked at once; beyond, new ones are refused (counted).
    pub max_clients: usize,
}

impl Default for ScannerLimits {
    fn default() -> Self {
        ScannerLimits {
            window_secs: 60,
            min_not_found_paths: 20,
            max_clients: 100_000,
        }
    }
}

/// One client's window, a few KiB at most whatever it sends: requests
/// counted per second, not-found paths kept as hashes (a few as text for
/// the event).
#[derive(Debug, Default)]
struct Window {
    requests: VecDeque<(u64, u64)>,
    not_found: VecDeque<(u64, u64)>,
    examples: Vec<String>,
}

/// Not-found answers remembered per client, and example paths kept.
const MAX_NOT_FOUND_KEPT: usize = 256;
const EXAMPLES: usize = 10;

/// Scanner state: one window per client address.
#[derive(Debug, Default)]
pub struct Scanners {
    limits: ScannerLimits,
    windows: HashMap<IpAddr, Window>,
    /// Clients flagged so far (for the inventory), bounded.
    flagged: BTreeSet<IpAddr>,
    pub clients_refused: u64,
}

/// Clients remembered as scanners.
const MAX_FLAGGED: usize = 10_000;

impl Scanners {
    pub fn new(limits: ScannerLimits) -> Scanners {
        Scanners {
            limits,
            ..Scanners::default()
        }
    }

    /// Whether this client was flagged as a scanner.
    pub fn is_scanner(&self, ip: &IpAddr) -> bool {
        self.flagged.contains(ip)
    }

    fn flag(&mut self, ip: IpAddr) -> bool {
        let new = !self.flagged.contains(&ip);
        if new && self.flagged.len() < MAX_FLAGGED {
            self.flagged.insert(ip);
        }
        new
    }

    /// Judges one request; returns whether its client became a scanner.
    pub fn observe(&mut self, f: &Facts<'_>, out: &mut Vec<Finding>) -> bool {
        let ip = f.client_ip;
        let mut flagged = false;
        if let Some(agent) = f
            .request
            .headers
            .get("user-agent")
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        {
            if let Some(tool) = SCANNER_AGENTS.iter().find(|t| agent.contains(*t)) {
                let tool = tool.trim_end_matches('/');
                flagged |= self.flag(ip);
                out.push(
                    Finding::new(
                        RuleId::ScannerToolUserAgent,
                        90,
                        format!(
                            "{} sent requests with the user agent of the attack tool {tool}.",
                            f.actor_label()
                        ),
                        ip.to_string(),
                    )
                    .title(format!("Attack tool `{tool}` in use")),
                );
            }
        }
        let window = self.limits.window_secs;
        if !self.windows.contains_key(&ip) && self.windows.len() >= self.limits.max_clients {
            // Refused, not evicted: eviction would let a flood of fake
            // clients push a real scanner out. Counted.
            self.clients_refused += 1;
            return flagged;
        }
        let now = f.now;
        let scan = self.windows.entry(ip).or_default();
        match scan.requests.back_mut() {
            Some((second, n)) if *second == now => *n += 1,
            _ => scan.requests.push_back((now, 1)),
        }
        let missed = f.outcome == Outcome::NotFound || f.status() == Some(405);
        if missed {
            let path = f.request.path.as_str();
            let hash = crate::inventory::profile::stable_hash(path.as_bytes());
            if scan.not_found.len() >= MAX_NOT_FOUND_KEPT {
                scan.not_found.pop_front();
            }
            scan.not_found.push_back((now, hash));
            if scan.examples.len() < EXAMPLES && !scan.examples.iter().any(|e| e == path) {
                scan.examples.push(path.to_owned());
            }
        }
        trim(&mut scan.requests, now, window, |(t, _)| *t);
        trim(&mut scan.not_found, now, window, |(t, _)| *t);
        if scan.not_found.is_empty() {
            scan.examples.clear();
        }
        // The burst can only start with a miss (other requests only make
        // the share of misses smaller).
        if !missed {
            return flagged;
        }
        let distinct: BTreeSet<u64> = scan.not_found.iter().map(|(_, h)| *h).collect();
        let misses = scan.not_found.len();
        let total: u64 = scan.requests.iter().map(|(_, n)| n).sum();
        if distinct.len() >= self.limits.min_not_found_paths && misses as u64 * 2 >= total {
            let examples = scan.examples.clone();
            let distinct_count = distinct.len() as u64;
            flagged |= self.flag(ip);
            out.push(
                Finding::new(
                    RuleId::ScannerNotFoundBurst,
                    80,
                    format!(
                        "{} requested {distinct_count} different paths that do not exist ({misses} of its {total} requests answered not found) within {window} seconds, e.g. {}.",
                        f.actor_label(),
                        examples.join(", ")
                    ),
                    ip.to_string(),
                )
                .counts(&[
                    ("not_found", misses as u64),
                    ("distinct_paths", distinct_count),
                    ("requests", total),
                ])
                .count(misses as u64)
                .attribute("examples", serde_json::json!(examples)),
            );
        }
        flagged
    }

    /// Forgets windows with nothing left in them.
    pub fn sweep(&mut self, now: u64) {
        let window = self.limits.window_secs;
        self.windows.retain(|_, w| {
            w.requests
                .back()
                .is_some_and(|(t, _)| now.saturating_sub(*t) <= window)
        });
        crate::baseline::learned::shrink(&mut self.windows);
    }
}

/// Drops entries older than `window` seconds before `now` from the front.
pub fn trim<T>(entries: &mut VecDeque<T>, now: u64, window: u64, time: impl Fn(&T) -> u64) {
    while entries
        .front()
        .is_some_and(|e| now.saturating_sub(time(e)) > window)
    {
        entries.pop_front();
    }
}
