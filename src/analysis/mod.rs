//! The stage after the ordered merge: every exchange, in the one order that
//! does not depend on the worker count, feeds the API inventory and the
//! detectors, and their findings go to the event forwarder. Running here
//! rather than on the workers is what makes replayed events and the
//! inventory identical run after run and whatever `--workers` says; both
//! keep state across flows and need the whole stream anyway.
//!
//! Each exchange is read once into [`facts::Facts`]; the inventory gives
//! it its endpoint (the learned template) and object ids, and the
//! detectors, baselines and events all work from those same facts.

pub mod facts;

use crate::classify::{BodyShape, Classifier, ClassifyStats, DataType, Finding, Location};
use crate::config::{Settings, SuppressRule};
use crate::detect::incident::{self, Incidents};
use crate::detect::protocol;
use crate::detect::{DetectLimits, DetectStats, Detectors};
use crate::event::{Event, Evidence};
use crate::exchange::{Exchange, Text};
use crate::forward::EventHandle;
use crate::identity::{IdentityBook, SecretHasher};
use crate::inventory::{EndpointKey, ExchangeFacts, Inventory, Located, SensitiveHit};
use facts::{ClientAddress, Facts, FactsContext, ResponseData};
use std::path::{Path, PathBuf};

/// Counters of the analysis stage.
#[derive(Debug, Clone, Default)]
pub struct AnalysisStats {
    pub classify: ClassifyStats,
    pub detect: DetectStats,
}

pub struct Analysis {
    events: Option<EventHandle>,
    sensor: String,
    detect_protocol: bool,
    detectors: Option<Detectors>,
    inventory: Option<Inventory>,
    classifier: Option<Classifier>,
    /// Keys the hashes of credentials, principals and passwords.
    hasher: SecretHasher,
    identities: IdentityBook,
    client_address: ClientAddress,
    /// What the classifier examined and skipped, over every exchange.
    classify_stats: ClassifyStats,
    baseline_path: Option<PathBuf>,
    baseline_save_ms: u64,
    next_save_ms: Option<u64>,
    /// Unreadable snapshots set aside at start.
    baseline_corrupt: u64,
    suppress: Vec<SuppressRule>,
    incidents: Incidents,
    suppressed: u64,
    found: Vec<Event>,
}

impl Analysis {
    /// Detectors run when there is somewhere to send events; the inventory
    /// is kept when `inventory` asks for it (or posture findings need it).
    pub fn new(
        settings: &Settings,
        events: Option<EventHandle>,
        inventory: bool,
    ) -> anyhow::Result<Self> {
        let detect = events.is_some();
        Self::build(settings, events, inventory, detect)
    }

    /// Detectors that learn and emit nothing (`replay --baseline-from`).
    pub fn learn_only(settings: &Settings) -> anyhow::Result<Self> {
        Self::build(settings, None, false, true)
    }

    fn build(
        settings: &Settings,
        events: Option<EventHandle>,
        inventory: bool,
        detect: bool,
    ) -> anyhow::Result<Self> {
        let sensor = events
            .as_ref()
            .map(|e| e.sensor().to_owned())
            .unwrap_or_else(|| settings.events.sensor_name());
        let d = &settings.detect;
        let mut detectors = detect.then(|| Detectors::new(detect_limits(settings, &sensor)));
        let incidents = Incidents::new(&sensor, d.incident_window_secs);
        let mut baseline_corrupt = 0;
        if let (Some(detectors), false) = (detectors.as_mut(), d.baseline_path.is_empty()) {
            baseline_corrupt = load_baseline(detectors, Path::new(&d.baseline_path));
        }
        // Detectors read endpoints from the inventory's templates.
        let spec_path = &settings.inventory.spec_path;
        if let (Some(detectors), false) = (detectors.as_mut(), spec_path.is_empty()) {
            let spec = crate::inventory::drift::Spec::load(std::path::Path::new(spec_path))
                .map_err(|e| anyhow::anyhow!("inventory.spec_path: {e}"))?;
            detectors.set_spec(spec);
        }
        let inventory =
            (inventory || detectors.is_some()).then(|| Inventory::new(&settings.inventory));
        let classifier = ((inventory.is_some() || detectors.is_some())
            && settings.classify.enabled)
            .then(|| Classifier::new(&settings.classify));
        Ok(Analysis {
            baseline_path: (!d.baseline_path.is_empty()).then(|| PathBuf::from(&d.baseline_path)),
            baseline_save_ms: d.baseline_save_secs.saturating_mul(1000),
            next_save_ms: None,
            baseline_corrupt,
            suppress: d.suppress.clone(),
            incidents,
            suppressed: 0,
            events,
            sensor,
            detect_protocol: settings.events.detect_protocol_anomalies,
            detectors,
            inventory,
            classifier,
            hasher: SecretHasher::new(&settings.classify),
            identities: IdentityBook::default(),
            client_address: ClientAddress {
                header: d.client_ip_header.to_ascii_lowercase(),
                trusted_hops: d.trusted_proxy_hops,
            },
            found: Vec::new(),
            classify_stats: ClassifyStats::default(),
        })
    }

