//! `vigil backtest`: a candidate rules file against the live rules over a period of the
//! history in ClickHouse; the report as Markdown (printed) and stored for `vigil serve`'s
//! backtest pages, and with `--out` also HTML, JSON and every episode each rule set opened
//! (JSON lines).

use std::path::{Path, PathBuf};

use anyhow::Context;
use vigil_processors::backtest::{self, EpisodeTrace, Request, Window};
use vigil_processors::engine::Engine;
use vigil_processors::rules::RuleSet;
use vigil_runtime::time::{local_day_start_ms, parse_date};

use crate::config::VigilConfig;

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// The candidate rules file (default: the live rules, which reproduces what the pipeline
    /// raised).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The rules to compare against (default: the live rules, `process.rules_file`).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// First day of the period, YYYY-MM-DD in the reporting time zone.
    #[arg(long)]
    from: String,
    /// Day after the period, YYYY-MM-DD (exclusive).
    #[arg(long)]
    to: String,
    /// Report on the patients this hospital manages only.
    #[arg(long)]
    hospital: Option<String>,
    /// Write report.md, report.html, report.json and the episodes of each rule set here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A rules file, or the live rules; checked before anything is read.
fn rules(file: Option<&Path>, live: Option<&Path>) -> anyhow::Result<(RuleSet, String)> {
    match file.or(live).filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => Ok((RuleSet::load(path)?, path.display().to_string())),
        None => Ok((
            RuleSet::defaults()?,
            "built-in rules (processors/rules/default.toml)".into(),
        )),
    }
}

fn day_start(text: &str, flag: &str, offset_minutes: i32) -> anyhow::Result<i64> {
    let day = parse_date(text)
        .with_context(|| format!("--{flag} must be a date as YYYY-MM-DD, not '{text}'"))?;
    Ok(local_day_start_ms(day, offset_minutes))
}

pub async fn run(config: &VigilConfig, args: BacktestArgs) -> anyhow::Result<()> {
    let engine_config = config.process.engine.clone();
    let offset = engine_config.reporting_utc_offset_minutes;
    let window = Window {
        from_ms: day_start(&args.from, "from", offset)?,
        to_ms: day_start(&args.to, "to", offset)?,
        utc_offset_minutes: offset,
    };
    anyhow::ensure!(window.from_ms < window.to_ms, "--from must be before --to");
    let live = config.process.rules_file.as_deref();
    let (candidate, candidate_origin) = rules(args.rules.as_deref(), live)?;
    let (baseline, baseline_origin) = rules(args.baseline.as_deref(), live)?;
    let request = Request {
        baseline: Engine::new(baseline, engine_config.clone()),
        candidate: Engine::new(candidate, engine_config),
        baseline_origin,
        candidate_origin,
        window,
        hospital: args.hospital,
    };
    let writer = config
        .clickhouse
        .as_role(vigil_runtime::config::ClickHouseRole::Writer)?;
    let client = vigil_runtime::clickhouse::client(&writer);
    let outcome = backtest::run(&client, &request).await.with_context(|| {
        format!(
            "cannot replay the history in ClickHouse at {}",
            config.clickhouse.url
        )
    })?;
    let markdown = backtest::markdown(&outcome.report);
    if let Some(dir) = &args.out {
        write_files(dir, &outcome, &markdown)?;
    }
    let report_id = backtest::publish(&client, &outcome.report, vigil_runtime::time::now_ms())
        .await
        .context("cannot store the report for vigil serve")?;
    say!("{markdown}");
    eprintln!("backtest: on the dashboard at /backtests/{report_id}");
    Ok(())
}

fn write_files(dir: &Path, outcome: &backtest::Outcome, markdown: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("report.md", markdown)?;
    write("report.html", &backtest::html(&outcome.report))?;
    write(
        "report.json",
        &serde_json::to_string_pretty(&outcome.report)?,
    )?;
    let [baseline, candidate] = &outcome.episodes;
    write("episodes-baseline.jsonl", &lines(baseline)?)?;
    write("episodes-candidate.jsonl", &lines(candidate)?)?;
    eprintln!("backtest: report and episodes in {}", dir.display());
    Ok(())
}

fn lines(episodes: &[EpisodeTrace]) -> anyhow::Result<String> {
    let mut out = String::new();
    for episode in episodes {
        out += &serde_json::to_string(episode)?;
        out.push('\n');
    }
    Ok(out)
}
