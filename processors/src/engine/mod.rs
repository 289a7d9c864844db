//! The processor's pure core: (partition state, input) -> (new state, outputs). No I/O here; the
//! runner feeds events, acknowledgements and watermark advances in, and ships the alerts and
//! patient-status rows that come out.
//!
//! Event time rules: every observation is placed by its source event time, so a late lab never
//! overwrites a newer one; rules look at the latest value of each kind. Timers (missed follow-up,
//! re-visit due, re-notification) fire when the partition's watermark passes them. Events older
//! than the watermark minus the allowed lateness are not applied: the runner sends them to the
//! late-events topic.

mod alerts;
mod observe;
mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use vigil_schemas::validate;
use vigil_schemas::{Alert, AlertAck, ClinicalEvent, Operation, PatientStatus};

use crate::rules::RuleSet;
use crate::state::{patient_key, Patient, PatientKey, TimerKind};

pub use status::{period_bounds, PeriodRef};

/// Settings of the clinical engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Reporting time zone as minutes east of UTC; periods (month, quarter, year) follow it.
    #[serde(default = "default_utc_offset")]
    pub reporting_utc_offset_minutes: i32,
    /// Name and version of the metric definition written on every patient-status row.
    #[serde(default = "default_definition")]
    pub definition: String,
    /// Events older than the watermark by more than this go to the late-events topic.
    #[serde(default = "default_allowed_lateness", with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// The watermark trails the newest event time by this much, so ordinary reordering between
    /// hospital systems does not count as late and timers do not fire early.
    #[serde(default = "default_out_of_orderness", with = "humantime_serde")]
    pub max_out_of_orderness: Duration,
}

/// China Standard Time (UTC+8, no daylight saving).
fn default_utc_offset() -> i32 {
    480
}
/// National basic public health service standard, 3rd edition (2017), Vigil's reading v1.
fn default_definition() -> String {
    "cn-nbphs-2017/v1".into()
}
/// Hospitals batch-upload late; two months also lets December's data settle before the annual
/// figures are read in February.
fn default_allowed_lateness() -> Duration {
    Duration::from_secs(60 * 86_400)
}
/// Systems of one hospital drift by minutes; between hospitals uploads lag by hours.
fn default_out_of_orderness() -> Duration {
    Duration::from_secs(6 * 3_600)
}
/// Clock skew at the edge; anything further ahead is a data error.
impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            reporting_utc_offset_minutes: default_utc_offset(),
            definition: default_definition(),
            allowed_lateness: default_allowed_lateness(),
            max_out_of_orderness: default_out_of_orderness(),
        }
    }
}

/// What became of one input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Applied,
    /// Older than the allowed lateness: not applied.
    Late,
    /// Not acceptable under the canonical event contract (`vigil_schemas::validate`).
    Rejected(validate::Invalid),
}

/// Rules plus settings: shared by every partition.
pub struct Engine {
    pub rules: RuleSet,
    pub config: EngineConfig,
    index: alerts::RuleIndex,
}

/// Everything one input partition owns. Moves with the partition between instances.
#[derive(Default)]
pub struct PartitionState {
    pub patients: FxHashMap<PatientKey, Patient>,
    timers: BTreeSet<(i64, PatientKey, TimerKind)>,
    /// Event time up to which the partition is complete; `i64::MIN` before the first event.
    pub watermark_ms: i64,
    pub max_event_ms: i64,
    /// Month (year * 12 + month - 1) the watermark is in: period rows open when it moves.
    pub period_month: Option<i32>,
    dirty_status: FxHashMap<PatientKey, Vec<status::DirtyPeriod>>,
    changed: FxHashSet<PatientKey>,
    interner: FxHashSet<Arc<str>>,
}

impl PartitionState {
    pub fn new() -> Self {
        PartitionState {
            watermark_ms: i64::MIN,
            max_event_ms: i64::MIN,
            ..PartitionState::default()
        }
    }

    /// Rebuilds a partition from restored patients and clocks.
    pub fn restore(
        patients: FxHashMap<PatientKey, Patient>,
        watermark_ms: i64,
        max_event_ms: i64,
        period_month: Option<i32>,
    ) -> Self {
        let mut state = PartitionState {
            watermark_ms,
            max_event_ms,
            period_month,
            ..PartitionState::default()
        };
        for (key, mut patient) in patients {
            patient.hospital = state.intern(&patient.hospital);
            patient.region = state.intern(&patient.region);
            for episode in &mut patient.episodes {
                episode.hospital = state.intern(&episode.hospital);
                episode.rule_id = state.intern(&episode.rule_id);
            }
            for (kind, due) in &patient.timers {
                state.timers.insert((*due, key, *kind));
            }
            state.patients.insert(key, patient);
        }
        state
    }

    pub fn patient(&self, key: &PatientKey) -> Option<&Patient> {
        self.patients.get(key)
    }

    pub fn len(&self) -> usize {
        self.patients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patients.is_empty()
    }

