//! Durable processor state: a changelog topic with one partition per input partition.
//!
//! A checkpoint of a partition is a run of records ended by a `Commit`: either a full snapshot
//! (`SnapshotStart`, then chunks holding every patient) or a delta (chunks holding the patients
//! changed since the previous checkpoint). The `Commit` carries the input offsets the state
//! reflects, the clocks, and the offset where the latest full snapshot starts. Records of a
//! checkpoint that never got its `Commit` (a crash mid-write) are ignored on restore.
//!
//! Restore reads the tail to find the last `Commit`, then replays from its snapshot onwards: at
//! most the snapshot plus the deltas since, which the snapshot policy keeps to about (1 + ratio)
//! times the state. The input is then resumed exactly at the committed offsets, so nothing is
//! applied twice and nothing is skipped. Kafka transactions are not needed (Tansu refuses them):
//! outputs carry deterministic ids, so the replay after a crash is harmless.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{DurableProducer, RangeReader};

use crate::engine::{Clock, Definition, PartitionState, SourceProgress};
use crate::error::ProcessorError;
use crate::rules::RuleSet;
use crate::state::{Patient, PatientKey, TimerKind};

/// First byte of every changelog value; bump when the layout changes incompatibly.
const FORMAT_VERSION: u8 = 4;
/// The previous layout (patients without their managing departments), still read: an upgrade
/// restores it, and the departments come with the next qualifying diagnoses.
const FORMAT_VERSION_3: u8 = 3;
/// An earlier layout (also commits without the sources' positions), still read: an upgrade
/// restores it, and the sources' positions start again from the next records.
const FORMAT_VERSION_2: u8 = 2;
/// An earlier layout (patients without `registration_ms` and the evidence of management, one
/// clock per partition), still read so that an upgrade restores it; the next checkpoint writes
/// the current layout.
const FORMAT_VERSION_1: u8 = 1;

/// Identifies one checkpoint: the epoch is the changelog's end offset when the writer restored
/// (unique per incarnation), the sequence counts checkpoints within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointId {
    pub epoch: i64,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub checkpoint: CheckpointId,
    /// How many records before this one the latest full snapshot's `SnapshotStart` is: one
    /// writer owns a changelog partition at a time, so its offset is this commit's minus that.
    pub records_since_snapshot: i64,
    /// Next offset to read per input topic of this partition.
    pub inputs: Vec<(String, i64)>,
    pub clocks: Clocks,
    /// The last input position applied per edge source: a replay is recognised after restore.
    pub sources: Vec<SourceProgress>,
    /// Rule ids in index order when written: timers and episodes refer to rules by index.
    pub rule_ids: Vec<String>,
    pub patients: u64,
    /// Bytes of the latest full snapshot, and of the deltas written since.
    pub snapshot_bytes: u64,
    pub delta_bytes: u64,
}

/// The event-time clocks a checkpoint records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Clocks {
    /// One per hospital (what this build writes).
    PerHospital(Vec<(String, Clock)>),
    /// One for the whole partition (layout 1): restored as the clock of every hospital whose
    /// patients the partition holds.
    Partition(Clock),
}

