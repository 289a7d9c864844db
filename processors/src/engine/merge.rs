//! A patient merged into another (HL7 ADT^A40; the merged patient's partition gets the event).
//!
//! What the processor holds of the merged patient moves to the surviving one as canonical events
//! of its facts, keyed by the survivor (the runner produces them to the events topic, so they
//! reach the survivor's partition, and ClickHouse, like any event). They are snapshot rows:
//! facts the source already held, applied by their clinical time, never late, moving no clock.
//! The merged patient then holds no facts and no evidence of management: the periods that
//! counted them are computed again (they no longer do), and their open episodes close.
//!
//! Moved is what the rules and status rows read: registration (with enrolment and death, stated
//! at the merge), readings, follow-up forms, complications and qualifying diagnoses. Each kind
//! keeps its bounded history (follow-ups 550 days), so what is older than that moves only as
//! the evidence it left (the qualifying diagnosis, the enrolment).

use vigil_schemas::ids::stable_id;
use vigil_schemas::terminology::Observation;
use vigil_schemas::{
    ClinicalEvent, Condition, Diagnosis, FollowUpVisit, LabResult, Operation, PatientRegistration,
    Payload, ProgrammeEnrolment, Sex, VisitMode, VitalSign, CLINICAL_EVENT_SCHEMA_VERSION,
};

use crate::clinical::Complication;
use crate::state::{Patient, Reading};

/// The source system of the events a merge moves.
pub const MERGE_SOURCE: &str = "vigil/merge";

/// A representative ICD-10 code of each complication (what `classify_icd10` reads back).
fn complication_code(complication: Complication) -> &'static str {
    match complication {
        Complication::Stroke => "I63",
        Complication::MyocardialInfarction => "I21",
        Complication::DiabeticKidney => "E11.2",
        Complication::DiabeticEye => "E11.3",
        Complication::DiabeticNeuropathy => "E11.4",
        Complication::DiabeticFoot => "E11.5",
        Complication::DiabeticMultiple => "E11.7",
    }
}

/// Builds the moved events of one merge.
struct Mover<'a> {
    merge: &'a ClinicalEvent,
    surviving: &'a str,
    out: Vec<ClinicalEvent>,
}

impl Mover<'_> {
    fn push(&mut self, kind: &str, record: u32, time_ms: i64, payload: Payload) {
        let record_id = format!("merged/{}/{kind}/{record}", &self.merge.event_id);
        self.out.push(ClinicalEvent {
            event_id: stable_id(&[self.merge.event_id.as_bytes(), record_id.as_bytes()]),
            hospital_id: self.merge.hospital_id.clone(),
            source_system: MERGE_SOURCE.to_string(),
            operation: Operation::Snapshot,
            event_time_ms: time_ms,
            ingest_time_ms: self.merge.ingest_time_ms,
            patient_pseudonym: self.surviving.to_string(),
            record_id,
            schema_version: CLINICAL_EVENT_SCHEMA_VERSION,
            payload,
            source: None,
        });
    }

    fn lab(&mut self, observation: Observation, reading: &Reading) {
        let payload = Payload::LabResult(LabResult {
            loinc: observation.loinc().into(),
            value: f64::from(reading.value),
            unit: observation.unit().into(),
            local_code: String::new(),
            encounter_id: None,
        });
        self.push("lab", reading.record, reading.time_ms, payload);
    }
}

