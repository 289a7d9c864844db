//! Who is asking: bearer tokens, each with one role. A token is `vgl_<id>_<secret>`; Vigil keeps
//! only the SHA-256 of the secret (`<db>_audit.api_tokens`, written by `vigil token add`, or a
//! file a deployment provides), so neither a database dump nor a log line can be replayed as a
//! token. The secret is 32 random bytes: a fast hash is enough against guessing.

use std::collections::HashMap;
use std::fmt;

use clickhouse::{Client, Row};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ServeError;

/// What a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The health commission: every hospital's figures and the dashboard.
    Commission,
    /// The medical insurance bureau: published, aggregated outcome metrics only.
    Insurance,
    /// One hospital's staff: its own figures, alerts and acknowledgements only.
    Hospital(String),
    /// The people who run Vigil: everything, and the audit log.
    Operator,
}

/// A role without its hospital: what an endpoint declares it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Commission,
    Insurance,
    Hospital,
    Operator,
}

impl Role {
    /// `commission`, `insurance`, `operator` or `hospital:<id>`.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.split_once(':') {
            None => match text {
                "commission" => Ok(Role::Commission),
                "insurance" => Ok(Role::Insurance),
                "operator" => Ok(Role::Operator),
                "hospital" => Err("a hospital role names its hospital: hospital:<id>".into()),
                other => Err(format!(
                    "unknown role {other:?}: commission, insurance, operator or hospital:<id>"
                )),
            },
            Some(("hospital", id)) if valid_hospital(id) => Ok(Role::Hospital(id.to_string())),
            Some(("hospital", _)) => {
                Err("a hospital id is 1 to 64 letters, digits, '-' or '_'".into())
            }
            Some(_) => Err(format!(
                "unknown role {text:?}: commission, insurance, operator or hospital:<id>"
            )),
        }
    }

    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Commission => RoleKind::Commission,
            Role::Insurance => RoleKind::Insurance,
            Role::Hospital(_) => RoleKind::Hospital,
            Role::Operator => RoleKind::Operator,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Role::Commission => "commission",
            Role::Insurance => "insurance",
            Role::Hospital(_) => "hospital",
            Role::Operator => "operator",
        }
    }

    /// The hospital a role is confined to, if any.
    pub fn hospital(&self) -> Option<&str> {
        match self {
            Role::Hospital(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Hospital(id) => write!(f, "hospital:{id}"),
            other => f.write_str(other.name()),
        }
    }
}

fn valid_hospital(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Row)]
pub struct StoredToken {
    pub token_id: String,
    pub name: String,
    pub role: String,
    pub hospital_id: String,
    pub secret_sha256: String,
    pub created_ms: i64,
    /// 0 while valid.
    pub revoked_ms: i64,
    pub version: u64,
}

impl StoredToken {
    /// The role it grants; `None` for a row no role parses from (refused like an unknown token).
    pub fn role(&self) -> Option<Role> {
        if self.role == "hospital" {
            return Role::parse(&format!("hospital:{}", self.hospital_id)).ok();
        }
        Role::parse(&self.role).ok()
    }
}

/// A new token: the row to store, and the text to give its holder once.
pub fn mint(role: &Role, name: &str, now_ms: i64) -> (StoredToken, String) {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let stored = StoredToken {
        token_id: id.clone(),
        name: name.to_string(),
        role: role.name().to_string(),
        hospital_id: role.hospital().unwrap_or_default().to_string(),
        secret_sha256: sha256_hex(&secret),
        created_ms: now_ms,
        revoked_ms: 0,
        version: now_ms.max(0) as u64,
    };
    (stored, format!("vgl_{id}_{secret}"))
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The id and secret of a presented token, if it has a token's shape.
fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("vgl_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 12) && hex(secret, 64)).then_some((id, secret))
}

/// Equal strings, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
}

/// Why a request is refused before any data is read. Both answer 401 with the same words: a
/// caller learns nothing about which tokens exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token presented.
    Missing,
    /// A token that is unknown, revoked, malformed or wrong.
    Invalid,
}

/// The valid tokens, by id.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_id: HashMap<String, (String, Role)>,
}

