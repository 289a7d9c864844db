//! The notifier against a real HTTP receiver, the real broker and the real ClickHouse: one
//! hospital's endpoint fails for a while and recovers, another refuses, a third has no endpoint;
//! the notifier is killed with SIGKILL while alerts are still in flight and restarted. Every
//! alert an endpoint acknowledged was acknowledged exactly once, every signature verifies with
//! the hospital's own secret, and every outcome lands in ClickHouse and, where undeliverable, in
//! dead letters.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::receiver::Receiver;
use common::TestEnv;
use vigil_runtime::kafka::DurableProducer;
use vigil_runtime::time::now_ms;
use vigil_schemas::{Alert, AlertDelivery, AlertStatus, AvroCodec, Severity};

/// Recovers after failing: answers 503 until `recover` is called.
const FLAKY: &str = "H0001";
/// Answers 503 until the test lets it recover after the kill.
const DOWN_AT_KILL: &str = "H0002";
/// Refuses every request (404): its alerts are undeliverable at once.
const REFUSING: &str = "H0003";
/// Has no endpoint configured.
const UNCONFIGURED: &str = "H0004";
/// Alerts raised at DOWN_AT_KILL about patients FLAKY manages.
const MANAGED_BY_FLAKY: u32 = 5;

fn alert(n: u32, hospital: &str, status: AlertStatus, event_time_ms: i64) -> Alert {
    Alert {
        alert_id: format!("alert-{hospital}-{n:03}-{}", status.as_str()),
        episode_id: format!("episode-{hospital}-{n:03}"),
        rule_id: "hypertensive_crisis".into(),
        rule_version: 1,
        severity: Severity::Critical,
        status,
        sequence: 0,
        hospital_id: hospital.into(),
        department_code: "CARD".into(),
        patient_pseudonym: format!("patient-{hospital}-{n:03}"),
        event_time_ms,
        episode_start_ms: event_time_ms,
        trigger_event_id: format!("event-{hospital}-{n:03}"),
        value: Some(185.0),
        unit: "mm[Hg]".into(),
        threshold: "SBP >= 180".into(),
        message: "Hypertensive crisis: SBP 185 mmHg".into(),
        source: "CLINICAL.md".into(),
        actor: String::new(),
        managing_hospital_id: hospital.into(),
    }
}

