//! What the processor knows about each patient: enough history for every rule and metric, and
//! nothing more. Histories are ordered by event time and bounded, each entry remembers the record
//! it came from (so an update or a CDC delete can replace or retract exactly that record), and
//! the whole struct serialises compactly for the changelog.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vigil_schemas::{Condition, Sex};

use crate::clinical::Complication;

/// A patient pseudonym as 32 bytes (the hex HMAC decoded).
pub type PatientKey = [u8; 32];

/// Parses a 64-character hex pseudonym.
pub fn patient_key(pseudonym: &str) -> Option<PatientKey> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(pseudonym, &mut key).ok()?;
    Some(key)
}

/// A short hash of a source record id: unique enough within one patient's history.
pub fn record_hash(record_id: &str) -> u32 {
    // FNV-1a: stable across builds and platforms (the changelog persists it).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in record_id.as_bytes() {
        hash ^= *byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A timestamped value from one source record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub time_ms: i64,
    pub value: f32,
    pub record: u32,
}

/// A blood-pressure reading (vital signs or a follow-up).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BpReading {
    pub time_ms: i64,
    pub systolic: f32,
    pub diastolic: f32,
    pub record: u32,
}

/// A follow-up visit (随访) for one condition. Missing measurements are NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub time_ms: i64,
    pub record: u32,
    pub condition: Condition,
    pub face_to_face: bool,
    pub systolic: f32,
    pub diastolic: f32,
    pub fasting_glucose: f32,
}

impl FollowUp {
    /// The same clinical fact: condition, time, mode and values (whatever record carried it).
    pub fn same_fact(&self, other: &FollowUp) -> bool {
        self.condition == other.condition
            && self.time_ms == other.time_ms
            && self.face_to_face == other.face_to_face
            && self.systolic.to_bits() == other.systolic.to_bits()
            && self.diastolic.to_bits() == other.diastolic.to_bits()
            && self.fasting_glucose.to_bits() == other.fasting_glucose.to_bits()
    }

    pub fn bp(&self) -> Option<(f64, f64)> {
        (!self.systolic.is_nan() && !self.diastolic.is_nan())
            .then_some((self.systolic as f64, self.diastolic as f64))
    }

    pub fn glucose(&self) -> Option<f64> {
        (!self.fasting_glucose.is_nan()).then_some(self.fasting_glucose as f64)
    }
}

/// The first diagnosis of a complication.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComplicationRecord {
    pub complication: u8,
    pub time_ms: i64,
    pub record: u32,
}

impl ComplicationRecord {
    pub fn kind(&self) -> Option<Complication> {
        Complication::ALL.get(self.complication as usize).copied()
    }
}

/// An open alert episode: one rule for one patient (and subject, such as a condition or a
/// complication) from the breach that opened it until it resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Index of the rule in the rule set, and the rule's id (the index may change between
    /// rule-file versions; the id does not).
    pub rule: u16,
    pub rule_id: Arc<str>,
    /// 0, or the condition / complication the episode is about.
    pub subject: u8,
    /// Deterministic episode id (hex in alerts).
    pub id: [u8; 16],
    pub opened_ms: i64,
    pub last_notified_ms: i64,
    /// Number of alert records emitted for this episode so far.
    pub sequence: u16,
    pub acknowledged: bool,
    pub snoozed_until_ms: i64,
    /// Hospital that receives the alerts of this episode.
    pub hospital: Arc<str>,
}

/// A timer owned by a patient; the partition keeps an ordered index of all of them. Both kinds
/// name the rule (by index in the rule set) and the subject (condition) they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimerKind {
    /// A deadline of a timer rule: follow-up due (missed follow-up), re-visit due.
    Due { rule: u16, subject: u8 },
    /// Re-notify an unacknowledged timer-born episode.
    Renotify { rule: u16, subject: u8 },
}

impl TimerKind {
    pub fn rule(&self) -> u16 {
        match self {
            TimerKind::Due { rule, .. } | TimerKind::Renotify { rule, .. } => *rule,
        }
    }

    pub fn with_rule(self, rule: u16) -> TimerKind {
        match self {
            TimerKind::Due { subject, .. } => TimerKind::Due { rule, subject },
            TimerKind::Renotify { subject, .. } => TimerKind::Renotify { rule, subject },
        }
    }
}

