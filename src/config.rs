//! Settings from `sensor.toml`: serde structs that reject unknown keys, defaults
//! that work on a SPAN host, and validation that names the key and the fix.
//! Settings are read once at start and passed down by reference; nothing here
//! is global or mutable afterwards.

use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// toml's message already names the offending key and its line.
    #[error("invalid config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config: `{key}` {problem}; fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}

/// A configuration that works but is risky: `check-config` prints it, `run`
/// logs it, neither refuses to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub key: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}; fix: {}", self.key, self.problem, self.fix)
    }
}

/// `service.metrics_listen`: "" is no endpoint, anything else must be an
/// address:port, so a typo fails at load time instead of at start.
fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`service.metrics_listen` {text:?} is not an address:port; \
             fix: use e.g. \"127.0.0.1:9464\", or \"\" for no endpoint"
        ))
    })
}

/// `detect.suppress.cidr`, parsed with its reason when it is not a network.
fn optional_network<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    let text = String::deserialize(d)?;
    parse_network(&text).map_err(|problem| {
        serde::de::Error::custom(format!(
            "`detect.suppress.cidr` {text:?} {problem}; fix: write a network like \
             \"10.20.0.0/16\" or \"2001:db8::/32\", or a single address"
        ))
    })
}

/// "" is none, "10.1.2.3" one address, "10.1.0.0/16" a network (host bits
/// below the prefix are cleared: "10.1.2.3/16" is 10.1.0.0/16).
pub fn parse_network(text: &str) -> Result<Option<IpNet>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(Some(net.trunc()));
    }
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return Err(format!("is not a network: {addr:?} is not an IP address"));
    };
    let Some(bits) = bits else {
        return Ok(Some(IpNet::from(addr)));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    Err(format!(
        "is not a network: the prefix length {bits:?} is not a number from 0 to {max}"
    ))
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub pipeline: PipelineSettings,
    pub decode: DecodeSettings,
    pub flow: FlowSettings,
    pub http: HttpSettings,
    pub output: OutputSettings,
    pub capture: CaptureSettings,
    pub service: ServiceSettings,
    pub events: EventSettings,
    pub inventory: InventorySettings,
    pub classify: ClassifySettings,
    pub detect: DetectSettings,
    pub memory: MemorySettings,
}

/// One memory budget over everything that grows with traffic. Each stage
/// gets a fixed share of it ([`MemoryPlan`]) and enforces that share with a
/// counter for whatever it had to give up.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// Bytes for flows and their buffers, exchanges in flight, fragments,
    /// events held in memory and the analysis state together.
    pub budget_bytes: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        // The systemd unit's MemoryMax is 2 GiB: 512 MiB of it stay for
        // code, thread stacks, allocator slack and I/O buffers.
        MemorySettings {
            budget_bytes: 1536 << 20,
        }
    }
}

/// The largest IP datagram fragments can rebuild.
const MAX_DATAGRAM_BYTES: usize = 65_536;

/// How `memory.budget_bytes` is shared out. Fixed fractions, so every cap
/// follows from the one number an operator sets, and the stages an
/// attacker reaches first (flows, queues) get a small part: a flood of any
/// kind fills only its own share, never the analysis state's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Flow tables with everything they hold (reassembly buffers, HTTP
    /// state, queued requests with their bodies, decoders): 1/16, shared
    /// equally by the workers.
    pub flows_bytes: usize,
    /// Exchanges on their way from the workers to the writer: 1/32.
    pub exchanges_in_flight_bytes: usize,
    /// IP fragments waiting for the rest of their datagram: 1/32 (a
    /// datagram may grow to 64 KiB, so this bounds how many are rebuilt
    /// at once).
    pub fragments_bytes: usize,
    /// Events held in memory before they reach the spool: 1/64.
    pub events_bytes: usize,
    /// The analysis stage (actors, endpoints, inventory, baselines): the rest.
    pub analysis_bytes: usize,
}

impl MemoryPlan {
    pub fn new(budget_bytes: u64) -> MemoryPlan {
        let budget = usize::try_from(budget_bytes).unwrap_or(usize::MAX);
        let flows_bytes = budget / 16;
        let exchanges_in_flight_bytes = budget / 32;
        let fragments_bytes = budget / 32;
        let events_bytes = budget / 64;
        let analysis_bytes = budget
            .saturating_sub(flows_bytes)
            .saturating_sub(exchanges_in_flight_bytes)
            .saturating_sub(fragments_bytes)
            .saturating_sub(events_bytes);
        MemoryPlan {
            flows_bytes,
            exchanges_in_flight_bytes,
            fragments_bytes,
            events_bytes,
            analysis_bytes,
        }
    }
}

/// Threads and queues.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Flow worker threads; 0 means one per available core.
    pub workers: usize,
    /// Packet batches that may wait in each worker's queue.
    pub queue_batches: usize,
    /// Packets per batch handed from the reader to a worker.
    pub batch_packets: usize,
    /// Exchanges that may wait for the output writer.
    pub output_queue_exchanges: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            workers: 0,
            queue_batches: 256,
            batch_packets: 256,
            output_queue_exchanges: 65_536,
        }
    }
}

/// Link and network layer decoding.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSettings {
    /// IP datagrams being reassembled from fragments at once; more are dropped and counted.
    pub max_fragmented_datagrams: usize,
    /// Seconds of packet time a partial datagram may wait for its other fragments.
    pub fragment_timeout_secs: u64,
    /// Decapsulate cloud traffic-mirroring tunnels (VXLAN, GENEVE, GRE, ERSPAN)
    /// and decode the inner packet; off, they are counted as plain UDP / IP.
    pub decapsulate: bool,
    /// UDP destination ports carrying VXLAN (AWS VPC Traffic Mirroring, Azure vTAP).
    pub vxlan_ports: Vec<u16>,
    /// UDP destination ports carrying GENEVE.
    pub geneve_ports: Vec<u16>,
    /// Tunnels decapsulated inside one another at most; deeper ones are
    /// counted (`decode.tunnel_depth_exceeded`) and dropped. 0 turns
    /// decapsulation off like `decapsulate = false`.
    pub max_tunnel_depth: u8,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            max_fragmented_datagrams: 768,
            fragment_timeout_secs: 30,
            decapsulate: true,
            vxlan_ports: vec![4789],
            geneve_ports: vec![6081],
            max_tunnel_depth: 2,
        }
    }
}

