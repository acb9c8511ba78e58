//! The `apisensor` binary: parse arguments, load settings, run, report.
//! No packet logic lives here.

use anyhow::{Context, Result};
use apisensor::analysis::Analysis;
use apisensor::capture::{LiveSource, PacketSource, UdpSource};
use apisensor::cli::{
    Cli, Command, InventoryArgs, InventoryFormat, ReplayArgs, RunArgs, SinkTestArgs,
};
use apisensor::config::{SinkSettings, SinkType};
use apisensor::forward::{self, ForwardMetrics, Forwarder};
use apisensor::output::ExchangeWriter;
use apisensor::pipeline::{self, RunSummary};
use apisensor::pipeline::{Live, WriterControl};
use apisensor::service::{self, Signals};
use apisensor::Settings;
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APISENSOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apisensor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings(cli: &Cli) -> Result<Settings> {
    let mut settings = match &cli.config {
        Some(path) => Settings::load(path)?,
        None => {
            let mut defaults = Settings::default();
            defaults.fit_memory_plan();
            defaults
        }
    };
    settings.classify.resolve_redaction_key();
    Ok(settings)
}

/// `writer`, redacting unless `raw` (then with a warning: the output
/// carries credentials as sent).
fn redact_unless_raw(settings: &Settings, writer: ExchangeWriter, raw: bool) -> ExchangeWriter {
    if raw {
        tracing::warn!(
            "exchanges are written unredacted (--raw / output.raw): credentials, cookies, \
             tokens and personal data appear as sent; keep the output where only you can read it"
        );
        return writer;
    }
    writer.redacting(Arc::new(apisensor::classify::Classifier::new(
        &settings.classify,
    )))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::CheckConfig { file } => {
            let settings = Settings::load(file)?;
            apisensor::preflight::check_host(&settings)?;
            for warning in apisensor::preflight::warnings(&settings) {
                eprintln!("apisensor: warning: {warning}");
            }
            println!(
                "{}: ok ({} workers)",
                file.display(),
                settings.worker_count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let settings = load_settings(&cli)?;
            replay(&settings, args, cli.config.is_some())
        }
        Command::SinkTest(args) => {
            let settings = load_settings(&cli)?;
            sink_test(settings, args)
        }
        Command::Inventory(args) => {
            let settings = load_settings(&cli)?;
            inventory(&settings, args)
        }
        Command::Run(args) => {
            let path = cli
                .config
                .clone()
                .unwrap_or_else(|| "/etc/apisensor/sensor.toml".into());
            let mut settings = Settings::load(&path)?;
            settings.classify.resolve_redaction_key();
            run_live(settings, args)
        }
        Command::Interfaces => {
            let mut out = std::io::stdout().lock();
            for (name, desc, addrs) in apisensor::capture::live::list_interfaces()? {
                // A closed pipe (`| head`) just ends the listing.
                if writeln!(out, "{name}\t{desc}\t{}", addrs.join(",")).is_err() {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_live(mut settings: Settings, args: &RunArgs) -> Result<ExitCode> {
    if let Some(workers) = args.workers {
        settings.pipeline.workers = workers;
        settings.validate()?;
    }
    if settings.capture.interfaces.is_empty() && settings.capture.udp.is_empty() {
        anyhow::bail!(
            "capture: no source configured; add a [[capture.interfaces]] table with `name = \"eth1\"` \
             or a [[capture.udp]] table with `listen` and `encapsulation` (see sensor.toml)"
        );
    }
    // What check-config checks about this host, refused the same way.
    apisensor::preflight::check_host(&settings)?;
    for warning in apisensor::preflight::warnings(&settings) {
        tracing::warn!("{warning}");
    }
    // Files created before the privilege drop are created for the user the
    // process becomes; what it must create later is checked now.
    let owner = service::file_owner(&settings.service.user)?;
    if let Some(owner) = owner {
        service::check_writable(&settings, &settings.service.user, owner)?;
    }
    // Everything that needs privileges is opened before they are dropped.
    let mut sources: Vec<Box<dyn PacketSource>> = Vec::new();
    for iface in &settings.capture.interfaces {
        let source = LiveSource::open(iface)
            .with_context(|| format!("capture.interfaces {:?}", iface.name))?;
        sources.push(Box::new(source));
    }
    for udp in &settings.capture.udp {
        let source = UdpSource::open(udp).with_context(|| format!("capture.udp {}", udp.listen))?;
        sources.push(Box::new(source));
    }
    let format = apisensor::output::OutputFormat::Json;
    let include_bodies = settings.output.include_bodies;
    let writer = if settings.service.exchanges_path.is_empty() {
        ExchangeWriter::new(Box::new(std::io::stdout()), format, include_bodies)
    } else {
        let path = std::path::Path::new(&settings.service.exchanges_path);
        ExchangeWriter::to_file(path, format, include_bodies, owner)
            .with_context(|| format!("service.exchanges_path: cannot open {}", path.display()))?
    };
    let writer = redact_unless_raw(&settings, writer, settings.output.raw);
    let metrics_listener = settings
        .service
        .metrics_listen
        .map(service::bind_metrics)
        .transpose()?;
    let signals = Signals::install()?;
    // Captures, output and listener are open and no thread has started yet:
    // every thread started from here on inherits no capability.
    service::drop_capabilities(!settings.service.user.is_empty())?;
    // The forwarder starts before the capture so the workers can emit; its
    // stats events read the hub once the capture has made one.
    let hub_cell: Arc<std::sync::OnceLock<Arc<apisensor::telemetry::StatsHub>>> = Arc::default();
    let forwarder = if settings.events.sinks.is_empty() {
        tracing::warn!(
            "events.sinks: no sink configured, so detections and health events are not shipped; \
             add [[events.sinks]] tables (see sensor.toml)"
        );
        None
    } else {
        let cell = Arc::clone(&hub_cell);
        let stats: forward::StatsSource =
            Arc::new(move || cell.get().map(|hub| hub.snapshot()).unwrap_or_default());
        Some(Forwarder::start(
            &settings.events,
            true,
            Some(stats),
            owner,
        )?)
    };
    let events = forwarder.as_ref().map(Forwarder::handle);
    let forward_metrics: Option<Arc<dyn Fn() -> ForwardMetrics + Send + Sync>> =
        forwarder.as_ref().map(|f| {
            Arc::new(forward::metrics_source(f)) as Arc<dyn Fn() -> ForwardMetrics + Send + Sync>
        });
    let metrics_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let control = Arc::new(WriterControl::default());
    let live = Live::start(
        &settings,
        sources,
        settings.worker_count(),
        writer,
        &control,
        events,
    )?;
    let _ = hub_cell.set(Arc::clone(&live.hub));
    let extra_metrics = forward_metrics
        .clone()
        .map(|m| Arc::new(move || m().prometheus_text()) as Arc<dyn Fn() -> String + Send + Sync>);
    let metrics = metrics_listener
        .map(|listener| {
            service::serve_metrics(
                listener,
                Arc::clone(&live.hub),
                Arc::clone(&metrics_stop),
                extra_metrics,
            )
        })
        .transpose()?;
    if !settings.service.user.is_empty() {
        service::drop_privileges(&settings.service.user)?;
    }
    service::verify_no_capabilities()?;
    tracing::info!("capturing; SIGTERM or SIGINT stops, SIGHUP reopens the output");
    // Readiness for systemd (Type=notify): captures are open and running.
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let interval = Duration::from_secs(settings.service.stats_interval_secs);
    let mut last_line = Instant::now();
    let mut before = live.hub.snapshot();
    while !signals.stop_requested() && !live.sources_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if signals
            .reopen
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            control
                .reopen
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if last_line.elapsed() >= interval {
            let now = live.hub.snapshot();
            tracing::info!(
                "stats {}",
                service::stats_line(&now, &before, last_line.elapsed())
            );
            if let Some(m) = &forward_metrics {
                tracing::info!("stats {}", m().line());
            }
            before = now;
            last_line = Instant::now();
        }
    }
    // Bounded shutdown: a drain that hangs must not keep the unit from stopping.
    let timeout = Duration::from_secs(settings.service.shutdown_timeout_secs);
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("apisensor: drain did not finish within service.shutdown_timeout_secs; exiting");
        std::process::exit(3);
    });
    // Sources that stopped on their own (interface gone, socket error) are a
    // failure for the service manager to act on, after a clean drain.
    let sources_failed = !signals.stop_requested();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let summary = live.shutdown()?;
    let forwarded = forwarder.map(|f| f.shutdown(Some(&summary.stats), true));
    metrics_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(handle) = metrics {
        let _ = handle.join();
    }
    print_summary("run", &summary);
    if let Some(m) = &forwarded {
        print_forward_summary(m);
    }
    if let Some(path) = &args.stats_json {
        write_stats_json(path, &summary, forwarded.as_ref())?;
    }
    // Reported, not an exit failure: the service stopped as asked.
    output_failed(&summary);
    if sources_failed {
        eprintln!("apisensor: every capture source stopped; see the errors above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A spool directory that is removed when dropped (replay without configured sinks).
struct TempSpool(std::path::PathBuf);

impl Drop for TempSpool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_spool(tag: &str) -> TempSpool {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    TempSpool(std::env::temp_dir().join(format!("apisensor-{tag}-{}-{nanos}", std::process::id())))
}

fn replay(settings: &Settings, args: &ReplayArgs, configured: bool) -> Result<ExitCode> {
    let mut settings = settings.clone();
    if let Some(workers) = args.workers {
        settings.pipeline.workers = workers;
        settings.validate()?;
    }
    // Events: to stdout with --events, and to the sinks of --config. Only
    // configured sinks use the configured spool directory (so what they
    // could not take survives for the next run); otherwise a temporary one.
    let mut _temp = None;
    if !configured || settings.events.sinks.is_empty() {
        let temp = temp_spool("replay");
        settings.events.spool_dir = temp.0.display().to_string();
        _temp = Some(temp);
    }
    if args.events {
        let mut stdout = SinkSettings::new(SinkType::Stdout);
        stdout.name = "replay-stdout".into();
        settings.events.sinks.push(stdout);
    }
    let forwarder = if settings.events.sinks.is_empty() {
        None
    } else {
        Some(Forwarder::start(&settings.events, false, None, None)?)
    };
    let include_bodies = args.bodies || settings.output.include_bodies;
    // With --events, stdout carries events; exchanges only go to --out.
    let format = if args.events && args.out.is_none() {
        apisensor::output::OutputFormat::None
    } else {
        args.format
    };
    let writer = match &args.out {
        Some(path) => ExchangeWriter::create_file(path, format, include_bodies)
            .with_context(|| format!("cannot create output file {}", path.display()))?,
        None => ExchangeWriter::new(Box::new(std::io::stdout()), format, include_bodies),
    };
    let writer = redact_unless_raw(&settings, writer, args.raw || settings.output.raw);
    let bar = (args.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut report = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let progress: Option<pipeline::ProgressFn<'_>> = if bar.is_some() {
        Some(&mut report)
    } else {
        None
    };
    let events = forwarder.as_ref().map(Forwarder::handle);
    let mut analysis = Analysis::new(&settings, events, false)?;
    if !args.baseline_from.is_empty() {
        analysis.adopt_baseline(learn_baselines(&settings, &args.baseline_from)?);
    }
    let result = pipeline::replay(
        &settings,
        &args.files,
        writer,
        pipeline::ReplayOptions {
            workers: settings.worker_count(),
            progress,
            analysis: Some(analysis),
            pace: args.pace,
            loop_for: args.loop_for_secs.map(Duration::from_secs),
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (summary, _) = result?;
    let forwarded = forwarder.map(|f| f.shutdown(None, false));
    print_summary("replay", &summary);
    if let Some(m) = &forwarded {
        print_forward_summary(m);
    }
    if let Some(path) = &args.stats_json {
        write_stats_json(path, &summary, forwarded.as_ref())?;
    }
    if output_failed(&summary) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Says loudly that exchanges were lost on the output; true if any were.
fn output_failed(summary: &RunSummary) -> bool {
    let lost = summary.stats.pipeline.exchanges_write_errors;
    if lost == 0 {
        return false;
    }
    eprintln!(
        "apisensor: OUTPUT FAILED: {lost} exchanges could not be written ({}); {} were",
        summary.output_error.as_deref().unwrap_or("write error"),
        summary.exchanges_written
    );
    true
}

/// `--stats-json`: the final counters of a run or replay.
fn write_stats_json(
    path: &std::path::Path,
    summary: &RunSummary,
    forwarded: Option<&ForwardMetrics>,
) -> Result<()> {
    let json = serde_json::json!({
        "stats": summary.stats,
        "exchanges_written": summary.exchanges_written,
        "exchanges_lost": summary.stats.pipeline.exchanges_write_errors,
        "output_error": summary.output_error,
        "elapsed_secs": summary.elapsed.as_secs_f64(),
        "workers": summary.workers,
        "events": forwarded,
        "passes": summary.passes + 1,
        "peak_rss_kib": apisensor::telemetry::peak_rss_kib(),
    });
    apisensor::files::write(
        path,
        &serde_json::to_vec_pretty(&json)?,
        apisensor::files::GROUP_READABLE_MODE,
    )
    .with_context(|| format!("cannot write {}", path.display()))
}

fn print_forward_summary(m: &ForwardMetrics) {
    eprintln!("{}", m.line());
    let dropped: u64 = m.sinks.values().map(|s| s.dropped).sum();
    if m.spool_lost > 0 || dropped > 0 {
        eprintln!(
            "apisensor: EVENTS LOST: spool_lost={} (evicted={} write_failed={} unencodable={}), \
             dropped by sinks={dropped}; a sensor.spool_loss event reports them",
            m.spool_lost, m.spool_lost_evicted, m.spool_lost_write_failed, m.spool_lost_unencodable
        );
    }
}

/// `apisensor sink-test`: synthetic health events through the real forwarder.
fn sink_test(mut settings: Settings, args: &SinkTestArgs) -> Result<ExitCode> {
    let mut _temp = None;
    if settings.events.sinks.is_empty() {
        settings
            .events
            .sinks
            .push(SinkSettings::new(SinkType::Stdout));
        let temp = temp_spool("sink-test");
        settings.events.spool_dir = temp.0.display().to_string();
        _temp = Some(temp);
    }
    let signals = Signals::install()?;
    let forwarder = Forwarder::start(&settings.events, false, None, None)?;
    let events = forwarder.handle();
    let sensor = events.sensor().to_owned();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let report = |f: &Forwarder, emitted: u64| {
        let m = f.metrics();
        // Appended = durable in the spool (modulo the fsync policy).
        eprintln!(
            "sink-test: emitted={emitted} appended={} {}",
            m.spool_appended,
            m.line()
        );
    };
    for seq in 0..args.count {
        if signals.stop_requested() {
            break;
        }
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(seq as f64 / args.rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let mut event = apisensor::event::Event::new(
            apisensor::event::EventKind::Health,
            "sensor.sink_test",
            &sensor,
            &[&args.label, &seq.to_string()],
            wall_ms(),
            apisensor::event::Severity::Info,
            format!("Sink test event {seq} of {}", args.count),
        );
        event
            .attributes
            .insert("seq".into(), serde_json::Value::from(seq));
        event
            .attributes
            .insert("label".into(), serde_json::Value::from(args.label.clone()));
        event.text.what_happened = format!(
            "apisensor sink-test sent synthetic event {seq} of {} to check the event path.",
            args.count
        );
        events.emit(event);
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            report(&forwarder, seq + 1);
        }
    }
    drop(events);
    let m = forwarder.shutdown(None, true);
    eprintln!(
        "sink-test: done emitted={} appended={} in {:.1}s",
        m.emitted,
        m.spool_appended,
        started.elapsed().as_secs_f64()
    );
    print_forward_summary(&m);
    let undelivered = m.sinks.values().any(|s| s.lag_events > 0);
    let lost = m.spool_lost > 0 || m.sinks.values().any(|s| s.dropped > 0);
    Ok(if undelivered || lost {
        if undelivered {
            eprintln!(
                "sink-test: some events are still spooled (a sink did not take them in time)"
            );
        }
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Replays `files` only to learn baselines (`replay --baseline-from`).
fn learn_baselines(settings: &Settings, files: &[std::path::PathBuf]) -> Result<Analysis> {
    let writer = ExchangeWriter::new(
        Box::new(std::io::sink()),
        apisensor::output::OutputFormat::None,
        false,
    );
    let (summary, learned) = pipeline::replay(
        settings,
        files,
        writer,
        pipeline::ReplayOptions {
            workers: settings.worker_count(),
            analysis: Some(Analysis::learn_only(settings)?),
            ..Default::default()
        },
    )?;
    print_summary("baseline", &summary);
    learned.context("the baseline stage did not run")
}

/// Sensor name in posture findings printed by `inventory`.
const INVENTORY_SENSOR: &str = "apisensor";

fn inventory(settings: &Settings, args: &InventoryArgs) -> Result<ExitCode> {
    use apisensor::inventory::{drift, openapi, posture, report};
    let mut settings = settings.clone();
    if let Some(workers) = args.workers {
        settings.pipeline.workers = workers;
        settings.validate()?;
    }
    // Read the spec first: a bad one should fail before a long replay.
    let spec = args.spec.as_deref().map(drift::Spec::load).transpose()?;
    let writer = ExchangeWriter::new(
        Box::new(std::io::sink()),
        apisensor::output::OutputFormat::None,
        false,
    );
    let (summary, analysis) = pipeline::replay(
        &settings,
        &args.files,
        writer,
        pipeline::ReplayOptions {
            workers: settings.worker_count(),
            analysis: Some(Analysis::new(&settings, None, true)?),
            ..Default::default()
        },
    )?;
    print_summary("inventory", &summary);
    let snapshot = analysis
        .as_ref()
        .and_then(Analysis::inventory)
        .map(|inventory| inventory.snapshot())
        .context("the inventory stage did not run")?;
    let findings = posture::findings(&snapshot.endpoints, INVENTORY_SENSOR);
    let drift = spec.map(|s| drift::compare(&s, &snapshot.endpoints));
    if let Some(path) = &args.openapi {
        let doc = openapi::document(&snapshot.endpoints, "API inventory (apisensor)");
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let text = if yaml {
            serde_yaml_ng::to_string(&doc)?
        } else {
            serde_json::to_string_pretty(&doc)? + "\n"
        };
        apisensor::files::write(path, text.as_bytes(), apisensor::files::GROUP_READABLE_MODE)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let text = match args.format {
        InventoryFormat::Json => {
            serde_json::to_string_pretty(&report::json(&snapshot, &findings, drift.as_ref()))?
                + "\n"
        }
        InventoryFormat::Table => report::table(&snapshot, &findings, drift.as_ref()),
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) just ends the listing.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

fn print_summary(label: &str, summary: &RunSummary) {
    let s = &summary.stats;
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{}: {} packets, {} bytes, {} flows, {} exchanges, {} parse errors in {:.3}s \
         ({:.0} packets/s, {:.3} Gbit/s, {:.0} exchanges/s) with {} workers",
        label,
        s.decode.packets,
        s.decode.bytes,
        s.flow.flows_created,
        summary.exchanges_written,
        s.http.parse_errors,
        secs,
        s.decode.packets as f64 / secs,
        s.decode.bytes as f64 * 8.0 / secs / 1e9,
        summary.exchanges_written as f64 / secs,
        summary.workers,
    );
    let drops = [
        ("capture.pcap_dropped_kernel", s.capture.pcap_dropped_kernel),
        (
            "capture.pcap_dropped_interface",
            s.capture.pcap_dropped_interface,
        ),
        ("capture.udp_dropped_kernel", s.capture.udp_dropped_kernel),
        (
            "pipeline.packets_dropped_queue_full",
            s.pipeline.packets_dropped_queue_full,
        ),
        (
            "pipeline.exchanges_dropped_output_full",
            s.pipeline.exchanges_dropped_output_full,
        ),
        (
            "pipeline.exchanges_write_errors",
            s.pipeline.exchanges_write_errors,
        ),
        ("pipeline.read_errors", s.pipeline.read_errors),
        ("decode.malformed_link", s.decode.malformed_link),
        ("decode.malformed_ip", s.decode.malformed_ip),
        ("decode.malformed_tcp", s.decode.malformed_tcp),
        (
            "decode.unsupported_link_type",
            s.decode.unsupported_link_type,
        ),
        ("decode.fragments_dropped", s.decode.fragments_dropped),
        ("flow.flows_evicted_capacity", s.flow.flows_evicted_capacity),
        ("flow.ooo_cap_gaps", s.flow.ooo_cap_gaps),
        ("flow.gap_bytes", s.flow.gap_bytes),
        ("flow.bytes_before_start", s.flow.bytes_before_start),
        ("flow.bytes_after_end", s.flow.bytes_after_end),
        ("flow.bytes_after_close", s.flow.bytes_after_close),
        ("flow.bytes_out_of_window", s.flow.bytes_out_of_window),
        ("flow.bytes_with_rst", s.flow.bytes_with_rst),
        ("http.resync_bytes_skipped", s.http.resync_bytes_skipped),
        ("http.garbage_bytes_skipped", s.http.garbage_bytes_skipped),
        ("http.head_bytes_truncated", s.http.head_bytes_truncated),
        ("http.stall_bytes_dropped", s.http.stall_bytes_dropped),
        ("http.body_bytes_not_kept", s.http.body_bytes_not_kept),
    ];
    let drop_line: Vec<String> = drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(err, "drops: {}", drop_line.join(" "));
    let _ = writeln!(err, "counters:");
    for line in s.nonzero_lines() {
        let _ = writeln!(err, "  {line}");
    }
}

// Exchanges are built on worker threads and freed on the writer thread;
// mimalloc handles that cross-thread pattern far better than glibc malloc.
// Without the default `mimalloc` feature the system allocator is used, so
// valgrind memcheck sees every allocation (scripts/valgrind.sh).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
