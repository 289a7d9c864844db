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
    /// HTTP endpoint; in cluster mode the replicas of the shard, comma separated: the writer
    /// moves to the next when one stops answering (the other commands use the first).
    #[serde(default = "default_clickhouse_url")]
    pub url: String,
    /// The cluster (`remote_servers`) whose replicas hold Vigil's tables; empty: one server.
    /// `vigil migrate` then creates every table as Replicated…MergeTree `ON CLUSTER`.
    #[serde(default)]
    pub cluster: String,
    /// Replicas that must have an insert before it counts as landed (ClickHouse
    /// `insert_quorum`; 0: the one written to). With a quorum, the writer's own reads (rollups,
    /// publications) ask for sequential consistency, so a replica that has not caught up yet
    /// refuses them and they are retried rather than computed from part of the rows.
    #[serde(default)]
    pub insert_quorum: u32,
    /// Database that holds Vigil's tables and views.
    #[serde(default = "default_database")]
    pub database: String,
    /// The ClickHouse user of each role: every part of Vigil connects as the least it needs.
    #[serde(default)]
    pub users: ClickHouseUsers,
    /// Where the roles' passwords are, as lines `VIGIL_CH_<ROLE>_PASSWORD=...` (what
    /// deploy/local/services.sh writes; a deployment mounts its secret there). The environment
    /// variable of the same name takes precedence. Neither: an empty password.
    #[serde(default = "default_credentials_file")]
    pub credentials_file: String,
    /// How long one request may take before it is abandoned and retried.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Who this copy connects as: set by [`ClickHouseConfig::as_role`], never read from a file,
    /// so a client made without choosing a role is refused by a server whose users all have
    /// passwords.
    #[serde(skip)]
    pub user: String,
    #[serde(skip)]
    pub password: String,
}

/// What a connection is for, and so which user it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickHouseRole {
    /// Schemas and the API's tokens: `vigil migrate`, `vigil token`, the benchmarks.
    Admin,
    /// Rows, rollups, publications, backtest reports and the API's audit log.
    Writer,
    /// The dashboard's and API's figures, read only.
    Reader,
}

impl ClickHouseRole {
    /// The name of the password's environment variable and credentials-file line.
    pub fn password_variable(self) -> &'static str {
        match self {
            ClickHouseRole::Admin => "VIGIL_CH_ADMIN_PASSWORD",
            ClickHouseRole::Writer => "VIGIL_CH_WRITER_PASSWORD",
            ClickHouseRole::Reader => "VIGIL_CH_READER_PASSWORD",
        }
    }
}

/// The user names of the roles (deploy/clickhouse/server/users.xml and grants.sql create them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseUsers {
    #[serde(default = "default_admin_user")]
    pub admin: String,
    #[serde(default = "default_writer_user")]
    pub writer: String,
    #[serde(default = "default_reader_user")]
    pub reader: String,
}

fn default_admin_user() -> String {
    "default".into()
}
fn default_writer_user() -> String {
    "vigil_writer".into()
}
fn default_reader_user() -> String {
    "vigil_reader".into()
}

impl Default for ClickHouseUsers {
    fn default() -> Self {
        ClickHouseUsers {
            admin: default_admin_user(),
            writer: default_writer_user(),
            reader: default_reader_user(),
        }
    }
}

/// The local server of `deploy/local/services.sh`.
fn default_clickhouse_url() -> String {
    "http://127.0.0.1:8123".into()
}
fn default_database() -> String {
    "vigil".into()
}
/// Where deploy/local/services.sh keeps the passwords it generated.
fn default_credentials_file() -> String {
    ".vigil/clickhouse/credentials.env".into()
}
/// Large inserts on a busy 2-core machine take seconds; a minute marks a hung server.
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: default_clickhouse_url(),
            cluster: String::new(),
            insert_quorum: 0,
            database: default_database(),
            users: ClickHouseUsers::default(),
            credentials_file: default_credentials_file(),
            request_timeout: default_request_timeout(),
            user: String::new(),
            password: String::new(),
        }
    }
}

