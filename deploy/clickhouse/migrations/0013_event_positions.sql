-- Version 13 (issue 14): where each event stood in the events topic (partition and offset) and
-- the edge's source position, so `vigil backtest` replays the history in the order the processor
-- read it and reproduces what it raised. Rows landed before have -1 and '' (replayed by ingest
-- time after them). Late events (the same columns) have none.
ALTER TABLE {db}.clinical_events ADD COLUMN kafka_partition Int32 DEFAULT -1;
ALTER TABLE {db}.clinical_events ADD COLUMN kafka_offset Int64 DEFAULT -1;
ALTER TABLE {db}.clinical_events ADD COLUMN source String DEFAULT '';
ALTER TABLE {db}.late_events ADD COLUMN kafka_partition Int32 DEFAULT -1;
ALTER TABLE {db}.late_events ADD COLUMN kafka_offset Int64 DEFAULT -1;
ALTER TABLE {db}.late_events ADD COLUMN source String DEFAULT '';
