//! The `nats` sink: publishes each event to NATS JetStream on `subject`
//! with the event id as `Nats-Msg-Id`, so the stream's duplicate window
//! drops re-sent events, and waits for every publish ack. With `stream`
//! set, the stream is created over `subject` when missing.

use super::SinkError;
use crate::config::{SinkFormat, SinkSettings};
use crate::event::Event;
use async_nats::jetstream::{self, context::Context, message::PublishMessage};
use std::time::Duration;

pub struct NatsSink {
    address: String,
    subject: String,
    stream: String,
    format: SinkFormat,
    timeout: Duration,
    js: Option<Context>,
}

impl NatsSink {
    pub fn new(settings: &SinkSettings) -> NatsSink {
        NatsSink {
            address: settings.address.clone().unwrap_or_default(),
            subject: settings
                .subject
                .clone()
                .unwrap_or_else(|| "apisensor.events".into()),
            stream: settings.stream.clone().unwrap_or_default(),
            format: settings.format.unwrap_or(SinkFormat::Json),
            timeout: Duration::from_millis(settings.timeout_ms),
            js: None,
        }
    }

    pub fn reset(&mut self) {
        self.js = None;
    }

    async fn context(&mut self) -> Result<Context, SinkError> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .name("apisensor");
        let client = async_nats::connect_with_options(self.address.as_str(), options)
            .await
            .map_err(|e| SinkError::Transient(format!("connect {}: {e}", self.address)))?;
        let mut js = jetstream::new(client);
        js.set_timeout(self.timeout);
        if !self.stream.is_empty() {
            js.get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| SinkError::Transient(format!("stream {}: {e}", self.stream)))?;
        }
        self.js = Some(js.clone());
        Ok(js)
    }

    pub async fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let js = self.context().await?;
        let mut acks = Vec::with_capacity(batch.len());
        for event in batch {
            let payload = match self.format {
                SinkFormat::Json => serde_json::to_vec(event).map_err(|e| e.to_string()),
                SinkFormat::Msgpack => rmp_serde::to_vec_named(event).map_err(|e| e.to_string()),
            }
            .map_err(SinkError::Permanent)?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(&event.id);
            let ack = js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| SinkError::Transient(format!("publish: {e}")))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| SinkError::Transient(format!("publish ack: {e}")))?;
        }
        Ok(())
    }
}
