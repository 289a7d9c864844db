//! The processor's engine alone, on one core: Avro decoding and the clinical engine over
//! pre-encoded canonical events, with no broker in the way; and what the state costs per patient.

use std::time::Instant;

use vigil_processors::engine::{Engine, PartitionState};
use vigil_producers::pseudonym::PseudonymKey;
use vigil_producers::simulator::{CanonicalRenderer, Simulation};
use vigil_runtime::time::now_ms;
use vigil_schemas::{AvroCodec, ClinicalEvent, PatientStatus, SourcePosition};

use super::{median, peak_rss_kib, Report};
use crate::config::VigilConfig;

/// The engine alone: Avro decode, then rules and status on decoded events, then both, over the
/// same pre-encoded history, `runs` times for medians.
// Long by design (~110 lines): the three measurements share their inputs and must run in the
// same order each time; their figures are reported together.
pub fn run(
    config: &VigilConfig,
    key: PseudonymKey,
    events: u64,
    runs: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let encoded = pre_encoded(config, key, events)?;
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let count = encoded.len() as f64;
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    say!(
        "engine: {} pre-encoded events ({:.1} MB, {} patients)",
        encoded.len(),
        bytes as f64 / 1e6,
        patients_for(events)
    );

    let rules = config.process.validate()?;
    let engine = Engine::new(rules, config.process.engine.clone());
    let (mut decode_rates, mut engine_rates, mut both_rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut patients = 0;
    let mut state_bytes = 0u64;
    let mut resident_per_patient = 0.0;
    let mut generic_rates = Vec::new();
    for _ in 0..runs {
        // Decoding alone: through apache-avro (the baseline), then as the processor does.
        generic_rates.push(decode_rate(&encoded, |b| codec.decode_with_apache_avro(b))?);
        decode_rates.push(decode_rate(&encoded, |b| codec.decode(b))?);
        let decoded: Vec<ClinicalEvent> = encoded
            .iter()
            .map(|bytes| codec.decode(bytes))
            .collect::<Result<_, _>>()?;

        // The engine alone on decoded events (status rows drained as the runner does).
        let mut state = PartitionState::new();
        let (mut alerts, mut status) = (Vec::new(), Vec::new());
        let started = Instant::now();
        for (i, event) in decoded.iter().enumerate() {
            engine.apply_event(&mut state, event, &mut alerts);
            if i % 20_000 == 19_999 {
                engine.drain_status(&mut state, &mut status);
                alerts.clear();
                status.clear();
            }
        }
        engine.drain_status(&mut state, &mut status);
        engine_rates.push(count / started.elapsed().as_secs_f64());
        patients = state.len();
        // The state's own heap, counted from its structure: RSS growth is no measure here, as
        // the allocator reuses what earlier runs and the decoded events freed.
        resident_per_patient = state.heap_bytes() as f64 / patients.max(1) as f64;
        anyhow::ensure!(
            patients == 0 || resident_per_patient > 0.0,
            "the state of {patients} patients measured 0 bytes"
        );
        state_bytes = state
            .patients
            .values()
            .map(|p| postcard::to_allocvec(p).map_or(0, |v| v.len() as u64))
            .sum();
        drop(decoded);
        drop(state);

        // Both, as the runner does per message.
        let mut state = PartitionState::new();
        let started = Instant::now();
        for (i, bytes) in encoded.iter().enumerate() {
            let event = codec.decode(bytes)?;
            engine.apply_event(&mut state, &event, &mut alerts);
            if i % 20_000 == 19_999 {
                engine.drain_status(&mut state, &mut status);
                alerts.clear();
                status.clear();
            }
        }
        both_rates.push(count / started.elapsed().as_secs_f64());
    }
    report.rate(
        "engine: Avro decode only, apache-avro (baseline)",
        median(&generic_rates),
        "events/s/core",
    );
    report.rate(
        "engine: Avro decode only",
        median(&decode_rates),
        "events/s/core",
    );
    report.rate(
        "engine: clinical engine only",
        median(&engine_rates),
        "events/s/core",
    );
    report.rate(
        "engine: decode + engine",
        median(&both_rates),
        "events/s/core",
    );
    report.figure("engine: patients in state", patients as f64, "patients");
    report.figure(
        "state: serialised bytes per patient (changelog)",
        state_bytes as f64 / patients.max(1) as f64,
        "bytes",
    );
    report.figure(
        "state: resident bytes per patient (heap of the in-memory structure)",
        resident_per_patient,
        "bytes",
    );
    status_encoding(&engine, &encoded, runs, report)?;
    report.figure(
        "engine: peak RSS of the bench",
        peak_rss_kib() as f64 / 1024.0,
        "MiB",
    );
    Ok(())
}

/// Encoding the status rows the engine makes of the history: apache-avro's writer (the
/// baseline) against the direct encoder the processor uses, the same rows into a reused buffer.
fn status_encoding(
    engine: &Engine,
    encoded: &[Vec<u8>],
    runs: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let mut state = PartitionState::new();
    let (mut alerts, mut rows) = (Vec::new(), Vec::new());
    for (i, bytes) in encoded.iter().enumerate() {
        engine.apply_event(&mut state, &codec.decode(bytes)?, &mut alerts);
        alerts.clear();
        if i % 20_000 == 19_999 {
            engine.drain_status(&mut state, &mut rows);
        }
    }
    engine.drain_status(&mut state, &mut rows);
    anyhow::ensure!(!rows.is_empty(), "the history made no status rows");
    let status = AvroCodec::<PatientStatus>::new()?;
    let (mut generic, mut direct) = (Vec::new(), Vec::new());
    let mut buffer = Vec::with_capacity(512);
    for _ in 0..runs {
        let started = Instant::now();
        for row in &rows {
            buffer.clear();
            status.encode_with_apache_avro(row, &mut buffer)?;
        }
        generic.push(rows.len() as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        for row in &rows {
            buffer.clear();
            status.encode_into(row, &mut buffer)?;
        }
        direct.push(rows.len() as f64 / started.elapsed().as_secs_f64());
    }
    say!(
        "engine: {} status rows from {} events",
        rows.len(),
        encoded.len()
    );
    report.rate(
        "engine: status rows encoded, apache-avro (baseline)",
        median(&generic),
        "rows/s/core",
    );
    report.rate(
        "engine: status rows encoded",
        median(&direct),
        "rows/s/core",
    );
    Ok(())
}

/// Events per second through `decode`, each event dropped once decoded.
fn decode_rate(
    encoded: &[Vec<u8>],
    decode: impl Fn(&[u8]) -> Result<ClinicalEvent, vigil_schemas::SchemaError>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for bytes in encoded {
        std::hint::black_box(decode(bytes)?);
    }
    Ok(encoded.len() as f64 / started.elapsed().as_secs_f64())
}

/// About 40 events per patient-year: the region is sized so the run covers a realistic history.
fn patients_for(events: u64) -> u32 {
    ((events / 60).max(100)).min(u32::MAX as u64) as u32
}

/// A simulated region's history of `events` canonical events, encoded as the edge sends them:
/// with their input positions (four input partitions, offsets rising).
pub(super) fn pre_encoded(
    config: &VigilConfig,
    key: PseudonymKey,
    events: u64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let mut history = history(config, key, events)?;
    with_positions(&mut history);
    history
        .iter()
        .map(|event| Ok(codec.encode(event)?))
        .collect()
}

/// A simulated region's history of `events` canonical events, as the simulator makes them.
pub(super) fn history(
    config: &VigilConfig,
    key: PseudonymKey,
    events: u64,
) -> anyhow::Result<Vec<ClinicalEvent>> {
    let mut simulate = config.simulate.clone();
    simulate.max_events = events;
    simulate.patients = patients_for(events);
    simulate.span = std::time::Duration::from_secs(540 * 86_400);
    simulate.validate()?;
    let renderer = CanonicalRenderer::new(key, simulate.seed);
    let ingest = now_ms();
    let mut out = Vec::with_capacity(events as usize);
    let mut simulation = Simulation::new(&simulate);
    while let Some(event) = simulation.next() {
        if out.len() as u64 >= events {
            break;
        }
        out.push(renderer.render(&simulation, &event, ingest));
    }
    Ok(out)
}

/// Input positions as an edge gives them, in the order of `history` (four input partitions,
/// offsets rising): the engine recognises a position at or below one applied as a replay.
pub(super) fn with_positions(history: &mut [ClinicalEvent]) {
    for (n, event) in history.iter_mut().enumerate() {
        let n = n as i64;
        event.source = Some(SourcePosition {
            topic: "vigil.his.changes".into(),
            partition: (n % 4) as i32,
            offset: n / 4,
        });
    }
}
