//! Structured logs through `tracing`, and Prometheus metrics on an HTTP endpoint.
//!
//! Logs: `RUST_LOG` filters them (default: info for Vigil, warn for
//! the rest); `VIGIL_LOG_FORMAT=json` switches to one JSON object per line for log shippers.

use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,vigil=info,vigil_runtime=info,vigil_producers=info,vigil_processors=info,vigil_sinks=info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true);
    let result = if std::env::var("VIGIL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests, `vigil up`) keeps the first subscriber.
    let _ = result;
    install_panic_hook();
}

/// Reports a panic by where it happened, and by its message only when that is a literal: a
/// formatted message (an out-of-bounds slice, say) quotes the data it failed on, and the data
/// could be a patient's identity. Nothing in Vigil should panic on input; this is the last
/// line that keeps one from leaking anything if it does.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(message withheld: it may quote input data)");
        tracing::error!(%location, message, "Vigil panicked; this is a defect, please report it.");
        eprintln!("vigil panicked at {location}: {message}");
    }));
}

/// Serves Prometheus metrics (`GET /metrics`) on `listen` ("host:port"; empty: no endpoint).
/// Stages record counters per batch with bounded labels (stage, hospital, reason, table, rule):
/// `vigil_<what>_<unit>_total`. A taken port is logged and skipped: metrics never stop a stage.
pub fn init_metrics(listen: &str) {
    if listen.trim().is_empty() {
        return;
    }
    let address: std::net::SocketAddr = match listen.parse() {
        Ok(address) => address,
        Err(error) => {
            tracing::warn!(%listen, %error, "telemetry.metrics_listen is not host:port; serving no metrics.");
            return;
        }
    };
    if std::net::TcpListener::bind(address).is_err() {
        tracing::warn!(%address, "The metrics port is taken (another vigil process?); this one serves no metrics.");
        return;
    }
    match metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
    {
        Ok(()) => tracing::info!(%address, "Serving Prometheus metrics at /metrics."),
        Err(error) => {
            tracing::warn!(%error, "Could not start the metrics endpoint; continuing without it.")
        }
    }
}