/// Everything the processor keeps about one patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    /// Managing hospital (from registration; else the first hospital seen).
    pub hospital: Arc<str>,
    pub region: Arc<str>,
    pub sex: Option<Sex>,
    pub birth_year: i16,
    /// Programme enrolment time per condition: [hypertension, diabetes].
    pub enrolled_ms: [Option<i64>; 2],
    /// First qualifying diagnosis, and first programme follow-up form, per condition: the
    /// other evidence of management a definition may count.
    pub diagnosed_ms: [Option<i64>; 2],
    pub first_form_ms: [Option<i64>; 2],
    /// Under management since, per condition, by the evidence the definition counts
    /// ([`Patient::derive_management`]).
    pub managed_ms: [Option<i64>; 2],
    /// The managing department per condition: the department the latest qualifying diagnosis
    /// (by clinical time) names, and that time; what a pilot scoped to departments counts by.
    pub departments: [Option<(Arc<str>, i64)>; 2],
    pub registration_record: u32,
    /// Event time of the registration version applied: an older version arriving later (an
    /// edge replaying after a crash, a snapshot row re-read) must not undo a newer one.
    pub registration_ms: Option<i64>,
    pub death_ms: Option<i64>,
    /// The earliest time of the patient's facts (a snapshot's registration has none of its
    /// own); i64::MAX before the first.
    pub first_seen_ms: i64,
    /// Event time of the latest event applied (stamps patient-status rows).
    pub last_event_ms: i64,
    /// Increases with every change; versions the patient-status rows.
    pub version: u32,
    pub bp: Vec<BpReading>,
    pub glucose: Vec<Reading>,
    pub hba1c: Vec<Reading>,
    pub egfr: Vec<Reading>,
    pub follow_ups: Vec<FollowUp>,
    pub complications: Vec<ComplicationRecord>,
    pub episodes: Vec<Episode>,
    pub timers: Vec<(TimerKind, i64)>,
    /// Hashes of the ids of the latest events applied ([`RECENT_EVENTS`] of them): an edge that
    /// crashed before committing replays what it had sent, and applying a replayed older
    /// version again (a record's create after its correction) would revert the patient for a
    /// moment and raise alerts the uninterrupted run never raised.
    pub recent_events: Vec<u64>,
}

/// How many applied events per patient are remembered to recognise replays: an edge replays at
/// most what it produced since its last commit, a few events of any one patient.
pub const RECENT_EVENTS: usize = 16;

/// A stable 64-bit hash of an event id (FNV-1a): changelogs keep it across builds.
pub fn event_hash(event_id: &str) -> u64 {
    event_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Patient {
    /// Whether this exact event was applied already (a replay).
    pub fn applied(&self, event: u64) -> bool {
        self.recent_events.contains(&event)
    }

    /// Remembers an applied event, forgetting the oldest beyond [`RECENT_EVENTS`].
    pub fn remember(&mut self, event: u64) {
        if self.recent_events.len() >= RECENT_EVENTS {
            self.recent_events.remove(0);
        }
        self.recent_events.push(event);
    }
}

/// How many readings of each kind are kept (the rules need the latest and a baseline).
pub const BP_HISTORY: usize = 4;
pub const GLUCOSE_HISTORY: usize = 3;
pub const HBA1C_HISTORY: usize = 3;
/// eGFR keeps more: the KDIGO rule compares against a baseline months back.
pub const EGFR_HISTORY: usize = 6;

/// What counts as evidence that a patient is under management (see `engine::Definition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Enrolment,
    EnrolmentOrDiagnosisWithFollowUp,
}

pub fn condition_index(condition: Condition) -> usize {
    match condition {
        Condition::Hypertension => 0,
        Condition::Diabetes => 1,
    }
}

pub fn condition_from_index(index: u8) -> Option<Condition> {
    Condition::ALL.get(index as usize).copied()
}

/// Follow-ups older than this (against the newest) are dropped: status rows of the previous
/// year stay correctable for the allowed lateness, and nothing needs more.
pub const FOLLOW_UP_RETENTION_MS: i64 = 550 * 86_400_000;
/// At most this many follow-ups are kept (two conditions, monthly visits, 18 months).
pub const FOLLOW_UP_HISTORY: usize = 40;

impl Patient {
    /// When management of the condition began, by the definition in force.
    /// The department managing the condition, when a qualifying diagnosis named one.
    pub fn department(&self, condition: Condition) -> Option<&Arc<str>> {
        self.departments[condition_index(condition)]
            .as_ref()
            .map(|(department, _)| department)
    }

    pub fn managed_since(&self, condition: Condition) -> Option<i64> {
        self.managed_ms[condition_index(condition)]
    }

