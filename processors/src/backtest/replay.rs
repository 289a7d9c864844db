//! One partition's history through two rule sets side by side: the same events, the same
//! acknowledgements, each rule set with its own state, nothing sent anywhere.

use std::collections::HashMap;

use vigil_schemas::{Alert, AlertAck, AlertStatus, ClinicalEvent, Severity};

use crate::engine::{Engine, PartitionState};
use crate::state::patient_key;

/// One episode as a backtest saw it (opened within the period).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpisodeTrace {
    pub episode_id: String,
    pub rule_id: String,
    pub severity: Severity,
    /// The hospital of the event that opened it, and the patient's managing hospital.
    pub hospital_id: String,
    pub managing_hospital_id: String,
    pub patient_pseudonym: String,
    pub opened_ms: i64,
    pub value: Option<f64>,
    pub message: String,
    pub renotifications: u32,
    pub acknowledged: bool,
    pub resolved_ms: Option<i64>,
}

/// What one rule set raised over the period.
#[derive(Debug, Default)]
pub struct Trace {
    pub episodes: HashMap<String, EpisodeTrace>,
    /// Critical notifications (raised or re-notified) at night, per (rule, managing hospital).
    pub night_crises: HashMap<(String, String), u64>,
}

/// The period a backtest reports on, and what counts as night in the reporting zone.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    pub utc_offset_minutes: i32,
}

impl Window {
    fn contains(&self, time_ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&time_ms)
    }

    /// 22:00 to 07:00 local time: a notification then is a phone call at home.
    pub fn is_night(&self, time_ms: i64) -> bool {
        let local = time_ms + i64::from(self.utc_offset_minutes) * 60_000;
        let hour = local.rem_euclid(86_400_000) / 3_600_000;
        !(7..22).contains(&hour)
    }
}

impl Trace {
    /// Notes what an alert record says about its episode.
    fn note(&mut self, alert: &Alert, window: &Window) {
        let notifies = matches!(alert.status, AlertStatus::Raised | AlertStatus::Renotified);
        if notifies
            && alert.severity == Severity::Critical
            && window.contains(alert.event_time_ms)
            && window.is_night(alert.event_time_ms)
        {
            let key = (alert.rule_id.clone(), managing(alert).to_string());
            *self.night_crises.entry(key).or_default() += 1;
        }
        if alert.status == AlertStatus::Raised {
            if window.contains(alert.episode_start_ms) {
                self.episodes
                    .insert(alert.episode_id.clone(), opened(alert));
            }
            return;
        }
        let Some(episode) = self.episodes.get_mut(&alert.episode_id) else {
            return; // opened before the period
        };
        match alert.status {
            AlertStatus::Renotified => episode.renotifications += 1,
            AlertStatus::Acknowledged => episode.acknowledged = true,
            AlertStatus::Resolved => episode.resolved_ms = Some(alert.event_time_ms),
            AlertStatus::Raised | AlertStatus::Snoozed => {}
        }
    }
}

fn managing(alert: &Alert) -> &str {
    if alert.managing_hospital_id.is_empty() {
        &alert.hospital_id
    } else {
        &alert.managing_hospital_id
    }
}

fn opened(alert: &Alert) -> EpisodeTrace {
    EpisodeTrace {
        episode_id: alert.episode_id.clone(),
        rule_id: alert.rule_id.clone(),
        severity: alert.severity,
        hospital_id: alert.hospital_id.clone(),
        managing_hospital_id: managing(alert).to_string(),
        patient_pseudonym: alert.patient_pseudonym.clone(),
        opened_ms: alert.episode_start_ms,
        value: alert.value,
        message: alert.message.clone(),
        renotifications: 0,
        acknowledged: false,
        resolved_ms: None,
    }
}

/// One rule set's engine, its state for the partition, and what it raised.
pub struct Lane<'a> {
    engine: &'a Engine,
    state: PartitionState,
    alerts: Vec<Alert>,
}

impl<'a> Lane<'a> {
    pub fn new(engine: &'a Engine) -> Self {
        Lane {
            engine,
            state: PartitionState::new(),
            alerts: Vec::new(),
        }
    }

    fn apply(&mut self, event: &ClinicalEvent) {
        // Rejected and late events change nothing here, as they changed nothing live.
        let _ = self
            .engine
            .apply_event(&mut self.state, event, &mut self.alerts);
    }

    fn acknowledge(&mut self, ack: &AlertAck) {
        let _ = self
            .engine
            .apply_ack(&mut self.state, ack, &mut self.alerts);
    }

    /// Passes the alerts raised so far to `trace`, and drops the outputs a backtest does not
    /// send (status rows, facts a merge forwards: those are in the history already).
    fn drain(&mut self, trace: &mut Trace, window: &Window) {
        for alert in self.alerts.drain(..) {
            trace.note(&alert, window);
        }
        self.state.discard_outputs();
    }

    /// Fires what is due by the end of the period at every hospital's clock.
    fn finish(&mut self, window: &Window) {
        let hospitals: Vec<String> = self.state.clocks().map(|(h, _)| h.to_string()).collect();
        for hospital in hospitals {
            self.engine.advance_watermark(
                &mut self.state,
                &hospital,
                window.to_ms,
                &mut self.alerts,
            );
        }
    }

    pub fn state(&self) -> &PartitionState {
        &self.state
    }
}

/// A partition's replay through the baseline and the candidate rules.
pub struct PartitionReplay<'a> {
    pub baseline: Lane<'a>,
    pub candidate: Lane<'a>,
    window: Window,
    /// The acknowledgements of the whole history, oldest first, and the next not yet applied.
    acks: &'a [AlertAck],
    next_ack: usize,
}

impl<'a> PartitionReplay<'a> {
    pub fn new(
        baseline: &'a Engine,
        candidate: &'a Engine,
        window: Window,
        acks: &'a [AlertAck],
    ) -> Self {
        PartitionReplay {
            baseline: Lane::new(baseline),
            candidate: Lane::new(candidate),
            window,
            acks,
            next_ack: 0,
        }
    }

    /// Applies one event to both rule sets, after the acknowledgements given before the edge
    /// took it in (its ingest time: the closest the history has to when the processor read it).
    pub fn apply(&mut self, event: &ClinicalEvent, traces: &mut [Trace; 2]) {
        self.acknowledge_until(event.ingest_time_ms);
        self.baseline.apply(event);
        self.candidate.apply(event);
        self.drain(traces);
    }

    fn acknowledge_until(&mut self, time_ms: i64) {
        while let Some(ack) = self
            .acks
            .get(self.next_ack)
            .filter(|a| a.time_ms <= time_ms)
        {
            self.next_ack += 1;
            // Only this partition's patients: another partition applies the rest.
            let ours = patient_key(&ack.patient_pseudonym)
                .is_some_and(|key| self.baseline.state.patient(&key).is_some());
            if ours {
                self.baseline.acknowledge(ack);
                self.candidate.acknowledge(ack);
            }
        }
    }

    fn drain(&mut self, traces: &mut [Trace; 2]) {
        let [baseline, candidate] = traces;
        self.baseline.drain(baseline, &self.window);
        self.candidate.drain(candidate, &self.window);
    }

    /// The rest of the acknowledgements, then every timer due by the end of the period.
    pub fn finish(&mut self, traces: &mut [Trace; 2]) {
        self.acknowledge_until(self.window.to_ms);
        self.baseline.finish(&self.window);
        self.candidate.finish(&self.window);
        self.drain(traces);
    }
}
