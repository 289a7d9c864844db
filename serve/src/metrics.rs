//! The outcome metrics as the insurance bureau pulls them (`/api/v1/metrics`): each metric's
//! definition, and a period's cells per hospital and condition with numerator, denominator,
//! value, whether the period is final, and the flags a payer must see (DASHBOARD.md: CMS cell
//! suppression with its complement, AIHW/CMS reliability). JSON, CSV and FHIR R4 MeasureReport.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::ServeError;

const METRIC_CELLS: &str = include_str!("../sql/metric_cells.sql");
const PUBLISHED_CELLS: &str = include_str!("../sql/published_cells.sql");
const PUBLISHED_VERSIONS: &str = include_str!("../sql/published_versions.sql");

/// Where Vigil's Measure resources are named (the canonical URL of each metric).
pub const MEASURE_BASE: &str = "https://vigil.invalid/fhir/Measure";

/// Counts from 1 to this are never published, nor the cells they could be derived from.
pub const MIN_CELL: u64 = 11;
/// Rates over fewer patients are flagged unreliable (CMS footnotes rates of fewer than 25).
pub const RELIABLE_DENOMINATOR: u64 = 25;

/// A metric of the pilot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    StandardisedManagement,
    Control,
    Complications,
}

/// A metric's definition as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    pub id: &'static str,
    pub version: String,
    pub title_zh: &'static str,
    pub title: &'static str,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub exclusions: &'static str,
    pub window: &'static str,
    pub effective_from: &'static str,
    /// `increase` or `decrease`: which way is better.
    pub improvement: &'static str,
    pub scoring: &'static str,
    /// The FHIR Measure canonical, with the version.
    pub measure: String,
}

impl Metric {
    pub const ALL: [Metric; 3] = [
        Metric::StandardisedManagement,
        Metric::Control,
        Metric::Complications,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Metric::StandardisedManagement => "standardised-management-rate",
            Metric::Control => "control-rate",
            Metric::Complications => "new-complications-per-1000-patient-years",
        }
    }

    pub fn parse(id: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.id() == id)
    }

    /// The definition under the metric definition `version` the status rows carry.
    pub fn definition(self, version: &str) -> Definition {
        let exclusions = "Patients who died before the period, and those not under management \
                          by the definition (v1: enrolled in the programme; v2 also a qualifying \
                          diagnosis with a programme follow-up form)";
        let (title_zh, title, numerator, denominator, window, improvement, scoring) = match self {
            Metric::StandardisedManagement => (
                "规范管理率",
                "Standardised management rate",
                "Managed patients whose face-to-face follow-ups in the year so far reach the \
                 number of quarters elapsed at the period's end",
                "Patients under management in the period and alive at its start",
                "The period; follow-ups counted from the start of its year",
                "increase",
                "proportion",
            ),
            Metric::Control => (
                "控制率",
                "Control rate",
                "Managed patients whose latest follow-up in the period met the target \
                 (blood pressure < 140/90 mmHg; fasting glucose < 7.0 mmol/L)",
                "Patients under management in the period and alive at its start",
                "The period; the latest follow-up in it",
                "increase",
                "proportion",
            ),
            Metric::Complications => (
                "新发并发症（每千患者年）",
                "New complications per 1,000 patient-years",
                "First diagnoses of stroke, myocardial infarction or a diabetic complication \
                 among managed patients in the period",
                "Patient-years under management in the period, divided by 1,000",
                "The period",
                "decrease",
                "ratio",
            ),
        };
        Definition {
            id: self.id(),
            version: version.to_string(),
            title_zh,
            title,
            numerator,
            denominator,
            exclusions,
            window,
            effective_from: "2017-01-01",
            improvement,
            scoring,
            measure: format!("{MEASURE_BASE}/{}|{version}", self.id()),
        }
    }
}

