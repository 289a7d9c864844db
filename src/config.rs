//! The whole of Vigil's configuration: one `vigil.toml` (every key optional; defaults run as is)
//! overridden by environment variables named `VIGIL_<SECTION>__<KEY>`, e.g.
//! `VIGIL_KAFKA__BROKERS=10.0.0.5:9092` or `VIGIL_PROCESS__ENGINE__ALLOWED_LATENESS=30d`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use vigil_processors::ProcessConfig;
use vigil_producers::edge::EdgeConfig;
use vigil_producers::ingest::IngestConfig;
use vigil_producers::simulator::SimulateConfig;
use vigil_runtime::config::{ClickHouseConfig, KafkaConfig, TelemetryConfig};
use vigil_sinks::clickhouse::SinkConfig;
use vigil_sinks::notify::NotifyConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VigilConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    #[serde(default)]
    pub edge: EdgeConfig,
    #[serde(default)]
    pub simulate: SimulateConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub process: ProcessConfig,
    #[serde(default)]
    pub sink: SinkConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub serve: vigil_serve::ServeConfig,
}

/// Sections that environment variables may address; other VIGIL_* variables (VIGIL_HOME, the
/// test addresses) belong to the scripts and are left alone.
const SECTIONS: [&str; 10] = [
    "kafka",
    "clickhouse",
    "edge",
    "simulate",
    "ingest",
    "process",
    "sink",
    "notify",
    "telemetry",
    "serve",
];

/// Environment variables naming librdkafka properties, whose own names have dots.
const CLIENT_PROPERTIES: &str = "kafka.client_properties.";
const CLIENT_PROPERTIES_PREFIX: &str = "VIGIL_KAFKA__CLIENT_PROPERTIES__";

/// `VIGIL_KAFKA__CLIENT_PROPERTIES__<NAME>=value` sets the librdkafka property `<name>` as one
/// key: lowercased, with `_` standing for `.` (a shell cannot export a name with a dot; one
/// given with dots, from a container runtime, works too): `..._SASL_MECHANISMS=SCRAM-SHA-512`
/// sets `sasl.mechanisms`. A generic split would nest the dotted name and fail.
fn client_properties(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter_map(|(name, value)| {
        let property = name.strip_prefix(CLIENT_PROPERTIES_PREFIX)?;
        (!property.is_empty()).then(|| (property.to_ascii_lowercase().replace('_', "."), value))
    })
    .collect()
}

/// Loads `path` (if it exists; an explicitly named file must exist), then the environment.
pub fn load(path: &Path, explicit: bool) -> anyhow::Result<VigilConfig> {
    if explicit && !path.exists() {
        bail!("configuration file {} does not exist", path.display());
    }
    let env = Env::prefixed("VIGIL_")
        .split("__")
        .filter(|key| SECTIONS.iter().any(|s| key.starts_with(&format!("{s}."))))
        .filter(|key| !key.starts_with(CLIENT_PROPERTIES));
    let properties = client_properties(std::env::vars());
    let config: VigilConfig = Figment::new()
        .merge(Toml::file(path))
        .merge(env)
        .merge(Serialized::default("kafka.client_properties", properties))
        .extract()
        .with_context(|| {
            format!(
                "invalid configuration (file {}, then VIGIL_<SECTION>__<KEY> variables)",
                path.display()
            )
        })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("vigil.toml");
        let file: VigilConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let defaults = VigilConfig::default();
        assert_eq!(
            toml::to_string(&file).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's signature
    fn librdkafka_properties_come_from_the_environment_as_one_key_each() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                "[kafka.client_properties]\n\"client.rack\" = \"az1\"\n",
            )?;
            jail.set_env(
                "VIGIL_KAFKA__CLIENT_PROPERTIES__SECURITY_PROTOCOL",
                "SASL_SSL",
            );
            jail.set_env(
                "VIGIL_KAFKA__CLIENT_PROPERTIES__sasl.mechanisms",
                "SCRAM-SHA-512",
            );
            let config = load(Path::new("vigil.toml"), true).expect("loads");
            let properties = &config.kafka.client_properties;
            assert_eq!(properties["security.protocol"], "SASL_SSL");
            assert_eq!(properties["sasl.mechanisms"], "SCRAM-SHA-512");
            assert_eq!(properties["client.rack"], "az1", "the file's stay");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = toml::from_str::<VigilConfig>("[kafka]\nbrokerz = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("brokerz"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's signature
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("v.toml", "[kafka]\nbrokers = \"a:1\"\npartitions = 2\n")?;
            jail.set_env("VIGIL_KAFKA__BROKERS", "b:2");
            jail.set_env("VIGIL_PROCESS__ENGINE__ALLOWED_LATENESS", "30d");
            jail.set_env("VIGIL_HOME", "/not/a/config/key");
            let config = load(Path::new("v.toml"), true).map_err(|e| e.to_string())?;
            assert_eq!(config.kafka.brokers, "b:2");
            assert_eq!(config.kafka.partitions, 2);
            assert_eq!(
                config.process.engine.allowed_lateness,
                std::time::Duration::from_secs(30 * 86_400)
            );
            Ok(())
        });
    }
}
