//! Patient status per condition and reporting period, as the pilot metrics need it
//! (../shared/design/CLINICAL.md, national basic public health service standard, 3rd ed.).
//!
//! Definition `cn-nbphs-2017/v1`:
//! * managed: enrolled in the condition's programme before the period ends and alive at its start;
//! * follow-ups: face-to-face (clinic or home) follow-ups for the condition in the period;
//! * standardised: face-to-face follow-ups this calendar year up to the period's end reach the
//!   number of quarters elapsed (4 for the year: "at least 4 a year, roughly quarterly");
//! * controlled: the latest follow-up in the period met the target (hypertension: SBP < 140 and
//!   DBP < 90; diabetes: fasting glucose < 7.0 mmol/L); no follow-up or no measurement counts as
//!   not controlled;
//! * new complications: first diagnoses in the period (cardiovascular for hypertension; also
//!   diabetic for diabetes); managed days: days of the period under management, for patient-years;
//! * grade: BP grade of the latest reading before the period's end and, for hypertension, the
//!   cardiovascular risk level (China guideline 2018).
//!
//! Rows are emitted when something about the patient changes and, for every managed patient, when
//! the watermark opens a new month, quarter or year, so a period's denominator is complete.

use std::sync::{Arc, OnceLock};

use vigil_runtime::time::{civil_from_days, days_from_civil, local_day, local_day_start_ms};
use vigil_schemas::ids::stable_id;
use vigil_schemas::{Condition, PatientStatus, PeriodKind, RiskLevel, Sex};

use super::{Engine, PartitionState};
use crate::clinical::{age_band, bp_grade, cardiovascular_risk, Complication, RiskInputs};
use crate::state::{Patient, PatientKey};

const DAY_MS: i64 = 86_400_000;
/// Hypertension target of definition v1: SBP < 140 and DBP < 90 mmHg.
const BP_TARGET: (f64, f64) = (140.0, 90.0);
/// Diabetes target of definition v1: fasting glucose < 7.0 mmol/L.
const FPG_TARGET: f64 = 7.0;
/// A watermark jump opens at most this many months of rows at once (an idle partition waking up
/// after a long pause, or a first run over old data).
const MAX_MONTHS_OPENED: i32 = 36;

/// One (condition, period) of one patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodRef {
    pub condition: Condition,
    pub kind: PeriodKind,
    /// First day of the period (days since 1970-01-01, reporting zone).
    pub start_day: i32,
}

/// A period waiting for its row, with the row's substance computed when the period was last
/// marked, from the patient as the events so far left it. Bounded histories may prune what a row
/// counted before the row is emitted (a follow-up of last January, once this year's arrive), so
/// nothing is computed at emission: the row is a function of the sequence of events alone, never
/// of when checkpoints happen to emit it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyPeriod {
    pub period: PeriodRef,
    pub facts: StatusFacts,
}

/// What a status row says about one patient, condition and period, apart from who and which
/// period (those come from the key and the [`PeriodRef`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusFacts {
    pub version: u32,
    pub hospital: Arc<str>,
    pub region: Arc<str>,
    /// The managing department of the condition, when known.
    pub department: Option<Arc<str>>,
    pub managed: bool,
    pub managed_since_ms: i64,
    pub managed_days: i32,
    pub follow_ups: i32,
    pub follow_ups_ytd: i32,
    pub standardised: bool,
    pub controlled: bool,
    pub last_follow_up_ms: Option<i64>,
    pub last_bp: Option<(f64, f64)>,
    pub last_fasting_glucose: Option<f64>,
    pub new_complications: i32,
    pub has_complications: bool,
    pub bp_grade: i32,
    pub risk_level: RiskLevel,
    pub age_band: &'static str,
    pub sex: Sex,
    pub event_time_ms: i64,
}

/// [start, end) days of the period of `kind` that contains `day`.
pub fn period_bounds(day: i32, kind: PeriodKind) -> (i32, i32) {
    // Every event marks several periods: a table of month starts spares the calendar
    // arithmetic for the dates a pilot sees (1900-2199); others take the arithmetic.
    let starts = month_starts();
    let Some(month) = month_of(starts, day) else {
        return period_bounds_by_calendar(day, kind);
    };
    let first = match kind {
        PeriodKind::Month => month,
        PeriodKind::Quarter => month - month % 12 % 3,
        PeriodKind::Year => month - month % 12,
    };
    let length = match kind {
        PeriodKind::Month => 1,
        PeriodKind::Quarter => 3,
        PeriodKind::Year => 12,
    };
    (starts[first], starts[first + length])
}

