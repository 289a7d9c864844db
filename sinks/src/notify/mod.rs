//! `vigil notify`: clinicians hear about their patients' alerts through their hospital's own
//! systems. Each hospital exposes a webhook; Vigil POSTs every raised or re-notified alert to it
//! as JSON, signed with the hospital's secret, with the alert id as idempotency key, retrying
//! with backoff until the endpoint acknowledges (2xx). An alert an endpoint acknowledged is
//! never delivered to it again; one it refuses for good, or that cannot get through in time,
//! goes to dead letters. Every outcome is recorded (topic `alert_deliveries`, landed in
//! ClickHouse by the writer).

pub mod config;
pub mod delivery;
pub mod endpoints;
mod run;

pub use config::NotifyConfig;
pub use run::{run, NotifySummary};
