//! The whole pipeline under failures, against a broker and a ClickHouse of the test's own: the
//! edge, the processor and the writer each killed with SIGKILL and restarted at once in the same
//! consumer group (as a supervisor restarts them), the broker killed and restarted, ClickHouse
//! stopped for more than 30 s; then alerts, patient status, events, dead letters and the pilot
//! metrics equal those of a clean run over the same change events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, OwnBroker, OwnClickHouse, TestEnv};

/// Two years of a small region through the edge, with defects (dead letters) in it: longer
/// than the follow-up retention, so status rows depend on pruned state if anything does.
fn history(seed: &'static str) -> [&'static str; 15] {
    [
        "simulate",
        "--output",
        "cdc",
        "--patients",
        "500",
        "--hospitals",
        "4",
        "--days",
        "730",
        "--end-date",
        "2026-06-30",
        "--seed",
        seed,
        "--defects",
        "0.01",
    ]
}

const ALERTS: &str = "SELECT alert_id, episode_id, rule_id, status, sequence, patient_pseudonym, \
    event_time_ms, hospital_id, ifNull(toString(value), ''), message FROM {db}.alerts FINAL ORDER BY alert_id";

/// Each status row as it stands, version included: a change event the edge produced twice (it
/// was killed between producing and committing) is recognised by its source position and
/// changes nothing, not even a version.
const STATUS: &str = "SELECT status_id, max(version), argMax(tuple(patient_pseudonym, hospital_id, condition, period_kind, \
    toString(period_start), managed, managed_days, follow_ups, follow_ups_ytd, standardised, controlled, \
    ifNull(toString(last_follow_up), ''), ifNull(toString(last_systolic_mmhg), ''), new_complications, \
    has_complications, bp_grade, risk_level, age_band, toString(event_time)), version) \
    FROM {db}.patient_status GROUP BY status_id ORDER BY status_id";

const EVENTS: &str = "SELECT DISTINCT event_id, hospital_id, patient_pseudonym, kind, operation, \
    toString(event_time) FROM {db}.clinical_events ORDER BY event_id";

/// Where each dead letter came from and why (ids and topics differ between the two runs).
const LETTERS: &str =
    "SELECT DISTINCT stage, hospital_id, reason_code, reason_detail, source_partition, \
    source_offset FROM {db}.dead_letters ORDER BY stage, source_partition, source_offset";

const METRICS: &str =
    "SELECT definition, hospital_id, condition, period_kind, toString(period_start), \
    managed_patients, standardised_patients, controlled_patients, new_complications, patient_years \
    FROM {db}.pilot_metrics ORDER BY definition, hospital_id, condition, period_kind, period_start";

/// An edge's replay after its crash is recognised, never taken for late data.
const LATE: &str = "SELECT DISTINCT event_id FROM {db}.late_events ORDER BY event_id";

const VIEWS: [(&str, &str); 6] = [
    ("alerts", ALERTS),
    ("patient status", STATUS),
    ("events", EVENTS),
    ("dead letters", LETTERS),
    ("pilot metrics", METRICS),
    ("late events", LATE),
];

fn prepare(env: &TestEnv) {
    env.run_vigil(&["migrate"], Duration::from_secs(120));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_vigil(&history("29"), Duration::from_secs(300));
}

/// Kills a stage with SIGKILL and starts it again at once, in the same group.
fn crash_and_restart(env: &TestEnv, stage: &mut ChildGuard, name: &str, round: u32) {
    stage.sigkill();
    eprintln!("{name}: SIGKILL, restarted at once");
    *stage = env.spawn_vigil(&[name], &format!("{name}-{round}.log"));
}

fn lag(env: &TestEnv, group: &str, topic: &str) -> i64 {
    common::group_lag(&env.kafka, group, topic)
}

#[test]
fn every_stage_crashed_the_broker_crashed_and_clickhouse_down_still_equal_a_clean_run() {
    let broker = OwnBroker::start("chaos");
    let clickhouse = OwnClickHouse::start("chaos");
    let env = TestEnv::on_own_services(
        "chaos",
        4,
        "",
        &broker.brokers(),
        &clickhouse.url(),
        &clickhouse.credentials_file(),
    );
    let reference = TestEnv::new("chaosref", 4, "");
    prepare(&env);
    prepare(&reference);
    reference.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));
    let expected: Vec<Vec<String>> = VIEWS.iter().map(|(_, q)| reference.query(q)).collect();
    assert!(expected[0].len() > 100, "the history raises alerts");
    assert!(!expected[3].is_empty(), "the history has defects");

    let started = Instant::now();
    let mut ingest = env.spawn_vigil(&["ingest"], "ingest-0.log");
    let mut process = env.spawn_vigil(&["process"], "process-0.log");
    let mut sink = env.spawn_vigil(&["sink"], "sink-0.log");
    let groups = (
        env.scalar_config("ingest", "group_id"),
        env.scalar_config("process", "group_id"),
    );
    let topics = &env.kafka.topics;
    // Each crash once the stage has work in hand.
    assert!(common::eventually(Duration::from_secs(120), || {
        lag(&env, &groups.0, &topics.his_changes) > 0
            && common::read_topic(&env.kafka, &topics.clinical_events).len() > 1_000
    }));
    crash_and_restart(&env, &mut ingest, "ingest", 1);
    std::thread::sleep(Duration::from_secs(3));
    crash_and_restart(&env, &mut process, "process", 1);
    std::thread::sleep(Duration::from_secs(3));
    crash_and_restart(&env, &mut sink, "sink", 1);
    std::thread::sleep(Duration::from_secs(3));

    // The broker crashes under them; its stages wait, fail, restart in-process and go on.
    broker.crash();
    std::thread::sleep(Duration::from_secs(3));
    broker.start_again();
    eprintln!("broker: SIGKILL, started again at {:?}", started.elapsed());

    // ClickHouse away for 35 s while everything upstream keeps working.
    std::thread::sleep(Duration::from_secs(3));
    clickhouse.stop();
    std::thread::sleep(Duration::from_secs(35));
    clickhouse.start_again();
    eprintln!("clickhouse: back at {:?}", started.elapsed());

    // The running stages finish the input.
    let drained = common::eventually(Duration::from_secs(400), || {
        lag(&env, &groups.0, &topics.his_changes) == 0
            && lag(&env, &groups.1, &topics.clinical_events) == 0
    });
    assert!(
        drained,
        "the restarted stages did not finish the input:\ningest:\n{}\nprocess:\n{}",
        env.log("ingest-1.log"),
        env.log("process-1.log")
    );
    // Stop them, then let one last writer land what is left (its --until-idle knows when).
    ingest.kill();
    process.kill();
    sink.kill();
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    eprintln!("chaos run done in {:?}", started.elapsed());

    for ((what, query), expected) in VIEWS.iter().zip(&expected) {
        common::assert_same(what, expected, &env.query(query));
    }
    // The writers were killed between landing rows and recomputing their periods' rollup: the
    // next writer's catch-up leaves the dashboard's figures equal to the metric view's.
    common::assert_rollup_is_current(&env);
}
