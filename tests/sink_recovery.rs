//! The ClickHouse writer loses and doubles nothing: killed with SIGKILL mid-batch and restarted,
//! the tables hold exactly one row per input record; with ClickHouse stopped for a while and
//! started again, the writer waits, retries, catches up and loses nothing.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{OwnClickHouse, TestEnv};
use vigil_schemas::{Alert, AvroCodec, ClinicalEvent, PatientStatus, WireRecord};
use vigil_sinks::clickhouse::rows::{AlertRow, EventRow, StatusRow};

/// Small batches (appended to the [sink] section), so a kill lands between inserts and inside
/// the next batch.
const SMALL_BATCHES: &str = "batch_max_rows = 2000\n";

/// The distinct table keys of a topic's records: what the table must hold, one row each.
fn distinct_keys<T: WireRecord>(
    env: &TestEnv,
    topic: &str,
    key: impl Fn(&T) -> String,
) -> BTreeSet<String> {
    let codec = AvroCodec::<T>::new().unwrap();
    common::read_topic(&env.kafka, topic)
        .iter()
        .filter(|bytes| !bytes.is_empty())
        .map(|bytes| key(&codec.decode(bytes).unwrap()))
        .collect()
}

fn event_key(e: &ClinicalEvent) -> String {
    let row = EventRow::from_event(e, 0, None);
    format!(
        "{}|{}|{}|{}",
        row.hospital_id, row.kind, row.event_time, row.event_id
    )
}

fn alert_key(a: &Alert) -> String {
    let row = AlertRow::from_alert(a, 0);
    format!(
        "{}|{}|{}|{}",
        row.hospital_id, row.rule_id, row.event_time, row.alert_id
    )
}

fn status_key(s: &PatientStatus) -> String {
    let row = StatusRow::from_status(s, 0);
    format!(
        "{}|{}|{}|{}|{}",
        row.definition, row.period_kind, row.period_start, row.condition, row.patient_pseudonym
    )
}

fn count(env: &TestEnv, table: &str, final_: bool) -> u64 {
    let sql = format!(
        "SELECT count() FROM {{db}}.{table}{}",
        if final_ { " FINAL" } else { "" }
    );
    env.scalar(&sql).parse().unwrap_or(0)
}

/// Runs `vigil sink --until-idle` until the writers' group has committed every input topic. A
/// run may own only some partitions while a killed member's session lingers: run again.
fn finish_sinking(env: &TestEnv) {
    let group = env.scalar_config("sink", "group_id");
    let topics = &env.kafka.topics;
    for _ in 0..6 {
        env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(600));
        let lag: i64 = [
            &topics.clinical_events,
            &topics.alerts,
            &topics.patient_status,
        ]
        .iter()
        .map(|t| common::group_lag(&env.kafka, &group, t))
        .sum();
        if lag == 0 {
            return;
        }
        std::thread::sleep(Duration::from_secs(7));
    }
    panic!("the writers never committed the whole input");
}

#[test]
fn sigkill_of_the_writer_mid_batch_leaves_exact_row_counts() {
    let env = TestEnv::new("sink_kill", 2, SMALL_BATCHES);
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(
        &[
            "simulate",
            "--output",
            "canonical",
            "--patients",
            "2000",
            "--hospitals",
            "3",
            "--days",
            "500",
            "--end-date",
            "2026-06-30",
            "--seed",
            "21",
        ],
        Duration::from_secs(300),
    );
    env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(600));
    let topics = &env.kafka.topics;
    let events = distinct_keys(&env, &topics.clinical_events, event_key);
    let alerts = distinct_keys(&env, &topics.alerts, alert_key);
    let statuses = distinct_keys(&env, &topics.patient_status, status_key);
    assert!(
        events.len() > 50_000,
        "a run long enough to kill: {}",
        events.len()
    );
    assert!(!alerts.is_empty() && !statuses.is_empty());

    // Kill the writer three times while rows are landing, each time as soon as it has written
    // past the next mark.
    let mut killed_mid_run = 0;
    for (round, fraction) in [0.1, 0.4, 0.7].iter().enumerate() {
        let mark = (events.len() as f64 * fraction) as u64;
        let log = format!("sink-{round}.log");
        let mut sink = env.spawn_vigil(&["sink"], &log);
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(&env, "clinical_events", false) < mark && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        sink.sigkill();
        if count(&env, "clinical_events", true) < events.len() as u64 {
            killed_mid_run += 1;
        }
    }
    assert!(
        killed_mid_run >= 2,
        "the kills came too late to test anything"
    );

    finish_sinking(&env);
    assert_eq!(count(&env, "clinical_events", true), events.len() as u64);
    assert_eq!(count(&env, "alerts", true), alerts.len() as u64);
    assert_eq!(count(&env, "patient_status", true), statuses.len() as u64);
    // Replays re-inserted some rows; the visible, deduplicated tables show each exactly once.
    assert_eq!(
        env.scalar("SELECT uniqExact(event_id) FROM {db}.clinical_events"),
        env.scalar("SELECT count() FROM {db}.clinical_events FINAL")
    );
    assert_eq!(count(&env, "dead_letters", true), 0, "nothing was refused");
}

#[test]
fn clickhouse_stopped_for_a_while_and_restarted_loses_nothing() {
    let server = OwnClickHouse::start("outage");
    let env = TestEnv::on_clickhouse(
        "sink_outage",
        2,
        &format!("{SMALL_BATCHES}max_retry_backoff = \"2s\"\n"),
        &server,
    );
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));

    // Events keep arriving (about 2,500/s) before, during and after the outage.
    let mut simulator = env.spawn_vigil(
        &[
            "simulate",
            "--output",
            "canonical",
            "--patients",
            "1500",
            "--hospitals",
            "2",
            "--days",
            "400",
            "--end-date",
            "2026-06-30",
            "--seed",
            "22",
            "--pace",
            "rate",
            "--rate",
            "2500",
        ],
        "simulate.log",
    );
    let mut sink = env.spawn_vigil(&["sink"], "sink.log");
    assert!(
        common::eventually(Duration::from_secs(60), || count(
            &env,
            "clinical_events",
            false
        ) > 0),
        "no rows before the outage:\n{}",
        env.log("sink.log")
    );
    let landed_at_stop = count(&env, "clinical_events", false);
    server.stop();
    std::thread::sleep(Duration::from_secs(8));
    server.start_again();

    assert!(
        simulator.wait_with_limit(Duration::from_secs(180)),
        "the simulator did not finish"
    );
    let events = distinct_keys(&env, &env.kafka.topics.clinical_events, event_key);
    assert!(
        common::eventually(Duration::from_secs(180), || {
            count(&env, "clinical_events", true) == events.len() as u64
        }),
        "after the outage the table holds {} of {} events:\n{}",
        count(&env, "clinical_events", true),
        events.len(),
        env.log("sink.log")
    );
    sink.kill();
    // Most of the input reached the writer while ClickHouse was down or after: it caught up.
    // (Whether it logged retries depends on the moment: an insert in flight at the stop may
    // simply wait for the server to come back.)
    assert!(
        events.len() as u64 > landed_at_stop,
        "the outage came after everything had landed ({landed_at_stop} rows)"
    );
    assert_eq!(count(&env, "dead_letters", true), 0, "nothing was refused");
}