/// The months the table covers, from January 1900.
const TABLE_FIRST_YEAR: i32 = 1900;
const TABLE_MONTHS: usize = 300 * 12;

/// First days of the months the table covers, and of the year after (so that every period of
/// a covered month ends inside the table).
fn month_starts() -> &'static [i32] {
    static STARTS: OnceLock<Vec<i32>> = OnceLock::new();
    STARTS.get_or_init(|| {
        (0..=TABLE_MONTHS as i32 + 12)
            .map(|m| days_from_civil(TABLE_FIRST_YEAR + m / 12, (m % 12 + 1) as u32, 1))
            .collect()
    })
}

/// The table index of the month containing `day`, if the table covers its year.
fn month_of(starts: &[i32], day: i32) -> Option<usize> {
    if day < starts[0] || day >= starts[TABLE_MONTHS] {
        return None;
    }
    // 4,800 months in 146,097 days (the Gregorian cycle): a guess off by at most one.
    let mut month = (i64::from(day - starts[0]) * 4_800 / 146_097) as usize;
    while starts[month] > day {
        month -= 1;
    }
    while starts[month + 1] <= day {
        month += 1;
    }
    Some(month)
}

/// [`period_bounds`] by calendar arithmetic, for any day.
fn period_bounds_by_calendar(day: i32, kind: PeriodKind) -> (i32, i32) {
    let (year, month, _) = civil_from_days(day);
    match kind {
        PeriodKind::Month => {
            let (ny, nm) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            (days_from_civil(year, month, 1), days_from_civil(ny, nm, 1))
        }
        PeriodKind::Quarter => {
            let first = (month - 1) / 3 * 3 + 1;
            let (ny, nm) = if first == 10 {
                (year + 1, 1)
            } else {
                (year, first + 3)
            };
            (days_from_civil(year, first, 1), days_from_civil(ny, nm, 1))
        }
        PeriodKind::Year => (days_from_civil(year, 1, 1), days_from_civil(year + 1, 1, 1)),
    }
}

fn month_index(day: i32) -> i32 {
    let (year, month, _) = civil_from_days(day);
    year * 12 + month as i32 - 1
}

fn month_start(index: i32) -> i32 {
    days_from_civil(index.div_euclid(12), (index.rem_euclid(12) + 1) as u32, 1)
}

/// Marks a period dirty, computing its row's substance from the patient as it is now.
fn mark(engine: &Engine, list: &mut Vec<DirtyPeriod>, patient: &Patient, period: PeriodRef) {
    let entry = DirtyPeriod {
        period,
        facts: facts(engine, patient, period),
    };
    match list.iter_mut().find(|d| d.period == period) {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
}

/// The instants a period spans in the reporting zone.
fn period_ms(start_day: i32, kind: PeriodKind, offset: i32) -> (i64, i64) {
    let (start, end) = period_bounds(start_day, kind);
    (
        local_day_start_ms(start, offset),
        local_day_start_ms(end, offset),
    )
}

/// Marks the periods an event at `time_ms` affects. A follow-up also changes the year-to-date
/// counts of the later periods of its year that are already open.
pub fn mark_dirty_for_event(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    time_ms: i64,
    follow_up: bool,
) {
    let offset = engine.config.reporting_utc_offset_minutes;
    let day = local_day(time_ms, offset);
    let Some(patient) = state.patients.get(&key) else {
        return;
    };
    let watermark = state.clock(&patient.hospital).watermark_ms;
    let open_until = if watermark == i64::MIN {
        day
    } else {
        local_day(watermark, offset).max(day)
    };
    let mut periods: Vec<PeriodRef> = Vec::new();
    for (condition, _) in patient.programmes() {
        for kind in PeriodKind::ALL {
            periods.push(PeriodRef {
                condition,
                kind,
                start_day: period_bounds(day, kind).0,
            });
        }
        if follow_up {
            let (_, year_end) = period_bounds(day, PeriodKind::Year);
            for kind in [PeriodKind::Month, PeriodKind::Quarter] {
                let mut start = period_bounds(day, kind).1;
                while start < year_end && start <= open_until {
                    periods.push(PeriodRef {
                        condition,
                        kind,
                        start_day: start,
                    });
                    start = period_bounds(start, kind).1;
                }
            }
        }
    }
    periods.retain(|period| {
        let (start_ms, end_ms) = period_ms(period.start_day, period.kind, offset);
        patient.managed_during(period.condition, start_ms, end_ms)
    });
    if periods.is_empty() {
        return;
    }
    let entry = state.dirty_status.entry(key).or_default();
    for period in periods {
        mark(engine, entry, patient, period);
    }
}

/// When a patient's management began per condition, and their death: what decides whether, and
/// for how many days, a period counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagementSpan {
    since: [Option<i64>; 2],
    death: Option<i64>,
}

