//! Least privilege of `apisensor run` (issue 23): once its captures, output
//! and listeners are open, the sensor holds no capability in any thread
//! (effective, permitted, inheritable, ambient; and an empty bounding set
//! where it was allowed to empty it), whether it was started the way the
//! shipped unit starts it (an unprivileged user with CAP_NET_RAW and
//! CAP_NET_ADMIN as ambient capabilities), as root, or as root switching to
//! `service.user`. The capture keeps working after the drop.
//!
//! Each sensor captures `lo` of a network namespace the test creates (so
//! libpcap really needs CAP_NET_RAW), has a UDP mirror socket and the
//! metrics endpoint, and says READY=1 on a notify socket like under
//! systemd; the test then reads /proc/<pid>/task/*/status. Needs root,
//! iproute2, curl and setpriv (util-linux), as tests/live.rs does.

mod netns;

use netns::{kill_pid, spawn_logged, Lab, Netns};
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apisensor");
const METRICS_PORT: u16 = 9471;
const CAP_NET_RAW_ADMIN: u64 = (1 << 12) | (1 << 13);
/// The shipped unit's set-up: User=, AmbientCapabilities= and
/// CapabilityBoundingSet= of systemd/apisensor.service, done by setpriv.
const UNIT_LIKE: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw,+net_admin",
    "--ambient-caps=-all,+net_raw,+net_admin",
    "--bounding-set=-all,+net_raw,+net_admin",
];

/// The capability lines (and Uid, NoNewPrivs) of one status file.
fn cap_fields(status: &str) -> BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.split_whitespace().next()?;
            match k {
                k if k.starts_with("Cap") => Some((k.into(), u64::from_str_radix(v, 16).ok()?)),
                "Uid" | "NoNewPrivs" => Some((k.into(), v.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// Every thread of `pid`: (thread name, its capability fields).
fn threads(pid: u32) -> Vec<(String, BTreeMap<String, u64>)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.ok()?.path().join("status")).ok()?;
            let name = status
                .lines()
                .next()?
                .trim_start_matches("Name:")
                .trim()
                .to_string();
            Some((name, cap_fields(&status)))
        })
        .collect()
}

struct Case<'a> {
    label: &'a str,
    /// Command run in front of the sensor (empty: as root).
    wrapper: &'a [&'a str],
    service_user: &'a str,
    uid: u64,
    /// The bounding set the sensor is left with.
    bounding: u64,
}

fn check_case(lab: &Lab, ns: &Netns, case: &Case<'_>) {
    let dir = &lab.dir;
    let config = dir.join(format!("{}.toml", case.label));
    let udp_port = 47_000 + u16::from(lab.n);
    std::fs::write(
        &config,
        format!(
            "[pipeline]\nworkers = 2\n\
             [[capture.interfaces]]\nname = \"lo\"\nbpf_filter = \"tcp port {METRICS_PORT}\"\n\
             [[capture.udp]]\nlisten = \"127.0.0.1:{udp_port}\"\nencapsulation = \"vxlan\"\n\
             [service]\nuser = {:?}\nmetrics_listen = \"127.0.0.1:{METRICS_PORT}\"\nstats_interval_secs = 1\n",
            case.service_user
        ),
    )
    .unwrap();
    let notify_path = dir.join(format!("{}.notify", case.label));
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // The sensor may run as nobody.
    std::fs::set_permissions(
        &notify_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut cmd = match case.wrapper.split_first() {
        Some((program, args)) => {
            let mut c = ns.command(program);
            c.args(args).arg(BIN);
            c
        }
        None => ns.command(BIN),
    };
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("APISENSOR_LOG", "info");
    let log = dir.join(format!("{}.log", case.label));
    let mut sensor = spawn_logged(cmd, &log, "apisensor");
    let pid = sensor.pid();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{}: no READY=1 ({e}): {}", case.label, read_log()));
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("READY=1"),
        "{}",
        case.label
    );
    let all = threads(pid);
    assert!(all.len() >= 5, "{}: only {} threads", case.label, all.len());
    let mut held = Vec::new();
    for (name, caps) in &all {
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            if caps.get(set) != Some(&0) {
                held.push(format!("{name}: {set} {:x?}", caps.get(set)));
            }
        }
        if caps.get("CapBnd") != Some(&case.bounding) {
            held.push(format!("{name}: CapBnd {:x?}", caps.get("CapBnd")));
        }
        if caps.get("Uid") != Some(&case.uid) || caps.get("NoNewPrivs") != Some(&1) {
            held.push(format!("{name}: {caps:?}"));
        }
    }
    eprintln!(
        "privileges {}: {} threads after READY, main thread {:?}",
        case.label,
        all.len(),
        all.first().map(|(_, c)| c)
    );
    assert!(
        held.is_empty(),
        "{}: after READY:\n{}\n{}",
        case.label,
        held.join("\n"),
        read_log()
    );

    // The capture still reads: the scrapes themselves cross `lo`.
    let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, text) = ns.curl(&["-f", &url]);
        assert!(ok, "{}: scrape failed: {}", case.label, read_log());
        let exchanges = text
            .lines()
            .find_map(|l| l.strip_prefix("apisensor_http_exchanges_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if exchanges > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the capture on lo saw no exchange after the drop: {}",
            case.label,
            read_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    kill_pid(pid, "TERM");
    let status = sensor
        .wait_for(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{}: no exit after SIGTERM", case.label));
    assert!(status.success(), "{}: {status}: {}", case.label, read_log());
}

#[test]
fn capabilities_are_gone_after_ready_in_every_thread() {
    let lab = Lab::new(41, "privileges");
    let ns = lab.netns("caps");
    // What the unit-like start gives a process before the sensor drops
    // anything: without it the check below would prove nothing.
    let mut probe = ns.command(UNIT_LIKE[0]);
    probe
        .args(&UNIT_LIKE[1..])
        .args(["cat", "/proc/self/status"]);
    let before = cap_fields(&netns::check(&mut probe));
    assert_eq!(before.get("CapEff"), Some(&CAP_NET_RAW_ADMIN), "{before:?}");
    assert_eq!(before.get("CapAmb"), Some(&CAP_NET_RAW_ADMIN), "{before:?}");
    for case in [
        Case {
            label: "unit-like",
            wrapper: UNIT_LIKE,
            service_user: "",
            uid: 65_534,
            // Without CAP_SETPCAP the bounding set stays as the unit set it;
            // no_new_privs keeps an execve from using it.
            bounding: CAP_NET_RAW_ADMIN,
        },
        Case {
            label: "root",
            wrapper: &[],
            service_user: "",
            uid: 0,
            bounding: 0,
        },
        Case {
            label: "root-to-nobody",
            wrapper: &[],
            service_user: "nobody",
            uid: 65_534,
            bounding: 0,
        },
    ] {
        check_case(&lab, &ns, &case);
    }
}
