//! Running as a long-lived sensor: signals (SIGTERM/SIGINT stop, SIGHUP
//! reopens the output), dropping root and every capability once the capture
//! handles are open (and checking first that the user can write what it
//! must), the Prometheus endpoint (bounded: a connection limit, timeouts, a
//! request cap) and the periodic stats line. No packet logic.

use crate::files::FileOwner;
use crate::telemetry::{prometheus_text, Stats, StatsHub};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flags set from signal handlers (async-signal-safe: an atomic store).
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub reopen: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let stop = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("cannot install the SIGTERM/SIGINT handler")?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&reopen))
            .context("cannot install the SIGHUP handler")?;
        Ok(Signals { stop, reopen })
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Switches to `user` (and its primary group, no supplementary groups).
/// Open capture handles keep working; nothing opened later needs root.
pub fn drop_privileges(user: &str) -> Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, User};
    let Some(entry) =
        User::from_name(user).with_context(|| format!("cannot look up user {user:?}"))?
    else {
        bail!("service.user: user {user:?} does not exist; create it (see systemd/apisensor.sysusers.conf) or set service.user = \"\"");
    };
    setgroups(&[entry.gid]).context("cannot drop supplementary groups (are we root?)")?;
    setgid(entry.gid).context("cannot switch group")?;
    setuid(entry.uid).context("cannot switch user")?;
    if nix::unistd::geteuid().is_root() && !entry.uid.is_root() {
        bail!("still root after switching to {user:?}");
    }
    tracing::info!("running as {user} (uid {})", entry.uid);
    Ok(())
}

/// The owner to give files the service creates before it switches to
/// `user`: Some only when this process is root and a user is configured.
pub fn file_owner(user: &str) -> Result<Option<FileOwner>> {
    use nix::unistd::User;
    if user.is_empty() || !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let Some(entry) =
        User::from_name(user).with_context(|| format!("cannot look up user {user:?}"))?
    else {
        bail!("service.user: user {user:?} does not exist; create it (see systemd/apisensor.sysusers.conf) or set service.user = \"\"");
    };
    Ok(Some(FileOwner {
        uid: entry.uid.as_raw(),
        gid: entry.gid.as_raw(),
    }))
}

/// Whether `owner` (with its primary group only, as after
/// [`drop_privileges`]) may create and rename files in `dir`: write and
/// search permission on it, search permission on every ancestor. A missing
/// directory is judged by its nearest existing ancestor (it would be
/// created there). Mode bits only; ACLs are not read.
pub fn can_create_files_in(dir: &Path, owner: FileOwner) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allows = |meta: &std::fs::Metadata, want: u32| {
        let mode = meta.mode();
        let bits = if meta.uid() == owner.uid {
            mode >> 6
        } else if meta.gid() == owner.gid {
            mode >> 3
        } else {
            mode
        };
        owner.uid == 0 || bits & want == want
    };
    let mut existing = dir;
    while std::fs::metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    let Ok(meta) = std::fs::metadata(existing) else {
        return false;
    };
    if !meta.is_dir() || !allows(&meta, 0o3) {
        return false;
    }
    existing
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .all(|a| std::fs::metadata(a).is_ok_and(|m| allows(&m, 0o1)))
}

/// Checks, before anything starts, that `owner` (the `service.user` the
/// process switches to) can create the files it will need after the switch:
/// the exchanges file again after logrotate (SIGHUP), rotated event files,
/// baseline snapshots. The spool directory is handed to it at start.
pub fn check_writable(settings: &crate::Settings, user: &str, owner: FileOwner) -> Result<()> {
    let mut needs: Vec<(String, &str, &str)> = Vec::new();
    let parent = |path: &str| {
        let p = Path::new(path);
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .display()
            .to_string()
    };
    if !settings.service.exchanges_path.is_empty() {
        needs.push((
            parent(&settings.service.exchanges_path),
            "service.exchanges_path",
            "the file is created again there after logrotate moves it (SIGHUP)",
        ));
    }
    for sink in &settings.events.sinks {
        if let (crate::config::SinkType::File, Some(path)) = (sink.kind, &sink.path) {
            needs.push((
                parent(path),
                "events.sinks.path",
                "the event file is rotated and created again there",
            ));
        }
    }
    if !settings.detect.baseline_path.is_empty() {
        needs.push((
            parent(&settings.detect.baseline_path),
            "detect.baseline_path",
            "snapshots are written beside it and renamed over it",
        ));
    }
    for (dir, key, why) in needs {
        if !can_create_files_in(Path::new(&dir), owner) {
            bail!(
                "service.user: user {user:?} (uid {}) cannot create files in {dir}, which {key} \
                 needs ({why}); fix: `chown {user} {dir}` (or make it writable by its group), \
                 or point {key} into a directory {user} owns, such as /var/log/apisensor",
                owner.uid
            );
        }
    }
    Ok(())
}

