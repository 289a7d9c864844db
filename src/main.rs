//! `vigil`: one binary, one subcommand per role. Each stage can run as its own process (so a
//! deployment scales them separately) or all together with `vigil up`.

/// Prints a report line to stdout. A reader that went away (`vigil rules | head`) is not an
/// error worth failing or panicking over: the work is done by the time we report it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backtest;
mod bench;
mod config;
mod stages;
mod tokens;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::info;
use vigil_processors::rules::RuleSet;
use vigil_runtime::config::ClickHouseRole::{Admin, Writer};
use vigil_runtime::Shutdown;

use crate::config::VigilConfig;
use crate::stages::{prepare_topics, pseudonym_key, supervise};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Real-time monitoring pipeline for chronic-disease care"
)]
struct Cli {
    /// Configuration file; settings not in it take their defaults, and VIGIL_<SECTION>__<KEY>
    /// environment variables override both.
    #[arg(
        long,
        short,
        global = true,
        default_value = "vigil.toml",
        env = "VIGIL_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the ClickHouse database (idempotent).
    Migrate,
    /// Publish the insurance bureau's aggregated outcome metrics now (the writer also does so periodically).
    Publish,
    /// Recompute the dashboard's per-period figures from every status row now (the writer
    /// keeps them current as rows land; this is for rows loaded another way).
    Rollup,
    /// Create the Kafka topics (each stage also does this at start unless kafka.create_topics = false).
    Topics,
    /// Produce a synthetic region's clinical history to Kafka.
    Simulate(SimulateArgs),
    /// Run the hospital edge: Debezium change events (topic, file or stdin) to canonical events.
    Ingest(IngestArgs),
    /// Run the stream processor: patient state, alert rules, patient status.
    Process(UntilIdle),
    /// Run the ClickHouse writer.
    Sink(UntilIdle),
    /// Deliver alerts to each hospital's webhook (signed, retried, recorded).
    Notify(UntilIdle),
    /// Serve the commission's dashboard and the JSON API (`[serve]`, loopback by default).
    Serve,
    /// Measure throughput, latency, restore time and memory on the configured services.
    Bench(bench::BenchArgs),
    /// Run every stage in one process against the configured services (a laptop or a pilot site).
    Up(UpArgs),
    /// Print the effective configuration (file, defaults and environment combined).
    Config,
    /// Replay a period of the history in ClickHouse through candidate rules beside the live
    /// ones: the alert burden of a rule change, per rule and hospital, before it goes live.
    Backtest(backtest::BacktestArgs),
    /// Check a rules file (default: the configured one) and list its rules.
    Rules { file: Option<PathBuf> },
    /// Get a new hospital ready: profile its data before go-live.
    #[command(subcommand)]
    Onboard(OnboardCommand),
    /// The API's bearer tokens: mint one for a role, list them, revoke one.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
}

impl Command {
    /// Whether the command makes a ClickHouse client (which needs CA certificates to load).
    fn uses_clickhouse(&self) -> bool {
        !matches!(
            self,
            Command::Config
                | Command::Rules { .. }
                | Command::Topics
                | Command::Simulate(_)
                | Command::Ingest(_)
                | Command::Process(_)
                | Command::Notify(_)
                | Command::Onboard(_)
        )
    }
}

#[derive(Subcommand)]
enum OnboardCommand {
    /// Read a sample of a hospital's change events (a JSON-lines file, "-" for stdin, or the
    /// newest records of its change-event topic) through its vendor shape and code table,
    /// producing and committing nothing, and write a report (Markdown, HTML, JSON) and a draft
    /// code table.
    Profile {
        /// The hospital's id in the edge catalogue (hospitals.toml).
        #[arg(long)]
        hospital: String,
        /// Where the report and the draft code table go.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Read this topic instead of a file (without a file: the configured change-event topic).
        #[arg(long, conflicts_with = "file")]
        topic: Option<String>,
        /// How many of the topic's newest records to read.
        #[arg(long, default_value_t = 10_000, conflicts_with = "file")]
        records: u64,
        file: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone, Default)]
