-- Version 12 (issue 17): an alert reaches the patient's managing hospital as well as the hospital
-- of the event that raised it. The alert records name the managing hospital (empty on records
-- written before); the hospitals' worklist lists an episode to either.
ALTER TABLE {db}.alerts ADD COLUMN managing_hospital_id String DEFAULT '' AFTER hospital_id;
