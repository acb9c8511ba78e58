//! Live capture end to end: `apisensor run` captures real traffic between
//! network namespaces (a Python HTTP server, curl clients), is stopped with
//! SIGTERM, and must have written exactly the exchanges that happened.
//!
//! Each test builds its own namespaces `as-<role>-<pid>-<n>` and uses the
//! private subnets 10.77.<n>.0/24 (veth underlay) and 10.78.<n>.0/24 (inside
//! VXLAN), which exist only inside those namespaces; every packet stays on
//! this machine. Guards (tests/netns) kill the processes and delete the
//! namespaces even when a test fails. Every wait has a deadline.
//!
//! The tests need root and iproute2, curl, python3 and procps (listed in
//! scripts/packages.txt, installed by `bash scripts/setup.sh`); without them
//! they fail, they never skip.

mod netns;

use netns::{kill_pid, spawn_logged, start_http_server, veth, Lab, Netns, Proc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_apisensor");
const HTTP_PORT: u16 = 8080;
/// Each namespace has its own loopback, so every sensor can use this port;
/// a second sensor in the same namespace uses the next one.
const METRICS_PORT: u16 = 9469;
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
const POST_BODY: &str = "name=apisensor&n=42";

/// What a sensor captures.
enum Source<'a> {
    /// `[[capture.interfaces]]` name and bpf_filter.
    Pcap(&'a str, &'a str),
    /// `[[capture.udp]]` listen address, VXLAN.
    UdpVxlan(&'a str),
}

/// A running `apisensor run` inside a namespace. Dropping it kills it.
struct Sensor<'a> {
    ns: &'a Netns,
    label: String,
    proc: Proc,
    exchanges_path: PathBuf,
    log_path: PathBuf,
    metrics_port: u16,
}

/// How a sensor run ended after SIGTERM.
struct Stopped {
    status: ExitStatus,
    /// From SIGTERM to exit.
    took: Duration,
    log: String,
    exchanges: Vec<Value>,
}

fn start_sensor<'a>(
    lab: &Lab,
    ns: &'a Netns,
    label: &str,
    sources: &[Source<'_>],
    metrics_port: u16,
) -> Sensor<'a> {
    let exchanges_path = lab.dir.join(format!("{label}.exchanges.jsonl"));
    let log_path = lab.dir.join(format!("{label}.log"));
    let config_path = lab.dir.join(format!("{label}.toml"));
    let mut config = String::from("[pipeline]\nworkers = 2\n\n");
    for source in sources {
        match source {
            Source::Pcap(name, filter) => config.push_str(&format!(
                "[[capture.interfaces]]\nname = {name:?}\nbpf_filter = {filter:?}\n\n"
            )),
            Source::UdpVxlan(listen) => config.push_str(&format!(
                "[[capture.udp]]\nlisten = {listen:?}\nencapsulation = \"vxlan\"\n\n"
            )),
        }
    }
    config.push_str(&format!(
        "[service]\nexchanges_path = {:?}\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         stats_interval_secs = 1\nshutdown_timeout_secs = {SHUTDOWN_TIMEOUT_SECS}\n",
        exchanges_path.display().to_string()
    ));
    std::fs::write(&config_path, config).unwrap();
    let mut cmd = ns.command(BIN);
    cmd.arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("APISENSOR_LOG", "info");
    let proc = spawn_logged(cmd, &log_path, "apisensor");
    let mut sensor = Sensor {
        ns,
        label: label.into(),
        proc,
        exchanges_path,
        log_path,
        metrics_port,
    };
    // The metrics endpoint starts after every source is open: once it
    // answers, whatever crosses the captured link is seen.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if sensor.try_metrics().is_some() {
            return sensor;
        }
        assert!(
            sensor.proc.is_running(),
            "sensor {label} exited at start-up: {}",
            sensor.log()
        );
        assert!(
            Instant::now() < deadline,
            "sensor {label}: metrics endpoint not up within 15 s: {}",
            sensor.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Sensor<'_> {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn try_metrics(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let (ok, body) = self.ns.curl(&["-f", &url]);
        ok.then_some(body)
    }

    /// Every sample of `/metrics` as name -> value.
    fn metrics(&self) -> BTreeMap<String, u64> {
        let text = self
            .try_metrics()
            .unwrap_or_else(|| panic!("sensor {}: /metrics failed: {}", self.label, self.log()));
        parse_metrics(&text)
    }

    fn metric(&self, name: &str) -> u64 {
        *self
            .metrics()
            .get(name)
            .unwrap_or_else(|| panic!("sensor {}: /metrics has no {name}", self.label))
    }

    /// Waits (up to 10 s) until `apisensor_http_exchanges_total` reaches
    /// `n`: the workers publish their counters about once a second. Returns
    /// the last value seen.
    fn wait_for_exchanges(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.metric("apisensor_http_exchanges_total");
            if seen >= n || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for the exit (bounded by the sensor's own
    /// shutdown timeout plus a margin) and reads what it wrote.
    fn stop(mut self) -> Stopped {
        assert!(
            self.proc.is_running(),
            "sensor {} died before SIGTERM: {}",
            self.label,
            self.log()
        );
        let sent = Instant::now();
        kill_pid(self.proc.pid(), "TERM");
        let status = self
            .proc
            .wait_for(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 5))
            .unwrap_or_else(|| {
                panic!(
                    "sensor {} still running {} s after SIGTERM: {}",
                    self.label,
                    SHUTDOWN_TIMEOUT_SECS + 5,
                    self.log()
                )
            });
        let took = sent.elapsed();
        let log = self.log();
        let exchanges = read_exchanges(&self.exchanges_path);
        Stopped {
            status,
            took,
            log,
            exchanges,
        }
    }
}

