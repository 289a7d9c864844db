-- One partition of the clinical history, in the order the processor read it: by offset in the
-- events topic. Rows landed before their position was recorded (migration 0013) have -1: they
-- are given a partition by the patient and come first, by ingest and clinical time. A row
-- landed twice (a writer retry) comes twice in a row and is skipped by the reader.
-- binds: partitions, partition, to_ms
SELECT event_id, hospital_id, source_system, operation, event_time_ms, ingest_time_ms,
    patient_pseudonym, record_id, payload, source, kafka_offset
FROM clinical_events
WHERE if(kafka_partition >= 0, kafka_partition, toInt32(cityHash64(patient_pseudonym) % ?)) = ?
    AND event_time_ms < ?
ORDER BY kafka_offset >= 0, kafka_offset, ingest_time_ms, event_time_ms, event_id