/// Drops the capabilities the sensor needed to open its captures (under the
/// shipped unit CAP_NET_RAW and CAP_NET_ADMIN, as root all of them). Call
/// it once every capture, output and listener is open and before any
/// thread is started: capabilities belong to each thread, and a thread
/// inherits its creator's, so what is dropped here is gone from every
/// thread the sensor starts afterwards.
///
/// The bounding set is emptied where that is allowed (CAP_SETPCAP, i.e. as
/// root), the ambient and inheritable sets always, and no_new_privs is set,
/// so no later execve could gain anything back. The effective and permitted
/// sets are emptied too, unless `user_switch_follows`: then the switch to
/// `service.user` still needs CAP_SETUID/CAP_SETGID, and leaving uid 0
/// empties them in every thread ([`drop_privileges`]; the C library applies
/// a uid change to all threads). [`verify_no_capabilities`] checks the
/// outcome in every thread.
pub fn drop_capabilities(user_switch_follows: bool) -> Result<()> {
    use caps::{CapSet, Capability};
    let bounding_dropped = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .context("cannot read this thread's capabilities")?;
    if bounding_dropped {
        caps::clear(None, CapSet::Bounding).context("cannot empty the capability bounding set")?;
    }
    // Linux before 4.3 has no ambient set: nothing to clear there.
    if caps::runtime::ambient_set_supported().is_ok() {
        caps::clear(None, CapSet::Ambient).context("cannot clear the ambient capabilities")?;
    }
    caps::clear(None, CapSet::Inheritable).context("cannot clear the inheritable capabilities")?;
    if !user_switch_follows {
        // Emptying the permitted set empties the effective set with it.
        caps::clear(None, CapSet::Permitted).context("cannot drop the permitted capabilities")?;
    }
    nix::sys::prctl::set_no_new_privs().context("cannot set no_new_privs")?;
    tracing::info!(
        "capabilities dropped{}{}",
        if user_switch_follows {
            " (the rest go with the switch to service.user)"
        } else {
            ""
        },
        if bounding_dropped {
            "; bounding set emptied"
        } else {
            "; bounding set kept (no CAP_SETPCAP; no_new_privs set instead)"
        }
    );
    Ok(())
}

