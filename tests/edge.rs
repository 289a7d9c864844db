//! The hospital edge against the real broker and ClickHouse: a simulated multi-vendor stream with
//! defects goes through `vigil ingest`; every record is accounted for exactly (accepted +
//! rejected by reason + tombstones = input, as the simulator's manifest says), and no raw
//! identifier appears in any topic or table downstream of the edge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestEnv;
use vigil_producers::simulator::identity::{identity, medical_record_number};
use vigil_producers::simulator::{Manifest, SimulateConfig, Simulation};

#[test]
fn a_defective_multi_vendor_stream_reconciles_exactly_and_leaks_no_identifier() {
    let env = TestEnv::new("edge", 4, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let manifest_path = env.path("manifest.json");
    let history = [
        "simulate",
        "--output",
        "cdc",
        "--patients",
        "600",
        "--hospitals",
        "6",
        "--days",
        "365",
        "--end-date",
        "2026-06-30",
        "--seed",
        "23",
        "--defects",
        "0.01",
        "--manifest",
        manifest_path.to_str().unwrap(),
    ];
    env.run_vigil(&history, Duration::from_secs(300));
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    assert!(
        manifest.rejected.len() >= 5,
        "several kinds of rejection were injected: {manifest:?}"
    );

    // Every input record is accounted for, by reason, exactly.
    let output = env.run_vigil(&["ingest", "--until-idle", "3"], Duration::from_secs(600));
    let summary: serde_json::Value =
        serde_json::from_str(output.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let rejected: BTreeMap<String, u64> =
        serde_json::from_value(summary["rejected"].clone()).unwrap();
    assert_eq!(
        summary["records"].as_u64(),
        Some(manifest.records),
        "{summary}"
    );
    assert_eq!(
        summary["accepted"].as_u64(),
        Some(manifest.accepted),
        "{summary}"
    );
    assert_eq!(
        summary["tombstones"].as_u64(),
        Some(manifest.tombstones),
        "{summary}"
    );
    assert_eq!(rejected, manifest.rejected);
    let topic_events = common::read_topic(&env.kafka, &env.kafka.topics.clinical_events);
    let topic_letters = common::read_topic(&env.kafka, &env.kafka.topics.dead_letters);
    assert_eq!(topic_events.len() as u64, manifest.accepted);
    assert_eq!(
        topic_letters.len() as u64,
        manifest.rejected.values().sum::<u64>()
    );

    // Downstream: the processor and the ClickHouse writer; dead letters land per hospital and reason.
    env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(600));
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(600));
    let landed = env.dead_letters_by_reason("ingest");
    assert_eq!(landed, manifest.rejected);
    // The stages' own statistics reconcile with what they did, and land per hospital.
    let rejected_total: u64 = manifest.rejected.values().sum();
    assert_eq!(
        env.scalar("SELECT sum(records_in), sum(records_out), sum(dead_letters) FROM {db}.pipeline_stats FINAL WHERE stage = 'ingest'"),
        format!("{}\t{}\t{rejected_total}", manifest.records, manifest.accepted)
    );
    assert_eq!(
        env.scalar("SELECT sum(records_in) FROM {db}.pipeline_stats FINAL WHERE stage = 'process'"),
        manifest.accepted.to_string()
    );
    assert_eq!(
        env.scalar("SELECT sum(records_in) FROM {db}.pipeline_hourly WHERE stage = 'ingest'"),
        manifest.records.to_string()
    );
    let stat_hospitals: u64 = env
        .scalar("SELECT uniqExact(hospital_id) FROM {db}.pipeline_stats WHERE hospital_id != ''")
        .parse()
        .unwrap();
    assert!(
        stat_hospitals >= 5,
        "statistics name their hospitals: {stat_hospitals}"
    );
    let hospitals: u64 = env
        .scalar("SELECT uniqExact(hospital_id) FROM {db}.dead_letters WHERE hospital_id != ''")
        .parse()
        .unwrap();
    assert!(
        hospitals >= 5,
        "dead letters name their hospitals: {hospitals}"
    );

    // No raw identifier anywhere past the edge: not in a topic, not in a table.
    let config = SimulateConfig {
        patients: 600,
        hospitals: 6,
        end_date: "2026-06-30".into(),
        seed: 23,
        ..SimulateConfig::default()
    };
    let simulation = Simulation::new(&config);
    let mut identifiers = Vec::new();
    for index in 0..config.patients {
        let p = simulation.patient(index).unwrap();
        let person = identity(config.seed, index, p.sex, p.birth_year, p.birth_day_of_year);
        identifiers.extend([
            person.national_id,
            person.name,
            person.phone,
            person.address,
            medical_record_number(p.hospital, index),
        ]);
    }
    let topics = &env.kafka.topics;
    let mut scanned = 0;
    for topic in [
        &topics.clinical_events,
        &topics.dead_letters,
        &topics.alerts,
        &topics.patient_status,
        &topics.late_events,
        &topics.processor_state,
    ] {
        for value in common::read_topic(&env.kafka, topic) {
            scanned += 1;
            let text = String::from_utf8_lossy(&value);
            for identifier in &identifiers {
                assert!(
                    !text.contains(identifier.as_str()),
                    "{identifier} found in topic {topic}"
                );
            }
        }
    }
    assert!(scanned > 10_000, "scanned {scanned} records");
    for table in [
        "clinical_events",
        "dead_letters",
        "alerts",
        "patient_status",
        "pipeline_stats",
    ] {
        let dump = env
            .query(&format!("SELECT * FROM {{db}}.{table} FORMAT TabSeparated"))
            .join("\n");
        assert!(!dump.is_empty(), "{table} is empty");
        for identifier in &identifiers {
            assert!(
                !dump.contains(identifier.as_str()),
                "{identifier} found in table {table}"
            );
        }
    }
}

