//! Network-namespace laboratory for the live-capture tests (tests/live.rs):
//! namespaces joined by veth pairs, processes started inside them, and guards
//! that tear everything down even when a test panics.
//!
//! Everything a test builds lives in namespaces it created itself, named
//! `as-<role>-<pid>-<test>` so parallel tests (and concurrent test processes)
//! never share a name, and addressed from private 10.77.<test>.0/24 and
//! 10.78.<test>.0/24 subnets that exist only inside those namespaces: no
//! packet ever leaves the machine. Interfaces are created directly inside
//! their namespaces (`ip -n NS link add ... peer ... netns NS2`), so their
//! names never exist in the root namespace and cannot collide.
//!
//! Needs root (CI runs as root) and `ip`/`bridge` (iproute2), `curl`,
//! `python3` and `kill` (procps): `bash scripts/setup.sh` installs them. A
//! missing tool fails the test with that advice; nothing is skipped.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any helper command (ip, curl, kill) may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn setup_advice(tool: &str) -> String {
    format!(
        "`{tool}` is not installed: run `bash scripts/setup.sh` (it installs the packages in \
         scripts/packages.txt: iproute2, curl, python3, procps), as CI does"
    )
}

/// Fails (never skips) when the live tests cannot run here.
pub fn require_environment() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the live-capture tests create network namespaces and capture on them: they must run \
         as root (CI does)"
    );
    for tool in ["ip", "bridge", "curl", "python3", "kill"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "{}", setup_advice(tool));
    }
}

