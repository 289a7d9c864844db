//! Rule and status behaviour, table-driven, with no broker: the engine is a pure function.

use vigil_schemas::*;

use super::*;
use crate::rules::RuleSet;

const DAY: i64 = 86_400_000;
/// 2025-01-01T00:00:00Z
const T0: i64 = 1_735_689_600_000;
const P: &str = "3f9a1c0e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a0c2e4b6d8f0a";

struct Harness {
    engine: Engine,
    state: PartitionState,
    alerts: Vec<Alert>,
    next_record: u32,
    patient: String,
    hospital: String,
}

fn day(d: f64) -> i64 {
    T0 + (d * DAY as f64) as i64
}

impl Harness {
    fn new() -> Self {
        Harness::with(EngineConfig::default())
    }

    fn with(config: EngineConfig) -> Self {
        Harness {
            engine: Engine::new(RuleSet::defaults().unwrap(), config),
            state: PartitionState::new(),
            alerts: Vec::new(),
            next_record: 0,
            patient: P.to_string(),
            hospital: "H0001".to_string(),
        }
    }

    fn event_with(
        &mut self,
        record_id: &str,
        d: f64,
        op: Operation,
        payload: Payload,
    ) -> Disposition {
        self.event_from(record_id, d, op, payload, None)
    }

    fn event_from(
        &mut self,
        record_id: &str,
        d: f64,
        op: Operation,
        payload: Payload,
        source: Option<SourcePosition>,
    ) -> Disposition {
        let event = ClinicalEvent {
            event_id: format!("e-{record_id}-{op:?}-{d}"),
            hospital_id: self.hospital.clone(),
            source_system: "test".into(),
            operation: op,
            event_time_ms: day(d),
            ingest_time_ms: day(d),
            patient_pseudonym: self.patient.clone(),
            record_id: record_id.into(),
            schema_version: 1,
            payload,
            source,
        };
        self.engine
            .apply_event(&mut self.state, &event, &mut self.alerts)
    }

    fn event(&mut self, d: f64, payload: Payload) -> Disposition {
        self.next_record += 1;
        let record = format!("r{}", self.next_record);
        self.event_with(&record, d, Operation::Create, payload)
    }

    fn register(&mut self, d: f64, conditions: &[Condition]) {
        let programmes = conditions
            .iter()
            .map(|c| ProgrammeEnrolment {
                condition: *c,
                enrolled_time_ms: day(d),
            })
            .collect();
        let payload = Payload::PatientRegistration(PatientRegistration {
            sex: Sex::Male,
            birth_year: 1960,
            region_code: "330106".into(),
            programmes,
            death_time_ms: None,
        });
        assert_eq!(
            self.event_with("patient/1", d, Operation::Create, payload),
            Disposition::Applied
        );
    }

    fn bp(&mut self, d: f64, s: f64, dia: f64) -> Disposition {
        self.event(
            d,
            Payload::VitalSign(VitalSign {
                systolic_mmhg: Some(s),
                diastolic_mmhg: Some(dia),
                ..VitalSign::default()
            }),
        )
    }

    fn lab(&mut self, d: f64, loinc: &str, value: f64, unit: &str) -> Disposition {
        self.event(d, lab_result(loinc, value, unit))
    }

    fn follow_up(
        &mut self,
        d: f64,
        condition: Condition,
        mode: VisitMode,
        bp: Option<(f64, f64)>,
        fpg: Option<f64>,
    ) -> Disposition {
        self.event(
            d,
            Payload::FollowUpVisit(FollowUpVisit {
                condition,
                visit_mode: mode,
                systolic_mmhg: bp.map(|b| b.0),
                diastolic_mmhg: bp.map(|b| b.1),
                fasting_glucose_mmol_l: fpg,
                hba1c_percent: None,
                next_visit_time_ms: None,
                clinician_id: "D-1".into(),
            }),
        )
    }

    fn diagnose(&mut self, d: f64, icd10: &str) -> Disposition {
        self.event(
            d,
            Payload::Diagnosis(Diagnosis {
                icd10: icd10.into(),
                is_primary: true,
                department_code: "NEURO".into(),
                encounter_id: None,
            }),
        )
    }

    fn advance(&mut self, d: f64) {
        self.engine
            .advance_watermark(&mut self.state, "H0001", day(d), &mut self.alerts);
    }

    /// (rule id, status) of the alerts since the last call.
    fn take(&mut self) -> Vec<(String, AlertStatus)> {
        self.alerts
            .drain(..)
            .map(|a| (a.rule_id, a.status))
            .collect()
    }

    fn take_full(&mut self) -> Vec<Alert> {
        self.alerts.drain(..).collect()
    }

    fn status(&mut self) -> Vec<PatientStatus> {
        let mut out = Vec::new();
        self.engine.drain_status(&mut self.state, &mut out);
        out
    }
}

/// A laboratory result already coded in LOINC.
fn lab_result(loinc: &str, value: f64, unit: &str) -> Payload {
    Payload::LabResult(LabResult {
        loinc: loinc.into(),
        value,
        unit: unit.into(),
        local_code: String::new(),
        encounter_id: None,
    })
}

fn raised(rule: &str) -> Vec<(String, AlertStatus)> {
    vec![(rule.to_string(), AlertStatus::Raised)]
}

#[test]
fn hypertensive_crisis_boundaries() {
    let cases = [
        ((179.0, 109.0), false),
        ((179.9, 109.9), false),
        ((180.0, 80.0), true),
        ((120.0, 110.0), true),
        ((200.0, 120.0), true),
    ];
    for ((s, d), fires) in cases {
        let mut h = Harness::new();
        h.bp(0.0, s, d);
        let expected = if fires {
            raised("hypertensive_crisis")
        } else {
            vec![]
        };
        assert_eq!(h.take(), expected, "{s}/{d}");
    }
}

#[test]
fn an_episode_raises_once_renotifies_after_its_interval_and_resolves() {
    let mut h = Harness::new();
    h.bp(0.0, 186.0, 104.0);
    let first = h.take_full();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, AlertStatus::Raised);
    assert!(first[0].message.contains("186/104"), "{}", first[0].message);
    assert_eq!(first[0].threshold, "SBP >= 180 mmHg or DBP >= 110 mmHg");
    // Still high an hour later: same episode, no new alert (re-notify after 6 h).
    h.bp(1.0 / 24.0, 190.0, 100.0);
    assert_eq!(h.take(), vec![]);
    h.bp(0.3, 185.0, 100.0);
    let renotified = h.take_full();
    assert_eq!(renotified.len(), 1);
    assert_eq!(renotified[0].status, AlertStatus::Renotified);
    assert_eq!(renotified[0].episode_id, first[0].episode_id);
    assert_ne!(renotified[0].alert_id, first[0].alert_id);
    // Back in range: resolved.
    h.bp(0.5, 150.0, 90.0);
    assert_eq!(
        h.take(),
        vec![("hypertensive_crisis".into(), AlertStatus::Resolved)]
    );
    // A new crisis is a new episode.
    h.bp(1.0, 182.0, 90.0);
    let again = h.take_full();
    assert_eq!(again[0].status, AlertStatus::Raised);
    assert_ne!(again[0].episode_id, first[0].episode_id);
}

#[test]
fn a_late_normal_reading_does_not_resolve_a_newer_crisis() {
    let mut h = Harness::new();
    h.bp(2.0, 190.0, 100.0);
    assert_eq!(h.take(), raised("hypertensive_crisis"));
    h.bp(1.0, 120.0, 80.0); // measured earlier, arrives later
    assert_eq!(h.take(), vec![]);
    // ...and a late crisis reading behind a newer normal one raises nothing.
    let mut h = Harness::new();
    h.bp(2.0, 120.0, 80.0);
    h.bp(1.0, 195.0, 100.0);
    assert_eq!(h.take(), vec![]);
}

