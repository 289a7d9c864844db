//! Clinical facts the rules and metrics rest on (../shared/design/CLINICAL.md): which codes mean
//! what, unit conversions, CKD-EPI 2021, KDIGO stages, blood-pressure grades and the
//! cardiovascular risk strata of the China hypertension guideline (2018).

use vigil_schemas::terminology::CREATININE_UMOL_L_PER_MG_DL;
use vigil_schemas::{Condition, RiskLevel, Sex};

/// Complication categories tracked per patient (ICD-10 families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Complication {
    Stroke,
    MyocardialInfarction,
    DiabeticKidney,
    DiabeticEye,
    DiabeticNeuropathy,
    DiabeticFoot,
    DiabeticMultiple,
}

impl Complication {
    pub const ALL: [Complication; 7] = [
        Complication::Stroke,
        Complication::MyocardialInfarction,
        Complication::DiabeticKidney,
        Complication::DiabeticEye,
        Complication::DiabeticNeuropathy,
        Complication::DiabeticFoot,
        Complication::DiabeticMultiple,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Complication::Stroke => "stroke",
            Complication::MyocardialInfarction => "myocardial infarction",
            Complication::DiabeticKidney => "diabetic kidney disease",
            Complication::DiabeticEye => "diabetic eye disease",
            Complication::DiabeticNeuropathy => "diabetic neuropathy",
            Complication::DiabeticFoot => "diabetic foot (peripheral circulatory)",
            Complication::DiabeticMultiple => "multiple diabetic complications",
        }
    }

    /// Cardiovascular events count for both programmes; diabetic ones for diabetes only.
    pub fn is_cardiovascular(self) -> bool {
        matches!(
            self,
            Complication::Stroke | Complication::MyocardialInfarction
        )
    }
}

/// What an ICD-10 code (with or without national extensions) says about the programmes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosisClass {
    Hypertension,
    Diabetes,
    Complication(Complication),
    ChronicKidneyDisease,
    Other,
}

/// Classifies an ICD-10 code by prefix: I10–I15 hypertension; E10–E14 diabetes, whose fourth
/// character .2/.3/.4/.5/.7 marks a complication; I60–I64 stroke; I21–I22 MI; N18 CKD.
pub fn classify_icd10(code: &str) -> DiagnosisClass {
    let code = code.trim().to_ascii_uppercase();
    let bytes = code.as_bytes();
    if bytes.len() < 3 || !bytes[0].is_ascii_alphabetic() {
        return DiagnosisClass::Other;
    }
    let letter = bytes[0];
    // `get`, not indexing: a canonical event from anywhere may put multi-byte text here.
    let Some(number) = code.get(1..3).and_then(|n| n.parse::<u32>().ok()) else {
        return DiagnosisClass::Other;
    };
    let fourth = code
        .get(3..)
        .and_then(|rest| rest.trim_start_matches('.').chars().next());
    match (letter, number) {
        (b'I', 10..=15) => DiagnosisClass::Hypertension,
        (b'I', 60..=64) => DiagnosisClass::Complication(Complication::Stroke),
        (b'I', 21..=22) => DiagnosisClass::Complication(Complication::MyocardialInfarction),
        (b'N', 18) => DiagnosisClass::ChronicKidneyDisease,
        (b'E', 10..=14) => match fourth {
            Some('2') => DiagnosisClass::Complication(Complication::DiabeticKidney),
            Some('3') => DiagnosisClass::Complication(Complication::DiabeticEye),
            Some('4') => DiagnosisClass::Complication(Complication::DiabeticNeuropathy),
            Some('5') => DiagnosisClass::Complication(Complication::DiabeticFoot),
            Some('7') => DiagnosisClass::Complication(Complication::DiabeticMultiple),
            _ => DiagnosisClass::Diabetes,
        },
        _ => DiagnosisClass::Other,
    }
}

/// The programme condition a diagnosis qualifies for: hypertension (I10–I15) or diabetes
/// (E10–E14, with or without a complication).
pub fn qualifying_condition(code: &str) -> Option<Condition> {
    match classify_icd10(code) {
        DiagnosisClass::Hypertension => Some(Condition::Hypertension),
        DiagnosisClass::Diabetes => Some(Condition::Diabetes),
        DiagnosisClass::Complication(c) if !c.is_cardiovascular() => Some(Condition::Diabetes),
        _ => None,
    }
}

