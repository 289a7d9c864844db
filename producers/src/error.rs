use thiserror::Error;

/// Failures of the edge stages (simulate, ingest).
#[derive(Debug, Error)]
pub enum ProducerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] vigil_runtime::RuntimeError),
    #[error(transparent)]
    Schema(#[from] vigil_schemas::SchemaError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ProducerError {
    /// Whether restarting the stage may help (a service was down), as opposed to a defect.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProducerError::Runtime(e) => e.is_retryable(),
            ProducerError::Io { .. } => true,
            ProducerError::Config(_) | ProducerError::Schema(_) => false,
        }
    }
}
