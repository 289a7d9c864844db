//! One alert to one hospital: the request, its signature, and retries until the endpoint
//! acknowledges (2xx), refuses for good, or the alert has waited too long.

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Serialize;
use vigil_runtime::time::now_ms;
use vigil_runtime::Shutdown;
use vigil_schemas::{Alert, AlertDelivery, DeliveryOutcome};

use super::config::NotifyConfig;
use super::endpoints::Endpoint;
use crate::error::SinkError;

/// The body hospitals receive: the alert as a clinician needs it, with no direct identifier.
#[derive(Debug, Serialize)]
pub struct Notification<'a> {
    /// Version of this body's layout.
    pub schema: &'static str,
    pub alert_id: &'a str,
    pub episode_id: &'a str,
    pub status: &'static str,
    pub sequence: i32,
    pub severity: vigil_schemas::Severity,
    pub rule_id: &'a str,
    pub rule_version: i32,
    pub hospital_id: &'a str,
    /// The patient's managing hospital ('' when unknown); it is told as well as `hospital_id`.
    pub managing_hospital_id: &'a str,
    /// The hospital this request is for: `hospital_id` or `managing_hospital_id`.
    pub recipient_hospital_id: &'a str,
    pub department_code: &'a str,
    /// The hospital maps it back to its patient with its own pseudonymisation key.
    pub patient_pseudonym: &'a str,
    pub event_time_ms: i64,
    pub episode_start_ms: i64,
    pub value: Option<f64>,
    pub unit: &'a str,
    pub threshold: &'a str,
    pub message: &'a str,
    pub source: &'a str,
}

/// One alert for one of the hospitals it goes to.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    pub alert: &'a Alert,
    pub recipient: &'a str,
}

/// The hospitals an alert goes to: the event's, and the patient's managing hospital when that is
/// another one (a reading taken elsewhere reaches the team that manages the patient).
pub fn recipients(alert: &Alert) -> impl Iterator<Item = &str> {
    let managing = alert.managing_hospital_id.as_str();
    let also = (!managing.is_empty() && managing != alert.hospital_id).then_some(managing);
    std::iter::once(alert.hospital_id.as_str()).chain(also)
}

/// The Idempotency-Key of the alert's request to `recipient`, and the key of its delivery
/// record: the alert id for the event's hospital (as it always was), with the recipient added
/// for the managing hospital, so two hospitals sharing one endpoint each get theirs.
pub fn delivery_key(alert_id: &str, recipient: &str, event_hospital: &str) -> String {
    if recipient == event_hospital {
        alert_id.to_string()
    } else {
        format!("{alert_id}@{recipient}")
    }
}

pub fn body(alert: &Alert, recipient: &str) -> Result<Vec<u8>, SinkError> {
    serde_json::to_vec(&Notification {
        schema: "vigil.alert/1",
        alert_id: &alert.alert_id,
        episode_id: &alert.episode_id,
        status: alert.status.as_str(),
        sequence: alert.sequence,
        severity: alert.severity,
        rule_id: &alert.rule_id,
        rule_version: alert.rule_version,
        hospital_id: &alert.hospital_id,
        managing_hospital_id: &alert.managing_hospital_id,
        recipient_hospital_id: recipient,
        department_code: &alert.department_code,
        patient_pseudonym: &alert.patient_pseudonym,
        event_time_ms: alert.event_time_ms,
        episode_start_ms: alert.episode_start_ms,
        value: alert.value,
        unit: &alert.unit,
        threshold: &alert.threshold,
        message: &alert.message,
        source: &alert.source,
    })
    .map_err(|e| SinkError::Config(format!("cannot encode a notification: {e}")))
}

/// What one response (or its absence) means for the alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The endpoint acknowledged: never send this alert to it again.
    Acknowledged,
    /// Worth another try, after at least `after` if the endpoint said so.
    Retry {
        detail: String,
        after: Option<Duration>,
    },
    /// The endpoint will never take this request as it is.
    Refused { detail: String },
}

