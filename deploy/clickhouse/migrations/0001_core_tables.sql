-- Core tables: what the sink lands from Kafka.
--
-- Every table is a ReplacingMergeTree whose sorting key ends in the row's deterministic id, so a
-- replay after a crash overwrites rather than duplicates once parts merge. Until they merge,
-- queries stay exact by counting distinct ids or reading with FINAL (the views in later
-- migrations do). Times are DateTime (UTC instants); *_ms columns keep millisecond precision for
-- latency figures. Runs on ClickHouse 18.16 and on current releases.

CREATE TABLE IF NOT EXISTS {db}.clinical_events
(
    event_id          String,
    hospital_id       String,
    source_system     String,
    operation         String,
    kind              String,
    event_time        DateTime,
    event_time_ms     Int64,
    ingest_time_ms    Int64,
    patient_pseudonym String,
    record_id         String,
    code              String,
    value             Nullable(Float64),
    value2            Nullable(Float64),
    unit              String,
    payload           String,
    landed_time_ms    Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_time)
ORDER BY (hospital_id, kind, event_time, event_id);

CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id          String,
    episode_id        String,
    rule_id           String,
    rule_version      UInt16,
    severity          String,
    status            String,
    sequence          UInt32,
    hospital_id       String,
    department_code   String,
    patient_pseudonym String,
    event_time        DateTime,
    event_time_ms     Int64,
    episode_start     DateTime,
    trigger_event_id  String,
    value             Nullable(Float64),
    unit              String,
    threshold         String,
    message           String,
    source            String,
    actor             String,
    landed_time_ms    Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_time)
ORDER BY (hospital_id, rule_id, event_time, alert_id);

CREATE TABLE IF NOT EXISTS {db}.patient_status
(
    status_id                   String,
    version                     Int64,
    definition                  String,
    patient_pseudonym           String,
    hospital_id                 String,
    region_code                 String,
    condition                   String,
    period_kind                 String,
    period_start                Date,
    managed                     UInt8,
    managed_since               DateTime,
    managed_days                UInt16,
    follow_ups                  UInt16,
    follow_ups_ytd              UInt16,
    standardised                UInt8,
    controlled                  UInt8,
    last_follow_up              Nullable(DateTime),
    last_systolic_mmhg          Nullable(Float64),
    last_diastolic_mmhg         Nullable(Float64),
    last_fasting_glucose_mmol_l Nullable(Float64),
    new_complications           UInt16,
    has_complications           UInt8,
    bp_grade                    UInt8,
    risk_level                  String,
    age_band                    String,
    sex                         String,
    event_time                  DateTime,
    landed_time_ms              Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(period_start)
ORDER BY (definition, period_kind, period_start, condition, patient_pseudonym);

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    dead_letter_id   String,
    stage            String,
    hospital_id      String,
    reason_code      String,
    reason_detail    String,
    source_topic     String,
    source_partition Int32,
    source_offset    Int64,
    event_time       Nullable(DateTime),
    received_time    DateTime,
    redacted_payload String,
    landed_time_ms   Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(received_time)
ORDER BY (hospital_id, stage, reason_code, dead_letter_id);
