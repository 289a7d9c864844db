//! `vigil notify`: alerts topic → each hospital's webhook.
//!
//! Every hospital has its own delivery queue, so one endpoint that is down delays only its own
//! alerts; a partition's offsets are committed up to its oldest alert still undelivered. Each
//! outcome is written to the compacted deliveries topic (and flushed) before the offset that
//! carried the alert is committed; on start and after every rebalance the notifier reads that
//! topic back, so an alert an endpoint acknowledged is not sent to it again, even after a crash
//! or when another instance takes the partition over. The only window left — the endpoint
//! answered 2xx but the process died before the outcome was written — is closed on the hospital's
//! side by the Idempotency-Key header (the alert id).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use rdkafka::message::{BorrowedMessage, Message};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tracing::{info, warn};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{
    AssignmentChange, ConsumerTuning, DurableProducer, GroupConsumer, Positions, RangeReader,
    TopicPartition,
};
use vigil_runtime::time::now_ms;
use vigil_runtime::{Shutdown, StopWhen};

use vigil_schemas::{Alert, AlertDelivery, AvroCodec, DeadLetter, DeliveryOutcome, InputPosition};

use super::config::NotifyConfig;
use super::delivery::{self, Deliverer, Notice};
use super::endpoints::Endpoints;
use crate::error::SinkError;

/// What a run of the notifier did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotifySummary {
    pub alerts_read: u64,
    pub delivered: u64,
    pub undeliverable: u64,
    pub stale: u64,
    /// Acknowledged earlier (by this run or a previous one): not sent again.
    pub already_delivered: u64,
    /// Changes clinicians need not be told about (acknowledged, snoozed, resolved).
    pub not_notifying: u64,
    pub undecodable: u64,
}

/// One alert handed to the queue of one of the hospitals it goes to.
struct Job {
    partition: i32,
    epoch: u64,
    offset: i64,
    /// When the alert reached Kafka, for the latency metric.
    produced_ms: Option<i64>,
    alert: Alert,
    /// The hospital this delivery is for.
    recipient: String,
}

/// A finished job: how it ended is recorded, then the offset may be committed.
struct Done {
    partition: i32,
    epoch: u64,
    offset: i64,
    ending: Ending,
}

/// Offsets read but not finished, per partition: commits stop at the oldest of them.
#[derive(Default)]
struct Tracker {
    partitions: HashMap<i32, PartitionTrack>,
    next_epoch: u64,
}

struct PartitionTrack {
    epoch: u64,
    /// Offset → deliveries of its alert still unfinished (one per hospital it goes to).
    pending: BTreeMap<i64, usize>,
    /// One past the highest offset read.
    read_to: Option<i64>,
}

impl Tracker {
    fn assign(&mut self, partition: i32) {
        self.next_epoch += 1;
        self.partitions.insert(
            partition,
            PartitionTrack {
                epoch: self.next_epoch,
                pending: BTreeMap::new(),
                read_to: None,
            },
        );
    }

    fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Notes a read offset with the deliveries it still awaits; `None` if the partition is not
    /// (or no longer) ours.
    fn read(&mut self, partition: i32, offset: i64, deliveries: usize) -> Option<u64> {
        let track = self.partitions.get_mut(&partition)?;
        track.read_to = Some(track.read_to.unwrap_or(0).max(offset + 1));
        if deliveries > 0 {
            *track.pending.entry(offset).or_default() += deliveries;
        }
        Some(track.epoch)
    }

    /// One delivery of the alert at `offset` finished.
    fn finish(&mut self, partition: i32, epoch: u64, offset: i64) {
        let Some(track) = self.partitions.get_mut(&partition) else {
            return;
        };
        if track.epoch != epoch {
            return;
        }
        if let Some(left) = track.pending.get_mut(&offset) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                track.pending.remove(&offset);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|t| t.pending.values().sum::<usize>())
            .sum()
    }

    /// The next offsets that may be committed: below the oldest pending alert.
    fn positions(&self, topic: &str) -> Positions {
        let mut positions = Positions::default();
        for (partition, track) in &self.partitions {
            let next = match (track.pending.keys().next(), track.read_to) {
                (Some(oldest), _) => *oldest,
                (None, Some(read_to)) => read_to,
                (None, None) => continue,
            };
            if next > 0 {
                positions.advance(topic, *partition, next - 1);
            }
        }
        positions
    }
}