#[test]
fn retracting_the_crisis_reading_resolves_its_episode() {
    let mut h = Harness::new();
    h.bp(0.0, 130.0, 80.0);
    let vitals = Payload::VitalSign(VitalSign {
        systolic_mmhg: Some(185.0),
        diastolic_mmhg: Some(95.0),
        ..VitalSign::default()
    });
    h.event_with("vitals/9", 1.0, Operation::Create, vitals.clone());
    assert_eq!(h.take(), raised("hypertensive_crisis"));
    // The HIS deletes the erroneous reading (Debezium op d).
    h.event_with("vitals/9", 1.1, Operation::Delete, vitals);
    assert_eq!(
        h.take(),
        vec![("hypertensive_crisis".into(), AlertStatus::Resolved)]
    );
    // A correction (op u) of a normal reading into a crisis raises.
    let corrected = Payload::VitalSign(VitalSign {
        systolic_mmhg: Some(181.0),
        diastolic_mmhg: Some(90.0),
        ..VitalSign::default()
    });
    h.event_with(
        "vitals/10",
        2.0,
        Operation::Create,
        Payload::VitalSign(VitalSign {
            systolic_mmhg: Some(120.0),
            diastolic_mmhg: Some(80.0),
            ..VitalSign::default()
        }),
    );
    h.event_with("vitals/10", 2.0, Operation::Update, corrected);
    assert_eq!(h.take(), raised("hypertensive_crisis"));
}

#[test]
fn glucose_rule_boundaries_and_level_2_supersedes_level_1() {
    let cases: [(f64, &[&str]); 7] = [
        (16.6, &[]),
        (16.7, &["hyperglycaemic_crisis"]),
        (3.9, &[]),
        (3.8, &["hypoglycaemia_level_1"]),
        (3.0, &["hypoglycaemia_level_1"]),
        (2.9, &["hypoglycaemia_level_2"]),
        (7.0, &[]),
    ];
    for (value, expected) in cases {
        let mut h = Harness::new();
        h.lab(0.0, "14749-6", value, "mmol/L");
        let got: Vec<String> = h.take().into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            got,
            expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{value}"
        );
    }
    // mg/dL is converted: 301 mg/dL = 16.7 mmol/L.
    let mut h = Harness::new();
    h.lab(0.0, "2345-7", 301.0, "mg/dL");
    assert_eq!(h.take(), raised("hyperglycaemic_crisis"));
    // Level 1 then level 2: level 1 stays open, level 2 raises; recovery resolves both.
    let mut h = Harness::new();
    h.lab(0.0, "14749-6", 3.5, "mmol/L");
    h.lab(0.1, "14749-6", 2.5, "mmol/L");
    h.lab(0.2, "14749-6", 6.0, "mmol/L");
    let got = h.take();
    assert_eq!(
        got[0],
        ("hypoglycaemia_level_1".into(), AlertStatus::Raised)
    );
    assert_eq!(
        got[1],
        ("hypoglycaemia_level_2".into(), AlertStatus::Raised)
    );
    assert!(got[2..].contains(&("hypoglycaemia_level_1".into(), AlertStatus::Resolved)));
    assert!(got[2..].contains(&("hypoglycaemia_level_2".into(), AlertStatus::Resolved)));
}

#[test]
fn hba1c_boundaries() {
    for (value, fires) in [(9.0, false), (9.1, true), (12.0, true)] {
        let mut h = Harness::new();
        h.lab(0.0, "4548-4", value, "%");
        assert_eq!(!h.take().is_empty(), fires, "{value}");
    }
    // IFCC mmol/mol: 80 mmol/mol = 9.47%.
    let mut h = Harness::new();
    h.lab(0.0, "4548-4", 80.0, "mmol/mol");
    assert_eq!(h.take(), raised("poor_glycaemic_control"));
    h.lab(90.0, "4548-4", 8.5, "%");
    assert_eq!(
        h.take(),
        vec![("poor_glycaemic_control".into(), AlertStatus::Resolved)]
    );
}

#[test]
fn uncontrolled_follow_up_expects_a_revisit_within_two_weeks() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.take();
    h.follow_up(
        1.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((140.0, 80.0)),
        None,
    );
    h.take();
    h.advance(14.9);
    assert_eq!(h.take(), vec![]);
    h.advance(15.0);
    let overdue = h.take_full();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].rule_id, "uncontrolled_bp_revisit_overdue");
    assert_eq!(overdue[0].event_time_ms, day(15.0));
    assert!(
        overdue[0].message.contains("140/80"),
        "{}",
        overdue[0].message
    );
    // The re-visit happens: resolved.
    h.follow_up(
        20.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((132.0, 80.0)),
        None,
    );
    assert!(h.take().contains(&(
        "uncontrolled_bp_revisit_overdue".into(),
        AlertStatus::Resolved
    )));
    // Controlled follow-ups set no re-visit deadline; 139/89 is controlled.
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.follow_up(
        1.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((139.0, 89.0)),
        None,
    );
    h.advance(30.0);
    assert!(h
        .take()
        .iter()
        .all(|(r, _)| r != "uncontrolled_bp_revisit_overdue"));
}

#[test]
fn two_consecutive_uncontrolled_follow_ups_expect_a_referral() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.follow_up(
        1.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((150.0, 95.0)),
        None,
    );
    assert!(h
        .take()
        .iter()
        .all(|(r, _)| r != "uncontrolled_bp_referral"));
    h.follow_up(
        10.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((135.0, 91.0)),
        None,
    );
    assert!(h
        .take()
        .contains(&("uncontrolled_bp_referral".into(), AlertStatus::Raised)));
    h.follow_up(
        20.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((130.0, 80.0)),
        None,
    );
    assert!(h
        .take()
        .contains(&("uncontrolled_bp_referral".into(), AlertStatus::Resolved)));
}

#[test]
fn missed_follow_up_fires_after_100_days_renotifies_and_resolves() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.follow_up(
        10.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((130.0, 80.0)),
        None,
    );
    // A phone follow-up is not face-to-face: it does not reset the clock.
    h.follow_up(
        60.0,
        Condition::Hypertension,
        VisitMode::Phone,
        Some((130.0, 80.0)),
        None,
    );
    h.take();
    // "More than 100 days": not on day 110 (exactly 100 days), but the day after.
    h.advance(110.0);
    assert_eq!(h.take(), vec![]);
    h.advance(110.9);
    assert_eq!(h.take(), vec![]);
    h.advance(111.0);
    let missed = h.take_full();
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].rule_id, "missed_quarterly_follow_up");
    assert!(
        missed[0].message.contains("for 101 days")
            && missed[0].message.contains("more than 100 days"),
        "{}",
        missed[0].message
    );
    assert_eq!(missed[0].hospital_id, "H0001");
    // Re-notified 60 days after the alert while the patient stays away.
    h.advance(170.0);
    assert_eq!(h.take(), vec![]);
    h.advance(171.0);
    assert_eq!(
        h.take(),
        vec![("missed_quarterly_follow_up".into(), AlertStatus::Renotified)]
    );
    h.follow_up(
        175.0,
        Condition::Hypertension,
        VisitMode::Home,
        Some((130.0, 80.0)),
        None,
    );
    assert!(h
        .take()
        .contains(&("missed_quarterly_follow_up".into(), AlertStatus::Resolved)));
    // The clock restarts from the home visit.
    h.advance(275.0);
    assert_eq!(h.take(), vec![]);
    h.advance(276.0);
    assert_eq!(h.take(), raised("missed_quarterly_follow_up"));
}

