//! The dashboard at regional scale: a database filled in SQL with `patients` patients' status
//! rows over 18 months (month, quarter and year rows), and their events, alert episodes,
//! notification outcomes and refusals over the same months; then how long the writer's rollups
//! take (everything once, as for a first start; and the newest periods and days, as every few
//! seconds while rows land), and one reading of every figure
//! (what `vigil serve` does once per refresh for all viewers), p50 and p95 over `runs`. The
//! database is dropped afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use vigil_runtime::config::ClickHouseConfig;

use super::{percentile, stamp, Report};

/// Status rows: one per patient and month/quarter/year, in SQL; `{n}` patients, `{db}`.
const FILL: [&str; 6] = [
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
    // Events and alert episodes spread over the 18 months (47M seconds), each episode raised
    // then acknowledged ten minutes later; a notification outcome per episode, refusals.
    "INSERT INTO {db}.clinical_events (event_id, hospital_id, kind, event_time, event_time_ms, \
     landed_time_ms) SELECT toString(number), concat('H', toString(number % 50)), 'vital_sign', \
     toDateTime(t), t * 1000, (t + 300) * 1000 \
     FROM (SELECT number, toUInt32(now()) - (number * 7919) % 47000000 AS t \
           FROM numbers({n} * {events_per_patient}))",
    "INSERT INTO {db}.alerts (alert_id, episode_id, status, sequence, hospital_id, rule_id, \
     severity, message, event_time, event_time_ms, episode_start) \
     SELECT toString(number), toString(e), if(number % 2 = 0, 'RAISED', 'ACKNOWLEDGED'), \
     number % 2, concat('H', toString(e % 50)), \
     if(e % 4 = 0, 'hypertensive_crisis', 'missed_follow_up'), \
     if(e % 4 = 0, 'CRITICAL', 'MEDIUM'), 'BP 190/115', toDateTime(t), t * 1000, toDateTime(s) \
     FROM (SELECT number, intDiv(number, 2) AS e, \
                  toUInt32(now()) - (e * 7919) % 47000000 AS s, s + (number % 2) * 600 AS t \
           FROM numbers({n}))",
    "INSERT INTO {db}.alert_deliveries (alert_id, episode_id, hospital_id, outcome, alert_time, \
     alert_time_ms, version) SELECT toString(number * 2), toString(number), \
     concat('H', toString(number % 50)), if(number % 20 = 0, 'FAILED', 'DELIVERED'), \
     toDateTime(s), s * 1000, 1 \
     FROM (SELECT number, toUInt32(now()) - (number * 7919) % 47000000 AS s \
           FROM numbers(intDiv({n}, 2)))",
    "INSERT INTO {db}.dead_letters (dead_letter_id, stage, hospital_id, reason_code, \
     received_time) SELECT toString(number), 'edge', concat('H', toString(number % 50)), \
     if(number % 3 = 0, 'unmapped_code', 'invalid_value'), \
     toDateTime(toUInt32(now()) - (number * 7919) % 47000000) FROM numbers(intDiv({n}, 10))",
    "OPTIMIZE TABLE {db}.patient_status FINAL",
];

/// Events per patient over the 18 months: a follow-up or reading a month or so.
const EVENTS_PER_PATIENT: u64 = 20;

