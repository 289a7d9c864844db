//! The dashboard's queries and the figures they return. The SQL is in `serve/sql/` (one file a
//! query, each with example binds), run on ClickHouse 18.16 by the tests and on a current
//! engine by `deploy/clickhouse/check_current.py`. Periods are computed there, in the reporting
//! time zone, never in the browser: `{today}` is today's date at the reporting offset.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::ServeError;

/// Today's date in the reporting time zone; `?` is the offset in seconds.
const LOCAL_TODAY: &str = include_str!("../sql/local_today.sql");
const DEFINITION: &str = include_str!("../sql/definition.sql");
const HEADLINE: &str = include_str!("../sql/headline.sql");
const TREND: &str = include_str!("../sql/trend.sql");
const HOSPITALS: &str = include_str!("../sql/hospitals.sql");
const ALERTS: &str = include_str!("../sql/alerts.sql");
const LATEST_ALERTS: &str = include_str!("../sql/latest_alerts.sql");
const HOSPITAL_RATES: &str = include_str!("../sql/hospital_rates.sql");
const ALERT_MONTHS: &str = include_str!("../sql/alert_months.sql");
const CURRENT_MONTH: &str = include_str!("../sql/current_month.sql");
const ALERT_EPISODES: &str = include_str!("../sql/alert_episodes.sql");
const DELIVERIES: &str = include_str!("../sql/deliveries.sql");
const QUALITY: &str = include_str!("../sql/quality.sql");
const REJECTIONS: &str = include_str!("../sql/rejections.sql");
const DRILLDOWN: &str = include_str!("../sql/drilldown.sql");

/// Everything the overview page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The metric definition the figures follow; `None` before any status row exists.
    pub definition: Option<String>,
    pub conditions: Vec<ConditionFigures>,
    /// Each hospital's figures for the same year, per condition: they sum to `conditions`.
    pub hospital_rates: Vec<HospitalRates>,
    pub hospitals: Vec<HospitalFreshness>,
    pub alerts: AlertFigures,
    /// The newest alert episodes raised, newest first.
    pub latest_alerts: Vec<LatestAlert>,
    pub alert_activity: AlertActivity,
    /// Per hospital: what arrived, what was late, how long data took to land.
    pub quality: Vec<HospitalQuality>,
    /// Records refused per hospital, stage and reason.
    pub rejections: Vec<Rejections>,
    /// The newest year per condition, region, hospital and managing department (see
    /// `drilldown`).
    pub drilldown: Vec<DrillCell>,
}

/// One condition, region, hospital and managing department of the newest year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct DrillCell {
    pub condition: String,
    pub region_code: String,
    pub hospital_id: String,
    pub department_code: String,
    pub managed: u64,
    pub standardised: u64,
    pub controlled: u64,
}

/// What the alerts did: episodes per month, per rule, and the notifications' outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertActivity {
    /// The reporting time zone's current month (its first day): the last, unfinished one.
    pub current_month: String,
    /// Episodes raised per month (reporting time zone), rule and severity; 18 months.
    pub months: Vec<AlertMonth>,
    pub episodes: Vec<EpisodeFigures>,
    pub deliveries: Vec<DeliveryOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct AlertMonth {
    pub month: String,
    pub rule_id: String,
    pub severity: String,
    pub raised: u64,
}

