//! The ClickHouse client, set up to work with ClickHouse 18.16 as well as current servers.

use clickhouse::Client;

use crate::config::ClickHouseConfig;
use crate::RuntimeError;

/// Checks that there are CA certificates to trust (the system's, or the file `SSL_CERT_FILE`
/// names): the ClickHouse client loads them when it is made, HTTPS or not, and cannot start
/// without any. Say so at start instead.
pub fn check_trust_store() -> Result<(), RuntimeError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |e| format!(" ({e})"));
        return Err(RuntimeError::Config(format!(
            "no CA certificates to trust{why}: install the system's (Debian: ca-certificates) or \
             name a PEM file in SSL_CERT_FILE"
        )));
    }
    Ok(())
}

/// A client for the configured server and database.
///
/// Schema validation is off: it needs `RowBinaryWithNamesAndTypes`, which ClickHouse 18.16 does
/// not have; the column lists in `deploy/clickhouse/` and the row structs are checked against
/// each other by the end-to-end tests instead.
pub fn client(config: &ClickHouseConfig) -> Client {
    server_client(config).with_database(&config.database)
}

/// A client without a default database, for migrations that create it.
pub fn server_client(config: &ClickHouseConfig) -> Client {
    Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_validation(false)
}

/// Asks the server for its version: proves the URL, the credentials and the network.
pub async fn healthcheck(config: &ClickHouseConfig) -> Result<String, RuntimeError> {
    server_client(config)
        .query("SELECT version()")
        .fetch_one::<String>()
        .await
        .map_err(|source| RuntimeError::ClickHouse {
            operation: "health check",
            source,
        })
}

/// Whether a failed request may succeed later unchanged: the server was unreachable, overloaded
/// or timed out, as opposed to rejecting the query or its data.
pub fn is_transient(error: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error;
    match error {
        Error::Network(_) | Error::TimedOut => true,
        Error::BadResponse(text) => {
            // Server-side codes that mean "not now": TOO_MANY_SIMULTANEOUS_QUERIES (202),
            // TOO_MANY_PARTS (252), MEMORY_LIMIT_EXCEEDED (241), TIMEOUT_EXCEEDED (159),
            // NETWORK_ERROR (210), SOCKET_TIMEOUT (209), TABLE_IS_READ_ONLY (242).
            [
                "Code: 202",
                "Code: 252",
                "Code: 241",
                "Code: 159",
                "Code: 210",
                "Code: 209",
                "Code: 242",
            ]
            .iter()
            .any(|code| text.contains(code))
                || text.contains("503")
        }
        _ => false,
    }
}
