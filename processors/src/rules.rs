//! Alert rules as data: each rule carries its id, version, severity, source and thresholds, and
//! is loaded from a TOML file (`rules/default.toml` is built in). The engine only interprets the
//! triggers; which thresholds apply is configuration.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_schemas::{Condition, Severity};

use crate::error::ProcessorError;

/// The rules shipped with Vigil (CLINICAL.md defaults).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rule: Vec<Rule>,
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable identifier, used in alert ids: never reuse one for a different meaning.
    pub id: String,
    /// Bumped whenever thresholds or meaning change; every alert names the version.
    pub version: u16,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub severity: Severity,
    /// Short name for lists and dashboards.
    pub title: String,
    /// What the clinician reads; placeholders in braces are filled from the triggering data.
    pub message: String,
    /// The guideline or standard the rule implements.
    pub source: String,
    /// Repeat an unacknowledged alert this long after the last notification while the condition
    /// persists; zero means never.
    #[serde(default, with = "humantime_serde")]
    pub renotify_after: Duration,
    /// Rules this one replaces when both fire on the same observation (level 2 over level 1).
    #[serde(default)]
    pub supersedes: Vec<String>,
    pub trigger: Trigger,
}

fn enabled_by_default() -> bool {
    true
}

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The latest blood pressure reaches either threshold.
    BloodPressureAtLeast {
        systolic_mmhg: f64,
        diastolic_mmhg: f64,
    },
    /// The latest glucose (any kind) reaches the threshold.
    GlucoseAtLeast { mmol_l: f64 },
    /// The latest glucose (any kind) is below the threshold.
    GlucoseBelow { mmol_l: f64 },
    /// The latest HbA1c is above the threshold.
    Hba1cAbove { percent: f64 },
    /// A hypertension follow-up at or above the thresholds was not followed by another one
    /// within `revisit_within` (a timer).
    UncontrolledFollowUpRevisit {
        systolic_mmhg: f64,
        diastolic_mmhg: f64,
        #[serde(with = "humantime_serde")]
        revisit_within: Duration,
    },
    /// The last `count` hypertension follow-ups with a BP were all at or above the thresholds.
    ConsecutiveUncontrolledFollowUps {
        systolic_mmhg: f64,
        diastolic_mmhg: f64,
        count: u8,
    },
    /// A managed patient had no face-to-face follow-up for more than `after` (a timer that fires
    /// the day after the threshold, as "more than N days" reads).
    MissedFollowUp {
        #[serde(with = "humantime_serde")]
        after: Duration,
        conditions: Vec<Condition>,
    },
    /// KDIGO 2012: a "certain drop" (a fall in GFR category with a fall of at least
    /// `min_fall_fraction` from a baseline at least `min_interval` back), or "rapid progression"
    /// (a sustained loss of more than `max_annual_loss` per year: the least-squares slope over at
    /// least `rapid_min_readings` readings spanning at least `rapid_min_span`).
    KidneyFunctionDecline {
        min_fall_fraction: f64,
        max_annual_loss: f64,
        #[serde(with = "humantime_serde")]
        min_interval: Duration,
        #[serde(default = "default_rapid_min_readings")]
        rapid_min_readings: u8,
        #[serde(default = "default_rapid_min_span", with = "humantime_serde")]
        rapid_min_span: Duration,
    },
    /// The first diagnosis of a complication in a managed patient.
    NewComplication {},
}

/// CLINICAL.md: a sustained decline is read over at least three readings…
fn default_rapid_min_readings() -> u8 {
    3
}

/// …spanning at least twelve months.
fn default_rapid_min_span() -> Duration {
    Duration::from_secs(365 * 86_400)
}

/// The validated, enabled rules, indexed by position.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// For each rule, the indices of the rules it supersedes.
    superseded_by: Vec<Vec<usize>>,
}

/// What is wrong with a trigger's settings, naming the field; `None` when they are sound.
fn trigger_problem(trigger: &Trigger) -> Option<&'static str> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let bp = |systolic: f64, diastolic: f64| {
        if !positive(systolic) {
            Some("trigger.systolic_mmhg must be a positive number")
        } else if !positive(diastolic) {
            Some("trigger.diastolic_mmhg must be a positive number")
        } else {
            None
        }
    };
    match trigger {
        Trigger::BloodPressureAtLeast {
            systolic_mmhg,
            diastolic_mmhg,
        }
        | Trigger::ConsecutiveUncontrolledFollowUps {
            systolic_mmhg,
            diastolic_mmhg,
            ..
        }
        | Trigger::UncontrolledFollowUpRevisit {
            systolic_mmhg,
            diastolic_mmhg,
            ..
        } => bp(*systolic_mmhg, *diastolic_mmhg),
        Trigger::GlucoseAtLeast { mmol_l } | Trigger::GlucoseBelow { mmol_l } => {
            (!positive(*mmol_l)).then_some("trigger.mmol_l must be a positive number")
        }
        Trigger::Hba1cAbove { percent } => {
            (!positive(*percent)).then_some("trigger.percent must be a positive number")
        }
        Trigger::MissedFollowUp { after, conditions } => {
            if after.is_zero() {
                Some("trigger.after must be longer than zero")
            } else if conditions.is_empty() {
                Some("trigger.conditions must name at least one condition")
            } else {
                None
            }
        }
        Trigger::KidneyFunctionDecline {
            min_fall_fraction,
            max_annual_loss,
            rapid_min_readings,
            rapid_min_span,
            ..
        } => {
            if !(0.0..1.0).contains(min_fall_fraction) {
                Some("trigger.min_fall_fraction must be from 0 to below 1")
            } else if !positive(*max_annual_loss) {
                Some("trigger.max_annual_loss must be a positive number")
            } else if *rapid_min_readings < 2 {
                Some("trigger.rapid_min_readings must be at least 2")
            } else if rapid_min_span.is_zero() {
                Some("trigger.rapid_min_span must be longer than zero")
            } else {
                None
            }
        }
        Trigger::NewComplication {} => None,
    }
}

