//! The ingest loops: from the change-event topic, or from JSON lines (a file or stdin).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use rdkafka::message::Message;
use serde::Serialize;
use tracing::{info, warn};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{Aligner, ConsumerTuning, DurableProducer, GroupConsumer, Positions};
use vigil_runtime::stats::StageStats;
use vigil_runtime::time::now_ms;
use vigil_runtime::{RuntimeError, Shutdown, StopWhen};
use vigil_schemas::{AvroCodec, ClinicalEvent, DeadLetter, InputPosition, SourcePosition};

use super::adapter::{Adapted, Adapter, Outcome, Reason, Rejection, SnapshotMark};
use super::config::IngestConfig;
use super::redact::{safe_copy, withheld};
use super::spool::{Released, SnapshotSpool};
use crate::edge::catalog::newest_change;
use crate::edge::{Catalog, EdgeConfig};
use crate::error::ProducerError;
use crate::pseudonym::PseudonymKey;

/// What a run of the ingest did: every input record is counted exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    pub records: u64,
    pub accepted: u64,
    pub tombstones: u64,
    /// Rejected records by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Accepted records with a code the catalogue could not map, by what was unmapped.
    pub unmapped: BTreeMap<String, u64>,
}

impl IngestSummary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// The catalogue, re-read when its files change (a broken edit keeps the previous one).
struct LiveCatalog {
    catalog: Catalog,
    dir: std::path::PathBuf,
    checked: Instant,
    interval: Duration,
}

impl LiveCatalog {
    fn load(dir: &Path, interval: Duration) -> Result<Self, ProducerError> {
        let catalog = Catalog::load(dir)?;
        info!(hospitals = catalog.len(), dir = %dir.display(), "Edge catalogue loaded.");
        Ok(LiveCatalog {
            catalog,
            dir: dir.to_path_buf(),
            checked: Instant::now(),
            interval,
        })
    }

    fn refresh(&mut self) {
        if self.checked.elapsed() < self.interval {
            return;
        }
        self.checked = Instant::now();
        if newest_change(&self.dir) == self.catalog.loaded_from {
            return;
        }
        match Catalog::load(&self.dir) {
            Ok(catalog) => {
                info!(
                    hospitals = catalog.len(),
                    "Edge catalogue changed on disk; reloaded."
                );
                self.catalog = catalog;
            }
            Err(error) => {
                warn!(%error, "Edge catalogue changed but does not load; keeping the previous one.")
            }
        }
    }
}