/// Which deliveries (alert, hospital) have a final outcome (sent, refused, stale), read back
/// from the deliveries topic. Only alerts young enough to be sent matter, so older entries are
/// dropped.
struct Memory {
    topic: String,
    /// Next offset to read, per partition of the deliveries topic.
    read_from: Vec<i64>,
    /// (alert id, hospital) → alert event time.
    finished: HashMap<(String, String), i64>,
}

impl Memory {
    fn new(kafka: &KafkaConfig) -> Memory {
        Memory {
            topic: kafka.topics.alert_deliveries.clone(),
            read_from: Vec::new(),
            finished: HashMap::new(),
        }
    }

    /// Reads what was recorded since the last call.
    fn catch_up(
        &mut self,
        kafka: &KafkaConfig,
        consumer: &GroupConsumer,
        codec: &AvroCodec<AlertDelivery>,
    ) -> Result<u64, SinkError> {
        let partitions = vigil_runtime::kafka::partition_count(consumer.consumer(), &self.topic)?
            .max(0) as usize;
        self.read_from.resize(partitions, 0);
        let mut records = 0;
        for partition in 0..partitions {
            let reader =
                RangeReader::new(kafka, "vigil-notify-memory", &self.topic, partition as i32)?;
            let (low, high) = reader.watermarks()?;
            let from = self.read_from[partition].max(low);
            let finished = &mut self.finished;
            records +=
                reader.read::<SinkError>(from, high, Duration::from_secs(60), |_, payload| {
                    if let Some(bytes) = payload {
                        match codec.decode(bytes) {
                            Ok(delivery) => {
                                let time = delivery.alert_time_ms;
                                finished.insert((delivery.alert_id, delivery.hospital_id), time);
                            }
                            Err(error) => warn!(%error, "Skipping an unreadable delivery record."),
                        }
                    }
                    Ok(())
                })?;
            self.read_from[partition] = high;
        }
        Ok(records)
    }

    fn has_finished(&self, alert_id: &str, hospital: &str) -> bool {
        // Looked up per alert read: the owned key is cheap beside the alert's decoding.
        self.finished
            .contains_key(&(alert_id.to_string(), hospital.to_string()))
    }

    fn forget_older_than(&mut self, oldest_ms: i64) {
        self.finished.retain(|_, time| *time >= oldest_ms);
    }
}

pub fn run(
    config: &NotifyConfig,
    kafka: &KafkaConfig,
    handle: &Handle,
    shutdown: &Shutdown,
    stop: StopWhen,
) -> Result<NotifySummary, SinkError> {
    config.validate()?;
    kafka.validate()?;
    let consumer = GroupConsumer::new(
        kafka,
        &config.group_id,
        "vigil-notify",
        &[&kafka.topics.alerts],
        &ConsumerTuning::default(),
    )?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut notifier = Notifier::new(config, kafka, handle, done_tx)?;
    let remembered = notifier
        .memory
        .catch_up(kafka, &consumer, &notifier.codecs.delivery)?;
    info!(
        endpoints = notifier.endpoints.len(),
        remembered, "Notifier started."
    );
    let result = loop {
        let idle = notifier.tracker.in_flight() == 0 && stop.reached(notifier.last_input.elapsed());
        let stopping = shutdown.is_requested() || (idle && consumer.caught_up().unwrap_or(false));
        notifier.apply_backpressure(&consumer);
        if !stopping {
            let batch = consumer.poll_batch(1000, Duration::from_millis(20));
            // Rebalance callbacks ran inside the poll; ownership first, then the messages.
            if let Err(e) = notifier.on_assignment(&consumer) {
                break Err(e);
            }
            if let Err(e) = notifier.on_batch(&batch) {
                break Err(e);
            }
        }
        if let Err(e) = notifier.on_done(&mut done_rx) {
            break Err(e);
        }
        if let Err(e) = notifier.commit_due(&consumer, stopping) {
            break Err(e);
        }
        notifier.report(&consumer);
        if stopping {
            break Ok(());
        }
    };
    // Workers stop retrying now; their unfinished alerts stay uncommitted.
    notifier.workers_stop.request();
    result?;
    info!(summary = ?notifier.summary, "Notifier stopped; every outcome was recorded and committed.");
    Ok(notifier.summary)
}

