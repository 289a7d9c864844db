//! Applying one clinical event to one patient's state: validation of values and units, then an
//! upsert (create, update, snapshot) or a retraction (delete) of the record it names. Reports
//! what changed so the alert rules know what to look at.

use std::sync::Arc;

use rustc_hash::FxHashSet;
use vigil_schemas::{
    ClinicalEvent, Condition, FollowUpVisit, Operation, PatientRegistration, Payload, Sex,
};

use vigil_schemas::terminology::Observation;
use vigil_schemas::validate::normalise_lab;

use crate::clinical::{
    classify_icd10, egfr_ckd_epi_2021, qualifying_condition, Complication, DiagnosisClass,
};
use crate::state::{
    condition_index, record_hash, retract, upsert, BpReading, ComplicationRecord, Evidence,
    FollowUp, Patient, Reading, Stored, BP_HISTORY, EGFR_HISTORY, FOLLOW_UP_HISTORY,
    FOLLOW_UP_RETENTION_MS, GLUCOSE_HISTORY, HBA1C_HISTORY,
};

/// What an event changed, for the rules to react to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Change {
    /// The latest reading of the kind is different now (new latest, or the latest retracted).
    pub bp: bool,
    pub glucose: bool,
    pub hba1c: bool,
    pub egfr: bool,
    /// A follow-up for this condition was added, corrected or retracted.
    pub follow_up: Option<Condition>,
    /// A complication was diagnosed for the first time.
    pub new_complication: Option<Complication>,
    /// Registration, enrolment or death changed.
    pub registration: bool,
    /// The patient died (newly recorded).
    pub died: bool,
    /// Nothing the patient's rules and status read is different: the event was applied
    /// before (an edge's replay beyond the remembered ids), or is an older version than the one
    /// held. It must then touch no status row and no alert, or a replay would re-stamp closed
    /// periods with today's facts.
    pub no_effect: bool,
}

/// Whether anything an event touched changed, gathered over the histories it touched.
#[derive(Default)]
struct Effect(bool);

impl Effect {
    /// Notes a history's change and returns whether its latest entry changed.
    fn note(&mut self, stored: Stored) -> bool {
        self.0 |= stored.changed;
        stored.latest
    }
}

fn intern(interner: &mut FxHashSet<Arc<str>>, text: &str) -> Arc<str> {
    if let Some(existing) = interner.get(text) {
        return existing.clone();
    }
    let value: Arc<str> = Arc::from(text);
    interner.insert(value.clone());
    value
}

/// Applies a validated event to the patient, then re-derives when management began by the
/// evidence the definition counts (a change there is a registration change for the rules).
pub fn apply(
    patient: &mut Patient,
    event: &ClinicalEvent,
    evidence: Evidence,
    interner: &mut FxHashSet<Arc<str>>,
) -> Change {
    let before = (
        patient.last_event_ms,
        patient.diagnosed_ms,
        patient.first_form_ms,
        patient.managed_ms,
        department_marks(patient),
    );
    let mut change = Change::default();
    let effect = apply_payload(patient, event, interner, &mut change);
    if event.operation != Operation::Delete {
        note_evidence(patient, event);
        note_department(patient, event, interner);
    }
    patient.derive_management(evidence);
    change.registration |= patient.managed_ms != before.3;
    let after = (
        patient.last_event_ms,
        patient.diagnosed_ms,
        patient.first_form_ms,
        patient.managed_ms,
        department_marks(patient),
    );
    change.no_effect = !effect && after == before;
    change
}

/// The earliest qualifying diagnosis and programme follow-up form per condition. Evidence once
/// seen stands: retracting the record later does not withdraw it.
fn note_evidence(patient: &mut Patient, event: &ClinicalEvent) {
    let condition = match &event.payload {
        Payload::Diagnosis(d) => qualifying_condition(&d.icd10).map(|c| (c, true)),
        Payload::FollowUpVisit(f) => Some((f.condition, false)),
        _ => None,
    };
    let Some((condition, diagnosis)) = condition else {
        return;
    };
    let slots = if diagnosis {
        &mut patient.diagnosed_ms
    } else {
        &mut patient.first_form_ms
    };
    let slot = &mut slots[condition_index(condition)];
    *slot = Some(slot.map_or(event.event_time_ms, |t| t.min(event.event_time_ms)));
}

