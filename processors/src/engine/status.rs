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

/// A period waiting for its row, with the inputs that bounded histories may prune before the
/// row is emitted, captured when the period was last marked. The row then depends only on the
/// sequence of events, never on when checkpoints happen to emit it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirtyPeriod {
    pub period: PeriodRef,
    /// Latest blood pressure (systolic, diastolic) before the period's end.
    pub bp: Option<(f32, f32)>,
    /// Latest eGFR before the period's end.
    pub egfr: Option<f32>,
}

/// [start, end) days of the period of `kind` that contains `day`.
pub fn period_bounds(day: i32, kind: PeriodKind) -> (i32, i32) {
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

/// Marks a period dirty, capturing its pruneable inputs as they are now.
fn mark(list: &mut Vec<DirtyPeriod>, patient: &Patient, period: PeriodRef, end_ms: i64) {
    let entry = DirtyPeriod {
        period,
        bp: patient
            .latest_bp_before(end_ms)
            .map(|r| (r.systolic, r.diastolic)),
        egfr: patient
            .egfr
            .iter()
            .rev()
            .find(|r| r.time_ms < end_ms)
            .map(|r| r.value),
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
    let open_until = if state.watermark_ms == i64::MIN {
        day
    } else {
        local_day(state.watermark_ms, offset).max(day)
    };
    let Some(patient) = state.patients.get(&key) else {
        return;
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
    let mut marked = Vec::new();
    for period in periods {
        let (start_ms, end_ms) = period_ms(period.start_day, period.kind, offset);
        if patient.managed_during(period.condition, start_ms, end_ms) {
            marked.push((period, end_ms));
        }
    }
    if marked.is_empty() {
        return;
    }
    let entry = state.dirty_status.entry(key).or_default();
    for (period, end_ms) in marked {
        mark(entry, patient, period, end_ms);
    }
}

/// Opens the month (and quarter, year) the watermark moved into: every patient managed in it
/// gets a row, so denominators count patients without events too.
pub fn advance_periods(engine: &Engine, state: &mut PartitionState) {
    if state.watermark_ms == i64::MIN {
        return;
    }
    let offset = engine.config.reporting_utc_offset_minutes;
    let current = month_index(local_day(state.watermark_ms, offset));
    let Some(previous) = state.period_month else {
        state.period_month = Some(current);
        return;
    };
    if current <= previous {
        return;
    }
    state.period_month = Some(current);
    let first = (previous + 1).max(current - MAX_MONTHS_OPENED + 1);
    for month in first..=current {
        let start = month_start(month);
        let mut kinds = vec![PeriodKind::Month];
        if period_bounds(start, PeriodKind::Quarter).0 == start {
            kinds.push(PeriodKind::Quarter);
        }
        if period_bounds(start, PeriodKind::Year).0 == start {
            kinds.push(PeriodKind::Year);
        }
        for (key, patient) in &state.patients {
            for (condition, _) in patient.programmes() {
                for &kind in &kinds {
                    let (start_ms, end_ms) = period_ms(start, kind, offset);
                    if patient.managed_during(condition, start_ms, end_ms) {
                        let entry = state.dirty_status.entry(*key).or_default();
                        mark(
                            entry,
                            patient,
                            PeriodRef {
                                condition,
                                kind,
                                start_day: start,
                            },
                            end_ms,
                        );
                    }
                }
            }
        }
    }
}

/// Emits the rows of every dirty (patient, condition, period).
pub fn drain(engine: &Engine, state: &mut PartitionState, out: &mut Vec<PatientStatus>) {
    let dirty = std::mem::take(&mut state.dirty_status);
    for (key, periods) in dirty {
        let Some(patient) = state.patients.get(&key) else {
            continue;
        };
        for dirty in periods {
            out.push(compute(engine, &key, patient, &dirty));
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

/// The status row of one patient for one condition and period.
pub fn compute(
    engine: &Engine,
    key: &PatientKey,
    patient: &Patient,
    dirty: &DirtyPeriod,
) -> PatientStatus {
    let period = dirty.period;
    let offset = engine.config.reporting_utc_offset_minutes;
    let (start_day, end_day) = period_bounds(period.start_day, period.kind);
    let (start_ms, end_ms) = (
        local_day_start_ms(start_day, offset),
        local_day_start_ms(end_day, offset),
    );
    let year_start_ms = local_day_start_ms(period_bounds(start_day, PeriodKind::Year).0, offset);
    let condition = period.condition;
    let managed = patient.managed_during(condition, start_ms, end_ms);
    let enrolled = patient.enrolled(condition).unwrap_or(patient.first_seen_ms);
    let managed_from = enrolled.max(start_ms);
    let managed_to = patient.death_ms.map_or(end_ms, |d| d.min(end_ms));
    let managed_days = if managed {
        ((managed_to - managed_from).max(0) + DAY_MS - 1) / DAY_MS
    } else {
        0
    };

    let in_period = |t: i64| t >= start_ms && t < end_ms;
    let follow_ups = patient
        .follow_ups_for(condition)
        .filter(|f| f.face_to_face && in_period(f.time_ms))
        .count() as i32;
    let follow_ups_ytd = patient
        .follow_ups_for(condition)
        .filter(|f| f.face_to_face && f.time_ms >= year_start_ms && f.time_ms < end_ms)
        .count() as i32;
    let standardised = managed && follow_ups_ytd >= required_follow_ups(period.kind, end_day);
    let latest = patient
        .follow_ups_for(condition)
        .rfind(|f| in_period(f.time_ms));
    let controlled = latest.is_some_and(|f| match condition {
        Condition::Hypertension => f
            .bp()
            .is_some_and(|(s, d)| s < BP_TARGET.0 && d < BP_TARGET.1),
        Condition::Diabetes => f.glucose().is_some_and(|g| g < FPG_TARGET),
    });

    let complications = patient
        .complications
        .iter()
        .filter_map(|c| c.kind().map(|k| (k, c.time_ms)));
    let new_complications = complications
        .clone()
        .filter(|(k, t)| relevant(condition, *k) && in_period(*t))
        .count() as i32;
    let known_by_end: Vec<Complication> = complications
        .filter(|(_, t)| *t < end_ms)
        .map(|(k, _)| k)
        .collect();
    let has_complications = known_by_end.iter().any(|k| relevant(condition, *k));

    let bp = dirty.bp;
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
                .enrolled(Condition::Diabetes)
                .is_some_and(|t| t < end_ms),
            diabetic_complications: known_by_end.iter().any(|k| !k.is_cardiovascular()),
            cardiovascular_disease: known_by_end.iter().any(|k| k.is_cardiovascular()),
            egfr: dirty.egfr.map(f64::from),
        }),
        _ => RiskLevel::NotAssessed,
    };

    let pseudonym = hex::encode(key);
    let definition = &engine.config.definition;
    PatientStatus {
        status_id: stable_id(&[
            pseudonym.as_bytes(),
            condition.as_str().as_bytes(),
            period.kind.as_str().as_bytes(),
            &start_day.to_le_bytes(),
            definition.as_bytes(),
        ]),
        version: patient.version as i64,
        definition: definition.clone(),
        patient_pseudonym: pseudonym,
        hospital_id: patient.hospital.to_string(),
        region_code: patient.region.to_string(),
        condition,
        period_kind: period.kind,
        period_start: start_day,
        managed,
        managed_since_ms: enrolled,
        managed_days: managed_days as i32,
        follow_ups,
        follow_ups_ytd,
        standardised,
        controlled,
        last_follow_up_ms: latest.map(|f| f.time_ms),
        last_systolic_mmhg: latest.and_then(|f| f.bp()).map(|b| b.0),
        last_diastolic_mmhg: latest.and_then(|f| f.bp()).map(|b| b.1),
        last_fasting_glucose_mmol_l: latest.and_then(|f| f.glucose()),
        new_complications,
        has_complications,
        bp_grade: grade as i32,
        risk_level,
        age_band: age.map(age_band).unwrap_or_default().to_string(),
        sex: patient.sex.unwrap_or(Sex::Unknown),
        event_time_ms: patient.last_event_ms,
    }
}
