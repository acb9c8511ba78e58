//! Detectors: one file per family. Each turns exchanges (in the merged,
//! worker-count-independent order) into `event::Event`s.

pub mod actor;
pub mod engine;
pub mod injection;
pub mod jwt;
pub mod request;
