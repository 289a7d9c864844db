//! The edge's snapshot spool alone: a simulated history in table order held and released in
//! clinical-time order, as the edge does with a hospital's initial snapshot. What it adds to
//! each row, beside the edge's own cost per change event (the `ingest` stage figures).

use std::time::Instant;

use vigil_producers::ingest::spool::SnapshotSpool;
use vigil_schemas::{AvroCodec, ClinicalEvent, InputPosition, Operation};

use super::{median, Report};

/// Holds and releases `encoded` (a simulated history) as one snapshot, `runs` times.
pub fn run(encoded: &[Vec<u8>], runs: usize, report: &mut Report) -> anyhow::Result<()> {
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let mut rows: Vec<ClinicalEvent> = encoded
        .iter()
        .map(|bytes| codec.decode(bytes))
        .collect::<Result<_, _>>()?;
    // What a snapshot sends: table after table, rows by key, all stamped with one time.
    rows.sort_by(|a, b| (a.payload.kind(), &a.record_id).cmp(&(b.payload.kind(), &b.record_id)));
    for row in &mut rows {
        row.operation = Operation::Snapshot;
        row.source = None;
    }
    let count = rows.len() as f64;
    say!("spool: a snapshot of {} rows in table order", rows.len());
    let (mut hold_rates, mut release_rates, mut file_bytes, mut index_bytes) =
        (Vec::new(), Vec::new(), 0u64, 0usize);
    for _ in 0..runs {
        let mut spool = SnapshotSpool::new(
            &std::env::temp_dir(),
            std::time::Duration::from_secs(3600),
            String::new(),
        )?;
        let started = Instant::now();
        for (offset, row) in rows.iter().enumerate() {
            let at = InputPosition {
                topic: "vigil.his.changes",
                partition: (offset % 4) as i32,
                offset: offset as i64,
            };
            spool.hold(row, None, at)?;
        }
        hold_rates.push(count / started.elapsed().as_secs_f64());
        (file_bytes, index_bytes) = (spool.file_bytes(), spool.index_bytes());
        let started = Instant::now();
        let mut released = 0usize;
        for hospital in spool.hospitals() {
            for row in spool.release(&hospital)? {
                row?;
                released += 1;
            }
        }
        release_rates.push(count / started.elapsed().as_secs_f64());
        anyhow::ensure!(
            released == rows.len(),
            "released {released} of {}",
            rows.len()
        );
    }
    report.rate(
        "spool: snapshot rows held (encode, write) per second, one core",
        median(&hold_rates),
        "rows/s",
    );
    report.rate(
        "spool: snapshot rows released (sort, read, decode) per second, one core",
        median(&release_rates),
        "rows/s",
    );
    report.figure(
        "spool: spool file bytes per row",
        file_bytes as f64 / count,
        "B",
    );
    report.figure(
        "spool: index bytes in memory per row",
        index_bytes as f64 / count,
        "B",
    );
    Ok(())
}
