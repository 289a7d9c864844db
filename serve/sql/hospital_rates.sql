-- Each hospital's figures for the newest reporting year, per condition (the metric view's own
-- numerators and denominators), with its case mix: managed patients at high or very high
-- cardiovascular risk (graded management), so a hospital with sicker patients is seen as such.
-- binds: 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1'
SELECT m.hospital_id AS hospital_id, m.condition AS condition,
    m.managed_patients AS managed, m.standardised_patients AS standardised,
    m.controlled_patients AS controlled, m.new_complications AS complications,
    m.patient_years AS years, r.high_risk AS high_risk
FROM
(
    SELECT hospital_id, condition, managed_patients, standardised_patients,
        controlled_patients, new_complications, patient_years
    FROM pilot_metrics
    WHERE definition = ? AND period_kind = 'YEAR'
        AND period_start = (SELECT max(period_start) FROM patient_status
                            WHERE definition = ? AND period_kind = 'YEAR')
) AS m
ANY LEFT JOIN
(
    SELECT hospital_id, condition,
        countIf(managed = 1 AND risk_level IN ('HIGH', 'VERY_HIGH')) AS high_risk
    FROM patient_status FINAL
    WHERE definition = ? AND period_kind = 'YEAR'
        AND period_start = (SELECT max(period_start) FROM patient_status
                            WHERE definition = ? AND period_kind = 'YEAR')
    GROUP BY hospital_id, condition
) AS r USING (hospital_id, condition)
ORDER BY hospital_id, condition