    /// Whether this stage does anything (else the writer skips it).
    pub fn is_active(&self) -> bool {
        self.detectors.is_some() || self.inventory.is_some()
    }

    pub fn observe(&mut self, exchange: &Exchange) {
        let (mut inventory_facts, data) = match &self.classifier {
            Some(classifier) => facts_of(classifier, exchange, &mut self.classify_stats),
            None => (
                ExchangeFacts::from_exchange_basic(exchange),
                ResponseData::default(),
            ),
        };
        let facts = Facts::new(
            exchange,
            data,
            FactsContext {
                hasher: &self.hasher,
                identities: &mut self.identities,
                client_address: &self.client_address,
            },
        );
        let Some(mut facts) = facts else {
            // A response seen without its request: counted by the
            // inventory, judged only for protocol anomalies.
            if let Some(inventory) = self.inventory.as_mut() {
                inventory.observe(exchange, &inventory_facts);
            }
            self.protocol_findings(exchange);
            return;
        };
        inventory_facts.path_payload = facts.path_payload();
        if let Some(inventory) = self.inventory.as_mut() {
            let located = inventory
                .observe(exchange, &inventory_facts)
                .unwrap_or_else(|| unlisted(&facts.key));
            facts.locate(located);
        }
        if self.baseline_path.is_some() {
            self.save_baseline_if_due(crate::event::epoch_ms(facts.request.ts));
        }
        if self.detectors.is_none() {
            return;
        }
        self.protocol_findings(exchange);
        let before = self.found.len();
        if let Some(detectors) = self.detectors.as_mut() {
            let verdict = detectors.observe(&facts, &mut self.found);
            if let (true, Some(inventory)) = (verdict.scanner, self.inventory.as_mut()) {
                inventory.mark_scanner(crate::inventory::client_digest(exchange));
            }
        }
        if let Some(classifier) = &self.classifier {
            for event in self.found.iter_mut().skip(before) {
                for evidence in &mut event.evidence {
                    redact_evidence(classifier, exchange, evidence);
                }
            }
        }
        let fresh = self.found.split_off(before);
        let mut grouped = Vec::new();
        for event in fresh {
            if incident::suppressed(&self.suppress, &event) {
                self.suppressed += 1;
                continue;
            }
            self.incidents.observe(&event, &mut grouped);
            self.found.push(event);
            self.found.append(&mut grouped);
        }
        self.emit();
    }

    fn protocol_findings(&mut self, exchange: &Exchange) {
        if self.detectors.is_some() && self.detect_protocol {
            protocol::check(exchange, &self.sensor, &mut self.found);
            self.emit();
        }
    }

    /// The stream ended: findings drawn from the whole inventory (posture)
    /// are raised now, when every exchange has been seen.
    /// The event handle is released here, so the forwarder can drain; the
    /// baseline snapshot is written.
    pub fn finish(&mut self) {
        if self.events.is_none() {
            self.save_baseline();
            return;
        }
        if let Some(inventory) = &self.inventory {
            self.found.extend(inventory.posture_findings(&self.sensor));
        }
        self.emit();
        self.events = None;
        self.save_baseline();
    }

