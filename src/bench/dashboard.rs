//! The dashboard at regional scale: a database filled in SQL with `patients` patients' status
//! rows over 18 months (month, quarter and year rows), events and alerts; then how long the
//! writer's rollup takes (every period once, as for a first start; and the newest month,
//! quarter and year, as every few seconds while rows land), and one reading of every figure
//! (what `vigil serve` does once per refresh for all viewers), p50 and p95 over `runs`. The
//! database is dropped afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use vigil_runtime::config::ClickHouseConfig;

use super::{percentile, stamp, Report};

/// Status rows: one per patient and month/quarter/year, in SQL; `{n}` patients, `{db}`.
const FILL: [&str; 4] = [
    "INSERT INTO {db}.patient_status (status_id, version, definition, patient_pseudonym, \
     hospital_id, condition, period_kind, period_start, managed, managed_days, standardised, \
     controlled, new_complications, risk_level, landed_time_ms) \
     SELECT concat(toString(p), '-', kind, '-', toString(i)), 1, 'cn-nbphs-2017/v1', toString(p), \
     concat('H', toString(p % 50)), if(p % 3 = 0, 'DIABETES', 'HYPERTENSION'), kind, \
     if(kind = 'MONTH', addMonths(toStartOfMonth(today()), -toInt32(i)), \
        if(kind = 'QUARTER', addMonths(toStartOfQuarter(today()), -3 * toInt32(i)), \
           addYears(toStartOfYear(today()), -toInt32(i)))), \
     1, if(kind = 'MONTH', 30, if(kind = 'QUARTER', 91, 365)), (p + i) % 2, (p + i) % 3 != 0, \
     p % 997 = 0, if(p % 5 = 0, 'HIGH', 'LOW'), toInt64(toUInt32(now())) * 1000 \
     FROM (SELECT intDiv(number, 26) AS p, number % 26 AS j, \
                  if(j < 18, 'MONTH', if(j < 24, 'QUARTER', 'YEAR')) AS kind, \
                  if(j < 18, j, if(j < 24, j - 18, j - 24)) AS i \
           FROM numbers({n} * 26))",
    "INSERT INTO {db}.clinical_events (event_id, hospital_id, kind, event_time, event_time_ms, \
     landed_time_ms) SELECT toString(number), concat('H', toString(number % 50)), 'vital_sign', \
     now() - number % 40000000, (toUInt32(now()) - number % 40000000) * 1000, \
     toUInt32(now()) * 1000 FROM numbers({n} * 2)",
    "INSERT INTO {db}.alerts (alert_id, episode_id, status, hospital_id, rule_id, severity, \
     message, event_time, event_time_ms) SELECT toString(number), toString(intDiv(number, 2)), \
     if(number % 2 = 0, 'RAISED', 'ACKNOWLEDGED'), concat('H', toString(number % 50)), \
     'hypertensive_crisis', 'CRITICAL', 'BP 190/115', now() - number % 30000000, \
     (toUInt32(now()) - number % 30000000) * 1000 FROM numbers({n})",
    "OPTIMIZE TABLE {db}.patient_status FINAL",
];

/// The writer's rollup: every period (a first start), then the newest month, quarter and year
/// (each interval while status rows land), p50 over `runs`.
fn rollup(
    client: &clickhouse::Client,
    database: &str,
    runs: usize,
    runtime: &tokio::runtime::Handle,
    report: &mut Report,
) -> anyhow::Result<()> {
    use vigil_sinks::clickhouse::rollup::{landed_periods, recompute, PeriodKey};
    let began = Instant::now();
    let every = runtime.block_on(landed_periods(client, database, None))?;
    let done = runtime.block_on(recompute(client, database, &every))?;
    report.figure(
        "dashboard: rollup of every period (a writer's first start)",
        began.elapsed().as_secs_f64(),
        "s",
    );
    report.figure("dashboard: periods rolled up", done as f64, "periods");
    let newest = |kind: &str| {
        every
            .iter()
            .filter(|p| p.period_kind == kind)
            .max_by_key(|p| p.period_start)
            .cloned()
    };
    let live: std::collections::BTreeSet<PeriodKey> = ["MONTH", "QUARTER", "YEAR"]
        .into_iter()
        .filter_map(newest)
        .collect();
    let mut millis = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        runtime.block_on(recompute(client, database, &live))?;
        millis.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    report.figure(
        "dashboard: rollup of the newest month, quarter and year (each interval), p50",
        percentile(&mut millis, 0.5),
        "ms",
    );
    Ok(())
}

pub fn run(
    config: &ClickHouseConfig,
    patients: u64,
    runs: usize,
    runtime: &tokio::runtime::Handle,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut bench = config.clone();
    bench.database = format!("vigil_bench_dashboard_{}", stamp());
    bench.request_timeout = Duration::from_secs(1_800);
    runtime.block_on(vigil_sinks::clickhouse::migrate::migrate(&bench))?;
    let client = vigil_runtime::clickhouse::client(&bench);
    let started = Instant::now();
    for sql in FILL {
        let sql = sql
            .replace("{db}", &bench.database)
            .replace("{n}", &patients.to_string());
        runtime
            .block_on(client.query(&sql).execute())
            .with_context(|| format!("filling the dashboard benchmark: {}", &sql[..60]))?;
    }
    let rows: u64 = runtime.block_on(
        client
            .query("SELECT count() FROM patient_status")
            .fetch_one::<u64>(),
    )?;
    report.figure("dashboard: patient-status rows", rows as f64, "rows");
    report.figure(
        "dashboard: filling them (SQL INSERT SELECT)",
        started.elapsed().as_secs_f64(),
        "s",
    );
    rollup(&client, &bench.database, runs, runtime, report)?;
    let mut seconds = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        let overview = runtime.block_on(vigil_serve::read_overview(&client, 480))?;
        anyhow::ensure!(
            overview.conditions.len() == 2,
            "the benchmark's figures are missing: {overview:?}"
        );
        seconds.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    report.figure(
        "dashboard: one reading of every figure, p50",
        percentile(&mut seconds, 0.5),
        "ms",
    );
    report.figure(
        "dashboard: one reading of every figure, p95",
        percentile(&mut seconds, 0.95),
        "ms",
    );
    let drop = format!("DROP DATABASE IF EXISTS {}", bench.database);
    runtime.block_on(
        vigil_runtime::clickhouse::server_client(&bench)
            .query(&drop)
            .execute(),
    )?;
    Ok(())
}
