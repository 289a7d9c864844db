//! Renders simulated facts as what hospital systems really emit: each vendor's table rows
//! (deploy/edge/vendors/), with its local codes and units (deploy/edge/codes/), inside Debezium
//! change events, keyed like Debezium keys them. Defects are injected at configurable rates
//! with their own seeded generator, and a manifest records what the edge should make of them,
//! so a test can reconcile the ingest's output exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use vigil_schemas::terminology::Observation;
use vigil_schemas::{Condition, EncounterType, Sex, VisitMode};

use super::facts::{Fact, LabTest, SimEvent};
use super::identity::{identity, medical_record_number};
use super::population::Simulation;
use crate::edge::shapes::TableKind;
use crate::edge::time::{write_date, write_timestamp};
use crate::edge::{Catalog, HospitalProfile};
use crate::error::ProducerError;
use crate::ingest::adapter::Reason;

/// How often each kind of defect is injected (fraction of eligible records).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectRates {
    /// The same change delivered twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Delivered hours to days after later changes.
    #[serde(default)]
    pub late: f64,
    /// Corrected later (an update of the row).
    #[serde(default)]
    pub correction: f64,
    /// Deleted later (a delete, then a tombstone).
    #[serde(default)]
    pub deletion: f64,
    /// A laboratory code the hospital's code table does not know.
    #[serde(default)]
    pub unknown_code: f64,
    /// Glucose reported in mg/dL where the lab normally reports mmol/L (the edge converts it).
    #[serde(default)]
    pub wrong_unit: f64,
    /// The clinical time is missing.
    #[serde(default)]
    pub missing_field: f64,
    /// A physiologically impossible value.
    #[serde(default)]
    pub impossible_value: f64,
    /// The resident ID is missing.
    #[serde(default)]
    pub missing_identifier: f64,
    /// The message is not valid JSON.
    #[serde(default)]
    pub malformed: f64,
}

impl DefectRates {
    pub fn validate(&self) -> Result<(), ProducerError> {
        let rates = [
            self.duplicate,
            self.late,
            self.correction,
            self.deletion,
            self.unknown_code,
            self.wrong_unit,
            self.missing_field,
            self.impossible_value,
            self.missing_identifier,
            self.malformed,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) || rates.iter().sum::<f64>() > 1.0 {
            return Err(ProducerError::Config(
                "simulate.defects: each rate must be within 0..1 and together at most 1".into(),
            ));
        }
        Ok(())
    }
}

/// What the edge should make of what the simulator sent: the ground truth for reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Kafka records produced, tombstones included.
    pub records: u64,
    pub tombstones: u64,
    /// Records the edge should turn into canonical events.
    pub accepted: u64,
    /// Records the edge should reject, by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Injected defects by kind.
    pub defects: BTreeMap<String, u64>,
}

/// One Kafka record of the CDC topic.
#[derive(Debug, Clone, PartialEq)]
pub struct CdcRecord {
    pub key: Vec<u8>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Sim time at which it is released (late records wait).
    pub release_ms: i64,
}

/// A rendered row, before it becomes a Debezium event.
#[derive(Clone)]
struct Row {
    kind: TableKind,
    table: String,
    key_column: String,
    key: u64,
    after: Map<String, Value>,
    op: &'static str,
    clinical_ms: i64,
}

pub struct CdcRenderer {
    hospitals: Vec<std::sync::Arc<HospitalProfile>>,
    seed: u64,
    offset: i32,
    rates: DefectRates,
    rng: ChaCha8Rng,
    /// Records held back (late, corrections, deletions) by release time.
    held: BinaryHeap<Reverse<(i64, u64)>>,
    held_records: HashMap<u64, (CdcRecord, Option<Reason>)>,
    held_order: u64,
    /// Change sequence per hospital (binlog position, LSN, SCN).
    positions: Vec<u64>,
    /// The initial snapshot being gathered, until the first change after it.
    snapshot: Option<SnapshotGather>,
    /// Debezium's `source.snapshot` of the snapshot row being written.
    snapshot_marker: &'static str,
    pub manifest: Manifest,
}

/// Every row as it stands when the snapshot is taken, by hospital, table and key: a snapshot
/// reads tables one after another, and holds a row's last version only.
struct SnapshotGather {
    at_ms: i64,
    rows: BTreeMap<(usize, String, u64), Row>,
}