/// Flow table and TCP reassembly.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSettings {
    /// Connections tracked over all workers (each worker holds an equal
    /// share); the least recently active is evicted beyond it.
    pub max_flows: usize,
    /// Seconds of packet time without a packet after which a flow is closed.
    pub idle_timeout_secs: u64,
    /// Seconds of packet time a flow lingers after FIN/RST in both directions
    /// (late retransmissions and ACKs still find it).
    pub closed_timeout_secs: u64,
    /// Out-of-order bytes buffered per direction before the first hole is declared a gap.
    pub max_ooo_bytes_per_direction: usize,
    /// Out-of-order segments buffered per direction before the first hole is declared a gap.
    pub max_ooo_segments_per_direction: usize,
    /// Out-of-order bytes buffered over all flows of all workers (each
    /// worker holds an equal share).
    pub max_ooo_bytes: usize,
    /// Recently delivered bytes kept per direction to check retransmissions
    /// for different data (an evasion indicator); 0 turns the check off.
    pub overlap_check_bytes: usize,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            max_flows: 262_144,
            idle_timeout_secs: 120,
            closed_timeout_secs: 5,
            max_ooo_bytes_per_direction: 256 * 1024,
            max_ooo_segments_per_direction: 256,
            max_ooo_bytes: 32 * 1024 * 1024,
            overlap_check_bytes: 4096,
        }
    }
}

/// HTTP/1.x parsing limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest start line plus header block; longer ones are flagged and skipped.
    pub max_header_bytes: usize,
    /// Header fields kept per message; further ones are counted, not kept.
    pub max_headers: usize,
    /// Body bytes kept per message for later analysis (after content decoding).
    pub max_body_bytes: usize,
    /// Decoded bytes produced per body before decompression stops (gzip bombs).
    pub max_decoded_body_bytes: usize,
    /// Pipelined requests waiting for responses per connection.
    pub max_pending_requests: usize,
    /// Decode gzip/deflate bodies.
    pub decode_content: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_header_bytes: 64 * 1024,
            max_headers: 128,
            max_body_bytes: 64 * 1024,
            max_decoded_body_bytes: 8 * 1024 * 1024,
            max_pending_requests: 64,
            decode_content: true,
        }
    }
}

/// What `replay` prints.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSettings {
    /// Include kept body bytes in JSON output.
    pub include_bodies: bool,
    /// Write exchanges as sent, credentials, cookies, tokens and sensitive
    /// values included; by default they are redacted like event evidence.
    pub raw: bool,
}

/// Live packet sources of `apisensor run`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSettings {
    /// Interfaces captured with libpcap (SPAN/TAP ports, or a cloud mirror
    /// target's NIC: VXLAN/GENEVE/GRE inside is decapsulated per `[decode]`).
    pub interfaces: Vec<InterfaceSettings>,
    /// UDP sockets receiving VXLAN or GENEVE mirror traffic without libpcap.
    pub udp: Vec<UdpSourceSettings>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InterfaceSettings {
    /// Interface name as `apisensor interfaces` lists it.
    pub name: String,
    pub promiscuous: bool,
    /// BPF filter in tcpdump syntax; empty captures everything.
    pub bpf_filter: String,
    /// Bytes kept of each packet; shorter keeps less of bodies (cut bytes become gaps).
    pub snaplen_bytes: u32,
    /// Kernel capture buffer; larger rides out bursts without kernel drops.
    pub buffer_bytes: u32,
}

impl Default for InterfaceSettings {
    fn default() -> Self {
        InterfaceSettings {
            name: String::new(),
            promiscuous: true,
            bpf_filter: String::new(),
            snaplen_bytes: 65_535,
            buffer_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a UDP mirror socket receives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UdpEncapsulation {
    Vxlan,
    Geneve,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UdpSourceSettings {
    /// Address and port to bind, e.g. "0.0.0.0:4789".
    pub listen: std::net::SocketAddr,
    pub encapsulation: UdpEncapsulation,
    /// Socket receive buffer (SO_RCVBUF) in bytes.
    #[serde(default = "default_udp_buffer")]
    pub buffer_bytes: u32,
}

fn default_udp_buffer() -> u32 {
    16 * 1024 * 1024
}

/// Running as a service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// User to switch to once the capture handles are open (empty: stay).
    pub user: String,
    /// Seconds between stats log lines and metric refreshes.
    pub stats_interval_secs: u64,
    /// Prometheus metrics endpoint (e.g. "127.0.0.1:9464"); "" (absent): none.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// Exchanges as JSON lines; empty: standard output. Reopened on SIGHUP.
    pub exchanges_path: String,
    /// Longest wait for workers to drain after SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            user: String::new(),
            stats_interval_secs: 10,
            metrics_listen: None,
            exchanges_path: String::new(),
            shutdown_timeout_secs: 10,
        }
    }
}

/// When the spool makes appended events durable (`fsync`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Leave it to the kernel: survives a process crash, not a power cut.
    Never,
    /// At most `fsync_interval_ms` of events can be lost to a power cut.
    Interval,
    /// Before an appended batch is handed to the sinks, and on every cursor move.
    Always,
}

