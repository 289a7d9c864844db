-- Each hospital's figures for the newest reporting year, per condition (the metric view's own
-- numerators and denominators, from the per-period rollup), with its case mix: managed patients
-- at high or very high cardiovascular risk (graded management), so a hospital with sicker
-- patients is seen as such.
-- binds: 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1'
SELECT hospital_id, condition,
    managed_patients AS managed, standardised_patients AS standardised,
    controlled_patients AS controlled, new_complications AS complications,
    patient_years AS years, high_risk
FROM pilot_rollup
WHERE definition = ? AND period_kind = 'YEAR'
    AND period_start = (SELECT max(period_start) FROM status_rollup
                        WHERE definition = ? AND period_kind = 'YEAR')
ORDER BY hospital_id, condition
