//! Configuration of the services every stage talks to. Defaults point at the local services that
//! `deploy/local/services.sh start` runs, so a checkout works as is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The Kafka cluster and Vigil's topics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated (`host:port`).
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Partitions of the topics Vigil creates. Patient state is partitioned with the clinical
    /// events topic, so this is fixed once the topics exist.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics Vigil creates (1 for a single local broker; 3 in production).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Whether stages create missing topics at start (convenient locally; production usually
    /// provisions topics separately and turns this off).
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// How long a produce may stay unacknowledged before the stage fails and restarts from its
    /// last commit (librdkafka `delivery.timeout.ms`).
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How long a silent group member keeps its partitions: after a crash, its partitions move
    /// to the other instances this much later.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Longest the broker may hold a consumer's fetch waiting for data (`fetch.wait.max.ms`).
    /// Tansu holds a fetch this long whenever one of its partitions has nothing new, so shorter
    /// reads faster from its memory storage; but its SQLite storage abandons reads that take
    /// longer, so too short starves cold partitions (BENCHMARKS.md).
    #[serde(default = "default_fetch_wait_max", with = "humantime_serde")]
    pub fetch_wait_max: Duration,
    /// Topic names.
    #[serde(default)]
    pub topics: Topics,
    /// Extra librdkafka properties for every client, e.g. `security.protocol`, `sasl.mechanism`.
    #[serde(default)]
    pub client_properties: BTreeMap<String, String>,
}

/// Where the default points: the local broker of `deploy/local/services.sh`.
fn default_brokers() -> String {
    "127.0.0.1:9092".to_string()
}

/// Four partitions let two or four processor instances share the load on a laptop or pilot.
fn default_partitions() -> i32 {
    4
}

fn default_replication_factor() -> i32 {
    1
}

fn default_true() -> bool {
    true
}

/// Short enough that a crashed instance's partitions move within seconds, long enough to ride
/// out a garbage-free pause.
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}

/// librdkafka's default is 300 s; a minute surfaces a broken broker sooner.
fn default_fetch_wait_max() -> Duration {
    Duration::from_millis(100)
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            create_topics: true,
            delivery_timeout: default_delivery_timeout(),
            session_timeout: default_session_timeout(),
            fetch_wait_max: default_fetch_wait_max(),
            topics: Topics::default(),
            client_properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.brokers.trim().is_empty() {
            return Err(RuntimeError::Config("kafka.brokers is empty".into()));
        }
        if self.partitions < 1 {
            return Err(RuntimeError::Config(format!(
                "kafka.partitions must be at least 1, not {}",
                self.partitions
            )));
        }
        if self.session_timeout < Duration::from_secs(1) {
            return Err(RuntimeError::Config(
                "kafka.session_timeout must be at least 1s".into(),
            ));
        }
        if self.replication_factor < 1 {
            return Err(RuntimeError::Config(format!(
                "kafka.replication_factor must be at least 1, not {}",
                self.replication_factor
            )));
        }
        self.topics.validate()
    }
}

/// Names of the topics between the stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    /// Raw change events from hospital systems (Debezium JSON), read by `vigil ingest`.
    #[serde(default = "topic_his_changes")]
    pub his_changes: String,
    /// Canonical clinical events (Avro), keyed by patient pseudonym.
    #[serde(default = "topic_clinical_events")]
    pub clinical_events: String,
    /// Alert episode changes (Avro), keyed by patient pseudonym.
    #[serde(default = "topic_alerts")]
    pub alerts: String,
    /// Patient status per condition and period (Avro), keyed by patient pseudonym.
    #[serde(default = "topic_patient_status")]
    pub patient_status: String,
    /// Clinicians' acknowledgements (Avro), keyed by patient pseudonym.
    #[serde(default = "topic_alert_acks")]
    pub alert_acks: String,
    /// Rejected input of every stage with its reason (Avro), keyed by hospital.
    #[serde(default = "topic_dead_letters")]
    pub dead_letters: String,
    /// Events later than the processor's allowed lateness (Avro clinical events).
    #[serde(default = "topic_late_events")]
    pub late_events: String,
    /// The processor's state changelog and checkpoints, one partition per input partition.
    #[serde(default = "topic_processor_state")]
    pub processor_state: String,
    /// Outcomes of alert deliveries (Avro), keyed by alert id, compacted: what each hospital's
    /// endpoint acknowledged, so an alert is never delivered twice.
    #[serde(default = "topic_alert_deliveries")]
    pub alert_deliveries: String,
    /// Each stage's counts per hospital and interval, for the writer to land.
    #[serde(default = "topic_pipeline_stats")]
    pub pipeline_stats: String,
}

