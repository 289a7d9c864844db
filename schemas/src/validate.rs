//! What a valid canonical clinical event is.
//!
//! Every stage that reads the events topic checks the same contract, so an event the processor
//! rejects is not landed by the writer as if it were valid, and a record nobody at the edge
//! wrote (garbage, a 900 KB hospital id, a NaN) never reaches state or a table. The checks are a
//! function of the event alone (times are judged against the edge's ingest stamp, not a local
//! clock), so every stage and every replay reaches the same verdict. Details name the field and
//! the bound, never the value: a value could be anything a hospital typed, a name included.

use crate::terminology::Observation;
use crate::{ClinicalEvent, Payload};

/// Longest identifier-like field (event, hospital, record and encounter ids, source system).
pub const MAX_ID_CHARS: usize = 128;
/// Longest code or short text (codes, units, frequencies, clinician ids, region codes).
pub const MAX_TEXT_CHARS: usize = 64;
/// 1990-01-01T00:00:00Z: older clinical times in a chronic-disease feed are typing errors.
pub const EARLIEST_CLINICAL_MS: i64 = 631_152_000_000;
/// 2100-01-01T00:00:00Z: no clock is that wrong; beyond it a time is garbage, not a future date.
pub const LATEST_PLAUSIBLE_MS: i64 = 4_102_444_800_000;
/// How far an event's clinical time may lie ahead of its ingest stamp at the edge (clock skew
/// between a hospital's systems and the edge; the edge refuses more than this too).
pub const FUTURE_TOLERANCE_MS: i64 = 86_400_000;
/// Largest dose in any unit (a dose of 1e308 is a typing error, not a prescription).
const MAX_DOSE: f64 = 1_000_000.0;

/// Why an event is not acceptable: the dead-letter reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidPseudonym,
    InvalidHospitalId,
    FieldTooLong,
    MissingField,
    NonFiniteValue,
    ValueOutOfRange,
    UnexpectedUnit,
    EventTimeImplausible,
    EventTimeInFuture,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidPseudonym => "invalid_pseudonym",
            Reason::InvalidHospitalId => "invalid_hospital_id",
            Reason::FieldTooLong => "field_too_long",
            Reason::MissingField => "missing_field",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::UnexpectedUnit => "unexpected_unit",
            Reason::EventTimeImplausible => "event_time_implausible",
            Reason::EventTimeInFuture => "event_time_in_future",
        }
    }
}

/// A rejected event: the reason and a detail that names fields and bounds only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub detail: String,
}

fn invalid(reason: Reason, detail: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        detail: detail.into(),
    }
}

type Check = Result<(), Invalid>;

