//! Where exchanges go: JSON lines on stdout or a file, or nowhere (count
//! only, for benchmarks). Runs on the writer thread, off the packet path. A
//! file output can be reopened (SIGHUP, after logrotate moved it). Every
//! exchange is redacted before it is written unless the operator asked for
//! raw output: the JSON lines go to the journal or to files other people read.
//!
//! Accounting: an exchange counts as `written` only once its whole line
//! reached the output (the write of the buffer holding it returned). When a
//! write fails (disk full, closed pipe), the lines that did not make it are
//! counted as `lost`, a line cut in the middle is removed from a file
//! again, and the error is kept for the summary; the next exchanges are
//! tried afresh.

use crate::classify::Classifier;
use crate::exchange::Exchange;
use crate::files::{self, FileOwner, GROUP_READABLE_MODE};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per exchange and line.
    Json,
    /// Nothing per exchange: only the summary (for benchmarks).
    None,
}

/// Lines are written out once this much is buffered.
const BUFFER_BYTES: usize = 1 << 20;

enum Target {
    /// A regular file (or anything opened by path): a torn line can be cut off.
    File(File),
    Stream(Box<dyn Write + Send>),
}

pub struct ExchangeWriter {
    target: Target,
    format: OutputFormat,
    include_bodies: bool,
    /// Redacts every exchange before it is written (the default; `None`
    /// only with `--raw` / `output.raw`).
    redactor: Option<Arc<Classifier>>,
    /// The file behind the output, when there is one, for `reopen`.
    path: Option<PathBuf>,
    owner: Option<FileOwner>,
    /// Whole lines not yet written, and where each ends.
    buffer: Vec<u8>,
    line_ends: Vec<usize>,
    /// Exchanges whose line reached the output.
    pub written: u64,
    /// Exchanges whose line did not (the output failed).
    pub lost: u64,
    /// The first write error, for the summary.
    pub first_error: Option<String>,
}

/// Opens `path` for appending (created 0640, handed to `owner`).
fn open_append(path: &Path, owner: Option<FileOwner>) -> io::Result<File> {
    files::open(
        path,
        OpenOptions::new().create(true).append(true),
        GROUP_READABLE_MODE,
        owner,
    )
}

impl ExchangeWriter {
    pub fn new(out: Box<dyn Write + Send>, format: OutputFormat, include_bodies: bool) -> Self {
        Self::with_target(Target::Stream(out), format, include_bodies)
    }

    fn with_target(target: Target, format: OutputFormat, include_bodies: bool) -> Self {
        ExchangeWriter {
            target,
            format,
            include_bodies,
            redactor: None,
            path: None,
            owner: None,
            buffer: Vec::with_capacity(BUFFER_BYTES + 64 * 1024),
            line_ends: Vec::new(),
            written: 0,
            lost: 0,
            first_error: None,
        }
    }

    /// Writes exchanges redacted by `classifier` (credentials, cookies,
    /// tokens and sensitive values replaced by type and keyed hash, as in
    /// event evidence).
    pub fn redacting(mut self, classifier: Arc<Classifier>) -> Self {
        self.redactor = Some(classifier);
        self
    }

    /// Appends to the file at `path` (created 0640 if missing, and handed
    /// to `owner`, the user the process switches to after start).
    pub fn to_file(
        path: &Path,
        format: OutputFormat,
        include_bodies: bool,
        owner: Option<FileOwner>,
    ) -> io::Result<Self> {
        let mut w = Self::with_target(
            Target::File(open_append(path, owner)?),
            format,
            include_bodies,
        );
        w.path = Some(path.to_path_buf());
        w.owner = owner;
        Ok(w)
    }

    /// Creates (or truncates) the file at `path` (created 0640).
    pub fn create_file(
        path: &Path,
        format: OutputFormat,
        include_bodies: bool,
    ) -> io::Result<Self> {
        let file = files::create(path, GROUP_READABLE_MODE)?;
        Ok(Self::with_target(
            Target::File(file),
            format,
            include_bodies,
        ))
    }

