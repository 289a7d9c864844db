//! What a hostile world sends, against the real broker and ClickHouse: bytes that are not UTF-8,
//! multi-byte text where ids are sliced, fields megabytes long, deep nesting, NaN and infinite
//! values, absurd times, rows of the wrong shape, garbage bytes and null records, at the edge
//! and on every internal topic. Every stage keeps going, the valid records after the bad ones
//! land, every bad record is a dead letter with a reason, and no raw identifier of the input is
//! found in any topic, table or log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::TestEnv;
use serde_json::json;
use vigil_producers::edge::resident_id::check_char;
use vigil_runtime::kafka::DurableProducer;
use vigil_schemas::{
    AlertAck, ClinicalEvent, FollowUpVisit, Operation, Payload, Prescription, VisitMode, VitalSign,
};

/// Identifiers the hostile input carries; none may appear past the edge.
const NAMES: [&str; 4] = [
    "何玉兰",
    "王秀英",
    "Zhang Wei-hostile",
    "Jos\u{e9} Ferreira",
];
const PHONE: &str = "13987654321";
const ADDRESS: &str = "北京市海淀区中关村大街27号";

fn resident_id(n: u32) -> String {
    let body = format!("1101051980{:07}", n);
    format!("{body}{}", check_char(&body))
}

/// A valid vendor-A vital-signs change event for hospital H0001.
fn vitals(n: u32, time: &str) -> serde_json::Value {
    json!({"op": "c", "ts_ms": 1_750_000_001_000i64,
        "source": {"name": "his-h0001", "table": "tz_jl", "ts_ms": 1_750_000_000_000i64 + n as i64, "file": "bin.1", "pos": n},
        "before": null,
        "after": {"tzid": n, "sfzh": resident_id(n), "brxm": NAMES[0], "ssy": 135, "szy": 85, "clsj": time}})
}

fn encounter(kind: &str, department: &str) -> serde_json::Value {
    json!({"op": "c", "source": {"name": "his-h0001", "table": "mz_jzjl", "ts_ms": 1_750_000_000_000i64},
        "after": {"jzid": 77, "sfzh": resident_id(1), "jzlx": kind, "ksdm": department, "jzsj": "2025-06-01 09:30:00",
                  "brxm": NAMES[1], "lxdh": PHONE}})
}

fn prescription(dose: serde_json::Value) -> serde_json::Value {
    json!({"op": "c", "source": {"name": "his-h0001", "table": "cf_mx", "ts_ms": 1_750_000_000_000i64},
        "after": {"cfid": 3, "sfzh": resident_id(2), "ypdm": "Y001", "jl": dose, "jldw": "mg", "pc": "qd",
                  "ts": 30, "kfsj": "2025-06-01 09:30:00", "brxm": NAMES[2]}})
}

