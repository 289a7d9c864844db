//! One Debezium change event in, one canonical event (or a reasoned rejection) out.
//!
//! The event is read through its hospital's vendor shape (which table, which columns, which
//! code values, how time is written) and code tables (local codes to LOINC, ICD-10, ATC). The
//! resident ID becomes the pseudonym; every other direct identifier is dropped. Values are
//! converted to canonical units and checked for plausibility; the clinical time of the row is
//! the event time (the change time for deletes, which retract rather than state a fact). This
//! module reads the envelope; one module per table kind reads the row.

mod decimal;
pub(crate) mod diagnosis;
mod encounter;
mod follow_up;
pub(crate) mod lab;
mod patient;
mod prescription;
pub mod reason;
mod temporal;
pub(crate) mod values;
mod vitals;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use vigil_runtime::time::{local_day, local_day_start_ms};
use vigil_schemas::ids::stable_id;
use vigil_schemas::{validate, ClinicalEvent, Operation, Payload, CLINICAL_EVENT_SCHEMA_VERSION};

use crate::edge::shapes::{DateFormat, TableKind, VendorShape};
use crate::edge::time::{read_date, read_timestamp};
use crate::edge::{Catalog, HospitalProfile};
use crate::pseudonym::PseudonymKey;
pub use reason::Reason;
use reason::{reject, Reject};
use temporal::ColumnTime;
use values::{shown, text, Row};

/// A record the edge does not accept, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Empty when the record did not say which hospital it came from.
    pub hospital: String,
    pub reason: Reason,
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

/// Where a record stands in its connector's initial snapshot (Debezium `source.snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMark {
    /// A change as it happened (`c`, `u`, `d`), or a row of an incremental snapshot, which
    /// interleaves with live changes and has no end to wait for.
    Live,
    /// A row of the initial snapshot (`op = r`; marked `true`, `first` or `*_in_data_collection`).
    Row,
    /// The initial snapshot's last row (`last`): what the database held has all been read.
    Last,
}

impl SnapshotMark {
    /// Reads the mark of a change event's payload; anything unreadable is `Live` (the adapter
    /// rejects it with its reason).
    fn of(payload: &Value) -> SnapshotMark {
        if payload.get("op").and_then(Value::as_str) != Some("r") {
            return SnapshotMark::Live;
        }
        match payload.get("source").and_then(|v| v.get("snapshot")) {
            Some(Value::String(marker)) if marker == "last" => SnapshotMark::Last,
            Some(Value::String(marker)) if marker == "incremental" => SnapshotMark::Live,
            _ => SnapshotMark::Row,
        }
    }
}

/// An input record's outcome, and where it stands in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapted {
    pub outcome: Outcome,
    pub mark: SnapshotMark,
    /// An update that moved its row to another patient (a result filed under the wrong one and
    /// corrected, a resident ID corrected, a merge in the hospital's system) also retracts the
    /// row from the patient it left: this event, keyed by that patient, goes first.
    pub moved_from: Option<Box<ClinicalEvent>>,
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

/// What a table's row says: the payload, its clinical time, and a code left unmapped.
struct Fact {
    payload: Payload,
    clinical_ms: i64,
    unmapped: Option<&'static str>,
}

impl Fact {
    fn new(payload: Payload, clinical_ms: i64) -> Fact {
        Fact {
            payload,
            clinical_ms,
            unmapped: None,
        }
    }
}

/// One row image, read through its hospital's vendor shape.
struct RowReader<'a> {
    row: &'a Row,
    profile: &'a HospitalProfile,
    utc_offset_minutes: i32,
    now_ms: i64,
    /// When the row changed in the hospital's database (`source.ts_ms`).
    change_ms: i64,
    /// Temporal columns as the Connect schema types them (empty without schemas).
    times: BTreeMap<String, ColumnTime>,
}

impl RowReader<'_> {
    fn vendor(&self) -> &VendorShape {
        &self.profile.vendor
    }

    fn text(&self, column: &str) -> String {
        text(self.row, column)
    }

    fn value(&self, column: &str) -> &Value {
        self.row.get(column).unwrap_or(&Value::Null)
    }

    /// A calendar date column (unchecked: dates of birth and planned visits).
    fn date(&self, column: &str) -> Option<i64> {
        let (value, offset) = (self.value(column), self.utc_offset_minutes);
        match self.times.get(column) {
            Some(ColumnTime::Days) => read_date(value, DateFormat::EpochDays, offset),
            Some(ColumnTime::Instant(format)) => read_timestamp(value, *format, offset)
                .map(|ms| local_day_start_ms(local_day(ms, offset), offset)),
            None => read_date(value, self.vendor().date_format, offset),
        }
    }

    /// An instant column, when present, held to the edge's clock.
    fn optional_time(&self, column: &str) -> Result<Option<i64>, Reject> {
        let (value, offset) = (self.value(column), self.utc_offset_minutes);
        let read = match self.times.get(column) {
            Some(ColumnTime::Days) => read_date(value, DateFormat::EpochDays, offset),
            Some(ColumnTime::Instant(format)) => read_timestamp(value, *format, offset),
            None => read_timestamp(value, self.vendor().timestamp_format, offset),
        };
        read.map(|ms| check_time(ms, self.now_ms, column))
            .transpose()
    }

    /// The clinical time of the row: required.
    fn time(&self, column: &str) -> Result<i64, Reject> {
        self.optional_time(column)?.ok_or_else(|| {
            reject(
                Reason::MissingField,
                format!("{column} (the clinical time) is missing or unreadable"),
            )
        })
    }
}

