-- Records refused per hospital, stage and reason (the edge's rejections include unmapped local
-- codes). Records whose hospital could not be told are under ''.
SELECT hospital_id, stage, reason_code, sum(records) AS records
FROM dead_letter_rollup_latest
GROUP BY hospital_id, stage, reason_code
ORDER BY hospital_id, stage, reason_code
