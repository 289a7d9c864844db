//! Configuration of the hospital edge, shared by `vigil ingest` and the CDC simulator.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ProducerError;
use crate::pseudonym::PseudonymKey;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// File with the pseudonymisation key (hex, at least 32 bytes). The environment variable
    /// VIGIL_PSEUDONYM_KEY takes precedence. Never commit or log it.
    #[serde(default = "default_key_file")]
    pub pseudonym_key_file: PathBuf,
    /// Create a random key when the file is missing: right for a laptop, wrong for a deployment
    /// (pseudonyms must stay stable), so production configs set this to false.
    #[serde(default = "default_true")]
    pub create_key_if_missing: bool,
    /// Directory with hospitals.toml, vendors/ and codes/ (re-read when a file changes).
    #[serde(default = "default_catalog_dir")]
    pub catalog_dir: PathBuf,
    /// Time zone of the hospitals' local-time text, minutes east of UTC (480: China).
    #[serde(default = "default_offset")]
    pub hospital_utc_offset_minutes: i32,
}

/// Beside the local services' data (deploy/local/services.sh uses .vigil/ too).
fn default_key_file() -> PathBuf {
    PathBuf::from(".vigil/pseudonym.key")
}
fn default_true() -> bool {
    true
}
/// The catalogue shipped in the repository (run from its root).
fn default_catalog_dir() -> PathBuf {
    PathBuf::from("deploy/edge")
}
fn default_offset() -> i32 {
    480
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            pseudonym_key_file: default_key_file(),
            create_key_if_missing: true,
            catalog_dir: default_catalog_dir(),
            hospital_utc_offset_minutes: default_offset(),
        }
    }
}

impl EdgeConfig {
    pub fn pseudonym_key(&self) -> Result<PseudonymKey, ProducerError> {
        PseudonymKey::load(
            "VIGIL_PSEUDONYM_KEY",
            &self.pseudonym_key_file,
            self.create_key_if_missing,
        )
    }
}
