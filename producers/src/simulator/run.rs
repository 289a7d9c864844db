//! Drives the simulation into Kafka at the configured pace.

use std::time::{Duration, Instant};

use tracing::info;
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::DurableProducer;
use vigil_runtime::time::now_ms;
use vigil_runtime::Shutdown;
use vigil_schemas::{AvroCodec, ClinicalEvent};

use super::canonical::CanonicalRenderer;
use super::cdc::{CdcRecord, CdcRenderer, Manifest};
use super::config::{Output, Pace, SimulateConfig};
use super::facts::SimEvent;
use super::population::Simulation;
use crate::edge::{Catalog, EdgeConfig};
use crate::error::ProducerError;
use crate::pseudonym::PseudonymKey;

/// What a simulation run produced.
#[derive(Debug, Clone, Default)]
pub struct SimulateSummary {
    /// Simulated clinical facts.
    pub events: u64,
    /// Kafka records produced (CDC output may add duplicates, corrections and tombstones).
    pub records: u64,
    pub elapsed: Duration,
    /// Event time of the first and last fact.
    pub first_event_ms: i64,
    pub last_event_ms: i64,
    /// For CDC output: what the edge should accept and reject.
    pub manifest: Option<Manifest>,
}

/// Where records go: the broker, or a file of JSON lines (change events only).
enum Destination {
    Kafka(DurableProducer),
    File {
        path: String,
        writer: std::io::BufWriter<std::fs::File>,
    },
}

impl Destination {
    fn open(config: &SimulateConfig, kafka: &KafkaConfig) -> Result<Self, ProducerError> {
        if config.output_file.is_empty() {
            return Ok(Destination::Kafka(DurableProducer::new(
                kafka,
                "vigil-simulate",
            )?));
        }
        let path = config.output_file.clone();
        let file = std::fs::File::create(&path).map_err(|source| ProducerError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Destination::File {
            path,
            writer: std::io::BufWriter::new(file),
        })
    }

    /// Sends one record: produced with its capture time, or written as a line (a tombstone as
    /// `null`, as `vigil ingest --file` reads it).
    fn send(&mut self, topic: &str, record: &CdcRecord) -> Result<(), ProducerError> {
        match self {
            Destination::Kafka(producer) => Ok(producer.send_stamped(
                topic,
                &record.key,
                record.value.as_deref(),
                record.release_ms,
            )?),
            Destination::File { path, writer } => {
                use std::io::Write;
                let line = record.value.as_deref().unwrap_or(b"null");
                writer
                    .write_all(line)
                    .and_then(|()| writer.write_all(b"\n"))
                    .map_err(|source| ProducerError::Io {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }

    fn producer(&self) -> Result<&DurableProducer, ProducerError> {
        match self {
            Destination::Kafka(producer) => Ok(producer),
            Destination::File { .. } => Err(ProducerError::Config(
                "canonical events go to the broker, not to a file".into(),
            )),
        }
    }

    /// Everything sent is acknowledged by the broker, or written to the file.
    fn flush(&mut self) -> Result<(), ProducerError> {
        match self {
            Destination::Kafka(producer) => Ok(producer.flush()?),
            Destination::File { path, writer } => {
                use std::io::Write;
                writer.flush().map_err(|source| ProducerError::Io {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
}

/// Where rendered facts go.
enum Sink {
    Canonical {
        renderer: CanonicalRenderer,
        codec: Box<AvroCodec<ClinicalEvent>>,
        topic: String,
    },
    Cdc {
        renderer: Box<CdcRenderer>,
        topic: String,
    },
}

/// Produces the simulated history (CDC change events or canonical events, per `output`) and
/// returns once everything is acknowledged (or shutdown was requested).
pub fn run(
    config: &SimulateConfig,
    edge: &EdgeConfig,
    kafka: &KafkaConfig,
    key: PseudonymKey,
    shutdown: &Shutdown,
) -> Result<SimulateSummary, ProducerError> {
    config.validate()?;
    let mut destination = Destination::open(config, kafka)?;
    let mut simulation = Simulation::new(config);
    let mut sink = match config.output {
        Output::Canonical => Sink::Canonical {
            renderer: CanonicalRenderer::new(key, config.seed),
            codec: Box::new(AvroCodec::new()?),
            topic: kafka.topics.clinical_events.clone(),
        },
        Output::Cdc => {
            let catalog = Catalog::load(&edge.catalog_dir)?;
            let renderer = CdcRenderer::new(
                &catalog,
                config.hospitals,
                config.seed,
                edge.hospital_utc_offset_minutes,
                config.defects.clone(),
            )?
            .with_snapshot_at(config.snapshot_ms());
            Sink::Cdc {
                renderer: Box::new(renderer),
                topic: kafka.topics.his_changes.clone(),
            }
        }
    };
    let mut pacer = Pacer::new(config, simulation.start_ms, simulation.end_ms());
    let mut buffer = Vec::with_capacity(512);
    let mut records: Vec<CdcRecord> = Vec::new();
    let mut summary = SimulateSummary::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    info!(patients = config.patients, hospitals = config.hospitals, pace = ?config.pace, output = ?config.output,
        "Simulating {} days of clinical history.", config.span.as_secs() / 86_400);

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
        summary.records += produce(
            &mut sink,
            &mut destination,
            &simulation,
            &event,
            &mut buffer,
            &mut records,
        )?;
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
    if let Sink::Cdc { renderer, topic } = &mut sink {
        records.clear();
        renderer.finish(&mut records);
        summary.records += send_records(&mut destination, topic, &records)?;
        summary.manifest = Some(renderer.manifest.clone());
    }
    destination.flush()?;
    if let (Some(manifest), false) = (&summary.manifest, config.manifest.is_empty()) {
        let text = serde_json::to_string_pretty(manifest)
            .map_err(|e| ProducerError::Config(e.to_string()))?;
        std::fs::write(&config.manifest, text).map_err(|source| ProducerError::Io {
            path: config.manifest.clone(),
            source,
        })?;
    }
    summary.elapsed = started.elapsed();
    info!(
        events = summary.events,
        records = summary.records,
        seconds = summary.elapsed.as_secs_f64(),
        "Simulation finished; every record was acknowledged by the broker or written."
    );
    Ok(summary)
}

fn produce(
    sink: &mut Sink,
    destination: &mut Destination,
    simulation: &Simulation,
    event: &SimEvent,
    buffer: &mut Vec<u8>,
    records: &mut Vec<CdcRecord>,
) -> Result<u64, ProducerError> {
    match sink {
        Sink::Canonical {
            renderer,
            codec,
            topic,
        } => {
            let canonical = renderer.render(simulation, event, now_ms());
            buffer.clear();
            codec.encode_into(&canonical, buffer)?;
            destination
                .producer()?
                .send(topic, canonical.patient_pseudonym.as_bytes(), buffer)?;
            Ok(1)
        }
        Sink::Cdc { renderer, topic } => {
            records.clear();
            renderer.render(simulation, event, records);
            send_records(destination, topic, records)
        }
    }
}

fn send_records(
    destination: &mut Destination,
    topic: &str,
    records: &[CdcRecord],
) -> Result<u64, ProducerError> {
    for record in records {
        destination.send(topic, record)?;
    }
    Ok(records.len() as u64)
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