/// A reporting period as the API names it: `202603`, `2026Q1` or `2026`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub year: i32,
    /// Month 1-12 or quarter 1-4; 1 for a year.
    pub index: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    Month,
    Quarter,
    Year,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        // Byte offsets below: only ASCII ids are periods (and slicing stays on char boundaries).
        if !text.is_ascii() {
            return None;
        }
        let year = |s: &str| {
            (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<i32>().ok())
                .flatten()
        };
        if let Some((y, q)) = text.split_once('Q') {
            let quarter: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
            return Some(Period {
                kind: PeriodKind::Quarter,
                year: year(y)?,
                index: quarter,
            });
        }
        match text.len() {
            4 => Some(Period {
                kind: PeriodKind::Year,
                year: year(text)?,
                index: 1,
            }),
            6 => {
                let month: u32 = text[4..].parse().ok().filter(|m| (1..=12).contains(m))?;
                Some(Period {
                    kind: PeriodKind::Month,
                    year: year(&text[..4])?,
                    index: month,
                })
            }
            _ => None,
        }
    }

    pub fn id(&self) -> String {
        match self.kind {
            PeriodKind::Month => format!("{}{:02}", self.year, self.index),
            PeriodKind::Quarter => format!("{}Q{}", self.year, self.index),
            PeriodKind::Year => format!("{}", self.year),
        }
    }

    /// The status rows' period kind.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            PeriodKind::Month => "MONTH",
            PeriodKind::Quarter => "QUARTER",
            PeriodKind::Year => "YEAR",
        }
    }

    /// First day and the day after the last, as day numbers.
    pub fn days(&self) -> (i32, i32) {
        use vigil_runtime::time::days_from_civil;
        let first_month = match self.kind {
            PeriodKind::Month => self.index,
            PeriodKind::Quarter => (self.index - 1) * 3 + 1,
            PeriodKind::Year => 1,
        };
        let months = match self.kind {
            PeriodKind::Month => 1,
            PeriodKind::Quarter => 3,
            PeriodKind::Year => 12,
        };
        let start = days_from_civil(self.year, first_month, 1);
        let next = first_month + months;
        let end = days_from_civil(self.year + (next as i32 - 1) / 12, (next - 1) % 12 + 1, 1);
        (start, end)
    }
}

/// Why a cell shows no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// A count of 1 to 10 (or a cell it could be derived from): not published.
    Suppressed,
    /// A denominator under 25 patients: the rate moves with one patient.
    Unreliable,
    /// No patient under management: there is no rate.
    NoDenominator,
}

/// One hospital's (or the total's) figure for a metric, condition and period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// `None` for the total over the hospitals listed.
    pub hospital_id: Option<String>,
    pub condition: String,
    pub period: String,
    pub numerator: Option<f64>,
    pub denominator: Option<f64>,
    pub value: Option<f64>,
    /// `final` once the period was published (it closed and the processor's allowed lateness
    /// passed), `provisional` before.
    pub status: &'static str,
    pub flags: Vec<Flag>,
    /// The published version (1: as first published; more: restated since); 0 if provisional.
    pub version: u32,
    /// When that version was published (ms since the epoch); 0 if provisional.
    pub published_ms: i64,
}

#[derive(Debug, Clone, Deserialize, Row)]
struct Counts {
    hospital_id: String,
    condition: String,
    managed: u64,
    standardised: u64,
    controlled: u64,
    complications: u64,
    managed_days: u64,
    version: u32,
    published_ms: i64,
}

/// Which figures of a final period a caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// As first published: what payments rest on.
    AsPublished,
    /// With every restatement since.
    Restated,
}

/// Which hospitals and patients a request covers: `""` for all.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub hospital: &'a str,
    pub region: &'a str,
}

fn failed(what: &'static str) -> impl FnOnce(clickhouse::error::Error) -> ServeError {
    move |source| ServeError::Query { what, source }
}

