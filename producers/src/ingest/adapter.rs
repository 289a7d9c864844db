//! One Debezium change event in, one canonical event (or a reasoned rejection) out.
//!
//! The event is read through its hospital's vendor shape (which table, which columns, which
//! code values, how time is written) and code tables (local codes to LOINC, ICD-10, ATC). The
//! resident ID becomes the pseudonym; every other direct identifier is dropped. Values are
//! converted to canonical units and checked for plausibility; the clinical time of the row is
//! the event time (the change time for deletes, which retract rather than state a fact).

use serde_json::{Map, Value};
use vigil_schemas::ids::stable_id;
use vigil_schemas::terminology::Observation;
use vigil_schemas::{
    ClinicalEvent, Condition, Diagnosis, Encounter, EncounterType, FollowUpVisit, LabResult,
    Operation, PatientRegistration, Payload, Prescription, ProgrammeEnrolment, Sex, VisitMode,
    VitalSign,
};

use crate::edge::shapes::{decode, TableKind};
use crate::edge::time::{read_date, read_timestamp, year_of};
use crate::edge::{Catalog, HospitalProfile};
use crate::pseudonym::PseudonymKey;

/// A record the edge does not accept, with a bounded reason code.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Empty when the record did not say which hospital it came from.
    pub hospital: String,
    pub reason: &'static str,
    /// Names fields and bounds, never values (a value may be anything a hospital typed).
    pub detail: String,
    /// Row columns the dead-letter copy may show (see `redact::safe_copy`); empty when the
    /// hospital or the table is unknown.
    pub columns: Vec<String>,
}

/// What became of one input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(Box<ClinicalEvent>),
    /// The event was accepted but a code had no mapping (e.g. a drug without ATC): data quality.
    AcceptedUnmapped(Box<ClinicalEvent>, &'static str),
    Rejected(Rejection),
    /// A Debezium tombstone (null value after a delete): nothing to do.
    Tombstone,
}

/// Settings the adapter needs besides the catalogue.
pub struct Adapter<'a> {
    pub catalog: &'a Catalog,
    pub key: &'a PseudonymKey,
    /// The hospitals' time zone, minutes east of UTC (for local-time text).
    pub utc_offset_minutes: i32,
    /// Clinical times further ahead of this than a day are rejected.
    pub now_ms: i64,
}

type Reject = (&'static str, String);

/// A numeric column: a JSON number or numeric text. "NaN", "inf" and the like are not numbers
/// a clinician wrote, whatever `f64::from_str` accepts.
fn number(row: &Map<String, Value>, column: &str) -> Result<Option<f64>, Reject> {
    let parsed = match row.get(column) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(value) if value.is_finite() => Ok(Some(value)),
        _ => Err((
            "non_numeric_result",
            format!("{column} is not a finite number"),
        )),
    }
}

/// A code value as it may appear in a reason detail: short and code-shaped, so it cannot be a
/// name or an identity number; anything else is described, not shown.
fn shown(code: &str) -> String {
    let code_like = code.len() <= 20
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '%'))
        && code.chars().filter(char::is_ascii_digit).count() < 11;
    if code_like {
        format!("'{code}'")
    } else {
        "(not code-shaped, not shown)".to_string()
    }
}

