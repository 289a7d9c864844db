//! Kafka clients with the discipline Vigil's guarantees rest on:
//!
//! * [`DurableProducer`]: idempotent, acks=all; `flush` says whether every record sent since the
//!   last flush was acknowledged. A stage commits its input only after a successful flush.
//! * [`GroupConsumer`]: manual commits only, batch polling, and a log of partition assignments
//!   and revocations that the stage reads between batches (rebalance callbacks run inside `poll`,
//!   on the stage's own thread, so the log needs no further synchronisation).
//! * [`ensure_topics`]: idempotent topic creation through the admin API.
//! * [`RangeReader`]: exact offset ranges of one partition, outside any group (state restore).

mod admin;
mod aligned;
mod consumer;
mod producer;
mod reader;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::config::KafkaConfig;
use crate::RuntimeError;

pub use admin::{
    check_reachable, ensure_topics, group_lag, partition_count, PartitionLag, TopicSpec,
};
pub use aligned::Aligner;
pub use consumer::{
    is_rebalance_noise, AssignmentChange, ConsumerTuning, GroupConsumer, GroupContext, Positions,
    TopicPartition,
};
pub use producer::{DeliveryLog, DurableProducer};
pub use reader::RangeReader;

fn kafka_err(operation: &'static str) -> impl Fn(KafkaError) -> RuntimeError {
    move |source| RuntimeError::Kafka { operation, source }
}

/// Settings common to every client: brokers, client id and the user's extra properties.
pub fn client_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", client_id)
        .set("log_level", "4");
    for (key, value) in &kafka.client_properties {
        config.set(key, value);
    }
    config
}