/// Turns records into produced events or dead letters, counting as it goes.
struct Handler {
    key: PseudonymKey,
    offset: i32,
    events_topic: String,
    dead_letter_topic: String,
    event_codec: AvroCodec<ClinicalEvent>,
    dead_letter_codec: AvroCodec<DeadLetter>,
    buffer: Vec<u8>,
    summary: IngestSummary,
    /// Counts since the last publication: (hospital, outcome or reason or code kind).
    records: BTreeMap<(String, &'static str), u64>,
    letters: BTreeMap<(String, &'static str), u64>,
    unmapped: BTreeMap<(String, &'static str), u64>,
    /// Counts per hospital for the pipeline-stats topic.
    stats: StageStats,
    /// Whether events carry their input position: only a topic's, where a crash before the
    /// commit replays from the committed offset. A file's line numbers start again with every
    /// run (another export under the same name, or stdin), so they would pass for a replay.
    stamp_source: bool,
}

impl Handler {
    fn new(
        kafka: &KafkaConfig,
        edge: &EdgeConfig,
        key: PseudonymKey,
    ) -> Result<Self, ProducerError> {
        Ok(Handler {
            key,
            offset: edge.hospital_utc_offset_minutes,
            events_topic: kafka.topics.clinical_events.clone(),
            dead_letter_topic: kafka.topics.dead_letters.clone(),
            event_codec: AvroCodec::new()?,
            dead_letter_codec: AvroCodec::new()?,
            buffer: Vec::with_capacity(1024),
            summary: IngestSummary::default(),
            records: BTreeMap::new(),
            letters: BTreeMap::new(),
            unmapped: BTreeMap::new(),
            stats: StageStats::new("ingest", kafka)?,
            stamp_source: true,
        })
    }

    /// Publishes the counts gathered since the last call (once per batch, not per record).
    fn publish_metrics(&mut self) {
        for ((hospital, outcome), n) in std::mem::take(&mut self.records) {
            metrics::counter!("vigil_ingest_records_total", "hospital" => hospital, "outcome" => outcome).increment(n);
        }
        for ((hospital, reason), n) in std::mem::take(&mut self.letters) {
            metrics::counter!("vigil_dead_letters_total", "stage" => "ingest", "hospital" => hospital, "reason" => reason).increment(n);
        }
        for ((hospital, kind), n) in std::mem::take(&mut self.unmapped) {
            metrics::counter!("vigil_ingest_unmapped_codes_total", "hospital" => hospital, "kind" => kind).increment(n);
        }
    }

    /// One input record: a tombstone, a dead letter, a live change produced at once, or a
    /// snapshot row held until its snapshot ends.
    fn handle(
        &mut self,
        catalog: &Catalog,
        producer: &DurableProducer,
        spool: &mut SnapshotSpool,
        value: Option<&[u8]>,
        (topic, partition, offset): (&str, i32, i64),
    ) -> Result<(), ProducerError> {
        self.summary.records += 1;
        let now = now_ms();
        let adapter = Adapter {
            catalog,
            key: &self.key,
            utc_offset_minutes: self.offset,
            now_ms: now,
        };
        let at = InputPosition {
            topic,
            partition,
            offset,
        };
        let Adapted { outcome, mark } = adapter.adapt_marked(value);
        let (mut event, unmapped) = match outcome {
            Outcome::Tombstone => {
                self.summary.tombstones += 1;
                self.stats.hospital("").records_in += 1;
                *self
                    .records
                    .entry((String::new(), "tombstone"))
                    .or_default() += 1;
                return Ok(());
            }
            Outcome::Accepted(event) => (event, None),
            Outcome::AcceptedUnmapped(event, what) => (event, Some(what)),
            Outcome::Rejected(rejection) => {
                self.reject(producer, &rejection, value, at, now)?;
                if mark == SnapshotMark::Last {
                    self.release(producer, spool, &rejection.hospital)?;
                }
                return Ok(());
            }
        };
        match mark {
            SnapshotMark::Live => {
                // A hospital's first live change ends its snapshot: what it held goes first.
                if spool.is_holding(&event.hospital_id) {
                    self.release(producer, spool, &event.hospital_id)?;
                }
                // The source position lets the processor recognise this event if a crash
                // before the commit makes the edge send it again.
                if self.stamp_source {
                    event.source = Some(at.source());
                }
                self.produce(producer, *event, unmapped, value, at, now)
            }
            SnapshotMark::Row => spool.hold(&event, unmapped, at),
            SnapshotMark::Last => {
                spool.hold(&event, unmapped, at)?;
                self.release(producer, spool, &event.hospital_id)
            }
        }
    }

    /// Ends a hospital's snapshot: its rows go on in clinical-time order (see `spool`).
    fn release(
        &mut self,
        producer: &DurableProducer,
        spool: &mut SnapshotSpool,
        hospital: &str,
    ) -> Result<(), ProducerError> {
        let now = now_ms();
        for released in spool.release(hospital)? {
            let Released { event, unmapped } = released?;
            let place = event.source.clone().unwrap_or(SourcePosition {
                topic: String::new(),
                partition: 0,
                offset: 0,
            });
            let at = InputPosition {
                topic: &place.topic,
                partition: place.partition,
                offset: place.offset,
            };
            self.produce(producer, event, unmapped, None, at, now)?;
        }
        Ok(())
    }

    /// Sends an accepted event and counts it.
    fn produce(
        &mut self,
        producer: &DurableProducer,
        event: ClinicalEvent,
        unmapped: Option<&'static str>,
        value: Option<&[u8]>,
        at: InputPosition<'_>,
        now: i64,
    ) -> Result<(), ProducerError> {
        self.buffer.clear();
        self.event_codec.encode_into(&event, &mut self.buffer)?;
        match producer.send(
            &self.events_topic,
            event.patient_pseudonym.as_bytes(),
            &self.buffer,
        ) {
            Ok(()) => {}
            // The contract bounds every field, so this is a safety net: a record that cannot
            // be produced is a dead letter, never a failure the stage would meet again forever.
            Err(RuntimeError::RecordTooLarge { bytes, .. }) => {
                let rejection = Rejection {
                    hospital: event.hospital_id.clone(),
                    reason: Reason::RecordTooLarge,
                    detail: format!(
                        "the canonical event would take {bytes} bytes, more than a record may"
                    ),
                    columns: Vec::new(),
                };
                return self.reject(producer, &rejection, value, at, now);
            }
            Err(error) => return Err(error.into()),
        }
        if let Some(what) = unmapped {
            *self.summary.unmapped.entry(what.to_string()).or_default() += 1;
            *self
                .unmapped
                .entry((event.hospital_id.clone(), what))
                .or_default() += 1;
        }
        self.summary.accepted += 1;
        let counts = self.stats.hospital(&event.hospital_id);
        counts.records_in += 1;
        counts.records_out += 1;
        counts.event_age(now, event.event_time_ms);
        *self
            .records
            .entry((event.hospital_id.clone(), "accepted"))
            .or_default() += 1;
        Ok(())
    }

    /// A rejected record: counted by reason, and a dead letter with an allow-listed copy.
    fn reject(
        &mut self,
        producer: &DurableProducer,
        rejection: &Rejection,
        value: Option<&[u8]>,
        at: InputPosition<'_>,
        now: i64,
    ) -> Result<(), ProducerError> {
        let reason = rejection.reason.as_str();
        *self.summary.rejected.entry(reason.to_string()).or_default() += 1;
        let counts = self.stats.hospital(&rejection.hospital);
        counts.records_in += 1;
        counts.dead_letters += 1;
        let bytes = value.unwrap_or_default();
        let copy = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(parsed) => {
                let columns: Vec<&str> = rejection.columns.iter().map(String::as_str).collect();
                safe_copy(&parsed, &columns)
            }
            Err(_) => withheld(bytes),
        };
        let letter = DeadLetter::new("ingest", at, reason, &rejection.detail, now)
            .with_hospital(&rejection.hospital)
            .with_copy(&copy);
        let hospital = letter.hospital_id.clone();
        *self.letters.entry((hospital.clone(), reason)).or_default() += 1;
        *self.records.entry((hospital, "rejected")).or_default() += 1;
        self.buffer.clear();
        self.dead_letter_codec
            .encode_into(&letter, &mut self.buffer)?;
        producer.send(
            &self.dead_letter_topic,
            letter.hospital_id.as_bytes(),
            &self.buffer,
        )?;
        Ok(())
    }
}

/// Reads the change-event topic until shutdown (or the stop condition).
pub fn run(
    config: &IngestConfig,
    edge: &EdgeConfig,
    kafka: &KafkaConfig,
    key: PseudonymKey,
    shutdown: &Shutdown,
    stop: StopWhen,
) -> Result<IngestSummary, ProducerError> {
    config.validate()?;
    kafka.validate()?;
    let mut catalog = LiveCatalog::load(&edge.catalog_dir, config.reload_interval)?;
    let mut handler = Handler::new(kafka, edge, key)?;
    let producer = DurableProducer::new(kafka, "vigil-ingest")?;
    let consumer = GroupConsumer::new(
        kafka,
        &config.group_id,
        "vigil-ingest",
        &[&kafka.topics.his_changes],
        &ConsumerTuning::default(),
    )?;
    let mut spool = SnapshotSpool::new(&config.spool_dir(), config.snapshot_quiet, String::new())?;
    // Every partition's next offset to read; commits hold at a snapshot still held.
    let mut positions = Positions::default();
    // Change events of several partitions merge into per-patient streams: release them in the
    // order they were written, whatever order the broker serves partitions in (see Aligner).
    let mut aligner = Aligner::new(config.batch_max_records);
    let mut ready = Vec::new();
    let mut last_input = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let stopping = shutdown.is_requested()
            || (stop.reached(last_input.elapsed())
                && aligner.buffered() == 0
                && consumer.caught_up().unwrap_or(false));
        if stopping {
            if shutdown.is_requested() {
                if spool.rows() > 0 {
                    info!(rows = spool.rows(), "Stopping with a snapshot unfinished; its rows are read again on restart (nothing of it was committed).");
                }
            } else {
                // The input is exhausted: a snapshot still held has ended.
                for hospital in spool.hospitals() {
                    handler.release(&producer, &mut spool, &hospital)?;
                }
            }
            handler.stats.publish_due(&producer, true)?;
            producer.flush()?;
            commit_done(&consumer, &positions, &spool, CommitMode::Sync);
            info!(summary = ?handler.summary, "Ingest stopped; everything read was produced and committed.");
            return Ok(handler.summary);
        }
        catalog.refresh();
        let batch = consumer.poll_batch(config.batch_max_records, config.batch_max_wait);
        if !batch.is_empty() {
            last_input = Instant::now();
        }
        for message in &batch {
            aligner.push(message.detach());
        }
        drop(batch);
        let mut released = false;
        for change in consumer.take_assignment_changes() {
            if let vigil_runtime::kafka::AssignmentChange::Revoked(list) = change {
                // Another member reads these partitions from the last commit, which held at
                // any snapshot held here: release it as it stands (what both send twice changes
                // nothing downstream), never leave rows of other partitions behind.
                for hospital in spool.hospitals() {
                    handler.release(&producer, &mut spool, &hospital)?;
                    released = true;
                }
                aligner.forget(&list);
                positions.forget(&list);
            }
        }
        for hospital in spool.quiet_hospitals() {
            info!(%hospital, "A snapshot sent nothing for a while; releasing what it sent.");
            handler.release(&producer, &mut spool, &hospital)?;
            released = true;
        }
        ready.clear();
        aligner.release(&consumer, &consumer.assigned(), &mut ready);
        if ready.is_empty() && !released {
            continue;
        }
        for message in &ready {
            handler.handle(
                &catalog.catalog,
                &producer,
                &mut spool,
                message.payload(),
                (message.topic(), message.partition(), message.offset()),
            )?;
            positions.advance(message.topic(), message.partition(), message.offset());
        }
        handler.stats.publish_due(&producer, false)?;
        // Offsets move only once every event and dead letter released is acknowledged.
        producer.flush()?;
        commit_done(&consumer, &positions, &spool, CommitMode::Async);
        handler.publish_metrics();
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            consumer.report_lag("ingest");
            let s = &handler.summary;
            info!(
                records = s.records,
                accepted = s.accepted,
                rejected = s.rejected_total(),
                held = aligner.buffered(),
                snapshot_rows_held = spool.rows(),
                "Ingest progress."
            );
        }
    }
}

