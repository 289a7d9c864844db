use vigil_schemas::{Operation, Payload, Sex};

use super::ack::{acknowledgement, AckText};
use super::*;
use crate::edge::Catalog;
use crate::pseudonym::PseudonymKey;

const ID: &str = "11010519491231002X";
/// 2025-10-09T08:53:20Z, the edge's clock in these tests.
const NOW: i64 = 1_760_000_000_000;

fn translate(text: &str) -> Translated {
    let catalog =
        Catalog::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge"))
            .unwrap();
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    let adapter = Hl7Adapter {
        catalog: &catalog,
        key: &key,
        utc_offset_minutes: 480,
        now_ms: NOW,
    };
    adapter.translate(text.replace('\n', "\r").as_bytes())
}

fn msh(kind: &str, control: &str) -> String {
    format!("MSH|^~\\&|LIS|H0001|VIGIL|PROVINCE|20250601093000||{kind}|{control}|P|2.5.1\n")
}

fn pid() -> String {
    format!("PID|1||MRN0042^^^H0001^MR~{ID}^^^CHN^NNCHN||王^芳||19491231|F|||中山路1号^^杭州^浙江^^CHN^H^^330106\n")
}

fn oru(observations: &str) -> String {
    format!(
        "{}{}OBR|1|P100|F200|LAB^Panel|||20250601083000+0800\n{observations}",
        msh("ORU^R01^ORU_R01", "M1"),
        pid()
    )
}

fn reasons(t: &Translated) -> Vec<&'static str> {
    t.refused
        .iter()
        .map(|r| r.rejection.reason.as_str())
        .collect()
}

