//! Vigil on a replicated ClickHouse cluster on loopback: ZooKeeper and two ClickHouse 18.16
//! replicas of one shard, started by deploy/local/services.sh. `vigil migrate` creates every
//! table replicated `ON CLUSTER`; the writer lands on the replicas in turn with an insert
//! quorum of two. One replica is killed with SIGKILL mid-run (the writer's) and brought back:
//! afterwards both hold every row once, and their figures equal a single server's run over the
//! same input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{OwnClickHouse, OwnZooKeeper, TestEnv};

const CLUSTER: &str = "pilot";

fn history() -> [&'static str; 13] {
    [
        "simulate",
        "--output",
        "cdc",
        "--patients",
        "400",
        "--hospitals",
        "3",
        "--days",
        "500",
        "--end-date",
        "2026-06-30",
        "--seed",
        "31",
    ]
}

/// What the pilot's users read, row for row: alerts, status rows, events, the metric view and
/// the dashboard's rollup.
const VIEWS: [(&str, &str); 5] = [
    (
        "alerts",
        "SELECT alert_id, episode_id, rule_id, status, sequence, patient_pseudonym, event_time_ms, \
         hospital_id, message FROM {db}.alerts FINAL ORDER BY alert_id",
    ),
    (
        "patient status",
        "SELECT status_id, managed, follow_ups, standardised, controlled, bp_grade, risk_level \
         FROM {db}.patient_status FINAL ORDER BY status_id",
    ),
    (
        "events",
        "SELECT DISTINCT event_id, hospital_id, kind FROM {db}.clinical_events ORDER BY event_id",
    ),
    (
        "pilot metrics",
        "SELECT definition, hospital_id, condition, period_kind, toString(period_start), \
         managed_patients, standardised_patients, controlled_patients, new_complications \
         FROM {db}.pilot_metrics ORDER BY definition, hospital_id, condition, period_kind, period_start",
    ),
    (
        "the dashboard's rollup",
        "SELECT definition, hospital_id, condition, period_kind, toString(period_start), \
         managed_patients, standardised_patients, controlled_patients \
         FROM {db}.pilot_rollup ORDER BY definition, hospital_id, condition, period_kind, period_start",
    ),
];

/// Tables whose rows are replaced by id: each must hold every id once (after FINAL) on each
/// replica, the same number on both.
const TABLES: [(&str, &str); 4] = [
    ("alerts", "alert_id"),
    ("patient_status", "status_id"),
    ("clinical_events", "event_id"),
    ("status_rollup", "definition, period_kind, period_start, condition, hospital_id, region_code, department_code"),
];

fn prepare(env: &TestEnv) {
    env.run_vigil(&["migrate"], Duration::from_secs(240));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_vigil(&history(), Duration::from_secs(300));
}

fn sync_replicas(env: &TestEnv) {
    for (table, _) in TABLES {
        env.admin(&format!("SYSTEM SYNC REPLICA {}.{table}", env.database));
    }
}