/// Fails unless every thread of this process has empty effective,
/// permitted, inheritable and ambient capability sets (read from
/// /proc/self/task/*/status, which shows each thread's own sets).
pub fn verify_no_capabilities() -> Result<()> {
    let tasks = std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")?;
    for task in tasks {
        let path = task
            .context("cannot list /proc/self/task")?
            .path()
            .join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            // The thread ended between the listing and the read.
            continue;
        };
        for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            let held = status
                .lines()
                .find_map(|l| l.strip_prefix(set))
                .map(str::trim)
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            if held != Some(0) {
                bail!(
                    "{} still holds capabilities ({set} {held:x?}) after they were dropped",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Connections the metrics endpoint serves at once; further ones are closed
/// as soon as they are accepted, and counted.
pub const METRICS_MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its whole request head (slowloris).
pub const METRICS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response (a client that never reads).
const METRICS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the kernel queues for the endpoint before it accepts them
/// (capped by net.core.somaxconn).
const METRICS_ACCEPT_BACKLOG: i32 = 1024;
/// Largest request head read; a scrape sends a few hundred bytes.
pub const METRICS_MAX_REQUEST_BYTES: usize = 8 * 1024;
/// When every slot is taken, a connection that has been sending its request
/// head this long gives its slot to a new connection: a scraper sends its
/// request right after connecting, so slots held longer are squatted.
pub const METRICS_EVICT_AFTER: Duration = Duration::from_secs(1);

/// What happened to the metrics endpoint's connections (atomics: touched
/// per connection by the endpoint's thread, read per scrape).
#[derive(Default)]
pub struct MetricsServerStats {
    /// Connections taken on (within the limit).
    accepted: AtomicU64,
    /// Connections closed at once because the limit was reached.
    refused: AtomicU64,
    /// Connections closed because every slot was taken and they had sent no
    /// complete request for [`METRICS_EVICT_AFTER`]: their slot went to a
    /// new connection.
    evicted: AtomicU64,
    /// Connections closed because the request head or the response took too long.
    timed_out: AtomicU64,
    /// Request heads over the size cap (answered 431).
    too_large: AtomicU64,
    /// Requests that were not a GET or HEAD request line (answered 400 or 405).
    bad_requests: AtomicU64,
    /// accept(2) failures (e.g. out of descriptors), after which the
    /// endpoint waits briefly.
    accept_errors: AtomicU64,
    /// Connections being served now.
    open: AtomicU64,
}

impl MetricsServerStats {
    /// Prometheus text of these counters.
    pub fn prometheus_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (name, kind, value) in [
            (
                "metrics_connections_accepted_total",
                "counter",
                &self.accepted,
            ),
            (
                "metrics_connections_refused_total",
                "counter",
                &self.refused,
            ),
            (
                "metrics_connections_evicted_total",
                "counter",
                &self.evicted,
            ),
            (
                "metrics_connections_timed_out_total",
                "counter",
                &self.timed_out,
            ),
            (
                "metrics_requests_too_large_total",
                "counter",
                &self.too_large,
            ),
            ("metrics_requests_bad_total", "counter", &self.bad_requests),
            (
                "metrics_accept_errors_total",
                "counter",
                &self.accept_errors,
            ),
            ("metrics_connections_open", "gauge", &self.open),
        ] {
            let _ = writeln!(out, "# TYPE apisensor_{name} {kind}");
            let _ = writeln!(out, "apisensor_{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

/// Binds the metrics endpoint's socket (before privileges are dropped; it
/// is served later by [`serve_metrics`]).
pub fn bind_metrics(listen: SocketAddr) -> Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let context = || format!("service.metrics_listen: cannot listen on {listen}");
    let socket =
        Socket::new(Domain::for_address(listen), Type::STREAM, None).with_context(context)?;
    // A restart finds the port in TIME_WAIT from the last scrapes.
    socket.set_reuse_address(true).with_context(context)?;
    socket.bind(&listen.into()).with_context(context)?;
    // Room for a burst of connections while the endpoint sorts them out
    // (std's 128 overflows under a connection flood, and the kernel then
    // drops SYNs: a scraper's connect waits a second for its retransmit).
    socket
        .listen(METRICS_ACCEPT_BACKLOG)
        .with_context(context)?;
    socket.set_nonblocking(true).with_context(context)?;
    Ok(socket.into())
}

/// Serves `GET /metrics` in Prometheus text format from the hub's snapshot
/// (plus `extra` and the endpoint's own counters) on one background thread
/// running a single-threaded tokio runtime, until `stop` is set. At most
/// [`METRICS_MAX_CONNECTIONS`] connections are served at once, each must
/// send its request within [`METRICS_REQUEST_TIMEOUT`] and at most
/// [`METRICS_MAX_REQUEST_BYTES`]; beyond the limit a new connection takes
/// the slot of one that has sent nothing whole for [`METRICS_EVICT_AFTER`],
/// or is closed at once. A flood of idle or half-sent connections costs a
/// counter each, not a thread or its memory, and does not keep a scraper out.
pub fn serve_metrics(
    listener: std::net::TcpListener,
    hub: Arc<StatsHub>,
    stop: Arc<AtomicBool>,
    extra: Option<Arc<dyn Fn() -> String + Send + Sync>>,
) -> Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the metrics endpoint's runtime")?;
    let stats = Arc::new(MetricsServerStats::default());
    let render: Arc<dyn Fn() -> String + Send + Sync> = {
        let stats = Arc::clone(&stats);
        Arc::new(move || {
            let mut body = prometheus_text(&hub.snapshot());
            if let Some(extra) = &extra {
                body.push_str(&extra());
            }
            body.push_str(&stats.prometheus_text());
            body
        })
    };
    std::thread::Builder::new()
        .name("apisensor-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("service.metrics_listen: cannot serve: {e}");
                        return;
                    }
                };
                accept_metrics(listener, stats, render, stop).await;
            });
        })
        .context("cannot start the metrics thread")
}

/// Connections still sending their request head, oldest first: when every
/// slot is taken, a new connection may take the slot of the oldest of them.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    queue: std::collections::VecDeque<(u64, std::time::Instant, Arc<tokio::sync::Notify>)>,
}

/// A connection's place in [`Waiting`], given up when dropped (head read,
/// timed out, evicted or failed alike).
struct WaitingEntry<'a> {
    waiting: &'a std::sync::Mutex<Waiting>,
    id: u64,
    evict: Arc<tokio::sync::Notify>,
}

