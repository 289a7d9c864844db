-- The newest reporting year at its finest grain, per condition: region (the county code of the
-- patient's registration), hospital and managing department, from the per-period rollup. The
-- drill-down region → hospital → department sums these; every level sums to its parent.
-- binds: 'cn-nbphs-2017/v1', 'cn-nbphs-2017/v1'
SELECT condition, region_code, hospital_id, department_code,
    sum(managed) AS managed, sum(standardised) AS standardised, sum(controlled) AS controlled
FROM status_rollup_latest
WHERE definition = ? AND period_kind = 'YEAR'
    AND period_start = (SELECT max(period_start) FROM status_rollup
                        WHERE definition = ? AND period_kind = 'YEAR')
GROUP BY condition, region_code, hospital_id, department_code
ORDER BY condition, region_code, hospital_id, department_code
