//! Rule evaluation and alert episodes.
//!
//! An episode is one rule for one patient (and subject: a condition or a complication) from the
//! breach that opened it until it resolves. It raises once; while the breach persists and nobody
//! acknowledged, it re-notifies after the rule's interval; it resolves when the value is back in
//! range or the awaited follow-up happens. Every alert record has a deterministic id (episode,
//! sequence), so a replay after a crash reproduces the same records.

use vigil_schemas::ids::stable_id;
use vigil_schemas::{AckAction, Alert, AlertAck, AlertStatus, ClinicalEvent, Condition, Payload};

use super::observe::Change;
use super::{Engine, PartitionState};
use crate::clinical::{kdigo_stage, kdigo_stage_name, Complication};
use crate::rules::{Rule, RuleSet, Trigger};
use crate::state::{
    condition_from_index, condition_index, Episode, Patient, PatientKey, Reading, TimerKind,
};

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
struct Cause<'a> {
    time_ms: i64,
    trigger_id: &'a str,
    hospital: &'a str,
    department: &'a str,
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

fn render_message(rule: &Rule, facts: &Facts) -> String {
    let mut text = rule.message.clone();
    let mut put = |name: &str, value: Option<String>| {
        let key = format!("{{{name}}}");
        if text.contains(&key) {
            text = text.replace(&key, value.as_deref().unwrap_or("?"));
        }
    };
    put("value", facts.value.map(number));
    put("sbp", facts.sbp.map(number));
    put("dbp", facts.dbp.map(number));
    put("days", facts.days.map(|d| d.to_string()));
    put("stage", facts.stage.map(str::to_string));
    put("baseline", facts.baseline.map(number));
    put("condition", facts.condition.map(|c| c.as_str().to_string()));
    put(
        "complication",
        facts.complication.map(|c| c.name().to_string()),
    );
    put("criterion", facts.criterion.clone());
    put("threshold", Some(threshold_text(&rule.trigger)));
    text
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
    }
}

