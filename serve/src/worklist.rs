//! The hospitals' alert API: the open episodes (`GET /api/v1/alerts?status=open`) and a
//! clinician's acknowledgement or snooze (`POST /api/v1/alerts/{episode}/ack`), written to the
//! alert-acks topic the processor reads, keyed by the patient as the processor's partitions are:
//! the processor closes or snoozes the episode as for any acknowledgement.

use std::sync::Arc;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use vigil_runtime::kafka::DurableProducer;
use vigil_schemas::{AckAction, AlertAck, AvroCodec};

use crate::ServeError;

const WORKLIST: &str = include_str!("../sql/worklist.sql");
const EPISODE: &str = include_str!("../sql/episode.sql");

/// Episodes listed at most per call.
pub const MAX_ROWS: u64 = 500;

/// One open episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct OpenEpisode {
    pub episode_id: String,
    /// The hospital of the event that raised it.
    pub hospital_id: String,
    /// The patient's managing hospital ('' on alerts recorded before it was named); it is told
    /// too, and either may acknowledge.
    pub managing_hospital_id: String,
    pub rule_id: String,
    pub severity: String,
    /// The latest notification: RAISED, RENOTIFIED, ACKNOWLEDGED or SNOOZED.
    pub status: String,
    pub message: String,
    /// When it was raised, in the reporting time zone.
    pub raised_at: String,
    pub patient_pseudonym: String,
    /// What became of the hospital's notification (empty: none recorded yet).
    pub delivery: String,
}

/// The open episodes, of one hospital (`""`: every hospital), newest first.
pub async fn open(
    client: &Client,
    hospital: &str,
    offset_s: i64,
    limit: u64,
) -> Result<Vec<OpenEpisode>, ServeError> {
    client
        .query(WORKLIST)
        .bind(offset_s)
        .bind(hospital)
        .bind(hospital)
        .bind(hospital)
        .bind(hospital)
        .bind(hospital)
        .bind(limit.min(MAX_ROWS))
        .fetch_all()
        .await
        .map_err(|source| ServeError::Query {
            what: "open alerts",
            source,
        })
}

#[derive(Debug, Clone, Deserialize, Row)]
struct Episode {
    hospital: String,
    managing: Vec<String>,
    patient: String,
    last_status: String,
}

impl Episode {
    /// Whether a hospital was told of it: the event's, or one managing the patient meanwhile.
    fn concerns(&self, hospital: &str) -> bool {
        self.hospital == hospital || self.managing.iter().any(|m| m == hospital)
    }
}

/// What a clinician does with an episode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// `acknowledge` or `snooze`.
    pub action: String,
    /// Minutes to snooze for (1 to 10,080: a week).
    #[serde(default)]
    pub snooze_minutes: Option<u32>,
    /// The clinician's staff id at the hospital.
    pub clinician_id: String,
}

/// How an acknowledgement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Sent to the processor; the id is the acknowledgement's.
    Sent { ack_id: String },
    /// No such episode for this caller (another hospital's is "no such" too: nothing leaks).
    NoSuchEpisode,
    /// The episode was resolved already.
    Resolved,
    /// The request is not one (the reason says why).
    Invalid(String),
}

/// Writes acknowledgements to the alert-acks topic.
pub struct Acknowledger {
    producer: Arc<DurableProducer>,
    codec: Arc<AvroCodec<AlertAck>>,
    topic: String,
}

impl Acknowledger {
    pub fn new(kafka: &vigil_runtime::config::KafkaConfig) -> Result<Self, ServeError> {
        Ok(Acknowledger {
            producer: Arc::new(DurableProducer::new(kafka, "vigil-serve")?),
            codec: Arc::new(AvroCodec::new().map_err(vigil_runtime::RuntimeError::from)?),
            topic: kafka.topics.alert_acks.clone(),
        })
    }

