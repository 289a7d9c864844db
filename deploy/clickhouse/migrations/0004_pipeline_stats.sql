-- Version 4: the pipeline's own statistics per stage, hospital and interval (from the
-- pipeline-stats topic), and an hourly view of them: throughput, rejections, lateness and how
-- old each hospital's data was on arrival.

CREATE TABLE IF NOT EXISTS {db}.pipeline_stats
(
    stat_id           String,
    stage             String,
    instance          String,
    hospital_id       String,
    interval_start    DateTime,
    interval_start_ms Int64,
    interval_end_ms   Int64,
    records_in        Int64,
    records_out       Int64,
    dead_letters      Int64,
    late              Int64,
    max_event_age_ms  Int64,
    landed_time_ms    Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(interval_start)
ORDER BY (stage, hospital_id, interval_start, stat_id);

-- Per stage, hospital and hour. A stage replaying input after a crash counts it again: these are
-- operational figures; the clinical metrics come from the deduplicated tables.
CREATE VIEW IF NOT EXISTS {db}.pipeline_hourly AS
SELECT
    stage,
    hospital_id,
    toStartOfHour(interval_start) AS hour,
    sum(records_in) AS records_in,
    sum(records_out) AS records_out,
    sum(dead_letters) AS dead_letters,
    sum(late) AS late,
    round(dead_letters / greatest(records_in, 1), 4) AS dead_letter_share,
    max(max_event_age_ms) / 1000 AS max_event_age_seconds
FROM {db}.pipeline_stats FINAL
GROUP BY stage, hospital_id, hour;
