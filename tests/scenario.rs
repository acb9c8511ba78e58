//! The labeled attack scenario (`fixtures/scenario/`): a vulnerable API,
//! 34 benign actors and 18 attack campaigns, with the generator's ground
//! truth. Replays it with `--events` and scores the detections: which
//! campaigns are caught (right family, OWASP category and actor), how long
//! after the campaign started, and whether any benign actor was accused.
//! Campaigns whose detectors do not exist yet are reported, not asserted.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn fixture(name: &str) -> std::path::PathBuf {
    support::repo_root().join("fixtures/scenario").join(name)
}

/// The API's own OpenAPI document, and a fixed redaction key: without one
/// each run draws a random key, and the hashes in redacted evidence
/// (rightly) differ from run to run.
fn config() -> std::path::PathBuf {
    let path = support::scratch_dir("scenario").join("sensor.toml");
    let key = "5a".repeat(32);
    let spec = fixture("openapi.yaml");
    std::fs::write(
        &path,
        format!(
            "[classify]\nredaction_key_hex = \"{key}\"\n[inventory]\nspec_path = \"{}\"\n",
            spec.display()
        ),
    )
    .unwrap();
    path
}

fn events(workers: &str) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("--config")
        .arg(config())
        .args(["replay", "--events", "--workers", workers])
        .arg(fixture("scenario.pcap"))
        .output()
        .expect("run apisensor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The campaign family (truth.json's names) a detection rule stands for.
fn family(rule: &str) -> Option<&'static str> {
    Some(match rule {
        "detect.auth.credential_stuffing" | "detect.auth.password_spraying" => {
            "credential_stuffing"
        }
        "detect.auth.brute_force" => "brute_force",
        "detect.scanner.not_found_burst" | "detect.scanner.tool_user_agent" => "scanner",
        "detect.jwt.alg_none_accepted" => "jwt_alg_none",
        "detect.jwt.weak_secret" | "detect.jwt.forged_token_accepted" => "jwt_weak_secret",
        "detect.jwt.expired_accepted" => "jwt_expired",
        r if r.starts_with("detect.injection.") => "injection",
        "detect.authz.bola_enumeration" | "detect.authz.bola_foreign_object" => "bola",
        "detect.authz.function_level" => "function_level_authz",
        "detect.auth.missing_auth_accepted" => "missing_auth",
        "detect.authz.mass_assignment" => "mass_assignment",
        "detect.exposure.unusual_sensitive_data" | "detect.exposure.sensitive_volume" => {
            "excessive_data_exposure"
        }
        "detect.resource.rate_abuse" => "rate_abuse",
        "detect.resource.page_size_abuse" => "pagination_abuse",
        "detect.exposure.verbose_error" => "verbose_errors",
        "detect.inventory.unknown_host" => "unknown_host",
        "detect.inventory.shadow_api" => "shadow_api",
        "detect.inventory.deprecated_api" => "deprecated_api",
        _ => return None,
    })
}

/// Families with a detector today; the scenario must catch every campaign of these.
const BUILT: &[&str] = &[
    "credential_stuffing",
    "brute_force",
    "scanner",
    "jwt_alg_none",
    "jwt_weak_secret",
    "jwt_expired",
    "injection",
    "bola",
    "function_level_authz",
    "missing_auth",
    "mass_assignment",
    "excessive_data_exposure",
    "rate_abuse",
    "pagination_abuse",
    "verbose_errors",
    "unknown_host",
    "shadow_api",
    "deprecated_api",
];

