//! `vigil migrate`: applies the versioned DDL in `deploy/clickhouse/migrations/` in order, once
//! each, and records what it applied (with a checksum) in `<db>.schema_migrations`. Re-running is
//! a no-op; every statement may run twice (`IF NOT EXISTS`; a column an interrupted run already
//! added counts as added), so a migration interrupted half-way can simply be run again, and a
//! statement the server did not answer is sent again. The SQL keeps to what ClickHouse 18.16 and
//! current releases both accept.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use vigil_runtime::clickhouse::is_transient;
use vigil_runtime::config::ClickHouseConfig;
use vigil_runtime::RuntimeError;

use crate::error::SinkError;

/// (version, name, SQL) in order. Every file of the directory must be listed (a test checks).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_core_tables",
        include_str!("../../../deploy/clickhouse/migrations/0001_core_tables.sql"),
    ),
    (
        2,
        "0002_pilot_metrics",
        include_str!("../../../deploy/clickhouse/migrations/0002_pilot_metrics.sql"),
    ),
    (
        3,
        "0003_alert_deliveries",
        include_str!("../../../deploy/clickhouse/migrations/0003_alert_deliveries.sql"),
    ),
    (
        4,
        "0004_pipeline_stats",
        include_str!("../../../deploy/clickhouse/migrations/0004_pipeline_stats.sql"),
    ),
    (
        5,
        "0005_late_events",
        include_str!("../../../deploy/clickhouse/migrations/0005_late_events.sql"),
    ),
    (
        6,
        "0006_duplicate_facts",
        include_str!("../../../deploy/clickhouse/migrations/0006_duplicate_facts.sql"),
    ),
    (
        7,
        "0007_diagnosed_not_managed",
        include_str!("../../../deploy/clickhouse/migrations/0007_diagnosed_not_managed.sql"),
    ),
    (
        8,
        "0008_status_rollup",
        include_str!("../../../deploy/clickhouse/migrations/0008_status_rollup.sql"),
    ),
    (
        9,
        "0009_activity_rollups",
        include_str!("../../../deploy/clickhouse/migrations/0009_activity_rollups.sql"),
    ),
    (
        10,
        "0010_api_access",
        include_str!("../../../deploy/clickhouse/migrations/0010_api_access.sql"),
    ),
    (
        11,
        "0011_published_metrics",
        include_str!("../../../deploy/clickhouse/migrations/0011_published_metrics.sql"),
    ),
    (
        12,
        "0012_alert_managing_hospital",
        include_str!("../../../deploy/clickhouse/migrations/0012_alert_managing_hospital.sql"),
    ),
    (
        13,
        "0013_event_positions",
        include_str!("../../../deploy/clickhouse/migrations/0013_event_positions.sql"),
    ),
    (
        14,
        "0014_backtest_reports",
        include_str!("../../../deploy/clickhouse/migrations/0014_backtest_reports.sql"),
    ),
];

/// Earlier texts of amended migrations, by version, whose result is the same: a database that
/// applied one of them is current. 0002's `alert_rate` view got aliases for its joined subqueries,
/// which current ClickHouse requires (18.16 accepted the view without them, and gives the same
/// rows with them). 0005 spells out `late_events`' columns and keys rather than copying
/// `clinical_events` (`AS`), which in cluster mode would copy its replica path too.
const AMENDED: &[(u32, &str)] = &[(2, "f1af2d6262eca8d7"), (5, "144d4bf79f73413d")];

/// Whether a migration applied with checksum `applied` is the one whose text now sums to `now`.
fn same_migration(version: u32, applied: &str, now: &str) -> bool {
    applied == now || AMENDED.contains(&(version, applied))
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Applied {
    version: u32,
    checksum: String,
}

/// Splits a migration into statements: `;` at the end of a line ends one; `--` lines are comments.
pub fn statements(sql: &str, database: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current
                .trim()
                .trim_end_matches(';')
                .replace("{db}", database);
            out.push(statement);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().replace("{db}", database));
    }
    out
}

/// What a statement starts with, before the name it creates.
const NAMED: [&str; 3] = [
    "CREATE DATABASE IF NOT EXISTS ",
    "CREATE TABLE IF NOT EXISTS ",
    "CREATE VIEW IF NOT EXISTS ",
];

