-- Open alert episodes (their latest notification is not a resolution), newest first, with the
-- latest notification's words and what became of the hospital's notification. A caller
-- confined to a hospital binds it (others ''): it sees the episodes raised at it and those of
-- the patients it manages. The time is in the reporting time zone.
-- binds: 28800, 'C0100', 'C0100', 'C0100', 'C0100', 'C0100', 500
SELECT a.episode_id AS episode_id, a.hospital AS hospital_id,
    a.managing AS managing_hospital_id, a.rule AS rule_id,
    a.level AS severity, a.last_status AS status, a.last_message AS message,
    toString(toDateTime(intDiv(a.raised_ms, 1000) + ?, 'UTC')) AS raised_at,
    a.patient AS patient_pseudonym, ifNull(d.outcome, '') AS delivery
FROM
(
    SELECT episode_id, any(hospital_id) AS hospital,
        argMax(managing_hospital_id, sequence) AS managing, any(rule_id) AS rule,
        any(severity) AS level, any(patient_pseudonym) AS patient,
        argMax(status, sequence) AS last_status, argMax(message, sequence) AS last_message,
        minIf(event_time_ms, status = 'RAISED') AS raised_ms
    FROM alerts FINAL
    WHERE ? = '' OR hospital_id = ? OR managing_hospital_id = ?
    GROUP BY episode_id
    HAVING last_status != 'RESOLVED' AND raised_ms > 0
) AS a
ANY LEFT JOIN
(
    SELECT episode_id, argMax(outcome, version) AS outcome
    FROM alert_deliveries FINAL
    WHERE ? = '' OR hospital_id = ?
    GROUP BY episode_id
) AS d USING (episode_id)
ORDER BY a.raised_ms DESC, episode_id
LIMIT ?
