//! How `apisensor inventory` prints a snapshot: a JSON document (one object
//! per endpoint) or a readable table of hosts → endpoints, with findings
//! and drift. Formatting only.

use super::drift::Drift;
use super::profile::{fields_json, FieldJson, Profile, SensitiveKey};
use super::{Counters, Endpoint, Snapshot};
use crate::event::Event;
use crate::exchange::{Text, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Serialize)]
pub struct SensitiveJson {
    pub data_type: String,
    pub category: String,
    pub location: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct PathParamJson {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Serialize)]
pub struct EndpointJson {
    pub host: String,
    pub method: String,
    pub path: String,
    pub path_params: Vec<PathParamJson>,
    pub requests: u64,
    pub distinct_clients: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// Status code → responses (`"0"`: no response).
    pub status_codes: BTreeMap<String, u64>,
    pub request_content_types: BTreeMap<String, u64>,
    pub response_content_types: BTreeMap<String, u64>,
    pub query_params: Vec<FieldJson>,
    pub request_fields: Vec<FieldJson>,
    pub response_fields: Vec<FieldJson>,
    pub auth: BTreeMap<String, u64>,
    pub jwt_claims: Vec<String>,
    pub api_key_names: Vec<String>,
    pub request_sensitive: Vec<SensitiveJson>,
    pub response_sensitive: Vec<SensitiveJson>,
}

fn sensitive(map: &BTreeMap<SensitiveKey, u64>) -> Vec<SensitiveJson> {
    map.iter()
        .map(|((t, c, l), n)| SensitiveJson {
            data_type: t.to_string(),
            category: c.to_string(),
            location: l.to_string(),
            count: *n,
        })
        .collect()
}

fn counts(map: &BTreeMap<Text, u64>) -> BTreeMap<String, u64> {
    map.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

impl EndpointJson {
    pub fn new(ep: &Endpoint) -> EndpointJson {
        let p: &Profile = &ep.profile;
        EndpointJson {
            host: ep.host.clone(),
            method: ep.method.clone(),
            path: ep.path.clone(),
            path_params: ep
                .params
                .iter()
                .map(|(name, kind)| PathParamJson {
                    name: name.clone(),
                    kind: format!("{kind:?}").to_ascii_lowercase(),
                })
                .collect(),
            requests: p.requests,
            distinct_clients: p.clients.estimate(),
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            status_codes: p
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            request_content_types: counts(&p.request_content_types),
            response_content_types: counts(&p.response_content_types),
            query_params: fields_json(&p.query_params),
            request_fields: fields_json(&p.request_fields),
            response_fields: fields_json(&p.response_fields),
            auth: counts(&p.auth),
            jwt_claims: p.jwt_claims.iter().map(|c| c.to_string()).collect(),
            api_key_names: p.api_key_names.iter().map(|c| c.to_string()).collect(),
            request_sensitive: sensitive(&p.request_sensitive),
            response_sensitive: sensitive(&p.response_sensitive),
        }
    }
}

/// The `--format json` document.
#[derive(Debug, Serialize)]
pub struct InventoryJson<'a> {
    pub endpoints: Vec<EndpointJson>,
    /// Paths that are not ordinary endpoints of the API, each with its
    /// class (`unconfirmed`, `documentation`, `probe`, ...).
    pub other_paths: Vec<OtherJson>,
    pub counters: &'a Counters,
    pub findings: &'a [Event],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<&'a Drift>,
}

/// A path not listed as an endpoint, and why.
#[derive(Debug, Serialize)]
pub struct OtherJson {
    pub host: String,
    pub method: String,
    pub path: String,
    pub class: super::PathClass,
    pub requests: u64,
    pub status_codes: BTreeMap<String, u64>,
}

pub fn json(snapshot: &Snapshot, findings: &[Event], drift: Option<&Drift>) -> serde_json::Value {
    let doc = InventoryJson {
        endpoints: snapshot.endpoints.iter().map(EndpointJson::new).collect(),
        other_paths: snapshot
            .other
            .iter()
            .map(|e| OtherJson {
                host: e.host.clone(),
                method: e.method.clone(),
                path: e.path.clone(),
                class: e.class,
                requests: e.profile.requests,
                status_codes: e
                    .profile
                    .statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
            })
            .collect(),
        counters: &snapshot.counters,
        findings,
        drift,
    };
    serde_json::to_value(doc).unwrap_or_default()
}