/// The notifier between batches: its memory of finished alerts, the per-hospital queues, the
/// offsets in flight; one method per step of the loop in [`run`].
struct Notifier<'a> {
    config: &'a NotifyConfig,
    kafka: &'a KafkaConfig,
    handle: &'a Handle,
    endpoints: std::sync::Arc<Endpoints>,
    deliverer: Deliverer,
    codecs: Codecs,
    producer: DurableProducer,
    memory: Memory,
    queues: HashMap<String, mpsc::UnboundedSender<Job>>,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Raised when the notifier stops: workers stop retrying.
    workers_stop: Shutdown,
    tracker: Tracker,
    summary: NotifySummary,
    paused: bool,
    uncommitted: bool,
    last_commit: Instant,
    last_input: Instant,
    last_report: Instant,
}

struct Codecs {
    alert: AvroCodec<Alert>,
    delivery: AvroCodec<AlertDelivery>,
    dead_letter: AvroCodec<DeadLetter>,
}

impl<'a> Notifier<'a> {
    fn new(
        config: &'a NotifyConfig,
        kafka: &'a KafkaConfig,
        handle: &'a Handle,
        done_tx: mpsc::UnboundedSender<Done>,
    ) -> Result<Self, SinkError> {
        Ok(Notifier {
            config,
            kafka,
            handle,
            endpoints: std::sync::Arc::new(Endpoints::load(config)?),
            deliverer: Deliverer::new(config)?,
            codecs: Codecs {
                alert: AvroCodec::new()?,
                delivery: AvroCodec::new()?,
                dead_letter: AvroCodec::new()?,
            },
            producer: DurableProducer::new(kafka, "vigil-notify")?,
            memory: Memory::new(kafka),
            queues: HashMap::new(),
            done_tx,
            workers_stop: Shutdown::new(),
            tracker: Tracker::default(),
            summary: NotifySummary::default(),
            paused: false,
            uncommitted: false,
            last_commit: Instant::now(),
            last_input: Instant::now(),
            last_report: Instant::now(),
        })
    }

    /// A hospital that is down fills its queue: stop reading more beyond the cap.
    fn apply_backpressure(&mut self, consumer: &GroupConsumer) {
        let in_flight = self.tracker.in_flight();
        if !self.paused && in_flight >= self.config.max_in_flight {
            consumer.pause(&consumer.assigned());
            self.paused = true;
            warn!(
                in_flight,
                "Too many alerts awaiting delivery; pausing the input."
            );
        } else if self.paused && in_flight < self.config.max_in_flight / 2 {
            consumer.resume(&consumer.assigned());
            self.paused = false;
        }
    }

    fn on_assignment(&mut self, consumer: &GroupConsumer) -> Result<(), SinkError> {
        apply_assignment(
            consumer,
            &mut self.tracker,
            &mut self.memory,
            self.kafka,
            &self.codecs.delivery,
        )
    }