/// Raises, re-notifies or resolves the episode of (rule, subject) for a breach or its absence.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    rule_index: usize,
    subject: u8,
    breach: Option<Facts>,
    suppressed: bool,
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    let Some(rule) = engine.rules.get(rule_index) else {
        return;
    };
    let hospital = state.intern(cause.hospital);
    let rule_id = state.intern(&rule.id);
    let Some(patient) = state.patients.get_mut(&key) else {
        return;
    };
    let open = patient.episode_mut(rule_index as u16, subject);
    match (breach, open) {
        (Some(facts), None) => {
            if suppressed {
                return;
            }
            let opened_ms = cause.time_ms;
            let id = episode_id(&key, &rule.id, subject, opened_ms, cause.trigger_id);
            let episode = Episode {
                rule: rule_index as u16,
                rule_id,
                subject,
                id,
                opened_ms,
                last_notified_ms: opened_ms,
                sequence: 0,
                acknowledged: false,
                snoozed_until_ms: i64::MIN,
                hospital,
            };
            let message = render_message(rule, &facts);
            alerts.push(build_alert(
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
                alerts.push(build_alert(
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
        (None, Some(_)) => resolve(
            engine,
            state,
            key,
            rule_index,
            subject,
            cause,
            "Back within range.",
            alerts,
        ),
        (None, None) => {}
    }
}

fn episode_id(
    key: &PatientKey,
    rule_id: &str,
    subject: u8,
    opened_ms: i64,
    trigger: &str,
) -> [u8; 16] {
    let hex_id = stable_id(&[
        key,
        rule_id.as_bytes(),
        &[subject],
        &opened_ms.to_le_bytes(),
        trigger.as_bytes(),
    ]);
    let mut id = [0u8; 16];
    // stable_id returns 32 hex characters; decoding cannot fail.
    let _ = hex::decode_to_slice(hex_id, &mut id);
    id
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    rule_index: usize,
    subject: u8,
    cause: &Cause<'_>,
    note: &str,
    alerts: &mut Vec<Alert>,
) {
    let Some(rule) = engine.rules.get(rule_index) else {
        return;
    };
    let Some(patient) = state.patients.get_mut(&key) else {
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
    alerts.push(build_alert(
        rule,
        &key,
        &episode,
        AlertStatus::Resolved,
        cause,
        &Facts::default(),
        message,
        "",
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

/// Reacts to what an event changed.
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
    let cause = Cause {
        time_ms: event.event_time_ms,
        trigger_id: &event.event_id,
        hospital: &event.hospital_id,
        department,
    };
    let index = &engine.index;
    if change.died {
        close_all_for_death(engine, state, key, &cause, alerts);
        return;
    }
    if change.bp {
        bp_rules(engine, state, key, &index.bp, &cause, alerts);
    }
    if change.glucose {
        glucose_rules(engine, state, key, &index.glucose, &cause, alerts);
    }
    if change.hba1c {
        for &rule in &index.hba1c {
            let Some(Trigger::Hba1cAbove { percent }) = engine.rules.get(rule).map(|r| &r.trigger)
            else {
                continue;
            };
            let breach = state
                .patients
                .get(&key)
                .and_then(|p| p.hba1c.last())
                .and_then(|r| {
                    ((r.value as f64) > *percent).then(|| Facts {
                        value: Some(r.value as f64),
                        unit: "%",
                        ..Facts::default()
                    })
                });
            evaluate(engine, state, key, rule, 0, breach, false, &cause, alerts);
        }
    }
    if change.egfr {
        kidney_rules(engine, state, key, &index.kidney, &cause, alerts);
    }
    if let Some(condition) = change.follow_up {
        follow_up_rules(engine, state, key, condition, &cause, alerts);
    }
    if change.registration {
        schedule_missed_follow_ups(engine, state, key, &cause, alerts);
    }
    if let Some(complication) = change.new_complication {
        let managed = state.patients.get(&key).is_some_and(|p| {
            p.programmes()
                .any(|(_, enrolled)| enrolled <= event.event_time_ms)
                && p.alive_at(event.event_time_ms)
        });
        if managed {
            for &rule in &index.complication {
                let facts = Facts {
                    complication: Some(complication),
                    ..Facts::default()
                };
                evaluate(
                    engine,
                    state,
                    key,
                    rule,
                    complication as u8,
                    Some(facts),
                    false,
                    &cause,
                    alerts,
                );
            }
        }
    }
}

fn bp_rules(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    rules: &[usize],
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    let latest = state
        .patients
        .get(&key)
        .and_then(|p| p.latest_bp().copied());
    for &rule in rules {
        let Some(Trigger::BloodPressureAtLeast {
            systolic_mmhg,
            diastolic_mmhg,
        }) = engine.rules.get(rule).map(|r| &r.trigger)
        else {
            continue;
        };
        let breach = latest.and_then(|r| {
            let (s, d) = (r.systolic as f64, r.diastolic as f64);
            (s >= *systolic_mmhg || d >= *diastolic_mmhg).then(|| Facts {
                sbp: Some(s),
                dbp: Some(d),
                unit: "mm[Hg]",
                ..Facts::default()
            })
        });
        // The reading's own time: a re-evaluation after a retraction reports the reading now latest.
        let at = Cause {
            time_ms: cause.time_ms.max(latest.map_or(i64::MIN, |r| r.time_ms)),
            ..*cause
        };
        evaluate(engine, state, key, rule, 0, breach, false, &at, alerts);
    }
}

fn glucose_rules(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    rules: &[usize],
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    let latest = state
        .patients
        .get(&key)
        .and_then(|p| p.glucose.last().copied());
    let breaches: Vec<(usize, Option<Facts>)> = rules
        .iter()
        .map(|&rule| {
            let breach = match (engine.rules.get(rule).map(|r| &r.trigger), latest) {
                (Some(Trigger::GlucoseAtLeast { mmol_l }), Some(r))
                    if r.value as f64 >= *mmol_l =>
                {
                    Some(r.value as f64)
                }
                (Some(Trigger::GlucoseBelow { mmol_l }), Some(r)) if (r.value as f64) < *mmol_l => {
                    Some(r.value as f64)
                }
                _ => None,
            };
            (
                rule,
                breach.map(|v| Facts {
                    value: Some(v),
                    unit: "mmol/L",
                    ..Facts::default()
                }),
            )
        })
        .collect();
    for (rule, breach) in &breaches {
        // Level 2 replaces level 1 on the same reading.
        let suppressed = breaches
            .iter()
            .any(|(other, b)| b.is_some() && engine.rules.superseded_by(*other).contains(rule));
        evaluate(
            engine,
            state,
            key,
            *rule,
            0,
            breach.clone(),
            suppressed,
            cause,
            alerts,
        );
    }
}

fn kidney_rules(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    rules: &[usize],
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    for &rule in rules {
        let Some(Trigger::KidneyFunctionDecline {
            min_fall_fraction,
            max_annual_loss,
            min_interval,
            rapid_min_readings,
            rapid_min_span,
        }) = engine.rules.get(rule).map(|r| r.trigger.clone())
        else {
            continue;
        };
        let breach = state.patients.get(&key).and_then(|p| {
            let latest = p.latest_egfr()?;
            let (now, mut criteria) = (latest.value as f64, Vec::new());
            // Certain drop: against the oldest reading at least `min_interval` before the latest.
            let interval = min_interval.as_millis() as i64;
            let baseline = p
                .egfr
                .iter()
                .find(|r| latest.time_ms - r.time_ms >= interval);
            if let Some(base) = baseline.map(|r| r.value as f64) {
                if kdigo_stage(now) > kdigo_stage(base) && now <= base * (1.0 - min_fall_fraction) {
                    criteria.push(format!(
                        "certain drop (GFR category {} to {}, {}% below baseline)",
                        kdigo_stage_name(kdigo_stage(base)),
                        kdigo_stage_name(kdigo_stage(now)),
                        number((1.0 - now / base) * 100.0)
                    ));
                }
            }
            // Rapid progression: a sustained loss, read as the slope over the readings kept.
            if let Some(loss) = sustained_annual_loss(&p.egfr, rapid_min_readings, rapid_min_span) {
                if loss > max_annual_loss {
                    criteria.push(format!(
                        "rapid progression ({} mL/min/1.73m2 lost per year over {} readings)",
                        number(loss),
                        p.egfr.len()
                    ));
                }
            }
            (!criteria.is_empty()).then(|| Facts {
                value: Some(now),
                unit: "mL/min/{1.73_m2}",
                baseline: baseline.map(|r| r.value as f64),
                stage: Some(kdigo_stage_name(kdigo_stage(now))),
                criterion: Some(criteria.join("; ")),
                ..Facts::default()
            })
        });
        evaluate(engine, state, key, rule, 0, breach, false, cause, alerts);
    }
}

/// The loss of eGFR per year (positive when falling) by least squares over the readings, when
/// there are at least `min_readings` spanning at least `min_span`.
fn sustained_annual_loss(
    readings: &[Reading],
    min_readings: u8,
    min_span: std::time::Duration,
) -> Option<f64> {
    let (first, last) = (readings.first()?, readings.last()?);
    if readings.len() < min_readings as usize
        || last.time_ms - first.time_ms < min_span.as_millis() as i64
    {
        return None;
    }
    let year_ms = 365.25 * DAY_MS as f64;
    let n = readings.len() as f64;
    let years: Vec<f64> = readings
        .iter()
        .map(|r| (r.time_ms - first.time_ms) as f64 / year_ms)
        .collect();
    let mean_t = years.iter().sum::<f64>() / n;
    let mean_v = readings.iter().map(|r| r.value as f64).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (t, r) in years.iter().zip(readings) {
        covariance += (t - mean_t) * (r.value as f64 - mean_v);
        variance += (t - mean_t) * (t - mean_t);
    }
    (variance > 0.0).then(|| -covariance / variance)
}

fn follow_up_rules(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    condition: Condition,
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    let subject = condition_index(condition) as u8;
    if condition == Condition::Hypertension {
        for &rule in &engine.index.consecutive {
            let Some(Trigger::ConsecutiveUncontrolledFollowUps {
                systolic_mmhg,
                diastolic_mmhg,
                count,
            }) = engine.rules.get(rule).map(|r| r.trigger.clone())
            else {
                continue;
            };
            let breach = state.patients.get(&key).and_then(|p| {
                let recent: Vec<(f64, f64)> = p
                    .follow_ups_for(condition)
                    .rev()
                    .filter_map(|f| f.bp())
                    .take(count as usize)
                    .collect();
                let all_uncontrolled = recent.len() == count as usize
                    && recent
                        .iter()
                        .all(|(s, d)| *s >= systolic_mmhg || *d >= diastolic_mmhg);
                all_uncontrolled.then(|| Facts {
                    sbp: Some(recent[0].0),
                    dbp: Some(recent[0].1),
                    unit: "mm[Hg]",
                    ..Facts::default()
                })
            });
            evaluate(
                engine, state, key, rule, subject, breach, false, cause, alerts,
            );
        }
        for &rule in &engine.index.revisit {
            let Some(Trigger::UncontrolledFollowUpRevisit {
                systolic_mmhg,
                diastolic_mmhg,
                revisit_within,
            }) = engine.rules.get(rule).map(|r| r.trigger.clone())
            else {
                continue;
            };
            let within_ms = revisit_within.as_millis() as i64;
            let latest = state
                .patients
                .get(&key)
                .and_then(|p| p.follow_ups_for(condition).next_back().copied());
            // The episode opened `within` after the uncontrolled follow-up; any later follow-up
            // is the re-visit and closes it. An uncontrolled one starts a new wait.
            let awaited_since = state
                .patients
                .get(&key)
                .and_then(|p| p.episode(rule as u16, subject))
                .map(|e| e.opened_ms - within_ms);
            if let (Some(f), Some(since)) = (latest, awaited_since) {
                if f.time_ms > since {
                    resolve(
                        engine,
                        state,
                        key,
                        rule,
                        subject,
                        cause,
                        "The patient was seen again.",
                        alerts,
                    );
                }
            }
            let still_open = state
                .patients
                .get(&key)
                .and_then(|p| p.episode(rule as u16, subject))
                .is_some();
            let due = latest.filter(|_| !still_open).and_then(|f| {
                let (s, d) = f.bp()?;
                (s >= systolic_mmhg || d >= diastolic_mmhg).then_some(f.time_ms + within_ms)
            });
            state.set_timer(
                key,
                TimerKind::Due {
                    rule: rule as u16,
                    subject,
                },
                due,
            );
        }
    }
    reschedule_missed(engine, state, key, condition, cause, alerts);
}

/// The deadline of the next face-to-face follow-up for a condition; resolves an open missed
/// follow-up episode when the patient turned out not to be overdue.
fn reschedule_missed(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    condition: Condition,
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    let subject = condition_index(condition) as u8;
    for &rule in &engine.index.missed {
        let Some(Trigger::MissedFollowUp { after, conditions }) =
            engine.rules.get(rule).map(|r| r.trigger.clone())
        else {
            continue;
        };
        if !conditions.contains(&condition) {
            continue;
        }
        let Some(patient) = state.patients.get(&key) else {
            return;
        };
        let due = patient
            .enrolled(condition)
            .filter(|_| patient.death_ms.is_none())
            .map(|enrolled| {
                let last = patient
                    .follow_ups_for(condition)
                    .filter(|f| f.face_to_face)
                    .map(|f| f.time_ms)
                    .next_back()
                    .unwrap_or(enrolled.max(patient.first_seen_ms));
                // "More than N days": due the day after the threshold, not on it.
                last + after.as_millis() as i64 + DAY_MS
            });
        let overdue_since = patient.episode(rule as u16, subject).map(|e| e.opened_ms);
        if let Some(opened) = overdue_since {
            if due.is_none_or(|d| d > opened) {
                resolve(
                    engine,
                    state,
                    key,
                    rule,
                    subject,
                    cause,
                    "A face-to-face follow-up took place.",
                    alerts,
                );
            }
        }
        let still_open = state
            .patients
            .get(&key)
            .and_then(|p| p.episode(rule as u16, subject))
            .is_some();
        state.set_timer(
            key,
            TimerKind::Due {
                rule: rule as u16,
                subject,
            },
            if still_open { None } else { due },
        );
    }
}

fn schedule_missed_follow_ups(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    for condition in Condition::ALL {
        reschedule_missed(engine, state, key, condition, cause, alerts);
    }
}

fn close_all_for_death(
    engine: &Engine,
    state: &mut PartitionState,
    key: PatientKey,
    cause: &Cause<'_>,
    alerts: &mut Vec<Alert>,
) {
    let open: Vec<(u16, u8)> = state
        .patients
        .get(&key)
        .map(|p| p.episodes.iter().map(|e| (e.rule, e.subject)).collect())
        .unwrap_or_default();
    for (rule, subject) in open {
        resolve(
            engine,
            state,
            key,
            rule as usize,
            subject,
            cause,
            "The patient died.",
            alerts,
        );
    }
    let timers: Vec<TimerKind> = state
        .patients
        .get(&key)
        .map(|p| p.timers.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    for kind in timers {
        state.set_timer(key, kind, None);
    }
}

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
            evaluate(
                engine,
                state,
                key,
                rule_index,
                subject,
                Some(facts),
                false,
                &cause,
                alerts,
            );
            schedule_renotify(engine, state, key, rule_index, subject, due);
        }
        TimerKind::Renotify { .. } => {
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

fn schedule_renotify(
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
    let open = state
        .patients
        .get(&key)
        .and_then(|p| p.episode(rule as u16, subject))
        .is_some();
    let due = (interval > 0 && open).then_some(from + interval);
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
    let enrolled = patient.enrolled(condition)?;
    let last = patient
        .follow_ups_for(condition)
        .filter(|f| f.face_to_face && f.time_ms <= due)
        .map(|f| f.time_ms)
        .next_back()
        .unwrap_or(enrolled.max(patient.first_seen_ms));
    Some(Facts {
        days: Some((due - last) / DAY_MS),
        condition: Some(condition),
        ..Facts::default()
    })
}

fn revisit_facts(patient: &Patient, condition: Condition, due: i64) -> Option<Facts> {
    if !patient.alive_at(due) || patient.enrolled(condition).is_none() {
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
    let cause = Cause {
        time_ms: ack.time_ms,
        trigger_id: &ack.ack_id,
        hospital: &hospital,
        department: "",
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
