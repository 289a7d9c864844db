-- The clinicians' acknowledgements and snoozes the live pipeline applied, by time: a backtest
-- applies them to the same episodes where its rules open them too.
-- binds: to_ms
SELECT episode_id, patient_pseudonym, status, actor, event_time_ms
FROM alerts FINAL
WHERE status IN ('ACKNOWLEDGED', 'SNOOZED') AND event_time_ms < ?
ORDER BY event_time_ms, episode_id