#[test]
fn kidney_decline_follows_kdigo() {
    // (day, eGFR) readings, whether the rule fires, what the case shows.
    // (day, eGFR) readings, the criterion that fires (if any), what the case shows.
    type Case<'a> = (&'a [(f64, f64)], Option<&'a str>, &'a str);
    let cases: [Case; 10] = [
        // G2 -> G3a with a 28% fall: certain drop.
        (
            &[(0.0, 70.0), (100.0, 50.0)],
            Some("certain drop"),
            "category drop",
        ),
        // Exactly 25% and a category down: fires; 24% does not.
        (
            &[(0.0, 60.0), (100.0, 45.0)],
            Some("certain drop"),
            "exactly 25%",
        ),
        (&[(0.0, 60.0), (100.0, 45.7)], None, "24%"),
        // Same category, 3.6 per year: no.
        (&[(0.0, 70.0), (200.0, 68.0)], None, "slow"),
        // 62 -> 60 over 100 days is 7.3 per year, but two readings months apart are not a
        // sustained decline.
        (
            &[(0.0, 62.0), (100.0, 60.0)],
            None,
            "two readings months apart",
        ),
        // Three readings over 400 days losing 7.3 per year: rapid progression.
        (
            &[(0.0, 70.0), (200.0, 66.0), (400.0, 62.0)],
            Some("rapid progression"),
            "sustained",
        ),
        // Exactly 5 per year over a year: not more than 5.
        (
            &[(0.0, 70.0), (182.625, 67.5), (365.25, 65.0)],
            None,
            "exactly 5 per year",
        ),
        // Three readings, but within eleven months: not yet a sustained decline.
        (
            &[(0.0, 70.0), (160.0, 66.0), (330.0, 62.0)],
            None,
            "under a year",
        ),
        // A big fall within 30 days has no baseline 90 days back yet.
        (&[(0.0, 70.0), (30.0, 40.0)], None, "too soon"),
        // G3a -> G3b with only 14%: no certain drop; 7 a year over a year: rapid.
        (
            &[(0.0, 50.0), (190.0, 46.0), (370.0, 43.0)],
            Some("rapid progression"),
            "rapid across a boundary",
        ),
    ];
    for (readings, criterion, label) in cases {
        let mut h = Harness::new();
        for (d, egfr) in readings {
            h.lab(*d, "98979-8", *egfr, "mL/min/{1.73_m2}");
        }
        let raised: Vec<Alert> = h
            .take_full()
            .into_iter()
            .filter(|a| a.rule_id == "kidney_function_decline" && a.status == AlertStatus::Raised)
            .collect();
        match criterion {
            None => assert!(raised.is_empty(), "{label}: {raised:?}"),
            Some(words) => {
                assert_eq!(raised.len(), 1, "{label}");
                assert!(
                    raised[0].message.contains(words),
                    "{label}: {}",
                    raised[0].message
                );
                let other = if words == "certain drop" {
                    "rapid progression"
                } else {
                    "certain drop"
                };
                assert!(
                    !raised[0].message.contains(other),
                    "{label}: {}",
                    raised[0].message
                );
            }
        }
    }
    // eGFR derived from creatinine (CKD-EPI 2021) needs age and sex from registration.
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Diabetes]);
    h.lab(1.0, "14682-9", 88.4, "umol/L"); // man born 1960 -> eGFR ~ 92 (G1)
    h.lab(200.0, "2160-0", 1.6, "mg/dL"); // -> ~ 48 (G3a), a 48% fall
    assert!(h
        .take()
        .contains(&("kidney_function_decline".into(), AlertStatus::Raised)));
}

#[test]
fn new_complication_in_a_managed_patient_raises_once() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.take();
    h.diagnose(5.0, "I63.900");
    let got = h.take_full();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rule_id, "new_complication");
    assert!(got[0].message.contains("stroke"));
    assert_eq!(got[0].department_code, "NEURO");
    h.diagnose(30.0, "I63.9");
    assert_eq!(h.take(), vec![]);
    // Unmanaged patients: the diagnosis is recorded but no alert.
    let mut h = Harness::new();
    h.diagnose(5.0, "I21.9");
    assert_eq!(h.take(), vec![]);
}

#[test]
fn acknowledgements_snoozes_and_closes() {
    let mut h = Harness::new();
    h.bp(0.0, 190.0, 100.0);
    let first = h.take_full().remove(0);
    let ack = |action, until| AlertAck {
        ack_id: format!("ack-{action:?}"),
        episode_id: first.episode_id.clone(),
        patient_pseudonym: P.into(),
        action,
        snooze_until_ms: until,
        clinician_id: "D-7".into(),
        time_ms: day(0.1),
    };
    assert!(h.engine.apply_ack(
        &mut h.state,
        &ack(AckAction::Acknowledge, None),
        &mut h.alerts
    ));
    let acked = h.take_full();
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].status, AlertStatus::Acknowledged);
    assert_eq!(acked[0].actor, "D-7");
    // A replayed acknowledgement changes nothing.
    assert!(h.engine.apply_ack(
        &mut h.state,
        &ack(AckAction::Acknowledge, None),
        &mut h.alerts
    ));
    assert!(h.take().is_empty());
    // Acknowledged: no re-notification even after the interval.
    h.bp(1.0, 190.0, 100.0);
    assert!(h.take().is_empty());
    // Closing ends the episode; the next crisis is a new one.
    assert!(h
        .engine
        .apply_ack(&mut h.state, &ack(AckAction::Close, None), &mut h.alerts));
    assert_eq!(
        h.take(),
        vec![("hypertensive_crisis".into(), AlertStatus::Resolved)]
    );
    h.bp(2.0, 190.0, 100.0);
    assert_eq!(h.take(), raised("hypertensive_crisis"));
    // Unknown episodes are reported, not invented.
    let mut unknown = ack(AckAction::Acknowledge, None);
    unknown.episode_id = "00".repeat(16);
    assert!(!h.engine.apply_ack(&mut h.state, &unknown, &mut h.alerts));
}

#[test]
fn snooze_holds_renotification_until_it_ends() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.advance(101.0);
    let missed = h.take_full().remove(0);
    assert_eq!(missed.rule_id, "missed_quarterly_follow_up");
    let snooze = AlertAck {
        ack_id: "s1".into(),
        episode_id: missed.episode_id.clone(),
        patient_pseudonym: P.into(),
        action: AckAction::Snooze,
        snooze_until_ms: Some(day(190.0)),
        clinician_id: "D-7".into(),
        time_ms: day(101.0),
    };
    assert!(h.engine.apply_ack(&mut h.state, &snooze, &mut h.alerts));
    assert_eq!(
        h.take(),
        vec![("missed_quarterly_follow_up".into(), AlertStatus::Snoozed)]
    );
    // Due at day 161 (raised at 101, re-notified after 60 days), held by the snooze until 190.
    h.advance(189.0);
    assert_eq!(h.take(), vec![]);
    h.advance(190.0);
    assert_eq!(
        h.take(),
        vec![("missed_quarterly_follow_up".into(), AlertStatus::Renotified)]
    );
}

#[test]
fn death_closes_episodes_and_stops_timers() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.bp(1.0, 190.0, 100.0);
    h.take();
    let death = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Male,
        birth_year: 1960,
        region_code: "330106".into(),
        programmes: vec![ProgrammeEnrolment {
            condition: Condition::Hypertension,
            enrolled_time_ms: day(0.0),
        }],
        death_time_ms: Some(day(5.0)),
    });
    // Recorded on day 6, the death (day 5) closes the episode at the death, once the hospital's
    // clock passes it: what a snapshot holding the death from the start closes too.
    h.event_with("patient/1", 6.0, Operation::Update, death);
    h.advance(7.0);
    let closed = h.take_full();
    assert_eq!(
        closed
            .iter()
            .map(|a| (a.rule_id.as_str(), a.status, a.event_time_ms))
            .collect::<Vec<_>>(),
        vec![("hypertensive_crisis", AlertStatus::Resolved, day(5.0))]
    );
    assert!(closed[0].message.contains("The patient died."));
    h.advance(400.0);
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.state.timer_count(), 0);
}

#[test]
fn dispositions_for_late_future_and_invalid_input() {
    let mut h = Harness::new();
    h.bp(100.0, 120.0, 80.0);
    h.advance(100.0);
    // Within the 60-day allowed lateness: applied.
    assert_eq!(h.bp(45.0, 120.0, 80.0), Disposition::Applied);
    assert_eq!(h.bp(39.0, 120.0, 80.0), Disposition::Late);
    let cases: [(Payload, &str); 6] = [
        (
            Payload::VitalSign(VitalSign {
                systolic_mmhg: Some(400.0),
                diastolic_mmhg: Some(80.0),
                ..VitalSign::default()
            }),
            "value_out_of_range",
        ),
        (
            Payload::VitalSign(VitalSign {
                systolic_mmhg: Some(80.0),
                diastolic_mmhg: Some(120.0),
                ..VitalSign::default()
            }),
            "value_out_of_range",
        ),
        (
            Payload::LabResult(LabResult {
                loinc: "14749-6".into(),
                value: 7.0,
                unit: "g/L".into(),
                local_code: String::new(),
                encounter_id: None,
            }),
            "unexpected_unit",
        ),
        (
            Payload::LabResult(LabResult {
                loinc: "4548-4".into(),
                value: 45.0,
                unit: "%".into(),
                local_code: String::new(),
                encounter_id: None,
            }),
            "value_out_of_range",
        ),
        (
            Payload::Diagnosis(Diagnosis {
                icd10: " ".into(),
                is_primary: false,
                department_code: String::new(),
                encounter_id: None,
            }),
            "missing_field",
        ),
        (
            Payload::FollowUpVisit(FollowUpVisit {
                condition: Condition::Diabetes,
                visit_mode: VisitMode::Clinic,
                systolic_mmhg: None,
                diastolic_mmhg: None,
                fasting_glucose_mmol_l: Some(-1.0),
                hba1c_percent: None,
                next_visit_time_ms: None,
                clinician_id: String::new(),
            }),
            "value_out_of_range",
        ),
    ];
    for (payload, code) in cases {
        match h.event(101.0, payload) {
            Disposition::Rejected(got) => assert_eq!(got.reason.as_str(), code),
            other => panic!("expected {code}, got {other:?}"),
        }
    }
    // Unknown LOINC codes are accepted (stored downstream) and change no rule.
    assert_eq!(h.lab(101.0, "2093-3", 5.2, "mmol/L"), Disposition::Applied);
    // Bad pseudonyms and clocks.
    h.patient = "not-a-pseudonym".into();
    assert!(matches!(
        h.bp(101.0, 120.0, 80.0),
        Disposition::Rejected(validate::Invalid {
            reason: validate::Reason::InvalidPseudonym,
            ..
        })
    ));
    h.patient = P.into();
    let event = ClinicalEvent {
        event_id: "f".into(),
        hospital_id: "H0001".into(),
        source_system: "t".into(),
        operation: Operation::Create,
        event_time_ms: day(200.0),
        ingest_time_ms: day(101.0),
        patient_pseudonym: P.into(),
        record_id: "x".into(),
        schema_version: 1,
        payload: Payload::VitalSign(VitalSign::default()),
        source: None,
    };
    assert!(matches!(
        h.engine.apply_event(&mut h.state, &event, &mut h.alerts),
        Disposition::Rejected(validate::Invalid {
            reason: validate::Reason::EventTimeInFuture,
            ..
        })
    ));
}

