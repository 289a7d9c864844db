-- Version 5: events the processor left out because they arrived after the allowed lateness
-- (from the late-events topic), so the commission sees what the figures do not include, per
-- hospital and day. Same columns, engine and keys as clinical_events (spelled out, not
-- `AS clinical_events`: a replicated table must not copy another's replica path).

CREATE TABLE IF NOT EXISTS {db}.late_events
(
    event_id          String,
    hospital_id       String,
    source_system     String,
    operation         String,
    kind              String,
    event_time        DateTime,
    event_time_ms     Int64,
    ingest_time_ms    Int64,
    patient_pseudonym String,
    record_id         String,
    code              String,
    value             Nullable(Float64),
    value2            Nullable(Float64),
    unit              String,
    payload           String,
    landed_time_ms    Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_time)
ORDER BY (hospital_id, kind, event_time, event_id);

-- Per hospital and day of the event's clinical time: how many events were left out, and how
-- late they came (the landing time against the clinical time).
CREATE VIEW IF NOT EXISTS {db}.late_events_by_hospital AS
SELECT
    hospital_id,
    toDate(event_time) AS day,
    uniqExact(event_id) AS late_events,
    round(max(landed_time_ms - event_time_ms) / 86400000, 1) AS max_days_late
FROM {db}.late_events
GROUP BY hospital_id, day;
