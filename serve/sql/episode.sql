-- One alert episode: its hospital, patient and latest status (for an acknowledgement).
-- binds: 'ep1'
SELECT any(hospital_id) AS hospital, any(patient_pseudonym) AS patient,
    argMax(status, sequence) AS last_status
FROM alerts FINAL
WHERE episode_id = ?
GROUP BY episode_id