#[test]
fn status_rows_follow_the_national_standard_definition() {
    let mut h = Harness::new();
    h.register(-400.0, &[Condition::Hypertension, Condition::Diabetes]);
    // In time order: four face-to-face hypertension follow-ups in 2025 (the last controlled);
    // for diabetes one face-to-face follow-up and, latest, one by phone with fasting glucose 7.2
    // (not controlled; the phone follow-up counts for control, not for standardised management);
    // a diabetic eye complication on day 200.
    let ht = |h: &mut Harness, d: f64, bp: (f64, f64)| {
        h.follow_up(
            d,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some(bp),
            None,
        )
    };
    ht(&mut h, 10.0, (150.0, 92.0));
    h.follow_up(
        50.0,
        Condition::Diabetes,
        VisitMode::Clinic,
        None,
        Some(6.4),
    );
    ht(&mut h, 100.0, (142.0, 88.0));
    h.follow_up(
        150.0,
        Condition::Diabetes,
        VisitMode::Phone,
        None,
        Some(7.2),
    );
    ht(&mut h, 190.0, (138.0, 86.0));
    h.diagnose(200.0, "E11.300");
    ht(&mut h, 280.0, (136.0, 84.0));
    let rows = h.status();
    let find = |c: Condition, k: PeriodKind, start: &str| {
        let start = vigil_runtime::time::parse_date(start).unwrap();
        rows.iter()
            .find(|r| r.condition == c && r.period_kind == k && r.period_start == start)
            .cloned()
    };
    let ht_year = find(Condition::Hypertension, PeriodKind::Year, "2025-01-01").expect("year row");
    assert!(ht_year.managed && ht_year.standardised && ht_year.controlled);
    assert_eq!(ht_year.follow_ups, 4);
    assert_eq!(ht_year.definition, "cn-nbphs-2017/v1");
    assert_eq!(ht_year.managed_days, 365);
    assert_eq!(ht_year.bp_grade, 0);
    // Diabetes with complications puts hypertension at very high risk.
    assert_eq!(ht_year.risk_level, RiskLevel::VeryHigh);
    assert_eq!(
        ht_year.new_complications, 0,
        "a diabetic eye complication is not cardiovascular"
    );
    let dm_year = find(Condition::Diabetes, PeriodKind::Year, "2025-01-01").unwrap();
    assert!(!dm_year.standardised && !dm_year.controlled);
    assert_eq!(dm_year.follow_ups, 1);
    assert!((dm_year.last_fasting_glucose_mmol_l.unwrap() - 7.2).abs() < 1e-4);
    assert_eq!(dm_year.new_complications, 1);
    assert!(dm_year.has_complications);
    assert_eq!(dm_year.risk_level, RiskLevel::NotAssessed);
    // Q1: one follow-up by March 31 = one quarter elapsed: on track; controlled? 150/92: no.
    let q1 = find(Condition::Hypertension, PeriodKind::Quarter, "2025-01-01").unwrap();
    assert!(q1.standardised && !q1.controlled);
    assert_eq!(q1.bp_grade, 1);
    assert_eq!(q1.age_band, "60-69");
    // Versions only grow, and ids are stable per (patient, condition, period, definition).
    assert!(rows.iter().all(|r| r.version > 0));
    let again = find(Condition::Hypertension, PeriodKind::Year, "2025-01-01").unwrap();
    assert_eq!(again.status_id, ht_year.status_id);
}

#[test]
fn opening_a_month_emits_rows_for_patients_without_events() {
    let mut h = Harness::new();
    h.register(-30.0, &[Condition::Hypertension]);
    h.advance(1.0); // January
    h.status();
    h.advance(40.0); // into February: a row for every managed patient
    let rows = h.status();
    let feb = vigil_runtime::time::parse_date("2025-02-01").unwrap();
    let month = rows
        .iter()
        .find(|r| r.period_kind == PeriodKind::Month && r.period_start == feb)
        .expect("February row");
    assert!(month.managed && !month.controlled && month.follow_ups == 0);
    // Into April: the new quarter opens too.
    h.advance(95.0);
    let rows = h.status();
    assert!(rows.iter().any(|r| r.period_kind == PeriodKind::Quarter
        && r.period_start == vigil_runtime::time::parse_date("2025-04-01").unwrap()));
}

#[test]
fn the_same_input_gives_the_same_output() {
    let run = || {
        let mut h = Harness::new();
        h.register(0.0, &[Condition::Hypertension, Condition::Diabetes]);
        h.bp(1.0, 185.0, 100.0);
        h.lab(2.0, "14749-6", 2.5, "mmol/L");
        h.follow_up(
            3.0,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((150.0, 95.0)),
            None,
        );
        h.advance(200.0);
        let alerts = h.take_full();
        let mut status = h.status();
        status.sort_by(|a, b| a.status_id.cmp(&b.status_id));
        (alerts, status)
    };
    let (a1, s1) = run();
    let (a2, s2) = run();
    assert!(!a1.is_empty() && !s1.is_empty());
    assert_eq!(a1, a2);
    assert_eq!(s1, s2);
}

#[test]
fn timers_fire_at_the_same_point_of_the_event_sequence_however_input_is_batched() {
    // A patient misses a follow-up (due day 111) and comes back on day 112; another patient's
    // readings move event time on meanwhile. Whether the runner ends a batch (and the wall clock
    // nudges the watermark) between events must not change what comes out.
    let other = "c3".repeat(32);
    let run = |nudge_between: bool| {
        let mut h = Harness::new();
        h.register(0.0, &[Condition::Hypertension]);
        h.follow_up(
            10.0,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((130.0, 80.0)),
            None,
        );
        h.patient = other.clone();
        for d in [60.0, 105.0, 111.2, 111.5] {
            h.bp(d, 125.0, 80.0);
            if nudge_between {
                // What a batch end with an idle-partition fallback could do: never beyond the
                // event-time watermark of what has been seen.
                let wm = h.engine.event_time_watermark(&h.state, "H0001");
                h.engine
                    .advance_watermark(&mut h.state, "H0001", wm, &mut h.alerts);
            }
        }
        h.patient = P.into();
        h.follow_up(
            112.0,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((130.0, 80.0)),
            None,
        );
        h.take_full()
    };
    let plain = run(false);
    let nudged = run(true);
    assert_eq!(plain, nudged);
    let statuses: Vec<AlertStatus> = plain.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        vec![AlertStatus::Raised, AlertStatus::Resolved],
        "missed on day 111, back on day 112"
    );
}

/// The latest row of each status id, as ClickHouse's ReplacingMergeTree(version) keeps it.
fn latest_rows(rows: Vec<PatientStatus>) -> Vec<PatientStatus> {
    let mut latest: std::collections::BTreeMap<String, PatientStatus> = Default::default();
    for row in rows {
        match latest.get(&row.status_id) {
            Some(kept) if kept.version >= row.version => {}
            _ => {
                latest.insert(row.status_id.clone(), row);
            }
        }
    }
    latest.into_values().collect()
}

