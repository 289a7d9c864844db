//! The dashboard's alerts and data-quality figures per hospital and day or month of the
//! reporting time zone (`event_rollup`, `alert_rollup`, `delivery_rollup`, `dead_letter_rollup`;
//! migration 0009): what the dashboard reads instead of every event, alert record, delivery and
//! dead letter.
//!
//! A cell is one activity's day (events) or month (the others). When the writer lands rows of a
//! cell, the cell is recomputed from the raw rows, every hospital at once, and stamped with the
//! time the recompute started (`sinks/sql/rollup_*.sql`): recomputed, never added to, so rows
//! replayed or landed twice count once. The source tables are partitioned by month of the cell's
//! time column, so a recompute reads only its months.

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Client;
use vigil_runtime::time::{civil_from_days, days_from_civil, local_day, MS_PER_DAY};

/// What a rollup counts, each from its own raw tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Activity {
    /// Events and late events, per day of clinical time.
    Events,
    /// Alert episodes, per month raised.
    Alerts,
    /// Notification outcomes, per month of the alert.
    Deliveries,
    /// Refused records, per month received.
    DeadLetters,
}

/// How long a cell lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    Day,
    Month,
}

impl Activity {
    pub const ALL: [Activity; 4] = [
        Activity::Events,
        Activity::Alerts,
        Activity::Deliveries,
        Activity::DeadLetters,
    ];

    fn grain(self) -> Grain {
        match self {
            Activity::Events => Grain::Day,
            _ => Grain::Month,
        }
    }

    /// The recompute; `{cells}` selects the source rows of the cells recomputed.
    fn statement(self) -> &'static str {
        match self {
            Activity::Events => include_str!("../../../sql/rollup_events.sql"),
            Activity::Alerts => include_str!("../../../sql/rollup_alerts.sql"),
            Activity::Deliveries => include_str!("../../../sql/rollup_deliveries.sql"),
            Activity::DeadLetters => include_str!("../../../sql/rollup_dead_letters.sql"),
        }
    }

    /// The rollup table.
    pub fn table(self) -> &'static str {
        match self {
            Activity::Events => "event_rollup",
            Activity::Alerts => "alert_rollup",
            Activity::Deliveries => "delivery_rollup",
            Activity::DeadLetters => "dead_letter_rollup",
        }
    }

    /// The source tables (whose landings the catch-up looks for).
    fn sources(self) -> &'static [&'static str] {
        match self {
            Activity::Events => &["clinical_events", "late_events"],
            Activity::Alerts => &["alerts"],
            Activity::Deliveries => &["alert_deliveries"],
            Activity::DeadLetters => &["dead_letters"],
        }
    }

    /// The source rows' time column the cell follows: their tables' partition key.
    fn time_column(self) -> &'static str {
        match self {
            Activity::Events => "event_time",
            // An episode's notifications all come at or after its start; its start is its cell.
            Activity::Alerts => "event_time",
            Activity::Deliveries => "alert_time",
            Activity::DeadLetters => "received_time",
        }
    }

    /// The source rows' cell (its first day), as SQL.
    fn cell_sql(self, offset_s: i64) -> String {
        let column = match self {
            Activity::Alerts => "episode_start",
            other => other.time_column(),
        };
        let day = format!("toDate(toDateTime(toUInt32({column}) + {offset_s}), 'UTC')");
        match self.grain() {
            Grain::Day => day,
            Grain::Month => format!("toStartOfMonth({day})"),
        }
    }

    /// Whether later source rows can belong to an earlier cell (an episode's acknowledgement
    /// comes after its month): then a recompute reads from its first cell on, not only its cells.
    fn open_ended(self) -> bool {
        self == Activity::Alerts
    }
}

/// One activity's day or month (the first day's number), every hospital.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    pub activity: Activity,
    pub start: i32,
}

impl Cell {
    /// The cell of a source row at `time_ms`, in a reporting zone `offset_minutes` east of UTC.
    pub fn of(activity: Activity, time_ms: i64, offset_minutes: i32) -> Cell {
        let day = local_day(time_ms, offset_minutes);
        let start = match activity.grain() {
            Grain::Day => day,
            Grain::Month => first_of_month(day),
        };
        Cell { activity, start }
    }

    /// The day after the cell's last.
    fn end(&self) -> i32 {
        match self.activity.grain() {
            Grain::Day => self.start + 1,
            Grain::Month => {
                let (year, month, _) = civil_from_days(self.start);
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, 1)
            }
        }
    }
}

fn first_of_month(day: i32) -> i32 {
    let (year, month, _) = civil_from_days(day);
    days_from_civil(year, month, 1)
}

/// The source rows of `cells` (one activity's), as a WHERE condition: their months (partition
/// pruning) and their cells.
fn cells_filter(activity: Activity, cells: &[Cell], offset_minutes: i32) -> String {
    let offset_s = i64::from(offset_minutes) * 60;
    let first = cells.iter().map(|c| c.start).min().unwrap_or(0);
    let last = cells.iter().map(Cell::end).max().unwrap_or(0);
    let bound = |day: i32| (i64::from(day) * MS_PER_DAY / 1000 - offset_s).max(0);
    let column = activity.time_column();
    let mut filter = format!("{column} >= toDateTime({})", bound(first));
    if !activity.open_ended() {
        filter += &format!(" AND {column} < toDateTime({})", bound(last));
    }
    let starts: Vec<String> = cells.iter().map(|c| c.start.to_string()).collect();
    filter += &format!(
        " AND has([{}], toInt32({}))",
        starts.join(", "),
        activity.cell_sql(offset_s)
    );
    filter
}

