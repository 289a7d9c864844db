-- Alert episodes raised from a month on (the headline year's first), and how many of them a
-- clinician acknowledged.
-- binds: '2026-01-01'
SELECT sum(raised) AS raised, sum(acknowledged) AS acknowledged
FROM alert_rollup_latest
WHERE month >= toDate(?)
