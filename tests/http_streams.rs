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

/// Rough speed check: `cargo test --release --test http_streams -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_keepalive() {
    use apisensor::config::HttpSettings;
    use apisensor::http1::script::{run_actions, Action};
    use apisensor::Direction;
    let n = 200_000;
    let mut actions = Vec::with_capacity(2 * n);
    for i in 0..n {
        actions.push(Action::Data(
            Direction::ToServer,
            format!("GET /api/v1/items/{i}?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n").into_bytes(),
        ));
        actions.push(Action::Data(
            Direction::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\":true}\r\n".to_vec(),
        ));
    }
    let t = std::time::Instant::now();
    let (ex, _) = run_actions(&HttpSettings::default(), &actions);
    let dt = t.elapsed();
    assert_eq!(ex.len(), n);
    println!(
        "{n} exchanges in {dt:?} ({:.0}/s)",
        n as f64 / dt.as_secs_f64()
    );
}
