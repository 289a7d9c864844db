-- The newest reporting year with figures, per condition, summed over hospitals.
-- binds: 28800, 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1'
SELECT condition, toString(period_start) AS start,
    toString(addDays(addYears(period_start, 1), -1)) AS end,
    addYears(period_start, 1) <= {today} AS finished,
    sum(managed_patients) AS managed, sum(standardised_patients) AS standardised,
    sum(controlled_patients) AS controlled, sum(new_complications) AS complications,
    sum(patient_years) AS years
FROM pilot_metrics
WHERE definition = ? AND period_kind = 'YEAR'
    AND period_start = (SELECT max(period_start) FROM patient_status
                        WHERE definition = ? AND period_kind = 'YEAR')
GROUP BY condition, period_start
ORDER BY condition
