//! The reports `vigil backtest` stored: a list (`/backtests`, `/api/v1/backtests`) and each
//! report (`/backtests/{id}` as its page, `/api/v1/backtests/{id}` as JSON). A hospital's token
//! sees the reports on its own patients only; another report is "not found", as if absent.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::ServeError;

const LIST: &str = include_str!("../sql/backtests.sql");
const ONE: &str = include_str!("../sql/backtest.sql");

/// Reports listed at most.
const MAX_ROWS: u64 = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Row)]
pub struct Listed {
    pub report_id: String,
    /// When it was made, in the reporting time zone.
    pub created_at: String,
    pub period_from: String,
    pub period_to: String,
    /// The hospital whose patients it is about ('' for every hospital).
    pub hospital_id: String,
    pub baseline_rules: String,
    pub candidate_rules: String,
    pub events: u64,
}

#[derive(Debug, Clone, Deserialize, Row)]
pub struct Stored {
    pub hospital_id: String,
    pub report_json: String,
    pub report_html: String,
}

/// The reports the caller may read, newest first.
pub async fn list(
    client: &Client,
    hospital: &str,
    offset_s: i64,
) -> Result<Vec<Listed>, ServeError> {
    client
        .query(LIST)
        .bind(offset_s)
        .bind(hospital)
        .bind(hospital)
        .bind(MAX_ROWS)
        .fetch_all()
        .await
        .map_err(|source| ServeError::Query {
            what: "backtest reports",
            source,
        })
}

/// One report, if it exists and the caller (confined to `hospital`, if any) may read it.
pub async fn one(
    client: &Client,
    id: &str,
    hospital: Option<&str>,
) -> Result<Option<Stored>, ServeError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let stored = client
        .query(ONE)
        .bind(id)
        .fetch_optional::<Stored>()
        .await
        .map_err(|source| ServeError::Query {
            what: "backtest report",
            source,
        })?;
    Ok(stored.filter(|s| hospital.is_none_or(|h| s.hospital_id == h)))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The list as a page: one row per report, linking to it.
pub fn list_page(reports: &[Listed]) -> String {
    let mut rows = String::new();
    for r in reports {
        let hospital = if r.hospital_id.is_empty() {
            "all".to_string()
        } else {
            escape(&r.hospital_id)
        };
        rows += &format!(
            "<tr><td><a href=\"/backtests/{id}\">{created}</a></td><td>{from} – {to}</td><td>{hospital}</td>\
             <td>{candidate}</td><td>{baseline}</td><td>{events}</td></tr>\n",
            id = escape(&r.report_id),
            created = escape(&r.created_at),
            from = escape(&r.period_from),
            to = escape(&r.period_to),
            candidate = escape(&r.candidate_rules),
            baseline = escape(&r.baseline_rules),
            events = r.events,
        );
    }
    if reports.is_empty() {
        rows = "<tr><td colspan=\"6\">No backtest yet: run <code>vigil backtest --rules CANDIDATE.toml \
                --from DATE --to DATE</code>.</td></tr>\n"
            .into();
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Rule backtests</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head><body>\n<main>\n<p><a href=\"/\">← Dashboard</a></p>\n\
         <h1>Rule backtests</h1>\n<p>What a rule change would have raised on the history, beside the live rules.</p>\n\
         <table id=\"backtests\"><thead><tr><th>Made</th><th>Period</th><th>Hospital</th><th>Candidate rules</th>\
         <th>Baseline rules</th><th>Events replayed</th></tr></thead><tbody>\n{rows}</tbody></table>\n</main></body></html>\n"
    )
}