/// eGFR (mL/min/1.73m²) by the race-free CKD-EPI 2021 creatinine equation.
pub fn egfr_ckd_epi_2021(creatinine_umol_l: f64, age_years: f64, sex: Sex) -> Option<f64> {
    if creatinine_umol_l.is_nan() || creatinine_umol_l <= 0.0 || age_years < 18.0 {
        return None;
    }
    let scr = creatinine_umol_l / CREATININE_UMOL_L_PER_MG_DL;
    let female = match sex {
        Sex::Female => true,
        Sex::Male => false,
        Sex::Unknown => return None,
    };
    let (kappa, alpha, factor) = if female {
        (0.7, -0.241, 1.012)
    } else {
        (0.9, -0.302, 1.0)
    };
    let ratio = scr / kappa;
    Some(
        142.0
            * ratio.min(1.0).powf(alpha)
            * ratio.max(1.0).powf(-1.200)
            * 0.9938f64.powf(age_years)
            * factor,
    )
}

/// KDIGO GFR category as 1..=6 for G1, G2, G3a, G3b, G4, G5.
pub fn kdigo_stage(egfr: f64) -> u8 {
    match egfr {
        e if e >= 90.0 => 1,
        e if e >= 60.0 => 2,
        e if e >= 45.0 => 3,
        e if e >= 30.0 => 4,
        e if e >= 15.0 => 5,
        _ => 6,
    }
}

pub fn kdigo_stage_name(stage: u8) -> &'static str {
    match stage {
        1 => "G1",
        2 => "G2",
        3 => "G3a",
        4 => "G3b",
        5 => "G4",
        _ => "G5",
    }
}

/// Hypertension grade from one reading (China guideline 2018): 1 = 140–159/90–99,
/// 2 = 160–179/100–109, 3 = ≥180/≥110; 0 below 140/90. The higher of the two pressures decides.
pub fn bp_grade(systolic: f64, diastolic: f64) -> u8 {
    let by_systolic = match systolic {
        s if s >= 180.0 => 3,
        s if s >= 160.0 => 2,
        s if s >= 140.0 => 1,
        _ => 0,
    };
    let by_diastolic = match diastolic {
        d if d >= 110.0 => 3,
        d if d >= 100.0 => 2,
        d if d >= 90.0 => 1,
        _ => 0,
    };
    by_systolic.max(by_diastolic)
}

/// What the risk stratification knows about a hypertensive patient.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RiskInputs {
    /// Hypertension grade 0–3 of the latest reading; 0 (treated to normal) counts as grade 1.
    pub bp_grade: u8,
    /// Age over 55 (men) or 65 (women): the only classical risk factor the HIS feed carries.
    pub age_risk_factor: bool,
    pub diabetes: bool,
    pub diabetic_complications: bool,
    /// Stroke or myocardial infarction.
    pub cardiovascular_disease: bool,
    /// Latest eGFR, if known.
    pub egfr: Option<f64>,
}

/// Cardiovascular risk level (China hypertension guideline 2018, table of risk strata).
/// Established cardiovascular disease, CKD stage ≥ 4 or diabetes with complications: very high.
/// CKD stage 3, diabetes, or ≥ 3 risk factors: high (very high at grade 3). Otherwise by grade
/// and number of risk factors.
pub fn cardiovascular_risk(inputs: &RiskInputs) -> RiskLevel {
    let grade = inputs.bp_grade.clamp(1, 3);
    let egfr = inputs.egfr.unwrap_or(90.0);
    if inputs.cardiovascular_disease || egfr < 30.0 || inputs.diabetic_complications {
        return RiskLevel::VeryHigh;
    }
    if egfr < 60.0 || inputs.diabetes {
        return if grade == 3 {
            RiskLevel::VeryHigh
        } else {
            RiskLevel::High
        };
    }
    match (inputs.age_risk_factor, grade) {
        (false, 1) => RiskLevel::Low,
        (false, 2) => RiskLevel::Medium,
        (false, _) => RiskLevel::High,
        (true, 1) | (true, 2) => RiskLevel::Medium,
        (true, _) => RiskLevel::VeryHigh,
    }
}

