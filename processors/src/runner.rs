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
use rustc_hash::FxHashMap;
use tracing::{info, warn};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{
    AssignmentChange, ConsumerTuning, DurableProducer, GroupConsumer, Positions, RangeReader,
    TopicPartition,
};
use vigil_runtime::stats::StageStats;
use vigil_runtime::time::now_ms;
use vigil_runtime::Shutdown;

use vigil_schemas::{
    validate, Alert, AlertAck, AvroCodec, ClinicalEvent, DeadLetter, InputPosition, PatientStatus,
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
    /// Events applied before, seen again (an edge's replay).
    pub replayed: u64,
    /// Events a merge moved to the surviving patient, sent to the events topic.
    pub moved: u64,
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
    /// Inside a run of replayed events (logged once per run).
    replaying: bool,
    /// When each hospital's events last arrived here (since the partition was assigned).
    heard_from: FxHashMap<String, Instant>,
    assigned_at: Instant,
    /// Where our last checkpoint left the partition; `None` before the first.
    checkpointed: Option<Checkpointed>,
}

/// Where a checkpoint of ours left a partition: if the partition comes back after a rebalance
/// with its changelog ending there and the group's committed offsets still ours, nobody else
/// checkpointed it meanwhile and the parked state is still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpointed {
    changelog_end: i64,
    /// Next offset of events and of acks, as committed for the group.
    inputs: (Option<i64>, Option<i64>),
}

/// What the group and the changelog say of a partition now, to compare with [`Checkpointed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    changelog_end: Option<i64>,
    inputs: (Option<i64>, Option<i64>),
}

impl Checkpointed {
    /// Both must match: another owner's checkpoint moves the changelog's end before the
    /// group's offsets, so either alone could be read before it moved (a broker answering a
    /// stale watermark, an offset commit still in flight).
    fn still_current(&self, found: Found) -> bool {
        found.changelog_end == Some(self.changelog_end) && found.inputs == self.inputs
    }
}

struct Codecs {
    event: AvroCodec<ClinicalEvent>,
    ack: AvroCodec<AlertAck>,
    alert: AvroCodec<Alert>,
    status: AvroCodec<PatientStatus>,
    dead_letter: AvroCodec<DeadLetter>,
}

/// Runs the processor until shutdown (or the stop condition). The consumer lives outside the
/// [`Processor`]: a batch borrows it while the hooks change everything else.
pub fn run(
    config: &ProcessConfig,
    kafka: &KafkaConfig,
    shutdown: &Shutdown,
    stop: StopWhen,
) -> Result<ProcessSummary, ProcessorError> {
    let rules = config.validate()?;
    kafka.validate()?;
    let topics = &kafka.topics;
    let consumer = GroupConsumer::new(
        kafka,
        &config.group_id,
        "vigil-process",
        &[&topics.clinical_events, &topics.alert_acks],
        &ConsumerTuning::default(),
    )?;
    let mut processor = Processor::new(config, kafka, Engine::new(rules, config.engine.clone()))?;
    info!(group = %config.group_id, rules = processor.engine.rules.len(), "Processor started; waiting for partitions.");
    loop {
        let stopping = shutdown.is_requested()
            || (stop.reached(processor.last_input.elapsed()) && processor.finished(&consumer));
        let batch = if stopping {
            Vec::new()
        } else {
            consumer.poll_batch(config.batch_max_events, config.batch_max_wait)
        };
        for change in consumer.take_assignment_changes() {
            match change {
                AssignmentChange::Revoked(list) => processor.on_revoked(&list),
                AssignmentChange::Assigned(list) => processor.on_assigned(&consumer, &list)?,
            }
        }
        processor.on_batch(&batch)?;
        drop(batch);
        processor.on_idle();
        processor.send_alerts()?;
        if stopping || processor.last_checkpoint.elapsed() >= config.checkpoint_interval {
            processor.on_checkpoint_due(&consumer, stopping)?;
        }
        processor.report(&consumer);
        if stopping {
            info!(summary = ?processor.summary, "Processor stopped after a final checkpoint.");
            return Ok(processor.summary);
        }
    }
}