struct UntilIdle {
    /// Stop by itself once no input arrived for this many seconds (tests, backfills, demos).
    #[arg(long)]
    until_idle: Option<u64>,
}

impl UntilIdle {
    fn duration(&self) -> Option<Duration> {
        self.until_idle.map(Duration::from_secs)
    }
}

#[derive(clap::Args, Clone, Default)]
struct IngestArgs {
    /// Read JSON lines (one change-event value per line) from this file, or stdin for "-",
    /// instead of the change-event topic; ends at the end of the input.
    #[arg(long, conflicts_with = "mllp")]
    file: Option<PathBuf>,
    /// Take HL7 v2 messages (ORU^R01; ADT A01-A04, A08, A11, A13) over MLLP on this address
    /// (e.g. 127.0.0.1:2575) instead of the change-event topic, answering each with an HL7 ACK.
    #[arg(long)]
    mllp: Option<String>,
    #[command(flatten)]
    until: UntilIdle,
}

#[derive(clap::Args, Clone, Default)]
struct SimulateArgs {
    /// Patients in the region.
    #[arg(long)]
    patients: Option<u32>,
    /// Hospitals in the region.
    #[arg(long)]
    hospitals: Option<u16>,
    /// Seed of the generator.
    #[arg(long)]
    seed: Option<u64>,
    /// Days of history.
    #[arg(long)]
    days: Option<u64>,
    /// Last simulated day, YYYY-MM-DD (default: today).
    #[arg(long)]
    end_date: Option<String>,
    /// fast, rate, compressed or live.
    #[arg(long)]
    pace: Option<String>,
    /// Events per second for `rate` and `live`.
    #[arg(long)]
    rate: Option<u32>,
    /// Stop after this many events.
    #[arg(long)]
    max_events: Option<u64>,
    /// cdc (hospital change events, for `vigil ingest`) or canonical (straight to the processor).
    #[arg(long)]
    output: Option<String>,
    /// Inject every kind of CDC defect at this rate (e.g. 0.005).
    #[arg(long)]
    defects: Option<f64>,
    /// Write what the edge should accept and reject to this JSON file.
    #[arg(long)]
    manifest: Option<String>,
    /// Write the change events to this file (JSON lines, for `vigil ingest --file`) instead of
    /// the broker.
    #[arg(long)]
    output_file: Option<String>,
    /// Send the history up to the end of this day (YYYY-MM-DD, UTC) as each hospital's initial
    /// snapshot (op = r, table by table, one stamp), and stream what follows.
    #[arg(long)]
    snapshot_at: Option<String>,
}

#[derive(clap::Args, Clone, Default)]
struct UpArgs {
    /// Also run the simulator as the data source.
    #[arg(long)]
    simulate: bool,
    #[command(flatten)]
    simulation: SimulateArgs,
    #[command(flatten)]
    until: UntilIdle,
}