impl Tokens {
    pub fn new(rows: impl IntoIterator<Item = StoredToken>) -> Tokens {
        let by_id = rows
            .into_iter()
            .filter(|row| row.revoked_ms == 0)
            .filter_map(|row| {
                let role = row.role()?;
                Some((row.token_id, (row.secret_sha256, role)))
            })
            .collect();
        Tokens { by_id }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Who presented `token` (the text after `Bearer `), or why not.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, Refusal> {
        let token = token.ok_or(Refusal::Missing)?;
        let (id, secret) = split(token.trim()).ok_or(Refusal::Invalid)?;
        let (hash, role) = self.by_id.get(id).ok_or(Refusal::Invalid)?;
        if !same(hash, &sha256_hex(secret)) {
            return Err(Refusal::Invalid);
        }
        Ok(Principal {
            token_id: id.to_string(),
            role: role.clone(),
        })
    }
}

/// The tokens stored in ClickHouse, latest version of each (revoked ones included, for listing).
pub async fn stored(client: &Client, database: &str) -> Result<Vec<StoredToken>, ServeError> {
    client
        .query(&format!(
            "SELECT ?fields FROM {database}_audit.api_tokens FINAL ORDER BY created_ms, token_id"
        ))
        .fetch_all::<StoredToken>()
        .await
        .map_err(|source| ServeError::Query {
            what: "API tokens",
            source,
        })
}

/// Stores a new token, or a token's revocation (a new version of its row).
pub async fn store(client: &Client, database: &str, row: &StoredToken) -> Result<(), ServeError> {
    let failed = |source| ServeError::Query {
        what: "store an API token",
        source,
    };
    // The crate quotes a table name whole: the database goes on the client.
    let mut insert = client
        .clone()
        .with_database(format!("{database}_audit"))
        .insert::<StoredToken>("api_tokens")
        .await
        .map_err(failed)?;
    insert.write(row).await.map_err(failed)?;
    insert.end().await.map_err(failed)
}

/// Tokens a deployment provides in a file instead (`serve.tokens_file`): `[[token]]` tables
/// with `token_id`, `name`, `role` (`hospital:<id>` for a hospital) and `secret_sha256`.
pub fn from_file(path: &std::path::Path) -> Result<Vec<StoredToken>, ServeError> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        token: Vec<Entry>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        token_id: String,
        #[serde(default)]
        name: String,
        role: String,
        secret_sha256: String,
    }
    let bad = |reason: String| ServeError::Tokens {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let file: File = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    file.token
        .into_iter()
        .map(|entry| {
            let role = Role::parse(&entry.role).map_err(&bad)?;
            if split(&format!("vgl_{}_{}", entry.token_id, "0".repeat(64))).is_none()
                || entry.secret_sha256.len() != 64
            {
                return Err(bad(format!(
                    "token {:?}: token_id is 12 hex digits, secret_sha256 64",
                    entry.token_id
                )));
            }
            Ok(StoredToken {
                token_id: entry.token_id,
                name: entry.name,
                role: role.name().to_string(),
                hospital_id: role.hospital().unwrap_or_default().to_string(),
                secret_sha256: entry.secret_sha256.to_ascii_lowercase(),
                created_ms: 0,
                revoked_ms: 0,
                version: 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_as_written() {
        for text in ["commission", "insurance", "operator", "hospital:H0001"] {
            assert_eq!(Role::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "hospital",
            "hospital:",
            "hospital:a b",
            "admin",
            "hospital:王",
        ] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_minted_token_authenticates_and_nothing_else_does() {
        let role = Role::Hospital("H0001".into());
        let (row, text) = mint(&role, "ward 3", 1_000);
        assert!(!text.contains(&row.secret_sha256));
        let tokens = Tokens::new([row.clone()]);
        let who = tokens.authenticate(Some(&text)).unwrap();
        assert_eq!(
            (who.token_id.as_str(), who.role),
            (row.token_id.as_str(), role)
        );
        assert_eq!(tokens.authenticate(None), Err(Refusal::Missing));
        let mut wrong = text.clone();
        wrong.replace_range(
            text.len() - 1..,
            if text.ends_with('0') { "1" } else { "0" },
        );
        for presented in [wrong.as_str(), "vgl_", "Bearer x", "", "vgl_王_王"] {
            assert_eq!(tokens.authenticate(Some(presented)), Err(Refusal::Invalid));
        }
        let revoked = StoredToken {
            revoked_ms: 2_000,
            ..row
        };
        assert_eq!(
            Tokens::new([revoked]).authenticate(Some(&text)),
            Err(Refusal::Invalid)
        );
    }
}