impl<'a> WaitingEntry<'a> {
    fn new(waiting: &'a std::sync::Mutex<Waiting>) -> Self {
        let evict = Arc::new(tokio::sync::Notify::new());
        let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
        let id = w.next_id;
        w.next_id += 1;
        w.queue
            .push_back((id, std::time::Instant::now(), Arc::clone(&evict)));
        WaitingEntry { waiting, id, evict }
    }
}

impl Drop for WaitingEntry<'_> {
    fn drop(&mut self) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.queue.retain(|(id, _, _)| *id != self.id);
    }
}

async fn accept_metrics(
    listener: tokio::net::TcpListener,
    stats: Arc<MetricsServerStats>,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    stop: Arc<AtomicBool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    let waiting = Arc::new(std::sync::Mutex::new(Waiting::default()));
    let mut stop_check = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let slot = match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => slot,
                        Err(_) => {
                            // Every slot is taken. One held for a while by a
                            // client that has not sent its request yet goes to
                            // the newcomer (squatting costs the squatter, not
                            // the next scrape); otherwise the newcomer is
                            // closed at once (a reset if it already sent data).
                            let victim = {
                                let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
                                match w.queue.front() {
                                    Some((_, since, _)) if since.elapsed() >= METRICS_EVICT_AFTER => {
                                        w.queue.pop_front()
                                    }
                                    _ => None,
                                }
                            };
                            let Some((_, _, evict)) = victim else {
                                stats.refused.fetch_add(1, Ordering::Relaxed);
                                continue;
                            };
                            evict.notify_one();
                            stats.evicted.fetch_add(1, Ordering::Relaxed);
                            // The evicted connection's task gives its slot back
                            // as soon as it runs.
                            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                                return;
                            };
                            slot
                        }
                    };
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let stats = Arc::clone(&stats);
                    let render = Arc::clone(&render);
                    let waiting = Arc::clone(&waiting);
                    tokio::spawn(async move {
                        stats.open.fetch_add(1, Ordering::Relaxed);
                        serve_metrics_connection(stream, &stats, render.as_ref(), &waiting).await;
                        stats.open.fetch_sub(1, Ordering::Relaxed);
                        drop(slot);
                    });
                }
                Err(_) => {
                    // Out of descriptors or memory: the pending connection
                    // stays queued; retrying at once would spin.
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop_check.tick() => {}
        }
    }
}

