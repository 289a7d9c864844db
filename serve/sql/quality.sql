-- Data quality per hospital: distinct events received, events the processor held for late,
-- and how long events of the newest day took from their clinical time to landing (median and
-- 95th percentile, minutes). Dead letters by reason are a query of their own.
SELECT e.hospital_id AS hospital_id, e.events AS events,
    ifNull(l.late, 0) AS late,
    e.lag_p50_minutes AS lag_p50_minutes, e.lag_p95_minutes AS lag_p95_minutes
FROM
(
    SELECT hospital_id, uniqExact(event_id) AS events,
        quantileExactIf(0.5)((landed_time_ms - event_time_ms) / 60000,
            landed_time_ms >= newest - 86400000) AS lag_p50_minutes,
        quantileExactIf(0.95)((landed_time_ms - event_time_ms) / 60000,
            landed_time_ms >= newest - 86400000) AS lag_p95_minutes
    FROM clinical_events
    -- ALL: every event meets its hospital's newest landing (ANY would keep one event per
    -- hospital on current engines, where ANY INNER JOIN takes one row per key from both sides).
    ALL INNER JOIN
    (
        SELECT hospital_id, max(landed_time_ms) AS newest FROM clinical_events GROUP BY hospital_id
    ) AS n USING (hospital_id)
    GROUP BY hospital_id
) AS e
ANY LEFT JOIN
(
    SELECT hospital_id, uniqExact(event_id) AS late FROM late_events GROUP BY hospital_id
) AS l USING (hospital_id)
ORDER BY hospital_id
