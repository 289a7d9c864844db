//! Table rows, one struct per table of the migrations, and how each Kafka record becomes
//! one. Column names are the struct's field names (the writer inserts by name).

use clickhouse::Row;
use serde::Serialize;
use vigil_schemas::{
    Alert, AlertDelivery, ClinicalEvent, DeadLetter, PatientStatus, Payload, PipelineStat,
    RiskLevel, Sex,
};

/// Seconds for a ClickHouse `DateTime` (UInt32): clamped into its range.
pub fn datetime(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct EventRow {
    pub event_id: String,
    pub hospital_id: String,
    pub source_system: String,
    pub operation: String,
    pub kind: String,
    pub event_time: u32,
    pub event_time_ms: i64,
    pub ingest_time_ms: i64,
    pub patient_pseudonym: String,
    pub record_id: String,
    pub code: String,
    pub value: Option<f64>,
    pub value2: Option<f64>,
    pub unit: String,
    pub payload: String,
    pub landed_time_ms: i64,
    /// Where the record stood in the topic it landed from (-1: not known).
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The edge's source position as JSON ('' when it sent none).
    pub source: String,
}

impl EventRow {
    pub fn from_event(
        event: &ClinicalEvent,
        landed_time_ms: i64,
        at: Option<(i32, i64)>,
    ) -> EventRow {
        let (code, value, value2, unit) = match &event.payload {
            Payload::PatientRegistration(r) => (
                r.programmes
                    .iter()
                    .map(|p| p.condition.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(r.birth_year as f64),
                None,
                String::new(),
            ),
            Payload::Encounter(e) => (
                format!("{:?}", e.encounter_type).to_uppercase(),
                None,
                None,
                e.department_code.clone(),
            ),
            Payload::Diagnosis(d) => (d.icd10.clone(), None, None, String::new()),
            Payload::LabResult(l) => (l.loinc.clone(), Some(l.value), None, l.unit.clone()),
            Payload::VitalSign(v) => (
                "85354-9".into(),
                v.systolic_mmhg,
                v.diastolic_mmhg,
                "mm[Hg]".into(),
            ),
            Payload::Prescription(p) => (
                if p.atc_code.is_empty() {
                    p.drug_code.clone()
                } else {
                    p.atc_code.clone()
                },
                Some(p.dose),
                None,
                p.dose_unit.clone(),
            ),
            Payload::FollowUpVisit(f) => (
                f.condition.as_str().to_string(),
                f.systolic_mmhg,
                f.diastolic_mmhg,
                "mm[Hg]".into(),
            ),
            // The patient this one was merged into (a pseudonym, like the row's own).
            Payload::PatientMerge(m) => (m.surviving_pseudonym.clone(), None, None, String::new()),
        };
        EventRow {
            event_id: event.event_id.clone(),
            hospital_id: event.hospital_id.clone(),
            source_system: event.source_system.clone(),
            operation: format!("{:?}", event.operation).to_uppercase(),
            kind: event.payload.kind().to_string(),
            event_time: datetime(event.event_time_ms),
            event_time_ms: event.event_time_ms,
            ingest_time_ms: event.ingest_time_ms,
            patient_pseudonym: event.patient_pseudonym.clone(),
            record_id: event.record_id.clone(),
            code,
            value,
            value2,
            unit,
            // The payload is pseudonymous already (no direct identifiers reach the topic).
            payload: serde_json::to_string(&event.payload).unwrap_or_default(),
            landed_time_ms,
            kafka_partition: at.map_or(-1, |(partition, _)| partition),
            kafka_offset: at.map_or(-1, |(_, offset)| offset),
            source: event
                .source
                .as_ref()
                .and_then(|source| serde_json::to_string(source).ok())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub episode_id: String,
    pub rule_id: String,
    pub rule_version: u16,
    pub severity: String,
    pub status: String,
    pub sequence: u32,
    pub hospital_id: String,
    pub managing_hospital_id: String,
    pub department_code: String,
    pub patient_pseudonym: String,
    pub event_time: u32,
    pub event_time_ms: i64,
    pub episode_start: u32,
    pub trigger_event_id: String,
    pub value: Option<f64>,
    pub unit: String,
    pub threshold: String,
    pub message: String,
    pub source: String,
    pub actor: String,
    pub landed_time_ms: i64,
}

impl AlertRow {
    pub fn from_alert(alert: &Alert, landed_time_ms: i64) -> AlertRow {
        AlertRow {
            alert_id: alert.alert_id.clone(),
            episode_id: alert.episode_id.clone(),
            rule_id: alert.rule_id.clone(),
            rule_version: alert.rule_version.clamp(0, u16::MAX as i32) as u16,
            severity: format!("{:?}", alert.severity).to_uppercase(),
            status: alert.status.as_str().to_string(),
            sequence: alert.sequence.max(0) as u32,
            hospital_id: alert.hospital_id.clone(),
            managing_hospital_id: alert.managing_hospital_id.clone(),
            department_code: alert.department_code.clone(),
            patient_pseudonym: alert.patient_pseudonym.clone(),
            event_time: datetime(alert.event_time_ms),
            event_time_ms: alert.event_time_ms,
            episode_start: datetime(alert.episode_start_ms),
            trigger_event_id: alert.trigger_event_id.clone(),
            value: alert.value,
            unit: alert.unit.clone(),
            threshold: alert.threshold.clone(),
            message: alert.message.clone(),
            source: alert.source.clone(),
            actor: alert.actor.clone(),
            landed_time_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct StatusRow {
    pub status_id: String,
    pub version: i64,
    pub definition: String,
    pub patient_pseudonym: String,
    pub hospital_id: String,
    pub region_code: String,
    pub department_code: String,
    pub condition: String,
    pub period_kind: String,
    /// ClickHouse `Date`: days since 1970-01-01.
    pub period_start: u16,
    pub managed: u8,
    pub managed_since: u32,
    pub managed_days: u16,
    pub follow_ups: u16,
    pub follow_ups_ytd: u16,
    pub standardised: u8,
    pub controlled: u8,
    pub last_follow_up: Option<u32>,
    pub last_systolic_mmhg: Option<f64>,
    pub last_diastolic_mmhg: Option<f64>,
    pub last_fasting_glucose_mmol_l: Option<f64>,
    pub new_complications: u16,
    pub has_complications: u8,
    pub bp_grade: u8,
    pub risk_level: String,
    pub age_band: String,
    pub sex: String,
    pub event_time: u32,
    pub landed_time_ms: i64,
}

fn risk_name(level: RiskLevel) -> &'static str {
    match level {
        RiskLevel::NotAssessed => "NOT_ASSESSED",
        RiskLevel::Low => "LOW",
        RiskLevel::Medium => "MEDIUM",
        RiskLevel::High => "HIGH",
        RiskLevel::VeryHigh => "VERY_HIGH",
    }
}

fn sex_name(sex: Sex) -> &'static str {
    match sex {
        Sex::Male => "MALE",
        Sex::Female => "FEMALE",
        Sex::Unknown => "UNKNOWN",
    }
}

fn small(value: i32) -> u16 {
    value.clamp(0, u16::MAX as i32) as u16
}

impl StatusRow {
    pub fn from_status(s: &PatientStatus, landed_time_ms: i64) -> StatusRow {
        StatusRow {
            status_id: s.status_id.clone(),
            version: s.version,
            definition: s.definition.clone(),
            patient_pseudonym: s.patient_pseudonym.clone(),
            hospital_id: s.hospital_id.clone(),
            region_code: s.region_code.clone(),
            department_code: s.department_code.clone(),
            condition: s.condition.as_str().to_uppercase(),
            period_kind: s.period_kind.as_str().to_string(),
            period_start: small(s.period_start),
            managed: s.managed as u8,
            managed_since: datetime(s.managed_since_ms),
            managed_days: small(s.managed_days),
            follow_ups: small(s.follow_ups),
            follow_ups_ytd: small(s.follow_ups_ytd),
            standardised: s.standardised as u8,
            controlled: s.controlled as u8,
            last_follow_up: s.last_follow_up_ms.map(datetime),
            last_systolic_mmhg: s.last_systolic_mmhg,
            last_diastolic_mmhg: s.last_diastolic_mmhg,
            last_fasting_glucose_mmol_l: s.last_fasting_glucose_mmol_l,
            new_complications: small(s.new_complications),
            has_complications: s.has_complications as u8,
            bp_grade: s.bp_grade.clamp(0, 255) as u8,
            risk_level: risk_name(s.risk_level).to_string(),
            age_band: s.age_band.clone(),
            sex: sex_name(s.sex).to_string(),
            event_time: datetime(s.event_time_ms),
            landed_time_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct DeadLetterRow {
    pub dead_letter_id: String,
    pub stage: String,
    pub hospital_id: String,
    pub reason_code: String,
    pub reason_detail: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub event_time: Option<u32>,
    pub received_time: u32,
    pub redacted_payload: String,
    pub landed_time_ms: i64,
}

impl DeadLetterRow {
    pub fn from_dead_letter(d: &DeadLetter, landed_time_ms: i64) -> DeadLetterRow {
        DeadLetterRow {
            dead_letter_id: d.dead_letter_id.clone(),
            stage: d.stage.clone(),
            hospital_id: d.hospital_id.clone(),
            reason_code: d.reason_code.clone(),
            reason_detail: d.reason_detail.clone(),
            source_topic: d.source_topic.clone(),
            source_partition: d.source_partition,
            source_offset: d.source_offset,
            event_time: d.event_time_ms.map(datetime),
            received_time: datetime(d.received_time_ms),
            redacted_payload: d.redacted_payload.clone(),
            landed_time_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct DeliveryRow {
    pub alert_id: String,
    pub episode_id: String,
    pub rule_id: String,
    pub severity: String,
    pub alert_status: String,
    pub hospital_id: String,
    pub outcome: String,
    pub attempts: u32,
    pub http_status: u16,
    pub detail: String,
    pub endpoint: String,
    pub alert_time: u32,
    pub alert_time_ms: i64,
    pub first_attempt_ms: i64,
    pub finished_ms: i64,
    pub version: u64,
    pub landed_time_ms: i64,
}

impl DeliveryRow {
    pub fn from_delivery(d: &AlertDelivery, landed_time_ms: i64) -> DeliveryRow {
        DeliveryRow {
            alert_id: d.alert_id.clone(),
            episode_id: d.episode_id.clone(),
            rule_id: d.rule_id.clone(),
            severity: format!("{:?}", d.severity).to_uppercase(),
            alert_status: d.alert_status.as_str().to_string(),
            hospital_id: d.hospital_id.clone(),
            outcome: d.outcome.as_str().to_string(),
            attempts: d.attempts.max(0) as u32,
            http_status: d.http_status.clamp(0, u16::MAX as i32) as u16,
            detail: d.detail.clone(),
            endpoint: d.endpoint.clone(),
            alert_time: datetime(d.alert_time_ms),
            alert_time_ms: d.alert_time_ms,
            first_attempt_ms: d.first_attempt_ms,
            finished_ms: d.finished_ms,
            version: d.finished_ms.max(0) as u64,
            landed_time_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct StatRow {
    pub stat_id: String,
    pub stage: String,
    pub instance: String,
    pub hospital_id: String,
    pub interval_start: u32,
    pub interval_start_ms: i64,
    pub interval_end_ms: i64,
    pub records_in: i64,
    pub records_out: i64,
    pub dead_letters: i64,
    pub late: i64,
    pub max_event_age_ms: i64,
    pub landed_time_ms: i64,
}

impl StatRow {
    pub fn from_stat(s: &PipelineStat, landed_time_ms: i64) -> StatRow {
        StatRow {
            stat_id: s.stat_id.clone(),
            stage: s.stage.clone(),
            instance: s.instance.clone(),
            hospital_id: s.hospital_id.clone(),
            interval_start: datetime(s.interval_start_ms),
            interval_start_ms: s.interval_start_ms,
            interval_end_ms: s.interval_end_ms,
            records_in: s.records_in,
            records_out: s.records_out,
            dead_letters: s.dead_letters,
            late: s.late,
            max_event_age_ms: s.max_event_age_ms,
            landed_time_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_clamp_into_the_uint32_range() {
        assert_eq!(datetime(1_735_689_600_123), 1_735_689_600);
        assert_eq!(datetime(-5), 0);
        assert_eq!(datetime(i64::MAX), u32::MAX);
    }

    #[test]
    fn every_example_event_maps_to_a_row() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/examples/clinical_event");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let event: ClinicalEvent =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let row = EventRow::from_event(&event, 1, Some((0, 7)));
            assert_eq!(row.event_id, event.event_id);
            assert!(!row.kind.is_empty() && !row.payload.is_empty());
            seen += 1;
        }
        assert!(seen >= 8);
    }
}
