//! Every migration, every dashboard query and every Grafana panel on a current ClickHouse engine too (chDB,
//! ClickHouse 26.x in-process), not only on the 18.16 test server the other tests use:
//! `deploy/clickhouse/check_current.py`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
}