impl Clocks {
    fn per_hospital(self, patients: &FxHashMap<PatientKey, Patient>) -> Vec<(String, Clock)> {
        match self {
            Clocks::PerHospital(clocks) => clocks,
            Clocks::Partition(clock) => {
                let hospitals: std::collections::BTreeSet<&str> =
                    patients.values().map(|p| &*p.hospital).collect();
                hospitals
                    .into_iter()
                    .map(|h| (h.to_string(), clock))
                    .collect()
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Record {
    SnapshotStart {
        checkpoint: CheckpointId,
    },
    Chunk {
        checkpoint: CheckpointId,
        patients: Vec<(PatientKey, Option<Patient>)>,
    },
    Commit(CommitRecord),
}

fn encode(record: &Record) -> Result<Vec<u8>, ProcessorError> {
    let out = vec![FORMAT_VERSION];
    postcard::to_extend(record, out)
        .map_err(|e| ProcessorError::Config(format!("cannot encode changelog record: {e}")))
}

fn decode(partition: i32, offset: i64, bytes: &[u8]) -> Result<Record, ProcessorError> {
    let unreadable = |reason: String| ProcessorError::Changelog {
        partition,
        offset,
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| unreadable(e.to_string()))
        }
        Some((&FORMAT_VERSION_3, body)) => postcard::from_bytes::<v3::Record>(body)
            .map(Record::from)
            .map_err(|e| unreadable(e.to_string())),
        Some((&FORMAT_VERSION_2, body)) => postcard::from_bytes::<v2::Record>(body)
            .map(Record::from)
            .map_err(|e| unreadable(e.to_string())),
        Some((&FORMAT_VERSION_1, body)) => postcard::from_bytes::<v1::Record>(body)
            .map(Record::from)
            .map_err(|e| unreadable(e.to_string())),
        Some((version, _)) => Err(unreadable(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ))),
        None => Err(unreadable("empty record".into())),
    }
}

/// Chunks read for a checkpoint whose Commit has not been seen yet: (is a full snapshot, patients).
type PendingCheckpoint = (bool, Vec<(PatientKey, Option<Patient>)>);

/// Checkpoint bookkeeping of one owned partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub epoch: i64,
    pub seq: u64,
    /// Records in the changelog partition from the latest snapshot's `SnapshotStart` on;
    /// `None` until a snapshot exists.
    pub records_since_snapshot: Option<i64>,
    pub snapshot_bytes: u64,
    pub delta_bytes: u64,
}

/// What a restore found.
pub struct Restored {
    pub state: PartitionState,
    /// Next offset per input topic; empty when the partition starts fresh.
    pub inputs: Vec<(String, i64)>,
    pub progress: Progress,
    pub stats: RestoreStats,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    pub records: u64,
    pub bytes: u64,
    pub patients: usize,
    pub elapsed: Duration,
}

/// A checkpoint's commit marker, waiting for the state and outputs it covers to be durable.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    partition: i32,
    commit: CommitRecord,
}

#[derive(Debug, Clone, Default)]
pub struct WriteStats {
    pub patients: usize,
    pub bytes: u64,
    pub full: bool,
}

/// Reads and writes one processor's changelog topic.
pub struct Changelog {
    pub topic: String,
    /// (clinical events, alert acknowledgements): the inputs whose offsets checkpoints record.
    pub input_topics: (String, String),
    kafka: KafkaConfig,
    chunk_bytes: usize,
    snapshot_ratio: f64,
}

impl Changelog {
    pub fn new(kafka: &KafkaConfig, chunk_bytes: usize, snapshot_ratio: f64) -> Self {
        Changelog {
            topic: kafka.topics.processor_state.clone(),
            input_topics: (
                kafka.topics.clinical_events.clone(),
                kafka.topics.alert_acks.clone(),
            ),
            kafka: kafka.clone(),
            chunk_bytes,
            snapshot_ratio,
        }
    }

    /// Rebuilds the state of `partition` from its changelog, adapted to the rules and the metric
    /// definition in force (either may have changed since it was written).
    pub fn restore(
        &self,
        partition: i32,
        rules: &RuleSet,
        definition: Definition,
    ) -> Result<Restored, ProcessorError> {
        let started = Instant::now();
        let reader =
            RangeReader::new(&self.kafka, "vigil-process-restore", &self.topic, partition)?;
        let (low, high) = reader.watermarks()?;
        let mut stats = RestoreStats::default();

        // 1. The last Commit: look at a growing window of the tail.
        let last_commit = last_commit(&reader, partition, (low, high), &mut stats)?;
        let Some((commit_offset, commit)) = last_commit else {
            return Ok(Restored {
                state: PartitionState::new(),
                inputs: Vec::new(),
                progress: Progress {
                    epoch: high,
                    seq: 0,
                    records_since_snapshot: None,
                    snapshot_bytes: 0,
                    delta_bytes: 0,
                },
                stats: RestoreStats {
                    elapsed: started.elapsed(),
                    ..stats
                },
            });
        };
        let snapshot_offset = commit_offset - commit.records_since_snapshot;
        if snapshot_offset < low {
            return Err(ProcessorError::Changelog {
                partition,
                offset: commit_offset,
                reason: format!("its snapshot starts at offset {snapshot_offset}, before the log's start {low} (deleted by retention?)"),
            });
        }

        // 2. Replay from the latest full snapshot up to and including that Commit.
        let mut patients = replay(
            &reader,
            partition,
            snapshot_offset,
            commit_offset,
            &mut stats,
        )?;
        remap_rules(&mut patients, &commit.rule_ids, rules);
        for patient in patients.values_mut() {
            patient.derive_management(definition.evidence());
        }
        stats.patients = patients.len();
        stats.elapsed = started.elapsed();
        let clocks = commit.clocks.clone().per_hospital(&patients);
        let state = PartitionState::restore(patients, clocks, commit.sources.clone());
        info!(
            partition,
            patients = stats.patients,
            records = stats.records,
            megabytes = stats.bytes as f64 / 1e6,
            seconds = stats.elapsed.as_secs_f64(),
            "Restored partition state from the changelog."
        );
        Ok(Restored {
            state,
            inputs: commit.inputs.clone(),
            progress: Progress {
                epoch: high,
                seq: 0,
                // Partial records of a crashed writer after the commit count too: they sit
                // between the snapshot and whatever this writer appends next.
                records_since_snapshot: Some(high - snapshot_offset),
                snapshot_bytes: commit.snapshot_bytes,
                delta_bytes: commit.delta_bytes,
            },
            stats,
        })
    }