    fn emit(&mut self) {
        match &self.events {
            Some(events) => self.found.drain(..).for_each(|event| events.emit(event)),
            // Learning only: findings have nowhere to go.
            None => self.found.clear(),
        }
    }

    /// Takes over what another run's detectors learned (`--baseline-from`).
    pub fn adopt_baseline(&mut self, learned: Analysis) {
        if let (Some(mine), Some(theirs)) = (self.detectors.as_mut(), learned.detectors) {
            mine.adopt(theirs);
        }
    }

    /// Writes the baseline snapshot when it is due at packet time `now_ms`.
    fn save_baseline_if_due(&mut self, now_ms: u64) {
        let due = *self
            .next_save_ms
            .get_or_insert(now_ms.saturating_add(self.baseline_save_ms));
        if now_ms >= due {
            self.next_save_ms = Some(now_ms.saturating_add(self.baseline_save_ms));
            self.save_baseline();
        }
    }

    fn save_baseline(&self) {
        let (Some(path), Some(detectors)) = (&self.baseline_path, &self.detectors) else {
            return;
        };
        let result = detectors
            .save()
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomically(path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!("cannot write the baseline snapshot {}: {e}", path.display());
        }
    }

    /// The classifier's and the detectors' counters so far.
    pub fn stats_into(&self, stats: &mut AnalysisStats) {
        stats.classify.clone_from(&self.classify_stats);
        if let Some(detect) = self.detect_stats() {
            stats.detect = detect;
        }
    }

    pub fn detect_stats(&self) -> Option<DetectStats> {
        self.detectors.as_ref().map(|d| {
            let mut stats = d.stats();
            stats.suppressed = self.suppressed;
            stats.incidents_opened = self.incidents.incidents_opened;
            stats.baseline_corrupt = self.baseline_corrupt;
            stats
        })
    }

    pub fn inventory(&self) -> Option<&Inventory> {
        self.inventory.as_ref()
    }

    pub fn sensor(&self) -> &str {
        &self.sensor
    }
}

/// The detectors' settings.
fn detect_limits(settings: &Settings, sensor: &str) -> DetectLimits {
    let d = &settings.detect;
    let defaults = DetectLimits::default();
    DetectLimits {
        sensor: sensor.to_owned(),
        hasher: SecretHasher::new(&settings.classify),
        baseline: crate::baseline::learned::BaselineLimits {
            learn_exchanges: d.learn_exchanges,
            learn_secs: d.learn_secs,
            learn_actors: d.learn_actors,
            ..defaults.baseline
        },
        ..defaults
    }
    .within(settings.memory_plan().analysis_bytes)
}

/// Where an exchange goes when the inventory's caps refused its path: one
/// endpoint per host and method, so the detectors' state stays bounded.
pub(crate) fn unlisted(raw: &EndpointKey) -> Located {
    Located {
        key: EndpointKey {
            template: Text::from("/{unlisted}"),
            ..raw.clone()
        },
        values: Vec::new(),
    }
}

/// What the detectors need from the classifier's findings in the
/// response: how many sensitive values the body handed out (every record
/// of a list counts) and of which types. Headers are not counted: a
/// `Set-Cookie` renewing the caller's own session on every answer is not
/// data the API exposed, and would make any busy client look like a dump.
/// Nor is that session a type the answer carried: frameworks renew it on
/// whichever answer comes when it is due, on any endpoint.
fn response_data(findings: &[Finding]) -> ResponseData {
    let mut types: Vec<String> = findings
        .iter()
        .filter(|f| f.location == Location::Body || f.data_type != DataType::SessionToken)
        .map(|f| f.data_type.as_str().to_owned())
        .collect();
    types.sort();
    types.dedup();
    ResponseData {
        sensitive_values: findings
            .iter()
            .filter(|f| f.location == Location::Body)
            .map(|f| u64::from(f.values))
            .sum(),
        sensitive_types: types,
    }
}