impl Stopped {
    /// Exit 0 within the shutdown timeout, and the `run:` summary line
    /// counts exactly the exchanges in the file.
    fn assert_clean(&self, label: &str) {
        assert!(
            self.status.success(),
            "sensor {label} exited with {} after SIGTERM: {}",
            self.status,
            self.log
        );
        assert!(
            self.took < Duration::from_secs(SHUTDOWN_TIMEOUT_SECS),
            "sensor {label} took {:?} to exit after SIGTERM",
            self.took
        );
        assert!(
            !self.log.contains("panicked"),
            "sensor {label} panicked: {}",
            self.log
        );
        let summary = self
            .log
            .lines()
            .find(|l| l.starts_with("run: "))
            .unwrap_or_else(|| panic!("sensor {label} printed no `run:` summary: {}", self.log));
        let reported: u64 = summary
            .split(", ")
            .find_map(|part| part.strip_suffix(" exchanges"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exchange count in {summary:?}"));
        assert_eq!(
            reported,
            self.exchanges.len() as u64,
            "sensor {label}: summary {summary:?} vs {} lines in the exchanges file",
            self.exchanges.len()
        );
    }
}

fn parse_metrics(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The exchanges file: every line must be a JSON object.
fn read_exchanges(path: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: last line is cut off",
        path.display()
    );
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", path.display()));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

type Triple = (String, String, Option<u64>);

fn triple(e: &Value) -> Triple {
    (
        e["method"].as_str().unwrap_or("-").to_string(),
        e["uri"].as_str().unwrap_or("-").to_string(),
        e["status"].as_u64(),
    )
}

/// (method, uri, status), sorted: the multiset of exchanges.
fn triples(exchanges: &[Value]) -> Vec<Triple> {
    let mut v: Vec<Triple> = exchanges.iter().map(triple).collect();
    v.sort();
    v
}

fn expected(list: &[(&str, &str, u64)]) -> Vec<Triple> {
    let mut v: Vec<Triple> = list
        .iter()
        .map(|(m, u, s)| (m.to_string(), u.to_string(), Some(*s)))
        .collect();
    v.sort();
    v
}

/// No gap, truncation, unanswered request or parse error.
fn clean_flags(e: &Value) -> bool {
    ["gap", "truncated", "unanswered", "parse_error"]
        .iter()
        .all(|f| e["flags"][f] == Value::Bool(false))
}

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "index.html",
            b"<!doctype html><title>apisensor live test</title><p>hello</p>\n".repeat(5),
        ),
        (
            "data/report.json",
            br#"{"users":[1,2,3],"ok":true}"#.to_vec(),
        ),
        (
            "keep/a.txt",
            b"first on the kept-alive connection\n".to_vec(),
        ),
        (
            "keep/b.txt",
            b"second on the kept-alive connection\n".to_vec(),
        ),
        // Many segments, through reassembly (and through the tunnel's smaller MTU).
        ("big.bin", (0..20_000u32).map(|i| (i % 251) as u8).collect()),
    ]
}

