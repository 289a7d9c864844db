//! `vigil ingest`: the hospital edge. Debezium change events from the hospitals' systems (a
//! Kafka topic, or JSON lines from a file or stdin) become canonical, pseudonymised Avro events
//! keyed by patient; what cannot be accepted goes to the dead-letter topic with its reason and a
//! redacted copy. Source offsets are committed only after the broker acknowledged the output.

pub mod adapter;
mod config;
pub(crate) mod handler;
pub mod redact;
mod run;
pub mod spool;

pub use adapter::{Adapted, Adapter, Outcome, Rejection, SnapshotMark};
pub use config::IngestConfig;
pub use handler::IngestSummary;
pub use run::{for_each_line, run, run_file};
