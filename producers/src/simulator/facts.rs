//! What happens to simulated patients, before any hospital system writes it down. The same facts
//! are rendered either as canonical events (`canonical.rs`) or as each vendor's change events.

use vigil_schemas::{Condition, EncounterType, Sex, VisitMode};

/// One clinical fact about one patient at one hospital.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    pub time_ms: i64,
    pub hospital: u16,
    pub patient: u32,
    /// Unique per hospital: the row id the HIS gives the record.
    pub record_seq: u64,
    pub fact: Fact,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// Registration and programme enrolment; sent again (as an update) when it changes.
    Registration(Registration),
    Encounter {
        encounter_type: EncounterType,
        department: &'static str,
        end_ms: i64,
    },
    Diagnosis {
        icd10: &'static str,
        primary: bool,
        department: &'static str,
    },
    Lab {
        test: LabTest,
        /// In the canonical unit of the test.
        value: f64,
    },
    Vitals {
        systolic: f64,
        diastolic: f64,
        heart_rate: f64,
    },
    Prescription {
        drug: Drug,
    },
    FollowUp {
        condition: Condition,
        mode: VisitMode,
        systolic: Option<f64>,
        diastolic: Option<f64>,
        fasting_glucose: Option<f64>,
        hba1c: Option<f64>,
        next_visit_ms: i64,
        clinician: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The registration row's id; updates reuse it.
    pub record_seq: u64,
    pub sex: Sex,
    pub birth_year: i32,
    pub birth_day_of_year: u16,
    pub region_code: &'static str,
    pub programmes: Vec<(Condition, i64)>,
    pub death_ms: Option<i64>,
    /// Whether this is an update of an earlier registration (death, new programme).
    pub is_update: bool,
}

/// Laboratory tests the simulation orders, with their LOINC code and canonical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabTest {
    Hba1c,
    FastingGlucose,
    RandomGlucose,
    Creatinine,
    Egfr,
    UrineAcr,
}

impl LabTest {
    pub const ALL: [LabTest; 6] = [
        LabTest::Hba1c,
        LabTest::FastingGlucose,
        LabTest::RandomGlucose,
        LabTest::Creatinine,
        LabTest::Egfr,
        LabTest::UrineAcr,
    ];

    pub fn loinc(self) -> &'static str {
        match self {
            LabTest::Hba1c => "4548-4",
            LabTest::FastingGlucose => "14771-0",
            LabTest::RandomGlucose => "14749-6",
            LabTest::Creatinine => "14682-9",
            LabTest::Egfr => "98979-8",
            LabTest::UrineAcr => "9318-7",
        }
    }

    /// UCUM unit of the canonical value.
    pub fn unit(self) -> &'static str {
        match self {
            LabTest::Hba1c => "%",
            LabTest::FastingGlucose | LabTest::RandomGlucose => "mmol/L",
            LabTest::Creatinine => "umol/L",
            LabTest::Egfr => "mL/min/{1.73_m2}",
            LabTest::UrineAcr => "mg/g",
        }
    }
}

/// Drugs the simulation prescribes (WHO ATC codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drug {
    Amlodipine,
    Enalapril,
    Losartan,
    Hydrochlorothiazide,
    Metformin,
    Gliclazide,
    InsulinGlargine,
}

impl Drug {
    pub fn atc(self) -> &'static str {
        match self {
            Drug::Amlodipine => "C08CA01",
            Drug::Enalapril => "C09AA02",
            Drug::Losartan => "C09CA01",
            Drug::Hydrochlorothiazide => "C03AA03",
            Drug::Metformin => "A10BA02",
            Drug::Gliclazide => "A10BB09",
            Drug::InsulinGlargine => "A10AE04",
        }
    }

    /// (dose, unit, frequency)
    pub fn regimen(self) -> (f64, &'static str, &'static str) {
        match self {
            Drug::Amlodipine => (5.0, "mg", "QD"),
            Drug::Enalapril => (10.0, "mg", "BID"),
            Drug::Losartan => (50.0, "mg", "QD"),
            Drug::Hydrochlorothiazide => (12.5, "mg", "QD"),
            Drug::Metformin => (500.0, "mg", "TID"),
            Drug::Gliclazide => (30.0, "mg", "QD"),
            Drug::InsulinGlargine => (10.0, "U", "QN"),
        }
    }
}