/// The processor's state between batches, and one hook per step of the loop in [`run`]
/// (Arroyo's operators have the same shape: assigned, batch, idle, checkpoint).
struct Processor<'a> {
    config: &'a ProcessConfig,
    kafka: &'a KafkaConfig,
    engine: Engine,
    producer: DurableProducer,
    changelog: Changelog,
    codecs: Codecs,
    /// Partitions this instance owns, and those revoked but kept in case they come back.
    owned: BTreeMap<i32, Owned>,
    parked: BTreeMap<i32, Owned>,
    summary: ProcessSummary,
    /// The summary at the last metrics publication, and alert tallies since then.
    published: ProcessSummary,
    alert_counts: BTreeMap<(String, &'static str), u64>,
    alerts: Vec<Alert>,
    status_rows: Vec<PatientStatus>,
    buffer: Vec<u8>,
    stats: StageStats,
    last_checkpoint: Instant,
    last_input: Instant,
    last_report: Instant,
    dirty_since_checkpoint: bool,
    reported_first_input: bool,
}

impl<'a> Processor<'a> {
    fn new(
        config: &'a ProcessConfig,
        kafka: &'a KafkaConfig,
        engine: Engine,
    ) -> Result<Self, ProcessorError> {
        Ok(Processor {
            config,
            kafka,
            engine,
            producer: DurableProducer::new(kafka, "vigil-process")?,
            changelog: Changelog::new(kafka, config.changelog_chunk_bytes, config.snapshot_ratio),
            codecs: Codecs {
                event: AvroCodec::new()?,
                ack: AvroCodec::new()?,
                alert: AvroCodec::new()?,
                status: AvroCodec::new()?,
                dead_letter: AvroCodec::new()?,
            },
            owned: BTreeMap::new(),
            parked: BTreeMap::new(),
            summary: ProcessSummary::default(),
            published: ProcessSummary::default(),
            alert_counts: BTreeMap::new(),
            alerts: Vec::new(),
            status_rows: Vec::new(),
            buffer: Vec::with_capacity(1024),
            stats: StageStats::new("process", kafka)?,
            last_checkpoint: Instant::now(),
            last_input: Instant::now(),
            last_report: Instant::now(),
            dirty_since_checkpoint: false,
            reported_first_input: false,
        })
    }

    /// Whether this instance has nothing left to do: everything it owns is checkpointed and
    /// read to the end, or the group rightly gave it nothing (more members than partitions).
    fn finished(&self, consumer: &GroupConsumer) -> bool {
        (self.owned.is_empty() && consumer.is_surplus_member())
            || (self.summary.checkpoints > 0
                && !self.dirty_since_checkpoint
                && consumer.caught_up().unwrap_or(false))
    }

    /// Partitions taken away: their state is parked, in case the next assignment gives them
    /// back unchanged.
    fn on_revoked(&mut self, list: &[TopicPartition]) {
        for partition in partitions_of(list, &self.kafka.topics.clinical_events) {
            if let Some(state) = self.owned.remove(&partition) {
                self.parked.insert(partition, state);
            }
        }
    }

    /// Partitions given: their state comes back (parked, or restored from the changelog)
    /// before any of their input is read.
    fn on_assigned(
        &mut self,
        consumer: &GroupConsumer,
        list: &[TopicPartition],
    ) -> Result<(), ProcessorError> {
        // Nothing of these partitions can be processed before their state is back: stop
        // fetching them meanwhile, so the broker serves the restore first.
        consumer.pause(list);
        let mut to_restore = Vec::new();
        let partitions = partitions_of(list, &self.kafka.topics.clinical_events);
        let committed = self.committed_inputs(consumer, &partitions);
        for partition in partitions {
            if self.owned.contains_key(&partition) {
                continue;
            }
            let kept = self.parked.remove(&partition).filter(|parked| {
                parked.checkpointed.is_some_and(|at| {
                    at.still_current(Found {
                        changelog_end: changelog_end(self.kafka, &self.changelog.topic, partition),
                        inputs: committed.get(&partition).copied().unwrap_or_default(),
                    })
                })
            });
            match kept {
                Some(state) => {
                    self.owned.insert(partition, state);
                }
                None => to_restore.push(partition),
            }
        }
        let started = Instant::now();
        let restored = restore_all(&self.changelog, &self.engine, &to_restore)?;
        if !restored.is_empty() {
            info!(
                partitions = restored.len(),
                patients = restored.iter().map(|(_, o)| o.state.len()).sum::<usize>(),
                seconds = started.elapsed().as_secs_f64(),
                "Restore finished."
            );
        }
        for (partition, restored) in restored {
            self.summary.restores += 1;
            self.owned.insert(partition, restored);
        }
        self.parked.retain(|p, _| !self.owned.contains_key(p));
        info!(partitions = ?self.owned.keys().collect::<Vec<_>>(),
            patients = self.owned.values().map(|p| p.state.len()).sum::<usize>(),
            "Processing partitions.");
        consumer.resume(list);
        self.last_input = Instant::now();
        Ok(())
    }