    /// Recomputes when management began from the evidence held: after every event, and after
    /// a restore (the definition may have changed since the state was written).
    pub fn derive_management(&mut self, evidence: Evidence) {
        for i in 0..self.managed_ms.len() {
            let by_evidence = match evidence {
                Evidence::Enrolment => None,
                Evidence::EnrolmentOrDiagnosisWithFollowUp => self.diagnosed_ms[i]
                    .zip(self.first_form_ms[i])
                    .map(|(diagnosed, form)| diagnosed.max(form)),
            };
            self.managed_ms[i] = match (self.enrolled_ms[i], by_evidence) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// Conditions the patient is under management for, with the time it began.
    pub fn programmes(&self) -> impl Iterator<Item = (Condition, i64)> + '_ {
        Condition::ALL
            .into_iter()
            .filter_map(|c| self.managed_since(c).map(|t| (c, t)))
    }

    pub fn is_managed(&self) -> bool {
        self.managed_ms.iter().any(Option::is_some)
    }

    /// Under management for the condition at some point in [from, to).
    /// Since when a missed follow-up is counted when none is held: management's start, or the
    /// patient's first fact if later (a programme joined years before the patient's records
    /// reach back is not years overdue). None before any fact: a snapshot's registrations come
    /// before its facts, and carry no time of their own.
    pub fn watched_since(&self, condition: Condition) -> Option<i64> {
        let managed = self.managed_since(condition)?;
        (self.first_seen_ms != i64::MAX).then(|| managed.max(self.first_seen_ms))
    }

    pub fn managed_during(&self, condition: Condition, from_ms: i64, to_ms: i64) -> bool {
        match self.managed_since(condition) {
            Some(enrolled) => enrolled < to_ms && self.death_ms.is_none_or(|d| d >= from_ms),
            None => false,
        }
    }

    pub fn alive_at(&self, time_ms: i64) -> bool {
        self.death_ms.is_none_or(|d| d > time_ms)
    }

    pub fn latest_bp(&self) -> Option<&BpReading> {
        self.bp.last()
    }

    pub fn latest_bp_before(&self, time_ms: i64) -> Option<&BpReading> {
        self.bp.iter().rev().find(|r| r.time_ms < time_ms)
    }

    pub fn latest_egfr(&self) -> Option<&Reading> {
        self.egfr.last()
    }

    pub fn has_complication(&self, complication: Complication) -> bool {
        self.complications
            .iter()
            .any(|c| c.complication == complication as u8)
    }

    pub fn timer(&self, kind: TimerKind) -> Option<i64> {
        self.timers
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, due)| *due)
    }

    /// Follow-ups for the condition, oldest first, each clinical fact once: the same form
    /// entered twice (same time and values under another record id, as when a nurse re-enters
    /// it) is one follow-up, not two. Both records stay, so deleting either keeps the other.
    pub fn follow_ups_for(
        &self,
        condition: Condition,
    ) -> impl DoubleEndedIterator<Item = &FollowUp> {
        let all = &self.follow_ups;
        all.iter().enumerate().filter_map(move |(i, f)| {
            // Entries are in time order: an earlier copy of the same fact sits just before.
            let repeated = all[..i]
                .iter()
                .rev()
                .take_while(|e| e.time_ms == f.time_ms)
                .any(|e| e.same_fact(f));
            (f.condition == condition && !repeated).then_some(f)
        })
    }

    pub fn episode(&self, rule: u16, subject: u8) -> Option<&Episode> {
        self.episodes
            .iter()
            .find(|e| e.rule == rule && e.subject == subject)
    }

    pub fn episode_mut(&mut self, rule: u16, subject: u8) -> Option<&mut Episode> {
        self.episodes
            .iter_mut()
            .find(|e| e.rule == rule && e.subject == subject)
    }

    /// Bytes this patient holds on the heap and in its map slot: the struct and the capacity of
    /// each history (interned texts are shared and not counted).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<PatientKey>()
            + size_of::<Patient>()
            + self.bp.capacity() * size_of::<BpReading>()
            + (self.glucose.capacity() + self.hba1c.capacity() + self.egfr.capacity())
                * size_of::<Reading>()
            + self.follow_ups.capacity() * size_of::<FollowUp>()
            + self.complications.capacity() * size_of::<ComplicationRecord>()
            + self.episodes.capacity() * size_of::<Episode>()
            + self.timers.capacity() * size_of::<(TimerKind, i64)>()
            + self.recent_events.capacity() * size_of::<u64>()
    }

    /// Age in whole years during `year`.
    pub fn age_in(&self, year: i32) -> Option<i32> {
        (self.birth_year > 0).then(|| year - self.birth_year as i32)
    }
}

