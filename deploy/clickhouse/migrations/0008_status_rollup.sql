-- The pilot's figures per definition, period, condition and hospital, kept small enough for
-- the dashboard to read in milliseconds at a province's scale (`pilot_metrics` reads every
-- status row with FINAL: about 14 s at a million patients). The writer recomputes a period
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
ORDER BY (definition, period_kind, period_start, condition, hospital_id);

-- `pilot_metrics`' columns (and the case mix's high-risk count), from the latest recompute of
-- each period.
CREATE VIEW IF NOT EXISTS {db}.pilot_rollup AS
SELECT
    definition,
    hospital_id,
    condition,
    period_kind,
    period_start,
    managed_patients,
    standardised_patients,
    round(standardised_patients / greatest(managed_patients, 1), 4) AS standardised_rate,
    controlled_patients,
    round(controlled_patients / greatest(managed_patients, 1), 4) AS control_rate,
    new_complications,
    round(managed_days / 365.25, 3) AS patient_years,
    round(new_complications * 1000 / greatest(patient_years, 0.001), 2) AS complications_per_1000_patient_years,
    high_risk
FROM {db}.status_rollup
WHERE (definition, period_kind, period_start, computed_ms) IN
(
    SELECT definition, period_kind, period_start, max(computed_ms)
    FROM {db}.status_rollup
    GROUP BY definition, period_kind, period_start
);