/// Drives the standard request set from `cli` against `base`
/// (`http://host:port`) and checks what curl saw. Returns the expected
/// (method, uri, status) multiset.
fn drive_standard_requests(cli: &Netns, base: &str) -> Vec<Triple> {
    let code = |args: &[&str]| -> String {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        let (ok, out) = cli.curl(&all);
        assert!(ok, "curl {args:?} failed");
        out
    };
    assert_eq!(code(&[&format!("{base}/index.html")]), "200");
    assert_eq!(code(&[&format!("{base}/data/report.json")]), "200");
    assert_eq!(code(&[&format!("{base}/big.bin")]), "200");
    assert_eq!(code(&[&format!("{base}/missing.txt")]), "404");
    assert_eq!(
        code(&["--data-binary", POST_BODY, &format!("{base}/submit?x=1")]),
        "201"
    );
    assert_eq!(code(&["-I", &format!("{base}/index.html")]), "200");
    // Two requests on one kept-alive connection: the second reports no new connect.
    let (ok, out) = cli.curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        &format!("{base}/keep/a.txt"),
        &format!("{base}/keep/b.txt"),
    ]);
    assert!(ok, "keep-alive curl failed");
    assert_eq!(out, "200 1\n200 0\n", "curl did not reuse the connection");
    expected(&[
        ("GET", "/index.html", 200),
        ("GET", "/data/report.json", 200),
        ("GET", "/big.bin", 200),
        ("GET", "/missing.txt", 404),
        ("POST", "/submit?x=1", 201),
        ("HEAD", "/index.html", 200),
        ("GET", "/keep/a.txt", 200),
        ("GET", "/keep/b.txt", 200),
    ])
}

/// Server namespace `srv` (10.77.n.1 on veth-s0) and client namespace `cli`
/// (10.77.n.2 on veth-c0).
fn two_namespaces(lab: &Lab) -> (Netns, Netns) {
    let srv = lab.netns("srv");
    let cli = lab.netns("cli");
    veth(
        &srv,
        "veth-s0",
        Some(&lab.underlay(1)),
        &cli,
        "veth-c0",
        Some(&lab.underlay(2)),
    );
    (srv, cli)
}

#[test]
fn live_capture_on_veth_sees_exactly_the_requests() {
    let lab = Lab::new(1, "exact");
    let (srv, cli) = two_namespaces(&lab);
    let server_ip = lab.underlay(1);
    let _server = start_http_server(&lab, &srv, &server_ip, HTTP_PORT, &files());
    let sensor = start_sensor(
        &lab,
        &srv,
        "sensor",
        &[Source::Pcap("veth-s0", "tcp port 8080")],
        METRICS_PORT,
    );

    let want = drive_standard_requests(&cli, &format!("http://{server_ip}:{HTTP_PORT}"));
    // Let the workers emit what they have (bounded); the file is the verdict.
    sensor.wait_for_exchanges(want.len() as u64);
    let stopped = sensor.stop();
    stopped.assert_clean("sensor");

    let got = triples(&stopped.exchanges);
    assert_eq!(got, want, "exchanges written vs requests made");
    let server_addr = format!("{server_ip}:{HTTP_PORT}");
    let client_prefix = format!("{}:", lab.underlay(2));
    for e in &stopped.exchanges {
        assert!(clean_flags(e), "flagged exchange: {e}");
        assert_eq!(e["server"], Value::String(server_addr.clone()), "{e}");
        let client = e["client"].as_str().unwrap_or_default();
        assert!(client.starts_with(&client_prefix), "client {client} in {e}");
    }
    let by_uri = |uri: &str, method: &str| -> &Value {
        stopped
            .exchanges
            .iter()
            .find(|e| e["uri"] == uri && e["method"] == method)
            .unwrap()
    };
    assert_eq!(
        by_uri("/keep/a.txt", "GET")["client"],
        by_uri("/keep/b.txt", "GET")["client"],
        "the kept-alive requests must share one connection"
    );
    assert_eq!(
        by_uri("/submit?x=1", "POST")["request"]["body"]["wire_len"],
        POST_BODY.len(),
        "POST body length"
    );
    assert_eq!(
        by_uri("/big.bin", "GET")["response"]["body"]["wire_len"],
        20_000,
        "big response body length"
    );
    assert_eq!(
        by_uri("/index.html", "HEAD")["response"]["body"]["wire_len"],
        0,
        "HEAD response has no body"
    );
}

