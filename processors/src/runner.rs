//! The processor's Kafka loop.
//!
//! ```text
//! poll batch ─▶ assignment changes (restore / release partitions)
//!            ─▶ decode, apply to the partition's state ─▶ alerts: produced at once
//!            ─▶ advance watermarks, fire timers
//!            ─▶ every checkpoint interval: status rows + changelog checkpoint, flush, commit
//! ```
//!
//! Offsets are committed only after the changelog checkpoint and every output it covers are
//! acknowledged. A partition's input resumes at the offsets stored in its checkpoint; records the
//! group offset re-delivers below them are skipped, so nothing is applied twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use rdkafka::message::{BorrowedMessage, Message};
use tracing::info;
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{
    AssignmentChange, ConsumerTuning, DurableProducer, GroupConsumer, Positions, RangeReader,
};
use vigil_runtime::stats::StageStats;
use vigil_runtime::time::now_ms;
use vigil_runtime::Shutdown;

use vigil_schemas::{
    Alert, AlertAck, AvroCodec, ClinicalEvent, DeadLetter, InputPosition, PatientStatus,
};

use crate::checkpoint::{Changelog, Progress};
use crate::config::ProcessConfig;
use crate::engine::{Disposition, Engine, PartitionState};
use crate::error::ProcessorError;

/// What a run of the processor did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSummary {
    pub events: u64,
    pub acks: u64,
    pub alerts: u64,
    pub status_rows: u64,
    pub rejected: u64,
    pub late: u64,
    pub checkpoints: u64,
    pub restores: u64,
}

pub use vigil_runtime::StopWhen;

struct Owned {
    state: PartitionState,
    progress: Progress,
    /// Next offset per input (events, acks): what the checkpoint records.
    next_events: Option<i64>,
    next_acks: Option<i64>,
    last_input: Instant,
    /// Changelog end offset right after our last checkpoint: if unchanged when the partition
    /// comes back after a rebalance, nobody else wrote and the state is still good.
    changelog_end: Option<i64>,
}

struct Codecs {
    event: AvroCodec<ClinicalEvent>,
    ack: AvroCodec<AlertAck>,
    alert: AvroCodec<Alert>,
    status: AvroCodec<PatientStatus>,
    dead_letter: AvroCodec<DeadLetter>,
}

