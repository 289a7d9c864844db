//! Reading exact offset ranges of one partition, outside any consumer group.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::{client_config, kafka_err};
use crate::config::KafkaConfig;
use crate::RuntimeError;

/// A consumer outside any group, for reading exact offset ranges of one partition.
pub struct RangeReader {
    consumer: BaseConsumer<DefaultConsumerContext>,
    topic: String,
    partition: i32,
}

impl RangeReader {
    pub fn new(
        kafka: &KafkaConfig,
        client_id: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Self, RuntimeError> {
        let mut config = client_config(kafka, client_id);
        config
            // librdkafka's assign() needs a group handle even though this reader never joins or
            // commits: a throwaway id keeps it apart from every real group.
            .set(
                "group.id",
                format!("{client_id}-{}-{topic}-{partition}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.queue.backoff.ms", "10")
            // The reader knows where the range ends: never wait at the broker for more data.
            .set("fetch.wait.max.ms", "10")
            .set("fetch.error.backoff.ms", "10")
            // Large state chunks: let one fetch carry several.
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "8388608");
        for (key, value) in &kafka.client_properties {
            config.set(key, value);
        }
        let consumer: BaseConsumer<DefaultConsumerContext> = config
            .create_with_context(DefaultConsumerContext)
            .map_err(kafka_err("range reader creation"))?;
        Ok(RangeReader {
            consumer,
            topic: topic.to_string(),
            partition,
        })
    }

    /// How many partitions the reader's topic has.
    pub fn partition_count(&self) -> Result<i32, RuntimeError> {
        super::partition_count(&self.consumer, &self.topic)
    }

    /// (low, high) watermarks: the first offset present and the next offset to be written.
    pub fn watermarks(&self) -> Result<(i64, i64), RuntimeError> {
        self.consumer
            .fetch_watermarks(&self.topic, self.partition, Duration::from_secs(10))
            .map_err(kafka_err("fetch watermarks"))
    }

    /// Calls `visit(offset, payload)` for every record in `[from, to)`, in order. Fails if no
    /// progress is made for `stall_timeout`.
    pub fn read<E: From<RuntimeError>>(
        &self,
        from: i64,
        to: i64,
        stall_timeout: Duration,
        mut visit: impl FnMut(i64, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<u64, E> {
        if from >= to {
            return Ok(0);
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, self.partition, Offset::Offset(from))
            .map_err(kafka_err("assign"))?;
        self.consumer.assign(&list).map_err(kafka_err("assign"))?;
        let mut next = from;
        let mut records = 0u64;
        let mut last_progress = Instant::now();
        while next < to {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let offset = message.offset();
                    if offset < next {
                        continue;
                    }
                    if offset >= to {
                        break;
                    }
                    visit(offset, message.payload())?;
                    records += 1;
                    next = offset + 1;
                    last_progress = Instant::now();
                }
                Some(Err(error)) => {
                    warn!(%error, topic = %self.topic, "Error while reading a partition range; retrying.")
                }
                None => {
                    if last_progress.elapsed() > stall_timeout {
                        return Err(RuntimeError::Kafka {
                            operation: "read partition range",
                            source: KafkaError::MessageConsumption(
                                RDKafkaErrorCode::OperationTimedOut,
                            ),
                        }
                        .into());
                    }
                }
            }
        }
        let _ = self.consumer.unassign();
        Ok(records)
    }
}