fn bounded(field: &str, value: &str, max_chars: usize) -> Check {
    // Bytes bound chars from above: only long texts need counting.
    if value.len() > max_chars && value.chars().count() > max_chars {
        return Err(invalid(
            Reason::FieldTooLong,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    Ok(())
}

fn in_range(field: &str, value: f64, low: f64, high: f64) -> Check {
    if !value.is_finite() {
        return Err(invalid(
            Reason::NonFiniteValue,
            format!("{field} is not a finite number"),
        ));
    }
    if !(low..=high).contains(&value) {
        return Err(invalid(
            Reason::ValueOutOfRange,
            format!("{field} is outside the plausible range {low}..{high}"),
        ));
    }
    Ok(())
}

fn optional_in_range(field: &str, value: Option<f64>, low: f64, high: f64) -> Check {
    value.map_or(Ok(()), |v| in_range(field, v, low, high))
}

fn clinical_time(field: &str, ms: i64) -> Check {
    if !(EARLIEST_CLINICAL_MS..=LATEST_PLAUSIBLE_MS).contains(&ms) {
        return Err(invalid(
            Reason::EventTimeImplausible,
            format!("{field} is outside 1990..2100"),
        ));
    }
    Ok(())
}

/// Whether a text is what hospital ids look like: 1 to 64 ASCII letters, digits, '-', '_' or
/// '.'. Anything else could be any text a source put there (a name, say), so it is neither
/// accepted as an id nor copied into labels, statistics or dead letters.
pub fn is_hospital_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether a pseudonym is what the edge writes: 64 lowercase or uppercase hex digits.
pub fn is_pseudonym(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a canonical event against the contract.
pub fn check_event(event: &ClinicalEvent) -> Check {
    if !is_pseudonym(&event.patient_pseudonym) {
        return Err(invalid(
            Reason::InvalidPseudonym,
            "patient_pseudonym is not a 64-character hex HMAC",
        ));
    }
    for (field, value) in [
        ("event_id", &event.event_id),
        ("hospital_id", &event.hospital_id),
        ("source_system", &event.source_system),
        ("record_id", &event.record_id),
    ] {
        bounded(field, value, MAX_ID_CHARS)?;
    }
    if !is_hospital_id(&event.hospital_id) {
        return Err(invalid(
            Reason::InvalidHospitalId,
            "hospital_id is not 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    if let Some(source) = &event.source {
        bounded("source.topic", &source.topic, MAX_ID_CHARS)?;
        if source.partition < 0 || source.offset < 0 {
            return Err(invalid(
                Reason::ValueOutOfRange,
                "source.partition and source.offset must not be negative",
            ));
        }
    }
    clinical_time("event_time", event.event_time_ms)?;
    clinical_time("ingest_time", event.ingest_time_ms)?;
    if event.event_time_ms > event.ingest_time_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err(invalid(
            Reason::EventTimeInFuture,
            "event_time is further ahead of ingest_time than the tolerance",
        ));
    }
    check_payload(&event.payload)
}

fn check_payload(payload: &Payload) -> Check {
    match payload {
        Payload::PatientRegistration(r) => {
            in_range("birth_year", r.birth_year as f64, 1900.0, 2100.0)?;
            bounded("region_code", &r.region_code, MAX_TEXT_CHARS)?;
            for programme in &r.programmes {
                clinical_time("enrolled_time", programme.enrolled_time_ms)?;
            }
            r.death_time_ms
                .map_or(Ok(()), |t| clinical_time("death_time", t))
        }
        Payload::Encounter(e) => {
            bounded("department_code", &e.department_code, MAX_TEXT_CHARS)?;
            clinical_time("start_time", e.start_time_ms)?;
            e.end_time_ms
                .map_or(Ok(()), |t| clinical_time("end_time", t))
        }
        Payload::Diagnosis(d) => {
            if d.icd10.trim().is_empty() {
                return Err(invalid(
                    Reason::MissingField,
                    "diagnosis without an ICD-10 code",
                ));
            }
            bounded("icd10", &d.icd10, 16)?;
            bounded("department_code", &d.department_code, MAX_TEXT_CHARS)?;
            bounded_optional("encounter_id", &d.encounter_id)
        }
        Payload::LabResult(lab) => {
            bounded("loinc", &lab.loinc, 16)?;
            bounded("unit", &lab.unit, MAX_TEXT_CHARS)?;
            bounded("local_code", &lab.local_code, MAX_TEXT_CHARS)?;
            bounded_optional("encounter_id", &lab.encounter_id)?;
            if !lab.value.is_finite() {
                return Err(invalid(
                    Reason::NonFiniteValue,
                    "the result is not a finite number",
                ));
            }
            if let Some((observation, value)) = normalise_lab(&lab.loinc, lab.value, &lab.unit)? {
                let (low, high) = observation.plausible_range();
                in_range("the result", value, low, high)?;
            }
            Ok(())
        }
        Payload::VitalSign(v) => {
            check_bp(v.systolic_mmhg, v.diastolic_mmhg)?;
            optional_in_range("heart rate", v.heart_rate_bpm, 20.0, 250.0)?;
            optional_in_range("weight", v.weight_kg, 2.0, 400.0)?;
            optional_in_range("height", v.height_cm, 40.0, 250.0)?;
            bounded_optional("encounter_id", &v.encounter_id)
        }
        Payload::Prescription(p) => {
            for (field, value) in [
                ("drug_code", &p.drug_code),
                ("atc_code", &p.atc_code),
                ("dose_unit", &p.dose_unit),
                ("frequency", &p.frequency),
            ] {
                bounded(field, value, MAX_TEXT_CHARS)?;
            }
            bounded_optional("encounter_id", &p.encounter_id)?;
            in_range("dose", p.dose, 0.0, MAX_DOSE)?;
            in_range("days_supply", p.days_supply as f64, 0.0, 3650.0)
        }
        Payload::FollowUpVisit(f) => {
            check_bp(f.systolic_mmhg, f.diastolic_mmhg)?;
            let (low, high) = Observation::Glucose.plausible_range();
            optional_in_range("fasting glucose", f.fasting_glucose_mmol_l, low, high)?;
            let (low, high) = Observation::Hba1c.plausible_range();
            optional_in_range("HbA1c", f.hba1c_percent, low, high)?;
            bounded("clinician_id", &f.clinician_id, MAX_TEXT_CHARS)?;
            f.next_visit_time_ms
                .map_or(Ok(()), |t| clinical_time("next_visit_time", t))
        }
        Payload::PatientMerge(m) if !is_pseudonym(&m.surviving_pseudonym) => Err(invalid(
            Reason::InvalidPseudonym,
            "surviving_pseudonym is not a 64-character hex HMAC",
        )),
        Payload::PatientMerge(_) => Ok(()),
    }
}

fn bounded_optional(field: &str, value: &Option<String>) -> Check {
    value
        .as_deref()
        .map_or(Ok(()), |v| bounded(field, v, MAX_ID_CHARS))
}

fn check_bp(systolic: Option<f64>, diastolic: Option<f64>) -> Check {
    optional_in_range("systolic BP", systolic, 50.0, 300.0)?;
    optional_in_range("diastolic BP", diastolic, 20.0, 200.0)?;
    if let (Some(s), Some(d)) = (systolic, diastolic) {
        if s <= d {
            return Err(invalid(
                Reason::ValueOutOfRange,
                "systolic BP is not above diastolic BP",
            ));
        }
    }
    Ok(())
}

/// The observation and its value in the canonical unit, or None for tests no rule uses.
/// The unit string decides the conversion; a unit that does not fit the test is an error.
pub fn normalise_lab(
    loinc: &str,
    value: f64,
    unit: &str,
) -> Result<Option<(Observation, f64)>, Invalid> {
    let Some(observation) = Observation::from_loinc(loinc) else {
        return Ok(None);
    };
    match observation.to_canonical(value, unit) {
        Some(canonical) => Ok(Some((observation, canonical))),
        None => Err(invalid(
            Reason::UnexpectedUnit,
            format!("the unit does not fit LOINC {}", observation.loinc()),
        )),
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
pub fn truncate_to_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Operation, Prescription, VitalSign};

    const PSEUDONYM: &str = "3f9a1c0e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a0c2e4b6d8f0a";
    /// 2026-01-01T00:00:00Z
    const T: i64 = 1_767_225_600_000;
    const DAY: i64 = 86_400_000;

    fn event(payload: Payload) -> ClinicalEvent {
        ClinicalEvent {
            event_id: "e1".into(),
            hospital_id: "H0001".into(),
            source_system: "test".into(),
            operation: Operation::Create,
            event_time_ms: T,
            ingest_time_ms: T,
            patient_pseudonym: PSEUDONYM.into(),
            record_id: "rx/1".into(),
            schema_version: 1,
            payload,
            source: None,
        }
    }

    fn prescription(dose: f64) -> ClinicalEvent {
        event(Payload::Prescription(Prescription {
            drug_code: "D1".into(),
            atc_code: "C09AA05".into(),
            dose,
            dose_unit: "mg".into(),
            frequency: "qd".into(),
            days_supply: 30,
            encounter_id: None,
        }))
    }

    fn reason(event: &ClinicalEvent) -> Option<Reason> {
        check_event(event).err().map(|e| e.reason)
    }

    #[test]
    fn doses_must_be_finite_and_plausible() {
        assert_eq!(reason(&prescription(5.0)), None);
        assert_eq!(reason(&prescription(0.0)), None);
        assert_eq!(
            reason(&prescription(f64::NAN)),
            Some(Reason::NonFiniteValue)
        );
        assert_eq!(
            reason(&prescription(f64::INFINITY)),
            Some(Reason::NonFiniteValue)
        );
        assert_eq!(reason(&prescription(1e308)), Some(Reason::ValueOutOfRange));
        assert_eq!(reason(&prescription(-5.0)), Some(Reason::ValueOutOfRange));
    }

    #[test]
    fn times_are_judged_against_the_ingest_stamp_and_absolute_bounds() {
        let mut e = prescription(5.0);
        e.event_time_ms = T + 2 * DAY;
        assert_eq!(reason(&e), Some(Reason::EventTimeInFuture));
        e.event_time_ms = -5_000_000_000_000_000;
        assert_eq!(reason(&e), Some(Reason::EventTimeImplausible));
        e.event_time_ms = T;
        e.ingest_time_ms = i64::MAX;
        assert_eq!(reason(&e), Some(Reason::EventTimeImplausible));
    }

    #[test]
    fn oversized_and_malformed_envelopes_are_refused_without_echoing_them() {
        let mut e = prescription(5.0);
        e.hospital_id = "王".repeat(300_000);
        let err = check_event(&e).unwrap_err();
        assert_eq!(err.reason, Reason::FieldTooLong);
        assert!(!err.detail.contains('王'));
        let mut e = prescription(5.0);
        e.patient_pseudonym = "何玉兰".into();
        let err = check_event(&e).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidPseudonym);
        assert!(!err.detail.contains("何玉兰"));
        // Exactly at the bound is fine, counted in characters.
        let mut e = prescription(5.0);
        e.record_id = "医".repeat(MAX_ID_CHARS);
        assert_eq!(reason(&e), None);
        e.record_id.push('医');
        assert_eq!(reason(&e), Some(Reason::FieldTooLong));
        // A hospital id is an id, not any text.
        let mut e = prescription(5.0);
        e.hospital_id = "patient 何玉兰".into();
        assert_eq!(reason(&e), Some(Reason::InvalidHospitalId));
    }

    #[test]
    fn vitals_reject_nan_and_inverted_pressures() {
        let vitals = |s: Option<f64>, d: Option<f64>| {
            event(Payload::VitalSign(VitalSign {
                systolic_mmhg: s,
                diastolic_mmhg: d,
                heart_rate_bpm: None,
                weight_kg: None,
                height_cm: None,
                encounter_id: None,
            }))
        };
        assert_eq!(reason(&vitals(Some(130.0), Some(80.0))), None);
        assert_eq!(
            reason(&vitals(Some(f64::NAN), None)),
            Some(Reason::NonFiniteValue)
        );
        assert_eq!(
            reason(&vitals(Some(80.0), Some(130.0))),
            Some(Reason::ValueOutOfRange)
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(
            truncate_to_boundary("123456789012345王", 16),
            "123456789012345"
        );
        assert_eq!(truncate_to_boundary("abc", 16), "abc");
        assert_eq!(truncate_to_boundary("王王", 4), "王");
    }
}
