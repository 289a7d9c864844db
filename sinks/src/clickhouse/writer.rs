//! `vigil sink`: Kafka → ClickHouse.
//!
//! Each topic feeds one table. Rows are batched per table by size and time, inserted, and only
//! after ClickHouse acknowledged the insert are that topic's offsets committed. Replays after a
//! crash re-insert rows with the same ids into ReplacingMergeTree tables: no visible duplicates.
//!
//! When ClickHouse is down or slow the writer retries with exponential backoff, pausing the
//! consumer meanwhile (memory holds the batch and what librdkafka had already fetched; the
//! backlog waits in Kafka and the lag metric shows it). A row ClickHouse rejects for its data is isolated by splitting the batch
//! and sent to the dead-letter topic, so one bad row never blocks the rest.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use clickhouse::{Client, Row};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use serde::Serialize;
use tokio::runtime::Handle;
use tracing::{debug, error, info, warn};
use vigil_runtime::clickhouse::Replicas;
use vigil_runtime::config::{ClickHouseConfig, KafkaConfig, Topics};
use vigil_runtime::kafka::{
    AssignmentChange, ConsumerTuning, DurableProducer, GroupConsumer, Positions, TopicPartition,
};
use vigil_runtime::time::{now_ms, Reporting};
use vigil_runtime::{RuntimeError, Shutdown};
use vigil_schemas::validate::{self, Invalid};
use vigil_schemas::{
    Alert, AlertDelivery, AvroCodec, ClinicalEvent, DeadLetter, InputPosition, PatientStatus,
    PipelineStat, WireRecord,
};

use super::config::SinkConfig;
use super::rollup::{self, Activity, Cell, PeriodKey, Rollups, Stale};
use super::rows::{AlertRow, DeadLetterRow, DeliveryRow, EventRow, StatRow, StatusRow};
use crate::error::SinkError;

/// What a run of the writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSummary {
    pub events: u64,
    pub alerts: u64,
    pub status_rows: u64,
    pub dead_letters: u64,
    pub deliveries: u64,
    pub pipeline_stats: u64,
    pub late_events: u64,
    /// Records that could not be decoded or rows ClickHouse refused, sent to dead letters.
    pub rejected: u64,
    pub inserts: u64,
    pub retries: u64,
}

pub use vigil_runtime::StopWhen;

/// A Kafka record type and the table its rows go to.
trait Table {
    type Record: WireRecord;
    type Row: Row + for<'a> Row<Value<'a> = Self::Row> + Serialize + Send + Sync + Clone + 'static;
    const TABLE: &'static str;
    /// The row of a record, landed at `landed_ms` from `at` (partition, offset).
    fn row(record: &Self::Record, landed_ms: i64, at: (i32, i64)) -> Self::Row;
    fn hospital(record: &Self::Record) -> &str;
    /// Whether the record may land. Refused records are another stage's to dead-letter.
    fn check(_record: &Self::Record) -> Result<(), Invalid> {
        Ok(())
    }
    /// The reporting period a row counts in (definition, kind, start), for the tables the
    /// dashboard's rollup reads.
    fn period(_row: &Self::Row) -> Option<(&str, &str, u16)> {
        None
    }
    /// The dashboard's activity rollup a row counts in, and the time that places it in a cell.
    fn activity(_row: &Self::Row) -> Option<(Activity, i64)> {
        None
    }
}

struct Events;
impl Table for Events {
    type Record = ClinicalEvent;
    type Row = EventRow;
    const TABLE: &'static str = "clinical_events";
    /// The topic position too: `vigil backtest` replays in the processor's order.
    fn row(record: &ClinicalEvent, landed_ms: i64, at: (i32, i64)) -> EventRow {
        EventRow::from_event(record, landed_ms, Some(at))
    }
    fn hospital(record: &ClinicalEvent) -> &str {
        &record.hospital_id
    }
    /// The processor dead-letters events that break the canonical contract; landing them here
    /// would show them as valid.
    fn check(record: &ClinicalEvent) -> Result<(), Invalid> {
        validate::check_event(record)
    }
    fn activity(row: &EventRow) -> Option<(Activity, i64)> {
        Some((Activity::Events, row.event_time_ms))
    }
}

