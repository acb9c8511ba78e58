//! End-to-end tests of `apisensor inventory` on the REST fixture
//! (`fixtures/rest-api/`): discovered templates against the server's route
//! table, worker-count independence, the OpenAPI export checked by an
//! independent validator, spec drift and posture findings.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/rest-api")
        .join(name)
}

fn inventory(extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("inventory")
        .arg(fixture("rest-api.pcap"))
        .args(extra)
        .output()
        .expect("run apisensor");
    assert!(
        out.status.success(),
        "inventory failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn inventory_json(extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&inventory(&args)).expect("JSON document")
}

/// `/users/{userId}` → `/users/{}`: templates compared up to parameter names.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn templates_equal_the_route_table() {
    let routes: Value =
        serde_json::from_slice(&std::fs::read(fixture("routes.json")).unwrap()).unwrap();
    let truth: BTreeSet<(String, String)> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                shape(r["path"].as_str().unwrap()),
            )
        })
        .collect();
    let doc = inventory_json(&[]);
    let found: BTreeSet<(String, String)> = doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["host"], "api.shop.test");
            (
                e["method"].as_str().unwrap().to_string(),
                shape(e["path"].as_str().unwrap()),
            )
        })
        .collect();
    let hits = truth.intersection(&found).count() as f64;
    let precision = hits / found.len().max(1) as f64;
    let recall = hits / truth.len() as f64;
    println!(
        "REST fixture: {} routes, {} discovered, precision {:.3}, recall {:.3}",
        truth.len(),
        found.len(),
        precision,
        recall
    );
    println!("missed: {:?}", truth.difference(&found).collect::<Vec<_>>());
    println!(
        "spurious: {:?}",
        found.difference(&truth).collect::<Vec<_>>()
    );
    assert_eq!(found, truth);
    // Scanner probes are not endpoints, but listed apart; unknown articles
    // are values of `/articles/{name}` that do not exist.
    let other = doc["other_paths"].as_array().unwrap();
    assert_eq!(other.len(), 13, "{other:?}");
    assert!(
        other.iter().all(|o| o["class"] == "unconfirmed"),
        "{other:?}"
    );
    // Profiles carry what the issue lists.
    let users = doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/users/{id}")
        .unwrap();
    assert_eq!(users["status_codes"]["404"], 6);
    assert_eq!(users["distinct_clients"], 6);
    assert_eq!(users["auth"]["bearer_jwt"], users["requests"]);
    assert_eq!(
        users["jwt_claims"],
        serde_json::json!(["exp", "role", "sub"])
    );
    let login = doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/login")
        .unwrap();
    let fields: Vec<&str> = login["request_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["password", "username"]);
}

#[test]
fn output_does_not_depend_on_workers() {
    let one = inventory(&["--format", "json", "--workers", "1"]);
    let four = inventory(&["--format", "json", "--workers", "4"]);
    assert_eq!(one, four);
    assert_eq!(
        inventory(&["--workers", "1"]),
        inventory(&["--workers", "4"])
    );
}

fn validate_openapi(path: &Path) {
    let script = "import sys\n\
from openapi_spec_validator import validate\n\
from openapi_spec_validator.readers import read_from_filename\n\
spec, _ = read_from_filename(sys.argv[1])\n\
validate(spec)\n\
print('valid', len(spec['paths']))\n";
    let out = Command::new(support::test_python())
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{} does not validate: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openapi_export_validates() {
    let dir = support::scratch_dir("inventory-openapi");
    for name in ["api.json", "api.yaml"] {
        let path = dir.join(name);
        inventory(&["--openapi", path.to_str().unwrap()]);
        validate_openapi(&path);
    }
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("api.json")).unwrap()).unwrap();
    let op = &doc["paths"]["/users/{id}/orders/{orderId}"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["id", "orderId"]);
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"]["items"]["items"]["properties"]["qty"]["type"],
        "integer"
    );
    let search = &doc["paths"]["/search"]["get"]["parameters"];
    assert!(search
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "limit" && p["in"] == "query"));
    assert_eq!(
        doc["paths"]["/orders/{uuid}"]["get"]["parameters"][0]["schema"]["format"],
        "uuid"
    );
    // The fixture's own spec is valid too (it is the drift reference).
    validate_openapi(&fixture("openapi.yaml"));
}

