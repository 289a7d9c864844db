//! What a follow-up (or a registration) means for the follow-up rules: two uncontrolled visits
//! in a row, a re-visit awaited after an uncontrolled one, and the next visit due.

use vigil_schemas::Condition;

use super::{timers, triggers, Cause, Episodes, DAY_MS};
use crate::rules::Trigger;
use crate::state::{condition_index, TimerKind};

/// A follow-up for `condition` was added, corrected or retracted.
pub(super) fn on_follow_up(episodes: &mut Episodes<'_>, condition: Condition, cause: &Cause<'_>) {
    if condition == Condition::Hypertension {
        let subject = condition_index(condition) as u8;
        for &rule in &episodes.engine.index.consecutive {
            let breach = episodes
                .engine
                .rules
                .get(rule)
                .zip(episodes.patient())
                .and_then(|(r, p)| triggers::breach(&r.trigger, p));
            episodes.evaluate(rule, subject, breach, false, cause);
        }
        for &rule in &episodes.engine.index.revisit {
            await_revisit(episodes, rule, condition, cause);
        }
    }
    reschedule_missed(episodes, condition, cause);
}

/// An uncontrolled follow-up starts a wait for the re-visit (a timer); any later follow-up is
/// the re-visit and closes the episode the wait may have opened.
fn await_revisit(
    episodes: &mut Episodes<'_>,
    rule: usize,
    condition: Condition,
    cause: &Cause<'_>,
) {
    let Some(Trigger::UncontrolledFollowUpRevisit {
        systolic_mmhg,
        diastolic_mmhg,
        revisit_within,
    }) = episodes.engine.rules.get(rule).map(|r| r.trigger.clone())
    else {
        return;
    };
    let subject = condition_index(condition) as u8;
    let within_ms = revisit_within.as_millis() as i64;
    let latest = episodes
        .patient()
        .and_then(|p| p.follow_ups_for(condition).next_back().copied());
    // The episode opened `within` after the uncontrolled follow-up.
    let awaited_since = episodes
        .patient()
        .and_then(|p| p.episode(rule as u16, subject))
        .map(|e| e.opened_ms - within_ms);
    if let (Some(f), Some(since)) = (latest, awaited_since) {
        if f.time_ms > since {
            episodes.resolve(rule, subject, cause, "The patient was seen again.");
        }
    }
    close_at_death(episodes, rule, subject);
    let still_open = episodes.is_open(rule, subject);
    let due = latest.filter(|_| !still_open).and_then(|f| {
        let (s, d) = f.bp()?;
        (s >= systolic_mmhg || d >= diastolic_mmhg).then_some(f.time_ms + within_ms)
    });
    episodes.set_timer(
        TimerKind::Due {
            rule: rule as u16,
            subject,
        },
        due,
    );
}

/// An open timer episode of a patient whose death is known closes at the death: its next
/// reminder moves there (see `timers::schedule_renotify`).
fn close_at_death(episodes: &mut Episodes<'_>, rule: usize, subject: u8) {
    let notified = episodes
        .patient()
        .filter(|p| p.death_ms.is_some())
        .and_then(|p| p.episode(rule as u16, subject))
        .map(|e| e.last_notified_ms);
    if let Some(from) = notified {
        timers::schedule_renotify(
            episodes.engine,
            episodes.state,
            episodes.key,
            rule,
            subject,
            from,
        );
    }
}

/// The deadline of the next face-to-face follow-up for a condition; resolves an open missed
/// follow-up episode when the patient turned out not to be overdue.
pub(super) fn reschedule_missed(
    episodes: &mut Episodes<'_>,
    condition: Condition,
    cause: &Cause<'_>,
) {
    let subject = condition_index(condition) as u8;
    for &rule in &episodes.engine.index.missed {
        let Some(Trigger::MissedFollowUp { after, conditions }) =
            episodes.engine.rules.get(rule).map(|r| &r.trigger)
        else {
            continue;
        };
        if !conditions.contains(&condition) {
            continue;
        }
        let Some(patient) = episodes.patient() else {
            return;
        };
        let deadline = patient.watched_since(condition).map(|watched| {
            let last = patient
                .follow_ups_for(condition)
                .filter(|f| f.face_to_face)
                .map(|f| f.time_ms)
                .next_back()
                .unwrap_or(watched);
            // "More than N days": due the day after the threshold, not on it.
            last + after.as_millis() as i64 + DAY_MS
        });
        // Nothing is due after the patient's death; an episode open then closes at the death.
        let due = deadline.filter(|d| patient.alive_at(*d));
        let overdue_since = patient.episode(rule as u16, subject).map(|e| e.opened_ms);
        if let Some(opened) = overdue_since {
            if deadline.is_none_or(|d| d > opened) {
                episodes.resolve(rule, subject, cause, "A face-to-face follow-up took place.");
            }
        }
        close_at_death(episodes, rule, subject);
        let still_open = episodes.is_open(rule, subject);
        episodes.set_timer(
            TimerKind::Due {
                rule: rule as u16,
                subject,
            },
            if still_open { None } else { due },
        );
    }
}
