//! `vigil serve`: the health commission's dashboard and the JSON API under `/api/v1/`. Like
//! every stage it meets the others only through ClickHouse and Kafka: it reads the metric views
//! with a read-only user, writes clinicians' acknowledgements to the alert-acks topic, and
//! computes nothing the SQL does not. The page and its script are embedded in the binary (no
//! CDN, nothing fetched at run time).
//!
//! One task reads the figures every `refresh` for all viewers (`live.rs`); the API serves the
//! latest reading and pushes each new one to open pages as server-sent events. Every route
//! declares who may call it (`auth.rs`: bearer tokens with a role) and every call is recorded
//! (`audit.rs`). `queries.rs` holds the dashboard's SQL runners, `metrics.rs` the insurance
//! bureau's outcome metrics, `worklist.rs` the hospitals' alerts; this file the routes.

mod api;
pub mod audit;
pub mod auth;
pub mod backtests;
mod config;
pub mod drilldown;
mod error;
mod live;
pub mod metrics;
mod queries;
mod tls;
pub mod worklist;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};
use vigil_runtime::config::{ClickHouseConfig, KafkaConfig};
use vigil_runtime::time::now_ms;
use vigil_runtime::Shutdown;

use audit::{AuditLog, AuditRecord};
use auth::{Refusal, RoleKind, Tokens};
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
const OPENAPI: &str = include_str!("../assets/openapi.json");

pub use vigil_runtime::time::Reporting;

struct AppState {
    latest: watch::Receiver<Reading>,
    tokens: watch::Receiver<Arc<Tokens>>,
    audit: AuditLog,
    /// Reads the figures (the read-only user).
    reader: clickhouse::Client,
    /// Reads the tokens and the audit log (`<db>_audit`) and writes the audit log.
    keeper: clickhouse::Client,
    database: String,
    acknowledger: worklist::Acknowledger,
    reporting: Reporting,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Anyone: the page's text and the API's description carry no figures.
    Public,
    /// A valid token with one of these roles.
    Roles(&'static [RoleKind]),
}

const DASHBOARD: Access = Access::Roles(&[RoleKind::Commission, RoleKind::Operator]);
const METRICS: Access = Access::Roles(&[
    RoleKind::Commission,
    RoleKind::Insurance,
    RoleKind::Hospital,
    RoleKind::Operator,
]);

/// Backtest reports name patients by pseudonym: not the insurance bureau's; a hospital's own.
const BACKTESTS: Access =
    Access::Roles(&[RoleKind::Commission, RoleKind::Hospital, RoleKind::Operator]);

/// Every route of the API and who may call it: the router takes each route's access from here
/// (a route missing here admits nobody), and a test holds the OpenAPI document to this list.
const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/", Access::Public),
    ("GET", "/api/v1/openapi.json", Access::Public),
    ("GET", "/api/v1/overview", DASHBOARD),
    ("GET", "/api/v1/stream", DASHBOARD),
    ("GET", "/api/v1/drilldown", DASHBOARD),
    ("GET", "/api/v1/metrics", METRICS),
    ("GET", "/api/v1/metrics/{id}", METRICS),
    ("GET", "/api/v1/metrics/{id}/restatements", METRICS),
    (
        "GET",
        "/api/v1/alerts",
        Access::Roles(&[RoleKind::Hospital, RoleKind::Operator]),
    ),
    (
        "POST",
        "/api/v1/alerts/{episode}/ack",
        Access::Roles(&[RoleKind::Hospital]),
    ),
    ("GET", "/api/v1/audit", Access::Roles(&[RoleKind::Operator])),
    ("GET", "/backtests", BACKTESTS),
    ("GET", "/backtests/{id}", BACKTESTS),
    ("GET", "/api/v1/backtests", BACKTESTS),
    ("GET", "/api/v1/backtests/{id}", BACKTESTS),
];

fn access(method: &str, path: &str) -> Access {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Access::Roles(&[]), |(_, _, access)| *access)
}

/// Rows a response carried, for the audit log.
#[derive(Debug, Clone, Copy)]
struct Rows(u64);

/// How long serve waits for its first reading of the figures before it listens.
const FIRST_READING_WAIT: Duration = Duration::from_secs(10);

