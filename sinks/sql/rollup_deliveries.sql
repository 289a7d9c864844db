-- The dashboard's notification outcomes per hospital, month of the alert (reporting time zone)
-- and outcome. {cells} selects the source rows (1: all).
INSERT INTO {db}.delivery_rollup
SELECT hospital_id,
    toStartOfMonth(toDate(toDateTime(toUInt32(alert_time) + {offset_s}), 'UTC')) AS month,
    outcome, uniqExact(alert_id), toInt64({computed_ms})
FROM {db}.alert_deliveries FINAL
WHERE {cells}
GROUP BY hospital_id, month, outcome
