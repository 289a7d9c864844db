//! What the edge does with each input record, whatever door it came through: accepted events
//! produced, rejections dead-lettered with an allow-listed copy, everything counted once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::DurableProducer;
use vigil_runtime::stats::StageStats;
use vigil_runtime::time::now_ms;
use vigil_runtime::RuntimeError;
use vigil_schemas::{AvroCodec, ClinicalEvent, DeadLetter, InputPosition, SourcePosition};

use super::adapter::{Adapted, Adapter, Outcome, Reason, Rejection, SnapshotMark};
use super::redact::{safe_copy, withheld};
use super::spool::{Released, SnapshotSpool};
use crate::edge::catalog::newest_change;
use crate::edge::{Catalog, EdgeConfig};
use crate::error::ProducerError;
use crate::pseudonym::PseudonymKey;

/// What a run of the ingest did: every input record is counted exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    pub records: u64,
    pub accepted: u64,
    pub tombstones: u64,
    /// Rejected records by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Accepted records with a code the catalogue could not map, by what was unmapped.
    pub unmapped: BTreeMap<String, u64>,
    /// Accepted updates that moved their row to another patient (each also sent a retraction
    /// to the patient it left).
    pub moved: u64,
}

impl IngestSummary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// The catalogue, re-read when its files change (a broken edit keeps the previous one).
pub(crate) struct LiveCatalog {
    pub(crate) catalog: Catalog,
    dir: std::path::PathBuf,
    checked: Instant,
    interval: Duration,
}

impl LiveCatalog {
    pub(crate) fn load(dir: &Path, interval: Duration) -> Result<Self, ProducerError> {
        let catalog = Catalog::load(dir)?;
        info!(hospitals = catalog.len(), dir = %dir.display(), "Edge catalogue loaded.");
        Ok(LiveCatalog {
            catalog,
            dir: dir.to_path_buf(),
            checked: Instant::now(),
            interval,
        })
    }

    pub(crate) fn refresh(&mut self) {
        if self.checked.elapsed() < self.interval {
            return;
        }
        self.checked = Instant::now();
        if newest_change(&self.dir) == self.catalog.loaded_from {
            return;
        }
        match Catalog::load(&self.dir) {
            Ok(catalog) => {
                info!(
                    hospitals = catalog.len(),
                    "Edge catalogue changed on disk; reloaded."
                );
                self.catalog = catalog;
            }
            Err(error) => {
                warn!(%error, "Edge catalogue changed but does not load; keeping the previous one.")
            }
        }
    }
}