/// A table whose rows `$make` builds from records of `$record`, which name their hospital; the
/// rows count in the activity rollup `$activity` at the time `$time` takes from them.
macro_rules! table {
    ($(#[$doc:meta])* $name:ident: $record:ty => $row:ty, $table:literal, $make:path, $activity:expr, $time:expr) => {
        $(#[$doc])*
        struct $name;
        impl Table for $name {
            type Record = $record;
            type Row = $row;
            const TABLE: &'static str = $table;
            fn row(record: &$record, landed_ms: i64, _at: (i32, i64)) -> $row {
                $make(record, landed_ms)
            }
            fn hospital(record: &$record) -> &str {
                &record.hospital_id
            }
            fn activity(row: &$row) -> Option<(Activity, i64)> {
                let time: fn(&$row) -> Option<i64> = $time;
                Some(($activity?, time(row)?))
            }
        }
    };
}

fn late_event_row(event: &ClinicalEvent, landed_ms: i64) -> EventRow {
    EventRow::from_event(event, landed_ms, None)
}

fn seconds(time: u32) -> i64 {
    i64::from(time) * 1000
}

table!(
    /// Events the processor did not apply because they arrived after the allowed lateness:
    /// landed as they are, so the commission sees what the figures left out.
    LateEvents: ClinicalEvent => EventRow, "late_events", late_event_row,
    Some(Activity::Events), |row| Some(row.event_time_ms)
);
table!(
    /// An alert counts in the month its episode started.
    Alerts: Alert => AlertRow, "alerts", AlertRow::from_alert,
    Some(Activity::Alerts), |row| Some(seconds(row.episode_start))
);

/// Patient-status rows: their periods' rollups are recomputed once they land.
struct Statuses;
impl Table for Statuses {
    type Record = PatientStatus;
    type Row = StatusRow;
    const TABLE: &'static str = "patient_status";
    fn row(record: &PatientStatus, landed_ms: i64, _at: (i32, i64)) -> StatusRow {
        StatusRow::from_status(record, landed_ms)
    }
    fn hospital(record: &PatientStatus) -> &str {
        &record.hospital_id
    }
    fn period(row: &StatusRow) -> Option<(&str, &str, u16)> {
        Some((&row.definition, &row.period_kind, row.period_start))
    }
}
table!(
    DeadLetters: DeadLetter => DeadLetterRow, "dead_letters", DeadLetterRow::from_dead_letter,
    Some(Activity::DeadLetters), |row| Some(seconds(row.received_time))
);
table!(
    Deliveries: AlertDelivery => DeliveryRow, "alert_deliveries", DeliveryRow::from_delivery,
    Some(Activity::Deliveries), |row| Some(row.alert_time_ms)
);
table!(
    Stats: PipelineStat => StatRow, "pipeline_stats", StatRow::from_stat,
    None, |_| None
);

/// Rows waiting for one table, with where each came from.
struct Pending<T: Table> {
    topic: String,
    codec: AvroCodec<T::Record>,
    rows: Vec<T::Row>,
    /// (partition, offset, hospital) of each row, for dead letters.
    sources: Vec<(i32, i64, String)>,
    positions: Positions,
    first_at: Option<Instant>,
    interval: Duration,
}

impl<T: Table> Pending<T> {
    fn new(topic: &str, interval: Duration) -> Result<Self, SinkError> {
        Ok(Pending {
            topic: topic.to_string(),
            codec: AvroCodec::new()?,
            rows: Vec::new(),
            sources: Vec::new(),
            positions: Positions::default(),
            first_at: None,
            interval,
        })
    }

    fn due(&self, max_rows: usize) -> bool {
        self.rows.len() >= max_rows || self.first_at.is_some_and(|t| t.elapsed() >= self.interval)
    }

    fn has_work(&self) -> bool {
        !self.rows.is_empty() || !self.positions.is_empty()
    }

    /// Adds one Kafka record; returns a dead letter if it cannot be decoded.
    fn push(&mut self, message: &BorrowedMessage<'_>, landed_ms: i64) -> Option<DeadLetter> {
        let payload = message.payload().unwrap_or_default();
        self.positions.advance_past(message);
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
        let record = match self.codec.decode(payload) {
            Ok(record) => record,
            Err(error) => {
                let at = InputPosition {
                    topic: &self.topic,
                    partition: message.partition(),
                    offset: message.offset(),
                };
                return Some(DeadLetter::new(
                    "sink",
                    at,
                    "undecodable",
                    &error.safe_detail(),
                    now_ms(),
                ));
            }
        };
        if let Err(invalid) = T::check(&record) {
            metrics::counter!("vigil_sink_refused_records_total", "table" => T::TABLE, "reason" => invalid.reason.as_str())
                .increment(1);
            debug!(table = T::TABLE, reason = invalid.reason.as_str(), "A record breaks the contract; not landed (its producer's consumer dead-letters it).");
            return None;
        }
        let at = (message.partition(), message.offset());
        self.rows.push(T::row(&record, landed_ms, at));
        self.sources.push((
            message.partition(),
            message.offset(),
            T::hospital(&record).to_string(),
        ));
        None
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.sources.clear();
        self.positions.clear();
        self.first_at = None;
    }
}

/// What a dead letter says of a row ClickHouse refused: the error's code, not its text (which
/// may quote the row's values).
fn refusal_detail(error: &str) -> String {
    let code: String = error
        .split("Code: ")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    if code.is_empty() {
        "ClickHouse refused the row".to_string()
    } else {
        format!("ClickHouse refused the row (error code {code})")
    }
}

async fn insert_rows<R>(
    client: &Client,
    table: &str,
    rows: &[R],
) -> Result<(), clickhouse::error::Error>
where
    R: Row + for<'a> Row<Value<'a> = R> + Serialize + Send + Sync,
{
    let mut insert = client.insert::<R>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}

/// Rows ClickHouse refused (index in the batch, its message), or a transient failure.
type InsertOutcome = Result<Vec<(usize, String)>, clickhouse::error::Error>;

/// Inserts `rows`; rows ClickHouse refuses for their data are found by halving and returned with
/// the server's message. A transient failure (server down, overloaded) is returned as an error.
fn insert_isolating<'a, R>(
    client: &'a Client,
    table: &'a str,
    rows: &'a [R],
    offset: usize,
) -> Pin<Box<dyn Future<Output = InsertOutcome> + Send + 'a>>
where
    R: Row + for<'b> Row<Value<'b> = R> + Serialize + Send + Sync,
{
    Box::pin(async move {
        match insert_rows(client, table, rows).await {
            Ok(()) => Ok(Vec::new()),
            Err(error) if vigil_runtime::clickhouse::is_transient(&error) => Err(error),
            Err(error) if rows.len() == 1 => Ok(vec![(offset, error.to_string())]),
            Err(_) => {
                let middle = rows.len() / 2;
                let mut rejected = insert_isolating(client, table, &rows[..middle], offset).await?;
                rejected.extend(
                    insert_isolating(client, table, &rows[middle..], offset + middle).await?,
                );
                Ok(rejected)
            }
        }
    })
}

/// What the writer needs of one table's buffer, whatever its row type.
trait Buffer: Send {
    fn table(&self) -> &'static str;
    fn topic(&self) -> &str;
    /// Adds one Kafka record; returns a dead letter if it cannot be decoded.
    fn push(&mut self, message: &BorrowedMessage<'_>, landed_ms: i64) -> Option<DeadLetter>;
    fn due(&self, max_rows: usize) -> bool;
    fn has_work(&self) -> bool;
    fn rows(&self) -> usize;
    /// (partition, offset, hospital) of the row at `index`.
    fn source(&self, index: usize) -> Option<&(i32, i64, String)>;
    fn positions(&self) -> &Positions;
    /// Partitions revoked mid-batch: their rows may still be inserted (harmless duplicates for
    /// the new owner), but their offsets are no longer ours to commit.
    fn forget(&mut self, revoked: &[TopicPartition]);
    /// The rollups' periods and cells the rows held now count in (see [`Table::period`],
    /// [`Table::activity`]), cells in a reporting zone `offset_minutes` east of UTC.
    fn stale(&self, offset_minutes: i32) -> Stale;
    /// Inserts the rows held now; rows ClickHouse refuses for their data come back by index.
    fn insert<'a>(
        &'a self,
        client: &'a Client,
    ) -> Pin<Box<dyn Future<Output = InsertOutcome> + Send + 'a>>;
    fn clear(&mut self);
}

impl<T: Table + Send + 'static> Buffer for Pending<T>
where
    T::Record: Send,
{
    fn table(&self) -> &'static str {
        T::TABLE
    }
    fn topic(&self) -> &str {
        &self.topic
    }
    fn push(&mut self, message: &BorrowedMessage<'_>, landed_ms: i64) -> Option<DeadLetter> {
        Pending::push(self, message, landed_ms)
    }
    fn due(&self, max_rows: usize) -> bool {
        Pending::due(self, max_rows)
    }
    fn has_work(&self) -> bool {
        Pending::has_work(self)
    }
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn source(&self, index: usize) -> Option<&(i32, i64, String)> {
        self.sources.get(index)
    }
    fn positions(&self) -> &Positions {
        &self.positions
    }
    fn forget(&mut self, revoked: &[TopicPartition]) {
        self.positions.forget(revoked);
    }
    fn stale(&self, offset_minutes: i32) -> Stale {
        // Distinct first: a batch holds thousands of rows of a handful of periods.
        let distinct: BTreeSet<(&str, &str, u16)> =
            self.rows.iter().filter_map(T::period).collect();
        let periods = distinct
            .into_iter()
            .map(|(definition, kind, start)| PeriodKey {
                definition: definition.to_string(),
                period_kind: kind.to_string(),
                period_start: start,
            })
            .collect();
        let cells = self
            .rows
            .iter()
            .filter_map(T::activity)
            .map(|(activity, time_ms)| Cell::of(activity, time_ms, offset_minutes))
            .collect();
        Stale { periods, cells }
    }
    fn insert<'a>(
        &'a self,
        client: &'a Client,
    ) -> Pin<Box<dyn Future<Output = InsertOutcome> + Send + 'a>> {
        insert_isolating(client, T::TABLE, &self.rows, 0)
    }
    fn clear(&mut self) {
        Pending::clear(self);
    }
}