    /// Writes the state part of a checkpoint of `partition`: a delta of the changed patients, or
    /// a full snapshot when none exists yet or the deltas since the last one outgrew it. Returns
    /// the commit marker, which [`Changelog::commit`] sends once the caller has flushed: the
    /// marker must never become durable before the state and outputs it vouches for (they go to
    /// other partitions and topics, which the broker acknowledges independently).
    pub fn write(
        &self,
        producer: &DurableProducer,
        partition: i32,
        state: &mut PartitionState,
        progress: &mut Progress,
        inputs: Vec<(String, i64)>,
        rules: &RuleSet,
    ) -> Result<(WriteStats, PendingCommit), ProcessorError> {
        progress.seq += 1;
        let checkpoint = CheckpointId {
            epoch: progress.epoch,
            seq: progress.seq,
        };
        let changed = state.take_changed();
        let full = progress.records_since_snapshot.is_none()
            || progress.delta_bytes as f64
                > self.snapshot_ratio * progress.snapshot_bytes.max(1) as f64;
        let key = partition.to_le_bytes();
        let mut stats = WriteStats {
            full,
            ..WriteStats::default()
        };
        let records_before_commit = if full {
            producer.send_to(
                &self.topic,
                partition,
                &key,
                &encode(&Record::SnapshotStart { checkpoint })?,
            )?;
            let mut keys: Vec<&PatientKey> = state.patients.keys().collect();
            keys.sort_unstable();
            let (bytes, chunks) = self.write_chunks(
                producer,
                partition,
                checkpoint,
                keys.into_iter().map(|k| (*k, state.patients.get(k))),
            )?;
            stats.bytes = bytes;
            stats.patients = state.patients.len();
            progress.snapshot_bytes = bytes;
            progress.delta_bytes = 0;
            1 + chunks
        } else {
            let (bytes, chunks) = self.write_chunks(
                producer,
                partition,
                checkpoint,
                changed.iter().map(|k| (*k, state.patients.get(k))),
            )?;
            stats.bytes = bytes;
            stats.patients = changed.len();
            progress.delta_bytes += bytes;
            progress.records_since_snapshot.unwrap_or(0) + chunks
        };
        let commit = CommitRecord {
            checkpoint,
            records_since_snapshot: records_before_commit,
            inputs,
            clocks: Clocks::PerHospital(state.clocks().map(|(h, c)| (h.to_string(), c)).collect()),
            sources: state.sources().collect(),
            rule_ids: rules.rules().iter().map(|r| r.id.clone()).collect(),
            patients: state.patients.len() as u64,
            snapshot_bytes: progress.snapshot_bytes,
            delta_bytes: progress.delta_bytes,
        };
        debug!(
            partition,
            full,
            patients = stats.patients,
            bytes = stats.bytes,
            "Checkpoint state queued."
        );
        Ok((stats, PendingCommit { partition, commit }))
    }

    /// Sends a checkpoint's commit marker; durable after the caller's next flush.
    pub fn commit(
        &self,
        producer: &DurableProducer,
        progress: &mut Progress,
        pending: PendingCommit,
    ) -> Result<(), ProcessorError> {
        let records = pending.commit.records_since_snapshot;
        let bytes = encode(&Record::Commit(pending.commit))?;
        producer.send_to(
            &self.topic,
            pending.partition,
            &pending.partition.to_le_bytes(),
            &bytes,
        )?;
        progress.records_since_snapshot = Some(records + 1);
        Ok(())
    }