/// 2xx acknowledges; timeouts, throttling, conflicts in progress and server errors are retried;
/// other 4xx refuse the request for good (a wrong URL or signature needs a person, not retries).
pub fn verdict(status: StatusCode, retry_after: Option<&HeaderValue>) -> Verdict {
    if status.is_success() {
        return Verdict::Acknowledged;
    }
    let retryable = status.is_server_error()
        || matches!(status.as_u16(), 408 | 409 | 425 | 429)
        // Redirects are not followed: a webhook that moved is configured anew.
        || status.is_informational();
    let detail = format!("the endpoint answered HTTP {}", status.as_u16());
    if retryable {
        let after = retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Verdict::Retry { detail, after }
    } else {
        Verdict::Refused {
            detail: format!("{detail}; it refused the alert for good"),
        }
    }
}

/// Sends notifications with one HTTP client (connection pooling, TLS sessions) for all hospitals.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    initial_backoff: Duration,
    max_backoff: Duration,
    give_up_after: Duration,
}

/// reqwest is built on rustls without a compiled-in provider choice: installs ring, once per
/// process, before any HTTP client is built.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl Deliverer {
    pub fn new(config: &NotifyConfig) -> Result<Self, SinkError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigil-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Deliverer {
            client,
            initial_backoff: config.initial_retry_backoff,
            max_backoff: config.max_retry_backoff,
            give_up_after: config.give_up_after,
        })
    }

    /// One request.
    async fn attempt(&self, endpoint: &Endpoint, key: &str, body: &[u8]) -> (i32, Verdict) {
        let sent_at = now_ms() / 1000;
        let request = self
            .client
            .post(endpoint.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .header("X-Vigil-Signature", endpoint.signature(sent_at, body))
            .body(body.to_vec());
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let verdict = verdict(status, response.headers().get(RETRY_AFTER));
                (i32::from(status.as_u16()), verdict)
            }
            Err(error) => {
                let detail = if error.is_timeout() {
                    "the endpoint did not answer in time".to_string()
                } else if error.is_connect() {
                    "cannot connect to the endpoint".to_string()
                } else {
                    format!("the request failed: {error}")
                };
                (
                    0,
                    Verdict::Retry {
                        detail,
                        after: None,
                    },
                )
            }
        }
    }

    /// Delivers until acknowledged, refused, out of time, or `stop` is requested (then `None`:
    /// the alert stays uncommitted and a later run delivers it).
    pub async fn deliver(
        &self,
        endpoint: &Endpoint,
        notice: Notice<'_>,
        stop: &Shutdown,
    ) -> Result<Option<AlertDelivery>, SinkError> {
        let Notice { alert, recipient } = notice;
        let body = body(alert, recipient)?;
        let key = delivery_key(&alert.alert_id, recipient, &alert.hospital_id);
        let first_attempt_ms = now_ms();
        let deadline = tokio::time::Instant::now() + self.give_up_after;
        let mut backoff = self.initial_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (http_status, verdict) = self.attempt(endpoint, &key, &body).await;
            metrics::counter!("vigil_notify_attempts_total", "result" => attempt_label(&verdict))
                .increment(1);
            let finish = |outcome, detail: String| {
                Some(record(
                    notice,
                    endpoint,
                    outcome,
                    attempts,
                    http_status,
                    detail,
                    first_attempt_ms,
                ))
            };
            let (detail, after) = match verdict {
                Verdict::Acknowledged => {
                    return Ok(finish(DeliveryOutcome::Delivered, String::new()))
                }
                Verdict::Refused { detail } => {
                    return Ok(finish(DeliveryOutcome::Undeliverable, detail))
                }
                Verdict::Retry { detail, after } => (detail, after),
            };
            // Full jitter keeps a recovering endpoint from being hit by every notifier at once.
            let pause = after
                .unwrap_or_else(|| backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5))
                .min(self.max_backoff);
            backoff = (backoff * 2).min(self.max_backoff);
            if tokio::time::Instant::now() + pause >= deadline {
                let detail = format!(
                    "{detail}; gave up after {attempts} attempts over {:?}",
                    self.give_up_after
                );
                return Ok(finish(DeliveryOutcome::Undeliverable, detail));
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.requested() => return Ok(None),
            }
        }
    }
}

