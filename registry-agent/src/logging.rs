//! Logging setup: `tracing` with the agent's `-log-level` (or `RUST_LOG`, if set) and plain or
//! JSON lines on standard output, as Consul logs; every line also goes to the monitors of
//! `/v1/agent/monitor` while any is attached, to `log_file` (rotated) and to syslog
//! (`enable_syslog`), formatted as Consul's hclog writes them (see [`crate::log_sinks`]).
//! A configuration reload changes the level ([`set_level`]).

use crate::config::LogLevel;
use crate::log_sinks::{LogFileConfig, RotatingFile, Syslog};
use registry_server::monitor::{self, Level, LogLine};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// What the agent's configuration says about logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSetup {
    /// `log_level`.
    pub level: LogLevel,
    /// `log_json`.
    pub json: bool,
    /// `log_file` and its rotation.
    pub file: Option<LogFileConfig>,
    /// `enable_syslog`: the facility code of `syslog_facility`.
    pub syslog_facility: Option<u8>,
}

/// The file and syslog outputs, when configured.
struct Sinks {
    json: bool,
    file: Option<parking_lot::Mutex<RotatingFile>>,
    syslog: Option<Syslog>,
}

static SINKS: OnceLock<Sinks> = OnceLock::new();
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber and opens the log file and the syslog socket; a second
/// call is a no-op. Fails, as Consul does at start, when either cannot be opened.
pub fn init(setup: &LogSetup) -> Result<(), String> {
    let file = match &setup.file {
        Some(cfg) => Some(parking_lot::Mutex::new(
            RotatingFile::open(cfg.clone()).map_err(|e| {
                format!(
                    "Failed to setup logging: cannot open log file {}: {e}",
                    cfg.active_path().display()
                )
            })?,
        )),
        None => None,
    };
    let syslog = match setup.syslog_facility {
        Some(facility) => Some(Syslog::connect(facility).map_err(|e| {
            format!(
                "Syslog setup failed: {}: {e}",
                Syslog::socket_path().display()
            )
        })?),
        None => None,
    };
    let _ = SINKS.set(Sinks {
        json: setup.json,
        file,
        syslog,
    });
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(directives(setup.level)),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    let out: Box<dyn Layer<_> + Send + Sync> = if setup.json {
        Box::new(fmt.json())
    } else {
        Box::new(fmt)
    };
    if tracing_subscriber::registry()
        .with(out.and_then(MonitorLayer).with_filter(filter))
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
    Ok(())
}

/// Changes the log level (a configuration reload). `RUST_LOG`, when set, stays in charge.
pub fn set_level(level: LogLevel) {
    if std::env::var("RUST_LOG").is_ok_and(|d| !d.is_empty()) {
        return;
    }
    if let Some(handle) = FILTER.get() {
        let _ = handle.reload(EnvFilter::new(directives(level)));
    }
}

/// Publishes each event to the monitor hub, formatted as Consul's hclog writes it.
struct MonitorLayer;

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name().to_string(), text));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let hub = monitor::hub();
        let sinks = SINKS
            .get()
            .filter(|s| s.file.is_some() || s.syslog.is_some());
        if !hub.active() && sinks.is_none() {
            return;
        }
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::TRACE => Level::Trace,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::INFO => Level::Info,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::ERROR => Level::Error,
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let stamp = timestamp();
        let module = meta.target().replace("::", ".");
        let name = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error | Level::Off => "ERROR",
        };
        let mut text = format!("{stamp} [{name}] {module}: {}", fields.message);
        for (k, v) in &fields.pairs {
            let _ = write!(text, " {k}={v}");
        }
        let mut obj = Map::new();
        obj.insert("@level".into(), name.to_ascii_lowercase().into());
        obj.insert("@message".into(), fields.message.clone().into());
        obj.insert("@module".into(), module.into());
        obj.insert("@timestamp".into(), stamp.into());
        for (k, v) in fields.pairs {
            obj.insert(k, v.into());
        }
        let line = LogLine {
            level,
            text,
            json: Value::Object(obj).to_string(),
        };
        if let Some(sinks) = sinks {
            if let Some(file) = &sinks.file {
                let shown = if sinks.json { &line.json } else { &line.text };
                // A full disk must not take the agent down; the line still reaches stdout.
                let _ = file.lock().write_line(shown);
            }
            if let Some(syslog) = &sinks.syslog {
                syslog.send(level, &line.text);
            }
        }
        if hub.active() {
            hub.publish(line);
        }
    }
}

/// `2006-01-02T15:04:05.000Z` (UTC), computed without a calendar crate.
fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The filter for a level. At `debug` (what `-dev` runs at, as Consul's dev mode does)
/// chatty dependencies stay at `info` and openraft's internals (its storage, engine and
/// replication steps) at `warn`; `trace` (or `RUST_LOG`) asks for everything. At `info`
/// openraft keeps its few info lines (leadership, snapshots, log purges).
pub fn directives(level: LogLevel) -> String {
    let base = level.as_filter();
    match level {
        LogLevel::Trace => base.to_string(),
        LogLevel::Debug => {
            format!("{base},hyper=info,h2=info,tower=info,reqwest=info,sled=info,openraft=warn")
        }
        _ => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