/// A table's buffer and the summary figure its rows count in.
struct Registered {
    buffer: Box<dyn Buffer>,
    counted: fn(&mut SinkSummary) -> &mut u64,
}

fn entry<T: Table + Send + 'static>(
    topic: &str,
    interval: Duration,
    counted: fn(&mut SinkSummary) -> &mut u64,
) -> Result<Registered, SinkError>
where
    T::Record: Send,
{
    Ok(Registered {
        buffer: Box::new(Pending::<T>::new(topic, interval)?),
        counted,
    })
}

/// Routes a batch to the tables' buffers; returns dead letters for what could not be decoded.
fn route_all(tables: &mut [Registered], batch: &[BorrowedMessage<'_>]) -> Vec<DeadLetter> {
    let landed = now_ms();
    let mut letters = Vec::new();
    for message in batch {
        let topic = message.topic();
        if let Some(table) = tables.iter_mut().find(|t| t.buffer.topic() == topic) {
            letters.extend(table.buffer.push(message, landed));
        }
    }
    letters
}

/// Every table the writer fills, each from its topic: a new table is a line here (and its
/// [`Table`] impl). The order is the flush order: alerts first, so clinicians' rows land soonest.
fn registry(topics: &Topics, config: &SinkConfig) -> Result<Vec<Registered>, SinkError> {
    let every = config.flush_interval;
    Ok(vec![
        entry::<Alerts>(&topics.alerts, config.alerts_flush_interval, |s| {
            &mut s.alerts
        })?,
        entry::<Events>(&topics.clinical_events, every, |s| &mut s.events)?,
        entry::<Statuses>(&topics.patient_status, every, |s| &mut s.status_rows)?,
        entry::<DeadLetters>(&topics.dead_letters, every, |s| &mut s.dead_letters)?,
        entry::<Deliveries>(&topics.alert_deliveries, every, |s| &mut s.deliveries)?,
        entry::<Stats>(&topics.pipeline_stats, every, |s| &mut s.pipeline_stats)?,
        entry::<LateEvents>(&topics.late_events, every, |s| &mut s.late_events)?,
    ])
}

struct Writer<'a> {
    config: &'a SinkConfig,
    /// The servers to land on: the one configured, or a cluster's replicas in turn.
    replicas: Replicas,
    handle: &'a Handle,
    consumer: GroupConsumer,
    producer: DurableProducer,
    dead_letter_codec: AvroCodec<DeadLetter>,
    dead_letter_topic: String,
    tables: Vec<Registered>,
    summary: SinkSummary,
    rollups: Rollups,
}