    /// Writes patients in chunks of about `chunk_bytes`; returns (bytes, records) written.
    fn write_chunks<'a>(
        &self,
        producer: &DurableProducer,
        partition: i32,
        checkpoint: CheckpointId,
        patients: impl Iterator<Item = (PatientKey, Option<&'a Patient>)>,
    ) -> Result<(u64, i64), ProcessorError> {
        let key = partition.to_le_bytes();
        let mut chunk: Vec<(PatientKey, Option<Patient>)> = Vec::new();
        let mut chunk_size = 0usize;
        let mut written = (0u64, 0i64);
        let mut send =
            |chunk: &mut Vec<(PatientKey, Option<Patient>)>| -> Result<(), ProcessorError> {
                if chunk.is_empty() {
                    return Ok(());
                }
                let bytes = encode(&Record::Chunk {
                    checkpoint,
                    patients: std::mem::take(chunk),
                })?;
                written.0 += bytes.len() as u64;
                written.1 += 1;
                producer.send_to(&self.topic, partition, &key, &bytes)?;
                Ok(())
            };
        for (key, patient) in patients {
            // Estimate the encoded size without encoding twice.
            chunk_size += 32
                + patient.map_or(1, |p| {
                    64 + 16 * (p.bp.len() + p.glucose.len() + p.hba1c.len() + p.egfr.len())
                        + 24 * p.follow_ups.len()
                        + 64 * p.episodes.len()
                });
            chunk.push((key, patient.cloned()));
            if chunk_size >= self.chunk_bytes {
                send(&mut chunk)?;
                chunk_size = 0;
            }
        }
        send(&mut chunk)?;
        Ok(written)
    }
}

/// Episodes and timers refer to rules by index: map the indices of the rule set that wrote the
/// state to the current one by rule id, dropping what belongs to rules that no longer exist.
fn remap_rules(patients: &mut FxHashMap<PatientKey, Patient>, written: &[String], rules: &RuleSet) {
    let current: Vec<&str> = rules.rules().iter().map(|r| r.id.as_str()).collect();
    if written
        .iter()
        .map(String::as_str)
        .eq(current.iter().copied())
    {
        return;
    }
    let map: Vec<Option<u16>> = written
        .iter()
        .map(|id| current.iter().position(|c| c == id).map(|i| i as u16))
        .collect();
    let new_index = |old: u16| map.get(old as usize).copied().flatten();
    for patient in patients.values_mut() {
        patient.episodes.retain_mut(|e| match new_index(e.rule) {
            Some(i) => {
                e.rule = i;
                true
            }
            None => false,
        });
        patient.timers = patient
            .timers
            .iter()
            .filter_map(|(kind, due)| new_index(kind.rule()).map(|i| (kind.with_rule(i), *due)))
            .collect::<Vec<(TimerKind, i64)>>();
    }
}

/// How long a changelog read may go without records before it fails.
const RESTORE_STALL: Duration = Duration::from_secs(60);

/// The last commit marker of a changelog partition, found by reading a growing window of its
/// tail (commits are frequent; the whole log is read only when there is none).
fn last_commit(
    reader: &RangeReader,
    partition: i32,
    (low, high): (i64, i64),
    stats: &mut RestoreStats,
) -> Result<Option<(i64, CommitRecord)>, ProcessorError> {
    let mut window = 16i64;
    let mut last_commit: Option<(i64, CommitRecord)> = None;
    loop {
        let from = (high - window).max(low);
        reader.read::<ProcessorError>(from, high, RESTORE_STALL, |offset, payload| {
            if let Some(bytes) = payload {
                stats.bytes += bytes.len() as u64;
                if let Record::Commit(commit) = decode(partition, offset, bytes)? {
                    last_commit = Some((offset, commit));
                }
            }
            Ok(())
        })?;
        if last_commit.is_some() || from == low {
            return Ok(last_commit);
        }
        window *= 8;
    }
}

