//! Structured logs through `tracing`. `RUST_LOG` filters them (default: info for Vigil, warn for
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
}