    fn on_batch(&mut self, batch: &[BorrowedMessage<'_>]) -> Result<(), SinkError> {
        if !batch.is_empty() {
            self.last_input = Instant::now();
        }
        for message in batch {
            self.summary.alerts_read += 1;
            let routed = route(
                message,
                self.config,
                &self.codecs.alert,
                &self.memory,
                &mut self.tracker,
                &mut self.summary,
            );
            let Routed::Taken { endings, jobs } = routed else {
                continue;
            };
            for ending in &endings {
                self.record(ending, message_location(message))?;
            }
            self.uncommitted = true;
            for job in jobs {
                self.enqueue(job);
            }
        }
        Ok(())
    }

    /// Hands a job to its hospital's queue (started on first use), or finishes it as
    /// undeliverable when the hospital has no endpoint.
    fn enqueue(&mut self, job: Job) {
        let hospital = job.recipient.clone();
        let Some(endpoint) = self.endpoints.get(&hospital).cloned() else {
            let notice = Notice {
                alert: &job.alert,
                recipient: &hospital,
            };
            let delivery = delivery::outcome_record(
                notice,
                DeliveryOutcome::Undeliverable,
                0,
                0,
                format!("no endpoint is configured for hospital {hospital}"),
                "",
                now_ms(),
            );
            // The receiver lives as long as this notifier: a send cannot fail.
            let _ = self.done_tx.send(Done {
                partition: job.partition,
                epoch: job.epoch,
                offset: job.offset,
                ending: Ending::Undeliverable(
                    Box::new(job.alert),
                    delivery,
                    Undelivered::NoEndpoint,
                ),
            });
            return;
        };
        let queue = self.queues.entry(hospital).or_insert_with(|| {
            spawn_worker(
                self.handle,
                self.deliverer.clone(),
                endpoint,
                self.done_tx.clone(),
                self.workers_stop.clone(),
            )
        });
        // The worker lives as long as the queue's sender; a send cannot fail.
        let _ = queue.send(job);
    }

    /// Outcomes of finished deliveries: recorded, then their offsets may be committed.
    fn on_done(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) -> Result<(), SinkError> {
        while let Ok(done) = done_rx.try_recv() {
            let location = (
                self.kafka.topics.alerts.clone(),
                done.partition,
                done.offset,
            );
            self.record(&done.ending, location)?;
            self.tracker.finish(done.partition, done.epoch, done.offset);
            self.uncommitted = true;
        }
        metrics::gauge!("vigil_notify_in_flight").set(self.tracker.in_flight() as f64);
        Ok(())
    }

    /// Records how an alert ended, counts it, and remembers it as finished.
    fn record(&mut self, ending: &Ending, location: (String, i32, i64)) -> Result<(), SinkError> {
        record_outcome(
            &self.producer,
            &self.kafka.topics,
            &self.codecs,
            ending,
            location,
        )?;
        if let Some(delivery) = ending.delivery() {
            match delivery.outcome {
                DeliveryOutcome::Delivered => self.summary.delivered += 1,
                DeliveryOutcome::Undeliverable => self.summary.undeliverable += 1,
                DeliveryOutcome::Stale => self.summary.stale += 1,
            }
            let key = (delivery.alert_id.clone(), delivery.hospital_id.clone());
            self.memory.finished.insert(key, delivery.alert_time_ms);
        }
        Ok(())
    }

    /// Outcomes durable first: a commit must never get ahead of what was recorded.
    fn commit_due(&mut self, consumer: &GroupConsumer, stopping: bool) -> Result<(), SinkError> {
        if !self.uncommitted
            || !(stopping || self.last_commit.elapsed() >= Duration::from_millis(500))
        {
            return Ok(());
        }
        self.producer.flush()?;
        let positions = self.tracker.positions(&self.kafka.topics.alerts);
        consumer.commit(&positions, CommitMode::Sync);
        self.uncommitted = false;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn report(&mut self, consumer: &GroupConsumer) {
        if self.last_report.elapsed() < Duration::from_secs(10) {
            return;
        }
        self.last_report = Instant::now();
        consumer.report_lag("notify");
        let max_age = i64::try_from(self.config.max_alert_age.as_millis()).unwrap_or(i64::MAX);
        let oldest = now_ms() - max_age;
        self.memory
            .forget_older_than(oldest.saturating_sub(3_600_000));
        info!(summary = ?self.summary, in_flight = self.tracker.in_flight(), "Notifier progress.");
    }
}

/// How an alert record's handling ended, and so what is recorded for it.
enum Ending {
    /// Delivered, or not sent because it was stale on arrival: its outcome.
    Outcome(AlertDelivery),
    /// Not delivered: its outcome, and a dead letter with the notification body so an operator
    /// can deliver it by hand.
    Undeliverable(Box<Alert>, AlertDelivery, Undelivered),
    /// Not an alert (undecodable, or a record without a value): a dead letter only.
    NotAnAlert { detail: String },
}

/// Why an alert was not delivered: the dead letter's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undelivered {
    NoEndpoint,
    /// The endpoint refused it, or kept failing until `give_up_after`.
    Refused,
}

impl Undelivered {
    fn as_str(self) -> &'static str {
        match self {
            Undelivered::NoEndpoint => "no_endpoint",
            Undelivered::Refused => "undeliverable_alert",
        }
    }
}

impl Ending {
    /// What a worker's delivery attempt came to.
    fn of_delivery(alert: Alert, delivery: AlertDelivery) -> Ending {
        if delivery.outcome == DeliveryOutcome::Undeliverable {
            Ending::Undeliverable(Box::new(alert), delivery, Undelivered::Refused)
        } else {
            Ending::Outcome(delivery)
        }
    }

    fn delivery(&self) -> Option<&AlertDelivery> {
        match self {
            Ending::Outcome(d) | Ending::Undeliverable(_, d, _) => Some(d),
            Ending::NotAnAlert { .. } => None,
        }
    }
}

enum Routed {
    /// The record is ours: what is decided on the spot (recorded first), and the deliveries
    /// queued (none when every hospital it goes to has its outcome).
    Taken {
        endings: Vec<Ending>,
        jobs: Vec<Job>,
    },
    /// The partition was revoked during the poll: its new owner handles it.
    NotOurs,
}

fn message_location(message: &BorrowedMessage<'_>) -> (String, i32, i64) {
    (
        message.topic().to_string(),
        message.partition(),
        message.offset(),
    )
}

