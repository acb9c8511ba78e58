//! Spec drift: the inventory compared with an OpenAPI 3.x document (JSON or
//! YAML). Reports shadow endpoints (in traffic, not in the spec), zombie
//! endpoints (deprecated in the spec, still called), spec operations never
//! seen, and query parameters / status codes the spec does not document.
//! Paths match segment by segment regardless of parameter names: a spec
//! parameter matches any traffic segment, a traffic parameter only a spec
//! parameter; the most literal spec path wins. Loads the spec once; reads
//! a snapshot's endpoints.

use super::Endpoint;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("spec {path} is neither JSON nor YAML: {message}")]
    Parse { path: String, message: String },
    #[error("spec {path} is not OpenAPI 3.x: {problem}")]
    NotOpenApi { path: String, problem: String },
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One operation of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOperation {
    /// Full path (server base path + path key), as written.
    pub path: String,
    pub method: String,
    pub deprecated: bool,
    pub query_params: BTreeSet<String>,
    /// Response keys: `200`, `4XX`, `default`.
    pub responses: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub operations: Vec<SpecOperation>,
}

/// Base path of the first server URL (`https://h/v1` → `/v1`).
fn base_path(doc: &Value) -> String {
    let url = doc["servers"][0]["url"].as_str().unwrap_or("");
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| rest.get(i..).unwrap_or("")),
        None => url,
    };
    if path.starts_with('/') {
        path.trim_end_matches('/').to_string()
    } else {
        String::new()
    }
}

/// Follows a local `$ref` (`#/components/parameters/X`) once.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            doc.pointer(pointer).unwrap_or(v)
        }
        None => v,
    }
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Spec::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Spec, SpecError> {
        let doc: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => serde_yaml_ng::from_str(text).map_err(|e| SpecError::Parse {
                path: origin.to_string(),
                message: e.to_string(),
            })?,
        };
        let version = doc["openapi"].as_str().unwrap_or("");
        if !version.starts_with('3') {
            return Err(SpecError::NotOpenApi {
                path: origin.to_string(),
                problem: format!("`openapi` is {:?}, expected 3.x", doc["openapi"]),
            });
        }
        let Some(paths) = doc["paths"].as_object() else {
            return Err(SpecError::NotOpenApi {
                path: origin.to_string(),
                problem: "no `paths` object".into(),
            });
        };
        let base = base_path(&doc);
        let mut operations = Vec::new();
        for (p, item) in paths {
            let shared: Vec<&Value> = item["parameters"]
                .as_array()
                .map(|a| a.iter().map(|v| deref(&doc, v)).collect())
                .unwrap_or_default();
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let own: Vec<&Value> = op["parameters"]
                    .as_array()
                    .map(|a| a.iter().map(|v| deref(&doc, v)).collect())
                    .unwrap_or_default();
                let query_params = shared
                    .iter()
                    .chain(own.iter())
                    .filter(|v| v["in"] == "query")
                    .filter_map(|v| v["name"].as_str().map(str::to_string))
                    .collect();
                let responses = op["responses"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                operations.push(SpecOperation {
                    path: format!("{base}{p}"),
                    method: method.to_ascii_uppercase(),
                    deprecated: op["deprecated"].as_bool().unwrap_or(false),
                    query_params,
                    responses,
                });
            }
        }
        operations.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        Ok(Spec { operations })
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn is_param(seg: &str) -> bool {
    seg.starts_with('{') && seg.ends_with('}')
}

/// How well a spec path matches a traffic template: `None` when it does
/// not, else the number of literal segments that matched exactly.
pub fn path_match(spec: &str, traffic: &str) -> Option<usize> {
    let (s, t) = (segments(spec), segments(traffic));
    if s.len() != t.len() {
        return None;
    }
    let mut exact = 0;
    for (a, b) in s.iter().zip(&t) {
        match (is_param(a), is_param(b)) {
            (true, _) => {}
            (false, false) if a == b => exact += 1,
            _ => return None,
        }
    }
    Some(exact)
}

