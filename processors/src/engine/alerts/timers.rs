//! What happens when a deadline passes: an awaited visit that did not come raises its episode,
//! and an open timer episode nobody acknowledged is re-notified.

use vigil_schemas::{Alert, AlertStatus, Condition};

use super::{build_alert, render_message, Cause, Episodes, Facts, DAY_MS};
use crate::engine::{Engine, PartitionState};
use crate::rules::Trigger;
use crate::state::{condition_from_index, Patient, PatientKey, TimerKind};

/// A timer fired at `due` (the watermark passed it).
pub fn on_timer(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    kind: TimerKind,
    due: i64,
    alerts: &mut Vec<Alert>,
) {
    let Some(patient) = state.patients.get(&key) else {
        return;
    };
    let hospital = patient.hospital.clone();
    let (rule_index, subject) = match kind {
        TimerKind::Due { rule, subject } | TimerKind::Renotify { rule, subject } => {
            (rule as usize, subject)
        }
    };
    let Some(rule) = engine.rules.get(rule_index) else {
        return;
    };
    let trigger_id = format!("timer:{}:{subject}:{due}", rule.id);
    let cause = Cause {
        time_ms: due,
        trigger_id: &trigger_id,
        hospital: &hospital,
        department: "",
        managing: &hospital,
    };
    match kind {
        TimerKind::Due { .. } => {
            let Some(condition) = condition_from_index(subject) else {
                return;
            };
            let facts = match &rule.trigger {
                Trigger::MissedFollowUp { .. } => missed_facts(patient, condition, due),
                Trigger::UncontrolledFollowUpRevisit { .. } => {
                    revisit_facts(patient, condition, due)
                }
                _ => None,
            };
            let Some(facts) = facts else { return };
            let mut episodes = Episodes {
                engine,
                state,
                key,
                alerts,
            };
            episodes.evaluate(rule_index, subject, Some(facts), false, &cause);
            schedule_renotify(engine, state, key, rule_index, subject, due);
        }
        TimerKind::Renotify { .. } => {
            // The reminder due at or after the patient's death closes the episode instead.
            if !patient.alive_at(due) {
                let mut episodes = Episodes {
                    engine,
                    state,
                    key,
                    alerts,
                };
                episodes.resolve(rule_index, subject, &cause, "The patient died.");
                return;
            }
            let Some(episode) = patient.episode(rule_index as u16, subject) else {
                return;
            };
            if episode.acknowledged {
                return;
            }
            if episode.snoozed_until_ms > due {
                let until = episode.snoozed_until_ms;
                state.set_timer(key, kind, Some(until));
                return;
            }
            let Some(condition) = condition_from_index(subject) else {
                return;
            };
            let facts = match &rule.trigger {
                Trigger::MissedFollowUp { .. } => missed_facts(patient, condition, due),
                _ => revisit_facts(patient, condition, due),
            }
            .unwrap_or_default();
            // Renotification of a timer episode: the interval has passed by construction.
            if let Some(episode) = state
                .patients
                .get_mut(&key)
                .and_then(|p| p.episode_mut(rule_index as u16, subject))
            {
                episode.sequence += 1;
                episode.last_notified_ms = due;
                let message = render_message(rule, &facts);
                alerts.push(build_alert(
                    rule,
                    &key,
                    episode,
                    AlertStatus::Renotified,
                    &cause,
                    &facts,
                    message,
                    "",
                ));
            }
            schedule_renotify(engine, state, key, rule_index, subject, due);
        }
    }
}

/// The next reminder of an open timer episode, notified last at `from`: after the rule's
/// interval, or at the patient's death if that comes first (which closes the episode then,
/// whenever the death becomes known).
pub(super) fn schedule_renotify(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    rule: usize,
    subject: u8,
    from: i64,
) {
    let interval = engine
        .rules
        .get(rule)
        .map_or(0, |r| r.renotify_after.as_millis() as i64);
    let Some(patient) = state.patients.get(&key) else {
        return;
    };
    let open = patient.episode(rule as u16, subject).is_some();
    let renotify = (interval > 0).then_some(from + interval);
    let at_death = patient.death_ms.map(|death| death.max(from));
    let due = if open {
        renotify.into_iter().chain(at_death).min()
    } else {
        None
    };
    state.set_timer(
        key,
        TimerKind::Renotify {
            rule: rule as u16,
            subject,
        },
        due,
    );
}

fn missed_facts(patient: &Patient, condition: Condition, due: i64) -> Option<Facts> {
    if !patient.alive_at(due) {
        return None;
    }
    let watched = patient.watched_since(condition)?;
    let last = patient
        .follow_ups_for(condition)
        .filter(|f| f.face_to_face && f.time_ms <= due)
        .map(|f| f.time_ms)
        .next_back()
        .unwrap_or(watched);
    Some(Facts {
        days: Some((due - last) / DAY_MS),
        condition: Some(condition),
        ..Facts::default()
    })
}

fn revisit_facts(patient: &Patient, condition: Condition, due: i64) -> Option<Facts> {
    if !patient.alive_at(due) || patient.managed_since(condition).is_none() {
        return None;
    }
    let last = patient
        .follow_ups_for(condition)
        .rfind(|f| f.time_ms <= due)?;
    let (s, d) = last.bp()?;
    Some(Facts {
        sbp: Some(s),
        dbp: Some(d),
        days: Some((due - last.time_ms) / DAY_MS),
        unit: "mm[Hg]",
        condition: Some(condition),
        ..Facts::default()
    })
}
