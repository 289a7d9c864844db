//! The ClickHouse side of Vigil.
//!
//! * `migrate`: versioned DDL from `deploy/clickhouse/migrations/`, applied once each, in order.
//! * `rows`: the table rows and how Kafka records map to them.
//! * `writer`: the `vigil sink` loop: batch per table, insert, then commit the offsets.
//! * `publish`: the insurance bureau's aggregated, suppressed outcome metrics.
//! * `rollup`: the dashboard's figures per period, day and month, recomputed as rows land.
//! * `freeze`: final periods' outcome figures, published once and restated when they change.

mod config;
pub mod freeze;
pub mod migrate;
pub mod publish;
pub mod rollup;
pub mod rows;
pub mod writer;

pub use config::SinkConfig;