fn route(
    message: &BorrowedMessage<'_>,
    config: &NotifyConfig,
    codec: &AvroCodec<Alert>,
    memory: &Memory,
    tracker: &mut Tracker,
    summary: &mut NotifySummary,
) -> Routed {
    let (partition, offset) = (message.partition(), message.offset());
    let alert = match message.payload().map(|bytes| codec.decode(bytes)) {
        Some(Ok(alert)) => alert,
        // The processor never writes a null alert: a record without a value is as unusable as
        // one that does not decode, and is dead-lettered alike (as the writer does).
        other => {
            let detail = match other {
                Some(Err(error)) => error.safe_detail(),
                _ => "the record has no value".to_string(),
            };
            summary.undecodable += 1;
            warn!(detail = %detail, partition, offset, "An alert record cannot be decoded; sending it to dead letters.");
            if tracker.read(partition, offset, 0).is_none() {
                return Routed::NotOurs;
            }
            let endings = vec![Ending::NotAnAlert { detail }];
            return Routed::Taken {
                endings,
                jobs: Vec::new(),
            };
        }
    };
    if !alert.status.notifies() {
        summary.not_notifying += 1;
        return match tracker.read(partition, offset, 0) {
            Some(_) => Routed::Taken {
                endings: Vec::new(),
                jobs: Vec::new(),
            },
            None => Routed::NotOurs,
        };
    }
    let max_age = i64::try_from(config.max_alert_age.as_millis()).unwrap_or(i64::MAX);
    let stale = alert.event_time_ms < now_ms().saturating_sub(max_age);
    let mut endings = Vec::new();
    let mut to_send = Vec::new();
    for recipient in delivery::recipients(&alert) {
        if memory.has_finished(&alert.alert_id, recipient) {
            summary.already_delivered += 1;
        } else if stale {
            let detail = format!(
                "older than notify.max_alert_age ({:?}) on arrival; not sent",
                config.max_alert_age
            );
            let notice = Notice {
                alert: &alert,
                recipient,
            };
            let delivery = delivery::outcome_record(
                notice,
                DeliveryOutcome::Stale,
                0,
                0,
                detail,
                "",
                now_ms(),
            );
            endings.push(Ending::Outcome(delivery));
        } else {
            to_send.push(recipient.to_string());
        }
    }
    let Some(epoch) = tracker.read(partition, offset, to_send.len()) else {
        return Routed::NotOurs;
    };
    let produced_ms = message.timestamp().to_millis();
    let jobs = to_send
        .into_iter()
        .map(|recipient| Job {
            partition,
            epoch,
            offset,
            produced_ms,
            alert: alert.clone(),
            recipient,
        })
        .collect();
    Routed::Taken { endings, jobs }
}

/// Writes the outcome (and, for what could not be delivered, a dead letter).
fn record_outcome(
    producer: &DurableProducer,
    topics: &vigil_runtime::config::Topics,
    codecs: &Codecs,
    ending: &Ending,
    (topic, partition, offset): (String, i32, i64),
) -> Result<(), SinkError> {
    let at = InputPosition {
        topic: &topic,
        partition,
        offset,
    };
    let letter = match ending {
        Ending::Outcome(delivery) | Ending::Undeliverable(_, delivery, _) => {
            metrics::counter!("vigil_notify_outcomes_total", "outcome" => delivery.outcome.as_str())
                .increment(1);
            let event_hospital = match ending {
                Ending::Undeliverable(alert, ..) => alert.hospital_id.as_str(),
                _ => delivery.hospital_id.as_str(),
            };
            let key =
                delivery::delivery_key(&delivery.alert_id, &delivery.hospital_id, event_hospital);
            producer.send(
                &topics.alert_deliveries,
                key.as_bytes(),
                &codecs.delivery.encode(delivery)?,
            )?;
            match ending {
                Ending::Undeliverable(alert, delivery, why) => {
                    // Alerts are pseudonymous; the body lets an operator deliver it by hand.
                    let body = delivery::body(alert, &delivery.hospital_id)?;
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let time = (delivery.alert_time_ms > 0).then_some(delivery.alert_time_ms);
                    Some(
                        DeadLetter::new("notify", at, why.as_str(), &delivery.detail, now_ms())
                            .with_hospital(&delivery.hospital_id)
                            .with_event_time(time)
                            .with_copy(&body),
                    )
                }
                _ => None,
            }
        }
        Ending::NotAnAlert { detail } => {
            metrics::counter!("vigil_notify_outcomes_total", "outcome" => "UNDECODABLE")
                .increment(1);
            let detail = format!("the alert record cannot be decoded: {detail}");
            Some(DeadLetter::new(
                "notify",
                at,
                "undecodable_alert",
                &detail,
                now_ms(),
            ))
        }
    };
    if let Some(letter) = letter {
        producer.send(
            &topics.dead_letters,
            letter.hospital_id.as_bytes(),
            &codecs.dead_letter.encode(&letter)?,
        )?;
    }
    Ok(())
}

