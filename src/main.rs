//! The `apisensor` binary: parse arguments, load settings, run, report.
//! No packet logic lives here.

use anyhow::{Context, Result};
use apisensor::capture::{LiveSource, PacketSource, UdpSource};
use apisensor::cli::{Cli, Command, ReplayArgs, RunArgs};
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
    match &cli.config {
        Some(path) => Ok(Settings::load(path)?),
        None => Ok(Settings::default()),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::CheckConfig { file } => {
            let settings = Settings::load(file)?;
            println!(
                "{}: ok ({} workers)",
                file.display(),
                settings.worker_count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let settings = load_settings(&cli)?;
            replay(&settings, args)
        }
        Command::Run(args) => {
            let path = cli
                .config
                .clone()
                .unwrap_or_else(|| "/etc/apisensor/sensor.toml".into());
            let settings = Settings::load(&path)?;
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
        ExchangeWriter::to_file(path, format, include_bodies)
            .with_context(|| format!("service.exchanges_path: cannot open {}", path.display()))?
    };
    let signals = Signals::install()?;
    let metrics_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let control = Arc::new(WriterControl::default());
    let live = Live::start(
        &settings,
        sources,
        settings.worker_count(),
        writer,
        &control,
    )?;
    let metrics = match settings.service.metrics_listen.as_str() {
        "" => None,
        listen => Some(service::serve_metrics(
            listen.parse().context("service.metrics_listen")?,
            Arc::clone(&live.hub),
            Arc::clone(&metrics_stop),
        )?),
    };
    if !settings.service.user.is_empty() {
        service::drop_privileges(&settings.service.user)?;
    }
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
    metrics_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(handle) = metrics {
        let _ = handle.join();
    }
    print_summary("run", &summary);
    if sources_failed {
        eprintln!("apisensor: every capture source stopped; see the errors above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(settings: &Settings, args: &ReplayArgs) -> Result<ExitCode> {
    let mut settings = settings.clone();
    if let Some(workers) = args.workers {
        settings.pipeline.workers = workers;
        settings.validate()?;
    }
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create output file {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let include_bodies = args.bodies || settings.output.include_bodies;
    let writer = ExchangeWriter::new(out, args.format, include_bodies);
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
    let result = pipeline::replay_looped(
        &settings,
        &args.files,
        settings.worker_count(),
        writer,
        progress,
        args.loop_for_secs.map(Duration::from_secs),
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let summary = result?;
    print_summary("replay", &summary);
    if let Some(path) = &args.stats_json {
        let json = serde_json::json!({
            "stats": summary.stats,
            "exchanges_written": summary.exchanges_written,
            "elapsed_secs": summary.elapsed.as_secs_f64(),
            "workers": summary.workers,
            "passes": summary.passes + 1,
            "peak_rss_kib": apisensor::telemetry::peak_rss_kib(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
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
        ("http.resync_bytes_skipped", s.http.resync_bytes_skipped),
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
