//! The stage after the ordered merge: every exchange, in the one order that
//! does not depend on the worker count, goes through the detectors, and
//! their findings go to the event forwarder. Running here rather than on
//! the workers is what makes replayed events identical run after run and
//! whatever `--workers` says; detectors that keep state across flows
//! (scanners, credential attacks) need the whole stream anyway.

use crate::config::Settings;
use crate::detect::engine::{DetectLimits, DetectStats, Detectors};
use crate::detect::protocol;
use crate::event::Event;
use crate::exchange::Exchange;
use crate::forward::EventHandle;

pub struct Analysis {
    events: EventHandle,
    sensor: String,
    detect_protocol: bool,
    detectors: Detectors,
    found: Vec<Event>,
}

impl Analysis {
    pub fn new(settings: &Settings, events: EventHandle) -> Self {
        let sensor = events.sensor().to_owned();
        let limits = DetectLimits {
            sensor: sensor.clone(),
            ..DetectLimits::default()
        };
        Analysis {
            events,
            sensor,
            detect_protocol: settings.events.detect_protocol_anomalies,
            detectors: Detectors::new(limits),
            found: Vec::new(),
        }
    }

    pub fn observe(&mut self, exchange: &Exchange) {
        if self.detect_protocol {
            protocol::check(exchange, &self.sensor, &mut self.found);
        }
        self.detectors.observe(exchange, &mut self.found);
        for event in self.found.drain(..) {
            self.events.emit(event);
        }
    }

    pub fn stats(&self) -> &DetectStats {
        self.detectors.stats()
    }
}
