//! The replay and the report on a hand-made history, no ClickHouse: the candidate raises the
//! crisis threshold from 180 to 190 mmHg systolic.

use std::collections::BTreeMap;

use vigil_schemas::*;

use super::replay::{PartitionReplay, Trace, Window};
use super::report;
use crate::engine::{Engine, EngineConfig};
use crate::rules::{RuleSet, DEFAULT_RULES};

const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00+08:00
const T0: i64 = 1_767_196_800_000;

fn engines() -> (Engine, Engine) {
    let baseline = RuleSet::defaults().unwrap();
    let raised = DEFAULT_RULES.replacen("systolic_mmhg = 180.0", "systolic_mmhg = 190.0", 1);
    let candidate = RuleSet::parse(&raised, "candidate").unwrap();
    (
        Engine::new(baseline, EngineConfig::default()),
        Engine::new(candidate, EngineConfig::default()),
    )
}

fn event(patient: &str, record: &str, time_ms: i64, payload: Payload) -> ClinicalEvent {
    ClinicalEvent {
        event_id: format!("e-{record}"),
        hospital_id: "H0001".into(),
        source_system: "test".into(),
        operation: Operation::Create,
        event_time_ms: time_ms,
        ingest_time_ms: time_ms,
        patient_pseudonym: patient.into(),
        record_id: record.into(),
        schema_version: 1,
        payload,
        source: None,
    }
}

fn bp(patient: &str, record: &str, time_ms: i64, systolic: f64) -> ClinicalEvent {
    let reading = Payload::VitalSign(VitalSign {
        systolic_mmhg: Some(systolic),
        diastolic_mmhg: Some(90.0),
        ..VitalSign::default()
    });
    event(patient, record, time_ms, reading)
}

fn registration(patient: &str, hospital: &str) -> ClinicalEvent {
    let mut registration = event(
        patient,
        &format!("pat-{patient}"),
        T0 - 30 * 24 * HOUR,
        Payload::PatientRegistration(PatientRegistration {
            sex: Sex::Female,
            birth_year: 1955,
            region_code: "330106".into(),
            programmes: vec![ProgrammeEnrolment {
                condition: Condition::Hypertension,
                enrolled_time_ms: T0 - 30 * 24 * HOUR,
            }],
            death_time_ms: None,
        }),
    );
    registration.hospital_id = hospital.into();
    registration
}

