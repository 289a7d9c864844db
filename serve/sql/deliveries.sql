-- What became of the alert notifications sent to hospitals, by outcome.
SELECT outcome, sum(alerts) AS alerts
FROM delivery_rollup_latest
GROUP BY outcome
ORDER BY outcome
