use thiserror::Error;

/// Failures of the shared plumbing. `is_retryable` tells a stage whether waiting can help.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("Kafka {operation} failed: {source}")]
    Kafka {
        operation: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker did not acknowledge every record of a batch: the batch must not be committed.
    #[error("{failed} record(s) were not acknowledged by the broker; first error: {first_error}")]
    Delivery { failed: u64, first_error: String },
    #[error("ClickHouse {operation} failed: {source}")]
    ClickHouse {
        operation: &'static str,
        #[source]
        source: ::clickhouse::error::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The broker's client refused a record for its size: sending it again cannot help.
    #[error("a record of {bytes} bytes for topic {topic} is larger than the client accepts")]
    RecordTooLarge { topic: String, bytes: usize },
    /// A service did not answer at start: usually a wrong address, or it is not running.
    #[error("no {service} answered at {address} within {waited:?} ({cause}); check the address in the configuration and that {service} is running (locally: deploy/local/services.sh start)")]
    Unreachable {
        service: &'static str,
        address: String,
        waited: std::time::Duration,
        cause: String,
    },
    #[error(transparent)]
    Schema(#[from] vigil_schemas::SchemaError),
}

impl RuntimeError {
    /// Whether the same operation may succeed if tried again later (a service was unreachable or
    /// busy), as opposed to a defect in the request or the data.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Kafka { .. }
            | RuntimeError::Delivery { .. }
            | RuntimeError::Unreachable { .. } => true,
            RuntimeError::ClickHouse { source, .. } => crate::clickhouse::is_transient(source),
            RuntimeError::Config(_)
            | RuntimeError::Schema(_)
            | RuntimeError::RecordTooLarge { .. } => false,
        }
    }
}
