//! Benchmarks against the running broker and ClickHouse. Every stage runs as its own `vigil`
//! process, as deployed, so its peak RSS and CPU time are its own; each run gets topics,
//! consumer groups and a database of its own. Throughputs are sustained rates: records
//! committed between 10% and 100% of the input, so process start-up and group joins (reported
//! apart) do not count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use vigil_producers::simulator::{Output, Pace};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{client_config, group_lag, RangeReader};
use vigil_schemas::{AvroCodec, ClinicalEvent};
use vigil_sinks::clickhouse::rows::EventRow;

use super::{median, receiver::Receiver, Report};
use crate::config::VigilConfig;

/// The settings of one benchmark session.
pub struct Pipeline<'a> {
    pub base: &'a VigilConfig,
    pub dir: PathBuf,
    pub runs: usize,
    pub session: String,
    pub runtime: tokio::runtime::Handle,
}

/// Which of the per-stage benchmarks to run.
pub struct Parts {
    pub consume: bool,
    pub process: bool,
    pub sink: bool,
}

/// A `vigil` process under measurement.
struct Stage {
    name: &'static str,
    child: Child,
    log: PathBuf,
    peak_rss_kib: u64,
    cpu_seconds: f64,
}

impl Stage {
    fn spawn(
        name: &'static str,
        config: &Path,
        args: &[&str],
        dir: &Path,
    ) -> anyhow::Result<Stage> {
        let log = dir.join(format!("{name}-{}.log", super::stamp()));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn,vigil_processors=info")
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start vigil {args:?}"))?;
        Ok(Stage {
            name,
            child,
            log,
            peak_rss_kib: 0,
            cpu_seconds: 0.0,
        })
    }

