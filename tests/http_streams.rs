//! Runs every stream script in `fixtures/streams/` (format in its README).

use apisensor::http1::script::run_script;
use std::path::Path;

#[test]
fn stream_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/streams");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/streams exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 10,
        "expected at least 10 scripts, found {}",
        names.len()
    );
    let mut failures = Vec::new();
    for path in &names {
        let text = std::fs::read_to_string(path).expect("readable script");
        if let Err(e) = run_script(&text) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "failed scripts:\n{}",
        failures.join("\n")
    );
}
