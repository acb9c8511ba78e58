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
    /// Replay capture files and print the API inventory they show: hosts,
    /// templated endpoints and their profiles, posture findings, and drift
    /// against an OpenAPI spec.
    Inventory(InventoryArgs),
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
}

/// How `inventory` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InventoryFormat {
    /// A readable table of hosts → endpoints, findings and drift.
    Table,
    /// One JSON document: endpoints, counters, findings, drift.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Capture files, read in the order given as one continuous capture.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = InventoryFormat::Table)]
    pub format: InventoryFormat,
    /// Also write an OpenAPI 3.0 document here (YAML for .yaml/.yml, else JSON).
    #[arg(long, value_name = "OUT")]
    pub openapi: Option<PathBuf>,
    /// Compare with this OpenAPI 3.x spec (JSON or YAML) and report drift.
    #[arg(long, value_name = "SPEC")]
    pub spec: Option<PathBuf>,
    /// Flow worker threads (default: pipeline.workers, 0 = one per core).
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
}