/// The patients as of the commit at `commit_offset`: the snapshot that starts at
/// `snapshot_offset`, then every delta whose checkpoint committed. Chunks of a checkpoint that
/// never committed (its writer crashed) are dropped.
fn replay(
    reader: &RangeReader,
    partition: i32,
    snapshot_offset: i64,
    commit_offset: i64,
    stats: &mut RestoreStats,
) -> Result<FxHashMap<PatientKey, Patient>, ProcessorError> {
    let mut patients: FxHashMap<PatientKey, Patient> = FxHashMap::default();
    let mut pending: FxHashMap<CheckpointId, PendingCheckpoint> = FxHashMap::default();
    let mut first = true;
    stats.records = reader.read::<ProcessorError>(
        snapshot_offset,
        commit_offset + 1,
        RESTORE_STALL,
        |offset, payload| {
            let Some(bytes) = payload else { return Ok(()) };
            stats.bytes += bytes.len() as u64;
            let record = decode(partition, offset, bytes)?;
            if std::mem::take(&mut first) && !matches!(record, Record::SnapshotStart { .. }) {
                return Err(ProcessorError::Changelog {
                    partition,
                    offset,
                    reason: "the record a commit names as its snapshot's start is not one".into(),
                });
            }
            match record {
                Record::SnapshotStart { checkpoint } => {
                    pending.insert(checkpoint, (true, Vec::new()));
                }
                Record::Chunk {
                    checkpoint,
                    patients: chunk,
                } => {
                    pending
                        .entry(checkpoint)
                        .or_insert((false, Vec::new()))
                        .1
                        .extend(chunk);
                }
                Record::Commit(c) => {
                    if let Some((full, chunk)) = pending.remove(&c.checkpoint) {
                        if full {
                            patients.clear();
                        }
                        for (key, patient) in chunk {
                            match patient {
                                Some(p) => patients.insert(key, p),
                                None => patients.remove(&key),
                            };
                        }
                    }
                    // Anything else pending belonged to a checkpoint that never completed.
                    pending.clear();
                }
            }
            Ok(())
        },
    )?;
    Ok(patients)
}

/// Changelog layout 3: commits as now, patients without their managing departments.
mod v3 {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};
    use vigil_schemas::Sex;

    use super::{CheckpointId, CommitRecord};
    use crate::state::{
        BpReading, ComplicationRecord, Episode, FollowUp, PatientKey, Reading, TimerKind,
    };

    #[derive(Debug, Serialize, Deserialize)]
    pub enum Record {
        SnapshotStart {
            checkpoint: CheckpointId,
        },
        Chunk {
            checkpoint: CheckpointId,
            patients: Vec<(PatientKey, Option<Patient>)>,
        },
        Commit(CommitRecord),
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Patient {
        pub hospital: Arc<str>,
        pub region: Arc<str>,
        pub sex: Option<Sex>,
        pub birth_year: i16,
        pub enrolled_ms: [Option<i64>; 2],
        pub diagnosed_ms: [Option<i64>; 2],
        pub first_form_ms: [Option<i64>; 2],
        pub managed_ms: [Option<i64>; 2],
        pub registration_record: u32,
        pub registration_ms: Option<i64>,
        pub death_ms: Option<i64>,
        pub first_seen_ms: i64,
        pub last_event_ms: i64,
        pub version: u32,
        pub bp: Vec<BpReading>,
        pub glucose: Vec<Reading>,
        pub hba1c: Vec<Reading>,
        pub egfr: Vec<Reading>,
        pub follow_ups: Vec<FollowUp>,
        pub complications: Vec<ComplicationRecord>,
        pub episodes: Vec<Episode>,
        pub timers: Vec<(TimerKind, i64)>,
        pub recent_events: Vec<u64>,
    }

    impl From<Patient> for crate::state::Patient {
        fn from(p: Patient) -> Self {
            crate::state::Patient {
                hospital: p.hospital,
                region: p.region,
                sex: p.sex,
                birth_year: p.birth_year,
                enrolled_ms: p.enrolled_ms,
                diagnosed_ms: p.diagnosed_ms,
                first_form_ms: p.first_form_ms,
                managed_ms: p.managed_ms,
                // Unknown before this layout: the next qualifying diagnosis names it.
                departments: [None, None],
                registration_record: p.registration_record,
                registration_ms: p.registration_ms,
                death_ms: p.death_ms,
                first_seen_ms: p.first_seen_ms,
                last_event_ms: p.last_event_ms,
                version: p.version,
                bp: p.bp,
                glucose: p.glucose,
                hba1c: p.hba1c,
                egfr: p.egfr,
                follow_ups: p.follow_ups,
                complications: p.complications,
                episodes: p.episodes,
                timers: p.timers,
                recent_events: p.recent_events,
            }
        }
    }

    /// Patients as layout 3 held them (layout 2 held them the same way).
    pub fn patients(
        patients: Vec<(PatientKey, Option<Patient>)>,
    ) -> Vec<(PatientKey, Option<crate::state::Patient>)> {
        patients
            .into_iter()
            .map(|(key, patient)| (key, patient.map(Into::into)))
            .collect()
    }

    impl From<Record> for super::Record {
        fn from(record: Record) -> Self {
            match record {
                Record::SnapshotStart { checkpoint } => super::Record::SnapshotStart { checkpoint },
                Record::Chunk {
                    checkpoint,
                    patients: held,
                } => super::Record::Chunk {
                    checkpoint,
                    patients: patients(held),
                },
                Record::Commit(commit) => super::Record::Commit(commit),
            }
        }
    }
}

