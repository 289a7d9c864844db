use thiserror::Error;

/// Failures of the sink stages.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] vigil_runtime::RuntimeError),
    #[error(transparent)]
    Schema(#[from] vigil_schemas::SchemaError),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: vigil_runtime::RuntimeError,
    },
    /// A statement cluster mode does not know how to run `ON CLUSTER`.
    #[error("clickhouse.cluster is set, but this migration statement cannot be run on a cluster: '{statement}' (only CREATE DATABASE/TABLE/VIEW IF NOT EXISTS and ALTER TABLE are)")]
    Cluster { statement: String },
    #[error("migration {version} ({name}) was changed after it was applied (checksum {applied} in the database, {now} now); add a new migration instead")]
    MigrationChanged {
        version: u32,
        name: &'static str,
        applied: String,
        now: String,
    },
}

impl SinkError {
    /// Whether restarting the stage may help (a service was down), as opposed to a defect.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Runtime(e) | SinkError::Migration { source: e, .. } => e.is_retryable(),
            SinkError::Config(_)
            | SinkError::Schema(_)
            | SinkError::MigrationChanged { .. }
            | SinkError::Cluster { .. } => false,
        }
    }
}