/// The merged patient's facts as events of the surviving patient.
pub fn moved_facts(
    patient: &Patient,
    merge: &ClinicalEvent,
    surviving: &str,
) -> Vec<ClinicalEvent> {
    let mut mover = Mover {
        merge,
        surviving,
        out: Vec::new(),
    };
    if patient.registration_ms.is_some() {
        let programmes = Condition::ALL
            .into_iter()
            .zip(patient.enrolled_ms)
            .filter_map(|(condition, enrolled)| {
                enrolled.map(|enrolled_time_ms| ProgrammeEnrolment {
                    condition,
                    enrolled_time_ms,
                })
            })
            .collect();
        let registration = PatientRegistration {
            sex: patient.sex.unwrap_or(Sex::Unknown),
            birth_year: i32::from(patient.birth_year),
            region_code: patient.region.to_string(),
            programmes,
            death_time_ms: patient.death_ms,
        };
        // Stated at the merge: an older time would lose to the survivor's own registration.
        let payload = Payload::PatientRegistration(registration);
        mover.push("registration", 0, merge.event_time_ms, payload);
    }
    for (condition, diagnosed) in Condition::ALL.into_iter().zip(patient.diagnosed_ms) {
        let Some(time_ms) = diagnosed else { continue };
        let icd10 = match condition {
            Condition::Hypertension => "I10",
            Condition::Diabetes => "E11",
        };
        // At the managing department's time when one is known: it stays the managing one.
        let (department, time_ms) = match &patient.departments[condition as usize] {
            Some((department, at)) => (department.to_string(), time_ms.max(*at)),
            None => (String::new(), time_ms),
        };
        let payload = Payload::Diagnosis(Diagnosis {
            icd10: icd10.into(),
            is_primary: false,
            department_code: department,
            encounter_id: None,
        });
        mover.push("diagnosis", condition as u32, time_ms, payload);
    }
    for complication in &patient.complications {
        let Some(kind) = complication.kind() else {
            continue;
        };
        let payload = Payload::Diagnosis(Diagnosis {
            icd10: complication_code(kind).into(),
            is_primary: false,
            department_code: String::new(),
            encounter_id: None,
        });
        mover.push(
            "complication",
            complication.record,
            complication.time_ms,
            payload,
        );
    }
    let number = |value: f32| (!value.is_nan()).then_some(f64::from(value));
    for form in &patient.follow_ups {
        let payload = Payload::FollowUpVisit(FollowUpVisit {
            condition: form.condition,
            visit_mode: if form.face_to_face {
                VisitMode::Clinic
            } else {
                VisitMode::Phone
            },
            systolic_mmhg: number(form.systolic),
            diastolic_mmhg: number(form.diastolic),
            fasting_glucose_mmol_l: number(form.fasting_glucose),
            hba1c_percent: patient
                .hba1c
                .iter()
                .find(|r| r.record == form.record)
                .map(|r| f64::from(r.value)),
            next_visit_time_ms: None,
            clinician_id: String::new(),
        });
        mover.push("follow_up", form.record, form.time_ms, payload);
    }
    // Readings a follow-up form carried move with the form.
    let from_a_form = |record: u32| patient.follow_ups.iter().any(|f| f.record == record);
    for reading in patient.bp.iter().filter(|r| !from_a_form(r.record)) {
        let payload = Payload::VitalSign(VitalSign {
            systolic_mmhg: Some(f64::from(reading.systolic)),
            diastolic_mmhg: Some(f64::from(reading.diastolic)),
            ..VitalSign::default()
        });
        mover.push("bp", reading.record, reading.time_ms, payload);
    }
    for reading in patient.glucose.iter().filter(|r| !from_a_form(r.record)) {
        mover.lab(Observation::Glucose, reading);
    }
    for reading in patient.hba1c.iter().filter(|r| !from_a_form(r.record)) {
        mover.lab(Observation::Hba1c, reading);
    }
    for reading in &patient.egfr {
        mover.lab(Observation::Egfr, reading);
    }
    mover.out
}

/// The merged patient holds no facts and no evidence of management any more.
pub fn forget_facts(patient: &mut Patient) {
    patient.enrolled_ms = [None, None];
    patient.diagnosed_ms = [None, None];
    patient.first_form_ms = [None, None];
    patient.managed_ms = [None, None];
    patient.departments = [None, None];
    patient.bp.clear();
    patient.glucose.clear();
    patient.hba1c.clear();
    patient.egfr.clear();
    patient.follow_ups.clear();
    patient.complications.clear();
}
