-- The ten newest alert episodes raised, newest first, their time in the reporting time zone.
-- binds: 28800
SELECT alert_id, toString(toDateTime(intDiv(event_time_ms, 1000) + ?, 'UTC')) AS time,
    hospital_id, rule_id, severity, message
FROM alerts FINAL
WHERE status = 'RAISED'
ORDER BY event_time_ms DESC, alert_id
LIMIT 10
