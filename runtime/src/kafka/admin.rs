//! Topic administration.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{info, warn};

use super::{client_config, kafka_err};
use crate::config::KafkaConfig;
use crate::RuntimeError;

/// A topic Vigil needs, with its partition count and any topic configuration.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub config: BTreeMap<String, String>,
}

impl TopicSpec {
    pub fn new(name: &str, partitions: i32) -> Self {
        TopicSpec {
            name: name.to_string(),
            partitions,
            config: BTreeMap::new(),
        }
    }
}

/// Asks the brokers for their metadata within `timeout`, so a stage pointed at the wrong address
/// says so at once instead of retrying silently for a minute.
pub fn check_reachable(kafka: &KafkaConfig, timeout: Duration) -> Result<(), RuntimeError> {
    let consumer: BaseConsumer<ProbeContext> = client_config(kafka, "vigil-healthcheck")
        .create_with_context(ProbeContext::default())
        .map_err(kafka_err("healthcheck client creation"))?;
    consumer
        .fetch_metadata(None, timeout)
        .map(|_| ())
        .map_err(|source| {
            // The metadata error says only that no broker answered; the client's own last
            // error says why (a certificate not trusted, a SASL handshake refused). Errors
            // reach the context when the client is polled.
            let _ = consumer.poll(Duration::from_millis(200));
            let why = consumer.context().last_error();
            RuntimeError::Unreachable {
                service: "Kafka",
                address: kafka.brokers.clone(),
                waited: timeout,
                cause: why.map_or_else(|| source.to_string(), |why| format!("{source}; {why}")),
            }
        })
}

/// Remembers the last error the client reported while it tried the brokers.
#[derive(Default)]
struct ProbeContext {
    last_error: Mutex<Option<String>>,
}

impl ProbeContext {
    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|last| last.clone())
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, _facility: &str, message: &str) {
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            self.remember(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.remember(format!("{error}: {reason}"));
    }
}

impl ProbeContext {
    fn remember(&self, what: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(what);
        }
    }
}

impl ConsumerContext for ProbeContext {}

/// Creates the topics that do not exist yet and waits until the broker lists them. Existing
/// topics are left alone; one with a different partition count is reported, since patient state
/// is partitioned with its input.
pub async fn ensure_topics(kafka: &KafkaConfig, topics: &[TopicSpec]) -> Result<(), RuntimeError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka, "vigil-admin")
        .create()
        .map_err(kafka_err("admin client creation"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|spec| {
            let mut topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            );
            for (key, value) in &spec.config {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(kafka_err("create topics"))?;
    for result in results {
        match result {
            Ok(name) => info!(topic = %name, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RuntimeError::Kafka {
                    operation: "create topics",
                    source: KafkaError::AdminOp(code),
                })
                .inspect_err(|_| warn!(topic = %name, %code, "Creating a topic failed."));
            }
        }
    }

    // Wait until every topic shows up in metadata with its partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    for spec in topics {
        loop {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(&spec.name), Duration::from_secs(5))
                .map_err(kafka_err("fetch metadata"))?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == spec.name)
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().len() as i32);
            match found {
                Some(n) if n > 0 => {
                    if n != spec.partitions {
                        warn!(topic = %spec.name, expected = spec.partitions, actual = n,
                            "Topic exists with a different partition count; keeping it.");
                    }
                    break;
                }
                _ if Instant::now() > deadline => {
                    return Err(RuntimeError::Kafka {
                        operation: "wait for topic metadata",
                        source: KafkaError::MetadataFetch(
                            RDKafkaErrorCode::UnknownTopicOrPartition,
                        ),
                    })
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// The topic's partition count, as the broker reports it.
pub fn partition_count(
    consumer: &BaseConsumer<impl ConsumerContext>,
    topic: &str,
) -> Result<i32, RuntimeError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka_err("fetch metadata"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0))
}

/// How far a consumer group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's committed offset; `None` if it never committed here.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
}

impl PartitionLag {
    /// Records the group has yet to commit (from the log start if it never committed).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low)).max(0)
    }
}

/// The committed position of `group` on every partition of `topic`, against the partition's
/// watermarks. Reads only: it does not join the group.
pub fn group_lag(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionLag>, RuntimeError> {
    use rdkafka::{Offset, TopicPartitionList};
    let mut config = client_config(kafka, "vigil-lag");
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().map_err(kafka_err("lag reader creation"))?;
    let partitions = partition_count(&consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .map_err(kafka_err("read committed offsets"))?;
    let mut out = Vec::with_capacity(partitions as usize);
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, element.partition(), Duration::from_secs(10))
            .map_err(kafka_err("fetch watermarks"))?;
        let committed = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        out.push(PartitionLag {
            partition: element.partition(),
            committed,
            low,
            high,
        });
    }
    Ok(out)
}