/// What the inventory needs from one exchange, from one classifier pass:
/// sensitive values found and the JSON field shapes of both bodies.
pub(crate) fn facts_of(
    classifier: &Classifier,
    exchange: &Exchange,
    stats: &mut ClassifyStats,
) -> (ExchangeFacts, ResponseData) {
    let found = classifier.classify_exchange(exchange);
    stats.merge(&found.stats);
    let hits = |findings: &[Finding]| -> Vec<SensitiveHit> {
        findings
            .iter()
            .map(|f| SensitiveHit {
                data_type: f.data_type.as_str().to_owned(),
                category: f.data_type.category().as_str().to_owned(),
                location: f.location.as_str().to_owned(),
                field: f.field.clone(),
                confidence: f.confidence,
            })
            .collect()
    };
    let fields = |shape: &Option<BodyShape>| -> Vec<(String, String)> {
        shape
            .as_ref()
            .map(|s| {
                s.fields
                    .iter()
                    .map(|(path, kind)| (path.clone(), kind.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let data = response_data(&found.response);
    let facts = ExchangeFacts {
        path_payload: false,
        request_sensitive: hits(&found.request),
        response_sensitive: hits(&found.response),
        request_fields: fields(&found.request_shape),
        response_fields: fields(&found.response_shape),
    };
    (facts, data)
}

/// Bytes of each redacted body kept in evidence.
const EVIDENCE_BODY_BYTES: usize = 2048;

/// Evidence with every sensitive value replaced by its type and a keyed
/// hash (the same value gets the same tag, so analysts can correlate
/// without seeing it): the target, every header value, and the start of
/// both bodies.
fn redact_evidence(classifier: &Classifier, exchange: &Exchange, evidence: &mut Evidence) {
    let Some(request) = &exchange.request else {
        return;
    };
    evidence.uri = classifier.redact_text("", &request.uri);
    let headers = |h: &crate::exchange::Headers| -> Vec<(String, String)> {
        h.iter()
            .map(|(name, value)| {
                let name = String::from_utf8_lossy(name).into_owned();
                let value = classifier.redact_text(&name, &String::from_utf8_lossy(value));
                (name, value)
            })
            .collect()
    };
    evidence.request_headers = headers(&request.headers);
    let body = |content_type: Option<&str>, data: &[u8]| -> Option<String> {
        if data.is_empty() {
            return None;
        }
        let mut text = classifier.redact_body(content_type, data);
        if text.len() > EVIDENCE_BODY_BYTES {
            let mut cut = EVIDENCE_BODY_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("…[cut]");
        }
        Some(text)
    };
    evidence.request_body = body(request.content_type.as_deref(), &request.body.data);
    if let Some(response) = &exchange.response {
        evidence.response_headers = headers(&response.headers);
        evidence.response_body = body(response.content_type.as_deref(), &response.body.data);
    }
}

/// Loads a snapshot into `detectors`; an unreadable one is set aside (renamed
/// `*.corrupt-<unix time>`) so the sensor starts learning afresh instead of
/// failing. Returns how many were set aside.
fn load_baseline(detectors: &mut Detectors, path: &Path) -> u64 {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::error!("cannot read the baseline snapshot {}: {e}", path.display());
            return 0;
        }
    };
    match detectors.load(&bytes) {
        Ok(()) => {
            tracing::info!("baselines loaded from {}", path.display());
            0
        }
        Err(e) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
            let moved = std::fs::rename(path, &aside);
            tracing::warn!(
                "baseline snapshot {} is unreadable ({e}); set aside as {} ({:?}), learning afresh",
                path.display(),
                aside.display(),
                moved.err()
            );
            1
        }
    }
}

/// Write to a temporary file beside `path` (0600), then rename: a crash
/// never leaves a half-written snapshot.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = crate::files::create(&tmp, crate::files::PRIVATE_MODE)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
