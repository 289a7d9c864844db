//! Who may see and do what in ClickHouse, on a real server of the test's own with the users.xml
//! that deploy/local/services.sh renders for one database: every part of Vigil connects as its
//! role's user; the writer runs the pipeline and the publication but cannot change schemas;
//! the commission reads the pilot but changes nothing and cannot see the insurance
//! publication's database; the insurance bureau reads only the published, aggregated,
//! pseudonym-free outcome metrics; nobody reaches the server without a password, and no
//! read-only user can change a setting or use a table function.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OwnClickHouse, TestEnv};

/// The database the server's users are made for.
const DATABASE: &str = "vigil_access_test";

fn refused(result: Result<String, String>, because: &str) -> String {
    match result {
        Ok(rows) => panic!("expected a refusal ({because}), got rows: {rows}"),
        Err(error) => error,
    }
}

#[test]
fn each_clickhouse_user_can_do_its_job_and_nothing_more() {
    let server = OwnClickHouse::serving("access", DATABASE);
    let env = TestEnv::on_clickhouse_database("access", DATABASE, 2, &server);
    let secrets = server.credentials();
    let writer = secrets["VIGIL_CH_WRITER_PASSWORD"].as_str();
    let reader = secrets["VIGIL_CH_READER_PASSWORD"].as_str();
    let commission = secrets["VIGIL_CH_COMMISSION_PASSWORD"].as_str();
    let insurance = secrets["VIGIL_CH_INSURANCE_PASSWORD"].as_str();

    // Schemas are the administrator's: the writer may not create them...
    let mut as_admin_with_writer = env.vigil(&["migrate"]);
    as_admin_with_writer
        .env("VIGIL_CLICKHOUSE__USERS__ADMIN", "vigil_writer")
        .env("VIGIL_CH_ADMIN_PASSWORD", writer);
    let (migrated, _, output) = env.try_command(as_admin_with_writer, Duration::from_secs(60));
    assert!(!migrated, "the writer created the schema:\n{output}");
    assert!(output.contains("DDL queries are prohibited"), "{output}");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    // ...and once they are current, the stages run as their roles (the configuration's
    // defaults), and so does the publication.
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_vigil(
        &[
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
        ],
        Duration::from_secs(600),
    );
    let output = env.run_vigil(&["publish"], Duration::from_secs(60));
    assert!(output.contains("outcome-metric cells"), "{output}");
    assert_ne!(env.scalar("SELECT count() FROM {db}.patient_status"), "0");
    env.admin("SYSTEM FLUSH LOGS");
    let writers = env.scalar(
        "SELECT groupUniqArray(user) FROM system.query_log WHERE type = 2 \
         AND query LIKE 'INSERT INTO%' AND query NOT LIKE '%schema_migrations%'",
    );
    assert_eq!(
        writers, "['vigil_writer']",
        "only the writer writes rows (the administrator only records migrations)"
    );
    let writes = refused(
        env.query_as("vigil_writer", writer, "DROP TABLE {db}.alerts"),
        "the writer dropping a table",
    );
    assert!(writes.contains("DDL queries are prohibited"), "{writes}");

    // Nobody gets in without a password, and so nobody reads around their rights through a
    // table function pointed back at the server: not even the writer with DDL forced on.
    // (`??` is a literal `?` to the client, which binds `?`.)
    let anonymous = refused(
        env.query_as("default", "", "SELECT 1"),
        "the default user without a password",
    );
    assert!(anonymous.contains("Password required"), "{anonymous}");
    env.admin("CREATE DATABASE IF NOT EXISTS access_private");
    env.admin("CREATE TABLE IF NOT EXISTS access_private.secrets (x String) ENGINE = Memory");
    env.admin("INSERT INTO access_private.secrets VALUES ('not for the writer')");
    let denied = refused(
        env.query_as(
            "vigil_writer",
            writer,
            "SELECT * FROM access_private.secrets",
        ),
        "the writer reading a database it is denied",
    );
    assert!(denied.contains("Access denied"), "{denied}");
    let around = refused(
        env.query_as_with(
            "vigil_writer",
            writer,
            &format!(
                "SELECT * FROM url('{}/??query=SELECT%20*%20FROM%20access_private.secrets', \
                 TSV, 'x String')",
                server.url()
            ),
            &[("allow_ddl", "1")],
        ),
        "the writer reading it through url() as the default user",
    );
    assert!(around.contains("Password required"), "{around}");

    // Read-only users change no setting, even one sent with the request, and use no table
    // function.
    for (user, password) in [
        ("vigil_reader", reader),
        ("commission", commission),
        ("insurance", insurance),
    ] {
        for (setting, value) in [
            ("readonly", "0"),
            ("log_queries", "0"),
            ("max_memory_usage", "1"),
        ] {
            let error = refused(
                env.query_as_with(user, password, "SELECT 1", &[(setting, value)]),
                "a read-only user changing a setting",
            );
            assert!(error.contains("readonly mode"), "{user} {setting}: {error}");
        }
        let error = refused(
            env.query_as(
                user,
                password,
                &format!(
                    "SELECT * FROM url('{}/??query=SELECT%201', TSV, 'x String')",
                    server.url()
                ),
            ),
            "a read-only user calling url()",
        );
        assert!(
            error.contains("Table functions are forbidden"),
            "{user}: {error}"
        );
    }

    // The dashboard's user reads the pilot and nothing else.
    env.query_as(
        "vigil_reader",
        reader,
        "SELECT count() FROM {db}.pilot_metrics",
    )
    .unwrap();
    for database in ["{db}_insurance.outcome_metrics", "{db}_audit.audit_log"] {
        let error = refused(
            env.query_as(
                "vigil_reader",
                reader,
                &format!("SELECT count() FROM {database}"),
            ),
            "the dashboard's user reading beyond the pilot",
        );
        assert!(error.contains("Access denied"), "{database}: {error}");
    }

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
