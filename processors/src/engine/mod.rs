//! The processor's pure core: (partition state, input) -> (new state, outputs). No I/O here; the
//! runner feeds events, acknowledgements and watermark advances in, and ships the alerts and
//! patient-status rows that come out.
//!
//! Event time rules: every observation is placed by its source event time, so a late lab never
//! overwrites a newer one; rules look at the latest value of each kind. Each hospital has its own
//! clock in a partition ([`Clock`]): its edge uploads at its own pace, so one hospital a day
//! behind, or back-filling two years, never makes another's events late nor fires another's
//! timers. Timers (missed follow-up, re-visit due, re-notification) fire when the watermark of
//! the patient's hospital passes them. Events older than their hospital's watermark minus the
//! allowed lateness are not applied: the runner sends them to the late-events topic.

mod alerts;
pub mod merge;
mod observe;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use vigil_schemas::validate;
use vigil_schemas::{
    Alert, AlertAck, ClinicalEvent, Operation, PatientStatus, Payload, SourcePosition,
};

use crate::rules::RuleSet;
use crate::state::{event_hash, patient_key, Evidence, Patient, PatientKey, TimerKind};

pub use status::{period_bounds, PeriodRef};

/// Settings of the clinical engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Reporting time zone as minutes east of UTC; periods (month, quarter, year) follow it.
    #[serde(default = "default_utc_offset")]
    pub reporting_utc_offset_minutes: i32,
    /// The metric definition (name and version) status rows follow, written on every row.
    #[serde(default)]
    pub definition: Definition,
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
/// Versions of Vigil's reading of the national basic public health service standard (3rd
/// edition, 2017). A version's meaning is fixed by this code; changing what counts makes a new
/// version, so every status row says which reading produced it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Definition {
    /// Managed: enrolled in the condition's programme (patient master or register).
    #[default]
    #[serde(rename = "cn-nbphs-2017/v1")]
    NbphsV1,
    /// Managed: enrolled, or a qualifying diagnosis (I10–I15, E10–E14) plus at least one of
    /// the programme's follow-up forms, from when both exist; for hospitals that record no
    /// enrolment. Everything else as v1.
    #[serde(rename = "cn-nbphs-2017/v2")]
    NbphsV2,
}

impl Definition {
    pub fn id(self) -> &'static str {
        match self {
            Definition::NbphsV1 => "cn-nbphs-2017/v1",
            Definition::NbphsV2 => "cn-nbphs-2017/v2",
        }
    }

    /// What counts as evidence of management.
    pub fn evidence(self) -> Evidence {
        match self {
            Definition::NbphsV1 => Evidence::Enrolment,
            Definition::NbphsV2 => Evidence::EnrolmentOrDiagnosisWithFollowUp,
        }
    }
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
            definition: Definition::default(),
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
    /// The very event was applied before (an edge's replay after a crash): nothing changes.
    Replayed,
    /// Not acceptable under the canonical event contract (`vigil_schemas::validate`).
    Rejected(validate::Invalid),
}

/// Rules plus settings: shared by every partition.
pub struct Engine {
    pub rules: RuleSet,
    pub config: EngineConfig,
    index: alerts::RuleIndex,
}

/// One hospital's event time in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Event time up to which the hospital's input is complete; `i64::MIN` before its first
    /// live event.
    pub watermark_ms: i64,
    pub max_event_ms: i64,
    /// Month (year * 12 + month - 1) the watermark is in: period rows open when it moves.
    pub period_month: Option<i32>,
}

impl Clock {
    pub const START: Clock = Clock {
        watermark_ms: i64::MIN,
        max_event_ms: i64::MIN,
        period_month: None,
    };
}

/// Timers due, in due order.
type TimerQueue = BTreeSet<(i64, PatientKey, TimerKind)>;

