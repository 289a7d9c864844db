-- Per rule and severity: episodes raised, those still open (their latest notification is not a
-- resolution), those acknowledged by a clinician, and the median minutes from raising to the
-- first acknowledgement (NULL when none was acknowledged).
SELECT rule_id, severity, count() AS episodes,
    countIf(last_status != 'RESOLVED') AS open,
    countIf(acknowledged_ms > 0) AS acknowledged,
    if(acknowledged = 0, NULL,
       quantileExactIf(0.5)((acknowledged_ms - raised_ms) / 60000, acknowledged_ms > 0))
       AS median_minutes_to_acknowledge
FROM
(
    SELECT episode_id, any(rule_id) AS rule_id, any(severity) AS severity,
        argMax(status, sequence) AS last_status,
        minIf(event_time_ms, status = 'RAISED') AS raised_ms,
        minIf(event_time_ms, status = 'ACKNOWLEDGED') AS acknowledged_ms
    FROM alerts FINAL
    GROUP BY episode_id
    HAVING raised_ms > 0
)
GROUP BY rule_id, severity
ORDER BY rule_id, severity
