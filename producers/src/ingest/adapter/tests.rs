use serde_json::json;

use super::*;
use vigil_schemas::Sex;

const ID: &str = "11010519491231002X";

fn catalog() -> Catalog {
    Catalog::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge")).unwrap()
}

fn envelope(server: &str, table: &str, op: &str, row: Value) -> Value {
    let (before, after) = if op == "d" {
        (row, Value::Null)
    } else {
        (Value::Null, row)
    };
    json!({"before": before, "after": after, "op": op, "ts_ms": 1_750_000_001_000i64,
           "source": {"name": server, "table": table, "ts_ms": 1_750_000_000_000i64, "file": "mysql-bin.000001", "pos": 42}})
}

fn lab_a(code: &str, value: Value, unit: &str) -> Value {
    envelope(
        "his-h0001",
        "lis_jg",
        "c",
        json!({"jgid": 7, "sfzh": ID, "xmdm": code, "jg": value, "dw": unit, "bgsj": "2025-06-01 09:30:00"}),
    )
}

fn adapt(value: &Value) -> Outcome {
    adapt_bytes(value.to_string().as_bytes())
}

fn adapt_bytes(bytes: &[u8]) -> Outcome {
    adapt_marked(bytes).outcome
}

fn adapt_marked(bytes: &[u8]) -> Adapted {
    let catalog = catalog();
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    let adapter = Adapter {
        catalog: &catalog,
        key: &key,
        utc_offset_minutes: 480,
        now_ms: 1_760_000_000_000,
    };
    adapter.adapt_marked(Some(bytes))
}

fn accepted(value: &Value) -> ClinicalEvent {
    match adapt(value) {
        Outcome::Accepted(e) | Outcome::AcceptedUnmapped(e, _) => *e,
        other => panic!("rejected: {other:?}"),
    }
}

fn reason(value: &Value) -> &'static str {
    match adapt(value) {
        Outcome::Rejected(r) => r.reason.as_str(),
        other => panic!("accepted: {other:?}"),
    }
}

