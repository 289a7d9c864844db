//! Rust mirrors of the `.avsc` files. Field order and enum symbol order must match the schema:
//! the Avro serde encoder writes by position. `tests::examples_round_trip` guards that.

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Clinical events (input to the processor)
// ---------------------------------------------------------------------------------------------

/// One normalised, pseudonymised change from a hospital system (`clinical_event.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClinicalEvent {
    pub event_id: String,
    pub hospital_id: String,
    pub source_system: String,
    pub operation: Operation,
    pub event_time_ms: i64,
    pub ingest_time_ms: i64,
    pub patient_pseudonym: String,
    pub record_id: String,
    #[serde(default = "schema_version_one")]
    pub schema_version: i32,
    pub payload: Payload,
    /// Where the edge read the change (None from other producers): a replay is recognised by it.
    #[serde(default)]
    pub source: Option<SourcePosition>,
}

/// The schema version producers of this build write.
pub const CLINICAL_EVENT_SCHEMA_VERSION: i32 = 3;

/// An edge input record's position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The topic of a source position that an edge gave an initial snapshot it released in
/// clinical-time order starts with this; the offset is the row's place in that order. Such
/// rows move their hospital's clock like live changes; other snapshot rows (a file's, an
/// incremental snapshot's, another producer's) come in no order anything vouches for.
pub const ORDERED_SNAPSHOT_PREFIX: &str = "snapshot:";

impl SourcePosition {
    /// Whether this names a row of an initial snapshot released in clinical-time order.
    pub fn is_ordered_snapshot(&self) -> bool {
        self.topic.starts_with(ORDERED_SNAPSHOT_PREFIX)
    }
}

fn schema_version_one() -> i32 {
    1
}

/// Debezium's `op`: c, u, d, r.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Snapshot,
}

impl Operation {
    /// Whether the change retracts the record it names.
    pub fn is_retraction(self) -> bool {
        self == Operation::Delete
    }
}

/// The clinical content of an event: one variant per union branch, in schema order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    PatientRegistration(PatientRegistration),
    Encounter(Encounter),
    Diagnosis(Diagnosis),
    LabResult(LabResult),
    VitalSign(VitalSign),
    Prescription(Prescription),
    FollowUpVisit(FollowUpVisit),
    PatientMerge(PatientMerge),
}

impl Payload {
    /// Short lowercase name, used as a table column and metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::PatientRegistration(_) => "patient_registration",
            Payload::Encounter(_) => "encounter",
            Payload::Diagnosis(_) => "diagnosis",
            Payload::LabResult(_) => "lab_result",
            Payload::VitalSign(_) => "vital_sign",
            Payload::Prescription(_) => "prescription",
            Payload::FollowUpVisit(_) => "follow_up_visit",
            Payload::PatientMerge(_) => "patient_merge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Sex {
    Male,
    Female,
    Unknown,
}

/// Chronic conditions with a national management programme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Condition {
    Hypertension,
    Diabetes,
}

