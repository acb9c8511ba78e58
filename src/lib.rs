//! apisensor: an out-of-band API-security sensor.
//!
//! The data path, one way through:
//! `capture` (packets from a file or interface) → `pipeline` (reader thread,
//! batches, shard by symmetric flow hash) → `decode` (link/IP/TCP views) →
//! `flow` (flow table, TCP reassembly) → `http1` (HTTP/1.x exchanges) →
//! `exchange::Exchange` records → output.

pub mod analysis;
pub mod baseline;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detect;
pub mod event;
pub mod exchange;
pub mod files;
pub mod flow;
pub mod forward;
pub mod http1;
pub mod identity;
pub mod inventory;
pub mod jwt;
pub mod order;
pub mod output;
pub mod pipeline;
pub mod preflight;
pub mod service;
pub mod telemetry;

pub use config::Settings;
pub use exchange::{Direction, Exchange, Timestamp};
