//! The pilot's figures per definition, period, condition and hospital (`status_rollup`,
//! migration 0008): what the dashboard reads instead of scanning every status row.
//!
//! A period's figures are recomputed from its current status rows (FINAL) whenever the writer
//! lands rows of that period, never added to: a status row's new version then replaces its
//! old one in the figures, however often it is replayed. Each recompute is stamped with the
//! time it started and the latest one is the period's figures, so a recompute that started
//! after a row landed always includes it. The status table's sort key begins with (definition,
//! period kind, period start), so a recompute reads only its periods' rows.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio::runtime::Handle;
use vigil_runtime::time::{format_date, now_ms};

/// One reporting period of one definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeriodKey {
    pub definition: String,
    pub period_kind: String,
    /// ClickHouse `Date`: days since 1970-01-01.
    pub period_start: u16,
}

/// How long before the latest recompute a restarted writer looks for landed rows: rows another
/// writer landed while its recompute ran, and clocks a little apart.
const CATCH_UP_MARGIN_MS: i64 = 60_000;

/// The recompute of the periods `filter` selects (a WHERE condition on `patient_status`),
/// stamped `computed_ms`.
fn recompute_where(database: &str, filter: &str, computed_ms: i64) -> String {
    format!(
        "INSERT INTO {database}.status_rollup \
         SELECT definition, period_kind, period_start, condition, hospital_id, region_code, \
                department_code, \
                countIf(managed = 1), \
                countIf(managed = 1 AND standardised = 1), \
                countIf(managed = 1 AND controlled = 1), \
                sumIf(new_complications, managed = 1), \
                sumIf(managed_days, managed = 1), \
                countIf(managed = 1 AND risk_level IN ('HIGH', 'VERY_HIGH')), \
                toInt64({computed_ms}) \
         FROM {database}.patient_status FINAL \
         WHERE {filter} \
         GROUP BY definition, period_kind, period_start, condition, hospital_id, region_code, \
                  department_code"
    )
}

/// The recompute of some periods of one definition and kind (bound: definition, kind).
pub fn recompute_sql(database: &str, starts: &[u16], computed_ms: i64) -> String {
    let dates: Vec<String> = starts
        .iter()
        .map(|day| format!("'{}'", format_date(i32::from(*day))))
        .collect();
    let filter = format!(
        "definition = ? AND period_kind = ? AND period_start IN ({})",
        dates.join(", ")
    );
    recompute_where(database, &filter, computed_ms)
}

/// The recompute of every period at once (rows loaded without the writer: fixtures, tests).
pub fn recompute_all_sql(database: &str, computed_ms: i64) -> String {
    recompute_where(database, "1", computed_ms)
}

/// Recomputes `periods`; returns how many.
pub async fn recompute(
    client: &Client,
    database: &str,
    periods: &BTreeSet<PeriodKey>,
) -> Result<usize, clickhouse::error::Error> {
    let computed_ms = now_ms();
    let mut groups: BTreeMap<(&str, &str), Vec<u16>> = BTreeMap::new();
    for key in periods {
        groups
            .entry((&key.definition, &key.period_kind))
            .or_default()
            .push(key.period_start);
    }
    for ((definition, kind), starts) in groups {
        // Bounded statements: a backfill touches hundreds of periods.
        for chunk in starts.chunks(64) {
            client
                .query(&recompute_sql(database, chunk, computed_ms))
                .bind(definition)
                .bind(kind)
                .execute()
                .await?;
        }
    }
    Ok(periods.len())
}

/// The periods of status rows landed at or after `since_ms` (every period when `None`).
pub async fn landed_periods(
    client: &Client,
    database: &str,
    since_ms: Option<i64>,
) -> Result<BTreeSet<PeriodKey>, clickhouse::error::Error> {
    let rows: Vec<(String, String, u16)> = client
        .query(&format!(
            "SELECT DISTINCT definition, period_kind, toUInt16(period_start) \
             FROM {database}.patient_status WHERE landed_time_ms >= ?"
        ))
        .bind(since_ms.unwrap_or(i64::MIN))
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|(definition, period_kind, period_start)| PeriodKey {
            definition,
            period_kind,
            period_start,
        })
        .collect())
}