const HOUR_MS: i64 = 3_600_000;

impl CdcRenderer {
    /// `hospitals` simulated hospitals map onto the catalogue's first hospitals by id order.
    pub fn new(
        catalog: &Catalog,
        hospitals: u16,
        seed: u64,
        offset: i32,
        rates: DefectRates,
    ) -> Result<Self, ProducerError> {
        rates.validate()?;
        let profiles: Vec<_> = catalog
            .hospitals()
            .take(hospitals as usize)
            .cloned()
            .collect();
        if profiles.len() < hospitals as usize {
            return Err(ProducerError::Config(format!(
                "simulate.hospitals is {hospitals} but the edge catalogue defines only {} hospitals",
                profiles.len()
            )));
        }
        Ok(CdcRenderer {
            positions: vec![0; profiles.len()],
            hospitals: profiles,
            seed,
            offset,
            rates,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x00C0_FFEE_D15E_A5E5),
            held: BinaryHeap::new(),
            held_records: HashMap::new(),
            held_order: 0,
            snapshot: None,
            snapshot_marker: "true",
            manifest: Manifest::default(),
        })
    }

    /// Sends the history up to `at_ms` as each hospital's initial snapshot (see
    /// `SimulateConfig::snapshot_at`).
    pub fn with_snapshot_at(mut self, at_ms: Option<i64>) -> Self {
        self.snapshot = at_ms.map(|at_ms| SnapshotGather {
            at_ms,
            rows: BTreeMap::new(),
        });
        self
    }

    /// Keeps a row of the history before the snapshot (its latest version); true if it was.
    fn gather(&mut self, hospital: usize, row: &Row) -> bool {
        let Some(snapshot) = self.snapshot.as_mut() else {
            return false;
        };
        if row.clinical_ms >= snapshot.at_ms {
            return false;
        }
        let key = (hospital, row.table.clone(), row.key);
        snapshot.rows.insert(key, row.clone());
        true
    }

    /// The snapshot, once the history reaches its time: each hospital's rows table by table,
    /// marked `first` … `last`, all stamped with the snapshot's time.
    fn send_snapshot(&mut self, now_ms: i64, out: &mut Vec<CdcRecord>) {
        if self.snapshot.as_ref().is_none_or(|s| now_ms < s.at_ms) {
            return;
        }
        let Some(snapshot) = self.snapshot.take() else {
            return;
        };
        let rows: Vec<_> = snapshot.rows.into_iter().collect();
        for (n, ((hospital, _, _), row)) in rows.iter().enumerate() {
            let Some(profile) = self.hospitals.get(*hospital).cloned() else {
                continue;
            };
            let first = n == 0 || rows[n - 1].0 .0 != *hospital;
            let last = rows.get(n + 1).is_none_or(|next| next.0 .0 != *hospital);
            self.snapshot_marker = match (first, last) {
                (_, true) => "last",
                (true, false) => "first",
                _ => "true",
            };
            let record = self.event(&profile, row, None, Some(&row.after), "r", snapshot.at_ms);
            self.emit(record, None, out);
        }
        self.snapshot_marker = "true";
    }

    /// The records for one simulated fact, plus any held records now due, in release order.
    // Long by design (~125 lines): one arm per injected defect kind, each a few lines that
    // change the row and say which rejection the edge must give (the manifest).
    pub fn render(&mut self, sim: &Simulation, event: &SimEvent, out: &mut Vec<CdcRecord>) {
        self.send_snapshot(event.time_ms, out);
        self.release_due(event.time_ms, out);
        let Some(profile) = self.hospitals.get(event.hospital as usize).cloned() else {
            return;
        };
        let Some(row) = self.row(sim, &profile, event) else {
            return;
        };
        if self.gather(event.hospital as usize, &row) {
            return;
        }
        let change_ms = if row.op == "r" {
            sim.start_ms
        } else {
            row.clinical_ms + self.rng.random_range(1..600) * 1000
        };
        let defect = self.pick_defect(&row);
        let mut row = row;
        let mut expect: Option<Reason> = None; // None: accepted
        match defect {
            Some("unknown_code") => {
                row.after.insert(
                    profile.vendor.lab.code.clone(),
                    Value::from(format!("ZZ{:04}", self.rng.random_range(0..10_000))),
                );
                expect = Some(Reason::UnknownLocalCode);
            }
            Some("wrong_unit") => {
                let value = row
                    .after
                    .get(&profile.vendor.lab.value)
                    .and_then(json_number)
                    .unwrap_or(0.0);
                let mg = (value * vigil_schemas::terminology::GLUCOSE_MG_DL_PER_MMOL_L).round();
                row.after
                    .insert(profile.vendor.lab.value.clone(), Value::from(mg));
                row.after
                    .insert(profile.vendor.lab.unit.clone(), Value::from("mg/dL"));
            }
            Some("missing_field") => {
                let column = time_column(&profile, row.kind);
                row.after.insert(column, Value::Null);
                expect = Some(Reason::MissingField);
            }
            Some("impossible_value") => {
                let (column, value) = match row.kind {
                    TableKind::Vitals => (profile.vendor.vitals.systolic.clone(), Value::from(420)),
                    _ => (profile.vendor.lab.value.clone(), Value::from(99_999)),
                };
                row.after.insert(column, value);
                expect = Some(Reason::ValueOutOfRange);
            }
            Some("missing_identifier") => {
                row.after
                    .insert(resident_column(&profile, row.kind), Value::Null);
                expect = Some(Reason::MissingPatientIdentifier);
            }
            _ => {}
        }
        let record = self.event(&profile, &row, None, Some(&row.after), row.op, change_ms);
        match defect {
            Some("malformed") => {
                let mut bytes = record.value.clone().unwrap_or_default();
                bytes.truncate(bytes.len() / 2);
                self.emit(
                    CdcRecord {
                        value: Some(bytes),
                        ..record
                    },
                    Some(Reason::MalformedRecord),
                    out,
                );
            }
            Some("duplicate") => {
                self.emit(record.clone(), None, out);
                self.emit(record, None, out);
            }
            Some("late") => {
                let delay = self.rng.random_range(2..72) * HOUR_MS;
                self.hold(
                    CdcRecord {
                        release_ms: event.time_ms + delay,
                        ..record
                    },
                    None,
                );
            }
            Some("correction") => {
                self.emit(record, None, out);
                let mut corrected = row.after.clone();
                correct(&profile, row.kind, &mut corrected);
                let at = change_ms + self.rng.random_range(1..48) * HOUR_MS;
                let update =
                    self.event(&profile, &row, Some(&row.after), Some(&corrected), "u", at);
                self.hold(
                    CdcRecord {
                        release_ms: at,
                        ..update
                    },
                    None,
                );
            }
            Some("deletion") => {
                self.emit(record, None, out);
                let at = change_ms + self.rng.random_range(1..48) * HOUR_MS;
                let delete = self.event(&profile, &row, Some(&row.after), None, "d", at);
                let tombstone = CdcRecord {
                    key: delete.key.clone(),
                    value: None,
                    release_ms: at,
                };
                self.hold(
                    CdcRecord {
                        release_ms: at,
                        ..delete
                    },
                    None,
                );
                self.hold(tombstone, None);
            }
            _ => self.emit(record, expect, out),
        }
        if let Some(kind) = defect {
            *self.manifest.defects.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// Everything still held back, in release order (the end of the simulation).
    pub fn finish(&mut self, out: &mut Vec<CdcRecord>) {
        self.send_snapshot(i64::MAX, out);
        self.release_due(i64::MAX, out);
    }

    fn emit(&mut self, record: CdcRecord, expect: Option<Reason>, out: &mut Vec<CdcRecord>) {
        self.manifest.records += 1;
        match (&record.value, expect) {
            (None, _) => self.manifest.tombstones += 1,
            (Some(_), None) => self.manifest.accepted += 1,
            (Some(_), Some(reason)) => {
                *self
                    .manifest
                    .rejected
                    .entry(reason.as_str().to_string())
                    .or_default() += 1
            }
        }
        out.push(record);
    }

    fn hold(&mut self, record: CdcRecord, expect: Option<Reason>) {
        self.held_order += 1;
        self.held
            .push(Reverse((record.release_ms, self.held_order)));
        self.held_records.insert(self.held_order, (record, expect));
    }

    fn release_due(&mut self, now_ms: i64, out: &mut Vec<CdcRecord>) {
        while let Some(Reverse((at, order))) = self.held.peek().copied() {
            if at > now_ms {
                break;
            }
            self.held.pop();
            if let Some((record, expect)) = self.held_records.remove(&order) {
                self.emit(record, expect, out);
            }
        }
    }

    fn pick_defect(&mut self, row: &Row) -> Option<&'static str> {
        if row.op == "r" || row.kind == TableKind::Patient {
            // Registrations stay clean: every later record of the patient depends on them.
            return None;
        }
        let r = &self.rates;
        let lab = row.kind == TableKind::Lab;
        let glucose_in_mmol = lab && row.after.values().any(|v| v.as_str() == Some("mmol/L"));
        let numeric = matches!(row.kind, TableKind::Lab | TableKind::Vitals);
        let correctable = numeric;
        let candidates: [(&'static str, f64, bool); 10] = [
            ("duplicate", r.duplicate, true),
            ("late", r.late, true),
            ("correction", r.correction, correctable),
            ("deletion", r.deletion, correctable),
            ("unknown_code", r.unknown_code, lab),
            ("wrong_unit", r.wrong_unit, glucose_in_mmol),
            ("missing_field", r.missing_field, true),
            ("impossible_value", r.impossible_value, numeric),
            ("missing_identifier", r.missing_identifier, true),
            ("malformed", r.malformed, true),
        ];
        let roll: f64 = self.rng.random();
        let mut acc = 0.0;
        for (name, rate, eligible) in candidates {
            acc += rate;
            if roll < acc {
                return eligible.then_some(name);
            }
        }
        None
    }

    /// The Debezium change event for a row (key and value).
    fn event(
        &mut self,
        profile: &HospitalProfile,
        row: &Row,
        before: Option<&Map<String, Value>>,
        after: Option<&Map<String, Value>>,
        op: &str,
        change_ms: i64,
    ) -> CdcRecord {
        let index = self
            .hospitals
            .iter()
            .position(|h| h.id == profile.id)
            .unwrap_or(0);
        self.positions[index] += 1;
        let position = self.positions[index];
        let vendor = &profile.vendor;
        let mut source = json!({
            "version": "2.5.0.Final",
            "connector": vendor.connector,
            "name": profile.server_name,
            "ts_ms": change_ms,
            "snapshot": if op == "r" { self.snapshot_marker } else { "false" },
            "db": "his",
            "table": row.table,
        });
        if let Some(map) = source.as_object_mut() {
            match vendor.connector.as_str() {
                "mysql" => {
                    map.insert("server_id".into(), json!(223344));
                    map.insert(
                        "file".into(),
                        json!(format!("mysql-bin.{:06}", 1 + position / 1_000_000)),
                    );
                    map.insert("pos".into(), json!(position * 187 % 1_000_000_000));
                    map.insert("row".into(), json!(0));
                }
                "postgresql" => {
                    map.insert("schema".into(), json!("public"));
                    map.insert("txId".into(), json!(500 + position));
                    map.insert("lsn".into(), json!(24_000_000 + position * 312));
                    map.insert("ts_us".into(), json!(change_ms * 1000));
                }
                _ => {
                    map.insert("schema".into(), json!("HIS"));
                    map.insert("scn".into(), json!((1_000_000 + position).to_string()));
                    map.insert(
                        "commit_scn".into(),
                        json!((1_000_000 + position).to_string()),
                    );
                }
            }
        }
        let payload = json!({
            "before": before.map(|m| Value::Object(m.clone())).unwrap_or(Value::Null),
            "after": after.map(|m| Value::Object(m.clone())).unwrap_or(Value::Null),
            "source": source,
            "op": op,
            "ts_ms": change_ms + self.rng.random_range(50..2_000),
        });
        // Vendor B's Kafka Connect runs the JSON converter with schemas enabled.
        let value = if vendor.connector == "postgresql" {
            json!({ "schema": { "type": "struct", "name": format!("{}.public.{}.Envelope", profile.server_name, row.table), "optional": false }, "payload": payload })
        } else {
            payload
        };
        let key = json!({ &row.key_column: row.key });
        CdcRecord {
            key: key.to_string().into_bytes(),
            value: Some(value.to_string().into_bytes()),
            release_ms: change_ms,
        }
    }

    /// The row a simulated fact writes in its hospital's vendor shape.
    // Long by design (~265 lines): the inverse of the edge's per-table readers, one arm per
    // fact kind writing that table's columns; kept in one place so a vendor shape's columns are
    // written where they can be read side by side. Simulator only; it never sees real data.
    fn row(
        &mut self,
        sim: &Simulation,
        profile: &HospitalProfile,
        event: &SimEvent,
    ) -> Option<Row> {
        let patient = sim.patient(event.patient)?;
        let person = identity(
            self.seed,
            event.patient,
            patient.sex,
            patient.birth_year,
            patient.birth_day_of_year,
        );
        let vendor = &profile.vendor;
        let (ts, date) = (vendor.timestamp_format, vendor.date_format);
        let offset = self.offset;
        let mut after = Map::new();
        let mut put = |column: &str, value: Value| {
            if !column.is_empty() {
                after.insert(column.to_string(), value);
            }
        };
        let t = event.time_ms;
        let (kind, op) = match &event.fact {
            Fact::Registration(r) => {
                let p = &vendor.patient;
                put(&p.key, Value::from(r.record_seq));
                put(&p.resident_id, Value::from(person.national_id.clone()));
                let sex = if r.sex == Sex::Male { "male" } else { "female" };
                put(
                    &p.sex,
                    Value::from(p.codes.sex.get(sex).cloned().unwrap_or_default()),
                );
                let birth_ms = vigil_runtime::time::local_day_start_ms(
                    vigil_runtime::time::days_from_civil(r.birth_year, 1, 1)
                        + r.birth_day_of_year as i32
                        - 1,
                    offset,
                );
                put(&p.birth_date, write_date(birth_ms, date, offset));
                put(&p.region, Value::from(r.region_code));
                let enrolled = |c: Condition| {
                    r.programmes
                        .iter()
                        .find(|(pc, _)| *pc == c)
                        .map(|(_, at)| write_timestamp(*at, ts, offset))
                };
                put(
                    &p.hypertension_enrolled,
                    enrolled(Condition::Hypertension).unwrap_or(Value::Null),
                );
                put(
                    &p.diabetes_enrolled,
                    enrolled(Condition::Diabetes).unwrap_or(Value::Null),
                );
                put(
                    &p.death,
                    r.death_ms
                        .map_or(Value::Null, |d| write_timestamp(d, ts, offset)),
                );
                // Direct identifiers the table also has: they must never pass the edge.
                let others = [
                    person.name.clone(),
                    person.phone.clone(),
                    person.address.clone(),
                    medical_record_number(event.hospital, event.patient),
                ];
                for (column, value) in p.other.iter().zip(others) {
                    put(column, Value::from(value));
                }
                let op = if r.is_update {
                    "u"
                } else if t <= sim.start_ms {
                    "r"
                } else {
                    "c"
                };
                return Some(Row {
                    kind: TableKind::Patient,
                    table: p.table.clone(),
                    key_column: p.key.clone(),
                    key: r.record_seq,
                    after,
                    op,
                    clinical_ms: t,
                });
            }
            Fact::Encounter {
                encounter_type,
                department,
                end_ms,
            } => {
                let e = &vendor.encounter;
                put(&e.key, Value::from(event.record_seq));
                put(&e.resident_id, Value::from(person.national_id.clone()));
                let kind = match encounter_type {
                    EncounterType::Outpatient => "outpatient",
                    EncounterType::Inpatient => "inpatient",
                    EncounterType::Emergency => "emergency",
                    EncounterType::HomeVisit => "home_visit",
                };
                put(
                    &e.kind,
                    Value::from(e.codes.kind.get(kind).cloned().unwrap_or_default()),
                );
                put(&e.department, Value::from(*department));
                put(&e.start, write_timestamp(t, ts, offset));
                put(&e.end, write_timestamp(*end_ms, ts, offset));
                (TableKind::Encounter, "c")
            }
            Fact::Diagnosis {
                icd10,
                primary,
                department,
            } => {
                let d = &vendor.diagnosis;
                put(&d.key, Value::from(event.record_seq));
                put(&d.resident_id, Value::from(person.national_id.clone()));
                let local = local_diagnosis(profile, icd10);
                match (&local, d.code_system.is_empty()) {
                    (Some(code), false) => {
                        put(&d.code, Value::from(code.clone()));
                        put(&d.code_system, Value::from("LOCAL"));
                    }
                    (_, false) => {
                        put(&d.code, Value::from(*icd10));
                        put(&d.code_system, Value::from("ICD10"));
                    }
                    (_, true) => put(&d.code, Value::from(*icd10)),
                }
                let flag = if *primary { "yes" } else { "no" };
                let flag_value = d.codes.primary.get(flag).cloned().unwrap_or_default();
                put(
                    &d.primary,
                    if flag_value == "true" || flag_value == "false" {
                        Value::from(flag_value == "true")
                    } else {
                        Value::from(flag_value)
                    },
                );
                put(&d.department, Value::from(*department));
                put(&d.encounter, Value::Null);
                put(&d.time, write_timestamp(t, ts, offset));
                (TableKind::Diagnosis, "c")
            }
            Fact::Lab { test, value } => {
                let l = &vendor.lab;
                let (code, unit, reported) = local_lab(profile, *test, *value)?;
                put(&l.key, Value::from(event.record_seq));
                put(&l.resident_id, Value::from(person.national_id.clone()));
                put(&l.code, Value::from(code));
                // Vendors A and C write results as text (as many LIS do); B as numbers.
                let text = vendor.connector != "postgresql";
                put(
                    &l.value,
                    if text {
                        Value::from(format_number(reported))
                    } else {
                        Value::from(reported)
                    },
                );
                put(&l.unit, Value::from(unit));
                put(&l.time, write_timestamp(t, ts, offset));
                (TableKind::Lab, "c")
            }
            Fact::Vitals {
                systolic,
                diastolic,
                heart_rate,
            } => {
                let v = &vendor.vitals;
                put(&v.key, Value::from(event.record_seq));
                put(&v.resident_id, Value::from(person.national_id.clone()));
                put(&v.systolic, Value::from(*systolic));
                put(&v.diastolic, Value::from(*diastolic));
                put(&v.heart_rate, Value::from(*heart_rate));
                put(&v.weight, Value::Null);
                put(&v.height, Value::Null);
                put(&v.time, write_timestamp(t, ts, offset));
                (TableKind::Vitals, "c")
            }
            Fact::Prescription { drug } => {
                let p = &vendor.prescription;
                let (dose, unit, frequency) = drug.regimen();
                let local = profile
                    .codes
                    .drug
                    .iter()
                    .find(|(_, atc)| atc.as_str() == drug.atc())
                    .map(|(code, _)| code.clone());
                put(&p.key, Value::from(event.record_seq));
                put(&p.resident_id, Value::from(person.national_id.clone()));
                put(
                    &p.drug,
                    Value::from(local.unwrap_or_else(|| drug.atc().to_string())),
                );
                put(&p.dose, Value::from(dose));
                put(&p.dose_unit, Value::from(unit));
                put(&p.frequency, Value::from(frequency));
                put(&p.days, Value::from(30));
                put(&p.time, write_timestamp(t, ts, offset));
                (TableKind::Prescription, "c")
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
            } => {
                let f = &vendor.follow_up;
                let program = if *condition == Condition::Hypertension {
                    "hypertension"
                } else {
                    "diabetes"
                };
                let mode = match mode {
                    VisitMode::Clinic => "clinic",
                    VisitMode::Home => "home",
                    VisitMode::Phone => "phone",
                    VisitMode::Online => "online",
                };
                let opt = |v: &Option<f64>| v.map_or(Value::Null, Value::from);
                put(&f.key, Value::from(event.record_seq));
                put(&f.resident_id, Value::from(person.national_id.clone()));
                put(
                    &f.program,
                    Value::from(f.codes.program.get(program).cloned().unwrap_or_default()),
                );
                put(
                    &f.mode,
                    Value::from(f.codes.mode.get(mode).cloned().unwrap_or_default()),
                );
                put(&f.systolic, opt(systolic));
                put(&f.diastolic, opt(diastolic));
                put(&f.fasting_glucose, opt(fasting_glucose));
                put(&f.hba1c, opt(hba1c));
                put(&f.next_visit, write_date(*next_visit_ms, date, offset));
                put(&f.clinician, Value::from(format!("D-{clinician:04}")));
                put(&f.time, write_timestamp(t, ts, offset));
                (TableKind::FollowUp, "c")
            }
        };
        let (table, key_column) = match kind {
            TableKind::Encounter => (&vendor.encounter.table, &vendor.encounter.key),
            TableKind::Diagnosis => (&vendor.diagnosis.table, &vendor.diagnosis.key),
            TableKind::Lab => (&vendor.lab.table, &vendor.lab.key),
            TableKind::Vitals => (&vendor.vitals.table, &vendor.vitals.key),
            TableKind::Prescription => (&vendor.prescription.table, &vendor.prescription.key),
            TableKind::FollowUp => (&vendor.follow_up.table, &vendor.follow_up.key),
            TableKind::Patient => (&vendor.patient.table, &vendor.patient.key),
        };
        Some(Row {
            kind,
            table: table.clone(),
            key_column: key_column.clone(),
            key: event.record_seq,
            after,
            op,
            clinical_ms: t,
        })
    }
}

fn json_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').to_string()
    }
}