impl RuleSet {
    pub fn defaults() -> Result<RuleSet, ProcessorError> {
        Self::parse(DEFAULT_RULES, "built-in rules/default.toml")
    }

    pub fn load(path: &Path) -> Result<RuleSet, ProcessorError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ProcessorError::Config(format!("cannot read rules file {}: {e}", path.display()))
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, ProcessorError> {
        let file: RulesFile =
            toml_from_str(text).map_err(|e| ProcessorError::Config(format!("{origin}: {e}")))?;
        let rules: Vec<Rule> = file.rule.into_iter().filter(|r| r.enabled).collect();
        let set = RuleSet {
            superseded_by: vec![Vec::new(); rules.len()],
            rules,
        };
        set.validate(origin)
    }

    fn validate(mut self, origin: &str) -> Result<RuleSet, ProcessorError> {
        let fail = |rule: &str, msg: String| {
            Err(ProcessorError::Config(format!(
                "{origin}: rule '{rule}': {msg}"
            )))
        };
        let mut ids = HashSet::new();
        for rule in &self.rules {
            let legal = !rule.id.is_empty()
                && rule
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !legal {
                return fail(
                    &rule.id,
                    "id must be lowercase letters, digits and underscores".into(),
                );
            }
            if !ids.insert(rule.id.clone()) {
                return fail(&rule.id, "id is used twice".into());
            }
            if rule.version == 0 {
                return fail(&rule.id, "version starts at 1".into());
            }
            if rule.message.trim().is_empty() || rule.source.trim().is_empty() {
                return fail(&rule.id, "message and source must not be empty".into());
            }
            if let Some(problem) = trigger_problem(&rule.trigger) {
                return fail(&rule.id, problem.into());
            }
            if let Trigger::ConsecutiveUncontrolledFollowUps { count, .. } = rule.trigger {
                if !(2..=8).contains(&count) {
                    return fail(&rule.id, "trigger.count must be between 2 and 8".into());
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for target in &rule.supersedes {
                match self.rules.iter().position(|r| &r.id == target) {
                    Some(j) if j != i => self.superseded_by[i].push(j),
                    Some(_) => return fail(&rule.id, "a rule cannot supersede itself".into()),
                    None => return fail(&rule.id, format!("supersedes unknown rule '{target}'")),
                }
            }
        }
        Ok(self)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules that `index` supersedes.
    pub fn superseded_by(&self, index: usize) -> &[usize] {
        &self.superseded_by[index]
    }

    /// Indices of the rules whose trigger matches `predicate`.
    pub fn matching(&self, predicate: impl Fn(&Trigger) -> bool) -> Vec<usize> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| predicate(&r.trigger))
            .map(|(i, _)| i)
            .collect()
    }
}

fn toml_from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_cover_every_clinical_rule() {
        let set = RuleSet::defaults().unwrap();
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        for id in [
            "hypertensive_crisis",
            "hyperglycaemic_crisis",
            "hypoglycaemia_level_1",
            "hypoglycaemia_level_2",
            "poor_glycaemic_control",
            "uncontrolled_bp_revisit_overdue",
            "uncontrolled_bp_referral",
            "missed_quarterly_follow_up",
            "kidney_function_decline",
            "new_complication",
        ] {
            assert!(ids.contains(&id), "missing {id}");
        }
        let level2 = ids
            .iter()
            .position(|i| *i == "hypoglycaemia_level_2")
            .unwrap();
        let level1 = ids
            .iter()
            .position(|i| *i == "hypoglycaemia_level_1")
            .unwrap();
        assert_eq!(set.superseded_by(level2), &[level1]);
    }

    #[test]
    fn invalid_files_name_the_rule_and_the_problem() {
        let base = r#"
[[rule]]
id = "x"
version = 1
severity = "WARNING"
title = "X"
message = "m"
source = "s"
trigger = { kind = "glucose_below", mmol_l = 3.0 }
"#;
        assert!(RuleSet::parse(base, "t").is_ok());
        let cases = [
            (base.replace("mmol_l = 3.0", "mmol_l = -1.0"), "positive"),
            (base.replace("version = 1", "version = 0"), "version"),
            (
                base.replace("glucose_below", "glucose_sideways"),
                "unknown variant",
            ),
            (
                base.replace("mmol_l = 3.0", "mmol_l = 3.0, extra = 1"),
                "unknown field",
            ),
            (format!("{base}{base}"), "used twice"),
            (
                base.replace("source = \"s\"", "source = \"s\"\nsupersedes = [\"nope\"]"),
                "unknown rule",
            ),
            (base.replace("id = \"x\"", "id = \"X Y\""), "lowercase"),
        ];
        for (text, expected) in cases {
            let err = RuleSet::parse(&text, "t").unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let disabled = base.replace("version = 1", "version = 1\nenabled = false");
        assert!(RuleSet::parse(&disabled, "t").unwrap().is_empty());
    }
}