/// What a writer that starts must recompute: the periods of rows landed since shortly before
/// the latest recompute (a writer stopped between landing rows and recomputing their periods
/// left them behind), or every period when nothing was ever recomputed.
pub async fn catch_up(client: &Client, database: &str) -> Result<usize, clickhouse::error::Error> {
    let latest: i64 = client
        .query(&format!(
            "SELECT max(computed_ms) FROM {database}.status_rollup"
        ))
        .fetch_one()
        .await?;
    let since = (latest > 0).then(|| latest - CATCH_UP_MARGIN_MS);
    let periods = landed_periods(client, database, since).await?;
    recompute(client, database, &periods).await
}

/// A recompute running beside the writing; on failure it gives its periods back.
type Running =
    tokio::task::JoinHandle<Result<usize, (BTreeSet<PeriodKey>, clickhouse::error::Error)>>;

/// Periods waiting for their recompute, and the recompute running now (beside the inserts,
/// so landing rows never waits for it).
pub struct Rollups {
    database: String,
    pending: BTreeSet<PeriodKey>,
    running: Option<Running>,
    last_run: Instant,
    interval: Duration,
}

impl Rollups {
    pub fn new(database: &str, interval: Duration) -> Self {
        Rollups {
            database: database.to_string(),
            pending: BTreeSet::new(),
            running: None,
            last_run: Instant::now(),
            interval,
        }
    }

    pub fn note(&mut self, periods: impl IntoIterator<Item = PeriodKey>) {
        self.pending.extend(periods);
    }

    /// Collects a recompute that finished (its periods wait again if it failed) and starts the
    /// next when one is due. When `stopping`, waits for what runs and recomputes what waits.
    /// Returns the outcome of a recompute that ended: periods recomputed, or why not.
    pub fn drive(
        &mut self,
        client: &Client,
        handle: &Handle,
        stopping: bool,
    ) -> Option<Result<usize, String>> {
        let mut outcome = None;
        if let Some(task) = self.running.take_if(|task| stopping || task.is_finished()) {
            outcome = Some(self.collect(handle.block_on(task)));
        }
        let due =
            !self.pending.is_empty() && (stopping || self.last_run.elapsed() >= self.interval);
        if self.running.is_none() && due {
            self.last_run = Instant::now();
            let periods = std::mem::take(&mut self.pending);
            let (client, database) = (client.clone(), self.database.clone());
            let task = handle.spawn(async move {
                match recompute(&client, &database, &periods).await {
                    Ok(done) => Ok(done),
                    Err(error) => Err((periods, error)),
                }
            });
            if stopping {
                outcome = Some(self.collect(handle.block_on(task)));
            } else {
                self.running = Some(task);
            }
        }
        outcome
    }

    fn collect(
        &mut self,
        joined: Result<
            Result<usize, (BTreeSet<PeriodKey>, clickhouse::error::Error)>,
            tokio::task::JoinError,
        >,
    ) -> Result<usize, String> {
        match joined {
            Ok(Ok(done)) => Ok(done),
            Ok(Err((periods, error))) => {
                self.pending.extend(periods);
                Err(error.to_string())
            }
            // Its periods are lost here; the next writer's catch-up recomputes them.
            Err(error) => Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recompute_names_its_periods_as_dates_and_binds_the_rest() {
        let sql = recompute_sql("vigil", &[20_089, 20_120], 1_750_000_000_000);
        assert!(
            sql.contains("period_start IN ('2025-01-01', '2025-02-01')"),
            "{sql}"
        );
        assert!(sql.contains("toInt64(1750000000000)"), "{sql}");
        assert!(sql.contains("definition = ? AND period_kind = ?"), "{sql}");
    }
}
