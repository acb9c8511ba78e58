//! Detectors: turn exchanges (and later, baselines) into [`crate::event::Event`]s.
//! One file per detector family. Detectors are pure functions of their input
//! and packet time; they emit through the pipeline's event handle and never
//! touch sinks, threads or the wall clock.

pub mod actor;
pub mod behavior;
pub mod engine;
pub mod incident;
pub mod injection;
pub use crate::jwt;
pub mod protocol;
pub mod request;
pub mod spec;