/// Something stored in a time-ordered, record-addressed history.
pub trait Timed: Copy {
    fn time_ms(&self) -> i64;
    fn record(&self) -> u32;
    /// The same record with the same content, bit for bit (NaN equals NaN).
    fn same_as(&self, other: &Self) -> bool;
}

impl Timed for Reading {
    fn time_ms(&self) -> i64 {
        self.time_ms
    }
    fn record(&self) -> u32 {
        self.record
    }
    fn same_as(&self, other: &Self) -> bool {
        self.time_ms == other.time_ms
            && self.record == other.record
            && self.value.to_bits() == other.value.to_bits()
    }
}

impl Timed for BpReading {
    fn time_ms(&self) -> i64 {
        self.time_ms
    }
    fn record(&self) -> u32 {
        self.record
    }
    fn same_as(&self, other: &Self) -> bool {
        self.time_ms == other.time_ms
            && self.record == other.record
            && self.systolic.to_bits() == other.systolic.to_bits()
            && self.diastolic.to_bits() == other.diastolic.to_bits()
    }
}

impl Timed for FollowUp {
    fn time_ms(&self) -> i64 {
        self.time_ms
    }
    fn record(&self) -> u32 {
        self.record
    }
    fn same_as(&self, other: &Self) -> bool {
        self.record == other.record && self.same_fact(other)
    }
}

/// What storing or retracting an entry did to a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The entry is (upsert) or was (retract) the history's latest, and that changed the latest.
    pub latest: bool,
    /// The history is different now. An entry already held as it is, or one older than
    /// everything a full history keeps, changes nothing: an edge's replay must not count.
    pub changed: bool,
}

/// Inserts (or replaces, for the same record) an entry in event-time order and keeps the most
/// recent `capacity`.
pub fn upsert<T: Timed>(history: &mut Vec<T>, entry: T, capacity: usize) -> Stored {
    let held = history.iter().position(|e| e.record() == entry.record());
    match held {
        Some(i) if history[i].same_as(&entry) && history.len() <= capacity => {
            // Replacing it would put it back where it is unless a later entry has its time.
            let stays = history
                .get(i + 1)
                .is_none_or(|next| next.time_ms() > entry.time_ms());
            if stays {
                return Stored {
                    latest: i + 1 == history.len(),
                    changed: false,
                };
            }
        }
        None if history.len() == capacity
            && history
                .first()
                .is_some_and(|first| entry.time_ms() < first.time_ms()) =>
        {
            // Older than everything a full history keeps: it would go at once.
            return Stored {
                latest: false,
                changed: false,
            };
        }
        _ => {}
    }
    history.retain(|e| e.record() != entry.record());
    let mut at = history.partition_point(|e| e.time_ms() <= entry.time_ms());
    // A full history drops its oldest before the insert rather than after, and grows its
    // allocation only up to its bound: a `Vec` doubling past it held up to 60% more than the
    // entries kept, for every patient in memory.
    if history.len() >= capacity && at > 0 {
        history.remove(0);
        at -= 1;
    }
    if history.len() == history.capacity() {
        let target = (history.len() * 2).max(4).min(capacity);
        history.reserve_exact(target.saturating_sub(history.len()));
    }
    history.insert(at, entry);
    if history.len() > capacity {
        let excess = history.len() - capacity;
        history.drain(..excess);
    }
    Stored {
        latest: history
            .last()
            .is_some_and(|last| last.record() == entry.record()),
        changed: true,
    }
}