#[test]
fn campaigns_are_detected_and_no_benign_actor_is_accused() {
    let one = events("1");
    assert!(one == events("4"), "events differ between 1 and 4 workers");
    let events: Vec<Value> = String::from_utf8(one)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    let truth: Value =
        serde_json::from_slice(&std::fs::read(fixture("truth.json")).unwrap()).unwrap();
    let benign: BTreeSet<&str> = truth["benign"]["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap())
        .collect();
    let benign_requests = truth["benign"]["request_count"].as_u64().unwrap();

    // Detections per actor address: (family, owasp, time ms).
    let mut by_ip: BTreeMap<String, Vec<(&'static str, String, u64)>> = BTreeMap::new();
    let mut accused = Vec::new();
    for e in events
        .iter()
        .filter(|e| e["kind"] == "detection" || e["kind"] == "incident")
    {
        let Some(ip) = e["actor"]["ip"].as_str() else {
            continue;
        };
        if benign.contains(ip) {
            accused.push(format!("{} {}", e["rule"], ip));
        }
        if let Some(f) = family(e["rule"].as_str().unwrap()) {
            by_ip.entry(ip.to_owned()).or_default().push((
                f,
                e["owasp"].as_str().unwrap_or("").to_owned(),
                e["time"].as_u64().unwrap(),
            ));
        }
    }

    let mut caught = 0;
    let mut missed_built = Vec::new();
    let campaigns = truth["campaigns"].as_array().unwrap();
    eprintln!(
        "campaign                          owasp      family                  detected  delay"
    );
    for c in campaigns {
        let families: Vec<&str> = c["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let owasp = c["owasp"].as_str().unwrap();
        let start_ms = (c["start_ts"].as_f64().unwrap() * 1000.0) as u64;
        let hits: Vec<&(&str, String, u64)> = c["actor_ips"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|ip| by_ip.get(ip.as_str().unwrap()))
            .flatten()
            .filter(|(f, o, _)| families.contains(f) && o == owasp)
            .collect();
        let first = hits.iter().map(|(_, _, t)| *t).min();
        let delay = first.map(|t| t.saturating_sub(start_ms) as f64 / 1000.0);
        if first.is_some() {
            caught += 1;
        } else if families.iter().any(|f| BUILT.contains(f)) {
            missed_built.push(c["name"].as_str().unwrap().to_owned());
        }
        eprintln!(
            "{:<33} {:<10} {:<23} {:<9} {}",
            c["name"].as_str().unwrap(),
            owasp,
            families.join(","),
            if first.is_some() { "yes" } else { "no" },
            delay.map_or("-".into(), |d| format!("{d:.1}s")),
        );
    }
    eprintln!(
        "recall {caught}/{} campaigns; {} detections against benign actors ({:.1} per 10,000 benign exchanges)",
        campaigns.len(),
        accused.len(),
        accused.len() as f64 * 10_000.0 / benign_requests as f64
    );
    assert!(accused.is_empty(), "benign actors accused: {accused:?}");
    assert!(
        missed_built.is_empty(),
        "campaigns with a detector were missed: {missed_built:?}"
    );
    assert!(caught >= BUILT.len());
}

/// False-positive feedback: a suppression rule silences matching detections
/// (counted in the summary), and the rest still arrive.
#[test]
fn suppression_rules_silence_and_count() {
    let cfg = support::scratch_dir("scenario-suppress").join("sensor.toml");
    std::fs::write(
        &cfg,
        "[[detect.suppress]]\nrule = \"detect.scanner.\"\ncidr = \"127.0.2.0/24\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .arg("--config")
        .arg(&cfg)
        .args(["replay", "--events"])
        .arg(fixture("scenario.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rules: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["rule"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        !rules.iter().any(|r| r.starts_with("detect.scanner.")),
        "{rules:?}"
    );
    assert!(rules.iter().any(|r| r.starts_with("detect.injection.")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(counter(&stderr, "detect.suppressed"), 2, "{stderr}");
}

/// A counter of the run summary (`  detect.suppressed 2`); the summary
/// leaves out counters that are zero.
fn counter(summary: &str, name: &str) -> u64 {
    summary
        .lines()
        .filter_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// Baselines persist: the snapshot is written at the end of a run and
/// loaded by the next; an unreadable one is set aside and learning starts
/// afresh. `--baseline-from` learns on one capture and judges another.
#[test]
fn baseline_snapshot_persists_and_a_corrupt_one_is_set_aside() {
    let dir = support::scratch_dir("scenario-baseline");
    let snapshot = dir.join("baseline.msgpack");
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!("[detect]\nbaseline_path = \"{}\"\n", snapshot.display()),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
            .arg("--config")
            .arg(&cfg)
            .args(["replay", "--events"])
            .args(extra)
            .arg(fixture("scenario.pcap"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let corrupt = counter(&stderr, "detect.baseline_corrupt");
        (String::from_utf8(out.stdout).unwrap(), corrupt)
    };
    let (first, _) = run(&[]);
    let size = std::fs::metadata(&snapshot)
        .expect("snapshot written")
        .len();
    assert!(size > 1000, "{size} bytes");
    // Reloaded: the second run starts from what the first learned and still
    // reports the campaigns (findings are not part of the snapshot).
    let (second, corrupt) = run(&[]);
    assert_eq!(corrupt, 0);
    assert!(second.contains("detect.authz.bola_enumeration"));
    assert!(first.lines().count() > 0);

    std::fs::write(&snapshot, b"\x93not a snapshot").unwrap();
    let (_, corrupt) = run(&[]);
    assert_eq!(corrupt, 1);
    let aside = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("baseline.msgpack.corrupt-")
        });
    assert!(aside, "the corrupt snapshot is kept for inspection");
    assert!(
        std::fs::metadata(&snapshot).unwrap().len() > 1000,
        "a fresh one replaced it"
    );
}

#[test]
fn baseline_from_an_earlier_capture() {
    let out = Command::new(env!("CARGO_BIN_EXE_apisensor"))
        .args(["replay", "--events", "--baseline-from"])
        .arg(fixture("scenario.pcap"))
        .arg("--")
        .arg(fixture("scenario.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with("baseline: ")),
        "{stderr}"
    );
    let events = String::from_utf8(out.stdout).unwrap();
    // Judged from the first packet with a learned baseline.
    assert!(events.contains("detect.authz.mass_assignment"));
}
