use thiserror::Error;

/// Failures of the processor stage.
#[derive(Debug, Error)]
pub enum ProcessorError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] vigil_runtime::RuntimeError),
    #[error(transparent)]
    Schema(#[from] vigil_schemas::SchemaError),
    /// The state changelog holds something this build cannot read.
    #[error(
        "the state changelog of partition {partition} is unreadable at offset {offset}: {reason}"
    )]
    Changelog {
        partition: i32,
        offset: i64,
        reason: String,
    },
}

impl ProcessorError {
    /// Whether restarting the stage may help (a service was down), as opposed to a defect.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Runtime(e) => e.is_retryable(),
            ProcessorError::Config(_)
            | ProcessorError::Schema(_)
            | ProcessorError::Changelog { .. } => false,
        }
    }
}
