//! Incidents and suppression. Detections from one actor within a window of
//! packet time are tied into one incident whose attacker confidence rises
//! with every corroborating detection of another kind; an incident is
//! (re-)emitted when a new kind of detection joins it, at most once per
//! emission interval. Suppression rules (false-positive feedback) drop
//! matching detections before they are emitted or grouped, and count them.

use crate::config::SuppressRule;
use crate::event::{stable_id, Actor, Event, EventKind, Owasp, Severity};
use std::collections::BTreeMap;

/// Detections of different kinds an actor needs before an incident opens.
const MIN_KINDS: usize = 2;
/// Open incidents kept at most; the oldest is closed beyond it.
const MAX_OPEN: usize = 100_000;

struct Open {
    start_ms: u64,
    last_ms: u64,
    last_emit_ms: Option<u64>,
    emitted_kinds: usize,
    /// Rule → (confidence, severity, category, count).
    kinds: BTreeMap<String, (u8, Severity, Option<Owasp>, u64)>,
    actor: Actor,
    event_ids: Vec<String>,
}

pub struct Incidents {
    sensor: String,
    window_ms: u64,
    emit_interval_ms: u64,
    open: BTreeMap<String, Open>,
    pub incidents_opened: u64,
    pub incidents_closed_capacity: u64,
}

impl Incidents {
    pub fn new(sensor: &str, window_secs: u64) -> Self {
        Incidents {
            sensor: sensor.to_owned(),
            window_ms: window_secs.saturating_mul(1000),
            emit_interval_ms: 60_000,
            open: BTreeMap::new(),
            incidents_opened: 0,
            incidents_closed_capacity: 0,
        }
    }

    /// Takes one detection; an incident update goes to `out` when due.
    pub fn observe(&mut self, event: &Event, out: &mut Vec<Event>) {
        if event.kind != EventKind::Detection {
            return;
        }
        let Some(actor) = &event.actor else { return };
        let key = match (&actor.ip, &actor.principal) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(p)) => p.clone(),
            (None, None) => return,
        };
        let now = event.time;
        let expired = self
            .open
            .get(&key)
            .is_some_and(|o| now.saturating_sub(o.last_ms) > self.window_ms);
        if expired {
            self.open.remove(&key);
        }
        if !self.open.contains_key(&key) && self.open.len() >= MAX_OPEN {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(k, o)| (o.last_ms, (*k).clone()))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.open.remove(&k);
                self.incidents_closed_capacity += 1;
            }
        }
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            start_ms: now,
            last_ms: now,
            last_emit_ms: None,
            emitted_kinds: 0,
            kinds: BTreeMap::new(),
            actor: actor.clone(),
            event_ids: Vec::new(),
        });
        open.last_ms = now;
        if open.actor.principal.is_none() {
            open.actor.principal.clone_from(&actor.principal);
            open.actor.principal_kind.clone_from(&actor.principal_kind);
        }
        let entry =
            open.kinds
                .entry(event.rule.clone())
                .or_insert((0, Severity::Info, event.owasp, 0));
        entry.0 = entry.0.max(event.confidence);
        entry.1 = entry.1.max(event.severity);
        entry.3 += 1;
        if open.event_ids.len() < 64 {
            open.event_ids.push(event.id.clone());
        }
        let kinds = open.kinds.len();
        let due = open
            .last_emit_ms
            .is_none_or(|t| now.saturating_sub(t) >= self.emit_interval_ms);
        if kinds < MIN_KINDS || kinds == open.emitted_kinds || !due {
            return;
        }
        if open.last_emit_ms.is_none() {
            self.incidents_opened += 1;
        }
        open.last_emit_ms = Some(now);
        open.emitted_kinds = kinds;
        out.push(incident_event(&self.sensor, &key, open));
    }
}

/// 1 − Π(1 − cᵢ) over the kinds of detection: independent evidence adds up.
fn attacker_confidence(kinds: &BTreeMap<String, (u8, Severity, Option<Owasp>, u64)>) -> u8 {
    let doubt: f64 = kinds
        .values()
        .map(|(c, ..)| 1.0 - f64::from(*c).min(99.0) / 100.0)
        .product();
    ((1.0 - doubt) * 100.0).round().clamp(0.0, 100.0) as u8
}

fn incident_event(sensor: &str, key: &str, open: &Open) -> Event {
    let confidence = attacker_confidence(&open.kinds);
    let (severity, owasp) = open
        .kinds
        .values()
        .map(|(_, s, o, _)| (*s, *o))
        .max_by_key(|(s, _)| *s)
        .unwrap_or((Severity::Medium, None));
    let total: u64 = open.kinds.values().map(|k| k.3).sum();
    let names: Vec<&str> = open.kinds.keys().map(String::as_str).collect();
    let start = open.start_ms.to_string();
    let mut event = Event::new(
        EventKind::Incident,
        "incident.actor",
        sensor,
        &[key, &start],
        open.last_ms,
        severity,
        format!("{} kinds of attack activity from {key}", open.kinds.len()),
    );
    event.id = stable_id(sensor, "incident.actor", &[key, &start]);
    event.start_time = Some(open.start_ms);
    event.end_time = Some(open.last_ms);
    event.confidence = confidence;
    event.owasp = owasp;
    event.actor = Some(open.actor.clone());
    event.count = total;
    for (rule, (_, _, _, n)) in &open.kinds {
        event.counts.insert(rule.clone(), *n);
    }
    event
        .attributes
        .insert("detection_ids".into(), serde_json::json!(open.event_ids));
    let minutes = open.last_ms.saturating_sub(open.start_ms) / 60_000;
    event.text.what_happened = format!(
        "{key} triggered {total} detections of {} kinds within {minutes} minutes: {}.",
        open.kinds.len(),
        names.join(", ")
    );
    event.text.why_it_matters = format!(
        "Different kinds of suspicious activity from one client corroborate each other: the likelihood this is a deliberate attacker is about {confidence}%."
    );
    event.text.what_to_do = "Treat the client as hostile: block or challenge it, review every request it made in this window, and check which of them succeeded.".into();
    event
}