/// The same tunnelled conversation seen three ways must give the same
/// exchanges:
///
/// ```text
///   srv ns                       cli ns                          mon ns
///   vx0 10.78.n.1                vx0 10.78.n.2
///   python :8080                 curl
///   u0 10.77.n.1 ---veth--- p-srv [br0 10.77.n.2] p-mon ---veth--- u0 10.77.n.3
///   sensor "tunnel-pcap"                                         sensor "mirror-udp"
///                                                                sensor "mirror-pcap"
/// ```
///
/// Both kernel VXLAN devices (VNI 42, port 4789) run without learning and
/// with two all-zeros forwarding entries (head-end replication): every
/// inner frame is sent once to the peer, which carries the real HTTP
/// conversation, and once to 10.77.n.3 in `mon`, a mirror target like AWS
/// VPC Traffic Mirroring's. `mon` has no VXLAN device, so the sensor's
/// `[[capture.udp]]` socket can own 10.77.n.3:4789 there; a second sensor
/// in `mon` captures the very same datagrams with libpcap on `u0` and
/// decapsulates them from Ethernet/IPv4/UDP, and a third captures the real
/// tunnel on the server's underlay (excluding the copies to `mon`).
#[test]
fn vxlan_mirror_to_udp_source_and_pcap_source_give_same_exchanges() {
    let lab = Lab::new(2, "vxlan");
    let srv = lab.netns("srv");
    let cli = lab.netns("cli");
    let mon = lab.netns("mon");
    let (srv_ip, cli_ip, mon_ip) = (lab.underlay(1), lab.underlay(2), lab.underlay(3));
    veth(&srv, "u0", Some(&srv_ip), &cli, "p-srv", None);
    veth(&mon, "u0", Some(&mon_ip), &cli, "p-mon", None);
    cli.ip(&["link", "add", "br0", "type", "bridge"]);
    cli.ip(&["link", "set", "p-srv", "master", "br0"]);
    cli.ip(&["link", "set", "p-mon", "master", "br0"]);
    cli.ip(&["addr", "add", &format!("{cli_ip}/24"), "dev", "br0"]);
    cli.ip(&["link", "set", "br0", "up"]);
    for (ns, local, dev, inner, peer) in [
        (&srv, &srv_ip, "u0", lab.inner(1), &cli_ip),
        (&cli, &cli_ip, "br0", lab.inner(2), &srv_ip),
    ] {
        ns.ip(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "42",
            "dstport",
            "4789",
            "local",
            local,
            "dev",
            dev,
            "nolearning",
        ]);
        for dst in [peer.as_str(), mon_ip.as_str()] {
            ns.run(
                "bridge",
                &[
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    "vx0",
                    "dst",
                    dst,
                ],
            );
        }
        ns.ip(&["addr", "add", &format!("{inner}/24"), "dev", "vx0"]);
        ns.ip(&["link", "set", "vx0", "up"]);
    }
    let inner_server = lab.inner(1);
    let _server = start_http_server(&lab, &srv, &inner_server, HTTP_PORT, &files());

    let udp_listen = format!("{mon_ip}:4789");
    let mirror_udp = start_sensor(
        &lab,
        &mon,
        "mirror-udp",
        &[Source::UdpVxlan(&udp_listen)],
        METRICS_PORT,
    );
    let mirror_pcap = start_sensor(
        &lab,
        &mon,
        "mirror-pcap",
        &[Source::Pcap("u0", "udp dst port 4789")],
        METRICS_PORT + 1,
    );
    let tunnel_filter = format!("udp port 4789 and not host {mon_ip}");
    let tunnel_pcap = start_sensor(
        &lab,
        &srv,
        "tunnel-pcap",
        &[Source::Pcap("u0", &tunnel_filter)],
        METRICS_PORT,
    );

    let want = drive_standard_requests(&cli, &format!("http://{inner_server}:{HTTP_PORT}"));
    let sensors = [mirror_udp, mirror_pcap, tunnel_pcap];
    for s in &sensors {
        s.wait_for_exchanges(want.len() as u64);
    }
    let udp_datagrams = sensors[0].metric("apisensor_capture_udp_datagrams_total");
    assert!(udp_datagrams > 0, "the UDP source received no datagram");
    for s in &sensors[1..] {
        assert!(
            s.metric("apisensor_decode_vxlan_total") > 0,
            "sensor {} decapsulated no VXLAN",
            s.label
        );
    }
    let mut results = Vec::new();
    for s in sensors {
        let label = s.label.clone();
        let stopped = s.stop();
        stopped.assert_clean(&label);
        results.push((label, stopped.exchanges));
    }

    // Everything but the timestamps (the UDP source stamps receive time).
    let normal = |exchanges: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = exchanges
            .iter()
            .map(|e| {
                serde_json::json!({
                    "method": e["method"], "uri": e["uri"], "status": e["status"],
                    "client_ip": e["client"].as_str().and_then(|c| c.rsplit_once(':')).map(|c| c.0),
                    "server": e["server"], "flags": e["flags"],
                    "request_body": e["request"]["body"]["wire_len"],
                    "response_body": e["response"]["body"]["wire_len"],
                    "response_headers": e["response"]["headers"],
                })
                .to_string()
            })
            .collect();
        v.sort();
        v
    };
    for (label, exchanges) in &results {
        assert_eq!(
            triples(exchanges),
            want,
            "sensor {label}: exchanges vs requests made"
        );
        for e in exchanges {
            assert!(clean_flags(e), "sensor {label}: flagged exchange {e}");
            assert_eq!(
                e["server"],
                Value::String(format!("{inner_server}:{HTTP_PORT}")),
                "sensor {label}: flow key must be the inner one: {e}"
            );
        }
    }
    let (first_label, first) = &results[0];
    for (label, exchanges) in &results[1..] {
        assert_eq!(
            normal(exchanges),
            normal(first),
            "sensor {label} vs sensor {first_label}"
        );
        // Same connections too: client ports match as a multiset.
        let clients = |ex: &[Value]| {
            let mut c: Vec<String> = ex.iter().map(|e| e["client"].to_string()).collect();
            c.sort();
            c
        };
        assert_eq!(
            clients(exchanges),
            clients(first),
            "sensor {label} vs {first_label}"
        );
    }
}

