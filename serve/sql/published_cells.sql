-- A final period's figures as published per hospital and condition: each cell at the newest
-- version up to a bound (1: as first published; larger: with the restatements since). A caller
-- confined to a hospital binds it (others ''); a region ('' for all) keeps the patients
-- registered there.
-- binds: 'cn-nbphs-2017/v1', 'QUARTER', '2025-01-01', 1, '', '', '', ''
SELECT hospital_id, condition, sum(m) AS managed, sum(s) AS standardised, sum(c) AS controlled,
    sum(x) AS complications, sum(d) AS managed_days, max(v) AS version,
    max(at) AS published_ms
FROM
(
    SELECT hospital_id, condition, region_code, argMax(managed, version) AS m,
        argMax(standardised, version) AS s, argMax(controlled, version) AS c,
        argMax(complications, version) AS x, argMax(managed_days, version) AS d,
        max(version) AS v, argMax(published_ms, version) AS at
    FROM published_metrics
    WHERE definition = ? AND period_kind = ? AND period_start = toDate(?) AND version <= ?
        AND (? = '' OR hospital_id = ?)
        AND (? = '' OR region_code = ?)
    GROUP BY hospital_id, condition, region_code
)
GROUP BY hospital_id, condition
ORDER BY hospital_id, condition