#[test]
fn alerts_reach_each_hospital_once_through_failures_and_a_crash() {
    let dir = std::env::temp_dir().join(common::unique("notify-files"));
    std::fs::create_dir_all(&dir).unwrap();
    let secrets: HashMap<String, Vec<u8>> = [FLAKY, DOWN_AT_KILL, REFUSING]
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_string(), vec![i as u8 + 1; 32]))
        .collect();
    let receiver = Receiver::start(secrets.clone(), &[REFUSING], false);
    let endpoints: String = [FLAKY, DOWN_AT_KILL, REFUSING]
        .iter()
        .map(|h| {
            format!(
                "[[endpoint]]\nhospital_id = \"{h}\"\nurl = \"http://127.0.0.1:{}/hospitals/{h}/alerts?token=not-for-logs\"\n\n",
                receiver.port
            )
        })
        .collect();
    std::fs::write(dir.join("endpoints.toml"), endpoints).unwrap();
    let secrets_toml: String = secrets
        .iter()
        .map(|(h, s)| format!("{h} = \"{}\"\n", hex::encode(s)))
        .collect();
    std::fs::write(dir.join("secrets.toml"), secrets_toml).unwrap();
    let env = TestEnv::new(
        "notify",
        2,
        &format!(
            "[notify]\ngroup_id = \"notify-{}\"\nendpoints_file = \"{}\"\nsecrets_file = \"{}\"\n\
             create_secrets_if_missing = false\ninitial_retry_backoff = \"100ms\"\nmax_retry_backoff = \"400ms\"\n",
            common::unique("g"),
            dir.join("endpoints.toml").display(),
            dir.join("secrets.toml").display()
        ),
    );
    env.run_vigil(&["topics"], Duration::from_secs(60));

    // 20 + 20 fresh alerts for the two endpoints that fail for a while (5 of the second's are
    // about patients the first manages: both hospitals hear of those), 3 for the refusing one,
    // 2 for the hospital without an endpoint, 4 acknowledgements (not notified), 1 alert about a
    // two-year-old event (stale, not sent), and 1 record that is not an alert at all.
    let now = now_ms();
    let mut alerts = Vec::new();
    for n in 0..20 {
        alerts.push(alert(n, FLAKY, AlertStatus::Raised, now - 60_000));
        let mut seen_elsewhere = alert(n, DOWN_AT_KILL, AlertStatus::Raised, now - 60_000);
        if n < MANAGED_BY_FLAKY {
            seen_elsewhere.managing_hospital_id = FLAKY.into();
        }
        alerts.push(seen_elsewhere);
    }
    for n in 0..3 {
        alerts.push(alert(n, REFUSING, AlertStatus::Raised, now - 60_000));
    }
    for n in 0..2 {
        alerts.push(alert(n, UNCONFIGURED, AlertStatus::Raised, now - 60_000));
        alerts.push(alert(n, FLAKY, AlertStatus::Acknowledged, now - 30_000));
        alerts.push(alert(
            n,
            DOWN_AT_KILL,
            AlertStatus::Acknowledged,
            now - 30_000,
        ));
    }
    alerts.push(alert(
        99,
        FLAKY,
        AlertStatus::Raised,
        now - 2 * 365 * 86_400_000,
    ));
    let keyed: Vec<(String, Alert)> = alerts
        .iter()
        .map(|a| (a.patient_pseudonym.clone(), a.clone()))
        .collect();
    env.produce(&env.kafka.topics.alerts, &keyed);
    let producer = DurableProducer::new(&env.kafka, "vigil-test").unwrap();
    producer
        .send(&env.kafka.topics.alerts, b"garbage", b"not an alert")
        .unwrap();
    // A record without a value: as unusable as garbage, and dead-lettered alike.
    producer
        .send_tombstone(&env.kafka.topics.alerts, b"null")
        .unwrap();
    producer.flush().unwrap();

    // Both endpoints fail at first; the flaky one recovers while the notifier retries.
    let mut notifier = env.spawn_vigil(&["notify"], "notify-1.log");
    assert!(
        common::eventually(Duration::from_secs(60), || {
            receiver
                .received()
                .iter()
                .any(|r| r.hospital == FLAKY && r.status == 503)
        }),
        "the notifier never tried the failing endpoint:\n{}",
        env.log("notify-1.log")
    );
    receiver.set_healthy(FLAKY, true);

    // Everything but the still-failing hospital finishes and is recorded; then a SIGKILL.
    // flaky (its own and its patients'), refused, unconfigured, stale; garbage and null have
    // no alert id to record
    let finished_before_kill = 20 + 5 + 3 + 2 + 1;
    assert!(
        common::eventually(Duration::from_secs(120), || {
            common::read_topic(&env.kafka, &env.kafka.topics.alert_deliveries).len()
                >= finished_before_kill
        }),
        "the outcomes were not recorded:\n{}",
        env.log("notify-1.log")
    );
    std::thread::sleep(Duration::from_secs(1)); // past a commit interval
    notifier.sigkill();
    assert_eq!(receiver.acknowledged(DOWN_AT_KILL).len(), 0);

    // The restarted notifier delivers the rest, and nothing acknowledged a second time: not the
    // managing hospital's copies of alerts whose other delivery was still pending at the kill.
    receiver.set_healthy(DOWN_AT_KILL, true);
    let output = env.run_vigil(&["notify", "--until-idle", "3"], Duration::from_secs(180));
    let summary: serde_json::Value =
        serde_json::from_str(output.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(summary["delivered"], 20, "{output}");
    assert_eq!(summary["undeliverable"], 0, "{output}");

    for hospital in [FLAKY, DOWN_AT_KILL] {
        let mut acknowledged = receiver.acknowledged(hospital);
        acknowledged.sort();
        let mut expected: Vec<String> = (0..20)
            .map(|n| alert(n, hospital, AlertStatus::Raised, 0).alert_id)
            .collect();
        if hospital == FLAKY {
            // Its patients' alerts raised at the other hospital: keyed apart from that one's.
            expected.extend((0..MANAGED_BY_FLAKY).map(|n| {
                let id = alert(n, DOWN_AT_KILL, AlertStatus::Raised, 0).alert_id;
                format!("{id}@{FLAKY}")
            }));
        }
        expected.sort();
        assert_eq!(
            acknowledged, expected,
            "{hospital}: each alert acknowledged exactly once"
        );
    }
    let received = receiver.received();
    assert!(
        received.iter().all(|r| r.signature_valid),
        "a signature failed"
    );
    assert!(received.iter().all(|r| r.hospital != UNCONFIGURED));
    assert!(
        received
            .iter()
            .all(|r| !r.idempotency_key.contains("ACKNOWLEDGED")
                && !r.idempotency_key.contains("099"))
    );
    assert_eq!(
        received.iter().filter(|r| r.hospital == REFUSING).count(),
        3,
        "a refusal is final: one request per alert"
    );
    let sample = received.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(sample.body["schema"], "vigil.alert/1");
    assert_eq!(sample.body["alert_id"], sample.idempotency_key.as_str());
    let managed = received
        .iter()
        .find(|r| r.status == 200 && r.idempotency_key.ends_with(&format!("@{FLAKY}")))
        .unwrap();
    assert_eq!(managed.hospital, FLAKY);
    assert_eq!(managed.body["hospital_id"], DOWN_AT_KILL);
    assert_eq!(managed.body["managing_hospital_id"], FLAKY);
    assert_eq!(managed.body["recipient_hospital_id"], FLAKY);

    // The recorded outcomes: one per alert, the endpoint shown without its query string.
    let codec = AvroCodec::<AlertDelivery>::new().unwrap();
    let recorded: Vec<AlertDelivery> =
        common::read_topic(&env.kafka, &env.kafka.topics.alert_deliveries)
            .iter()
            .map(|bytes| codec.decode(bytes).unwrap())
            .collect();
    assert!(recorded.iter().all(|d| !d.endpoint.contains("token")));

    // ClickHouse: the deliveries and the dead letters.
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["sink", "--until-idle", "3"], Duration::from_secs(180));
    let outcomes = env.query(
        "SELECT hospital_id, outcome, count() FROM {db}.alert_deliveries FINAL \
         GROUP BY hospital_id, outcome ORDER BY hospital_id, outcome",
    );
    assert_eq!(
        outcomes,
        vec![
            "H0001\tDELIVERED\t25",
            "H0001\tSTALE\t1",
            "H0002\tDELIVERED\t20",
            "H0003\tUNDELIVERABLE\t3",
            "H0004\tUNDELIVERABLE\t2",
        ]
    );
    let letters = env.query(
        "SELECT reason_code, count() FROM {db}.dead_letters FINAL WHERE stage = 'notify' \
         GROUP BY reason_code ORDER BY reason_code",
    );
    assert_eq!(
        letters,
        vec![
            "no_endpoint\t2",
            "undecodable_alert\t2",
            "undeliverable_alert\t3"
        ]
    );
    let summary_view = env.scalar(
        "SELECT sum(delivered), sum(undeliverable), sum(stale) FROM {db}.alert_delivery_summary",
    );
    assert_eq!(summary_view, "45\t5\t1");
    let _ = std::fs::remove_dir_all(&dir);
}