/// The sum of a Prometheus counter's samples whose labels include all of `labels`, per value of
/// the label `by`.
fn counter_by(metrics: &str, name: &str, labels: &[&str], by: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((label_text, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.iter().all(|l| label_text.contains(l)) {
            continue;
        }
        let key = label_text
            .split(',')
            .find_map(|l| l.strip_prefix(&format!("{by}=\"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default();
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap() as u64;
    }
    out
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_edge_metrics_count_what_it_accepted_and_dead_lettered() {
    let env = TestEnv::new("edgemetrics", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let manifest_path = env.path("manifest.json");
    env.run_vigil(
        &[
            "simulate",
            "--output",
            "cdc",
            "--patients",
            "150",
            "--hospitals",
            "4",
            "--days",
            "180",
            "--end-date",
            "2026-06-30",
            "--seed",
            "31",
            "--defects",
            "0.02",
            "--manifest",
            manifest_path.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let port = common::free_port();
    let mut command = env.vigil(&["ingest"]);
    command.env(
        "VIGIL_TELEMETRY__METRICS_LISTEN",
        format!("127.0.0.1:{port}"),
    );
    let log = std::fs::File::create(env.path("ingest.log")).unwrap();
    let mut ingest = common::ChildGuard(Some(
        command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));
    let group = env.scalar_config("ingest", "group_id");
    let mut metrics = String::new();
    let counted = common::eventually(Duration::from_secs(180), || {
        if common::group_lag(&env.kafka, &group, &env.kafka.topics.his_changes) != 0 {
            return false;
        }
        metrics = std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| scrape(port))
            .unwrap_or_default();
        let records: u64 = counter_by(&metrics, "vigil_ingest_records_total", &[], "outcome")
            .values()
            .sum();
        records == manifest.records
    });
    assert!(counted, "{metrics}\n{}", env.log("ingest.log"));
    ingest.kill();
    let outcomes = counter_by(&metrics, "vigil_ingest_records_total", &[], "outcome");
    assert_eq!(
        outcomes.get("accepted").copied(),
        Some(manifest.accepted),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get("rejected").copied().unwrap_or(0),
        manifest.rejected.values().sum::<u64>()
    );
    assert_eq!(
        outcomes.get("tombstone").copied().unwrap_or(0),
        manifest.tombstones
    );
    // The dead letters the metrics counted are the ones that landed, reason by reason.
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    let counted = counter_by(
        &metrics,
        "vigil_dead_letters_total",
        &["stage=\"ingest\""],
        "reason",
    );
    let landed = env.dead_letters_by_reason("ingest");
    assert!(!landed.is_empty());
    assert_eq!(counted, landed);
    assert_eq!(landed, manifest.rejected);
}

/// `vigil simulate` of a small region's change events: (patients, hospitals, days) ending on
/// `end`, with a seed and a defect rate.
fn simulation<'a>(
    region: [&'a str; 3],
    end: &'a str,
    seed: &'a str,
    defects: &'a str,
) -> Vec<&'a str> {
    let [patients, hospitals, days] = region;
    vec![
        "simulate",
        "--output",
        "cdc",
        "--patients",
        patients,
        "--hospitals",
        hospitals,
        "--days",
        days,
        "--end-date",
        end,
        "--seed",
        seed,
        "--defects",
        defects,
    ]
}

/// A small region's change events with defects simulated into a file, and the manifest of what
/// the edge should make of them: (region size as patients, hospitals, days; seed).
fn simulate_to_file(env: &TestEnv, region: [&str; 3], seed: &str, defects: &str) -> Manifest {
    simulate_to_file_ending(env, region, "2026-06-30", seed, defects)
}

/// As [`simulate_to_file`], for a history ending on `end`.
fn simulate_to_file_ending(
    env: &TestEnv,
    region: [&str; 3],
    end: &str,
    seed: &str,
    defects: &str,
) -> Manifest {
    let file = env.path("changes.jsonl");
    let manifest_path = env.path("manifest.json");
    let mut args = simulation(region, end, seed, defects);
    args.extend([
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--output-file",
        file.to_str().unwrap(),
    ]);
    env.run_vigil(&args, Duration::from_secs(300));
    serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap()
}

#[test]
fn a_simulated_hospital_written_to_a_file_goes_through_the_edge_exactly() {
    // `vigil simulate --output-file` gives onboarding a change-event file to try the edge on.
    let env = TestEnv::new("simfile", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let manifest = simulate_to_file(&env, ["120", "3", "120"], "37", "0.02");
    let file = env.path("changes.jsonl");
    assert!(
        common::read_topic(&env.kafka, &env.kafka.topics.his_changes).is_empty(),
        "nothing went to the broker"
    );
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    assert_eq!(lines, manifest.records);
    let output = env.run_vigil(
        &["ingest", "--file", file.to_str().unwrap()],
        Duration::from_secs(300),
    );
    let summary: serde_json::Value =
        serde_json::from_str(output.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(summary["records"].as_u64(), Some(manifest.records));
    assert_eq!(summary["accepted"].as_u64(), Some(manifest.accepted));
    assert_eq!(summary["tombstones"].as_u64(), Some(manifest.tombstones));
    let rejected: BTreeMap<String, u64> =
        serde_json::from_value(summary["rejected"].clone()).unwrap();
    assert_eq!(rejected, manifest.rejected);
    assert!(!rejected.is_empty(), "defects were injected");
}

#[test]
fn a_profile_of_a_hospital_before_go_live_finds_every_injected_defect() {
    // One simulated hospital with defects of every kind, written to a file; the profile reads
    // it through the hospital's vendor shape and code table and must count each defect exactly.
    let env = TestEnv::new("profile", 1, "");
    let manifest = simulate_to_file(&env, ["150", "1", "200"], "41", "0.03");
    let file = env.path("changes.jsonl");
    let file_arg = file.to_str().unwrap();
    let out = env.path("profile");
    let output = env.run_vigil(
        &[
            "onboard",
            "profile",
            "--hospital",
            "H0001",
            "--out",
            out.to_str().unwrap(),
            file_arg,
        ],
        Duration::from_secs(120),
    );
    let line = output.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let profile: serde_json::Value = serde_json::from_str(line).unwrap();
    let defects = |kind: &str| manifest.defects.get(kind).copied().unwrap_or(0);
    let figure = |name: &str| profile[name].as_u64().unwrap();
    assert_eq!(figure("records"), manifest.records);
    assert_eq!(figure("tombstones"), manifest.tombstones);
    assert_eq!(figure("accepted"), manifest.accepted);
    let rejected: BTreeMap<String, u64> =
        serde_json::from_value(profile["rejected"].clone()).unwrap();
    assert_eq!(rejected, manifest.rejected);
    let sum = |name: &str, field: Option<&str>| -> u64 {
        let map = profile[name].as_object().unwrap();
        map.values()
            .map(|v| match field {
                Some(f) => v[f].as_u64().unwrap(),
                None => v.as_u64().unwrap(),
            })
            .sum()
    };
    assert_eq!(
        sum("unknown_lab_codes", Some("records")),
        defects("unknown_code")
    );
    assert_eq!(sum("unit_differences", None), defects("wrong_unit"));
    assert_eq!(figure("duplicate_records"), defects("duplicate"));
    assert_eq!(
        profile["operations"]["d"].as_u64(),
        Some(defects("deletion"))
    );
    // Late deliveries show where something newer came first; one late at night with nothing
    // newer before it is not visibly out of order.
    let out_of_order = figure("out_of_order_changes");
    assert!(
        out_of_order > 0 && out_of_order <= defects("late"),
        "{out_of_order}"
    );
    for kind in [
        "unknown_code",
        "wrong_unit",
        "duplicate",
        "deletion",
        "malformed",
    ] {
        assert!(defects(kind) > 0, "the history has {kind} defects");
    }
    // Every unknown code gets a suggestion from its unit and values; the draft table lists it,
    // commented out; the report exists in both forms and shows no identifier.
    let codes = profile["unknown_lab_codes"].as_object().unwrap();
    assert!(codes
        .values()
        .all(|c| !c["suggestions"].as_array().unwrap().is_empty()));
    let draft = std::fs::read_to_string(out.join("codes-H0001.draft.toml")).unwrap();
    for code in codes.keys() {
        assert!(draft.contains(&format!("# {code} = {{ loinc = ")), "{code}");
    }
    let html = std::fs::read_to_string(out.join("profile-H0001.html")).unwrap();
    let markdown = std::fs::read_to_string(out.join("profile-H0001.md")).unwrap();
    assert!(html.contains("<table>") && markdown.contains("| lab code |"));
    let changes = std::fs::read_to_string(&file).unwrap();
    let resident_ids: Vec<String> = changes
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.pointer("/after/sfzh")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .collect();
    assert!(!resident_ids.is_empty());
    for id in &resident_ids {
        assert!(!html.contains(id.as_str()) && !markdown.contains(id.as_str()));
    }
}

const REPLAY_ALERTS: &str = "SELECT alert_id, rule_id, status, sequence, event_time_ms \
    FROM {db}.alerts FINAL ORDER BY alert_id";
/// Versions included: an event recognised as sent before changes nothing, not even a version.
const REPLAY_STATUS: &str = "SELECT status_id, max(version), argMax(tuple(managed, follow_ups, \
    follow_ups_ytd, standardised, controlled, risk_level, toString(event_time)), version) \
    FROM {db}.patient_status GROUP BY status_id ORDER BY status_id";
const REPLAY_METRICS: &str = "SELECT hospital_id, condition, period_kind, toString(period_start), \
    managed_patients, standardised_patients, controlled_patients, new_complications \
    FROM {db}.pilot_metrics ORDER BY hospital_id, condition, period_kind, period_start";

/// Every alert, status row (versions included) and metric of `env` equals `reference`'s.
fn assert_same_as_reference(reference: &TestEnv, env: &TestEnv) {
    let alerts = reference.query(REPLAY_ALERTS);
    assert!(alerts.len() > 100, "the history raises alerts");
    common::assert_same("alerts", &alerts, &env.query(REPLAY_ALERTS));
    common::assert_same(
        "patient status",
        &reference.query(REPLAY_STATUS),
        &env.query(REPLAY_STATUS),
    );
    common::assert_same(
        "pilot metrics",
        &reference.query(REPLAY_METRICS),
        &env.query(REPLAY_METRICS),
    );
    common::assert_rollup_is_current(reference);
    common::assert_rollup_is_current(env);
}

/// A count of the processor's summary (`name: N`) in a run's output.
fn summary_count(output: &str, name: &str) -> u64 {
    let label = format!(" {name}: ");
    let at = output.find(&label).expect("the processor's summary");
    let digits: String = output[at + label.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

fn replayed_count(output: &str) -> u64 {
    summary_count(output, "replayed")
}

#[test]
fn an_edge_sending_everything_again_changes_no_figure_and_counts_nothing_late() {
    // An edge killed before it commits sends again everything since its last commit: in a
    // back-fill that is months of a patient's history, far more than a patient remembers of its
    // events. Here the worst case: a second edge group over the same input sends all of it
    // twice. Recognised by their source positions, the copies change no alert, no status row
    // (not even its version), no metric, and none is taken for a late event.
    let reference = TestEnv::new("replayref", 4, "");
    let env = TestEnv::new("replay", 4, "");
    let history = simulation(["300", "3", "500"], "2026-06-30", "41", "0.01");
    for e in [&reference, &env] {
        e.run_vigil(&["migrate"], Duration::from_secs(60));
        e.run_vigil(&["topics"], Duration::from_secs(60));
        e.run_vigil(&history, Duration::from_secs(300));
    }
    reference.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));
    env.run_vigil(&["ingest", "--until-idle", "3"], Duration::from_secs(600));
    let mut again = env.vigil(&["ingest", "--until-idle", "3"]);
    again.env("VIGIL_INGEST__GROUP_ID", "replaying-edge");
    env.run_command(again, Duration::from_secs(600));
    let output = env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));

    let events: u64 = env
        .scalar("SELECT uniqExact(event_id) FROM {db}.clinical_events")
        .parse()
        .unwrap();
    assert!(events > 5_000, "a long history: {events} events");
    assert!(
        replayed_count(&output) >= events,
        "every copy is recognised: {} replayed of {events} events",
        replayed_count(&output)
    );
    assert_eq!(env.scalar("SELECT count() FROM {db}.late_events"), "0");
    assert_same_as_reference(&reference, &env);
}

/// The figures of `vigil onboard profile` (its last output line).
fn run_profile(env: &TestEnv, out: &str, sample: &[&str]) -> serde_json::Value {
    let mut args = vec!["onboard", "profile", "--hospital", "H0001", "--out", out];
    args.extend_from_slice(sample);
    let output = env.run_vigil(&args, Duration::from_secs(120));
    let line = output.lines().rev().find(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_profile_read_from_the_topic_counts_what_the_file_profile_counts_and_commits_nothing() {
    // Before go-live a hospital's connector may already write to the platform's change-event
    // topic: the profile reads its newest records there, outside any consumer group.
    let env = TestEnv::new("profiletopic", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let (patients, hospitals, days, seed, defects) = ("100", "1", "150", "43", "0.03");
    let region = [patients, hospitals, days];
    let manifest = simulate_to_file(&env, region, seed, defects);
    env.run_vigil(
        &simulation(region, "2026-06-30", seed, defects),
        Duration::from_secs(300),
    );
    let file = env.path("changes.jsonl");
    let from_file = run_profile(&env, "from-file", &[file.to_str().unwrap()]);
    let from_topic = run_profile(&env, "from-topic", &["--records", "1000000"]);
    assert_eq!(from_topic["records"].as_u64(), Some(manifest.records));
    // Asking for more than any topic holds reads all of it.
    let everything = run_profile(&env, "everything", &["--records", &u64::MAX.to_string()]);
    assert_eq!(everything["records"], from_topic["records"]);
    for figure in [
        "records",
        "tombstones",
        "accepted",
        "rejected",
        "duplicate_records",
        "operations",
        "unit_differences",
        "other_hospitals",
    ] {
        assert_eq!(from_topic[figure], from_file[figure], "{figure}");
    }
    let codes = |p: &serde_json::Value| {
        p["unknown_lab_codes"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(!codes(&from_topic).is_empty());
    assert_eq!(codes(&from_topic), codes(&from_file));
    assert!(env.path("from-topic/profile-H0001.html").exists());
    // A sample of the newest records only.
    let sample = run_profile(&env, "sample", &["--records", "100"]);
    let records = sample["records"].as_u64().unwrap() + sample["other_hospitals"].as_u64().unwrap();
    assert_eq!(records, 100, "50 from each of the two partitions");
    // The edge that reads the topic afterwards starts at its beginning: nothing was committed.
    let output = env.run_vigil(&["ingest", "--until-idle", "3"], Duration::from_secs(300));
    let line = output.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let summary: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(summary["accepted"].as_u64(), Some(manifest.accepted));
}

#[test]
fn two_exports_fed_from_files_of_one_name_both_land() {
    // A file's line numbers start again with every run: an edge reading files stamps no source
    // position, or a hospital's second export under the same name (or anything on stdin after
    // the first) would pass for a replay of the first and be skipped.
    let env = TestEnv::new("twofiles", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let file = env.path("changes.jsonl");
    let mut accepted = 0;
    for (seed, end) in [("51", "2026-03-31"), ("52", "2026-06-30")] {
        // Written to the same file each time: one name, two exports.
        let manifest = simulate_to_file_ending(&env, ["60", "1", "90"], end, seed, "0");
        accepted += manifest.accepted;
        env.run_vigil(
            &["ingest", "--file", file.to_str().unwrap()],
            Duration::from_secs(300),
        );
    }
    let output = env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(300));
    assert!(accepted > 500, "{accepted} events");
    assert_eq!(summary_count(&output, "replayed"), 0, "{output}");
    assert_eq!(summary_count(&output, "late"), 0, "{output}");
    assert_eq!(summary_count(&output, "events"), accepted, "{output}");
}

/// Alerts as a clinician sees them: what was raised, for which patient and subject, when.
const SNAPSHOT_ALERTS: &str = "SELECT rule_id, patient_pseudonym, status, sequence, event_time_ms, \
    severity, value, department_code FROM {db}.alerts FINAL ORDER BY patient_pseudonym, rule_id, event_time_ms, sequence, status";
/// Every status row's figures (versions count applications, which differ by design).
const SNAPSHOT_STATUS: &str =
    "SELECT status_id, argMax(tuple(managed, follow_ups, follow_ups_ytd, \
    standardised, controlled, risk_level), version) FROM {db}.patient_status \
    GROUP BY status_id ORDER BY status_id";

#[test]
fn a_history_sent_as_an_initial_snapshot_in_table_order_lands_as_when_streamed() {
    // Debezium starts a connector with a snapshot of the tables as they stand: table by table,
    // every row stamped with the snapshot's time. One hospital's 500 days three ways: streamed
    // as they happened; as one snapshot taken at the end; as a snapshot taken a year in,
    // followed by live changes. The edge holds each snapshot until its last row and releases it
    // in clinical-time order, so every alert (raised, re-notified, resolved, at the same event
    // times), every status row and every metric is the same.
    let region = ["300", "1", "500"];
    // The stream in time order: one partition, read in the order written (with more, the edge
    // would merge them by change time, and a row entered minutes after its clinical time would
    // come after a later one). One partition for the others too: a hospital's clock, and the
    // months it opens, are per processor partition.
    let ways = [
        ("snapstream", None),
        ("snapwhole", Some("2026-06-30")),
        ("snaphalf", Some("2025-12-31")),
    ];
    let mut outputs = Vec::new();
    let mut envs = Vec::new();
    for (name, snapshot_at) in ways {
        envs.push(TestEnv::new(name, 1, ""));
        let env = &envs[envs.len() - 1];
        env.run_vigil(&["migrate"], Duration::from_secs(60));
        env.run_vigil(&["topics"], Duration::from_secs(60));
        let mut args = simulation(region, "2026-06-30", "43", "0");
        if let Some(day) = snapshot_at {
            args.extend(["--snapshot-at", day]);
        }
        env.run_vigil(&args, Duration::from_secs(300));
        let output = env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));
        assert_eq!(summary_count(&output, "late"), 0, "{name}: {output}");
        assert_eq!(
            env.scalar("SELECT count() FROM {db}.late_events"),
            "0",
            "{name}"
        );
        let snapshot_rows =
            env.scalar("SELECT count() FROM {db}.clinical_events WHERE operation = 'SNAPSHOT'");
        outputs.push((
            name,
            snapshot_rows.parse::<u64>().unwrap(),
            env.query(SNAPSHOT_ALERTS),
            env.query(SNAPSHOT_STATUS),
            env.query(REPLAY_METRICS),
        ));
    }
    // One difference is by design: a patient registered during the streamed history has a live
    // registration, which dates its first record; a snapshot's registration carries only the
    // snapshot's stamp, so there a missed follow-up counts from the patient's first clinical
    // record (ARCHITECTURE.md, "Event time"). Those patients' missed-follow-up alerts are left
    // out of the comparison, and they are few.
    let registered_live: std::collections::BTreeSet<String> = envs[0]
        .query(
            "SELECT DISTINCT patient_pseudonym FROM {db}.clinical_events \
             WHERE kind = 'patient_registration' AND operation = 'CREATE'",
        )
        .into_iter()
        .collect();
    assert!(
        !registered_live.is_empty(),
        "the history registers patients live"
    );
    let comparable = |alerts: &[String]| -> Vec<String> {
        alerts
            .iter()
            .filter(|row| {
                let mut columns = row.split('\t');
                let (rule, patient) = (columns.next(), columns.next().unwrap_or_default());
                rule != Some("missed_quarterly_follow_up") || !registered_live.contains(patient)
            })
            .cloned()
            .collect()
    };
    let (_, streamed_rows, streamed_alerts, status, metrics) = &outputs[0];
    let alerts = &comparable(streamed_alerts);
    assert!(
        alerts.len() * 100 >= streamed_alerts.len() * 95,
        "{} of {} alerts compared",
        alerts.len(),
        streamed_alerts.len()
    );
    assert!(
        alerts.len() > 100,
        "the history raises alerts: {}",
        alerts.len()
    );
    assert!(status.len() > 1_000, "status rows: {}", status.len());
    for (name, snapshot_rows, their_alerts, their_status, their_metrics) in &outputs[1..] {
        assert!(
            snapshot_rows > streamed_rows,
            "{name} came as a snapshot: {snapshot_rows} rows"
        );
        common::assert_same(
            &format!("{name}: alerts"),
            alerts,
            &comparable(their_alerts),
        );
        common::assert_same(&format!("{name}: patient status"), status, their_status);
        common::assert_same(&format!("{name}: pilot metrics"), metrics, their_metrics);
    }
}

#[test]
fn an_edge_killed_holding_a_snapshot_and_again_releasing_it_lands_as_a_clean_run() {
    // SIGKILL of the edge while it holds a hospital's initial snapshot (nothing of it was
    // committed), and again as it releases it (part of it sent, nothing committed), restarted at
    // once in the same consumer group: it reads the snapshot again and releases it under the
    // same name and in the same order, so the processor recognises what it had already applied.
    // Every alert, status row (versions included) and metric equals a run nobody killed.
    let reference = TestEnv::new("snapref", 1, "");
    let env = TestEnv::new("snapkill", 1, "");
    let mut history = simulation(["300", "1", "500"], "2026-06-30", "44", "0");
    history.extend(["--snapshot-at", "2026-06-30"]);
    for e in [&reference, &env] {
        e.run_vigil(&["migrate"], Duration::from_secs(60));
        e.run_vigil(&["topics"], Duration::from_secs(60));
        e.run_vigil(&history, Duration::from_secs(300));
    }
    reference.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));
    for (round, moment) in [
        (0, "An initial snapshot begins"),
        (1, "An initial snapshot ended"),
    ] {
        let log = format!("ingest-{round}.log");
        let mut edge = env.spawn_vigil(&["ingest"], &log);
        assert!(
            common::eventually(Duration::from_secs(120), || env.log(&log).contains(moment)),
            "the edge got to: {moment}"
        );
        edge.sigkill();
    }
    let output = env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));
    assert_eq!(summary_count(&output, "late"), 0, "{output}");
    // How much of the release the second kill let through depends on timing; the outputs may not.
    eprintln!(
        "sent before the kill and recognised: {}",
        replayed_count(&output)
    );
    assert_same_as_reference(&reference, &env);
}
