-- The backtest reports, newest first: a caller confined to a hospital binds it and sees the
-- reports on its own patients; others bind '' and see every report.
-- binds: 28800, '', '', 200
SELECT report_id, toString(toDateTime(intDiv(created_ms, 1000) + ?, 'UTC')) AS created_at,
    period_from, period_to, hospital_id, baseline_rules, candidate_rules, events
FROM backtest_reports FINAL
WHERE ? = '' OR hospital_id = ?
ORDER BY created_ms DESC, report_id
LIMIT ?
