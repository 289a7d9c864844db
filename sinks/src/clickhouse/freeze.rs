//! Final periods' outcome figures, published once and restated when they change
//! (`published_metrics`, migration 0011). A period is final once it closed and the processor's
//! allowed lateness passed. The writer then publishes the period's figures per hospital,
//! condition and region of registration as version 1; afterwards, each cell whose figures differ
//! from its latest version (an event that arrived later still, a merge, a correction) gets a new
//! version with the reason. The API serves version 1 as what was published and lists the rest as
//! restatements, so a payment can always be recomputed from what the bureau pulled.

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use vigil_runtime::time::{period_end, Reporting};

/// One version of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Row)]
pub struct PublishedCell {
    pub definition: String,
    pub period_kind: String,
    pub period_start: u16,
    pub hospital_id: String,
    pub condition: String,
    pub region_code: String,
    pub managed: u64,
    pub standardised: u64,
    pub controlled: u64,
    pub complications: u64,
    pub managed_days: u64,
    pub version: u32,
    pub published_ms: i64,
    pub reason: String,
}

/// A cell's figures now (from the rollup) or as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Row)]
struct Figures {
    definition: String,
    period_kind: String,
    period_start: u16,
    hospital_id: String,
    condition: String,
    region_code: String,
    managed: u64,
    standardised: u64,
    controlled: u64,
    complications: u64,
    managed_days: u64,
    /// 0 for the rollup's figures.
    version: u32,
}

type CellKey = (String, String, u16, String, String, String);
type PeriodKey = (String, String, u16);

impl Figures {
    fn key(&self) -> CellKey {
        (
            self.definition.clone(),
            self.period_kind.clone(),
            self.period_start,
            self.hospital_id.clone(),
            self.condition.clone(),
            self.region_code.clone(),
        )
    }

    fn period(&self) -> PeriodKey {
        (
            self.definition.clone(),
            self.period_kind.clone(),
            self.period_start,
        )
    }

    fn counts(&self) -> [(&'static str, u64); 5] {
        [
            ("managed", self.managed),
            ("standardised", self.standardised),
            ("controlled", self.controlled),
            ("complications", self.complications),
            ("managed_days", self.managed_days),
        ]
    }

    fn published(&self, version: u32, published_ms: i64, reason: String) -> PublishedCell {
        PublishedCell {
            definition: self.definition.clone(),
            period_kind: self.period_kind.clone(),
            period_start: self.period_start,
            hospital_id: self.hospital_id.clone(),
            condition: self.condition.clone(),
            region_code: self.region_code.clone(),
            managed: self.managed,
            standardised: self.standardised,
            controlled: self.controlled,
            complications: self.complications,
            managed_days: self.managed_days,
            version,
            published_ms,
            reason,
        }
    }
}

/// What one run published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frozen {
    /// Cells of periods published for the first time.
    pub published: usize,
    /// Cells restated.
    pub restated: usize,
}

const CURRENT: &str = "SELECT definition, period_kind, toUInt16(start) AS period_start, \
    hospital_id, condition, region_code, m AS managed, s AS standardised, c AS controlled, \
    x AS complications, d AS managed_days, toUInt32(0) AS version FROM \
    (SELECT definition, period_kind, period_start AS start, hospital_id, condition, region_code, \
     sum(managed) AS m, sum(standardised) AS s, sum(controlled) AS c, sum(complications) AS x, \
     sum(days) AS d FROM {db}.status_rollup_latest WHERE period_start < toDate(?) \
     GROUP BY definition, period_kind, start, hospital_id, condition, region_code)";

const LATEST: &str = "SELECT definition, period_kind, start AS period_start, hospital_id, \
    condition, region_code, m AS managed, s AS standardised, c AS controlled, \
    x AS complications, d AS managed_days, v AS version FROM \
    (SELECT definition, period_kind, toUInt16(period_start) AS start, hospital_id, condition, \
     region_code, argMax(managed, version) AS m, argMax(standardised, version) AS s, \
     argMax(controlled, version) AS c, argMax(complications, version) AS x, \
     argMax(managed_days, version) AS d, max(version) AS v \
     FROM {db}.published_metrics \
     GROUP BY definition, period_kind, start, hospital_id, condition, region_code)";