/// The recompute of one activity's cells (`None`: every cell), stamped `computed_ms`.
pub fn recompute_sql(
    database: &str,
    activity: Activity,
    cells: Option<&[Cell]>,
    offset_minutes: i32,
    computed_ms: i64,
) -> String {
    let filter = match cells {
        Some(cells) => cells_filter(activity, cells, offset_minutes),
        None => "1".to_string(),
    };
    activity
        .statement()
        .replace("{db}", database)
        .replace("{cells}", &filter)
        .replace("{offset_s}", &(i64::from(offset_minutes) * 60).to_string())
        .replace("{computed_ms}", &computed_ms.to_string())
}

/// Recomputes `cells`, one statement per activity and month (a backfill touches hundreds of
/// days, and a statement reads its months only); returns how many cells.
pub async fn recompute(
    client: &Client,
    database: &str,
    cells: &BTreeSet<Cell>,
    offset_minutes: i32,
    computed_ms: i64,
) -> Result<usize, clickhouse::error::Error> {
    let mut groups: BTreeMap<(Activity, i32), Vec<Cell>> = BTreeMap::new();
    for cell in cells {
        let month = first_of_month(cell.start);
        groups
            .entry((cell.activity, month))
            .or_default()
            .push(*cell);
    }
    for ((activity, _), group) in groups {
        let sql = recompute_sql(
            database,
            activity,
            Some(&group),
            offset_minutes,
            computed_ms,
        );
        client.query(&sql).execute().await?;
    }
    Ok(cells.len())
}

/// The queries of one activity's cells of source rows landed from a time on (bound), one per
/// source table.
pub fn landed_sql(database: &str, activity: Activity, offset_minutes: i32) -> Vec<String> {
    let cell = activity.cell_sql(i64::from(offset_minutes) * 60);
    activity
        .sources()
        .iter()
        .map(|table| {
            format!(
                "SELECT DISTINCT toInt32({cell}) FROM {database}.{table} \
                 WHERE landed_time_ms >= ?"
            )
        })
        .collect()
}

/// One activity's cells of source rows landed at or after `since_ms` (every cell when `None`).
pub async fn landed_cells(
    client: &Client,
    database: &str,
    activity: Activity,
    since_ms: Option<i64>,
    offset_minutes: i32,
) -> Result<BTreeSet<Cell>, clickhouse::error::Error> {
    let mut cells = BTreeSet::new();
    for sql in landed_sql(database, activity, offset_minutes) {
        let starts: Vec<i32> = client
            .query(&sql)
            .bind(since_ms.unwrap_or(i64::MIN))
            .fetch_all()
            .await?;
        cells.extend(starts.into_iter().map(|start| Cell { activity, start }));
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_runtime::time::parse_date;

    fn day(text: &str) -> i32 {
        parse_date(text).unwrap()
    }

    #[test]
    fn a_cell_is_the_local_day_or_month_of_its_row() {
        // 2025-12-31 17:00 UTC is 2026-01-01 01:00 in China.
        let ms = i64::from(day("2025-12-31")) * MS_PER_DAY + 17 * 3_600_000;
        assert_eq!(Cell::of(Activity::Events, ms, 480).start, day("2026-01-01"));
        assert_eq!(Cell::of(Activity::Events, ms, 0).start, day("2025-12-31"));
        assert_eq!(Cell::of(Activity::Alerts, ms, 480).start, day("2026-01-01"));
        assert_eq!(
            Cell::of(Activity::DeadLetters, ms, 0).start,
            day("2025-12-01")
        );
        let december = Cell::of(Activity::Deliveries, ms, 0);
        assert_eq!(december.end(), day("2026-01-01"));
    }

    #[test]
    fn the_filter_reads_the_cells_months_in_utc_and_names_each_cell() {
        let cells = [
            Cell {
                activity: Activity::Events,
                start: day("2026-03-01"),
            },
            Cell {
                activity: Activity::Events,
                start: day("2026-03-05"),
            },
        ];
        let filter = cells_filter(Activity::Events, &cells, 480);
        // 2026-03-01 00:00 at UTC+8 is 2026-02-28 16:00 UTC.
        let from = i64::from(day("2026-03-01")) * 86_400 - 28_800;
        let to = i64::from(day("2026-03-06")) * 86_400 - 28_800;
        assert!(
            filter.contains(&format!("event_time >= toDateTime({from})")),
            "{filter}"
        );
        assert!(
            filter.contains(&format!("event_time < toDateTime({to})")),
            "{filter}"
        );
        assert!(
            filter.contains(&format!(
                "has([{}, {}]",
                day("2026-03-01"),
                day("2026-03-05")
            )),
            "{filter}"
        );
        // An episode's later notifications are read too.
        let alerts = [Cell {
            activity: Activity::Alerts,
            start: day("2026-03-01"),
        }];
        let filter = cells_filter(Activity::Alerts, &alerts, 480);
        assert!(!filter.contains("event_time <"), "{filter}");
        assert!(filter.contains("toUInt32(episode_start)"), "{filter}");
    }
}
