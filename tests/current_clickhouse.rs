//! Every migration, every dashboard query and every Grafana panel on a current ClickHouse engine too (chDB,
//! ClickHouse 26.x in-process), not only on the 18.16 test server the other tests use:
//! `deploy/clickhouse/check_current.py`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

#[test]
fn every_migration_runs_on_a_current_clickhouse_engine() {
    let output = std::process::Command::new("python3")
        .arg(common::repo_path("deploy/clickhouse/check_current.py"))
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(", 0 refused"), "{text}");
    let queries = std::fs::read_dir(common::repo_path("serve/sql"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "local_today.sql")
        .count();
    // Every Grafana panel and variable statement too (none skipped).
    let mut grafana = 0;
    for entry in std::fs::read_dir(common::repo_path("deploy/grafana/dashboards")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        grafana += dashboard["templating"]["list"].as_array().unwrap().len();
        for panel in dashboard["panels"].as_array().unwrap() {
            grafana += panel["targets"].as_array().unwrap().len();
        }
    }
    assert!(grafana > 5);
    assert!(
        text.contains(&format!(
            "{queries} dashboard queries and {grafana} Grafana statements run"
        )),
        "{text}"
    );
    // Every statement of grants.sql parses there, and every setting its profiles lock exists.
    let grants =
        std::fs::read_to_string(common::repo_path("deploy/clickhouse/grants.sql")).unwrap();
    let statements = grants
        .lines()
        .filter(|l| l.trim_end().ends_with(';'))
        .count();
    assert!(statements > 20);
    assert!(
        text.contains(&format!("{statements} access statements parsed")),
        "{text}"
    );
}

/// Names of the statements whose rows may come in any order.
const VIEW: &str = "view: ";

/// The statements both engines answer: every dashboard query (example binds), every Grafana
/// statement, the publication and what it published. `{db}` stands for the database.
fn statements() -> Vec<(String, String)> {
    // The dashboard reads the per-period rollup the writer keeps: fill it from the fixture's
    // status rows first, with the writer's own statement.
    use vigil_sinks::clickhouse::rollup::{activity, status, Activity};
    let mut out = vec![("rollup".to_string(), status::recompute_all_sql("{db}", 1))];
    for rollup in Activity::ALL {
        out.push((
            format!("rollup of {rollup:?}"),
            activity::recompute_sql("{db}", rollup, None, 480, 1),
        ));
        for (index, sql) in activity::landed_sql("{db}", rollup, 480).iter().enumerate() {
            out.push((
                format!("{VIEW}cells of {rollup:?} landed ({index})"),
                sql.replace('?', "0"),
            ));
        }
    }
    let dir = common::repo_path("serve/sql");
    let today = std::fs::read_to_string(dir.join("local_today.sql")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("local_today.sql"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let binds: Vec<String> = text
            .lines()
            .find_map(|l| l.strip_prefix("-- binds:"))
            .map(|b| b.split(',').map(|v| v.trim().to_string()).collect())
            .unwrap_or_default();
        let sql: String = text
            .lines()
            .filter(|l| !l.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("{today}", today.trim());
        let mut bound = String::new();
        let mut values = binds.iter();
        for c in sql.chars() {
            match c {
                '?' => bound.push_str(values.next().expect("a bind per ?")),
                c => bound.push(c),
            }
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, bound));
    }
    let text = std::fs::read_to_string(common::repo_path(
        "deploy/grafana/dashboards/vigil-overview.json",
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        let sql = panel["targets"][0]["rawSql"].as_str().unwrap();
        let name = format!("grafana: {}", panel["title"].as_str().unwrap());
        out.push((name, sql.replace("${definition}", "cn-nbphs-2017/v1")));
    }
    // Every view of the migrations, whole (rows compared in any order).
    let mut migrations: Vec<_> =
        std::fs::read_dir(common::repo_path("deploy/clickhouse/migrations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    migrations.sort();
    for path in migrations {
        let text = std::fs::read_to_string(path).unwrap();
        for rest in text.split("CREATE VIEW IF NOT EXISTS ").skip(1) {
            let view: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.{}".contains(*c))
                .collect();
            out.push((format!("{VIEW}{view}"), format!("SELECT * FROM {view}")));
        }
    }
    out.push((
        "publication".into(),
        vigil_sinks::clickhouse::publish::publication_sql("{db}", 3),
    ));
    out.push((
        "published".into(),
        "SELECT definition, hospital_id, condition, period_kind, toString(period_start), \
         managed_patients, standardised_rate, control_rate, complications_per_1000_patient_years, \
         suppressed FROM {db}_insurance.outcome_metrics_latest \
         ORDER BY definition, hospital_id, condition, period_kind, period_start"
            .into(),
    ));
    out
}

#[test]
fn the_same_rows_give_the_same_answers_on_both_engines() {
    // The fixture of deploy/clickhouse/fixtures/compare.sql in a database of the 18.16 test
    // server and in a current engine; every query Vigil reads figures with must return the same.
    let env = common::TestEnv::new("compare", 1, "");
    env.run_vigil(&["migrate"], std::time::Duration::from_secs(60));
    let database = env.scalar_config("clickhouse", "database");
    let fixture =
        std::fs::read_to_string(common::repo_path("deploy/clickhouse/fixtures/compare.sql"))
            .unwrap();
    let instant = (vigil_runtime::time::now_ms() / 1000).to_string();
    // Split as `vigil migrate` splits migrations.
    for sql in vigil_sinks::clickhouse::migrate::statements(&fixture, &database) {
        env.admin(&sql.replace("{now}", &instant));
    }
    let statements = statements();
    let mut old = std::collections::BTreeMap::new();
    for (name, sql) in &statements {
        let sql = sql.replace("{db}", &database);
        if sql.starts_with("INSERT") {
            env.admin(&sql);
            old.insert(name.clone(), String::new());
        } else {
            old.insert(
                name.clone(),
                env.query(&sql).iter().map(|l| format!("{l}\n")).collect(),
            );
        }
    }
    let list: Vec<serde_json::Value> = statements
        .iter()
        .map(|(name, sql)| serde_json::json!({"name": name, "sql": sql}))
        .collect();
    let file = env.path("statements.json");
    std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .arg(common::repo_path("deploy/clickhouse/check_current.py"))
        .arg("--compare")
        .arg(&file)
        .arg(&instant)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULTS "))
        .expect("results");
    let current: BTreeMap<String, serde_json::Value> = serde_json::from_str(line).unwrap();
    let mut different = Vec::new();
    let in_order = |name: &str, text: &str| -> String {
        let mut lines: Vec<&str> = text.lines().collect();
        if name.starts_with(VIEW) {
            lines.sort_unstable();
        }
        lines.join("\n")
    };
    for (name, answer) in &old {
        let now = current[name].as_str().map(|text| in_order(name, text));
        if now.as_deref() != Some(in_order(name, answer).as_str()) {
            different.push(format!(
                "{name}\n  18.16:   {answer:?}\n  current: {:?}",
                current[name]
            ));
        }
    }
    assert!(
        old.values().filter(|a| !a.is_empty()).count() > 15,
        "the fixture gives the queries something to answer"
    );
    assert!(different.is_empty(), "{}", different.join("\n"));
}