/// Reads one request head and answers it; the connection is closed after.
async fn serve_metrics_connection(
    mut stream: tokio::net::TcpStream,
    stats: &MetricsServerStats,
    render: &(dyn Fn() -> String + Send + Sync),
    waiting: &std::sync::Mutex<Waiting>,
) {
    use tokio::io::AsyncWriteExt;
    let mut head = [0u8; METRICS_MAX_REQUEST_BYTES];
    let entry = WaitingEntry::new(waiting);
    let read = tokio::time::timeout(
        METRICS_REQUEST_TIMEOUT,
        read_request_head(&mut stream, &mut head),
    );
    let outcome = tokio::select! {
        outcome = read => outcome,
        // Its slot went to a newer connection (counted there).
        _ = entry.evict.notified() => return,
    };
    drop(entry);
    let response = match outcome {
        Err(_) => {
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Closed or reset before a whole head arrived: nothing to answer.
        Ok(Err(_)) | Ok(Ok(Head::Closed)) => return,
        Ok(Ok(Head::TooLarge)) => {
            stats.too_large.fetch_add(1, Ordering::Relaxed);
            http_response(
                "431 Request Header Fields Too Large",
                "request too large\n",
                true,
            )
        }
        Ok(Ok(Head::Complete(len))) => {
            let line = head.get(..len).unwrap_or_default();
            match metrics_request(line) {
                Request::Metrics { head_only } => http_response("200 OK", &render(), !head_only),
                Request::NotFound => http_response("404 Not Found", "see /metrics\n", true),
                Request::WrongMethod => {
                    stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                    http_response("405 Method Not Allowed", "GET /metrics\n", true)
                }
                Request::Malformed => {
                    stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                    http_response("400 Bad Request", "GET /metrics\n", true)
                }
            }
        }
    };
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(METRICS_RESPONSE_TIMEOUT, write)
        .await
        .is_err()
    {
        stats.timed_out.fetch_add(1, Ordering::Relaxed);
    }
}

enum Head {
    /// The head ends at this many bytes (its blank line included).
    Complete(usize),
    TooLarge,
    Closed,
}

/// Reads until the blank line that ends a request head, into `buf`.
async fn read_request_head(
    stream: &mut tokio::net::TcpStream,
    buf: &mut [u8],
) -> std::io::Result<Head> {
    use tokio::io::AsyncReadExt;
    let mut len = 0;
    loop {
        let Some(free) = buf.get_mut(len..).filter(|f| !f.is_empty()) else {
            return Ok(Head::TooLarge);
        };
        let n = stream.read(free).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        // Only the new bytes and the three before them can complete the end.
        let from = len.saturating_sub(3);
        len += n;
        let seen = buf.get(from..len).unwrap_or_default();
        if let Some(end) = memchr::memmem::find(seen, b"\r\n\r\n") {
            return Ok(Head::Complete(from + end + 4));
        }
        if let Some(end) = memchr::memmem::find(seen, b"\n\n") {
            return Ok(Head::Complete(from + end + 2));
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { head_only: bool },
    NotFound,
    WrongMethod,
    Malformed,
}

/// What a request head asks for; only its request line matters.
fn metrics_request(head: &[u8]) -> Request {
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(head.get(..line_end).unwrap_or_default()) else {
        return Request::Malformed;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Malformed;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::WrongMethod,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path == "/metrics" {
        Request::Metrics { head_only }
    } else {
        Request::NotFound
    }
}

/// An HTTP/1.0 response that closes the connection.
fn http_response(status: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// One line with the numbers an operator watches, and the change since the
/// previous line.
pub fn stats_line(now: &Stats, before: &Stats, interval: Duration) -> String {
    let secs = interval.as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    format!(
        "packets={} ({:.0}/s) exchanges={} ({:.0}/s) flows_open={} parse_errors={} \
         kernel_drops={} if_drops={} udp_drops={} queue_drops={} output_drops={} gaps={}",
        now.decode.packets,
        rate(now.decode.packets, before.decode.packets),
        now.http.exchanges,
        rate(now.http.exchanges, before.http.exchanges),
        now.gauges.flows_open,
        now.http.parse_errors,
        now.capture.pcap_dropped_kernel,
        now.capture.pcap_dropped_interface,
        now.capture.udp_dropped_kernel,
        now.pipeline.packets_dropped_queue_full,
        now.pipeline.exchanges_dropped_output_full,
        now.flow.gaps,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[test]
    fn request_lines_are_sorted_out() {
        let req = |s: &str| metrics_request(s.as_bytes());
        assert_eq!(
            req("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            req("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(req("GET /other HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(req("POST /metrics HTTP/1.1\r\n\r\n"), Request::WrongMethod);
        assert_eq!(req("GET /metrics\r\n\r\n"), Request::Malformed);
        assert_eq!(req("GET  /metrics HTTP/1.1\r\n\r\n"), Request::Malformed);
        assert_eq!(req("GET /metrics SPDY/3\r\n\r\n"), Request::Malformed);
        assert_eq!(
            metrics_request(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Request::Malformed
        );
        let r = http_response("200 OK", "abc", false);
        assert!(r.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_at_once_and_counted() {
        let listener = bind_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = StatsHub::new(1);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = serve_metrics(listener, hub, Arc::clone(&stop), None).unwrap();
        // Every slot taken by a connection that sends half a request.
        let held: Vec<TcpStream> = (0..METRICS_MAX_CONNECTIONS)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        // Closed without an answer: end of stream or a reset.
        assert!(matches!(extra.read(&mut buf), Ok(0) | Err(_)));
        assert!(started.elapsed() < Duration::from_secs(1));
        // Held past METRICS_EVICT_AFTER, the oldest gives its slot to a scrape.
        std::thread::sleep(METRICS_EVICT_AFTER);
        let page = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            page.contains("\napisensor_metrics_connections_evicted_total 1\n"),
            "{page}"
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(exchange(addr, big.as_bytes()).starts_with("HTTP/1.0 431 "));
        assert!(exchange(addr, b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 404 "));
        assert!(exchange(addr, b"PUT /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 405 "));
        let page = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
        assert!(
            page.contains("\napisensor_decode_packets_total 0\n"),
            "{page}"
        );
        assert!(
            page.contains("\napisensor_metrics_connections_refused_total 1\n"),
            "{page}"
        );
        assert!(
            page.contains("\napisensor_metrics_requests_too_large_total 1\n"),
            "{page}"
        );
        assert!(
            page.contains("\napisensor_metrics_requests_bad_total 1\n"),
            "{page}"
        );
        let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
    }
}