/// 1990 to a day ahead of the edge's clock: anything else is a typing or clock error.
fn check_time(ms: i64, now_ms: i64, column: &str) -> Result<i64, Reject> {
    if ms < validate::EARLIEST_CLINICAL_MS || ms > now_ms + validate::FUTURE_TOLERANCE_MS {
        return Err(reject(
            Reason::InvalidDate,
            format!("{column} is outside 1990..tomorrow"),
        ));
    }
    Ok(ms)
}

/// The columns of the event's table that its dead-letter copy may show.
fn copyable_columns(profile: &HospitalProfile, payload: &Value) -> Vec<String> {
    let table = payload
        .get("source")
        .and_then(|v| v.get("table"))
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

fn rejected(hospital: &str, reason: Reason, detail: String) -> Outcome {
    Outcome::Rejected(Rejection {
        hospital: hospital.to_string(),
        reason,
        detail,
        columns: Vec::new(),
    })
}

impl Adapter<'_> {
    /// Adapts one Kafka record value (`None`: a tombstone).
    pub fn adapt(&self, value: Option<&[u8]>) -> Outcome {
        self.adapt_marked(value).outcome
    }

    /// Adapts one Kafka record value, and says where it stands in an initial snapshot.
    pub fn adapt_marked(&self, value: Option<&[u8]>) -> Adapted {
        let live = |outcome| Adapted {
            outcome,
            mark: SnapshotMark::Live,
            moved_from: None,
        };
        let Some(bytes) = value else {
            return live(Outcome::Tombstone);
        };
        let parsed: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                let detail = format!(
                    "not JSON ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                );
                return live(rejected("", Reason::MalformedRecord, detail));
            }
        };
        // With Kafka Connect's schemas enabled the event sits under "payload".
        let payload = match parsed.get("payload") {
            Some(p) if parsed.get("schema").is_some() => p,
            _ => &parsed,
        };
        if payload.is_null() {
            return live(Outcome::Tombstone);
        }
        if !payload.is_object() {
            let detail = "a change event must be a JSON object".to_string();
            return live(rejected("", Reason::MalformedRecord, detail));
        }
        let (outcome, moved_from) = self.adapt_payload(&parsed, payload);
        Adapted {
            outcome,
            mark: SnapshotMark::of(payload),
            moved_from,
        }
    }

    /// A change event's payload (the object with `op`, `source` and the row images).
    fn adapt_payload(
        &self,
        parsed: &Value,
        payload: &Value,
    ) -> (Outcome, Option<Box<ClinicalEvent>>) {
        let server = payload
            .get("source")
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(profile) = self.catalog.by_server(server) else {
            let detail = format!(
                "no hospital in the edge catalogue has the connector name {}",
                shown(server)
            );
            return (rejected("", Reason::UnknownHospital, detail), None);
        };
        match self.adapt_event(profile, parsed, payload) {
            Ok(accepted) => {
                let moved_from = accepted.moved_from.map(Box::new);
                let event = Box::new(accepted.event);
                let outcome = match accepted.unmapped {
                    Some(what) => Outcome::AcceptedUnmapped(event, what),
                    None => Outcome::Accepted(event),
                };
                (outcome, moved_from)
            }
            Err(Reject { reason, detail }) => {
                let rejection = Rejection {
                    hospital: profile.id.clone(),
                    reason,
                    detail,
                    columns: copyable_columns(profile, payload),
                };
                (Outcome::Rejected(rejection), None)
            }
        }
    }

    /// The envelope: operation, table, change time, the row, its key and its patient; then the
    /// table's own reader, and the canonical event built and checked against the contract.
    fn adapt_event(
        &self,
        profile: &HospitalProfile,
        event: &Value,
        payload: &Value,
    ) -> Result<AcceptedRow, Reject> {
        let vendor = &profile.vendor;
        let (op, operation) = operation(payload)?;
        let source = payload.get("source").unwrap_or(&Value::Null);
        let table_name = source
            .get("table")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((kind, key_column, resident_column)) = vendor.table(table_name) else {
            return Err(reject(
                Reason::UnknownTable,
                format!("vendor {} has no table {}", vendor.name, shown(table_name)),
            ));
        };
        let change_ms = source
            .get("ts_ms")
            .and_then(Value::as_i64)
            .ok_or_else(|| reject(Reason::MissingField, "source.ts_ms is missing"))?;
        // Every operation, deletes included: a delete's change time is its event time.
        let change_ms = check_time(change_ms, self.now_ms, "source.ts_ms")?;
        let image = if operation == Operation::Delete {
            "before"
        } else {
            "after"
        };
        let row = payload
            .get(image)
            .and_then(Value::as_object)
            .ok_or_else(|| {
                reject(
                    Reason::MissingField,
                    format!("the '{image}' image of a '{op}' event is missing"),
                )
            })?;
        // DECIMAL/NUMERIC columns the Debezium way (base64 unscaled bytes) become numbers.
        let scales = decimal::scales(event, image, &vendor.decimal_scales);
        let decoded = decimal::normalise(row, &scales);
        let row = decoded.as_ref().unwrap_or(row);
        let (key, resident) = row_identity(row, key_column, resident_column)?;
        let reader = RowReader {
            row,
            profile,
            utc_offset_minutes: self.utc_offset_minutes,
            now_ms: self.now_ms,
            change_ms,
            times: temporal::column_times(event, image, vendor.timestamp_format),
        };
        let fact = match kind {
            TableKind::Patient => patient::read(&reader),
            TableKind::Encounter => encounter::read(&reader),
            TableKind::Diagnosis => diagnosis::read(&reader),
            TableKind::Lab => lab::read(&reader),
            TableKind::Vitals => vitals::read(&reader),
            TableKind::Prescription => prescription::read(&reader),
            TableKind::FollowUp => follow_up::read(&reader),
        }?;
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
            event_id: event_id(profile, &table, &key, op, change_ms, source),
            hospital_id: profile.id.clone(),
            source_system: format!("{}/{}", vendor.name, vendor.connector),
            operation,
            event_time_ms: if operation == Operation::Delete {
                change_ms
            } else {
                fact.clinical_ms
            },
            ingest_time_ms: self.now_ms,
            patient_pseudonym: self.key.pseudonymise(&resident),
            record_id: format!("{table}/{record_key}"),
            schema_version: CLINICAL_EVENT_SCHEMA_VERSION,
            payload: fact.payload,
            source: None,
        };
        // The edge produces nothing the processor would refuse: the same contract, checked here.
        validate::check_event(&event)?;
        let moved_from = (operation == Operation::Update)
            .then(|| moved_from(payload, resident_column, &resident))
            .flatten()
            .map(|left| ClinicalEvent {
                event_id: stable_id(&[event.event_id.as_bytes(), b"moved-from"]),
                operation: Operation::Delete,
                event_time_ms: change_ms,
                patient_pseudonym: self.key.pseudonymise(&left),
                ..event.clone()
            });
        Ok(AcceptedRow {
            event,
            unmapped: fact.unmapped,
            moved_from,
        })
    }
}