/// The hostile change events, as raw lines, with the reason each must be dead-lettered for.
fn hostile_lines() -> Vec<(Vec<u8>, &'static str)> {
    let line = |v: serde_json::Value| v.to_string().into_bytes();
    let mut latin1 = line(vitals(900, "2025-06-01 09:30:00"));
    // A Latin-1 name: one byte that is not UTF-8.
    let name = "\"brxm\":\"何玉兰\"";
    let at = String::from_utf8(latin1.clone())
        .unwrap()
        .find(name)
        .unwrap();
    latin1.splice(
        at..at + name.len(),
        b"\"brxm\":\"Jos\xe9 Ferreira\"".iter().copied(),
    );
    let mut multibyte = vitals(901, "2025-06-01 09:30:00");
    multibyte["after"]["sfzh"] = json!("123456789012345王");
    let mut absurd_delete = vitals(902, "2025-06-01 09:30:00");
    absurd_delete["op"] = json!("d");
    absurd_delete["before"] = absurd_delete["after"].clone();
    absurd_delete["after"] = json!(null);
    absurd_delete["source"]["ts_ms"] = json!(-5_000_000_000_000_000i64);
    let mut unknown_hospital = vitals(903, "2025-06-01 09:30:00");
    unknown_hospital["source"]["name"] = json!("his-unknown");
    unknown_hospital["after"]["jzdz"] = json!(ADDRESS);
    // A row in vendor B's shape under vendor A's connector.
    let other_vendor = json!({"op": "c", "source": {"name": "his-h0001", "table": "patients", "ts_ms": 1_750_000_000_000i64},
        "after": {"id_number": resident_id(3), "full_name": NAMES[1], "phone": PHONE, "address": ADDRESS}});
    let huge = "科".repeat(700_000);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        (latin1, "malformed_record"),
        (line(multibyte), "invalid_patient_identifier"),
        (line(encounter("MZ", &huge)), "field_too_long"),
        (line(encounter(&huge, "NEI")), "invalid_code"),
        (line(encounter("patient 何玉兰", "NEI")), "invalid_code"),
        (deep.into_bytes(), "malformed_record"),
        (line(prescription(json!("NaN"))), "non_numeric_result"),
        (line(prescription(json!("inf"))), "non_numeric_result"),
        (line(prescription(json!(1e308))), "value_out_of_range"),
        (line(prescription(json!(-5))), "value_out_of_range"),
        (line(absurd_delete), "invalid_date"),
        (line(unknown_hospital), "unknown_hospital"),
        (line(other_vendor), "unknown_table"),
        (
            line(json!([NAMES[0], resident_id(4), PHONE])),
            "malformed_record",
        ),
        (
            line(json!(format!("{} {} {ADDRESS}", NAMES[1], resident_id(5)))),
            "malformed_record",
        ),
        (
            vec![0xff, 0xfe, 0x00, 0x9c, 0x80, b'{', 0xc3],
            "malformed_record",
        ),
        (
            format!("{{\"op\": \"c\", \"note\": \"{}\"", "x".repeat(3_000_000)).into_bytes(),
            "malformed_record",
        ),
    ]
}

fn canonical(n: u32, hospital: &str, payload: Payload) -> ClinicalEvent {
    ClinicalEvent {
        event_id: format!("{n:032x}"),
        hospital_id: hospital.to_string(),
        source_system: "hostile-test".into(),
        operation: Operation::Create,
        event_time_ms: 1_750_000_000_000 + n as i64 * 60_000,
        ingest_time_ms: 1_750_000_000_000 + n as i64 * 60_000,
        patient_pseudonym: format!("{:064x}", 0xabc000 + n),
        record_id: format!("tz_jl/{n}"),
        schema_version: 1,
        payload,
        source: None,
    }
}

fn bp(systolic: f64, diastolic: f64) -> Payload {
    Payload::VitalSign(VitalSign {
        systolic_mmhg: Some(systolic),
        diastolic_mmhg: Some(diastolic),
        ..VitalSign::default()
    })
}

/// Canonical events that break the contract, each with the processor's reason.
fn hostile_events() -> Vec<(ClinicalEvent, &'static str)> {
    let mut multibyte = canonical(1, "H0001", bp(130.0, 80.0));
    multibyte.patient_pseudonym = format!("{}王", "a".repeat(61));
    let mut absurd = canonical(2, "H0001", bp(130.0, 80.0));
    absurd.event_time_ms = 1_000_000_000_000_000;
    let mut future = canonical(3, "H0001", bp(130.0, 80.0));
    future.event_time_ms += 30 * 86_400_000;
    let dose = |d: f64| {
        Payload::Prescription(Prescription {
            drug_code: "Y001".into(),
            atc_code: "C09AA05".into(),
            dose: d,
            dose_unit: "mg".into(),
            frequency: "qd".into(),
            days_supply: 30,
            encounter_id: None,
        })
    };
    let follow_up = Payload::FollowUpVisit(FollowUpVisit {
        condition: vigil_schemas::Condition::Hypertension,
        visit_mode: VisitMode::Clinic,
        systolic_mmhg: Some(f64::INFINITY),
        diastolic_mmhg: Some(80.0),
        fasting_glucose_mmol_l: None,
        hba1c_percent: None,
        next_visit_time_ms: None,
        clinician_id: "D1".into(),
    });
    vec![
        (
            canonical(4, &"H".repeat(900_000), bp(130.0, 80.0)),
            "field_too_long",
        ),
        (multibyte, "invalid_pseudonym"),
        (absurd, "event_time_implausible"),
        (future, "event_time_in_future"),
        (canonical(5, "H0001", dose(f64::NAN)), "non_finite_value"),
        (canonical(6, "H0001", dose(-5.0)), "value_out_of_range"),
        (
            canonical(7, "H0001", bp(f64::NAN, 80.0)),
            "non_finite_value",
        ),
        (canonical(8, "H0001", follow_up), "non_finite_value"),
    ]
}