/// Changelog layout 2: patients as layout 3, commits without the sources' positions.
mod v2 {
    use serde::{Deserialize, Serialize};

    use super::v3::Patient;
    use super::{CheckpointId, Clocks};
    use crate::state::PatientKey;

    #[derive(Debug, Serialize, Deserialize)]
    pub enum Record {
        SnapshotStart {
            checkpoint: CheckpointId,
        },
        Chunk {
            checkpoint: CheckpointId,
            patients: Vec<(PatientKey, Option<Patient>)>,
        },
        Commit(CommitRecord),
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct CommitRecord {
        pub checkpoint: CheckpointId,
        pub records_since_snapshot: i64,
        pub inputs: Vec<(String, i64)>,
        pub clocks: Clocks,
        pub rule_ids: Vec<String>,
        pub patients: u64,
        pub snapshot_bytes: u64,
        pub delta_bytes: u64,
    }

    impl From<Record> for super::Record {
        fn from(record: Record) -> Self {
            match record {
                Record::SnapshotStart { checkpoint } => super::Record::SnapshotStart { checkpoint },
                Record::Chunk {
                    checkpoint,
                    patients,
                } => super::Record::Chunk {
                    checkpoint,
                    patients: super::v3::patients(patients),
                },
                Record::Commit(c) => super::Record::Commit(super::CommitRecord {
                    checkpoint: c.checkpoint,
                    records_since_snapshot: c.records_since_snapshot,
                    inputs: c.inputs,
                    clocks: c.clocks,
                    sources: Vec::new(),
                    rule_ids: c.rule_ids,
                    patients: c.patients,
                    snapshot_bytes: c.snapshot_bytes,
                    delta_bytes: c.delta_bytes,
                }),
            }
        }
    }
}

/// Changelog layout 1, as an earlier build wrote it.
mod v1 {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};
    use vigil_schemas::Sex;

    use super::{CheckpointId, Clocks};
    use crate::engine::Clock;
    use crate::state::{
        BpReading, ComplicationRecord, Episode, FollowUp, PatientKey, Reading, TimerKind,
    };

    #[derive(Debug, Serialize, Deserialize)]
    pub enum Record {
        SnapshotStart {
            checkpoint: CheckpointId,
        },
        Chunk {
            checkpoint: CheckpointId,
            patients: Vec<(PatientKey, Option<Patient>)>,
        },
        Commit(CommitRecord),
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct CommitRecord {
        pub checkpoint: CheckpointId,
        pub records_since_snapshot: i64,
        pub inputs: Vec<(String, i64)>,
        pub watermark_ms: i64,
        pub max_event_ms: i64,
        pub period_month: Option<i32>,
        pub rule_ids: Vec<String>,
        pub patients: u64,
        pub snapshot_bytes: u64,
        pub delta_bytes: u64,
    }

