//! One reading of the figures for every viewer: a task asks ClickHouse every `refresh` and
//! publishes the reading when it changed (with a version the event stream uses as its id).

use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use tokio::sync::watch;
use tracing::warn;
use vigil_runtime::Shutdown;

use crate::queries;

/// The latest figures as the API serves them.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Increases with every change; 0 before the first reading.
    pub version: u64,
    /// The overview as JSON; `None` until ClickHouse answered once.
    pub json: Option<Arc<str>>,
    /// The same overview, for the endpoints that answer from parts of it.
    pub overview: Option<Arc<queries::Overview>>,
}

/// Starts the reading task; it stops at shutdown.
pub fn start(
    client: Client,
    utc_offset_minutes: i32,
    refresh: Duration,
    shutdown: Shutdown,
) -> watch::Receiver<Reading> {
    let (sender, receiver) = watch::channel(Reading::default());
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match queries::overview(&client, utc_offset_minutes).await {
                Ok(overview) => {
                    failing = false;
                    publish(&sender, &overview);
                }
                // Logged once per outage; the page keeps the last figures meanwhile.
                Err(error) if !failing => {
                    failing = true;
                    warn!(%error, "Reading the figures failed; retrying every refresh.");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(refresh) => {}
            }
        }
    });
    receiver
}

fn publish(sender: &watch::Sender<Reading>, overview: &queries::Overview) {
    let Ok(json) = serde_json::to_string(overview) else {
        return;
    };
    sender.send_if_modified(|reading| {
        if reading.json.as_deref() == Some(json.as_str()) {
            return false;
        }
        reading.version += 1;
        reading.json = Some(Arc::from(json));
        reading.overview = Some(Arc::new(overview.clone()));
        true
    });
}