/// Removes the entry of a record.
pub fn retract<T: Timed>(history: &mut Vec<T>, record: u32) -> Stored {
    let was_latest = history.last().is_some_and(|e| e.record() == record);
    let before = history.len();
    history.retain(|e| e.record() != record);
    let changed = history.len() != before;
    Stored {
        latest: was_latest && changed,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(time_ms: i64, value: f32, record: u32) -> Reading {
        Reading {
            time_ms,
            value,
            record,
        }
    }

    fn latest(stored: Stored) -> bool {
        assert!(stored.changed);
        stored.latest
    }

    /// What `upsert` kept before it bounded its allocation: insert, then drop the oldest.
    fn upsert_by_insert_then_drop(history: &mut Vec<Reading>, entry: Reading, capacity: usize) {
        history.retain(|e| e.record != entry.record);
        let at = history.partition_point(|e| e.time_ms <= entry.time_ms);
        history.insert(at, entry);
        let excess = history.len().saturating_sub(capacity);
        history.drain(..excess);
    }

    #[test]
    fn bounded_histories_keep_the_same_entries_in_no_more_room_than_their_bound() {
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for capacity in [1, 3, 4, 6, 40] {
            let (mut bounded, mut reference) = (Vec::new(), Vec::new());
            for step in 0..5_000u32 {
                // Mostly newer readings, some late, some corrections of a recent record.
                let time = i64::from(step) * 10 - next(200) as i64;
                let record = if next(5) == 0 {
                    step.saturating_sub(next(8) as u32)
                } else {
                    step
                };
                let entry = r(time, step as f32, record);
                let stored = upsert(&mut bounded, entry, capacity);
                let before = reference.clone();
                upsert_by_insert_then_drop(&mut reference, entry, capacity);
                if stored.changed {
                    assert_eq!(bounded, reference, "capacity {capacity}, step {step}");
                } else {
                    // Nothing to change: the reference, which always rewrites, agrees.
                    assert_eq!(before, reference, "capacity {capacity}, step {step}");
                    reference = before;
                }
                assert!(
                    bounded.capacity() <= capacity.max(4),
                    "{}",
                    bounded.capacity()
                );
            }
        }
    }

    #[test]
    fn late_readings_never_overwrite_newer_ones() {
        let mut h = Vec::new();
        assert!(latest(upsert(&mut h, r(100, 1.0, 1), 3)));
        assert!(latest(upsert(&mut h, r(300, 3.0, 3), 3)));
        // Arrives late: stored in order, not the latest.
        assert!(!latest(upsert(&mut h, r(200, 2.0, 2), 3)));
        assert_eq!(
            h.iter().map(|x| x.value).collect::<Vec<_>>(),
            vec![1.0, 2.0, 3.0]
        );
        // Bounded: the oldest goes.
        assert!(latest(upsert(&mut h, r(400, 4.0, 4), 3)));
        assert_eq!(
            h.iter().map(|x| x.record).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn updates_replace_and_deletes_retract_by_record() {
        let mut h = vec![r(100, 1.0, 1), r(200, 2.0, 2)];
        // A correction of record 2 moves it in time and value.
        assert!(!latest(upsert(&mut h, r(50, 9.0, 2), 5)));
        assert_eq!(h, vec![r(50, 9.0, 2), r(100, 1.0, 1)]);
        assert!(latest(retract(&mut h, 1)));
        assert_eq!(h, vec![r(50, 9.0, 2)]);
        let absent = retract(&mut h, 77);
        assert!(!absent.latest && !absent.changed);
        // A duplicate delivery of the same record is idempotent.
        upsert(&mut h, r(50, 9.0, 2), 5);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn an_entry_held_as_it_is_or_older_than_a_full_history_changes_nothing() {
        let mut h = vec![r(100, 1.0, 1), r(200, f32::NAN, 2), r(300, 3.0, 3)];
        let kept = h.clone();
        let same = |a: &[Reading], b: &[Reading]| a.iter().zip(b).all(|(x, y)| x.same_as(y));
        // Held as it is, NaN included: not a change, and the latest is still the latest.
        let again = upsert(&mut h, r(300, 3.0, 3), 3);
        assert_eq!(
            again,
            Stored {
                latest: true,
                changed: false
            }
        );
        assert!(!upsert(&mut h, r(200, f32::NAN, 2), 3).changed);
        // Older than everything a full history keeps.
        assert!(!upsert(&mut h, r(50, 7.0, 9), 3).changed);
        assert!(same(&h, &kept) && h.len() == 3);
        // Same record, other content: a change.
        assert!(upsert(&mut h, r(200, 2.0, 2), 3).changed);
        // Same content behind an entry of the same time: it moves, so it counts as a change.
        let mut tied = vec![r(100, 1.0, 1), r(100, 2.0, 2)];
        assert!(upsert(&mut tied, r(100, 1.0, 1), 3).changed);
    }

    #[test]
    fn keys_and_hashes() {
        let hex = "3f9a1c0e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a0c2e4b6d8f0a";
        assert_eq!(patient_key(hex).unwrap()[0], 0x3f);
        assert!(patient_key("not hex").is_none());
        assert!(patient_key(&hex[..62]).is_none());
        assert_eq!(record_hash("lab/1"), record_hash("lab/1"));
        assert_ne!(record_hash("lab/1"), record_hash("lab/2"));
    }
}
