//! `vigil backtest` at regional scale: a simulated region's year (100,000 patients by default)
//! landed in a fresh ClickHouse database with topic positions as the writer lands them, then
//! replayed through the live rules and a candidate (crisis threshold 190 mmHg), beside a
//! baseline that reads and decodes the same history through no engine. The database is dropped
//! afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use vigil_processors::backtest::{self, Request, Window};
use vigil_processors::engine::Engine;
use vigil_processors::rules::{RuleSet, DEFAULT_RULES};
use vigil_producers::pseudonym::PseudonymKey;
use vigil_producers::simulator::{CanonicalRenderer, Simulation};
use vigil_runtime::time::{format_date, local_day, now_ms, MS_PER_DAY};
use vigil_sinks::clickhouse::rows::EventRow;

use super::{median, peak_rss_kib, stamp, Report};
use crate::config::VigilConfig;

/// Partitions of the simulated events topic.
const PARTITIONS: u32 = 4;
const DAYS: u64 = 365;

pub fn run(
    config: &VigilConfig,
    key: PseudonymKey,
    patients: u32,
    runs: usize,
    runtime: &tokio::runtime::Handle,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut bench = config.clickhouse.clone();
    bench.database = format!("vigil_bench_backtest_{}", stamp());
    bench.request_timeout = Duration::from_secs(1_800);
    runtime.block_on(vigil_sinks::clickhouse::migrate::migrate(&bench))?;
    let client = vigil_runtime::clickhouse::client(&bench);
    let result = measure(config, key, patients, runs, &client, runtime, report);
    let server = vigil_runtime::clickhouse::server_client(&bench);
    for suffix in ["", "_insurance", "_audit"] {
        let drop = format!("DROP DATABASE IF EXISTS {}{suffix}", bench.database);
        runtime.block_on(server.query(&drop).execute())?;
    }
    result
}

fn measure(
    config: &VigilConfig,
    key: PseudonymKey,
    patients: u32,
    runs: usize,
    client: &clickhouse::Client,
    runtime: &tokio::runtime::Handle,
    report: &mut Report,
) -> anyhow::Result<()> {
    let end_ms = now_ms();
    let started = Instant::now();
    let events = runtime.block_on(fill(config, key, patients, end_ms, client))?;
    report.figure(
        "backtest: events in a year of the region",
        events as f64,
        "events",
    );
    report.figure(
        "backtest: simulating and landing them (not part of the figure)",
        started.elapsed().as_secs_f64(),
        "s",
    );
    let offset = config.process.engine.reporting_utc_offset_minutes;
    let to_day = local_day(end_ms, offset) + 1;
    let window = Window {
        from_ms: vigil_runtime::time::local_day_start_ms(to_day - DAYS as i32, offset),
        to_ms: vigil_runtime::time::local_day_start_ms(to_day, offset),
        utc_offset_minutes: offset,
    };
    let request = Request {
        baseline: Engine::new(config.process.validate()?, config.process.engine.clone()),
        candidate: Engine::new(candidate_rules()?, config.process.engine.clone()),
        baseline_origin: "live".into(),
        candidate_origin: "crisis at 190 mmHg".into(),
        window,
        hospital: None,
    };
    // The simulated days end at midnight UTC, eight hours into the next reporting day.
    let in_window: u64 = runtime.block_on(
        client
            .query("SELECT count() FROM clinical_events WHERE event_time_ms < ?")
            .bind(window.to_ms)
            .fetch_one(),
    )?;
    let (mut read_seconds, mut backtest_seconds) = (Vec::new(), Vec::new());
    let mut replayed = 0;
    let mut episodes = (0, 0);
    for _ in 0..runs.max(1) {
        // Alternating, so both meet the same machine.
        let began = Instant::now();
        let read = runtime.block_on(backtest::read_only(client, window.to_ms))?;
        read_seconds.push(began.elapsed().as_secs_f64());
        let began = Instant::now();
        let outcome = runtime.block_on(backtest::run(client, &request))?;
        backtest_seconds.push(began.elapsed().as_secs_f64());
        replayed = outcome.report.events_replayed;
        anyhow::ensure!(
            read == replayed && replayed == in_window,
            "the backtest replayed {replayed} events, the baseline read {read}, {in_window} landed"
        );
        episodes = (outcome.episodes[0].len(), outcome.episodes[1].len());
    }
    anyhow::ensure!(episodes.0 > 0, "the backtest raised no episode");
    say!(
        "backtest: {} to {}, {patients} patients, episodes live {} / candidate {}",
        format_date(local_day(window.from_ms, offset)),
        format_date(to_day),
        episodes.0,
        episodes.1
    );
    let (read, full) = (median(&read_seconds), median(&backtest_seconds));
    report.figure("backtest: a year through two rule sets, median", full, "s");
    report.rate(
        "backtest: events per second",
        replayed as f64 / full,
        "events/s",
    );
    report.figure(
        "backtest: baseline, reading and decoding alone, median",
        read,
        "s",
    );
    report.figure(
        "backtest: reading's share of the backtest",
        100.0 * read / full,
        "%",
    );
    report.figure(
        "backtest: peak RSS of the bench",
        peak_rss_kib() as f64 / 1024.0,
        "MiB",
    );
    Ok(())
}

/// The live rules with the crisis threshold raised from 180 to 190 mmHg systolic.
fn candidate_rules() -> anyhow::Result<RuleSet> {
    let text = DEFAULT_RULES.replacen("systolic_mmhg = 180.0", "systolic_mmhg = 190.0", 1);
    Ok(RuleSet::parse(&text, "candidate")?)
}

/// Simulates the region's year and lands it as the writer would: each event with its partition
/// (by patient) and offset (in the order produced). Returns how many landed.
async fn fill(
    config: &VigilConfig,
    key: PseudonymKey,
    patients: u32,
    end_ms: i64,
    client: &clickhouse::Client,
) -> anyhow::Result<u64> {
    let mut simulate = config.simulate.clone();
    simulate.patients = patients;
    simulate.span = Duration::from_secs(DAYS * 86_400);
    simulate.end_date = format_date((end_ms / MS_PER_DAY) as i32);
    simulate.max_events = 0;
    simulate.validate()?;
    let renderer = CanonicalRenderer::new(key, simulate.seed);
    let mut simulation = Simulation::new(&simulate);
    let mut offsets = [0i64; PARTITIONS as usize];
    let mut batch: Vec<EventRow> = Vec::with_capacity(100_000);
    let mut landed = 0u64;
    while let Some(event) = simulation.next() {
        let canonical = renderer.render(&simulation, &event, end_ms);
        let partition = (vigil_processors::state::event_hash(&canonical.patient_pseudonym)
            % u64::from(PARTITIONS)) as usize;
        let at = (partition as i32, offsets[partition]);
        offsets[partition] += 1;
        batch.push(EventRow::from_event(&canonical, end_ms, Some(at)));
        if batch.len() == batch.capacity() {
            landed += insert(client, &mut batch).await?;
        }
    }
    landed += insert(client, &mut batch).await?;
    Ok(landed)
}

async fn insert(client: &clickhouse::Client, batch: &mut Vec<EventRow>) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut insert = client.insert::<EventRow>("clinical_events").await?;
    for row in batch.iter() {
        insert.write(row).await?;
    }
    insert
        .end()
        .await
        .context("landing the simulated history")?;
    let rows = batch.len() as u64;
    batch.clear();
    Ok(rows)
}
