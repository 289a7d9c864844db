-- Each hospital that sent anything: how much, and how fresh its newest data is.
SELECT hospital_id, uniqExact(event_id) AS events,
    max(event_time_ms) AS newest_event_ms, max(landed_time_ms) AS newest_landed_ms
FROM clinical_events
GROUP BY hospital_id
ORDER BY hospital_id