fn apply_simulate_args(config: &mut VigilConfig, args: &SimulateArgs) -> anyhow::Result<()> {
    let sim = &mut config.simulate;
    if let Some(v) = args.patients {
        sim.patients = v;
    }
    if let Some(v) = args.hospitals {
        sim.hospitals = v;
    }
    if let Some(v) = args.seed {
        sim.seed = v;
    }
    if let Some(v) = args.days {
        sim.span = Duration::from_secs(v * 86_400);
    }
    if let Some(v) = &args.end_date {
        sim.end_date = v.clone();
    }
    if let Some(v) = &args.pace {
        sim.pace = toml::Value::String(v.clone())
            .try_into()
            .with_context(|| format!("--pace must be fast, rate, compressed or live, not '{v}'"))?;
    }
    if let Some(v) = args.rate {
        sim.rate = v;
    }
    if let Some(v) = args.max_events {
        sim.max_events = v;
    }
    if let Some(v) = &args.output {
        sim.output = toml::Value::String(v.clone())
            .try_into()
            .with_context(|| format!("--output must be cdc or canonical, not '{v}'"))?;
    }
    if let Some(rate) = args.defects {
        sim.defects = vigil_producers::simulator::DefectRates {
            duplicate: rate,
            late: rate,
            correction: rate,
            deletion: rate,
            unknown_code: rate,
            wrong_unit: rate,
            missing_field: rate,
            impossible_value: rate,
            missing_identifier: rate,
            malformed: rate,
        };
    }
    if let Some(v) = &args.output_file {
        sim.output_file = v.clone();
    }
    if let Some(v) = &args.manifest {
        sim.manifest = v.clone();
    }
    if let Some(v) = &args.snapshot_at {
        sim.snapshot_at = v.clone();
    }
    sim.validate()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    vigil_runtime::telemetry::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vigil: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = Shutdown::new();
    let result = runtime.block_on(async {
        shutdown.listen_for_signals();
        run(shutdown.clone()).await
    });
    // Whatever ended the command (success, an error, a failed stage), every stage still running
    // must stop too; a stage blocked on a token nobody raises would otherwise keep the process
    // alive forever, deaf to signals once the runtime is gone.
    shutdown.request();
    runtime.shutdown_timeout(Duration::from_secs(30));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vigil: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(shutdown: Shutdown) -> anyhow::Result<()> {
    let cli = Cli::parse();
    let explicit = cli.config != std::path::Path::new("vigil.toml");
    let config = config::load(&cli.config, explicit)?;
    if !matches!(
        cli.command,
        Command::Config
            | Command::Rules { .. }
            | Command::Migrate
            | Command::Topics
            | Command::Bench(_)
            | Command::Backtest(_)
            | Command::Onboard(_)
    ) {
        vigil_runtime::telemetry::init_metrics(&config.telemetry.metrics_listen);
    }

    if cli.command.uses_clickhouse() {
        vigil_runtime::clickhouse::check_trust_store()?;
    }
    match cli.command {
        Command::Config => say!("{}", toml::to_string_pretty(&config)?.trim_end()),
        Command::Rules { file } => print_rules(file.or(config.process.rules_file.clone()))?,
        Command::Onboard(OnboardCommand::Profile {
            hospital,
            out,
            topic,
            records,
            file,
        }) => {
            let sample = match file {
                Some(file) => Sample::File(file),
                None => Sample::Topic {
                    topic: topic.unwrap_or_else(|| config.kafka.topics.his_changes.clone()),
                    records,
                },
            };
            profile(&config, &hospital, &out, sample, &shutdown)?
        }
        Command::Migrate => migrate(&config).await?,
        Command::Publish => publish(&config).await?,
        Command::Rollup => rollup(&config).await?,
        Command::Topics => {
            prepare_topics(&config.kafka).await?;
            say!("topics ready on {}", config.kafka.brokers);
        }
        Command::Simulate(args) => simulate(config, args, shutdown).await?,
        Command::Ingest(args) => ingest(config, args, shutdown).await?,
        Command::Process(until) => process(config, until, shutdown).await?,
        Command::Sink(until) => sink(config, until, shutdown).await?,
        Command::Notify(until) => notify(config, until, shutdown).await?,
        Command::Serve => serve(&config, shutdown).await?,
        Command::Bench(args) => {
            let key = pseudonym_key(&config)?;
            // The benchmarks make and drop databases of their own.
            let mut config = config;
            config.clickhouse = config.clickhouse.as_role(Admin)?;
            tokio::task::spawn_blocking(move || bench::run(&config, &args, key))
                .await
                .context("the benchmark panicked")??;
        }
        Command::Up(args) => up(config, args, shutdown).await?,
        Command::Token(command) => tokens::run(&config, command).await?,
        Command::Backtest(args) => backtest::run(&config, args).await?,
    }
    Ok(())
}

/// What `vigil onboard profile` reads.
enum Sample {
    File(PathBuf),
    Topic { topic: String, records: u64 },
}

fn profile(
    config: &VigilConfig,
    hospital: &str,
    out: &std::path::Path,
    sample: Sample,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    use vigil_producers::onboard::{profile_file, profile_topic};
    let (profile, files) = match sample {
        Sample::File(file) => profile_file(&file, hospital, &config.edge, out, shutdown)?,
        Sample::Topic { topic, records } => {
            profile_topic(&config.kafka, &topic, records, hospital, &config.edge, out)?
        }
    };
    say!(
        "{hospital}: {} records, {:.1}% would be accepted, {} rejected, {} unknown lab codes",
        profile.records,
        profile.accepted_share() * 100.0,
        profile.rejected_total(),
        profile.unknown_lab_codes.len()
    );
    say!(
        "report: {} (also {})",
        files.markdown.display(),
        files.html.display()
    );
    say!("draft code table: {}", files.draft_codes.display());
    say!("{}", serde_json::to_string(&profile)?);
    Ok(())
}

fn print_rules(file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let rules = match file {
        Some(path) => RuleSet::load(&path)?,
        None => RuleSet::defaults()?,
    };
    for rule in rules.rules() {
        say!(
            "{:<34} v{:<3} {:<9} {}",
            rule.id,
            rule.version,
            format!("{:?}", rule.severity),
            rule.title
        );
    }
    Ok(())
}

async fn migrate(config: &VigilConfig) -> anyhow::Result<()> {
    let report = vigil_sinks::clickhouse::migrate::migrate(&config.clickhouse.as_role(Admin)?)
        .await
        .with_context(|| {
            format!(
                "cannot migrate ClickHouse at {}; is it running (deploy/local/services.sh start)?",
                config.clickhouse.url
            )
        })?;
    say!(
        "migrations applied: {:?}; already present: {:?}",
        report.applied,
        report.already
    );
    Ok(())
}

async fn publish(config: &VigilConfig) -> anyhow::Result<()> {
    let writer = config.clickhouse.as_role(Writer)?;
    let cells =
        vigil_sinks::clickhouse::publish::publish(&writer, config.sink.publish_min_cell).await?;
    say!(
        "published {cells} outcome-metric cells to {}_insurance",
        config.clickhouse.database
    );
    let client = vigil_runtime::clickhouse::client(&writer);
    let frozen = vigil_sinks::clickhouse::freeze::freeze(
        &client,
        &config.clickhouse.database,
        &reporting(config),
        vigil_runtime::time::now_ms(),
    )
    .await
    .context("publishing final periods")?;
    say!(
        "final periods: {} cells published, {} restated",
        frozen.published,
        frozen.restated
    );
    Ok(())
}

async fn rollup(config: &VigilConfig) -> anyhow::Result<()> {
    use vigil_sinks::clickhouse::rollup;
    let client = vigil_runtime::clickhouse::client(&config.clickhouse.as_role(Writer)?);
    let database = &config.clickhouse.database;
    let offset = config.process.engine.reporting_utc_offset_minutes;
    let stale = rollup::landed(&client, database, rollup::Landings::All, offset)
        .await
        .context("reading what the rollups count")?;
    let done = rollup::recompute(&client, database, &stale, offset)
        .await
        .context("recomputing the dashboard's rollups")?;
    say!(
        "recomputed the figures of {} periods and {} days or months of activity",
        stale.periods.len(),
        done - stale.periods.len()
    );
    Ok(())
}

async fn simulate(
    mut config: VigilConfig,
    args: SimulateArgs,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    apply_simulate_args(&mut config, &args)?;
    // A change-event file for the edge needs no broker.
    if config.simulate.output_file.is_empty() {
        prepare_topics(&config.kafka).await?;
    }
    let key = pseudonym_key(&config)?;
    let summary = supervise("simulate", shutdown, move |token| {
        vigil_producers::simulator::run(
            &config.simulate,
            &config.edge,
            &config.kafka,
            key.clone(),
            token,
        )
    })
    .await?;
    say!(
        "simulated {} events in {:.1}s",
        summary.events,
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}

async fn ingest(config: VigilConfig, args: IngestArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    prepare_topics(&config.kafka).await?;
    let key = pseudonym_key(&config)?;
    let summary = match (args.file, args.mllp) {
        (_, Some(listen)) => {
            let stop = vigil_runtime::StopWhen::idle(args.until.duration());
            supervise("ingest", shutdown, move |token| {
                vigil_producers::mllp::run_mllp(
                    &listen,
                    &config.ingest,
                    &config.edge,
                    &config.kafka,
                    key.clone(),
                    token,
                    stop.clone(),
                )
            })
            .await?
        }
        (Some(path), None) => {
            supervise("ingest", shutdown, move |token| {
                vigil_producers::ingest::run_file(
                    &path,
                    &config.ingest,
                    &config.edge,
                    &config.kafka,
                    key.clone(),
                    token,
                )
            })
            .await?
        }
        (None, None) => {
            let stop = vigil_runtime::StopWhen::idle(args.until.duration());
            supervise("ingest", shutdown, move |token| {
                vigil_producers::ingest::run(
                    &config.ingest,
                    &config.edge,
                    &config.kafka,
                    key.clone(),
                    token,
                    stop.clone(),
                )
            })
            .await?
        }
    };
    say!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

async fn process(config: VigilConfig, until: UntilIdle, shutdown: Shutdown) -> anyhow::Result<()> {
    prepare_topics(&config.kafka).await?;
    let stop = vigil_processors::runner::StopWhen {
        idle_for: until.duration(),
        upstream_done: None,
    };
    let summary = supervise("process", shutdown, move |token| {
        vigil_processors::runner::run(&config.process, &config.kafka, token, stop.clone())
    })
    .await?;
    say!("{summary:?}");
    Ok(())
}

async fn sink(config: VigilConfig, until: UntilIdle, shutdown: Shutdown) -> anyhow::Result<()> {
    prepare_topics(&config.kafka).await?;
    let writer = config.clickhouse.as_role(Writer)?;
    let handle = tokio::runtime::Handle::current();
    let stop = vigil_sinks::clickhouse::writer::StopWhen {
        idle_for: until.duration(),
        upstream_done: None,
    };
    let summary = supervise("sink", shutdown, move |token| {
        vigil_sinks::clickhouse::writer::run(
            &config.sink,
            &config.kafka,
            &writer,
            reporting(&config),
            &handle,
            token,
            stop.clone(),
        )
    })
    .await?;
    say!("{summary:?}");
    Ok(())
}

async fn notify(config: VigilConfig, until: UntilIdle, shutdown: Shutdown) -> anyhow::Result<()> {
    prepare_topics(&config.kafka).await?;
    let handle = tokio::runtime::Handle::current();
    let stop = vigil_runtime::StopWhen::idle(until.duration());
    let summary = supervise("notify", shutdown, move |token| {
        vigil_sinks::notify::run(&config.notify, &config.kafka, &handle, token, stop.clone())
    })
    .await?;
    say!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Runs a stage on the runtime and raises `done` when it ends, so the next stage of the
/// pipeline may stop (with --until-idle) once it has drained what this one produced.
fn spawn_stage<T, E>(
    name: &'static str,
    shutdown: &Shutdown,
    done: Shutdown,
    stage: impl Fn(&Shutdown) -> Result<T, E> + Send + Sync + 'static,
) -> tokio::task::JoinHandle<anyhow::Result<T>>
where
    T: Send + 'static,
    E: stages::StageError + Send + 'static,
{
    let run = supervise(name, shutdown.clone(), stage);
    tokio::spawn(async move {
        let result = run.await;
        done.request();
        result
    })
}

/// Every stage in one process: (simulate ->) ingest -> process -> sink.
/// The processor's reporting calendar, which the writer and the API follow too.
fn reporting(config: &VigilConfig) -> vigil_runtime::time::Reporting {
    vigil_runtime::time::Reporting {
        utc_offset_minutes: config.process.engine.reporting_utc_offset_minutes,
        allowed_lateness: config.process.engine.allowed_lateness,
    }
}

async fn serve(config: &VigilConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    vigil_serve::run(
        &config.serve,
        &config.clickhouse,
        &config.kafka,
        reporting(config),
        shutdown,
    )
    .await?;
    Ok(())
}

async fn up(mut config: VigilConfig, args: UpArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    if args.simulate {
        apply_simulate_args(&mut config, &args.simulation)?;
    }
    let report = vigil_sinks::clickhouse::migrate::migrate(&config.clickhouse.as_role(Admin)?)
        .await
        .with_context(|| {
            format!(
                "cannot reach ClickHouse at {}; start it with deploy/local/services.sh start",
                config.clickhouse.url
            )
        })?;
    info!(applied = ?report.applied, "ClickHouse schema is current.");
    prepare_topics(&config.kafka).await?;
    let key = pseudonym_key(&config)?;
    let config = std::sync::Arc::new(config);
    let idle = args.until.duration();
    // With --until-idle, stages stop in pipeline order: each only once its upstream finished.
    let (simulated, ingested, processed, sunk) = (
        Shutdown::new(),
        Shutdown::new(),
        Shutdown::new(),
        Shutdown::new(),
    );
    let after = |upstream: &Shutdown, first: bool| vigil_runtime::StopWhen {
        idle_for: idle,
        upstream_done: (!first || args.simulate).then(|| upstream.clone()),
    };

    // The dashboard runs beside the stages and stops with them.
    let dashboard = Shutdown::new();
    let (c, d) = (config.clone(), dashboard.clone());
    let served = tokio::spawn(async move { serve(&c, d).await });
    let (c, k, stop) = (config.clone(), key.clone(), after(&simulated, true));
    let ingest = spawn_stage("ingest", &shutdown, ingested.clone(), move |token| {
        vigil_producers::ingest::run(&c.ingest, &c.edge, &c.kafka, k.clone(), token, stop.clone())
    });
    let (c, stop) = (config.clone(), after(&ingested, false));
    let process = spawn_stage("process", &shutdown, processed.clone(), move |token| {
        vigil_processors::runner::run(&c.process, &c.kafka, token, stop.clone())
    });
    let (c, stop, handle) = (
        config.clone(),
        after(&processed, false),
        tokio::runtime::Handle::current(),
    );
    let writer = config.clickhouse.as_role(Writer)?;
    let sink = spawn_stage("sink", &shutdown, sunk, move |token| {
        vigil_sinks::clickhouse::writer::run(
            &c.sink,
            &c.kafka,
            &writer,
            reporting(&c),
            &handle,
            token,
            stop.clone(),
        )
    });
    if args.simulate {
        let c = config.clone();
        let summary = supervise("simulate", shutdown.clone(), move |token| {
            vigil_producers::simulator::run(&c.simulate, &c.edge, &c.kafka, key.clone(), token)
        })
        .await;
        simulated.request();
        let summary = summary?;
        info!(
            facts = summary.events,
            records = summary.records,
            "The simulator has produced its history; the pipeline keeps running."
        );
    }
    let ingested = ingest.await.context("ingest stage")??;
    let processed = process.await.context("process stage")??;
    let sunk = sink.await.context("sink stage")??;
    dashboard.request();
    // The pipeline's results do not depend on the page: a dashboard that could not start (its
    // port taken) is reported, not fatal.
    match served.await {
        Ok(Err(error)) => tracing::warn!(%error, "The dashboard did not run."),
        Err(error) => tracing::warn!(%error, "The dashboard task failed."),
        Ok(Ok(())) => {}
    }
    say!("ingest:    {}", serde_json::to_string(&ingested)?);
    say!("processor: {processed:?}");
    say!("sink:      {sunk:?}");
    Ok(())
}
