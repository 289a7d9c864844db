//! Vigil beside a real peer: the core of its job written as an Apache Flink job
//! (`deploy/local/peer/flink_job.py`, PyFlink on a local mini-cluster), over the same events.
//! Vigil's engine decodes the events' Avro and runs every rule and the status of every period;
//! the Flink job reads the same events as JSON lines and keeps the latest blood pressure by
//! event time, the hypertensive-crisis episodes and the face-to-face follow-ups per quarter.
//! The two must find the same crisis episodes; the figures are events per CPU-second and peak
//! memory of each.
//!
//! The input is the engine bench's simulated region, in event-time order (so nothing is late for
//! either), without deaths and merges (which close or move episodes in Vigil and are not part
//! of the peer's job).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use vigil_processors::engine::{Engine, PartitionState};
use vigil_producers::pseudonym::PseudonymKey;
use vigil_schemas::{Alert, AlertStatus, AvroCodec, ClinicalEvent, Operation, Payload};

use super::engine::{history, with_positions};
use super::{median, peak_rss_kib, Report};
use crate::config::VigilConfig;

/// The rule both sides run.
const CRISIS_RULE: &str = "hypertensive_crisis";
/// Events of the small Flink run whose cost is the mini-cluster's start-up.
const START_UP_EVENTS: usize = 1_000;
const FLINK_JOB: &str = "deploy/local/peer/flink_job.py";

/// An episode: (patient, opened at, resolved at or None while open), event times in ms.
type Episode = (String, i64, Option<i64>);

/// What the Flink job printed.
#[derive(serde::Deserialize)]
struct FlinkRun {
    cpu_seconds: f64,
    peak_rss_mib: f64,
    follow_up_counts: u64,
    episodes: Vec<Episode>,
}

