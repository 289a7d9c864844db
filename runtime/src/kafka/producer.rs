//! The producer every stage writes through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::{client_config, kafka_err};
use crate::config::KafkaConfig;
use crate::RuntimeError;

/// Counts deliveries that failed after librdkafka's own retries, and remembers the offset of the
/// last record acknowledged on each partition written to with [`DurableProducer::send_to`].
#[derive(Default)]
pub struct DeliveryLog {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// (topic, partition, offset) of the last acknowledged record per explicitly addressed partition.
    last_offsets: Mutex<Vec<(String, i32, i64)>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    /// Whether to remember the record's offset.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, track_offset: usize) {
        if let (Ok(message), 1) = (result, track_offset) {
            if let Ok(mut offsets) = self.last_offsets.lock() {
                let (topic, partition, offset) =
                    (message.topic(), message.partition(), message.offset());
                match offsets
                    .iter_mut()
                    .find(|(t, p, _)| *p == partition && t == topic)
                {
                    Some(entry) => entry.2 = entry.2.max(offset),
                    None => offsets.push((topic.to_string(), partition, offset)),
                }
            }
        }
        if let Err((error, message)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut first) = self.first_error.lock() {
                if first.is_none() {
                    *first = Some(format!("{error} (topic {})", message.topic()));
                }
            }
        }
    }
}

/// An idempotent producer whose `flush` reports whether everything sent was acknowledged.
pub struct DurableProducer {
    producer: ThreadedProducer<DeliveryLog>,
    flush_timeout: Duration,
}

impl DurableProducer {
    pub fn new(kafka: &KafkaConfig, client_id: &str) -> Result<Self, RuntimeError> {
        let mut config = client_config(kafka, client_id);
        config
            // Idempotence implies acks=all and keeps per-partition order across retries.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .set("queue.buffering.max.kbytes", "262144")
            .set(
                "delivery.timeout.ms",
                kafka.delivery_timeout.as_millis().to_string(),
            );
        // Extra properties win over Vigil's choices.
        for (key, value) in &kafka.client_properties {
            config.set(key, value);
        }
        let producer: ThreadedProducer<DeliveryLog> = config
            .create_with_context(DeliveryLog::default())
            .map_err(kafka_err("producer creation"))?;
        Ok(DurableProducer {
            producer,
            flush_timeout: kafka.delivery_timeout + Duration::from_secs(5),
        })
    }

    /// Queues one record, partitioned by key. Waits while librdkafka's queue is full (backpressure).
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), RuntimeError> {
        self.enqueue(
            BaseRecord::with_opaque_to(topic, 0)
                .key(key)
                .payload(payload),
        )
    }

    /// Queues one record (or a tombstone, without a value) stamped with `timestamp_ms` rather
    /// than the time of sending: a replayed or simulated history keeps the times of its changes,
    /// as a capture pipeline would have written them, and readers that merge partitions by
    /// record time see the same order whenever the history is sent.
    pub fn send_stamped(
        &self,
        topic: &str,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> Result<(), RuntimeError> {
        let record = BaseRecord::with_opaque_to(topic, 0)
            .key(key)
            .timestamp(timestamp_ms);
        self.enqueue(match value {
            Some(payload) => record.payload(payload),
            None => record,
        })
    }

    /// Queues a tombstone (a record without a value), as Debezium writes after a delete.
    pub fn send_tombstone(&self, topic: &str, key: &[u8]) -> Result<(), RuntimeError> {
        self.enqueue(BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, 0).key(key))
    }

    /// Queues one record for an explicit partition; its offset is remembered once acknowledged
    /// (see [`DurableProducer::last_offset`]).
    pub fn send_to(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(), RuntimeError> {
        self.enqueue(
            BaseRecord::with_opaque_to(topic, 1)
                .partition(partition)
                .key(key)
                .payload(payload),
        )
    }

    /// Offset of the last acknowledged record sent with `send_to` to (topic, partition).
    pub fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.producer
            .context()
            .last_offsets
            .lock()
            .ok()?
            .iter()
            .find(|(t, p, _)| *p == partition && t == topic)
            .map(|(_, _, offset)| *offset)
    }

    fn enqueue(&self, record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), RuntimeError> {
        let mut record = record;
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if started.elapsed() > self.flush_timeout {
                        return Err(RuntimeError::Kafka {
                            operation: "produce",
                            source: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                        });
                    }
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    back,
                )) => {
                    return Err(RuntimeError::RecordTooLarge {
                        topic: back.topic.to_string(),
                        bytes: back.payload.map_or(0, <[u8]>::len),
                    })
                }
                Err((source, _)) => {
                    return Err(RuntimeError::Kafka {
                        operation: "produce",
                        source,
                    })
                }
            }
        }
    }

    /// Waits until everything queued is acknowledged. Errors if anything sent since the previous
    /// flush failed: the caller must then not commit its input.
    pub fn flush(&self) -> Result<(), RuntimeError> {
        self.producer
            .flush(self.flush_timeout)
            .map_err(kafka_err("flush"))?;
        let failed = self.producer.context().failed.swap(0, Ordering::SeqCst);
        if failed > 0 {
            let first_error = self
                .producer
                .context()
                .first_error
                .lock()
                .ok()
                .and_then(|mut first| first.take())
                .unwrap_or_default();
            return Err(RuntimeError::Delivery {
                failed,
                first_error,
            });
        }
        Ok(())
    }

    /// Records queued but not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}