fn time_column(profile: &HospitalProfile, kind: TableKind) -> String {
    let v = &profile.vendor;
    match kind {
        TableKind::Patient => v.patient.birth_date.clone(),
        TableKind::Encounter => v.encounter.start.clone(),
        TableKind::Diagnosis => v.diagnosis.time.clone(),
        TableKind::Lab => v.lab.time.clone(),
        TableKind::Vitals => v.vitals.time.clone(),
        TableKind::Prescription => v.prescription.time.clone(),
        TableKind::FollowUp => v.follow_up.time.clone(),
    }
}

fn resident_column(profile: &HospitalProfile, kind: TableKind) -> String {
    let v = &profile.vendor;
    match kind {
        TableKind::Patient => v.patient.resident_id.clone(),
        TableKind::Encounter => v.encounter.resident_id.clone(),
        TableKind::Diagnosis => v.diagnosis.resident_id.clone(),
        TableKind::Lab => v.lab.resident_id.clone(),
        TableKind::Vitals => v.vitals.resident_id.clone(),
        TableKind::Prescription => v.prescription.resident_id.clone(),
        TableKind::FollowUp => v.follow_up.resident_id.clone(),
    }
}

/// A correction: the value re-entered slightly differently.
fn correct(profile: &HospitalProfile, kind: TableKind, row: &mut Map<String, Value>) {
    let v = &profile.vendor;
    let column = match kind {
        TableKind::Vitals => &v.vitals.systolic,
        _ => &v.lab.value,
    };
    if let Some(value) = row.get(column).and_then(json_number) {
        let corrected = (value * 0.97 * 10.0).round() / 10.0;
        let replacement = if row.get(column).is_some_and(Value::is_string) {
            Value::from(format_number(corrected))
        } else {
            Value::from(corrected)
        };
        row.insert(column.clone(), replacement);
    }
}