#[test]
fn status_rows_do_not_depend_on_when_they_are_emitted() {
    // Two and a half years of quarterly follow-ups and readings: longer than the follow-up
    // retention (550 days), so a follow-up of January 2025 is pruned once mid-2026's arrive. The
    // 2025 rows must say what 2025 held however often the rows were drained in between.
    let run = |drain_every: usize| {
        let mut h = Harness::new();
        h.register(0.0, &[Condition::Hypertension, Condition::Diabetes]);
        let mut rows = Vec::new();
        let mut n = 0;
        let mut d = 10.0;
        while d < 900.0 {
            let (s, dia) = if (d as i64 / 91) % 2 == 0 {
                (150.0, 95.0)
            } else {
                (128.0, 82.0)
            };
            h.follow_up(
                d,
                Condition::Hypertension,
                VisitMode::Clinic,
                Some((s, dia)),
                None,
            );
            h.follow_up(
                d + 1.0,
                Condition::Diabetes,
                VisitMode::Home,
                None,
                Some(6.5),
            );
            h.bp(d + 2.0, s + 5.0, dia);
            h.lab(d + 3.0, "98979-8", 70.0 - d / 100.0, "mL/min/1.73m2");
            n += 4;
            if drain_every > 0 && n % drain_every == 0 {
                rows.extend(h.status());
            }
            d += 80.0;
        }
        rows.extend(h.status());
        latest_rows(rows)
    };
    let at_the_end = run(0);
    let every_event = run(1);
    let every_seventh = run(7);
    let year_2025 = at_the_end
        .iter()
        .find(|r| {
            r.condition == Condition::Hypertension
                && r.period_kind == PeriodKind::Year
                && r.period_start == vigil_runtime::time::parse_date("2025-01-01").unwrap()
        })
        .expect("a 2025 hypertension year row");
    // Days 10, 90, 170, 250, 330: five face-to-face follow-ups in 2025.
    assert_eq!(year_2025.follow_ups, 5);
    assert!(year_2025.standardised);
    assert_eq!(at_the_end, every_event);
    assert_eq!(at_the_end, every_seventh);
}

#[test]
fn a_form_entered_twice_is_one_follow_up() {
    // Two records with the same patient, time and values (a nurse re-entered the form): one
    // follow-up for the metrics, and one visit for the rules (two uncontrolled visits in a row
    // would call for a referral; one visit entered twice does not).
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.follow_up(
        40.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((150.0, 95.0)),
        None,
    );
    h.follow_up(
        40.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((150.0, 95.0)),
        None,
    );
    let alerts = h.take();
    assert!(
        !alerts
            .iter()
            .any(|(rule, _)| rule == "uncontrolled_bp_referral"),
        "{alerts:?}"
    );
    let month = h
        .status()
        .into_iter()
        .filter(|r| r.condition == Condition::Hypertension && r.period_kind == PeriodKind::Month)
        .find(|r| r.period_start == vigil_runtime::time::parse_date("2025-02-01").unwrap())
        .expect("a February row");
    assert_eq!(month.follow_ups, 1);
    // A second, different visit the same day is a second follow-up.
    h.follow_up(
        40.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((152.0, 96.0)),
        None,
    );
    assert!(h
        .take()
        .contains(&("uncontrolled_bp_referral".into(), AlertStatus::Raised)));
}

#[test]
fn a_snapshot_stamped_now_neither_moves_the_watermark_nor_makes_history_late() {
    // Debezium's initial snapshot stamps every row with the time of the snapshot. A patient row
    // read that way must not push the watermark to "now": the clinical history that follows
    // (two years old) is applied, not discarded as late.
    let mut h = Harness::new();
    let payload = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Female,
        birth_year: 1955,
        region_code: "330106".into(),
        programmes: vec![ProgrammeEnrolment {
            condition: Condition::Hypertension,
            enrolled_time_ms: day(0.0),
        }],
        death_time_ms: None,
    });
    assert_eq!(
        h.event_with("patient/1", 720.0, Operation::Snapshot, payload),
        Disposition::Applied
    );
    assert_eq!(
        h.state.clock("H0001").watermark_ms,
        i64::MIN,
        "the snapshot moved no watermark"
    );
    for d in [10.0, 100.0, 190.0, 280.0] {
        assert_eq!(
            h.follow_up(
                d,
                Condition::Hypertension,
                VisitMode::Clinic,
                Some((130.0, 80.0)),
                None
            ),
            Disposition::Applied,
            "day {d}"
        );
    }
    let year_2025 = h
        .status()
        .into_iter()
        .filter(|r| r.condition == Condition::Hypertension && r.period_kind == PeriodKind::Year)
        .find(|r| r.period_start == vigil_runtime::time::parse_date("2025-01-01").unwrap())
        .expect("a 2025 row");
    assert_eq!(year_2025.follow_ups, 4);
    assert!(year_2025.standardised);
    // A live change, by contrast, moves the watermark as before.
    h.bp(300.0, 130.0, 80.0);
    assert!(h.state.clock("H0001").watermark_ms > day(299.0));
}

#[test]
fn a_snapshot_released_in_clinical_time_order_raises_what_the_stream_raised() {
    // A year of a patient's history with a long gap between follow-ups (the missed-follow-up
    // timer fires in it, and the next follow-up resolves it) and a crisis reading in between.
    // Streamed, or as an initial snapshot the edge released in clinical-time order (the
    // registration first, stamped with the snapshot's time), it raises the same alerts. The same
    // snapshot rows without that order (no ordered position) move no clock: the gap's timer
    // never fires in the history.
    let visits = [10.0, 100.0, 280.0, 370.0];
    let registration = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Male,
        birth_year: 1960,
        region_code: "330106".into(),
        programmes: vec![ProgrammeEnrolment {
            condition: Condition::Hypertension,
            enrolled_time_ms: day(0.0),
        }],
        death_time_ms: None,
    });
    let follow_up = |bp: (f64, f64)| {
        Payload::FollowUpVisit(FollowUpVisit {
            condition: Condition::Hypertension,
            visit_mode: VisitMode::Clinic,
            systolic_mmhg: Some(bp.0),
            diastolic_mmhg: Some(bp.1),
            fasting_glucose_mmol_l: None,
            hba1c_percent: None,
            next_visit_time_ms: None,
            clinician_id: String::new(),
        })
    };
    let streamed = {
        let mut h = Harness::new();
        h.event_with("patient/1", 0.0, Operation::Create, registration.clone());
        for (n, d) in visits.iter().enumerate() {
            h.event_with(
                &format!("fu/{n}"),
                *d,
                Operation::Create,
                follow_up((130.0, 80.0)),
            );
            if n == 1 {
                h.bp(150.0, 190.0, 100.0);
            }
        }
        h.advance(400.0);
        h.take()
    };
    assert!(
        streamed.contains(&("missed_quarterly_follow_up".into(), AlertStatus::Raised)),
        "the gap raises: {streamed:?}"
    );
    let snapshot = |ordered: bool| {
        let mut h = Harness::new();
        let mut place = 0;
        let mut source = || {
            place += 1;
            ordered.then(|| SourcePosition {
                topic: format!("{}0123456789abcdef", vigil_schemas::ORDERED_SNAPSHOT_PREFIX),
                partition: 0,
                offset: place,
            })
        };
        let s = source();
        h.event_from(
            "patient/1",
            400.0,
            Operation::Snapshot,
            registration.clone(),
            s,
        );
        for (n, d) in visits.iter().enumerate() {
            let s = source();
            h.event_from(
                &format!("fu/{n}"),
                *d,
                Operation::Snapshot,
                follow_up((130.0, 80.0)),
                s,
            );
            if n == 1 {
                let s = source();
                let reading = Payload::VitalSign(VitalSign {
                    systolic_mmhg: Some(190.0),
                    diastolic_mmhg: Some(100.0),
                    ..VitalSign::default()
                });
                h.event_from("vitals/1", 150.0, Operation::Snapshot, reading, s);
            }
        }
        h.advance(400.0);
        h.take()
    };
    assert_eq!(snapshot(true), streamed);
    assert!(
        !snapshot(false).contains(&("missed_quarterly_follow_up".into(), AlertStatus::Raised)),
        "unordered snapshot rows move no clock"
    );
}

