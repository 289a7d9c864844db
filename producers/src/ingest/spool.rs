//! A hospital's initial snapshot, held until it ends and released in clinical-time order.
//!
//! Debezium starts a connector with a snapshot of the tables as they stand (`op = r`): table
//! after table, every row stamped with the snapshot's time. Applied in that order, a patient's
//! laboratory results would all arrive before their vital signs and follow-up forms, and the
//! rules, timers and bounded histories would see a history no stream ever shows. So the edge
//! holds each hospital's snapshot rows (encoded, in an unnamed temporary file, with a small
//! index in memory) until the snapshot ends — its `last` row, the hospital's first live change,
//! a quiet spell, or the end of a file — and then releases them: registrations first (they
//! carry the snapshot's stamp and say who the patient is), then by clinical time, ties in the
//! order read. The released rows carry a source position of their own (`snapshot:<id>`, their
//! place in that order), which tells the processor they come in clinical-time order and lets it
//! recognise them if a crash makes the edge release the same snapshot again.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_schemas::ids::stable_id;
use vigil_schemas::{
    AvroCodec, ClinicalEvent, InputPosition, Payload, SourcePosition, ORDERED_SNAPSHOT_PREFIX,
};

use crate::error::ProducerError;

/// Every hospital's snapshot being held.
pub struct SnapshotSpool {
    dir: PathBuf,
    quiet: Duration,
    /// Part of every release's name: empty for a topic (a restart must name the same snapshot
    /// the same), the run's start for a file (another export may start at the same line).
    salt: String,
    codec: AvroCodec<ClinicalEvent>,
    held: BTreeMap<String, Held>,
    buffer: Vec<u8>,
}

/// One hospital's snapshot so far.
struct Held {
    /// Written through a buffer (one system call per 64 KiB, not per row); flushed before the
    /// release reads it.
    file: BufWriter<File>,
    written: u64,
    entries: Vec<Entry>,
    /// The kinds of unmapped code seen (a handful: an entry holds an index into this).
    unmapped_kinds: Vec<&'static str>,
    /// The snapshot's first input record, which names its release.
    first: (String, i32, i64),
    /// Lowest input offset held per input partition: commits stay at it until the release.
    fences: Vec<(String, i32, i64)>,
    touched: Instant,
}

/// Where one held event is, and where it goes in the release: 32 bytes, held per row.
struct Entry {
    order: i64,
    at: u64,
    seq: u32,
    len: u32,
    /// 1 + the index in `Held::unmapped_kinds` of the code left unmapped; 0: none.
    unmapped: u8,
}

/// One released event: where it belongs, and the code left unmapped when it was read.
pub struct Released {
    pub event: ClinicalEvent,
    pub unmapped: Option<&'static str>,
}

impl SnapshotSpool {
    /// A spool in `dir`, refused at once if no file can be made there: found at start-up, not
    /// when a hospital's first snapshot arrives months later (and at every restart after it).
    pub fn new(dir: &Path, quiet: Duration, salt: String) -> Result<Self, ProducerError> {
        if let Err(error) = tempfile::tempfile_in(dir) {
            return Err(ProducerError::Config(format!(
                "ingest.snapshot_spool_dir {}: no file can be made there ({error})",
                dir.display()
            )));
        }
        Ok(SnapshotSpool {
            dir: dir.to_path_buf(),
            quiet,
            salt,
            codec: AvroCodec::new()?,
            held: BTreeMap::new(),
            buffer: Vec::with_capacity(1024),
        })
    }

    fn io_error(&self, source: std::io::Error) -> ProducerError {
        ProducerError::Io {
            path: self.dir.display().to_string(),
            source,
        }
    }

    /// Holds one snapshot row of `event.hospital_id`, read at `at`.
    pub fn hold(
        &mut self,
        event: &ClinicalEvent,
        unmapped: Option<&'static str>,
        at: InputPosition<'_>,
    ) -> Result<(), ProducerError> {
        self.buffer.clear();
        self.codec.encode_into(event, &mut self.buffer)?;
        if !self.held.contains_key(&event.hospital_id) {
            let file = tempfile::tempfile_in(&self.dir).map_err(|e| self.io_error(e))?;
            tracing::info!(hospital = %event.hospital_id,
                "An initial snapshot begins; its rows are held until it ends, then released in clinical-time order.");
            let first = (at.topic.to_string(), at.partition, at.offset);
            self.held.insert(
                event.hospital_id.clone(),
                Held {
                    file: BufWriter::with_capacity(64 * 1024, file),
                    written: 0,
                    entries: Vec::new(),
                    unmapped_kinds: Vec::new(),
                    first,
                    fences: Vec::new(),
                    touched: Instant::now(),
                },
            );
        }
        let Some(held) = self.held.get_mut(&event.hospital_id) else {
            return Ok(());
        };
        if let Err(source) = held.file.write_all(&self.buffer) {
            return Err(ProducerError::Io {
                path: self.dir.display().to_string(),
                source,
            });
        }
        let order = match event.payload {
            Payload::PatientRegistration(_) => i64::MIN,
            _ => event.event_time_ms,
        };
        let unmapped = match unmapped {
            None => 0,
            Some(kind) => match held.unmapped_kinds.iter().position(|k| *k == kind) {
                Some(index) => index + 1,
                None => {
                    held.unmapped_kinds.push(kind);
                    held.unmapped_kinds.len()
                }
            },
        };
        held.entries.push(Entry {
            order,
            at: held.written,
            seq: held.entries.len() as u32,
            len: self.buffer.len() as u32,
            unmapped: unmapped.min(u8::MAX as usize) as u8,
        });
        held.written += self.buffer.len() as u64;
        held.touched = Instant::now();
        if !held
            .fences
            .iter()
            .any(|(t, p, _)| *p == at.partition && t == at.topic)
        {
            held.fences
                .push((at.topic.to_string(), at.partition, at.offset));
        }
        Ok(())
    }

