//! Running stages: topic setup, the pseudonymisation key, and a supervisor that restarts a stage
//! after a failure that waiting can cure (a service was down) and stops everything otherwise.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, warn};
use vigil_producers::pseudonym::PseudonymKey;
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::{check_reachable, ensure_topics, TopicSpec};

/// How long a stage waits at start for the broker to answer before it says it cannot reach it.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
use vigil_runtime::Shutdown;

use crate::config::VigilConfig;

/// Creates Vigil's topics if the configuration allows it. The processor's changelog gets the
/// partition count of the clinical events topic (state is partitioned with its input) and
/// unlimited retention (its snapshots are the state).
pub async fn prepare_topics(kafka: &KafkaConfig) -> anyhow::Result<()> {
    kafka.validate()?;
    // Fail fast and say what was tried, rather than retry silently for a minute.
    let probe = kafka.clone();
    tokio::task::spawn_blocking(move || check_reachable(&probe, BROKER_CHECK_TIMEOUT))
        .await
        .context("the broker check panicked")??;
    if !kafka.create_topics {
        return Ok(());
    }
    let topics = &kafka.topics;
    let mut specs: Vec<TopicSpec> = [
        &topics.his_changes,
        &topics.clinical_events,
        &topics.alerts,
        &topics.patient_status,
        &topics.alert_acks,
        &topics.dead_letters,
        &topics.late_events,
        &topics.pipeline_stats,
    ]
    .into_iter()
    .map(|name| TopicSpec::new(name, kafka.partitions))
    .collect();
    let mut state = TopicSpec::new(&topics.processor_state, kafka.partitions);
    state.config.insert("retention.ms".into(), "-1".into());
    specs.push(state);
    // Compacted: the latest outcome per alert is the notifier's memory of what was acknowledged.
    let mut deliveries = TopicSpec::new(&topics.alert_deliveries, kafka.partitions);
    deliveries
        .config
        .insert("cleanup.policy".into(), "compact".into());
    specs.push(deliveries);
    ensure_topics(kafka, &specs)
        .await
        .with_context(|| format!("cannot create Vigil's topics on {}; is the broker running (deploy/local/services.sh start)?", kafka.brokers))
}

pub fn pseudonym_key(config: &VigilConfig) -> anyhow::Result<PseudonymKey> {
    Ok(PseudonymKey::load(
        "VIGIL_PSEUDONYM_KEY",
        &config.edge.pseudonym_key_file,
        config.edge.create_key_if_missing,
    )?)
}

/// A stage's verdict on its own failure.
pub trait StageError: std::fmt::Display {
    fn is_retryable(&self) -> bool;
}

impl StageError for vigil_processors::ProcessorError {
    fn is_retryable(&self) -> bool {
        vigil_processors::ProcessorError::is_retryable(self)
    }
}
impl StageError for vigil_sinks::SinkError {
    fn is_retryable(&self) -> bool {
        vigil_sinks::SinkError::is_retryable(self)
    }
}
impl StageError for vigil_producers::ProducerError {
    fn is_retryable(&self) -> bool {
        vigil_producers::ProducerError::is_retryable(self)
    }
}

/// Runs `stage` on a blocking thread until it returns; restarts it with backoff after retryable
/// failures; requests shutdown of the whole process after a fatal one.
pub async fn supervise<T, E>(
    name: &'static str,
    shutdown: Shutdown,
    stage: impl Fn(&Shutdown) -> Result<T, E> + Send + Sync + 'static,
) -> anyhow::Result<T>
where
    T: Send + 'static,
    E: StageError + Send + 'static,
{
    let stage = Arc::new(stage);
    let mut backoff = Duration::from_secs(1);
    loop {
        let run = stage.clone();
        let token = shutdown.clone();
        let result = tokio::task::spawn_blocking(move || run(&token))
            .await
            .with_context(|| format!("the {name} stage panicked"))?;
        match result {
            Ok(value) => return Ok(value),
            Err(e) if e.is_retryable() && !shutdown.is_requested() => {
                warn!(stage = name, error = %e, restart_in = ?backoff, "Stage failed; restarting it after a pause.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.requested() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                if shutdown.is_requested() {
                    anyhow::bail!("the {name} stage stopped during a restart pause: {e}");
                }
            }
            Err(e) => {
                error!(stage = name, error = %e, "Stage failed and cannot recover; stopping Vigil.");
                shutdown.request();
                anyhow::bail!("the {name} stage failed: {e}");
            }
        }
    }
}