    /// Reads the process's high-water RSS and CPU time while it still exists.
    fn sample(&mut self) {
        let pid = self.child.id();
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = super::status_field(&status, "VmHWM:") {
                self.peak_rss_kib = self.peak_rss_kib.max(kib);
            }
        }
        if let Some(cpu) = super::cpu_seconds(&format!("/proc/{pid}/stat")) {
            if cpu > 0.0 {
                self.cpu_seconds = cpu;
            }
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for a stage that stops by itself (`--until-idle`, a finite simulation).
    fn finish(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.running() {
            self.sample();
            if started.elapsed() > limit {
                let _ = self.child.kill();
                bail!(
                    "{} did not finish within {limit:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} failed; see {}", self.name, self.log.display());
        }
        Ok(())
    }

    /// Asks the stage to stop (SIGTERM) and waits for it.
    fn stop(&mut self) -> anyhow::Result<()> {
        self.sample();
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        self.finish(Duration::from_secs(60))
    }

    fn sigkill(&mut self) {
        self.sample();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Progress samples: seconds since the start, records done.
struct Track {
    samples: Vec<(f64, i64)>,
}

impl Track {
    /// Polls `progress` (done, total) until done reaches total, sampling the stages meanwhile.
    fn until_done(
        stages: &mut [&mut Stage],
        limit: Duration,
        mut progress: impl FnMut() -> anyhow::Result<(i64, i64)>,
    ) -> anyhow::Result<Track> {
        let started = Instant::now();
        let mut samples = Vec::new();
        loop {
            for stage in stages.iter_mut() {
                stage.sample();
                if !stage.running() {
                    bail!("{} stopped early; see {}", stage.name, stage.log.display());
                }
            }
            let (done, total) = progress()?;
            samples.push((started.elapsed().as_secs_f64(), done));
            if total > 0 && done >= total {
                return Ok(Track { samples });
            }
            if started.elapsed() > limit {
                bail!("not done within {limit:?}: {done} of {total}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn elapsed(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.0)
    }

    /// Records per second between 10% of the total and the end.
    fn sustained(&self) -> f64 {
        let Some(&(end, total)) = self.samples.last() else {
            return 0.0;
        };
        let from = self
            .samples
            .iter()
            .find(|(_, done)| *done as f64 >= total as f64 * 0.1)
            .copied()
            .unwrap_or((0.0, 0));
        if end <= from.0 {
            return total as f64 / end.max(1e-3);
        }
        (total - from.1) as f64 / (end - from.0)
    }

    /// Seconds until the first record was done: process start, group join, first batch.
    fn start_up(&self) -> f64 {
        self.samples
            .iter()
            .find(|(_, d)| *d > 0)
            .map_or(0.0, |s| s.0)
    }
}

/// Committed and end offsets of `group` over `topics`.
fn committed(kafka: &KafkaConfig, group: &str, topics: &[&str]) -> anyhow::Result<(i64, i64)> {
    let (mut done, mut total) = (0, 0);
    for topic in topics {
        for p in group_lag(kafka, group, topic)? {
            total += p.high - p.low;
            done += p.committed.unwrap_or(p.low) - p.low;
        }
    }
    Ok((done, total))
}

/// A history of `events` events over `days`, simulated as fast as the broker takes it, with a
/// patient per 40 events (about 18 months of care each).
fn history(c: &mut VigilConfig, events: u64, days: u64, output: Output) {
    c.simulate.max_events = events;
    c.simulate.patients = (events / 40).max(100) as u32;
    c.simulate.span = Duration::from_secs(days * 86_400);
    c.simulate.output = output;
    c.simulate.pace = Pace::Fast;
}

impl Pipeline<'_> {
    /// A configuration of its own for one run, written where the stages can read it.
    fn config(
        &self,
        tag: &str,
        adjust: impl FnOnce(&mut VigilConfig),
    ) -> anyhow::Result<(VigilConfig, PathBuf)> {
        let mut config = self.base.clone();
        let suffix = format!("{}-{tag}", self.session);
        config.kafka.topics = self.base.kafka.topics.with_suffix(&suffix);
        config.kafka.create_topics = true;
        let group = |role: &str| format!("bench-{role}-{suffix}");
        config.ingest.group_id = group("ingest");
        config.process.group_id = group("process");
        config.sink.group_id = group("sink");
        config.notify.group_id = group("notify");
        config.sink.publish_interval = Duration::ZERO;
        config.process.checkpoint_interval = Duration::from_secs(1);
        config.clickhouse.database = format!("vigil_bench_{}", suffix.replace('-', "_"));
        config.telemetry.metrics_listen = String::new();
        config.simulate.progress_every = Duration::from_secs(3600);
        adjust(&mut config);
        let path = self.dir.join(format!("{suffix}.toml"));
        std::fs::write(&path, toml::to_string(&config)?)?;
        Ok((config, path))
    }

    fn run_once(
        &self,
        name: &'static str,
        config: &Path,
        args: &[&str],
        limit: Duration,
    ) -> anyhow::Result<(Stage, f64)> {
        let started = Instant::now();
        let mut stage = Stage::spawn(name, config, args, &self.dir)?;
        stage.finish(limit)?;
        Ok((stage, started.elapsed().as_secs_f64()))
    }

    /// Fills the clinical events topic with `events` canonical events; returns the config.
    fn fill_canonical(
        &self,
        tag: &str,
        events: u64,
        patients: Option<u32>,
        days: u64,
        report: &mut Report,
    ) -> anyhow::Result<(VigilConfig, PathBuf)> {
        let (config, path) = self.config(tag, |c| {
            history(c, events, days, Output::Canonical);
            if let Some(patients) = patients {
                c.simulate.patients = patients;
            }
        })?;
        let (stage, seconds) =
            self.run_once("simulate", &path, &["simulate"], Duration::from_secs(7200))?;
        let produced = end_offsets(&config.kafka, &config.kafka.topics.clinical_events)?;
        report.rate(
            &format!("fill: simulate → Kafka ({tag}, {produced} events)"),
            produced as f64 / seconds,
            "events/s",
        );
        report.stage_rss(&format!("simulate ({tag})"), stage.peak_rss_kib);
        Ok((config, path))
    }

    /// Raw consume baseline, the processor from a pre-filled topic, the writer beside plain
    /// inserts of the same rows.
    pub fn stages(&self, events: u64, parts: &Parts, report: &mut Report) -> anyhow::Result<()> {
        let (fill, _) = self.fill_canonical("fill", events, None, 540, report)?;
        let topic = fill.kafka.topics.clinical_events.clone();

        let mut raw = Vec::new();
        for _ in 0..if parts.consume { self.runs } else { 0 } {
            raw.push(raw_consume(&fill.kafka, &topic)?);
        }
        if parts.consume {
            let raw_rate = median(&raw);
            report.rate(
                "baseline: plain rdkafka consumer, reading only",
                raw_rate,
                "events/s",
            );
            report.baseline("consume", raw_rate);
        }

        let (mut rates, mut per_core, mut startup) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..if parts.process { self.runs } else { 0 } {
            let (config, path) = self.config(&format!("process{run}"), |c| {
                c.kafka.topics.clinical_events = topic.clone()
            })?;
            let mut stage = Stage::spawn("process", &path, &["process"], &self.dir)?;
            let group = config.process.group_id.clone();
            let track = Track::until_done(&mut [&mut stage], Duration::from_secs(3600), || {
                committed(&config.kafka, &group, &[&topic])
            })?;
            stage.stop()?;
            rates.push(track.sustained());
            per_core.push(end_offsets(&config.kafka, &topic)? as f64 / stage.cpu_seconds.max(1e-3));
            startup.push(track.start_up());
            report.stage_rss("process", stage.peak_rss_kib);
        }
        if parts.process {
            report.rate(
                "process: sustained from a pre-filled topic",
                median(&rates),
                "events/s",
            );
            report.ratio("process vs plain consumer", median(&rates), "consume");
            report.rate(
                "process: per CPU-second used",
                median(&per_core),
                "events/s/core",
            );
            report.figure("process: start-up to first commit", median(&startup), "s");
        }

        // The writer: events only (fresh, empty alert and status topics), beside plain inserts.
        let (mut sink_rates, mut sink_per_core, mut insert_rates) =
            (Vec::new(), Vec::new(), Vec::new());
        if !parts.sink {
            return Ok(());
        }
        let rows = event_rows(&fill.kafka, &topic)?;
        for run in 0..self.runs {
            let (config, path) = self.config(&format!("sink{run}"), |c| {
                c.kafka.topics.clinical_events = topic.clone()
            })?;
            self.run_once("migrate", &path, &["migrate"], Duration::from_secs(120))?;
            self.run_once("topics", &path, &["topics"], Duration::from_secs(120))?;
            let mut stage = Stage::spawn("sink", &path, &["sink"], &self.dir)?;
            let group = config.sink.group_id.clone();
            let track = Track::until_done(&mut [&mut stage], Duration::from_secs(3600), || {
                committed(&config.kafka, &group, &[&topic])
            })?;
            stage.stop()?;
            sink_rates.push(track.sustained());
            sink_per_core.push(rows.len() as f64 / stage.cpu_seconds.max(1e-3));
            report.stage_rss("sink", stage.peak_rss_kib);
            insert_rates.push(self.runtime.block_on(raw_insert(&config, &rows))?);
            self.drop_database(&config);
        }
        let batch = self.base.sink.batch_max_rows;
        report.rate(
            &format!("sink: rows/s into ClickHouse (batches ≤ {batch} rows, 1 s)"),
            median(&sink_rates),
            "rows/s",
        );
        report.rate(
            "sink: per CPU-second used",
            median(&sink_per_core),
            "rows/s/core",
        );
        report.rate(
            "baseline: plain inserts of the same rows (50,000-row batches)",
            median(&insert_rates),
            "rows/s",
        );
        report.baseline("insert", median(&insert_rates));
        report.ratio("sink vs plain inserts", median(&sink_rates), "insert");
        Ok(())
    }

    /// The edge alone: HIS change events from a pre-filled topic to canonical events.
    pub fn ingest(&self, events: u64, report: &mut Report) -> anyhow::Result<()> {
        let (mut rates, mut per_core) = (Vec::new(), Vec::new());
        let (fill, fill_path) = self.config("ingestfill", |c| {
            history(c, events, 540, Output::Cdc);
        })?;
        self.run_once(
            "simulate",
            &fill_path,
            &["simulate"],
            Duration::from_secs(7200),
        )?;
        let his = fill.kafka.topics.his_changes.clone();
        for run in 0..self.runs {
            let (config, path) = self.config(&format!("ingest{run}"), |c| {
                c.kafka.topics.his_changes = his.clone()
            })?;
            let mut stage = Stage::spawn("ingest", &path, &["ingest"], &self.dir)?;
            let group = config.ingest.group_id.clone();
            let track = Track::until_done(&mut [&mut stage], Duration::from_secs(3600), || {
                committed(&config.kafka, &group, &[&his])
            })?;
            stage.stop()?;
            rates.push(track.sustained());
            per_core.push(end_offsets(&config.kafka, &his)? as f64 / stage.cpu_seconds.max(1e-3));
            report.stage_rss("ingest", stage.peak_rss_kib);
        }
        report.rate(
            "ingest (edge): sustained from a pre-filled topic",
            median(&rates),
            "change events/s",
        );
        report.ratio("ingest vs plain consumer", median(&rates), "consume");
        report.rate(
            "ingest (edge): per CPU-second used",
            median(&per_core),
            "change events/s/core",
        );
        Ok(())
    }

    /// HIS change events to ClickHouse rows: edge, processor and writer as three processes.
    pub fn end_to_end(&self, events: u64, report: &mut Report) -> anyhow::Result<()> {
        let mut rates = Vec::new();
        for run in 0..self.runs {
            let (config, path) = self.config(&format!("e2e{run}"), |c| {
                history(c, events, 540, Output::Cdc);
            })?;
            self.run_once("migrate", &path, &["migrate"], Duration::from_secs(120))?;
            self.run_once("simulate", &path, &["simulate"], Duration::from_secs(7200))?;
            let topics = config.kafka.topics.clone();
            let his = end_offsets(&config.kafka, &topics.his_changes)?;
            let services_before = ServicesCpu::now();
            let mut ingest = Stage::spawn("ingest", &path, &["ingest"], &self.dir)?;
            let mut process = Stage::spawn("process", &path, &["process"], &self.dir)?;
            let mut sink = Stage::spawn("sink", &path, &["sink"], &self.dir)?;
            let kafka = config.kafka.clone();
            let (ig, pg, sg) = (
                config.ingest.group_id.clone(),
                config.process.group_id.clone(),
                config.sink.group_id.clone(),
            );
            // Progress: change events whose rows have landed. Done when every stage committed all.
            let track = Track::until_done(
                &mut [&mut ingest, &mut process, &mut sink],
                Duration::from_secs(3600),
                || {
                    let (ingested, _) = committed(&kafka, &ig, &[&topics.his_changes])?;
                    let (landed, canonical) = committed(&kafka, &sg, &[&topics.clinical_events])?;
                    let (processed, _) = committed(&kafka, &pg, &[&topics.clinical_events])?;
                    let (outputs_landed, outputs) =
                        committed(&kafka, &sg, &[&topics.alerts, &topics.patient_status])?;
                    let all = ingested >= his
                        && processed >= canonical
                        && landed >= canonical
                        && outputs_landed >= outputs;
                    Ok((if all { his } else { ingested.min(his - 1) }, his))
                },
            )?;
            for stage in [&mut ingest, &mut process, &mut sink] {
                stage.stop()?;
                report.stage_rss(&format!("{} (end to end)", stage.name), stage.peak_rss_kib);
            }
            let services = ServicesCpu::now().since(&services_before);
            report_cpu(report, his, &[&ingest, &process, &sink], &services);
            rates.push(his as f64 / track.elapsed());
            report.figure(
                &format!("e2e run {run}: {his} change events, wall time incl. start-up"),
                track.elapsed(),
                "s",
            );
            self.drop_database(&config);
        }
        let rate = median(&rates);
        report.rate(
            "end to end: HIS change event → rows in ClickHouse",
            rate,
            "events/s",
        );
        report.ratio("end to end vs plain consumer", rate, "consume");
        Ok(())
    }

    /// Alert latency at a fixed offered rate: event produced → alert row, → webhook delivered.
    pub fn latency(&self, rate: u32, seconds: u64, report: &mut Report) -> anyhow::Result<()> {
        let receiver = Receiver::start()?;
        let endpoints = self.dir.join("bench-endpoints.toml");
        let text: String = (1..=50)
            .map(|h| format!("[[endpoint]]\nhospital_id = \"H{h:04}\"\nurl = \"http://127.0.0.1:{}/hospitals/H{h:04}/alerts\"\n\n", receiver.port))
            .collect();
        std::fs::write(&endpoints, text)?;
        let secrets = self.dir.join("bench-secrets.toml");
        let (config, path) = self.config("latency", |c| {
            c.simulate.pace = Pace::Live;
            c.simulate.rate = rate;
            c.simulate.max_events = rate as u64 * seconds;
            c.simulate.output = Output::Canonical;
            c.simulate.patients = 20_000;
            c.notify.endpoints_file = endpoints.clone();
            c.notify.secrets_file = secrets.clone();
            c.notify.create_secrets_if_missing = true;
        })?;
        self.run_once("migrate", &path, &["migrate"], Duration::from_secs(120))?;
        self.run_once("topics", &path, &["topics"], Duration::from_secs(120))?;
        let mut process = Stage::spawn("process", &path, &["process"], &self.dir)?;
        let mut sink = Stage::spawn("sink", &path, &["sink"], &self.dir)?;
        let mut notify = Stage::spawn("notify", &path, &["notify"], &self.dir)?;
        // Let the consumers join their groups before the clock starts.
        std::thread::sleep(Duration::from_secs(8));
        let (simulate, _) = self.run_once(
            "simulate",
            &path,
            &["simulate"],
            Duration::from_secs(seconds * 3 + 120),
        )?;
        let topics = config.kafka.topics.clone();
        let kafka = config.kafka.clone();
        let (sg, ng) = (config.sink.group_id.clone(), config.notify.group_id.clone());
        Track::until_done(
            &mut [&mut process, &mut sink, &mut notify],
            Duration::from_secs(600),
            || {
                let (landed, total) =
                    committed(&kafka, &sg, &[&topics.clinical_events, &topics.alerts])?;
                let (notified, alerts) = committed(&kafka, &ng, &[&topics.alerts])?;
                Ok((landed + notified, total + alerts))
            },
        )?;
        for stage in [&mut process, &mut sink, &mut notify] {
            stage.stop()?;
            report.stage_rss(&format!("{} (latency run)", stage.name), stage.peak_rss_kib);
        }
        drop(simulate);

        let client = vigil_runtime::clickhouse::client(&config.clickhouse);
        let trigger_times: HashMap<String, (i64, i64)> = self.runtime.block_on(async {
            client
                .query(
                    "SELECT a.alert_id, e.ingest_time_ms, a.landed_time_ms FROM \
                     (SELECT alert_id, trigger_event_id, landed_time_ms FROM alerts FINAL WHERE status = 'RAISED') AS a \
                     ANY INNER JOIN (SELECT event_id AS trigger_event_id, ingest_time_ms FROM clinical_events) AS e \
                     USING trigger_event_id",
                )
                .fetch_all::<(String, i64, i64)>()
                .await
        })?
        .into_iter()
        .map(|(id, ingest, landed)| (id, (ingest, landed)))
        .collect();
        let mut to_row: Vec<f64> = trigger_times
            .values()
            .map(|(i, l)| (l - i) as f64)
            .collect();
        let mut to_webhook: Vec<f64> = receiver
            .received()
            .into_iter()
            .filter_map(|(alert_id, at)| trigger_times.get(&alert_id).map(|(i, _)| (at - i) as f64))
            .collect();
        report.figure(
            &format!("latency: alerts raised at {rate} events/s for {seconds} s"),
            to_row.len() as f64,
            "alerts",
        );
        report.figure(
            "latency: event → alert row, p50",
            super::percentile(&mut to_row, 0.5),
            "ms",
        );
        report.figure(
            "latency: event → alert row, p99",
            super::percentile(&mut to_row, 0.99),
            "ms",
        );
        report.figure(
            "latency: event → webhook delivered, p50",
            super::percentile(&mut to_webhook, 0.5),
            "ms",
        );
        report.figure(
            "latency: event → webhook delivered, p99",
            super::percentile(&mut to_webhook, 0.99),
            "ms",
        );
        self.drop_database(&config);
        Ok(())
    }

    /// Historical events through processor and writer together, from a pre-filled topic.
    pub fn backfill(&self, events: u64, report: &mut Report) -> anyhow::Result<()> {
        let (config, path) = self.fill_canonical("backfill", events, None, 730, report)?;
        self.run_once("migrate", &path, &["migrate"], Duration::from_secs(120))?;
        let mut process = Stage::spawn("process", &path, &["process"], &self.dir)?;
        let mut sink = Stage::spawn("sink", &path, &["sink"], &self.dir)?;
        let topics = config.kafka.topics.clone();
        let kafka = config.kafka.clone();
        let (pg, sg) = (
            config.process.group_id.clone(),
            config.sink.group_id.clone(),
        );
        let track = Track::until_done(
            &mut [&mut process, &mut sink],
            Duration::from_secs(7200),
            || {
                let (processed, total) = committed(&kafka, &pg, &[&topics.clinical_events])?;
                let (landed, outputs) = committed(
                    &kafka,
                    &sg,
                    &[
                        &topics.clinical_events,
                        &topics.alerts,
                        &topics.patient_status,
                    ],
                )?;
                Ok(if processed >= total && landed >= outputs {
                    (total, total)
                } else {
                    (processed.min(total - 1), total)
                })
            },
        )?;
        for stage in [&mut process, &mut sink] {
            stage.stop()?;
            report.stage_rss(&format!("{} (backfill)", stage.name), stage.peak_rss_kib);
        }
        report.figure(
            &format!("backfill: {events} historical events processed and landed"),
            track.elapsed(),
            "s",
        );
        self.drop_database(&config);
        Ok(())
    }

    /// Restore after SIGKILL of a processor holding `patients` patients.
    pub fn restore(&self, patients: u32, report: &mut Report) -> anyhow::Result<()> {
        // The whole of a short span: every patient registers, most have a visit or a reading.
        let (config, path) = self.fill_canonical("restore", 0, Some(patients), 30, report)?;
        let topic = config.kafka.topics.clinical_events.clone();
        let mut process = Stage::spawn("process", &path, &["process"], &self.dir)?;
        let group = config.process.group_id.clone();
        Track::until_done(&mut [&mut process], Duration::from_secs(3600), || {
            committed(&config.kafka, &group, &[&topic])
        })?;
        // One more checkpoint interval of idling, then the crash.
        std::thread::sleep(Duration::from_secs(2));
        process.sigkill();
        report.stage_rss(
            "process (holding the restore population)",
            process.peak_rss_kib,
        );
        // Tansu keeps the killed member in the group until its session times out.
        std::thread::sleep(self.base.kafka.session_timeout + Duration::from_secs(2));
        let (restarted, _) = self.run_once(
            "process",
            &path,
            &["process", "--until-idle", "3"],
            Duration::from_secs(600),
        )?;
        let log = restarted.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("Restore finished"))
            .context("the restarted processor did not report a restore")?;
        // A figure the log no longer gives is an error, never a zero published as a result.
        let field = |name: &str| -> anyhow::Result<f64> {
            line.split(&format!("{name}="))
                .nth(1)
                .and_then(|r| r.split(|c: char| !(c.is_ascii_digit() || c == '.')).next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("the restore log line has no {name}= figure: {line}"))
        };
        report.figure(
            &format!("restore: patients restored after SIGKILL (of {patients})"),
            field("patients")?,
            "patients",
        );
        report.figure("restore: wall time, all partitions", field("seconds")?, "s");
        let megabytes: f64 = log
            .lines()
            .filter(|l| l.contains("Restored partition state"))
            .filter_map(|l| l.split("megabytes=").nth(1))
            .filter_map(|r| r.split(|c: char| !(c.is_ascii_digit() || c == '.')).next())
            .filter_map(|v| v.parse::<f64>().ok())
            .sum();
        anyhow::ensure!(
            megabytes > 0.0,
            "no restored partition reported the changelog it read"
        );
        report.figure("restore: changelog read", megabytes, "MB");
        Ok(())
    }

    fn drop_database(&self, config: &VigilConfig) {
        let client = vigil_runtime::clickhouse::server_client(&config.clickhouse);
        for db in [
            config.clickhouse.database.clone(),
            format!("{}_insurance", config.clickhouse.database),
        ] {
            let sql = format!("DROP DATABASE IF EXISTS {db}");
            let _ = self.runtime.block_on(client.query(&sql).execute());
        }
    }
}

fn end_offsets(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<i64> {
    Ok(group_lag(kafka, "bench-offsets", topic)?
        .iter()
        .map(|p| p.high - p.low)
        .sum())
}

/// A plain rdkafka consumer reading the topic from the start, doing nothing with the records.
fn raw_consume(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<f64> {
    let mut config = client_config(kafka, "vigil-bench-raw");
    // The same fetch settings as Vigil's own consumers: librdkafka's defaults (1 s prefetch
    // stall, 500 ms broker wait) would handicap the baseline, not measure the broker.
    config
        .set("group.id", format!("bench-raw-{}", super::stamp()))
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set(
            "fetch.wait.max.ms",
            kafka.fetch_wait_max.as_millis().to_string(),
        );
    let consumer: BaseConsumer = config.create()?;
    let partitions = vigil_runtime::kafka::partition_count(&consumer, topic)?;
    let mut list = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    let mut total = 0;
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        total += high - low;
        if high > low {
            remaining.insert(partition, high);
        }
        list.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let started = Instant::now();
    let mut count = 0i64;
    while !remaining.is_empty() {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => {
                use rdkafka::Message;
                count += 1;
                let partition = message.partition();
                if remaining
                    .get(&partition)
                    .is_some_and(|high| message.offset() + 1 >= *high)
                {
                    remaining.remove(&partition);
                }
            }
            Some(Err(error)) => bail!("plain consumer: {error}"),
            None => bail!(
                "plain consumer: no record for 10 s with {} partitions unfinished",
                remaining.len()
            ),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if count < total {
        bail!("plain consumer read {count} of {total}");
    }
    Ok(count as f64 / seconds)
}

/// The topic's events as table rows (not timed).
fn event_rows(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<EventRow>> {
    let codec = AvroCodec::<ClinicalEvent>::new()?;
    let mut rows = Vec::new();
    let partitions = {
        let consumer: BaseConsumer = client_config(kafka, "vigil-bench").create()?;
        vigil_runtime::kafka::partition_count(&consumer, topic)?
    };
    for partition in 0..partitions {
        let reader = RangeReader::new(kafka, "vigil-bench", topic, partition)?;
        let (low, high) = reader.watermarks()?;
        reader.read::<vigil_runtime::RuntimeError>(
            low,
            high,
            Duration::from_secs(60),
            |_, payload| {
                if let Some(Ok(event)) = payload.map(|p| codec.decode(p)) {
                    rows.push(EventRow::from_event(&event, 0, None));
                }
                Ok(())
            },
        )?;
    }
    Ok(rows)
}

/// Plain inserts of `rows` into a fresh copy of the events table, 50,000 rows each.
async fn raw_insert(config: &VigilConfig, rows: &[EventRow]) -> anyhow::Result<f64> {
    let client = vigil_runtime::clickhouse::client(&config.clickhouse);
    let table = "clinical_events_raw_baseline";
    client
        .query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute()
        .await?;
    client
        .query(&format!("CREATE TABLE {table} AS clinical_events"))
        .execute()
        .await?;
    let started = Instant::now();
    for chunk in rows.chunks(50_000) {
        let mut insert = client.insert::<EventRow>(table).await?;
        for row in chunk {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    let rate = rows.len() as f64 / started.elapsed().as_secs_f64();
    client
        .query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute()
        .await?;
    Ok(rate)
}

/// CPU seconds the broker and ClickHouse have used, from the pids `deploy/local/bench.sh`
/// exports (`VIGIL_BENCH_BROKER_PID`, `VIGIL_BENCH_CLICKHOUSE_PID`); `None` where not given.
struct ServicesCpu {
    broker: Option<f64>,
    clickhouse: Option<f64>,
}

impl ServicesCpu {
    fn now() -> ServicesCpu {
        let of = |variable: &str| {
            let pid = std::env::var(variable).ok()?;
            super::cpu_seconds(&format!("/proc/{}/stat", pid.trim()))
        };
        ServicesCpu {
            broker: of("VIGIL_BENCH_BROKER_PID"),
            clickhouse: of("VIGIL_BENCH_CLICKHOUSE_PID"),
        }
    }

    fn since(&self, before: &ServicesCpu) -> ServicesCpu {
        let delta = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
        ServicesCpu {
            broker: delta(self.broker, before.broker),
            clickhouse: delta(self.clickhouse, before.clickhouse),
        }
    }
}

/// Where the CPU of an end-to-end run went: microseconds per HIS change event for each stage,
/// the broker and ClickHouse, and each one's share of the whole.
fn report_cpu(report: &mut Report, events: i64, stages: &[&Stage], services: &ServicesCpu) {
    let mut parts: Vec<(String, f64)> = stages
        .iter()
        .map(|stage| (stage.name.to_string(), stage.cpu_seconds))
        .collect();
    parts.extend(
        services
            .broker
            .map(|cpu| ("broker (Tansu)".to_string(), cpu)),
    );
    parts.extend(
        services
            .clickhouse
            .map(|cpu| ("ClickHouse".to_string(), cpu)),
    );
    let total: f64 = parts.iter().map(|(_, cpu)| cpu).sum();
    for (name, cpu) in &parts {
        report.figure(
            &format!("e2e CPU: {name}, per change event"),
            cpu * 1e6 / events.max(1) as f64,
            "µs",
        );
        report.figure(
            &format!("e2e CPU: {name}, share"),
            100.0 * cpu / total.max(f64::EPSILON),
            "%",
        );
    }
    report.figure(
        "e2e CPU: all of it, per change event",
        total * 1e6 / events.max(1) as f64,
        "µs",
    );
}
