//! Where each hospital receives alerts, and the secret it verifies them with.
//!
//! Requests carry `X-Vigil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`:
//! the hospital recomputes it with its secret, compares in constant time and refuses a timestamp
//! more than a few minutes old (a replayed request). Secrets are per hospital, so one leaked
//! secret cannot forge alerts for another.

use std::collections::BTreeMap;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use serde::Deserialize;
use sha2::Sha256;

use super::config::NotifyConfig;
use crate::error::SinkError;

/// One hospital's webhook.
#[derive(Clone)]
pub struct Endpoint {
    pub url: Url,
    secret: Vec<u8>,
    /// Scheme, host and path only: safe for logs and the delivery records.
    pub shown: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The X-Vigil-Signature value for `body` sent at `unix_seconds`.
    pub fn signature(&self, unix_seconds: i64, body: &[u8]) -> String {
        signature(&self.secret, unix_seconds, body)
    }
}

pub fn signature(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsFile {
    #[serde(default)]
    endpoint: Vec<EndpointEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    hospital_id: String,
    url: String,
}

/// Every hospital's endpoint.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_hospital: BTreeMap<String, Endpoint>,
}

impl Endpoints {
    pub fn get(&self, hospital_id: &str) -> Option<&Endpoint> {
        self.by_hospital.get(hospital_id)
    }

    pub fn len(&self) -> usize {
        self.by_hospital.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hospital.is_empty()
    }