/// Turns records into produced events or dead letters, counting as it goes.
pub(crate) struct Handler {
    pub(crate) key: PseudonymKey,
    offset: i32,
    events_topic: String,
    dead_letter_topic: String,
    event_codec: AvroCodec<ClinicalEvent>,
    dead_letter_codec: AvroCodec<DeadLetter>,
    buffer: Vec<u8>,
    pub(crate) summary: IngestSummary,
    /// Counts since the last publication: (hospital, outcome or reason or code kind).
    records: BTreeMap<(String, &'static str), u64>,
    letters: BTreeMap<(String, &'static str), u64>,
    unmapped: BTreeMap<(String, &'static str), u64>,
    /// Counts per hospital for the pipeline-stats topic.
    pub(crate) stats: StageStats,
    /// Whether events carry their input position: only a topic's, where a crash before the
    /// commit replays from the committed offset. A file's line numbers start again with every
    /// run (another export under the same name, or stdin), so they would pass for a replay.
    pub(crate) stamp_source: bool,
}

impl Handler {
    pub(crate) fn new(
        kafka: &KafkaConfig,
        edge: &EdgeConfig,
        key: PseudonymKey,
    ) -> Result<Self, ProducerError> {
        Ok(Handler {
            key,
            offset: edge.hospital_utc_offset_minutes,
            events_topic: kafka.topics.clinical_events.clone(),
            dead_letter_topic: kafka.topics.dead_letters.clone(),
            event_codec: AvroCodec::new()?,
            dead_letter_codec: AvroCodec::new()?,
            buffer: Vec::with_capacity(1024),
            summary: IngestSummary::default(),
            records: BTreeMap::new(),
            letters: BTreeMap::new(),
            unmapped: BTreeMap::new(),
            stats: StageStats::new("ingest", kafka)?,
            stamp_source: true,
        })
    }

    /// Publishes the counts gathered since the last call (once per batch, not per record).
    pub(crate) fn publish_metrics(&mut self) {
        for ((hospital, outcome), n) in std::mem::take(&mut self.records) {
            metrics::counter!("vigil_ingest_records_total", "hospital" => hospital, "outcome" => outcome).increment(n);
        }
        for ((hospital, reason), n) in std::mem::take(&mut self.letters) {
            metrics::counter!("vigil_dead_letters_total", "stage" => "ingest", "hospital" => hospital, "reason" => reason).increment(n);
        }
        for ((hospital, kind), n) in std::mem::take(&mut self.unmapped) {
            metrics::counter!("vigil_ingest_unmapped_codes_total", "hospital" => hospital, "kind" => kind).increment(n);
        }
    }

    /// One input record: a tombstone, a dead letter, a live change produced at once, or a
    /// snapshot row held until its snapshot ends.
    pub(crate) fn handle(
        &mut self,
        catalog: &Catalog,
        producer: &DurableProducer,
        spool: &mut SnapshotSpool,
        value: Option<&[u8]>,
        (topic, partition, offset): (&str, i32, i64),
    ) -> Result<(), ProducerError> {
        self.summary.records += 1;
        let now = now_ms();
        let adapter = Adapter {
            catalog,
            key: &self.key,
            utc_offset_minutes: self.offset,
            now_ms: now,
        };
        let at = InputPosition {
            topic,
            partition,
            offset,
        };
        let Adapted {
            outcome,
            mark,
            moved_from,
        } = adapter.adapt_marked(value);
        let (mut event, unmapped) = match outcome {
            Outcome::Tombstone => {
                self.summary.tombstones += 1;
                self.stats.hospital("").records_in += 1;
                *self
                    .records
                    .entry((String::new(), "tombstone"))
                    .or_default() += 1;
                return Ok(());
            }
            Outcome::Accepted(event) => (event, None),
            Outcome::AcceptedUnmapped(event, what) => (event, Some(what)),
            Outcome::Rejected(rejection) => {
                self.reject(producer, &rejection, value, at, now)?;
                if mark == SnapshotMark::Last {
                    self.release(producer, spool, &rejection.hospital)?;
                }
                return Ok(());
            }
        };
        match mark {
            SnapshotMark::Live => {
                // A hospital's first live change ends its snapshot: what it held goes first.
                if spool.is_holding(&event.hospital_id) {
                    self.release(producer, spool, &event.hospital_id)?;
                }
                // The source position lets the processor recognise this event if a crash
                // before the commit makes the edge send it again.
                if self.stamp_source {
                    event.source = Some(at.source());
                }
                if let Some(retraction) = moved_from {
                    self.retract_moved(producer, &retraction)?;
                }
                self.produce(producer, *event, unmapped, value, at, now)
            }
            SnapshotMark::Row => spool.hold(&event, unmapped, at),
            SnapshotMark::Last => {
                spool.hold(&event, unmapped, at)?;
                self.release(producer, spool, &event.hospital_id)
            }
        }
    }

    /// Ends a hospital's snapshot: its rows go on in clinical-time order (see `spool`).
    pub(crate) fn release(
        &mut self,
        producer: &DurableProducer,
        spool: &mut SnapshotSpool,
        hospital: &str,
    ) -> Result<(), ProducerError> {
        let now = now_ms();
        for released in spool.release(hospital)? {
            let Released { event, unmapped } = released?;
            let place = event.source.clone().unwrap_or(SourcePosition {
                topic: String::new(),
                partition: 0,
                offset: 0,
            });
            let at = InputPosition {
                topic: &place.topic,
                partition: place.partition,
                offset: place.offset,
            };
            self.produce(producer, event, unmapped, None, at, now)?;
        }
        Ok(())
    }

    /// Sends the retraction of a row from the patient it left. It carries no source position:
    /// the row's own event carries that one, and the two may meet in one processor partition.
    fn retract_moved(
        &mut self,
        producer: &DurableProducer,
        retraction: &ClinicalEvent,
    ) -> Result<(), ProducerError> {
        self.buffer.clear();
        self.event_codec.encode_into(retraction, &mut self.buffer)?;
        let key = retraction.patient_pseudonym.as_bytes();
        match producer.send(&self.events_topic, key, &self.buffer) {
            Ok(()) => {}
            // The row's own event is as large and is dead-lettered with the reason.
            Err(RuntimeError::RecordTooLarge { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        self.summary.moved += 1;
        self.stats.hospital(&retraction.hospital_id).records_out += 1;
        Ok(())
    }

    /// Sends an accepted event and counts it.
    pub(crate) fn produce(
        &mut self,
        producer: &DurableProducer,
        event: ClinicalEvent,
        unmapped: Option<&'static str>,
        value: Option<&[u8]>,
        at: InputPosition<'_>,
        now: i64,
    ) -> Result<(), ProducerError> {
        self.buffer.clear();
        self.event_codec.encode_into(&event, &mut self.buffer)?;
        match producer.send(
            &self.events_topic,
            event.patient_pseudonym.as_bytes(),
            &self.buffer,
        ) {
            Ok(()) => {}
            // The contract bounds every field, so this is a safety net: a record that cannot
            // be produced is a dead letter, never a failure the stage would meet again forever.
            Err(RuntimeError::RecordTooLarge { bytes, .. }) => {
                let rejection = Rejection {
                    hospital: event.hospital_id.clone(),
                    reason: Reason::RecordTooLarge,
                    detail: format!(
                        "the canonical event would take {bytes} bytes, more than a record may"
                    ),
                    columns: Vec::new(),
                };
                return self.reject(producer, &rejection, value, at, now);
            }
            Err(error) => return Err(error.into()),
        }
        if let Some(what) = unmapped {
            *self.summary.unmapped.entry(what.to_string()).or_default() += 1;
            *self
                .unmapped
                .entry((event.hospital_id.clone(), what))
                .or_default() += 1;
        }
        self.summary.accepted += 1;
        let counts = self.stats.hospital(&event.hospital_id);
        counts.records_in += 1;
        counts.records_out += 1;
        counts.event_age(now, event.event_time_ms);
        *self
            .records
            .entry((event.hospital_id.clone(), "accepted"))
            .or_default() += 1;
        Ok(())
    }

    /// A rejected change event: counted by reason, and a dead letter with an allow-listed copy.
    pub(crate) fn reject(
        &mut self,
        producer: &DurableProducer,
        rejection: &Rejection,
        value: Option<&[u8]>,
        at: InputPosition<'_>,
        now: i64,
    ) -> Result<(), ProducerError> {
        let bytes = value.unwrap_or_default();
        let copy = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(parsed) => {
                let columns: Vec<&str> = rejection.columns.iter().map(String::as_str).collect();
                safe_copy(&parsed, &columns)
            }
            Err(_) => withheld(bytes),
        };
        self.dead_letter(producer, rejection, &copy, at, now)
    }

    /// A rejected record of any door: counted by reason, and a dead letter with the copy given
    /// (which the door made safe to keep).
    pub(crate) fn dead_letter(
        &mut self,
        producer: &DurableProducer,
        rejection: &Rejection,
        copy: &str,
        at: InputPosition<'_>,
        now: i64,
    ) -> Result<(), ProducerError> {
        let reason = rejection.reason.as_str();
        *self.summary.rejected.entry(reason.to_string()).or_default() += 1;
        let counts = self.stats.hospital(&rejection.hospital);
        counts.records_in += 1;
        counts.dead_letters += 1;
        let letter = DeadLetter::new("ingest", at, reason, &rejection.detail, now)
            .with_hospital(&rejection.hospital)
            .with_copy(copy);
        let hospital = letter.hospital_id.clone();
        *self.letters.entry((hospital.clone(), reason)).or_default() += 1;
        *self.records.entry((hospital, "rejected")).or_default() += 1;
        self.buffer.clear();
        self.dead_letter_codec
            .encode_into(&letter, &mut self.buffer)?;
        producer.send(
            &self.dead_letter_topic,
            letter.hospital_id.as_bytes(),
            &self.buffer,
        )?;
        Ok(())
    }
}
