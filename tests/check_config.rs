//! `apisensor check-config` refuses every configuration `apisensor run` would
//! refuse at start, naming the key and the fix, and `run` refuses each the
//! same way (issue 23); risky but working settings (a listener on every
//! interface, events in cleartext) pass with a warning naming the key.
//!
//! Table-driven: each case is a sensor.toml fragment, the key the error (or
//! warning) must name, and for refusals a word of the problem. Every
//! configuration carries a UDP mirror source on 127.0.0.1:0, so `run` gets
//! past "no capture source" and has nothing else to object to. Needs no
//! root and no network: files are made in a scratch directory, the
//! interface is `lo`, the BPF filter is compiled without opening it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apisensor");
/// A source so `run` does not stop at "no capture source".
const SOURCE: &str = "[[capture.udp]]\nlisten = \"127.0.0.1:0\"\nencapsulation = \"vxlan\"\n";

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("check-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn check_config(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run apisensor check-config")
}

/// `apisensor --config PATH run`: (still running or exited 0, stderr). A
/// refused configuration makes it exit at once; one it accepts would keep
/// it capturing, so after 10 s it is killed and reported as started.
fn run(path: &Path) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run apisensor run");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    match status {
        Some(s) => (s.success(), stderr),
        None => (true, format!("still running after 10 s: {stderr}")),
    }
}

/// A configuration `check-config` must refuse.
struct Refused {
    name: &'static str,
    toml: String,
    key: &'static str,
    /// A word of the problem, so the right check fired.
    says: &'static str,
}

