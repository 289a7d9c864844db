//! `vigil backtest` against the real ClickHouse: replaying the live rules reproduces, episode
//! for episode, what the pipeline raised; a candidate that raises the crisis threshold drops
//! exactly the hand-made patient between the two thresholds and changes no other rule; a rules
//! file with an error is refused, naming the field, before anything is read; the reports are on
//! `vigil serve`'s backtest pages for whom they concern (in Debian's headless Chromium).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::webdriver::Browser;
use common::{get, TestEnv};
use vigil_schemas::{
    ClinicalEvent, Condition, PatientRegistration, Payload, ProgrammeEnrolment, Sex,
};

const FROM: &str = "2025-09-01";
/// Before the history ends (2026-06-30), so the live watermarks passed every timer due by then.
const TO: &str = "2026-06-01";

/// 2026-03-10T10:00:00+08:00
const READING_MS: i64 = 1_773_108_000_000;
const DAY_MS: i64 = 86_400_000;

/// Three patients at a hospital of their own (its own clock): systolic 185 (a crisis under the
/// live rules only), 195 (under both), 150 (under neither).
fn fixture() -> Vec<(String, ClinicalEvent)> {
    let mut events = Vec::new();
    for (n, systolic) in [185.0, 195.0, 150.0].into_iter().enumerate() {
        let patient = format!("{:02x}", 0xe0 + n).repeat(32);
        let registration = Payload::PatientRegistration(PatientRegistration {
            sex: Sex::Male,
            birth_year: 1950,
            region_code: "330106".into(),
            programmes: vec![ProgrammeEnrolment {
                condition: Condition::Hypertension,
                enrolled_time_ms: READING_MS - 9 * DAY_MS,
            }],
            death_time_ms: None,
        });
        let at = |(key, mut event): (String, ClinicalEvent)| {
            event.hospital_id = "H0901".into();
            (key, event)
        };
        events.push(at(common::canonical(
            &patient,
            &format!("fx-pat-{n}"),
            READING_MS - 9 * DAY_MS,
            registration,
        )));
        events.push(at(common::vital_signs(
            &patient,
            &format!("fx-bp-{n}"),
            READING_MS + n as i64 * 3_600_000,
            systolic,
            95.0,
        )));
        // Normal again two days later: the episodes resolve.
        events.push(at(common::vital_signs(
            &patient,
            &format!("fx-bp2-{n}"),
            READING_MS + 2 * DAY_MS + n as i64 * 3_600_000,
            130.0,
            80.0,
        )));
    }
    events
}