/// Runs the processor until shutdown (or the stop condition).
pub fn run(
    config: &ProcessConfig,
    kafka: &KafkaConfig,
    shutdown: &Shutdown,
    stop: StopWhen,
) -> Result<ProcessSummary, ProcessorError> {
    let rules = config.validate()?;
    kafka.validate()?;
    let engine = Engine::new(rules, config.engine.clone());
    let topics = &kafka.topics;
    let producer = DurableProducer::new(kafka, "vigil-process")?;
    let tuning = ConsumerTuning::default();
    let consumer = GroupConsumer::new(
        kafka,
        &config.group_id,
        "vigil-process",
        &[&topics.clinical_events, &topics.alert_acks],
        &tuning,
    )?;
    let changelog = Changelog::new(kafka, config.changelog_chunk_bytes, config.snapshot_ratio);
    let codecs = Codecs {
        event: AvroCodec::new()?,
        ack: AvroCodec::new()?,
        alert: AvroCodec::new()?,
        status: AvroCodec::new()?,
        dead_letter: AvroCodec::new()?,
    };
    info!(group = %config.group_id, rules = engine.rules.len(), "Processor started; waiting for partitions.");

    let mut owned: BTreeMap<i32, Owned> = BTreeMap::new();
    let mut parked: BTreeMap<i32, Owned> = BTreeMap::new();
    let mut summary = ProcessSummary::default();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut status_rows: Vec<PatientStatus> = Vec::new();
    let mut buffer = Vec::with_capacity(1024);
    let mut last_checkpoint = Instant::now();
    let mut last_input = Instant::now();
    let mut last_report = Instant::now();
    let mut dirty_since_checkpoint = false;
    let mut reported_first_input = false;
    let mut stats = StageStats::new("process", kafka)?;
    // Per-batch metric tallies: (rule, status) of alerts; the summary's totals at the last publication.
    let mut alert_counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut published = ProcessSummary::default();
    let idle_ms = config.idle_partition_timeout.as_millis() as i64;
    let lag_ms = config.engine.max_out_of_orderness.as_millis() as i64;

    loop {
        // A member the group rightly gave nothing (more members than partitions) has no work
        // to finish: idle, it may stop too.
        let finished = (owned.is_empty() && consumer.is_surplus_member())
            || (summary.checkpoints > 0
                && !dirty_since_checkpoint
                && consumer.caught_up().unwrap_or(false));
        let stopping = shutdown.is_requested() || (stop.reached(last_input.elapsed()) && finished);
        let batch = if stopping {
            Vec::new()
        } else {
            consumer.poll_batch(config.batch_max_events, config.batch_max_wait)
        };

        for change in consumer.take_assignment_changes() {
            match change {
                AssignmentChange::Revoked(list) => {
                    for partition in partitions_of(&list, &topics.clinical_events) {
                        if let Some(state) = owned.remove(&partition) {
                            parked.insert(partition, state);
                        }
                    }
                }
                AssignmentChange::Assigned(list) => {
                    // Nothing of these partitions can be processed before their state is back:
                    // stop fetching them meanwhile, so the broker serves the restore first.
                    consumer.pause(&list);
                    let partitions: Vec<i32> = partitions_of(&list, &topics.clinical_events)
                        .into_iter()
                        .filter(|p| !owned.contains_key(p))
                        .collect();
                    let mut to_restore = Vec::new();
                    for partition in partitions {
                        match parked
                            .remove(&partition)
                            .filter(|p| still_current(kafka, &changelog.topic, partition, p))
                        {
                            Some(state) => {
                                owned.insert(partition, state);
                            }
                            None => to_restore.push(partition),
                        }
                    }
                    let restore_started = Instant::now();
                    let restored = restore_all(&changelog, &engine, &to_restore)?;
                    if !restored.is_empty() {
                        info!(
                            partitions = restored.len(),
                            patients = restored.iter().map(|(_, o)| o.state.len()).sum::<usize>(),
                            seconds = restore_started.elapsed().as_secs_f64(),
                            "Restore finished."
                        );
                    }
                    for (partition, restored) in restored {
                        summary.restores += 1;
                        owned.insert(partition, restored);
                    }
                    info!(partitions = ?owned.keys().collect::<Vec<_>>(), patients = owned.values().map(|p| p.state.len()).sum::<usize>(),
                        "Processing partitions.");
                    consumer.resume(&list);
                    last_input = Instant::now();
                }
            }
        }
        parked.retain(|p, _| !owned.contains_key(p));

        let now = now_ms();
        if !batch.is_empty() {
            last_input = Instant::now();
            dirty_since_checkpoint = true;
        }
        for message in &batch {
            let partition = message.partition();
            let Some(part) = owned.get_mut(&partition) else {
                continue; // revoked while in hand: the new owner reads it
            };
            let is_event = message.topic() == topics.clinical_events;
            let next = if is_event {
                &mut part.next_events
            } else {
                &mut part.next_acks
            };
            if next.is_some_and(|n| message.offset() < n) {
                continue; // already in the restored checkpoint
            }
            *next = Some(message.offset() + 1);
            part.last_input = Instant::now();
            let payload = message.payload().unwrap_or_default();
            if is_event {
                match codecs.event.decode(payload) {
                    Ok(event) => {
                        let counts = stats.hospital(&event.hospital_id);
                        counts.records_in += 1;
                        match engine.apply_event(&mut part.state, &event, &mut alerts) {
                            Disposition::Applied => {
                                summary.events += 1;
                                counts.records_out += 1;
                                counts.event_age(now, event.event_time_ms);
                            }
                            Disposition::Late => {
                                summary.late += 1;
                                counts.late += 1;
                                producer.send(
                                    &topics.late_events,
                                    message.key().unwrap_or_default(),
                                    payload,
                                )?;
                            }
                            Disposition::Rejected(invalid) => {
                                summary.rejected += 1;
                                counts.dead_letters += 1;
                                let letter = dead_letter(
                                    message,
                                    invalid.reason.as_str(),
                                    &invalid.detail,
                                    now,
                                )
                                .with_hospital(&event.hospital_id)
                                .with_event_time(Some(event.event_time_ms))
                                .with_copy(&describe(&event));
                                send_dead_letter(
                                    &producer,
                                    &codecs,
                                    &topics.dead_letters,
                                    &letter,
                                    &mut buffer,
                                )?;
                            }
                        }
                    }
                    Err(error) => {
                        summary.rejected += 1;
                        let counts = stats.hospital("");
                        counts.records_in += 1;
                        counts.dead_letters += 1;
                        let letter = dead_letter(message, "undecodable", &error.safe_detail(), now);
                        send_dead_letter(
                            &producer,
                            &codecs,
                            &topics.dead_letters,
                            &letter,
                            &mut buffer,
                        )?;
                    }
                }
            } else {
                match codecs.ack.decode(payload) {
                    Ok(ack) => {
                        summary.acks += 1;
                        if !engine.apply_ack(&mut part.state, &ack, &mut alerts) {
                            tracing::debug!(episode = %ack.episode_id, "Acknowledgement matches no open episode.");
                        }
                    }
                    Err(error) => {
                        summary.rejected += 1;
                        let counts = stats.hospital("");
                        counts.records_in += 1;
                        counts.dead_letters += 1;
                        let letter = dead_letter(message, "undecodable", &error.safe_detail(), now);
                        send_dead_letter(
                            &producer,
                            &codecs,
                            &topics.dead_letters,
                            &letter,
                            &mut buffer,
                        )?;
                    }
                }
            }
        }
        drop(batch);

        // Event time moves each partition's watermark as events apply (in the engine). A
        // partition idle longer than the timeout lets it follow the wall clock instead, so
        // timers still fire when a hospital goes quiet.
        if idle_ms > 0 {
            for part in owned.values_mut() {
                if part.last_input.elapsed().as_millis() as i64 >= idle_ms
                    && now - lag_ms > part.state.watermark_ms
                {
                    engine.advance_watermark(&mut part.state, now - lag_ms, &mut alerts);
                    dirty_since_checkpoint = true;
                }
            }
        }

        // Alerts leave at once; only their durability waits for the checkpoint.
        for alert in alerts.drain(..) {
            buffer.clear();
            codecs.alert.encode_into(&alert, &mut buffer)?;
            producer.send(&topics.alerts, alert.patient_pseudonym.as_bytes(), &buffer)?;
            summary.alerts += 1;
            *alert_counts
                .entry((alert.rule_id.clone(), alert.status.as_str()))
                .or_default() += 1;
        }

        if stopping || last_checkpoint.elapsed() >= config.checkpoint_interval {
            // Flushed with the checkpoint below (or right here when stopping).
            stats.publish_due(&producer, stopping)?;
            if dirty_since_checkpoint || summary.checkpoints == 0 {
                let started = Instant::now();
                checkpoint(
                    &engine,
                    &changelog,
                    &producer,
                    &consumer,
                    kafka,
                    &codecs,
                    &mut owned,
                    &mut status_rows,
                    &mut buffer,
                    &mut summary,
                    stopping,
                )?;
                metrics::histogram!("vigil_process_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                dirty_since_checkpoint = false;
                if !reported_first_input && summary.events > 0 {
                    reported_first_input = true;
                    info!(
                        events = summary.events,
                        "Input is flowing; first checkpoint with it written."
                    );
                }
            }
            if stopping {
                producer.flush()?;
            }
            last_checkpoint = Instant::now();
        }
        publish_metrics(&summary, &mut published, &mut alert_counts, &owned);
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            consumer.report_lag("process");
            let patients: usize = owned.values().map(|p| p.state.len()).sum();
            info!(
                events = summary.events,
                alerts = summary.alerts,
                status_rows = summary.status_rows,
                rejected = summary.rejected,
                late = summary.late,
                partitions = owned.len(),
                patients,
                "Processor progress."
            );
        }
        if stopping {
            info!(?summary, "Processor stopped after a final checkpoint.");
            return Ok(summary);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn checkpoint(
    engine: &Engine,
    changelog: &Changelog,
    producer: &DurableProducer,
    consumer: &GroupConsumer,
    kafka: &KafkaConfig,
    codecs: &Codecs,
    owned: &mut BTreeMap<i32, Owned>,
    status_rows: &mut Vec<PatientStatus>,
    buffer: &mut Vec<u8>,
    summary: &mut ProcessSummary,
    final_checkpoint: bool,
) -> Result<(), ProcessorError> {
    let topics = &kafka.topics;
    let mut positions = Positions::default();
    let mut pending = Vec::with_capacity(owned.len());
    for (&partition, part) in owned.iter_mut() {
        status_rows.clear();
        engine.drain_status(&mut part.state, status_rows);
        for row in status_rows.iter() {
            buffer.clear();
            codecs.status.encode_into(row, buffer)?;
            producer.send(
                &topics.patient_status,
                row.patient_pseudonym.as_bytes(),
                buffer,
            )?;
        }
        summary.status_rows += status_rows.len() as u64;
        let mut inputs = Vec::new();
        if let Some(next) = part.next_events {
            inputs.push((topics.clinical_events.clone(), next));
            positions.advance(&topics.clinical_events, partition, next - 1);
        }
        if let Some(next) = part.next_acks {
            inputs.push((topics.alert_acks.clone(), next));
            positions.advance(&topics.alert_acks, partition, next - 1);
        }
        let (_, commit) = changelog.write(
            producer,
            partition,
            &mut part.state,
            &mut part.progress,
            inputs,
            &engine.rules,
        )?;
        pending.push((partition, commit));
    }
    // 1. Alerts, status rows, late events, dead letters and the changelog state become durable.
    producer.flush()?;
    // 2. Only then the commit markers that vouch for them (a marker delivered ahead of the
    //    outputs would let a crash lose those outputs for good).
    for (partition, commit) in pending {
        if let Some(part) = owned.get_mut(&partition) {
            changelog.commit(producer, &mut part.progress, commit)?;
        }
    }
    producer.flush()?;
    for (&partition, part) in owned.iter_mut() {
        part.changelog_end = producer
            .last_offset(&changelog.topic, partition)
            .map(|o| o + 1);
    }
    // 3. Only then may the input offsets move.
    consumer.commit(
        &positions,
        if final_checkpoint {
            CommitMode::Sync
        } else {
            CommitMode::Async
        },
    );
    summary.checkpoints += 1;
    Ok(())
}

/// Publishes what changed since the last call (once per batch, not per event).
fn publish_metrics(
    summary: &ProcessSummary,
    published: &mut ProcessSummary,
    alert_counts: &mut BTreeMap<(String, &'static str), u64>,
    owned: &BTreeMap<i32, Owned>,
) {
    let delta = |now: u64, then: u64| now.saturating_sub(then);
    metrics::counter!("vigil_process_events_total", "outcome" => "applied")
        .increment(delta(summary.events, published.events));
    metrics::counter!("vigil_process_events_total", "outcome" => "late")
        .increment(delta(summary.late, published.late));
    metrics::counter!("vigil_process_events_total", "outcome" => "rejected")
        .increment(delta(summary.rejected, published.rejected));
    metrics::counter!("vigil_process_acks_total").increment(delta(summary.acks, published.acks));
    metrics::counter!("vigil_patient_status_rows_total")
        .increment(delta(summary.status_rows, published.status_rows));
    metrics::counter!("vigil_process_checkpoints_total")
        .increment(delta(summary.checkpoints, published.checkpoints));
    for ((rule, status), n) in std::mem::take(alert_counts) {
        metrics::counter!("vigil_alerts_total", "rule" => rule, "status" => status).increment(n);
    }
    metrics::gauge!("vigil_process_patients")
        .set(owned.values().map(|p| p.state.len()).sum::<usize>() as f64);
    metrics::gauge!("vigil_process_partitions").set(owned.len() as f64);
    *published = summary.clone();
}

/// Restores partitions in parallel (the decode of a large state is CPU-bound).
fn restore_all(
    changelog: &Changelog,
    engine: &Engine,
    partitions: &[i32],
) -> Result<Vec<(i32, Owned)>, ProcessorError> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let mut out = Vec::with_capacity(partitions.len());
    for group in partitions.chunks(threads) {
        let results: Vec<Result<(i32, Owned), ProcessorError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .iter()
                .map(|&partition| {
                    scope.spawn(move || {
                        let restored = changelog.restore(partition, &engine.rules)?;
                        metrics::gauge!("vigil_process_restore_seconds", "partition" => partition.to_string()).set(restored.stats.elapsed.as_secs_f64());
                        let next = |topic: &str| {
                            restored
                                .inputs
                                .iter()
                                .find(|(t, _)| t == topic)
                                .map(|(_, o)| *o)
                        };
                        let owned = Owned {
                            next_events: next(&changelog.input_topics.0),
                            next_acks: next(&changelog.input_topics.1),
                            state: restored.state,
                            progress: restored.progress,
                            last_input: Instant::now(),
                            changelog_end: None,
                        };
                        Ok((partition, owned))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ProcessorError::Config("a restore thread panicked".into()))
                    })
                })
                .collect()
        });
        for result in results {
            out.push(result?);
        }
    }
    Ok(out)
}

