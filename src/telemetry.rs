//! Counters. Each worker owns its own plain `u64` counters (no atomics, no
//! sharing on the packet path); the pipeline merges them for the summary.
//! Every drop in the sensor has a counter here, named for its reason.

use serde::Serialize;

/// Declares a struct of `u64` counters with merge and listing helpers, so a new
/// counter is one line and can never be left out of the summary.
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
        pub struct $name { $($(#[$fmeta])* pub $field: u64,)* }

        impl $name {
            pub fn merge(&mut self, other: &$name) {
                $(self.$field = self.$field.saturating_add(other.$field);)*
            }
            /// (name, value) of every counter, in declaration order.
            pub fn entries(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field)),*]
            }
        }
    };
}

counters! {
    /// Drops between pipeline stages.
    pub struct PipelineStats {
        /// Packet batches dropped because a worker queue was full (live capture only).
        batches_dropped_queue_full,
        packets_dropped_queue_full,
        /// Exchanges dropped because the output writer fell behind (live only).
        exchanges_dropped_output_full,
        /// Exchanges the writer could not write (I/O error on the output).
        exchanges_write_errors,
        /// Packets the capture library failed to read (corrupt file records).
        read_errors,
    }
}

/// All counters of a run, grouped by stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub decode: crate::decode::DecodeStats,
    pub flow: crate::flow::FlowStats,
    pub http: crate::http1::HttpStats,
    pub pipeline: PipelineStats,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.decode.merge(&other.decode);
        self.flow.merge(&other.flow);
        self.http.merge(&other.http);
        self.pipeline.merge(&other.pipeline);
    }

    /// `stage.counter value` lines for every non-zero counter.
    pub fn nonzero_lines(&self) -> Vec<String> {
        let groups: [(&str, Vec<(&'static str, u64)>); 4] = [
            ("decode", self.decode.entries()),
            ("flow", self.flow.entries()),
            ("http", self.http.entries()),
            ("pipeline", self.pipeline.entries()),
        ];
        let mut lines = Vec::new();
        for (group, entries) in groups {
            for (name, value) in entries {
                if value != 0 {
                    lines.push(format!("{group}.{name} {value}"));
                }
            }
        }
        lines
    }
}