/// A migration statement as a cluster runs it: `ON CLUSTER`, and every table replicated with
/// the same engine and replacing keys (Replicated…MergeTree; its ZooKeeper path named by the
/// database and table, `{shard}` and `{replica}` from each server's macros), so a row inserted
/// on one replica reaches the others and the same block inserted again on any is dropped. An
/// `ALTER TABLE` runs on one replica as it is: every table being replicated, the table carries
/// it to the others (18.16's `ALTER … ON CLUSTER` of a replicated table can wait on itself past
/// the distributed DDL timeout).
pub fn for_cluster(statement: &str, cluster: &str) -> Result<String, SinkError> {
    let unknown = || SinkError::Cluster {
        statement: statement.lines().next().unwrap_or_default().to_string(),
    };
    if statement.starts_with("ALTER TABLE ") {
        return Ok(statement.to_string());
    }
    let prefix = NAMED
        .iter()
        .find(|prefix| statement.starts_with(*prefix))
        .ok_or_else(unknown)?;
    let rest = &statement[prefix.len()..];
    let name_len = rest
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    let mut out = format!("{prefix}{name} ON CLUSTER {cluster}{}", &rest[name_len..]);
    for engine in ["ReplacingMergeTree(", "MergeTree("] {
        let plain = format!("ENGINE = {engine}");
        if let Some(at) = out.find(&plain) {
            let args_start = at + plain.len();
            let args_end = args_start + out[args_start..].find(')').ok_or_else(unknown)?;
            let args = out[args_start..args_end].trim().to_string();
            let path = format!("'/clickhouse/tables/{{shard}}/{name}', '{{replica}}'");
            let args = if args.is_empty() {
                path
            } else {
                format!("{path}, {args}")
            };
            out.replace_range(
                at..=args_end,
                &format!("ENGINE = Replicated{engine}{args})"),
            );
            break;
        }
    }
    Ok(out)
}

