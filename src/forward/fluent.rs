//! The `fluent` sink: the Fluent Forward protocol v1 over TCP or TLS, as
//! Fluent Bit, Fluentd, Vector and the OpenTelemetry `fluentforward`
//! receiver accept it. Each batch is one `PackedForward` message
//! `[tag, <bin: [time, record]...>, {"size": n, "chunk": id}]` with
//! EventTime timestamps (ext type 0) and records as named MessagePack maps;
//! the batch counts as delivered only when the server answers
//! `{"ack": id}` with the same chunk id.

use super::net::{self, Conn, Tls};
use super::SinkError;
use crate::config::SinkSettings;
use crate::event::Event;
use base64::Engine;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct FluentSink {
    address: String,
    tag: String,
    tls: Option<Tls>,
    timeout: Duration,
    conn: Option<Box<dyn Conn>>,
    chunks: u64,
}

/// Encodes one PackedForward message; returns it with its chunk id.
pub fn encode_packed_forward(
    tag: &str,
    batch: &[Event],
    chunk_key: &[u8],
) -> Result<(Vec<u8>, String), String> {
    let mut entries = Vec::with_capacity(batch.len() * 512);
    for event in batch {
        let secs = (event.time / 1000) as u32;
        let nanos = ((event.time % 1000) * 1_000_000) as u32;
        entries.push(0x92); // [time, record]
        entries.extend_from_slice(&[0xd7, 0x00]); // fixext8, EventTime
        entries.extend_from_slice(&secs.to_be_bytes());
        entries.extend_from_slice(&nanos.to_be_bytes());
        let record = rmp_serde::to_vec_named(event).map_err(|e| e.to_string())?;
        entries.extend_from_slice(&record);
    }
    let digest = blake3::hash(chunk_key);
    let chunk = base64::engine::general_purpose::STANDARD.encode(&digest.as_bytes()[..16]);
    let mut out = Vec::with_capacity(entries.len() + 128);
    let err = |e: rmp::encode::ValueWriteError| e.to_string();
    rmp::encode::write_array_len(&mut out, 3).map_err(err)?;
    rmp::encode::write_str(&mut out, tag).map_err(err)?;
    rmp::encode::write_bin(&mut out, &entries).map_err(err)?;
    rmp::encode::write_map_len(&mut out, 2).map_err(err)?;
    rmp::encode::write_str(&mut out, "size").map_err(err)?;
    rmp::encode::write_uint(&mut out, batch.len() as u64).map_err(err)?;
    rmp::encode::write_str(&mut out, "chunk").map_err(err)?;
    rmp::encode::write_str(&mut out, &chunk).map_err(err)?;
    Ok((out, chunk))
}

impl FluentSink {
    pub fn new(settings: &SinkSettings) -> Result<FluentSink, String> {
        let tls = Tls::for_sink(settings)?;
        Ok(FluentSink {
            address: settings.address.clone().unwrap_or_default(),
            tag: settings
                .tag
                .clone()
                .unwrap_or_else(|| "apisensor.event".into()),
            tls,
            timeout: Duration::from_millis(settings.timeout_ms),
            conn: None,
            chunks: 0,
        })
    }

    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        self.chunks += 1;
        let mut key = Vec::new();
        for event in batch.iter().take(1).chain(batch.last()) {
            key.extend_from_slice(event.id.as_bytes());
        }
        key.extend_from_slice(&self.chunks.to_le_bytes());
        key.extend_from_slice(&std::process::id().to_le_bytes());
        let (message, chunk) =
            encode_packed_forward(&self.tag, batch, &key).map_err(SinkError::Permanent)?;
        if self.conn.is_none() {
            self.conn = Some(net::connect(&self.address, self.tls.as_ref(), self.timeout).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SinkError::Transient("not connected".into()));
        };
        conn.write_all(&message).await?;
        conn.flush().await?;
        // The ack: one map {"ack": chunk}; read until it decodes.
        let mut buf = Vec::with_capacity(64);
        let mut tmp = [0u8; 256];
        loop {
            let n = conn.read(&mut tmp).await?;
            if n == 0 {
                return Err(SinkError::Transient(
                    "connection closed before the ack".into(),
                ));
            }
            buf.extend_from_slice(&tmp[..n]);
            match rmp_serde::from_slice::<BTreeMap<String, String>>(&buf) {
                Ok(map) => {
                    return match map.get("ack") {
                        Some(ack) if *ack == chunk => Ok(()),
                        other => Err(SinkError::Transient(format!(
                            "ack {other:?} does not match chunk {chunk}"
                        ))),
                    }
                }
                Err(_) if buf.len() < 4096 => continue,
                Err(e) => return Err(SinkError::Transient(format!("bad ack: {e}"))),
            }
        }
    }
}
