//! Plumbing that every Vigil stage shares: configuration of the external services, Kafka
//! clients with the delivery and commit discipline the guarantees rest on, the ClickHouse client,
//! telemetry and cooperative shutdown. Nothing clinical lives here.

pub mod clickhouse;
pub mod config;
mod error;
pub mod kafka;
pub mod secret;
pub mod shutdown;
pub mod stats;
mod stop;
pub mod telemetry;
pub mod time;

pub use error::RuntimeError;
pub use shutdown::Shutdown;
pub use stop::StopWhen;