    /// Heap bytes of the patients' state (see `Patient::heap_bytes`), plus the timer index.
    pub fn heap_bytes(&self) -> usize {
        let timer = std::mem::size_of::<(i64, PatientKey, TimerKind)>();
        self.patients
            .values()
            .map(Patient::heap_bytes)
            .sum::<usize>()
            + self.timers.len() * timer
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Patients changed since the last call: what the next changelog delta must carry.
    pub fn take_changed(&mut self) -> Vec<PatientKey> {
        let mut keys: Vec<PatientKey> = self.changed.drain().collect();
        keys.sort_unstable();
        keys
    }

    pub fn has_pending_status(&self) -> bool {
        !self.dirty_status.is_empty()
    }

    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(existing) = self.interner.get(text) {
            return existing.clone();
        }
        let value: Arc<str> = Arc::from(text);
        self.interner.insert(value.clone());
        value
    }

    fn set_timer(&mut self, key: PatientKey, kind: TimerKind, due: Option<i64>) {
        let Some(patient) = self.patients.get_mut(&key) else {
            return;
        };
        if let Some(pos) = patient.timers.iter().position(|(k, _)| *k == kind) {
            let (_, old) = patient.timers.remove(pos);
            self.timers.remove(&(old, key, kind));
        }
        if let Some(due) = due {
            patient.timers.push((kind, due));
            self.timers.insert((due, key, kind));
        }
    }
}

impl Engine {
    pub fn new(rules: RuleSet, config: EngineConfig) -> Self {
        let index = alerts::RuleIndex::new(&rules);
        Engine {
            rules,
            config,
            index,
        }
    }

    /// Applies one clinical event. Alerts it raises or resolves are appended to `alerts`.
    pub fn apply_event(
        &self,
        state: &mut PartitionState,
        event: &ClinicalEvent,
        alerts: &mut Vec<Alert>,
    ) -> Disposition {
        if let Err(invalid) = validate::check_event(event) {
            return Disposition::Rejected(invalid);
        }
        let Some(key) = patient_key(&event.patient_pseudonym) else {
            return Disposition::Rejected(validate::Invalid {
                reason: validate::Reason::InvalidPseudonym,
                detail: "patient_pseudonym is not hex".into(),
            });
        };
        let time = event.event_time_ms;
        // A snapshot row (Debezium's initial load, op = r) states what the source already held,
        // not what just happened: it is applied by its clinical time, is never late, and never
        // moves the live watermark (one stamped "now" would make all history after it late).
        let snapshot = event.operation == Operation::Snapshot;
        if !snapshot
            && state.watermark_ms != i64::MIN
            && time < state.watermark_ms - self.config.allowed_lateness.as_millis() as i64
        {
            return Disposition::Late;
        }
        // The watermark moves with every event, and timers it passes fire before the event is
        // applied: what fires depends only on the sequence of events, never on how the runner
        // happened to batch them (a replay after a crash must reproduce the same alerts).
        if !snapshot {
            state.max_event_ms = state.max_event_ms.max(time);
            let watermark = self.event_time_watermark(state);
            if watermark > state.watermark_ms {
                self.advance_watermark(state, watermark, alerts);
            }
        }
        let hospital = state.intern(&event.hospital_id);
        let patient = state.patients.entry(key).or_insert_with(|| Patient {
            hospital: hospital.clone(),
            region: Arc::from(""),
            first_seen_ms: time,
            ..Patient::default()
        });
        patient.version += 1;
        let change = observe::apply(patient, event, &mut state.interner);
        state.changed.insert(key);
        alerts::on_change(self, state, key, event, &change, alerts);
        status::mark_dirty_for_event(self, state, key, time, change.follow_up.is_some());
        Disposition::Applied
    }

    /// Applies a clinician's acknowledgement, snooze or close. Returns false when no open
    /// episode matches (already resolved, or not this partition's patient).
    pub fn apply_ack(
        &self,
        state: &mut PartitionState,
        ack: &AlertAck,
        alerts: &mut Vec<Alert>,
    ) -> bool {
        alerts::apply_ack(self, state, ack, alerts)
    }

    /// Moves the watermark forward (never back) and fires the timers it passes, in due order.
    pub fn advance_watermark(
        &self,
        state: &mut PartitionState,
        to_ms: i64,
        alerts: &mut Vec<Alert>,
    ) {
        if to_ms <= state.watermark_ms {
            return;
        }
        state.watermark_ms = to_ms;
        while let Some(&(due, key, kind)) = state.timers.first() {
            if due > to_ms {
                break;
            }
            state.timers.remove(&(due, key, kind));
            if let Some(patient) = state.patients.get_mut(&key) {
                patient.timers.retain(|(k, d)| !(*k == kind && *d == due));
                patient.version += 1;
                state.changed.insert(key);
                alerts::on_timer(self, state, key, kind, due, alerts);
            }
        }
        status::advance_periods(self, state);
    }

    /// The watermark implied by the newest event time seen.
    pub fn event_time_watermark(&self, state: &PartitionState) -> i64 {
        if state.max_event_ms == i64::MIN {
            return i64::MIN;
        }
        state.max_event_ms - self.config.max_out_of_orderness.as_millis() as i64
    }

    /// Patient-status rows for everything changed since the last call.
    pub fn drain_status(&self, state: &mut PartitionState, out: &mut Vec<PatientStatus>) {
        status::drain(self, state, out);
    }
}

#[cfg(test)]
mod tests;
