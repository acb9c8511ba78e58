//! Discovery and detection on the real applications of `fixtures/realapps/`
//! (open-source APIs nobody on the team wrote, driven by scripted users and
//! labelled attack campaigns): `scripts/eval_realapps.py` scores this build
//! against each application's route table and ground truth, and this test
//! holds it to issue 24's acceptance, so that a change that helps one
//! application and breaks another fails here rather than in the next
//! measurement.
//!
//! Shortfalls that were measured and reported are listed (`KNOWN_SHORT`,
//! `KNOWN_MISSED`, `KNOWN_BENIGN_EVENTS`) with the floor they hold;
//! anything worse, or below a threshold not listed, fails.

mod support;

use serde_json::Value;
use std::process::Command;

/// (application, inventory cut, metric, floor) where the 0.95 is
/// not met today.
const KNOWN_SHORT: &[(&str, &str, &str, f64)] = &[
    // Three badge paths, each fetched once by its owner in the first
    // minute, stay literal (fixtures/realapps/README.md).
    ("healthchecks", "1 min", "precision", 0.93),
    // Planka, held out (fixtures/realapps/README.md): `/api/users/me` is
    // its `/api/users/{id}`; before its catch-all page has answered four
    // paths, the first ones are endpoints; first logins are refused (terms
    // to accept).
    ("planka", "1 min", "precision", 0.88),
    ("planka", "1 min", "recall", 0.88),
    // Baby Buddy, held out: `GET /dashboard` (a redirect to the child's
    // dashboard) and `POST /logout` (answered 302) are exercised before
    // five minutes but were not listed.
    ("babybuddy", "5 min", "recall", 0.94),
];

/// Campaigns of the held-out applications not detected with an
/// accepted category today (README, "Real applications").
const KNOWN_MISSED: &[(&str, &str)] = &[
    ("ctfd", "ct-exposure-volume"),
    // Timers read and renamed across accounts, on an API whose every other
    // object is shared by all caregivers.
    ("babybuddy", "bb-bola-foreign"),
];

/// Medium-or-higher events on benign actors allowed today.
const KNOWN_BENIGN_EVENTS: &[(&str, u64)] = &[
    // Baby Buddy, held out: a caregiver who logs out and in again has a new
    // session, which then reads her own child "owned" by the old one.
    ("babybuddy", 1),
];

const THRESHOLD: f64 = 0.95;

fn floor(app: &str, cut: &str, metric: &str) -> f64 {
    KNOWN_SHORT
        .iter()
        .find(|(a, c, m, _)| *a == app && *c == cut && *m == metric)
        .map_or(THRESHOLD, |(_, _, _, floor)| *floor)
}

#[test]
fn real_applications_meet_the_acceptance_thresholds() {
    let root = support::repo_root();
    let json = support::scratch_dir("realapps").join("summary.json");
    let out = Command::new("python3")
        .arg(root.join("scripts/eval_realapps.py"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_apisensor"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("python3 runs (scripts/setup.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eval_realapps.py failed: {}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let apps = summary.as_object().unwrap();
    for app in [
        "fastapi-template",
        "kutt",
        "healthchecks",
        "ctfd",
        "vaultwarden",
        "mealie",
        "planka",
    ] {
        assert!(apps.contains_key(app), "{app} was not scored:\n{report}");
    }
    let mut failures = Vec::new();
    for (app, s) in apps {
        for row in s["inventory"].as_array().unwrap() {
            let cut = row["cut"].as_str().unwrap();
            if cut == "whole" {
                continue;
            }
            let precision = row["precision"].as_f64().unwrap_or(0.0);
            let recall = row["recall"].as_f64().unwrap_or(0.0);
            if precision < floor(app, cut, "precision") {
                failures.push(format!(
                    "{app}: inventory precision {precision:.3} at {cut}"
                ));
            }
            if recall < floor(app, cut, "recall") {
                failures.push(format!("{app}: inventory recall {recall:.3} at {cut}"));
            }
        }
        for c in s["campaigns"].as_array().unwrap() {
            let id = c["id"].as_str().unwrap();
            let known = KNOWN_MISSED.contains(&(app.as_str(), id));
            if !known && (c["detected"] != true || c["acceptable_category"] != true) {
                failures.push(format!(
                    "{app}: campaign {id} not detected with an accepted category"
                ));
            }
            if c["events"].as_u64().unwrap_or(0) > 5 {
                failures.push(format!("{app}: campaign {id} gave {} events", c["events"]));
            }
        }
        let benign = &s["benign"]["events_medium_or_higher"];
        let allowed = KNOWN_BENIGN_EVENTS
            .iter()
            .find(|(a, _)| *a == app)
            .map_or(0, |(_, n)| *n);
        if benign.as_u64().is_none_or(|n| n > allowed) {
            failures.push(format!(
                "{app}: {benign} events of medium or higher severity on benign actors"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}
