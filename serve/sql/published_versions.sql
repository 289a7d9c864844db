-- Every published version of a final period's cells (for its restatements), of one hospital
-- ('' for all).
-- binds: 'cn-nbphs-2017/v1', 'QUARTER', '2025-01-01', '', ''
SELECT hospital_id, condition, region_code, managed, standardised, controlled, complications,
    managed_days, version, published_ms, reason
FROM published_metrics FINAL
WHERE definition = ? AND period_kind = ? AND period_start = toDate(?)
    AND (? = '' OR hospital_id = ?)
ORDER BY hospital_id, condition, region_code, version