    pub fn is_holding(&self, hospital: &str) -> bool {
        self.held.contains_key(hospital)
    }

    /// Rows held, all hospitals together.
    pub fn rows(&self) -> usize {
        self.held.values().map(|h| h.entries.len()).sum()
    }

    /// Hospitals whose snapshot is held.
    pub fn hospitals(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// Hospitals whose snapshot sent nothing for the quiet spell.
    pub fn quiet_hospitals(&self) -> Vec<String> {
        self.held
            .iter()
            .filter(|(_, h)| h.touched.elapsed() >= self.quiet)
            .map(|(hospital, _)| hospital.clone())
            .collect()
    }

    /// Input offsets commits must stay at while their records are held.
    pub fn fences(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.held
            .values()
            .flat_map(|h| h.fences.iter().map(|(t, p, o)| (t.as_str(), *p, *o)))
    }

    /// Spool file bytes written for the snapshots held.
    pub fn file_bytes(&self) -> u64 {
        self.held.values().map(|h| h.written).sum()
    }

    /// Memory the index of the snapshots held takes.
    pub fn index_bytes(&self) -> usize {
        self.held
            .values()
            .map(|h| h.entries.capacity() * std::mem::size_of::<Entry>())
            .sum()
    }

    /// Ends a hospital's snapshot: its rows in release order, each with its place in it, read
    /// one at a time (a snapshot may be far larger than memory).
    pub fn release(&mut self, hospital: &str) -> Result<Release, ProducerError> {
        let Some(mut held) = self.held.remove(hospital) else {
            return Release::empty(&self.dir);
        };
        if let Err(source) = held.file.flush() {
            return Err(self.io_error(source));
        }
        held.entries.sort_by_key(|e| (e.order, e.seq));
        let (topic, partition, offset) = &held.first;
        let name = stable_id(&[
            topic.as_bytes(),
            &partition.to_le_bytes(),
            &offset.to_le_bytes(),
            self.salt.as_bytes(),
        ]);
        tracing::info!(%hospital, rows = held.entries.len(),
            "An initial snapshot ended; its rows go on in clinical-time order.");
        Ok(Release {
            topic: format!("{ORDERED_SNAPSHOT_PREFIX}{}", &name[..16]),
            partition: *partition,
            place: 0,
            held: Some(held),
            codec: AvroCodec::new()?,
            bytes: Vec::new(),
            dir: self.dir.clone(),
        })
    }
}

/// A snapshot being released: its rows in clinical-time order, read from the spool file.
pub struct Release {
    topic: String,
    partition: i32,
    place: usize,
    held: Option<Held>,
    codec: AvroCodec<ClinicalEvent>,
    bytes: Vec<u8>,
    dir: PathBuf,
}

impl Release {
    fn empty(dir: &Path) -> Result<Release, ProducerError> {
        Ok(Release {
            topic: String::new(),
            partition: 0,
            place: 0,
            held: None,
            codec: AvroCodec::new()?,
            bytes: Vec::new(),
            dir: dir.to_path_buf(),
        })
    }

    /// Rows not released yet.
    pub fn remaining(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, |h| h.entries.len() - self.place)
    }

    fn read(&mut self) -> Option<Result<Released, ProducerError>> {
        let held = self.held.as_ref()?;
        let entry = held.entries.get(self.place)?;
        self.bytes.resize(entry.len as usize, 0);
        if let Err(source) = held.file.get_ref().read_exact_at(&mut self.bytes, entry.at) {
            return Some(Err(ProducerError::Io {
                path: self.dir.display().to_string(),
                source,
            }));
        }
        let unmapped = (entry.unmapped as usize)
            .checked_sub(1)
            .and_then(|index| held.unmapped_kinds.get(index).copied());
        let mut event = match self.codec.decode(&self.bytes) {
            Ok(event) => event,
            Err(error) => return Some(Err(error.into())),
        };
        event.source = Some(SourcePosition {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.place as i64,
        });
        self.place += 1;
        Some(Ok(Released { event, unmapped }))
    }
}