/// Whether a suppression rule silences this detection at its packet time.
pub fn suppressed(rules: &[SuppressRule], event: &Event) -> bool {
    rules.iter().any(|r| matches(r, event))
}

fn matches(rule: &SuppressRule, event: &Event) -> bool {
    if rule.until_unix > 0 && event.time / 1000 >= rule.until_unix {
        return false;
    }
    if !rule.rule.is_empty() && !event.rule.starts_with(&rule.rule) {
        return false;
    }
    if !rule.endpoint.is_empty()
        && !event
            .endpoint
            .as_ref()
            .is_some_and(|e| e.path.starts_with(&rule.endpoint))
    {
        return false;
    }
    let actor = event.actor.as_ref();
    if !rule.actor.is_empty()
        && !actor.is_some_and(|a| {
            a.principal.as_deref() == Some(rule.actor.as_str())
                || a.ip.is_some_and(|ip| ip.to_string() == rule.actor)
        })
    {
        return false;
    }
    if let Some(network) = &rule.cidr {
        if !actor
            .and_then(|a| a.ip)
            .is_some_and(|ip| network.contains(&ip))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(rule: &str, ip: &str, t_ms: u64, confidence: u8) -> Event {
        let mut e = Event::new(
            EventKind::Detection,
            rule,
            "s",
            &[ip, &t_ms.to_string()],
            t_ms,
            Severity::High,
            "t".into(),
        );
        e.confidence = confidence;
        e.actor = Some(Actor {
            ip: Some(ip.parse().unwrap()),
            ..Actor::default()
        });
        e
    }

    #[test]
    fn corroborating_kinds_open_and_grow_an_incident() {
        let mut inc = Incidents::new("s", 900);
        let mut out = Vec::new();
        inc.observe(
            &detection("detect.scanner.not_found_burst", "10.0.0.9", 1_000, 80),
            &mut out,
        );
        inc.observe(
            &detection("detect.scanner.not_found_burst", "10.0.0.9", 2_000, 80),
            &mut out,
        );
        assert!(out.is_empty(), "one kind of detection is not an incident");
        inc.observe(
            &detection("detect.injection.sql", "10.0.0.9", 3_000, 85),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventKind::Incident);
        assert_eq!(out[0].confidence, 97, "1 - 0.2 * 0.15");
        // A third kind within a minute waits for the emission interval.
        inc.observe(
            &detection("detect.jwt.alg_none_accepted", "10.0.0.9", 4_000, 95),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        inc.observe(
            &detection("detect.jwt.alg_none_accepted", "10.0.0.9", 70_000, 95),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].id, out[0].id, "the same incident, updated");
        assert_eq!(out[1].counts["detect.scanner.not_found_burst"], 2);
        // Another actor, or the same one after the window, is another incident.
        inc.observe(
            &detection("detect.injection.sql", "10.0.0.8", 5_000, 85),
            &mut out,
        );
        inc.observe(
            &detection("detect.injection.sql", "10.0.0.9", 2_000_000, 85),
            &mut out,
        );
        inc.observe(
            &detection("detect.scanner.not_found_burst", "10.0.0.9", 2_001_000, 80),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_ne!(out[2].id, out[0].id);
    }

    #[test]
    fn suppression_by_rule_endpoint_actor_cidr_and_expiry() {
        let mut e = detection(
            "detect.scanner.not_found_burst",
            "10.1.2.3",
            1_700_000_000_000,
            80,
        );
        e.endpoint = Some(crate::event::EndpointRef {
            host: "h".into(),
            method: "GET".into(),
            path: "/health/live".into(),
        });
        let rule = |r: &str, endpoint: &str, actor: &str, cidr: &str, until: u64| SuppressRule {
            rule: r.into(),
            endpoint: endpoint.into(),
            actor: actor.into(),
            cidr: crate::config::parse_network(cidr).unwrap(),
            until_unix: until,
        };
        assert!(suppressed(&[rule("detect.scanner.", "", "", "", 0)], &e));
        assert!(!suppressed(&[rule("detect.injection.", "", "", "", 0)], &e));
        assert!(suppressed(&[rule("", "/health", "", "", 0)], &e));
        assert!(suppressed(&[rule("", "", "10.1.2.3", "", 0)], &e));
        assert!(suppressed(&[rule("", "", "", "10.1.0.0/16", 0)], &e));
        assert!(!suppressed(&[rule("", "", "", "10.2.0.0/16", 0)], &e));
        assert!(
            !suppressed(&[rule("", "", "", "", 1_600_000_000)], &e),
            "expired"
        );
        assert!(suppressed(&[rule("", "", "", "", 1_800_000_000)], &e));
        assert!(suppressed(&[rule("", "", "", "10.1.2.3", 0)], &e));
        assert!(!suppressed(&[rule("", "", "", "10.1.2.4", 0)], &e));
        assert!(suppressed(&[rule("", "", "", "10.1.2.3/8", 0)], &e));
        assert!(!suppressed(&[rule("", "", "", "2001:db8::/32", 0)], &e));
    }
}
