//! Configuration of `vigil notify`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SinkError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Consumer group of the notifiers.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Each hospital's webhook URL (`[[endpoint]] hospital_id, url`).
    #[serde(default = "default_endpoints_file")]
    pub endpoints_file: PathBuf,
    /// Each hospital's signing secret (`H0001 = "<hex>"`), owner-readable only. Hospitals verify
    /// the X-Vigil-Signature header with it.
    #[serde(default = "default_secrets_file")]
    pub secrets_file: PathBuf,
    /// Generate missing secrets (local use); production provides the file.
    #[serde(default = "default_true")]
    pub create_secrets_if_missing: bool,
    /// How long one HTTP attempt may take.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Pause before the first retry; it doubles (with jitter) up to `max_retry_backoff`.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_retry_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_retry_backoff: Duration,
    /// After this long without a successful attempt an alert is undeliverable: it goes to dead
    /// letters (and the clinicians' escalation path) instead of waiting forever.
    #[serde(default = "default_give_up_after", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Alerts about events older than this when they reach the notifier (a backfill, a replay)
    /// are recorded as STALE and not sent: nobody should be paged about last year.
    #[serde(default = "default_max_alert_age", with = "humantime_serde")]
    pub max_alert_age: Duration,
    /// Most alerts waiting for delivery at once; beyond it the consumer pauses (bounded memory).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_group_id() -> String {
    "vigil-notify".into()
}
fn default_endpoints_file() -> PathBuf {
    PathBuf::from("deploy/notify/endpoints.toml")
}
fn default_secrets_file() -> PathBuf {
    PathBuf::from(".vigil/notify-secrets.toml")
}
fn default_true() -> bool {
    true
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
/// Long enough to ride out a hospital's web server restart; short enough that a clinician is
/// reached another way while the alert still matters.
fn default_give_up_after() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_alert_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_in_flight() -> usize {
    10_000
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            group_id: default_group_id(),
            endpoints_file: default_endpoints_file(),
            secrets_file: default_secrets_file(),
            create_secrets_if_missing: true,
            request_timeout: default_request_timeout(),
            initial_retry_backoff: default_initial_backoff(),
            max_retry_backoff: default_max_backoff(),
            give_up_after: default_give_up_after(),
            max_alert_age: default_max_alert_age(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), SinkError> {
        let bad = |what: &str| Err(SinkError::Config(format!("notify.{what}")));
        if self.group_id.trim().is_empty() {
            return bad("group_id is empty");
        }
        if self.request_timeout.is_zero() || self.initial_retry_backoff.is_zero() {
            return bad("request_timeout and initial_retry_backoff must be longer than zero");
        }
        if self.max_retry_backoff < self.initial_retry_backoff {
            return bad("max_retry_backoff must be at least initial_retry_backoff");
        }
        if self.give_up_after < self.request_timeout {
            return bad("give_up_after must be at least request_timeout");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1");
        }
        Ok(())
    }
}
