//! The `apisensor` binary: parse arguments, load settings, run, report.
//! No packet logic lives here.

use anyhow::{Context, Result};
use apisensor::cli::{Cli, Command, ReplayArgs};
use apisensor::output::ExchangeWriter;
use apisensor::pipeline::{self, RunSummary};
use apisensor::Settings;
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

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
    }
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
    let result = pipeline::replay(
        &settings,
        &args.files,
        settings.worker_count(),
        writer,
        progress,
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let summary = result?;
    print_summary(&summary);
    if let Some(path) = &args.stats_json {
        let json = serde_json::json!({
            "stats": summary.stats,
            "exchanges_written": summary.exchanges_written,
            "elapsed_secs": summary.elapsed.as_secs_f64(),
            "workers": summary.workers,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(summary: &RunSummary) {
    let s = &summary.stats;
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "replay: {} packets, {} bytes, {} flows, {} exchanges, {} parse errors in {:.3}s \
         ({:.0} packets/s, {:.3} Gbit/s, {:.0} exchanges/s) with {} workers",
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
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
