//! Pseudonymisation at the hospital edge: the patient identifier becomes
//! HMAC-SHA256(key, identifier), hex encoded. The same person gets the same pseudonym at every
//! hospital of the deployment (when keyed by national ID), and nobody without the key can reverse
//! or recompute it. The key never appears in logs, errors or Debug output.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ProducerError;

/// The deployment's pseudonymisation secret.
#[derive(Clone)]
pub struct PseudonymKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<secret>)")
    }
}

/// Shortest key accepted: HMAC-SHA256 keys shorter than the hash add no strength but invite guessing.
pub const MIN_KEY_BYTES: usize = 32;

impl PseudonymKey {
    pub fn from_bytes(key: &[u8]) -> Result<Self, ProducerError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(ProducerError::Config(format!(
                "the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes, it has {}",
                key.len()
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|_| ProducerError::Config("the pseudonymisation key is unusable".into()))?;
        Ok(PseudonymKey { mac })
    }

    /// Loads the key: from the environment variable `env_var` when set (hex or raw text),
    /// otherwise from `file`. When neither exists and `create_if_missing` is set (local runs), a
    /// new random key is written to `file` with owner-only permissions.
    pub fn load(
        env_var: &str,
        file: &Path,
        create_if_missing: bool,
    ) -> Result<Self, ProducerError> {
        if let Ok(value) = std::env::var(env_var) {
            return Self::from_text(value.trim());
        }
        match std::fs::read(file) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                Self::from_text(text.trim())
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && create_if_missing => {
                let key: [u8; 32] = rand::random();
                vigil_runtime::secret::write_secret_file(file, hex::encode(key).as_bytes())
                    .map_err(|e| {
                        ProducerError::Config(format!("cannot create {}: {e}", file.display()))
                    })?;
                tracing::warn!(path = %file.display(),
                    "Generated a new pseudonymisation key for local use; production deployments must provide their own.");
                Self::from_bytes(&key)
            }
            Err(err) => Err(ProducerError::Config(format!(
                "cannot read the pseudonymisation key file {}: {err}; set {env_var} or create the file",
                file.display()
            ))),
        }
    }

    fn from_text(text: &str) -> Result<Self, ProducerError> {
        match hex::decode(text) {
            Ok(bytes) => Self::from_bytes(&bytes),
            Err(_) => Self::from_bytes(text.as_bytes()),
        }
    }

    /// The pseudonym of one identifier.
    pub fn pseudonymise(&self, identifier: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(identifier.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_not_the_input() {
        let key = PseudonymKey::from_bytes(&[7u8; 32]).unwrap();
        let other = PseudonymKey::from_bytes(&[8u8; 32]).unwrap();
        let id = "110101195803071234";
        let p = key.pseudonymise(id);
        assert_eq!(p, key.pseudonymise(id));
        assert_ne!(p, other.pseudonymise(id));
        assert_ne!(p, key.pseudonymise("110101195803071235"));
        assert_eq!(p.len(), 64);
        assert!(!p.contains(id));
    }

    #[test]
    fn short_keys_are_refused_and_debug_hides_the_key() {
        assert!(PseudonymKey::from_bytes(b"short").is_err());
        let key = PseudonymKey::from_bytes(&[1u8; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "PseudonymKey(<secret>)");
    }

    #[test]
    fn a_missing_key_file_is_created_once_with_owner_only_permissions() {
        let dir = std::env::temp_dir().join(format!("vigil-key-{}", std::process::id()));
        let file = dir.join("pseudonym.key");
        let _ = std::fs::remove_dir_all(&dir);
        let first = PseudonymKey::load("VIGIL_TEST_UNSET_KEY_VAR", &file, true).unwrap();
        let second = PseudonymKey::load("VIGIL_TEST_UNSET_KEY_VAR", &file, false).unwrap();
        assert_eq!(first.pseudonymise("x"), second.pseudonymise("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let missing = PseudonymKey::load("VIGIL_TEST_UNSET_KEY_VAR", &dir.join("nope"), false);
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("VIGIL_TEST_UNSET_KEY_VAR"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
