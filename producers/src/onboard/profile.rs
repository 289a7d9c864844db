//! The figures of a data profile, gathered one change event at a time.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use vigil_schemas::terminology::Observation;
use vigil_schemas::{ClinicalEvent, Operation};

use crate::edge::{Catalog, HospitalProfile, TableKind};
use crate::ingest::adapter::values::{is_code_shaped, is_unit_shaped};
use crate::ingest::adapter::Reason;
use crate::ingest::{Adapter, Outcome};
use crate::pseudonym::PseudonymKey;

/// A change older than the newest change of its table by more than this arrived out of order
/// (a connector restarted from an old position, an upload held back).
const OUT_OF_ORDER_MS: i64 = 3_600_000;
/// A clinical time this far after the database recorded the change is not a clock drift: the
/// local-time columns are probably read in the wrong time zone.
const CLINICAL_AFTER_CHANGE_MS: i64 = 10 * 60_000;
/// Example values kept per unknown code.
const EXAMPLES: usize = 5;

/// What the profile found, ready to render or to serialise.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataProfile {
    pub hospital: String,
    pub vendor: String,
    pub connector: String,
    /// Records read (of this hospital, plus those that name no hospital).
    pub records: u64,
    /// Records of other hospitals in the input, left out.
    pub other_hospitals: u64,
    pub tombstones: u64,
    pub accepted: u64,
    /// What the edge would reject, by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// One example detail per reason (details name fields and bounds, never values).
    pub rejection_examples: BTreeMap<String, String>,
    /// Debezium operations seen: c, u, d, r.
    pub operations: BTreeMap<String, u64>,
    pub tables: BTreeMap<String, TableProfile>,
    /// Local laboratory codes the code table does not map, by code.
    pub unknown_lab_codes: BTreeMap<String, UnknownCode>,
    /// Local drug codes without an ATC mapping (accepted, counted), by code.
    pub unmapped_drug_codes: BTreeMap<String, u64>,
    /// Results whose unit differs from the code table's, by "code: unit sent → unit expected"
    /// (accepted and converted when the unit is convertible).
    pub unit_differences: BTreeMap<String, u64>,
    /// The same change event (byte for byte) more than once.
    pub duplicate_records: u64,
    /// Changes older than the newest change of their table by more than an hour.
    pub out_of_order_changes: u64,
    /// Accepted facts whose clinical time is after the database recorded them, and the median
    /// of that difference in hours: a time-zone error when it clusters at whole hours.
    pub clinical_after_change: u64,
    pub clinical_after_change_median_hours: Option<f64>,
}