/// The cells of one metric and period, per hospital and condition, then each condition's total:
/// a final period's as published (or restated), a period not yet final from the live rollup.
pub async fn cells(
    client: &Client,
    definition: &str,
    metric: Metric,
    period: &Period,
    scope: Scope<'_>,
    edition: Edition,
) -> Result<Vec<Cell>, ServeError> {
    let start = vigil_runtime::time::format_date(period.days().0);
    let published: u64 = client
        .query(
            "SELECT count() FROM published_metrics \
             WHERE definition = ? AND period_kind = ? AND period_start = toDate(?)",
        )
        .bind(definition)
        .bind(period.kind_name())
        .bind(&start)
        .fetch_one()
        .await
        .map_err(failed("published metrics"))?;
    let query = if published > 0 {
        let bound = match edition {
            Edition::AsPublished => 1,
            Edition::Restated => u32::MAX,
        };
        client
            .query(PUBLISHED_CELLS)
            .bind(definition)
            .bind(period.kind_name())
            .bind(&start)
            .bind(bound)
    } else {
        client
            .query(METRIC_CELLS)
            .bind(definition)
            .bind(period.kind_name())
            .bind(&start)
    };
    let counts = query
        .bind(scope.hospital)
        .bind(scope.hospital)
        .bind(scope.region)
        .bind(scope.region)
        .fetch_all::<Counts>()
        .await
        .map_err(failed("metric cells"))?;
    let status = if published > 0 {
        "final"
    } else {
        "provisional"
    };
    let mut out = Vec::new();
    let mut conditions: Vec<&str> = counts.iter().map(|c| c.condition.as_str()).collect();
    conditions.sort_unstable();
    conditions.dedup();
    for condition in conditions {
        let rows: Vec<&Counts> = counts.iter().filter(|c| c.condition == condition).collect();
        let figures: Vec<(u64, u64, f64)> = rows.iter().map(|c| figures(metric, c)).collect();
        let total = figures
            .iter()
            .fold((0, 0, 0.0), |(n, m, d), f| (n + f.0, m + f.1, d + f.2));
        let mut hidden: Vec<bool> = figures.iter().map(|f| small(metric, f)).collect();
        complement(&mut hidden, &figures, small(metric, &total));
        for (i, row) in rows.iter().enumerate() {
            let mut c = cell(
                metric,
                Some(row.hospital_id.clone()),
                condition,
                period,
                figures[i],
                hidden[i],
                status,
            );
            (c.version, c.published_ms) = (row.version, row.published_ms);
            out.push(c);
        }
        let total_hidden = small(metric, &total);
        let mut c = cell(metric, None, condition, period, total, total_hidden, status);
        c.version = rows.iter().map(|r| r.version).max().unwrap_or(0);
        c.published_ms = rows.iter().map(|r| r.published_ms).max().unwrap_or(0);
        out.push(c);
    }
    Ok(out)
}

/// A published version of one cell.
#[derive(Debug, Clone, Deserialize, Row)]
struct Version {
    hospital_id: String,
    condition: String,
    region_code: String,
    managed: u64,
    standardised: u64,
    controlled: u64,
    complications: u64,
    managed_days: u64,
    version: u32,
    published_ms: i64,
    reason: String,
}

/// A change to a hospital's published figure after its period was published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restatement {
    pub hospital_id: String,
    pub condition: String,
    pub period: String,
    /// 2 for the first restatement, and so on.
    pub version: u32,
    pub published_ms: i64,
    /// What changed and why, per region of registration.
    pub reasons: Vec<String>,
    /// The figure before and after (`None` when suppressed: either side, or the change itself,
    /// would disclose a count of 1 to 10).
    pub before: Option<Figure>,
    pub after: Option<Figure>,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub numerator: f64,
    pub denominator: f64,
    pub value: Option<f64>,
}

/// The restatements of a final period's figures for one metric, per hospital and condition.
pub async fn restatements(
    client: &Client,
    definition: &str,
    metric: Metric,
    period: &Period,
    hospital: &str,
) -> Result<Vec<Restatement>, ServeError> {
    let versions = client
        .query(PUBLISHED_VERSIONS)
        .bind(definition)
        .bind(period.kind_name())
        .bind(vigil_runtime::time::format_date(period.days().0))
        .bind(hospital)
        .bind(hospital)
        .fetch_all::<Version>()
        .await
        .map_err(failed("published versions"))?;
    let mut out = Vec::new();
    let mut cells: Vec<(&str, &str)> = versions
        .iter()
        .map(|v| (v.hospital_id.as_str(), v.condition.as_str()))
        .collect();
    cells.dedup();
    for (hospital_id, condition) in cells {
        let rows: Vec<&Version> = versions
            .iter()
            .filter(|v| v.hospital_id == hospital_id && v.condition == condition)
            .collect();
        let mut times: Vec<i64> = rows
            .iter()
            .filter(|v| v.version > 1)
            .map(|v| v.published_ms)
            .collect();
        times.sort_unstable();
        times.dedup();
        for (index, at) in times.into_iter().enumerate() {
            let before = as_of(&rows, metric, |v| v.published_ms < at);
            let after = as_of(&rows, metric, |v| v.published_ms <= at);
            let moved = |a: u64, b: u64| (1..MIN_CELL).contains(&a.abs_diff(b));
            let hidden = small(metric, &before)
                || small(metric, &after)
                || moved(before.0, after.0)
                || moved(before.1, after.1);
            let figure = |(numerator, _, denominator): (u64, u64, f64)| Figure {
                numerator: numerator as f64,
                denominator: (denominator * 1000.0).round() / 1000.0,
                value: (denominator > 0.0)
                    .then(|| (numerator as f64 / denominator * 10_000.0).round() / 10_000.0),
            };
            out.push(Restatement {
                hospital_id: hospital_id.to_string(),
                condition: condition.to_string(),
                period: period.id(),
                version: index as u32 + 2,
                published_ms: at,
                reasons: rows
                    .iter()
                    .filter(|v| v.published_ms == at && v.version > 1)
                    .map(|v| format!("{}: {}", v.region_code, v.reason))
                    .collect(),
                before: (!hidden).then(|| figure(before)),
                after: (!hidden).then(|| figure(after)),
                flags: if hidden {
                    vec![Flag::Suppressed]
                } else {
                    Vec::new()
                },
            });
        }
    }
    Ok(out)
}

