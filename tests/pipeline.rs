//! The walking skeleton, end to end: clinical events on the real broker, the real `vigil`
//! binary running every stage, and the exact alert rows in the real ClickHouse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{canonical, vital_signs, TestEnv};
use vigil_schemas::{ClinicalEvent, Payload};

#[test]
fn a_crisis_reading_raises_exactly_one_alert_and_a_normal_one_none() {
    let env = TestEnv::new("skeleton", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));

    let crisis_patient = "a1".repeat(32);
    let normal_patient = "b2".repeat(32);
    let t = vigil_runtime::time::now_ms() - 3_600_000;
    env.produce(
        &env.kafka.topics.clinical_events,
        &[
            vital_signs(&crisis_patient, "vitals/1", t, 186.0, 104.0),
            vital_signs(&normal_patient, "vitals/2", t + 1_000, 128.0, 82.0),
            // The same crisis reading delivered twice (a HIS retry): still one alert.
            vital_signs(&crisis_patient, "vitals/1", t, 186.0, 104.0),
        ],
    );
    env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(120));

    let alerts = env.query(
        "SELECT rule_id, status, patient_pseudonym, severity, toString(value), hospital_id FROM {db}.alerts FINAL ORDER BY patient_pseudonym",
    );
    assert_eq!(
        alerts,
        vec![format!(
            "hypertensive_crisis\tRAISED\t{crisis_patient}\tCRITICAL\t186\tH0001"
        )],
        "exactly one alert, for the crisis patient"
    );
    let message = env.scalar("SELECT message FROM {db}.alerts FINAL");
    assert!(message.contains("186/104"), "{message}");
    // Every event landed once (the duplicate delivery shares its event id).
    assert_eq!(
        env.scalar("SELECT count() FROM {db}.clinical_events FINAL"),
        "2"
    );
    assert_eq!(
        env.scalar("SELECT uniqExact(event_id) FROM {db}.clinical_events"),
        "2"
    );
    assert_eq!(env.scalar("SELECT count() FROM {db}.dead_letters"), "0");
}

#[test]
fn a_stage_pointed_at_no_broker_says_so_within_seconds() {
    // A port nobody listens on: the stage must name the address it tried and exit, not wait.
    let port = common::free_port();
    let started = std::time::Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["process", "--config"])
        .arg(common::repo_path("vigil.toml"))
        .env("VIGIL_KAFKA__BROKERS", format!("127.0.0.1:{port}"))
        .env("VIGIL_TELEMETRY__METRICS_LISTEN", "")
        .output()
        .expect("vigil runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        text.contains(&format!("no Kafka answered at 127.0.0.1:{port}")),
        "{text}"
    );
}

#[test]
fn a_reading_entered_twice_is_one_fact_and_a_data_quality_figure() {
    let env = TestEnv::new("duplicates", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let patient = "c3".repeat(32);
    let t = vigil_runtime::time::now_ms() - 3_600_000;
    env.produce(
        &env.kafka.topics.clinical_events,
        &[
            // A crisis reading typed in twice under two record ids: one fact, one alert.
            vital_signs(&patient, "vitals/10", t, 184.0, 100.0),
            vital_signs(&patient, "vitals/11", t, 184.0, 100.0),
            // Another reading the same minute is another fact.
            vital_signs(&patient, "vitals/12", t + 60_000, 150.0, 90.0),
        ],
    );
    env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(120));
    assert_eq!(
        env.scalar("SELECT count() FROM {db}.alerts FINAL WHERE status = 'RAISED'"),
        "1"
    );
    assert_eq!(
        env.scalar("SELECT uniqExact(event_id) FROM {db}.clinical_events"),
        "3"
    );
    assert_eq!(
        env.scalar(
            "SELECT hospital_id, sum(duplicates_received) FROM {db}.duplicate_facts GROUP BY hospital_id"
        ),
        "H0001\t1"
    );
}

fn diagnosis(code: &str) -> Payload {
    Payload::Diagnosis(vigil_schemas::Diagnosis {
        icd10: code.into(),
        is_primary: true,
        department_code: "NEI".into(),
        encounter_id: None,
    })
}

/// Four patients of one hospital: one enrolled (with a diagnosis), one with a hypertension
/// diagnosis and the programme's follow-up form but no enrolment, one with a diabetes diagnosis
/// only, one with an unrelated diagnosis.
fn enrolment_evidence(t: i64) -> Vec<(String, ClinicalEvent)> {
    use vigil_schemas::{
        Condition, FollowUpVisit, PatientRegistration, ProgrammeEnrolment, Sex, VisitMode,
    };
    let (enrolled, forms_only, diagnosis_only, other) = (
        "d4".repeat(32),
        "e5".repeat(32),
        "f6".repeat(32),
        "a7".repeat(32),
    );
    let registration = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Female,
        birth_year: 1958,
        region_code: "330106".into(),
        programmes: vec![ProgrammeEnrolment {
            condition: Condition::Hypertension,
            enrolled_time_ms: t - 86_400_000,
        }],
        death_time_ms: None,
    });
    let form = Payload::FollowUpVisit(FollowUpVisit {
        condition: Condition::Hypertension,
        visit_mode: VisitMode::Clinic,
        systolic_mmhg: Some(135.0),
        diastolic_mmhg: Some(85.0),
        fasting_glucose_mmol_l: None,
        hba1c_percent: None,
        next_visit_time_ms: None,
        clinician_id: "D1".into(),
    });
    vec![
        canonical(&enrolled, "pat/1", t, registration),
        canonical(&enrolled, "dx/1", t + 1_000, diagnosis("I10.x00")),
        canonical(&forms_only, "dx/2", t + 2_000, diagnosis("I10")),
        canonical(&forms_only, "fu/2", t + 3_000, form),
        canonical(&diagnosis_only, "dx/3", t + 4_000, diagnosis("E11.900")),
        canonical(&other, "dx/4", t + 5_000, diagnosis("J45")),
    ]
}

