//! Logging setup: `tracing` with the agent's `-log-level` (or `RUST_LOG`, if set) and plain or
//! JSON lines on standard output, as Consul logs.

use crate::config::LogLevel;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call is a no-op.
pub fn init(level: LogLevel, json: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(directives(level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The filter for a level: chatty dependencies stay at `info` unless `trace` is asked for.
pub fn directives(level: LogLevel) -> String {
    let base = level.as_filter();
    match level {
        LogLevel::Trace => base.to_string(),
        LogLevel::Debug => {
            format!("{base},hyper=info,h2=info,tower=info,reqwest=info,sled=info,openraft=info")
        }
        _ => base.to_string(),
    }
}
