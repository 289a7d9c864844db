-- The department managing each condition (the latest qualifying diagnosis that named one), for
-- pilots scoped to departments: on the status rows from now on, empty on rows written before.
ALTER TABLE {db}.patient_status ADD COLUMN department_code String DEFAULT '' AFTER region_code;

-- The pilot's figures per definition, period, condition, hospital, region and department, kept
-- small enough for the dashboard to read in milliseconds at a province's scale (`pilot_metrics`
-- reads every status row with FINAL: about 14 s at a million patients). The writer recomputes a period
-- here from the current status rows whenever it lands rows of that period (and `vigil rollup`
-- recomputes them all): recomputed, never added to, so a status row's new version replaces
-- its old one in the figures as it does in `pilot_metrics`. Each recompute is stamped with the
-- time it started; the one that started last is a period's figures (a hospital whose patients
-- all left a period is then absent, as in `pilot_metrics`).
CREATE TABLE IF NOT EXISTS {db}.status_rollup
(
    definition            String,
    period_kind           String,
    period_start          Date,
    condition             String,
    hospital_id           String,
    region_code           String,
    department_code       String,
    managed_patients      UInt64,
    standardised_patients UInt64,
    controlled_patients   UInt64,
    new_complications     UInt64,
    managed_days          UInt64,
    -- Managed patients at high or very high cardiovascular risk (graded management).
    high_risk             UInt64,
    computed_ms           Int64
)
ENGINE = ReplacingMergeTree(computed_ms)
ORDER BY (definition, period_kind, period_start, condition, hospital_id, region_code, department_code);

-- Each period's latest recompute, at its finest grain (hospital, region, department): what the
-- drill-down reads.
CREATE VIEW IF NOT EXISTS {db}.status_rollup_latest AS
SELECT
    definition, period_kind, period_start, condition, hospital_id, region_code, department_code,
    managed_patients AS managed, standardised_patients AS standardised,
    controlled_patients AS controlled, new_complications AS complications,
    managed_days AS days, high_risk AS risk
FROM {db}.status_rollup
WHERE (definition, period_kind, period_start, computed_ms) IN
(
    SELECT definition, period_kind, period_start, max(computed_ms)
    FROM {db}.status_rollup
    GROUP BY definition, period_kind, period_start
);

-- `pilot_metrics`' columns (and the case mix's high-risk count), per hospital, from the latest
-- recompute of each period.
CREATE VIEW IF NOT EXISTS {db}.pilot_rollup AS
SELECT
    definition,
    hospital_id,
    condition,
    period_kind,
    period_start,
    sum(managed) AS managed_patients,
    sum(standardised) AS standardised_patients,
    round(standardised_patients / greatest(managed_patients, 1), 4) AS standardised_rate,
    sum(controlled) AS controlled_patients,
    round(controlled_patients / greatest(managed_patients, 1), 4) AS control_rate,
    sum(complications) AS new_complications,
    round(sum(days) / 365.25, 3) AS patient_years,
    round(new_complications * 1000 / greatest(patient_years, 0.001), 2) AS complications_per_1000_patient_years,
    sum(risk) AS high_risk
FROM {db}.status_rollup_latest
GROUP BY definition, hospital_id, condition, period_kind, period_start;
