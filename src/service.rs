//! Running as a long-lived sensor: signals (SIGTERM/SIGINT stop, SIGHUP
//! reopens the output), dropping root after the capture handles are open
//! (and checking first that the user can write what it must), the
//! Prometheus endpoint and the periodic stats line. No packet logic.

use crate::files::FileOwner;
use crate::telemetry::{prometheus_text, Stats, StatsHub};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Serves `GET /metrics` in Prometheus text format from the hub's snapshot
/// on a background thread, until `stop` is set.
pub fn serve_metrics(
    listen: SocketAddr,
    hub: Arc<StatsHub>,
    stop: Arc<AtomicBool>,
    extra: Option<Arc<dyn Fn() -> String + Send + Sync>>,
) -> Result<std::thread::JoinHandle<()>> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| anyhow::anyhow!("service.metrics_listen: cannot listen on {listen}: {e}"))?;
    std::thread::Builder::new()
        .name("apisensor-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let response = if request.url() == "/metrics" {
                    let mut body = prometheus_text(&hub.snapshot());
                    if let Some(extra) = &extra {
                        body.push_str(&extra());
                    }
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4"[..],
                    )
                    .ok();
                    let mut r = tiny_http::Response::from_string(body);
                    if let Some(h) = header {
                        r.add_header(h);
                    }
                    r
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })
        .context("cannot start the metrics thread")
}

/// One line with the numbers an operator watches, and the change since the
/// previous line.
pub fn stats_line(now: &Stats, before: &Stats, interval: Duration) -> String {
    let secs = interval.as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    format!(
        "packets={} ({:.0}/s) exchanges={} ({:.0}/s) flows_open={} parse_errors={} \
         kernel_drops={} if_drops={} queue_drops={} output_drops={} gaps={}",
        now.decode.packets,
        rate(now.decode.packets, before.decode.packets),
        now.http.exchanges,
        rate(now.http.exchanges, before.http.exchanges),
        now.gauges.flows_open,
        now.http.parse_errors,
        now.capture.pcap_dropped_kernel,
        now.capture.pcap_dropped_interface,
        now.pipeline.packets_dropped_queue_full,
        now.pipeline.exchanges_dropped_output_full,
        now.flow.gaps,
    )
}