/// Publishes the periods that became final and restates the published cells that changed;
/// `now_ms` decides which periods are final.
pub async fn freeze(
    client: &Client,
    database: &str,
    reporting: &Reporting,
    now_ms: i64,
) -> Result<Frozen, clickhouse::error::Error> {
    // No period starting later than this can have closed.
    let today = vigil_runtime::time::local_day(now_ms, reporting.utc_offset_minutes);
    let current: Vec<Figures> = client
        .query(&CURRENT.replace("{db}", database))
        .bind(vigil_runtime::time::format_date(today))
        .fetch_all()
        .await?;
    let latest: Vec<Figures> = client
        .query(&LATEST.replace("{db}", database))
        .fetch_all()
        .await?;
    let rows = changes(&current, &latest, reporting, now_ms);
    let frozen = Frozen {
        published: rows.iter().filter(|r| r.version == 1).count(),
        restated: rows.iter().filter(|r| r.version > 1).count(),
    };
    if !rows.is_empty() {
        // The crate quotes a table name whole: the database goes on the client.
        let mut insert = client
            .clone()
            .with_database(database)
            .insert::<PublishedCell>("published_metrics")
            .await?;
        for row in &rows {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    Ok(frozen)
}

/// The versions to add: every cell of a final period never published, and a new version of
/// each published cell whose figures differ now (a cell absent on either side counts as zeros).
fn changes(
    current: &[Figures],
    latest: &[Figures],
    reporting: &Reporting,
    now_ms: i64,
) -> Vec<PublishedCell> {
    let is_final = |f: &Figures| {
        let end = period_end(&f.period_kind, i32::from(f.period_start));
        reporting.is_final(end, now_ms)
    };
    let published_periods: BTreeSet<PeriodKey> = latest.iter().map(Figures::period).collect();
    let now: BTreeMap<CellKey, &Figures> = current
        .iter()
        .filter(|f| is_final(f))
        .map(|f| (f.key(), f))
        .collect();
    let before: BTreeMap<CellKey, &Figures> = latest.iter().map(|f| (f.key(), f)).collect();
    let mut rows: Vec<PublishedCell> = now
        .values()
        .filter(|f| !published_periods.contains(&f.period()))
        .map(|f| f.published(1, now_ms, "first_publication".into()))
        .collect();
    let keys: BTreeSet<&CellKey> = now
        .keys()
        .filter(|k| published_periods.contains(&(k.0.clone(), k.1.clone(), k.2)))
        .chain(before.keys())
        .collect();
    for key in keys {
        let zero = |version| Figures {
            definition: key.0.clone(),
            period_kind: key.1.clone(),
            period_start: key.2,
            hospital_id: key.3.clone(),
            condition: key.4.clone(),
            region_code: key.5.clone(),
            version,
            ..Figures::default()
        };
        let was = before.get(key).map_or_else(|| zero(1), |f| (*f).clone());
        let is = now.get(key).map_or_else(|| zero(0), |f| (*f).clone());
        let changed: Vec<String> = was
            .counts()
            .iter()
            .zip(is.counts())
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{} {} -> {}", a.0, a.1, b.1))
            .collect();
        if !changed.is_empty() {
            let reason = format!("late_data: {}", changed.join(", "));
            rows.push(is.published(was.version + 1, now_ms, reason));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vigil_runtime::time::days_from_civil;

    fn cell(hospital: &str, managed: u64, controlled: u64, version: u32) -> Figures {
        Figures {
            definition: "cn-nbphs-2017/v1".into(),
            period_kind: "QUARTER".into(),
            period_start: days_from_civil(2025, 1, 1) as u16,
            hospital_id: hospital.into(),
            condition: "HYPERTENSION".into(),
            region_code: "330106".into(),
            managed,
            controlled,
            version,
            ..Figures::default()
        }
    }

    #[test]
    fn a_final_period_is_published_once_and_restated_only_when_it_changes() {
        let reporting = Reporting {
            utc_offset_minutes: 480,
            allowed_lateness: Duration::from_secs(60 * 86_400),
        };
        // 2025Q1 closes 2025-04-01 (UTC+8) and is final 60 days later.
        let closes = vigil_runtime::time::local_day_start_ms(days_from_civil(2025, 4, 1), 480);
        let final_at = closes + 60 * 86_400_000;
        let now = [cell("H1", 40, 25, 0)];
        assert!(changes(&now, &[], &reporting, final_at - 1).is_empty());
        let first = changes(&now, &[], &reporting, final_at);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].version, first[0].reason.as_str()),
            (1, "first_publication")
        );
        // Published, unchanged: nothing. A late event: version 2 with what changed.
        assert!(changes(&now, &[cell("H1", 40, 25, 1)], &reporting, final_at + 1).is_empty());
        let late = [cell("H1", 41, 26, 0), cell("H2", 12, 11, 0)];
        let restated = changes(&late, &[cell("H1", 40, 25, 1)], &reporting, final_at + 1);
        assert_eq!(restated.len(), 2);
        assert_eq!(restated[0].version, 2);
        assert_eq!(
            restated[0].reason,
            "late_data: managed 40 -> 41, controlled 25 -> 26"
        );
        // A hospital first seen after publication: its version 1 was implicitly zero.
        assert_eq!(
            (restated[1].hospital_id.as_str(), restated[1].version),
            ("H2", 2)
        );
    }
}