/// Serves until shutdown is requested.
pub async fn run(
    config: &ServeConfig,
    clickhouse: &ClickHouseConfig,
    kafka: &KafkaConfig,
    reporting: Reporting,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    use vigil_runtime::config::ClickHouseRole;
    let reader = vigil_runtime::clickhouse::client(&clickhouse.as_role(ClickHouseRole::Reader)?);
    // Tokens and the audit log live in <db>_audit, which the read-only users cannot read.
    let keeper =
        vigil_runtime::clickhouse::server_client(&clickhouse.as_role(ClickHouseRole::Writer)?);
    let latest = live::start(
        reader.clone(),
        reporting.utc_offset_minutes,
        config.refresh,
        shutdown.clone(),
    );
    // The first reading comes before the first request, so an API call or a page opened as soon
    // as serve listens gets figures, not a 503; a ClickHouse that does not answer in time leaves
    // the API saying so (503, "not read yet") until it does.
    let mut first_reading = latest.clone();
    if tokio::time::timeout(FIRST_READING_WAIT, first_reading.changed())
        .await
        .is_err()
    {
        warn!("No figures read from ClickHouse yet; serving, and answering 503 until they are.");
    }
    let tokens = watch_tokens(
        keeper.clone(),
        clickhouse.database.clone(),
        config,
        &shutdown,
    )?;
    let state = Arc::new(AppState {
        latest,
        tokens,
        audit: AuditLog::start(
            keeper.clone(),
            &clickhouse.database,
            Duration::from_secs(1),
            shutdown.clone(),
        ),
        reader,
        keeper,
        database: clickhouse.database.clone(),
        acknowledger: worklist::Acknowledger::new(kafka)?,
        reporting,
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
    let stopped = async move { shutdown.requested().await };
    let served = if config.tls_cert_file.is_empty() && config.tls_key_file.is_empty() {
        info!(url = %format!("http://{address}/"), "Dashboard serving.");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stopped)
            .await
    } else {
        let acceptor = tls::acceptor(&config.tls_cert_file, &config.tls_key_file)?;
        let listener = tls::TlsListener::new(listener, acceptor)
            .map_err(|source| ServeError::Serve { source })?;
        info!(url = %format!("https://{address}/"), "Dashboard serving.");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stopped)
            .await
    };
    served.map_err(|source| ServeError::Serve { source })
}

/// The valid tokens, read again every `refresh` (a revocation takes effect within it): those
/// stored in ClickHouse and those of `tokens_file`.
fn watch_tokens(
    client: clickhouse::Client,
    database: String,
    config: &ServeConfig,
    shutdown: &Shutdown,
) -> Result<watch::Receiver<Arc<Tokens>>, ServeError> {
    let file =
        (!config.tokens_file.is_empty()).then(|| std::path::PathBuf::from(&config.tokens_file));
    // A broken file stops the start, not a request later.
    if let Some(path) = &file {
        auth::from_file(path)?;
    }
    let (sender, receiver) = watch::channel(Arc::new(Tokens::default()));
    let (refresh, shutdown) = (config.refresh, shutdown.clone());
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let mut rows = match &file {
                Some(path) => auth::from_file(path).unwrap_or_default(),
                None => Vec::new(),
            };
            match auth::stored(&client, &database).await {
                Ok(stored) => {
                    failing = false;
                    rows.extend(stored);
                    sender.send_replace(Arc::new(Tokens::new(rows)));
                }
                // The tokens read last stay in force meanwhile.
                Err(error) if !failing => {
                    failing = true;
                    warn!(%error, "Reading the API tokens failed; retrying every refresh.");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(refresh) => {}
            }
        }
    });
    Ok(receiver)
}

fn router(state: Arc<AppState>) -> Router {
    let guarded = |method: &str, path: &str, route: MethodRouter<Arc<AppState>>| {
        route.route_layer(middleware::from_fn_with_state(
            (state.clone(), access(method, path)),
            guard,
        ))
    };
    let api = |path: &'static str, route: MethodRouter<Arc<AppState>>| (path, route);
    let routes = [
        api("/", guarded("GET", "/", get(page))),
        api(
            "/api/v1/openapi.json",
            guarded(
                "GET",
                "/api/v1/openapi.json",
                get(|| async { asset("application/json", OPENAPI) }),
            ),
        ),
        api(
            "/api/v1/overview",
            guarded("GET", "/api/v1/overview", get(overview)),
        ),
        api(
            "/api/v1/stream",
            guarded("GET", "/api/v1/stream", get(stream)),
        ),
        api(
            "/api/v1/drilldown",
            guarded("GET", "/api/v1/drilldown", get(drill)),
        ),
        api(
            "/api/v1/metrics",
            guarded("GET", "/api/v1/metrics", get(api::metric_list)),
        ),
        api(
            "/api/v1/metrics/{id}",
            guarded("GET", "/api/v1/metrics/{id}", get(api::metric_cells)),
        ),
        api(
            "/api/v1/metrics/{id}/restatements",
            guarded(
                "GET",
                "/api/v1/metrics/{id}/restatements",
                get(api::metric_restatements),
            ),
        ),
        api(
            "/api/v1/alerts",
            guarded("GET", "/api/v1/alerts", get(api::alerts)),
        ),
        api(
            "/api/v1/alerts/{episode}/ack",
            guarded(
                "POST",
                "/api/v1/alerts/{episode}/ack",
                post(api::acknowledge),
            ),
        ),
        api(
            "/api/v1/audit",
            guarded("GET", "/api/v1/audit", get(api::audit_rows)),
        ),
        api(
            "/backtests",
            guarded("GET", "/backtests", get(api::backtest_list_page)),
        ),
        api(
            "/backtests/{id}",
            guarded("GET", "/backtests/{id}", get(api::backtest_page)),
        ),
        api(
            "/api/v1/backtests",
            guarded("GET", "/api/v1/backtests", get(api::backtest_list)),
        ),
        api(
            "/api/v1/backtests/{id}",
            guarded("GET", "/api/v1/backtests/{id}", get(api::backtest_report)),
        ),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The token a request presents: `Authorization: Bearer …`, or the page's cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("vigil_token=").map(str::to_string))
    })
}