/// One rule and severity: episodes, still open, acknowledged, and how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct EpisodeFigures {
    pub rule_id: String,
    pub severity: String,
    pub episodes: u64,
    pub open: u64,
    pub acknowledged: u64,
    /// None when no episode was acknowledged.
    pub median_minutes_to_acknowledge: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct DeliveryOutcome {
    pub outcome: String,
    pub alerts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct HospitalQuality {
    pub hospital_id: String,
    pub events: u64,
    pub late: u64,
    /// From clinical time to first landing, over the events of the hospital's newest day of
    /// clinical time (reporting time zone).
    pub lag_p50_minutes: f64,
    pub lag_p95_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct Rejections {
    pub hospital_id: String,
    pub stage: String,
    pub reason_code: String,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct HospitalRates {
    pub hospital_id: String,
    pub condition: String,
    pub managed: u64,
    pub standardised: u64,
    pub controlled: u64,
    pub complications: u64,
    pub years: f64,
    /// Managed patients at high or very high cardiovascular risk (case mix).
    pub high_risk: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct LatestAlert {
    pub alert_id: String,
    /// In the reporting time zone.
    pub time: String,
    pub hospital_id: String,
    pub rule_id: String,
    pub severity: String,
    pub message: String,
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
    let latest_alerts = latest_alerts(client, offset_s).await?;
    let alert_activity = alert_activity(client, offset_s).await?;
    let (quality, rejections) = quality(client).await?;
    let definition = client
        .query(DEFINITION)
        .fetch_optional::<String>()
        .await
        .map_err(failed("definition"))?;
    let Some(definition) = definition else {
        return Ok(Overview {
            definition: None,
            conditions: Vec::new(),
            hospital_rates: Vec::new(),
            hospitals,
            alerts: AlertFigures::default(),
            latest_alerts,
            alert_activity,
            quality,
            rejections,
            drilldown: Vec::new(),
        });
    };
    let headline = client
        .query(&HEADLINE.replace("{today}", LOCAL_TODAY.trim()))
        .bind(offset_s)
        .bind(&definition)
        .bind(&definition)
        .fetch_all::<HeadlineRow>()
        .await
        .map_err(failed("headline"))?;
    let hospital_rates = client
        .query(HOSPITAL_RATES)
        .bind(&definition)
        .bind(&definition)
        .fetch_all::<HospitalRates>()
        .await
        .map_err(failed("hospital rates"))?;
    let drilldown = client
        .query(DRILLDOWN)
        .bind(&definition)
        .bind(&definition)
        .fetch_all::<DrillCell>()
        .await
        .map_err(failed("drill-down"))?;
    let year_start = headline.first().map(|h| h.start.clone());
    let alerts = match &year_start {
        Some(start) => client
            .query(ALERTS)
            .bind(start)
            .fetch_one::<AlertFigures>()
            .await
            .map_err(failed("alerts"))?,
        None => AlertFigures::default(),
    };
    let conditions = conditions(client, offset_s, &definition, headline).await?;
    Ok(Overview {
        definition: Some(definition),
        conditions,
        hospital_rates,
        hospitals,
        alerts,
        latest_alerts,
        alert_activity,
        quality,
        rejections,
        drilldown,
    })
}

/// How far before the newest alert the latest alerts are looked for first: a month.
const LATEST_WINDOW_S: i64 = 31 * 86_400;

/// The ten newest alert episodes raised: from the last month's alerts, or, when that month holds
/// fewer than ten, from all of them.
async fn latest_alerts(client: &Client, offset_s: i64) -> Result<Vec<LatestAlert>, ServeError> {
    let within = |window_s: i64| {
        client
            .query(LATEST_ALERTS)
            .bind(offset_s)
            .bind(window_s)
            .fetch_all::<LatestAlert>()
    };
    let latest = within(LATEST_WINDOW_S)
        .await
        .map_err(failed("latest alerts"))?;
    if latest.len() >= 10 {
        return Ok(latest);
    }
    within(i64::from(u32::MAX))
        .await
        .map_err(failed("latest alerts"))
}

/// Alert episodes by month and by rule, and the notifications' outcomes.
async fn alert_activity(client: &Client, offset_s: i64) -> Result<AlertActivity, ServeError> {
    let months = client
        .query(&ALERT_MONTHS.replace("{today}", LOCAL_TODAY.trim()))
        .bind(offset_s)
        .fetch_all::<AlertMonth>()
        .await
        .map_err(failed("alert months"))?;
    let current_month = client
        .query(&CURRENT_MONTH.replace("{today}", LOCAL_TODAY.trim()))
        .bind(offset_s)
        .fetch_one::<String>()
        .await
        .map_err(failed("current month"))?;
    let episodes = client
        .query(ALERT_EPISODES)
        .fetch_all::<EpisodeFigures>()
        .await
        .map_err(failed("alert episodes"))?;
    let deliveries = client
        .query(DELIVERIES)
        .fetch_all::<DeliveryOutcome>()
        .await
        .map_err(failed("deliveries"))?;
    Ok(AlertActivity {
        current_month,
        months,
        episodes,
        deliveries,
    })
}

/// Data quality per hospital, and refusals by reason.
async fn quality(client: &Client) -> Result<(Vec<HospitalQuality>, Vec<Rejections>), ServeError> {
    let quality = client
        .query(QUALITY)
        .fetch_all::<HospitalQuality>()
        .await
        .map_err(failed("data quality"))?;
    let rejections = client
        .query(REJECTIONS)
        .fetch_all::<Rejections>()
        .await
        .map_err(failed("rejections"))?;
    Ok((quality, rejections))
}

/// The headline figures per condition with their 18-month trends.
async fn conditions(
    client: &Client,
    offset_s: i64,
    definition: &str,
    headline: Vec<HeadlineRow>,
) -> Result<Vec<ConditionFigures>, ServeError> {
    let trend = client
        .query(&TREND.replace("{today}", LOCAL_TODAY.trim()))
        .bind(offset_s)
        .bind(definition)
        .bind(offset_s)
        .fetch_all::<TrendRow>()
        .await
        .map_err(failed("trend"))?;
    let months = |condition: &str| -> Vec<MonthFigures> {
        trend
            .iter()
            .filter(|t| t.condition == condition)
            .map(|t| MonthFigures {
                start: t.start.clone(),
                finished: t.finished == 1,
                managed: t.managed,
                standardised: t.standardised,
                controlled: t.controlled,
            })
            .collect()
    };
    Ok(headline
        .into_iter()
        .map(|h| ConditionFigures {
            trend: months(&h.condition),
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
        .collect())
}