/// The clients the writer lands with. With an insert quorum, its reads (rollups, publications)
/// ask for sequential consistency: a replica that lacks an acknowledged insert refuses them.
fn landing(clickhouse: &ClickHouseConfig) -> Replicas {
    let quorum = clickhouse.insert_quorum;
    Replicas::new(clickhouse, |client| {
        let client = client.with_setting("max_insert_block_size", "1048576");
        if quorum == 0 {
            return client;
        }
        client
            .with_setting("insert_quorum", quorum.to_string())
            .with_setting("select_sequential_consistency", "1")
    })
}

/// Runs the ClickHouse writer until shutdown (or the stop condition). The dashboard's rollups
/// count days and months in the reporting time zone, and final periods are published by the
/// reporting calendar.
pub fn run(
    config: &SinkConfig,
    kafka: &KafkaConfig,
    clickhouse: &ClickHouseConfig,
    reporting: Reporting,
    handle: &Handle,
    shutdown: &Shutdown,
    stop: StopWhen,
) -> Result<SinkSummary, SinkError> {
    config.validate()?;
    clickhouse.validate()?;
    kafka.validate()?;
    let version = handle.block_on(vigil_runtime::clickhouse::healthcheck(clickhouse))?;
    let topics = &kafka.topics;
    let tables = registry(topics, config)?;
    let subscribed: Vec<&str> = tables.iter().map(|t| t.buffer.topic()).collect();
    let consumer = GroupConsumer::new(
        kafka,
        &config.group_id,
        "vigil-sink",
        &subscribed,
        &ConsumerTuning::default(),
    )?;
    info!(clickhouse = %clickhouse.url, version = %version, database = %clickhouse.database, "ClickHouse writer started.");
    let mut writer = Writer {
        config,
        replicas: landing(clickhouse),
        handle,
        consumer,
        producer: DurableProducer::new(kafka, "vigil-sink")?,
        dead_letter_codec: AvroCodec::new()?,
        dead_letter_topic: topics.dead_letters.clone(),
        tables,
        summary: SinkSummary::default(),
        rollups: Rollups::new(
            &clickhouse.database,
            config.rollup_interval,
            reporting.utc_offset_minutes,
        ),
    };
    // What a writer stopped before recomputing (or everything, the first time).
    let caught_up = handle
        .block_on(rollup::catch_up(
            writer.replicas.current(),
            &clickhouse.database,
            reporting.utc_offset_minutes,
        ))
        .map_err(|source| RuntimeError::ClickHouse {
            operation: "recompute the dashboard's rollups",
            source,
        })?;
    info!(
        periods_and_cells = caught_up,
        "The dashboard's rollups caught up."
    );
    let mut last_input = Instant::now();
    let mut last_report = Instant::now();
    let mut last_publication = Instant::now();
    loop {
        let stopping = shutdown.is_requested()
            || (stop.reached(last_input.elapsed()) && writer.consumer.caught_up().unwrap_or(false));
        if !stopping {
            let got = writer.poll_once()?;
            if got > 0 {
                last_input = Instant::now();
            }
        }
        writer.flush_due(stopping)?;
        writer.recompute_rollups(stopping);
        if !config.publish_interval.is_zero()
            && (last_publication.elapsed() >= config.publish_interval || stopping)
        {
            last_publication = Instant::now();
            writer.publish(clickhouse, &reporting);
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            writer.consumer.report_lag("sink");
            info!(
                events = writer.summary.events,
                alerts = writer.summary.alerts,
                status_rows = writer.summary.status_rows,
                dead_letters = writer.summary.dead_letters,
                inserts = writer.summary.inserts,
                "ClickHouse writer progress."
            );
        }
        if stopping {
            info!(summary = ?writer.summary, "ClickHouse writer stopped; everything read was written and committed.");
            return Ok(writer.summary);
        }
    }
}