/// Runs `cmd` to completion within `timeout` (the whole process group is
/// killed at the limit) and returns its output.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{} ({shown})", setup_advice(&shown))
        }
        Err(e) => panic!("cannot run {shown}: {e}"),
    };
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match wait_until(&mut child, timeout) {
        Some(s) => s,
        None => {
            kill_group(child.id(), "KILL");
            let _ = child.wait();
            panic!("{shown} did not finish within {timeout:?}");
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `cmd` (bounded) and panics with its stderr unless it succeeded.
pub fn check(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run_bounded(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{shown} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS...`, which must succeed.
pub fn ip(args: &[&str]) -> String {
    check(Command::new("ip").args(args))
}

/// Waits for `child` until `timeout`; `None` if it is still running.
pub fn wait_until(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot wait for child {}: {e}", child.id()),
        }
    }
}

/// Sends SIGsignal to the process group `pgid` (a group this test created).
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends SIGsignal to the single process `pid` (a process this test started).
pub fn kill_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}; {}", setup_advice("kill")));
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A process started by a test, in its own process group. Dropping it kills
/// the group (SIGKILL) if it is still running and reaps it.
pub struct Proc {
    pub child: Child,
    pub what: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(&mut self.child, timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(self.child.id(), "KILL");
            let _ = wait_until(&mut self.child, Duration::from_secs(5));
        }
    }
}

/// Starts `cmd` in a new process group with stdout/stderr to `log`.
pub fn spawn_logged(mut cmd: Command, log: &Path, what: &str) -> Proc {
    let file = std::fs::File::create(log).expect("create log file");
    let file2 = file.try_clone().expect("clone log file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(file2))
        .process_group(0);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{} ({cmd:?})", setup_advice(what)),
        Err(e) => panic!("cannot start {what} ({cmd:?}): {e}"),
    };
    Proc {
        child,
        what: what.into(),
    }
}

/// A network namespace this test created; dropping it kills whatever still
/// runs inside (only this test's processes can be there) and deletes it,
/// which also destroys its veth and vxlan devices.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns exec NAME PROGRAM ARGS...` (exec replaces `ip`, so the
    /// child's pid is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs PROGRAM ARGS inside the namespace; it must succeed.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        check(self.command(program).args(args))
    }

    /// `curl -s --max-time 5 ARGS` inside the namespace: (exit ok, stdout).
    pub fn curl(&self, args: &[&str]) -> (bool, String) {
        let out = run_bounded(
            self.command("curl")
                .args(["-s", "--max-time", "5"])
                .args(args),
            COMMAND_TIMEOUT,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy_namespace(&self.name);
    }
}

fn destroy_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Deletes namespaces left by earlier runs of these tests that died without
/// cleaning up (`as-<role>-<pid>-<n>` whose test process no longer exists).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let parts: Vec<&str> = name.split('-').collect();
        if let [.., "as", _role, pid, test] = parts.as_slice() {
            if test.parse::<u8>().is_ok()
                && pid.parse::<u32>().is_ok()
                && !Path::new("/proc").join(pid).exists()
            {
                destroy_namespace(name);
            }
        }
    } // Their scratch directories too (`live-<label>-<pid>`, kept on failure
      // only until the next run).
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("live-")
            .and_then(|n| n.rsplit('-').next())
        {
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// One test's laboratory: a scratch directory and a unique tag.
pub struct Lab {
    /// Per-test number: the third octet of the test's 10.77/10.78 subnets.
    pub n: u8,
    pub dir: PathBuf,
}

impl Drop for Lab {
    /// The scratch directory (configs, logs, exchanges) is kept when the
    /// test failed, for the post-mortem, or when `APISENSOR_KEEP_TEST_DIRS`
    /// is set.
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("APISENSOR_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Lab {
    pub fn new(n: u8, label: &str) -> Lab {
        require_environment();
        remove_stale_namespaces();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("live-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Lab { n, dir }
    }

    /// Creates namespace `as-<role>-<pid>-<n>` with loopback up.
    pub fn netns(&self, role: &str) -> Netns {
        let name = format!("as-{role}-{}-{}", std::process::id(), self.n);
        destroy_namespace(&name);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// 10.77.<n>.<host>
    pub fn underlay(&self, host: u8) -> String {
        format!("10.77.{}.{host}", self.n)
    }

    /// 10.78.<n>.<host>
    pub fn inner(&self, host: u8) -> String {
        format!("10.78.{}.{host}", self.n)
    }
}

/// A veth pair from `a` (named `if_a`) to `b` (named `if_b`), both up.
/// Addresses are `addr/24` or none.
pub fn veth(
    a: &Netns,
    if_a: &str,
    addr_a: Option<&str>,
    b: &Netns,
    if_b: &str,
    addr_b: Option<&str>,
) {
    a.ip(&[
        "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", &b.name,
    ]);
    for (ns, ifname, addr) in [(a, if_a, addr_a), (b, if_b, addr_b)] {
        if let Some(addr) = addr {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname]);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// The test HTTP server (Python's http.server, HTTP/1.1 keep-alive):
/// files from its directory, 404 for missing ones, `/r/<anything>` answered
/// 200 with a short body, and POST answered 201 after reading the body.
pub const HTTP_SERVER_PY: &str = r#"
import http.server, os, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/r/"):
            self.reply(200, ("ok " + self.path + "\n").encode())
        else:
            super().do_GET()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(201, b"got %d bytes\n" % len(body))

os.chdir(sys.argv[1])
server = http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), Handler)
print("serving", flush=True)
server.serve_forever()
"#;

/// Starts the test HTTP server in `ns` on `addr:port`, serving `files`
/// (relative path, content), and waits until it answers (probed from inside
/// `ns`, which does not cross any captured link).
pub fn start_http_server(
    lab: &Lab,
    ns: &Netns,
    addr: &str,
    port: u16,
    files: &[(&str, Vec<u8>)],
) -> Proc {
    let root = lab.dir.join("www");
    for (rel, content) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    let script = lab.dir.join("server.py");
    std::fs::write(&script, HTTP_SERVER_PY).unwrap();
    let mut cmd = ns.command("python3");
    cmd.arg(&script).arg(&root).arg(addr).arg(port.to_string());
    let mut server = spawn_logged(cmd, &lab.dir.join("server.log"), "python3");
    let url = format!("http://{addr}:{port}/r/ready");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if ns.curl(&["-o", "/dev/null", &url]).0 {
            return server;
        }
        assert!(
            server.is_running(),
            "the test HTTP server exited: {}",
            std::fs::read_to_string(lab.dir.join("server.log")).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "the test HTTP server did not come up within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