    impl From<CommitRecord> for super::CommitRecord {
        fn from(c: CommitRecord) -> Self {
            super::CommitRecord {
                checkpoint: c.checkpoint,
                records_since_snapshot: c.records_since_snapshot,
                inputs: c.inputs,
                clocks: Clocks::Partition(Clock {
                    watermark_ms: c.watermark_ms,
                    max_event_ms: c.max_event_ms,
                    period_month: c.period_month,
                }),
                sources: Vec::new(),
                rule_ids: c.rule_ids,
                patients: c.patients,
                snapshot_bytes: c.snapshot_bytes,
                delta_bytes: c.delta_bytes,
            }
        }
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Patient {
        pub hospital: Arc<str>,
        pub region: Arc<str>,
        pub sex: Option<Sex>,
        pub birth_year: i16,
        pub enrolled_ms: [Option<i64>; 2],
        pub registration_record: u32,
        pub death_ms: Option<i64>,
        pub first_seen_ms: i64,
        pub last_event_ms: i64,
        pub version: u32,
        pub bp: Vec<BpReading>,
        pub glucose: Vec<Reading>,
        pub hba1c: Vec<Reading>,
        pub egfr: Vec<Reading>,
        pub follow_ups: Vec<FollowUp>,
        pub complications: Vec<ComplicationRecord>,
        pub episodes: Vec<Episode>,
        pub timers: Vec<(TimerKind, i64)>,
    }

    impl From<Patient> for crate::state::Patient {
        fn from(p: Patient) -> Self {
            crate::state::Patient {
                hospital: p.hospital,
                region: p.region,
                sex: p.sex,
                birth_year: p.birth_year,
                enrolled_ms: p.enrolled_ms,
                // Unknown before this layout; the next such event supplies it.
                diagnosed_ms: [None; 2],
                first_form_ms: [None; 2],
                // Derived again with the definition in force when the state is adopted.
                managed_ms: p.enrolled_ms,
                departments: [None, None],
                registration_record: p.registration_record,
                // Unknown: the next registration version is applied whatever its time.
                registration_ms: None,
                death_ms: p.death_ms,
                first_seen_ms: p.first_seen_ms,
                last_event_ms: p.last_event_ms,
                version: p.version,
                bp: p.bp,
                glucose: p.glucose,
                hba1c: p.hba1c,
                egfr: p.egfr,
                follow_ups: p.follow_ups,
                complications: p.complications,
                episodes: p.episodes,
                timers: p.timers,
                recent_events: Vec::new(),
            }
        }
    }

