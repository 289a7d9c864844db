-- Alert episodes raised per month of the reporting time zone, rule and severity, over the last
-- 18 months (the unfinished month included).
-- binds: 28800
SELECT toString(month_start) AS month, rule_id, severity, sum(raised) AS raised
FROM
(
    SELECT month AS month_start, rule_id, severity, raised
    FROM alert_rollup_latest
    WHERE month >= addMonths(toStartOfMonth({today}), -17)
)
GROUP BY month_start, rule_id, severity
ORDER BY month_start, rule_id, severity
