//! Findings become events here, and only here: the rule table gives the
//! category, severity and fixed texts, the facts give the actor, the
//! endpoint (its template, never the raw path) and the evidence. A finding
//! is reported once per (rule, subject); repeats are counted. Subjects
//! name what a finding is about (an actor, an actor and a template, a
//! host), so one campaign gives one event per rule, not one per raw path.

use super::rules::{Family, RuleId};
use crate::analysis::facts::Facts;
use crate::event::{epoch_ms, EndpointRef, Event, EventKind, Evidence, NetEndpoint, Severity};
use std::collections::HashMap;
use std::net::IpAddr;

/// (rule, subject) pairs remembered for de-duplication; when full, the
/// oldest generation is forgotten (counted), so a finding may be reported
/// again after a very long time rather than memory grow.
const MAX_REPORTED: usize = 200_000;

/// Injection events per client address: a scanner or fuzzer tries every
/// payload kind, and two events (with the tool's own) say what it is; the
/// other kinds are counted as repeats. A targeted attacker uses one or two.
const INJECTION_KINDS_PER_ADDRESS: u8 = 2;

/// Authorization events per client address: one actor trying other users'
/// objects through every endpoint that has them gives one event per
/// endpoint; three say what it does, the others are counted as repeats.
const AUTHORIZATION_EVENTS_PER_ADDRESS: u8 = 3;

/// What a detector found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: RuleId,
    pub confidence: u8,
    /// Instead of the rule's severity (an attempt the API refused, say).
    pub severity: Option<Severity>,
    /// Instead of the rule's title.
    pub title: Option<String>,
    /// What happened, in a sentence or two.
    pub what: String,
    pub counts: Vec<(&'static str, u64)>,
    pub attributes: Vec<(&'static str, serde_json::Value)>,
    /// What the finding is about, for de-duplication (with the rule).
    pub subject: String,
    /// `count` of the event (requests it summarises), when not 1.
    pub count: Option<u64>,
    /// About the API itself, not the client whose exchange showed it (a
    /// weak signing key): the event names no actor.
    pub about_api: bool,
}

impl Finding {
    pub fn new(rule: RuleId, confidence: u8, what: String, subject: String) -> Finding {
        Finding {
            rule,
            confidence,
            severity: None,
            title: None,
            what,
            counts: Vec::new(),
            attributes: Vec::new(),
            subject,
            count: None,
            about_api: false,
        }
    }

    pub fn about_api(mut self) -> Finding {
        self.about_api = true;
        self
    }

    pub fn counts(mut self, counts: &[(&'static str, u64)]) -> Finding {
        self.counts.extend_from_slice(counts);
        self
    }

    pub fn severity(mut self, severity: Severity) -> Finding {
        self.severity = Some(severity);
        self
    }

    pub fn title(mut self, title: String) -> Finding {
        self.title = Some(title);
        self
    }

    pub fn attribute(mut self, name: &'static str, value: serde_json::Value) -> Finding {
        self.attributes.push((name, value));
        self
    }

    pub fn count(mut self, count: u64) -> Finding {
        self.count = Some(count);
        self
    }
}

/// Builds and de-duplicates events.
#[derive(Debug)]
pub struct Reporter {
    sensor: String,
    reported: HashMap<(RuleId, String), u64>,
    /// Injection and authorization events reported per client address
    /// (emptied with `reported`).
    per_address: HashMap<(Family, IpAddr), u8>,
    /// Events built, repeats counted instead, and times the
    /// de-duplication memory was emptied.
    pub events: u64,
    pub repeats: u64,
    pub forgotten: u64,
}

impl Reporter {
    pub fn new(sensor: &str) -> Reporter {
        Reporter {
            sensor: sensor.to_owned(),
            reported: HashMap::new(),
            per_address: HashMap::new(),
            events: 0,
            repeats: 0,
            forgotten: 0,
        }
    }

    /// The event of `finding` about `facts`' exchange, unless this (rule,
    /// subject) was reported already.
    pub fn report(&mut self, facts: &Facts<'_>, finding: Finding, out: &mut Vec<Event>) {
        let key = (finding.rule, finding.subject.clone());
        if let Some(repeats) = self.reported.get_mut(&key) {
            *repeats += 1;
            self.repeats += 1;
            return;
        }
        let family = finding.rule.rule().family;
        let cap = match family {
            Family::Injection => Some(INJECTION_KINDS_PER_ADDRESS),
            Family::Authorization if !finding.about_api => Some(AUTHORIZATION_EVENTS_PER_ADDRESS),
            _ => None,
        };
        if let Some(cap) = cap {
            let reported = self
                .per_address
                .entry((family, facts.client_ip))
                .or_default();
            if *reported >= cap {
                self.reported.insert(key, 1);
                self.repeats += 1;
                return;
            }
            *reported += 1;
        }
        if self.reported.len() >= MAX_REPORTED {
            self.reported.clear();
            self.per_address.clear();
            self.forgotten += 1;
        }
        self.reported.insert(key, 0);
        self.events += 1;
        out.push(self.event(facts, finding));
    }

    fn event(&self, f: &Facts<'_>, finding: Finding) -> Event {
        let rule = finding.rule.rule();
        let mut event = Event::new(
            EventKind::Detection,
            rule.id,
            &self.sensor,
            &[&finding.subject],
            epoch_ms(f.request.ts),
            finding.severity.unwrap_or(rule.severity),
            finding.title.unwrap_or_else(|| rule.title.to_owned()),
        );
        event.owasp = Some(rule.owasp);
        event.confidence = finding.confidence;
        if !finding.about_api {
            event.actor = Some(f.actor());
        }
        event.endpoint = Some(EndpointRef {
            host: f.key.host.to_string(),
            method: f.key.method.to_string(),
            path: f.key.template.to_string(),
        });
        if !finding.about_api {
            event.src_endpoint = Some(NetEndpoint {
                ip: f.exchange.client.ip(),
                port: f.exchange.client.port(),
            });
        }
        event.dst_endpoint = Some(NetEndpoint {
            ip: f.exchange.server.ip(),
            port: f.exchange.server.port(),
        });
        event.evidence.push(evidence(f));
        event.text.what_happened = finding.what;
        event.text.why_it_matters = rule.why.into();
        event.text.what_to_do = rule.todo.into();
        for (name, value) in finding.counts {
            event.counts.insert(name.into(), value);
        }
        for (name, value) in finding.attributes {
            event.attributes.insert(name.into(), value);
        }
        if let Some(count) = finding.count {
            event.count = count;
        }
        event
    }
}

/// Headers whose values are kept in evidence before the classifier's
/// redaction (or without it, when classification is off); every other
/// value is replaced.
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
/// except under credential names. The analysis stage replaces it with the
/// classifier's redaction when classification is on.
fn evidence(f: &Facts<'_>) -> Evidence {
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
        time: epoch_ms(f.request.ts),
        flow_id: f.exchange.flow_id,
        method: f.request.method.to_string(),
        uri: redact_query(&f.request.uri),
        status: f.status(),
        request_headers: headers(&f.request.headers),
        response_headers: f.response.map(|r| headers(&r.headers)).unwrap_or_default(),
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
            Some((name, _)) if crate::identity::credentials::is_credential_name(name) => {
                format!("{name}=[REDACTED]")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}
