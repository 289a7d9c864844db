//! The dashboard's SQL (ClickHouse 18.16 and current) and the figures it returns. Periods are
//! computed here, in the reporting time zone, never in the browser: `LOCAL_TODAY` is today's
//! date at the reporting offset (bound in seconds).

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::ServeError;

/// Today's date in the reporting time zone; `?` is the offset in seconds.
const LOCAL_TODAY: &str = "toDate(toDateTime(toUInt32(now()) + ?), 'UTC')";

/// The metric definition of the newest yearly rows (a deployment switches definitions rarely;
/// the page shows the one in force).
const DEFINITION: &str = "SELECT definition FROM patient_status WHERE period_kind = 'YEAR' \
    ORDER BY period_start DESC LIMIT 1";

/// The newest reporting year with figures, per condition, summed over hospitals.
const HEADLINE: &str = "SELECT condition, toString(period_start) AS start, \
    toString(addDays(addYears(period_start, 1), -1)) AS end, \
    addYears(period_start, 1) <= {today} AS finished, \
    sum(managed_patients) AS managed, sum(standardised_patients) AS standardised, \
    sum(controlled_patients) AS controlled, sum(new_complications) AS complications, \
    sum(patient_years) AS years \
    FROM pilot_metrics WHERE definition = ? AND period_kind = 'YEAR' \
    AND period_start = (SELECT max(period_start) FROM patient_status \
                        WHERE definition = ? AND period_kind = 'YEAR') \
    GROUP BY condition, period_start ORDER BY condition";

/// The last 18 months, per condition, summed over hospitals.
const TREND: &str = "SELECT condition, toString(period_start) AS start, \
    addMonths(period_start, 1) <= {today} AS finished, \
    sum(managed_patients) AS managed, sum(standardised_patients) AS standardised, \
    sum(controlled_patients) AS controlled \
    FROM pilot_metrics WHERE definition = ? AND period_kind = 'MONTH' \
    AND period_start >= addMonths(toStartOfMonth({today}), -17) \
    GROUP BY condition, period_start ORDER BY condition, period_start";

/// Each hospital that sent anything: how much, and how fresh its newest data is.
const HOSPITALS: &str = "SELECT hospital_id, uniqExact(event_id) AS events, \
    max(event_time_ms) AS newest_event_ms, max(landed_time_ms) AS newest_landed_ms \
    FROM clinical_events GROUP BY hospital_id ORDER BY hospital_id";

/// Alert episodes raised, and acknowledged, in a period (local dates, from the first bound on).
const ALERTS: &str = "SELECT uniqExactIf(episode_id, status = 'RAISED') AS raised, \
    uniqExactIf(episode_id, status = 'ACKNOWLEDGED') AS acknowledged \
    FROM alerts FINAL \
    WHERE toDate(toDateTime(intDiv(event_time_ms, 1000) + ?), 'UTC') >= toDate(?)";

/// Everything the overview page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The metric definition the figures follow; `None` before any status row exists.
    pub definition: Option<String>,
    pub conditions: Vec<ConditionFigures>,
    pub hospitals: Vec<HospitalFreshness>,
    pub alerts: AlertFigures,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionFigures {
    pub condition: String,
    pub period: Period,
    pub managed: u64,
    pub standardised: u64,
    pub controlled: u64,
    pub new_complications: u64,
    pub patient_years: f64,
    /// Month by month, oldest first; the unfinished month last.
    pub trend: Vec<MonthFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub kind: String,
    pub start: String,
    pub end: String,
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthFigures {
    pub start: String,
    pub finished: bool,
    pub managed: u64,
    pub standardised: u64,
    pub controlled: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct HospitalFreshness {
    pub hospital_id: String,
    pub events: u64,
    pub newest_event_ms: i64,
    pub newest_landed_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Row)]
pub struct AlertFigures {
    pub raised: u64,
    pub acknowledged: u64,
}

#[derive(Debug, Deserialize, Row)]
struct HeadlineRow {
    condition: String,
    start: String,
    end: String,
    finished: u8,
    managed: u64,
    standardised: u64,
    controlled: u64,
    complications: u64,
    years: f64,
}

#[derive(Debug, Deserialize, Row)]
struct TrendRow {
    condition: String,
    start: String,
    finished: u8,
    managed: u64,
    standardised: u64,
    controlled: u64,
}

fn failed(what: &'static str) -> impl FnOnce(clickhouse::error::Error) -> ServeError {
    move |source| ServeError::Query { what, source }
}

/// The overview's figures; `utc_offset_minutes` is the reporting time zone.
pub async fn overview(client: &Client, utc_offset_minutes: i32) -> Result<Overview, ServeError> {
    let offset_s = i64::from(utc_offset_minutes) * 60;
    let hospitals = client
        .query(HOSPITALS)
        .fetch_all::<HospitalFreshness>()
        .await
        .map_err(failed("hospitals"))?;
    let definition = client
        .query(DEFINITION)
        .fetch_optional::<String>()
        .await
        .map_err(failed("definition"))?;
    let Some(definition) = definition else {
        return Ok(Overview {
            definition: None,
            conditions: Vec::new(),
            hospitals,
            alerts: AlertFigures::default(),
        });
    };
    let headline = client
        .query(&HEADLINE.replace("{today}", LOCAL_TODAY))
        .bind(offset_s)
        .bind(&definition)
        .bind(&definition)
        .fetch_all::<HeadlineRow>()
        .await
        .map_err(failed("headline"))?;
    let trend = client
        .query(&TREND.replace("{today}", LOCAL_TODAY))
        .bind(offset_s)
        .bind(&definition)
        .bind(offset_s)
        .fetch_all::<TrendRow>()
        .await
        .map_err(failed("trend"))?;
    let year_start = headline.first().map(|h| h.start.clone());
    let alerts = match &year_start {
        Some(start) => client
            .query(ALERTS)
            .bind(offset_s)
            .bind(start)
            .fetch_one::<AlertFigures>()
            .await
            .map_err(failed("alerts"))?,
        None => AlertFigures::default(),
    };
    let conditions = headline
        .into_iter()
        .map(|h| ConditionFigures {
            trend: trend
                .iter()
                .filter(|t| t.condition == h.condition)
                .map(|t| MonthFigures {
                    start: t.start.clone(),
                    finished: t.finished == 1,
                    managed: t.managed,
                    standardised: t.standardised,
                    controlled: t.controlled,
                })
                .collect(),
            condition: h.condition,
            period: Period {
                kind: "YEAR".into(),
                start: h.start,
                end: h.end,
                finished: h.finished == 1,
            },
            managed: h.managed,
            standardised: h.standardised,
            controlled: h.controlled,
            new_complications: h.complications,
            patient_years: h.years,
        })
        .collect();
    Ok(Overview {
        definition: Some(definition),
        conditions,
        hospitals,
        alerts,
    })
}
