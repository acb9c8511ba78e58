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
        /// Exchanges handed to the writer without their kept bodies, and
        /// those bodies' bytes, because the exchanges in flight held their
        /// share of `memory.budget_bytes` (live only; replay waits instead).
        exchange_bodies_dropped_memory,
        body_bytes_dropped_memory,
        /// Packets the capture library failed to read (corrupt file records).
        read_errors,
    }
}

counters! {
    /// What the capture sources report: libpcap's own statistics (absolute
    /// values, as of the last read) and UDP socket receive outcomes.
    pub struct CaptureStats {
        /// Packets the kernel passed to the capture (pcap_stats ps_recv).
        pcap_received,
        /// Packets dropped because the capture buffer was full (ps_drop).
        pcap_dropped_kernel,
        /// Packets dropped by the interface or driver (ps_ifdrop).
        pcap_dropped_interface,
        /// Datagrams read from UDP mirror sockets.
        udp_datagrams,
        /// Receive errors on UDP mirror sockets.
        udp_receive_errors,
        /// Datagrams the kernel dropped on UDP mirror sockets because their
        /// receive buffer was full: the sockets' own drop count, the figure
        /// /proc/net/udp shows.
        udp_dropped_kernel,
    }
}

counters! {
    /// Current values (not totals), summed over workers.
    pub struct Gauges {
        flows_open,
        /// Bytes the flow tables hold (see `memory.budget_bytes`).
        flow_memory_bytes,
        /// Bytes of exchanges between the workers and the writer.
        exchanges_in_flight_bytes,
        /// Out-of-order bytes buffered by reassembly.
        ooo_bytes_buffered,
        /// Packet batches waiting in worker queues.
        queue_batches_waiting,
        /// Exchange batches waiting for the writer.
        output_batches_waiting,
    }
}

/// All counters of a run, grouped by stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub capture: CaptureStats,
    pub decode: crate::decode::DecodeStats,
    pub flow: crate::flow::FlowStats,
    pub http: crate::http1::HttpStats,
    /// What the sensitive-data classifier examined and had to skip.
    pub classify: crate::classify::ClassifyStats,
    /// What the detectors did and what their bounds turned away.
    pub detect: crate::detect::DetectStats,
    pub pipeline: PipelineStats,
    pub gauges: Gauges,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.capture.merge(&other.capture);
        self.decode.merge(&other.decode);
        self.flow.merge(&other.flow);
        self.http.merge(&other.http);
        self.classify.merge(&other.classify);
        self.detect.merge(&other.detect);
        self.pipeline.merge(&other.pipeline);
        self.gauges.merge(&other.gauges);
    }

    /// (group, counter, value) for every counter; gauges are the group "gauges".
    pub fn all_entries(&self) -> Vec<(&'static str, &'static str, u64)> {
        let groups: [(&'static str, Vec<(&'static str, u64)>); 8] = [
            ("capture", self.capture.entries()),
            ("decode", self.decode.entries()),
            ("flow", self.flow.entries()),
            ("http", self.http.entries()),
            ("classify", self.classify.entries()),
            ("detect", self.detect.entries()),
            ("pipeline", self.pipeline.entries()),
            ("gauges", self.gauges.entries()),
        ];
        groups
            .into_iter()
            .flat_map(|(g, entries)| entries.into_iter().map(move |(n, v)| (g, n, v)))
            .collect()
    }

    /// `stage.counter value` lines for every non-zero counter.
    pub fn nonzero_lines(&self) -> Vec<String> {
        // Gauges are current values, not totals: the summary leaves them out.
        self.all_entries()
            .into_iter()
            .filter(|&(group, _, value)| group != "gauges" && value != 0)
            .map(|(group, name, value)| format!("{group}.{name} {value}"))
            .collect()
    }
}

/// Where threads leave a copy of their counters for the stats log and the
/// metrics endpoint: one slot per thread, written about once a second, so
/// the packet path never shares a counter or takes a contended lock.
pub struct StatsHub {
    slots: Vec<std::sync::Mutex<Stats>>,
}

impl StatsHub {
    pub fn new(slots: usize) -> std::sync::Arc<StatsHub> {
        std::sync::Arc::new(StatsHub {
            slots: (0..slots)
                .map(|_| std::sync::Mutex::new(Stats::default()))
                .collect(),
        })
    }

    /// Replaces slot `slot`'s copy.
    pub fn publish(&self, slot: usize, stats: &Stats) {
        if let Some(s) = self.slots.get(slot) {
            // A poisoned slot only means a thread panicked while copying:
            // the copy is still the best we have.
            let mut guard = s.lock().unwrap_or_else(|e| e.into_inner());
            guard.clone_from(stats);
        }
    }

    /// All slots merged.
    pub fn snapshot(&self) -> Stats {
        let mut total = Stats::default();
        for s in &self.slots {
            total.merge(&s.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }
}

/// Peak resident memory of this process image (`VmHWM` of
/// `/proc/self/status`, KiB); `None` where there is no procfs. Unlike
/// `getrusage`'s `ru_maxrss` it starts at `exec`, so it never includes the
/// parent's memory a spawned child briefly shared.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// The value of a `Name:   123 kB` line of a `/proc/<pid>/status` text.
pub fn proc_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Prometheus text exposition of a snapshot: counters as
/// `apisensor_<stage>_<name>_total`, gauges as `apisensor_<name>`.
pub fn prometheus_text(stats: &Stats) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(8192);
    for (group, name, value) in stats.all_entries() {
        let (metric, kind) = if group == "gauges" {
            (format!("apisensor_{name}"), "gauge")
        } else {
            (format!("apisensor_{group}_{name}_total"), "counter")
        };
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        let _ = writeln!(out, "{metric} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_peak_rss_from_proc_status() {
        let text = "Name:\tx\nVmPeak:\t  9999 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(proc_status_kib(text, "VmHWM:"), Some(1234));
        assert_eq!(proc_status_kib(text, "VmSwap:"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_rss_kib().is_some_and(|k| k > 0));
        }
    }

    #[test]
    fn hub_merges_slots_and_renders_prometheus() {
        let hub = StatsHub::new(2);
        let mut a = Stats::default();
        a.decode.packets = 3;
        a.gauges.flows_open = 2;
        let mut b = Stats::default();
        b.decode.packets = 4;
        b.gauges.flows_open = 1;
        hub.publish(0, &a);
        hub.publish(1, &b);
        hub.publish(7, &b); // out of range: ignored
        let snap = hub.snapshot();
        assert_eq!(snap.decode.packets, 7);
        let text = prometheus_text(&snap);
        assert!(text.contains(
            "# TYPE apisensor_decode_packets_total counter\napisensor_decode_packets_total 7\n"
        ));
        assert!(text.contains("apisensor_flows_open 3\n"));
    }
}
