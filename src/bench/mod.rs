//! `vigil bench`: Vigil's speed and memory, measured on the configured services beside
//! baselines run in the same session (a plain rdkafka consumer, plain ClickHouse inserts).
//! Prints one line per figure and, with --json, writes them all for BENCHMARKS.md.

mod backtest;
mod dashboard;
mod engine;
mod peer;
mod pipeline;
mod receiver;
mod spool;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::VigilConfig;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Which benchmarks: engine, spool (an initial snapshot held and released), stages (= consume, process, sink, ingest: each stage on a
    /// pre-filled topic beside its baseline), e2e, latency, backfill, restore, dashboard, backtest,
    /// peer (Vigil's engine beside an Apache Flink job doing the core of its work: PyFlink; only
    /// when named, not in "all");
    /// comma-separated, or "all".
    #[arg(long, default_value = "engine,stages,e2e,latency,restore")]
    pub only: String,
    /// Runs of each throughput figure; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Events for the engine and stage throughputs.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// HIS change events for the end-to-end throughput.
    #[arg(long, default_value_t = 300_000)]
    pub e2e_events: u64,
    /// Offered rate for the latency run, events/s.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 30)]
    pub latency_seconds: u64,
    /// Historical events for the backfill.
    #[arg(long, default_value_t = 10_000_000)]
    pub backfill_events: u64,
    /// Patients held by the processor that is killed and restored.
    #[arg(long, default_value_t = 1_000_000)]
    pub restore_patients: u32,
    /// Patients whose 18 months of status rows fill the dashboard benchmark's database.
    #[arg(long, default_value_t = 1_000_000)]
    pub dashboard_patients: u64,
    /// Patients of the region whose year the backtest benchmark replays.
    #[arg(long, default_value_t = 100_000)]
    pub backtest_patients: u32,
    /// Write the figures as JSON here as well.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: String,
}

/// The figures of one session, printed as they come.
#[derive(Default)]
pub struct Report {
    figures: Vec<Figure>,
    baselines: HashMap<&'static str, f64>,
}

impl Report {
    fn figure(&mut self, name: &str, value: f64, unit: &str) {
        say!("{name:<72} {value:>14.1} {unit}");
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
        });
    }

    fn rate(&mut self, name: &str, value: f64, unit: &str) {
        self.figure(name, value.round(), unit);
    }

    fn baseline(&mut self, name: &'static str, value: f64) {
        self.baselines.insert(name, value);
    }

    fn ratio(&mut self, name: &str, value: f64, baseline: &str) {
        if let Some(base) = self.baselines.get(baseline).filter(|b| **b > 0.0) {
            self.figure(name, 100.0 * value / base, "%");
        }
    }

    fn stage_rss(&mut self, name: &str, peak_rss_kib: u64) {
        self.figure(
            &format!("peak RSS: {name}"),
            peak_rss_kib as f64 / 1024.0,
            "MiB",
        );
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index.min(values.len() - 1)]
}

/// A `Name:   123 kB` field of /proc/<pid>/status, in KiB.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// CPU seconds (user and system) a process or thread has used, from its `/proc/.../stat`;
/// `None` once it is gone.
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks
    // (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn own_status(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_field(&s, name))
        .unwrap_or(0)
}

pub fn peak_rss_kib() -> u64 {
    own_status("VmHWM:")
}

/// A short unique stamp for names.
pub fn stamp() -> String {
    format!("{:x}", vigil_runtime::time::now_ms())
}

pub fn run(
    config: &VigilConfig,
    args: &BenchArgs,
    key: vigil_producers::pseudonym::PseudonymKey,
) -> anyhow::Result<()> {
    let wanted: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let all = wanted.contains(&"all");
    let want = |name: &str| all || wanted.contains(&name);
    let mut report = Report::default();
    say!(
        "vigil bench: {} CPUs, brokers {}, ClickHouse {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.kafka.brokers,
        config.clickhouse.url
    );
    if want("engine") {
        engine::run(config, key.clone(), args.events, args.runs, &mut report)?;
    }
    // Only when named: it needs PyFlink, which deploy/local/bench.sh installs for it.
    if wanted.contains(&"peer") {
        peer::run(config, key.clone(), args.events, args.runs, &mut report)?;
    }
    if want("spool") {
        let history = engine::pre_encoded(config, key.clone(), args.events)?;
        spool::run(&history, args.runs, &mut report)?;
    }
    let session = format!("bench{}", stamp());
    let dir = std::env::temp_dir().join(format!("vigil-{session}"));
    std::fs::create_dir_all(&dir)?;
    let pipeline = pipeline::Pipeline {
        base: config,
        dir: dir.clone(),
        runs: args.runs,
        session,
        runtime: tokio::runtime::Handle::current(),
    };
    let parts = pipeline::Parts {
        consume: want("stages") || want("consume"),
        process: want("stages") || want("process"),
        sink: want("stages") || want("sink"),
    };
    if parts.consume || parts.process || parts.sink {
        pipeline.stages(args.events, &parts, &mut report)?;
    }
    if want("stages") || want("ingest") {
        pipeline.ingest(args.e2e_events, &mut report)?;
    }
    if want("e2e") {
        pipeline.end_to_end(args.e2e_events, &mut report)?;
    }
    if want("latency") {
        pipeline.latency(args.rate, args.latency_seconds, &mut report)?;
    }
    if want("backfill") {
        pipeline.backfill(args.backfill_events, &mut report)?;
    }
    if want("restore") {
        pipeline.restore(args.restore_patients, &mut report)?;
    }
    if want("dashboard") {
        let runtime = tokio::runtime::Handle::current();
        dashboard::run(
            &config.clickhouse,
            &config.kafka,
            args.dashboard_patients,
            args.runs.max(10),
            &runtime,
            &mut report,
        )?;
    }
    if want("backtest") {
        let runtime = tokio::runtime::Handle::current();
        backtest::run(
            config,
            key.clone(),
            args.backtest_patients,
            args.runs,
            &runtime,
            &mut report,
        )?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.figures)?)?;
    }
    say!("logs and configurations of the stages: {}", dir.display());
    Ok(())
}
