//! Logs: human-readable in a terminal, one JSON object per line with `LOG_FORMAT=json`.
//!
//! Secrets are kept out by construction: request bodies are never logged, URLs are masked with
//! [`crate::config::mask_url`], and services log ids, not passwords, tokens or hashes.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. Calling it twice
/// is harmless (the second call keeps the first subscriber), which tests rely on.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    // Already initialised (tests spawn several apps in one process): keep the first.
    let _ = result;
}

/// For command-line tools: human-readable logs on stderr (stdout carries the tool's output, e.g.
/// JSON reports), `warn` unless `RUST_LOG` says otherwise.
pub fn init_for_cli() {
    // lapin logs at ERROR what it also returns as an error, which the CLI reports itself: e.g. the
    // passive declare of a queue that does not exist yet, which `mfe migrate dashboard` asks about
    // every few seconds.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,lapin=off"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
        .try_init();
}
