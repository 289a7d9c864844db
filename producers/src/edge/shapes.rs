//! How each HIS vendor lays out its tables (deploy/edge/vendors/*.toml). The simulator writes
//! rows through a shape and the ingest reads rows through the same shape, so a new vendor is a
//! new file, not new code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a vendor writes instants. Debezium writes a column without a time zone (MySQL DATETIME,
/// PostgreSQL `timestamp`, SQL Server `datetime2`, Oracle DATE and TIMESTAMP) as its wall-clock
/// reading counted as if it were UTC: `epoch_*` when the database keeps UTC, `local_*` when it
/// keeps the hospital's local time (most HIS). With Connect schemas enabled, the column's schema
/// (`io.debezium.time.Timestamp`, `MicroTimestamp`, `NanoTimestamp`, `ZonedTimestamp`, `Date`)
/// says the unit and this format only which of the two clocks the database keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Text "YYYY-MM-DD HH:MM:SS" in the hospital's local time.
    LocalDatetime,
    /// Debezium's Timestamp (milliseconds) of a database that keeps UTC.
    EpochMillis,
    /// Debezium's MicroTimestamp of a database that keeps UTC.
    EpochMicros,
    /// Debezium's NanoTimestamp of a database that keeps UTC.
    EpochNanos,
    /// Debezium's Timestamp of a database that keeps local time.
    LocalMillis,
    /// Debezium's MicroTimestamp of a database that keeps local time.
    LocalMicros,
    /// Debezium's NanoTimestamp of a database that keeps local time.
    LocalNanos,
    /// Debezium's ZonedTimestamp (columns with a time zone): ISO-8601 text with its offset.
    ZonedText,
}

impl TimestampFormat {
    /// Whether wall-clock readings of this vendor's database are local time.
    pub fn keeps_local_time(self) -> bool {
        matches!(
            self,
            TimestampFormat::LocalDatetime
                | TimestampFormat::LocalMillis
                | TimestampFormat::LocalMicros
                | TimestampFormat::LocalNanos
        )
    }
}

/// How a vendor writes calendar dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateFormat {
    /// Text "YYYY-MM-DD".
    LocalDate,
    /// Debezium's Date: days since the epoch.
    EpochDays,
    EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorShape {
    pub name: String,
    /// The Debezium connector of the vendor's database (mysql, postgresql, oracle).
    pub connector: String,
    pub timestamp_format: TimestampFormat,
    pub date_format: DateFormat,
    /// Columns that identify a person directly: dropped at the edge and from dead-letter copies.
    pub direct_identifiers: Vec<String>,
    /// DECIMAL/NUMERIC columns and their scale, for connectors that send them the Debezium way
    /// (`decimal.handling.mode=precise`: base64 of the big-endian unscaled integer) without the
    /// Connect schema that would say the scale. With schemas enabled the schema's scale wins.
    #[serde(default)]
    pub decimal_scales: BTreeMap<String, u32>,
    pub patient: PatientTable,
    pub encounter: EncounterTable,
    pub diagnosis: DiagnosisTable,
    pub lab: LabTable,
    pub vitals: VitalsTable,
    pub prescription: PrescriptionTable,
    pub follow_up: FollowUpTable,
}