/// Ten-year age band, e.g. "60-69"; "<30" and "90+" at the ends.
pub fn age_band(age: i32) -> &'static str {
    match age {
        i32::MIN..=29 => "<30",
        30..=39 => "30-39",
        40..=49 => "40-49",
        50..=59 => "50-59",
        60..=69 => "60-69",
        70..=79 => "70-79",
        80..=89 => "80-89",
        _ => "90+",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd10_classification_table() {
        let cases = [
            ("I10", DiagnosisClass::Hypertension),
            ("I10.x00", DiagnosisClass::Hypertension),
            ("i15.9", DiagnosisClass::Hypertension),
            ("I16", DiagnosisClass::Other),
            ("E11.900", DiagnosisClass::Diabetes),
            ("E11", DiagnosisClass::Diabetes),
            ("E10.9", DiagnosisClass::Diabetes),
            (
                "E14.2",
                DiagnosisClass::Complication(Complication::DiabeticKidney),
            ),
            (
                "E11.200",
                DiagnosisClass::Complication(Complication::DiabeticKidney),
            ),
            (
                "E11.3",
                DiagnosisClass::Complication(Complication::DiabeticEye),
            ),
            (
                "E11.4",
                DiagnosisClass::Complication(Complication::DiabeticNeuropathy),
            ),
            (
                "E11.5",
                DiagnosisClass::Complication(Complication::DiabeticFoot),
            ),
            (
                "E11.7",
                DiagnosisClass::Complication(Complication::DiabeticMultiple),
            ),
            ("E15", DiagnosisClass::Other),
            (
                "I63.900",
                DiagnosisClass::Complication(Complication::Stroke),
            ),
            ("I60", DiagnosisClass::Complication(Complication::Stroke)),
            ("I65", DiagnosisClass::Other),
            (
                "I21.9",
                DiagnosisClass::Complication(Complication::MyocardialInfarction),
            ),
            (
                "I22",
                DiagnosisClass::Complication(Complication::MyocardialInfarction),
            ),
            ("I20", DiagnosisClass::Other),
            ("N18.3", DiagnosisClass::ChronicKidneyDisease),
            ("", DiagnosisClass::Other),
            ("XYZ", DiagnosisClass::Other),
            // Multi-byte text where a code was expected: no panic, no class.
            ("I王0", DiagnosisClass::Other),
            ("I1王", DiagnosisClass::Other),
            ("E11王", DiagnosisClass::Diabetes),
        ];
        for (code, expected) in cases {
            assert_eq!(classify_icd10(code), expected, "{code}");
        }
    }

    #[test]
    fn ckd_epi_2021_reference_values() {
        // Published CKD-EPI 2021 examples: 60-year-old man, Scr 1.0 mg/dL -> ~86; woman -> ~65 at 1.0.
        let man = egfr_ckd_epi_2021(88.4, 60.0, Sex::Male).unwrap();
        assert!((man - 86.0).abs() < 1.0, "{man}");
        let woman = egfr_ckd_epi_2021(88.4, 60.0, Sex::Female).unwrap();
        assert!((woman - 64.7).abs() < 1.0, "{woman}");
        assert!(egfr_ckd_epi_2021(88.4, 60.0, Sex::Unknown).is_none());
        assert!(egfr_ckd_epi_2021(0.0, 60.0, Sex::Male).is_none());
    }

    #[test]
    fn kdigo_stage_boundaries() {
        for (egfr, stage) in [
            (90.0, 1),
            (89.9, 2),
            (60.0, 2),
            (59.9, 3),
            (45.0, 3),
            (44.9, 4),
            (30.0, 4),
            (29.9, 5),
            (15.0, 5),
            (14.9, 6),
        ] {
            assert_eq!(kdigo_stage(egfr), stage, "{egfr}");
        }
    }

    #[test]
    fn bp_grade_boundaries() {
        for (s, d, grade) in [
            (139.0, 89.0, 0),
            (140.0, 70.0, 1),
            (120.0, 90.0, 1),
            (159.0, 99.0, 1),
            (160.0, 80.0, 2),
            (130.0, 100.0, 2),
            (179.0, 109.0, 2),
            (180.0, 80.0, 3),
            (120.0, 110.0, 3),
        ] {
            assert_eq!(bp_grade(s, d), grade, "{s}/{d}");
        }
    }

    #[test]
    fn risk_strata() {
        let base = RiskInputs {
            bp_grade: 1,
            ..RiskInputs::default()
        };
        assert_eq!(cardiovascular_risk(&base), RiskLevel::Low);
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                bp_grade: 0,
                ..base
            }),
            RiskLevel::Low
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                bp_grade: 2,
                ..base
            }),
            RiskLevel::Medium
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                bp_grade: 3,
                ..base
            }),
            RiskLevel::High
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                age_risk_factor: true,
                ..base
            }),
            RiskLevel::Medium
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                age_risk_factor: true,
                bp_grade: 3,
                ..base
            }),
            RiskLevel::VeryHigh
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                diabetes: true,
                ..base
            }),
            RiskLevel::High
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                egfr: Some(50.0),
                ..base
            }),
            RiskLevel::High
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                egfr: Some(25.0),
                ..base
            }),
            RiskLevel::VeryHigh
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                diabetes: true,
                bp_grade: 3,
                ..base
            }),
            RiskLevel::VeryHigh
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                cardiovascular_disease: true,
                ..base
            }),
            RiskLevel::VeryHigh
        );
        assert_eq!(
            cardiovascular_risk(&RiskInputs {
                diabetes: true,
                diabetic_complications: true,
                ..base
            }),
            RiskLevel::VeryHigh
        );
    }

    #[test]
    fn age_bands() {
        assert_eq!(age_band(29), "<30");
        assert_eq!(age_band(60), "60-69");
        assert_eq!(age_band(69), "60-69");
        assert_eq!(age_band(95), "90+");
    }
}
