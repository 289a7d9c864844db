-- One period's figures per hospital and condition (the per-period rollup), for the outcome-metric
-- API. A caller confined to a hospital binds it (others ''); a region ('' for all) keeps the
-- patients registered there.
-- binds: 'cn-nbphs-2017/v1', 'QUARTER', '2026-01-01', '', '', '', ''
SELECT hospital_id, condition,
    sum(managed) AS managed, sum(standardised) AS standardised, sum(controlled) AS controlled,
    sum(complications) AS complications, sum(days) AS managed_days, toUInt32(0) AS version,
    toInt64(0) AS published_ms
FROM status_rollup_latest
WHERE definition = ? AND period_kind = ? AND period_start = toDate(?)
    AND (? = '' OR hospital_id = ?)
    AND (? = '' OR region_code = ?)
GROUP BY hospital_id, condition
ORDER BY hospital_id, condition
