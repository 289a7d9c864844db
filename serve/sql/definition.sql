-- The metric definition of the newest yearly figures (the page shows the one in force).
SELECT definition FROM status_rollup WHERE period_kind = 'YEAR'
ORDER BY period_start DESC, computed_ms DESC LIMIT 1