#[test]
fn drift_against_the_fixture_spec() {
    let doc = inventory_json(&["--spec", fixture("openapi.yaml").to_str().unwrap()]);
    let drift = &doc["drift"];
    let list = |key: &str| -> Vec<String> {
        drift[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["method"].as_str().unwrap(),
                    e["path"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(list("shadow"), ["GET /debug/vars"]);
    assert_eq!(list("zombie"), ["GET /legacy/stats"]);
    assert_eq!(list("unused"), ["PUT /accounts/me"]);
    let undocumented = drift["undocumented"].as_array().unwrap();
    assert!(undocumented
        .iter()
        .any(|u| u["path"] == "/search" && u["query_params"] == serde_json::json!(["api_key"])));
    assert!(undocumented
        .iter()
        .any(|u| u["path"] == "/users/{id}" && u["status_codes"] == serde_json::json!([404])));
}

#[test]
fn posture_findings_on_the_fixture() {
    let doc = inventory_json(&[]);
    let findings: BTreeSet<(String, String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "posture");
            assert_eq!(f["schema_version"], 1);
            assert!(!f["text"]["what_to_do"].as_str().unwrap().is_empty());
            (
                f["rule"].as_str().unwrap().to_string(),
                format!(
                    "{} {}",
                    f["endpoint"]["method"].as_str().unwrap(),
                    f["endpoint"]["path"].as_str().unwrap()
                ),
                f["owasp"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        (
            "posture.debug_endpoint_exposed",
            "GET /debug/vars",
            "API8:2023",
        ),
        ("posture.secret_in_response", "POST /users", "API3:2023"),
        ("posture.credentials_in_url", "GET /search", "API2:2023"),
        (
            "posture.cleartext_credentials",
            "GET /accounts/me",
            "API8:2023",
        ),
        (
            "posture.cleartext_credentials",
            "GET /users/{id}",
            "API8:2023",
        ),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2.to_string());
        assert!(
            findings.contains(&want),
            "{want:?} missing from {findings:#?}"
        );
    }
    let table = inventory(&[]);
    assert!(table.contains("Findings"), "{table}");
    assert!(table.contains("/users/{id}/orders/{orderId}"), "{table}");
}

/// Posture findings travel the event path: `replay --events` prints them
/// as schema-v1 events, with severity and OWASP category; a login handing
/// out a token is not reported as a leak.
#[test]
fn replay_events_carry_the_posture_findings() {
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(["replay", "--events", "--workers", "2"])
        .arg(fixture("rest-api.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let posture: BTreeSet<(String, String)> = events
        .iter()
        .filter(|e| e["kind"] == "posture")
        .map(|e| {
            assert_eq!(e["schema_version"], 1);
            assert!(e["severity"].is_string() && e["owasp"].is_string(), "{e}");
            assert!(!e["text"]["what_to_do"].as_str().unwrap().is_empty());
            (
                e["rule"].as_str().unwrap().to_owned(),
                e["endpoint"]["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (rule, path) in [
        ("posture.debug_endpoint_exposed", "/debug/vars"),
        ("posture.secret_in_response", "/users"),
        ("posture.credentials_in_url", "/search"),
        ("posture.cleartext_credentials", "/accounts/me"),
    ] {
        assert!(
            posture.contains(&(rule.to_owned(), path.to_owned())),
            "{rule} on {path} missing from {posture:?}"
        );
    }
    assert!(
        !posture.iter().any(|(_, path)| path == "/login"),
        "issuing a token at login is not a leak: {posture:?}"
    );
}