/// Everything one input partition owns. Moves with the partition between instances.
#[derive(Default)]
pub struct PartitionState {
    pub patients: FxHashMap<PatientKey, Patient>,
    /// Per hospital (the patient's managing hospital): its clock decides when they fire.
    timers: BTreeMap<Arc<str>, TimerQueue>,
    /// Per hospital sending events to this partition.
    clocks: BTreeMap<Arc<str>, Clock>,
    dirty_status: FxHashMap<PatientKey, Vec<status::DirtyPeriod>>,
    changed: FxHashSet<PatientKey>,
    interner: FxHashSet<Arc<str>>,
    /// The last input position applied per source (an edge's input partition, per hospital).
    sources: BTreeMap<SourceKey, i64>,
    /// Events to send to the clinical-events topic: the facts a merge moved to the surviving
    /// patient (see `merge`). Sent with the next checkpoint, before it commits.
    forwarded: Vec<ClinicalEvent>,
}

/// One edge input partition as seen by one hospital's events: an edge releases each in offset
/// order, so a position at or below the last one applied is a replay.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SourceKey {
    hospital: Arc<str>,
    topic: Arc<str>,
    partition: i32,
}

/// How far a partition has applied one source: what a checkpoint records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    pub hospital: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl PartitionState {
    pub fn new() -> Self {
        PartitionState::default()
    }

    /// Rebuilds a partition from restored patients and their hospitals' clocks.
    pub fn restore(
        patients: FxHashMap<PatientKey, Patient>,
        clocks: impl IntoIterator<Item = (String, Clock)>,
        sources: impl IntoIterator<Item = SourceProgress>,
    ) -> Self {
        let mut state = PartitionState::default();
        for (hospital, clock) in clocks {
            let hospital = state.intern(&hospital);
            state.clocks.insert(hospital, clock);
        }
        for source in sources {
            let key = SourceKey {
                hospital: state.intern(&source.hospital),
                topic: state.intern(&source.topic),
                partition: source.partition,
            };
            state.sources.insert(key, source.offset);
        }
        for (key, mut patient) in patients {
            patient.hospital = state.intern(&patient.hospital);
            patient.region = state.intern(&patient.region);
            for episode in &mut patient.episodes {
                episode.hospital = state.intern(&episode.hospital);
                episode.rule_id = state.intern(&episode.rule_id);
            }
            let queue = state.timers.entry(patient.hospital.clone()).or_default();
            for (kind, due) in &patient.timers {
                queue.insert((*due, key, *kind));
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
            + self.timer_count() * timer
    }

    pub fn timer_count(&self) -> usize {
        self.timers.values().map(BTreeSet::len).sum()
    }

    /// The clock of a hospital ([`Clock::START`] before its first live event).
    pub fn clock(&self, hospital: &str) -> Clock {
        self.clocks.get(hospital).copied().unwrap_or(Clock::START)
    }

    /// Every hospital's clock, by hospital id: what a checkpoint records.
    pub fn clocks(&self) -> impl Iterator<Item = (&str, Clock)> {
        self.clocks.iter().map(|(h, c)| (&**h, *c))
    }

    /// Whether the input record at `source` was applied before (at or below the last position
    /// applied from its source); otherwise it becomes the last position.
    pub fn passed(&mut self, hospital: &str, source: &SourcePosition) -> bool {
        let key = SourceKey {
            hospital: self.intern(hospital),
            topic: self.intern(&source.topic),
            partition: source.partition,
        };
        match self.sources.get_mut(&key) {
            Some(last) if source.offset <= *last => true,
            Some(last) => {
                *last = source.offset;
                false
            }
            None => {
                self.sources.insert(key, source.offset);
                false
            }
        }
    }

    /// Every source's last position applied.
    pub fn sources(&self) -> impl Iterator<Item = SourceProgress> + '_ {
        self.sources.iter().map(|(key, offset)| SourceProgress {
            hospital: key.hospital.to_string(),
            topic: key.topic.to_string(),
            partition: key.partition,
            offset: *offset,
        })
    }

    /// Patients changed since the last call: what the next changelog delta must carry.
    pub fn take_changed(&mut self) -> Vec<PatientKey> {
        let mut keys: Vec<PatientKey> = self.changed.drain().collect();
        keys.sort_unstable();
        keys
    }

    /// The events a merge moved, to send on (drained).
    pub fn take_forwarded(&mut self) -> Vec<ClinicalEvent> {
        std::mem::take(&mut self.forwarded)
    }

    /// Drops the status rows and forwarded facts pending: what a backtest, which sends
    /// nothing, does with them.
    pub fn discard_outputs(&mut self) {
        self.dirty_status.clear();
        self.changed.clear();
        self.forwarded.clear();
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
        let queue = self.timers.entry(patient.hospital.clone()).or_default();
        if let Some(pos) = patient.timers.iter().position(|(k, _)| *k == kind) {
            let (_, old) = patient.timers.remove(pos);
            queue.remove(&(old, key, kind));
        }
        if let Some(due) = due {
            patient.timers.push((kind, due));
            queue.insert((due, key, kind));
        }
    }

    /// A registration moved the patient to another hospital: its clock runs their timers now.
    fn move_timers(&mut self, key: PatientKey, from: &Arc<str>) {
        let Some(patient) = self.patients.get(&key) else {
            return;
        };
        if **from == *patient.hospital || patient.timers.is_empty() {
            return;
        }
        let to = patient.hospital.clone();
        for (kind, due) in patient.timers.clone() {
            if let Some(queue) = self.timers.get_mut(from) {
                queue.remove(&(due, key, kind));
            }
            self.timers
                .entry(to.clone())
                .or_default()
                .insert((due, key, kind));
        }
    }
}

