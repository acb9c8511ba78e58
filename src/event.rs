//! Event schema v1: the one record every finding leaves the sensor as —
//! detections, incidents, posture findings, inventory changes and sensor
//! health. Producers (discovery, detectors, the pipeline's health reporter)
//! build an [`Event`]; the forwarder ships it unchanged to every sink.
//!
//! Field names follow OCSF (Detection Finding, class 2004, and its API/HTTP
//! objects) where one fits; the README's "Event schema" section has the full
//! mapping. Compatibility rule: within `schema_version` 1, fields are only
//! added, never renamed or retyped, and consumers must ignore unknown fields.
//! MessagePack encodings must use named fields (`rmp_serde::to_vec_named`),
//! since optional fields are skipped when empty.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const SCHEMA_VERSION: u32 = 1;

/// What kind of finding an event is; decides its OCSF class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A runtime detector fired on behaviour (OCSF Detection Finding 2004).
    Detection,
    /// Several detections of one actor or endpoint tied together (2004).
    Incident,
    /// A weakness visible from traffic alone, e.g. tokens over cleartext (2003 Compliance Finding).
    Posture,
    /// The API inventory changed: new, shadow or zombie endpoint (5001 Inventory Info).
    Inventory,
    /// The sensor's own state: stats, drops, lost events (6002 Application Lifecycle).
    Health,
}

impl EventKind {
    /// OCSF `class_uid` of the class this kind maps to.
    pub const fn ocsf_class_uid(self) -> u32 {
        match self {
            EventKind::Detection | EventKind::Incident => 2004,
            EventKind::Posture => 2003,
            EventKind::Inventory => 5001,
            EventKind::Health => 6002,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Detection => "detection",
            EventKind::Incident => "incident",
            EventKind::Posture => "posture",
            EventKind::Inventory => "inventory",
            EventKind::Health => "health",
        }
    }
}

/// Severity, ordered; numbered as OCSF `severity_id` (1 informational … 5 critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const fn ocsf_id(self) -> u8 {
        match self {
            Severity::Info => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    /// CEF severity, 0–10.
    pub const fn cef(self) -> u8 {
        match self {
            Severity::Info => 1,
            Severity::Low => 3,
            Severity::Medium => 5,
            Severity::High => 8,
            Severity::Critical => 10,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// OWASP API Security Top 10, 2023 edition. Serialized as its short id, e.g. `"API1:2023"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Owasp {
    #[serde(rename = "API1:2023")]
    BrokenObjectLevelAuthorization,
    #[serde(rename = "API2:2023")]
    BrokenAuthentication,
    #[serde(rename = "API3:2023")]
    BrokenObjectPropertyLevelAuthorization,
    #[serde(rename = "API4:2023")]
    UnrestrictedResourceConsumption,
    #[serde(rename = "API5:2023")]
    BrokenFunctionLevelAuthorization,
    #[serde(rename = "API6:2023")]
    UnrestrictedAccessToSensitiveBusinessFlows,
    #[serde(rename = "API7:2023")]
    ServerSideRequestForgery,
    #[serde(rename = "API8:2023")]
    SecurityMisconfiguration,
    #[serde(rename = "API9:2023")]
    ImproperInventoryManagement,
    #[serde(rename = "API10:2023")]
    UnsafeConsumptionOfApis,
}

impl Owasp {
    pub const fn id(self) -> &'static str {
        match self {
            Owasp::BrokenObjectLevelAuthorization => "API1:2023",
            Owasp::BrokenAuthentication => "API2:2023",
            Owasp::BrokenObjectPropertyLevelAuthorization => "API3:2023",
            Owasp::UnrestrictedResourceConsumption => "API4:2023",
            Owasp::BrokenFunctionLevelAuthorization => "API5:2023",
            Owasp::UnrestrictedAccessToSensitiveBusinessFlows => "API6:2023",
            Owasp::ServerSideRequestForgery => "API7:2023",
            Owasp::SecurityMisconfiguration => "API8:2023",
            Owasp::ImproperInventoryManagement => "API9:2023",
            Owasp::UnsafeConsumptionOfApis => "API10:2023",
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Owasp::BrokenObjectLevelAuthorization => "Broken Object Level Authorization",
            Owasp::BrokenAuthentication => "Broken Authentication",
            Owasp::BrokenObjectPropertyLevelAuthorization => {
                "Broken Object Property Level Authorization"
            }
            Owasp::UnrestrictedResourceConsumption => "Unrestricted Resource Consumption",
            Owasp::BrokenFunctionLevelAuthorization => "Broken Function Level Authorization",
            Owasp::UnrestrictedAccessToSensitiveBusinessFlows => {
                "Unrestricted Access to Sensitive Business Flows"
            }
            Owasp::ServerSideRequestForgery => "Server Side Request Forgery",
            Owasp::SecurityMisconfiguration => "Security Misconfiguration",
            Owasp::ImproperInventoryManagement => "Improper Inventory Management",
            Owasp::UnsafeConsumptionOfApis => "Unsafe Consumption of APIs",
        }
    }
}

/// Who did it: the client address and, where the traffic names one, the
/// principal (JWT `sub`, Basic user, or a keyed hash of an API key / session).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `jwt_sub`, `basic_user`, `api_key_hash`, `session_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<String>,
}