fn tally(reasons: impl IntoIterator<Item = &'static str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for reason in reasons {
        *out.entry(reason.to_string()).or_default() += 1;
    }
    out
}

#[test]
fn hostile_input_at_the_edge_and_on_every_topic_is_dead_lettered_and_leaks_nothing() {
    let env = TestEnv::new("hostile", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));

    // The edge: hostile lines between valid ones; the valid ones after them must land.
    let hostile = hostile_lines();
    let path = env.path("changes.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    let valid_before = 5;
    let valid_after = 20;
    for n in 0..valid_before {
        writeln!(file, "{}", vitals(n, "2025-06-01 08:00:00")).unwrap();
    }
    for (bytes, _) in &hostile {
        file.write_all(bytes).unwrap();
        file.write_all(b"\n").unwrap();
    }
    writeln!(file, "null").unwrap();
    for n in valid_before..valid_before + valid_after {
        writeln!(file, "{}", vitals(n, "2025-06-02 08:00:00")).unwrap();
    }
    drop(file);
    let output = env.run_vigil(
        &["ingest", "--file", path.to_str().unwrap()],
        Duration::from_secs(300),
    );
    let summary: serde_json::Value =
        serde_json::from_str(output.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let edge_reasons = tally(hostile.iter().map(|(_, r)| *r));
    let rejected: BTreeMap<String, u64> =
        serde_json::from_value(summary["rejected"].clone()).unwrap();
    assert_eq!(rejected, edge_reasons, "{summary}");
    assert_eq!(
        summary["accepted"].as_u64(),
        Some((valid_before + valid_after) as u64)
    );
    assert_eq!(summary["tombstones"].as_u64(), Some(1));

    // Every internal topic: garbage, null records, and canonical events that break the contract,
    // then valid events after them.
    let producer = DurableProducer::new(&env.kafka, "vigil-hostile-test").unwrap();
    let topics = &env.kafka.topics;
    for topic in [
        &topics.clinical_events,
        &topics.alerts,
        &topics.patient_status,
        &topics.alert_acks,
        &topics.dead_letters,
        &topics.pipeline_stats,
    ] {
        producer
            .send(topic, b"garbage", b"\xc3\x01garbage \xff not avro")
            .unwrap();
        producer.send_tombstone(topic, b"null").unwrap();
    }
    producer.flush().unwrap();
    let bad_events = hostile_events();
    let keyed: Vec<(String, ClinicalEvent)> = bad_events
        .iter()
        .map(|(e, _)| ("k".to_string(), e.clone()))
        .collect();
    env.produce(&topics.clinical_events, &keyed);
    let valid_events: Vec<(String, ClinicalEvent)> = (100..110)
        .map(|n| {
            let e = canonical(n, "H0002", bp(182.0, 95.0));
            (e.patient_pseudonym.clone(), e)
        })
        .collect();
    env.produce(&topics.clinical_events, &valid_events);
    // Valid, but 160 days older than its hospital's newest event (lateness is judged per
    // hospital): past the allowed lateness (60 days), so left out of the figures, and landed
    // where the commission can see it.
    let newest = canonical(201, "H0003", bp(121.0, 78.0));
    let mut late = canonical(200, "H0003", bp(150.0, 95.0));
    late.event_time_ms -= 160 * 86_400_000;
    late.patient_pseudonym = newest.patient_pseudonym.clone();
    env.produce(
        &topics.clinical_events,
        &[
            (newest.patient_pseudonym.clone(), newest.clone()),
            (late.patient_pseudonym.clone(), late.clone()),
        ],
    );
    let ack = AlertAck {
        ack_id: "a".repeat(600_000),
        episode_id: "王".repeat(100),
        patient_pseudonym: NAMES[0].into(),
        action: vigil_schemas::AckAction::Acknowledge,
        snooze_until_ms: None,
        clinician_id: PHONE.into(),
        time_ms: i64::MIN,
    };
    env.produce(&topics.alert_acks, &[("k".to_string(), ack)]);

    let process = env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(300));
    let sink = env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));

    // Valid records after the bad ones landed; the bad canonical events did not.
    let landed: u64 = env
        .scalar("SELECT uniqExact(event_id) FROM {db}.clinical_events")
        .parse()
        .unwrap();
    assert_eq!(landed, (valid_before + valid_after + 10 + 2) as u64);
    assert_eq!(
        env.scalar("SELECT uniqExact(event_id), any(hospital_id) FROM {db}.late_events"),
        format!("1\tH0003")
    );
    assert_eq!(
        env.scalar(
            "SELECT sum(late_events) FROM {db}.late_events_by_hospital WHERE hospital_id = 'H0003'"
        ),
        "1"
    );
    assert_eq!(
        env.scalar("SELECT count() FROM {db}.clinical_events WHERE hospital_id = 'H0002'"),
        "10"
    );
    let crisis: u64 = env
        .scalar("SELECT uniqExact(patient_pseudonym) FROM {db}.alerts FINAL WHERE rule_id = 'hypertensive_crisis'")
        .parse()
        .unwrap();
    assert_eq!(
        crisis, 10,
        "every valid crisis reading after the bad ones raised its alert"
    );

    // Every bad record is a dead letter with its reason, in the stage that met it.
    assert_eq!(env.dead_letters_by_reason("ingest"), edge_reasons);
    let mut process_reasons = tally(bad_events.iter().map(|(_, r)| *r));
    // Garbage and a null on the events topic and on the acknowledgements topic.
    *process_reasons.entry("undecodable".into()).or_default() += 4;
    assert_eq!(
        env.dead_letters_by_reason("process"),
        process_reasons,
        "{process}"
    );
    // The writer reads events, alerts, status, dead letters and stats: garbage and null on each.
    assert_eq!(
        env.dead_letters_by_reason("sink"),
        tally(std::iter::repeat_n("undecodable", 10)),
        "{sink}"
    );

    // No raw identifier anywhere past the edge: topics, tables, logs.
    let mut identifiers: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    identifiers.extend([
        PHONE.to_string(),
        ADDRESS.to_string(),
        "Jos".to_string() + "\u{fffd}",
    ]);
    identifiers.extend((0..=905).map(resident_id));
    identifiers.push("123456789012345".into());
    let assert_clean = |what: &str, text: &str| {
        for identifier in &identifiers {
            assert!(
                !text.contains(identifier.as_str()),
                "{identifier} found in {what}"
            );
        }
    };
    for topic in [
        &topics.clinical_events,
        &topics.dead_letters,
        &topics.alerts,
        &topics.patient_status,
        &topics.late_events,
        &topics.processor_state,
        &topics.pipeline_stats,
    ] {
        // Input injected straight into the events topic is not the edge's output: skip it.
        for value in common::read_topic(&env.kafka, topic) {
            let text = String::from_utf8_lossy(&value);
            if topic == &topics.clinical_events && !text.contains("H0001") {
                continue;
            }
            assert_clean(topic, &text);
        }
    }
    for table in [
        "clinical_events",
        "dead_letters",
        "alerts",
        "patient_status",
    ] {
        let dump = env
            .query(&format!("SELECT * FROM {{db}}.{table} FORMAT TabSeparated"))
            .join("\n");
        assert_clean(table, &dump);
    }
    let letters_dump = env
        .query("SELECT reason_detail, redacted_payload FROM {db}.dead_letters FORMAT TabSeparated")
        .join("\n");
    assert!(
        letters_dump.contains("<withheld"),
        "copies say what they withheld"
    );
    assert_clean("the ingest log", &output);
    assert_clean("the processor log", &process);
    assert_clean("the writer log", &sink);
}