/// The hospital's local code for a diagnosis, if its code table has one.
fn local_diagnosis(profile: &HospitalProfile, icd10: &str) -> Option<String> {
    let squash = |code: &str| code.chars().filter(|c| *c != '.').collect::<String>();
    let wanted = squash(icd10);
    profile
        .codes
        .diagnosis
        .iter()
        .find(|(_, mapped)| {
            let mapped = squash(mapped);
            wanted == mapped
                || (wanted.starts_with(&mapped) && wanted[mapped.len()..].chars().all(|c| c == '0'))
        })
        .map(|(local, _)| local.clone())
}

/// (local code, unit, value in that unit) for a test, from the hospital's code table.
fn local_lab(
    profile: &HospitalProfile,
    test: LabTest,
    canonical: f64,
) -> Option<(String, String, f64)> {
    let concept = match test {
        LabTest::Hba1c => Observation::Hba1c,
        LabTest::FastingGlucose => Observation::FastingGlucose,
        LabTest::RandomGlucose => Observation::Glucose,
        LabTest::Creatinine => Observation::Creatinine,
        LabTest::Egfr => Observation::Egfr,
        LabTest::UrineAcr => Observation::UrineAcr,
    };
    let (code, entry) = profile
        .codes
        .lab
        .iter()
        .find(|(_, e)| Observation::from_loinc(&e.loinc) == Some(concept))?;
    let factor = concept.to_canonical(1.0, &entry.unit)?;
    // Two decimals: enough for creatinine in mg/dL (0.54) and exact for canonical values.
    let reported = (canonical / factor * 100.0).round() / 100.0;
    Some((code.clone(), entry.unit.clone(), reported))
}