/// The API endpoint concerned, as the inventory names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRef {
    pub host: String,
    pub method: String,
    /// Templated path, OpenAPI style: `/users/{id}`.
    pub path: String,
}

/// An address and port (OCSF network endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetEndpoint {
    pub ip: IpAddr,
    pub port: u16,
}

/// One triggering exchange, with every sensitive value already redacted
/// (replaced by its data type and a keyed hash) before it is put here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Request start, Unix epoch milliseconds (packet time).
    pub time: u64,
    pub flow_id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Request target as sent, redacted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// The three plain-language paragraphs every finding carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrative {
    pub what_happened: String,
    pub why_it_matters: String,
    pub what_to_do: String,
}

/// One finding, ready for any sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema_version: u32,
    /// Stable id (32 hex digits) derived from the rule and what the finding
    /// is about, so the same finding in a re-run or a retried delivery has
    /// the same id and downstream can de-duplicate.
    pub id: String,
    pub kind: EventKind,
    /// Rule that produced it, dotted: `posture.cleartext_credentials`.
    pub rule: String,
    /// Sensor name from the configuration.
    pub sensor: String,
    /// When it happened, Unix epoch milliseconds of packet time.
    pub time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<u64>,
    pub severity: Severity,
    /// 0–100.
    pub confidence: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owasp: Option<Owasp>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<NetEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_endpoint: Option<NetEndpoint>,
    /// Occurrences this event stands for (e.g. requests seen).
    pub count: u64,
    /// Named numbers the text was filled from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    pub text: Narrative,
    /// Kind-specific extras with no OCSF home (OCSF `unmapped`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// A new event with the fields every event needs; the rest start empty.
    /// `key` names what the finding is about (endpoint, actor, …) and, with
    /// the sensor and rule, decides the stable id.
    pub fn new(
        kind: EventKind,
        rule: &str,
        sensor: &str,
        key: &[&str],
        time_ms: u64,
        severity: Severity,
        title: String,
    ) -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            id: stable_id(sensor, rule, key),
            kind,
            rule: rule.to_owned(),
            sensor: sensor.to_owned(),
            time: time_ms,
            start_time: None,
            end_time: None,
            severity,
            confidence: 100,
            owasp: None,
            title,
            actor: None,
            endpoint: None,
            src_endpoint: None,
            dst_endpoint: None,
            count: 1,
            counts: BTreeMap::new(),
            evidence: Vec::new(),
            text: Narrative::default(),
            attributes: BTreeMap::new(),
        }
    }
}

/// 128-bit id from length-prefixed parts, so `("ab","c")` and `("a","bc")`
/// differ. BLAKE3 keeps it identical across platforms and releases.
pub fn stable_id(sensor: &str, rule: &str, key: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("apisensor event id v1");
    for part in [sensor, rule].iter().chain(key) {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut id = hasher.finalize().to_hex().to_string();
    id.truncate(32);
    id
}

/// Packet time as Unix epoch milliseconds, the unit of every event time.
pub fn epoch_ms(ts: crate::exchange::Timestamp) -> u64 {
    ts.as_nanos() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut event = Event::new(
            EventKind::Posture,
            "posture.cleartext_credentials",
            "sensor-1",
            &["api.example.com", "POST", "/login"],
            1_700_000_000_123,
            Severity::High,
            "Credentials sent over cleartext HTTP".into(),
        );
        event.owasp = Some(Owasp::SecurityMisconfiguration);
        event.actor = Some(Actor {
            ip: Some("10.0.0.7".parse().unwrap()),
            ..Actor::default()
        });
        event.counts.insert("requests".into(), 3);
        event
    }

    #[test]
    fn id_is_stable_and_depends_on_every_part() {
        let a = stable_id("s", "r", &["ab", "c"]);
        assert_eq!(a, stable_id("s", "r", &["ab", "c"]));
        assert_eq!(a.len(), 32);
        assert_ne!(a, stable_id("s", "r", &["a", "bc"]));
        assert_ne!(a, stable_id("s2", "r", &["ab", "c"]));
        assert_ne!(a, stable_id("s", "r2", &["ab", "c"]));
    }

    #[test]
    fn json_uses_owasp_short_ids_and_skips_empty_fields() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["owasp"], "API8:2023");
        assert_eq!(json["kind"], "posture");
        assert_eq!(json["severity"], "high");
        assert!(json.get("evidence").is_none());
        assert!(json.get("endpoint").is_none());
    }

    #[test]
    fn messagepack_named_round_trip() {
        let mut event = sample();
        event
            .attributes
            .insert("detail".into(), serde_json::json!({"n": 1, "s": "x"}));
        let bytes = rmp_serde::to_vec_named(&event).unwrap();
        let back: Event = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, event);
    }
}