impl Writer<'_> {
    /// Publishes the bureau's outcome metrics and the final periods' figures, on the replica
    /// the writer lands on. A failed publication is retried next interval: it never holds up
    /// the writing.
    fn publish(&self, clickhouse: &ClickHouseConfig, reporting: &Reporting) {
        let current = ClickHouseConfig {
            url: self.replicas.current_url().to_string(),
            ..clickhouse.clone()
        };
        let minimum = self.config.publish_min_cell;
        match self
            .handle
            .block_on(super::publish::publish(&current, minimum))
        {
            Ok(cells) => {
                tracing::debug!(cells, "Published the insurance bureau's outcome metrics.")
            }
            Err(error) => {
                warn!(%error, "Publishing outcome metrics failed; retrying next interval.")
            }
        }
        let frozen = super::freeze::freeze(
            self.replicas.current(),
            &clickhouse.database,
            reporting,
            now_ms(),
        );
        match self.handle.block_on(frozen) {
            Ok(frozen) if frozen != Default::default() => {
                info!(
                    published = frozen.published,
                    restated = frozen.restated,
                    "Final periods' outcome figures published or restated."
                )
            }
            Ok(_) => {}
            Err(error) => {
                warn!(%error, "Publishing final periods failed; retrying next interval.")
            }
        }
    }

    /// Polls one batch into the table buffers; returns how many records arrived.
    fn poll_once(&mut self) -> Result<usize, SinkError> {
        let batch = self.consumer.poll_batch(10_000, Duration::from_millis(50));
        let count = batch.len();
        let undecodable = route_all(&mut self.tables, &batch);
        drop(batch);
        self.forget_revoked();
        for letter in undecodable {
            self.send_dead_letter(&letter)?;
        }
        Ok(count)
    }

    /// Partitions revoked mid-batch: their rows may still be inserted (harmless duplicates for
    /// the new owner), but their offsets are no longer ours to commit.
    fn forget_revoked(&mut self) {
        for change in self.consumer.take_assignment_changes() {
            if let AssignmentChange::Revoked(list) = change {
                for table in &mut self.tables {
                    table.buffer.forget(&list);
                }
            }
        }
    }

    fn send_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), SinkError> {
        metrics::counter!("vigil_dead_letters_total", "stage" => "sink", "hospital" => letter.hospital_id.clone(), "reason" => letter.reason_code.clone())
            .increment(1);
        let bytes = self.dead_letter_codec.encode(letter)?;
        self.producer.send(
            &self.dead_letter_topic,
            letter.hospital_id.as_bytes(),
            &bytes,
        )?;
        self.summary.rejected += 1;
        Ok(())
    }

    /// Recomputes the rollups of what landed, beside the writing. A failure is
    /// retried at the next interval (and by the next writer's catch-up): it never holds up the
    /// writing.
    fn recompute_rollups(&mut self, stopping: bool) {
        match self
            .rollups
            .drive(self.replicas.current(), self.handle, stopping)
        {
            Some(Ok(recomputed)) => debug!(recomputed, "The dashboard's rollups recomputed."),
            Some(Err(error)) => {
                warn!(%error, "The dashboard's rollups could not be recomputed; retrying.")
            }
            None => {}
        }
    }

    fn flush_due(&mut self, all: bool) -> Result<(), SinkError> {
        let max = self.config.batch_max_rows;
        for index in 0..self.tables.len() {
            let buffer = &self.tables[index].buffer;
            if buffer.due(max) || (all && buffer.has_work()) {
                let written = self.flush(index)?;
                *(self.tables[index].counted)(&mut self.summary) += written;
            }
        }
        Ok(())
    }

    /// Inserts one table's rows (retrying while ClickHouse is unavailable), sends rows it refuses
    /// to dead letters, then commits the offsets. Records that arrive while it waits join the
    /// batch (their offsets are committed with it). Returns the rows written.
    fn flush(&mut self, index: usize) -> Result<u64, SinkError> {
        let table = self.tables[index].buffer.table();
        let mut backoff = Duration::from_millis(200);
        let rejected = loop {
            let attempt = self
                .handle
                .block_on(self.tables[index].buffer.insert(self.replicas.current()));
            match attempt {
                Ok(rejected) => break rejected,
                Err(source) => {
                    self.summary.retries += 1;
                    metrics::counter!("vigil_sink_insert_retries_total", "table" => table)
                        .increment(1);
                    let failed = self.replicas.current_url().to_string();
                    // The same rows go to the next replica: a replicated table drops an
                    // identical block already inserted, and the tables replace by row id.
                    self.replicas.fail_over();
                    warn!(table, rows = self.tables[index].buffer.rows(), error = %source, server = %failed,
                        next = %self.replicas.current_url(), retry_in = ?backoff,
                        "ClickHouse is unavailable; holding the batch and retrying.");
                    self.wait_while_paused(backoff)?;
                    backoff = (backoff * 2).min(self.config.max_retry_backoff);
                }
            }
        };
        let rows = self.tables[index].buffer.rows();
        self.summary.inserts += 1;
        metrics::counter!("vigil_sink_rows_total", "table" => table)
            .increment((rows - rejected.len()) as u64);
        metrics::counter!("vigil_sink_rejected_rows_total", "table" => table)
            .increment(rejected.len() as u64);
        for (row, reason) in &rejected {
            let buffer = &self.tables[index].buffer;
            let Some((partition, offset, hospital)) = buffer.source(*row).cloned() else {
                continue;
            };
            error!(
                table,
                partition, offset, "ClickHouse refused a row; sending it to dead letters."
            );
            let at = InputPosition {
                topic: buffer.topic(),
                partition,
                offset,
            };
            let letter = DeadLetter::new(
                "sink",
                at,
                "clickhouse_rejected",
                &refusal_detail(reason),
                now_ms(),
            )
            .with_hospital(&hospital);
            self.send_dead_letter(&letter)?;
        }
        // Dead letters must be durable before the offsets that produced them are committed.
        self.producer.flush()?;
        let buffer = &mut self.tables[index].buffer;
        self.rollups
            .note(buffer.stale(self.rollups.offset_minutes()));
        self.consumer.commit(buffer.positions(), CommitMode::Async);
        buffer.clear();
        Ok((rows - rejected.len()) as u64)
    }

    /// Waits `duration` without leaving the consumer group: consumption is paused, but the
    /// consumer keeps being polled. Records already fetched are kept (bounded by the fetch queue).
    fn wait_while_paused(&mut self, duration: Duration) -> Result<(), SinkError> {
        let assignment =
            self.consumer
                .consumer()
                .assignment()
                .map_err(|source| RuntimeError::Kafka {
                    operation: "read assignment",
                    source,
                })?;
        let _ = self.consumer.consumer().pause(&assignment);
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            let batch = self.consumer.poll_batch(1_000, Duration::from_millis(100));
            let undecodable = route_all(&mut self.tables, &batch);
            drop(batch);
            for letter in undecodable {
                self.send_dead_letter(&letter)?;
            }
        }
        let _ = self.consumer.consumer().resume(&assignment);
        Ok(())
    }
}
