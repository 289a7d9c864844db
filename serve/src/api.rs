//! The API's handlers for the insurance bureau, the hospitals and the operators: outcome
//! metrics, the alert worklist and acknowledgements, the audit log, the backtest reports. Each runs after `guard`
//! checked the caller's role; a hospital's token is confined to its hospital here, in every
//! parameter.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use vigil_runtime::time::now_ms;

use crate::auth::{Principal, Role};
use crate::backtests;
use crate::metrics::{self, Metric, Period};
use crate::worklist::{self, AckOutcome, AckRequest};
use crate::{error_body, json_rows, unavailable, AppState, Rows};

/// The metric definition the newest figures follow (`None` before any).
fn definition(state: &AppState) -> Option<String> {
    state
        .latest
        .borrow()
        .overview
        .as_ref()
        .and_then(|o| o.definition.clone())
}

/// `GET /api/v1/metrics`: every metric's definition.
pub async fn metric_list(State(state): State<Arc<AppState>>) -> Response {
    let version = definition(&state).unwrap_or_else(|| "cn-nbphs-2017/v1".into());
    let list: Vec<metrics::Definition> = Metric::ALL
        .into_iter()
        .map(|m| m.definition(&version))
        .collect();
    let rows = list.len() as u64;
    json_rows(&serde_json::json!({ "metrics": list }), rows)
}

#[derive(Debug, Deserialize)]
pub struct CellQuery {
    period: Option<String>,
    hospital: Option<String>,
    region: Option<String>,
    format: Option<String>,
    /// `published` (default) or `restated`.
    edition: Option<String>,
}

/// How a caller wants the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Fhir,
}

fn wanted_format(query: &CellQuery, headers: &HeaderMap) -> Option<Format> {
    match query.format.as_deref() {
        Some("json") => return Some(Format::Json),
        Some("csv") => return Some(Format::Csv),
        Some("fhir") => return Some(Format::Fhir),
        Some(_) => return None,
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains("application/fhir+json") {
        Format::Fhir
    } else {
        Format::Json
    })
}

/// The hospital a request may see: a hospital token its own (`None` when it asked for another),
/// others what they asked for (`""`: every hospital).
fn scope(principal: &Principal, asked: Option<&str>) -> Option<String> {
    match (&principal.role, asked) {
        (Role::Hospital(own), None) => Some(own.clone()),
        (Role::Hospital(own), Some(asked)) if asked == own => Some(own.clone()),
        (Role::Hospital(_), Some(_)) => None,
        (_, asked) => Some(asked.unwrap_or_default().to_string()),
    }
}

fn another_hospital() -> Response {
    error_body(
        StatusCode::FORBIDDEN,
        "forbidden",
        "a hospital's token sees its own hospital only",
    )
}

/// Why a metric request names nothing to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswerable {
    NoSuchMetric,
    NotAPeriod,
}

impl Unanswerable {
    fn response(self) -> Response {
        match self {
            Unanswerable::NoSuchMetric => {
                error_body(StatusCode::NOT_FOUND, "not_found", "no such metric")
            }
            Unanswerable::NotAPeriod => error_body(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "period is a month (202603), a quarter (2026Q1) or a year (2026)",
            ),
        }
    }
}

/// The metric a path names and the period a query names.
fn metric_and_period(id: &str, period: Option<&str>) -> Result<(Metric, Period), Unanswerable> {
    let metric = Metric::parse(id).ok_or(Unanswerable::NoSuchMetric)?;
    let period = period
        .and_then(Period::parse)
        .ok_or(Unanswerable::NotAPeriod)?;
    Ok((metric, period))
}