/// Whether a partition's parked state is still the latest: nobody wrote to its changelog since
/// our last checkpoint (the partition came back to us in the same rebalance).
fn still_current(kafka: &KafkaConfig, changelog: &str, partition: i32, parked: &Owned) -> bool {
    let end = RangeReader::new(kafka, "vigil-process-probe", changelog, partition)
        .and_then(|reader| reader.watermarks())
        .map(|(_, high)| high)
        .ok();
    parked.changelog_end.is_some() && end == parked.changelog_end
}

fn partitions_of(list: &[vigil_runtime::kafka::TopicPartition], topic: &str) -> Vec<i32> {
    list.iter()
        .filter(|tp| tp.topic == topic)
        .map(|tp| tp.partition)
        .collect()
}

/// What a dead letter keeps of a rejected event: fields from an allow-list whose form is
/// fixed by the pipeline (ids it derived, the payload kind), never free text from a hospital.
fn describe(event: &ClinicalEvent) -> String {
    let id = |text: &str| {
        if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            text.to_string()
        } else {
            "<not a pipeline id>".to_string()
        }
    };
    format!(
        "{{\"event_id\":\"{}\",\"kind\":\"{}\",\"operation\":\"{:?}\"}}",
        id(&event.event_id),
        event.payload.kind(),
        event.operation,
    )
}

fn dead_letter(
    message: &BorrowedMessage<'_>,
    reason_code: &str,
    reason_detail: &str,
    now: i64,
) -> DeadLetter {
    let at = InputPosition {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
    };
    DeadLetter::new("process", at, reason_code, reason_detail, now)
}

fn send_dead_letter(
    producer: &DurableProducer,
    codecs: &Codecs,
    topic: &str,
    letter: &DeadLetter,
    buffer: &mut Vec<u8>,
) -> Result<(), ProcessorError> {
    metrics::counter!("vigil_dead_letters_total", "stage" => "process", "hospital" => letter.hospital_id.clone(), "reason" => letter.reason_code.clone())
        .increment(1);
    tracing::debug!(reason = %letter.reason_code, hospital = %letter.hospital_id, offset = letter.source_offset,
        "Input rejected to the dead-letter topic.");
    buffer.clear();
    codecs.dead_letter.encode_into(letter, buffer)?;
    producer.send(topic, letter.hospital_id.as_bytes(), buffer)?;
    Ok(())
}