/// A row accepted: its event, a code left unmapped, and its retraction from the patient it
/// left (see [`Adapted::moved_from`]).
struct AcceptedRow {
    event: ClinicalEvent,
    unmapped: Option<&'static str>,
    moved_from: Option<ClinicalEvent>,
}

/// The valid resident ID an update's `before` image names, when it is another than the row's
/// now. Without a before image (PostgreSQL without REPLICA IDENTITY FULL) a move cannot be seen.
fn moved_from(payload: &Value, resident_column: &str, resident: &str) -> Option<String> {
    let before = payload.get("before")?.as_object()?;
    let left = text(before, resident_column);
    (left != resident && crate::edge::resident_id::is_valid(&left)).then_some(left)
}

/// The event's Debezium operation, as written and as canonical.
fn operation(payload: &Value) -> Result<(&str, Operation), Reject> {
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
            return Err(reject(
                Reason::MissingField,
                format!("op {} is missing or not one of c, u, d, r", shown(other)),
            ))
        }
    };
    Ok((op, operation))
}

/// The row's key and its patient's resident id, which must be a valid one.
fn row_identity(
    row: &Row,
    key_column: &str,
    resident_column: &str,
) -> Result<(String, String), Reject> {
    let key = text(row, key_column);
    if key.is_empty() {
        return Err(reject(
            Reason::MissingField,
            format!("{key_column} (the row key) is missing"),
        ));
    }
    let resident = text(row, resident_column);
    if resident.is_empty() {
        return Err(reject(
            Reason::MissingPatientIdentifier,
            format!("{resident_column} is missing"),
        ));
    }
    if !crate::edge::resident_id::is_valid(&resident) {
        return Err(reject(
            Reason::InvalidPatientIdentifier,
            format!("{resident_column} is not a valid resident ID"),
        ));
    }
    Ok((key, resident))
}

/// A change's id: hospital, table, row key, operation, change time and source position (which
/// tells two changes of the same row in the same millisecond apart).
fn event_id(
    profile: &HospitalProfile,
    table: &str,
    key: &str,
    op: &str,
    change_ms: i64,
    source: &Value,
) -> String {
    // The connector's position fields present, as JSON, joined by ':'.
    let mut position = String::new();
    for value in ["file", "pos", "row", "lsn", "scn"]
        .iter()
        .filter_map(|k| source.get(*k))
    {
        if !position.is_empty() {
            position.push(':');
        }
        let _ = write!(position, "{value}");
    }
    stable_id(&[
        profile.id.as_bytes(),
        table.as_bytes(),
        key.as_bytes(),
        op.as_bytes(),
        &change_ms.to_le_bytes(),
        position.as_bytes(),
    ])
}

#[cfg(test)]
mod tests;
