//! `vigil serve`: the health commission's dashboard and the JSON API under `/api/v1/`. Like
//! every stage it meets the others only through ClickHouse: it reads the metric views with a
//! read-only user and computes nothing the SQL does not. The page and its script are embedded
//! in the binary (no CDN, nothing fetched at run time).
//!
//! One task reads the figures every `refresh` for all viewers (`live.rs`); the API serves the
//! latest reading and pushes each new one to open pages as server-sent events. `queries.rs`
//! holds the SQL's runners and the rows it returns; this file the routes and the server.

mod config;
pub mod drilldown;
mod error;
mod live;
mod queries;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use tokio::sync::watch;
use tracing::info;
use vigil_runtime::config::ClickHouseConfig;
use vigil_runtime::Shutdown;

pub use config::ServeConfig;
pub use error::ServeError;
pub use live::Reading;
pub use queries::Overview;

/// One reading of every figure of the overview, as the refresh does it (benchmarks use it).
pub async fn read_overview(
    client: &clickhouse::Client,
    utc_offset_minutes: i32,
) -> Result<Overview, ServeError> {
    queries::overview(client, utc_offset_minutes).await
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

struct AppState {
    latest: watch::Receiver<Reading>,
}

/// Serves until shutdown is requested.
pub async fn run(
    config: &ServeConfig,
    clickhouse: &ClickHouseConfig,
    utc_offset_minutes: i32,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let mut reader = clickhouse.clone();
    if !config.user.is_empty() {
        reader.user = config.user.clone();
        reader.password = config.password.clone();
    }
    let client = vigil_runtime::clickhouse::client(&reader);
    let latest = live::start(client, utc_offset_minutes, config.refresh, shutdown.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen.clone(),
            source,
        })?;
    let address = listener
        .local_addr()
        .map_or_else(|_| config.listen.clone(), |a| a.to_string());
    info!(url = %format!("http://{address}/"), "Dashboard serving.");
    axum::serve(listener, router(Arc::new(AppState { latest })))
        .with_graceful_shutdown(async move { shutdown.requested().await })
        .await
        .map_err(|source| ServeError::Serve { source })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/drilldown", get(drill))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn overview(State(state): State<Arc<AppState>>) -> Response {
    let reading = state.latest.borrow().clone();
    match reading.json {
        Some(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        None => {
            let body = r#"{"error":"the figures could not be read from ClickHouse yet"}"#;
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    }
}

/// One level of the drill-down region → hospital → department (see `drilldown`).
async fn drill(
    State(state): State<Arc<AppState>>,
    Query(query): Query<drilldown::DrillQuery>,
) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let Some(overview) = state.latest.borrow().overview.clone() else {
        let body = r#"{"error":"the figures could not be read from ClickHouse yet"}"#;
        return (StatusCode::SERVICE_UNAVAILABLE, json, body).into_response();
    };
    match drilldown::drill(&overview.drilldown, &query) {
        Ok(drill) => match serde_json::to_string(&drill) {
            Ok(body) => (json, body).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Err(reason) => {
            let body = serde_json::json!({ "error": reason }).to_string();
            (StatusCode::BAD_REQUEST, json, body).into_response()
        }
    }
}

/// Server-sent events: the current figures at once (unless the client's `Last-Event-ID` says it
/// has them), then every new reading. Browsers reconnect by themselves and send that header.
async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut latest = state.latest.clone();
    let current = latest.borrow_and_update().clone();
    let first = (current.json.is_some() && seen != Some(current.version)).then_some(current);
    let events =
        futures_util::stream::unfold((first, latest), |(pending, mut latest)| async move {
            let reading = match pending {
                Some(reading) => reading,
                None => {
                    latest.changed().await.ok()?;
                    latest.borrow_and_update().clone()
                }
            };
            let event = Event::default()
                .id(reading.version.to_string())
                .event("overview")
                .data(reading.json.as_deref().unwrap_or("{}"));
            Some((Ok(event), (None, latest)))
        });
    Sse::new(events).keep_alive(KeepAlive::default())
}