    /// Writes what is buffered and reopens the output file (no-op for
    /// stdout). On failure the old file stays in use.
    pub fn reopen(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        if let Some(path) = &self.path {
            self.target = Target::File(open_append(path, self.owner)?);
        }
        flushed
    }

    pub fn write(&mut self, exchange: &mut Exchange) -> io::Result<()> {
        if self.format == OutputFormat::None {
            self.written += 1;
            return Ok(());
        }
        if !self.include_bodies {
            exchange.strip_bodies();
        }
        if let Some(redactor) = &self.redactor {
            redactor.redact_exchange(exchange, self.include_bodies);
        }
        let start = self.buffer.len();
        if let Err(e) = serde_json::to_writer(&mut self.buffer, exchange) {
            self.buffer.truncate(start);
            self.lost += 1;
            self.note_error(&e.to_string());
            return Err(e.into());
        }
        self.buffer.push(b'\n');
        self.line_ends.push(self.buffer.len());
        if self.buffer.len() >= BUFFER_BYTES {
            return self.flush();
        }
        Ok(())
    }

    fn note_error(&mut self, error: &str) {
        if self.first_error.is_none() {
            self.first_error = Some(error.to_owned());
        }
    }

    /// Writes the buffered lines. Lines that did not reach the output are
    /// counted as lost and dropped; a torn line is cut off a file.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return self.flush_target();
        }
        // Where the file ends before this write, to cut a torn line off.
        let file_len = match &self.target {
            Target::File(f) => f.metadata().ok().map(|m| m.len()),
            Target::Stream(_) => None,
        };
        let mut done = 0usize;
        let result = loop {
            let Some(rest) = self.buffer.get(done..).filter(|r| !r.is_empty()) else {
                break self.flush_target();
            };
            let written = match &mut self.target {
                Target::File(f) => f.write(rest),
                Target::Stream(w) => w.write(rest),
            };
            match written {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let whole = self
            .line_ends
            .iter()
            .take_while(|&&end| end <= done)
            .count();
        self.written += whole as u64;
        if let Err(e) = &result {
            self.lost += (self.line_ends.len() - whole) as u64;
            let kept = whole.checked_sub(1).map_or(0, |i| self.line_ends[i]);
            if kept < done {
                if let (Target::File(f), Some(len)) = (&self.target, file_len) {
                    // Regular files only: a torn JSON line would break readers.
                    if f.metadata().is_ok_and(|m| m.is_file()) {
                        let _ = f.set_len(len + kept as u64);
                    }
                }
            }
            let message = e.to_string();
            self.note_error(&message);
        }
        self.buffer.clear();
        self.line_ends.clear();
        result
    }

    fn flush_target(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::File(f) => f.flush(),
            Target::Stream(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Takes `room` bytes, then fails like a full disk.
    struct Full {
        room: usize,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::other("No space left on device"));
            }
            let n = buf.len().min(self.room).min(7);
            self.room -= n;
            self.got.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_lines_that_reached_the_output_count_as_written() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut w = ExchangeWriter::new(
            Box::new(Full {
                room: 1000,
                got: Arc::clone(&got),
            }),
            OutputFormat::Json,
            false,
        );
        let mut n = 0;
        for _ in 0..50 {
            let addr = std::net::SocketAddr::from(([10, 0, 0, 1], 80));
            let mut e = Exchange {
                flow_id: n,
                client: addr,
                server: addr,
                request: None,
                response: None,
                tunnel: false,
                flags: Default::default(),
                anomalies: Vec::new(),
            };
            let _ = w.write(&mut e);
            n += 1;
        }
        assert!(w.flush().is_err());
        let text = got.lock().unwrap().clone();
        let whole_lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
        assert!(whole_lines > 0);
        assert_eq!(w.written, whole_lines);
        assert_eq!(w.written + w.lost, n);
        assert!(w.first_error.as_deref().unwrap().contains("No space"));
    }
}
