//! A clinician's response to an open episode: acknowledge, snooze, or close.

use vigil_schemas::{AckAction, Alert, AlertAck, AlertStatus};

use super::{build_alert, Cause, Facts, DAY_MS};
use crate::engine::{Engine, PartitionState};
use crate::rules::Trigger;
use crate::state::TimerKind;

/// Applies a clinician's response to an open episode.
pub fn apply_ack(
    engine: &Engine,
    state: &mut PartitionState,
    ack: &AlertAck,
    alerts: &mut Vec<Alert>,
) -> bool {
    let Some(key) = crate::state::patient_key(&ack.patient_pseudonym) else {
        return false;
    };
    let mut id = [0u8; 16];
    if hex::decode_to_slice(&ack.episode_id, &mut id).is_err() {
        return false;
    }
    let Some(patient) = state.patients.get_mut(&key) else {
        return false;
    };
    let Some(pos) = patient.episodes.iter().position(|e| e.id == id) else {
        return false;
    };
    let rule_index = patient.episodes[pos].rule as usize;
    let subject = patient.episodes[pos].subject;
    let Some(rule) = engine.rules.get(rule_index) else {
        return false;
    };
    let hospital = patient.episodes[pos].hospital.clone();
    let managing = patient.hospital.clone();
    let cause = Cause {
        time_ms: ack.time_ms,
        trigger_id: &ack.ack_id,
        hospital: &hospital,
        department: "",
        managing: &managing,
    };
    let one_shot = matches!(rule.trigger, Trigger::NewComplication {});
    match ack.action {
        AckAction::Acknowledge => {
            let episode = &mut patient.episodes[pos];
            if episode.acknowledged {
                return true; // a replayed acknowledgement
            }
            episode.acknowledged = true;
            episode.sequence += 1;
            let message = format!("{}: acknowledged by {}.", rule.title, ack.clinician_id);
            alerts.push(build_alert(
                rule,
                &key,
                episode,
                AlertStatus::Acknowledged,
                &cause,
                &Facts::default(),
                message,
                &ack.clinician_id,
            ));
            if one_shot {
                patient.episodes.remove(pos);
            }
        }
        AckAction::Snooze => {
            let until = ack.snooze_until_ms.unwrap_or(ack.time_ms + DAY_MS);
            let episode = &mut patient.episodes[pos];
            if episode.snoozed_until_ms == until {
                return true;
            }
            episode.snoozed_until_ms = until;
            episode.sequence += 1;
            let message = format!(
                "{}: snoozed by {} until {}.",
                rule.title, ack.clinician_id, until
            );
            alerts.push(build_alert(
                rule,
                &key,
                episode,
                AlertStatus::Snoozed,
                &cause,
                &Facts::default(),
                message,
                &ack.clinician_id,
            ));
        }
        AckAction::Close => {
            let mut episode = patient.episodes.remove(pos);
            episode.sequence += 1;
            let message = format!("{}: closed by {}.", rule.title, ack.clinician_id);
            alerts.push(build_alert(
                rule,
                &key,
                &episode,
                AlertStatus::Resolved,
                &cause,
                &Facts::default(),
                message,
                &ack.clinician_id,
            ));
            state.set_timer(
                key,
                TimerKind::Renotify {
                    rule: rule_index as u16,
                    subject,
                },
                None,
            );
        }
    }
    state.changed.insert(key);
    if let Some(p) = state.patients.get_mut(&key) {
        p.version += 1;
    }
    true
}
