//! `vigil serve`: the health commission's dashboard and the JSON API under `/api/v1/`. Like
//! every stage it meets the others only through ClickHouse: it reads the metric views with a
//! read-only user and computes nothing the SQL does not. The page and its script are embedded
//! in the binary (no CDN, nothing fetched at run time).
//!
//! `queries.rs` holds the SQL and the rows it returns; this file the routes and the server.

mod config;
mod error;
mod queries;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clickhouse::Client;
use tracing::{info, warn};
use vigil_runtime::config::ClickHouseConfig;
use vigil_runtime::Shutdown;

pub use config::ServeConfig;
pub use error::ServeError;
pub use queries::Overview;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

struct AppState {
    client: Client,
    utc_offset_minutes: i32,
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
    let state = Arc::new(AppState {
        client: vigil_runtime::clickhouse::client(&reader),
        utc_offset_minutes,
    });
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
    axum::serve(listener, router(state))
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
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn overview(State(state): State<Arc<AppState>>) -> Response {
    match queries::overview(&state.client, state.utc_offset_minutes).await {
        Ok(overview) => Json(overview).into_response(),
        Err(error) => {
            warn!(%error, "The overview query failed.");
            let body =
                serde_json::json!({ "error": "the figures could not be read from ClickHouse" });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
