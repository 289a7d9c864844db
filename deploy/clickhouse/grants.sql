-- For current ClickHouse (SQL-driven access control): the users of server/users.xml, each with
-- the least it needs and settings it cannot change. ClickHouse 18.16 has neither GRANT nor
-- settings constraints; there server/users.xml alone applies. Passwords come from the
-- deployment's secrets ({..._password} placeholders); the `default` user gets a password in
-- users.xml (or is removed) so that nobody reaches the server through it.
--
-- Settings a user could otherwise send with any request (`&allow_ddl=1` in the URL) are
-- locked by the profiles' CONST constraints; the query log cannot be turned off; no role is
-- granted a table function source (URL, REMOTE, FILE, ...) or CREATE TEMPORARY TABLE, so
-- url() and remote() cannot read around the grants.
CREATE SETTINGS PROFILE IF NOT EXISTS vigil_writer_profile SETTINGS allow_ddl = 0 CONST, readonly = 0 CONST, log_queries = 1 CONST, allow_introspection_functions = 0 CONST;
CREATE SETTINGS PROFILE IF NOT EXISTS vigil_readonly_profile SETTINGS readonly = 1 CONST, log_queries = 1 CONST, allow_introspection_functions = 0 CONST;

CREATE USER IF NOT EXISTS vigil_writer IDENTIFIED WITH sha256_password BY '{writer_password}' SETTINGS PROFILE 'vigil_writer_profile';
GRANT INSERT ON vigil.* TO vigil_writer;
GRANT INSERT ON vigil_insurance.* TO vigil_writer;
GRANT INSERT, SELECT ON vigil_audit.* TO vigil_writer;
-- The publication is an INSERT ... SELECT over the metric views, and the health check asks the version.
GRANT SELECT ON vigil.pilot_metrics TO vigil_writer;
GRANT SELECT ON vigil.patient_status TO vigil_writer;
-- The dashboard's rollups are recomputed from the rows landed (INSERT ... SELECT), the
-- writer's catch-up reads when each was last recomputed, and a backtest replays the events
-- and the live run's acknowledgements.
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

CREATE USER IF NOT EXISTS vigil_reader IDENTIFIED WITH sha256_password BY '{reader_password}' SETTINGS PROFILE 'vigil_readonly_profile';
GRANT SELECT ON vigil.* TO vigil_reader;

CREATE USER IF NOT EXISTS commission IDENTIFIED WITH sha256_password BY '{commission_password}' SETTINGS PROFILE 'vigil_readonly_profile';
GRANT SELECT ON vigil.* TO commission;

CREATE USER IF NOT EXISTS insurance IDENTIFIED WITH sha256_password BY '{insurance_password}' SETTINGS PROFILE 'vigil_readonly_profile';
GRANT SELECT ON vigil_insurance.* TO insurance;
