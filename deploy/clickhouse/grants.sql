-- For current ClickHouse (SQL-driven access control): the same four users as
-- server/users.xml, with the writer narrowed to what it needs. ClickHouse 18.16 has no GRANT;
-- there, server/users.xml alone applies. Passwords come from the deployment's secrets.
CREATE USER IF NOT EXISTS vigil_writer IDENTIFIED WITH sha256_password BY '{writer_password}';
GRANT INSERT ON vigil.* TO vigil_writer;
GRANT INSERT ON vigil_insurance.* TO vigil_writer;
-- The publication is an INSERT ... SELECT over the metric views, and the health check asks the version.
GRANT SELECT ON vigil.pilot_metrics TO vigil_writer;
GRANT SELECT ON vigil.patient_status TO vigil_writer;
-- The dashboard's rollups are recomputed from the rows landed (INSERT ... SELECT), and the
-- writer's catch-up reads when each was last recomputed.
GRANT SELECT ON vigil.clinical_events TO vigil_writer;
GRANT SELECT ON vigil.late_events TO vigil_writer;
GRANT SELECT ON vigil.alerts TO vigil_writer;
GRANT SELECT ON vigil.alert_deliveries TO vigil_writer;
GRANT SELECT ON vigil.dead_letters TO vigil_writer;
GRANT SELECT ON vigil.status_rollup TO vigil_writer;
GRANT SELECT ON vigil.event_rollup TO vigil_writer;
GRANT SELECT ON vigil.alert_rollup TO vigil_writer;
GRANT SELECT ON vigil.delivery_rollup TO vigil_writer;
GRANT SELECT ON vigil.dead_letter_rollup TO vigil_writer;
GRANT SELECT ON vigil_insurance.outcome_metrics_latest TO vigil_writer;
GRANT SELECT ON vigil_insurance.outcome_metrics TO vigil_writer;

CREATE USER IF NOT EXISTS commission IDENTIFIED WITH sha256_password BY '{commission_password}' SETTINGS readonly = 1;
GRANT SELECT ON vigil.* TO commission;

CREATE USER IF NOT EXISTS insurance IDENTIFIED WITH sha256_password BY '{insurance_password}' SETTINGS readonly = 1;
GRANT SELECT ON vigil_insurance.* TO insurance;
