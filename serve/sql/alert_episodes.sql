-- Per rule and severity: episodes raised, those still open (their latest notification is not a
-- resolution), those acknowledged by a clinician, and the median minutes from raising to the
-- first acknowledgement (NULL when none was acknowledged).
SELECT rule_id, severity, sum(raised) AS episodes, sum(open) AS open,
    sum(acknowledged) AS acknowledged,
    if(acknowledged = 0, NULL, quantileExactArray(0.5)(minutes_to_acknowledge))
       AS median_minutes_to_acknowledge
FROM alert_rollup_latest
GROUP BY rule_id, severity
ORDER BY rule_id, severity
