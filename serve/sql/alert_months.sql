-- Alert episodes raised per month of the reporting time zone, rule and severity, over the last
-- 18 months (the unfinished month included).
-- binds: 28800, 28800, 28800
SELECT toString(toStartOfMonth(toDate(toDateTime(intDiv(event_time_ms, 1000) + ?), 'UTC'))) AS month,
    rule_id, severity, uniqExact(episode_id) AS raised
FROM alerts FINAL
WHERE status = 'RAISED'
    AND toDate(toDateTime(intDiv(event_time_ms, 1000) + ?), 'UTC') >= addMonths(toStartOfMonth({today}), -17)
GROUP BY month, rule_id, severity
ORDER BY month, rule_id, severity