    /// Checks the request and the episode (when the caller is confined to a hospital, it must
    /// be the event's or the patient's managing one: either closes it), then sends the acknowledgement and waits for the broker to keep it.
    pub async fn acknowledge(
        &self,
        client: &Client,
        episode_id: &str,
        hospital: Option<&str>,
        request: &AckRequest,
        now_ms: i64,
    ) -> Result<AckOutcome, ServeError> {
        let (action, snooze_until_ms) = match checked(request, now_ms) {
            Ok(checked) => checked,
            Err(reason) => return Ok(AckOutcome::Invalid(reason)),
        };
        if episode_id.len() != 32 || !episode_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(AckOutcome::NoSuchEpisode);
        }
        let episode = client
            .query(EPISODE)
            .bind(episode_id)
            .fetch_optional::<Episode>()
            .await
            .map_err(|source| ServeError::Query {
                what: "alert episode",
                source,
            })?;
        let Some(episode) = episode.filter(|e| hospital.is_none_or(|h| e.concerns(h))) else {
            return Ok(AckOutcome::NoSuchEpisode);
        };
        if episode.last_status == "RESOLVED" {
            return Ok(AckOutcome::Resolved);
        }
        // Either hospital may answer: the record says whose clinician did.
        let clinician = match hospital {
            Some(h) => format!("{}@{h}", request.clinician_id),
            None => request.clinician_id.clone(),
        };
        // The same clinician's same answer is the same acknowledgement, however often sent.
        let ack_id = ack_id(episode_id, &request.action, &clinician, snooze_until_ms);
        let ack = AlertAck {
            ack_id: ack_id.clone(),
            episode_id: episode_id.to_string(),
            patient_pseudonym: episode.patient.clone(),
            action,
            snooze_until_ms,
            clinician_id: clinician,
            time_ms: now_ms,
        };
        let bytes = self
            .codec
            .encode(&ack)
            .map_err(vigil_runtime::RuntimeError::from)?;
        let (producer, topic) = (self.producer.clone(), self.topic.clone());
        let key = episode.patient;
        tokio::task::spawn_blocking(move || {
            producer.send(&topic, key.as_bytes(), &bytes)?;
            producer.flush()
        })
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))??;
        Ok(AckOutcome::Sent { ack_id })
    }
}

fn checked(request: &AckRequest, now_ms: i64) -> Result<(AckAction, Option<i64>), String> {
    let id = &request.clinician_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("clinician_id is 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    match (request.action.as_str(), request.snooze_minutes) {
        ("acknowledge", None) => Ok((AckAction::Acknowledge, None)),
        ("snooze", Some(minutes)) if (1..=10_080).contains(&minutes) => Ok((
            AckAction::Snooze,
            Some(now_ms + i64::from(minutes) * 60_000),
        )),
        ("snooze", _) => Err("a snooze names snooze_minutes, 1 to 10080".into()),
        ("acknowledge", Some(_)) => Err("snooze_minutes belongs to a snooze".into()),
        _ => Err("action is acknowledge or snooze".into()),
    }
}

fn ack_id(episode_id: &str, action: &str, clinician: &str, snooze_until_ms: Option<i64>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [episode_id, action, clinician] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    // A snooze to the same minute is the same snooze.
    hash.update(snooze_until_ms.map_or(0, |ms| ms / 60_000).to_le_bytes());
    hex::encode(&hash.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: &str, minutes: Option<u32>, clinician: &str) -> AckRequest {
        AckRequest {
            action: action.into(),
            snooze_minutes: minutes,
            clinician_id: clinician.into(),
        }
    }

    #[test]
    fn a_request_is_checked_before_anything_is_read() {
        assert!(checked(&request("acknowledge", None, "dr-li"), 0).is_ok());
        assert_eq!(
            checked(&request("snooze", Some(30), "dr-li"), 0).unwrap(),
            (AckAction::Snooze, Some(1_800_000))
        );
        for bad in [
            request("close", None, "dr-li"),
            request("snooze", None, "dr-li"),
            request("snooze", Some(0), "dr-li"),
            request("acknowledge", Some(5), "dr-li"),
            request("acknowledge", None, ""),
            request("acknowledge", None, "李医生"),
            request("acknowledge", None, &"a".repeat(65)),
        ] {
            assert!(checked(&bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_same_answer_twice_is_one_acknowledgement() {
        let ack = "acknowledge";
        assert_eq!(
            ack_id("e", ack, "dr-li@H1", None),
            ack_id("e", ack, "dr-li@H1", None)
        );
        assert_ne!(
            ack_id("e", ack, "dr-li@H1", None),
            ack_id("e", ack, "dr-wang@H1", None)
        );
        // The same staff id at the other hospital is another clinician.
        assert_ne!(
            ack_id("e", ack, "dr-li@H1", None),
            ack_id("e", ack, "dr-li@C2", None)
        );
    }
}