#[test]
fn an_older_registration_arriving_again_does_not_undo_a_newer_one() {
    // An edge that crashed before committing replays its input: the patient's snapshot row (a
    // registration, never late) comes again after the update that recorded the death. It must
    // not bring the patient back to life, nor start the follow-up clock again.
    let registration = |death: Option<f64>| {
        Payload::PatientRegistration(PatientRegistration {
            sex: Sex::Female,
            birth_year: 1950,
            region_code: "330106".into(),
            programmes: vec![ProgrammeEnrolment {
                condition: Condition::Hypertension,
                enrolled_time_ms: day(0.0),
            }],
            death_time_ms: death.map(day),
        })
    };
    let run = |replay: bool| {
        let mut h = Harness::new();
        h.event_with("patient/1", 0.0, Operation::Snapshot, registration(None));
        h.follow_up(
            10.0,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((130.0, 80.0)),
            None,
        );
        h.event_with(
            "patient/1",
            40.0,
            Operation::Update,
            registration(Some(40.0)),
        );
        if replay {
            h.event_with("patient/1", 0.0, Operation::Snapshot, registration(None));
        }
        h.advance(300.0);
        let key = patient_key(P).unwrap();
        let dead = h.state.patient(&key).and_then(|p| p.death_ms);
        (h.take(), dead)
    };
    let (alerts, dead) = run(true);
    assert_eq!(dead, Some(day(40.0)), "the death stands");
    assert!(
        alerts.is_empty(),
        "no follow-up is due after death: {alerts:?}"
    );
    assert_eq!(run(false), (alerts, dead));
}

#[test]
fn a_hospital_back_filling_its_history_is_not_late_behind_a_live_one() {
    // H0002 streams live (day 400); H0001 joins and loads two years as ordinary changes. Each
    // hospital's events are judged by its own clock: none of H0001's history is late.
    let mut h = Harness::new();
    h.hospital = "H0002".into();
    h.patient = "c3".repeat(32);
    h.register(390.0, &[Condition::Hypertension]);
    assert_eq!(h.bp(400.0, 130.0, 80.0), Disposition::Applied);
    h.hospital = "H0001".into();
    h.patient = P.into();
    h.register(0.0, &[Condition::Hypertension]);
    for d in [10.0, 100.0, 190.0, 280.0, 370.0] {
        let applied = h.follow_up(
            d,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((130.0, 80.0)),
            None,
        );
        assert_eq!(applied, Disposition::Applied, "day {d}");
    }
    assert!(h.state.clock("H0001").watermark_ms < day(370.0));
    assert!(h.state.clock("H0002").watermark_ms > day(399.0));
}

#[test]
fn another_hospital_running_ahead_fires_no_timer_of_this_one() {
    // H0001's patient was seen on day 10 (next visit due by day 111); H0001's upload is behind
    // while H0002's events reach day 200. Nothing is overdue until H0001's own events say so:
    // its day-100 follow-up arrives, and only from then on does its clock run.
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    let seen = |h: &mut Harness, d: f64| {
        h.follow_up(
            d,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((130.0, 80.0)),
            None,
        )
    };
    seen(&mut h, 10.0);
    h.hospital = "H0002".into();
    h.patient = "c3".repeat(32);
    h.register(150.0, &[Condition::Hypertension]);
    for d in [160.0, 180.0, 200.0] {
        h.bp(d, 125.0, 80.0);
    }
    assert_eq!(h.take(), vec![], "H0002's events fire nothing of H0001's");
    h.hospital = "H0001".into();
    h.patient = P.into();
    assert_eq!(seen(&mut h, 100.0), Disposition::Applied);
    assert_eq!(seen(&mut h, 190.0), Disposition::Applied);
    assert_eq!(h.take(), vec![], "no follow-up was ever missed");
    // Its own clock passing day 291 (190 + more than 100 days) is what fires it.
    h.advance(292.0);
    assert_eq!(h.take(), raised("missed_quarterly_follow_up"));
}

#[test]
fn management_follows_the_evidence_the_definition_counts() {
    // A hospital that records no enrolment: a hypertension diagnosis on day 5, the programme's
    // follow-up form on day 20. v1 counts enrolment only; v2 also counts a qualifying diagnosis
    // plus a programme form, from when both exist.
    let run = |definition: Definition| {
        let mut h = Harness::with(EngineConfig {
            definition,
            ..EngineConfig::default()
        });
        h.diagnose(5.0, "I10.x00");
        h.follow_up(
            20.0,
            Condition::Hypertension,
            VisitMode::Clinic,
            Some((132.0, 84.0)),
            None,
        );
        h.advance(140.0);
        let alerts = h.take();
        let managed: Vec<(PeriodKind, i32, bool, String)> = h
            .status()
            .into_iter()
            .filter(|r| r.period_kind != PeriodKind::Month)
            .map(|r| (r.period_kind, r.period_start, r.managed, r.definition))
            .collect();
        let mut managed = managed;
        managed.sort_by_key(|r| (r.0.as_str(), r.1));
        (alerts, managed)
    };
    let (alerts, rows) = run(Definition::NbphsV1);
    assert_eq!((alerts, rows), (vec![], vec![]), "v1: not under management");
    let (alerts, rows) = run(Definition::NbphsV2);
    // Managed from day 20: no follow-up for more than 100 days fires on day 121.
    assert_eq!(alerts, raised("missed_quarterly_follow_up"));
    let q1 = vigil_runtime::time::parse_date("2025-01-01").unwrap();
    let q2 = vigil_runtime::time::parse_date("2025-04-01").unwrap();
    assert_eq!(
        rows,
        vec![
            (
                PeriodKind::Quarter,
                q1,
                true,
                "cn-nbphs-2017/v2".to_string()
            ),
            (
                PeriodKind::Quarter,
                q2,
                true,
                "cn-nbphs-2017/v2".to_string()
            ),
            (PeriodKind::Year, q1, true, "cn-nbphs-2017/v2".to_string()),
        ]
    );
}

#[test]
fn a_diabetic_complication_code_is_a_qualifying_diagnosis_and_enrolment_still_counts() {
    let mut h = Harness::with(EngineConfig {
        definition: Definition::NbphsV2,
        ..EngineConfig::default()
    });
    h.diagnose(3.0, "E11.2");
    h.follow_up(8.0, Condition::Diabetes, VisitMode::Home, None, Some(6.1));
    let key = patient_key(P).unwrap();
    let patient = h.state.patient(&key).unwrap();
    assert_eq!(patient.managed_since(Condition::Diabetes), Some(day(8.0)));
    assert_eq!(patient.managed_since(Condition::Hypertension), None);
    // An enrolment earlier than the evidence is when management began.
    h.register(1.0, &[Condition::Diabetes]);
    let patient = h.state.patient(&key).unwrap();
    assert_eq!(patient.managed_since(Condition::Diabetes), Some(day(1.0)));
}

#[test]
fn an_edge_replay_of_events_already_applied_changes_nothing() {
    // An edge that crashed before committing sends again what it had sent: here the create of a
    // follow-up and, after it, the correction that made it controlled. Applying the replayed
    // create again would revert the follow-up to uncontrolled and raise a referral the
    // uninterrupted run never raised.
    let form = |s: f64, d: f64| {
        Payload::FollowUpVisit(FollowUpVisit {
            condition: Condition::Hypertension,
            visit_mode: VisitMode::Clinic,
            systolic_mmhg: Some(s),
            diastolic_mmhg: Some(d),
            fasting_glucose_mmol_l: None,
            hba1c_percent: None,
            next_visit_time_ms: None,
            clinician_id: "D-1".into(),
        })
    };
    let run = |replay: bool| {
        let mut h = Harness::new();
        h.register(0.0, &[Condition::Hypertension]);
        h.event_with("fu/1", 10.0, Operation::Create, form(152.0, 96.0));
        h.event_with("fu/2", 20.0, Operation::Create, form(150.0, 95.0));
        h.event_with("fu/2", 20.0, Operation::Update, form(130.0, 80.0));
        let mut replayed = Vec::new();
        if replay {
            replayed.push(h.event_with("fu/2", 20.0, Operation::Create, form(150.0, 95.0)));
            replayed.push(h.event_with("fu/2", 20.0, Operation::Update, form(130.0, 80.0)));
        }
        (h.take_full(), replayed)
    };
    let (alerts, replayed) = run(true);
    assert_eq!(replayed, vec![Disposition::Replayed, Disposition::Replayed]);
    assert_eq!(alerts, run(false).0);
}

