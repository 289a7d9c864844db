-- The ten newest alert episodes raised, newest first, their time in the reporting time zone.
-- Only the newest alerts' month and the one before are read (the table is partitioned by month).
-- binds: 28800
SELECT alert_id, toString(toDateTime(intDiv(event_time_ms, 1000) + ?, 'UTC')) AS time,
    hospital_id, rule_id, severity, message
FROM alerts FINAL
WHERE status = 'RAISED'
    AND event_time >= (SELECT toStartOfMonth(addMonths(toDate(max(event_time)), -1)) FROM alerts)
ORDER BY event_time_ms DESC, alert_id
LIMIT 10