impl DataProfile {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Share of the records (tombstones aside) the edge would accept.
    pub fn accepted_share(&self) -> f64 {
        let events = self.records - self.tombstones;
        if events == 0 {
            return 0.0;
        }
        self.accepted as f64 / events as f64
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TableProfile {
    pub kind: String,
    pub records: u64,
    /// Columns the vendor shape reads that never appeared.
    pub missing_columns: Vec<String>,
    /// Columns that arrived that Vigil does not read (direct identifiers are read only to be
    /// dropped, and are not listed).
    pub unread_columns: Vec<String>,
    #[serde(skip)]
    seen: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UnknownCode {
    pub records: u64,
    pub units: BTreeMap<String, u64>,
    pub examples: Vec<f64>,
    /// LOINC concepts of the bundled terminology whose units and plausible ranges fit what was
    /// seen, best first.
    pub suggestions: Vec<Suggestion>,
    #[serde(skip)]
    values: Vec<(f64, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub loinc: String,
    pub name: String,
    /// Share of the values seen that are plausible for the concept once converted.
    pub plausible_share: f64,
}

/// Reads change events of one hospital and gathers its profile.
pub struct Profiler<'a> {
    catalog: &'a Catalog,
    hospital: Arc<HospitalProfile>,
    key: PseudonymKey,
    utc_offset_minutes: i32,
    now_ms: i64,
    profile: DataProfile,
    seen_records: HashSet<u64>,
    newest_change: BTreeMap<String, i64>,
    clinical_leads_ms: Vec<i64>,
}

impl<'a> Profiler<'a> {
    /// `key` only lets the adapter run: nothing it pseudonymises leaves the profile.
    pub fn new(
        catalog: &'a Catalog,
        hospital: Arc<HospitalProfile>,
        key: PseudonymKey,
        utc_offset_minutes: i32,
        now_ms: i64,
    ) -> Self {
        let profile = DataProfile {
            hospital: hospital.id.clone(),
            vendor: hospital.vendor.name.clone(),
            connector: hospital.vendor.connector.clone(),
            ..DataProfile::default()
        };
        Profiler {
            catalog,
            hospital,
            key,
            utc_offset_minutes,
            now_ms,
            profile,
            seen_records: HashSet::new(),
            newest_change: BTreeMap::new(),
            clinical_leads_ms: Vec::new(),
        }
    }

    /// One record (`None`: a tombstone).
    pub fn observe(&mut self, value: Option<&[u8]>) {
        let parsed = value.and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok());
        let payload = parsed.as_ref().map(|p| match p.get("payload") {
            Some(inner) if p.get("schema").is_some() => inner,
            _ => p,
        });
        let server = payload
            .and_then(|p| p.pointer("/source/name"))
            .and_then(Value::as_str);
        if server
            .is_some_and(|s| s != self.hospital.server_name && self.catalog.by_server(s).is_some())
        {
            self.profile.other_hospitals += 1;
            return;
        }
        self.profile.records += 1;
        if let Some(bytes) = value {
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            if !self.seen_records.insert(hasher.finish()) {
                self.profile.duplicate_records += 1;
            }
        }
        let payload = payload.filter(|p| p.is_object());
        if let Some(payload) = payload {
            self.envelope(payload);
        }
        let adapter = Adapter {
            catalog: self.catalog,
            key: &self.key,
            utc_offset_minutes: self.utc_offset_minutes,
            now_ms: self.now_ms,
        };
        match adapter.adapt(value) {
            Outcome::Tombstone => self.profile.tombstones += 1,
            Outcome::Accepted(event) => self.accepted(&event, payload),
            Outcome::AcceptedUnmapped(event, _) => {
                if let Some(code) = payload.and_then(|p| self.row_text(p, TableKind::Prescription))
                {
                    *self.profile.unmapped_drug_codes.entry(code).or_default() += 1;
                }
                self.accepted(&event, payload);
            }
            Outcome::Rejected(rejection) => {
                let reason = rejection.reason.as_str().to_string();
                *self.profile.rejected.entry(reason.clone()).or_default() += 1;
                self.profile
                    .rejection_examples
                    .entry(reason)
                    .or_insert(rejection.detail);
                if rejection.reason == Reason::UnknownLocalCode {
                    if let Some(payload) = payload {
                        self.unknown_lab_code(payload);
                    }
                }
            }
        }
    }

    /// The figures, with suggestions for the unknown codes and the columns never seen.
    pub fn finish(mut self) -> DataProfile {
        for code in self.profile.unknown_lab_codes.values_mut() {
            code.suggestions = suggest(&code.values);
        }
        let vendor = &self.hospital.vendor;
        for (kind, table, key, resident) in vendor.tables() {
            // A table of the shape that sent nothing is listed too: everything it has is missing.
            let profile = self
                .profile
                .tables
                .entry(table.to_ascii_lowercase())
                .or_insert_with(|| TableProfile {
                    kind: kind.name().to_string(),
                    ..TableProfile::default()
                });
            let mut read: BTreeSet<&str> = vendor.copyable_columns(kind).into_iter().collect();
            read.extend([key, resident]);
            if kind == TableKind::Patient {
                let p = &vendor.patient;
                read.extend([p.birth_date.as_str(), &p.region, &p.death]);
            }
            read.remove("");
            profile.missing_columns = read
                .iter()
                .filter(|c| !profile.seen.contains(**c))
                .map(|c| c.to_string())
                .collect();
            // Columns the shape knows Vigil drops (names, contacts) are not news.
            let dropped = |c: &String| {
                vendor.direct_identifiers.contains(c)
                    || (kind == TableKind::Patient && vendor.patient.other.contains(c))
            };
            profile.unread_columns = profile
                .seen
                .iter()
                .filter(|c| !read.contains(c.as_str()) && !dropped(c))
                .map(|c| shown_column(c))
                .collect();
        }
        self.clinical_leads_ms.sort_unstable();
        self.profile.clinical_after_change = self.clinical_leads_ms.len() as u64;
        self.profile.clinical_after_change_median_hours = self
            .clinical_leads_ms
            .get(self.clinical_leads_ms.len() / 2)
            .map(|ms| (*ms as f64 / 3_600_000.0 * 10.0).round() / 10.0);
        self.profile
    }

    /// Operation, table and columns of a parseable change event; whether it came out of order.
    fn envelope(&mut self, payload: &Value) {
        let op = payload.get("op").and_then(Value::as_str).unwrap_or("?");
        *self.profile.operations.entry(op.to_string()).or_default() += 1;
        let Some(table) = payload.pointer("/source/table").and_then(Value::as_str) else {
            return;
        };
        let Some((kind, _, _)) = self.hospital.vendor.table(table) else {
            return;
        };
        let entry = self
            .profile
            .tables
            .entry(table.to_ascii_lowercase())
            .or_default();
        entry.kind = kind.name().to_string();
        entry.records += 1;
        for image in ["before", "after"] {
            if let Some(row) = payload.get(image).and_then(Value::as_object) {
                entry.seen.extend(row.keys().cloned());
            }
        }
        // Snapshot rows carry the snapshot's time, not the change's.
        let change = payload.pointer("/source/ts_ms").and_then(Value::as_i64);
        if let (Some(change), false) = (change, op == "r") {
            let newest = self
                .newest_change
                .entry(table.to_ascii_lowercase())
                .or_insert(change);
            if change < *newest - OUT_OF_ORDER_MS {
                self.profile.out_of_order_changes += 1;
            } else {
                *newest = (*newest).max(change);
            }
        }
    }

    fn accepted(&mut self, event: &ClinicalEvent, payload: Option<&Value>) {
        self.profile.accepted += 1;
        let Some(payload) = payload else { return };
        let change = payload.pointer("/source/ts_ms").and_then(Value::as_i64);
        if let (Some(change), true) = (
            change,
            event.operation == Operation::Create || event.operation == Operation::Update,
        ) {
            let lead = event.event_time_ms - change;
            if lead > CLINICAL_AFTER_CHANGE_MS {
                self.clinical_leads_ms.push(lead);
            }
        }
        let lab = &self.hospital.vendor.lab;
        let Some(row) = payload.get("after").and_then(Value::as_object) else {
            return;
        };
        let table = payload
            .pointer("/source/table")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !table.eq_ignore_ascii_case(&lab.table) {
            return;
        }
        let code = text(row.get(&lab.code));
        let unit = text(row.get(&lab.unit));
        if let Some(mapped) = self.hospital.codes.lab.get(&code) {
            if !unit.is_empty() && unit != mapped.unit {
                let key = format!(
                    "{}: {} → {}",
                    code_text(&code),
                    unit_text(&unit),
                    mapped.unit
                );
                *self.profile.unit_differences.entry(key).or_default() += 1;
            }
        }
    }

    fn unknown_lab_code(&mut self, payload: &Value) {
        let lab = &self.hospital.vendor.lab;
        let Some(row) = payload.get("after").and_then(Value::as_object) else {
            return;
        };
        let code = code_text(&text(row.get(&lab.code)));
        let unit = text(row.get(&lab.unit));
        let value = number(row.get(&lab.value));
        let entry = self.profile.unknown_lab_codes.entry(code).or_default();
        entry.records += 1;
        *entry.units.entry(unit_text(&unit)).or_default() += 1;
        if let Some(value) = value {
            if entry.examples.len() < EXAMPLES {
                entry.examples.push(value);
            }
            entry.values.push((value, unit));
        }
    }

    /// A code column of the table of `kind` in the event's row image.
    fn row_text(&self, payload: &Value, kind: TableKind) -> Option<String> {
        let column = match kind {
            TableKind::Prescription => &self.hospital.vendor.prescription.drug,
            _ => return None,
        };
        let row = payload.get("after").and_then(Value::as_object)?;
        Some(code_text(&text(row.get(column))))
    }
}

/// Codes and units as the report may show them: what is not shaped like one is not shown (a
/// hospital may type anything into any column).
fn code_text(code: &str) -> String {
    if is_code_shaped(code) {
        code.to_string()
    } else {
        NOT_SHOWN.to_string()
    }
}

fn unit_text(unit: &str) -> String {
    if is_unit_shaped(unit) {
        unit.to_string()
    } else {
        NOT_SHOWN.to_string()
    }
}

const NOT_SHOWN: &str = "(not shown: not shaped like a code)";

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// A column name as the report may show it (column names are the vendor's, but a malformed
/// record could put anything in a key).
fn shown_column(column: &str) -> String {
    let plain = column.len() <= 40
        && column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        column.to_string()
    } else {
        "(a column name that is not plain, not shown)".to_string()
    }
}

/// Concepts whose unit accepts the values seen and whose plausible range holds at least 90% of
/// them once converted, best share first.
fn suggest(values: &[(f64, String)]) -> Vec<Suggestion> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Suggestion> = Observation::ALL
        .into_iter()
        .filter(|o| !matches!(o, Observation::Systolic | Observation::Diastolic))
        .filter_map(|concept| {
            let plausible = values
                .iter()
                .filter(|(value, unit)| {
                    concept
                        .to_canonical(*value, unit)
                        .is_some_and(|v| concept.is_plausible(v))
                })
                .count();
            let share = plausible as f64 / values.len() as f64;
            (share >= 0.9).then(|| Suggestion {
                loinc: concept.loinc().to_string(),
                name: concept_name(concept).to_string(),
                plausible_share: (share * 100.0).round() / 100.0,
            })
        })
        .collect();
    out.sort_by(|a, b| b.plausible_share.total_cmp(&a.plausible_share));
    out
}

