-- The newest reporting year with figures, per condition, summed over hospitals (from the
-- per-period rollup the writer keeps: milliseconds at a province's scale).
-- binds: 28800, 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1'
SELECT condition, toString(period_start) AS start,
    toString(addDays(addYears(period_start, 1), -1)) AS end,
    addYears(period_start, 1) <= {today} AS finished,
    sum(managed_patients) AS managed, sum(standardised_patients) AS standardised,
    sum(controlled_patients) AS controlled, sum(new_complications) AS complications,
    sum(patient_years) AS years
FROM pilot_rollup
WHERE definition = ? AND period_kind = 'YEAR'
    AND period_start = (SELECT max(period_start) FROM status_rollup
                        WHERE definition = ? AND period_kind = 'YEAR')
GROUP BY condition, period_start
ORDER BY condition
