-- The dashboard's alerts and data-quality sections per hospital and day or month (of the
-- reporting time zone), kept small enough to read in milliseconds at a province's scale: the
-- raw tables hold every event, alert record, delivery and dead letter (millions), and reading
-- them for every refresh took seconds. Like `status_rollup`, the writer recomputes a cell from
-- the raw rows whenever it lands rows of that cell (sinks/sql/rollup_*.sql; `vigil rollup`
-- recomputes them all): recomputed, never added to, so rows replayed or landed twice count once.
-- Each recompute is stamped with the time it started; the latest one is the cell's figures.

-- Per hospital and day of clinical time: distinct events, those the processor held for late,
-- the newest clinical and landing times, and how long that day's events took from their
-- clinical time to their first landing (median and 95th percentile, minutes).
CREATE TABLE IF NOT EXISTS {db}.event_rollup
(
    hospital_id      String,
    day              Date,
    events           UInt64,
    late             UInt64,
    newest_event_ms  Int64,
    newest_landed_ms Int64,
    lag_p50_minutes  Float64,
    lag_p95_minutes  Float64,
    computed_ms      Int64
)
ENGINE = ReplacingMergeTree(computed_ms)
ORDER BY (hospital_id, day);

-- Per hospital, month in which episodes were raised, rule and severity: episodes raised, those
-- still open (their latest notification is not a resolution), those acknowledged, and each
-- acknowledged episode's minutes from raising to its first acknowledgement (for the median).
CREATE TABLE IF NOT EXISTS {db}.alert_rollup
(
    hospital_id             String,
    month                   Date,
    rule_id                 String,
    severity                String,
    raised                  UInt64,
    open                    UInt64,
    acknowledged            UInt64,
    minutes_to_acknowledge  Array(Float64),
    computed_ms             Int64
)
ENGINE = ReplacingMergeTree(computed_ms)
ORDER BY (hospital_id, month, rule_id, severity);

-- Per hospital, month of the alert and outcome: alerts whose notification ended so (an alert's
-- outcome changes as its delivery goes on, so a cell's rows are those of its latest recompute).
CREATE TABLE IF NOT EXISTS {db}.delivery_rollup
(
    hospital_id  String,
    month        Date,
    outcome      String,
    alerts       UInt64,
    computed_ms  Int64
)
ENGINE = ReplacingMergeTree(computed_ms)
ORDER BY (hospital_id, month, outcome);

-- Per hospital, month received, stage and reason: records refused.
CREATE TABLE IF NOT EXISTS {db}.dead_letter_rollup
(
    hospital_id  String,
    month        Date,
    stage        String,
    reason_code  String,
    records      UInt64,
    computed_ms  Int64
)
ENGINE = ReplacingMergeTree(computed_ms)
ORDER BY (hospital_id, month, stage, reason_code);

-- The rows of each cell's latest recompute (a sub-row its latest recompute did not write, such
-- as a delivery outcome no alert has any more, is gone).
CREATE VIEW IF NOT EXISTS {db}.alert_rollup_latest AS
SELECT hospital_id, month, rule_id, severity, raised, open, acknowledged, minutes_to_acknowledge
FROM {db}.alert_rollup
WHERE (hospital_id, month, computed_ms) IN
(
    SELECT hospital_id, month, max(computed_ms) FROM {db}.alert_rollup GROUP BY hospital_id, month
);

CREATE VIEW IF NOT EXISTS {db}.delivery_rollup_latest AS
SELECT hospital_id, month, outcome, alerts
FROM {db}.delivery_rollup
WHERE (hospital_id, month, computed_ms) IN
(
    SELECT hospital_id, month, max(computed_ms) FROM {db}.delivery_rollup GROUP BY hospital_id, month
);

CREATE VIEW IF NOT EXISTS {db}.dead_letter_rollup_latest AS
SELECT hospital_id, month, stage, reason_code, records
FROM {db}.dead_letter_rollup
WHERE (hospital_id, month, computed_ms) IN
(
    SELECT hospital_id, month, max(computed_ms) FROM {db}.dead_letter_rollup GROUP BY hospital_id, month
);