/// Whether a snapshot row moves its hospital's clock: released by an edge in clinical-time
/// order, and stamped with a clinical time (every payload but the patient master's).
fn moves_clock_as_snapshot(event: &ClinicalEvent) -> bool {
    event
        .source
        .as_ref()
        .is_some_and(|source| source.is_ordered_snapshot())
        && !stamped_only(event)
}

/// A snapshot's registration: its time is the snapshot's stamp, not when anything happened.
fn stamped_only(event: &ClinicalEvent) -> bool {
    event.operation == Operation::Snapshot
        && matches!(event.payload, Payload::PatientRegistration(_))
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
        // An edge killed before committing sends again what it had sent, any amount of it: its
        // source position says so exactly; without one, the patient's recent event ids do.
        if let Some(source) = &event.source {
            if state.passed(&event.hospital_id, source) {
                return Disposition::Replayed;
            }
        }
        let time = event.event_time_ms;
        let id = event_hash(&event.event_id);
        if state.patients.get(&key).is_some_and(|p| p.applied(id)) {
            return Disposition::Replayed;
        }
        let hospital = state.intern(&event.hospital_id);
        // A snapshot row (Debezium's initial load, op = r) states what the source already held,
        // not what just happened: it is applied by its clinical time and is never late. Only
        // the rows an edge released in clinical-time order move the clock (so the history's
        // timers fire as they would have streamed); a registration among them carries the
        // snapshot's stamp, not a clinical time, and other snapshot rows come in no order.
        let snapshot = event.operation == Operation::Snapshot;
        if !snapshot || moves_clock_as_snapshot(event) {
            let allowed_ms = self.config.allowed_lateness.as_millis() as i64;
            let clock = match state.clocks.get_mut(&hospital) {
                Some(clock) => clock,
                None => state.clocks.entry(hospital.clone()).or_insert(Clock::START),
            };
            if !snapshot && clock.watermark_ms != i64::MIN && time < clock.watermark_ms - allowed_ms
            {
                return Disposition::Late;
            }
            // The watermark moves with every event, and timers it passes fire before the event
            // is applied: what fires depends only on the sequence of events, never on how the
            // runner happened to batch them (a replay after a crash must reproduce the same
            // alerts).
            clock.max_event_ms = clock.max_event_ms.max(time);
            let watermark =
                clock.max_event_ms - self.config.max_out_of_orderness.as_millis() as i64;
            if watermark > clock.watermark_ms {
                self.advance_clock(state, &hospital, watermark, alerts);
            }
        }
        let known = state.patients.contains_key(&key);
        // When the patient's records start: its earliest fact (a snapshot's registration
        // carries the snapshot's stamp, not a fact's time).
        let seen = if stamped_only(event) { i64::MAX } else { time };
        let patient = state.patients.entry(key).or_insert_with(|| Patient {
            hospital: hospital.clone(),
            region: Arc::from(""),
            first_seen_ms: seen,
            ..Patient::default()
        });
        let records_reach_back = seen < patient.first_seen_ms;
        patient.first_seen_ms = patient.first_seen_ms.min(seen);
        patient.remember(id);
        if let Payload::PatientMerge(merge) = &event.payload {
            self.apply_merge(state, key, event, &merge.surviving_pseudonym, alerts);
            return Disposition::Applied;
        }
        let managed_by = patient.hospital.clone();
        let span = status::ManagementSpan::of(patient);
        let evidence = self.config.definition.evidence();
        let change = observe::apply(patient, event, evidence, &mut state.interner);
        state.changed.insert(key);
        // A replay, or a version older than the one held, changes nothing.
        if !(change.no_effect && known) {
            patient.version += 1;
            state.move_timers(key, &managed_by);
            alerts::on_change(self, state, key, event, &change, alerts);
            // A snapshot's registration has no period of its own (its stamp is not a clinical
            // time): its patient's rows open with the hospital's periods and its facts.
            if !stamped_only(event) {
                status::mark_dirty_for_event(self, state, key, time, change.follow_up.is_some());
            }
            status::mark_shrunk_management(self, state, key, span);
        }
        if records_reach_back {
            alerts::watch_from_first_fact(self, state, key, event, alerts);
        }
        Disposition::Applied
    }

    /// The patient was merged into `surviving`: their facts move there (as events the runner
    /// sends on), they stop being counted, and their open episodes close.
    fn apply_merge(
        &self,
        state: &mut PartitionState,
        key: PatientKey,
        event: &ClinicalEvent,
        surviving: &str,
        alerts: &mut Vec<Alert>,
    ) {
        let Some(patient) = state.patients.get_mut(&key) else {
            return;
        };
        if surviving.eq_ignore_ascii_case(&event.patient_pseudonym) {
            return;
        }
        let moved = merge::moved_facts(patient, event, surviving);
        let span = status::ManagementSpan::of(patient);
        merge::forget_facts(patient);
        patient.version += 1;
        state.forwarded.extend(moved);
        state.changed.insert(key);
        alerts::close_merged(self, state, key, event, alerts);
        status::mark_shrunk_management(self, state, key, span);
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

    /// Moves a hospital's watermark forward (never back) and fires the timers of its patients
    /// that it passes, in due order.
    pub fn advance_watermark(
        &self,
        state: &mut PartitionState,
        hospital: &str,
        to_ms: i64,
        alerts: &mut Vec<Alert>,
    ) {
        let hospital = state.intern(hospital);
        let clock = state.clocks.entry(hospital.clone()).or_insert(Clock::START);
        if to_ms > clock.watermark_ms {
            self.advance_clock(state, &hospital, to_ms, alerts);
        }
    }

    /// Sets a hospital's watermark (ahead of where it was) and fires what it passes.
    fn advance_clock(
        &self,
        state: &mut PartitionState,
        hospital: &Arc<str>,
        to_ms: i64,
        alerts: &mut Vec<Alert>,
    ) {
        if let Some(clock) = state.clocks.get_mut(hospital) {
            clock.watermark_ms = to_ms;
        }
        while let Some(queue) = state.timers.get_mut(hospital) {
            let Some(&(due, key, kind)) = queue.first().filter(|(due, ..)| *due <= to_ms) else {
                break;
            };
            queue.remove(&(due, key, kind));
            if let Some(patient) = state.patients.get_mut(&key) {
                patient.timers.retain(|(k, d)| !(*k == kind && *d == due));
                patient.version += 1;
                state.changed.insert(key);
                alerts::on_timer(self, state, key, kind, due, alerts);
            }
        }
        status::advance_periods(self, state, hospital);
    }

    /// The watermark implied by the newest event time seen from a hospital.
    pub fn event_time_watermark(&self, state: &PartitionState, hospital: &str) -> i64 {
        let newest = state.clock(hospital).max_event_ms;
        if newest == i64::MIN {
            return i64::MIN;
        }
        newest - self.config.max_out_of_orderness.as_millis() as i64
    }

    /// Patient-status rows for everything changed since the last call.
    pub fn drain_status(&self, state: &mut PartitionState, out: &mut Vec<PatientStatus>) {
        status::drain(self, state, out);
    }
}

#[cfg(test)]
mod tests;