fn refused_cases(dir: &Path) -> Vec<Refused> {
    let not_pem = dir.join("ca.der");
    std::fs::write(&not_pem, [0x30, 0x82, 0x03, 0x1e, 0x30, 0x82]).unwrap();
    let key_only = dir.join("key.pem");
    std::fs::write(
        &key_only,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let a_file = dir.join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let not_openapi = dir.join("spec.yaml");
    std::fs::write(&not_openapi, "hello: world\n").unwrap();
    let d = dir.display().to_string();
    let tls_syslog = |ca: &str| {
        format!("[[events.sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\ntls = true\nca_file = {ca:?}\n")
    };
    let cases = [
        ("ca-file-missing", tls_syslog(&format!("{d}/missing-ca.pem")), "events.sinks.ca_file", "cannot be read"),
        ("ca-file-der", tls_syslog(&not_pem.display().to_string()), "events.sinks.ca_file", "no PEM certificate"),
        ("ca-file-key", tls_syslog(&key_only.display().to_string()), "events.sinks.ca_file", "no PEM certificate"),
        ("ca-file-directory", tls_syslog(&d), "events.sinks.ca_file", "is a directory"),
        (
            "webhook-ca-file-missing",
            format!("[[events.sinks]]\ntype = \"webhook\"\nurl = \"https://127.0.0.1:8443/hook\"\nca_file = \"{d}/nope.pem\"\n"),
            "events.sinks.ca_file",
            "cannot be read",
        ),
        ("unknown-user", "[service]\nuser = \"no-such-user-apisensor\"\n".into(), "service.user", "does not exist"),
        ("root-user", "[service]\nuser = \"root\"\n".into(), "service.user", "is root"),
        ("exchanges-path-directory", format!("[service]\nexchanges_path = {d:?}\n"), "service.exchanges_path", "is a directory"),
        (
            "exchanges-path-no-directory",
            format!("[service]\nexchanges_path = \"{d}/no-such-dir/ex.jsonl\"\n"),
            "service.exchanges_path",
            "does not exist",
        ),
        (
            "file-sink-path-directory",
            format!("[[events.sinks]]\ntype = \"file\"\npath = {d:?}\n"),
            "events.sinks.path",
            "is a directory",
        ),
        ("baseline-path-directory", format!("[detect]\nbaseline_path = {d:?}\n"), "detect.baseline_path", "is a directory"),
        ("spool-dir-a-file", format!("[events]\nspool_dir = {:?}\n", a_file.display().to_string()), "events.spool_dir", "is a file"),
        (
            "sink-name-slash",
            "[[events.sinks]]\ntype = \"stdout\"\nname = \"../../etc/cron.d/x\"\n".into(),
            "events.sinks.name",
            "not usable as a file name",
        ),
        (
            "sink-name-backslash",
            "[[events.sinks]]\ntype = \"stdout\"\nname = \"a\\\\b\"\n".into(),
            "events.sinks.name",
            "not usable as a file name",
        ),
        ("sink-name-dotdot", "[[events.sinks]]\ntype = \"stdout\"\nname = \"..\"\n".into(), "events.sinks.name", "not usable"),
        (
            "webhook-userinfo",
            "[[events.sinks]]\ntype = \"webhook\"\nurl = \"https://alice:s3cret-pw@hooks.example.com/x\"\n".into(),
            "events.sinks.url",
            "user information",
        ),
        (
            "webhook-userinfo-without-password",
            "[[events.sinks]]\ntype = \"webhook\"\nurl = \"http://token@hooks.example.com/x\"\n".into(),
            "events.sinks.url",
            "user information",
        ),
        (
            "webhook-bad-port",
            "[[events.sinks]]\ntype = \"webhook\"\nurl = \"https://hooks.example.com:99999/x\"\n".into(),
            "events.sinks.url",
            "port",
        ),
        (
            "webhook-http-with-ca-file",
            format!("[[events.sinks]]\ntype = \"webhook\"\nurl = \"http://hooks.example.com/x\"\nca_file = \"{d}/ca.pem\"\n"),
            "events.sinks.url",
            "not https://",
        ),
        (
            "syslog-address-without-port",
            "[[events.sinks]]\ntype = \"syslog\"\naddress = \"siem.example.com\"\n".into(),
            "events.sinks.address",
            "not host:port",
        ),
        ("cidr-v4-bits", "[[detect.suppress]]\ncidr = \"10.0.0.0/33\"\n".into(), "detect.suppress.cidr", "prefix length"),
        ("cidr-v6-bits", "[[detect.suppress]]\ncidr = \"2001:db8::/129\"\n".into(), "detect.suppress.cidr", "prefix length"),
        ("cidr-v4-bits-40", "[[detect.suppress]]\ncidr = \"10.0.0.0/40\"\n".into(), "detect.suppress.cidr", "prefix length"),
        ("cidr-bad-address", "[[detect.suppress]]\ncidr = \"10.0.0.300/8\"\n".into(), "detect.suppress.cidr", "not an IP address"),
        ("max-flows-absurd", "[flow]\nmax_flows = 1000000000\n".into(), "flow.max_flows", "at most"),
        (
            "bpf-does-not-compile",
            "[[capture.interfaces]]\nname = \"lo\"\nbpf_filter = \"tcp port http and and\"\n".into(),
            "capture.interfaces.bpf_filter",
            "does not compile",
        ),
        (
            "bpf-unknown-protocol",
            "[[capture.interfaces]]\nname = \"lo\"\nbpf_filter = \"tcp port 80 or frobnicate\"\n".into(),
            "capture.interfaces.bpf_filter",
            "does not compile",
        ),
        (
            "interface-missing",
            "[[capture.interfaces]]\nname = \"no-such-if0\"\n".into(),
            "capture.interfaces.name",
            "does not exist",
        ),
        ("metrics-listen-no-port", "[service]\nmetrics_listen = \"localhost\"\n".into(), "service.metrics_listen", "not an address:port"),
        (
            "spec-not-openapi",
            format!("[inventory]\nspec_path = {:?}\n", not_openapi.display().to_string()),
            "inventory.spec_path",
            "not OpenAPI",
        ),
    ];
    cases
        .into_iter()
        .map(|(name, toml, key, says)| Refused {
            name,
            toml,
            key,
            says,
        })
        .collect()
}

#[test]
fn check_config_and_run_refuse_each_bad_config_naming_the_key() {
    let dir = scratch("refused");
    let spool = dir.0.join("spool");
    let mut failures = Vec::new();
    for case in refused_cases(&dir.0) {
        let path = dir.0.join(format!("{}.toml", case.name));
        // Sinks need a writable spool; each config brings its own source.
        let spool_line = if case.toml.contains("spool_dir") {
            String::new()
        } else {
            format!("[events]\nspool_dir = {:?}\n", spool.display().to_string())
        };
        std::fs::write(&path, format!("{SOURCE}{}\n{spool_line}", case.toml)).unwrap();
        let out = check_config(&path);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut problems = Vec::new();
        if out.status.success() {
            problems.push("check-config accepted it".to_string());
        }
        if !stderr.contains(case.key) || !stderr.contains(case.says) || !stderr.contains("fix") {
            problems.push(format!(
                "check-config did not name `{}` ({:?}) with a fix",
                case.key, case.says
            ));
        }
        let (started, run_err) = run(&path);
        if started {
            problems.push(format!("run did not refuse it: {run_err}"));
        }
        if !run_err.contains(case.key) || !run_err.contains(case.says) {
            problems.push(format!("run did not name `{}`: {run_err}", case.key));
        }
        if stderr.contains("s3cret-pw") || run_err.contains("s3cret-pw") {
            problems.push("a password from the URL was printed".into());
        }
        if stderr.contains("panicked") || run_err.contains("panicked") {
            problems.push("panicked".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  check-config: {stderr}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Configurations that work: accepted with exit 0, and the risky ones with a
/// warning naming the key (on stderr; stdout keeps the one-line verdict).
#[test]
fn check_config_accepts_good_configs_and_warns_about_risky_ones() {
    let dir = scratch("accepted");
    let d = &dir.0;
    let ca = rcgen::generate_simple_self_signed(vec!["collector.test".into()]).unwrap();
    let ca_file = d.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let spool = format!(
        "[events]\nspool_dir = {:?}\n",
        d.join("spool").display().to_string()
    );
    let cases: [(&str, String, &[&str]); 9] = [
        ("bundled", std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sensor.toml")).unwrap(), &["capture"]),
        (
            "quiet",
            format!(
                "{SOURCE}[service]\nmetrics_listen = \"127.0.0.1:9464\"\nexchanges_path = \"{}/ex.jsonl\"\n\
                 [[capture.interfaces]]\nname = \"lo\"\nbpf_filter = \"tcp port 80 or tcp port 8080\"\n\
                 [[detect.suppress]]\ncidr = \"10.1.2.3\"\n[[detect.suppress]]\ncidr = \"2001:db8::/32\"\n\
                 {spool}[[events.sinks]]\ntype = \"webhook\"\nurl = \"https://collector.test/hook\"\nca_file = {:?}\n\
                 [[events.sinks]]\ntype = \"syslog\"\naddress = \"[::1]:514\"\n\
                 [[events.sinks]]\ntype = \"fluent\"\naddress = \"collector.test:24224\"\ntls = true\nca_file = {:?}\n",
                d.display(),
                ca_file.display().to_string(),
                ca_file.display().to_string()
            ),
            &[],
        ),
        ("metrics-everywhere", format!("{SOURCE}[service]\nmetrics_listen = \"0.0.0.0:9464\"\n"), &["service.metrics_listen"]),
        ("metrics-everywhere-v6", format!("{SOURCE}[service]\nmetrics_listen = \"[::]:9464\"\n"), &["service.metrics_listen"]),
        ("udp-everywhere", "[[capture.udp]]\nlisten = \"0.0.0.0:4789\"\nencapsulation = \"vxlan\"\n".into(), &["capture.udp.listen"]),
        (
            "syslog-cleartext",
            format!("{SOURCE}{spool}[[events.sinks]]\ntype = \"syslog\"\naddress = \"192.0.2.10:514\"\n"),
            &["events.sinks"],
        ),
        (
            "webhook-cleartext",
            format!("{SOURCE}{spool}[[events.sinks]]\ntype = \"webhook\"\nurl = \"http://192.0.2.10/hook\"\n"),
            &["events.sinks"],
        ),
        (
            "nats-cleartext",
            format!("{SOURCE}{spool}[[events.sinks]]\ntype = \"nats\"\naddress = \"nats://bus.example.com:4222\"\n"),
            &["events.sinks"],
        ),
        (
            "fluent-cleartext",
            format!("{SOURCE}{spool}[[events.sinks]]\ntype = \"fluent\"\naddress = \"logs.example.com:24224\"\n"),
            &["events.sinks"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, toml, warned) in cases {
        let path = d.join(format!("{name}.toml"));
        std::fs::write(&path, toml).unwrap();
        let out = check_config(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains(": ok") {
            failures.push(format!("{name}: refused: {stderr}"));
            continue;
        }
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
        if warnings.len() != warned.len() {
            failures.push(format!(
                "{name}: expected warnings about {warned:?}, got {warnings:?}"
            ));
            continue;
        }
        for (line, key) in warnings.iter().zip(warned) {
            if !line.contains(&format!("`{key}`")) || !line.contains("fix:") {
                failures.push(format!(
                    "{name}: warning does not name `{key}` with a fix: {line}"
                ));
            }
        }
        if warned.contains(&"events.sinks") && !stderr.contains("cleartext") {
            failures.push(format!("{name}: no word of cleartext: {stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
