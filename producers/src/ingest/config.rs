//! Configuration of `vigil ingest`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ProducerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Consumer group of the ingest instances on the change-event topic.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Most records handled per batch (one flush and one commit per batch).
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Longest wait to fill a batch: bounds the added latency.
    #[serde(default = "default_batch_max_wait", with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// How often the edge catalogue is checked for changed files.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Where a hospital's initial snapshot waits until it ends, to be released in clinical-time
    /// order (unnamed temporary files: nothing is left behind); empty: the system's temporary
    /// directory.
    #[serde(default)]
    pub snapshot_spool_dir: String,
    /// A snapshot from which nothing has come for this long is released as it stands (a
    /// connector stopped mid-snapshot starts it again when it returns).
    #[serde(default = "default_snapshot_quiet", with = "humantime_serde")]
    pub snapshot_quiet: Duration,
    /// Largest HL7 v2 message `vigil ingest --mllp` takes, in bytes; a larger one is refused
    /// (AR) and dead-lettered by its size.
    #[serde(default = "default_mllp_max_message")]
    pub mllp_max_message: usize,
    /// Most MLLP connections served at once; more wait for one to close.
    #[serde(default = "default_mllp_max_connections")]
    pub mllp_max_connections: usize,
}

fn default_group_id() -> String {
    "vigil-ingest".into()
}
fn default_batch_max_records() -> usize {
    20_000
}
/// A crisis value should not wait at the edge.
fn default_batch_max_wait() -> Duration {
    Duration::from_millis(50)
}
/// Results and ADT messages are kilobytes; an embedded report (OBX ED) may be a few hundred.
fn default_mllp_max_message() -> usize {
    1024 * 1024
}
fn default_mllp_max_connections() -> usize {
    64
}
fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}
/// Longer than a connector's pauses between tables, short enough that a stopped one is noticed.
fn default_snapshot_quiet() -> Duration {
    Duration::from_secs(120)
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            group_id: default_group_id(),
            batch_max_records: default_batch_max_records(),
            batch_max_wait: default_batch_max_wait(),
            reload_interval: default_reload_interval(),
            snapshot_spool_dir: String::new(),
            snapshot_quiet: default_snapshot_quiet(),
            mllp_max_message: default_mllp_max_message(),
            mllp_max_connections: default_mllp_max_connections(),
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ProducerError> {
        if self.group_id.trim().is_empty() {
            return Err(ProducerError::Config("ingest.group_id is empty".into()));
        }
        if self.batch_max_records == 0 {
            return Err(ProducerError::Config(
                "ingest.batch_max_records must be at least 1".into(),
            ));
        }
        if self.snapshot_quiet.is_zero() {
            return Err(ProducerError::Config(
                "ingest.snapshot_quiet must be longer than zero".into(),
            ));
        }
        if self.mllp_max_message < 1024 || self.mllp_max_connections == 0 {
            return Err(ProducerError::Config(
                "ingest.mllp_max_message must be at least 1024 bytes and \
                 ingest.mllp_max_connections at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The directory snapshot spools are created in.
    pub fn spool_dir(&self) -> std::path::PathBuf {
        if self.snapshot_spool_dir.is_empty() {
            std::env::temp_dir()
        } else {
            std::path::PathBuf::from(&self.snapshot_spool_dir)
        }
    }
}
