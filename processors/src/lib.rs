//! `vigil process`: per-patient clinical state, the alert rules, follow-up timers and patient
//! status for the pilot metrics.
//!
//! * [`engine`] is pure: (state, event) -> (state, alerts, status rows).
//! * [`checkpoint`] writes each partition's state to a changelog topic with the input offsets it
//!   reflects, and restores it when a partition is assigned (after a crash, or on another instance).
//! * [`runner`] is the Kafka loop around both.
//! * [`backtest`] replays the history in ClickHouse through a candidate rule set beside the live
//!   one, without producing anything.

pub mod backtest;
pub mod checkpoint;
pub mod clinical;
mod config;
pub mod engine;
mod error;
pub mod rules;
pub mod runner;
pub mod state;

pub use config::ProcessConfig;
pub use error::ProcessorError;
