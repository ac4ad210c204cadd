//! The agent's log stream for `GET /v1/agent/monitor`: the process's log subscriber publishes
//! each formatted line here while somebody listens, and every monitor request subscribes.
//!
//! The hub is process-wide because the log subscriber is (`tracing` has one global
//! dispatcher): formatting costs nothing while no monitor is attached.

use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// Lines a slow monitor may fall behind before it loses the oldest ones.
const BACKLOG: usize = 512;

/// A log level, ordered from most to least verbose (hclog's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `TRACE`.
    Trace,
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARN`.
    Warn,
    /// `ERROR`.
    Error,
    /// `OFF`: nothing.
    Off,
}

impl Level {
    /// Parses a level as Consul's `logging.ValidateLogLevel` does (case-insensitive `trace`,
    /// `debug`, `info`, `warn`, `error`, `off`).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(Level::Trace),
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            "off" => Some(Level::Off),
            _ => None,
        }
    }
}

/// One log line, in both of Consul's shapes.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// `2006-01-02T15:04:05.000Z [INFO]  target: message: key=value`.
    pub text: String,
    /// The same as one JSON object (`@level`, `@message`, `@module`, `@timestamp`, fields).
    pub json: String,
}

/// The publishing side and the subscriptions.
#[derive(Debug)]
pub struct LogHub {
    tx: broadcast::Sender<Arc<LogLine>>,
}

impl LogHub {
    /// Whether any monitor listens (the subscriber formats nothing otherwise).
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends a line to the monitors.
    pub fn publish(&self, line: LogLine) {
        let _ = self.tx.send(Arc::new(line));
    }

    /// A new monitor's receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.tx.subscribe()
    }
}

/// The process's hub.
pub fn hub() -> &'static LogHub {
    static HUB: OnceLock<LogHub> = OnceLock::new();
    HUB.get_or_init(|| LogHub {
        tx: broadcast::channel(BACKLOG).0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_consul_validates_them() {
        assert_eq!(Level::parse("INFO"), Some(Level::Info));
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("Off"), Some(Level::Off));
        assert_eq!(Level::parse("warning"), None);
        assert_eq!(Level::parse("verbose"), None);
        assert!(Level::Debug < Level::Info);
    }
}