    /// Reads the endpoints and their secrets; generates missing secrets if the configuration
    /// allows it (local use), and refuses to start otherwise.
    pub fn load(config: &NotifyConfig) -> Result<Endpoints, SinkError> {
        let file = &config.endpoints_file;
        let text = std::fs::read_to_string(file).map_err(|e| {
            SinkError::Config(format!(
                "cannot read notify.endpoints_file {}: {e}",
                file.display()
            ))
        })?;
        let parsed: EndpointsFile = toml::from_str(&text)
            .map_err(|e| SinkError::Config(format!("{}: {e}", file.display())))?;
        let mut secrets = read_secrets(&config.secrets_file)?;
        let missing: Vec<&str> = parsed
            .endpoint
            .iter()
            .map(|e| e.hospital_id.as_str())
            .filter(|h| !secrets.contains_key(*h))
            .collect();
        if !missing.is_empty() {
            if !config.create_secrets_if_missing {
                return Err(SinkError::Config(format!(
                    "{} has no secret for {}",
                    config.secrets_file.display(),
                    missing.join(", ")
                )));
            }
            for hospital in &missing {
                let secret: [u8; 32] = rand::random();
                secrets.insert(hospital.to_string(), hex::encode(secret));
            }
            write_secrets(&config.secrets_file, &secrets)?;
            tracing::warn!(path = %config.secrets_file.display(), hospitals = ?missing,
                "Generated webhook secrets for local use; give each hospital its own.");
        }

        let mut by_hospital = BTreeMap::new();
        for entry in parsed.endpoint {
            let url = Url::parse(&entry.url).map_err(|e| {
                SinkError::Config(format!(
                    "{}: {}: bad url: {e}",
                    file.display(),
                    entry.hospital_id
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(SinkError::Config(format!(
                    "{}: {}: the url must be http or https",
                    file.display(),
                    entry.hospital_id
                )));
            }
            let secret = hex::decode(secrets[&entry.hospital_id].trim()).map_err(|_| {
                SinkError::Config(format!(
                    "{}: the secret of {} is not hex",
                    config.secrets_file.display(),
                    entry.hospital_id
                ))
            })?;
            if secret.len() < 16 {
                return Err(SinkError::Config(format!(
                    "{}: the secret of {} is shorter than 16 bytes",
                    config.secrets_file.display(),
                    entry.hospital_id
                )));
            }
            let shown = format!(
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + url.path();
            if by_hospital
                .insert(entry.hospital_id.clone(), Endpoint { url, secret, shown })
                .is_some()
            {
                return Err(SinkError::Config(format!(
                    "{}: {} is listed twice",
                    file.display(),
                    entry.hospital_id
                )));
            }
        }
        Ok(Endpoints { by_hospital })
    }
}

fn read_secrets(path: &Path) -> Result<BTreeMap<String, String>, SinkError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| SinkError::Config(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(SinkError::Config(format!(
            "cannot read notify.secrets_file {}: {e}",
            path.display()
        ))),
    }
}

/// Rewrites the secrets file (owner-only) through a fresh temporary file.
fn write_secrets(path: &Path, secrets: &BTreeMap<String, String>) -> Result<(), SinkError> {
    let text = toml::to_string(secrets)
        .map_err(|e| SinkError::Config(format!("cannot encode secrets: {e}")))?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    vigil_runtime::secret::write_secret_file(&temporary, text.as_bytes())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| SinkError::Config(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_secret_time_and_body() {
        let a = signature(b"secret-one-0123456789", 1_764_000_000, b"{\"x\":1}");
        assert!(a.starts_with("t=1764000000,v1="));
        assert_eq!(a.len(), "t=1764000000,v1=".len() + 64);
        assert_ne!(
            a,
            signature(b"secret-two-0123456789", 1_764_000_000, b"{\"x\":1}")
        );
        assert_ne!(
            a,
            signature(b"secret-one-0123456789", 1_764_000_001, b"{\"x\":1}")
        );
        assert_ne!(
            a,
            signature(b"secret-one-0123456789", 1_764_000_000, b"{\"x\":2}")
        );
        // RFC 4231 test case 2, to prove this is plain HMAC-SHA256 any hospital can check.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn endpoints_load_and_secrets_are_generated_once_owner_only() {
        let dir = std::env::temp_dir().join(format!("vigil-endpoints-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let endpoints_file = dir.join("endpoints.toml");
        std::fs::write(
            &endpoints_file,
            "[[endpoint]]\nhospital_id = \"H1\"\nurl = \"https://user:pw@his.example:8443/vigil/alerts?token=x\"\n\
             [[endpoint]]\nhospital_id = \"H2\"\nurl = \"http://127.0.0.1:9/a\"\n",
        )
        .unwrap();
        let config = NotifyConfig {
            endpoints_file: endpoints_file.clone(),
            secrets_file: dir.join("secrets/notify.toml"),
            ..NotifyConfig::default()
        };
        let endpoints = Endpoints::load(&config).unwrap();
        assert_eq!(endpoints.len(), 2);
        let h1 = endpoints.get("H1").unwrap();
        assert_eq!(h1.shown, "https://his.example:8443/vigil/alerts");
        assert!(!format!("{h1:?}").contains("pw"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config.secrets_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Loading again keeps the same secrets.
        let again = Endpoints::load(&config).unwrap();
        assert_eq!(
            h1.signature(1, b"x"),
            again.get("H1").unwrap().signature(1, b"x")
        );
        assert_ne!(
            h1.signature(1, b"x"),
            again.get("H2").unwrap().signature(1, b"x")
        );

        // Without permission to create, a missing secret stops the start.
        std::fs::write(
            &endpoints_file,
            "[[endpoint]]\nhospital_id = \"H3\"\nurl = \"http://127.0.0.1:9/a\"\n",
        )
        .unwrap();
        let strict = NotifyConfig {
            create_secrets_if_missing: false,
            ..config.clone()
        };
        let error = Endpoints::load(&strict).unwrap_err().to_string();
        assert!(error.contains("no secret for H3"), "{error}");
        std::fs::write(
            &endpoints_file,
            "[[endpoint]]\nhospital_id = \"H1\"\nurl = \"ftp://x/\"\n",
        )
        .unwrap();
        let error = Endpoints::load(&config).unwrap_err().to_string();
        assert!(error.contains("http or https"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