#[test]
fn a_raised_threshold_drops_exactly_the_episodes_between_the_two() {
    let (baseline, candidate) = engines();
    let window = Window {
        from_ms: T0,
        to_ms: T0 + 31 * 24 * HOUR,
        utc_offset_minutes: 480,
    };
    let (p185, p195, p150) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    let history = [
        registration(&p185, "C0100"),
        registration(&p195, "H0001"),
        registration(&p150, "H0001"),
        // 185 at 02:00 local: a crisis under the baseline only, at night.
        bp(&p185, "v1", T0 + 2 * HOUR, 185.0),
        // 195 at 10:00 local: a crisis under both, by day.
        bp(&p195, "v2", T0 + 10 * HOUR, 195.0),
        bp(&p150, "v3", T0 + 11 * HOUR, 150.0),
        // Both back to normal a day later: resolved, never acknowledged.
        bp(&p185, "v4", T0 + 26 * HOUR, 130.0),
        bp(&p195, "v5", T0 + 34 * HOUR, 130.0),
    ];
    let mut traces: [Trace; 2] = Default::default();
    let mut replay = PartitionReplay::new(&baseline, &candidate, window, &[]);
    for event in &history {
        replay.apply(event, &mut traces);
    }
    replay.finish(&mut traces);

    let crises = |trace: &Trace| -> Vec<String> {
        let mut patients: Vec<String> = trace
            .episodes
            .values()
            .filter(|e| e.rule_id == "hypertensive_crisis")
            .map(|e| e.patient_pseudonym.clone())
            .collect();
        patients.sort();
        patients
    };
    assert_eq!(crises(&traces[0]), [p185.clone(), p195.clone()]);
    assert_eq!(crises(&traces[1]), [p195]);

    let managed = BTreeMap::from([("C0100".to_string(), 1), ("H0001".to_string(), 2)]);
    let comparison = report::compare(&traces, &managed, window.from_ms, window.to_ms, None);
    let row = |hospital: &str| {
        comparison
            .rows
            .iter()
            .find(|r| r.rule_id == "hypertensive_crisis" && r.hospital_id == hospital)
            .unwrap()
            .clone()
    };
    let all = row(report::ALL_HOSPITALS);
    assert_eq!((all.baseline.episodes, all.candidate.episodes), (2, 1));
    assert_eq!(all.difference.episodes, -1);
    assert_eq!(all.managed_patients, 3);
    assert_eq!(all.baseline.night_crisis_notifications, 1);
    assert_eq!(all.candidate.night_crisis_notifications, 0);
    assert_eq!(all.baseline.resolved, 2);
    assert_eq!(all.baseline.resolved_unacknowledged_share, Some(1.0));
    // 185 resolved after 24 h, 195 after 24 h.
    assert_eq!(all.baseline.median_episode_hours, Some(24.0));
    // One episode among 1 patient over 31 days (1.0185 months): 98.18 per 100 per month.
    let centre = row("C0100");
    assert_eq!(
        (centre.baseline.episodes, centre.candidate.episodes),
        (1, 0)
    );
    assert_eq!(centre.baseline.per_100_patients_per_month, Some(98.18));
    assert_eq!(centre.candidate.per_100_patients_per_month, Some(0.0));

    assert!(comparison.only_candidate.is_empty());
    let only = &comparison.only_baseline[0];
    assert_eq!(
        (only.rule_id.as_str(), only.episodes, only.patients),
        ("hypertensive_crisis", 1, 1)
    );
    assert_eq!(only.samples[0].patient_pseudonym, p185);
    assert_eq!(only.samples[0].managing_hospital_id, "C0100");

    // Limited to the centre's patients, the other hospital's rows are gone.
    let centre_only = report::compare(
        &traces,
        &managed,
        window.from_ms,
        window.to_ms,
        Some("C0100"),
    );
    assert!(centre_only.rows.iter().all(|r| r.hospital_id != "H0001"));
    assert_eq!(
        centre_only
            .rows
            .iter()
            .find(|r| r.hospital_id == "all")
            .unwrap()
            .managed_patients,
        1
    );
}

#[test]
fn the_report_renders_every_figure_and_escapes_text() {
    let (baseline, candidate) = engines();
    let window = Window {
        from_ms: T0,
        to_ms: T0 + 31 * 24 * HOUR,
        utc_offset_minutes: 480,
    };
    let patient = "d4".repeat(32);
    let mut traces: [Trace; 2] = Default::default();
    let mut replay = PartitionReplay::new(&baseline, &candidate, window, &[]);
    replay.apply(&registration(&patient, "H0002"), &mut traces);
    replay.apply(&bp(&patient, "v1", T0 + 2 * HOUR, 185.0), &mut traces);
    replay.finish(&mut traces);
    let managed = BTreeMap::from([("H0002".to_string(), 1)]);
    let mut comparison = report::compare(&traces, &managed, window.from_ms, window.to_ms, None);
    // Free text from a rules file: a table cell must survive it.
    comparison.only_baseline[0].samples[0].message = "<b>a | b\nc</b>".into();
    let report = super::Report {
        from: "2026-01-01".into(),
        to: "2026-02-01".into(),
        utc_offset_minutes: 480,
        hospital: None,
        baseline_rules: "live".into(),
        candidate_rules: "candidate.toml".into(),
        events_replayed: 2,
        partitions: 1,
        acknowledgements_replayed: 0,
        seconds: 0.1,
        comparison,
    };
    let markdown = super::markdown(&report);
    let row = "| hypertensive_crisis | H0002 | 1 | 1 → 0 (-1) | 98.18 → 0 (-98.18) | 0 → 0 (0) |";
    assert!(markdown.contains(row), "{markdown}");
    assert!(
        markdown.contains("| 1 → 0 (-1) |\n"),
        "night crises: {markdown}"
    );
    assert!(markdown.contains("Only under the baseline: hypertensive_crisis"));
    assert!(markdown.contains("| 2026-01-01 02:00 | "));
    assert!(markdown.contains("| <b>a \\| b c</b> |"), "{markdown}");
    let html = super::html(&report);
    assert!(
        html.contains("<td>&lt;b&gt;a | b\nc&lt;/b&gt;</td>"),
        "{html}"
    );
    assert!(!html.contains("<b>a"));
}
