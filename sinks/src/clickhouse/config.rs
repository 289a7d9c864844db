//! Configuration of `vigil sink`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SinkError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Consumer group of the ClickHouse writers.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Most rows per insert and per table; also the most rows held in memory per table.
    #[serde(default = "default_batch_max_rows")]
    pub batch_max_rows: usize,
    /// Longest a row waits before its table is flushed. ClickHouse wants few, large inserts:
    /// about one per second per table.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The alerts table is flushed sooner: dashboards and audits see alerts within this.
    #[serde(default = "default_alerts_flush_interval", with = "humantime_serde")]
    pub alerts_flush_interval: Duration,
    /// How often the insurance bureau's outcome metrics are republished (0s: never).
    #[serde(default = "default_publish_interval", with = "humantime_serde")]
    pub publish_interval: Duration,
    /// Cells (and rates) resting on fewer patients than this are suppressed in publications.
    #[serde(default = "default_min_cell")]
    pub publish_min_cell: u64,
    /// Longest pause between retries while ClickHouse is unreachable.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_retry_backoff: Duration,
    /// How often the periods whose status rows landed are recomputed into `status_rollup`
    /// (what the dashboard reads).
    #[serde(default = "default_rollup_interval", with = "humantime_serde")]
    pub rollup_interval: Duration,
}

fn default_group_id() -> String {
    "vigil-sink".into()
}
/// Thousands of rows per insert is ClickHouse's sweet spot; 50k bounds memory to tens of MB.
fn default_batch_max_rows() -> usize {
    50_000
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_alerts_flush_interval() -> Duration {
    Duration::from_millis(200)
}
/// Quarterly figures move slowly; every few minutes keeps them current without load.
fn default_publish_interval() -> Duration {
    Duration::from_secs(300)
}
/// A common small-cell threshold in health statistics publications.
fn default_min_cell() -> u64 {
    10
}
/// The dashboard shows changed figures within seconds of their rows landing.
fn default_rollup_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            group_id: default_group_id(),
            batch_max_rows: default_batch_max_rows(),
            flush_interval: default_flush_interval(),
            alerts_flush_interval: default_alerts_flush_interval(),
            publish_interval: default_publish_interval(),
            publish_min_cell: default_min_cell(),
            max_retry_backoff: default_max_backoff(),
            rollup_interval: default_rollup_interval(),
        }
    }
}

impl SinkConfig {
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.group_id.trim().is_empty() {
            return Err(SinkError::Config("sink.group_id is empty".into()));
        }
        if self.batch_max_rows == 0 || self.batch_max_rows > 1_000_000 {
            return Err(SinkError::Config(
                "sink.batch_max_rows must be 1..=1000000".into(),
            ));
        }
        if self.publish_min_cell < 2 {
            return Err(SinkError::Config(
                "sink.publish_min_cell must be at least 2".into(),
            ));
        }
        if self.flush_interval.is_zero() || self.alerts_flush_interval.is_zero() {
            return Err(SinkError::Config(
                "sink flush intervals must be longer than zero".into(),
            ));
        }
        Ok(())
    }
}
