-- Version 14 (issue 14): the reports `vigil backtest` writes, for `vigil serve`'s backtest pages.
-- A report names patients by pseudonym (its examples): the commission and operators read every
-- report, a hospital the reports on its own patients; the insurance bureau none.
CREATE TABLE IF NOT EXISTS {db}.backtest_reports
(
    report_id       String,
    created_time    DateTime,
    created_ms      Int64,
    period_from     String,
    period_to       String,
    hospital_id     String,
    baseline_rules  String,
    candidate_rules String,
    events          UInt64,
    report_json     String,
    report_html     String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_time)
ORDER BY report_id;