fn attempt_label(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Acknowledged => "acknowledged",
        Verdict::Retry { .. } => "retry",
        Verdict::Refused { .. } => "refused",
    }
}

/// The delivery record of a notice.
pub fn record(
    notice: Notice<'_>,
    endpoint: &Endpoint,
    outcome: DeliveryOutcome,
    attempts: i32,
    http_status: i32,
    detail: String,
    first_attempt_ms: i64,
) -> AlertDelivery {
    outcome_record(
        notice,
        outcome,
        attempts,
        http_status,
        detail,
        &endpoint.shown,
        first_attempt_ms,
    )
}

pub fn outcome_record(
    Notice { alert, recipient }: Notice<'_>,
    outcome: DeliveryOutcome,
    attempts: i32,
    http_status: i32,
    detail: String,
    endpoint: &str,
    first_attempt_ms: i64,
) -> AlertDelivery {
    AlertDelivery {
        alert_id: alert.alert_id.clone(),
        episode_id: alert.episode_id.clone(),
        rule_id: alert.rule_id.clone(),
        severity: alert.severity,
        alert_status: alert.status,
        hospital_id: recipient.to_string(),
        outcome,
        attempts,
        http_status,
        detail,
        endpoint: endpoint.to_string(),
        alert_time_ms: alert.event_time_ms,
        first_attempt_ms,
        finished_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_classified_for_retry_or_refusal() {
        assert_eq!(verdict(StatusCode::OK, None), Verdict::Acknowledged);
        assert_eq!(verdict(StatusCode::ACCEPTED, None), Verdict::Acknowledged);
        for code in [500, 502, 503, 504, 408, 409, 425, 429] {
            assert!(
                matches!(
                    verdict(StatusCode::from_u16(code).unwrap(), None),
                    Verdict::Retry { .. }
                ),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 410, 413, 422, 301, 302] {
            assert!(
                matches!(
                    verdict(StatusCode::from_u16(code).unwrap(), None),
                    Verdict::Refused { .. }
                ),
                "{code}"
            );
        }
        let after = HeaderValue::from_static("7");
        assert_eq!(
            verdict(StatusCode::SERVICE_UNAVAILABLE, Some(&after)),
            Verdict::Retry {
                detail: "the endpoint answered HTTP 503".into(),
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn the_body_is_json_without_direct_identifiers() {
        let alert: Alert =
            serde_json::from_str(include_str!("../../../schemas/examples/alert/raised.json"))
                .unwrap();
        let body = body(&alert, &alert.managing_hospital_id).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["schema"], "vigil.alert/1");
        assert_eq!(value["alert_id"], alert.alert_id.as_str());
        assert_eq!(value["status"], "RAISED");
        assert_eq!(value["severity"], "CRITICAL");
        assert_eq!(value["patient_pseudonym"], alert.patient_pseudonym.as_str());
        assert_eq!(value["recipient_hospital_id"], "H0002");
        assert_eq!(value.as_object().unwrap().len(), 20);
    }

    #[test]
    fn an_alert_goes_to_the_managing_hospital_too_when_it_is_another() {
        let mut alert: Alert =
            serde_json::from_str(include_str!("../../../schemas/examples/alert/raised.json"))
                .unwrap();
        assert_eq!(recipients(&alert).collect::<Vec<_>>(), ["H0001", "H0002"]);
        assert_eq!(delivery_key("a1", "H0001", "H0001"), "a1");
        assert_eq!(delivery_key("a1", "H0002", "H0001"), "a1@H0002");
        alert.managing_hospital_id = "H0001".into();
        assert_eq!(recipients(&alert).collect::<Vec<_>>(), ["H0001"]);
        alert.managing_hospital_id.clear(); // written before schema v2
        assert_eq!(recipients(&alert).collect::<Vec<_>>(), ["H0001"]);
    }
}
