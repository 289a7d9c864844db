//! `vigil onboard profile`: a hospital's change events (a file, or the newest records of its
//! topic) read through its vendor shape and code table before go-live, producing nothing. What an IT department and the platform's operator
//! need to agree on first: which tables and columns arrive, which local codes have no mapping
//! (with a suggestion from the bundled terminology), which units differ from the code table,
//! what the edge would reject and why, and what the clocks say.
//!
//! `profile.rs` accumulates the figures record by record; `report.rs` renders them (Markdown,
//! HTML, a draft code table).

mod profile;
mod report;

pub use profile::{DataProfile, Profiler, UnknownCode};
pub use report::{draft_code_table, render_html, render_markdown};

use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::RangeReader;
use vigil_runtime::Shutdown;

use crate::edge::{Catalog, EdgeConfig};
use crate::ingest::for_each_line;
use crate::pseudonym::PseudonymKey;
use crate::ProducerError;

/// The files a profile run wrote.
#[derive(Debug, Clone)]
pub struct ProfileFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
    pub draft_codes: PathBuf,
}

/// Profiles hospital `hospital_id`'s change events in a JSON-lines file (stdin for "-") and
/// writes the report, its figures as JSON and a draft code table into `out_dir`.
pub fn profile_file(
    path: &Path,
    hospital_id: &str,
    edge: &EdgeConfig,
    out_dir: &Path,
    shutdown: &Shutdown,
) -> Result<(DataProfile, ProfileFiles), ProducerError> {
    let source = path.display().to_string();
    profile_with(hospital_id, edge, out_dir, &source, |profiler| {
        for_each_line(path, shutdown, |_, value| {
            profiler.observe(value);
            Ok(())
        })
    })
}

/// Profiles the newest `records` change events of `topic` (spread evenly over its partitions),
/// outside any consumer group: nothing is committed or produced, so the edge that will read the
/// topic later starts where it would have.
pub fn profile_topic(
    kafka: &KafkaConfig,
    topic: &str,
    records: u64,
    hospital_id: &str,
    edge: &EdgeConfig,
    out_dir: &Path,
) -> Result<(DataProfile, ProfileFiles), ProducerError> {
    let source = format!("topic {topic}, newest {records} records");
    profile_with(hospital_id, edge, out_dir, &source, |profiler| {
        let partitions = RangeReader::new(kafka, "vigil-onboard", topic, 0)?.partition_count()?;
        let per_partition =
            i64::try_from(records.div_ceil(partitions.max(1) as u64)).unwrap_or(i64::MAX);
        for partition in 0..partitions {
            let reader = RangeReader::new(kafka, "vigil-onboard", topic, partition)?;
            let (low, high) = reader.watermarks()?;
            let from = low.max(high.saturating_sub(per_partition));
            reader.read(from, high, Duration::from_secs(30), |_, value| {
                profiler.observe(value);
                Ok::<(), ProducerError>(())
            })?;
        }
        Ok(())
    })
}

/// Runs the profiler of `hospital_id` over what `feed` gives it and writes the report files.
fn profile_with(
    hospital_id: &str,
    edge: &EdgeConfig,
    out_dir: &Path,
    source: &str,
    feed: impl FnOnce(&mut Profiler) -> Result<(), ProducerError>,
) -> Result<(DataProfile, ProfileFiles), ProducerError> {
    let catalog = Catalog::load(&edge.catalog_dir)?;
    let hospital = catalog.by_id(hospital_id).cloned().ok_or_else(|| {
        ProducerError::Config(format!(
            "hospital {hospital_id} is not in the edge catalogue {} (add it to hospitals.toml first)",
            edge.catalog_dir.display()
        ))
    })?;
    // A key of the run's own: pseudonyms are computed by the adapter and thrown away.
    let key = PseudonymKey::from_bytes(&rand::random::<[u8; 32]>())?;
    let now = vigil_runtime::time::now_ms();
    let mut profiler = Profiler::new(
        &catalog,
        hospital.clone(),
        key,
        edge.hospital_utc_offset_minutes,
        now,
    );
    feed(&mut profiler)?;
    let profile = profiler.finish();
    let files = ProfileFiles {
        markdown: out_dir.join(format!("profile-{hospital_id}.md")),
        html: out_dir.join(format!("profile-{hospital_id}.html")),
        json: out_dir.join(format!("profile-{hospital_id}.json")),
        draft_codes: out_dir.join(format!("codes-{hospital_id}.draft.toml")),
    };
    let json = serde_json::to_string_pretty(&profile)
        .map_err(|e| ProducerError::Config(format!("cannot serialise the profile: {e}")))?;
    let outputs = [
        (&files.markdown, render_markdown(&profile, source)),
        (&files.html, render_html(&profile, source)),
        (&files.json, json),
        (
            &files.draft_codes,
            draft_code_table(&profile, &hospital.codes),
        ),
    ];
    std::fs::create_dir_all(out_dir).map_err(|source| ProducerError::Io {
        path: out_dir.display().to_string(),
        source,
    })?;
    for (file, text) in outputs {
        std::fs::write(file, text).map_err(|source| ProducerError::Io {
            path: file.display().to_string(),
            source,
        })?;
    }
    Ok((profile, files))
}
