//! Rule evaluation and alert episodes.
//!
//! An episode is one rule for one patient (and subject: a condition or a complication) from the
//! breach that opened it until it resolves. It raises once; while the breach persists and nobody
//! acknowledged, it re-notifies after the rule's interval; it resolves when the value is back in
//! range or the awaited follow-up happens. Every alert record has a deterministic id (episode,
//! sequence), so a replay after a crash reproduces the same records.

//!
//! Here: the episode decisions every rule shares ([`Episodes`]) and the dispatch of an event's
//! changes to the rules they concern; `triggers.rs` says when values breach a rule,
//! `follow_ups.rs` what a follow-up means for the follow-up rules, `timers.rs` what happens when
//! a deadline passes, `acks.rs` what a clinician's response does.

mod acks;
mod follow_ups;
mod timers;
mod triggers;

use std::sync::Arc;

use vigil_schemas::ids::{stable_id, stable_id_bytes};
use vigil_schemas::{Alert, AlertStatus, ClinicalEvent, Condition, Payload};

pub use acks::apply_ack;
pub use timers::on_timer;

use super::observe::Change;
use super::{Engine, PartitionState};
use crate::clinical::Complication;
use crate::rules::{Rule, RuleSet, Trigger};
use crate::state::{Episode, Patient, PatientKey, TimerKind};

const DAY_MS: i64 = 86_400_000;

/// Rule indices grouped by what triggers them.
pub struct RuleIndex {
    bp: Vec<usize>,
    glucose: Vec<usize>,
    hba1c: Vec<usize>,
    revisit: Vec<usize>,
    consecutive: Vec<usize>,
    missed: Vec<usize>,
    kidney: Vec<usize>,
    complication: Vec<usize>,
}

impl RuleIndex {
    pub fn new(rules: &RuleSet) -> Self {
        RuleIndex {
            bp: rules.matching(|t| matches!(t, Trigger::BloodPressureAtLeast { .. })),
            glucose: rules.matching(|t| {
                matches!(
                    t,
                    Trigger::GlucoseAtLeast { .. } | Trigger::GlucoseBelow { .. }
                )
            }),
            hba1c: rules.matching(|t| matches!(t, Trigger::Hba1cAbove { .. })),
            revisit: rules.matching(|t| matches!(t, Trigger::UncontrolledFollowUpRevisit { .. })),
            consecutive: rules
                .matching(|t| matches!(t, Trigger::ConsecutiveUncontrolledFollowUps { .. })),
            missed: rules.matching(|t| matches!(t, Trigger::MissedFollowUp { .. })),
            kidney: rules.matching(|t| matches!(t, Trigger::KidneyFunctionDecline { .. })),
            complication: rules.matching(|t| matches!(t, Trigger::NewComplication {})),
        }
    }
}

/// Values a message template can use.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub value: Option<f64>,
    pub unit: &'static str,
    pub sbp: Option<f64>,
    pub dbp: Option<f64>,
    pub days: Option<i64>,
    pub stage: Option<&'static str>,
    pub baseline: Option<f64>,
    pub condition: Option<Condition>,
    pub complication: Option<Complication>,
    /// Which criterion of a rule with several fired, in words.
    pub criterion: Option<String>,
}

/// What caused an episode change.
#[derive(Clone, Copy)]
struct Cause<'a> {
    time_ms: i64,
    trigger_id: &'a str,
    hospital: &'a str,
    department: &'a str,
    /// The patient's managing hospital now: it hears of the change too.
    managing: &'a str,
}

