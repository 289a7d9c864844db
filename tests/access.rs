//! Who may see and do what in ClickHouse, on the real server with the users.xml that
//! deploy/local/services.sh renders: the writer runs the pipeline and the publication but cannot
//! change schemas; the commission reads the pilot but changes nothing and cannot see the
//! insurance publication's database; the insurance bureau reads only the published, aggregated,
//! pseudonym-free outcome metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::TestEnv;

/// The database this test owns; test.sh serves it (VIGIL_CH_DATABASES) besides `vigil`.
const DATABASE: &str = "vigil_access_test";

fn credentials() -> HashMap<String, String> {
    let path = std::env::var("VIGIL_TEST_CLICKHOUSE_CREDENTIALS").unwrap_or_else(|_| {
        panic!("VIGIL_TEST_CLICKHOUSE_CREDENTIALS is not set: run deploy/local/test.sh, or eval \"$(deploy/local/services.sh env)\"")
    });
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn refused(result: Result<String, String>, because: &str) -> String {
    match result {
        Ok(rows) => panic!("expected a refusal ({because}), got rows: {rows}"),
        Err(error) => error,
    }
}

#[test]
fn each_clickhouse_user_can_do_its_job_and_nothing_more() {
    let env = TestEnv::with_database("access", DATABASE, 2, "");
    let secrets = credentials();
    let writer = secrets["VIGIL_CH_WRITER_PASSWORD"].as_str();
    let commission = secrets["VIGIL_CH_COMMISSION_PASSWORD"].as_str();
    let insurance = secrets["VIGIL_CH_INSURANCE_PASSWORD"].as_str();
    let served = env.query_as("commission", commission, "SELECT 1");
    assert!(
        served.is_ok(),
        "the commission user cannot use {DATABASE}; start the services with \
         VIGIL_CH_DATABASES=\"vigil {DATABASE}\" (deploy/local/test.sh does): {served:?}"
    );

    let as_writer = |args: &[&str]| {
        let mut command = env.vigil(args);
        command
            .env("VIGIL_CLICKHOUSE__USER", "vigil_writer")
            .env("VIGIL_CLICKHOUSE__PASSWORD", writer);
        command
    };

    // Schemas are the administrator's: the writer may not create them...
    let (migrated, _, output) = env.try_command(as_writer(&["migrate"]), Duration::from_secs(60));
    assert!(!migrated, "the writer created the schema:\n{output}");
    assert!(output.contains("DDL queries are prohibited"), "{output}");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    // ...but once they are current, every stage runs as the writer, and so does the publication.
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_command(
        as_writer(&[
            "up",
            "--simulate",
            "--patients",
            "300",
            "--hospitals",
            "2",
            "--days",
            "200",
            "--seed",
            "5",
            "--until-idle",
            "3",
        ]),
        Duration::from_secs(600),
    );
    let output = env.run_command(as_writer(&["publish"]), Duration::from_secs(60));
    assert!(output.contains("outcome-metric cells"), "{output}");
    assert_ne!(env.scalar("SELECT count() FROM {db}.patient_status"), "0");
    let writes = refused(
        env.query_as("vigil_writer", writer, "DROP TABLE {db}.alerts"),
        "the writer dropping a table",
    );
    assert!(writes.contains("DDL queries are prohibited"), "{writes}");

    // The commission reads the whole pilot, changes nothing, and has no use for the bureau's copy.
    let managed = env
        .query_as(
            "commission",
            commission,
            "SELECT sum(managed_patients) FROM {db}.pilot_metrics WHERE period_kind = 'YEAR'",
        )
        .unwrap();
    assert_ne!(managed, "0");
    env.query_as(
        "commission",
        commission,
        "SELECT count() FROM {db}.alerts FINAL",
    )
    .unwrap();
    let change = refused(
        env.query_as(
            "commission",
            commission,
            "INSERT INTO {db}.dead_letters SELECT * FROM {db}.dead_letters",
        ),
        "the commission writing",
    );
    assert!(change.contains("readonly"), "{change}");
    let other = refused(
        env.query_as(
            "commission",
            commission,
            "SELECT count() FROM {db}_insurance.outcome_metrics",
        ),
        "the commission reading the insurance database",
    );
    assert!(other.contains("Access denied"), "{other}");

    // The insurance bureau reads the published metrics: aggregates, no pseudonyms, no raw data.
    let published = env
        .query_as(
            "insurance",
            insurance,
            "SELECT count(), countIf(managed_patients IS NOT NULL) FROM {db}_insurance.outcome_metrics_latest",
        )
        .unwrap();
    let (cells, unsuppressed) = published.split_once('\t').unwrap();
    assert_ne!(cells, "0", "cells were published");
    assert_ne!(unsuppressed, "0", "some cells are large enough to show");
    let columns = env
        .query_as(
            "insurance",
            insurance,
            "SELECT name FROM system.columns WHERE database = '{db}_insurance'",
        )
        .unwrap();
    assert!(!columns.contains("pseudonym"), "{columns}");
    for table in [
        "patient_status",
        "clinical_events",
        "alerts",
        "pilot_metrics",
    ] {
        let error = refused(
            env.query_as(
                "insurance",
                insurance,
                &format!("SELECT count() FROM {{db}}.{table}"),
            ),
            "the bureau reading the pilot's own tables",
        );
        assert!(error.contains("Access denied"), "{table}: {error}");
    }
    let change = refused(
        env.query_as(
            "insurance",
            insurance,
            "INSERT INTO {db}_insurance.outcome_metrics SELECT * FROM {db}_insurance.outcome_metrics",
        ),
        "the bureau writing",
    );
    assert!(change.contains("readonly"), "{change}");

    // A wrong password is a wrong password.
    let wrong = refused(
        env.query_as("insurance", "not-the-password", "SELECT 1"),
        "a wrong password",
    );
    assert!(wrong.contains("password"), "{wrong}");

    // Who read what is recorded, per user, in a log kept by month; a read-only user cannot
    // turn the recording off for its own queries.
    let hidden = refused(
        env.query_as(
            "commission",
            commission,
            "SELECT count() FROM {db}.alerts SETTINGS log_queries = 0",
        ),
        "the commission hiding its queries",
    );
    assert!(hidden.contains("readonly"), "{hidden}");
    env.admin("SYSTEM FLUSH LOGS");
    let recorded = env.scalar(
        "SELECT groupUniqArray(user) FROM system.query_log \
         WHERE type = 2 AND query LIKE 'SELECT sum(managed_patients) FROM %pilot_metrics%'",
    );
    assert_eq!(
        recorded, "['commission']",
        "the commission's read is on record"
    );
    let bureau = env.scalar(
        "SELECT count() FROM system.query_log \
         WHERE user = 'insurance' AND query LIKE 'SELECT count(), countIf(managed_patients%'",
    );
    assert_ne!(bureau, "0", "the bureau's reads are on record");
    let table = env.scalar("SHOW CREATE TABLE system.query_log");
    assert!(
        table.contains("PARTITION BY toYYYYMM(event_date)"),
        "kept by month: {table}"
    );
}
