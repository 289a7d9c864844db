-- One backtest report, as JSON and as its page, with the hospital it is about ('' for all).
-- binds: 'r1'
SELECT hospital_id, report_json, report_html
FROM backtest_reports FINAL
WHERE report_id = ?
LIMIT 1
