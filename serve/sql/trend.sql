-- The last 18 months, per condition, summed over hospitals; the unfinished month flagged.
-- binds: 28800, 'cn-nbphs-2017/v1', 28800
SELECT condition, toString(period_start) AS start,
    addMonths(period_start, 1) <= {today} AS finished,
    sum(managed_patients) AS managed, sum(standardised_patients) AS standardised,
    sum(controlled_patients) AS controlled
FROM pilot_rollup
WHERE definition = ? AND period_kind = 'MONTH'
    AND period_start >= addMonths(toStartOfMonth({today}), -17)
GROUP BY condition, period_start
ORDER BY condition, period_start