pub fn run(
    config: &VigilConfig,
    key: PseudonymKey,
    events: u64,
    runs: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let python = std::env::var("VIGIL_PEER_PYTHON").unwrap_or_else(|_| "python3".into());
    let job = std::env::current_dir()?.join(FLINK_JOB);
    anyhow::ensure!(
        job.exists(),
        "{FLINK_JOB} not found: run the bench from the repository (deploy/local/bench.sh --only peer)"
    );
    let input = peer_input(config, key, events)?;
    let dir = std::env::temp_dir().join(format!("vigil-peer-{}", super::stamp()));
    std::fs::create_dir_all(&dir)?;
    let all = dir.join("events.jsonl");
    let few = dir.join("start-up.jsonl");
    write_lines(&all, &input)?;
    write_lines(&few, &input[..input.len().min(START_UP_EVENTS)])?;
    say!(
        "peer: {} events in event-time order ({:.1} MB of JSON lines for Flink)",
        input.len(),
        std::fs::metadata(&all)?.len() as f64 / 1e6
    );

    let vigil = vigil_runs(config, &input, runs)?;
    let start_up = flink(&python, &job, &few, &dir.join("out-start-up"))?;
    let mut flink_rates = Vec::new();
    let mut marginal_rates = Vec::new();
    let mut last = None;
    for i in 0..runs {
        let out = flink(&python, &job, &all, &dir.join(format!("out-{i}")))?;
        flink_rates.push(input.len() as f64 / out.cpu_seconds);
        let marginal = (out.cpu_seconds - start_up.cpu_seconds).max(f64::EPSILON);
        marginal_rates.push((input.len() - START_UP_EVENTS.min(input.len())) as f64 / marginal);
        last = Some(out);
    }
    let flink_run = last.ok_or_else(|| anyhow::anyhow!("--runs must be at least 1"))?;
    compare(&vigil.episodes, &flink_run.episodes)?;

    let vigil_rate = median(&vigil.rates);
    let flink_rate = median(&flink_rates);
    let flink_marginal = median(&marginal_rates);
    report.figure(
        "peer: crisis episodes, found alike by both",
        vigil.episodes.len() as f64,
        "episodes",
    );
    report.figure(
        "peer: Flink follow-up counts written",
        flink_run.follow_up_counts as f64,
        "rows",
    );
    report.rate(
        "peer: Vigil engine (Avro decode, every rule, status), per CPU-second",
        vigil_rate,
        "events/s/core",
    );
    report.rate(
        "peer: Flink job, per CPU-second (all its processes, start-up included)",
        flink_rate,
        "events/s/core",
    );
    report.rate(
        "peer: Flink job, per CPU-second beyond its start-up",
        flink_marginal,
        "events/s/core",
    );
    report.figure(
        "peer: Vigil as a multiple of Flink (beyond start-up)",
        vigil_rate / flink_marginal,
        "x",
    );
    report.figure(
        "peer: Flink start-up (a 1,000-event run)",
        start_up.cpu_seconds,
        "CPU s",
    );
    report.figure(
        "peer: Vigil's state on the heap (every patient, 18 months)",
        vigil.state_bytes as f64 / (1024.0 * 1024.0),
        "MiB",
    );
    report.figure(
        "peer: peak RSS, Vigil bench process (its input held too)",
        peak_rss_kib() as f64 / 1024.0,
        "MiB",
    );
    report.figure(
        "peer: peak RSS, Flink (every process of the job, summed)",
        flink_run.peak_rss_mib,
        "MiB",
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The engine bench's region in event-time order, without deaths and merges, with input
/// positions in that order.
fn peer_input(
    config: &VigilConfig,
    key: PseudonymKey,
    events: u64,
) -> anyhow::Result<Vec<ClinicalEvent>> {
    let mut input = history(config, key, events)?;
    input.retain(|event| !matches!(event.payload, Payload::PatientMerge(_)));
    for event in &mut input {
        if let Payload::PatientRegistration(registration) = &mut event.payload {
            registration.death_time_ms = None;
        }
    }
    // Readings are facts as first entered: corrections and retractions change or remove a
    // reading, which the peer job does not model.
    input.retain(|event| {
        event.operation == Operation::Create
            || matches!(event.payload, Payload::PatientRegistration(_))
    });
    input.sort_by_key(|event| event.event_time_ms);
    with_positions(&mut input);
    Ok(input)
}

fn write_lines(path: &Path, events: &[ClinicalEvent]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// What Vigil's runs found: events per CPU-second of each, and of the last its crisis episodes
/// and the bytes its state holds on the heap.
struct VigilRuns {
    rates: Vec<f64>,
    episodes: Vec<Episode>,
    state_bytes: usize,
}

/// Vigil's engine over the events' Avro encodings, `runs` times.
fn vigil_runs(
    config: &VigilConfig,
    input: &[ClinicalEvent],
    runs: usize,
) -> anyhow::Result<VigilRuns> {
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let encoded = input
        .iter()
        .map(|event| codec.encode(event))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = config.process.validate()?;
    let engine = Engine::new(rules, config.process.engine.clone());
    let mut rates = Vec::new();
    let mut episodes = Vec::new();
    let mut state_bytes = 0;
    for _ in 0..runs {
        let mut state = PartitionState::new();
        let (mut alerts, mut status) = (Vec::new(), Vec::new());
        let mut raised: Vec<Alert> = Vec::new();
        let started = thread_cpu_seconds()?;
        for (i, bytes) in encoded.iter().enumerate() {
            let event = codec.decode(bytes)?;
            engine.apply_event(&mut state, &event, &mut alerts);
            if i % 20_000 == 19_999 {
                engine.drain_status(&mut state, &mut status);
                status.clear();
                keep_crisis(&mut alerts, &mut raised);
            }
        }
        engine.drain_status(&mut state, &mut status);
        let cpu = thread_cpu_seconds()? - started;
        keep_crisis(&mut alerts, &mut raised);
        rates.push(encoded.len() as f64 / cpu.max(0.01));
        episodes = episodes_of(&raised);
        state_bytes = state.heap_bytes();
    }
    Ok(VigilRuns {
        rates,
        episodes,
        state_bytes,
    })
}

/// Moves the crisis rule's raised and resolved alerts out of `alerts` (the rest is dropped).
fn keep_crisis(alerts: &mut Vec<Alert>, kept: &mut Vec<Alert>) {
    kept.extend(alerts.drain(..).filter(|alert| {
        alert.rule_id == CRISIS_RULE
            && matches!(alert.status, AlertStatus::Raised | AlertStatus::Resolved)
    }));
}

fn episodes_of(alerts: &[Alert]) -> Vec<Episode> {
    let mut open = std::collections::BTreeMap::new();
    for alert in alerts {
        let at = (alert.patient_pseudonym.clone(), alert.episode_start_ms);
        let resolved = (alert.status == AlertStatus::Resolved).then_some(alert.event_time_ms);
        let entry = open.entry(at).or_insert(None);
        if resolved.is_some() {
            *entry = resolved;
        }
    }
    open.into_iter().map(|((p, s), e)| (p, s, e)).collect()
}

/// This thread's CPU time so far (user and system).
fn thread_cpu_seconds() -> anyhow::Result<f64> {
    super::cpu_seconds("/proc/thread-self/stat")
        .ok_or_else(|| anyhow::anyhow!("/proc/thread-self/stat cannot be read"))
}

fn flink(python: &str, job: &Path, input: &Path, output: &Path) -> anyhow::Result<FlinkRun> {
    let result = Command::new(python)
        .arg(job)
        .arg(input)
        .arg(output)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {python} (deploy/local/bench.sh --only peer installs PyFlink): {e}"
            )
        })?;
    let stdout = String::from_utf8_lossy(&result.stdout);
    anyhow::ensure!(
        result.status.success(),
        "the Flink job failed: {}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("the Flink job printed no figures:\n{stdout}"))?;
    let run: FlinkRun = serde_json::from_str(line)?;
    anyhow::ensure!(
        run.cpu_seconds > 0.0 && run.peak_rss_mib > 0.0,
        "the Flink job measured {} CPU seconds and {} MiB: not a measurement",
        run.cpu_seconds,
        run.peak_rss_mib
    );
    Ok(run)
}

/// The same episodes, or the differences named.
fn compare(vigil: &[Episode], flink: &[Episode]) -> anyhow::Result<()> {
    let ours: BTreeSet<&Episode> = vigil.iter().collect();
    let theirs: BTreeSet<&Episode> = flink.iter().collect();
    if ours == theirs {
        anyhow::ensure!(!ours.is_empty(), "the history raised no crisis episode");
        return Ok(());
    }
    let only_vigil: Vec<_> = ours.difference(&theirs).take(5).collect();
    let only_flink: Vec<_> = theirs.difference(&ours).take(5).collect();
    anyhow::bail!(
        "Vigil and Flink disagree on the crisis episodes ({} against {}); only Vigil's: {only_vigil:?}; only Flink's: {only_flink:?}",
        ours.len(),
        theirs.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_pair_their_raise_and_resolution_and_disagreements_are_named() {
        let alert = |patient: &str, start: i64, at: i64, status: AlertStatus| Alert {
            patient_pseudonym: patient.into(),
            episode_start_ms: start,
            event_time_ms: at,
            status,
            ..blank()
        };
        let alerts = [
            alert("a", 10, 10, AlertStatus::Raised),
            alert("b", 20, 20, AlertStatus::Raised),
            alert("a", 10, 30, AlertStatus::Resolved),
        ];
        let episodes = episodes_of(&alerts);
        assert_eq!(
            episodes,
            vec![("a".to_string(), 10, Some(30)), ("b".to_string(), 20, None)]
        );
        assert!(compare(&episodes, &episodes).is_ok());
        let other = vec![("a".to_string(), 10, Some(31)), ("b".to_string(), 20, None)];
        let error = compare(&episodes, &other).unwrap_err().to_string();
        assert!(error.contains("disagree"), "{error}");
        assert!(
            compare(&[], &[]).is_err(),
            "no episode at all is no comparison"
        );
    }

    fn blank() -> Alert {
        Alert {
            alert_id: String::new(),
            episode_id: String::new(),
            rule_id: CRISIS_RULE.into(),
            rule_version: 1,
            severity: vigil_schemas::Severity::Critical,
            status: AlertStatus::Raised,
            sequence: 0,
            hospital_id: String::new(),
            department_code: String::new(),
            patient_pseudonym: String::new(),
            event_time_ms: 0,
            episode_start_ms: 0,
            trigger_event_id: String::new(),
            value: None,
            unit: String::new(),
            threshold: String::new(),
            message: String::new(),
            source: String::new(),
            actor: String::new(),
            managing_hospital_id: String::new(),
        }
    }
}