/// A hospital's figures summed over its regions at their newest version that `included` keeps.
fn as_of(
    rows: &[&Version],
    metric: Metric,
    included: impl Fn(&Version) -> bool,
) -> (u64, u64, f64) {
    let mut newest: std::collections::BTreeMap<&str, &Version> = Default::default();
    for row in rows.iter().filter(|v| included(v)) {
        let entry = newest.entry(row.region_code.as_str()).or_insert(row);
        if row.version > entry.version {
            *entry = row;
        }
    }
    let counts = Counts {
        hospital_id: String::new(),
        condition: String::new(),
        managed: newest.values().map(|v| v.managed).sum(),
        standardised: newest.values().map(|v| v.standardised).sum(),
        controlled: newest.values().map(|v| v.controlled).sum(),
        complications: newest.values().map(|v| v.complications).sum(),
        managed_days: newest.values().map(|v| v.managed_days).sum(),
        version: 0,
        published_ms: 0,
    };
    figures(metric, &counts)
}

/// (numerator count, patients managed, denominator as the value divides by).
fn figures(metric: Metric, c: &Counts) -> (u64, u64, f64) {
    match metric {
        Metric::StandardisedManagement => (c.standardised, c.managed, c.managed as f64),
        Metric::Control => (c.controlled, c.managed, c.managed as f64),
        Metric::Complications => (
            c.complications,
            c.managed,
            c.managed_days as f64 / 365.25 / 1000.0,
        ),
    }
}

/// Whether a cell discloses a count of 1 to `MIN_CELL - 1`: its numerator, its patients, or
/// (for a proportion) the patients outside the numerator.
fn small(metric: Metric, (numerator, managed, _): &(u64, u64, f64)) -> bool {
    let thin = |n: u64| (1..MIN_CELL).contains(&n);
    thin(*numerator)
        || thin(*managed)
        || (metric != Metric::Complications && thin(managed - numerator.min(managed)))
}

/// Complementary suppression: the total is published, so one hidden hospital could be derived
/// by subtraction; hide the next smallest hospital with patients too.
fn complement(hidden: &mut [bool], figures: &[(u64, u64, f64)], total_hidden: bool) {
    if total_hidden || hidden.iter().filter(|h| **h).count() != 1 {
        return;
    }
    let next = figures
        .iter()
        .enumerate()
        .filter(|(i, f)| !hidden[*i] && f.1 > 0)
        .min_by_key(|(_, f)| f.1)
        .map(|(i, _)| i);
    if let Some(i) = next {
        hidden[i] = true;
    }
}

fn cell(
    metric: Metric,
    hospital_id: Option<String>,
    condition: &str,
    period: &Period,
    (numerator, managed, denominator): (u64, u64, f64),
    hidden: bool,
    status: &'static str,
) -> Cell {
    let mut flags = Vec::new();
    if managed == 0 {
        flags.push(Flag::NoDenominator);
    } else if managed < RELIABLE_DENOMINATOR {
        flags.push(Flag::Unreliable);
    }
    if hidden {
        flags.push(Flag::Suppressed);
    }
    let value = (managed > 0 && denominator > 0.0).then(|| {
        let v = numerator as f64 / denominator;
        match metric {
            Metric::Complications => (v * 100.0).round() / 100.0,
            _ => (v * 10_000.0).round() / 10_000.0,
        }
    });
    let round3 = |d: f64| (d * 1000.0).round() / 1000.0;
    Cell {
        hospital_id,
        condition: condition.to_string(),
        period: period.id(),
        numerator: (!hidden).then_some(numerator as f64),
        denominator: (!hidden).then_some(round3(denominator)),
        value: if hidden { None } else { value },
        status,
        flags,
        version: 0,
        published_ms: 0,
    }
}

