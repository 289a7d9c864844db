use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {source}")]
    Serve { source: std::io::Error },
    #[error("the API tokens file {path}: {reason}")]
    Tokens { path: String, reason: String },
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Runtime(#[from] vigil_runtime::RuntimeError),
    #[error("ClickHouse query ({what}) failed: {source}")]
    Query {
        what: &'static str,
        source: clickhouse::error::Error,
    },
}