/// What tells the managing departments apart without cloning them (they are interned: one
/// department, one allocation).
fn department_marks(patient: &Patient) -> [Option<(usize, i64)>; 2] {
    patient.departments.each_ref().map(|d| {
        d.as_ref()
            .map(|(name, at)| (Arc::as_ptr(name).cast::<u8>() as usize, *at))
    })
}

/// A qualifying diagnosis that names its department makes it the condition's managing
/// department, unless a later one (by clinical time) named another.
fn note_department(
    patient: &mut Patient,
    event: &ClinicalEvent,
    interner: &mut FxHashSet<Arc<str>>,
) {
    let Payload::Diagnosis(d) = &event.payload else {
        return;
    };
    let (Some(condition), false) = (qualifying_condition(&d.icd10), d.department_code.is_empty())
    else {
        return;
    };
    let slot = &mut patient.departments[condition_index(condition)];
    if slot.as_ref().is_some_and(|(_, t)| *t > event.event_time_ms) {
        return;
    }
    *slot = Some((intern(interner, &d.department_code), event.event_time_ms));
}

/// One event's payload applied to the patient's histories. Returns whether any of them changed;
/// every arm decides that for its kind.
fn apply_payload(
    patient: &mut Patient,
    event: &ClinicalEvent,
    interner: &mut FxHashSet<Arc<str>>,
    change: &mut Change,
) -> bool {
    let time = event.event_time_ms;
    let record = record_hash(&event.record_id);
    let retraction = event.operation == Operation::Delete;
    patient.last_event_ms = patient.last_event_ms.max(time);
    match &event.payload {
        Payload::PatientRegistration(r) => {
            apply_registration(patient, r, event, record, interner, change)
        }
        // Neither is read by a rule or a status row (beyond the time of the last event).
        Payload::Encounter(_) | Payload::Prescription(_) => false,
        // The engine applies a merge itself (`engine::merge`): it moves the patient's facts.
        Payload::PatientMerge(_) => false,
        Payload::Diagnosis(d) => match classify_icd10(&d.icd10) {
            DiagnosisClass::Complication(complication) => {
                apply_complication(patient, complication, time, record, retraction, change)
            }
            _ => false,
        },
        Payload::LabResult(lab) => {
            // Validation ran before: a failure here means a test no rule uses.
            match normalise_lab(&lab.loinc, lab.value, &lab.unit) {
                Ok(Some((observation, value))) => {
                    let at = (time, record);
                    apply_lab(patient, observation, value, at, retraction, change)
                }
                _ => false,
            }
        }
        Payload::VitalSign(v) => {
            let mut effect = Effect::default();
            if retraction {
                change.bp = effect.note(retract(&mut patient.bp, record));
            } else if let (Some(s), Some(d)) = (v.systolic_mmhg, v.diastolic_mmhg) {
                change.bp = effect.note(store_bp(patient, (time, record), (s, d)));
            }
            effect.0
        }
        Payload::FollowUpVisit(f) => apply_follow_up(patient, f, time, record, retraction, change),
    }
}

/// Stores a blood-pressure reading (vital signs or a follow-up form) taken at `time`.
fn store_bp(patient: &mut Patient, (time, record): (i64, u32), (s, d): (f64, f64)) -> Stored {
    let reading = BpReading {
        time_ms: time,
        systolic: s as f32,
        diastolic: d as f32,
        record,
    };
    upsert(&mut patient.bp, reading, BP_HISTORY)
}