#[test]
fn a_result_message_becomes_one_event_per_observation_and_blood_pressure_one_reading() {
    let t = translate(&oru(
        "OBX|1|NM|HBA1C^HbA1c||8.2|%|||||F|||20250601090000+0800\n\
         OBX|2|NM|GLU^Glucose||180|mg/dL|||||F\n\
         OBX|3|NM|SBP^Systolic||185|mm[Hg]|||||F\n\
         OBX|4|NM|DBP^Diastolic||112|mm[Hg]|||||F\n",
    ));
    assert_eq!(t.code, AckCode::Accept, "{:?}", t.refused);
    assert_eq!(t.hospital, "H0001");
    assert_eq!(t.events.len(), 3);
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    for event in &t.events {
        assert_eq!(event.patient_pseudonym, key.pseudonymise(ID));
        assert_eq!(event.operation, Operation::Create);
        assert_eq!(event.source_system, "hl7v2/ORU^R01");
    }
    match &t.events[0].payload {
        Payload::LabResult(lab) => assert_eq!((lab.loinc.as_str(), lab.value), ("4548-4", 8.2)),
        other => panic!("{other:?}"),
    }
    // OBX-14 when given (09:00 at UTC+8), else the order's time (OBR-7, 08:30 at UTC+8).
    assert_eq!(t.events[0].event_time_ms, 1_748_739_600_000);
    assert_eq!(t.events[1].event_time_ms, 1_748_737_800_000);
    match &t.events[1].payload {
        Payload::LabResult(lab) => {
            assert_eq!(lab.loinc, "14749-6");
            assert!((lab.value - 180.0 / 18.016).abs() < 1e-9, "{}", lab.value);
        }
        other => panic!("{other:?}"),
    }
    match &t.events[2].payload {
        Payload::VitalSign(v) => assert_eq!(
            (v.systolic_mmhg, v.diastolic_mmhg),
            (Some(185.0), Some(112.0))
        ),
        other => panic!("{other:?}"),
    }
    // Nothing identifying in what leaves the edge: record ids and the dead-letter copy.
    for text in t
        .events
        .iter()
        .map(|e| e.record_id.clone())
        .chain([t.copy.clone()])
    {
        for secret in [ID, "MRN0042", "王", "中山路", "P100", "F200"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[test]
fn the_same_message_sent_again_gives_the_same_events_and_a_correction_updates_the_record() {
    let message = oru("OBX|1|NM|HBA1C^HbA1c||8.2|%|||||F\n");
    let (first, again) = (translate(&message), translate(&message));
    assert_eq!(first.events, again.events);
    let corrected = translate(&oru("OBX|1|NM|HBA1C^HbA1c||7.9|%|||||C\n").replace("|M1|", "|M2|"));
    assert_eq!(corrected.events[0].record_id, first.events[0].record_id);
    assert_eq!(corrected.events[0].operation, Operation::Update);
    assert_ne!(corrected.events[0].event_id, first.events[0].event_id);
    let deleted = translate(&oru("OBX|1|NM|HBA1C^HbA1c||7.9|%|||||D\n").replace("|M1|", "|M3|"));
    assert_eq!(deleted.events[0].operation, Operation::Delete);
    assert_eq!(deleted.events[0].record_id, first.events[0].record_id);
}

#[test]
fn a_refused_observation_refuses_itself_and_the_rest_of_the_message_is_taken() {
    let t = translate(&oru("OBX|1|NM|HBA1C^HbA1c||8.2|%|||||F\n\
         OBX|2|NM|XYZ^Unknown||1|%|||||F\n\
         OBX|3|ST|GLU^Glucose||high|mmol/L|||||F\n\
         OBX|4|NM|GLU^Glucose||9|furlong|||||F\n\
         OBX|5|NM|HBA1C^HbA1c||99|%|||||F\n\
         OBX|6|NM|HBA1C^HbA1c||7|%|||||X\n"));
    assert_eq!(t.code, AckCode::Error);
    assert_eq!(t.events.len(), 1);
    assert_eq!(
        reasons(&t),
        vec![
            "unknown_local_code",
            "non_numeric_result",
            "unexpected_unit",
            "value_out_of_range",
            "invalid_code"
        ]
    );
    let places: Vec<_> = t
        .refused
        .iter()
        .map(|r| (r.segment.as_str(), r.sequence))
        .collect();
    assert_eq!(
        places,
        vec![("OBX", 5), ("OBX", 6), ("OBX", 7), ("OBX", 8), ("OBX", 9)]
    );
    let ack = acknowledgement(
        &t.header,
        t.code,
        AckText::Refused(&t.refused),
        "20250601093001+0800",
    );
    let segments: Vec<&str> = ack.split('\r').filter(|s| !s.is_empty()).collect();
    assert!(
        segments[0]
            .starts_with("MSH|^~\\&|VIGIL|VIGIL-EDGE|LIS|H0001|20250601093001+0800||ACK^R01^ACK|"),
        "{ack}"
    );
    assert_eq!(
        segments[1],
        "MSA|AE|M1|5 part(s) refused; the rest accepted"
    );
    assert!(
        segments[2]
            .starts_with("ERR||OBX^5|103^Table value not found^HL70357|E||||unknown_local_code: "),
        "{ack}"
    );
    assert_eq!(segments.len(), 7);
}

#[test]
fn message_level_faults_refuse_the_whole_message_with_their_reason() {
    let cases: Vec<(String, AckCode, &str)> = vec![
        (
            oru("").replace("|H0001|VIGIL", "|H9999|VIGIL"),
            AckCode::Reject,
            "unknown_hospital",
        ),
        (
            oru("").replace("|P|2.5.1", "|T|2.5.1"),
            AckCode::Reject,
            "unsupported_message",
        ),
        (
            oru("").replace("|M1|", "||"),
            AckCode::Reject,
            "missing_field",
        ),
        (
            oru("").replace("ORU^R01^ORU_R01", "ADT^A40^ADT_A39"),
            AckCode::Error,
            "missing_field",
        ),
        (
            oru("").replace("ORU^R01^ORU_R01", "SIU^S12"),
            AckCode::Reject,
            "unsupported_message",
        ),
        (
            oru("").replace(ID, "110105194912310021"),
            AckCode::Error,
            "invalid_patient_identifier",
        ),
        (
            oru("").replace("NNCHN", "PPN"),
            AckCode::Error,
            "missing_patient_identifier",
        ),
        (
            "not hl7 at all".to_string(),
            AckCode::Reject,
            "malformed_record",
        ),
    ];
    for (message, code, reason) in cases {
        let t = translate(&message);
        assert_eq!((t.code, reasons(&t)), (code, vec![reason]), "{message}");
        assert!(t.events.is_empty());
        assert!(!t.copy.contains(ID) && !t.copy.contains('王'), "{}", t.copy);
    }
    let catalog =
        Catalog::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge"))
            .unwrap();
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    let adapter = Hl7Adapter {
        catalog: &catalog,
        key: &key,
        utc_offset_minutes: 480,
        now_ms: NOW,
    };
    let mut bytes = oru("").replace('\n', "\r").into_bytes();
    bytes.extend([0xff, 0xfe, 0xe4]);
    let t = adapter.translate(&bytes);
    assert_eq!(reasons(&t), vec!["malformed_record"]);
    assert_eq!(
        t.copy,
        format!("<unparseable input of {} bytes withheld>", bytes.len())
    );
}

#[test]
fn an_admission_registers_the_patient_opens_the_visit_and_records_its_diagnoses() {
    let message = format!(
        "{}EVN|A01|20250601100000\n{}PV1|1|I|NEIKE^301^1||||||||||||||||V777|||||||||||||||||||||||||20250601095500\n\
         DG1|1||I10^Essential hypertension^I10||20250601100500|F|||||||||1\n\
         DG1|2||E11.9^T2DM^ICD10||||||||||||\n\
         DG1|3||L999^Local^99LOC||||||||||||\n",
        msh("ADT^A01^ADT_A01", "A1"),
        pid()
    );
    let t = translate(&message);
    assert_eq!(
        t.code,
        AckCode::Error,
        "the local diagnosis code has no mapping"
    );
    assert_eq!(reasons(&t), vec!["unknown_local_code"]);
    assert_eq!(t.events.len(), 4);
    match &t.events[0].payload {
        Payload::PatientRegistration(r) => {
            assert_eq!(
                (r.sex, r.birth_year, r.region_code.as_str()),
                (Sex::Female, 1949, "330106")
            );
            assert!(r.programmes.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // EVN-2 without an offset is the hospitals' local time (UTC+8).
    assert_eq!(t.events[0].event_time_ms, 1_748_743_200_000);
    match &t.events[1].payload {
        Payload::Encounter(e) => {
            assert_eq!(e.department_code, "NEIKE");
            assert_eq!(e.start_time_ms, 1_748_742_900_000);
            assert_eq!(e.end_time_ms, None);
        }
        other => panic!("{other:?}"),
    }
    match (&t.events[2].payload, &t.events[3].payload) {
        (Payload::Diagnosis(a), Payload::Diagnosis(b)) => {
            assert_eq!((a.icd10.as_str(), a.is_primary), ("I10", true));
            assert_eq!(
                a.encounter_id.as_deref(),
                Some(t.events[1].record_id.as_str())
            );
            assert_eq!(t.events[2].event_time_ms, 1_748_743_500_000);
            assert_eq!((b.icd10.as_str(), b.is_primary), ("E11.9", false));
        }
        other => panic!("{other:?}"),
    }
    // A cancelled admission retracts the visit; a cancelled discharge reopens it.
    let cancel = translate(&message.replace("ADT^A01^ADT_A01|A1", "ADT^A11^ADT_A09|A2"));
    assert_eq!(cancel.events.len(), 1);
    assert_eq!(cancel.events[0].operation, Operation::Delete);
    assert_eq!(cancel.events[0].record_id, t.events[1].record_id);
    let discharged = translate(
        &message
            .replace("ADT^A01^ADT_A01|A1", "ADT^A03^ADT_A03|A3")
            .replace("20250601095500\n", "20250601095500|20250605120000\n"),
    );
    match &discharged.events[0].payload {
        Payload::Encounter(e) => assert_eq!(e.end_time_ms, Some(1_749_096_000_000)),
        other => panic!("{other:?}"),
    }
    let reopened = translate(
        &message
            .replace("ADT^A01^ADT_A01|A1", "ADT^A13^ADT_A01|A4")
            .replace("20250601095500\n", "20250601095500|20250605120000\n"),
    );
    match &reopened.events[0].payload {
        Payload::Encounter(e) => assert_eq!(e.end_time_ms, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hl7_times_read_with_and_without_an_offset_and_impossible_ones_do_not() {
    assert_eq!(hl7_time("20250601", 480), Some(1_748_707_200_000));
    assert_eq!(hl7_time("202506010800+0800", 0), Some(1_748_736_000_000));
    assert_eq!(
        hl7_time("20250601000000-0130", 480),
        Some(1_748_736_000_000 + 5_400_000)
    );
    assert_eq!(hl7_time("20250601083000.250", 480), Some(1_748_737_800_250));
    for bad in ["20251301", "20250230", "2025060125", "x", ""] {
        assert_eq!(hl7_time(bad, 480), None, "{bad}");
    }
}

#[test]
fn a_field_megabytes_long_and_multibyte_text_everywhere_never_panic() {
    let long = "患".repeat(700_000);
    let t = translate(&oru(&format!("OBX|1|NM|{long}||{long}|{long}|||||F\n")));
    assert_eq!(reasons(&t), vec!["unknown_local_code"]);
    assert!(
        t.copy.len() < 2_000,
        "the copy stays small: {}",
        t.copy.len()
    );
    let t = translate(&oru(&format!("OBX|1|NM|HBA1C||8|%|||||F|||{long}\n")));
    assert_eq!(reasons(&t), vec!["invalid_date"]);
    let t = translate(&format!(
        "{}{}",
        msh("ADT^A08^ADT_A01", "Z"),
        pid().replace("||19491231|F", &format!("||{long}|F"))
    ));
    assert_eq!(reasons(&t), vec!["missing_field"]);
}

#[test]
fn a_merge_is_one_event_of_the_prior_patient_naming_the_survivor() {
    let body = "33010619600101123";
    let prior = format!("{body}{}", crate::edge::resident_id::check_char(body));
    let key = PseudonymKey::from_bytes(&[3u8; 32]).unwrap();
    let merge = |mrg: &str| {
        translate(&format!(
            "{}EVN|A40|20250601100000\n{}MRG|{mrg}\n",
            msh("ADT^A40^ADT_A39", "G1"),
            pid()
        ))
    };
    let t = merge(&format!("OLD1^^^H0001^MR~{prior}^^^CHN^NNCHN"));
    assert_eq!(
        (t.code, t.events.len()),
        (AckCode::Accept, 1),
        "{:?}",
        t.refused
    );
    let event = &t.events[0];
    assert_eq!(event.patient_pseudonym, key.pseudonymise(&prior));
    assert_eq!(
        event.payload,
        Payload::PatientMerge(vigil_schemas::PatientMerge {
            surviving_pseudonym: key.pseudonymise(ID)
        })
    );
    assert_eq!(event.event_time_ms, 1_748_743_200_000);
    assert!(!event.record_id.contains(&prior) && !event.record_id.contains(ID));
    // A prior record without a resident ID was never Vigil's; one with a bad one is refused.
    let t = merge("OLD1^^^H0001^MR");
    assert_eq!((t.code, t.events.len()), (AckCode::Accept, 0));
    let t = merge("110105194912310021^^^CHN^NNCHN");
    assert_eq!(reasons(&t), vec!["invalid_patient_identifier"]);
}
