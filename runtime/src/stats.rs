//! A stage's own statistics: per hospital and interval, what came in, what went on, what was
//! dead-lettered or late, and how old the data was on arrival. Published to the pipeline-stats
//! topic for the writer to land (`pipeline_stats` in ClickHouse), so data quality and freshness
//! per hospital are queryable beside the data, not only in Prometheus.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vigil_schemas::ids::stable_id;
use vigil_schemas::{AvroCodec, PipelineStat};

use crate::config::KafkaConfig;
use crate::kafka::DurableProducer;
use crate::time::now_ms;
use crate::RuntimeError;

/// How often a stage publishes its counts: fine enough for hourly views and freshness alarms,
/// coarse enough to be a few records per hospital and minute.
const INTERVAL: Duration = Duration::from_secs(10);

/// One hospital's counts in the current interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub records_in: i64,
    pub records_out: i64,
    pub dead_letters: i64,
    pub late: i64,
    pub max_event_age_ms: i64,
}

impl Counts {
    /// Notes how old an event was when the stage handled it.
    pub fn event_age(&mut self, now_ms: i64, event_time_ms: i64) {
        self.max_event_age_ms = self.max_event_age_ms.max(now_ms - event_time_ms);
    }
}

pub struct StageStats {
    stage: &'static str,
    instance: String,
    topic: String,
    codec: AvroCodec<PipelineStat>,
    started_ms: i64,
    started: Instant,
    per_hospital: BTreeMap<String, Counts>,
}

impl StageStats {
    /// Statistics of `stage`, published every `INTERVAL`.
    pub fn new(stage: &'static str, kafka: &KafkaConfig) -> Result<Self, RuntimeError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Ok(StageStats {
            stage,
            instance: format!("{}:{}@{}", host.trim(), std::process::id(), now_ms()),
            topic: kafka.topics.pipeline_stats.clone(),
            codec: AvroCodec::new()?,
            started_ms: now_ms(),
            started: Instant::now(),
            per_hospital: BTreeMap::new(),
        })
    }

    /// The current interval's counts of `hospital`.
    pub fn hospital(&mut self, hospital: &str) -> &mut Counts {
        if !self.per_hospital.contains_key(hospital) {
            self.per_hospital
                .insert(hospital.to_string(), Counts::default());
        }
        self.per_hospital
            .get_mut(hospital)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Sends the interval's records once it has run its course (or when `now` is set, at a
    /// stop). Call before the producer flush that precedes a commit, so the counts of committed
    /// input are durable with it. Returns the records sent.
    pub fn publish_due(
        &mut self,
        producer: &DurableProducer,
        now: bool,
    ) -> Result<usize, RuntimeError> {
        if !now && self.started.elapsed() < INTERVAL {
            return Ok(0);
        }
        let end_ms = now_ms();
        let mut sent = 0;
        for (hospital, counts) in std::mem::take(&mut self.per_hospital) {
            let stat = PipelineStat {
                stat_id: stable_id(&[
                    self.stage.as_bytes(),
                    self.instance.as_bytes(),
                    hospital.as_bytes(),
                    &self.started_ms.to_le_bytes(),
                ]),
                stage: self.stage.to_string(),
                instance: self.instance.clone(),
                hospital_id: hospital,
                interval_start_ms: self.started_ms,
                interval_end_ms: end_ms,
                records_in: counts.records_in,
                records_out: counts.records_out,
                dead_letters: counts.dead_letters,
                late: counts.late,
                max_event_age_ms: counts.max_event_age_ms,
            };
            producer.send(
                &self.topic,
                stat.hospital_id.as_bytes(),
                &self.codec.encode(&stat)?,
            )?;
            sent += 1;
        }
        self.started_ms = end_ms;
        self.started = Instant::now();
        Ok(sent)
    }
}