#[test]
fn a_replica_killed_mid_run_and_brought_back_holds_every_row_once_and_equal_figures() {
    let zookeeper = OwnZooKeeper::start("cluster");
    let replicas = OwnClickHouse::replicas("cluster", CLUSTER, 2, &zookeeper);
    let mut env = TestEnv::on_clickhouse("cluster", 2, "", &replicas[0]);
    let both = format!("{},{}", replicas[0].url(), replicas[1].url());
    env.set_override("VIGIL_CLICKHOUSE__URL", &both);
    env.set_override("VIGIL_CLICKHOUSE__CLUSTER", CLUSTER);
    env.set_override("VIGIL_CLICKHOUSE__INSERT_QUORUM", "2");
    let second = TestEnv::on_clickhouse_database("cluster_r2", &env.database, 2, &replicas[1]);
    let reference = TestEnv::new("clusterref", 2, "");
    prepare(&env);
    prepare(&reference);

    // The schema is on both replicas, replicated, from one `vigil migrate`.
    let engine = |on: &TestEnv| {
        on.scalar("SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'alerts'")
    };
    assert_eq!(engine(&env), "ReplicatedReplacingMergeTree");
    assert_eq!(engine(&second), "ReplicatedReplacingMergeTree");

    reference.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));
    let expected: Vec<Vec<String>> = VIEWS.iter().map(|(_, q)| reference.query(q)).collect();
    assert!(expected[0].len() > 50, "the history raises alerts");

    let started = Instant::now();
    let mut pipeline = env.spawn_vigil(&["up"], "up-0.log");
    // Kill the replica the writer lands on once rows are arriving.
    assert!(
        common::eventually(Duration::from_secs(180), || {
            env.scalar("SELECT count() FROM {db}.clinical_events")
                .parse::<u64>()
                .unwrap_or(0)
                > 2_000
        }),
        "rows did not land:\n{}",
        env.log("up-0.log")
    );
    replicas[0].crash();
    eprintln!("replica 1: SIGKILL at {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(15));
    replicas[0].start_again();
    eprintln!("replica 1: back at {:?}", started.elapsed());

    let groups = env.scalar_config("process", "group_id");
    let drained = common::eventually(Duration::from_secs(400), || {
        common::group_lag(&env.kafka, &groups, &env.kafka.topics.clinical_events) == 0
    });
    assert!(
        drained,
        "the pipeline did not finish:\n{}",
        env.log("up-0.log")
    );
    pipeline.kill();
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    eprintln!("cluster run done in {:?}", started.elapsed());
    let log = env.log("up-0.log");
    let waits: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("ClickHouse is unavailable"))
        .collect();
    assert!(
        !waits.is_empty(),
        "the writer met the killed replica:\n{log}"
    );
    eprintln!(
        "the writer held its batches {} times, first: {}\nlast: {}",
        waits.len(),
        waits[0],
        waits[waits.len() - 1]
    );

    sync_replicas(&env);
    sync_replicas(&second);
    for on in [&env, &second] {
        for ((what, query), expected) in VIEWS.iter().zip(&expected) {
            common::assert_same(what, expected, &on.query(query));
        }
        common::assert_rollup_is_current(on);
    }
    for (table, key) in TABLES {
        let rows = |on: &TestEnv| {
            on.scalar(&format!(
                "SELECT concat(toString(count()), ' ', toString(uniqExact({key}))) FROM {{db}}.{table} FINAL"
            ))
        };
        let (first, other) = (rows(&env), rows(&second));
        let (count, distinct) = first.split_once(' ').unwrap();
        assert_eq!(count, distinct, "{table}: every row once on replica 1");
        assert_eq!(first, other, "{table}: the same rows on both replicas");
    }
}

#[test]
fn migrate_waits_for_zookeeper_through_an_outage() {
    // ZooKeeper is down when `vigil migrate` starts (an outage, a restart during deployment):
    // every ON CLUSTER statement would fail, and a ClickHouse 18.16 without a session can crash
    // on one. `vigil migrate` waits until every server reaches ZooKeeper again, and the schema
    // lands on both. (Servers *started* before their ZooKeeper serves are not covered: 18.16
    // crashed on the first ON CLUSTER statement even after answering `system.zookeeper`, so
    // `services.sh` starts ZooKeeper first and waits until it serves.)
    let zookeeper = OwnZooKeeper::start("late_zk");
    let replicas = OwnClickHouse::replicas("late_zk", CLUSTER, 2, &zookeeper);
    zookeeper.stop();
    let mut env = TestEnv::on_clickhouse("late_zk", 1, "", &replicas[0]);
    env.set_override(
        "VIGIL_CLICKHOUSE__URL",
        &format!("{},{}", replicas[0].url(), replicas[1].url()),
    );
    env.set_override("VIGIL_CLICKHOUSE__CLUSTER", CLUSTER);
    let second = TestEnv::on_clickhouse_database("late_zk_r2", &env.database, 1, &replicas[1]);
    let (ok, _, output) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(4));
            zookeeper.start_again();
        });
        env.try_command(env.vigil(&["migrate"]), Duration::from_secs(120))
    });
    assert!(ok, "{output}");
    assert!(
        output.contains("no ZooKeeper session yet"),
        "migrate started before ZooKeeper and waited: {output}"
    );
    let tables = |on: &TestEnv| {
        on.scalar(
            "SELECT count() FROM system.tables WHERE database = '{db}' AND engine LIKE 'Replicated%'",
        )
    };
    assert_ne!(tables(&env), "0");
    assert_eq!(
        tables(&env),
        tables(&second),
        "the same tables on both replicas"
    );
}
