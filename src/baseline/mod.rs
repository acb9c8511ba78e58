//! Behavioural baselines learned online from packet time, bounded in
//! memory, persisted between runs.

pub mod learned;
pub mod sketch;