impl ManagementSpan {
    pub fn of(patient: &Patient) -> ManagementSpan {
        ManagementSpan {
            since: Condition::ALL.map(|c| patient.managed_since(c)),
            death: patient.death_ms,
        }
    }

    fn since(&self, condition: Condition) -> Option<i64> {
        self.since[Condition::ALL
            .iter()
            .position(|c| *c == condition)
            .unwrap_or(0)]
    }

    /// Whether [start, end) counts the patient as managed for the condition, and for how
    /// many days (rounded up).
    fn within(&self, condition: Condition, start_ms: i64, end_ms: i64) -> (bool, i32) {
        let Some(since) = self.since(condition) else {
            return (false, 0);
        };
        if since >= end_ms || self.death.is_some_and(|d| d < start_ms) {
            return (false, 0);
        }
        let from = since.max(start_ms);
        let to = self.death.map_or(end_ms, |d| d.min(end_ms));
        (true, (((to - from).max(0) + DAY_MS - 1) / DAY_MS) as i32)
    }
}

/// After a change that shrank the patient's management (an enrolment or qualifying diagnosis
/// retracted or moved later, a death recorded after the fact), the periods that counted them
/// and now count them otherwise are computed again: their rows would go on counting the
/// patient. Periods the change adds are left to the events and the clock, as before.
pub fn mark_shrunk_management(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    before: ManagementSpan,
) {
    let offset = engine.config.reporting_utc_offset_minutes;
    let Some(patient) = state.patients.get(&key) else {
        return;
    };
    let after = ManagementSpan::of(patient);
    if after == before {
        return;
    }
    let watermark = state.clock(&patient.hospital).watermark_ms;
    let open_day = local_day(watermark.max(patient.last_event_ms), offset);
    let mut periods = Vec::new();
    for condition in Condition::ALL {
        let Some(since) = before.since(condition) else {
            continue;
        };
        for kind in PeriodKind::ALL {
            let mut start = period_bounds(local_day(since, offset), kind).0;
            while start <= open_day {
                let (start_ms, end_ms) = period_ms(start, kind, offset);
                let was = before.within(condition, start_ms, end_ms);
                if was.0 && was != after.within(condition, start_ms, end_ms) {
                    periods.push(PeriodRef {
                        condition,
                        kind,
                        start_day: start,
                    });
                }
                start = period_bounds(start, kind).1;
            }
        }
    }
    if periods.is_empty() {
        return;
    }
    let entry = state.dirty_status.entry(key).or_default();
    for period in periods {
        mark(engine, entry, patient, period);
    }
}

/// Opens the month (and quarter, year) a hospital's watermark moved into: every patient it
/// manages gets a row, so denominators count patients without events too.
pub fn advance_periods(engine: &Engine, state: &mut PartitionState, hospital: &Arc<str>) {
    let Some(clock) = state.clocks.get_mut(hospital) else {
        return;
    };
    if clock.watermark_ms == i64::MIN {
        return;
    }
    let offset = engine.config.reporting_utc_offset_minutes;
    let day = local_day(clock.watermark_ms, offset);
    let current = month_index(day);
    let previous = clock.period_month;
    if previous.is_some_and(|previous| current <= previous) {
        return;
    }
    clock.period_month = Some(current);
    // The periods to open: the first watermark opens the month, quarter and year it is in (the
    // patients registered before it, a snapshot's all, get their rows); a later one each month
    // it passed, with the quarter and year that start there.
    let mut opened: Vec<(i32, PeriodKind)> = Vec::new();
    match previous {
        None => {
            for kind in PeriodKind::ALL {
                opened.push((period_bounds(day, kind).0, kind));
            }
        }
        Some(previous) => {
            for month in (previous + 1).max(current - MAX_MONTHS_OPENED + 1)..=current {
                let start = month_start(month);
                for kind in PeriodKind::ALL {
                    if period_bounds(start, kind).0 == start {
                        opened.push((start, kind));
                    }
                }
            }
        }
    }
    let managed_here = state
        .patients
        .iter()
        .filter(|(_, p)| Arc::ptr_eq(&p.hospital, hospital) || p.hospital == *hospital);
    for (key, patient) in managed_here {
        for (condition, _) in patient.programmes() {
            for &(start, kind) in &opened {
                let (start_ms, end_ms) = period_ms(start, kind, offset);
                if patient.managed_during(condition, start_ms, end_ms) {
                    let entry = state.dirty_status.entry(*key).or_default();
                    let period = PeriodRef {
                        condition,
                        kind,
                        start_day: start,
                    };
                    mark(engine, entry, patient, period);
                }
            }
        }
    }
}