/// Commits what is done: everything read, except from the first row of a snapshot still held.
fn commit_done(
    consumer: &GroupConsumer,
    positions: &Positions,
    spool: &SnapshotSpool,
    mode: CommitMode,
) {
    let mut done = positions.clone();
    for (topic, partition, offset) in spool.fences() {
        done.hold_at(topic, partition, offset);
    }
    consumer.commit(&done, mode);
}

/// Calls `each` with the line number and value of every record of a JSON-lines file (stdin for
/// "-"): one Debezium change-event value per line, `null` a tombstone, blank lines skipped.
pub fn for_each_line(
    path: &Path,
    shutdown: &Shutdown,
    mut each: impl FnMut(i64, Option<&[u8]>) -> Result<(), ProducerError>,
) -> Result<(), ProducerError> {
    let io_error = |source| ProducerError::Io {
        path: path.display().to_string(),
        source,
    };
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(io_error)?,
        ))
    };
    // Lines as bytes: a line that is not UTF-8 is one bad record (a dead letter), not a failure
    // of the file that a restart would meet again at the same line.
    for (number, line) in reader.split(b'\n').enumerate() {
        if shutdown.is_requested() {
            break;
        }
        let line = line.map_err(io_error)?;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        each(number as i64 + 1, (trimmed != b"null").then_some(trimmed))?;
    }
    Ok(())
}

