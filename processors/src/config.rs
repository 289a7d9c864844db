//! Configuration of `vigil process`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::error::ProcessorError;
use crate::rules::RuleSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// Consumer group shared by all processor instances; partitions (and their state) are spread
    /// over the group's members.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Alert rules file; empty uses the built-in rules (processors/rules/default.toml).
    #[serde(default)]
    pub rules_file: Option<PathBuf>,
    /// Most events handled per batch.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Longest wait to fill a batch: bounds the added alert latency.
    #[serde(default = "default_batch_max_wait", with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// How often state, status rows and offsets are made durable. A crash replays at most this
    /// much input; status rows reach ClickHouse at this pace.
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// A hospital not heard from for this long lets its watermark follow the wall clock, so its
    /// patients' timers (missed follow-ups) still fire; zero disables it (deterministic replays
    /// in tests).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_partition_timeout: Duration,
    /// A full snapshot is written once the deltas since the last one exceed this multiple of the
    /// state's size: restore then reads at most about (1 + ratio) times the state.
    #[serde(default = "default_snapshot_ratio")]
    pub snapshot_ratio: f64,
    /// Size of one changelog message.
    #[serde(default = "default_chunk_bytes")]
    pub changelog_chunk_bytes: usize,
    /// Clinical settings: reporting time zone, metric definition, lateness.
    #[serde(default)]
    pub engine: EngineConfig,
}

fn default_group_id() -> String {
    "vigil-process".into()
}
fn default_batch_max_events() -> usize {
    20_000
}
/// Alerts leave within this plus the produce round trip.
fn default_batch_max_wait() -> Duration {
    Duration::from_millis(50)
}
/// Dashboard freshness of a few seconds; replay after a crash of the same.
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_snapshot_ratio() -> f64 {
    1.0
}
/// Well under the 1 MB default message limit of Kafka brokers.
fn default_chunk_bytes() -> usize {
    256 * 1024
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            group_id: default_group_id(),
            rules_file: None,
            batch_max_events: default_batch_max_events(),
            batch_max_wait: default_batch_max_wait(),
            checkpoint_interval: default_checkpoint_interval(),
            idle_partition_timeout: default_idle_timeout(),
            snapshot_ratio: default_snapshot_ratio(),
            changelog_chunk_bytes: default_chunk_bytes(),
            engine: EngineConfig::default(),
        }
    }
}

impl ProcessConfig {
    /// Checks the settings and loads the rules, without touching any service.
    pub fn validate(&self) -> Result<RuleSet, ProcessorError> {
        let fail = |msg: &str| Err(ProcessorError::Config(msg.to_string()));
        if self.group_id.trim().is_empty() {
            return fail("process.group_id is empty");
        }
        if self.batch_max_events == 0 {
            return fail("process.batch_max_events must be at least 1");
        }
        if self.checkpoint_interval.is_zero() {
            return fail("process.checkpoint_interval must be longer than zero");
        }
        if self.snapshot_ratio.is_nan() || self.snapshot_ratio <= 0.0 {
            return fail("process.snapshot_ratio must be above zero");
        }
        if !(4_096..=900_000).contains(&self.changelog_chunk_bytes) {
            return fail("process.changelog_chunk_bytes must be between 4096 and 900000");
        }
        if !(-720..=840).contains(&self.engine.reporting_utc_offset_minutes) {
            return fail(
                "process.engine.reporting_utc_offset_minutes must be between -720 and 840",
            );
        }
        match &self.rules_file {
            Some(path) if !path.as_os_str().is_empty() => RuleSet::load(path),
            _ => RuleSet::defaults(),
        }
    }
}
