//! Renders simulated facts directly as canonical clinical events, as a hospital edge would after
//! mapping and pseudonymisation. Used to feed the processor without the ingest stage (the
//! walking skeleton, processor benchmarks); `vigil simulate --output cdc` renders the same facts
//! as HIS change events instead.

use vigil_schemas::ids::stable_id;
use vigil_schemas::{
    ClinicalEvent, Diagnosis, Encounter, FollowUpVisit, LabResult, Operation, PatientRegistration,
    Payload, Prescription, ProgrammeEnrolment, VitalSign, CLINICAL_EVENT_SCHEMA_VERSION,
};

use super::facts::{Fact, SimEvent};
use super::identity::identity;
use super::population::Simulation;
use crate::pseudonym::PseudonymKey;

/// The hospital code of simulated hospital `index` (H0001, H0002, ...).
pub fn hospital_code(index: u16) -> String {
    format!("H{:04}", index as u32 + 1)
}

pub struct CanonicalRenderer {
    key: PseudonymKey,
    seed: u64,
}

impl CanonicalRenderer {
    pub fn new(key: PseudonymKey, seed: u64) -> Self {
        CanonicalRenderer { key, seed }
    }

    /// The patient's pseudonym, as the edge derives it from the resident ID.
    pub fn pseudonym(&self, sim: &Simulation, patient: u32) -> String {
        match sim.patient(patient) {
            Some(p) => {
                let id = identity(self.seed, patient, p.sex, p.birth_year, p.birth_day_of_year);
                self.key.pseudonymise(&id.national_id)
            }
            None => String::new(),
        }
    }

    pub fn render(&self, sim: &Simulation, event: &SimEvent, ingest_time_ms: i64) -> ClinicalEvent {
        let hospital_id = hospital_code(event.hospital);
        let (kind, operation, payload) = payload_of(event);
        let record_id = format!("{kind}/{hospital_id}-{}", event.record_seq);
        let op_name = format!("{operation:?}");
        let time = event.time_ms.to_le_bytes();
        let event_id = stable_id(&[
            hospital_id.as_bytes(),
            b"simulator",
            record_id.as_bytes(),
            op_name.as_bytes(),
            &time,
        ]);
        ClinicalEvent {
            event_id,
            hospital_id,
            source_system: "simulator".into(),
            operation,
            event_time_ms: event.time_ms,
            ingest_time_ms,
            patient_pseudonym: self.pseudonym(sim, event.patient),
            record_id,
            schema_version: CLINICAL_EVENT_SCHEMA_VERSION,
            payload,
            source: None,
        }
    }
}

fn payload_of(event: &SimEvent) -> (&'static str, Operation, Payload) {
    match &event.fact {
        Fact::Registration(r) => (
            "patient",
            if r.is_update {
                Operation::Update
            } else {
                Operation::Create
            },
            Payload::PatientRegistration(PatientRegistration {
                sex: r.sex,
                birth_year: r.birth_year,
                region_code: r.region_code.to_string(),
                programmes: r
                    .programmes
                    .iter()
                    .map(|(condition, enrolled)| ProgrammeEnrolment {
                        condition: *condition,
                        enrolled_time_ms: *enrolled,
                    })
                    .collect(),
                death_time_ms: r.death_ms,
            }),
        ),
        Fact::Encounter {
            encounter_type,
            department,
            end_ms,
        } => (
            "encounter",
            Operation::Create,
            Payload::Encounter(Encounter {
                encounter_type: *encounter_type,
                department_code: department.to_string(),
                start_time_ms: event.time_ms,
                end_time_ms: Some(*end_ms),
            }),
        ),
        Fact::Diagnosis {
            icd10,
            primary,
            department,
        } => (
            "diagnosis",
            Operation::Create,
            Payload::Diagnosis(Diagnosis {
                icd10: icd10.to_string(),
                is_primary: *primary,
                department_code: department.to_string(),
                encounter_id: None,
            }),
        ),
        Fact::Lab { test, value } => (
            "lab",
            Operation::Create,
            Payload::LabResult(LabResult {
                loinc: test.loinc().to_string(),
                value: *value,
                unit: test.unit().to_string(),
                local_code: String::new(),
                encounter_id: None,
            }),
        ),
        Fact::Vitals {
            systolic,
            diastolic,
            heart_rate,
        } => (
            "vitals",
            Operation::Create,
            Payload::VitalSign(VitalSign {
                systolic_mmhg: Some(*systolic),
                diastolic_mmhg: Some(*diastolic),
                heart_rate_bpm: Some(*heart_rate),
                ..VitalSign::default()
            }),
        ),
        Fact::Prescription { drug } => {
            let (dose, unit, frequency) = drug.regimen();
            (
                "prescription",
                Operation::Create,
                Payload::Prescription(Prescription {
                    drug_code: drug.atc().to_string(),
                    atc_code: drug.atc().to_string(),
                    dose,
                    dose_unit: unit.to_string(),
                    frequency: frequency.to_string(),
                    days_supply: 30,
                    encounter_id: None,
                }),
            )
        }
        Fact::FollowUp {
            condition,
            mode,
            systolic,
            diastolic,
            fasting_glucose,
            hba1c,
            next_visit_ms,
            clinician,
        } => (
            "followup",
            Operation::Create,
            Payload::FollowUpVisit(FollowUpVisit {
                condition: *condition,
                visit_mode: *mode,
                systolic_mmhg: *systolic,
                diastolic_mmhg: *diastolic,
                fasting_glucose_mmol_l: *fasting_glucose,
                hba1c_percent: *hba1c,
                next_visit_time_ms: Some(*next_visit_ms),
                clinician_id: format!("D-{clinician:04}"),
            }),
        ),
    }
}