/// Emits the rows of every dirty (patient, condition, period).
pub fn drain(engine: &Engine, state: &mut PartitionState, out: &mut Vec<PatientStatus>) {
    for (key, periods) in state.dirty_status.drain() {
        for dirty in periods {
            out.push(row(engine, &key, &dirty));
        }
    }
}

fn required_follow_ups(kind: PeriodKind, end_day: i32) -> i32 {
    match kind {
        PeriodKind::Year => 4,
        // Quarters elapsed by the end of the period (the last day is end_day - 1).
        PeriodKind::Quarter | PeriodKind::Month => {
            let (_, month, _) = civil_from_days(end_day - 1);
            month.div_ceil(3) as i32
        }
    }
}

fn relevant(condition: Condition, complication: Complication) -> bool {
    condition == Condition::Diabetes || complication.is_cardiovascular()
}

/// The substance of the status row of one patient for one condition and period.
pub fn facts(engine: &Engine, patient: &Patient, period: PeriodRef) -> StatusFacts {
    let offset = engine.config.reporting_utc_offset_minutes;
    let (start_day, end_day) = period_bounds(period.start_day, period.kind);
    let (start_ms, end_ms) = (
        local_day_start_ms(start_day, offset),
        local_day_start_ms(end_day, offset),
    );
    let year_start_ms = local_day_start_ms(period_bounds(start_day, PeriodKind::Year).0, offset);
    let condition = period.condition;
    let span = ManagementSpan::of(patient);
    let (managed, managed_days) = span.within(condition, start_ms, end_ms);

    let in_period = |t: i64| t >= start_ms && t < end_ms;
    // One pass over the follow-ups (time order): the period's, the year's up to the period's
    // end, and the period's latest.
    let (mut follow_ups, mut follow_ups_ytd, mut latest) = (0, 0, None);
    for follow_up in patient.follow_ups_for(condition) {
        if in_period(follow_up.time_ms) {
            latest = Some(follow_up);
            follow_ups += i32::from(follow_up.face_to_face);
        }
        if follow_up.face_to_face
            && follow_up.time_ms >= year_start_ms
            && follow_up.time_ms < end_ms
        {
            follow_ups_ytd += 1;
        }
    }
    let standardised = managed && follow_ups_ytd >= required_follow_ups(period.kind, end_day);
    let controlled = latest.is_some_and(|f| match condition {
        Condition::Hypertension => f
            .bp()
            .is_some_and(|(s, d)| s < BP_TARGET.0 && d < BP_TARGET.1),
        Condition::Diabetes => f.glucose().is_some_and(|g| g < FPG_TARGET),
    });

    let known = KnownComplications::of(patient, condition, start_ms, end_ms);
    let bp = patient
        .latest_bp_before(end_ms)
        .map(|r| (r.systolic, r.diastolic));
    let grade = bp.map_or(0, |(s, d)| bp_grade(s as f64, d as f64));
    let year = civil_from_days(start_day).0;
    let age = patient.age_in(year);
    let risk_level = match (condition, bp) {
        (Condition::Hypertension, Some(_)) => cardiovascular_risk(&RiskInputs {
            bp_grade: grade,
            age_risk_factor: age.is_some_and(|a| match patient.sex {
                Some(Sex::Female) => a >= 65,
                _ => a >= 55,
            }),
            diabetes: patient
                .managed_since(Condition::Diabetes)
                .is_some_and(|t| t < end_ms),
            diabetic_complications: known.diabetic_by_end,
            cardiovascular_disease: known.cardiovascular_by_end,
            egfr: patient
                .egfr
                .iter()
                .rev()
                .find(|r| r.time_ms < end_ms)
                .map(|r| f64::from(r.value)),
        }),
        _ => RiskLevel::NotAssessed,
    };

    StatusFacts {
        version: patient.version,
        hospital: patient.hospital.clone(),
        region: patient.region.clone(),
        department: patient.department(condition).cloned(),
        managed,
        managed_since_ms: patient.managed_since(condition).unwrap_or(start_ms),
        managed_days,
        follow_ups,
        follow_ups_ytd,
        standardised,
        controlled,
        last_follow_up_ms: latest.map(|f| f.time_ms),
        last_bp: latest.and_then(|f| f.bp()),
        last_fasting_glucose: latest.and_then(|f| f.glucose()),
        new_complications: known.new_in_period,
        has_complications: known.relevant_by_end,
        bp_grade: grade as i32,
        risk_level,
        age_band: age.map(age_band).unwrap_or_default(),
        sex: patient.sex.unwrap_or(Sex::Unknown),
        event_time_ms: patient.last_event_ms,
    }
}

