//! The clinical history a backtest replays, read from ClickHouse partition by partition in the
//! order the processor read it (see `sql/backtest_events.sql`), and the acknowledgements the
//! live pipeline applied.

use clickhouse::{Client, Row};
use serde::Deserialize;
use vigil_runtime::RuntimeError;
use vigil_schemas::{AckAction, AlertAck, ClinicalEvent, Operation, Payload, SourcePosition};

use crate::ProcessorError;

const EVENTS: &str = include_str!("../../sql/backtest_events.sql");
const ACKS: &str = include_str!("../../sql/backtest_acks.sql");

/// Memory the server's sort of one partition's history may take before it spills to disk.
const SORT_IN_MEMORY_BYTES: u64 = 1 << 30;

#[derive(Debug, Deserialize, Row)]
struct EventRow {
    event_id: String,
    hospital_id: String,
    source_system: String,
    operation: String,
    event_time_ms: i64,
    ingest_time_ms: i64,
    patient_pseudonym: String,
    record_id: String,
    payload: String,
    source: String,
    kafka_offset: i64,
}

#[derive(Debug, Deserialize, Row)]
struct AckRow {
    episode_id: String,
    patient_pseudonym: String,
    status: String,
    actor: String,
    event_time_ms: i64,
}

fn query_error(what: &'static str) -> impl FnOnce(clickhouse::error::Error) -> ProcessorError {
    move |source| {
        ProcessorError::Runtime(RuntimeError::ClickHouse {
            operation: what,
            source,
        })
    }
}

/// How many partitions the history is spread over: as many as the events topic had when the
/// rows landed (at least one).
pub async fn partitions(client: &Client) -> Result<i32, ProcessorError> {
    let highest: i32 = client
        .query("SELECT toInt32(max(kafka_partition)) FROM clinical_events")
        .fetch_one()
        .await
        .map_err(query_error("backtest partitions"))?;
    Ok(highest.max(0) + 1)
}

/// The events of one partition up to `to_ms` (clinical time), in the processor's order, each
/// handed to `apply`; returns how many were replayed.
pub async fn replay_partition(
    client: &Client,
    partitions: i32,
    partition: i32,
    to_ms: i64,
    mut apply: impl FnMut(ClinicalEvent),
) -> Result<u64, ProcessorError> {
    let mut cursor = client
        .query(EVENTS)
        .bind(partitions)
        .bind(partition)
        .bind(to_ms)
        // A partition's years of history are sorted by offset on the server: past this much
        // memory the sort goes to disk rather than failing (or starving the live queries).
        .with_setting(
            "max_bytes_before_external_sort",
            SORT_IN_MEMORY_BYTES.to_string(),
        )
        .fetch::<EventRow>()
        .map_err(query_error("backtest history"))?;
    let mut previous: Option<(i64, String)> = None;
    let mut replayed = 0;
    while let Some(row) = cursor
        .next()
        .await
        .map_err(query_error("backtest history"))?
    {
        let position = (row.kafka_offset, row.event_id.clone());
        if previous.as_ref() == Some(&position) {
            continue; // the same record landed twice
        }
        apply(event(row)?);
        previous = Some(position);
        replayed += 1;
    }
    Ok(replayed)
}

/// A landed row as the canonical event the processor read.
fn event(row: EventRow) -> Result<ClinicalEvent, ProcessorError> {
    let unreadable = |what: &str| {
        ProcessorError::Config(format!(
            "clinical_events holds an event whose {what} this build cannot read (event {})",
            row.event_id
        ))
    };
    let operation: Operation =
        serde_json::from_value(serde_json::Value::String(row.operation.clone()))
            .map_err(|_| unreadable("operation"))?;
    let payload: Payload = serde_json::from_str(&row.payload).map_err(|_| unreadable("payload"))?;
    let source: Option<SourcePosition> = if row.source.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&row.source).map_err(|_| unreadable("source position"))?)
    };
    Ok(ClinicalEvent {
        event_id: row.event_id,
        hospital_id: row.hospital_id,
        source_system: row.source_system,
        operation,
        event_time_ms: row.event_time_ms,
        ingest_time_ms: row.ingest_time_ms,
        patient_pseudonym: row.patient_pseudonym,
        record_id: row.record_id,
        schema_version: vigil_schemas::CLINICAL_EVENT_SCHEMA_VERSION,
        payload,
        source,
    })
}

/// The acknowledgements and snoozes recorded before `to_ms`, oldest first.
pub async fn acknowledgements(
    client: &Client,
    to_ms: i64,
) -> Result<Vec<AlertAck>, ProcessorError> {
    let rows: Vec<AckRow> = client
        .query(ACKS)
        .bind(to_ms)
        .fetch_all()
        .await
        .map_err(query_error("backtest acknowledgements"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            // A snooze's end is not on the alert record: a day, the processor's default.
            let action = if row.status == "SNOOZED" {
                AckAction::Snooze
            } else {
                AckAction::Acknowledge
            };
            AlertAck {
                ack_id: format!(
                    "backtest:{}:{}:{}",
                    row.episode_id, row.status, row.event_time_ms
                ),
                episode_id: row.episode_id,
                patient_pseudonym: row.patient_pseudonym,
                action,
                snooze_until_ms: None,
                clinician_id: row.actor,
                time_ms: row.event_time_ms,
            }
        })
        .collect())
}
