-- The dashboard's refusals per hospital, month received (reporting time zone), stage and
-- reason. {cells} selects the source rows (1: all).
INSERT INTO {db}.dead_letter_rollup
SELECT hospital_id,
    toStartOfMonth(toDate(toDateTime(toUInt32(received_time) + {offset_s}), 'UTC')) AS month,
    stage, reason_code, uniqExact(dead_letter_id), toInt64({computed_ms})
FROM {db}.dead_letters
WHERE {cells}
GROUP BY hospital_id, month, stage, reason_code
