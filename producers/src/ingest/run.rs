//! The ingest loops: from the change-event topic, or from JSON lines (a file or stdin).

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use rdkafka::message::Message;
use tracing::info;
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{Aligner, ConsumerTuning, DurableProducer, GroupConsumer, Positions};
use vigil_runtime::{Shutdown, StopWhen};

use super::config::IngestConfig;
use super::handler::{Handler, IngestSummary, LiveCatalog};
use super::spool::SnapshotSpool;
use crate::edge::{Catalog, EdgeConfig};
use crate::error::ProducerError;
use crate::pseudonym::PseudonymKey;

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
