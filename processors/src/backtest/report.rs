//! The figures of a backtest: per rule and hospital, the baseline's and the candidate's side by
//! side with the difference, and the episodes and patients only one of them raises.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::replay::{EpisodeTrace, Trace};

/// Episodes shown per rule as examples of what only one rule set raises.
pub const SAMPLES: usize = 10;

/// The hospital column of a rule's total over every hospital.
pub const ALL_HOSPITALS: &str = "all";

const MONTH_MS: f64 = 30.436_875 * 86_400_000.0;

/// One rule set's figures for a rule at a hospital.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub episodes: u64,
    /// Episodes per 100 managed patients per month of the period.
    pub per_100_patients_per_month: Option<f64>,
    pub renotifications: u64,
    /// Median hours from raising to resolution, over the episodes resolved by the period's end.
    pub median_episode_hours: Option<f64>,
    pub resolved: u64,
    /// Of those resolved, the share never acknowledged.
    pub resolved_unacknowledged_share: Option<f64>,
    pub still_open: u64,
    /// Critical notifications (raised or re-notified) between 22:00 and 07:00.
    pub night_crisis_notifications: u64,
}

/// Candidate minus baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Difference {
    pub episodes: i64,
    pub per_100_patients_per_month: Option<f64>,
    pub renotifications: i64,
    pub median_episode_hours: Option<f64>,
    pub resolved_unacknowledged_share: Option<f64>,
    pub night_crisis_notifications: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub rule_id: String,
    /// The patients' managing hospital, or `all`.
    pub hospital_id: String,
    /// Patients the hospital manages at some time in the period (either condition).
    pub managed_patients: u64,
    pub baseline: Figures,
    pub candidate: Figures,
    pub difference: Difference,
}

/// What only one of the two rule sets raises, for one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OnlyIn {
    pub rule_id: String,
    pub episodes: u64,
    /// Patients with an episode of the rule under this rule set and none under the other.
    pub patients: u64,
    /// The earliest of those episodes, for a clinician to judge.
    pub samples: Vec<EpisodeTrace>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub only_candidate: Vec<OnlyIn>,
    pub only_baseline: Vec<OnlyIn>,
}

/// Builds the comparison from the two traces and the managed patients per hospital.
pub fn compare(
    traces: &[Trace; 2],
    managed: &BTreeMap<String, u64>,
    from_ms: i64,
    to_ms: i64,
    hospital: Option<&str>,
) -> Comparison {
    let months = (to_ms - from_ms) as f64 / MONTH_MS;
    let keep = |e: &&EpisodeTrace| hospital.is_none_or(|h| e.managing_hospital_id == h);
    let mut cells: BTreeMap<(String, String), [Vec<&EpisodeTrace>; 2]> = BTreeMap::new();
    for (side, trace) in traces.iter().enumerate() {
        for episode in trace.episodes.values().filter(keep) {
            for place in [episode.managing_hospital_id.as_str(), ALL_HOSPITALS] {
                cells
                    .entry((episode.rule_id.clone(), place.to_string()))
                    .or_default()[side]
                    .push(episode);
            }
        }
    }
    let total_managed: u64 = managed
        .iter()
        .filter(|(h, _)| hospital.is_none_or(|only| only == h.as_str()))
        .map(|(_, n)| n)
        .sum();
    let rows = cells
        .into_iter()
        .map(|((rule_id, hospital_id), [baseline, candidate])| {
            let patients = if hospital_id == ALL_HOSPITALS {
                total_managed
            } else {
                managed.get(&hospital_id).copied().unwrap_or(0)
            };
            let night = |side: usize| night_crises(&traces[side], &rule_id, &hospital_id, hospital);
            let baseline = figures(&baseline, patients, months, night(0));
            let candidate = figures(&candidate, patients, months, night(1));
            Row {
                difference: difference(&baseline, &candidate),
                rule_id,
                hospital_id,
                managed_patients: patients,
                baseline,
                candidate,
            }
        })
        .collect();
    Comparison {
        rows,
        only_candidate: only_in(&traces[1], &traces[0], hospital),
        only_baseline: only_in(&traces[0], &traces[1], hospital),
    }
}