impl Condition {
    pub const ALL: [Condition; 2] = [Condition::Hypertension, Condition::Diabetes];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Hypertension => "hypertension",
            Condition::Diabetes => "diabetes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientRegistration {
    pub sex: Sex,
    pub birth_year: i32,
    pub region_code: String,
    pub programmes: Vec<ProgrammeEnrolment>,
    #[serde(default)]
    pub death_time_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgrammeEnrolment {
    pub condition: Condition,
    pub enrolled_time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EncounterType {
    Outpatient,
    Inpatient,
    Emergency,
    HomeVisit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encounter {
    pub encounter_type: EncounterType,
    pub department_code: String,
    pub start_time_ms: i64,
    #[serde(default)]
    pub end_time_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub icd10: String,
    #[serde(default)]
    pub is_primary: bool,
    #[serde(default)]
    pub department_code: String,
    #[serde(default)]
    pub encounter_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabResult {
    pub loinc: String,
    pub value: f64,
    pub unit: String,
    #[serde(default)]
    pub local_code: String,
    #[serde(default)]
    pub encounter_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VitalSign {
    #[serde(default)]
    pub systolic_mmhg: Option<f64>,
    #[serde(default)]
    pub diastolic_mmhg: Option<f64>,
    #[serde(default)]
    pub heart_rate_bpm: Option<f64>,
    #[serde(default)]
    pub weight_kg: Option<f64>,
    #[serde(default)]
    pub height_cm: Option<f64>,
    #[serde(default)]
    pub encounter_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prescription {
    pub drug_code: String,
    #[serde(default)]
    pub atc_code: String,
    pub dose: f64,
    pub dose_unit: String,
    pub frequency: String,
    pub days_supply: i32,
    #[serde(default)]
    pub encounter_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VisitMode {
    Clinic,
    Home,
    Phone,
    Online,
}

impl VisitMode {
    /// Only face-to-face follow-ups count towards standardised management.
    pub fn is_face_to_face(self) -> bool {
        matches!(self, VisitMode::Clinic | VisitMode::Home)
    }
}

/// The hospital merged the event's patient into another (HL7 ADT^A40); keyed by the merged one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientMerge {
    pub surviving_pseudonym: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUpVisit {
    pub condition: Condition,
    pub visit_mode: VisitMode,
    #[serde(default)]
    pub systolic_mmhg: Option<f64>,
    #[serde(default)]
    pub diastolic_mmhg: Option<f64>,
    #[serde(default)]
    pub fasting_glucose_mmol_l: Option<f64>,
    #[serde(default)]
    pub hba1c_percent: Option<f64>,
    #[serde(default)]
    pub next_visit_time_ms: Option<i64>,
    #[serde(default)]
    pub clinician_id: String,
}

// ---------------------------------------------------------------------------------------------
// Outputs of the processor
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    Raised,
    Renotified,
    Acknowledged,
    Snoozed,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Raised => "RAISED",
            AlertStatus::Renotified => "RENOTIFIED",
            AlertStatus::Acknowledged => "ACKNOWLEDGED",
            AlertStatus::Snoozed => "SNOOZED",
            AlertStatus::Resolved => "RESOLVED",
        }
    }

    /// Whether a clinician must be told (the notifier delivers only these).
    pub fn notifies(self) -> bool {
        matches!(self, AlertStatus::Raised | AlertStatus::Renotified)
    }
}

/// A change in an alert episode (`alert.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub episode_id: String,
    pub rule_id: String,
    pub rule_version: i32,
    pub severity: Severity,
    pub status: AlertStatus,
    pub sequence: i32,
    pub hospital_id: String,
    #[serde(default)]
    pub department_code: String,
    pub patient_pseudonym: String,
    pub event_time_ms: i64,
    pub episode_start_ms: i64,
    pub trigger_event_id: String,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub threshold: String,
    pub message: String,
    pub source: String,
    #[serde(default)]
    pub actor: String,
    /// The patient's managing hospital when this change happened ('' before schema v2).
    #[serde(default)]
    pub managing_hospital_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeriodKind {
    Month,
    Quarter,
    Year,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Month => "MONTH",
            PeriodKind::Quarter => "QUARTER",
            PeriodKind::Year => "YEAR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    NotAssessed,
    Low,
    Medium,
    High,
    VeryHigh,
}

/// One patient, condition and period under one metric definition (`patient_status.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientStatus {
    pub status_id: String,
    pub version: i64,
    pub definition: String,
    pub patient_pseudonym: String,
    pub hospital_id: String,
    #[serde(default)]
    pub region_code: String,
    /// The department managing the condition; empty when no qualifying diagnosis named one.
    #[serde(default)]
    pub department_code: String,
    pub condition: Condition,
    pub period_kind: PeriodKind,
    /// Days since 1970-01-01 (Avro `date`).
    pub period_start: i32,
    pub managed: bool,
    pub managed_since_ms: i64,
    pub managed_days: i32,
    pub follow_ups: i32,
    pub follow_ups_ytd: i32,
    pub standardised: bool,
    pub controlled: bool,
    #[serde(default)]
    pub last_follow_up_ms: Option<i64>,
    #[serde(default)]
    pub last_systolic_mmhg: Option<f64>,
    #[serde(default)]
    pub last_diastolic_mmhg: Option<f64>,
    #[serde(default)]
    pub last_fasting_glucose_mmol_l: Option<f64>,
    pub new_complications: i32,
    pub has_complications: bool,
    pub bp_grade: i32,
    pub risk_level: RiskLevel,
    #[serde(default)]
    pub age_band: String,
    pub sex: Sex,
    pub event_time_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Pipeline records
// ---------------------------------------------------------------------------------------------

/// Input a stage could not accept (`dead_letter.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub dead_letter_id: String,
    pub stage: String,
    pub hospital_id: String,
    pub reason_code: String,
    pub reason_detail: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[serde(default)]
    pub event_time_ms: Option<i64>,
    pub received_time_ms: i64,
    pub redacted_payload: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryOutcome {
    Delivered,
    Undeliverable,
    Stale,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "DELIVERED",
            DeliveryOutcome::Undeliverable => "UNDELIVERABLE",
            DeliveryOutcome::Stale => "STALE",
        }
    }
}

/// The outcome of delivering one alert to its hospital (`alert_delivery.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDelivery {
    pub alert_id: String,
    pub episode_id: String,
    pub rule_id: String,
    pub severity: Severity,
    pub alert_status: AlertStatus,
    pub hospital_id: String,
    pub outcome: DeliveryOutcome,
    pub attempts: i32,
    pub http_status: i32,
    pub detail: String,
    pub endpoint: String,
    pub alert_time_ms: i64,
    pub first_attempt_ms: i64,
    pub finished_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AckAction {
    Acknowledge,
    Snooze,
    Close,
}

/// A clinician's response to an alert episode (`alert_ack.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAck {
    pub ack_id: String,
    pub episode_id: String,
    pub patient_pseudonym: String,
    pub action: AckAction,
    #[serde(default)]
    pub snooze_until_ms: Option<i64>,
    pub clinician_id: String,
    pub time_ms: i64,
}

/// What one stage instance did for one hospital over one interval (`pipeline_stat.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStat {
    pub stat_id: String,
    pub stage: String,
    pub instance: String,
    pub hospital_id: String,
    pub interval_start_ms: i64,
    pub interval_end_ms: i64,
    pub records_in: i64,
    pub records_out: i64,
    pub dead_letters: i64,
    pub late: i64,
    pub max_event_age_ms: i64,
}