#[test]
fn a_replay_longer_than_the_remembered_ids_changes_no_row_and_no_alert() {
    // An edge killed in the middle of a large batch replays all of it: hundreds of a patient's
    // events, far more than the ids a patient remembers. The replayed snapshot registration is
    // never late and the last two months are within the allowed lateness, so they are applied
    // again: they must change nothing, or the patient's closed periods would be stamped again
    // with today's facts. (A replayed create behind its own correction is a change the engine
    // cannot see as old: the runner recognises replays by their source position.)
    let registration = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Male,
        birth_year: 1958,
        region_code: "330106".into(),
        programmes: vec![
            ProgrammeEnrolment {
                condition: Condition::Hypertension,
                enrolled_time_ms: day(0.0),
            },
            ProgrammeEnrolment {
                condition: Condition::Diabetes,
                enrolled_time_ms: day(0.0),
            },
        ],
        death_time_ms: None,
    });
    let form = |s: f64, glucose: Option<f64>| {
        Payload::FollowUpVisit(FollowUpVisit {
            condition: Condition::Hypertension,
            visit_mode: VisitMode::Clinic,
            systolic_mmhg: Some(s),
            diastolic_mmhg: Some(s * 0.6),
            fasting_glucose_mmol_l: glucose,
            hba1c_percent: None,
            next_visit_time_ms: None,
            clinician_id: "D-1".into(),
        })
    };
    let mut history: Vec<(String, f64, Operation, Payload)> =
        vec![("patient/1".into(), 0.0, Operation::Snapshot, registration)];
    let mut d = 5.0;
    let mut n = 0;
    while d < 480.0 {
        n += 1;
        let s = if n % 3 == 0 { 150.0 } else { 128.0 };
        let glucose = (n % 2 == 0).then_some(7.4);
        history.push((format!("fu/{n}"), d, Operation::Create, form(s, glucose)));
        let vital = Payload::VitalSign(VitalSign {
            systolic_mmhg: Some(s + 2.0),
            diastolic_mmhg: Some(80.0),
            ..VitalSign::default()
        });
        history.push((format!("vs/{n}"), d + 0.5, Operation::Create, vital));
        let creatinine = lab_result("14682-9", 88.4 + n as f64, "umol/L");
        history.push((format!("cr/{n}"), d + 0.6, Operation::Create, creatinine));
        let hba1c = lab_result("4548-4", 6.5 + (n % 3) as f64 * 0.5, "%");
        history.push((format!("a1c/{n}"), d + 0.7, Operation::Create, hba1c));
        if n == 30 {
            let stroke = Payload::Diagnosis(Diagnosis {
                icd10: "I63.9".into(),
                is_primary: true,
                department_code: "NEURO".into(),
                encounter_id: None,
            });
            history.push(("dx/1".into(), d + 0.8, Operation::Create, stroke));
        }
        d += 4.0;
    }
    let run = |replay: bool| {
        let mut h = Harness::new();
        let mut rows = Vec::new();
        for (record, d, op, payload) in &history {
            h.event_with(record, *d, *op, payload.clone());
        }
        rows.extend(h.status());
        let mut dispositions = Vec::new();
        if replay {
            for (record, d, op, payload) in &history {
                dispositions.push(h.event_with(record, *d, *op, payload.clone()));
            }
        }
        rows.extend(h.status());
        (latest_rows(rows), h.take_full(), dispositions)
    };
    let (rows, alerts, dispositions) = run(true);
    let applied_again = dispositions
        .iter()
        .filter(|d| **d == Disposition::Applied)
        .count();
    assert!(
        applied_again > crate::state::RECENT_EVENTS + 10,
        "the replay reaches past the remembered ids: {applied_again} applied again"
    );
    let (clean_rows, clean_alerts, _) = run(false);
    assert!(!clean_alerts.is_empty() && clean_rows.len() > 40);
    assert_eq!(alerts, clean_alerts);
    assert_eq!(rows.len(), clean_rows.len());
    for (row, clean) in rows.iter().zip(&clean_rows) {
        assert_eq!(row, clean, "a row the replay changed");
    }
}

#[test]
fn source_positions_tell_a_replay_per_hospital_and_partition_and_survive_restore() {
    let at = |partition: i32, offset: i64| SourcePosition {
        topic: "vigil.his.changes".into(),
        partition,
        offset,
    };
    let mut state = PartitionState::new();
    assert!(!state.passed("H0001", &at(0, 10)));
    assert!(!state.passed("H0001", &at(0, 11)));
    assert!(state.passed("H0001", &at(0, 11)), "the same position again");
    assert!(state.passed("H0001", &at(0, 3)), "an earlier one");
    // Other partitions and other hospitals' edges count on their own.
    assert!(!state.passed("H0001", &at(1, 3)));
    assert!(!state.passed("H0002", &at(0, 3)));
    let restored = PartitionState::restore(Default::default(), Vec::new(), state.sources());
    let mut restored = restored;
    assert!(restored.passed("H0001", &at(0, 11)));
    assert!(restored.passed("H0002", &at(0, 3)));
    assert!(!restored.passed("H0001", &at(0, 12)));
}

#[test]
fn a_source_position_out_of_bounds_is_rejected_and_not_remembered() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    let mut event = ClinicalEvent {
        event_id: "e-hostile".into(),
        hospital_id: "H0001".into(),
        source_system: "test".into(),
        operation: Operation::Create,
        event_time_ms: day(1.0),
        ingest_time_ms: day(1.0),
        patient_pseudonym: P.into(),
        record_id: "vs/1".into(),
        schema_version: 2,
        payload: Payload::VitalSign(VitalSign {
            systolic_mmhg: Some(120.0),
            diastolic_mmhg: Some(80.0),
            ..VitalSign::default()
        }),
        source: Some(SourcePosition {
            topic: "t".repeat(1 << 20),
            partition: 0,
            offset: 5,
        }),
    };
    let disposition = h.engine.apply_event(&mut h.state, &event, &mut h.alerts);
    assert!(
        matches!(disposition, Disposition::Rejected(_)),
        "{disposition:?}"
    );
    assert_eq!(h.state.sources().count(), 0, "nothing of it is kept");
    event.source = Some(SourcePosition {
        topic: "vigil.his.changes".into(),
        partition: 0,
        offset: 5,
    });
    let applied = h.engine.apply_event(&mut h.state, &event, &mut h.alerts);
    assert_eq!(applied, Disposition::Applied);
    let again = h.engine.apply_event(&mut h.state, &event, &mut h.alerts);
    assert_eq!(again, Disposition::Replayed);
}

#[test]
fn a_registration_of_another_record_naming_no_programme_keeps_the_enrolment_and_the_death() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    let key = crate::state::patient_key(P).unwrap();
    let adt = |death: Option<i64>| {
        Payload::PatientRegistration(PatientRegistration {
            sex: Sex::Female,
            birth_year: 1961,
            region_code: "330108".into(),
            programmes: Vec::new(),
            death_time_ms: death,
        })
    };
    // An HL7 ADT message beside the patient master: its demographics apply, the enrolment stays.
    h.event_with("hl7_patient/1", 2.0, Operation::Update, adt(None));
    let patient = h.state.patient(&key).unwrap();
    assert_eq!(patient.enrolled_ms[0], Some(day(0.0)));
    assert_eq!((patient.sex, patient.birth_year), (Some(Sex::Female), 1961));
    // A death it states applies; a later one that does not state it does not revive the patient.
    h.event_with("hl7_patient/1", 3.0, Operation::Update, adt(Some(day(3.0))));
    h.event_with("hl7_patient/1", 4.0, Operation::Update, adt(None));
    assert_eq!(h.state.patient(&key).unwrap().death_ms, Some(day(3.0)));
    assert_eq!(
        h.state.patient(&key).unwrap().enrolled_ms[0],
        Some(day(0.0))
    );
    // The patient master's own record still ends the enrolment when it names no programme.
    let master = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Female,
        birth_year: 1961,
        region_code: "330108".into(),
        programmes: Vec::new(),
        death_time_ms: Some(day(3.0)),
    });
    h.event_with("patient/1", 5.0, Operation::Update, master);
    assert_eq!(h.state.patient(&key).unwrap().enrolled_ms, [None, None]);
}