fn topic_his_changes() -> String {
    "vigil.his.changes".into()
}
fn topic_clinical_events() -> String {
    "vigil.clinical.events".into()
}
fn topic_alerts() -> String {
    "vigil.clinical.alerts".into()
}
fn topic_patient_status() -> String {
    "vigil.clinical.patient-status".into()
}
fn topic_alert_acks() -> String {
    "vigil.clinical.alert-acks".into()
}
fn topic_dead_letters() -> String {
    "vigil.pipeline.dead-letters".into()
}
fn topic_late_events() -> String {
    "vigil.clinical.late-events".into()
}
fn topic_processor_state() -> String {
    "vigil.processor.state".into()
}
fn topic_pipeline_stats() -> String {
    "vigil.pipeline.stats".into()
}
fn topic_alert_deliveries() -> String {
    "vigil.notify.deliveries".into()
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            his_changes: topic_his_changes(),
            clinical_events: topic_clinical_events(),
            alerts: topic_alerts(),
            patient_status: topic_patient_status(),
            alert_acks: topic_alert_acks(),
            dead_letters: topic_dead_letters(),
            late_events: topic_late_events(),
            processor_state: topic_processor_state(),
            alert_deliveries: topic_alert_deliveries(),
            pipeline_stats: topic_pipeline_stats(),
        }
    }
}

impl Topics {
    pub fn all(&self) -> [&str; 10] {
        [
            &self.his_changes,
            &self.clinical_events,
            &self.alerts,
            &self.patient_status,
            &self.alert_acks,
            &self.dead_letters,
            &self.late_events,
            &self.processor_state,
            &self.alert_deliveries,
            &self.pipeline_stats,
        ]
    }

    fn validate(&self) -> Result<(), RuntimeError> {
        let all = self.all();
        for (i, name) in all.iter().enumerate() {
            let legal = !name.is_empty()
                && name.len() <= 249
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !legal {
                return Err(RuntimeError::Config(format!(
                    "kafka.topics: '{name}' is not a legal Kafka topic name"
                )));
            }
            if all[..i].contains(name) {
                return Err(RuntimeError::Config(format!(
                    "kafka.topics: '{name}' is used for two different streams"
                )));
            }
        }
        Ok(())
    }

    /// The same names with a suffix, so tests and benchmarks get topics of their own.
    pub fn with_suffix(&self, suffix: &str) -> Topics {
        let s = |name: &str| format!("{name}.{suffix}");
        Topics {
            his_changes: s(&self.his_changes),
            clinical_events: s(&self.clinical_events),
            alerts: s(&self.alerts),
            patient_status: s(&self.patient_status),
            alert_acks: s(&self.alert_acks),
            dead_letters: s(&self.dead_letters),
            late_events: s(&self.late_events),
            processor_state: s(&self.processor_state),
            alert_deliveries: s(&self.alert_deliveries),
            pipeline_stats: s(&self.pipeline_stats),
        }
    }
}

/// Logs and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where Prometheus scrapes `/metrics` ("host:port"; empty turns the endpoint off). When
    /// several vigil processes share a host, give each its own port.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
}

/// 9464 is the port OpenTelemetry's Prometheus exporter conventionally uses; loopback only.
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_listen: default_metrics_listen(),
        }
    }
}

/// The ClickHouse server the sink writes to and `vigil migrate` prepares.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint.
    #[serde(default = "default_clickhouse_url")]
    pub url: String,
    /// Database that holds Vigil's tables and views.
    #[serde(default = "default_database")]
    pub database: String,
    /// User for writing and migrations.
    #[serde(default = "default_user")]
    pub user: String,
    /// Password of `user`. Prefer the environment (VIGIL_CLICKHOUSE__PASSWORD) to the file.
    #[serde(default)]
    pub password: String,
    /// How long one request may take before it is abandoned and retried.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// The local server of `deploy/local/services.sh`.
fn default_clickhouse_url() -> String {
    "http://127.0.0.1:8123".into()
}
fn default_database() -> String {
    "vigil".into()
}
fn default_user() -> String {
    "default".into()
}
/// Large inserts on a busy 2-core machine take seconds; a minute marks a hung server.
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: default_clickhouse_url(),
            database: default_database(),
            user: default_user(),
            password: String::new(),
            request_timeout: default_request_timeout(),
        }
    }
}

impl ClickHouseConfig {
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(RuntimeError::Config(format!(
                "clickhouse.url must start with http:// or https://, not '{}'",
                self.url
            )));
        }
        let legal = !self.database.is_empty()
            && self
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !legal {
            return Err(RuntimeError::Config(format!(
                "clickhouse.database '{}' must be letters, digits and underscores",
                self.database
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        KafkaConfig::default().validate().unwrap();
        ClickHouseConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let mut kafka = KafkaConfig::default();
        kafka.topics.alerts = kafka.topics.clinical_events.clone();
        assert!(kafka
            .validate()
            .unwrap_err()
            .to_string()
            .contains("two different streams"));
        kafka = KafkaConfig {
            partitions: 0,
            ..KafkaConfig::default()
        };
        assert!(kafka
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kafka.partitions"));
        let ch = ClickHouseConfig {
            database: "vigil; DROP".into(),
            ..ClickHouseConfig::default()
        };
        assert!(ch
            .validate()
            .unwrap_err()
            .to_string()
            .contains("clickhouse.database"));
        let ch = ClickHouseConfig {
            url: "localhost:8123".into(),
            ..ClickHouseConfig::default()
        };
        assert!(ch
            .validate()
            .unwrap_err()
            .to_string()
            .contains("clickhouse.url"));
    }
}
