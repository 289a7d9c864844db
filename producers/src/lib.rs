//! The hospital edge: a simulator that looks like the region's hospitals, and (with the ingest
//! stage) the adapter that turns what hospitals send into canonical, pseudonymised events.

pub mod edge;
mod error;
pub mod ingest;
pub mod mllp;
pub mod onboard;
pub mod pseudonym;
pub mod simulator;

pub use error::ProducerError;