fn lab(event: &ClinicalEvent) -> (String, f64, String) {
    match &event.payload {
        Payload::LabResult(l) => (
            l.loinc.clone(),
            (l.value * 100.0).round() / 100.0,
            l.unit.clone(),
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn local_lab_codes_map_to_loinc_in_canonical_units() {
    let b_glucose = envelope(
        "his-h0002",
        "lab_results",
        "c",
        json!({"id": 1, "id_number": ID, "test_code": "LAB0102", "value_numeric": 126.0, "units": "mg/dL", "resulted_at": 1_749_000_000_000_000i64}),
    );
    let b_creatinine = envelope(
        "his-h0002",
        "lab_results",
        "c",
        json!({"id": 2, "id_number": ID, "test_code": "LAB0301", "value_numeric": 1.0, "units": "", "resulted_at": 1_749_000_000_000_000i64}),
    );
    let c_hba1c = envelope(
        "his-h0003",
        "EXAM_RESULT",
        "c",
        json!({"RESULT_ID": 3, "ID_NO": ID, "ITEM_CODE": "2001", "RESULT_VALUE": "9.4", "RESULT_UNIT": "%", "REPORT_TIME": 1_749_000_000_000i64}),
    );
    let cases: [(Value, (&str, f64, &str)); 5] = [
        (
            lab_a("GLU", json!("7.9"), "mmol/L"),
            ("14749-6", 7.9, "mmol/L"),
        ),
        // Reported in mg/dL where the lab usually reports mmol/L: converted, not rejected.
        (
            lab_a("FBG", json!("126"), "mg/dL"),
            ("14771-0", 6.99, "mmol/L"),
        ),
        (b_glucose, ("14749-6", 6.99, "mmol/L")),
        // No unit on the row: the code table's (mg/dL) applies.
        (b_creatinine, ("14682-9", 88.4, "umol/L")),
        (c_hba1c, ("4548-4", 9.4, "%")),
    ];
    for (input, (loinc, value, unit)) in cases {
        assert_eq!(
            lab(&accepted(&input)),
            (loinc.to_string(), value, unit.to_string()),
            "{input}"
        );
    }
}

fn rejection(value: &Value) -> Rejection {
    match adapt(value) {
        Outcome::Rejected(r) => r,
        other => panic!("accepted: {other:?}"),
    }
}

fn prescription(dose: Value) -> Value {
    envelope(
        "his-h0001",
        "cf_mx",
        "c",
        json!({"cfid": 9, "sfzh": ID, "ypdm": "Y001", "jl": dose, "jldw": "mg", "pc": "qd", "ts": 30, "kfsj": "2025-06-01 09:30:00"}),
    )
}

fn encounter(kind: &str, department: &str) -> Value {
    envelope(
        "his-h0001",
        "mz_jzjl",
        "c",
        json!({"jzid": 5, "sfzh": ID, "jzlx": kind, "ksdm": department, "jzsj": "2025-06-01 09:30:00"}),
    )
}

#[test]
fn what_is_not_a_finite_plausible_dose_is_rejected() {
    assert!(matches!(
        adapt(&prescription(json!("5"))),
        Outcome::Accepted(_) | Outcome::AcceptedUnmapped(..)
    ));
    for dose in [json!("NaN"), json!("inf"), json!("-inf"), json!("infinity")] {
        assert_eq!(
            reason(&prescription(dose.clone())),
            "non_numeric_result",
            "{dose}"
        );
    }
    for dose in [json!("1e308"), json!(-5), json!("-5")] {
        assert_eq!(
            reason(&prescription(dose.clone())),
            "value_out_of_range",
            "{dose}"
        );
    }
}

#[test]
fn deletes_are_held_to_the_same_clock_as_every_change() {
    let mut delete = lab_a("GLU", json!("7.9"), "mmol/L");
    delete["op"] = json!("d");
    delete["before"] = delete["after"].clone();
    delete["after"] = Value::Null;
    assert!(matches!(adapt(&delete), Outcome::Accepted(_)));
    delete["source"]["ts_ms"] = json!(-5_000_000_000_000_000i64);
    assert_eq!(reason(&delete), "invalid_date");
    delete["source"]["ts_ms"] = json!(4_000_000_000_000i64);
    assert_eq!(reason(&delete), "invalid_date");
}

#[test]
fn hostile_text_is_rejected_without_panicking_or_being_echoed() {
    // A resident id of 18 bytes ending inside a multi-byte character.
    let mut multibyte = lab_a("GLU", json!("7.9"), "mmol/L");
    multibyte["after"]["sfzh"] = json!("123456789012345王");
    let r = rejection(&multibyte);
    assert_eq!(r.reason.as_str(), "invalid_patient_identifier");
    assert!(!r.detail.contains("123456789012345"));
    // A name where a code belongs.
    let r = rejection(&encounter("patient 何玉兰", "NEI"));
    assert_eq!(r.reason.as_str(), "invalid_code");
    assert!(!r.detail.contains("何玉兰"), "{}", r.detail);
    // Megabytes where a code belongs.
    let huge = "科".repeat(700_000);
    let r = rejection(&encounter("MZ", &huge));
    assert_eq!(r.reason.as_str(), "field_too_long");
    assert!(r.detail.len() < 200);
    let r = rejection(&encounter(&huge, "NEI"));
    assert_eq!(r.reason.as_str(), "invalid_code");
    assert!(r.detail.len() < 200);
    // A phone number in a code column is not shown either.
    let r = rejection(&lab_a("13912345678", json!("7.9"), "mmol/L"));
    assert_eq!(r.reason.as_str(), "unknown_local_code");
    assert!(!r.detail.contains("13912345678"), "{}", r.detail);
    // Codes that look like codes are shown: the operator needs them.
    let r = rejection(&lab_a("ZZ01", json!("7.9"), "mmol/L"));
    assert!(r.detail.contains("'ZZ01'"), "{}", r.detail);
}

#[test]
fn rejections_name_their_reason() {
    let mut bad_id = lab_a("GLU", json!("7.9"), "mmol/L");
    bad_id["after"]["sfzh"] = json!("11010519491231002Y");
    let mut no_id = lab_a("GLU", json!("7.9"), "mmol/L");
    no_id["after"]["sfzh"] = Value::Null;
    let mut no_time = lab_a("GLU", json!("7.9"), "mmol/L");
    no_time["after"]["bgsj"] = Value::Null;
    let mut future = lab_a("GLU", json!("7.9"), "mmol/L");
    future["after"]["bgsj"] = json!("2031-01-01 00:00:00");
    let mut stranger = lab_a("GLU", json!("7.9"), "mmol/L");
    stranger["source"]["name"] = json!("his-nowhere");
    let mut odd_table = lab_a("GLU", json!("7.9"), "mmol/L");
    odd_table["source"]["table"] = json!("billing");
    let vitals = |s: f64, d: f64| {
        envelope(
            "his-h0001",
            "tz_jl",
            "c",
            json!({"tzid": 1, "sfzh": ID, "ssy": s, "szy": d, "clsj": "2025-06-01 09:30:00"}),
        )
    };
    let dx = |server: &str, system: &str, code: &str| {
        envelope(
            server,
            if server == "his-h0002" {
                "diagnoses"
            } else {
                "zd_jl"
            },
            "c",
            json!({"id": 1, "zdid": 1, "id_number": ID, "sfzh": ID, "code_system": system, "code": code, "zddm": code, "recorded_at": 1_749_000_000_000_000i64, "zdsj": "2025-06-01 09:30:00"}),
        )
    };
    let cases: [(Value, &str); 15] = [
        (lab_a("ZZ01", json!("7.9"), "mmol/L"), "unknown_local_code"),
        (lab_a("GLU", json!("7.9"), "g/L"), "unexpected_unit"),
        (lab_a("GLU", json!("阳性"), "mmol/L"), "non_numeric_result"),
        (lab_a("GLU", json!("79"), "mmol/L"), "value_out_of_range"),
        (lab_a("GLU", Value::Null, "mmol/L"), "missing_field"),
        (bad_id, "invalid_patient_identifier"),
        (no_id, "missing_patient_identifier"),
        (no_time, "missing_field"),
        (future, "invalid_date"),
        (stranger, "unknown_hospital"),
        (odd_table, "unknown_table"),
        (vitals(400.0, 90.0), "value_out_of_range"),
        (vitals(80.0, 95.0), "value_out_of_range"),
        (dx("his-h0002", "LOCAL", "FOO"), "unknown_local_code"),
        (dx("his-h0001", "", "hello"), "invalid_code"),
    ];
    for (input, expected) in cases {
        assert_eq!(reason(&input), expected, "{input}");
    }
    assert_eq!(reason(&json!("a string, not an event")), "malformed_record");
    assert!(matches!(
        adapt_bytes(b"{\"op\": \"c\", "),
        Outcome::Rejected(Rejection {
            reason: Reason::MalformedRecord,
            ..
        })
    ));
}

#[test]
fn local_diagnoses_map_to_icd10() {
    let event = accepted(&envelope(
        "his-h0002",
        "diagnoses",
        "c",
        json!({"id": 9, "id_number": ID, "code_system": "LOCAL", "code": "HTN", "primary_flag": true, "recorded_at": 1_749_000_000_000_000i64}),
    ));
    assert!(matches!(&event.payload, Payload::Diagnosis(d) if d.icd10 == "I10" && d.is_primary));
}

#[test]
fn envelopes_with_and_without_schema_updates_deletes_and_tombstones() {
    let plain = lab_a("GLU", json!("7.9"), "mmol/L");
    let wrapped = json!({"schema": {"type": "struct"}, "payload": plain.clone()});
    let a = accepted(&plain);
    let b = accepted(&wrapped);
    assert_eq!(a, b);
    assert_eq!(
        (a.operation, a.record_id.as_str(), a.hospital_id.as_str()),
        (Operation::Create, "lis_jg/7", "H0001")
    );
    // 09:30 in Beijing is 01:30 UTC.
    assert_eq!(
        a.event_time_ms,
        vigil_runtime::time::local_day_start_ms(
            vigil_runtime::time::parse_date("2025-06-01").unwrap(),
            480
        ) + 9 * 3_600_000
            + 30 * 60_000
    );
    let delete = envelope("his-h0001", "lis_jg", "d", plain["after"].clone());
    let d = accepted(&delete);
    assert_eq!(
        (d.operation, d.record_id.as_str(), d.event_time_ms),
        (Operation::Delete, "lis_jg/7", 1_750_000_000_000)
    );
    assert_ne!(d.event_id, a.event_id);
    assert!(matches!(
        adapt(&json!({"schema": {}, "payload": null})),
        Outcome::Tombstone
    ));
    let catalog = catalog();
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    let adapter = Adapter {
        catalog: &catalog,
        key: &key,
        utc_offset_minutes: 480,
        now_ms: 1_760_000_000_000,
    };
    assert!(matches!(adapter.adapt(None), Outcome::Tombstone));
}

#[test]
fn no_direct_identifier_passes_the_edge() {
    let patient = envelope(
        "his-h0001",
        "pat_master",
        "r",
        json!({
        "brid": 12, "sfzh": ID, "brxm": "王芳", "lxdh": "13912345678", "jzdz": "浙江省杭州市文三路1号",
        "xb": "2", "csrq": "1949-12-31", "xzqh": "330106", "gxy_jdrq": "2020-03-01 10:00:00", "tnb_jdrq": null, "swrq": null}),
    );
    let event = accepted(&patient);
    let text = format!("{event:?}");
    assert!(
        !event.record_id.ends_with("/12"),
        "the patient key is a record number: {}",
        event.record_id
    );
    for identifier in [ID, "王芳", "13912345678", "文三路", "1949-12-31"] {
        assert!(!text.contains(identifier), "{identifier} leaked: {text}");
    }
    match &event.payload {
        Payload::PatientRegistration(r) => {
            assert_eq!(
                (r.sex, r.birth_year, r.programmes.len()),
                (Sex::Female, 1949, 1)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(event.patient_pseudonym.len(), 64);
}

#[test]
fn decimals_arrive_as_debezium_writes_them_by_default() {
    // decimal.handling.mode=precise: the result 7.90 as base64 of 790 with scale 2 from the
    // Connect schema (schemas enabled), as MySQL's and PostgreSQL's connectors send DECIMAL.
    let payload = lab_a("GLU", json!("AxY="), "mmol/L");
    let wrapped = json!({
        "schema": {"type": "struct", "fields": [
            {"field": "after", "type": "struct", "fields": [
                {"field": "jg", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                 "parameters": {"scale": "2", "connect.decimal.precision": "8"}}]}]},
        "payload": payload
    });
    let event = accepted(&wrapped);
    assert_eq!(lab(&event), ("14749-6".into(), 7.9, "mmol/L".into()));
    // The same bytes without a scale anywhere are not a number.
    assert_eq!(
        reason(&lab_a("GLU", json!("AxY="), "mmol/L")),
        "non_numeric_result"
    );
}

#[test]
fn temporal_columns_arrive_as_each_connector_writes_them_by_default() {
    // 2025-06-01 09:30 in Beijing (01:30Z) in the lab's clinical-time column, typed by the
    // Connect schema as MySQL, PostgreSQL, SQL Server and Oracle write it; vendor A's database
    // keeps local time, so wall-clock values are local.
    let instant = 1_748_741_400_000i64;
    let wall = instant + 8 * 3_600_000;
    let cases = [
        ("io.debezium.time.Timestamp", json!(wall)), // MySQL DATETIME, Oracle DATE
        ("org.apache.kafka.connect.data.Timestamp", json!(wall)), // time.precision.mode=connect
        ("io.debezium.time.MicroTimestamp", json!(wall * 1_000)), // PostgreSQL timestamp
        ("io.debezium.time.NanoTimestamp", json!(wall * 1_000_000)), // SQL Server datetime2(7)
        (
            "io.debezium.time.ZonedTimestamp",
            json!("2025-06-01T01:30:00Z"),
        ), // MySQL TIMESTAMP
        (
            "io.debezium.time.ZonedTimestamp",
            json!("2025-06-01T09:30:00.000+08:00"),
        ),
    ];
    let wrapped = |type_name: &str, value: Value| {
        let mut payload = lab_a("GLU", json!(6.1), "mmol/L");
        payload["after"]["bgsj"] = value.clone();
        let kind = if value.is_string() { "string" } else { "int64" };
        json!({
            "schema": {"type": "struct", "fields": [
                {"field": "after", "type": "struct", "fields": [
                    {"field": "bgsj", "type": kind, "name": type_name, "version": 1}]}]},
            "payload": payload
        })
    };
    for (type_name, value) in cases {
        let event = accepted(&wrapped(type_name, value.clone()));
        assert_eq!(event.event_time_ms, instant, "{type_name} {value}");
    }
    // A DATE column (days since the epoch) is the start of that local day.
    let days = json!(20_240); // 2025-06-01
    let event = accepted(&wrapped("io.debezium.time.Date", days));
    assert_eq!(event.event_time_ms, instant - (9 * 60 + 30) * 60_000);
    // Without a schema the vendor shape's format applies (vendor A: local text).
    assert_eq!(
        accepted(&lab_a("GLU", json!(6.1), "mmol/L")).event_time_ms,
        instant
    );
}

#[test]
fn snapshot_markers_of_every_connector_version_read_as_snapshot_rows() {
    for marker in [
        json!("true"),
        json!("first"),
        json!("last"),
        json!("incremental"),
        json!(true),
    ] {
        let mut event = lab_a("GLU", json!(6.1), "mmol/L");
        event["op"] = json!("r");
        event["source"]["snapshot"] = marker.clone();
        assert_eq!(accepted(&event).operation, Operation::Snapshot, "{marker}");
    }
    let mut live = lab_a("GLU", json!(6.1), "mmol/L");
    live["source"]["snapshot"] = json!("false");
    assert_eq!(accepted(&live).operation, Operation::Create);
}

#[test]
fn the_initial_snapshot_is_told_apart_from_incremental_ones_and_its_end_is_seen() {
    // The edge holds an initial snapshot until it ends; an incremental snapshot interleaves
    // with live changes and has no end to wait for. The mark is read even from a row the edge
    // rejects, so a last row with a defect still ends the snapshot.
    let mark = |op: &str, marker: Value, value: Value| {
        let mut event = lab_a("GLU", value, "mmol/L");
        event["op"] = json!(op);
        event["source"]["snapshot"] = marker;
        adapt_marked(event.to_string().as_bytes()).mark
    };
    for marker in [
        json!("true"),
        json!("first"),
        json!("first_in_data_collection"),
        json!("last_in_data_collection"),
        json!(true),
    ] {
        assert_eq!(
            mark("r", marker.clone(), json!(6.1)),
            SnapshotMark::Row,
            "{marker}"
        );
    }
    assert_eq!(mark("r", json!("last"), json!(6.1)), SnapshotMark::Last);
    assert_eq!(
        mark("r", json!("last"), json!(99_999)),
        SnapshotMark::Last,
        "rejected, still the end"
    );
    assert_eq!(
        mark("r", json!("incremental"), json!(6.1)),
        SnapshotMark::Live
    );
    assert_eq!(mark("c", json!("false"), json!(6.1)), SnapshotMark::Live);
    assert_eq!(adapt_marked(b"{not json").mark, SnapshotMark::Live);
}

#[test]
fn an_update_that_moves_a_row_to_another_patient_retracts_it_from_the_one_it_left() {
    let body = "33010619600101123";
    let other = format!("{body}{}", crate::edge::resident_id::check_char(body));
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    let row = |resident: &str| json!({"jgid": 7, "sfzh": resident, "xmdm": "HBA1C", "jg": 8.1, "dw": "%", "bgsj": "2025-06-01 09:30:00"});
    let update = |before: Value| {
        let mut event = envelope("his-h0001", "lis_jg", "u", row(&other));
        event["before"] = before;
        event
    };
    // Filed under the wrong patient, corrected to the right one.
    let moved = adapt_marked(update(row(ID)).to_string().as_bytes());
    let event = match &moved.outcome {
        Outcome::Accepted(event) => event,
        other => panic!("{other:?}"),
    };
    let retraction = moved
        .moved_from
        .expect("a retraction from the patient it left");
    assert_eq!(event.patient_pseudonym, key.pseudonymise(&other));
    assert_eq!(retraction.patient_pseudonym, key.pseudonymise(ID));
    assert_eq!(retraction.operation, Operation::Delete);
    assert_eq!(retraction.record_id, event.record_id);
    assert_eq!(retraction.event_time_ms, 1_750_000_000_000);
    assert_ne!(retraction.event_id, event.event_id);
    // The same patient before and after, no before image, or one with no valid ID: no move.
    for before in [row(&other), Value::Null, row("12345")] {
        let adapted = adapt_marked(update(before.clone()).to_string().as_bytes());
        assert!(matches!(adapted.outcome, Outcome::Accepted(_)), "{before}");
        assert_eq!(adapted.moved_from, None, "{before}");
    }
}