/// Takes ownership changes into account; after gaining partitions, re-reads what other
/// instances recorded so nothing they delivered is sent again.
fn apply_assignment(
    consumer: &GroupConsumer,
    tracker: &mut Tracker,
    memory: &mut Memory,
    kafka: &KafkaConfig,
    codec: &AvroCodec<AlertDelivery>,
) -> Result<(), SinkError> {
    let mut gained = false;
    for change in consumer.take_assignment_changes() {
        match change {
            AssignmentChange::Assigned(list) => {
                for TopicPartition { partition, .. } in list {
                    tracker.assign(partition);
                }
                gained = true;
            }
            AssignmentChange::Revoked(list) => {
                for TopicPartition { partition, .. } in list {
                    tracker.revoke(partition);
                }
            }
        }
    }
    if gained {
        memory.catch_up(kafka, consumer, codec)?;
    }
    Ok(())
}

/// A hospital's delivery queue: one alert at a time, in the order they were raised.
fn spawn_worker(
    handle: &Handle,
    deliverer: Deliverer,
    endpoint: super::endpoints::Endpoint,
    done: mpsc::UnboundedSender<Done>,
    stop: Shutdown,
) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    handle.spawn(async move {
        while let Some(job) = rx.recv().await {
            if stop.is_requested() {
                return;
            }
            let notice = Notice {
                alert: &job.alert,
                recipient: &job.recipient,
            };
            let delivery = match deliverer.deliver(&endpoint, notice, &stop).await {
                Ok(Some(delivery)) => delivery,
                Ok(None) => return,
                Err(error) => delivery::record(
                    notice,
                    &endpoint,
                    DeliveryOutcome::Undeliverable,
                    0,
                    0,
                    error.to_string(),
                    now_ms(),
                ),
            };
            if delivery.outcome == DeliveryOutcome::Delivered {
                if let Some(produced) = job.produced_ms {
                    metrics::histogram!("vigil_notify_delivery_seconds")
                        .record((now_ms() - produced).max(0) as f64 / 1000.0);
                }
            }
            let finished = Done {
                partition: job.partition,
                epoch: job.epoch,
                offset: job.offset,
                ending: Ending::of_delivery(job.alert, delivery),
            };
            if done.send(finished).is_err() {
                return;
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_below_the_oldest_alert_still_in_flight() {
        let mut tracker = Tracker::default();
        tracker.assign(0);
        tracker.assign(1);
        let e0 = tracker.read(0, 10, 0).unwrap();
        tracker.read(0, 11, 1).unwrap();
        tracker.read(0, 12, 0).unwrap();
        tracker.read(1, 5, 0).unwrap();
        let positions = tracker.positions("alerts");
        assert_eq!(
            positions.get("alerts", 0),
            Some(11),
            "11 is still being delivered"
        );
        assert_eq!(positions.get("alerts", 1), Some(6));
        assert_eq!(tracker.in_flight(), 1);
        tracker.finish(0, e0, 11);
        assert_eq!(tracker.positions("alerts").get("alerts", 0), Some(13));

        // A stale completion from before a revoke and re-assign does not count.
        let old = tracker.read(0, 13, 1).unwrap();
        tracker.revoke(0);
        assert!(tracker.read(0, 14, 1).is_none(), "not ours any more");
        tracker.assign(0);
        let new = tracker.read(0, 13, 1).unwrap();
        tracker.finish(0, old, 13);
        assert_eq!(tracker.in_flight(), 1);
        tracker.finish(0, new, 13);
        assert_eq!(tracker.in_flight(), 0);

        // An alert for two hospitals is finished when both deliveries are.
        let epoch = tracker.read(0, 20, 2).unwrap();
        tracker.finish(0, epoch, 20);
        assert_eq!(tracker.in_flight(), 1);
        assert_eq!(tracker.positions("alerts").get("alerts", 0), Some(20));
        tracker.finish(0, epoch, 20);
        assert_eq!(tracker.positions("alerts").get("alerts", 0), Some(21));
    }
}
