//! Publication of the insurance bureau's outcome metrics: a snapshot of `pilot_metrics` for
//! quarters and years, without pseudonyms, into `<db>_insurance.outcome_metrics`, the only
//! database the bureau's ClickHouse user may read (a view could not serve: ClickHouse checks a
//! view's reader against the tables underneath).
//!
//! Small cells are suppressed (NULL): every figure of a cell with fewer than `min_cell` managed
//! patients, and a rate whose numerator or complement counts between 1 and `min_cell - 1`
//! patients (otherwise "11 managed, 10 controlled" would single out one uncontrolled patient).

use vigil_runtime::config::ClickHouseConfig;
use vigil_runtime::RuntimeError;

use crate::error::SinkError;

/// The publication query for a database and cell threshold.
pub fn publication_sql(database: &str, min_cell: u64) -> String {
    let k = min_cell;
    let thin = |count: &str| format!("({count} > 0 AND {count} < {k})");
    let standardised = format!(
        "(small OR {} OR {})",
        thin("standardised_patients"),
        thin("(managed_patients - standardised_patients)")
    );
    let controlled = format!(
        "(small OR {} OR {})",
        thin("controlled_patients"),
        thin("(managed_patients - controlled_patients)")
    );
    let complications = format!("(small OR {})", thin("new_complications"));
    format!(
        "INSERT INTO {database}_insurance.outcome_metrics \
         SELECT definition, hospital_id, condition, period_kind, period_start, \
                if(small, NULL, managed_patients), \
                if({standardised}, NULL, standardised_rate), \
                if({controlled}, NULL, control_rate), \
                if({complications}, NULL, complications_per_1000_patient_years), \
                {standardised} OR {controlled} OR {complications}, \
                now() \
         FROM (SELECT *, managed_patients < {k} AS small FROM {database}.pilot_metrics WHERE period_kind IN ('QUARTER', 'YEAR'))"
    )
}

/// Publishes one snapshot; returns the number of cells now published.
pub async fn publish(config: &ClickHouseConfig, min_cell: u64) -> Result<u64, SinkError> {
    let client = vigil_runtime::clickhouse::server_client(config);
    let db = &config.database;
    client
        .query(&publication_sql(db, min_cell))
        .execute()
        .await
        .map_err(|source| RuntimeError::ClickHouse {
            operation: "publish outcome metrics",
            source,
        })?;
    let cells = client
        .query(&format!(
            "SELECT count() FROM {db}_insurance.outcome_metrics_latest"
        ))
        .fetch_one::<u64>()
        .await
        .map_err(|source| RuntimeError::ClickHouse {
            operation: "count published cells",
            source,
        })?;
    Ok(cells)
}
