//! The dashboard's rollups, kept by the writer: the pilot's figures per period (`status`) and
//! the alerts' and data quality's per day or month (`activity`). Both are recomputed from the raw
//! rows whenever the writer lands rows they count, beside the inserts, never added to.

pub mod activity;
pub mod status;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio::runtime::Handle;
use vigil_runtime::time::now_ms;

pub use activity::{Activity, Cell};
pub use status::PeriodKey;

/// How long before the latest recompute a restarted writer looks for landed rows: rows another
/// writer landed while its recompute ran, and clocks a little apart.
const CATCH_UP_MARGIN_MS: i64 = 60_000;

/// What waits for a recompute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stale {
    pub periods: BTreeSet<PeriodKey>,
    pub cells: BTreeSet<Cell>,
}

impl Stale {
    pub fn is_empty(&self) -> bool {
        self.periods.is_empty() && self.cells.is_empty()
    }

    pub fn extend(&mut self, other: Stale) {
        self.periods.extend(other.periods);
        self.cells.extend(other.cells);
    }

    pub fn len(&self) -> usize {
        self.periods.len() + self.cells.len()
    }
}

/// Recomputes what `stale` names, stamped with the time it started; returns how many periods
/// and cells.
pub async fn recompute(
    client: &Client,
    database: &str,
    stale: &Stale,
    offset_minutes: i32,
) -> Result<usize, clickhouse::error::Error> {
    let computed_ms = now_ms();
    status::recompute(client, database, &stale.periods, computed_ms).await?;
    activity::recompute(client, database, &stale.cells, offset_minutes, computed_ms).await?;
    Ok(stale.len())
}

/// Which landed rows [`landed`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landings {
    /// Those since each rollup's latest recompute, less a margin (a writer stopped between
    /// landing rows and recomputing left them behind); all of a rollup's when it was never
    /// recomputed (a first start, a rollup a migration added).
    SinceLatestRecompute,
    /// All of them (`vigil rollup`, rows loaded without the writer).
    All,
}

/// What the rows `landings` names count in.
pub async fn landed(
    client: &Client,
    database: &str,
    landings: Landings,
    offset_minutes: i32,
) -> Result<Stale, clickhouse::error::Error> {
    let since = |table: &'static str| {
        let client = client.clone();
        async move {
            if landings == Landings::All {
                return Ok::<_, clickhouse::error::Error>(None);
            }
            let latest: i64 = client
                .query(&format!("SELECT max(computed_ms) FROM {database}.{table}"))
                .fetch_one()
                .await?;
            Ok((latest > 0).then(|| latest - CATCH_UP_MARGIN_MS))
        }
    };
    let mut stale = Stale {
        periods: status::landed_periods(client, database, since("status_rollup").await?).await?,
        cells: BTreeSet::new(),
    };
    for activity in Activity::ALL {
        let from = since(activity.table()).await?;
        stale.cells.extend(
            activity::landed_cells(client, database, activity, from, offset_minutes).await?,
        );
    }
    Ok(stale)
}

/// What a writer that starts must recompute (see [`landed`]); returns how many periods and
/// cells it recomputed.
pub async fn catch_up(
    client: &Client,
    database: &str,
    offset_minutes: i32,
) -> Result<usize, clickhouse::error::Error> {
    let stale = landed(
        client,
        database,
        Landings::SinceLatestRecompute,
        offset_minutes,
    )
    .await?;
    recompute(client, database, &stale, offset_minutes).await
}

/// A recompute running beside the writing; on failure it gives back what it was to recompute.
type Running = tokio::task::JoinHandle<Result<usize, (Stale, clickhouse::error::Error)>>;

/// What waits for its recompute, and the recompute running now (beside the inserts, so landing
/// rows never waits for it).
pub struct Rollups {
    database: String,
    offset_minutes: i32,
    pending: Stale,
    running: Option<Running>,
    last_run: Instant,
    interval: Duration,
}

impl Rollups {
    pub fn new(database: &str, interval: Duration, offset_minutes: i32) -> Self {
        Rollups {
            database: database.to_string(),
            offset_minutes,
            pending: Stale::default(),
            running: None,
            last_run: Instant::now(),
            interval,
        }
    }

    pub fn offset_minutes(&self) -> i32 {
        self.offset_minutes
    }

    pub fn note(&mut self, stale: Stale) {
        self.pending.extend(stale);
    }

    /// Collects a recompute that finished (what it held waits again if it failed) and starts the
    /// next when one is due. When `stopping`, waits for what runs and recomputes what waits.
    /// Returns the outcome of a recompute that ended: periods and cells recomputed, or why not.
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
            let stale = std::mem::take(&mut self.pending);
            let (client, database, offset) =
                (client.clone(), self.database.clone(), self.offset_minutes);
            let task = handle.spawn(async move {
                match recompute(&client, &database, &stale, offset).await {
                    Ok(done) => Ok(done),
                    Err(error) => Err((stale, error)),
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
        joined: Result<Result<usize, (Stale, clickhouse::error::Error)>, tokio::task::JoinError>,
    ) -> Result<usize, String> {
        match joined {
            Ok(Ok(done)) => Ok(done),
            Ok(Err((stale, error))) => {
                self.pending.extend(stale);
                Err(error.to_string())
            }
            // What it held is lost here; the next writer's catch-up recomputes it.
            Err(error) => Err(error.to_string()),
        }
    }
}