/// FNV-1a of the migration text: a change after applying it is refused.
pub fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.as_bytes() {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What `migrate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<u32>,
    pub already: Vec<u32>,
}

async fn read_applied(client: &clickhouse::Client, db: &str) -> Result<Vec<Applied>, SinkError> {
    Ok(client
        .query(&format!(
            "SELECT version, checksum FROM {db}.schema_migrations ORDER BY version"
        ))
        .fetch_all()
        .await
        .map_err(|source| RuntimeError::ClickHouse {
            operation: "read applied migrations",
            source,
        })?)
}

/// The report of a schema that has every migration, unchanged; `None` if some are pending.
fn already_current(applied: &[Applied]) -> Result<Option<MigrateReport>, SinkError> {
    let mut report = MigrateReport::default();
    for (version, name, sql) in MIGRATIONS {
        let Some(done) = applied.iter().find(|a| a.version == *version) else {
            return Ok(None);
        };
        let sum = checksum(sql);
        if !same_migration(*version, &done.checksum, &sum) {
            return Err(SinkError::MigrationChanged {
                version: *version,
                name,
                applied: done.checksum.clone(),
                now: sum,
            });
        }
        report.already.push(*version);
    }
    Ok(Some(report))
}

/// How often a statement is sent when the server does not answer it (a keep-alive connection
/// the server closed as the request went out, a replica restarting).
const ATTEMPTS: u32 = 5;

/// Runs one statement, sending it again while the failure is transient: every statement may
/// run twice.
async fn run_statement(client: &clickhouse::Client, sql: &str) -> Result<(), RuntimeError> {
    let mut attempt = 1;
    loop {
        match client.query(sql).execute().await {
            Ok(()) => return Ok(()),
            Err(error) if already_applied(sql, &error) => return Ok(()),
            Err(error) if is_transient(&error) && attempt < ATTEMPTS => {
                warn!(attempt, %error, "A migration statement failed; sending it again.");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(source) => {
                return Err(RuntimeError::ClickHouse {
                    operation: "migration statement",
                    source,
                })
            }
        }
    }
}

/// How long `migrate` waits for the servers of a cluster to reach ZooKeeper.
const COORDINATION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every server of `clickhouse.url` has a ZooKeeper session. An `ON CLUSTER`
/// statement needs one, and ClickHouse 18.16 crashes on it when its session failed at start
/// (ZooKeeper not yet serving); asking `system.zookeeper` makes a server connect again.
async fn wait_for_coordination(config: &ClickHouseConfig) -> Result<(), SinkError> {
    let deadline = tokio::time::Instant::now() + COORDINATION_WAIT;
    for (url, client) in vigil_runtime::clickhouse::server_clients(config) {
        loop {
            let probe = client
                .query("SELECT count() FROM system.zookeeper WHERE path = '/'")
                .fetch_one::<u64>()
                .await;
            match probe {
                Ok(_) => break,
                Err(error) if is_transient(&error) && tokio::time::Instant::now() < deadline => {
                    warn!(url, %error, "This ClickHouse server has no ZooKeeper session yet; waiting before any ON CLUSTER statement.");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(source) => {
                    return Err(SinkError::from(RuntimeError::ClickHouse {
                        operation: "reach ZooKeeper from every server of the cluster",
                        source,
                    }))
                }
            }
        }
    }
    Ok(())
}

/// Whether a statement failed only because an earlier run of it took effect: `ADD COLUMN` of a
/// column that is there. The code differs (18.16: ILLEGAL_COLUMN, 44; current releases:
/// DUPLICATE_COLUMN, 15), the words do not.
fn already_applied(sql: &str, error: &clickhouse::error::Error) -> bool {
    let duplicate_column = matches!(error, clickhouse::error::Error::BadResponse(text)
        if text.contains("Cannot add column") && text.contains("column with this name already exists"));
    duplicate_column && sql.starts_with("ALTER TABLE ") && sql.contains(" ADD COLUMN ")
}

pub async fn migrate(config: &ClickHouseConfig) -> Result<MigrateReport, SinkError> {
    config.validate()?;
    let client = vigil_runtime::clickhouse::server_client(config);
    let db = &config.database;
    // Schema statements run on every server of a cluster; rows are replicated by the table.
    let ddl = |sql: String| -> Result<String, SinkError> {
        if config.cluster.is_empty() {
            Ok(sql)
        } else {
            for_cluster(&sql, &config.cluster)
        }
    };
    let run = |sql: String| {
        let client = client.clone();
        async move { run_statement(&client, &sql).await.map_err(SinkError::from) }
    };
    // A schema that is already current needs no DDL, so stages running as a user without DDL
    // rights (vigil_writer) can call this at start-up as a check.
    if let Ok(applied) = read_applied(&client, db).await {
        if let Some(report) = already_current(&applied)? {
            return Ok(report);
        }
    }
    if !config.cluster.is_empty() {
        wait_for_coordination(config).await?;
    }
    run(ddl(format!("CREATE DATABASE IF NOT EXISTS {db}"))?).await?;
    run(ddl(format!(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, checksum String, applied_at DateTime) \
         ENGINE = MergeTree() ORDER BY version"
    ))?)
    .await?;
    let applied = read_applied(&client, db).await?;

    let mut report = MigrateReport::default();
    for (version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some(done) = applied.iter().find(|a| a.version == *version) {
            if !same_migration(*version, &done.checksum, &sum) {
                return Err(SinkError::MigrationChanged {
                    version: *version,
                    name,
                    applied: done.checksum.clone(),
                    now: sum,
                });
            }
            report.already.push(*version);
            continue;
        }
        for statement in statements(sql, db) {
            run(ddl(statement)?).await.map_err(|error| match error {
                SinkError::Runtime(source) => SinkError::Migration {
                    version: *version,
                    name,
                    source,
                },
                other => other,
            })?;
        }
        run(format!(
            "INSERT INTO {db}.schema_migrations (version, name, checksum, applied_at) VALUES ({version}, '{name}', '{sum}', now())"
        ))
        .await?;
        info!(version, name, "Applied ClickHouse migration.");
        report.applied.push(*version);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_amended_migration_is_still_the_one_applied() {
        let now = checksum(MIGRATIONS[1].2);
        assert!(same_migration(2, &now, &now));
        assert!(same_migration(2, "f1af2d6262eca8d7", &now));
        assert!(!same_migration(3, "f1af2d6262eca8d7", &now));
        assert!(!same_migration(2, "0000000000000000", &now));
        let late = checksum(MIGRATIONS[4].2);
        assert!(same_migration(5, "144d4bf79f73413d", &late));
    }

    use super::*;

    #[test]
    fn only_a_column_already_added_counts_as_applied() {
        use clickhouse::error::Error;
        let alter = "ALTER TABLE v.alerts ADD COLUMN source String DEFAULT ''";
        let old = Error::BadResponse("Code: 44, e.displayText() = DB::Exception: Cannot add column source: column with this name already exists, e.what() = DB::Exception".into());
        let current = Error::BadResponse("Code: 15. DB::Exception: Cannot add column `source`: column with this name already exists. (DUPLICATE_COLUMN)".into());
        let other =
            Error::BadResponse("Code: 150, e.displayText() = DB::Exception: something else".into());
        assert!(already_applied(alter, &old));
        assert!(already_applied(alter, &current));
        assert!(!already_applied(alter, &other));
        assert!(!already_applied(alter, &Error::TimedOut));
        assert!(!already_applied(
            "CREATE TABLE IF NOT EXISTS v.x (a UInt8) ENGINE = Memory",
            &old
        ));
    }

    #[test]
    fn a_cluster_replicates_every_table_on_every_server() {
        let table = "CREATE TABLE IF NOT EXISTS v.alerts\n(\n    id String\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY id";
        assert_eq!(
            for_cluster(table, "pilot").unwrap(),
            "CREATE TABLE IF NOT EXISTS v.alerts ON CLUSTER pilot\n(\n    id String\n)\nENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/v.alerts', '{replica}', version)\nORDER BY id"
        );
        let plain =
            "CREATE TABLE IF NOT EXISTS v_audit.log (x UInt8) ENGINE = MergeTree() ORDER BY x";
        assert_eq!(
            for_cluster(plain, "pilot").unwrap(),
            "CREATE TABLE IF NOT EXISTS v_audit.log ON CLUSTER pilot (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/v_audit.log', '{replica}') ORDER BY x"
        );
        assert_eq!(
            for_cluster(
                "ALTER TABLE v.alerts ADD COLUMN m String DEFAULT ''",
                "pilot"
            )
            .unwrap(),
            "ALTER TABLE v.alerts ADD COLUMN m String DEFAULT ''"
        );
        assert_eq!(
            for_cluster("CREATE DATABASE IF NOT EXISTS v_insurance", "pilot").unwrap(),
            "CREATE DATABASE IF NOT EXISTS v_insurance ON CLUSTER pilot"
        );
        assert_eq!(
            for_cluster("CREATE VIEW IF NOT EXISTS v.rate AS\nSELECT 1", "pilot").unwrap(),
            "CREATE VIEW IF NOT EXISTS v.rate ON CLUSTER pilot AS\nSELECT 1"
        );
        assert!(matches!(
            for_cluster("DROP TABLE v.alerts", "pilot"),
            Err(SinkError::Cluster { .. })
        ));
        // Every statement of every migration has a cluster form.
        for (_, _, sql) in MIGRATIONS {
            for statement in statements(sql, "v") {
                let clustered = for_cluster(&statement, "pilot").unwrap();
                let alter = statement.starts_with("ALTER TABLE ");
                assert_eq!(
                    clustered.contains(" ON CLUSTER pilot"),
                    !alter,
                    "{clustered}"
                );
                assert!(
                    !clustered.contains("= MergeTree")
                        && !clustered.contains("= ReplacingMergeTree"),
                    "{clustered}"
                );
            }
        }
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/clickhouse/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(_, name, _)| format!("{name}.sql"))
            .collect();
        assert_eq!(files, listed);
        for (i, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(name.starts_with(&format!("{version:04}_")));
        }
    }

    #[test]
    fn statements_split_on_line_ending_semicolons_and_substitute_the_database() {
        let sql = "-- comment\nCREATE TABLE {db}.a (x UInt8)\nENGINE = Memory;\n\nCREATE VIEW {db}.b AS SELECT ';' AS s FROM {db}.a;\n";
        let got = statements(sql, "vigil_test");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            "CREATE TABLE vigil_test.a (x UInt8)\nENGINE = Memory"
        );
        assert!(got[1].contains("SELECT ';' AS s FROM vigil_test.a"));
        assert_ne!(checksum("a"), checksum("b"));
    }
}