#[test]
fn sigterm_mid_traffic_loses_no_completed_exchange() {
    const REQUESTS: usize = 200;
    const SIGNAL_AFTER: usize = 60;
    let lab = Lab::new(3, "sigterm");
    let (srv, cli) = two_namespaces(&lab);
    let server_ip = lab.underlay(1);
    let _server = start_http_server(&lab, &srv, &server_ip, HTTP_PORT, &[]);
    let sensor = start_sensor(
        &lab,
        &srv,
        "sensor",
        &[Source::Pcap("veth-s0", "tcp port 8080")],
        METRICS_PORT,
    );

    // Sequential requests /r/1 .. /r/N, one connection each; after each,
    // one line "i status completion-time-ns" (written after curl returned,
    // so the time is an upper bound of the completion).
    let log = lab.dir.join("curl.log");
    let script = lab.dir.join("loop.sh");
    std::fs::write(
        &script,
        format!(
            "i=1\nwhile [ $i -le {REQUESTS} ]; do\n\
             code=$(curl -s -o /dev/null --max-time 5 -w '%{{http_code}}' http://{server_ip}:{HTTP_PORT}/r/$i)\n\
             echo \"$i $code $(date +%s%N)\" >> {log}\n\
             i=$((i+1))\ndone\necho done >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    let mut cmd = cli.command("sh");
    cmd.arg(&script);
    let mut client = spawn_logged(cmd, &lab.dir.join("loop.out"), "sh");
    let read_log = || -> Vec<(usize, String, u128)> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                Some((
                    it.next()?.parse().ok()?,
                    it.next()?.to_string(),
                    it.next()?.parse().ok()?,
                ))
            })
            .collect()
    };
    let now_ns = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    while read_log().len() < SIGNAL_AFTER {
        assert!(
            Instant::now() < deadline,
            "client loop too slow: {:?}",
            read_log().len()
        );
        assert!(client.is_running(), "client loop ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Everything logged before this instant completed before the signal.
    let signalled_at = now_ns();
    let stopped = sensor.stop();
    let exited_by = now_ns();
    stopped.assert_clean("sensor");

    client
        .wait_for(Duration::from_secs(120))
        .expect("client loop did not finish within 120 s");
    let lines = read_log();
    assert_eq!(lines.len(), REQUESTS, "client loop log: {lines:?}");
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(k, (i, code, _))| *i == k + 1 && code == "200"),
        "every request must have succeeded: {lines:?}"
    );
    let completed_before_signal = lines.iter().filter(|l| l.2 < signalled_at).count();
    let logged_before_exit = lines.iter().filter(|l| l.2 < exited_by).count();
    assert!(completed_before_signal >= SIGNAL_AFTER);
    assert!(
        logged_before_exit < REQUESTS,
        "traffic must still be flowing when the sensor stops"
    );

    let index =
        |e: &Value| -> Option<usize> { e["uri"].as_str()?.strip_prefix("/r/")?.parse().ok() };
    let (complete, incomplete): (Vec<&Value>, Vec<&Value>) = stopped
        .exchanges
        .iter()
        .partition(|e| e["status"].as_u64().is_some() && clean_flags(e));
    let mut seen: Vec<usize> = complete
        .iter()
        .map(|e| {
            assert_eq!(e["method"], "GET", "{e}");
            assert_eq!(e["status"], 200, "{e}");
            index(e).unwrap_or_else(|| panic!("unexpected uri in {e}"))
        })
        .collect();
    seen.sort_unstable();
    let k = seen.len();
    // Complete exchanges: exactly /r/1 ../r/K, each once — nothing lost in
    // between, nothing duplicated.
    assert_eq!(
        seen,
        (1..=k).collect::<Vec<_>>(),
        "complete exchanges are not /r/1../r/K"
    );
    assert!(
        k >= completed_before_signal,
        "{} requests completed before SIGTERM but only {k} complete exchanges were written \
         (sensor log: {})",
        completed_before_signal,
        stopped.log
    );
    // A request can only have been captured if it started before the sensor
    // exited, i.e. after the previous one was logged before that.
    assert!(
        k <= logged_before_exit + 1,
        "{k} complete exchanges but only {logged_before_exit} requests were logged before exit"
    );
    // At most the one or two in flight at the signal may come out
    // unanswered or truncated, and they must be the ones right after K.
    assert!(
        incomplete.len() <= 2,
        "{} incomplete exchanges: {incomplete:?}",
        incomplete.len()
    );
    for e in &incomplete {
        let flags = &e["flags"];
        assert!(
            flags["unanswered"] == true || flags["truncated"] == true,
            "an incomplete exchange must say why: {e}"
        );
        if let Some(i) = index(e) {
            assert!(
                i == k + 1 || i == k + 2,
                "incomplete exchange for /r/{i} with K={k}: {e}"
            );
        }
    }
    eprintln!(
        "sigterm: {completed_before_signal} completed before SIGTERM, {k} complete exchanges, \
         {} incomplete, {logged_before_exit} logged before exit, exit after {:?}",
        incomplete.len(),
        stopped.took
    );
}

