//! `[serve]` in vigil.toml.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address the dashboard and the API listen on: loopback unless a deployment puts a proxy
    /// (TLS, single sign-on) in front and opens it.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How often the figures are read again: once for every viewer, and pushed to open pages
    /// when they changed.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// API tokens a deployment provides in a file (`[[token]]` with `token_id`, `name`, `role`,
    /// `secret_sha256`), beside those `vigil token add` stores; empty: none.
    #[serde(default)]
    pub tokens_file: String,
    /// Serve HTTPS with this certificate chain (PEM) and its private key (PEM) rather than
    /// plain HTTP; both empty: HTTP (behind a proxy that terminates TLS, or on loopback).
    #[serde(default)]
    pub tls_cert_file: String,
    #[serde(default)]
    pub tls_key_file: String,
}

/// New alerts reach an open page within this plus the writer's flush.
fn default_refresh() -> Duration {
    Duration::from_secs(2)
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            refresh: default_refresh(),
            tokens_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}
