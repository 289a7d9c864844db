//! HL7 v2 over MLLP, end to end: a real MLLP client (the `hl7` library from PyPI) sends
//! results and ADT messages to `vigil ingest --mllp`, reads the acknowledgements with the same
//! library, and what they became is checked in ClickHouse after the processor and the writer:
//! events, the alert a crisis reading raises (once, though its message came twice), the visit a
//! cancel retracts, and a dead letter with its reason for every refusal, with no identifier in
//! any of them or in the logs; a merge (A40) moves the prior patient's history to the survivor.
//! Without a broker, nothing is acknowledged as taken.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestEnv;
use vigil_runtime::time::now_ms;

const ID: &str = "11010519491231002X";
const MRN: &str = "MRN0042";

/// Sends each message (text, or `hex:` bytes) over one MLLP connection and prints, per
/// acknowledgement as the library parses it, [MSA-1, MSA-2, MSA-3, the ERR reasons].
const CLIENT: &str = r#"
import json, sys
import hl7, hl7.client
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
answers = []
with hl7.client.MLLPClient(host, port) as client:
    for message in json.load(open(path)):
        data = bytes.fromhex(message[4:]) if message.startswith("hex:") else message.encode()
        raw = client.send_message(data).decode()
        ack = hl7.parse(raw.strip("\x0b\x1c\r"))
        msa = ack.segment("MSA")
        errors = [str(s[8]).split(":")[0] for s in ack if str(s[0]) == "ERR" and len(s) > 8]
        answers.append([str(msa[1]), str(msa[2]), str(msa[3]), errors])
print(json.dumps(answers))
"#;

/// An HL7 time `minutes_ago` before now, at UTC+8.
fn hl7_time(minutes_ago: i64) -> String {
    let local = now_ms() - minutes_ago * 60_000 + 8 * 3_600_000;
    let days = local.div_euclid(86_400_000) as i32;
    let (y, m, d) = vigil_runtime::time::civil_from_days(days);
    let s = local.rem_euclid(86_400_000) / 1000;
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0800",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn msh(facility: &str, kind: &str, control: &str) -> String {
    format!(
        "MSH|^~\\&|HIS|{facility}|VIGIL|PROVINCE|{}||{kind}|{control}|P|2.5.1\r",
        hl7_time(0)
    )
}

fn pid() -> String {
    format!("PID|1||{MRN}^^^H0001^MR~{ID}^^^CHN^NNCHN||王^芳||19491231|F|||中山路1号^^杭州^浙江^^CHN^H^^330106\r")
}

fn visit() -> String {
    format!(
        "PV1|1|O|NEIKE||||||||||||||||V777|||||||||||||||||||||||||{}\r",
        hl7_time(60)
    )
}

fn result(control: &str, observations: &[(&str, &str, &str)]) -> String {
    let mut message = format!(
        "{}{}OBR|1||F-{control}|PANEL|||{}\r",
        msh("H0001", "ORU^R01^ORU_R01", control),
        pid(),
        hl7_time(10)
    );
    for (i, (code, value, unit)) in observations.iter().enumerate() {
        message.push_str(&format!("OBX|{}|NM|{code}||{value}|{unit}|||||F\r", i + 1));
    }
    message
}

