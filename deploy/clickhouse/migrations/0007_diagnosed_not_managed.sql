-- Version 7: why a hospital's figures may be empty. Patients with a qualifying diagnosis
-- (hypertension I10-I15, diabetes E10-E14) whom no status row counts as managed for that
-- condition, per hospital: the definition in force counts enrolment in the programme (a
-- hospital that records none shows here), and how many of them have programme follow-up forms.

CREATE VIEW IF NOT EXISTS {db}.diagnosed_not_managed AS
SELECT
    hospital_id,
    condition,
    uniqExact(patient_pseudonym) AS patients,
    uniqExactIf(patient_pseudonym, has_follow_up_forms) AS with_follow_up_forms
FROM
(
    SELECT
        hospital_id,
        patient_pseudonym,
        condition,
        (patient_pseudonym, lower(condition)) IN
        (
            SELECT patient_pseudonym, code
            FROM {db}.clinical_events
            WHERE kind = 'follow_up_visit' AND operation != 'DELETE'
        ) AS has_follow_up_forms
    FROM
    (
        SELECT
            hospital_id,
            patient_pseudonym,
            multiIf(match(code, '^I1[0-5]'), 'HYPERTENSION', match(code, '^E1[0-4]'), 'DIABETES', '') AS condition
        FROM {db}.clinical_events
        WHERE kind = 'diagnosis' AND operation != 'DELETE'
    )
    WHERE condition != ''
        AND (patient_pseudonym, condition) NOT IN
        (
            SELECT patient_pseudonym, condition
            FROM {db}.patient_status
            WHERE managed = 1
        )
)
GROUP BY hospital_id, condition;