fn episodes(dir: &std::path::Path, side: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("episodes-{side}.jsonl")))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn ids(
    episodes: &[serde_json::Value],
    keep: impl Fn(&serde_json::Value) -> bool,
) -> BTreeSet<String> {
    episodes
        .iter()
        .filter(|e| keep(e))
        .map(|e| e["episode_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn backtests_reproduce_the_live_alerts_and_show_what_a_threshold_change_drops() {
    let mut env = TestEnv::new("backtest", 2, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_vigil(
        &[
            "simulate",
            "--output",
            "canonical",
            "--patients",
            "600",
            "--hospitals",
            "3",
            "--days",
            "420",
            "--end-date",
            "2026-06-30",
            "--seed",
            "23",
        ],
        Duration::from_secs(300),
    );
    env.produce(&env.kafka.topics.clinical_events, &fixture());
    env.run_vigil(&["up", "--until-idle", "3"], Duration::from_secs(600));

    // 1. The live rules over the period: the episodes the pipeline raised, one for one.
    let live_dir = env.path("backtest-live");
    let report = env.run_vigil(
        &[
            "backtest",
            "--from",
            FROM,
            "--to",
            TO,
            "--out",
            live_dir.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    let from_ms = 1_756_656_000_000i64; // 2025-09-01T00:00+08:00
    let to_ms = 1_780_243_200_000i64; // 2026-06-01T00:00+08:00
    let raised: BTreeSet<String> = env
        .query(&format!(
            "SELECT DISTINCT episode_id FROM {{db}}.alerts FINAL WHERE status = 'RAISED' \
             AND event_time_ms >= {from_ms} AND event_time_ms < {to_ms}"
        ))
        .into_iter()
        .collect();
    assert!(
        raised.len() > 100,
        "the history should raise plenty: {}",
        raised.len()
    );
    let baseline = episodes(&live_dir, "baseline");
    let replayed = ids(&baseline, |_| true);
    assert_eq!(
        replayed.symmetric_difference(&raised).count(),
        0,
        "only replayed: {:?}\nonly live: {:?}\n{report}",
        replayed.difference(&raised).take(5).collect::<Vec<_>>(),
        raised.difference(&replayed).take(5).collect::<Vec<_>>()
    );
    assert_eq!(ids(&episodes(&live_dir, "candidate"), |_| true), replayed);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(live_dir.join("report.json")).unwrap())
            .unwrap();
    assert!(json["only_candidate"].as_array().unwrap().is_empty());
    assert!(json["only_baseline"].as_array().unwrap().is_empty());
    assert!(json["events_replayed"].as_u64().unwrap() > 10_000, "{json}");
    assert!(std::fs::read_to_string(live_dir.join("report.html"))
        .unwrap()
        .contains("<h2>Per rule and hospital"));

    // 2. The crisis threshold raised from 180 to 190 mmHg systolic.
    let rules = std::fs::read_to_string(common::repo_path("processors/rules/default.toml"))
        .unwrap()
        .replacen("systolic_mmhg = 180.0", "systolic_mmhg = 190.0", 1);
    let candidate_file = env.path("candidate.toml");
    std::fs::write(&candidate_file, rules).unwrap();
    let candidate_dir = env.path("backtest-candidate");
    env.run_vigil(
        &[
            "backtest",
            "--rules",
            candidate_file.to_str().unwrap(),
            "--from",
            FROM,
            "--to",
            TO,
            "--out",
            candidate_dir.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    let (baseline, candidate) = (
        episodes(&candidate_dir, "baseline"),
        episodes(&candidate_dir, "candidate"),
    );
    let crisis = |e: &serde_json::Value| e["rule_id"] == "hypertensive_crisis";
    let other = |e: &serde_json::Value| !crisis(e);
    assert_eq!(
        ids(&baseline, other),
        ids(&candidate, other),
        "other rules are unchanged"
    );
    assert!(ids(&candidate, crisis).len() < ids(&baseline, crisis).len());
    let fixture_patients = |episodes: &[serde_json::Value]| -> Vec<String> {
        episodes
            .iter()
            .filter(|e| crisis(e) && e["managing_hospital_id"] == "H0901")
            .map(|e| e["patient_pseudonym"].as_str().unwrap()[..2].to_string())
            .collect()
    };
    assert_eq!(fixture_patients(&baseline), ["e0", "e1"]);
    assert_eq!(fixture_patients(&candidate), ["e1"]);
    // The report for the fixture's hospital alone says so.
    let hospital_dir = env.path("backtest-h0901");
    env.run_vigil(
        &[
            "backtest",
            "--rules",
            candidate_file.to_str().unwrap(),
            "--from",
            FROM,
            "--to",
            TO,
            "--hospital",
            "H0901",
            "--out",
            hospital_dir.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hospital_dir.join("report.json")).unwrap())
            .unwrap();
    let row = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule_id"] == "hypertensive_crisis" && r["hospital_id"] == "H0901")
        .unwrap();
    assert_eq!(row["managed_patients"], 3, "{row}");
    assert_eq!(
        (
            &row["baseline"]["episodes"],
            &row["candidate"]["episodes"],
            &row["difference"]["episodes"]
        ),
        (&2.into(), &1.into(), &(-1).into())
    );
    assert_eq!(row["baseline"]["median_episode_hours"], 48.0);
    let only = &json["only_baseline"][0];
    assert_eq!(
        (&only["episodes"], &only["patients"]),
        (&1.into(), &1.into())
    );
    assert_eq!(only["samples"][0]["patient_pseudonym"], "e0".repeat(32));
    assert!(json["only_candidate"].as_array().unwrap().is_empty());

    // 3. A rules file with an error: refused, naming the field, before any replay.
    for (wrong, field) in [
        ("systolic_mmhg = 190.0", "systolic_mmhg = -1.0"),
        ("systolic_mmhg = 190.0", "systolic_mmhg = \"high\""),
    ] {
        let text = std::fs::read_to_string(&candidate_file)
            .unwrap()
            .replacen(wrong, field, 1);
        let bad = env.path("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let (ok, _, output) = env.try_command(
            env.vigil(&[
                "backtest",
                "--rules",
                bad.to_str().unwrap(),
                "--from",
                FROM,
                "--to",
                TO,
            ]),
            Duration::from_secs(60),
        );
        assert!(!ok, "{output}");
        assert!(
            output.contains("systolic_mmhg"),
            "the field is named: {output}"
        );
        assert!(
            !output.contains("Backtest replay"),
            "nothing was replayed: {output}"
        );
    }

    // 4. The reports on the dashboard's backtest pages, for whom they concern.
    reports_are_served_to_whom_they_concern(&mut env);
}

fn reports_are_served_to_whom_they_concern(env: &mut TestEnv) {
    let commission = env.mint_token("commission");
    let centre = env.mint_token("hospital:H0901");
    let other = env.mint_token("hospital:H0001");
    let insurance = env.mint_token("insurance");
    let port = common::free_port();
    env.set_override("VIGIL_SERVE__LISTEN", &format!("127.0.0.1:{port}"));
    let _serve = env.spawn_vigil(&["serve"], "serve.log");
    assert!(
        common::eventually(Duration::from_secs(30), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "{}",
        env.log("serve.log")
    );
    let list = |token: &str| -> Vec<serde_json::Value> {
        let (status, body) = get(port, token, "/api/v1/backtests");
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["backtests"].as_array().unwrap().clone()
    };
    let everything = list(&commission);
    assert_eq!(everything.len(), 3, "{everything:?}");
    let own = list(&centre);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["hospital_id"], "H0901");
    assert!(list(&other).is_empty());
    assert_eq!(get(port, &insurance, "/api/v1/backtests").0, 403);
    assert_eq!(get(port, "", "/backtests").0, 401);

    let regional = everything
        .iter()
        .find(|r| {
            r["hospital_id"] == ""
                && r["candidate_rules"]
                    .as_str()
                    .unwrap()
                    .ends_with("candidate.toml")
        })
        .unwrap();
    let path = format!(
        "/api/v1/backtests/{}",
        regional["report_id"].as_str().unwrap()
    );
    assert_eq!(
        get(port, &centre, &path).0,
        404,
        "another hospital's patients"
    );
    let (status, body) = get(port, &commission, &path);
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["only_baseline"][0]["rule_id"], "hypertensive_crisis");

    // In the browser: the list, then the report a click away.
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/?token={centre}"));
    browser.open(&format!("http://127.0.0.1:{port}/backtests"));
    let links = "return Array.from(document.querySelectorAll('#backtests a')).map(a => a.href)";
    let hrefs = browser.run(links);
    let hrefs = hrefs.as_array().unwrap();
    assert_eq!(hrefs.len(), 1, "{hrefs:?}");
    browser.open(hrefs[0].as_str().unwrap());
    let row = "return Array.from(document.querySelectorAll('tr')).map(r => r.innerText)\
               .find(t => t.startsWith('hypertensive_crisis\tH0901')) || ''";
    let text = browser.run(row);
    assert!(
        text.as_str().unwrap().contains("2 → 1 (-1)"),
        "the report's row for the centre: {text}"
    );
}
