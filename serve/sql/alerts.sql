-- Alert episodes raised, and acknowledged, from a local date on (the headline's year).
-- binds: 28800, '2026-01-01'
SELECT uniqExactIf(episode_id, status = 'RAISED') AS raised,
    uniqExactIf(episode_id, status = 'ACKNOWLEDGED') AS acknowledged
FROM alerts FINAL
WHERE toDate(toDateTime(intDiv(event_time_ms, 1000) + ?), 'UTC') >= toDate(?)
