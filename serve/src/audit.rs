//! The record of every API call and page load (`<db>_audit.audit_log`): who (token id and role,
//! never the secret), the hospital it was confined to, what was asked, how many rows answered and
//! how it ended. Requests hand their record to one task that inserts them in batches, so a slow
//! ClickHouse never slows an answer; records wait (bounded) while it is down, and any lost past
//! the bound are counted and logged.

use std::time::Duration;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;
use vigil_runtime::Shutdown;

/// One call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct AuditRecord {
    pub time: u32,
    pub time_ms: i64,
    pub request_id: String,
    pub token_id: String,
    pub role: String,
    pub hospital_scope: String,
    pub method: String,
    pub endpoint: String,
    pub parameters: String,
    pub status: u16,
    pub rows: u64,
    pub duration_ms: f64,
}

/// Records waiting for ClickHouse at most; past it the oldest are dropped, counted and logged.
const MAX_WAITING: usize = 100_000;

/// Where requests send their records.
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: mpsc::UnboundedSender<AuditRecord>,
}

impl AuditLog {
    /// Starts the task that inserts records into `<database>_audit.audit_log` every `interval`;
    /// it inserts what waits and stops at shutdown.
    pub fn start(client: Client, database: &str, interval: Duration, shutdown: Shutdown) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        // The crate quotes a table name whole: the database goes on the client.
        let client = client.with_database(format!("{database}_audit"));
        tokio::spawn(write(
            client,
            "audit_log".into(),
            interval,
            receiver,
            shutdown,
        ));
        AuditLog { sender }
    }

    pub fn record(&self, record: AuditRecord) {
        // Only fails once the writing task ended (at shutdown).
        let _ = self.sender.send(record);
    }
}

async fn write(
    client: Client,
    table: String,
    interval: Duration,
    mut receiver: mpsc::UnboundedReceiver<AuditRecord>,
    shutdown: Shutdown,
) {
    let mut waiting: Vec<AuditRecord> = Vec::new();
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = shutdown.requested() => true,
            () = tokio::time::sleep(interval) => false,
        };
        while let Ok(record) = receiver.try_recv() {
            waiting.push(record);
        }
        if waiting.len() > MAX_WAITING {
            let lost = waiting.len() - MAX_WAITING;
            waiting.drain(..lost);
            metrics::counter!("vigil_audit_records_lost_total").increment(lost as u64);
            warn!(
                lost,
                "Audit records dropped: ClickHouse has not taken them for too long."
            );
        }
        if !waiting.is_empty() {
            match insert(&client, &table, &waiting).await {
                Ok(()) => {
                    failing = false;
                    waiting.clear();
                }
                Err(error) if !failing => {
                    failing = true;
                    warn!(%error, waiting = waiting.len(), "Audit records could not be written; retrying.");
                }
                Err(_) => {}
            }
        }
        if stopping {
            return;
        }
    }
}

async fn insert(
    client: &Client,
    table: &str,
    records: &[AuditRecord],
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<AuditRecord>(table).await?;
    for record in records {
        insert.write(record).await?;
    }
    insert.end().await
}