#[test]
fn a_retracted_enrolment_takes_the_patient_out_of_every_period_it_was_counted_in() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.follow_up(
        10.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((130.0, 80.0)),
        None,
    );
    h.advance(70.0);
    let counted: std::collections::BTreeSet<(PeriodKind, i32)> = h
        .status()
        .iter()
        .filter(|s| s.managed)
        .map(|s| (s.period_kind, s.period_start))
        .collect();
    assert!(
        counted.len() >= 4,
        "January, February, March, the quarter, the year: {counted:?}"
    );
    // The hospital deletes the enrolment (entered for the wrong patient): no period counts it.
    let registration = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Male,
        birth_year: 1960,
        region_code: "330106".into(),
        programmes: Vec::new(),
        death_time_ms: None,
    });
    h.event_with("patient/1", 71.0, Operation::Delete, registration);
    h.advance(72.0);
    let rows = h.status();
    let latest: std::collections::BTreeMap<(PeriodKind, i32), bool> = rows
        .iter()
        .map(|s| ((s.period_kind, s.period_start), s.managed))
        .collect();
    for period in &counted {
        assert_eq!(latest.get(period), Some(&false), "{period:?} in {rows:?}");
    }
}

#[test]
fn a_death_recorded_late_ends_the_counting_in_the_periods_after_it() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.advance(100.0);
    h.status();
    let death = Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Male,
        birth_year: 1960,
        region_code: "330106".into(),
        programmes: vec![ProgrammeEnrolment {
            condition: Condition::Hypertension,
            enrolled_time_ms: day(0.0),
        }],
        death_time_ms: Some(day(40.0)),
    });
    h.event_with("patient/1", 101.0, Operation::Update, death);
    let months: Vec<(i32, bool, i32)> = h
        .status()
        .into_iter()
        .filter(|s| s.period_kind == PeriodKind::Month)
        .map(|s| (s.period_start, s.managed, s.managed_days))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // 2025: January whole, February to the death (the 10th), March and April not at all.
    let january = 20_089;
    assert_eq!(
        months,
        vec![
            (january + 31, true, 10),
            (january + 59, false, 0),
            (january + 90, false, 0)
        ]
    );
}

#[test]
fn a_merged_patient_moves_its_facts_to_the_survivor_stops_counting_and_closes_its_episodes() {
    let mut h = Harness::new();
    h.register(0.0, &[Condition::Hypertension]);
    h.follow_up(
        10.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((130.0, 80.0)),
        None,
    );
    h.bp(20.0, 190.0, 115.0);
    h.lab(21.0, "4548-4", 8.1, "%");
    h.advance(70.0);
    let counted = h.status().iter().filter(|s| s.managed).count();
    assert!(counted >= 4, "{counted}");
    h.take();
    let survivor = "ab".repeat(32);
    let merge = Payload::PatientMerge(PatientMerge {
        surviving_pseudonym: survivor.clone(),
    });
    assert_eq!(
        h.event_with("hl7_merge/1", 71.0, Operation::Update, merge.clone()),
        Disposition::Applied
    );
    // The crisis episode closes, saying why; no period counts the merged patient any more.
    let closed = h.take_full();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].status, AlertStatus::Resolved);
    assert!(
        closed[0].message.contains("merged"),
        "{}",
        closed[0].message
    );
    let rows = h.status();
    assert_eq!(
        rows.len(),
        counted,
        "every period that counted them is computed again"
    );
    assert!(rows.iter().all(|s| !s.managed));
    // What moved: the registration with its enrolment, the form (with its reading), the vital
    // sign and the lab result, all the survivor's, as snapshot rows of the merge's hospital.
    let moved = h.state.take_forwarded();
    let kinds: Vec<&str> = moved.iter().map(|e| e.payload.kind()).collect();
    assert_eq!(
        kinds,
        [
            "patient_registration",
            "follow_up_visit",
            "vital_sign",
            "lab_result"
        ]
    );
    for event in &moved {
        assert_eq!(event.patient_pseudonym, survivor);
        assert_eq!(event.operation, Operation::Snapshot);
        assert_eq!(event.source_system, merge::MERGE_SOURCE);
        assert!(validate::check_event(event).is_ok(), "{event:?}");
    }
    // Applied at the survivor (the same partition here): managed since the enrolment, with the
    // merged patient's history; the moved events applied again change nothing.
    let mut alerts = Vec::new();
    for event in &moved {
        let disposition = h.engine.apply_event(&mut h.state, event, &mut alerts);
        assert_eq!(disposition, Disposition::Applied);
    }
    let key = patient_key(&survivor).unwrap();
    let patient = h.state.patient(&key).unwrap();
    assert_eq!(
        patient.managed_since(Condition::Hypertension),
        Some(day(0.0))
    );
    assert_eq!(
        (
            patient.follow_ups.len(),
            patient.bp.len(),
            patient.hba1c.len()
        ),
        (1, 2, 1)
    );
    for event in &moved {
        let disposition = h.engine.apply_event(&mut h.state, event, &mut alerts);
        assert_eq!(disposition, Disposition::Replayed);
    }
    // The merge applied again moves nothing more.
    h.event_with("hl7_merge/1", 71.0, Operation::Update, merge);
    assert!(h.state.take_forwarded().is_empty());
}

#[test]
fn the_latest_qualifying_diagnosis_naming_a_department_makes_it_the_managing_one() {
    let mut h = Harness::with(EngineConfig {
        definition: Definition::NbphsV2,
        ..EngineConfig::default()
    });
    let diagnosis = |code: &str, department: &str| {
        Payload::Diagnosis(Diagnosis {
            icd10: code.into(),
            is_primary: true,
            department_code: department.into(),
            encounter_id: None,
        })
    };
    h.event_with("dx/1", 3.0, Operation::Create, diagnosis("I10", "CARD"));
    h.follow_up(
        8.0,
        Condition::Hypertension,
        VisitMode::Clinic,
        Some((130.0, 80.0)),
        None,
    );
    // An older diagnosis arriving later, one naming no department, another condition's: none
    // changes hypertension's managing department.
    h.event_with("dx/2", 1.0, Operation::Create, diagnosis("I11", "GERI"));
    h.event_with("dx/3", 9.0, Operation::Create, diagnosis("I10", ""));
    h.event_with("dx/4", 9.0, Operation::Create, diagnosis("E11", "ENDO"));
    h.advance(10.0);
    let rows = h.status();
    let hypertension: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|s| s.condition == Condition::Hypertension)
        .map(|s| s.department_code.as_str())
        .collect();
    assert_eq!(hypertension, ["CARD"].into_iter().collect());
    // A later one names the department that manages from then on.
    h.event_with("dx/5", 12.0, Operation::Create, diagnosis("I10", "GERI"));
    h.advance(13.0);
    assert!(h
        .status()
        .iter()
        .filter(|s| s.condition == Condition::Hypertension)
        .all(|s| s.department_code == "GERI"));
}

#[test]
fn an_alert_names_the_managing_hospital_beside_the_hospital_of_the_event() {
    let mut h = Harness::new();
    // Managed at a community centre; the crisis reading is taken at a tertiary hospital.
    h.hospital = "C0100".into();
    h.register(0.0, &[Condition::Hypertension]);
    h.hospital = "H0001".into();
    h.bp(1.0, 192.0, 116.0);
    let raised = h.take_full().remove(0);
    assert_eq!(raised.status, AlertStatus::Raised);
    assert_eq!(
        (
            raised.hospital_id.as_str(),
            raised.managing_hospital_id.as_str()
        ),
        ("H0001", "C0100")
    );
    // The centre acknowledges; the record still names both.
    let ack = AlertAck {
        ack_id: "ack-1".into(),
        episode_id: raised.episode_id.clone(),
        patient_pseudonym: P.into(),
        action: AckAction::Acknowledge,
        snooze_until_ms: None,
        clinician_id: "D-7@C0100".into(),
        time_ms: day(1.1),
    };
    assert!(h.engine.apply_ack(&mut h.state, &ack, &mut h.alerts));
    let acked = h.take_full().remove(0);
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!(
        (
            acked.hospital_id.as_str(),
            acked.managing_hospital_id.as_str()
        ),
        ("H0001", "C0100")
    );
    // The resolution goes to both too.
    h.bp(2.0, 130.0, 80.0);
    let resolved = h.take_full().remove(0);
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.managing_hospital_id, "C0100");

    // A patient never registered is managed where first seen: one hospital.
    let mut h = Harness::new();
    h.bp(0.0, 192.0, 116.0);
    let raised = h.take_full().remove(0);
    assert_eq!(raised.managing_hospital_id, raised.hospital_id);
}
