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

use clickhouse::Client;
use vigil_runtime::time::format_date;

/// One reporting period of one definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeriodKey {
    pub definition: String,
    pub period_kind: String,
    /// ClickHouse `Date`: days since 1970-01-01.
    pub period_start: u16,
}

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

/// Recomputes `periods`, stamped `computed_ms`; returns how many.
pub async fn recompute(
    client: &Client,
    database: &str,
    periods: &BTreeSet<PeriodKey>,
    computed_ms: i64,
) -> Result<usize, clickhouse::error::Error> {
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
