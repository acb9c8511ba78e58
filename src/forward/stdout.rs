//! The `stdout` sink: one JSON event per line on standard output (what
//! `apisensor replay --events` prints).

use super::SinkError;
use crate::event::Event;
use std::io::Write;

pub struct StdoutSink;

impl StdoutSink {
    pub fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        for event in batch {
            let line =
                serde_json::to_string(event).map_err(|e| SinkError::Permanent(e.to_string()))?;
            // A closed pipe cannot recover: the batch is dropped and counted.
            writeln!(out, "{line}").map_err(|e| SinkError::Permanent(e.to_string()))?;
        }
        out.flush().map_err(|e| SinkError::Permanent(e.to_string()))
    }
}