/// The query string as the audit log keeps it: a token given in it is never kept.
fn audited_parameters(query: Option<&str>) -> String {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with("token=") {
                "token=(withheld)"
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn error_body(status: StatusCode, error: &str, reason: &str) -> Response {
    let body = serde_json::json!({ "error": error, "reason": reason }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Authenticates and authorises a request for its route, then records it in the audit log.
async fn guard(
    State((state, access)): State<(Arc<AppState>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    let began = Instant::now();
    let method = request.method().to_string();
    let endpoint = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_string(),
        |p| p.as_str().to_string(),
    );
    let parameters = audited_parameters(request.uri().query());
    let tokens = state.tokens.borrow().clone();
    let who = tokens.authenticate(presented(request.headers()).as_deref());
    let response = match (access, &who) {
        (Access::Roles(_), Err(Refusal::Missing)) => error_body(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
        ),
        (Access::Roles(_), Err(Refusal::Invalid)) => error_body(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not valid",
        ),
        (Access::Roles(allowed), Ok(principal)) if !allowed.contains(&principal.role.kind()) => {
            error_body(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this role may not call this endpoint",
            )
        }
        (_, who) => {
            if let Ok(principal) = who {
                request.extensions_mut().insert(principal.clone());
            }
            next.run(request).await
        }
    };
    let now = now_ms();
    let (token_id, role, scope) = match &who {
        Ok(p) => (
            p.token_id.clone(),
            p.role.name().to_string(),
            p.role.hospital().unwrap_or_default().to_string(),
        ),
        Err(_) => Default::default(),
    };
    state.audit.record(AuditRecord {
        time: (now / 1000).clamp(0, i64::from(u32::MAX)) as u32,
        time_ms: now,
        request_id: audit_id(now),
        token_id,
        role,
        hospital_scope: scope,
        method,
        endpoint,
        parameters,
        status: response.status().as_u16(),
        rows: response.extensions().get::<Rows>().map_or(0, |r| r.0),
        duration_ms: began.elapsed().as_secs_f64() * 1000.0,
    });
    response
}

fn audit_id(now: i64) -> String {
    use rand::RngCore;
    format!("{now:x}-{:08x}", rand::rng().next_u32())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn json_rows(value: &impl serde::Serialize, rows: u64) -> Response {
    let mut response = match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    response.extensions_mut().insert(Rows(rows));
    response
}

fn unavailable(error: &ServeError) -> Response {
    warn!(%error, "An API request failed.");
    error_body(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the figures could not be read from ClickHouse",
    )
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    token: Option<String>,
}

/// The page. Opened with `?token=…` (the link an operator hands out), it keeps the token in a
/// cookie the page's requests carry and reloads without it, so the token leaves the address bar.
async fn page(Query(query): Query<PageQuery>) -> Response {
    match query.token {
        Some(token)
            if token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            let cookie =
                format!("vigil_token={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, "/".to_string()),
                ],
            )
                .into_response()
        }
        Some(_) => error_body(StatusCode::BAD_REQUEST, "bad_request", "not a token"),
        None => asset("text/html; charset=utf-8", INDEX_HTML),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document describes exactly the routes that exist, with the roles each allows.
    #[test]
    fn the_openapi_document_lists_every_route_and_no_other() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let mut documented = Vec::new();
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                documented.push((method.to_uppercase(), path.clone()));
                let roles = operation["x-vigil-roles"].as_array().unwrap();
                let roles: Vec<&str> = roles.iter().map(|r| r.as_str().unwrap()).collect();
                let declared = match access(&method.to_uppercase(), path) {
                    Access::Public => vec!["anyone"],
                    Access::Roles(kinds) => kinds
                        .iter()
                        .map(|k| match k {
                            RoleKind::Commission => "commission",
                            RoleKind::Insurance => "insurance",
                            RoleKind::Hospital => "hospital",
                            RoleKind::Operator => "operator",
                        })
                        .collect(),
                };
                assert_eq!(roles, declared, "{method} {path}");
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn a_token_in_the_address_never_reaches_the_audit_log() {
        assert_eq!(
            audited_parameters(Some("token=vgl_0123_secret&lang=en")),
            "token=(withheld)&lang=en"
        );
        assert_eq!(audited_parameters(None), "");
    }
}
