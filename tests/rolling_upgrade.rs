//! A rolling upgrade without losing a beat: under a steady live feed, every instance of every
//! stage (two each of the edge, the processor, the writer and the notifier) is replaced one at a
//! time — SIGTERM, then the new one started — as a supervisor or Kubernetes does it. No alert is
//! lost or sent twice, the outputs equal those of stages that ran uninterrupted over the same
//! input, and the longest gap in alert delivery is reported.
//!
//! "The same input" is taken per stage: the edge's events against an uninterrupted edge over the
//! same change events (as a set: two edges interleave different patients differently), and the
//! processor's and writer's rows against an uninterrupted processor and writer over the same
//! canonical events (the processor's output is a function of each partition's sequence).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{ChildGuard, TestEnv};

const HOSPITALS: [&str; 2] = ["H0001", "H0002"];
/// Stages replaced in turn, each with two instances.
const STAGES: [&str; 4] = ["ingest", "process", "sink", "notify"];

const ALERTS: &str = "SELECT alert_id, episode_id, rule_id, status, sequence, patient_pseudonym, \
    event_time_ms, hospital_id, managing_hospital_id, message FROM {db}.alerts FINAL ORDER BY alert_id";
const STATUS: &str = "SELECT status_id, managed, follow_ups, standardised, controlled, bp_grade, \
    risk_level, toString(event_time) FROM {db}.patient_status FINAL ORDER BY status_id";
const EVENTS: &str = "SELECT DISTINCT event_id, hospital_id, patient_pseudonym, kind, operation, \
    toString(event_time) FROM {db}.clinical_events ORDER BY event_id";

fn notify_settings(dir: &std::path::Path, port: u16) -> String {
    let endpoints: String = HOSPITALS
        .iter()
        .map(|h| {
            format!(
                "[[endpoint]]\nhospital_id = \"{h}\"\nurl = \"http://127.0.0.1:{port}/hospitals/{h}/alerts\"\n\n"
            )
        })
        .collect();
    std::fs::write(dir.join("endpoints.toml"), endpoints).unwrap();
    let secrets: String = HOSPITALS
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{h} = \"{}\"\n", hex::encode(vec![i as u8 + 7; 32])))
        .collect();
    std::fs::write(dir.join("secrets.toml"), secrets).unwrap();
    format!(
        "[notify]\ngroup_id = \"notify-{}\"\nendpoints_file = \"{}\"\nsecrets_file = \"{}\"\n\
         create_secrets_if_missing = false\ninitial_retry_backoff = \"100ms\"\n",
        common::unique("g"),
        dir.join("endpoints.toml").display(),
        dir.join("secrets.toml").display()
    )
}