/// The cells as CSV (RFC 4180; the ids and codes need no quoting).
pub fn csv(metric: Metric, cells: &[Cell]) -> String {
    let mut out = String::from(
        "metric,period,condition,hospital_id,numerator,denominator,value,status,flags\r\n",
    );
    let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for c in cells {
        let flags: Vec<&str> = c
            .flags
            .iter()
            .map(|f| match f {
                Flag::Suppressed => "suppressed",
                Flag::Unreliable => "unreliable",
                Flag::NoDenominator => "no_denominator",
            })
            .collect();
        out += &format!(
            "{},{},{},{},{},{},{},{},{}\r\n",
            metric.id(),
            c.period,
            c.condition,
            c.hospital_id.as_deref().unwrap_or("ALL"),
            number(c.numerator),
            number(c.denominator),
            number(c.value),
            c.status,
            flags.join(";")
        );
    }
    out
}

/// The cells as a FHIR R4 Bundle of summary MeasureReports: one per hospital (the reporter; the
/// total has none) and condition, with one group for the metric.
pub fn measure_reports(
    definition: &Definition,
    period: &Period,
    cells: &[Cell],
    generated: &str,
) -> serde_json::Value {
    use serde_json::json;
    let (start, end) = period.days();
    let (start, end) = (
        vigil_runtime::time::format_date(start),
        vigil_runtime::time::format_date(end - 1),
    );
    let population = |code: &str, count: Option<f64>| {
        let mut p = json!({"code": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/measure-population",
            "code": code}]}});
        if let Some(count) = count {
            p["count"] = json!(count.round() as i64);
        }
        p
    };
    let entries: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            let mut group = json!({
                "code": {"coding": [{"system": "https://vigil.invalid/fhir/CodeSystem/condition",
                                      "code": c.condition}], "text": definition.title},
                "population": [population("denominator", c.denominator),
                               population("numerator", c.numerator)],
            });
            if let Some(value) = c.value {
                group["measureScore"] = json!({"value": value});
            }
            if c.flags.contains(&Flag::Suppressed) {
                group["extension"] = json!([{
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "masked"}]);
            }
            let mut report = json!({
                "resourceType": "MeasureReport",
                "status": if c.status == "final" { "complete" } else { "pending" },
                "type": "summary",
                "measure": definition.measure,
                "date": generated,
                "period": {"start": start, "end": end},
                "improvementNotation": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                    "code": definition.improvement}]},
                "group": [group],
            });
            if let Some(hospital) = &c.hospital_id {
                report["reporter"] = json!({"identifier": {
                    "system": "https://vigil.invalid/fhir/hospital", "value": hospital}});
            }
            json!({"resource": report})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "timestamp": generated,
           "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_as_iso_style_ids_and_know_their_days() {
        let q = Period::parse("2026Q1").unwrap();
        assert_eq!((q.id(), q.kind_name()), ("2026Q1".to_string(), "QUARTER"));
        let (start, end) = q.days();
        assert_eq!(vigil_runtime::time::format_date(start), "2026-01-01");
        assert_eq!(vigil_runtime::time::format_date(end), "2026-04-01");
        let december = Period::parse("202612").unwrap();
        assert_eq!(
            vigil_runtime::time::format_date(december.days().1),
            "2027-01-01"
        );
        assert_eq!(Period::parse("2026").unwrap().kind, PeriodKind::Year);
        for bad in [
            "2026Q5",
            "202613",
            "26Q1",
            "2026-01",
            "",
            "２０２６",
            "2026Q",
        ] {
            assert_eq!(Period::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_small_cell_and_the_cell_it_could_be_derived_from_are_both_hidden() {
        // 40 managed, 35 controlled (5 not: hidden); 30 of 60; 100 of 200.
        let figures = [(35, 40, 40.0), (30, 60, 60.0), (100, 200, 200.0)];
        let mut hidden: Vec<bool> = figures.iter().map(|f| small(Metric::Control, f)).collect();
        assert_eq!(hidden, [true, false, false]);
        complement(&mut hidden, &figures, false);
        assert_eq!(hidden, [true, true, false]);
        // Zero is published.
        assert!(!small(Metric::Control, &(0, 40, 40.0)));
    }
}