/// Local code values of an enumerated column: canonical name -> the vendor's value.
pub type CodeValues = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    pub sex: String,
    pub birth_date: String,
    pub region: String,
    pub hypertension_enrolled: String,
    pub diabetes_enrolled: String,
    pub death: String,
    /// Further columns the table has (names, contacts) that Vigil never reads.
    #[serde(default)]
    pub other: Vec<String>,
    pub codes: PatientCodes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientCodes {
    pub sex: CodeValues,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncounterTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub department: String,
    pub start: String,
    pub end: String,
    pub codes: EncounterCodes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncounterCodes {
    #[serde(rename = "type")]
    pub kind: CodeValues,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    pub code: String,
    /// Column saying whether `code` is ICD-10 ("ICD10") or local ("LOCAL"); empty: always ICD-10.
    pub code_system: String,
    pub primary: String,
    pub department: String,
    pub encounter: String,
    pub time: String,
    pub codes: DiagnosisCodes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisCodes {
    pub primary: CodeValues,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    pub code: String,
    pub value: String,
    pub unit: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitalsTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    pub systolic: String,
    pub diastolic: String,
    pub heart_rate: String,
    pub weight: String,
    pub height: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrescriptionTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    pub drug: String,
    pub dose: String,
    pub dose_unit: String,
    pub frequency: String,
    pub days: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpTable {
    pub table: String,
    pub key: String,
    pub resident_id: String,
    pub program: String,
    pub mode: String,
    pub systolic: String,
    pub diastolic: String,
    pub fasting_glucose: String,
    pub hba1c: String,
    pub next_visit: String,
    pub clinician: String,
    pub time: String,
    pub codes: FollowUpCodes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpCodes {
    pub program: CodeValues,
    pub mode: CodeValues,
}

/// Which kind of record a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Patient,
    Encounter,
    Diagnosis,
    Lab,
    Vitals,
    Prescription,
    FollowUp,
}

impl TableKind {
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Patient => "patient",
            TableKind::Encounter => "encounter",
            TableKind::Diagnosis => "diagnosis",
            TableKind::Lab => "lab",
            TableKind::Vitals => "vitals",
            TableKind::Prescription => "prescription",
            TableKind::FollowUp => "follow_up",
        }
    }
}

impl VendorShape {
    /// (table name, key column, resident-id column) of each kind.
    pub fn tables(&self) -> [(TableKind, &str, &str, &str); 7] {
        [
            (
                TableKind::Patient,
                &self.patient.table,
                &self.patient.key,
                &self.patient.resident_id,
            ),
            (
                TableKind::Encounter,
                &self.encounter.table,
                &self.encounter.key,
                &self.encounter.resident_id,
            ),
            (
                TableKind::Diagnosis,
                &self.diagnosis.table,
                &self.diagnosis.key,
                &self.diagnosis.resident_id,
            ),
            (
                TableKind::Lab,
                &self.lab.table,
                &self.lab.key,
                &self.lab.resident_id,
            ),
            (
                TableKind::Vitals,
                &self.vitals.table,
                &self.vitals.key,
                &self.vitals.resident_id,
            ),
            (
                TableKind::Prescription,
                &self.prescription.table,
                &self.prescription.key,
                &self.prescription.resident_id,
            ),
            (
                TableKind::FollowUp,
                &self.follow_up.table,
                &self.follow_up.key,
                &self.follow_up.resident_id,
            ),
        ]
    }

    /// The kind, key column and resident-id column of a table, by its name.
    pub fn table(&self, name: &str) -> Option<(TableKind, &str, &str)> {
        self.tables()
            .into_iter()
            .find(|(_, table, _, _)| table.eq_ignore_ascii_case(name))
            .map(|(kind, _, key, resident)| (kind, key, resident))
    }

    /// The columns of a table that a dead-letter copy may show (their values still only when
    /// safe in form): what Vigil reads for the clinical fact, never the resident id, nor of the
    /// patient table its key (the medical record number) or what re-identifies a person
    /// (birth date, death, region).
    pub fn copyable_columns(&self, kind: TableKind) -> Vec<&str> {
        match kind {
            TableKind::Patient => vec![
                &self.patient.sex,
                &self.patient.hypertension_enrolled,
                &self.patient.diabetes_enrolled,
            ],
            TableKind::Encounter => {
                let e = &self.encounter;
                vec![&e.key, &e.kind, &e.department, &e.start, &e.end]
            }
            TableKind::Diagnosis => {
                let d = &self.diagnosis;
                vec![
                    &d.key,
                    &d.code,
                    &d.code_system,
                    &d.primary,
                    &d.department,
                    &d.encounter,
                    &d.time,
                ]
            }
            TableKind::Lab => {
                let l = &self.lab;
                vec![&l.key, &l.code, &l.value, &l.unit, &l.time]
            }
            TableKind::Vitals => {
                let v = &self.vitals;
                vec![
                    &v.key,
                    &v.systolic,
                    &v.diastolic,
                    &v.heart_rate,
                    &v.weight,
                    &v.height,
                    &v.time,
                ]
            }
            TableKind::Prescription => {
                let p = &self.prescription;
                vec![
                    &p.key,
                    &p.drug,
                    &p.dose,
                    &p.dose_unit,
                    &p.frequency,
                    &p.days,
                    &p.time,
                ]
            }
            TableKind::FollowUp => {
                let f = &self.follow_up;
                vec![
                    &f.key,
                    &f.program,
                    &f.mode,
                    &f.systolic,
                    &f.diastolic,
                    &f.fasting_glucose,
                    &f.hba1c,
                    &f.next_visit,
                    &f.time,
                ]
            }
        }
        .into_iter()
        .map(String::as_str)
        .filter(|c| !c.is_empty() && !self.direct_identifiers.iter().any(|d| d == c))
        .collect()
    }

    /// Checks that every enumeration lists the values the ingest relies on.
    pub fn validate(&self) -> Result<(), String> {
        let need = |what: &str, map: &CodeValues, keys: &[&str]| -> Result<(), String> {
            for key in keys {
                if !map.contains_key(*key) {
                    return Err(format!("vendor {}: {what} codes lack '{key}'", self.name));
                }
            }
            Ok(())
        };
        need("patient.sex", &self.patient.codes.sex, &["male", "female"])?;
        need(
            "encounter.type",
            &self.encounter.codes.kind,
            &["outpatient", "inpatient", "emergency", "home_visit"],
        )?;
        need(
            "diagnosis.primary",
            &self.diagnosis.codes.primary,
            &["yes", "no"],
        )?;
        need(
            "follow_up.program",
            &self.follow_up.codes.program,
            &["hypertension", "diabetes"],
        )?;
        need(
            "follow_up.mode",
            &self.follow_up.codes.mode,
            &["clinic", "home", "phone", "online"],
        )?;
        let mut names: Vec<String> = self
            .tables()
            .iter()
            .map(|(_, t, _, _)| t.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        if names.len() != 7 {
            return Err(format!(
                "vendor {}: two kinds share a table name",
                self.name
            ));
        }
        Ok(())
    }
}

/// The canonical name a local code value stands for (reverse lookup of a code list).
pub fn decode<'a>(codes: &'a CodeValues, value: &str) -> Option<&'a str> {
    codes
        .iter()
        .find(|(_, local)| local.as_str() == value.trim())
        .map(|(canonical, _)| canonical.as_str())
}