/// English and Chinese names of the bundled concepts, as a lab's code list would name them.
pub fn concept_name(concept: Observation) -> &'static str {
    match concept {
        Observation::Hba1c => "HbA1c 糖化血红蛋白",
        Observation::FastingGlucose => "Fasting glucose 空腹血糖",
        Observation::Glucose => "Glucose 血糖",
        Observation::Creatinine => "Creatinine 肌酐",
        Observation::Egfr => "eGFR 估算肾小球滤过率",
        Observation::UrineAcr => "Urine albumin/creatinine 尿白蛋白/肌酐比",
        Observation::Systolic => "Systolic BP 收缩压",
        Observation::Diastolic => "Diastolic BP 舒张压",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lab_record(after: serde_json::Value, ts_ms: i64) -> Vec<u8> {
        serde_json::json!({
            "after": after,
            "before": null,
            "op": "c",
            "source": {"connector": "mysql", "name": "his-h0001", "table": "lis_jg", "ts_ms": ts_ms},
            "ts_ms": ts_ms
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn clocks_columns_and_other_hospitals_are_reported() {
        let catalog = Catalog::load(std::path::Path::new("../deploy/edge")).unwrap();
        let hospital = catalog.by_id("H0001").unwrap().clone();
        let key = PseudonymKey::from_bytes(&[7u8; 32]).unwrap();
        let now = vigil_runtime::time::parse_date("2026-07-01").unwrap() as i64 * 86_400_000;
        let mut profiler = Profiler::new(&catalog, hospital, key, 480, now);
        // 10:00 local (UTC+8) is 02:00Z; the database says it changed at 18:00Z the day before:
        // the clinical time is 8 h after the change, as when local time is read as UTC.
        let clinical_utc = now - 30 * 86_400_000 + 2 * 3_600_000;
        let changed = clinical_utc - 8 * 3_600_000;
        let day =
            vigil_runtime::time::civil_from_days(((now - 30 * 86_400_000) / 86_400_000) as i32);
        let local = format!("{:04}-{:02}-{:02} 10:00:00", day.0, day.1, day.2);
        let row = serde_json::json!({
            "bgsj": local, "jg": "6.1", "jgid": 1, "sfzh": "330000195909100046", "xmdm": "GLU",
            "bz": "fasting"
        });
        profiler.observe(Some(&lab_record(row, changed)));
        // Another hospital's record is left out, not counted.
        let other = String::from_utf8(lab_record(serde_json::json!({}), changed))
            .unwrap()
            .replace("his-h0001", "his-h0002");
        profiler.observe(Some(other.as_bytes()));
        let profile = profiler.finish();
        assert_eq!((profile.records, profile.other_hospitals), (1, 1));
        assert_eq!(profile.accepted, 1, "{:?}", profile.rejection_examples);
        assert_eq!(profile.clinical_after_change, 1);
        assert_eq!(profile.clinical_after_change_median_hours, Some(8.0));
        let lab = &profile.tables["lis_jg"];
        assert_eq!(lab.missing_columns, vec!["dw"]);
        assert_eq!(lab.unread_columns, vec!["bz"]);
        assert_eq!(
            profile.tables["tz_jl"].records, 0,
            "a table that sent nothing is listed"
        );
    }
}
