//! `vigil migrate` on the 18.16 test server: a migration interrupted half-way runs again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

#[test]
fn a_schema_whose_record_of_migrations_was_lost_is_migrated_again_without_error() {
    // As if every migration had been interrupted just before recording itself: each statement
    // runs a second time, the `ADD COLUMN`s on columns that are there included.
    let env = common::TestEnv::new("migrate", 1, "");
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    let database = env.scalar_config("clickhouse", "database");
    let columns = format!(
        "SELECT name, type FROM system.columns WHERE database = '{database}' ORDER BY table, name"
    );
    let before = env.query(&columns);
    assert!(
        before.iter().any(|c| c.starts_with("department_code\t")),
        "an ALTER TABLE of the migrations ran: {before:?}"
    );
    env.admin(&format!("DROP TABLE {database}.schema_migrations"));
    let output = env.run_vigil(&["migrate"], Duration::from_secs(60));
    assert!(output.contains("applied"), "{output}");
    assert_eq!(env.query(&columns), before, "the same schema");
    let recorded = env.query(&format!("SELECT count() FROM {database}.schema_migrations"));
    assert_eq!(
        recorded,
        vec![vigil_sinks::clickhouse::migrate::MIGRATIONS
            .len()
            .to_string()]
    );
}
