//! Whether a patient's latest values breach a rule: one `breach` for every trigger that is a
//! condition on values (the timer triggers are judged in `timers.rs`, complications by the
//! diagnosis that brings them).

use vigil_schemas::Condition;

use super::{number, Facts, DAY_MS};
use crate::clinical::{kdigo_stage, kdigo_stage_name};
use crate::rules::Trigger;
use crate::state::{Patient, Reading};

/// The facts of a breach of `trigger` by the patient's latest values, or None.
pub fn breach(trigger: &Trigger, patient: &Patient) -> Option<Facts> {
    match trigger {
        Trigger::BloodPressureAtLeast {
            systolic_mmhg,
            diastolic_mmhg,
        } => {
            let r = patient.latest_bp()?;
            let (s, d) = (r.systolic as f64, r.diastolic as f64);
            (s >= *systolic_mmhg || d >= *diastolic_mmhg).then(|| Facts {
                sbp: Some(s),
                dbp: Some(d),
                unit: "mm[Hg]",
                ..Facts::default()
            })
        }
        Trigger::GlucoseAtLeast { mmol_l } => {
            let value = patient.glucose.last()?.value as f64;
            (value >= *mmol_l).then(|| glucose(value))
        }
        Trigger::GlucoseBelow { mmol_l } => {
            let value = patient.glucose.last()?.value as f64;
            (value < *mmol_l).then(|| glucose(value))
        }
        Trigger::Hba1cAbove { percent } => {
            let value = patient.hba1c.last()?.value as f64;
            (value > *percent).then(|| Facts {
                value: Some(value),
                unit: "%",
                ..Facts::default()
            })
        }
        Trigger::ConsecutiveUncontrolledFollowUps {
            systolic_mmhg,
            diastolic_mmhg,
            count,
        } => {
            let recent: Vec<(f64, f64)> = patient
                .follow_ups_for(Condition::Hypertension)
                .rev()
                .filter_map(|f| f.bp())
                .take(*count as usize)
                .collect();
            let all_uncontrolled = recent.len() == *count as usize
                && recent
                    .iter()
                    .all(|(s, d)| *s >= *systolic_mmhg || *d >= *diastolic_mmhg);
            all_uncontrolled.then(|| Facts {
                sbp: Some(recent[0].0),
                dbp: Some(recent[0].1),
                unit: "mm[Hg]",
                ..Facts::default()
            })
        }
        Trigger::KidneyFunctionDecline { .. } => kidney_decline(trigger, patient),
        Trigger::UncontrolledFollowUpRevisit { .. }
        | Trigger::MissedFollowUp { .. }
        | Trigger::NewComplication {} => None,
    }
}

fn glucose(value: f64) -> Facts {
    Facts {
        value: Some(value),
        unit: "mmol/L",
        ..Facts::default()
    }
}

/// KDIGO: a certain drop, or rapid progression, saying which criterion fired.
fn kidney_decline(trigger: &Trigger, patient: &Patient) -> Option<Facts> {
    let Trigger::KidneyFunctionDecline {
        min_fall_fraction,
        max_annual_loss,
        min_interval,
        rapid_min_readings,
        rapid_min_span,
    } = trigger
    else {
        return None;
    };
    let latest = patient.latest_egfr()?;
    let (now, mut criteria) = (latest.value as f64, Vec::new());
    // Certain drop: against the oldest reading at least `min_interval` before the latest.
    let interval = min_interval.as_millis() as i64;
    let baseline = patient
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
    if let Some(loss) = sustained_annual_loss(&patient.egfr, *rapid_min_readings, *rapid_min_span) {
        if loss > *max_annual_loss {
            criteria.push(format!(
                "rapid progression ({} mL/min/1.73m2 lost per year over {} readings)",
                number(loss),
                patient.egfr.len()
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