/// Managed patients per condition in the newest yearly metric row.
const MANAGED_THIS_YEAR: &str =
    "SELECT definition, condition, managed_patients FROM {db}.pilot_metrics \
    WHERE period_kind = 'YEAR' ORDER BY condition";

#[test]
fn a_hospital_sees_who_has_a_qualifying_diagnosis_but_is_not_counted_as_managed() {
    let env = TestEnv::new("unmanaged", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let t = vigil_runtime::time::now_ms() - 30 * 86_400_000;
    env.produce(&env.kafka.topics.clinical_events, &enrolment_evidence(t));
    env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(120));
    assert_eq!(
        env.query(
            "SELECT hospital_id, condition, patients, with_follow_up_forms \
             FROM {db}.diagnosed_not_managed ORDER BY condition"
        ),
        vec!["H0001\tDIABETES\t1\t0", "H0001\tHYPERTENSION\t1\t1"]
    );
    assert_eq!(
        env.query(MANAGED_THIS_YEAR),
        vec!["cn-nbphs-2017/v1\tHYPERTENSION\t1"]
    );
}

#[test]
fn under_definition_v2_a_diagnosis_plus_a_programme_form_counts_as_managed() {
    let mut env = TestEnv::new("evidence", 2, "");
    env.set_override("VIGIL_PROCESS__ENGINE__DEFINITION", "cn-nbphs-2017/v2");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let t = vigil_runtime::time::now_ms() - 30 * 86_400_000;
    env.produce(&env.kafka.topics.clinical_events, &enrolment_evidence(t));
    env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(120));
    assert_eq!(
        env.query(
            "SELECT hospital_id, condition, patients, with_follow_up_forms \
             FROM {db}.diagnosed_not_managed ORDER BY condition"
        ),
        vec!["H0001\tDIABETES\t1\t0"]
    );
    assert_eq!(
        env.query(MANAGED_THIS_YEAR),
        vec!["cn-nbphs-2017/v2\tHYPERTENSION\t2"]
    );
}

#[test]
fn a_hospital_back_filling_its_history_behind_a_live_one_lands_whole() {
    // H0002 streams live; H0001 joins and sends a year of history as ordinary changes into the
    // same partitions. Each hospital's events are judged by its own clock: none of H0001's is
    // late, its old crisis reading raises its alert, and its follow-ups count.
    let env = TestEnv::new("backfill", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let day = 86_400_000;
    let now = vigil_runtime::time::now_ms();
    let (live, joining) = ("b2".repeat(32), "c3".repeat(32));
    let from_h0002 = |(key, mut event): (String, ClinicalEvent)| {
        event.hospital_id = "H0002".into();
        (key, event)
    };
    let mut events = vec![from_h0002(vital_signs(
        &live,
        "v/1",
        now - 3_600_000,
        130.0,
        80.0,
    ))];
    events.push(vital_signs(&joining, "v/2", now - 300 * day, 186.0, 112.0));
    events.push(vital_signs(&joining, "v/3", now - 299 * day, 128.0, 82.0));
    for (i, ago) in [250, 160, 70].into_iter().enumerate() {
        let record = format!("v/{}", 10 + i);
        events.push(vital_signs(&joining, &record, now - ago * day, 132.0, 84.0));
    }
    env.produce(&env.kafka.topics.clinical_events, &events);
    env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(120));
    assert_eq!(env.scalar("SELECT count() FROM {db}.late_events"), "0");
    assert_eq!(
        env.query(
            "SELECT hospital_id, uniqExact(event_id) FROM {db}.clinical_events \
             GROUP BY hospital_id ORDER BY hospital_id"
        ),
        vec!["H0001\t5", "H0002\t1"]
    );
    assert_eq!(
        env.query(
            "SELECT hospital_id, rule_id, status FROM {db}.alerts FINAL ORDER BY event_time_ms"
        ),
        vec![
            "H0001\thypertensive_crisis\tRAISED",
            "H0001\thypertensive_crisis\tRESOLVED"
        ]
    );
    // The dashboard's per-day figures of the months the backfill reached are current.
    common::assert_activity_rollups_are_current(&env);
}