/// Ingests JSON lines (one Debezium change-event value per line; `null` is a tombstone) from a
/// file, or from stdin when `path` is "-". Returns once everything is acknowledged.
pub fn run_file(
    path: &Path,
    config: &IngestConfig,
    edge: &EdgeConfig,
    kafka: &KafkaConfig,
    key: PseudonymKey,
    shutdown: &Shutdown,
) -> Result<IngestSummary, ProducerError> {
    kafka.validate()?;
    let catalog = Catalog::load(&edge.catalog_dir)?;
    let mut handler = Handler::new(kafka, edge, key)?;
    handler.stamp_source = false;
    let producer = DurableProducer::new(kafka, "vigil-ingest-file")?;
    let source = format!("file:{}", path.display());
    // A file's snapshot is named by this run too: another export may start at the same line.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos().to_string())
        .unwrap_or_default();
    let mut spool = SnapshotSpool::new(&config.spool_dir(), config.snapshot_quiet, run)?;
    for_each_line(path, shutdown, |number, value| {
        handler.handle(&catalog, &producer, &mut spool, value, (&source, 0, number))?;
        if handler.summary.records % 10_000 == 0 {
            producer.flush()?;
        }
        Ok(())
    })?;
    if shutdown.is_requested() {
        info!(
            rows = spool.rows(),
            "Stopped before the end of the file; a snapshot it began is not sent."
        );
    } else {
        for hospital in spool.hospitals() {
            handler.release(&producer, &mut spool, &hospital)?;
        }
    }
    handler.stats.publish_due(&producer, true)?;
    producer.flush()?;
    handler.publish_metrics();
    info!(summary = ?handler.summary, "File ingested; everything was acknowledged by the broker.");
    Ok(handler.summary)
}
