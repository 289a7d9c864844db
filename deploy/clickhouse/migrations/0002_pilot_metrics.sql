-- Pilot-performance metrics as ../shared/design/CLINICAL.md defines them, computed from the
-- processor's patient-status rows (one per patient, condition and month/quarter/year, whose
-- latest version FINAL selects), and the insurance bureau's published, aggregated tables.
-- Every view is duplicate-safe: FINAL or distinct ids. Runs on ClickHouse 18.16 and current.

-- The current version of every patient-status row: pseudonymous drill-down for the commission.
CREATE VIEW IF NOT EXISTS {db}.patient_status_current AS
SELECT * FROM {db}.patient_status FINAL;

-- Per hospital, condition and period (definition cn-nbphs-2017/v1 and later ones):
-- managed patients (年内已管理人数), standardised management rate (规范管理率), control rate
-- (控制率: the latest follow-up met the target; none counts as not controlled) and new
-- complications per 1,000 managed patient-years.
CREATE VIEW IF NOT EXISTS {db}.pilot_metrics AS
SELECT
    definition,
    hospital_id,
    condition,
    period_kind,
    period_start,
    countIf(managed = 1) AS managed_patients,
    countIf(managed = 1 AND standardised = 1) AS standardised_patients,
    round(standardised_patients / greatest(managed_patients, 1), 4) AS standardised_rate,
    countIf(managed = 1 AND controlled = 1) AS controlled_patients,
    round(controlled_patients / greatest(managed_patients, 1), 4) AS control_rate,
    sumIf(new_complications, managed = 1) AS new_complications,
    round(sumIf(managed_days, managed = 1) / 365.25, 3) AS patient_years,
    round(new_complications * 1000 / greatest(patient_years, 0.001), 2) AS complications_per_1000_patient_years
FROM {db}.patient_status FINAL
GROUP BY definition, hospital_id, condition, period_kind, period_start;

