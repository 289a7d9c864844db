//! Drives the simulation into Kafka at the configured pace.

use std::time::{Duration, Instant};

use tracing::info;
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::DurableProducer;
use vigil_runtime::time::now_ms;
use vigil_runtime::Shutdown;
use vigil_schemas::{AvroCodec, ClinicalEvent};

use super::canonical::CanonicalRenderer;
use super::config::{Pace, SimulateConfig};
use super::population::Simulation;
use crate::error::ProducerError;
use crate::pseudonym::PseudonymKey;

/// What a simulation run produced.
#[derive(Debug, Clone, Default)]
pub struct SimulateSummary {
    pub events: u64,
    pub elapsed: Duration,
    /// Event time of the first and last event produced.
    pub first_event_ms: i64,
    pub last_event_ms: i64,
}

/// Produces the simulated history as canonical events to `kafka.topics.clinical_events`, keyed
/// by patient pseudonym, and returns once everything is acknowledged (or shutdown was requested).
pub fn run(
    config: &SimulateConfig,
    kafka: &KafkaConfig,
    key: PseudonymKey,
    shutdown: &Shutdown,
) -> Result<SimulateSummary, ProducerError> {
    config.validate()?;
    let producer = DurableProducer::new(kafka, "vigil-simulate")?;
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let mut simulation = Simulation::new(config);
    let renderer = CanonicalRenderer::new(key, config.seed);
    let topic = &kafka.topics.clinical_events;
    let mut pacer = Pacer::new(config, simulation.start_ms, simulation.end_ms());
    let mut buffer = Vec::with_capacity(512);
    let mut summary = SimulateSummary::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    info!(patients = config.patients, hospitals = config.hospitals, pace = ?config.pace,
        "Simulating {} of clinical history.", humantime_days(config.span));

    while let Some(mut event) = simulation.next() {
        if config.max_events > 0 && summary.events >= config.max_events {
            break;
        }
        if pacer.wait(summary.events, event.time_ms, shutdown) {
            break;
        }
        if config.pace == Pace::Live {
            event.time_ms = now_ms();
        }
        let canonical = renderer.render(&simulation, &event, now_ms());
        buffer.clear();
        codec.encode_into(&canonical, &mut buffer)?;
        producer.send(topic, canonical.patient_pseudonym.as_bytes(), &buffer)?;
        if summary.events == 0 {
            summary.first_event_ms = event.time_ms;
        }
        summary.last_event_ms = event.time_ms;
        summary.events += 1;
        if last_progress.elapsed() >= config.progress_every {
            last_progress = Instant::now();
            let rate = summary.events as f64 / started.elapsed().as_secs_f64().max(1e-9);
            info!(events = summary.events, rate = rate.round(),
                simulated_date = %vigil_runtime::time::format_date((event.time_ms / 86_400_000) as i32),
                "Simulation progress.");
        }
    }
    producer.flush()?;
    summary.elapsed = started.elapsed();
    info!(
        events = summary.events,
        seconds = summary.elapsed.as_secs_f64(),
        "Simulation finished; every event was acknowledged by the broker."
    );
    Ok(summary)
}

fn humantime_days(span: Duration) -> String {
    format!("{} days", span.as_secs() / 86_400)
}

/// Holds emission back to the configured pace.
struct Pacer {
    pace: Pace,
    started: Instant,
    rate: f64,
    span_start_ms: i64,
    span_ms: f64,
    compress_into: Duration,
}

impl Pacer {
    fn new(config: &SimulateConfig, span_start_ms: i64, span_end_ms: i64) -> Self {
        Pacer {
            pace: config.pace,
            started: Instant::now(),
            rate: config.rate.max(1) as f64,
            span_start_ms,
            span_ms: (span_end_ms - span_start_ms).max(1) as f64,
            compress_into: config.compress_into,
        }
    }

    /// Waits until event number `index` (with event time `time_ms`) is due. Returns true if
    /// shutdown was requested meanwhile.
    fn wait(&mut self, index: u64, time_ms: i64, shutdown: &Shutdown) -> bool {
        let due = match self.pace {
            Pace::Fast => return shutdown.is_requested(),
            Pace::Rate | Pace::Live => Duration::from_secs_f64(index as f64 / self.rate),
            Pace::Compressed => self
                .compress_into
                .mul_f64(((time_ms - self.span_start_ms) as f64 / self.span_ms).clamp(0.0, 1.0)),
        };
        let elapsed = self.started.elapsed();
        if due > elapsed {
            return shutdown.sleep(due - elapsed);
        }
        shutdown.is_requested()
    }
}
