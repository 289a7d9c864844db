-- Version 6: the same clinical fact entered twice (same patient, kind, time and values under
-- different record ids, as when a nurse re-enters a form) is one fact for the metrics and the
-- rules; hospitals see how often it happens, per day of the fact, as a data-quality figure.

CREATE VIEW IF NOT EXISTS {db}.duplicate_facts AS
SELECT
    hospital_id,
    toDate(fact_time) AS day,
    sum(records - 1) AS duplicates_received
FROM
(
    SELECT
        hospital_id,
        min(event_time) AS fact_time,
        uniqExact(record_id) AS records
    FROM {db}.clinical_events
    WHERE operation != 'DELETE'
    GROUP BY hospital_id, patient_pseudonym, kind, event_time_ms, payload
    HAVING records > 1
)
GROUP BY hospital_id, day;