#[test]
fn metrics_endpoint_serves_counters() {
    let lab = Lab::new(4, "metrics");
    let (srv, cli) = two_namespaces(&lab);
    let server_ip = lab.underlay(1);
    let _server = start_http_server(&lab, &srv, &server_ip, HTTP_PORT, &files());
    let sensor = start_sensor(
        &lab,
        &srv,
        "sensor",
        &[Source::Pcap("veth-s0", "")],
        METRICS_PORT,
    );
    let before = sensor.metrics();
    assert_eq!(before.get("apisensor_http_exchanges_total"), Some(&0));

    let base = format!("http://{server_ip}:{HTTP_PORT}");
    for i in 0..5 {
        let (ok, out) = cli.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}/r/m{i}"),
        ]);
        assert!(ok && out == "200", "curl /r/m{i}: {out}");
    }
    let (ok, out) = cli.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/nope"),
    ]);
    assert!(ok && out == "404", "curl /nope: {out}");
    const EXCHANGES: u64 = 6;

    assert_eq!(sensor.wait_for_exchanges(EXCHANGES), EXCHANGES);
    // Another publish interval later it has not moved (no phantom exchanges).
    std::thread::sleep(Duration::from_millis(1_500));
    let text = sensor
        .try_metrics()
        .expect("metrics endpoint still answers");
    assert!(
        text.contains("# TYPE apisensor_http_exchanges_total counter\n"),
        "{text}"
    );
    let m = parse_metrics(&text);
    let get = |name: &str| *m.get(name).unwrap_or_else(|| panic!("no {name} in {text}"));
    assert_eq!(get("apisensor_http_exchanges_total"), EXCHANGES);
    assert_eq!(get("apisensor_http_requests_total"), EXCHANGES);
    assert_eq!(get("apisensor_http_responses_total"), EXCHANGES);
    assert!(get("apisensor_capture_pcap_received_total") > 0);
    assert!(
        get("apisensor_decode_packets_total") >= EXCHANGES * 6,
        "{text}"
    );
    assert!(
        get("apisensor_flow_flows_created_total") >= EXCHANGES,
        "{text}"
    );
    get("apisensor_capture_pcap_dropped_kernel_total");
    get("apisensor_flows_open");
    // Anything but /metrics is a 404.
    let (ok, code) = srv.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{METRICS_PORT}/other"),
    ]);
    assert!(
        ok && code == "404",
        "GET /other on the metrics port: {code}"
    );

    let stopped = sensor.stop();
    stopped.assert_clean("sensor");
    assert_eq!(
        stopped.exchanges.len() as u64,
        EXCHANGES,
        "{:?}",
        stopped.exchanges
    );
}