impl Iterator for Release {
    type Item = Result<Released, ProducerError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_schemas::{LabResult, Operation, PatientRegistration, Sex};

    fn event(hospital: &str, time: i64, registration: bool) -> ClinicalEvent {
        let payload = if registration {
            Payload::PatientRegistration(PatientRegistration {
                sex: Sex::Female,
                birth_year: 1950,
                region_code: "110101".into(),
                programmes: Vec::new(),
                death_time_ms: None,
            })
        } else {
            Payload::LabResult(LabResult {
                loinc: "4548-4".into(),
                value: 7.0,
                unit: "%".into(),
                local_code: "医".repeat(40),
                encounter_id: None,
            })
        };
        ClinicalEvent {
            event_id: format!("{hospital}-{time}"),
            hospital_id: hospital.into(),
            source_system: "test".into(),
            operation: Operation::Snapshot,
            event_time_ms: time,
            ingest_time_ms: 0,
            patient_pseudonym: "ab".repeat(32),
            record_id: format!("lab/{time}"),
            schema_version: 2,
            payload,
            source: None,
        }
    }

    fn at(offset: i64) -> InputPosition<'static> {
        InputPosition {
            topic: "his.changes",
            partition: (offset % 2) as i32,
            offset,
        }
    }

    fn spool(salt: &str) -> SnapshotSpool {
        SnapshotSpool::new(&std::env::temp_dir(), Duration::from_secs(60), salt.into()).unwrap()
    }

    #[test]
    fn a_snapshot_is_released_registrations_first_then_by_clinical_time() {
        let mut spool = spool("");
        // Table order: labs of three times, then the registration stamped "now".
        for (offset, time) in [(10, 300), (11, 100), (12, 200), (13, 100)] {
            spool
                .hold(&event("H1", time, false), None, at(offset))
                .unwrap();
        }
        spool
            .hold(&event("H1", 900, true), Some("drug"), at(14))
            .unwrap();
        spool.hold(&event("H2", 50, false), None, at(15)).unwrap();
        assert_eq!(spool.rows(), 6);
        let fences: Vec<_> = spool.fences().collect();
        assert_eq!(
            fences,
            [
                ("his.changes", 0, 10),
                ("his.changes", 1, 11),
                ("his.changes", 1, 15)
            ]
        );
        let released: Vec<Released> = spool.release("H1").unwrap().map(Result::unwrap).collect();
        let order: Vec<_> = released
            .iter()
            .map(|r| (r.event.event_time_ms, r.event.record_id.clone()))
            .collect();
        assert_eq!(
            order,
            [
                (900, "lab/900".to_string()),
                (100, "lab/100".into()),
                (100, "lab/100".into()),
                (200, "lab/200".into()),
                (300, "lab/300".into())
            ]
        );
        assert_eq!(released[0].unmapped, Some("drug"));
        let Payload::LabResult(lab) = &released[1].event.payload else {
            panic!("a laboratory result")
        };
        assert_eq!(
            lab.local_code,
            "医".repeat(40),
            "multi-byte text kept whole"
        );
        let places: Vec<_> = released
            .iter()
            .map(|r| r.event.source.clone().unwrap())
            .collect();
        assert!(places
            .iter()
            .all(|p| p.is_ordered_snapshot() && p.partition == 0));
        assert_eq!(
            places.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert!(!spool.is_holding("H1") && spool.is_holding("H2"));
        assert_eq!(spool.fences().count(), 1, "H1's fences went with it");
    }

    #[test]
    fn the_same_snapshot_read_again_is_released_under_the_same_name_and_a_file_run_is_not() {
        let name = |salt: &str| {
            let mut spool = spool(salt);
            spool.hold(&event("H1", 1, false), None, at(7)).unwrap();
            let first = spool.release("H1").unwrap().next().unwrap().unwrap();
            first.event.source.unwrap()
        };
        assert_eq!(name(""), name(""), "a restart reading the topic again");
        assert_ne!(name("run 1"), name("run 2"), "two runs over files");
        assert!(name("").topic.len() <= vigil_schemas::validate::MAX_ID_CHARS);
    }

    #[test]
    fn a_spool_directory_that_cannot_hold_a_file_is_refused_at_start() {
        let missing = std::env::temp_dir().join("vigil-no-such-spool-directory/below");
        match SnapshotSpool::new(&missing, Duration::from_secs(1), String::new()) {
            Err(ProducerError::Config(message)) => {
                assert!(message.contains("snapshot_spool_dir"), "{message}")
            }
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("a missing directory was accepted"),
        }
    }

    #[test]
    fn a_quiet_snapshot_is_noticed() {
        let mut spool =
            SnapshotSpool::new(&std::env::temp_dir(), Duration::ZERO, String::new()).unwrap();
        assert!(spool.quiet_hospitals().is_empty());
        spool.hold(&event("H1", 1, false), None, at(1)).unwrap();
        assert_eq!(spool.quiet_hospitals(), ["H1"]);
        assert_eq!(spool.release("nobody").unwrap().remaining(), 0);
    }
}
