-- Data quality per hospital that sent events: distinct events received, events the processor
-- held for late, and how long the events of the hospital's newest day of clinical time
-- (reporting time zone) took from their clinical time to their first landing (median and 95th
-- percentile, minutes). Dead letters by reason are a query of their own.
SELECT hospital_id, sum(day_events) AS events, sum(day_late) AS late,
    argMaxIf(lag_p50_minutes, day, day_events > 0) AS lag_p50_minutes,
    argMaxIf(lag_p95_minutes, day, day_events > 0) AS lag_p95_minutes
FROM
(
    SELECT hospital_id, day, events AS day_events, late AS day_late, lag_p50_minutes,
        lag_p95_minutes
    FROM event_rollup FINAL
)
GROUP BY hospital_id
HAVING events > 0
ORDER BY hospital_id