/// `apisensor --config FILE run` must fail fast, naming the problem.
fn run_expecting_failure(lab: &Lab, name: &str, config: &str) -> String {
    let path = lab.dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&path).arg("run");
    let started = Instant::now();
    let out = netns::run_bounded(&mut cmd, Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{name}: apisensor run succeeded with a bad config: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{name}: took {:?}",
        started.elapsed()
    );
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    stderr
}

#[test]
fn config_error_fails_fast_naming_the_key() {
    let lab = Lab::new(5, "config");
    let out = lab.dir.join("never.jsonl");
    let service = format!(
        "[service]\nexchanges_path = {:?}\n",
        out.display().to_string()
    );

    let unknown = run_expecting_failure(
        &lab,
        "unknown-key",
        &format!("[pipeline]\nworkerz = 2\n\n[[capture.interfaces]]\nname = \"lo\"\n\n{service}"),
    );
    assert!(
        unknown.contains("workerz"),
        "unknown key not named: {unknown}"
    );

    let unknown_nested = run_expecting_failure(
        &lab,
        "unknown-nested-key",
        &format!("[[capture.interfaces]]\nname = \"lo\"\nbpf_fliter = \"tcp\"\n\n{service}"),
    );
    assert!(
        unknown_nested.contains("bpf_fliter"),
        "unknown key not named: {unknown_nested}"
    );

    let no_if = run_expecting_failure(
        &lab,
        "no-such-interface",
        &format!("[[capture.interfaces]]\nname = \"no-such-if0\"\n\n{service}"),
    );
    assert!(
        no_if.contains("no-such-if0"),
        "interface not named: {no_if}"
    );

    let no_source = run_expecting_failure(
        &lab,
        "no-source",
        &format!("[pipeline]\nworkers = 1\n\n{service}"),
    );
    assert!(
        no_source.contains("capture"),
        "no mention of capture: {no_source}"
    );
}
