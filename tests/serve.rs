//! `vigil serve` against the real ClickHouse: fixture status rows whose figures are computed by
//! hand here, the JSON API, and the page in Debian's headless Chromium driven through its
//! chromedriver (the numbers on screen equal the API's; Chinese by default, English by the
//! switch; "—" for an empty denominator; a new alert on an open page within 5 s of landing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use common::webdriver::Browser;
use common::{get, request, TestEnv};

const DAY_MS: i64 = 86_400_000;
const OFFSET_MS: i64 = 8 * 3_600_000;

/// (year, month) of the reporting time zone's today, shifted by `months`.
fn local_month(months: i32) -> (i32, u32) {
    let today = (vigil_runtime::time::now_ms() + OFFSET_MS).div_euclid(DAY_MS) as i32;
    let (y, m, _) = vigil_runtime::time::civil_from_days(today);
    let index = y * 12 + m as i32 - 1 + months;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

/// Where a fixture row belongs: (patient, hospital, condition, period kind, period start).
type RowAt<'a> = (usize, &'a str, &'a str, &'a str, &'a str);

/// One patient-status row (the columns the figures use; the rest take their defaults): flags
/// are managed, standardised, controlled, a new complication, at high risk. Even patients live
/// in county 330106, odd ones in 330108; patients 0-3 are managed by cardiology (CARD), 4-9 by
/// no recorded department, 10 and up by nephrology (NEPH).
fn status_row((patient, hospital, condition, kind, start): RowAt<'_>, flags: [u8; 5]) -> String {
    let [managed, standardised, controlled, complication, high] = flags;
    let risk = if high == 1 { "VERY_HIGH" } else { "LOW" };
    let region = if patient % 2 == 0 { "330106" } else { "330108" };
    let department = match patient {
        0..=3 => "CARD",
        4..=9 => "",
        _ => "NEPH",
    };
    format!(
        "('s-{patient}-{condition}-{kind}-{start}', 2, 'cn-nbphs-2017/v1', 'p{patient}', \
         '{hospital}', '{region}', '{department}', '{condition}', '{kind}', '{start}', {managed}, \
         {days}, {standardised}, {controlled}, {complication}, '{risk}')",
        days = if managed == 1 { 365 } else { 0 }
    )
}

/// The text of the element with `id` on the page.
fn text_of(browser: &Browser, id: &str) -> String {
    let script =
        format!("const e = document.getElementById('{id}'); return e ? e.textContent : null");
    match browser.run(&script) {
        serde_json::Value::String(text) => text,
        other => panic!("#{id}: {other}"),
    }
}

fn wait_until_loaded(browser: &Browser) {
    let loaded = "return document.body.dataset.loaded === 'true'";
    assert!(
        common::eventually(Duration::from_secs(20), || browser.run(loaded) == true),
        "the page loaded its figures"
    );
}

#[test]
fn the_dashboard_shows_the_figures_of_the_api_in_chinese_and_english() {
    let mut env = TestEnv::new("serve", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    let (year, _) = local_month(0);
    let year_start = format!("{year}-01-01");
    let month = |m: i32| {
        let (y, m) = local_month(m);
        format!("{y}-{m:02}-01")
    };
    // Hypertension this year at H0001: 8 managed, 3 standardised, 5 controlled, 1 new
    // complication over 8 × 365 managed days; one row also has an older version that FINAL
    // must not count. At H0002: 2 managed, both standardised, none controlled, one at very high
    // risk. Together: 10 managed, 5 standardised (50%), 5 controlled (50%), 1 complication over
    // 7.995 + 1.999 patient-years. Diabetes at H0001: 2 patients, none managed: every rate is
    // "—", never 0%.
    let mut rows = Vec::new();
    for p in 0..8 {
        let flags = [1, u8::from(p < 3), u8::from(p < 5), u8::from(p == 0), 0];
        let current = [1, 0, u8::from(p < 2), 0, 0];
        rows.push(status_row(
            (p, "H0001", "HYPERTENSION", "YEAR", &year_start),
            flags,
        ));
        rows.push(status_row(
            (p, "H0001", "HYPERTENSION", "MONTH", &month(-1)),
            flags,
        ));
        rows.push(status_row(
            (p, "H0001", "HYPERTENSION", "MONTH", &month(0)),
            current,
        ));
    }
    for p in 8..10 {
        let flags = [0, 0, 0, 0, 0];
        rows.push(status_row(
            (p, "H0001", "DIABETES", "YEAR", &year_start),
            flags,
        ));
    }
    for p in 10..12 {
        let flags = [1, 1, 0, 0, u8::from(p == 10)];
        rows.push(status_row(
            (p, "H0002", "HYPERTENSION", "YEAR", &year_start),
            flags,
        ));
    }
    let columns = "status_id, version, definition, patient_pseudonym, hospital_id, region_code, \
        department_code, condition, period_kind, period_start, managed, managed_days, \
        standardised, controlled, new_complications, risk_level";
    let database = env.scalar_config("clickhouse", "database");
    env.admin(&format!(
        "INSERT INTO {database}.patient_status ({columns}) VALUES {}",
        rows.join(", ")
    ));
    env.admin(&format!(
        "INSERT INTO {database}.patient_status ({columns}) VALUES \
         ('s-7-HYPERTENSION-YEAR-{year_start}', 1, 'cn-nbphs-2017/v1', 'p7', 'H0001', \
          '330108', 'GERI', 'HYPERTENSION', 'YEAR', '{year_start}', 1, 365, 1, 1, 1, 'LOW')"
    ));
    let newest = vigil_runtime::time::now_ms() - 2 * DAY_MS;
    env.admin(&format!(
        "INSERT INTO {database}.clinical_events (event_id, hospital_id, kind, event_time, \
         event_time_ms, landed_time_ms) VALUES ('e1', 'H0001', 'vital_sign', toDateTime({s}), {newest}, {newest}), \
         ('e2', 'H0001', 'vital_sign', toDateTime({s}), {newest}, {newest})",
        s = newest / 1000
    ));
    // Alerts: two crisis episodes, one acknowledged 12 minutes after it was raised and still
    // open, the other resolved; one missed follow-up, open and not acknowledged.
    let now = vigil_runtime::time::now_ms() - DAY_MS;
    let alert = |id: &str,
                 episode: &str,
                 rule: &str,
                 severity: &str,
                 status: &str,
                 sequence: u32,
                 at: i64| {
        format!(
            "('{id}', '{episode}', '{rule}', '{severity}', '{status}', {sequence}, 'H0001', toDateTime({s}), {at}, toDateTime({start}))",
            s = at / 1000,
            start = now / 1000
        )
    };
    let alerts = [
        alert(
            "a1",
            "ep1",
            "hypertensive_crisis",
            "CRITICAL",
            "RAISED",
            0,
            now,
        ),
        alert(
            "a3",
            "ep1",
            "hypertensive_crisis",
            "CRITICAL",
            "ACKNOWLEDGED",
            1,
            now + 12 * 60_000,
        ),
        alert(
            "a4",
            "ep3",
            "hypertensive_crisis",
            "CRITICAL",
            "RAISED",
            0,
            now,
        ),
        alert(
            "a5",
            "ep3",
            "hypertensive_crisis",
            "CRITICAL",
            "RESOLVED",
            1,
            now + 30 * 60_000,
        ),
        alert("a2", "ep2", "missed_follow_up", "WARNING", "RAISED", 0, now),
    ];
    env.admin(&format!(
        "INSERT INTO {database}.alerts (alert_id, episode_id, rule_id, severity, status, sequence, \
         hospital_id, event_time, event_time_ms, episode_start) VALUES {}",
        alerts.join(", ")
    ));
    env.admin(&format!(
        "INSERT INTO {database}.alert_deliveries (alert_id, outcome, hospital_id, alert_time, version) VALUES \
         ('a1', 'DELIVERED', 'H0001', now(), 1), ('a2', 'UNDELIVERABLE', 'H0001', now(), 1), \
         ('a4', 'DELIVERED', 'H0001', now(), 1)"
    ));
    // Data quality: one late event and two refusals at H0001, one record of no known hospital.
    env.admin(&format!(
        "INSERT INTO {database}.late_events (event_id, hospital_id, kind, event_time, event_time_ms, \
         landed_time_ms) VALUES ('e0', 'H0001', 'vital_sign', toDateTime({s}), {old}, {newest})",
        s = newest / 1000 - 90 * 86_400,
        old = newest - 90 * DAY_MS
    ));
    env.admin(&format!(
        "INSERT INTO {database}.dead_letters (dead_letter_id, stage, hospital_id, reason_code, received_time) VALUES \
         ('d1', 'ingest', 'H0001', 'unknown_lab_code', now()), ('d2', 'ingest', 'H0001', 'unknown_lab_code', now()), \
         ('d3', 'ingest', '', 'malformed_json', now())"
    ));
    // Rows loaded in SQL rather than by the writer: their periods' rollup is computed here.
    let recomputed = env.run_vigil(&["rollup"], Duration::from_secs(60));
    assert!(
        recomputed.contains("recomputed the figures of"),
        "{recomputed}"
    );

    // The page and its API admit the commission's role: a token minted before serve reads them.
    let token = env.mint_token("commission");
    let port = common::free_port();
    env.set_override("VIGIL_SERVE__LISTEN", &format!("127.0.0.1:{port}"));
    let _server = env.spawn_vigil(&["serve"], "serve.log");
    assert!(
        common::eventually(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "", "/healthz").0 == 200
        }),
        "serve did not start:\n{}",
        env.log("serve.log")
    );

    // The API: every figure as computed above.
    let (status, body) = get(port, &token, "/api/v1/overview");
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["definition"], "cn-nbphs-2017/v1");
    let conditions = overview["conditions"].as_array().unwrap();
    let diabetes = &conditions[0];
    let hypertension = &conditions[1];
    assert_eq!(diabetes["condition"], "DIABETES");
    assert_eq!(diabetes["managed"], 0);
    assert_eq!(hypertension["managed"], 10);
    assert_eq!(hypertension["standardised"], 5);
    assert_eq!(hypertension["controlled"], 5);
    assert_eq!(hypertension["new_complications"], 1);
    // round(8 × 365 / 365.25, 3) + round(2 × 365 / 365.25, 3), per hospital as the view rounds
    let years = hypertension["patient_years"].as_f64().unwrap();
    assert!((years - 9.994).abs() < 1e-9, "{years}");
    // The hospitals' figures add up to the region's.
    let rates = overview["hospital_rates"].as_array().unwrap();
    let sum = |condition: &str, field: &str| -> u64 {
        rates
            .iter()
            .filter(|r| r["condition"] == condition)
            .map(|r| r[field].as_u64().unwrap())
            .sum()
    };
    for field in ["managed", "standardised", "controlled"] {
        assert_eq!(
            sum("HYPERTENSION", field),
            hypertension[field].as_u64().unwrap()
        );
    }
    assert_eq!(sum("HYPERTENSION", "high_risk"), 1);
    assert_eq!(hypertension["period"]["start"], year_start.as_str());
    assert_eq!(
        hypertension["period"]["end"],
        format!("{year}-12-31").as_str()
    );
    assert_eq!(hypertension["period"]["finished"], false);
    let trend = hypertension["trend"].as_array().unwrap();
    assert_eq!(trend.len(), 2);
    assert_eq!(
        (
            trend[0]["finished"].as_bool(),
            trend[1]["finished"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(trend[1]["controlled"], 2);
    assert_eq!(overview["alerts"]["raised"], 3);
    assert_eq!(overview["alerts"]["acknowledged"], 1);
    assert_eq!(overview["hospitals"][0]["events"], 2);
    let activity = &overview["alert_activity"];
    assert_eq!(
        activity["episodes"],
        serde_json::json!([
            {"rule_id": "hypertensive_crisis", "severity": "CRITICAL", "episodes": 2, "open": 1,
             "acknowledged": 1, "median_minutes_to_acknowledge": 12.0},
            {"rule_id": "missed_follow_up", "severity": "WARNING", "episodes": 1, "open": 1,
             "acknowledged": 0, "median_minutes_to_acknowledge": null},
        ])
    );
    let raised: u64 = activity["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["raised"].as_u64().unwrap())
        .sum();
    assert_eq!(raised, 3);
    assert_eq!(
        activity["deliveries"],
        serde_json::json!([{"outcome": "DELIVERED", "alerts": 2}, {"outcome": "UNDELIVERABLE", "alerts": 1}])
    );
    assert_eq!(
        overview["quality"],
        serde_json::json!([{"hospital_id": "H0001", "events": 2, "late": 1,
            "lag_p50_minutes": 0.0, "lag_p95_minutes": 0.0}])
    );
    assert_eq!(
        overview["rejections"],
        serde_json::json!([
            {"hospital_id": "", "stage": "ingest", "reason_code": "malformed_json", "records": 1},
            {"hospital_id": "H0001", "stage": "ingest", "reason_code": "unknown_lab_code", "records": 2},
        ])
    );

    grafana_shows_the_same_figures(&env);
    drill_down_sums_to_its_parents(port, &token);

    // The page, in a real browser: the API's figures, in Chinese by default.
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/?token={token}"));
    wait_until_loaded(&browser);
    assert!(
        text_of(&browser, "title-text").contains("慢病管理试点"),
        "Chinese title"
    );
    assert_eq!(text_of(&browser, "fig-HYPERTENSION-managed"), "10");
    assert_eq!(text_of(&browser, "fig-HYPERTENSION-standardised"), "50.0%");
    assert_eq!(text_of(&browser, "fig-HYPERTENSION-controlled"), "50.0%");
    assert_eq!(text_of(&browser, "fig-HYPERTENSION-complications"), "100.1"); // 1000 / 9.994
    assert_eq!(
        text_of(&browser, "fig-DIABETES-controlled"),
        "— （无在管患者）"
    );
    assert_eq!(text_of(&browser, "fig-alerts"), "33.3%");
    // Alerts and their handling, and data quality, as the API says.
    assert_eq!(
        cells_of(&browser, "episodes-hypertensive_crisis-CRITICAL")[2..],
        ["2", "1", "50.0%", "12 分钟"]
    );
    assert_eq!(
        cells_of(&browser, "episodes-missed_follow_up-WARNING")[4..],
        ["0.0%", "— （无确认）"]
    );
    let bars = "return [...document.querySelectorAll('#alert-months rect')].reduce((n, r) => n + Number(r.dataset.raised), 0)";
    assert_eq!(browser.run(bars), 3);
    let months = "return [...document.querySelectorAll('#alert-months rect')].map(r => r.dataset.month + '|' + r.getAttribute('class'))";
    let months: Vec<String> = serde_json::from_value(browser.run(months)).unwrap();
    assert_eq!(months.len(), 18, "eighteen months, empty ones too");
    assert_eq!(
        months.last().unwrap(),
        &format!("{}|bar unfinished", month(0)),
        "the current month, drawn dashed"
    );
    assert!(months[..17].iter().all(|m| m.ends_with("|bar")));
    assert!(text_of(&browser, "deliveries").contains("DELIVERED 2"));
    assert_eq!(
        cells_of(&browser, "quality-H0001")[1..],
        ["2", "2（unknown_lab_code 2）", "1", "0 分钟 / 0 分钟"]
    );
    assert_eq!(cells_of(&browser, "quality-unknown")[0], "（无法识别）");
    browser.run("document.getElementById('alert-months').scrollIntoView()");
    browser.screenshot(&common::repo_path("target").join("dashboard-alerts-zh.png"));
    browser.run("window.scrollTo(0, 0)");
    let dashed = "return document.querySelectorAll('#card-HYPERTENSION-controlled polyline.unfinished').length";
    assert_eq!(
        browser.run(dashed),
        1,
        "the unfinished month is drawn dashed"
    );
    // The comparison: each hospital's rates in its band, "—" for an empty denominator, and
    // sorted by a click on a heading (control rate, best first; "—" last).
    let cells = |row: &str| -> Vec<String> {
        let script = format!(
            "return [...document.querySelectorAll('#{row} td')].map(c => c.textContent + '|' + c.className)"
        );
        serde_json::from_value(browser.run(&script)).unwrap()
    };
    assert_eq!(
        cells("compare-H0002-HYPERTENSION")[3..],
        [
            "100.0%|number band-good",
            "0.0%|number band-low",
            "0.0|number",
            "50.0%|number"
        ]
    );
    assert_eq!(
        cells("compare-H0001-HYPERTENSION")[3..5],
        ["37.5%|number band-low", "62.5%|number band-good"]
    );
    assert_eq!(cells("compare-H0001-DIABETES")[3], "—|number ");
    browser.run("document.querySelector('#compare th[data-sort=controlRate]').click()");
    let order =
        browser.run("return [...document.querySelectorAll('#compare tbody tr')].map(r => r.id)");
    assert_eq!(
        order,
        serde_json::json!([
            "compare-H0001-HYPERTENSION",
            "compare-H0002-HYPERTENSION",
            "compare-H0001-DIABETES"
        ])
    );
    browser.screenshot(&common::repo_path("target").join("dashboard-zh.png"));
    // The drill-down, clicked through: regions, a region's hospitals, a hospital's departments,
    // each level's total the row it was opened from.
    assert_eq!(
        cells_of(&browser, "drill-330106"),
        ["330106", "5", "60.0%", "60.0%"]
    );
    assert_eq!(
        cells_of(&browser, "drill-total")[..],
        ["10", "50.0%", "50.0%"]
    );
    let at = |level: &str| {
        let script = format!("return document.body.dataset.drill === '{level}'");
        common::eventually(Duration::from_secs(10), || browser.run(&script) == true)
    };
    browser.run("document.getElementById('drill-330106').click()");
    assert!(at("hospital:330106:"), "the region opened");
    assert_eq!(
        cells_of(&browser, "drill-H0001"),
        ["H0001", "4", "50.0%", "75.0%"]
    );
    assert_eq!(
        cells_of(&browser, "drill-total")[..],
        ["5", "60.0%", "60.0%"]
    );
    browser.run("document.getElementById('drill-H0001').click()");
    assert!(at("department:330106:H0001"), "the hospital opened");
    assert_eq!(
        cells_of(&browser, "drill-CARD"),
        ["CARD", "2", "100.0%", "100.0%"]
    );
    assert_eq!(
        cells_of(&browser, "drill-none"),
        ["（未指定科室）", "2", "0.0%", "50.0%"]
    );
    assert_eq!(
        cells_of(&browser, "drill-total")[..],
        ["4", "50.0%", "75.0%"]
    );
    browser.run("document.getElementById('drill-path').scrollIntoView()");
    browser.screenshot(&common::repo_path("target").join("dashboard-drill-zh.png"));
    browser.run("window.scrollTo(0, 0)");
    browser.run("document.querySelector('#drill-path a').click()");
    assert!(at("region::"), "back to every region");
    // And in English by the switch.
    browser.run("document.getElementById('lang').click()");
    assert_eq!(
        text_of(&browser, "title-text"),
        "Chronic-disease pilot · Overview"
    );
    assert_eq!(text_of(&browser, "fig-HYPERTENSION-controlled"), "50.0%");
    assert_eq!(
        text_of(&browser, "fig-DIABETES-standardised"),
        "— (no managed patients)"
    );
    browser.screenshot(&common::repo_path("target").join("dashboard-en.png"));
}

/// Every statement of the provisioned Grafana dashboards runs on this ClickHouse (18.16; the
/// current engine is `tests/current_clickhouse.rs`), against the data source the provisioning
/// names, and shows the figures the API shows for the fixture rows.
fn grafana_shows_the_same_figures(env: &TestEnv) {
    let provisioning = std::fs::read_to_string(common::repo_path(
        "deploy/grafana/provisioning/datasources/vigil-clickhouse.yaml",
    ))
    .unwrap();
    assert!(
        provisioning.contains("uid: vigil-clickhouse")
            && provisioning.contains("username: commission")
    );
    let text = std::fs::read_to_string(common::repo_path(
        "deploy/grafana/dashboards/vigil-overview.json",
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let variable = &dashboard["templating"]["list"][0];
    assert_eq!(variable["name"], "definition");
    assert_eq!(
        env.query(variable["query"].as_str().unwrap()),
        ["cn-nbphs-2017/v1"]
    );
    let mut results = BTreeMap::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "vigil-clickhouse");
        let sql = panel["targets"][0]["rawSql"].as_str().unwrap();
        let sql = sql.replace("${definition}", "cn-nbphs-2017/v1");
        results.insert(panel["id"].as_u64().unwrap(), env.query(&sql));
    }
    // Managed patients (newest year): the cards' figures.
    assert_eq!(results[&1], ["DIABETES\t0", "HYPERTENSION\t10"]);
    // Rates per hospital: the comparison's, an empty denominator empty (\N), never 0.
    assert_eq!(
        results[&2],
        [
            "H0001\tDIABETES\t0\t\\N\t\\N\t\\N",
            "H0001\tHYPERTENSION\t8\t0.375\t0.625\t125.1",
            "H0002\tHYPERTENSION\t2\t1\t0\t0"
        ]
    );
    // Control rate by month: last month and this one, flat (time, hospital, value).
    assert_eq!(results[&3].len(), 2);
    assert!(
        results[&3][1].ends_with("\tH0001\t0.25"),
        "{:?}",
        results[&3]
    );
    // Alert episodes raised: three, refusals and freshness per hospital.
    let raised: u64 = results[&4]
        .iter()
        .map(|l| l.rsplit('\t').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(raised, 3);
    assert_eq!(
        results[&5],
        [
            "\tingest\tmalformed_json\t1",
            "H0001\tingest\tunknown_lab_code\t2"
        ]
    );
    assert!(
        results[&6][0].starts_with("H0001\t2\t"),
        "{:?}",
        results[&6]
    );
}

/// The drill-down's API, every level computed by hand: hypertension's 10 managed patients by
/// county (even 330106, odd 330108), a county's hospitals, a hospital's departments; each level's
/// total is its parent's row; diabetes has no managed patient, so no rate anywhere.
fn drill_down_sums_to_its_parents(port: u16, token: &str) {
    let drill = |query: &str| -> serde_json::Value {
        let (status, body) = get(port, token, &format!("/api/v1/drilldown{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let figures = |key: &str, m: u64, s: u64, c: u64, rates: Option<(f64, f64)>| {
        let mut row = serde_json::json!({
            "managed": m, "standardised": s, "controlled": c,
            "standardised_rate": rates.map(|r| r.0), "control_rate": rates.map(|r| r.1),
        });
        if !key.is_empty() || rates.is_some() {
            row["key"] = key.into();
        }
        row
    };
    let total = |m, s, c, rates| {
        let mut row = figures("", m, s, c, rates);
        row.as_object_mut().unwrap().remove("key");
        row
    };
    let regions = drill("");
    assert_eq!(regions["level"], "region");
    assert_eq!(regions["total"], total(10, 5, 5, Some((0.5, 0.5))));
    assert_eq!(
        regions["rows"],
        serde_json::json!([
            figures("330106", 5, 3, 3, Some((0.6, 0.6))),
            figures("330108", 5, 2, 2, Some((0.4, 0.4))),
        ])
    );
    let hospitals = drill("?region=330106");
    assert_eq!(hospitals["total"], total(5, 3, 3, Some((0.6, 0.6))));
    assert_eq!(
        hospitals["rows"],
        serde_json::json!([
            figures("H0001", 4, 2, 3, Some((0.5, 0.75))),
            figures("H0002", 1, 1, 0, Some((1.0, 0.0))),
        ])
    );
    let departments = drill("?region=330106&hospital=H0001");
    assert_eq!(departments["level"], "department");
    assert_eq!(departments["total"], total(4, 2, 3, Some((0.5, 0.75))));
    let mut unrecorded = figures("", 2, 0, 1, Some((0.0, 0.5)));
    unrecorded["key"] = "".into();
    assert_eq!(
        departments["rows"],
        serde_json::json!([unrecorded, figures("CARD", 2, 2, 2, Some((1.0, 1.0)))])
    );
    let diabetes = drill("?condition=DIABETES");
    assert_eq!(diabetes["total"], total(0, 0, 0, None));
    assert!(diabetes["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["managed"] == 0 && r["control_rate"].is_null()));
    let (status, body) = get(port, token, "/api/v1/drilldown?hospital=H0001");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("within a region"), "{body}");
}

/// The text of each cell of the row with this id.
fn cells_of(browser: &Browser, row: &str) -> Vec<String> {
    let script =
        format!("return [...document.querySelectorAll('#{row} td')].map(c => c.textContent)");
    serde_json::from_value(browser.run(&script)).unwrap()
}

/// A crisis reading of `patient` at H0001 an hour ago.
fn crisis(patient: &str, record: &str) -> (String, vigil_schemas::ClinicalEvent) {
    let time_ms = vigil_runtime::time::now_ms() - 3_600_000;
    common::vital_signs(patient, record, time_ms, 192.0, 116.0)
}

#[test]
fn a_crisis_reading_reaches_an_open_page_within_five_seconds_of_landing() {
    let mut env = TestEnv::new("live", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    let port = common::free_port();
    env.set_override("VIGIL_SERVE__LISTEN", &format!("127.0.0.1:{port}"));
    env.set_override("VIGIL_SERVE__REFRESH", "500ms");
    let token = env.mint_token("commission");
    let _serve = env.spawn_vigil(&["serve"], "serve.log");
    let _process = env.spawn_vigil(&["process"], "process.log");
    let _sink = env.spawn_vigil(&["sink"], "sink.log");
    let raised = "SELECT count() FROM {db}.alerts FINAL WHERE status = 'RAISED'";
    // A first crisis, so the stages are warm and the page has figures when it opens.
    env.produce(
        &env.kafka.topics.clinical_events,
        &[crisis(&"a1".repeat(32), "v/1")],
    );
    assert!(common::eventually(Duration::from_secs(90), || env
        .scalar(raised)
        == "1"));

    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/?token={token}"));
    let rows = "return document.querySelectorAll('#latest tbody tr[id^=\"alert-\"]').length";
    assert!(common::eventually(Duration::from_secs(20), || browser
        .run(rows)
        == 1));

    // The second crisis, produced with the page open: it must appear without a reload.
    env.produce(
        &env.kafka.topics.clinical_events,
        &[crisis(&"b2".repeat(32), "v/2")],
    );
    let mut shown_at_ms = None;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if browser.run(rows) == 2 {
            shown_at_ms = Some(vigil_runtime::time::now_ms());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown_at_ms = shown_at_ms.expect("the new alert reached the open page");
    let landed_ms: i64 = env
        .scalar("SELECT max(landed_time_ms) FROM {db}.alerts FINAL WHERE status = 'RAISED'")
        .parse()
        .unwrap();
    let delay_ms = shown_at_ms - landed_ms;
    eprintln!("landed in ClickHouse -> on screen: {delay_ms} ms");
    assert!(delay_ms <= 5_000, "{delay_ms} ms after landing");
    let messages: serde_json::Value = browser
        .run("return [...document.querySelectorAll('#latest tbody td')].map(c => c.textContent)");
    assert!(messages.to_string().contains("192/116"), "{messages}");
    browser.screenshot(&common::repo_path("target").join("dashboard-live.png"));
}

#[test]
fn the_newest_alerts_are_the_ten_newest_however_long_ago_they_were_raised() {
    let env = TestEnv::new("newest", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    let now = vigil_runtime::time::now_ms();
    let insert = |ids: std::ops::Range<usize>, ago_ms: &dyn Fn(usize) -> i64| {
        let rows: Vec<String> = ids
            .map(|i| {
                let at = now - ago_ms(i);
                format!(
                    "('n{i}', 'e{i}', 'hypertensive_crisis', 'CRITICAL', 'RAISED', 0, 'H0001', \
                     toDateTime({s}), {at}, toDateTime({s}))",
                    s = at / 1000
                )
            })
            .collect();
        env.admin(&format!(
            "INSERT INTO {}.alerts (alert_id, episode_id, rule_id, severity, status, sequence, \
             hospital_id, event_time, event_time_ms, episode_start) VALUES {}",
            env.database,
            rows.join(", ")
        ));
    };
    let client = env.clickhouse();
    let newest = || -> Vec<String> {
        let overview = env
            .runtime
            .block_on(vigil_serve::read_overview(&client, 480))
            .unwrap();
        overview
            .latest_alerts
            .into_iter()
            .map(|a| a.alert_id)
            .collect()
    };
    // Three this week and one a hundred days before: the month before the newest holds fewer
    // than ten, so the list reaches back to the old one.
    insert(0..3, &|i| (i as i64 + 1) * DAY_MS);
    insert(3..4, &|_| 100 * DAY_MS);
    assert_eq!(newest(), ["n0", "n1", "n2", "n3"]);
    // Ten more in the last hours: those are the newest ten.
    insert(10..20, &|i| (i as i64) * 60_000);
    let expected: Vec<String> = (10..20).map(|i| format!("n{i}")).collect();
    assert_eq!(newest(), expected);
}

/// The API's fixture quarter, 2025Q1 (long final), hypertension, computed by hand: H0001 has 12
/// managed patients, 11 controlled (one not: a count under 11, so its control rate is
/// suppressed, and so is the next smallest hospital's, H0002, whose figure and the published
/// total would give it away), 6 standardised; H0002 30 managed, 20 controlled, 15
/// standardised; H0003 40 managed, 25 controlled, 30 standardised. The total: 56 of 82.
fn metric_fixture(env: &TestEnv) {
    let mut rows = Vec::new();
    let mut add = |hospital: &str, from: usize, managed: usize, controlled: usize, standardised| {
        for p in from..from + managed {
            let n = p - from;
            let flags = [
                1,
                u8::from(n < standardised),
                u8::from(n < controlled),
                0,
                0,
            ];
            for (kind, start) in [("QUARTER", "2025-01-01"), ("YEAR", "2025-01-01")] {
                rows.push(status_row(
                    (p, hospital, "HYPERTENSION", kind, start),
                    flags,
                ));
            }
        }
    };
    add("H0001", 0, 12, 11, 6);
    add("H0002", 100, 30, 20, 15);
    add("H0003", 200, 40, 25, 30);
    env.admin(&format!(
        "INSERT INTO {}.patient_status (status_id, version, definition, patient_pseudonym, \
         hospital_id, region_code, department_code, condition, period_kind, period_start, \
         managed, managed_days, standardised, controlled, new_complications, risk_level) \
         VALUES {}",
        env.database,
        rows.join(", ")
    ));
    env.run_vigil(&["rollup"], Duration::from_secs(60));
    // 2025Q1 and 2025 closed long ago: the writer's publication freezes them (`vigil publish`
    // runs it now): 3 hospitals × 2 regions × 2 periods.
    let published = env.run_vigil(&["publish"], Duration::from_secs(60));
    assert!(
        published.contains("final periods: 12 cells published, 0 restated"),
        "{published}"
    );
}

/// Status rows of a late arrival: 15 more patients managed at H0003 in 2025Q1, 12 of them
/// controlled, as the processor would write them for events that came after the publication.
fn late_patients(env: &TestEnv) {
    let rows: Vec<String> = (240..255)
        .map(|p| {
            let flags = [1, 0, u8::from(p < 252), 0, 0];
            status_row((p, "H0003", "HYPERTENSION", "QUARTER", "2025-01-01"), flags)
        })
        .collect();
    env.admin(&format!(
        "INSERT INTO {}.patient_status (status_id, version, definition, patient_pseudonym, \
         hospital_id, region_code, department_code, condition, period_kind, period_start, \
         managed, managed_days, standardised, controlled, new_complications, risk_level) \
         VALUES {}",
        env.database,
        rows.join(", ")
    ));
    env.run_vigil(&["rollup"], Duration::from_secs(60));
}

/// An open crisis episode at `hospital` of a patient whose pseudonym is `pseudonym`.
fn open_episode(env: &TestEnv, episode: &str, hospital: &str, pseudonym: &str) {
    let at = vigil_runtime::time::now_ms() - 3_600_000;
    env.admin(&format!(
        "INSERT INTO {}.alerts (alert_id, episode_id, rule_id, severity, status, sequence, \
         hospital_id, patient_pseudonym, event_time, event_time_ms, episode_start, message) VALUES \
         ('{episode}-0', '{episode}', 'hypertensive_crisis', 'CRITICAL', 'RAISED', 0, \
          '{hospital}', '{pseudonym}', toDateTime({s}), {at}, toDateTime({s}), 'BP 192/116')",
        env.database,
        s = at / 1000
    ));
}

#[test]
fn each_role_gets_what_it_may_see_and_every_call_is_in_the_audit_log() {
    let mut env = TestEnv::new("api", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    metric_fixture(&env);
    let (own, other) = ("b1".repeat(16), "c2".repeat(16));
    let pseudonym = "d4".repeat(32);
    open_episode(&env, &own, "H0001", &pseudonym);
    open_episode(&env, &other, "H0002", &"e5".repeat(32));
    let tokens: BTreeMap<&str, String> = ["commission", "insurance", "hospital:H0001", "operator"]
        .into_iter()
        .map(|role| (role, env.mint_token(role)))
        .collect();
    let revoked = env.mint_token("commission");
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    env.run_vigil(&["token", "revoke", &revoked_id], Duration::from_secs(60));
    let port = common::free_port();
    env.set_override("VIGIL_SERVE__LISTEN", &format!("127.0.0.1:{port}"));
    let _server = env.spawn_vigil(&["serve"], "serve.log");
    assert!(
        common::eventually(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && get(port, &tokens["operator"], "/api/v1/overview").0 == 200
        }),
        "serve did not start:\n{}",
        env.log("serve.log")
    );
    // What the start-up probes left in the audit log (flushed every second).
    let audit = |sql: &str| env.query(&sql.replace("{audit}", &format!("{}_audit", env.database)));
    std::thread::sleep(Duration::from_millis(2_500));
    let probes: u64 = audit("SELECT count() FROM {audit}.audit_log")[0]
        .parse()
        .unwrap();
    assert!(probes > 0);
    let calls = std::cell::Cell::new(0u64);
    let call = |token: &str, method: &str, path: &str, body: &str| {
        calls.set(calls.get() + 1);
        request(port, token, method, path, body)
    };

    // Each role against each endpoint: (method, path, body, [commission, insurance, hospital,
    // operator, no token, revoked token]).
    let ack = r#"{"action": "acknowledge", "clinician_id": "dr-li"}"#;
    let own_ack = format!("/api/v1/alerts/{own}/ack");
    let matrix: Vec<(&str, String, &str, [u16; 6])> = vec![
        (
            "GET",
            "/api/v1/overview".into(),
            "",
            [200, 403, 403, 200, 401, 401],
        ),
        (
            "GET",
            "/api/v1/drilldown?condition=HYPERTENSION".into(),
            "",
            [200, 403, 403, 200, 401, 401],
        ),
        (
            "GET",
            "/api/v1/metrics".into(),
            "",
            [200, 200, 200, 200, 401, 401],
        ),
        (
            "GET",
            "/api/v1/metrics/control-rate?period=2025Q1".into(),
            "",
            [200, 200, 200, 200, 401, 401],
        ),
        (
            "GET",
            "/api/v1/alerts?status=open".into(),
            "",
            [403, 403, 200, 200, 401, 401],
        ),
        (
            "GET",
            "/api/v1/audit".into(),
            "",
            [403, 403, 403, 200, 401, 401],
        ),
        (
            "POST",
            format!("/api/v1/alerts/{other}/ack"),
            ack,
            [403, 403, 404, 403, 401, 401],
        ),
        (
            "GET",
            "/api/v1/openapi.json".into(),
            "",
            [200, 200, 200, 200, 200, 200],
        ),
    ];
    let presented = [
        tokens["commission"].as_str(),
        &tokens["insurance"],
        &tokens["hospital:H0001"],
        &tokens["operator"],
        "",
        &revoked,
    ];
    for (method, path, body, expected) in &matrix {
        for (token, want) in presented.iter().zip(expected) {
            let (status, text) = call(token, method, path, body);
            assert_eq!(status, *want, "{method} {path} as {token:?}: {text}");
            if status >= 400 {
                let error: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(error["error"].is_string(), "{text}");
                assert!(!text.contains("H0002") && !text.contains(&other), "{text}");
            }
            if *token == tokens["insurance"] {
                assert!(
                    !text.contains(&pseudonym),
                    "a pseudonym reached the bureau: {text}"
                );
            }
        }
    }
    // A hospital's token asking for another hospital, by every parameter.
    let hospital = &tokens["hospital:H0001"];
    for path in [
        "/api/v1/metrics/control-rate?period=2025Q1&hospital=H0002",
        "/api/v1/alerts?status=open&hospital=H0002",
    ] {
        assert_eq!(call(hospital, "GET", path, "").0, 403, "{path}");
    }
    // Its worklist: its own open episode only, with the patient's pseudonym.
    let (_, body) = call(hospital, "GET", "/api/v1/alerts?status=open", "");
    let worklist: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = worklist["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["episode_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [own.as_str()]);
    assert_eq!(
        worklist["alerts"][0]["patient_pseudonym"],
        pseudonym.as_str()
    );
    assert_eq!(worklist["alerts"][0]["status"], "RAISED");

    // The bureau's quarter, by hand (see metric_fixture).
    let insurance = &tokens["insurance"];
    let (_, body) = call(
        insurance,
        "GET",
        "/api/v1/metrics/control-rate?period=2025Q1",
        "",
    );
    let cells: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cell = |hospital: serde_json::Value| {
        cells["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["hospital_id"] == hospital)
            .cloned()
            .unwrap()
    };
    let hidden = serde_json::json!({"numerator": null, "denominator": null, "value": null});
    for (hospital, flags) in [
        ("H0001", vec!["unreliable", "suppressed"]),
        ("H0002", vec!["suppressed"]),
    ] {
        let c = cell(hospital.into());
        for key in ["numerator", "denominator", "value"] {
            assert_eq!(c[key], hidden[key], "{hospital}: {c}");
        }
        assert_eq!(c["flags"], serde_json::json!(flags), "{hospital}");
        assert_eq!(c["status"], "final");
        assert_eq!(c["version"], 1);
    }
    let h3 = cell("H0003".into());
    assert_eq!(
        (
            h3["numerator"].as_f64(),
            h3["denominator"].as_f64(),
            h3["value"].as_f64()
        ),
        (Some(25.0), Some(40.0), Some(0.625))
    );
    let total = cell(serde_json::Value::Null);
    assert_eq!(
        (
            total["numerator"].as_f64(),
            total["denominator"].as_f64(),
            total["value"].as_f64()
        ),
        (Some(56.0), Some(82.0), Some(0.6829))
    );
    assert_eq!(cells["metric"]["version"], "cn-nbphs-2017/v1");
    // The same as CSV, by Accept and by format=.
    let (status, csv) = call(
        insurance,
        "GET",
        "/api/v1/metrics/control-rate?period=2025Q1&format=csv",
        "",
    );
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "metric,period,condition,hospital_id,numerator,denominator,value,status,flags"
    );
    assert!(
        lines.contains(&"control-rate,2025Q1,HYPERTENSION,H0001,,,,final,unreliable;suppressed"),
        "{csv}"
    );
    assert!(
        lines.contains(&"control-rate,2025Q1,HYPERTENSION,H0003,25,40,0.625,final,"),
        "{csv}"
    );
    assert!(
        lines.contains(&"control-rate,2025Q1,HYPERTENSION,ALL,56,82,0.6829,final,"),
        "{csv}"
    );
    // A FHIR R4 Bundle of summary MeasureReports: the structure's required elements and codes.
    let (status, fhir) = call(
        insurance,
        "GET",
        "/api/v1/metrics/control-rate?period=2025Q1&format=fhir",
        "",
    );
    assert_eq!(status, 200);
    let bundle: serde_json::Value = serde_json::from_str(&fhir).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    let reports: Vec<&serde_json::Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(reports.len(), 4);
    for report in &reports {
        assert_eq!(report["resourceType"], "MeasureReport");
        assert_eq!(report["status"], "complete");
        assert_eq!(report["type"], "summary");
        assert_eq!(
            report["measure"],
            "https://vigil.invalid/fhir/Measure/control-rate|cn-nbphs-2017/v1"
        );
        assert_eq!(
            report["period"],
            serde_json::json!({"start": "2025-01-01", "end": "2025-03-31"})
        );
        let group = &report["group"][0];
        let codes: Vec<&str> = group["population"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["denominator", "numerator"]);
        for p in group["population"].as_array().unwrap() {
            assert_eq!(
                p["code"]["coding"][0]["system"],
                "http://terminology.hl7.org/CodeSystem/measure-population"
            );
        }
    }
    let h3 = reports
        .iter()
        .find(|r| r["reporter"]["identifier"]["value"] == "H0003")
        .unwrap();
    assert_eq!(h3["group"][0]["measureScore"]["value"], 0.625);
    assert_eq!(h3["group"][0]["population"][0]["count"], 40);
    let h1 = reports
        .iter()
        .find(|r| r["reporter"]["identifier"]["value"] == "H0001")
        .unwrap();
    assert!(h1["group"][0]["measureScore"].is_null());
    assert_eq!(h1["group"][0]["extension"][0]["valueCode"], "masked");
    // A hospital's token: its own cell (and a total of it alone, suppressed with it).
    let (_, body) = call(
        hospital,
        "GET",
        "/api/v1/metrics/control-rate?period=2025Q1",
        "",
    );
    let own_cells: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hospitals: Vec<&serde_json::Value> = own_cells["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["hospital_id"])
        .collect();
    assert_eq!(
        hospitals,
        [&serde_json::json!("H0001"), &serde_json::Value::Null]
    );
    assert!(own_cells["cells"][1]["value"].is_null());
    // Bad requests name what is wrong.
    for (path, want) in [
        ("/api/v1/metrics/control-rate?period=2025Q5", 400),
        ("/api/v1/metrics/control-rate", 400),
        ("/api/v1/metrics/nope?period=2025Q1", 404),
        ("/api/v1/metrics/control-rate?period=2025Q1&format=xml", 400),
    ] {
        assert_eq!(call(insurance, "GET", path, "").0, want, "{path}");
    }
    // Late data for the frozen quarter: what was published stands; a restatement says what
    // changed, and a caller may ask for the restated figures explicitly.
    late_patients(&env);
    let published = env.run_vigil(&["publish"], Duration::from_secs(60));
    assert!(
        published.contains("final periods: 0 cells published, 2 restated"),
        "{published}"
    );
    let h3_of = |path: &str| -> serde_json::Value {
        let (status, body) = call(insurance, "GET", path, "");
        assert_eq!(status, 200, "{body}");
        let cells: serde_json::Value = serde_json::from_str(&body).unwrap();
        cells["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["hospital_id"] == "H0003")
            .cloned()
            .unwrap()
    };
    let as_published = h3_of("/api/v1/metrics/control-rate?period=2025Q1");
    assert_eq!(
        (
            as_published["value"].as_f64(),
            as_published["version"].as_u64()
        ),
        (Some(0.625), Some(1))
    );
    let restated = h3_of("/api/v1/metrics/control-rate?period=2025Q1&edition=restated");
    assert_eq!(
        (
            restated["numerator"].as_f64(),
            restated["denominator"].as_f64(),
            restated["value"].as_f64(),
            restated["version"].as_u64()
        ),
        (Some(37.0), Some(55.0), Some(0.6727), Some(2))
    );
    let (status, body) = call(
        insurance,
        "GET",
        "/api/v1/metrics/control-rate/restatements?period=2025Q1",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = list["restatements"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["hospital_id"], "H0003");
    assert_eq!(list[0]["version"], 2);
    assert_eq!(
        list[0]["before"],
        serde_json::json!({"numerator": 25.0, "denominator": 40.0, "value": 0.625})
    );
    assert_eq!(
        list[0]["after"],
        serde_json::json!({"numerator": 37.0, "denominator": 55.0, "value": 0.6727})
    );
    let reasons: Vec<&str> = list[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("330106: late_data: managed 20 -> 28"),
        "{reasons:?}"
    );
    // A hospital sees its own restatements only (H0001 has none).
    let (_, body) = call(
        hospital,
        "GET",
        "/api/v1/metrics/control-rate/restatements?period=2025Q1",
        "",
    );
    assert!(body.contains("\"restatements\":[]"), "{body}");

    // The clinician's acknowledgement is accepted (the processor's part: the next test).
    assert_eq!(call(hospital, "POST", &own_ack, ack).0, 202);
    assert_eq!(
        call(hospital, "POST", &own_ack, "{\"action\": \"close\"}").0,
        400
    );

    // The operator reads it through the API (records land within a second or so).
    let newest = || {
        let (status, body) = call(&tokens["operator"], "GET", "/api/v1/audit?limit=5", "");
        assert_eq!(status, 200, "{body}");
        let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
        rows["calls"].as_array().unwrap().len()
    };
    assert!(common::eventually(Duration::from_secs(10), || newest() == 5));
    // Every call above is in the audit log, with its token, role, scope and status; no secret.
    assert!(
        common::eventually(Duration::from_secs(10), || audit(
            "SELECT count() FROM {audit}.audit_log"
        ) == [
            (probes + calls.get()).to_string()
        ]),
        "{:?} audit rows for {probes} probes and {} calls",
        audit("SELECT count() FROM {audit}.audit_log"),
        calls.get()
    );
    let hospital_id = hospital.split('_').nth(1).unwrap();
    assert_eq!(
        audit(&format!(
            "SELECT role, hospital_scope, endpoint, parameters, status FROM {{audit}}.audit_log \
             WHERE token_id = '{hospital_id}' AND endpoint = '/api/v1/alerts' ORDER BY time_ms"
        )),
        [
            "hospital\tH0001\t/api/v1/alerts\tstatus=open\t200",
            "hospital\tH0001\t/api/v1/alerts\tstatus=open&hospital=H0002\t403",
            "hospital\tH0001\t/api/v1/alerts\tstatus=open\t200",
        ]
    );
    assert_eq!(
        audit("SELECT count() FROM {audit}.audit_log WHERE token_id = '' AND status = 401"),
        ["14"]
    );
    for token in tokens.values() {
        let secret = token.rsplit('_').next().unwrap();
        let leaked = audit(&format!(
            "SELECT count() FROM {{audit}}.audit_log WHERE position(concat(token_id, parameters, endpoint), '{secret}') > 0"
        ));
        assert_eq!(leaked, ["0"]);
    }
}

#[test]
fn an_acknowledgement_through_the_api_reaches_the_processor_and_acknowledges_the_episode() {
    let mut env = TestEnv::new("ack", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    // The patient is managed at a community centre (C0100) and has a crisis reading taken at a
    // tertiary hospital (H0001): both hear of it; a third hospital does not.
    let seen_at = env.mint_token("hospital:H0001");
    let manager = env.mint_token("hospital:C0100");
    let stranger = env.mint_token("hospital:H0003");
    let port = common::free_port();
    env.set_override("VIGIL_SERVE__LISTEN", &format!("127.0.0.1:{port}"));
    let _serve = env.spawn_vigil(&["serve"], "serve.log");
    let _process = env.spawn_vigil(&["process"], "process.log");
    let _sink = env.spawn_vigil(&["sink"], "sink.log");
    let patient = "a7".repeat(32);
    let registered_ms = vigil_runtime::time::now_ms() - 30 * 86_400_000;
    let mut registration = common::canonical(
        &patient,
        "pat/1",
        registered_ms,
        registration(registered_ms),
    );
    registration.1.hospital_id = "C0100".into();
    env.produce(
        &env.kafka.topics.clinical_events,
        &[registration, crisis(&patient, "v/1")],
    );
    let worklist = |token: &str| -> serde_json::Value {
        let (status, body) = get(port, token, "/api/v1/alerts?status=open");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    assert!(
        common::eventually(Duration::from_secs(90), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && get(port, &seen_at, "/api/v1/alerts").0 == 200
                && worklist(&seen_at)["alerts"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1)
        }),
        "the crisis never reached the worklist:\n{}",
        env.log("process.log")
    );
    let listed = worklist(&seen_at)["alerts"][0].clone();
    let episode = listed["episode_id"].as_str().unwrap().to_string();
    assert_eq!(listed["patient_pseudonym"], patient.as_str());
    assert_eq!(
        (&listed["hospital_id"], &listed["managing_hospital_id"]),
        (&"H0001".into(), &"C0100".into())
    );
    assert_eq!(worklist(&manager)["alerts"], serde_json::json!([listed]));
    assert_eq!(worklist(&stranger)["alerts"], serde_json::json!([]));

    // Twice, as a clinician double-clicking or a client retrying: one acknowledgement, from the
    // managing centre; the other hospital's clinicians see it acknowledged.
    let ack = r#"{"action": "acknowledge", "clinician_id": "dr-li"}"#;
    let path = format!("/api/v1/alerts/{episode}/ack");
    assert_eq!(request(port, &stranger, "POST", &path, ack).0, 404);
    let first = request(port, &manager, "POST", &path, ack);
    let second = request(port, &manager, "POST", &path, ack);
    assert_eq!((first.0, second.0), (202, 202), "{first:?} {second:?}");
    assert_eq!(first.1, second.1);
    let acknowledged = format!(
        "SELECT count(), any(actor), any(managing_hospital_id) FROM {{db}}.alerts FINAL \
         WHERE episode_id = '{episode}' AND status = 'ACKNOWLEDGED'"
    );
    let expected = ["1\tdr-li@C0100\tC0100"];
    assert!(
        common::eventually(Duration::from_secs(60), || env.query(&acknowledged)
            == expected),
        "{:?}\n{}",
        env.query(&acknowledged),
        env.log("process.log")
    );
    // The worklists say so; the episode stays open until it resolves.
    for token in [&seen_at, &manager] {
        assert!(common::eventually(Duration::from_secs(10), || worklist(
            token
        )["alerts"][0]["status"]
            == "ACKNOWLEDGED"));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.query(&acknowledged), expected);
}

/// A registration in the hypertension programme (a follow-up is due 100 days later).
fn registration(enrolled_time_ms: i64) -> vigil_schemas::Payload {
    use vigil_schemas::{Condition, PatientRegistration, Payload, ProgrammeEnrolment, Sex};
    Payload::PatientRegistration(PatientRegistration {
        sex: Sex::Female,
        birth_year: 1958,
        region_code: "330106".into(),
        programmes: vec![ProgrammeEnrolment {
            condition: Condition::Hypertension,
            enrolled_time_ms,
        }],
        death_time_ms: None,
    })
}

#[test]
fn the_dashboard_serves_https_when_given_a_certificate() {
    let mut env = TestEnv::new("https", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    let tls = env.path("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&tls)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(tls.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
    ]);
    let port = common::free_port();
    env.set_override("VIGIL_SERVE__LISTEN", &format!("127.0.0.1:{port}"));
    env.set_override(
        "VIGIL_SERVE__TLS_CERT_FILE",
        tls.join("server.crt").to_str().unwrap(),
    );
    env.set_override(
        "VIGIL_SERVE__TLS_KEY_FILE",
        tls.join("server.key").to_str().unwrap(),
    );
    let token = env.mint_token("commission");
    let _serve = env.spawn_vigil(&["serve"], "serve.log");

    vigil_sinks::notify::delivery::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.crt")).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/api/v1/overview");
    let answered = common::eventually(Duration::from_secs(30), || {
        runtime.block_on(async {
            trusting
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    });
    assert!(answered, "no answer over HTTPS:\n{}", env.log("serve.log"));
    // A client that does not trust the certificate gets nothing; plain HTTP gets no page.
    let untrusting = reqwest::Client::builder().build().unwrap();
    assert!(runtime.block_on(untrusting.get(&url).send()).is_err());
    let (status, _) = runtime.block_on(async {
        let plain = format!("http://127.0.0.1:{port}/healthz");
        match untrusting.get(&plain).send().await {
            Ok(response) => (response.status().as_u16(), ()),
            Err(_) => (0, ()),
        }
    });
    assert_eq!(status, 0, "plain HTTP was answered");
}
