//! Where exchanges go: JSON lines on stdout or a file, or nowhere (count
//! only, for benchmarks). Runs on the writer thread, off the packet path. A
//! file output can be reopened (SIGHUP, after logrotate moved it). Every
//! exchange is redacted before it is written unless the operator asked for
//! raw output: the JSON lines go to the journal or to files other people read.

use crate::classify::Classifier;
use crate::exchange::Exchange;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per exchange and line.
    Json,
    /// Nothing per exchange: only the summary (for benchmarks).
    None,
}

pub struct ExchangeWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    format: OutputFormat,
    include_bodies: bool,
    /// Redacts every exchange before it is written (the default; `None`
    /// only with `--raw` / `output.raw`).
    redactor: Option<Arc<Classifier>>,
    /// The file behind `out`, when there is one, for `reopen`.
    path: Option<PathBuf>,
    pub written: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl ExchangeWriter {
    pub fn new(out: Box<dyn Write + Send>, format: OutputFormat, include_bodies: bool) -> Self {
        ExchangeWriter {
            out: BufWriter::with_capacity(1 << 20, out),
            format,
            include_bodies,
            redactor: None,
            path: None,
            written: 0,
        }
    }

    /// Writes exchanges redacted by `classifier` (credentials, cookies,
    /// tokens and sensitive values replaced by type and keyed hash, as in
    /// event evidence).
    pub fn redacting(mut self, classifier: Arc<Classifier>) -> Self {
        self.redactor = Some(classifier);
        self
    }

    /// Appends to the file at `path` (created if missing).
    pub fn to_file(path: &Path, format: OutputFormat, include_bodies: bool) -> io::Result<Self> {
        let mut w = Self::new(Box::new(open_append(path)?), format, include_bodies);
        w.path = Some(path.to_path_buf());
        Ok(w)
    }

    /// Flushes and reopens the output file (no-op for stdout).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some(path) = &self.path {
            self.out = BufWriter::with_capacity(1 << 20, Box::new(open_append(path)?));
        }
        Ok(())
    }

    pub fn write(&mut self, exchange: &mut Exchange) -> io::Result<()> {
        self.written += 1;
        if self.format == OutputFormat::None {
            return Ok(());
        }
        if !self.include_bodies {
            exchange.strip_bodies();
        }
        if let Some(redactor) = &self.redactor {
            redactor.redact_exchange(exchange, self.include_bodies);
        }
        serde_json::to_writer(&mut self.out, exchange)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