impl ClickHouseConfig {
    /// This configuration connecting as `role`'s user with its password.
    pub fn as_role(&self, role: ClickHouseRole) -> Result<ClickHouseConfig, RuntimeError> {
        self.as_role_with(role, |name| std::env::var(name).ok())
    }

    /// `as_role` with the environment given (`env` answers a variable's value).
    fn as_role_with(
        &self,
        role: ClickHouseRole,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClickHouseConfig, RuntimeError> {
        let user = match role {
            ClickHouseRole::Admin => &self.users.admin,
            ClickHouseRole::Writer => &self.users.writer,
            ClickHouseRole::Reader => &self.users.reader,
        };
        Ok(ClickHouseConfig {
            user: user.clone(),
            password: self.password(role, env)?,
            ..self.clone()
        })
    }

    fn password(
        &self,
        role: ClickHouseRole,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, RuntimeError> {
        let variable = role.password_variable();
        if let Some(password) = env(variable) {
            return Ok(password);
        }
        let text = match std::fs::read_to_string(&self.credentials_file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(error) => {
                return Err(RuntimeError::Config(format!(
                    "cannot read clickhouse.credentials_file '{}': {error}",
                    self.credentials_file
                )))
            }
        };
        Ok(password_line(&text, variable).unwrap_or_default())
    }

    /// The servers of `url`, in order (one unless a cluster's replicas are listed).
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }

    pub fn validate(&self) -> Result<(), RuntimeError> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err(RuntimeError::Config("clickhouse.url is empty".into()));
        }
        for url in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(RuntimeError::Config(format!(
                    "clickhouse.url must start with http:// or https://, not '{url}'"
                )));
            }
        }
        let name_ok = |name: &str| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok(&self.cluster) {
            return Err(RuntimeError::Config(format!(
                "clickhouse.cluster '{}' must be letters, digits and underscores",
                self.cluster
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

/// The value of `NAME=value` in a credentials file (blank lines and `#` comments allowed).
fn password_line(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().trim_matches(['"', '\'']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No environment: the developer's shell must not change what the tests see.
    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn each_role_connects_as_its_user_with_the_password_from_the_file() {
        let dir = std::env::temp_dir().join(format!("vigil-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials.env");
        std::fs::write(
            &file,
            "# generated\nVIGIL_CH_WRITER_PASSWORD=w1\nVIGIL_CH_READER_PASSWORD='r 2'\n",
        )
        .unwrap();
        let config = ClickHouseConfig {
            credentials_file: file.display().to_string(),
            ..ClickHouseConfig::default()
        };
        let writer = config.as_role_with(ClickHouseRole::Writer, no_env).unwrap();
        assert_eq!(
            (writer.user.as_str(), writer.password.as_str()),
            ("vigil_writer", "w1")
        );
        let reader = config.as_role_with(ClickHouseRole::Reader, no_env).unwrap();
        assert_eq!(
            (reader.user.as_str(), reader.password.as_str()),
            ("vigil_reader", "r 2")
        );
        // A role the file does not name gets no password (a server whose user has none).
        assert_eq!(
            config
                .as_role_with(ClickHouseRole::Admin, no_env)
                .unwrap()
                .password,
            ""
        );
        // A copy made without choosing a role names no user at all.
        assert_eq!(config.user, "");
        let missing = ClickHouseConfig {
            credentials_file: dir.join("absent.env").display().to_string(),
            ..ClickHouseConfig::default()
        };
        assert_eq!(
            missing
                .as_role_with(ClickHouseRole::Writer, no_env)
                .unwrap()
                .password,
            ""
        );
        // The environment's variable of the same name comes first.
        let from_env = config
            .as_role_with(ClickHouseRole::Writer, |name| {
                (name == "VIGIL_CH_WRITER_PASSWORD").then(|| "from-env".to_string())
            })
            .unwrap();
        assert_eq!(from_env.password, "from-env");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