/// What the complications recorded say about one condition and period.
struct KnownComplications {
    /// First diagnoses in the period relevant to the condition.
    new_in_period: i32,
    /// Known by the period's end: relevant to the condition, diabetic, cardiovascular.
    relevant_by_end: bool,
    diabetic_by_end: bool,
    cardiovascular_by_end: bool,
}

impl KnownComplications {
    fn of(patient: &Patient, condition: Condition, start_ms: i64, end_ms: i64) -> Self {
        let mut known = KnownComplications {
            new_in_period: 0,
            relevant_by_end: false,
            diabetic_by_end: false,
            cardiovascular_by_end: false,
        };
        for (kind, time) in patient
            .complications
            .iter()
            .filter_map(|c| c.kind().map(|k| (k, c.time_ms)))
        {
            let relevant = relevant(condition, kind);
            if relevant && time >= start_ms && time < end_ms {
                known.new_in_period += 1;
            }
            if time < end_ms {
                known.relevant_by_end |= relevant;
                known.cardiovascular_by_end |= kind.is_cardiovascular();
                known.diabetic_by_end |= !kind.is_cardiovascular();
            }
        }
        known
    }
}

/// The status row of a marked period.
pub fn row(engine: &Engine, key: &PatientKey, dirty: &DirtyPeriod) -> PatientStatus {
    let (period, facts) = (dirty.period, &dirty.facts);
    let pseudonym = hex::encode(key);
    let definition = engine.config.definition.id();
    PatientStatus {
        status_id: stable_id(&[
            pseudonym.as_bytes(),
            period.condition.as_str().as_bytes(),
            period.kind.as_str().as_bytes(),
            &period.start_day.to_le_bytes(),
            definition.as_bytes(),
        ]),
        version: facts.version as i64,
        definition: definition.to_string(),
        patient_pseudonym: pseudonym,
        hospital_id: facts.hospital.to_string(),
        region_code: facts.region.to_string(),
        department_code: facts.department.as_deref().unwrap_or_default().to_string(),
        condition: period.condition,
        period_kind: period.kind,
        period_start: period.start_day,
        managed: facts.managed,
        managed_since_ms: facts.managed_since_ms,
        managed_days: facts.managed_days,
        follow_ups: facts.follow_ups,
        follow_ups_ytd: facts.follow_ups_ytd,
        standardised: facts.standardised,
        controlled: facts.controlled,
        last_follow_up_ms: facts.last_follow_up_ms,
        last_systolic_mmhg: facts.last_bp.map(|b| b.0),
        last_diastolic_mmhg: facts.last_bp.map(|b| b.1),
        last_fasting_glucose_mmol_l: facts.last_fasting_glucose,
        new_complications: facts.new_complications,
        has_complications: facts.has_complications,
        bp_grade: facts.bp_grade,
        risk_level: facts.risk_level,
        age_band: facts.age_band.to_string(),
        sex: facts.sex,
        event_time_ms: facts.event_time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_bounds_from_the_table_are_the_calendars_for_every_day() {
        let table_from = days_from_civil(TABLE_FIRST_YEAR, 1, 1);
        let table_to = days_from_civil(TABLE_FIRST_YEAR + 300, 1, 1);
        let edges = [i32::MIN / 2, -1_000_000, -1, 0, 1, 1_000_000, i32::MAX / 2];
        let days = (table_from - 800..table_to + 800).chain(edges);
        for day in days {
            for kind in PeriodKind::ALL {
                let bounds = period_bounds(day, kind);
                assert_eq!(
                    bounds,
                    period_bounds_by_calendar(day, kind),
                    "{day} {kind:?}"
                );
                assert!(
                    bounds.0 <= day && day < bounds.1,
                    "{day} {kind:?} {bounds:?}"
                );
            }
        }
    }
}
