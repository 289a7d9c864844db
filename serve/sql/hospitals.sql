-- Each hospital that sent events: how many, and how fresh its newest data is (from the
-- writer's per-day rollup of the events).
SELECT hospital_id, sum(events) AS events,
    max(newest_event_ms) AS newest_event_ms, max(newest_landed_ms) AS newest_landed_ms
FROM event_rollup FINAL
GROUP BY hospital_id
HAVING events > 0
ORDER BY hospital_id
