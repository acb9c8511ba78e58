//! Command-line arguments (clap derive) and nothing else.

use crate::output::OutputFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "apisensor", version, about = "Out-of-band API-security sensor")]
pub struct Cli {
    /// Settings file (TOML). Without it the built-in defaults apply, which
    /// are the values in the bundled sensor.toml.
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay pcap/pcapng files and print one JSON line per HTTP exchange.
    Replay(ReplayArgs),
    /// Capture live from the sources in the settings file until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Load and validate a settings file.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// List the interfaces libpcap can capture on.
    Interfaces,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Flow worker threads (default: pipeline.workers, 0 = one per core).
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture files, read in the order given as one continuous capture.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Flow worker threads (default: pipeline.workers, 0 = one per core).
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// Write exchanges here instead of stdout.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,
    /// Include kept body bytes in the output (overrides output.include_bodies).
    #[arg(long)]
    pub bodies: bool,
    /// Show a progress bar on stderr (only when stderr is a terminal).
    #[arg(long)]
    pub progress: bool,
    /// Also write the final counters as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Soak test: replay the files again and again in this one process until
    /// this many seconds (wall clock) have passed; each pass follows the
    /// previous one in packet time, flow state carries over.
    #[arg(long, value_name = "SECS")]
    pub loop_for_secs: Option<u64>,
}
