//! What `vigil simulate` generates and how fast.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cdc::DefectRates;
use crate::error::ProducerError;

/// A synthetic region: hospitals, a chronic-disease population and its clinical history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    /// Number of hospitals, spread across the HIS vendors.
    #[serde(default = "default_hospitals")]
    pub hospitals: u16,
    /// Patients enrolled in (or joining) chronic-disease management during the span.
    #[serde(default = "default_patients")]
    pub patients: u32,
    /// Seed of the generator: the same seed and settings give the same events.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Length of simulated history.
    #[serde(default = "default_span", with = "humantime_serde")]
    pub span: Duration,
    /// Last simulated day (`YYYY-MM-DD`, UTC). Empty means today, so the history ends now.
    #[serde(default)]
    pub end_date: String,
    /// How fast to emit: `fast` (as fast as the broker takes), `rate` (steady `rate` events/s),
    /// `compressed` (the whole span spread over `compress_into`), or `live` (event times are the
    /// wall clock and `rate` events/s are emitted).
    #[serde(default)]
    pub pace: Pace,
    /// Events per second for `rate` and `live`.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Wall-clock length of a `compressed` run.
    #[serde(default = "default_compress_into", with = "humantime_serde")]
    pub compress_into: Duration,
    /// Stop after this many events (0: the whole span).
    #[serde(default)]
    pub max_events: u64,
    /// What to produce: `cdc` (each hospital's change events in its vendor's shape, to the
    /// his_changes topic, for `vigil ingest`) or `canonical` (canonical events straight to the
    /// clinical events topic, skipping the edge: processor benchmarks and tests).
    #[serde(default)]
    pub output: Output,
    /// Defects injected into CDC output, as fractions of eligible records.
    #[serde(default)]
    pub defects: DefectRates,
    /// Where to write the CDC run's manifest (what the edge should accept and reject); empty: nowhere.
    #[serde(default)]
    pub manifest: String,
    /// Write the CDC change events to this file as JSON lines (one Debezium value a line, `null`
    /// for a tombstone: what `vigil ingest --file` reads) instead of the his_changes topic;
    /// empty: to the topic.
    #[serde(default)]
    pub output_file: String,
    /// Send each hospital's history up to the end of this day (`YYYY-MM-DD`, UTC) as its
    /// connector's initial snapshot: op = r, the rows as they then stood, table by table, all
    /// stamped with the snapshot's time; what follows streams. Empty: no snapshot (patients
    /// registered before the span still come as snapshot rows, as a connector started then
    /// would send them). Change events only.
    #[serde(default)]
    pub snapshot_at: String,
    /// How often progress is logged on long runs.
    #[serde(default = "default_progress_every", with = "humantime_serde")]
    pub progress_every: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    #[default]
    Cdc,
    Canonical,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    #[default]
    Fast,
    Rate,
    Compressed,
    Live,
}

fn default_hospitals() -> u16 {
    3
}
/// Small enough for a laptop demo to finish in seconds, large enough to show every alert kind.
fn default_patients() -> u32 {
    2_000
}
fn default_seed() -> u64 {
    42
}
/// Two years: enough for annual standardised-management and control figures.
fn default_span() -> Duration {
    Duration::from_secs(730 * 86_400)
}
fn default_rate() -> u32 {
    1_000
}
fn default_compress_into() -> Duration {
    Duration::from_secs(600)
}
fn default_progress_every() -> Duration {
    Duration::from_secs(5)
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            hospitals: default_hospitals(),
            patients: default_patients(),
            seed: default_seed(),
            span: default_span(),
            end_date: String::new(),
            pace: Pace::Fast,
            rate: default_rate(),
            compress_into: default_compress_into(),
            max_events: 0,
            output: Output::Cdc,
            defects: DefectRates::default(),
            manifest: String::new(),
            output_file: String::new(),
            snapshot_at: String::new(),
            progress_every: default_progress_every(),
        }
    }
}

impl SimulateConfig {
    pub fn validate(&self) -> Result<(), ProducerError> {
        let fail = |msg: String| Err(ProducerError::Config(msg));
        if self.hospitals == 0 || self.hospitals > 9_999 {
            return fail(format!(
                "simulate.hospitals must be 1..=9999, not {}",
                self.hospitals
            ));
        }
        if self.patients == 0 {
            return fail("simulate.patients must be at least 1".into());
        }
        if self.span < Duration::from_secs(86_400) {
            return fail("simulate.span must be at least one day".into());
        }
        if !self.end_date.is_empty() && vigil_runtime::time::parse_date(&self.end_date).is_none() {
            return fail(format!(
                "simulate.end_date '{}' is not a date (YYYY-MM-DD)",
                self.end_date
            ));
        }
        if !self.snapshot_at.is_empty() {
            if vigil_runtime::time::parse_date(&self.snapshot_at).is_none() {
                return fail(format!(
                    "simulate.snapshot_at '{}' is not a date (YYYY-MM-DD)",
                    self.snapshot_at
                ));
            }
            if self.output != Output::Cdc {
                return fail(
                    "simulate.snapshot_at takes change events: set simulate.output = \"cdc\""
                        .into(),
                );
            }
        }
        if matches!(self.pace, Pace::Rate | Pace::Live) && self.rate == 0 {
            return fail("simulate.rate must be at least 1 event/s".into());
        }
        self.defects.validate()?;
        if !self.output_file.is_empty() && self.output != Output::Cdc {
            return fail(
                "simulate.output_file takes change events: set simulate.output = \"cdc\"".into(),
            );
        }
        if self.pace == Pace::Compressed && self.compress_into.is_zero() {
            return fail("simulate.compress_into must be longer than zero".into());
        }
        Ok(())
    }

    /// When the initial snapshot is taken (the end of `snapshot_at`), if one is.
    pub fn snapshot_ms(&self) -> Option<i64> {
        vigil_runtime::time::parse_date(&self.snapshot_at)
            .map(|day| (day as i64 + 1) * vigil_runtime::time::MS_PER_DAY)
    }

    /// The simulated span as (start, end) in ms since the epoch.
    pub fn span_ms(&self) -> (i64, i64) {
        let end = vigil_runtime::time::parse_date(&self.end_date)
            .map(|day| (day as i64 + 1) * vigil_runtime::time::MS_PER_DAY)
            .unwrap_or_else(vigil_runtime::time::now_ms);
        (end - self.span.as_millis() as i64, end)
    }
}