/// Event forwarding: the spool and the sinks events are shipped to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Name of this sensor in every event; "" = the host name.
    pub sensor_name: String,
    /// Events that may wait in memory between the emitting thread and the
    /// spool writer; when full, the emitting thread appends to the spool
    /// itself (never waits on a sink). These are the events a crash loses.
    pub queue_events: usize,
    /// The same queue bounded by the events' approximate size (evidence
    /// makes events large).
    pub queue_max_bytes: u64,
    /// Directory of the write-ahead spool (segments and per-sink cursors).
    pub spool_dir: String,
    /// Spool size cap; beyond it the oldest segment is evicted and its
    /// undelivered events are counted as lost (and reported in a health event).
    pub spool_max_bytes: u64,
    /// Size at which a spool segment is closed and a new one started.
    pub spool_segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Milliseconds between fsyncs with `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Seconds between `sensor.stats` health events of `apisensor run`.
    pub health_interval_secs: u64,
    /// Longest wait at shutdown for sinks to take what is spooled; what is
    /// left stays in the spool for the next start.
    pub drain_timeout_secs: u64,
    /// Raise a detection for request-smuggling / desync indicators in exchanges.
    pub detect_protocol_anomalies: bool,
    pub sinks: Vec<SinkSettings>,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            sensor_name: String::new(),
            queue_events: 4096,
            queue_max_bytes: 8 << 20,
            spool_dir: "/var/lib/apisensor/spool".into(),
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 16 << 20,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            health_interval_secs: 60,
            drain_timeout_secs: 5,
            detect_protocol_anomalies: true,
            sinks: Vec::new(),
        }
    }
}

/// API discovery (`apisensor inventory`): caps that bound its memory and
/// the thresholds of path templating.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    /// Hosts tracked; requests to further hosts are counted, not kept.
    pub max_hosts: usize,
    /// Path-trie nodes plus per-method profiles over all hosts.
    pub max_path_nodes: usize,
    /// Distinct literal segments kept under one node; further ones share
    /// one overflow child (always a parameter).
    pub max_children_per_node: usize,
    /// Segments per path; deeper paths are counted, not kept.
    pub max_path_segments: usize,
    /// Longer segments are treated as opaque tokens.
    pub max_segment_bytes: usize,
    /// Methods per path (scanners invent methods).
    pub max_methods_per_path: usize,
    /// Query parameters kept per endpoint.
    pub max_params_per_endpoint: usize,
    /// JSON field paths kept per endpoint (request and response each).
    pub max_fields_per_endpoint: usize,
    /// Bytes all profile entries (parameters, fields, types ...) may use.
    pub max_profile_bytes: usize,
    /// Alike literal siblings (same methods succeed, same kind and shape of
    /// answer) needed before they can be values of one parameter; they
    /// must also be spread like values (each used by one or two clients,
    /// the position by several) unless there are `param_many_distinct`.
    pub param_min_distinct: usize,
    /// Alike literal siblings that are values whoever uses them.
    pub param_many_distinct: usize,
    /// OpenAPI 3.x document (JSON or YAML) of the monitored API; calls to
    /// endpoints it lacks (shadow) or marks deprecated raise API9 events.
    /// "" = none.
    pub spec_path: String,
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            max_hosts: 1024,
            max_path_nodes: 50_000,
            max_children_per_node: 256,
            max_path_segments: 16,
            max_segment_bytes: 128,
            max_methods_per_path: 16,
            max_params_per_endpoint: 64,
            max_fields_per_endpoint: 256,
            max_profile_bytes: 32 * 1024 * 1024,
            param_min_distinct: 5,
            param_many_distinct: 16,
            spec_path: String::new(),
        }
    }
}

impl EventSettings {
    /// The configured sensor name, or the host name.
    pub fn sensor_name(&self) -> String {
        if !self.sensor_name.is_empty() {
            return self.sensor_name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "apisensor".into())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    File,
    Fluent,
    Nats,
    Syslog,
    Webhook,
    Stdout,
}

impl SinkType {
    pub const fn as_str(self) -> &'static str {
        match self {
            SinkType::File => "file",
            SinkType::Fluent => "fluent",
            SinkType::Nats => "nats",
            SinkType::Syslog => "syslog",
            SinkType::Webhook => "webhook",
            SinkType::Stdout => "stdout",
        }
    }
}

/// Transport of a `syslog` sink.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    /// RFC 6587 octet-counted frames over TCP (or TLS): no acknowledgement,
    /// so delivery cannot be confirmed.
    Tcp,
    /// RELP (rsyslog `imrelp`): every message acknowledged by the receiver.
    Relp,
}

/// Encoding of events in a `file` or `nats` sink.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    /// One JSON object per line (file) or message (nats).
    Json,
    /// MessagePack maps with named fields, length-framed by MessagePack itself.
    Msgpack,
}

/// Body shape of a `webhook` sink.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookTemplate {
    /// `{"events": [...]}` per batch.
    Generic,
    /// A Slack incoming-webhook message (`text` + `blocks`) per batch.
    Slack,
    /// One Jira-style issue (`{"fields": {...}}`) per event.
    Ticket,
}

/// One `[[events.sinks]]` table. `type` picks the sink; keys of other sink
/// types are rejected by validation, so a misplaced key is never ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    #[serde(rename = "type")]
    pub kind: SinkType,
    /// Name in metrics and of its spool cursor; "" = `<type>-<index>`.
    #[serde(default)]
    pub name: String,
    /// Events sent per request / chunk at most.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Milliseconds a partial batch waits for more events.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// First retry delay; doubled per failure up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Connect / write / acknowledgement timeout of one attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// fluent, syslog: "host:port"; nats: a server URL such as "nats://127.0.0.1:4222".
    pub address: Option<String>,
    /// fluent, syslog: TLS on the TCP connection.
    pub tls: Option<bool>,
    /// fluent, syslog, webhook: extra trusted CA certificates (PEM) besides the system's.
    pub ca_file: Option<String>,
    /// fluent, syslog, webhook: TLS server name when it differs from the address host.
    pub server_name: Option<String>,
    /// fluent: the Forward tag (default "apisensor.event").
    pub tag: Option<String>,
    /// nats: subject published to (default "apisensor.events").
    pub subject: Option<String>,
    /// nats: JetStream stream created over `subject` if missing; "" = must exist.
    pub stream: Option<String>,
    /// file: output path.
    pub path: Option<String>,
    /// file, nats: "json" (default) or "msgpack".
    pub format: Option<SinkFormat>,
    /// file: rotate when the file reaches this size (default 100 MiB).
    pub rotate_bytes: Option<u64>,
    /// file: rotated files kept, `path.1` newest (default 5).
    pub rotate_keep: Option<usize>,
    /// webhook: "http://" or "https://" URL.
    pub url: Option<String>,
    /// webhook: "generic" (default), "slack" or "ticket".
    pub template: Option<WebhookTemplate>,
    /// webhook ticket template: the project key (default "SEC").
    pub project: Option<String>,
    /// syslog: facility number 0-23 (default 10, authpriv).
    pub facility: Option<u8>,
    /// syslog: "tcp" (default; no acknowledgement) or "relp" (acknowledged).
    pub protocol: Option<SyslogProtocol>,
}

fn default_batch_events() -> usize {
    100
}
fn default_batch_timeout_ms() -> u64 {
    200
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    10_000
}
fn default_timeout_ms() -> u64 {
    5_000
}

impl SinkSettings {
    /// A sink of `kind` with every default and no type-specific key.
    pub fn new(kind: SinkType) -> SinkSettings {
        SinkSettings {
            kind,
            name: String::new(),
            batch_events: default_batch_events(),
            batch_timeout_ms: default_batch_timeout_ms(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            timeout_ms: default_timeout_ms(),
            address: None,
            tls: None,
            ca_file: None,
            server_name: None,
            tag: None,
            subject: None,
            stream: None,
            path: None,
            format: None,
            rotate_bytes: None,
            rotate_keep: None,
            url: None,
            template: None,
            project: None,
            facility: None,
            protocol: None,
        }
    }

    /// Keys set in this table, with the sink types they apply to.
    fn typed_keys(&self) -> [(&'static str, bool, &'static [SinkType]); 16] {
        use SinkType::*;
        [
            ("address", self.address.is_some(), &[Fluent, Nats, Syslog]),
            ("tls", self.tls.is_some(), &[Fluent, Syslog]),
            (
                "ca_file",
                self.ca_file.is_some(),
                &[Fluent, Syslog, Webhook],
            ),
            (
                "server_name",
                self.server_name.is_some(),
                &[Fluent, Syslog, Webhook],
            ),
            ("tag", self.tag.is_some(), &[Fluent]),
            ("subject", self.subject.is_some(), &[Nats]),
            ("stream", self.stream.is_some(), &[Nats]),
            ("path", self.path.is_some(), &[File]),
            ("format", self.format.is_some(), &[File, Nats]),
            ("rotate_bytes", self.rotate_bytes.is_some(), &[File]),
            ("rotate_keep", self.rotate_keep.is_some(), &[File]),
            ("url", self.url.is_some(), &[Webhook]),
            ("template", self.template.is_some(), &[Webhook]),
            ("project", self.project.is_some(), &[Webhook]),
            ("facility", self.facility.is_some(), &[Syslog]),
            ("protocol", self.protocol.is_some(), &[Syslog]),
        ]
    }
}

/// Runtime detectors (`replay --events`, `run`): actors, learning, incidents,
/// suppression.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSettings {
    /// Header a proxy in front of the API writes the client address into
    /// (e.g. "x-forwarded-for"); "" = the TCP peer is the client.
    pub client_ip_header: String,
    /// Proxies that append to that header; the client is the entry this
    /// many places from the right.
    pub trusted_proxy_hops: usize,
    /// Exchanges an endpoint needs before its baseline detectors judge it.
    pub learn_exchanges: u64,
    /// Packet-time seconds an endpoint needs as well.
    pub learn_secs: u64,
    /// Clients a population comparison needs.
    pub learn_actors: u64,
    /// Detections of one client this close together form one incident.
    pub incident_window_secs: u64,
    /// Baseline snapshot (MessagePack): loaded at start, written every
    /// `baseline_save_secs` of packet time and at the end; "" = none. A
    /// snapshot that cannot be read is renamed `*.corrupt-<time>` and the
    /// sensor starts learning afresh.
    pub baseline_path: String,
    pub baseline_save_secs: u64,
    /// False-positive feedback: detections matching a rule are counted, not emitted.
    pub suppress: Vec<SuppressRule>,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            client_ip_header: String::new(),
            trusted_proxy_hops: 0,
            learn_exchanges: 20,
            learn_secs: 60,
            learn_actors: 5,
            incident_window_secs: 900,
            baseline_path: String::new(),
            baseline_save_secs: 300,
            suppress: Vec::new(),
        }
    }
}

/// One suppression rule; every non-empty field must match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressRule {
    /// Rule id or prefix, e.g. "detect.scanner." or "detect.authz.bola_enumeration".
    pub rule: String,
    /// Endpoint path prefix, e.g. "/health".
    pub endpoint: String,
    /// A principal or an exact client address.
    pub actor: String,
    /// Client network, e.g. "10.20.0.0/16", or one address; "" (absent): any.
    #[serde(deserialize_with = "optional_network")]
    pub cidr: Option<IpNet>,
    /// Unix seconds (packet time) from which the rule no longer applies; 0 = never expires.
    pub until_unix: u64,
}

/// Sensitive-data classification of exchanges (`classify`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifySettings {
    /// Classify query strings, headers and bodies for sensitive data.
    pub enabled: bool,
    /// Findings below this confidence (0-100) are not reported.
    pub min_confidence: u8,
    /// JSON nesting scanned; deeper values are skipped and the body marked limited.
    pub max_json_depth: usize,
    /// Body bytes scanned per message; the rest is skipped and the body marked limited.
    pub max_body_bytes: usize,
    /// Leaf values (strings, numbers) examined per body; the rest are skipped.
    pub max_values_per_body: usize,
    /// 64 hex characters (32 bytes): key of the hash in redacted values, so
    /// the same secret gets the same tag across sensors and restarts. Empty:
    /// a random key per process, and tags then only correlate within one run.
    pub redaction_key_hex: String,
}

impl Default for ClassifySettings {
    fn default() -> Self {
        ClassifySettings {
            enabled: true,
            min_confidence: 60,
            max_json_depth: 32,
            max_body_bytes: 1 << 20,
            max_values_per_body: 10_000,
            redaction_key_hex: String::new(),
        }
    }
}

impl ClassifySettings {
    /// Draws the random per-process redaction key now when none is
    /// configured, so every classifier built from these settings (the
    /// exchange output's, the analysis stage's) tags a value alike.
    pub fn resolve_redaction_key(&mut self) {
        if self.redaction_key_hex.is_empty() {
            let key = crate::classify::random_key();
            self.redaction_key_hex = key.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
}

/// Flow-table entries the sensor may be configured for over all workers
/// (256 times the default). An idle flow takes several hundred bytes
/// ([`crate::flow::FlowTable::bytes_per_idle_flow`]), so this is over
/// 40 GiB of idle entries before any buffering: beyond it is a typo, not a
/// deployment (and `memory.budget_bytes` bounds them long before anyway).
pub const MAX_FLOWS: u64 = 1 << 26;

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        let mut settings: Settings = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        settings.validate()?;
        settings.fit_memory_plan();
        Ok(settings)
    }

    /// Lowers the caps that must fit a share of `memory.budget_bytes` to
    /// it: a small budget shrinks the in-memory event queue with it.
    pub fn fit_memory_plan(&mut self) {
        let plan = self.memory_plan();
        self.events.queue_max_bytes = self.events.queue_max_bytes.min(plan.events_bytes as u64);
        // Each datagram in reassembly may grow to IP's 64 KiB.
        let datagrams = (plan.fragments_bytes / MAX_DATAGRAM_BYTES).max(1);
        self.decode.max_fragmented_datagrams = self.decode.max_fragmented_datagrams.min(datagrams);
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn at_least(
            key: &'static str,
            value: u64,
            min: u64,
            fix: &'static str,
        ) -> Result<(), ConfigError> {
            if value < min {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("is {value}, must be at least {min}"),
                    fix,
                });
            }
            Ok(())
        }
        fn at_most(
            key: &'static str,
            value: u64,
            max: u64,
            fix: &'static str,
        ) -> Result<(), ConfigError> {
            if value > max {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("is {value}, must be at most {max}"),
                    fix,
                });
            }
            Ok(())
        }
        let p = &self.pipeline;
        at_most(
            "pipeline.workers",
            p.workers as u64,
            256,
            "use 0 (one per core) or a number of threads up to 256",
        )?;
        at_least(
            "pipeline.queue_batches",
            p.queue_batches as u64,
            1,
            "set a queue depth such as 64",
        )?;
        at_least(
            "pipeline.batch_packets",
            p.batch_packets as u64,
            1,
            "set a batch size such as 256",
        )?;
        at_most(
            "pipeline.batch_packets",
            p.batch_packets as u64,
            65_536,
            "set a batch size such as 256",
        )?;
        at_least(
            "pipeline.output_queue_exchanges",
            p.output_queue_exchanges as u64,
            1,
            "set a queue depth such as 65536",
        )?;
        let f = &self.flow;
        at_least(
            "flow.max_flows",
            f.max_flows as u64,
            1,
            "set the flow-table size, e.g. 262144",
        )?;
        at_most(
            "flow.max_flows",
            f.max_flows as u64,
            MAX_FLOWS,
            "use at most 67108864 flows (memory.budget_bytes bounds them anyway); 262144 is the default",
        )?;
        at_least(
            "flow.idle_timeout_secs",
            f.idle_timeout_secs,
            1,
            "set seconds of packet time, e.g. 120",
        )?;
        at_least(
            "flow.max_ooo_segments_per_direction",
            f.max_ooo_segments_per_direction as u64,
            1,
            "set e.g. 256",
        )?;
        at_least(
            "flow.max_ooo_bytes_per_direction",
            f.max_ooo_bytes_per_direction as u64,
            1,
            "set e.g. 262144",
        )?;
        at_least(
            "flow.max_ooo_bytes",
            f.max_ooo_bytes as u64,
            f.max_ooo_bytes_per_direction as u64,
            "make it at least flow.max_ooo_bytes_per_direction",
        )?;
        at_least(
            "memory.budget_bytes",
            self.memory.budget_bytes,
            64 << 20,
            "give the sensor at least 64 MiB (67108864); 1610612736 (1.5 GiB) is the default",
        )?;
        at_most(
            "flow.overlap_check_bytes",
            f.overlap_check_bytes as u64,
            1 << 20,
            "use a window of a few KiB, or 0 to turn the check off",
        )?;
        let h = &self.http;
        at_least(
            "http.max_header_bytes",
            h.max_header_bytes as u64,
            256,
            "use at least 256 bytes; 65536 is typical",
        )?;
        at_most(
            "http.max_header_bytes",
            h.max_header_bytes as u64,
            16 << 20,
            "use at most 16 MiB; 65536 is typical",
        )?;
        at_least("http.max_headers", h.max_headers as u64, 1, "set e.g. 128")?;
        at_most(
            "http.max_headers",
            h.max_headers as u64,
            4096,
            "set e.g. 128",
        )?;
        at_most(
            "http.max_body_bytes",
            h.max_body_bytes as u64,
            64 << 20,
            "keep at most 64 MiB per body",
        )?;
        at_most(
            "http.max_decoded_body_bytes",
            h.max_decoded_body_bytes as u64,
            1 << 30,
            "use at most 1 GiB",
        )?;
        at_least(
            "http.max_pending_requests",
            h.max_pending_requests as u64,
            1,
            "set e.g. 64",
        )?;
        for iface in &self.capture.interfaces {
            if iface.name.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "capture.interfaces.name",
                    problem: "is empty".into(),
                    fix: "name the interface to capture, as `apisensor interfaces` lists it",
                });
            }
            at_least(
                "capture.interfaces.snaplen_bytes",
                u64::from(iface.snaplen_bytes),
                128,
                "use 65535 to keep whole packets",
            )?;
        }
        let sv = &self.service;
        at_least(
            "service.stats_interval_secs",
            sv.stats_interval_secs,
            1,
            "set e.g. 10",
        )?;
        at_least(
            "service.shutdown_timeout_secs",
            sv.shutdown_timeout_secs,
            1,
            "set e.g. 10",
        )?;
        let d = &self.decode;
        at_least(
            "decode.fragment_timeout_secs",
            d.fragment_timeout_secs,
            1,
            "set e.g. 30",
        )?;
        at_most(
            "decode.max_tunnel_depth",
            u64::from(d.max_tunnel_depth),
            4,
            "use 2 (a mirror tunnel plus one nested tunnel), at most 4, or 0 for no decapsulation",
        )?;
        for (key, ports) in [
            ("decode.vxlan_ports", &d.vxlan_ports),
            ("decode.geneve_ports", &d.geneve_ports),
        ] {
            at_most(
                key,
                ports.len() as u64,
                16,
                "list at most 16 ports (VXLAN is 4789, GENEVE 6081)",
            )?;
            if ports.contains(&0) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "contains port 0".into(),
                    fix: "remove 0; list real UDP destination ports such as 4789",
                });
            }
        }
        if let Some(port) = d.vxlan_ports.iter().find(|p| d.geneve_ports.contains(p)) {
            return Err(ConfigError::Invalid {
                key: "decode.geneve_ports",
                problem: format!("shares port {port} with decode.vxlan_ports"),
                fix: "give each UDP port to one tunnel type only",
            });
        }
        let e = &self.events;
        at_least(
            "events.queue_events",
            e.queue_events as u64,
            1,
            "set e.g. 4096",
        )?;
        at_least(
            "events.queue_max_bytes",
            e.queue_max_bytes,
            64 * 1024,
            "set e.g. 8388608 (8 MiB)",
        )?;
        at_least(
            "events.spool_segment_bytes",
            e.spool_segment_bytes,
            4096,
            "set e.g. 16777216 (16 MiB)",
        )?;
        at_least(
            "events.spool_max_bytes",
            e.spool_max_bytes,
            e.spool_segment_bytes.saturating_mul(2),
            "make it at least twice events.spool_segment_bytes",
        )?;
        at_least(
            "events.health_interval_secs",
            e.health_interval_secs,
            1,
            "set e.g. 60",
        )?;
        at_least(
            "events.fsync_interval_ms",
            e.fsync_interval_ms,
            1,
            "set e.g. 1000",
        )?;
        if e.spool_dir.is_empty() {
            return Err(ConfigError::Invalid {
                key: "events.spool_dir",
                problem: "is empty".into(),
                fix: "name a writable directory, e.g. \"/var/lib/apisensor/spool\"",
            });
        }
        let mut names = std::collections::HashSet::new();
        for (index, sink) in e.sinks.iter().enumerate() {
            let invalid = |key: &'static str, problem: String, fix: &'static str| {
                Err(ConfigError::Invalid {
                    key,
                    problem: format!("(sink {index}, type {}) {problem}", sink.kind.as_str()),
                    fix,
                })
            };
            for (key, set, types) in sink.typed_keys() {
                if set && !types.contains(&sink.kind) {
                    let allowed: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                    return invalid(
                        "events.sinks",
                        format!(
                            "has `{key}`, which only applies to type {}",
                            allowed.join(", ")
                        ),
                        "remove the key or change `type`",
                    );
                }
            }
            // The name is a file name in the spool directory (its cursor)
            // and a metric label: nothing that could leave the directory.
            if sink.name.len() > 64
                || sink.name == "."
                || sink.name == ".."
                || sink
                    .name
                    .chars()
                    .any(|c| c == '/' || c == '\\' || c.is_control())
            {
                return invalid(
                    "events.sinks.name",
                    format!(
                        "{:?} is not usable as a file name (path separators, control characters, \".\" and \"..\" and names over 64 bytes are refused)",
                        sink.name
                    ),
                    "use letters, digits, '-', '_' and '.', e.g. name = \"siem-primary\"",
                );
            }
            if !names.insert(super::forward::sink_name(sink, index)) {
                return invalid(
                    "events.sinks.name",
                    "repeats another sink's name".into(),
                    "give every sink a unique `name` (it names its spool cursor)",
                );
            }
            if sink.batch_events == 0 || sink.batch_events > 10_000 {
                return invalid(
                    "events.sinks.batch_events",
                    format!("is {}", sink.batch_events),
                    "use 1 to 10000, e.g. 100",
                );
            }
            if sink.timeout_ms == 0 || sink.retry_initial_ms == 0 {
                return invalid(
                    "events.sinks.timeout_ms",
                    "or retry_initial_ms is 0".into(),
                    "use milliseconds above 0, e.g. timeout_ms = 5000, retry_initial_ms = 200",
                );
            }
            if sink.retry_max_ms < sink.retry_initial_ms {
                return invalid(
                    "events.sinks.retry_max_ms",
                    "is below retry_initial_ms".into(),
                    "make retry_max_ms at least retry_initial_ms",
                );
            }
            let needs = match sink.kind {
                SinkType::Fluent | SinkType::Nats | SinkType::Syslog => {
                    Some(("events.sinks.address", sink.address.is_some()))
                }
                SinkType::File => Some(("events.sinks.path", sink.path.is_some())),
                SinkType::Webhook => Some(("events.sinks.url", sink.url.is_some())),
                SinkType::Stdout => None,
            };
            if let Some((key, false)) = needs {
                return invalid(
                    key,
                    "is missing".into(),
                    "set it: address = \"host:port\" (nats: \"nats://host:4222\"), path = \"/var/log/apisensor/events.jsonl\", url = \"https://...\"",
                );
            }
            let tls_settings = sink.ca_file.is_some() || sink.server_name.is_some();
            match sink.kind {
                SinkType::Fluent | SinkType::Syslog if tls_settings && sink.tls != Some(true) => {
                    return invalid(
                        "events.sinks.tls",
                        "is not true although ca_file or server_name is set, so events would go in cleartext".into(),
                        "set tls = true, or remove ca_file / server_name",
                    );
                }
                SinkType::Webhook
                    if tls_settings
                        && !sink
                            .url
                            .as_deref()
                            .is_some_and(|u| u.starts_with("https://")) =>
                {
                    return invalid(
                        "events.sinks.url",
                        "is not https:// although ca_file or server_name is set, so events would go in cleartext".into(),
                        "use an https:// URL, or remove ca_file / server_name",
                    );
                }
                _ => {}
            }
            if let (SinkType::Fluent | SinkType::Syslog, Some(address)) = (sink.kind, &sink.address)
            {
                let port = address
                    .rsplit_once(':')
                    .map(|(host, port)| (host, port.parse::<u16>()));
                if !matches!(port, Some((host, Ok(p))) if p > 0 && !host.is_empty()) {
                    return invalid(
                        "events.sinks.address",
                        format!("{address:?} is not host:port"),
                        "write the collector as host:port, e.g. \"logs.example.com:24224\" or \"[2001:db8::1]:6514\"",
                    );
                }
            }
            if sink.protocol == Some(SyslogProtocol::Relp) && sink.tls == Some(true) {
                return invalid(
                    "events.sinks.tls",
                    "is true with protocol = \"relp\"; this sensor speaks RELP over plain TCP only"
                        .into(),
                    "remove tls (and ca_file / server_name) and carry RELP through a TLS tunnel \
                     (e.g. stunnel) if the path needs encryption, or use protocol = \"tcp\" with \
                     tls = true (encrypted, but unacknowledged)",
                );
            }
            if sink.facility.is_some_and(|f| f > 23) {
                return invalid(
                    "events.sinks.facility",
                    "is above 23".into(),
                    "use a syslog facility 0-23, e.g. 10 (authpriv)",
                );
            }
            if let Some(url) = &sink.url {
                // Checked before anything echoes the URL: it holds a password.
                let authority = url.split_once("://").map_or("", |(_, rest)| {
                    rest.split(['/', '?', '#']).next().unwrap_or("")
                });
                if authority.contains('@') {
                    return invalid(
                        "events.sinks.url",
                        "has user information (user:password@) in it: it is not sent as authentication, and would be written in logs and errors".into(),
                        "remove `user:password@`: the webhook sink sends no credentials, so use a URL the receiver authorises by itself (e.g. a Slack incoming-webhook URL)",
                    );
                }
                // What the webhook sink parses at start, so a URL it would
                // refuse is refused here.
                if let Err(problem) = super::forward::webhook::parse_url(url) {
                    return invalid(
                        "events.sinks.url",
                        problem,
                        "use e.g. \"https://hooks.example.com/apisensor\"",
                    );
                }
            }
        }
        let inv = &self.inventory;
        at_least(
            "inventory.max_hosts",
            inv.max_hosts as u64,
            1,
            "set e.g. 1024",
        )?;
        at_least(
            "inventory.max_path_nodes",
            inv.max_path_nodes as u64,
            64,
            "set e.g. 50000 (about 64 MiB at most with the other defaults)",
        )?;
        at_least(
            "inventory.max_children_per_node",
            inv.max_children_per_node as u64,
            inv.param_min_distinct as u64,
            "make it at least inventory.param_min_distinct, e.g. 256",
        )?;
        at_least(
            "inventory.max_path_segments",
            inv.max_path_segments as u64,
            1,
            "set e.g. 16",
        )?;
        at_most(
            "inventory.max_path_segments",
            inv.max_path_segments as u64,
            64,
            "set e.g. 16",
        )?;
        at_least(
            "inventory.max_segment_bytes",
            inv.max_segment_bytes as u64,
            16,
            "set e.g. 128",
        )?;
        at_least(
            "inventory.max_methods_per_path",
            inv.max_methods_per_path as u64,
            1,
            "set e.g. 16",
        )?;
        at_least(
            "inventory.param_min_distinct",
            inv.param_min_distinct as u64,
            2,
            "set e.g. 5: fewer alike siblings than this stay literal routes",
        )?;
        at_least(
            "inventory.param_many_distinct",
            inv.param_many_distinct as u64,
            inv.param_min_distinct as u64,
            "make it at least inventory.param_min_distinct, e.g. 16",
        )?;
        if !inv.spec_path.is_empty() && !Path::new(&inv.spec_path).is_file() {
            return Err(ConfigError::Invalid {
                key: "inventory.spec_path",
                problem: format!("{:?} is not a readable file", inv.spec_path),
                fix: "point it at the API's OpenAPI 3.x document (JSON or YAML), or set \"\"",
            });
        }
        let d = &self.detect;
        at_least(
            "detect.learn_exchanges",
            d.learn_exchanges,
            1,
            "set e.g. 20 (exchanges an endpoint needs before it is judged)",
        )?;
        at_least(
            "detect.learn_actors",
            d.learn_actors,
            2,
            "set e.g. 5 (clients a population comparison needs)",
        )?;
        at_most(
            "detect.trusted_proxy_hops",
            d.trusted_proxy_hops as u64,
            16,
            "count the proxies in front of the API, e.g. 1",
        )?;
        if d.trusted_proxy_hops > 0 && d.client_ip_header.is_empty() {
            return Err(ConfigError::Invalid {
                key: "detect.trusted_proxy_hops",
                problem: "is set but detect.client_ip_header is empty".into(),
                fix: "set client_ip_header = \"x-forwarded-for\" (or your proxy's header), or trusted_proxy_hops = 0",
            });
        }
        at_least(
            "detect.baseline_save_secs",
            d.baseline_save_secs,
            10,
            "set e.g. 300 (seconds of packet time between snapshots)",
        )?;
        for rule in &d.suppress {
            if rule.rule.is_empty()
                && rule.endpoint.is_empty()
                && rule.actor.is_empty()
                && rule.cidr.is_none()
            {
                return Err(ConfigError::Invalid {
                    key: "detect.suppress",
                    problem: "has a rule with no rule, endpoint, actor or cidr, which would silence everything".into(),
                    fix: "give each [[detect.suppress]] at least one of rule, endpoint, actor, cidr",
                });
            }
        }
        let c = &self.classify;
        at_most(
            "classify.min_confidence",
            u64::from(c.min_confidence),
            100,
            "use a confidence from 0 to 100; 60 is the default",
        )?;
        at_least(
            "classify.max_json_depth",
            c.max_json_depth as u64,
            1,
            "set a nesting depth such as 32",
        )?;
        at_most(
            "classify.max_json_depth",
            c.max_json_depth as u64,
            128,
            "use at most 128 (the JSON parser's own limit); 32 is typical",
        )?;
        at_least(
            "classify.max_body_bytes",
            c.max_body_bytes as u64,
            1,
            "set bytes scanned per body, e.g. 1048576",
        )?;
        at_least(
            "classify.max_values_per_body",
            c.max_values_per_body as u64,
            1,
            "set values examined per body, e.g. 10000",
        )?;
        let hex = &c.redaction_key_hex;
        if !hex.is_empty() && (hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(ConfigError::Invalid {
                key: "classify.redaction_key_hex",
                problem: format!("has {} characters, not 64 hex digits", hex.len()),
                fix: "use 64 hex characters (e.g. `openssl rand -hex 32`), or \"\" for a random key per run",
            });
        }
        crate::preflight::check_files(self)
    }

    /// Worker threads to start: the configured number, or one per core.
    /// How `memory.budget_bytes` is shared out.
    pub fn memory_plan(&self) -> MemoryPlan {
        MemoryPlan::new(self.memory.budget_bytes)
    }

    pub fn worker_count(&self) -> usize {
        if self.pipeline.workers > 0 {
            self.pipeline.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_sensor_toml_is_valid_and_matches_defaults() {
        let text = include_str!("../sensor.toml");
        let s = Settings::from_toml(text, "sensor.toml").unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_toml("[flow]\nidle_timeout_sec = 3\n", "t").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("idle_timeout_sec"), "{msg}");
    }

    #[test]
    fn out_of_range_value_names_key_and_fix() {
        let err = Settings::from_toml("[http]\nmax_headers = 0\n", "t").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("http.max_headers") && msg.contains("fix"),
            "{msg}"
        );
    }

    #[test]
    fn tunnel_settings_are_validated() {
        let err = Settings::from_toml("[decode]\nmax_tunnel_depth = 5\n", "t").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("decode.max_tunnel_depth"), "{msg}");
        let err = Settings::from_toml("[decode]\ngeneve_ports = [4789]\n", "t").unwrap_err();
        assert!(err.to_string().contains("decode.geneve_ports"), "{err}");
        let err = Settings::from_toml("[decode]\nvxlan_ports = [0]\n", "t").unwrap_err();
        assert!(err.to_string().contains("decode.vxlan_ports"), "{err}");
        let ok = Settings::from_toml(
            "[decode]\ndecapsulate = false\nmax_tunnel_depth = 0\nvxlan_ports = [4789, 8472]\n",
            "t",
        )
        .unwrap();
        assert_eq!(ok.decode.vxlan_ports, vec![4789, 8472]);
    }

    #[test]
    fn inventory_settings_are_validated() {
        let err = Settings::from_toml("[inventory]\nparam_many_distinct = 1\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inventory.param_many_distinct") && err.contains("fix"),
            "{err}"
        );
        let err = Settings::from_toml("[inventory]\nmax_children_per_node = 3\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("inventory.max_children_per_node"), "{err}");
    }

    #[test]
    fn tls_settings_without_tls_are_refused() {
        let err = Settings::from_toml(
            "[[events.sinks]]\ntype = \"syslog\"\naddress = \"h:6514\"\nca_file = \"/ca.pem\"\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("events.sinks.tls"), "{err}");
    }

    #[test]
    fn networks_and_addresses_are_parsed_at_load() {
        let net = |s: &str| parse_network(s).unwrap().unwrap().to_string();
        assert_eq!(net("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(net("10.1.2.3/16"), "10.1.0.0/16");
        assert_eq!(net("2001:db8::1/32"), "2001:db8::/32");
        assert_eq!(parse_network("").unwrap(), None);
        for bad in ["10.0.0.0/33", "2001:db8::/129", "10.0.0.0/-1", "10.0.0.0/x"] {
            let problem = parse_network(bad).unwrap_err();
            assert!(problem.contains("prefix length"), "{bad}: {problem}");
        }
        assert!(parse_network("example.com/8")
            .unwrap_err()
            .contains("not an IP address"));
        let err = Settings::from_toml("[[detect.suppress]]\ncidr = \"10.0.0.0/40\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("detect.suppress.cidr") && err.contains("fix"),
            "{err}"
        );
        let s = Settings::from_toml("[service]\nmetrics_listen = \"[::1]:9464\"\n", "t").unwrap();
        assert_eq!(
            s.service.metrics_listen,
            Some("[::1]:9464".parse().unwrap())
        );
        let err = Settings::from_toml("[service]\nmetrics_listen = \"9464\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("service.metrics_listen") && err.contains("fix"),
            "{err}"
        );
    }

    #[test]
    fn sink_names_and_webhook_urls_are_checked() {
        let sink = |extra: &str| {
            Settings::from_toml(&format!("[[events.sinks]]\n{extra}\n"), "t")
                .map_err(|e| e.to_string())
        };
        for name in ["a/b", "..", "a\\\\b", "tab\\there"] {
            let err = sink(&format!("type = \"stdout\"\nname = \"{name}\"")).unwrap_err();
            assert!(err.contains("events.sinks.name"), "{name}: {err}");
        }
        sink("type = \"stdout\"\nname = \"siem-primary.v2\"").unwrap();
        let err = sink("type = \"webhook\"\nurl = \"https://u:hunter2@h.example/x\"").unwrap_err();
        assert!(
            err.contains("events.sinks.url") && !err.contains("hunter2"),
            "{err}"
        );
        // An @ in the path or query is not user information.
        sink("type = \"webhook\"\nurl = \"https://h.example/x?to=a@b\"").unwrap();
        let err = sink("type = \"webhook\"\nurl = \"http://h.example/x\"\nserver_name = \"h\"")
            .unwrap_err();
        assert!(err.contains("events.sinks.url"), "{err}");
        let err = sink("type = \"fluent\"\naddress = \"h.example:0\"").unwrap_err();
        assert!(err.contains("events.sinks.address"), "{err}");
    }

    #[test]
    fn flow_table_size_has_an_upper_bound() {
        let at = |n: u64| Settings::from_toml(&format!("[flow]\nmax_flows = {n}\n"), "t");
        at(MAX_FLOWS).unwrap();
        let err = at(MAX_FLOWS + 1).unwrap_err().to_string();
        assert!(err.contains("flow.max_flows"), "{err}");
        let per_flow = crate::flow::FlowTable::bytes_per_idle_flow() as u64;
        assert!(
            (100..=1024).contains(&per_flow),
            "the bound's doc assumes several hundred bytes per idle flow, now {per_flow}"
        );
    }

    #[test]
    fn classify_settings_are_validated() {
        let err = Settings::from_toml("[classify]\nmin_confidence = 101\n", "t").unwrap_err();
        assert!(err.to_string().contains("classify.min_confidence"), "{err}");
        let err = Settings::from_toml("[classify]\nmax_json_depth = 0\n", "t").unwrap_err();
        assert!(err.to_string().contains("classify.max_json_depth"), "{err}");
        let err =
            Settings::from_toml("[classify]\nredaction_key_hex = \"abc\"\n", "t").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("classify.redaction_key_hex") && msg.contains("fix"),
            "{msg}"
        );
        let key = "ab".repeat(32);
        let ok = Settings::from_toml(&format!("[classify]\nredaction_key_hex = \"{key}\"\n"), "t")
            .unwrap();
        assert_eq!(ok.classify.redaction_key_hex, key);
    }
}
