//! Where exchanges go in `replay`: JSON lines on stdout or a file, or nowhere
//! (count only, for benchmarks). Runs on the writer thread, off the packet path.

use crate::exchange::Exchange;
use std::io::{self, BufWriter, Write};

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
    pub written: u64,
}

impl ExchangeWriter {
    pub fn new(out: Box<dyn Write + Send>, format: OutputFormat, include_bodies: bool) -> Self {
        ExchangeWriter {
            out: BufWriter::with_capacity(1 << 20, out),
            format,
            include_bodies,
            written: 0,
        }
    }

    pub fn write(&mut self, exchange: &mut Exchange) -> io::Result<()> {
        self.written += 1;
        if self.format == OutputFormat::None {
            return Ok(());
        }
        if !self.include_bodies {
            exchange.strip_bodies();
        }
        serde_json::to_writer(&mut self.out, exchange)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