impl<'a> Cause<'a> {
    /// An event as the cause of what the rules do about it.
    fn of_event(event: &'a ClinicalEvent, department: &'a str, managing: &'a str) -> Cause<'a> {
        Cause {
            time_ms: event.event_time_ms,
            trigger_id: &event.event_id,
            hospital: &event.hospital_id,
            department,
            managing,
        }
    }
}

/// The patient's managing hospital (empty for a patient not held).
fn managing_hospital(state: &PartitionState, key: &PatientKey) -> Arc<str> {
    state
        .patients
        .get(key)
        .map_or_else(|| Arc::from(""), |p| p.hospital.clone())
}

fn number(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// The rule's condition in words, e.g. "SBP >= 180 mmHg or DBP >= 110 mmHg".
pub fn threshold_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::BloodPressureAtLeast { systolic_mmhg, diastolic_mmhg } => {
            format!("SBP >= {} mmHg or DBP >= {} mmHg", number(*systolic_mmhg), number(*diastolic_mmhg))
        }
        Trigger::GlucoseAtLeast { mmol_l } => format!("glucose >= {} mmol/L", number(*mmol_l)),
        Trigger::GlucoseBelow { mmol_l } => format!("glucose < {} mmol/L", number(*mmol_l)),
        Trigger::Hba1cAbove { percent } => format!("HbA1c > {}%", number(*percent)),
        Trigger::UncontrolledFollowUpRevisit { systolic_mmhg, diastolic_mmhg, revisit_within } => format!(
            "BP >= {}/{} mmHg at a follow-up, re-visit expected within {} days",
            number(*systolic_mmhg),
            number(*diastolic_mmhg),
            revisit_within.as_secs() / 86_400
        ),
        Trigger::ConsecutiveUncontrolledFollowUps { systolic_mmhg, diastolic_mmhg, count } => format!(
            "BP >= {}/{} mmHg at {count} consecutive follow-ups",
            number(*systolic_mmhg),
            number(*diastolic_mmhg)
        ),
        Trigger::MissedFollowUp { after, .. } => format!("no face-to-face follow-up for more than {} days", after.as_secs() / 86_400),
        Trigger::KidneyFunctionDecline { min_fall_fraction, max_annual_loss, rapid_min_readings, rapid_min_span, .. } => format!(
            "drop in GFR category with a fall of >= {}% from baseline, or a sustained loss of > {} mL/min/1.73m2 per year over >= {rapid_min_readings} readings in >= {} months",
            number(min_fall_fraction * 100.0),
            number(*max_annual_loss),
            rapid_min_span.as_secs() / (30 * 86_400)
        ),
        Trigger::NewComplication {} => "first diagnosis of a complication".into(),
    }
}

