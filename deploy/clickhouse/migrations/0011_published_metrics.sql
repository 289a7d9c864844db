-- What the outcome-metric API published for final periods, and every restatement since (issue
-- 17: payments must be reproducible from what was published). A period is final once it closed
-- and the processor's allowed lateness passed; the writer then publishes its figures per
-- hospital, condition and region of registration as version 1, and each time the figures of a
-- published cell change afterwards (data that arrived later still), a new version with the
-- reason. Never updated in place: every version stays.
CREATE TABLE IF NOT EXISTS {db}.published_metrics
(
    definition      String,
    period_kind     String,
    period_start    Date,
    hospital_id     String,
    condition       String,
    region_code     String,
    managed         UInt64,
    standardised    UInt64,
    controlled      UInt64,
    complications   UInt64,
    managed_days    UInt64,
    version         UInt32,
    published_ms    Int64,
    -- first_publication, or late_data (with the figures that changed, in words)
    reason          String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYear(period_start)
ORDER BY (definition, period_kind, period_start, hospital_id, condition, region_code, version);