    impl From<Record> for super::Record {
        fn from(record: Record) -> Self {
            match record {
                Record::SnapshotStart { checkpoint } => super::Record::SnapshotStart { checkpoint },
                Record::Chunk {
                    checkpoint,
                    patients,
                } => super::Record::Chunk {
                    checkpoint,
                    patients: patients
                        .into_iter()
                        .map(|(key, patient)| (key, patient.map(Into::into)))
                        .collect(),
                },
                Record::Commit(commit) => super::Record::Commit(commit.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_versions_are_refused() {
        let record = Record::Chunk {
            checkpoint: CheckpointId { epoch: 7, seq: 3 },
            patients: vec![
                (
                    [1u8; 32],
                    Some(Patient {
                        birth_year: 1950,
                        ..Patient::default()
                    }),
                ),
                ([2u8; 32], None),
            ],
        };
        let bytes = encode(&record).unwrap();
        match decode(0, 0, &bytes).unwrap() {
            Record::Chunk {
                checkpoint,
                patients,
            } => {
                assert_eq!(checkpoint, CheckpointId { epoch: 7, seq: 3 });
                assert_eq!(patients.len(), 2);
                assert_eq!(patients[0].1.as_ref().unwrap().birth_year, 1950);
            }
            other => panic!("{other:?}"),
        }
        let mut foreign = bytes.clone();
        foreign[0] = 99;
        assert!(decode(3, 10, &foreign)
            .unwrap_err()
            .to_string()
            .contains("format version 99"));
        assert!(decode(3, 10, &[]).is_err());
    }

    #[test]
    fn a_changelog_of_the_previous_layout_still_restores() {
        let old = v1::Record::Chunk {
            checkpoint: CheckpointId { epoch: 2, seq: 9 },
            patients: vec![(
                [3u8; 32],
                Some(v1::Patient {
                    birth_year: 1961,
                    death_ms: Some(5),
                    ..v1::Patient::default()
                }),
            )],
        };
        let bytes = postcard::to_extend(&old, vec![FORMAT_VERSION_1]).unwrap();
        match decode(0, 0, &bytes).unwrap() {
            Record::Chunk { patients, .. } => {
                let patient = patients[0].1.as_ref().unwrap();
                assert_eq!((patient.birth_year, patient.death_ms), (1961, Some(5)));
                assert_eq!(patient.registration_ms, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patients_of_layout_3_restore_without_their_departments() {
        let old = v3::Record::Chunk {
            checkpoint: CheckpointId { epoch: 5, seq: 2 },
            patients: vec![(
                [4u8; 32],
                Some(v3::Patient {
                    birth_year: 1958,
                    registration_ms: Some(11),
                    recent_events: vec![7],
                    ..v3::Patient::default()
                }),
            )],
        };
        let bytes = postcard::to_extend(&old, vec![FORMAT_VERSION_3]).unwrap();
        match decode(0, 0, &bytes).unwrap() {
            Record::Chunk { patients, .. } => {
                let patient = patients[0].1.as_ref().unwrap();
                assert_eq!(
                    (
                        patient.birth_year,
                        patient.registration_ms,
                        &patient.recent_events
                    ),
                    (1958, Some(11), &vec![7])
                );
                assert_eq!(patient.departments, [None, None]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_commit_of_layout_2_restores_without_source_positions() {
        let old = v2::Record::Commit(v2::CommitRecord {
            checkpoint: CheckpointId { epoch: 4, seq: 1 },
            records_since_snapshot: 3,
            inputs: vec![("events".into(), 120)],
            clocks: Clocks::PerHospital(vec![("H0001".into(), Clock::START)]),
            rule_ids: vec!["hypertensive_crisis".into()],
            patients: 2,
            snapshot_bytes: 10,
            delta_bytes: 0,
        });
        let bytes = postcard::to_extend(&old, vec![FORMAT_VERSION_2]).unwrap();
        match decode(0, 0, &bytes).unwrap() {
            Record::Commit(commit) => {
                assert_eq!(commit.inputs, vec![("events".to_string(), 120)]);
                assert!(commit.sources.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // What this build writes keeps the positions.
        let sources = vec![SourceProgress {
            hospital: "H0001".into(),
            topic: "vigil.his.changes".into(),
            partition: 2,
            offset: 77,
        }];
        let current = Record::Commit(CommitRecord {
            checkpoint: CheckpointId { epoch: 4, seq: 2 },
            records_since_snapshot: 0,
            inputs: Vec::new(),
            clocks: Clocks::PerHospital(Vec::new()),
            sources: sources.clone(),
            rule_ids: Vec::new(),
            patients: 0,
            snapshot_bytes: 0,
            delta_bytes: 0,
        });
        match decode(0, 0, &encode(&current).unwrap()).unwrap() {
            Record::Commit(commit) => assert_eq!(commit.sources, sources),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rule_indices_follow_rule_ids_across_rule_file_changes() {
        use crate::state::Episode;
        let rules = RuleSet::defaults().unwrap();
        let ids: Vec<String> = rules.rules().iter().map(|r| r.id.clone()).collect();
        // The writer had the rules in reverse order plus one that no longer exists.
        let mut written: Vec<String> = ids.iter().rev().cloned().collect();
        written.push("retired_rule".into());
        let crisis_old = written
            .iter()
            .position(|i| i == "hypertensive_crisis")
            .unwrap() as u16;
        let retired_old = (written.len() - 1) as u16;
        let episode = |rule: u16| Episode {
            rule,
            rule_id: "x".into(),
            subject: 0,
            id: [0; 16],
            opened_ms: 0,
            last_notified_ms: 0,
            sequence: 0,
            acknowledged: false,
            snoozed_until_ms: 0,
            hospital: "H".into(),
        };
        let mut patients = FxHashMap::default();
        patients.insert(
            [0u8; 32],
            Patient {
                episodes: vec![episode(crisis_old), episode(retired_old)],
                timers: vec![
                    (
                        TimerKind::Renotify {
                            rule: crisis_old,
                            subject: 0,
                        },
                        5,
                    ),
                    (
                        TimerKind::Due {
                            rule: retired_old,
                            subject: 0,
                        },
                        9,
                    ),
                ],
                ..Patient::default()
            },
        );
        remap_rules(&mut patients, &written, &rules);
        let p = &patients[&[0u8; 32]];
        let crisis_now = ids.iter().position(|i| i == "hypertensive_crisis").unwrap() as u16;
        assert_eq!(p.episodes.len(), 1);
        assert_eq!(p.episodes[0].rule, crisis_now);
        assert_eq!(
            p.timers,
            vec![(
                TimerKind::Renotify {
                    rule: crisis_now,
                    subject: 0
                },
                5
            )]
        );
    }
}