fn short_counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn names(fields: &[FieldJson], max: usize) -> String {
    let mut s: Vec<String> = fields
        .iter()
        .take(max)
        .map(|f| format!("{}:{}", f.name, f.types.first().copied().unwrap_or("?")))
        .collect();
    if fields.len() > max {
        s.push(format!("… +{}", fields.len() - max));
    }
    s.join(", ")
}

/// "unconfirmed 12, probe 3, ...": the paths not listed as endpoints, by class.
fn other_summary(snapshot: &Snapshot) -> String {
    let mut by: BTreeMap<&'static str, usize> = BTreeMap::new();
    for e in &snapshot.other {
        *by.entry(e.class.as_str()).or_default() += 1;
    }
    if by.is_empty() {
        return "none".into();
    }
    by.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The readable table.
pub fn table(snapshot: &Snapshot, findings: &[Event], drift: Option<&Drift>) -> String {
    let mut out = String::new();
    let mut host: Option<&str> = None;
    let width = snapshot
        .endpoints
        .iter()
        .map(|e| e.path.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    for ep in &snapshot.endpoints {
        if host != Some(ep.host.as_str()) {
            host = Some(&ep.host);
            let n = snapshot
                .endpoints
                .iter()
                .filter(|e| e.host == ep.host)
                .count();
            let _ = writeln!(out, "\n{} ({} endpoints)", ep.host, n);
            let _ = writeln!(
                out,
                "  {:<7} {:<width$} {:>7} {:>7}  {:<24} AUTH",
                "METHOD", "PATH", "REQS", "CLIENTS", "STATUS"
            );
        }
        let j = EndpointJson::new(ep);
        let _ = writeln!(
            out,
            "  {:<7} {:<width$} {:>7} {:>7}  {:<24} {}",
            j.method,
            j.path,
            j.requests,
            j.distinct_clients,
            short_counts(&j.status_codes),
            short_counts(&j.auth)
        );
        let mut detail = |label: &str, text: String| {
            if !text.is_empty() && text != "-" {
                let _ = writeln!(out, "          {label}: {text}");
            }
        };
        detail("query", names(&j.query_params, 8));
        detail("request types", short_counts(&j.request_content_types));
        detail("request body", names(&j.request_fields, 8));
        detail("response types", short_counts(&j.response_content_types));
        detail("response body", names(&j.response_fields, 8));
        detail("jwt claims", j.jwt_claims.join(", "));
        detail("api keys", j.api_key_names.join(", "));
        for (label, list) in [
            ("sensitive in request", &j.request_sensitive),
            ("sensitive in response", &j.response_sensitive),
        ] {
            let text: Vec<String> = list
                .iter()
                .map(|s| format!("{}@{}:{}", s.data_type, s.location, s.count))
                .collect();
            detail(label, text.join(", "));
        }
        if let (Some(a), Some(b)) = (j.first_seen, j.last_seen) {
            detail("seen", format!("{a} .. {b}"));
        }
    }
    let c = &snapshot.counters;
    let _ = writeln!(
        out,
        "\n{} endpoints; {} exchanges; not listed as endpoints: {}; \
         capped: hosts {}, paths {}, too deep {}, overflowed segments {}, methods {}, profile entries {}",
        snapshot.endpoints.len(),
        c.exchanges,
        other_summary(snapshot),
        c.hosts_capped,
        c.paths_capped,
        c.paths_too_deep,
        c.segments_overflowed,
        c.methods_capped,
        c.profile_entries_capped
    );
    if !findings.is_empty() {
        let _ = writeln!(out, "\nFindings");
        for f in findings {
            let owasp = f.owasp.map_or("-", |o| o.id());
            let _ = writeln!(
                out,
                "  [{}] {} {} — {}",
                f.severity.as_str(),
                owasp,
                f.rule,
                f.title
            );
        }
    }
    if let Some(d) = drift {
        let _ = writeln!(out, "\nSpec drift");
        for (label, list) in [("shadow", &d.shadow), ("zombie", &d.zombie)] {
            for e in list.iter() {
                let _ = writeln!(
                    out,
                    "  {label:<8} {} {}{} ({} requests)",
                    e.method, e.host, e.path, e.requests
                );
            }
        }
        for u in &d.unused {
            let _ = writeln!(out, "  unused   {} {}", u.method, u.path);
        }
        for u in &d.undocumented {
            let _ = writeln!(
                out,
                "  undocumented {} {}{}: query {:?} status {:?}",
                u.method, u.host, u.path, u.query_params, u.status_codes
            );
        }
    }
    out
}