fn send(
    env: &TestEnv,
    port: u16,
    messages: &[String],
) -> Vec<(String, String, String, Vec<String>)> {
    let path = env.path("messages.json");
    std::fs::write(&path, serde_json::to_string(messages).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-c", CLIENT, "127.0.0.1", &port.to_string()])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the MLLP client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn listening(port: u16) -> bool {
    common::eventually(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

#[test]
fn hl7_messages_over_mllp_are_acknowledged_once_durable_and_land_as_their_events() {
    let env = TestEnv::new("hl7", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = env.vigil(&["ingest", "--mllp", &listen, "--until-idle", "5"]);
    command.env("VIGIL_INGEST__MLLP_MAX_MESSAGE", "8192");
    let log = env.path("mllp.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut edge = common::ChildGuard(Some(
        command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    ));
    assert!(listening(port), "the MLLP listener came up");

    let admission = format!(
        "{}EVN|A04|{}\r{}{}DG1|1||I10^Essential hypertension^I10||{}|F\r",
        msh("H0001", "ADT^A04^ADT_A01", "ADT-1"),
        hl7_time(60),
        pid(),
        visit(),
        hl7_time(55)
    );
    let crisis = result(
        "LAB-1",
        &[("SBP", "190", "mm[Hg]"), ("DBP", "120", "mm[Hg]")],
    );
    let cancel = format!(
        "{}EVN|A11|{}\r{}{}",
        msh("H0001", "ADT^A11^ADT_A09", "ADT-2"),
        hl7_time(1),
        pid(),
        visit()
    );
    let messages = vec![
        admission,
        crisis.clone(),
        result("LAB-2", &[("HBA1C", "8.2", "%")]),
        // The crisis again, as a sender does when an acknowledgement was lost.
        crisis,
        result("LAB-3", &[("XYZ", "1", "%"), ("GLU", "7.1", "mmol/L")]),
        format!("{}{}", msh("H0001", "SIU^S12^SIU_S12", "ADT-3"), pid()),
        result("LAB-4", &[("HBA1C", "7", "%")]).replace("|H0001|", "|H9999|"),
        format!("hex:{}", hex::encode(b"MSH|^~\\&|\xff\xfe not text")),
        result("LAB-5", &[("HBA1C", &"9".repeat(9000), "%")]),
        cancel,
    ];
    let answers = send(&env, port, &messages);
    let codes: Vec<(&str, &str, Vec<String>)> = answers
        .iter()
        .map(|(code, control, _, errors)| (code.as_str(), control.as_str(), errors.clone()))
        .collect();
    let e = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        codes,
        vec![
            ("AA", "ADT-1", e(&[])),
            ("AA", "LAB-1", e(&[])),
            ("AA", "LAB-2", e(&[])),
            ("AA", "LAB-1", e(&[])),
            ("AE", "LAB-3", e(&["unknown_local_code"])),
            ("AR", "ADT-3", e(&["unsupported_message"])),
            ("AR", "LAB-4", e(&["unknown_hospital"])),
            ("AR", "", e(&["malformed_record"])),
            ("AR", "", e(&["record_too_large"])),
            ("AA", "ADT-2", e(&[])),
        ],
        "{answers:?}"
    );
    assert_eq!(answers[0].2, "accepted as 3 event(s)");
    assert!(
        edge.wait_with_limit(Duration::from_secs(60)),
        "the edge stops when idle"
    );

    env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(300));
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    let events: BTreeMap<String, u64> = env
        .query(
            "SELECT concat(kind, '/', operation), uniqExact(event_id) FROM {db}.clinical_events \
             WHERE source_system LIKE 'hl7v2/%' GROUP BY kind, operation",
        )
        .iter()
        .map(|l| {
            let (k, n) = l.split_once('\t').unwrap();
            (k.to_string(), n.parse().unwrap())
        })
        .collect();
    let expected: BTreeMap<String, u64> = [
        ("diagnosis/UPDATE", 1),
        ("encounter/DELETE", 1),
        ("encounter/UPDATE", 1),
        ("lab_result/CREATE", 2),
        ("patient_registration/CREATE", 1),
        ("vital_sign/CREATE", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(events, expected);
    // One crisis alert for the reading, though its message came twice.
    assert_eq!(
        env.scalar(
            "SELECT count(), uniqExact(patient_pseudonym) FROM {db}.alerts FINAL \
             WHERE rule_id = 'hypertensive_crisis' AND status = 'RAISED'"
        ),
        "1\t1"
    );
    let expected_letters: BTreeMap<String, u64> = [
        ("malformed_record", 1),
        ("record_too_large", 1),
        ("unknown_hospital", 1),
        ("unknown_local_code", 1),
        ("unsupported_message", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(env.dead_letters_by_reason("ingest"), expected_letters);
    // No identifier past the edge: not in a table, not in the edge's log.
    let everything = [
        env.query("SELECT * FROM {db}.dead_letters").join("\n"),
        env.query("SELECT * FROM {db}.clinical_events").join("\n"),
        std::fs::read_to_string(&log).unwrap(),
    ]
    .join("\n");
    for secret in [ID, MRN, "王", "中山路", "F-LAB"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn a_message_the_broker_did_not_take_is_refused_and_taken_when_sent_again() {
    let broker = common::OwnBroker::start("hl7");
    let services = common::services();
    let mut env = TestEnv::on_own_services(
        "hl7_down",
        1,
        "",
        &broker.brokers(),
        &services.clickhouse_url,
        &services.clickhouse_credentials,
    );
    env.set_override("VIGIL_KAFKA__DELIVERY_TIMEOUT", "3s");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _edge = env.spawn_vigil(&["ingest", "--mllp", &listen], "mllp.log");
    assert!(listening(port), "the MLLP listener came up");
    let before = result("LAB-8", &[("HBA1C", "8.2", "%")]);
    assert_eq!(send(&env, port, &[before])[0].0, "AA");

    // The broker dies: the edge cannot make the next message durable, so it does not take it.
    broker.crash();
    let during = result("LAB-9", &[("HBA1C", "9.1", "%")]);
    let answers = send(&env, port, std::slice::from_ref(&during));
    let (code, control, text, errors) = &answers[0];
    assert_eq!((code.as_str(), control.as_str()), ("AR", "LAB-9"), "{text}");
    assert!(text.contains("send the message again"), "{text}");
    assert!(
        errors.is_empty(),
        "no refusal reason: it was not refused for its content"
    );

    // Back: the sender sends it again, and it is taken once.
    broker.start_again();
    assert!(listening(port), "the edge listens again after its restart");
    let again = common::eventually(Duration::from_secs(60), || {
        send(&env, port, std::slice::from_ref(&during))[0].0 == "AA"
    });
    assert!(
        again,
        "the message is taken once the broker is back:\n{}",
        env.log("mllp.log")
    );
    env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(300));
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    assert_eq!(
        env.query(
            "SELECT value FROM {db}.clinical_events FINAL WHERE kind = 'lab_result' ORDER BY value"
        ),
        vec!["8.2", "9.1"]
    );
    assert_eq!(env.dead_letters_by_reason("ingest"), BTreeMap::new());
}

#[test]
fn a_merge_moves_the_prior_patients_history_to_the_surviving_patient() {
    let env = TestEnv::new("hl7_merge", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut edge = env.spawn_vigil(
        &["ingest", "--mllp", &listen, "--until-idle", "5"],
        "mllp.log",
    );
    assert!(listening(port), "the MLLP listener came up");
    let body = "33010619600101123";
    let survivor = format!(
        "{body}{}",
        vigil_producers::edge::resident_id::check_char(body)
    );
    let admission = format!(
        "{}EVN|A04|{}\r{}{}DG1|1||I10^Essential hypertension^I10||{}|F\r",
        msh("H0001", "ADT^A04^ADT_A01", "ADT-1"),
        hl7_time(60),
        pid(),
        visit(),
        hl7_time(55)
    );
    let merge = format!(
        "{}EVN|A40|{}\r{}MRG|{MRN}^^^H0001^MR~{ID}^^^CHN^NNCHN\r",
        msh("H0001", "ADT^A40^ADT_A39", "ADT-9"),
        hl7_time(1),
        pid().replace(ID, &survivor).replace(MRN, "MRN0099")
    );
    let messages = vec![
        admission,
        result(
            "LAB-1",
            &[
                ("HBA1C", "8.2", "%"),
                ("SBP", "150", "mm[Hg]"),
                ("DBP", "95", "mm[Hg]"),
            ],
        ),
        merge,
    ];
    let answers = send(&env, port, &messages);
    let codes: Vec<&str> = answers.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(codes, ["AA", "AA", "AA"], "{answers:?}");
    assert_eq!(answers[2].2, "accepted as 1 event(s)");
    assert!(
        edge.wait_with_limit(Duration::from_secs(60)),
        "the edge stops when idle"
    );

    // The processor moves the prior patient's facts through the events topic to the survivor.
    let processed = env.run_vigil(&["process", "--until-idle", "3"], Duration::from_secs(300));
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(300));
    let key = vigil_producers::pseudonym::PseudonymKey::from_bytes(
        &hex::decode(common::TEST_KEY).unwrap(),
    )
    .unwrap();
    let (prior, surviving) = (key.pseudonymise(ID), key.pseudonymise(&survivor));
    assert_eq!(
        env.query(&format!(
            "SELECT kind, count() FROM {{db}}.clinical_events FINAL \
             WHERE patient_pseudonym = '{surviving}' AND source_system = 'vigil/merge' \
             GROUP BY kind ORDER BY kind"
        )),
        [
            "diagnosis\t1",
            "lab_result\t1",
            "patient_registration\t1",
            "vital_sign\t1"
        ],
        "{processed}"
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT count() FROM {{db}}.clinical_events FINAL \
             WHERE kind = 'patient_merge' AND patient_pseudonym = '{prior}' AND code = '{surviving}'"
        )),
        "1"
    );
    let everything = [
        env.query("SELECT * FROM {db}.clinical_events").join("\n"),
        env.log("mllp.log"),
    ]
    .join("\n");
    for secret in [ID, survivor.as_str(), MRN, "MRN0099"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}