    /// The group's committed next offsets of events and acks per partition of `partitions`;
    /// empty when the group coordinator does not answer (nothing parked is then reused).
    fn committed_inputs(
        &self,
        consumer: &GroupConsumer,
        partitions: &[i32],
    ) -> BTreeMap<i32, (Option<i64>, Option<i64>)> {
        let topics = &self.kafka.topics;
        let wanted = [topics.clinical_events.as_str(), topics.alert_acks.as_str()];
        let committed = match consumer.committed_offsets(&wanted, partitions) {
            Ok(committed) => committed,
            Err(error) => {
                warn!(%error, "Cannot read the group's committed offsets; parked partitions are restored from the changelog.");
                return BTreeMap::new();
            }
        };
        partitions
            .iter()
            .map(|&partition| {
                let of = |topic: &str| committed.get(&(topic.to_string(), partition)).copied();
                (
                    partition,
                    (of(&topics.clinical_events), of(&topics.alert_acks)),
                )
            })
            .collect()
    }

    fn on_batch(&mut self, batch: &[BorrowedMessage<'_>]) -> Result<(), ProcessorError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.last_input = Instant::now();
        self.dirty_since_checkpoint = true;
        let now = now_ms();
        for message in batch {
            self.on_message(message, now)?;
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        message: &BorrowedMessage<'_>,
        now: i64,
    ) -> Result<(), ProcessorError> {
        let is_event = message.topic() == self.kafka.topics.clinical_events;
        let Some(part) = self.owned.get_mut(&message.partition()) else {
            return Ok(()); // revoked while in hand: the new owner reads it
        };
        let next = if is_event {
            &mut part.next_events
        } else {
            &mut part.next_acks
        };
        if next.is_some_and(|n| message.offset() < n) {
            return Ok(()); // already in the restored checkpoint
        }
        *next = Some(message.offset() + 1);
        if is_event {
            self.on_event(message, now)
        } else {
            self.on_ack(message, now)
        }
    }

    fn on_event(&mut self, message: &BorrowedMessage<'_>, now: i64) -> Result<(), ProcessorError> {
        let payload = message.payload().unwrap_or_default();
        let event = match self.codecs.event.decode(payload) {
            Ok(event) => event,
            Err(error) => return self.reject_undecodable(message, &error, now),
        };
        let Some(part) = self.owned.get_mut(&message.partition()) else {
            return Ok(());
        };
        // Counted under the event's hospital only when that is an id (a rejected event may hold
        // any text there).
        let hospital = if validate::is_hospital_id(&event.hospital_id) {
            event.hospital_id.as_str()
        } else {
            ""
        };
        let disposition = self
            .engine
            .apply_event(&mut part.state, &event, &mut self.alerts);
        let replay = disposition == Disposition::Replayed;
        if replay && !part.replaying {
            let source = event.source.as_ref();
            info!(
                partition = message.partition(),
                hospital,
                source_topic = source.map(|s| s.topic.as_str()),
                source_partition = source.map(|s| s.partition),
                source_offset = source.map(|s| s.offset),
                "Events this partition has applied are arriving again (an edge's replay after a crash); they are recognised and skipped."
            );
        }
        part.replaying = replay;
        if !hospital.is_empty() {
            match part.heard_from.get_mut(hospital) {
                Some(at) => *at = Instant::now(),
                None => {
                    part.heard_from.insert(hospital.to_string(), Instant::now());
                }
            }
        }
        let counts = self.stats.hospital(hospital);
        counts.records_in += 1;
        match disposition {
            Disposition::Applied => {
                self.summary.events += 1;
                counts.records_out += 1;
                counts.event_age(now, event.event_time_ms);
            }
            Disposition::Replayed => self.summary.replayed += 1,
            Disposition::Late => {
                self.summary.late += 1;
                counts.late += 1;
                let key = message.key().unwrap_or_default();
                self.producer
                    .send(&self.kafka.topics.late_events, key, payload)?;
            }
            Disposition::Rejected(invalid) => {
                counts.dead_letters += 1;
                let letter = dead_letter(message, invalid.reason.as_str(), &invalid.detail, now)
                    .with_hospital(&event.hospital_id)
                    .with_event_time(Some(event.event_time_ms))
                    .with_copy(&describe(&event));
                self.send_dead_letter(&letter)?;
            }
        }
        Ok(())
    }

    fn on_ack(&mut self, message: &BorrowedMessage<'_>, now: i64) -> Result<(), ProcessorError> {
        let ack = match self
            .codecs
            .ack
            .decode(message.payload().unwrap_or_default())
        {
            Ok(ack) => ack,
            Err(error) => return self.reject_undecodable(message, &error, now),
        };
        self.summary.acks += 1;
        let Some(part) = self.owned.get_mut(&message.partition()) else {
            return Ok(());
        };
        if !self
            .engine
            .apply_ack(&mut part.state, &ack, &mut self.alerts)
        {
            tracing::debug!(episode = %ack.episode_id, "Acknowledgement matches no open episode.");
        }
        Ok(())
    }

    fn reject_undecodable(
        &mut self,
        message: &BorrowedMessage<'_>,
        error: &vigil_schemas::SchemaError,
        now: i64,
    ) -> Result<(), ProcessorError> {
        let counts = self.stats.hospital("");
        counts.records_in += 1;
        counts.dead_letters += 1;
        let letter = dead_letter(message, "undecodable", &error.safe_detail(), now);
        self.send_dead_letter(&letter)
    }

    fn send_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), ProcessorError> {
        self.summary.rejected += 1;
        metrics::counter!("vigil_dead_letters_total", "stage" => "process", "hospital" => letter.hospital_id.clone(), "reason" => letter.reason_code.clone())
            .increment(1);
        tracing::debug!(reason = %letter.reason_code, hospital = %letter.hospital_id, offset = letter.source_offset,
            "Input rejected to the dead-letter topic.");
        self.buffer.clear();
        self.codecs
            .dead_letter
            .encode_into(letter, &mut self.buffer)?;
        self.producer.send(
            &self.kafka.topics.dead_letters,
            letter.hospital_id.as_bytes(),
            &self.buffer,
        )?;
        Ok(())
    }

    /// Event time moves each hospital's watermark as events apply (in the engine). A hospital
    /// not heard from for longer than the timeout lets its watermark follow the wall clock
    /// instead, so its patients' timers still fire while it is quiet.
    fn on_idle(&mut self) {
        let idle = self.config.idle_partition_timeout;
        if idle.is_zero() {
            return;
        }
        let lag_ms = self.config.engine.max_out_of_orderness.as_millis() as i64;
        let to_ms = now_ms() - lag_ms;
        for part in self.owned.values_mut() {
            let quiet: Vec<String> = part
                .state
                .clocks()
                .filter(|(hospital, clock)| {
                    let heard = part.heard_from.get(*hospital).unwrap_or(&part.assigned_at);
                    heard.elapsed() >= idle && clock.watermark_ms < to_ms
                })
                .map(|(hospital, _)| hospital.to_string())
                .collect();
            for hospital in quiet {
                self.engine
                    .advance_watermark(&mut part.state, &hospital, to_ms, &mut self.alerts);
                self.dirty_since_checkpoint = true;
            }
        }
    }

    /// Alerts leave at once; only their durability waits for the checkpoint.
    fn send_alerts(&mut self) -> Result<(), ProcessorError> {
        for alert in self.alerts.drain(..) {
            self.buffer.clear();
            self.codecs.alert.encode_into(&alert, &mut self.buffer)?;
            self.producer.send(
                &self.kafka.topics.alerts,
                alert.patient_pseudonym.as_bytes(),
                &self.buffer,
            )?;
            self.summary.alerts += 1;
            *self
                .alert_counts
                .entry((alert.rule_id.clone(), alert.status.as_str()))
                .or_default() += 1;
        }
        Ok(())
    }

    fn on_checkpoint_due(
        &mut self,
        consumer: &GroupConsumer,
        stopping: bool,
    ) -> Result<(), ProcessorError> {
        // Flushed with the checkpoint below (or right here when stopping).
        self.stats.publish_due(&self.producer, stopping)?;
        if self.dirty_since_checkpoint || self.summary.checkpoints == 0 {
            let started = Instant::now();
            self.checkpoint(consumer, stopping)?;
            metrics::histogram!("vigil_process_checkpoint_seconds")
                .record(started.elapsed().as_secs_f64());
            self.dirty_since_checkpoint = false;
            if !self.reported_first_input && self.summary.events > 0 {
                self.reported_first_input = true;
                info!(
                    events = self.summary.events,
                    "Input is flowing; first checkpoint with it written."
                );
            }
        }
        if stopping {
            self.producer.flush()?;
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Status rows and changelog deltas of every owned partition, made durable in the order
    /// that keeps a crash harmless, and only then the input offsets committed.
    fn checkpoint(
        &mut self,
        consumer: &GroupConsumer,
        final_checkpoint: bool,
    ) -> Result<(), ProcessorError> {
        let topics = &self.kafka.topics;
        let mut positions = Positions::default();
        let mut pending = Vec::with_capacity(self.owned.len());
        for (&partition, part) in self.owned.iter_mut() {
            self.status_rows.clear();
            self.engine
                .drain_status(&mut part.state, &mut self.status_rows);
            for row in &self.status_rows {
                self.buffer.clear();
                self.codecs.status.encode_into(row, &mut self.buffer)?;
                self.producer.send(
                    &topics.patient_status,
                    row.patient_pseudonym.as_bytes(),
                    &self.buffer,
                )?;
            }
            self.summary.status_rows += self.status_rows.len() as u64;
            // A merged patient's facts, on their way to the surviving patient's partition.
            for event in part.state.take_forwarded() {
                self.buffer.clear();
                self.codecs.event.encode_into(&event, &mut self.buffer)?;
                self.producer.send(
                    &topics.clinical_events,
                    event.patient_pseudonym.as_bytes(),
                    &self.buffer,
                )?;
                self.summary.moved += 1;
            }
            let mut inputs = Vec::new();
            if let Some(next) = part.next_events {
                inputs.push((topics.clinical_events.clone(), next));
                positions.advance(&topics.clinical_events, partition, next - 1);
            }
            if let Some(next) = part.next_acks {
                inputs.push((topics.alert_acks.clone(), next));
                positions.advance(&topics.alert_acks, partition, next - 1);
            }
            let (_, commit) = self.changelog.write(
                &self.producer,
                partition,
                &mut part.state,
                &mut part.progress,
                inputs,
                &self.engine.rules,
            )?;
            pending.push((partition, commit));
        }
        // 1. Alerts, status rows, late events, dead letters and the changelog state become
        //    durable.
        self.producer.flush()?;
        // 2. Only then the commit markers that vouch for them (a marker delivered ahead of the
        //    outputs would let a crash lose those outputs for good).
        for (partition, commit) in pending {
            if let Some(part) = self.owned.get_mut(&partition) {
                self.changelog
                    .commit(&self.producer, &mut part.progress, commit)?;
            }
        }
        self.producer.flush()?;
        for (&partition, part) in self.owned.iter_mut() {
            part.checkpointed = self
                .producer
                .last_offset(&self.changelog.topic, partition)
                .map(|last| Checkpointed {
                    changelog_end: last + 1,
                    inputs: (part.next_events, part.next_acks),
                });
        }
        // 3. Only then may the input offsets move.
        let mode = if final_checkpoint {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        consumer.commit(&positions, mode);
        self.summary.checkpoints += 1;
        Ok(())
    }

    /// Metrics every batch; a progress line every ten seconds.
    fn report(&mut self, consumer: &GroupConsumer) {
        self.publish_metrics();
        if self.last_report.elapsed() < Duration::from_secs(10) {
            return;
        }
        self.last_report = Instant::now();
        consumer.report_lag("process");
        let s = &self.summary;
        info!(
            events = s.events,
            alerts = s.alerts,
            status_rows = s.status_rows,
            rejected = s.rejected,
            late = s.late,
            partitions = self.owned.len(),
            patients = self.owned.values().map(|p| p.state.len()).sum::<usize>(),
            "Processor progress."
        );
    }

    /// Publishes what changed since the last call (once per batch, not per event).
    fn publish_metrics(&mut self) {
        let (summary, published) = (&self.summary, &self.published);
        let delta = |now: u64, then: u64| now.saturating_sub(then);
        metrics::counter!("vigil_process_events_total", "outcome" => "applied")
            .increment(delta(summary.events, published.events));
        metrics::counter!("vigil_process_events_total", "outcome" => "late")
            .increment(delta(summary.late, published.late));
        metrics::counter!("vigil_process_events_total", "outcome" => "rejected")
            .increment(delta(summary.rejected, published.rejected));
        metrics::counter!("vigil_process_acks_total")
            .increment(delta(summary.acks, published.acks));
        metrics::counter!("vigil_patient_status_rows_total")
            .increment(delta(summary.status_rows, published.status_rows));
        metrics::counter!("vigil_process_checkpoints_total")
            .increment(delta(summary.checkpoints, published.checkpoints));
        for ((rule, status), n) in std::mem::take(&mut self.alert_counts) {
            metrics::counter!("vigil_alerts_total", "rule" => rule, "status" => status)
                .increment(n);
        }
        metrics::gauge!("vigil_process_patients")
            .set(self.owned.values().map(|p| p.state.len()).sum::<usize>() as f64);
        metrics::gauge!("vigil_process_partitions").set(self.owned.len() as f64);
        self.published = self.summary.clone();
    }
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
                        let restored = changelog.restore(partition, &engine.rules, engine.config.definition)?;
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
                            replaying: false,
                            heard_from: FxHashMap::default(),
                            assigned_at: Instant::now(),
                            checkpointed: None,
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

/// The changelog partition's end offset now; `None` when the broker does not say.
fn changelog_end(kafka: &KafkaConfig, changelog: &str, partition: i32) -> Option<i64> {
    RangeReader::new(kafka, "vigil-process-probe", changelog, partition)
        .and_then(|reader| reader.watermarks())
        .map(|(_, high)| high)
        .ok()
}

fn partitions_of(list: &[TopicPartition], topic: &str) -> Vec<i32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_state_is_reused_only_when_neither_the_changelog_nor_the_group_moved() {
        let ours = Checkpointed {
            changelog_end: 120,
            inputs: (Some(5_000), Some(7)),
        };
        let unchanged = Found {
            changelog_end: Some(120),
            inputs: (Some(5_000), Some(7)),
        };
        assert!(ours.still_current(unchanged));
        // Another owner checkpointed: its records moved the changelog's end...
        let written = Found {
            changelog_end: Some(131),
            ..unchanged
        };
        assert!(!ours.still_current(written));
        // ...and its offsets moved the group's, even if the broker answers a stale end.
        let stale_end = Found {
            inputs: (Some(5_400), Some(7)),
            ..unchanged
        };
        assert!(!ours.still_current(stale_end));
        let acks_moved = Found {
            inputs: (Some(5_000), Some(9)),
            ..unchanged
        };
        assert!(!ours.still_current(acks_moved));
        // Nothing known is nothing proven.
        let unknown = Found {
            changelog_end: None,
            inputs: (None, None),
        };
        assert!(!ours.still_current(unknown));
    }
}
