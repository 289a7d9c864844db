//! The observations Vigil understands, shared by the hospital edge (which maps local codes onto
//! them) and the processor (whose rules read them): LOINC codes, the canonical UCUM unit each
//! is carried in, unit conversions, and physiologically plausible ranges. Source:
//! ../shared/design/CLINICAL.md.

/// An observation concept, whatever LOINC variant or unit it arrives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observation {
    Hba1c,
    FastingGlucose,
    Glucose,
    Creatinine,
    Egfr,
    UrineAcr,
    Systolic,
    Diastolic,
}

/// mg/dL of glucose per mmol/L (CLINICAL.md: ÷ 18.016).
pub const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.016;
/// µmol/L of creatinine per mg/dL.
pub const CREATININE_UMOL_L_PER_MG_DL: f64 = 88.4;

impl Observation {
    pub const ALL: [Observation; 8] = [
        Observation::Hba1c,
        Observation::FastingGlucose,
        Observation::Glucose,
        Observation::Creatinine,
        Observation::Egfr,
        Observation::UrineAcr,
        Observation::Systolic,
        Observation::Diastolic,
    ];

    /// The concept of a LOINC code (any of its unit variants).
    pub fn from_loinc(code: &str) -> Option<Observation> {
        Some(match code.trim() {
            "4548-4" | "17856-6" => Observation::Hba1c,
            "14771-0" | "1558-6" => Observation::FastingGlucose,
            "14749-6" | "15074-8" | "2345-7" | "2339-0" => Observation::Glucose,
            "14682-9" | "2160-0" => Observation::Creatinine,
            "98979-8" | "62238-1" | "33914-3" | "48642-3" | "48643-1" => Observation::Egfr,
            "9318-7" | "14959-1" => Observation::UrineAcr,
            "8480-6" => Observation::Systolic,
            "8462-4" => Observation::Diastolic,
            _ => return None,
        })
    }

    /// The LOINC code Vigil emits for the concept (the variant in the canonical unit).
    pub fn loinc(self) -> &'static str {
        match self {
            Observation::Hba1c => "4548-4",
            Observation::FastingGlucose => "14771-0",
            Observation::Glucose => "14749-6",
            Observation::Creatinine => "14682-9",
            Observation::Egfr => "98979-8",
            Observation::UrineAcr => "9318-7",
            Observation::Systolic => "8480-6",
            Observation::Diastolic => "8462-4",
        }
    }

    /// The UCUM unit Vigil carries the concept in.
    pub fn unit(self) -> &'static str {
        match self {
            Observation::Hba1c => "%",
            Observation::FastingGlucose | Observation::Glucose => "mmol/L",
            Observation::Creatinine => "umol/L",
            Observation::Egfr => "mL/min/{1.73_m2}",
            Observation::UrineAcr => "mg/g",
            Observation::Systolic | Observation::Diastolic => "mm[Hg]",
        }
    }

    /// Converts `value` in `unit` to the canonical unit; `None` if the unit does not fit the
    /// concept. Unit spellings are compared case-insensitively, without spaces.
    pub fn to_canonical(self, value: f64, unit: &str) -> Option<f64> {
        let unit: String = unit
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let converted = match (self, unit.as_str()) {
            (Observation::FastingGlucose | Observation::Glucose, "mmol/l") => value,
            (Observation::FastingGlucose | Observation::Glucose, "mg/dl") => {
                value / GLUCOSE_MG_DL_PER_MMOL_L
            }
            (Observation::Creatinine, "umol/l" | "µmol/l" | "μmol/l") => value,
            (Observation::Creatinine, "mg/dl") => value * CREATININE_UMOL_L_PER_MG_DL,
            (Observation::Hba1c, "%") => value,
            // IFCC units convert by the NGSP master equation.
            (Observation::Hba1c, "mmol/mol") => 0.09148 * value + 2.152,
            (Observation::Egfr, u) if u.starts_with("ml/min") => value,
            (Observation::UrineAcr, "mg/g") => value,
            (Observation::UrineAcr, "mg/mmol") => value * 8.84,
            (Observation::Systolic | Observation::Diastolic, "mm[hg]" | "mmhg") => value,
            _ => return None,
        };
        Some(converted)
    }

    /// Values outside this range (canonical unit) cannot be real: a typing or unit error.
    pub fn plausible_range(self) -> (f64, f64) {
        match self {
            Observation::Hba1c => (3.0, 20.0),
            Observation::FastingGlucose | Observation::Glucose => (0.5, 60.0),
            Observation::Creatinine => (10.0, 3_000.0),
            Observation::Egfr => (1.0, 200.0),
            Observation::UrineAcr => (0.0, 10_000.0),
            Observation::Systolic => (50.0, 300.0),
            Observation::Diastolic => (20.0, 200.0),
        }
    }

    pub fn is_plausible(self, canonical_value: f64) -> bool {
        let (low, high) = self.plausible_range();
        canonical_value.is_finite() && (low..=high).contains(&canonical_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_concept_round_trips_through_its_loinc_and_unit() {
        for concept in Observation::ALL {
            assert_eq!(Observation::from_loinc(concept.loinc()), Some(concept));
            assert_eq!(concept.to_canonical(1.0, concept.unit()), Some(1.0));
        }
    }

    #[test]
    fn conversions_and_ranges() {
        let mg = Observation::Glucose.to_canonical(126.0, "mg/dL").unwrap();
        assert!((mg - 6.99).abs() < 0.01);
        assert_eq!(
            Observation::Creatinine.to_canonical(1.0, "mg/dl"),
            Some(88.4)
        );
        assert!((Observation::Hba1c.to_canonical(80.0, "mmol/mol").unwrap() - 9.47).abs() < 0.01);
        assert_eq!(Observation::Glucose.to_canonical(7.0, "g/L"), None);
        assert_eq!(
            Observation::Glucose.to_canonical(7.0, " MMOL / L "),
            Some(7.0)
        );
        assert!(Observation::Glucose.is_plausible(7.0));
        assert!(!Observation::Glucose.is_plausible(126.0));
        assert!(!Observation::Systolic.is_plausible(f64::NAN));
        assert_eq!(Observation::from_loinc("0000-0"), None);
    }
}