/// The writer's rollups: everything (a first start), then the newest month, quarter and year
/// and today's day and month of activity (each interval while rows land), p50 over `runs`.
fn rollup(
    client: &clickhouse::Client,
    database: &str,
    runs: usize,
    runtime: &tokio::runtime::Handle,
    report: &mut Report,
) -> anyhow::Result<()> {
    use vigil_sinks::clickhouse::rollup::{self, Cell, Landings, Stale};
    let offset = 480;
    let began = Instant::now();
    let every = runtime.block_on(rollup::landed(client, database, Landings::All, offset))?;
    let done = runtime.block_on(rollup::recompute(client, database, &every, offset))?;
    report.figure(
        "dashboard: rollups of everything (a writer's first start)",
        began.elapsed().as_secs_f64(),
        "s",
    );
    report.figure(
        "dashboard: periods and cells rolled up",
        done as f64,
        "cells",
    );
    let newest = |kind: &str| {
        every
            .periods
            .iter()
            .filter(|p| p.period_kind == kind)
            .max_by_key(|p| p.period_start)
            .cloned()
    };
    let now = vigil_runtime::time::now_ms();
    let live = Stale {
        periods: ["MONTH", "QUARTER", "YEAR"]
            .into_iter()
            .filter_map(newest)
            .collect(),
        cells: rollup::Activity::ALL
            .into_iter()
            .map(|activity| Cell::of(activity, now, offset))
            .collect(),
    };
    let mut millis = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        runtime.block_on(rollup::recompute(client, database, &live, offset))?;
        millis.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    report.figure(
        "dashboard: rollups of the newest periods, today and this month (each interval), p50",
        percentile(&mut millis, 0.5),
        "ms",
    );
    Ok(())
}

/// Requests per endpoint and run.
const REQUESTS: usize = 100;

/// The API as a viewer meets it: `vigil serve` on a loopback port reading the filled database,
/// each endpoint asked `REQUESTS` times per run one after another, p50 and p95.
async fn endpoints(
    clickhouse: &ClickHouseConfig,
    kafka: &vigil_runtime::config::KafkaConfig,
    runs: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    use vigil_serve::auth;
    let (row, token) = auth::mint(
        &auth::Role::Commission,
        "benchmark",
        vigil_runtime::time::now_ms(),
    );
    auth::store(
        &vigil_runtime::clickhouse::server_client(clickhouse),
        &clickhouse.database,
        &row,
    )
    .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let serve = vigil_serve::ServeConfig {
        listen: format!("127.0.0.1:{port}"),
        ..Default::default()
    };
    let shutdown = vigil_runtime::Shutdown::new();
    let reporting = vigil_serve::Reporting {
        utc_offset_minutes: 480,
        allowed_lateness: Duration::from_secs(60 * 86_400),
    };
    let server = tokio::spawn({
        let (clickhouse, kafka, shutdown) = (clickhouse.clone(), kafka.clone(), shutdown.clone());
        async move { vigil_serve::run(&serve, &clickhouse, &kafka, reporting, shutdown).await }
    });
    vigil_sinks::notify::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // The first reading (503 until then).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = http
            .get(format!("{base}/api/v1/overview"))
            .bearer_auth(&token)
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "vigil serve gave no figures in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (name, path) in [
        ("overview", "/api/v1/overview"),
        ("drill-down", "/api/v1/drilldown?condition=HYPERTENSION"),
        ("page", "/"),
    ] {
        let mut micros = Vec::with_capacity(REQUESTS * runs.max(1));
        for _ in 0..REQUESTS * runs.max(1) {
            let began = Instant::now();
            let body = http
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            micros.push(began.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(!body.is_empty(), "{path} answered nothing");
        }
        report.figure(
            &format!("dashboard: GET {name}, p50"),
            percentile(&mut micros, 0.5),
            "µs",
        );
        report.figure(
            &format!("dashboard: GET {name}, p95"),
            percentile(&mut micros, 0.95),
            "µs",
        );
    }
    shutdown.request();
    server.await??;
    Ok(())
}

pub fn run(
    config: &ClickHouseConfig,
    kafka: &vigil_runtime::config::KafkaConfig,
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
            .replace("{n}", &patients.to_string())
            .replace("{events_per_patient}", &EVENTS_PER_PATIENT.to_string());
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
    runtime.block_on(endpoints(&bench, kafka, runs, report))?;
    let server = vigil_runtime::clickhouse::server_client(&bench);
    for suffix in ["", "_insurance", "_audit"] {
        let drop = format!("DROP DATABASE IF EXISTS {}{suffix}", bench.database);
        runtime.block_on(server.query(&drop).execute())?;
    }
    Ok(())
}
