-- What became of the alert notifications sent to hospitals, by outcome.
SELECT outcome, uniqExact(alert_id) AS alerts
FROM alert_deliveries FINAL
GROUP BY outcome
ORDER BY outcome