/// Whether a status code is covered by the spec's response keys.
fn status_documented(responses: &BTreeSet<String>, status: u16) -> bool {
    let code = status.to_string();
    let range = format!("{}XX", status / 100);
    responses.contains(&code)
        || responses.contains(&range)
        || responses.contains(&range.to_ascii_lowercase())
        || responses.contains("default")
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriftEndpoint {
    pub host: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    /// The spec path it matched (zombies and undocumented details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpecRef {
    pub method: String,
    pub path: String,
    pub deprecated: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Undocumented {
    pub host: String,
    pub method: String,
    pub path: String,
    pub spec_path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status_codes: Vec<u16>,
}

/// The drift report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Drift {
    pub shadow: Vec<DriftEndpoint>,
    pub zombie: Vec<DriftEndpoint>,
    pub unused: Vec<SpecRef>,
    pub undocumented: Vec<Undocumented>,
}

/// Compares the endpoints of a snapshot with `spec`.
pub fn compare(spec: &Spec, endpoints: &[Endpoint]) -> Drift {
    let mut drift = Drift::default();
    let mut used = vec![false; spec.operations.len()];
    for ep in endpoints {
        let best = spec
            .operations
            .iter()
            .enumerate()
            .filter(|(_, op)| op.method == ep.method)
            .filter_map(|(i, op)| path_match(&op.path, &ep.path).map(|score| (score, i)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let entry = |spec_path: Option<String>| DriftEndpoint {
            host: ep.host.clone(),
            method: ep.method.clone(),
            path: ep.path.clone(),
            requests: ep.profile.requests,
            spec_path,
        };
        let Some((_, i)) = best else {
            drift.shadow.push(entry(None));
            continue;
        };
        let Some(op) = spec.operations.get(i) else {
            continue;
        };
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        if op.deprecated {
            drift.zombie.push(entry(Some(op.path.clone())));
        }
        let query_params: Vec<String> = ep
            .profile
            .query_params
            .keys()
            .filter(|k| !op.query_params.contains(k.as_str()))
            .map(|k| k.to_string())
            .collect();
        let status_codes: Vec<u16> = ep
            .profile
            .status_codes()
            .map(|(s, _)| s)
            .filter(|s| !status_documented(&op.responses, *s))
            .collect();
        if !query_params.is_empty() || !status_codes.is_empty() {
            drift.undocumented.push(Undocumented {
                host: ep.host.clone(),
                method: ep.method.clone(),
                path: ep.path.clone(),
                spec_path: op.path.clone(),
                query_params,
                status_codes,
            });
        }
    }
    for (op, seen) in spec.operations.iter().zip(used) {
        if !seen {
            drift.unused.push(SpecRef {
                method: op.method.clone(),
                path: op.path.clone(),
                deprecated: op.deprecated,
            });
        }
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "https://api.example.com/v1"}]
paths:
  /users/{userId}:
    get:
      parameters:
        - {name: userId, in: path, required: true, schema: {type: integer}}
        - {name: fields, in: query, schema: {type: string}}
      responses: {"200": {description: ok}, "4XX": {description: err}}
  /users/me:
    get:
      responses: {"200": {description: ok}}
  /legacy:
    get:
      deprecated: true
      responses: {"200": {description: ok}}
"#;

    #[test]
    fn yaml_spec_loads_with_base_path() {
        let spec = Spec::parse(SPEC, "t").unwrap();
        let paths: Vec<(&str, &str, bool)> = spec
            .operations
            .iter()
            .map(|o| (o.method.as_str(), o.path.as_str(), o.deprecated))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("GET", "/v1/legacy", true),
                ("GET", "/v1/users/me", false),
                ("GET", "/v1/users/{userId}", false)
            ]
        );
        let json = serde_json::to_string(&serde_yaml_ng::from_str::<Value>(SPEC).unwrap()).unwrap();
        assert_eq!(Spec::parse(&json, "t").unwrap().operations, spec.operations);
        assert!(Spec::parse("swagger: '2.0'\npaths: {}\n", "t").is_err());
    }

    #[test]
    fn matching_ignores_parameter_names_and_prefers_literals() {
        assert_eq!(path_match("/users/{userId}", "/users/{id}"), Some(1));
        assert_eq!(path_match("/users/{userId}", "/users/me"), Some(1));
        assert_eq!(path_match("/users/me", "/users/me"), Some(2));
        assert_eq!(path_match("/users/me", "/users/{id}"), None);
        assert_eq!(path_match("/users", "/users/{id}"), None);
        let r: BTreeSet<String> = ["200".to_string(), "4XX".to_string()].into();
        assert!(status_documented(&r, 404));
        assert!(!status_documented(&r, 500));
    }
}
