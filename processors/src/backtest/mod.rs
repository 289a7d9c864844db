//! `vigil backtest`: the clinical history in ClickHouse replayed through a candidate rule set
//! and the baseline (the live rules) side by side, in the order the processor read it, with
//! nothing produced to any topic and nobody notified. The engine is a pure function of (state,
//! event), so the baseline's episodes are the ones the pipeline raised, and the candidate's are
//! what it would have raised.

mod history;
mod render;
mod replay;
mod report;

use std::collections::BTreeMap;
use std::time::Instant;

use clickhouse::Client;
use serde::Serialize;
use tracing::info;
use vigil_schemas::Condition;

use crate::engine::Engine;
use crate::ProcessorError;

pub use render::{html, markdown};
pub use replay::{EpisodeTrace, Window};
pub use report::{Comparison, Difference, Figures, OnlyIn, Row, ALL_HOSPITALS, SAMPLES};

/// What to replay, through which rules.
pub struct Request {
    pub baseline: Engine,
    pub candidate: Engine,
    /// Where each rule set came from, as the report names it.
    pub baseline_origin: String,
    pub candidate_origin: String,
    pub window: Window,
    /// Report on the patients this hospital manages only.
    pub hospital: Option<String>,
}

/// The report: what was replayed, and the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The period, `[from, to)` in the reporting time zone.
    pub from: String,
    pub to: String,
    pub utc_offset_minutes: i32,
    pub hospital: Option<String>,
    pub baseline_rules: String,
    pub candidate_rules: String,
    pub events_replayed: u64,
    pub partitions: i32,
    pub acknowledgements_replayed: usize,
    pub seconds: f64,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// The report and every episode each rule set opened in the period (baseline, candidate),
/// oldest first.
pub struct Outcome {
    pub report: Report,
    pub episodes: [Vec<EpisodeTrace>; 2],
}

/// Replays the history up to the end of the window through both rule sets.
pub async fn run(client: &Client, request: &Request) -> Result<Outcome, ProcessorError> {
    let started = Instant::now();
    let window = request.window;
    let partitions = history::partitions(client).await?;
    let acks = history::acknowledgements(client, window.to_ms).await?;
    let mut traces: [replay::Trace; 2] = Default::default();
    let mut managed: BTreeMap<String, u64> = BTreeMap::new();
    let mut events = 0u64;
    let mut last_report = Instant::now();
    for partition in 0..partitions {
        let mut replay =
            replay::PartitionReplay::new(&request.baseline, &request.candidate, window, &acks);
        let replayed =
            history::replay_partition(client, partitions, partition, window.to_ms, |event| {
                replay.apply(&event, &mut traces);
                events += 1;
                if last_report.elapsed().as_secs() >= 5 {
                    last_report = Instant::now();
                    let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    info!(
                        partition,
                        partitions,
                        events,
                        rate = rate as u64,
                        "Backtest replaying."
                    );
                }
            })
            .await?;
        replay.finish(&mut traces);
        count_managed(&replay, &window, &mut managed);
        info!(partition, replayed, "Backtest replayed a partition.");
    }
    let comparison = report::compare(
        &traces,
        &managed,
        window.from_ms,
        window.to_ms,
        request.hospital.as_deref(),
    );
    let day = |ms| {
        let day = vigil_runtime::time::local_day(ms, window.utc_offset_minutes);
        vigil_runtime::time::format_date(day)
    };
    let report = Report {
        from: day(window.from_ms),
        to: day(window.to_ms),
        utc_offset_minutes: window.utc_offset_minutes,
        hospital: request.hospital.clone(),
        baseline_rules: request.baseline_origin.clone(),
        candidate_rules: request.candidate_origin.clone(),
        events_replayed: events,
        partitions,
        acknowledgements_replayed: acks.len(),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        comparison,
    };
    let [baseline, candidate] = traces;
    Ok(Outcome {
        report,
        episodes: [sorted(baseline), sorted(candidate)],
    })
}

/// Reads and decodes the history up to `to_ms` as a backtest does, through no engine: the
/// benchmark's baseline (what reading alone costs). Returns the events read.
pub async fn read_only(client: &Client, to_ms: i64) -> Result<u64, ProcessorError> {
    let partitions = history::partitions(client).await?;
    let mut events = 0;
    for partition in 0..partitions {
        events += history::replay_partition(client, partitions, partition, to_ms, |_| {}).await?;
    }
    Ok(events)
}

#[derive(Debug, Serialize, clickhouse::Row)]
struct StoredReport {
    report_id: String,
    created_time: u32,
    created_ms: i64,
    period_from: String,
    period_to: String,
    hospital_id: String,
    baseline_rules: String,
    candidate_rules: String,
    events: u64,
    report_json: String,
    report_html: String,
}

/// Stores the report for `vigil serve`'s backtest pages; returns its id.
pub async fn publish(
    client: &Client,
    report: &Report,
    now_ms: i64,
) -> Result<String, ProcessorError> {
    let report_json = serde_json::to_string(report)
        .map_err(|e| ProcessorError::Config(format!("cannot encode the report: {e}")))?;
    let report_id = vigil_schemas::ids::stable_id(&[report_json.as_bytes(), &now_ms.to_le_bytes()]);
    let row = StoredReport {
        report_id: report_id.clone(),
        created_time: (now_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32,
        created_ms: now_ms,
        period_from: report.from.clone(),
        period_to: report.to.clone(),
        hospital_id: report.hospital.clone().unwrap_or_default(),
        baseline_rules: report.baseline_rules.clone(),
        candidate_rules: report.candidate_rules.clone(),
        events: report.events_replayed,
        report_html: html(report),
        report_json,
    };
    let failed = |source| {
        ProcessorError::Runtime(vigil_runtime::RuntimeError::ClickHouse {
            operation: "store the backtest report",
            source,
        })
    };
    let mut insert = client
        .insert::<StoredReport>("backtest_reports")
        .await
        .map_err(failed)?;
    insert.write(&row).await.map_err(failed)?;
    insert.end().await.map_err(failed)?;
    Ok(report_id)
}

fn sorted(trace: replay::Trace) -> Vec<EpisodeTrace> {
    let mut episodes: Vec<EpisodeTrace> = trace.episodes.into_values().collect();
    episodes.sort_by(|a, b| (a.opened_ms, &a.episode_id).cmp(&(b.opened_ms, &b.episode_id)));
    episodes
}

/// Patients managed (either condition) at some time in the period, per managing hospital.
fn count_managed(
    replay: &replay::PartitionReplay<'_>,
    window: &Window,
    managed: &mut BTreeMap<String, u64>,
) {
    for patient in replay.baseline.state().patients.values() {
        let counted = Condition::ALL
            .iter()
            .any(|c| patient.managed_during(*c, window.from_ms, window.to_ms));
        if counted {
            *managed.entry(patient.hospital.to_string()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests;
