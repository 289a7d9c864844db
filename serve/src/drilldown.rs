//! The drill-down region → hospital → department over the newest year's figures: one level at a
//! time, each row with its numerators, denominator and rates, and the level's total, which is
//! its parent's row. Computed from the reading every viewer shares (`Overview::drilldown`), so
//! a click asks ClickHouse nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::queries::DrillCell;

/// Which rows a request wants: a condition's regions, a region's hospitals, or a hospital's
/// departments within a region.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DrillQuery {
    pub condition: Option<String>,
    pub region: Option<String>,
    pub hospital: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Region,
    Hospital,
    Department,
}

/// Managed patients, how many of them are standardised and controlled, and the two rates;
/// a rate is `null` when nobody is managed (an empty denominator, never 0%).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub managed: u64,
    pub standardised: u64,
    pub controlled: u64,
    pub standardised_rate: Option<f64>,
    pub control_rate: Option<f64>,
}

impl Figures {
    fn add(&mut self, cell: &DrillCell) {
        self.managed += cell.managed;
        self.standardised += cell.standardised;
        self.controlled += cell.controlled;
    }

    /// The rates as the metric views round them (four decimals).
    fn with_rates(mut self) -> Figures {
        let rate = |n: u64| {
            (self.managed > 0).then(|| (n as f64 / self.managed as f64 * 1e4).round() / 1e4)
        };
        self.standardised_rate = rate(self.standardised);
        self.control_rate = rate(self.controlled);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillRow {
    /// The region code, hospital id or department code; empty when the records named none.
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drill {
    pub condition: String,
    pub level: Level,
    pub region: Option<String>,
    pub hospital: Option<String>,
    /// The sum of the rows: the parent's figures.
    pub total: Figures,
    pub rows: Vec<DrillRow>,
}

/// One level of the drill-down, or why the request names none.
pub fn drill(cells: &[DrillCell], query: &DrillQuery) -> Result<Drill, String> {
    let condition = query
        .condition
        .clone()
        .unwrap_or_else(|| "HYPERTENSION".to_string());
    if !matches!(condition.as_str(), "HYPERTENSION" | "DIABETES") {
        return Err("condition must be HYPERTENSION or DIABETES".into());
    }
    let level = match (&query.region, &query.hospital) {
        (None, None) => Level::Region,
        (Some(_), None) => Level::Hospital,
        (Some(_), Some(_)) => Level::Department,
        (None, Some(_)) => return Err("a hospital is drilled into within a region".into()),
    };
    let within = |cell: &&DrillCell| {
        cell.condition == condition
            && query.region.as_ref().is_none_or(|r| *r == cell.region_code)
            && query
                .hospital
                .as_ref()
                .is_none_or(|h| *h == cell.hospital_id)
    };
    let mut groups: BTreeMap<&str, Figures> = BTreeMap::new();
    let mut total = Figures::default();
    for cell in cells.iter().filter(within) {
        let key = match level {
            Level::Region => &cell.region_code,
            Level::Hospital => &cell.hospital_id,
            Level::Department => &cell.department_code,
        };
        groups.entry(key).or_default().add(cell);
        total.add(cell);
    }
    Ok(Drill {
        condition,
        level,
        region: query.region.clone(),
        hospital: query.hospital.clone(),
        total: total.with_rates(),
        rows: groups
            .into_iter()
            .map(|(key, figures)| DrillRow {
                key: key.to_string(),
                figures: figures.with_rates(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(region: &str, hospital: &str, department: &str, m: u64, s: u64, c: u64) -> DrillCell {
        DrillCell {
            condition: "HYPERTENSION".into(),
            region_code: region.into(),
            hospital_id: hospital.into(),
            department_code: department.into(),
            managed: m,
            standardised: s,
            controlled: c,
        }
    }

    #[test]
    fn each_level_sums_to_its_parent_and_empty_denominators_have_no_rate() {
        let cells = [
            cell("330106", "H0001", "CARD", 4, 2, 3),
            cell("330106", "H0001", "", 2, 0, 0),
            cell("330106", "H0002", "ENDO", 0, 0, 0),
            cell("330108", "H0001", "CARD", 3, 3, 1),
        ];
        let query = |region: Option<&str>, hospital: Option<&str>| DrillQuery {
            condition: None,
            region: region.map(str::to_string),
            hospital: hospital.map(str::to_string),
        };
        let regions = drill(&cells, &query(None, None)).unwrap();
        assert_eq!(regions.level, Level::Region);
        assert_eq!(regions.total.managed, 9);
        let keys: Vec<(&str, u64)> = regions
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.figures.managed))
            .collect();
        assert_eq!(keys, [("330106", 6), ("330108", 3)]);
        let hospitals = drill(&cells, &query(Some("330106"), None)).unwrap();
        assert_eq!(hospitals.total, regions.rows[0].figures);
        assert_eq!(hospitals.rows[1].figures.standardised_rate, None);
        let departments = drill(&cells, &query(Some("330106"), Some("H0001"))).unwrap();
        assert_eq!(departments.total, hospitals.rows[0].figures);
        assert_eq!(departments.rows[0].key, "");
        assert_eq!(departments.rows[1].figures.control_rate, Some(0.75));
        assert!(drill(&cells, &query(None, Some("H0001"))).is_err());
        let bad = DrillQuery {
            condition: Some("ASTHMA".into()),
            ..DrillQuery::default()
        };
        assert!(drill(&cells, &bad).is_err());
    }
}