/// The rule's message with its placeholders (`{value}`, `{sbp}`, ...) filled in; a missing
/// fact reads "?", and braces around anything else stay as written.
fn render_message(rule: &Rule, facts: &Facts) -> String {
    // The braces as escapes, so that tools counting braces in the source are not misled.
    const OPEN: char = '\x7b';
    const CLOSE: char = '\x7d';
    let mut text = String::with_capacity(rule.message.len() + 32);
    let mut rest = rule.message.as_str();
    while let Some(open) = rest.find(OPEN) {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let filled = after
            .find(CLOSE)
            .and_then(|close| Some((close, placeholder(&after[..close], rule, facts)?)));
        match filled {
            Some((close, value)) => {
                text.push_str(value.as_deref().unwrap_or("?"));
                rest = &after[close + 1..];
            }
            None => {
                text.push(OPEN);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text
}

/// The value of a message placeholder: `None` when `name` is not one, `Some(None)` when the
/// fact is not known.
fn placeholder(name: &str, rule: &Rule, facts: &Facts) -> Option<Option<String>> {
    Some(match name {
        "value" => facts.value.map(number),
        "sbp" => facts.sbp.map(number),
        "dbp" => facts.dbp.map(number),
        "days" => facts.days.map(|d| d.to_string()),
        "stage" => facts.stage.map(str::to_string),
        "baseline" => facts.baseline.map(number),
        "condition" => facts.condition.map(|c| c.as_str().to_string()),
        "complication" => facts.complication.map(|c| c.name().to_string()),
        "criterion" => facts.criterion.clone(),
        "threshold" => Some(threshold_text(&rule.trigger)),
        _ => return None,
    })
}

fn pseudonym(key: &PatientKey) -> String {
    hex::encode(key)
}

// A constructor of a flat record: the arguments are its parts.
#[allow(clippy::too_many_arguments)]
fn build_alert(
    rule: &Rule,
    key: &PatientKey,
    episode: &Episode,
    status: AlertStatus,
    cause: &Cause<'_>,
    facts: &Facts,
    message: String,
    actor: &str,
) -> Alert {
    let episode_id = hex::encode(episode.id);
    let sequence = episode.sequence as i32;
    Alert {
        alert_id: stable_id(&[episode_id.as_bytes(), &sequence.to_le_bytes()]),
        episode_id,
        rule_id: rule.id.clone(),
        rule_version: rule.version as i32,
        severity: rule.severity,
        status,
        sequence,
        hospital_id: episode.hospital.to_string(),
        department_code: cause.department.to_string(),
        patient_pseudonym: pseudonym(key),
        event_time_ms: cause.time_ms,
        episode_start_ms: episode.opened_ms,
        trigger_event_id: cause.trigger_id.to_string(),
        value: facts.value.or(facts.sbp),
        unit: facts.unit.to_string(),
        threshold: threshold_text(&rule.trigger),
        message,
        source: rule.source.clone(),
        actor: actor.to_string(),
        managing_hospital_id: cause.managing.to_string(),
    }
}

fn episode_id(
    key: &PatientKey,
    rule_id: &str,
    subject: u8,
    opened_ms: i64,
    trigger: &str,
) -> [u8; 16] {
    stable_id_bytes(&[
        key,
        rule_id.as_bytes(),
        &[subject],
        &opened_ms.to_le_bytes(),
        trigger.as_bytes(),
    ])
}

/// Every episode decision about one patient: the rules, the partition, the patient, and where
/// alerts go, held together instead of threaded through each rule as separate arguments.
struct Episodes<'a> {
    engine: &'a Engine,
    state: &'a mut PartitionState,
    key: PatientKey,
    alerts: &'a mut Vec<Alert>,
}

impl Episodes<'_> {
    fn patient(&self) -> Option<&Patient> {
        self.state.patients.get(&self.key)
    }

    fn is_open(&self, rule: usize, subject: u8) -> bool {
        self.patient()
            .and_then(|p| p.episode(rule as u16, subject))
            .is_some()
    }

    fn set_timer(&mut self, kind: TimerKind, due: Option<i64>) {
        self.state.set_timer(self.key, kind, due);
    }

    /// Judges every rule of `rules` on the patient's latest values. A breach of a rule that
    /// another breached rule supersedes (level 2 replaces level 1) opens nothing.
    fn judge(&mut self, rules: &[usize], cause: &Cause<'_>) {
        let Some(patient) = self.patient() else {
            return;
        };
        let breaches: Vec<(usize, Option<Facts>)> = rules
            .iter()
            .map(|&rule| {
                let facts = self
                    .engine
                    .rules
                    .get(rule)
                    .and_then(|r| triggers::breach(&r.trigger, patient));
                (rule, facts)
            })
            .collect();
        for (rule, breach) in &breaches {
            let suppressed = breaches.iter().any(|(other, b)| {
                b.is_some() && self.engine.rules.superseded_by(*other).contains(rule)
            });
            self.evaluate(*rule, 0, breach.clone(), suppressed, cause);
        }
    }

    /// Raises, re-notifies or resolves the episode of (rule, subject) for a breach or its
    /// absence.
    fn evaluate(
        &mut self,
        rule_index: usize,
        subject: u8,
        breach: Option<Facts>,
        suppressed: bool,
        cause: &Cause<'_>,
    ) {
        let Some(rule) = self.engine.rules.get(rule_index) else {
            return;
        };
        let hospital = self.state.intern(cause.hospital);
        let rule_id = self.state.intern(&rule.id);
        let key = self.key;
        let Some(patient) = self.state.patients.get_mut(&key) else {
            return;
        };
        let open = patient.episode_mut(rule_index as u16, subject);
        match (breach, open) {
            (Some(facts), None) => {
                if suppressed {
                    return;
                }
                let opened_ms = cause.time_ms;
                let episode = Episode {
                    rule: rule_index as u16,
                    rule_id,
                    subject,
                    id: episode_id(&key, &rule.id, subject, opened_ms, cause.trigger_id),
                    opened_ms,
                    last_notified_ms: opened_ms,
                    sequence: 0,
                    acknowledged: false,
                    snoozed_until_ms: i64::MIN,
                    hospital,
                };
                let message = render_message(rule, &facts);
                self.alerts.push(build_alert(
                    rule,
                    &key,
                    &episode,
                    AlertStatus::Raised,
                    cause,
                    &facts,
                    message,
                    "",
                ));
                patient.episodes.push(episode);
                // A death already known (a snapshot holds it from the start) closes the
                // episode when it comes, as it would have when recorded.
                if let Some(death) = patient.death_ms {
                    let kind = TimerKind::Renotify {
                        rule: rule_index as u16,
                        subject,
                    };
                    self.set_timer(kind, Some(death.max(opened_ms)));
                }
            }
            (Some(facts), Some(episode)) => {
                let interval = rule.renotify_after.as_millis() as i64;
                let due = interval > 0
                    && !suppressed
                    && !episode.acknowledged
                    && episode.snoozed_until_ms <= cause.time_ms
                    && cause.time_ms - episode.last_notified_ms >= interval;
                if due {
                    episode.sequence += 1;
                    episode.last_notified_ms = cause.time_ms;
                    let message = render_message(rule, &facts);
                    self.alerts.push(build_alert(
                        rule,
                        &key,
                        episode,
                        AlertStatus::Renotified,
                        cause,
                        &facts,
                        message,
                        "",
                    ));
                }
            }
            (None, Some(_)) => self.resolve(rule_index, subject, cause, "Back within range."),
            (None, None) => {}
        }
    }

    /// Closes the open episode of (rule, subject), saying why.
    fn resolve(&mut self, rule_index: usize, subject: u8, cause: &Cause<'_>, note: &str) {
        let Some(rule) = self.engine.rules.get(rule_index) else {
            return;
        };
        let key = self.key;
        let Some(patient) = self.state.patients.get_mut(&key) else {
            return;
        };
        let Some(pos) = patient
            .episodes
            .iter()
            .position(|e| e.rule == rule_index as u16 && e.subject == subject)
        else {
            return;
        };
        let mut episode = patient.episodes.remove(pos);
        episode.sequence += 1;
        let message = format!("{}: resolved. {note}", rule.title);
        self.alerts.push(build_alert(
            rule,
            &key,
            &episode,
            AlertStatus::Resolved,
            cause,
            &Facts::default(),
            message,
            "",
        ));
        self.set_timer(
            TimerKind::Renotify {
                rule: rule_index as u16,
                subject,
            },
            None,
        );
    }

    /// A death closes every open episode at the death (its next reminder moves there; the
    /// reminder finds the patient dead) and cancels every deadline after it. At the death, not when
    /// it was recorded: a snapshot holds the death but not when it was entered, and must close
    /// what a stream of the same history closes.
    fn close_all_at_death(&mut self) {
        let Some(patient) = self.patient() else {
            return;
        };
        let Some(death) = patient.death_ms else {
            return;
        };
        // Each open episode's next reminder (a timer episode's) or none (a value episode's
        // renotifies on readings) moves to the death at the latest.
        let closes: Vec<(TimerKind, i64)> = patient
            .episodes
            .iter()
            .map(|e| {
                let kind = TimerKind::Renotify {
                    rule: e.rule,
                    subject: e.subject,
                };
                let at_death = death.max(e.last_notified_ms);
                let next = patient
                    .timers
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(at_death, |(_, due)| (*due).min(at_death));
                (kind, next)
            })
            .collect();
        let after_death: Vec<TimerKind> = patient
            .timers
            .iter()
            .filter(|(kind, due)| matches!(kind, TimerKind::Due { .. }) && *due > death)
            .map(|(kind, _)| *kind)
            .collect();
        for kind in after_death {
            self.set_timer(kind, None);
        }
        for (kind, due) in closes {
            self.set_timer(kind, Some(due));
        }
    }
}

/// A patient merged into another: every open episode closes now and no deadline of theirs runs
/// on; the surviving patient's rules judge the history from here.
pub fn close_merged(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    event: &ClinicalEvent,
    alerts: &mut Vec<Alert>,
) {
    let managing = managing_hospital(state, &key);
    let cause = Cause::of_event(event, "", &managing);
    let mut episodes = Episodes {
        engine,
        state,
        key,
        alerts,
    };
    let Some(patient) = episodes.patient() else {
        return;
    };
    let open: Vec<(usize, u8)> = patient
        .episodes
        .iter()
        .map(|e| (usize::from(e.rule), e.subject))
        .collect();
    let timers: Vec<TimerKind> = patient.timers.iter().map(|(kind, _)| *kind).collect();
    for (rule, subject) in open {
        let note = "The record was merged into another patient's.";
        episodes.resolve(rule, subject, &cause, note);
    }
    for kind in timers {
        episodes.set_timer(kind, None);
    }
}

/// The patient's records reach further back than known (its first fact, or an earlier one):
/// the follow-up deadlines count from there.
pub fn watch_from_first_fact(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    event: &ClinicalEvent,
    alerts: &mut Vec<Alert>,
) {
    let managing = managing_hospital(state, &key);
    let cause = Cause::of_event(event, "", &managing);
    let mut episodes = Episodes {
        engine,
        state,
        key,
        alerts,
    };
    for condition in Condition::ALL {
        follow_ups::reschedule_missed(&mut episodes, condition, &cause);
    }
}

/// Reacts to what an event changed: each kind of change goes to the rules it concerns.
pub fn on_change(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    event: &ClinicalEvent,
    change: &Change,
    alerts: &mut Vec<Alert>,
) {
    let department = match &event.payload {
        Payload::Diagnosis(d) => d.department_code.as_str(),
        Payload::Encounter(e) => e.department_code.as_str(),
        _ => "",
    };
    let managing = managing_hospital(state, &key);
    let cause = Cause::of_event(event, department, &managing);
    let index = &engine.index;
    let mut episodes = Episodes {
        engine,
        state,
        key,
        alerts,
    };
    if change.died {
        episodes.close_all_at_death();
    }
    if change.bp {
        // The reading's own time: a re-evaluation after a retraction reports the reading now
        // latest.
        let latest = episodes
            .patient()
            .and_then(|p| p.latest_bp())
            .map_or(i64::MIN, |r| r.time_ms);
        let at = Cause {
            time_ms: cause.time_ms.max(latest),
            ..cause
        };
        episodes.judge(&index.bp, &at);
    }
    if change.glucose {
        episodes.judge(&index.glucose, &cause);
    }
    if change.hba1c {
        episodes.judge(&index.hba1c, &cause);
    }
    if change.egfr {
        episodes.judge(&index.kidney, &cause);
    }
    if let Some(condition) = change.follow_up {
        follow_ups::on_follow_up(&mut episodes, condition, &cause);
    }
    if change.registration {
        for condition in Condition::ALL {
            follow_ups::reschedule_missed(&mut episodes, condition, &cause);
        }
    }
    if let Some(complication) = change.new_complication {
        new_complication(&mut episodes, complication, &cause);
    }
}

/// The first diagnosis of a complication raises an episode for a patient under management.
fn new_complication(episodes: &mut Episodes<'_>, complication: Complication, cause: &Cause<'_>) {
    let managed = episodes.patient().is_some_and(|p| {
        p.programmes()
            .any(|(_, enrolled)| enrolled <= cause.time_ms)
            && p.alive_at(cause.time_ms)
    });
    if !managed {
        return;
    }
    for &rule in &episodes.engine.index.complication {
        let facts = Facts {
            complication: Some(complication),
            ..Facts::default()
        };
        episodes.evaluate(rule, complication as u8, Some(facts), false, cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    #[test]
    fn messages_fill_known_placeholders_and_keep_other_braces() {
        let rules = RuleSet::defaults().unwrap();
        let crisis = rules
            .rules()
            .iter()
            .find(|r| r.message.contains("{sbp}"))
            .unwrap();
        let facts = Facts {
            sbp: Some(182.0),
            dbp: None,
            ..Facts::default()
        };
        let text = render_message(crisis, &facts);
        assert!(text.contains("BP 182/? mmHg"), "{text}");
        assert!(text.contains(&threshold_text(&crisis.trigger)), "{text}");
        assert!(!text.contains('{'), "{text}");

        let mut odd = crisis.clone();
        odd.message = "{unknown} {value {days}} {血压}{".into();
        let facts = Facts {
            days: Some(31),
            ..Facts::default()
        };
        assert_eq!(render_message(&odd, &facts), "{unknown} {value 31} {血压}{");
    }
}