-- The same per region (county code of the patient's registration).
CREATE VIEW IF NOT EXISTS {db}.pilot_metrics_by_region AS
SELECT
    definition,
    region_code,
    condition,
    period_kind,
    period_start,
    countIf(managed = 1) AS managed_patients,
    round(countIf(managed = 1 AND standardised = 1) / greatest(managed_patients, 1), 4) AS standardised_rate,
    round(countIf(managed = 1 AND controlled = 1) / greatest(managed_patients, 1), 4) AS control_rate,
    sumIf(new_complications, managed = 1) AS new_complications,
    round(sumIf(managed_days, managed = 1) / 365.25, 3) AS patient_years
FROM {db}.patient_status FINAL
GROUP BY definition, region_code, condition, period_kind, period_start;

-- Case mix (分级管理): how many managed patients fall in each grade, so hospitals are compared
-- with their patients' risk in view.
CREATE VIEW IF NOT EXISTS {db}.case_mix AS
SELECT
    definition,
    hospital_id,
    condition,
    period_kind,
    period_start,
    risk_level,
    bp_grade,
    has_complications,
    controlled,
    count() AS patients
FROM {db}.patient_status FINAL
WHERE managed = 1
GROUP BY definition, hospital_id, condition, period_kind, period_start, risk_level, bp_grade, has_complications, controlled;

-- Alert burden and response per hospital, rule and month of the episode's start: episodes,
-- re-notifications, the share acknowledged and the median minutes to acknowledgement.
CREATE VIEW IF NOT EXISTS {db}.alert_burden AS
SELECT
    hospital_id,
    rule_id,
    severity,
    toStartOfMonth(episode_start) AS month,
    uniqExactIf(episode_id, status = 'RAISED') AS episodes,
    countIf(status = 'RENOTIFIED') AS renotifications,
    uniqExactIf(episode_id, status = 'ACKNOWLEDGED') AS acknowledged,
    round(acknowledged / greatest(episodes, 1), 4) AS acknowledged_share,
    quantileIf(0.5)((event_time_ms - toInt64(episode_start) * 1000) / 60000, status = 'ACKNOWLEDGED') AS median_minutes_to_acknowledge,
    uniqExactIf(episode_id, status = 'RESOLVED') AS resolved
FROM {db}.alerts FINAL
GROUP BY hospital_id, rule_id, severity, month;

-- Alerts raised per 100 patients under management, per hospital and month.
CREATE VIEW IF NOT EXISTS {db}.alert_rate AS
SELECT
    hospital_id,
    month,
    episodes,
    managed_patients,
    round(episodes * 100 / greatest(managed_patients, 1), 2) AS alerts_per_100_patients
FROM
(
    SELECT hospital_id, toStartOfMonth(episode_start) AS month, uniqExactIf(episode_id, status = 'RAISED') AS episodes
    FROM {db}.alerts FINAL
    GROUP BY hospital_id, month
) AS raised
ANY LEFT JOIN
(
    SELECT hospital_id, period_start AS month, uniqExact(patient_pseudonym) AS managed_patients
    FROM {db}.patient_status FINAL
    WHERE period_kind = 'MONTH' AND managed = 1
    GROUP BY hospital_id, month
) AS managed USING (hospital_id, month);

-- Data quality and timeliness per hospital and day of receipt: events accepted, prescriptions
-- whose drug code has no ATC mapping, how old events were when they landed, and how long the
-- pipeline itself took (edge acceptance to ClickHouse).
CREATE VIEW IF NOT EXISTS {db}.data_quality AS
SELECT
    hospital_id,
    toDate(toDateTime(intDiv(ingest_time_ms, 1000))) AS day,
    uniqExact(event_id) AS events,
    uniqExactIf(event_id, kind = 'prescription' AND visitParamExtractString(payload, 'atc_code') = '') AS unmapped_codes,
    round(quantile(0.5)((landed_time_ms - event_time_ms) / 1000)) AS median_event_age_seconds,
    round(quantile(0.95)((landed_time_ms - ingest_time_ms) / 1000), 3) AS p95_pipeline_seconds,
    round(quantile(0.5)((landed_time_ms - ingest_time_ms) / 1000), 3) AS median_pipeline_seconds
FROM {db}.clinical_events FINAL
GROUP BY hospital_id, day;

-- Rejected input per hospital, stage, reason and day.
CREATE VIEW IF NOT EXISTS {db}.rejections AS
SELECT
    hospital_id,
    stage,
    reason_code,
    toDate(received_time) AS day,
    uniqExact(dead_letter_id) AS rejected
FROM {db}.dead_letters
GROUP BY hospital_id, stage, reason_code, day;

-- What the medical insurance bureau reads: aggregated outcome metrics per hospital, condition
-- and quarter or year, without pseudonyms, with small cells suppressed (NULL), published by
-- the writer at intervals. Every publication is kept (auditable: what was published when);
-- outcome_metrics_latest shows the newest per cell.
CREATE DATABASE IF NOT EXISTS {db}_insurance;

CREATE TABLE IF NOT EXISTS {db}_insurance.outcome_metrics
(
    definition                           String,
    hospital_id                          String,
    condition                            String,
    period_kind                          String,
    period_start                         Date,
    managed_patients                     Nullable(UInt64),
    standardised_rate                    Nullable(Float64),
    control_rate                         Nullable(Float64),
    complications_per_1000_patient_years Nullable(Float64),
    suppressed                           UInt8,
    published_at                         DateTime
)
ENGINE = MergeTree()
PARTITION BY toYear(period_start)
ORDER BY (definition, period_kind, period_start, hospital_id, condition, published_at);

CREATE VIEW IF NOT EXISTS {db}_insurance.outcome_metrics_latest AS
SELECT
    definition,
    hospital_id,
    condition,
    period_kind,
    period_start,
    argMax(managed_patients, published_at) AS managed_patients,
    argMax(standardised_rate, published_at) AS standardised_rate,
    argMax(control_rate, published_at) AS control_rate,
    argMax(complications_per_1000_patient_years, published_at) AS complications_per_1000_patient_years,
    argMax(suppressed, published_at) AS suppressed,
    max(published_at) AS latest_publication
FROM {db}_insurance.outcome_metrics
GROUP BY definition, hospital_id, condition, period_kind, period_start;