/// A registration version: applied only if not older than the one held.
fn apply_registration(
    patient: &mut Patient,
    r: &PatientRegistration,
    event: &ClinicalEvent,
    record: u32,
    interner: &mut FxHashSet<Arc<str>>,
    change: &mut Change,
) -> bool {
    let time = event.event_time_ms;
    if patient
        .registration_ms
        .is_some_and(|applied| time < applied)
    {
        return false; // an older version than the one applied
    }
    if event.operation == Operation::Delete {
        patient.registration_ms = Some(time);
        change.registration = true;
        if patient.registration_record == record {
            patient.enrolled_ms = [None, None];
        }
        return true;
    }
    let mut enrolled = [None, None];
    for programme in &r.programmes {
        let slot = &mut enrolled[condition_index(programme.condition)];
        *slot = Some(slot.map_or(programme.enrolled_time_ms, |t: i64| {
            t.min(programme.enrolled_time_ms)
        }));
    }
    // A registration of another record that names no programme (an HL7 ADT message beside
    // the patient master) updates what it states: it neither ends the enrolment the other
    // record gave nor forgets a death it knew.
    let beside = patient.registration_ms.is_some()
        && patient.registration_record != record
        && r.programmes.is_empty();
    let (owner, death) = if beside {
        enrolled = patient.enrolled_ms;
        (
            patient.registration_record,
            r.death_time_ms.or(patient.death_ms),
        )
    } else {
        (record, r.death_time_ms)
    };
    let birth_year = r.birth_year.clamp(0, i16::MAX as i32) as i16;
    let held_as_it_is = patient.registration_ms == Some(time)
        && patient.registration_record == owner
        && patient.sex == Some(r.sex)
        && patient.birth_year == birth_year
        && *patient.region == *r.region_code
        && *patient.hospital == *event.hospital_id
        && patient.enrolled_ms == enrolled
        && patient.death_ms == death;
    if held_as_it_is {
        return false;
    }
    patient.registration_ms = Some(time);
    change.registration = true;
    patient.sex = Some(r.sex);
    patient.birth_year = birth_year;
    patient.region = intern(interner, &r.region_code);
    patient.hospital = intern(interner, &event.hospital_id);
    patient.registration_record = owner;
    patient.enrolled_ms = enrolled;
    change.died = death.is_some() && patient.death_ms.is_none();
    patient.death_ms = death;
    true
}

/// A follow-up form: the visit itself and the readings taken at it.
fn apply_follow_up(
    patient: &mut Patient,
    f: &FollowUpVisit,
    time: i64,
    record: u32,
    retraction: bool,
    change: &mut Change,
) -> bool {
    change.follow_up = Some(f.condition);
    let mut effect = Effect::default();
    if retraction {
        effect.note(retract(&mut patient.follow_ups, record));
        change.bp = effect.note(retract(&mut patient.bp, record));
        change.glucose = effect.note(retract(&mut patient.glucose, record));
        change.hba1c = effect.note(retract(&mut patient.hba1c, record));
        return effect.0;
    }
    let follow_up = FollowUp {
        time_ms: time,
        record,
        condition: f.condition,
        face_to_face: f.visit_mode.is_face_to_face(),
        systolic: f.systolic_mmhg.map_or(f32::NAN, |v| v as f32),
        diastolic: f.diastolic_mmhg.map_or(f32::NAN, |v| v as f32),
        fasting_glucose: f.fasting_glucose_mmol_l.map_or(f32::NAN, |v| v as f32),
    };
    let stored = upsert(&mut patient.follow_ups, follow_up, FOLLOW_UP_HISTORY);
    effect.note(stored);
    if stored.changed {
        let newest = patient.follow_ups.last().map_or(time, |f| f.time_ms);
        patient
            .follow_ups
            .retain(|f| f.time_ms >= newest - FOLLOW_UP_RETENTION_MS);
    }
    if let (Some(s), Some(d)) = (f.systolic_mmhg, f.diastolic_mmhg) {
        change.bp = effect.note(store_bp(patient, (time, record), (s, d)));
    }
    let reading = |value: f64| Reading {
        time_ms: time,
        value: value as f32,
        record,
    };
    if let Some(g) = f.fasting_glucose_mmol_l {
        change.glucose = effect.note(upsert(&mut patient.glucose, reading(g), GLUCOSE_HISTORY));
    }
    if let Some(a) = f.hba1c_percent {
        change.hba1c = effect.note(upsert(&mut patient.hba1c, reading(a), HBA1C_HISTORY));
    }
    effect.0
}

