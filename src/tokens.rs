//! `vigil token add|list|revoke`: the API's bearer tokens, stored hashed in `<db>_audit`
//! (`vigil serve` reads them again every refresh, so a new or revoked token counts within
//! seconds). The secret is printed once, at `add`, and never stored.

use anyhow::Context;
use vigil_runtime::time::now_ms;
use vigil_serve::auth::{self, Role};

use crate::config::VigilConfig;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print it once (keep it: Vigil stores only its hash).
    Add {
        /// commission, insurance, operator, or hospital:<id> (that hospital only).
        #[arg(long)]
        role: String,
        /// Who holds it, for the list and the audit log's readers.
        #[arg(long, default_value = "")]
        name: String,
        /// Print only the token (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List the tokens: id, role, holder, when made and revoked (never a secret).
    List,
    /// Revoke a token by its id (refused from the next refresh of `vigil serve` on).
    Revoke { token_id: String },
}

pub async fn run(config: &VigilConfig, command: TokenCommand) -> anyhow::Result<()> {
    let admin = config
        .clickhouse
        .as_role(vigil_runtime::config::ClickHouseRole::Admin)?;
    let client = vigil_runtime::clickhouse::server_client(&admin);
    let database = &config.clickhouse.database;
    match command {
        TokenCommand::Add { role, name, quiet } => {
            let role = Role::parse(&role).map_err(anyhow::Error::msg)?;
            let (row, token) = auth::mint(&role, &name, now_ms());
            auth::store(&client, database, &row)
                .await
                .context("storing the token (has `vigil migrate` run?)")?;
            if quiet {
                println!("{token}");
            } else {
                println!("token {} for {role}: {token}", row.token_id);
                println!("(shown once: Vigil keeps only its hash)");
            }
        }
        TokenCommand::List => {
            for row in auth::stored(&client, database).await? {
                let role = row
                    .role()
                    .map_or_else(|| row.role.clone(), |r| r.to_string());
                let state = if row.revoked_ms > 0 {
                    format!(
                        "revoked {}",
                        vigil_runtime::time::format_date(vigil_runtime::time::local_day(
                            row.revoked_ms,
                            0
                        ))
                    )
                } else {
                    "valid".to_string()
                };
                println!("{}\t{role}\t{}\t{state}", row.token_id, row.name);
            }
        }
        TokenCommand::Revoke { token_id } => {
            let stored = auth::stored(&client, database).await?;
            let Some(row) = stored.into_iter().find(|r| r.token_id == token_id) else {
                anyhow::bail!("no token {token_id:?} (`vigil token list` lists them)");
            };
            let now = now_ms();
            let revoked = auth::StoredToken {
                revoked_ms: now,
                version: row.version.max(now.max(0) as u64) + 1,
                ..row
            };
            auth::store(&client, database, &revoked).await?;
            println!("revoked {token_id}");
        }
    }
    Ok(())
}