/// `GET /api/v1/metrics/{id}?period=…`: one metric's cells per hospital and condition.
pub async fn metric_cells(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<CellQuery>,
    headers: HeaderMap,
) -> Response {
    let (metric, period) = match metric_and_period(&id, query.period.as_deref()) {
        Ok(asked) => asked,
        Err(refused) => return refused.response(),
    };
    let Some(format) = wanted_format(&query, &headers) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "format is json, csv or fhir",
        );
    };
    let Some(hospital) = scope(&principal, query.hospital.as_deref()) else {
        return another_hospital();
    };
    let Some(version) = definition(&state) else {
        return error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no figures have been read yet",
        );
    };
    let region = query.region.clone().unwrap_or_default();
    let edition = match query.edition.as_deref() {
        None | Some("published") => metrics::Edition::AsPublished,
        Some("restated") => metrics::Edition::Restated,
        Some(_) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "edition is published (as first published) or restated",
            )
        }
    };
    let scope = metrics::Scope {
        hospital: &hospital,
        region: &region,
    };
    let cells = match metrics::cells(&state.reader, &version, metric, &period, scope, edition).await
    {
        Ok(cells) => cells,
        Err(error) => return unavailable(&error),
    };
    let rows = cells.len() as u64;
    let generated = vigil_runtime::time::format_date(vigil_runtime::time::local_day(
        now_ms(),
        state.reporting.utc_offset_minutes,
    ));
    let mut response = match format {
        Format::Json => {
            return json_rows(
                &serde_json::json!({
                    "metric": metric.definition(&version),
                    "period": period.id(),
                    "cells": cells,
                }),
                rows,
            )
        }
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            metrics::csv(metric, &cells),
        )
            .into_response(),
        Format::Fhir => (
            [(header::CONTENT_TYPE, "application/fhir+json")],
            metrics::measure_reports(&metric.definition(&version), &period, &cells, &generated)
                .to_string(),
        )
            .into_response(),
    };
    response.extensions_mut().insert(Rows(rows));
    response
}

#[derive(Debug, Deserialize)]
pub struct RestatementQuery {
    period: Option<String>,
    hospital: Option<String>,
}

/// `GET /api/v1/metrics/{id}/restatements?period=…`: how a final period's published figures
/// changed since, per hospital and condition, with the reasons.
pub async fn metric_restatements(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<RestatementQuery>,
) -> Response {
    let (metric, period) = match metric_and_period(&id, query.period.as_deref()) {
        Ok(asked) => asked,
        Err(refused) => return refused.response(),
    };
    let Some(hospital) = scope(&principal, query.hospital.as_deref()) else {
        return another_hospital();
    };
    let version = definition(&state).unwrap_or_else(|| "cn-nbphs-2017/v1".into());
    match metrics::restatements(&state.reader, &version, metric, &period, &hospital).await {
        Ok(list) => {
            let rows = list.len() as u64;
            json_rows(
                &serde_json::json!({ "metric": metric.id(), "period": period.id(),
                                     "restatements": list }),
                rows,
            )
        }
        Err(error) => unavailable(&error),
    }
}

#[derive(Debug, Deserialize)]
pub struct AlertQuery {
    status: Option<String>,
    hospital: Option<String>,
    limit: Option<u64>,
}

/// `GET /api/v1/alerts?status=open`: the open episodes of the caller's hospital.
pub async fn alerts(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<AlertQuery>,
) -> Response {
    if query.status.as_deref().is_some_and(|s| s != "open") {
        return error_body(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "status is open (the worklist lists open episodes)",
        );
    }
    let Some(hospital) = scope(&principal, query.hospital.as_deref()) else {
        return another_hospital();
    };
    let offset_s = i64::from(state.reporting.utc_offset_minutes) * 60;
    let limit = query.limit.unwrap_or(worklist::MAX_ROWS);
    match worklist::open(&state.reader, &hospital, offset_s, limit).await {
        Ok(open) => {
            let rows = open.len() as u64;
            json_rows(&serde_json::json!({ "alerts": open }), rows)
        }
        Err(error) => unavailable(&error),
    }
}

