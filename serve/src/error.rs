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
    #[error("ClickHouse query ({what}) failed: {source}")]
    Query {
        what: &'static str,
        source: clickhouse::error::Error,
    },
}
