//! The ClickHouse client, set up to work with ClickHouse 18.16 as well as current servers.

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A client without a default database, for migrations that create it (the first server of
/// `clickhouse.url`).
pub fn server_client(config: &ClickHouseConfig) -> Client {
    client_at(config, config.urls().first().copied().unwrap_or_default())
}

/// One client per server of `clickhouse.url`, without a default database, with its URL.
pub fn server_clients(config: &ClickHouseConfig) -> Vec<(&str, Client)> {
    config
        .urls()
        .into_iter()
        .map(|url| (url, client_at(config, url)))
        .collect()
}

fn client_at(config: &ClickHouseConfig, url: &str) -> Client {
    Client::default()
        .with_url(url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_validation(false)
}

/// One client per server of `clickhouse.url` (the replicas of a cluster's shard), on the
/// database: requests go to the current one, and [`Replicas::fail_over`] moves to the next
/// when it stops answering. With one server, always that one.
pub struct Replicas {
    clients: Vec<(String, Client)>,
    current: AtomicUsize,
}

impl Replicas {
    /// `tune` sets what every request of these clients needs (settings).
    pub fn new(config: &ClickHouseConfig, tune: impl Fn(Client) -> Client) -> Replicas {
        let clients = config
            .urls()
            .into_iter()
            .map(|url| {
                let client = tune(client_at(config, url).with_database(&config.database));
                (url.to_string(), client)
            })
            .collect();
        Replicas {
            clients,
            current: AtomicUsize::new(0),
        }
    }

    pub fn current(&self) -> &Client {
        &self.clients[self.index()].1
    }

    pub fn current_url(&self) -> &str {
        &self.clients[self.index()].0
    }

    fn index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.clients.len().max(1)
    }

    /// Moves to the next replica (after a transient failure of the current one); whether there
    /// is another to move to.
    pub fn fail_over(&self) -> bool {
        if self.clients.len() < 2 {
            return false;
        }
        self.current.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// Asks the servers of `clickhouse.url` for their version, in order, until one answers:
/// proves the URL, the credentials and the network.
pub async fn healthcheck(config: &ClickHouseConfig) -> Result<String, RuntimeError> {
    let mut failure = None;
    for url in config.urls() {
        match client_at(config, url)
            .query("SELECT version()")
            .fetch_one::<String>()
            .await
        {
            Ok(version) => return Ok(version),
            Err(source) => failure = Some(source),
        }
    }
    Err(RuntimeError::ClickHouse {
        operation: "health check",
        source: failure.unwrap_or(clickhouse::error::Error::Custom(
            "no server in clickhouse.url".into(),
        )),
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
            // NETWORK_ERROR (210), SOCKET_TIMEOUT (209), TABLE_IS_READ_ONLY (242); and of a
            // replicated cluster: NO_ZOOKEEPER (225), TOO_FEW_LIVE_REPLICAS (285),
            // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE (286), REPLICA_IS_NOT_IN_QUORUM (289),
            // UNKNOWN_STATUS_OF_INSERT (319), KEEPER_EXCEPTION (999).
            [
                "Code: 225",
                "Code: 285",
                "Code: 286",
                "Code: 289",
                "Code: 319",
                "Code: 999",
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
