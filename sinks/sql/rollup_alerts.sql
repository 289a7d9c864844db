-- The dashboard's alert episodes per hospital, month raised (reporting time zone), rule and
-- severity: raised, still open, acknowledged, and minutes from raising to the first
-- acknowledgement of each acknowledged episode. {cells} selects the source rows (1: all).
INSERT INTO {db}.alert_rollup
SELECT hospital_id, month, rule_id, severity, count() AS raised,
    countIf(last_status != 'RESOLVED') AS open,
    countIf(acknowledged_ms > 0) AS acknowledged,
    groupArrayIf((acknowledged_ms - raised_ms) / 60000, acknowledged_ms > 0),
    toInt64({computed_ms})
FROM
(
    SELECT episode_id, any(hospital_id) AS hospital_id, any(rule_id) AS rule_id,
        any(severity) AS severity,
        toStartOfMonth(toDate(toDateTime(toUInt32(any(episode_start)) + {offset_s}), 'UTC')) AS month,
        argMax(status, sequence) AS last_status,
        minIf(event_time_ms, status = 'RAISED') AS raised_ms,
        minIf(event_time_ms, status = 'ACKNOWLEDGED') AS acknowledged_ms
    FROM {db}.alerts FINAL
    WHERE {cells}
    GROUP BY episode_id
    HAVING raised_ms > 0
)
GROUP BY hospital_id, month, rule_id, severity
