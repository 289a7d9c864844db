-- The dashboard's events per hospital and day of clinical time (reporting time zone):
-- distinct events, late ones, newest times, and the lag from clinical time to first landing.
-- {cells} selects the source rows of the cells recomputed (1: all).
INSERT INTO {db}.event_rollup
SELECT hospital_id, day, countIf(is_late = 0) AS events, countIf(is_late = 1) AS late,
    maxIf(event_ms, is_late = 0) AS newest_event_ms, maxIf(landed_ms, is_late = 0) AS newest_landed_ms,
    quantileExactIf(0.5)((landed_ms - event_ms) / 60000, is_late = 0) AS lag_p50_minutes,
    quantileExactIf(0.95)((landed_ms - event_ms) / 60000, is_late = 0) AS lag_p95_minutes,
    toInt64({computed_ms})
FROM
(
    -- One row per event: replays and redeliveries count once, at their first landing.
    SELECT hospital_id, event_id, toUInt8(0) AS is_late, any(event_time_ms) AS event_ms,
        min(landed_time_ms) AS landed_ms,
        toDate(toDateTime(toUInt32(any(event_time)) + {offset_s}), 'UTC') AS day
    FROM {db}.clinical_events
    WHERE {cells}
    GROUP BY hospital_id, event_id
    UNION ALL
    -- Events the processor held for late (they are not in clinical_events).
    SELECT hospital_id, event_id, toUInt8(1) AS is_late, any(event_time_ms) AS event_ms,
        min(landed_time_ms) AS landed_ms,
        toDate(toDateTime(toUInt32(any(event_time)) + {offset_s}), 'UTC') AS day
    FROM {db}.late_events
    WHERE {cells}
    GROUP BY hospital_id, event_id
)
GROUP BY hospital_id, day
