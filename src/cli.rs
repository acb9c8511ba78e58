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
    /// Push N synthetic health events (rule `sensor.sink_test`) through the
    /// real forwarder and spool to the configured sinks (stdout if none),
    /// to check the path to a SIEM. Prints progress on stderr; anything
    /// spooled by an earlier run is sent too (`--count 0` only drains).
    SinkTest(SinkTestArgs),
}

#[derive(Debug, clap::Args)]
pub struct SinkTestArgs {
    /// Events to emit.
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Label the event ids are derived from, with the sequence number: the
    /// same label and number give the same id, so receivers can de-duplicate.
    #[arg(long, default_value = "sink-test")]
    pub label: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Flow worker threads (default: pipeline.workers, 0 = one per core).
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// Also write the final counters as JSON to this file at exit (opened
    /// then, after privileges are dropped).
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture files, read in the order given as one continuous capture;
    /// `-` reads one from standard input (e.g. `tcpdump -w - | apisensor replay -`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Flow worker threads (default: pipeline.workers, 0 = one per core).
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// Write exchanges here instead of stdout (`--exchanges` is the same).
    #[arg(long, short = 'o', visible_alias = "exchanges")]
    pub out: Option<PathBuf>,
    /// Print events (detections, ...) as JSON lines on stdout. Exchanges are
    /// then written only with --out/--exchanges FILE. Sinks of --config
    /// (`[[events.sinks]]`) receive the events too, with or without this flag.
    #[arg(long)]
    pub events: bool,
    /// Learn baselines from these captures first (no events from them), then
    /// judge FILE... against what was learned.
    #[arg(long, value_name = "PCAP", num_args = 1..)]
    pub baseline_from: Vec<PathBuf>,
    /// Replay at the capture's own speed times this factor (1 = as
    /// recorded, 2 = twice as fast); without it, as fast as possible.
    #[arg(long)]
    pub pace: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,
    /// Include kept body bytes in the output (overrides output.include_bodies).
    #[arg(long)]
    pub bodies: bool,
    /// Write exchanges unredacted: credentials, cookies, tokens and
    /// sensitive values as sent (same as output.raw = true). By default they
    /// are replaced by type and keyed hash, as in event evidence.
    #[arg(long)]
    pub raw: bool,
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