/// Returns whether the complications held changed.
fn apply_complication(
    patient: &mut Patient,
    complication: Complication,
    time: i64,
    record: u32,
    retraction: bool,
    change: &mut Change,
) -> bool {
    let code = complication as u8;
    let existing = patient
        .complications
        .iter()
        .position(|c| c.complication == code);
    match (existing, retraction) {
        (Some(i), true) if patient.complications[i].record == record => {
            patient.complications.remove(i);
            true
        }
        (Some(_), true) | (None, true) => false,
        // A diagnosis dated earlier than the one known moves the first diagnosis back.
        (Some(i), false) if time < patient.complications[i].time_ms => {
            patient.complications[i] = ComplicationRecord {
                complication: code,
                time_ms: time,
                record,
            };
            true
        }
        (Some(_), false) => false,
        (None, false) => {
            patient.complications.push(ComplicationRecord {
                complication: code,
                time_ms: time,
                record,
            });
            change.new_complication = Some(complication);
            true
        }
    }
}

/// Returns whether the history of the observation changed.
fn apply_lab(
    patient: &mut Patient,
    observation: Observation,
    value: f64,
    (time, record): (i64, u32),
    retraction: bool,
    change: &mut Change,
) -> bool {
    let mut effect = Effect::default();
    let reading = Reading {
        time_ms: time,
        value: value as f32,
        record,
    };
    match observation {
        Observation::Hba1c => {
            change.hba1c = effect.note(if retraction {
                retract(&mut patient.hba1c, record)
            } else {
                upsert(&mut patient.hba1c, reading, HBA1C_HISTORY)
            });
        }
        Observation::FastingGlucose | Observation::Glucose => {
            change.glucose = effect.note(if retraction {
                retract(&mut patient.glucose, record)
            } else {
                upsert(&mut patient.glucose, reading, GLUCOSE_HISTORY)
            });
        }
        Observation::Egfr => return apply_egfr(patient, reading, retraction, change),
        Observation::Creatinine => {
            if retraction {
                change.egfr = effect.note(retract(&mut patient.egfr, record));
                return effect.0;
            }
            let year = vigil_runtime::time::civil_from_days((time / 86_400_000) as i32).0;
            let (Some(age), Some(sex)) = (patient.age_in(year), patient.sex) else {
                return false; // no age or sex yet: eGFR cannot be derived
            };
            if sex == Sex::Unknown {
                return false;
            }
            if let Some(egfr) = egfr_ckd_epi_2021(value, age as f64, sex) {
                let derived = Reading {
                    value: egfr as f32,
                    ..reading
                };
                return apply_egfr(patient, derived, false, change);
            }
        }
        Observation::UrineAcr | Observation::Systolic | Observation::Diastolic => {}
    }
    effect.0
}

/// One blood draw yields one eGFR: a lab-reported value and one derived from the same draw's
/// creatinine (within an hour) replace each other instead of counting twice. Returns whether
/// the eGFR history changed.
fn apply_egfr(
    patient: &mut Patient,
    reading: Reading,
    retraction: bool,
    change: &mut Change,
) -> bool {
    let mut effect = Effect::default();
    if retraction {
        change.egfr = effect.note(retract(&mut patient.egfr, reading.record));
        return effect.0;
    }
    const SAME_DRAW_MS: i64 = 3_600_000;
    let before = patient.egfr.len();
    patient.egfr.retain(|r| {
        r.record == reading.record || (r.time_ms - reading.time_ms).abs() > SAME_DRAW_MS
    });
    effect.0 = patient.egfr.len() != before;
    change.egfr = effect.note(upsert(&mut patient.egfr, reading, EGFR_HISTORY));
    effect.0
}
