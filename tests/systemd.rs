//! The systemd unit in `systemd/`: `systemd-analyze verify` finds nothing wrong
//! with it, it keeps the directives the deployment relies on (unprivileged user,
//! the two capture capabilities, the filesystem lockdown, the memory cap), and
//! the sysusers snippet creates the user it runs as.
//!
//! `systemd-analyze` and `systemd-sysusers` come from the `systemd` package
//! (scripts/packages.txt, installed by scripts/setup.sh). They are required:
//! a missing tool fails the test instead of skipping it.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const UNIT: &str = "systemd/apisensor.service";
const SYSUSERS: &str = "systemd/apisensor.sysusers.conf";
const INSTALLED_BIN: &str = "/usr/local/bin/apisensor";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_unit() -> String {
    std::fs::read_to_string(repo_file(UNIT)).expect("read systemd/apisensor.service")
}

/// A fresh directory under cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("systemd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a systemd tool; a missing tool is a set-up error, not a skip.
fn run_tool(cmd: &mut Command, tool: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{tool}` is not installed: run `bash scripts/setup.sh` (it installs the \
             `systemd` package listed in scripts/packages.txt, as CI does)"
        ),
        Err(e) => panic!("cannot run `{tool}`: {e}"),
    }
}

/// The unit as installed, except that `ExecStart=` runs the binary cargo just
/// built: `systemd-analyze verify` checks that the executable exists, and
/// /usr/local/bin/apisensor need not on a build machine. Everything else is
/// byte for byte the same.
fn unit_for_verify(unit: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_apisensor");
    assert!(
        !bin.contains(['"', '\\', '\n']),
        "binary path {bin:?} cannot be put in a unit file"
    );
    let mut rewritten = 0;
    let text: Vec<String> = unit
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(rest) => {
                let args = rest
                    .strip_prefix(INSTALLED_BIN)
                    .unwrap_or_else(|| panic!("ExecStart= must run {INSTALLED_BIN}: {line}"));
                rewritten += 1;
                // Quoted so that a checkout path with spaces still parses.
                format!("ExecStart=\"{bin}\"{args}")
            }
            None => line.to_string(),
        })
        .collect();
    assert_eq!(rewritten, 1, "expected exactly one ExecStart= line");
    text.join("\n") + "\n"
}

/// `systemd-analyze verify` on `unit_text` written as `apisensor.service` in a
/// scratch directory. Returns the exit status, all of its output, and the
/// output lines about the unit.
fn verify(name: &str, unit_text: &str) -> (bool, String, Vec<String>) {
    let dir = scratch(name);
    let path = dir.join("apisensor.service");
    std::fs::write(&path, unit_text).unwrap();
    let out = run_tool(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            // Pin the level: at debug, systemd also logs harmless notes that
            // name the unit (e.g. syscalls in @system-service that this
            // libseccomp does not know), which would read as problems here.
            .env("SYSTEMD_LOG_LEVEL", "info")
            .env("SYSTEMD_LOG_COLOR", "0"),
        "systemd-analyze",
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path_str = path.to_string_lossy().into_owned();
    let problems = all
        .lines()
        .filter(|l| l.contains(&path_str) || l.contains("apisensor.service"))
        .map(str::to_string)
        .collect();
    (out.status.success(), all, problems)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let (ok, output, problems) = verify("verify", &unit_for_verify(&read_unit()));
    eprintln!("systemd-analyze verify output:\n{output}");
    assert!(ok, "systemd-analyze verify failed:\n{output}");
    assert!(
        problems.is_empty(),
        "systemd-analyze verify reports problems with the unit:\n{}",
        problems.join("\n")
    );
}

/// The check above would pass vacuously if `systemd-analyze` printed nothing
/// for a bad unit: show that a typo and a bad value are caught (systemd only
/// warns and exits 0 for those, hence the look at the output), and that a
/// missing executable makes it exit non-zero.
#[test]
fn verify_check_catches_a_broken_unit() {
    let good = unit_for_verify(&read_unit());

    let typo = good
        .replace("\nUser=apisensor\n", "\nUsr=apisensor\n")
        .replace("\nMemoryMax=2G\n", "\nMemoryMax=2X\n");
    assert_ne!(typo, good);
    let (_, output, problems) = verify("typo", &typo);
    assert!(
        problems.iter().any(|l| l.contains("Usr")) && problems.iter().any(|l| l.contains("2X")),
        "a misspelt key and a bad value went unnoticed:\n{output}"
    );

    let missing = good.replacen(env!("CARGO_BIN_EXE_apisensor"), "/nonexistent/apisensor", 1);
    let (ok, output, _) = verify("missing", &missing);
    assert!(!ok, "a missing ExecStart binary went unnoticed:\n{output}");
}

/// `key=value` assignments per section, in order; repeated keys are kept.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn values(unit: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// The single value of `key` (systemd would take the last; two are a mistake here).
fn one(unit: &[(String, String, String)], section: &str, key: &str) -> String {
    let v = values(unit, section, key);
    assert_eq!(
        v.len(),
        1,
        "[{section}] {key}= must be set exactly once: {v:?}"
    );
    v.into_iter().next().unwrap()
}

/// Space-separated list settings, all assignments together.
fn words(unit: &[(String, String, String)], section: &str, key: &str) -> BTreeSet<String> {
    values(unit, section, key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn unit_has_required_directives() {
    let unit = parse_unit(&read_unit());
    let svc = "Service";

    assert_eq!(
        one(&unit, svc, "ExecStart"),
        "/usr/local/bin/apisensor run --config /etc/apisensor/sensor.toml"
    );
    assert_eq!(one(&unit, svc, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&unit, svc, "Type"), "notify");
    assert_eq!(one(&unit, svc, "NotifyAccess"), "main");
    assert_eq!(one(&unit, svc, "User"), "apisensor");
    assert_eq!(one(&unit, svc, "Group"), "apisensor");

    let caps = set(&["CAP_NET_RAW", "CAP_NET_ADMIN"]);
    assert_eq!(words(&unit, svc, "AmbientCapabilities"), caps);
    assert_eq!(words(&unit, svc, "CapabilityBoundingSet"), caps);
    assert_eq!(one(&unit, svc, "NoNewPrivileges"), "yes");

    assert_eq!(one(&unit, svc, "ProtectSystem"), "strict");
    assert_eq!(one(&unit, svc, "ProtectHome"), "yes");
    assert_eq!(one(&unit, svc, "PrivateTmp"), "yes");
    assert_eq!(
        words(&unit, svc, "ReadWritePaths"),
        set(&["/var/lib/apisensor", "/var/log/apisensor"])
    );
    assert_eq!(one(&unit, svc, "StateDirectory"), "apisensor");
    assert_eq!(one(&unit, svc, "LogsDirectory"), "apisensor");

    assert_eq!(one(&unit, svc, "MemoryMax"), "2G");
    assert_eq!(one(&unit, svc, "Restart"), "on-failure");
    assert_eq!(one(&unit, svc, "RestartSec"), "5");
    assert_eq!(one(&unit, svc, "KillSignal"), "SIGTERM");
    assert_eq!(one(&unit, svc, "TimeoutStopSec"), "30");

    // Hardening must leave packet capture working.
    let families = words(&unit, svc, "RestrictAddressFamilies");
    for fam in ["AF_PACKET", "AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.contains(fam),
            "RestrictAddressFamilies lacks {fam}"
        );
    }
    for key in ["PrivateNetwork", "PrivateUsers"] {
        assert!(
            values(&unit, svc, key).iter().all(|v| v == "no"),
            "{key}= would hide the host's interfaces from the capture"
        );
    }

    assert!(words(&unit, "Unit", "After").contains("network-online.target"));
    assert!(words(&unit, "Unit", "Wants").contains("network-online.target"));
    assert!(words(&unit, "Install", "WantedBy").contains("multi-user.target"));
}

/// The sysusers snippet, applied to an empty scratch root (the host's user
/// database is not touched), creates a system user and group `apisensor`
/// that cannot log in.
#[test]
fn sysusers_creates_the_service_user() {
    let root = scratch("sysusers");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let conf = std::fs::read(repo_file(SYSUSERS)).expect("read systemd/apisensor.sysusers.conf");
    // The file goes through stdin ("-"): with --root, a path argument would be
    // looked up inside the root.
    let mut child = match Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg("-")
        .env("SYSTEMD_LOG_COLOR", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`systemd-sysusers` is not installed: run `bash scripts/setup.sh` (it installs \
             the `systemd` package listed in scripts/packages.txt, as CI does)"
        ),
        Err(e) => panic!("cannot run `systemd-sysusers`: {e}"),
    };
    child.stdin.take().unwrap().write_all(&conf).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-sysusers failed:\n{stderr}");
    assert!(
        !stderr.to_lowercase().contains("fail") && !stderr.contains("<stdin>:"),
        "systemd-sysusers complained about the snippet:\n{stderr}"
    );

    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("apisensor:"))
        .unwrap_or_else(|| panic!("no apisensor user in:\n{passwd}"))
        .split(':')
        .collect();
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "not a system uid: {uid}");
    assert!(
        user[6].ends_with("/nologin") || user[6].ends_with("/false"),
        "the service user must not have a login shell: {}",
        user[6]
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with(&format!("apisensor:x:{}:", user[3]))),
        "no apisensor group with the user's gid {} in:\n{group}",
        user[3]
    );
}

/// The syscalls `systemd-analyze syscall-filter NAME` lists for a syscall
/// or `@group`, groups expanded.
fn syscalls_of(name: &str, out: &mut BTreeSet<String>) {
    if !name.starts_with('@') {
        out.insert(name.to_string());
        return;
    }
    let listing = run_tool(
        Command::new("systemd-analyze")
            .args(["syscall-filter", name])
            .env("SYSTEMD_LOG_COLOR", "0"),
        "systemd-analyze",
    );
    assert!(
        listing.status.success(),
        "systemd-analyze syscall-filter {name}: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let text = String::from_utf8_lossy(&listing.stdout).into_owned();
    for entry in text
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if entry.starts_with('@') {
            syscalls_of(entry, out);
        } else {
            out.insert(entry.to_string());
        }
    }
}

/// The sensor drops its capabilities with capset(2) and sets no_new_privs
/// with prctl(2) once its captures are open (src/service.rs), and refuses to
/// start if that fails: the unit's seccomp filter must let both through.
#[test]
fn syscall_filter_lets_the_capability_drop_through() {
    let unit = parse_unit(&read_unit());
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for entry in words(&unit, "Service", "SystemCallFilter") {
        match entry.strip_prefix('~') {
            Some(deny) => syscalls_of(deny, &mut denied),
            None => syscalls_of(&entry, &mut allowed),
        }
    }
    for syscall in ["capset", "capget", "prctl"] {
        assert!(
            allowed.contains(syscall) && !denied.contains(syscall),
            "SystemCallFilter= of {UNIT} blocks {syscall}, so the sensor could not drop its capabilities"
        );
    }
}