/// `POST /api/v1/alerts/{episode}/ack`: a clinician acknowledges or snoozes an episode.
pub async fn acknowledge(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(episode): Path<String>,
    body: Result<Json<AckRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body is JSON: {\"action\": \"acknowledge\" | \"snooze\", \"snooze_minutes\": n, \"clinician_id\": \"…\"}",
        );
    };
    let hospital = principal.role.hospital();
    let outcome = state
        .acknowledger
        .acknowledge(&state.reader, &episode, hospital, &request, now_ms())
        .await;
    match outcome {
        Ok(AckOutcome::Sent { ack_id }) => {
            let body = serde_json::json!({ "ack_id": ack_id, "episode_id": episode,
                                           "action": request.action });
            let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
            response.extensions_mut().insert(Rows(1));
            response
        }
        Ok(AckOutcome::NoSuchEpisode) => error_body(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such alert episode at your hospital",
        ),
        Ok(AckOutcome::Resolved) => error_body(
            StatusCode::CONFLICT,
            "resolved",
            "the episode was resolved already",
        ),
        Ok(AckOutcome::Invalid(reason)) => {
            error_body(StatusCode::BAD_REQUEST, "bad_request", &reason)
        }
        Err(error) => unavailable(&error),
    }
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, Row)]
struct AuditRow {
    time_ms: i64,
    token_id: String,
    role: String,
    hospital_scope: String,
    method: String,
    endpoint: String,
    parameters: String,
    status: u16,
    rows: u64,
}

/// `GET /api/v1/audit`: the newest calls, newest first (operators only).
pub async fn audit_rows(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(1_000).min(10_000);
    let sql = format!(
        "SELECT time_ms, token_id, role, hospital_scope, method, endpoint, parameters, status, \
         rows FROM {}_audit.audit_log ORDER BY time_ms DESC, request_id LIMIT ?",
        state.database
    );
    match state
        .keeper
        .query(&sql)
        .bind(limit)
        .fetch_all::<AuditRow>()
        .await
    {
        Ok(rows) => {
            let count = rows.len() as u64;
            json_rows(&serde_json::json!({ "calls": rows }), count)
        }
        Err(source) => unavailable(&crate::ServeError::Query {
            what: "audit log",
            source,
        }),
    }
}

/// The reports a caller may read (a hospital: its own patients' only).
async fn listed_backtests(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<backtests::Listed>, Response> {
    let hospital = principal.role.hospital().unwrap_or_default();
    let offset_s = i64::from(state.reporting.utc_offset_minutes) * 60;
    backtests::list(&state.reader, hospital, offset_s)
        .await
        .map_err(|error| unavailable(&error))
}

/// One report the caller may read, or the response saying why not.
async fn stored_backtest(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<backtests::Stored, Response> {
    match backtests::one(&state.reader, id, principal.role.hospital()).await {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => Err(error_body(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such backtest report for you",
        )),
        Err(error) => Err(unavailable(&error)),
    }
}

fn html_rows(body: String, rows: u64) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    response.extensions_mut().insert(Rows(rows));
    response
}

/// `GET /api/v1/backtests`: the stored backtest reports, newest first.
pub async fn backtest_list(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    match listed_backtests(&state, &principal).await {
        Ok(list) => {
            let rows = list.len() as u64;
            json_rows(&serde_json::json!({ "backtests": list }), rows)
        }
        Err(response) => response,
    }
}

/// `GET /api/v1/backtests/{id}`: one report as JSON.
pub async fn backtest_report(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match stored_backtest(&state, &principal, &id).await {
        Ok(stored) => {
            let mut response = (
                [(header::CONTENT_TYPE, "application/json")],
                stored.report_json,
            )
                .into_response();
            response.extensions_mut().insert(Rows(1));
            response
        }
        Err(response) => response,
    }
}

/// `GET /backtests`: the list as a page.
pub async fn backtest_list_page(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    match listed_backtests(&state, &principal).await {
        Ok(list) => {
            let rows = list.len() as u64;
            html_rows(backtests::list_page(&list), rows)
        }
        Err(response) => response,
    }
}

/// `GET /backtests/{id}`: one report as its page.
pub async fn backtest_page(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match stored_backtest(&state, &principal, &id).await {
        Ok(stored) => html_rows(stored.report_html, 1),
        Err(response) => response,
    }
}
