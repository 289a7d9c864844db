-- The ten newest alert episodes raised, newest first, their time in the reporting time zone.
-- Only alerts raised within a window (seconds) before the newest are read, so that a province's
-- history is not; the server asks again with a window reaching back to the start when the
-- window holds fewer than ten.
-- binds: 28800, 2678400
SELECT alert_id, toString(toDateTime(intDiv(event_time_ms, 1000) + ?, 'UTC')) AS time,
    hospital_id, rule_id, severity, message
FROM alerts FINAL
WHERE status = 'RAISED'
    AND event_time >= (
        SELECT toDateTime(greatest(toInt64(toUInt32(max(event_time))) - ?, 0))
        FROM alerts WHERE status = 'RAISED')
ORDER BY event_time_ms DESC, alert_id
LIMIT 10