fn text(row: &Map<String, Value>, column: &str) -> String {
    match row.get(column) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The columns of the event's table that its dead-letter copy may show.
fn copyable_columns(profile: &HospitalProfile, payload: &Value) -> Vec<String> {
    let table = payload
        .pointer("/source/table")
        .and_then(Value::as_str)
        .unwrap_or_default();
    profile
        .vendor
        .table(table)
        .map(|(kind, _, _)| {
            profile
                .vendor
                .copyable_columns(kind)
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn plausible(concept: Observation, value: f64, what: &str) -> Result<f64, Reject> {
    if concept.is_plausible(value) {
        Ok(value)
    } else {
        let (low, high) = concept.plausible_range();
        Err((
            "value_out_of_range",
            format!("{what} is outside {low}..{high} {}", concept.unit()),
        ))
    }
}

/// A reading's systolic and diastolic pressure (either may be missing); systolic must be above
/// diastolic when both are there.
fn blood_pressure(
    row: &Map<String, Value>,
    systolic_column: &str,
    diastolic_column: &str,
) -> Result<(Option<f64>, Option<f64>), Reject> {
    let systolic = optional_vital(row, systolic_column, Some(Observation::Systolic), 0.0, 0.0)?;
    let diastolic = optional_vital(
        row,
        diastolic_column,
        Some(Observation::Diastolic),
        0.0,
        0.0,
    )?;
    if let (Some(s), Some(d)) = (systolic, diastolic) {
        if s <= d {
            return Err((
                "value_out_of_range",
                format!("{systolic_column} is not above {diastolic_column}"),
            ));
        }
    }
    Ok((systolic, diastolic))
}

fn optional_vital(
    row: &Map<String, Value>,
    column: &str,
    concept: Option<Observation>,
    low: f64,
    high: f64,
) -> Result<Option<f64>, Reject> {
    let Some(value) = number(row, column)? else {
        return Ok(None);
    };
    match concept {
        Some(concept) => plausible(concept, value, column).map(Some),
        None if (low..=high).contains(&value) => Ok(Some(value)),
        None => Err((
            "value_out_of_range",
            format!("{column} is outside {low}..{high}"),
        )),
    }
}

/// A plausible ICD-10 code: a letter, two digits, optionally a dot and more characters.
fn valid_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1].is_ascii_digit() && b[2].is_ascii_digit()
}

impl Adapter<'_> {
    /// Adapts one Kafka record value (`None`: a tombstone).
    pub fn adapt(&self, value: Option<&[u8]>) -> Outcome {
        let Some(bytes) = value else {
            return Outcome::Tombstone;
        };
        let parsed: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                return Outcome::Rejected(Rejection {
                    hospital: String::new(),
                    reason: "malformed_record",
                    detail: format!(
                        "not JSON ({:?} error at line {} column {})",
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                    columns: Vec::new(),
                })
            }
        };
        // With Kafka Connect's schemas enabled the event sits under "payload".
        let payload = match parsed.get("payload") {
            Some(p) if parsed.get("schema").is_some() => p,
            _ => &parsed,
        };
        if payload.is_null() {
            return Outcome::Tombstone;
        }
        if !payload.is_object() {
            return Outcome::Rejected(Rejection {
                hospital: String::new(),
                reason: "malformed_record",
                detail: "a change event must be a JSON object".into(),
                columns: Vec::new(),
            });
        }
        let server = payload
            .pointer("/source/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(profile) = self.catalog.by_server(server) else {
            return Outcome::Rejected(Rejection {
                hospital: String::new(),
                reason: "unknown_hospital",
                detail: format!(
                    "no hospital in the edge catalogue has the connector name {}",
                    shown(server)
                ),
                columns: Vec::new(),
            });
        };
        match self.adapt_event(profile, payload) {
            Ok((event, unmapped)) => match unmapped {
                Some(what) => Outcome::AcceptedUnmapped(Box::new(event), what),
                None => Outcome::Accepted(Box::new(event)),
            },
            Err((reason, detail)) => Outcome::Rejected(Rejection {
                hospital: profile.id.clone(),
                reason,
                detail,
                columns: copyable_columns(profile, payload),
            }),
        }
    }

    fn adapt_event(
        &self,
        profile: &HospitalProfile,
        payload: &Value,
    ) -> Result<(ClinicalEvent, Option<&'static str>), Reject> {
        let vendor = &profile.vendor;
        let op = payload
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let operation = match op {
            "c" => Operation::Create,
            "u" => Operation::Update,
            "d" => Operation::Delete,
            "r" => Operation::Snapshot,
            other => {
                return Err((
                    "missing_field",
                    format!("op {} is missing or not one of c, u, d, r", shown(other)),
                ))
            }
        };
        let source = payload.get("source").cloned().unwrap_or(Value::Null);
        let table_name = source
            .get("table")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((kind, key_column, resident_column)) = vendor.table(table_name) else {
            return Err((
                "unknown_table",
                format!("vendor {} has no table {}", vendor.name, shown(table_name)),
            ));
        };
        let change_ms = source
            .get("ts_ms")
            .and_then(Value::as_i64)
            .ok_or(("missing_field", "source.ts_ms is missing".to_string()))?;
        // Every operation, deletes included: a delete's change time is its event time.
        let change_ms = self.check_time(change_ms, "source.ts_ms")?;
        let image = if operation == Operation::Delete {
            "before"
        } else {
            "after"
        };
        let row = payload.get(image).and_then(Value::as_object).ok_or((
            "missing_field",
            format!("the '{image}' image of a '{op}' event is missing"),
        ))?;
        let key = text(row, key_column);
        if key.is_empty() {
            return Err((
                "missing_field",
                format!("{key_column} (the row key) is missing"),
            ));
        }
        let resident = text(row, resident_column);
        if resident.is_empty() {
            return Err((
                "missing_patient_identifier",
                format!("{resident_column} is missing"),
            ));
        }
        if !crate::edge::resident_id::is_valid(&resident) {
            return Err((
                "invalid_patient_identifier",
                format!("{resident_column} is not a valid resident ID"),
            ));
        }
        let (ts, offset) = (vendor.timestamp_format, self.utc_offset_minutes);
        let time = |column: &str| -> Result<i64, Reject> {
            let ms =
                read_timestamp(row.get(column).unwrap_or(&Value::Null), ts, offset).ok_or((
                    "missing_field",
                    format!("{column} (the clinical time) is missing or unreadable"),
                ))?;
            self.check_time(ms, column)
        };
        let mut unmapped = None;
        let (payload, clinical_ms) = match kind {
            TableKind::Patient => {
                let p = &vendor.patient;
                let sex = match decode(&p.codes.sex, &text(row, &p.sex)) {
                    Some("male") => Sex::Male,
                    Some("female") => Sex::Female,
                    _ => Sex::Unknown,
                };
                let birth = read_date(
                    row.get(&p.birth_date).unwrap_or(&Value::Null),
                    vendor.date_format,
                    offset,
                )
                .ok_or((
                    "missing_field",
                    format!("{} (birth date) is missing or unreadable", p.birth_date),
                ))?;
                let birth_year = year_of(birth, offset);
                if !(1900..=year_of(self.now_ms, offset)).contains(&birth_year) {
                    return Err((
                        "invalid_date",
                        format!("birth year {birth_year} is implausible"),
                    ));
                }
                let mut programmes = Vec::new();
                for (column, condition) in [
                    (&p.hypertension_enrolled, Condition::Hypertension),
                    (&p.diabetes_enrolled, Condition::Diabetes),
                ] {
                    if let Some(at) =
                        read_timestamp(row.get(column).unwrap_or(&Value::Null), ts, offset)
                    {
                        programmes.push(ProgrammeEnrolment {
                            condition,
                            enrolled_time_ms: self.check_time(at, column)?,
                        });
                    }
                }
                let death =
                    match read_timestamp(row.get(&p.death).unwrap_or(&Value::Null), ts, offset) {
                        Some(at) => Some(self.check_time(at, &p.death)?),
                        None => None,
                    };
                let registration = PatientRegistration {
                    sex,
                    birth_year,
                    region_code: text(row, &p.region),
                    programmes,
                    death_time_ms: death,
                };
                (Payload::PatientRegistration(registration), change_ms)
            }
            TableKind::Encounter => {
                let e = &vendor.encounter;
                let encounter_type = match decode(&e.codes.kind, &text(row, &e.kind)) {
                    Some("inpatient") => EncounterType::Inpatient,
                    Some("emergency") => EncounterType::Emergency,
                    Some("home_visit") => EncounterType::HomeVisit,
                    Some("outpatient") => EncounterType::Outpatient,
                    _ => {
                        return Err((
                            "invalid_code",
                            format!(
                                "{} {} is not one of the vendor's encounter types",
                                e.kind,
                                shown(&text(row, &e.kind))
                            ),
                        ))
                    }
                };
                let start = time(&e.start)?;
                let end = read_timestamp(row.get(&e.end).unwrap_or(&Value::Null), ts, offset);
                (
                    Payload::Encounter(Encounter {
                        encounter_type,
                        department_code: text(row, &e.department),
                        start_time_ms: start,
                        end_time_ms: end,
                    }),
                    start,
                )
            }
            TableKind::Diagnosis => {
                let d = &vendor.diagnosis;
                let code = text(row, &d.code);
                let local = !d.code_system.is_empty()
                    && text(row, &d.code_system).eq_ignore_ascii_case("LOCAL");
                let icd10 = if local {
                    profile.codes.diagnosis.get(&code).cloned().ok_or((
                        "unknown_local_code",
                        format!(
                            "diagnosis code {} has no ICD-10 mapping for {}",
                            shown(&code),
                            profile.id
                        ),
                    ))?
                } else {
                    code
                };
                if !valid_icd10(&icd10) {
                    return Err((
                        "invalid_code",
                        format!("{} is not an ICD-10 code", shown(&icd10)),
                    ));
                }
                let primary = decode(&d.codes.primary, &text(row, &d.primary)) == Some("yes");
                let encounter = Some(text(row, &d.encounter)).filter(|s| !s.is_empty());
                let at = time(&d.time)?;
                (
                    Payload::Diagnosis(Diagnosis {
                        icd10,
                        is_primary: primary,
                        department_code: text(row, &d.department),
                        encounter_id: encounter,
                    }),
                    at,
                )
            }
            TableKind::Lab => {
                let l = &vendor.lab;
                let code = text(row, &l.code);
                let mapped = profile.codes.lab.get(&code).ok_or((
                    "unknown_local_code",
                    format!(
                        "lab code {} has no LOINC mapping for {}",
                        shown(&code),
                        profile.id
                    ),
                ))?;
                let value = number(row, &l.value)?.ok_or((
                    "missing_field",
                    format!("{} (the result) is missing", l.value),
                ))?;
                // The unit on the row wins (labs change units); the code table's is the default.
                let reported_unit = Some(text(row, &l.unit))
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| mapped.unit.clone());
                let at = time(&l.time)?;
                let lab = match Observation::from_loinc(&mapped.loinc) {
                    Some(concept) => {
                        let canonical = concept.to_canonical(value, &reported_unit).ok_or((
                            "unexpected_unit",
                            format!(
                                "unit {} does not fit {} (lab code {})",
                                shown(&reported_unit),
                                mapped.loinc,
                                shown(&code)
                            ),
                        ))?;
                        let canonical = plausible(concept, canonical, &code)?;
                        LabResult {
                            loinc: concept.loinc().into(),
                            value: canonical,
                            unit: concept.unit().into(),
                            local_code: code,
                            encounter_id: None,
                        }
                    }
                    None => LabResult {
                        loinc: mapped.loinc.clone(),
                        value,
                        unit: reported_unit,
                        local_code: code,
                        encounter_id: None,
                    },
                };
                (Payload::LabResult(lab), at)
            }
            TableKind::Vitals => {
                let v = &vendor.vitals;
                let (systolic, diastolic) = blood_pressure(row, &v.systolic, &v.diastolic)?;
                let vitals = VitalSign {
                    systolic_mmhg: systolic,
                    diastolic_mmhg: diastolic,
                    heart_rate_bpm: optional_vital(row, &v.heart_rate, None, 20.0, 250.0)?,
                    weight_kg: optional_vital(row, &v.weight, None, 2.0, 400.0)?,
                    height_cm: optional_vital(row, &v.height, None, 40.0, 250.0)?,
                    encounter_id: None,
                };
                (Payload::VitalSign(vitals), time(&v.time)?)
            }
            TableKind::Prescription => {
                let p = &vendor.prescription;
                let drug = text(row, &p.drug);
                let atc = profile.codes.drug.get(&drug).cloned().unwrap_or_default();
                if atc.is_empty() {
                    unmapped = Some("drug_code");
                }
                let dose = number(row, &p.dose)?
                    .ok_or(("missing_field", format!("{} (the dose) is missing", p.dose)))?;
                let days = number(row, &p.days)?.unwrap_or(0.0);
                let at = time(&p.time)?;
                let prescription = Prescription {
                    drug_code: drug,
                    atc_code: atc,
                    dose,
                    dose_unit: text(row, &p.dose_unit),
                    frequency: text(row, &p.frequency),
                    days_supply: days.clamp(0.0, 3650.0) as i32,
                    encounter_id: None,
                };
                (Payload::Prescription(prescription), at)
            }
            TableKind::FollowUp => {
                let f = &vendor.follow_up;
                let condition = match decode(&f.codes.program, &text(row, &f.program)) {
                    Some("hypertension") => Condition::Hypertension,
                    Some("diabetes") => Condition::Diabetes,
                    _ => {
                        return Err((
                            "invalid_code",
                            format!(
                                "{} {} is not one of the vendor's programmes",
                                f.program,
                                shown(&text(row, &f.program))
                            ),
                        ))
                    }
                };
                let visit_mode = match decode(&f.codes.mode, &text(row, &f.mode)) {
                    Some("home") => VisitMode::Home,
                    Some("phone") => VisitMode::Phone,
                    Some("online") => VisitMode::Online,
                    Some("clinic") => VisitMode::Clinic,
                    _ => {
                        return Err((
                            "invalid_code",
                            format!(
                                "{} {} is not one of the vendor's follow-up modes",
                                f.mode,
                                shown(&text(row, &f.mode))
                            ),
                        ))
                    }
                };
                let (systolic, diastolic) = blood_pressure(row, &f.systolic, &f.diastolic)?;
                let visit = FollowUpVisit {
                    condition,
                    visit_mode,
                    systolic_mmhg: systolic,
                    diastolic_mmhg: diastolic,
                    fasting_glucose_mmol_l: optional_vital(
                        row,
                        &f.fasting_glucose,
                        Some(Observation::FastingGlucose),
                        0.0,
                        0.0,
                    )?,
                    hba1c_percent: optional_vital(
                        row,
                        &f.hba1c,
                        Some(Observation::Hba1c),
                        0.0,
                        0.0,
                    )?,
                    next_visit_time_ms: read_date(
                        row.get(&f.next_visit).unwrap_or(&Value::Null),
                        vendor.date_format,
                        offset,
                    ),
                    clinician_id: text(row, &f.clinician),
                };
                (Payload::FollowUpVisit(visit), time(&f.time)?)
            }
        };
        // The source position tells two changes of the same row in the same millisecond apart.
        let position = ["file", "pos", "row", "lsn", "scn"]
            .iter()
            .filter_map(|k| source.get(*k).map(|v| v.to_string()))
            .collect::<Vec<_>>()
            .join(":");
        let table = table_name.to_ascii_lowercase();
        // The patient table's key is the medical record number: pseudonymised like the patient.
        let record_key = if kind == TableKind::Patient {
            self.key
                .pseudonymise(&format!("{}:{table}:{key}", profile.id))[..24]
                .to_string()
        } else {
            key.clone()
        };
        let event = ClinicalEvent {
            event_id: stable_id(&[
                profile.id.as_bytes(),
                table.as_bytes(),
                key.as_bytes(),
                op.as_bytes(),
                &change_ms.to_le_bytes(),
                position.as_bytes(),
            ]),
            hospital_id: profile.id.clone(),
            source_system: format!("{}/{}", vendor.name, vendor.connector),
            operation,
            event_time_ms: if operation == Operation::Delete {
                change_ms
            } else {
                clinical_ms
            },
            ingest_time_ms: self.now_ms,
            patient_pseudonym: self.key.pseudonymise(&resident),
            record_id: format!("{table}/{record_key}"),
            schema_version: 1,
            payload,
        };
        // The edge produces nothing the processor would refuse: the same contract, checked here.
        vigil_schemas::validate::check_event(&event)
            .map_err(|invalid| (invalid.reason.as_str(), invalid.detail))?;
        Ok((event, unmapped))
    }

    fn check_time(&self, ms: i64, column: &str) -> Result<i64, Reject> {
        // 1990 to a day ahead of the edge's clock: anything else is a typing or clock error.
        if ms < 631_152_000_000 || ms > self.now_ms + 86_400_000 {
            return Err((
                "invalid_date",
                format!("{column} is outside 1990..tomorrow"),
            ));
        }
        Ok(ms)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "11010519491231002X";

    fn catalog() -> Catalog {
        Catalog::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge"))
            .unwrap()
    }

    fn envelope(server: &str, table: &str, op: &str, row: Value) -> Value {
        let (before, after) = if op == "d" {
            (row, Value::Null)
        } else {
            (Value::Null, row)
        };
        json!({"before": before, "after": after, "op": op, "ts_ms": 1_750_000_001_000i64,
               "source": {"name": server, "table": table, "ts_ms": 1_750_000_000_000i64, "file": "mysql-bin.000001", "pos": 42}})
    }

    fn lab_a(code: &str, value: Value, unit: &str) -> Value {
        envelope(
            "his-h0001",
            "lis_jg",
            "c",
            json!({"jgid": 7, "sfzh": ID, "xmdm": code, "jg": value, "dw": unit, "bgsj": "2025-06-01 09:30:00"}),
        )
    }

    fn adapt(value: &Value) -> Outcome {
        let catalog = catalog();
        let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
        let adapter = Adapter {
            catalog: &catalog,
            key: &key,
            utc_offset_minutes: 480,
            now_ms: 1_760_000_000_000,
        };
        adapter.adapt(Some(value.to_string().as_bytes()))
    }

    fn accepted(value: &Value) -> ClinicalEvent {
        match adapt(value) {
            Outcome::Accepted(e) | Outcome::AcceptedUnmapped(e, _) => *e,
            other => panic!("rejected: {other:?}"),
        }
    }

    fn reason(value: &Value) -> &'static str {
        match adapt(value) {
            Outcome::Rejected(r) => r.reason,
            other => panic!("accepted: {other:?}"),
        }
    }

    fn lab(event: &ClinicalEvent) -> (String, f64, String) {
        match &event.payload {
            Payload::LabResult(l) => (
                l.loinc.clone(),
                (l.value * 100.0).round() / 100.0,
                l.unit.clone(),
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn local_lab_codes_map_to_loinc_in_canonical_units() {
        let b_glucose = envelope(
            "his-h0002",
            "lab_results",
            "c",
            json!({"id": 1, "id_number": ID, "test_code": "LAB0102", "value_numeric": 126.0, "units": "mg/dL", "resulted_at": 1_749_000_000_000_000i64}),
        );
        let b_creatinine = envelope(
            "his-h0002",
            "lab_results",
            "c",
            json!({"id": 2, "id_number": ID, "test_code": "LAB0301", "value_numeric": 1.0, "units": "", "resulted_at": 1_749_000_000_000_000i64}),
        );
        let c_hba1c = envelope(
            "his-h0003",
            "EXAM_RESULT",
            "c",
            json!({"RESULT_ID": 3, "ID_NO": ID, "ITEM_CODE": "2001", "RESULT_VALUE": "9.4", "RESULT_UNIT": "%", "REPORT_TIME": 1_749_000_000_000i64}),
        );
        let cases: [(Value, (&str, f64, &str)); 5] = [
            (
                lab_a("GLU", json!("7.9"), "mmol/L"),
                ("14749-6", 7.9, "mmol/L"),
            ),
            // Reported in mg/dL where the lab usually reports mmol/L: converted, not rejected.
            (
                lab_a("FBG", json!("126"), "mg/dL"),
                ("14771-0", 6.99, "mmol/L"),
            ),
            (b_glucose, ("14749-6", 6.99, "mmol/L")),
            // No unit on the row: the code table's (mg/dL) applies.
            (b_creatinine, ("14682-9", 88.4, "umol/L")),
            (c_hba1c, ("4548-4", 9.4, "%")),
        ];
        for (input, (loinc, value, unit)) in cases {
            assert_eq!(
                lab(&accepted(&input)),
                (loinc.to_string(), value, unit.to_string()),
                "{input}"
            );
        }
    }

    fn rejection(value: &Value) -> Rejection {
        match adapt(value) {
            Outcome::Rejected(r) => r,
            other => panic!("accepted: {other:?}"),
        }
    }

    fn prescription(dose: Value) -> Value {
        envelope(
            "his-h0001",
            "cf_mx",
            "c",
            json!({"cfid": 9, "sfzh": ID, "ypdm": "Y001", "jl": dose, "jldw": "mg", "pc": "qd", "ts": 30, "kfsj": "2025-06-01 09:30:00"}),
        )
    }

    fn encounter(kind: &str, department: &str) -> Value {
        envelope(
            "his-h0001",
            "mz_jzjl",
            "c",
            json!({"jzid": 5, "sfzh": ID, "jzlx": kind, "ksdm": department, "jzsj": "2025-06-01 09:30:00"}),
        )
    }

    #[test]
    fn what_is_not_a_finite_plausible_dose_is_rejected() {
        assert!(matches!(
            adapt(&prescription(json!("5"))),
            Outcome::Accepted(_) | Outcome::AcceptedUnmapped(..)
        ));
        for dose in [json!("NaN"), json!("inf"), json!("-inf"), json!("infinity")] {
            assert_eq!(
                reason(&prescription(dose.clone())),
                "non_numeric_result",
                "{dose}"
            );
        }
        for dose in [json!("1e308"), json!(-5), json!("-5")] {
            assert_eq!(
                reason(&prescription(dose.clone())),
                "value_out_of_range",
                "{dose}"
            );
        }
    }

    #[test]
    fn deletes_are_held_to_the_same_clock_as_every_change() {
        let mut delete = lab_a("GLU", json!("7.9"), "mmol/L");
        delete["op"] = json!("d");
        delete["before"] = delete["after"].clone();
        delete["after"] = Value::Null;
        assert!(matches!(adapt(&delete), Outcome::Accepted(_)));
        delete["source"]["ts_ms"] = json!(-5_000_000_000_000_000i64);
        assert_eq!(reason(&delete), "invalid_date");
        delete["source"]["ts_ms"] = json!(4_000_000_000_000i64);
        assert_eq!(reason(&delete), "invalid_date");
    }

    #[test]
    fn hostile_text_is_rejected_without_panicking_or_being_echoed() {
        // A resident id of 18 bytes ending inside a multi-byte character.
        let mut multibyte = lab_a("GLU", json!("7.9"), "mmol/L");
        multibyte["after"]["sfzh"] = json!("123456789012345王");
        let r = rejection(&multibyte);
        assert_eq!(r.reason, "invalid_patient_identifier");
        assert!(!r.detail.contains("123456789012345"));
        // A name where a code belongs.
        let r = rejection(&encounter("patient 何玉兰", "NEI"));
        assert_eq!(r.reason, "invalid_code");
        assert!(!r.detail.contains("何玉兰"), "{}", r.detail);
        // Megabytes where a code belongs.
        let huge = "科".repeat(700_000);
        let r = rejection(&encounter("MZ", &huge));
        assert_eq!(r.reason, "field_too_long");
        assert!(r.detail.len() < 200);
        let r = rejection(&encounter(&huge, "NEI"));
        assert_eq!(r.reason, "invalid_code");
        assert!(r.detail.len() < 200);
        // A phone number in a code column is not shown either.
        let r = rejection(&lab_a("13912345678", json!("7.9"), "mmol/L"));
        assert_eq!(r.reason, "unknown_local_code");
        assert!(!r.detail.contains("13912345678"), "{}", r.detail);
        // Codes that look like codes are shown: the operator needs them.
        let r = rejection(&lab_a("ZZ01", json!("7.9"), "mmol/L"));
        assert!(r.detail.contains("'ZZ01'"), "{}", r.detail);
    }

    #[test]
    fn rejections_name_their_reason() {
        let mut bad_id = lab_a("GLU", json!("7.9"), "mmol/L");
        bad_id["after"]["sfzh"] = json!("11010519491231002Y");
        let mut no_id = lab_a("GLU", json!("7.9"), "mmol/L");
        no_id["after"]["sfzh"] = Value::Null;
        let mut no_time = lab_a("GLU", json!("7.9"), "mmol/L");
        no_time["after"]["bgsj"] = Value::Null;
        let mut future = lab_a("GLU", json!("7.9"), "mmol/L");
        future["after"]["bgsj"] = json!("2031-01-01 00:00:00");
        let mut stranger = lab_a("GLU", json!("7.9"), "mmol/L");
        stranger["source"]["name"] = json!("his-nowhere");
        let mut odd_table = lab_a("GLU", json!("7.9"), "mmol/L");
        odd_table["source"]["table"] = json!("billing");
        let vitals = |s: f64, d: f64| {
            envelope(
                "his-h0001",
                "tz_jl",
                "c",
                json!({"tzid": 1, "sfzh": ID, "ssy": s, "szy": d, "clsj": "2025-06-01 09:30:00"}),
            )
        };
        let dx = |server: &str, system: &str, code: &str| {
            envelope(
                server,
                if server == "his-h0002" {
                    "diagnoses"
                } else {
                    "zd_jl"
                },
                "c",
                json!({"id": 1, "zdid": 1, "id_number": ID, "sfzh": ID, "code_system": system, "code": code, "zddm": code, "recorded_at": 1_749_000_000_000_000i64, "zdsj": "2025-06-01 09:30:00"}),
            )
        };
        let cases: [(Value, &str); 15] = [
            (lab_a("ZZ01", json!("7.9"), "mmol/L"), "unknown_local_code"),
            (lab_a("GLU", json!("7.9"), "g/L"), "unexpected_unit"),
            (lab_a("GLU", json!("阳性"), "mmol/L"), "non_numeric_result"),
            (lab_a("GLU", json!("79"), "mmol/L"), "value_out_of_range"),
            (lab_a("GLU", Value::Null, "mmol/L"), "missing_field"),
            (bad_id, "invalid_patient_identifier"),
            (no_id, "missing_patient_identifier"),
            (no_time, "missing_field"),
            (future, "invalid_date"),
            (stranger, "unknown_hospital"),
            (odd_table, "unknown_table"),
            (vitals(400.0, 90.0), "value_out_of_range"),
            (vitals(80.0, 95.0), "value_out_of_range"),
            (dx("his-h0002", "LOCAL", "FOO"), "unknown_local_code"),
            (dx("his-h0001", "", "hello"), "invalid_code"),
        ];
        for (input, expected) in cases {
            assert_eq!(reason(&input), expected, "{input}");
        }
        assert_eq!(reason(&json!("a string, not an event")), "malformed_record");
        let catalog = catalog();
        let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
        let adapter = Adapter {
            catalog: &catalog,
            key: &key,
            utc_offset_minutes: 480,
            now_ms: 1_760_000_000_000,
        };
        assert!(matches!(
            adapter.adapt(Some(b"{\"op\": \"c\", ")),
            Outcome::Rejected(Rejection {
                reason: "malformed_record",
                ..
            })
        ));
    }

    #[test]
    fn local_diagnoses_map_to_icd10() {
        let event = accepted(&envelope(
            "his-h0002",
            "diagnoses",
            "c",
            json!({"id": 9, "id_number": ID, "code_system": "LOCAL", "code": "HTN", "primary_flag": true, "recorded_at": 1_749_000_000_000_000i64}),
        ));
        assert!(
            matches!(&event.payload, Payload::Diagnosis(d) if d.icd10 == "I10" && d.is_primary)
        );
    }

    #[test]
    fn envelopes_with_and_without_schema_updates_deletes_and_tombstones() {
        let plain = lab_a("GLU", json!("7.9"), "mmol/L");
        let wrapped = json!({"schema": {"type": "struct"}, "payload": plain.clone()});
        let a = accepted(&plain);
        let b = accepted(&wrapped);
        assert_eq!(a, b);
        assert_eq!(
            (a.operation, a.record_id.as_str(), a.hospital_id.as_str()),
            (Operation::Create, "lis_jg/7", "H0001")
        );
        // 09:30 in Beijing is 01:30 UTC.
        assert_eq!(
            a.event_time_ms,
            vigil_runtime::time::local_day_start_ms(
                vigil_runtime::time::parse_date("2025-06-01").unwrap(),
                480
            ) + 9 * 3_600_000
                + 30 * 60_000
        );
        let delete = envelope("his-h0001", "lis_jg", "d", plain["after"].clone());
        let d = accepted(&delete);
        assert_eq!(
            (d.operation, d.record_id.as_str(), d.event_time_ms),
            (Operation::Delete, "lis_jg/7", 1_750_000_000_000)
        );
        assert_ne!(d.event_id, a.event_id);
        assert!(matches!(
            adapt(&json!({"schema": {}, "payload": null})),
            Outcome::Tombstone
        ));
        let catalog = catalog();
        let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
        let adapter = Adapter {
            catalog: &catalog,
            key: &key,
            utc_offset_minutes: 480,
            now_ms: 1_760_000_000_000,
        };
        assert!(matches!(adapter.adapt(None), Outcome::Tombstone));
    }

    #[test]
    fn no_direct_identifier_passes_the_edge() {
        let patient = envelope(
            "his-h0001",
            "pat_master",
            "r",
            json!({
            "brid": 12, "sfzh": ID, "brxm": "王芳", "lxdh": "13912345678", "jzdz": "浙江省杭州市文三路1号",
            "xb": "2", "csrq": "1949-12-31", "xzqh": "330106", "gxy_jdrq": "2020-03-01 10:00:00", "tnb_jdrq": null, "swrq": null}),
        );
        let event = accepted(&patient);
        let text = format!("{event:?}");
        assert!(
            !event.record_id.ends_with("/12"),
            "the patient key is a record number: {}",
            event.record_id
        );
        for identifier in [ID, "王芳", "13912345678", "文三路", "1949-12-31"] {
            assert!(!text.contains(identifier), "{identifier} leaked: {text}");
        }
        match &event.payload {
            Payload::PatientRegistration(r) => {
                assert_eq!(
                    (r.sex, r.birth_year, r.programmes.len()),
                    (Sex::Female, 1949, 1)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(event.patient_pseudonym.len(), 64);
    }
}