#[test]
fn every_instance_replaced_one_at_a_time_under_a_live_feed_loses_and_repeats_nothing() {
    let files = std::env::temp_dir().join(common::unique("rolling-files"));
    std::fs::create_dir_all(&files).unwrap();
    let secrets: HashMap<String, Vec<u8>> = HOSPITALS
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_string(), vec![i as u8 + 7; 32]))
        .collect();
    let receiver = Receiver::start(secrets, &[], true);
    let mut env = TestEnv::new("rolling", 4, &notify_settings(&files, receiver.port));
    let edge = env.sibling_with_own_edge("edge");
    let reference = env.sibling("ref");
    for pipeline in [&env, &edge, &reference] {
        pipeline.run_vigil(&["migrate"], Duration::from_secs(120));
        pipeline.run_vigil(&["topics"], Duration::from_secs(60));
    }

    // Two instances of each stage, in their groups, then a live feed (event times = now) of
    // about 90 seconds.
    let mut instances: BTreeMap<&str, Vec<ChildGuard>> = STAGES
        .iter()
        .map(|stage| {
            let two = (0..2)
                .map(|i| env.spawn_vigil(&[stage], &format!("{stage}-{i}.log")))
                .collect();
            (*stage, two)
        })
        .collect();
    let mut feed = env.spawn_vigil(
        &[
            "simulate",
            "--output",
            "cdc",
            "--pace",
            "live",
            "--rate",
            "300",
            "--patients",
            "400",
            "--hospitals",
            "2",
            "--days",
            "365",
            "--seed",
            "17",
            "--max-events",
            "27000",
        ],
        "simulate.log",
    );
    std::thread::sleep(Duration::from_secs(10));

    // Replace every instance, one at a time, while the feed runs.
    let started = Instant::now();
    let mut generation = 2;
    for stage in STAGES {
        for index in 0..2 {
            let old = &mut instances.get_mut(stage).unwrap()[index];
            let clean = old.terminate(Duration::from_secs(60));
            assert!(
                clean,
                "{stage} did not stop cleanly on SIGTERM:\n{}",
                env.log(&format!("{stage}-{index}.log"))
            );
            let log = format!("{stage}-{generation}.log");
            instances.get_mut(stage).unwrap()[index] = env.spawn_vigil(&[stage], &log);
            generation += 1;
            eprintln!(
                "{stage} instance {index} replaced at {:?}",
                started.elapsed()
            );
            std::thread::sleep(Duration::from_secs(4));
        }
    }
    assert!(
        feed.wait_with_limit(Duration::from_secs(180)),
        "the feed did not finish:\n{}",
        env.log("simulate.log")
    );
    let upgraded = started.elapsed();

    // The new instances finish the input.
    let groups = (
        env.scalar_config("ingest", "group_id"),
        env.scalar_config("process", "group_id"),
        env.scalar_config("sink", "group_id"),
    );
    let topics = env.kafka.topics.clone();
    let drained = common::eventually(Duration::from_secs(300), || {
        common::group_lag(&env.kafka, &groups.0, &topics.his_changes) == 0
            && common::group_lag(&env.kafka, &groups.1, &topics.clinical_events) == 0
            && common::group_lag(&env.kafka, &groups.2, &topics.alerts) == 0
    });
    assert!(drained, "the replaced stages did not finish the input");

    // An uninterrupted edge over the same change events, and an uninterrupted processor and
    // writer over the same canonical events.
    edge.run_vigil(&["ingest", "--until-idle", "3"], Duration::from_secs(300));
    edge.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    reference.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(300));
    reference.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    for (query, uninterrupted) in [(EVENTS, &edge), (ALERTS, &reference), (STATUS, &reference)] {
        let expected = uninterrupted.query(query);
        assert!(!expected.is_empty(), "{query}");
        // The upgraded pipeline's last rows may still be landing.
        if !common::eventually(Duration::from_secs(60), || env.query(query) == expected) {
            explain_difference(&env, uninterrupted, query, &expected);
        }
    }

    // Every alert that notifies reached each of its hospitals exactly once.
    let mut expected = BTreeSet::new();
    for row in env.query(
        "SELECT alert_id, hospital_id, managing_hospital_id FROM {db}.alerts FINAL \
         WHERE status IN ('RAISED', 'RENOTIFIED')",
    ) {
        let fields: Vec<&str> = row.split('\t').collect();
        expected.insert(fields[0].to_string());
        if !fields[2].is_empty() && fields[2] != fields[1] {
            expected.insert(format!("{}@{}", fields[0], fields[2]));
        }
    }
    assert!(
        expected.len() > 10,
        "the feed raised alerts: {}",
        expected.len()
    );
    let delivered = || -> Vec<(String, Instant)> {
        receiver
            .received()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| (r.idempotency_key, r.at))
            .collect()
    };
    assert!(
        common::eventually(Duration::from_secs(120), || delivered().len()
            >= expected.len()),
        "{} of {} alerts delivered",
        delivered().len(),
        expected.len()
    );
    let received = delivered();
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for (key, _) in &received {
        *times.entry(key.clone()).or_default() += 1;
    }
    let twice: Vec<&String> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let keys: BTreeSet<String> = times.into_keys().collect();
    assert_eq!(keys, expected, "every alert, once");

    // The longest gap between two deliveries while instances were being replaced.
    let mut at: Vec<Instant> = received.iter().map(|(_, t)| *t).collect();
    at.sort();
    let longest = at
        .windows(2)
        .filter(|w| w[0] >= started && w[1] <= started + upgraded)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "rolling upgrade: 8 instances replaced in {upgraded:?}; {} alerts delivered, each once; \
         longest gap in alert delivery while replacing: {longest:?}",
        keys.len()
    );
    assert!(
        longest < Duration::from_secs(30),
        "deliveries stopped for {longest:?}"
    );
    let _ = std::fs::remove_dir_all(&files);
}

/// Fails with the rows that differ and, for the first patient whose alerts differ, that
/// patient's events (partition, offset) and each run's alerts: what the next reader needs to
/// find where the two runs parted.
fn explain_difference(env: &TestEnv, uninterrupted: &TestEnv, query: &str, expected: &[String]) {
    let actual = env.query(query);
    let differing = expected
        .iter()
        .filter(|row| !actual.contains(row))
        .chain(actual.iter().filter(|row| !expected.contains(row)))
        .find_map(|row| row.split('\t').nth(5).map(str::to_string));
    if let (Some(patient), true) = (differing, query == ALERTS) {
        let events = format!(
            "SELECT kafka_partition, kafka_offset, kind, toString(event_time), event_time_ms, code, \
             ifNull(toString(value), '') FROM {{db}}.clinical_events \
             WHERE patient_pseudonym = '{patient}' ORDER BY kafka_partition, kafka_offset"
        );
        let alerts = format!(
            "SELECT rule_id, status, sequence, event_time_ms, episode_id FROM {{db}}.alerts FINAL \
             WHERE patient_pseudonym = '{patient}' ORDER BY event_time_ms, rule_id, sequence"
        );
        eprintln!(
            "patient {patient}\nevents:\n{}\nalerts, upgraded run:\n{}\nalerts, uninterrupted run:\n{}",
            env.query(&events).join("\n"),
            env.query(&alerts).join("\n"),
            uninterrupted.query(&alerts).join("\n")
        );
    }
    common::assert_same(query, expected, &actual);
}
