-- One alert episode: the hospital of its event, the hospitals that managed the patient while it
-- was open, the patient and the latest status (for an acknowledgement).
-- binds: 'ep1'
SELECT any(hospital_id) AS hospital, groupUniqArray(managing_hospital_id) AS managing,
    any(patient_pseudonym) AS patient, argMax(status, sequence) AS last_status
FROM alerts FINAL
WHERE episode_id = ?
GROUP BY episode_id
