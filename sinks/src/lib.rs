//! Where Vigil's results land: ClickHouse (the writer behind `vigil sink`, and the migrations of
//! `vigil migrate`) and, with `vigil notify`, the clinicians' webhooks.

pub mod clickhouse;
mod error;
pub mod notify;

pub use error::SinkError;