fn night_crises(trace: &Trace, rule: &str, place: &str, hospital: Option<&str>) -> u64 {
    trace
        .night_crises
        .iter()
        .filter(|((r, h), _)| r == rule && (place == ALL_HOSPITALS || h == place))
        .filter(|((_, h), _)| hospital.is_none_or(|only| only == h))
        .map(|(_, n)| n)
        .sum()
}

fn figures(episodes: &[&EpisodeTrace], patients: u64, months: f64, night: u64) -> Figures {
    let count = episodes.len() as u64;
    let mut hours: Vec<f64> = episodes
        .iter()
        .filter_map(|e| {
            e.resolved_ms
                .map(|r| (r - e.opened_ms) as f64 / 3_600_000.0)
        })
        .collect();
    hours.sort_by(f64::total_cmp);
    let resolved = hours.len() as u64;
    let unacknowledged = episodes
        .iter()
        .filter(|e| e.resolved_ms.is_some() && !e.acknowledged)
        .count() as f64;
    Figures {
        episodes: count,
        per_100_patients_per_month: (patients > 0 && months > 0.0)
            .then(|| round(count as f64 * 100.0 / patients as f64 / months, 2)),
        renotifications: episodes.iter().map(|e| u64::from(e.renotifications)).sum(),
        median_episode_hours: median(&hours).map(|h| round(h, 1)),
        resolved,
        resolved_unacknowledged_share: (resolved > 0)
            .then(|| round(unacknowledged / resolved as f64, 4)),
        still_open: count - resolved,
        night_crisis_notifications: night,
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn difference(baseline: &Figures, candidate: &Figures) -> Difference {
    let delta = |a: Option<f64>, b: Option<f64>| Some(round(b? - a?, 4));
    Difference {
        episodes: candidate.episodes as i64 - baseline.episodes as i64,
        per_100_patients_per_month: delta(
            baseline.per_100_patients_per_month,
            candidate.per_100_patients_per_month,
        ),
        renotifications: candidate.renotifications as i64 - baseline.renotifications as i64,
        median_episode_hours: delta(
            baseline.median_episode_hours,
            candidate.median_episode_hours,
        ),
        resolved_unacknowledged_share: delta(
            baseline.resolved_unacknowledged_share,
            candidate.resolved_unacknowledged_share,
        ),
        night_crisis_notifications: candidate.night_crisis_notifications as i64
            - baseline.night_crisis_notifications as i64,
    }
}

/// Per rule: the episodes of `this` that `other` does not raise, and the patients with an
/// episode of the rule under `this` only.
fn only_in(this: &Trace, other: &Trace, hospital: Option<&str>) -> Vec<OnlyIn> {
    let keep = |e: &&EpisodeTrace| hospital.is_none_or(|h| e.managing_hospital_id == h);
    let patients_of = |trace: &Trace| -> HashMap<String, BTreeSet<String>> {
        let mut by_rule: HashMap<String, BTreeSet<String>> = HashMap::new();
        for episode in trace.episodes.values().filter(keep) {
            by_rule
                .entry(episode.rule_id.clone())
                .or_default()
                .insert(episode.patient_pseudonym.clone());
        }
        by_rule
    };
    let (mine, theirs) = (patients_of(this), patients_of(other));
    let mut by_rule: BTreeMap<String, Vec<&EpisodeTrace>> = BTreeMap::new();
    for episode in this.episodes.values().filter(keep) {
        if !other.episodes.contains_key(&episode.episode_id) {
            by_rule
                .entry(episode.rule_id.clone())
                .or_default()
                .push(episode);
        }
    }
    by_rule
        .into_iter()
        .map(|(rule_id, mut episodes)| {
            episodes
                .sort_by(|a, b| (a.opened_ms, &a.episode_id).cmp(&(b.opened_ms, &b.episode_id)));
            let empty = BTreeSet::new();
            let patients = mine
                .get(&rule_id)
                .unwrap_or(&empty)
                .difference(theirs.get(&rule_id).unwrap_or(&empty))
                .count() as u64;
            OnlyIn {
                episodes: episodes.len() as u64,
                patients,
                samples: episodes.into_iter().take(SAMPLES).cloned().collect(),
                rule_id,
            }
        })
        .collect()
}
