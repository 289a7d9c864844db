-- Version 3: what became of each alert notification (`vigil notify`), and a per-hospital
-- summary for the operators and the commission. The notifier records one outcome per alert;
-- a replay writes the same row again, and a re-delivery after a crash a later `version`.

CREATE TABLE IF NOT EXISTS {db}.alert_deliveries
(
    alert_id          String,
    episode_id        String,
    rule_id           String,
    severity          String,
    alert_status      String,
    hospital_id       String,
    outcome           String,
    attempts          UInt32,
    http_status       UInt16,
    detail            String,
    endpoint          String,
    alert_time        DateTime,
    alert_time_ms     Int64,
    first_attempt_ms  Int64,
    finished_ms       Int64,
    -- finished_ms as ClickHouse 18.16 wants a version: unsigned.
    version           UInt64,
    landed_time_ms    Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(alert_time)
ORDER BY (hospital_id, alert_id);

-- Per hospital, day (of the alert) and severity: how many alerts reached the hospital, how many
-- could not be delivered, and how long delivery took (from the clinical event, and from the
-- first attempt).
CREATE VIEW IF NOT EXISTS {db}.alert_delivery_summary AS
SELECT
    hospital_id,
    toDate(alert_time) AS day,
    severity,
    count() AS alerts,
    countIf(outcome = 'DELIVERED') AS delivered,
    countIf(outcome = 'UNDELIVERABLE') AS undeliverable,
    countIf(outcome = 'STALE') AS stale,
    round(delivered / greatest(alerts - stale, 1), 4) AS delivered_share,
    quantileIf(0.5)((finished_ms - alert_time_ms) / 1000, outcome = 'DELIVERED') AS median_seconds_from_event,
    quantileIf(0.99)((finished_ms - alert_time_ms) / 1000, outcome = 'DELIVERED') AS p99_seconds_from_event,
    quantileIf(0.5)((finished_ms - first_attempt_ms) / 1000, outcome = 'DELIVERED') AS median_seconds_to_deliver,
    avgIf(attempts, outcome = 'DELIVERED') AS mean_attempts
FROM {db}.alert_deliveries FINAL
GROUP BY hospital_id, day, severity;
