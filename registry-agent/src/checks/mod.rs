//! Check runners (Consul's `agent/checks`): one tokio task per check, reporting results to
//! a [`CheckNotifier`] (the local state).
//!
//! - [`ttl`]: expires to critical (`TTL expired`) unless a client reports in time.
//! - [`http`], [`tcp`], [`udp`], [`script`], [`grpc`], [`h2ping`]: probes run every
//!   `Interval` (after a random initial stagger), each result passing through the
//!   [`StatusHandler`] thresholds.
//! - [`alias`]: follows the health of another service or node (the local state, or the
//!   catalog through blocking queries) and reports it as its own.
//!
//! Docker and OS-service checks are accepted and kept with the status they were registered
//! with, but not run (logged once at registration).
//! Runners never write to Raft: the local state decides what to sync.

mod alias;
mod alias_remote;
mod grpc;
mod h2ping;
mod http;
mod script;
mod status;
mod tcp;
mod tls;
mod ttl;
mod udp;

pub use alias::{AgentAliasSource, AliasSource, NodeView};
pub use status::StatusHandler;

use parking_lot::Mutex;
use rand::Rng;
use registry_proto::api::{CheckKind, CheckSpec};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Receives check results.
pub trait CheckNotifier: Send + Sync + 'static {
    /// Sets the status and output of check `check_id`.
    fn update_check(&self, check_id: &str, status: &str, output: String);
}

/// Consul's error when a script check is registered while script checks are disabled.
pub const SCRIPTS_DISABLED: &str = "Scripts are disabled on this agent; to enable, configure \
'enable_script_checks' or 'enable_local_script_checks' to true";

/// A random duration in `[0, d)` (Consul's `lib.RandomStagger`).
pub(crate) fn random_stagger(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..nanos))
}

/// Cuts `output` to `max` bytes as Consul's TTL checks do:
/// `<first max bytes> ... (captured <max> of <total> bytes)`.
pub fn truncate_output(output: String, max: usize) -> String {
    let total = output.len();
    if total <= max {
        return output;
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} ... (captured {max} of {total} bytes)", &output[..cut])
}

/// The last `max` bytes of `bytes` as text (Consul reads probe output into a circular
/// buffer of `OutputMaxSize` bytes, which keeps the tail).
pub(crate) fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// An I/O error in Go's words (`connect: connection refused`, `i/o timeout`), as Consul's
/// check outputs show them. `in_connect` prefixes the syscall name for connect errors.
pub(crate) fn go_io_error(e: &std::io::Error, in_connect: bool) -> String {
    use std::io::ErrorKind;
    let syscall = if in_connect { "connect: " } else { "" };
    match e.kind() {
        ErrorKind::ConnectionRefused => format!("{syscall}connection refused"),
        ErrorKind::ConnectionReset => format!("{syscall}connection reset by peer"),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "i/o timeout".to_string(),
        ErrorKind::AddrNotAvailable => format!("{syscall}cannot assign requested address"),
        ErrorKind::PermissionDenied => format!("{syscall}permission denied"),
        _ => {
            let text = e.to_string();
            let text = match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// Keeps the last `max` bytes written.
#[derive(Debug, Default)]
pub(crate) struct TailBuffer {
    buf: Vec<u8>,
    max: usize,
    total: usize,
}

impl TailBuffer {
    pub(crate) fn new(max: usize) -> Self {
        TailBuffer {
            buf: Vec::new(),
            max,
            total: 0,
        }
    }

    pub(crate) fn write(&mut self, data: &[u8]) {
        self.total += data.len();
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.max {
            let excess = self.buf.len() - self.max;
            self.buf.drain(..excess);
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn text(&self) -> String {
        tail_text(&self.buf, self.max)
    }
}

/// An interval probe: one run gives a raw status and an output.
enum Probe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
    Udp(udp::UdpProbe),
    Script(script::ScriptProbe),
    Grpc(grpc::GrpcProbe),
    H2Ping(h2ping::H2PingProbe),
}

impl Probe {
    async fn run(&self) -> (&'static str, String) {
        match self {
            Probe::Http(p) => p.run().await,
            Probe::Tcp(p) => p.run().await,
            Probe::Udp(p) => p.run().await,
            Probe::Script(p) => p.run().await,
            Probe::Grpc(p) => p.run().await,
            Probe::H2Ping(p) => p.run().await,
        }
    }
}

/// Runs `probe` every `interval` after a random initial stagger, forever.
async fn run_interval(
    id: String,
    interval: Duration,
    probe: Probe,
    mut handler: StatusHandler,
    notifier: Arc<dyn CheckNotifier>,
) {
    tokio::time::sleep(random_stagger(interval)).await;
    loop {
        let (result, output) = probe.run().await;
        let reported = handler.observe(result);
        tracing::debug!(check = %id, result, reported = ?reported, "check ran");
        if let Some(st) = reported {
            notifier.update_check(&id, st, output);
        }
        tokio::time::sleep(interval).await;
    }
}

struct TtlHandle {
    tx: mpsc::UnboundedSender<String>,
    output_max_size: usize,
}

/// A running check; dropping it stops the task.
struct Runner {
    task: JoinHandle<()>,
    ttl: Option<TtlHandle>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running checks of this agent, by check ID.
pub struct CheckRunners {
    notifier: Arc<dyn CheckNotifier>,
    enable_script_checks: bool,
    alias: Option<Arc<dyn AliasSource>>,
    running: Mutex<HashMap<String, Runner>>,
}

impl std::fmt::Debug for CheckRunners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRunners")
            .field("running", &self.running.lock().len())
            .finish_non_exhaustive()
    }
}

impl CheckRunners {
    /// Runners reporting to `notifier`.
    pub fn new(notifier: Arc<dyn CheckNotifier>, enable_script_checks: bool) -> Self {
        CheckRunners {
            notifier,
            enable_script_checks,
            alias: None,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Lets alias checks run, reading their targets from `source`.
    pub fn with_alias_source(mut self, source: Arc<dyn AliasSource>) -> Self {
        self.alias = Some(source);
        self
    }

    /// Whether this agent accepts `spec` (script checks need `enable_script_checks`).
    pub fn admit(&self, spec: &CheckSpec) -> Result<(), String> {
        match &spec.kind {
            CheckKind::Script {
                docker_container_id,
                ..
            } if docker_container_id.is_empty() && !self.enable_script_checks => {
                Err(SCRIPTS_DISABLED.to_string())
            }
            _ => Ok(()),
        }
    }

    /// Starts (or restarts) the runner of `spec`. Must be called inside a tokio runtime.
    pub fn start(&self, spec: &CheckSpec) {
        let id = spec.check_id().to_string();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(check = %id, "no async runtime: check not started");
            return;
        };
        let notifier = self.notifier.clone();
        let handler = StatusHandler::new(
            spec.success_before_passing,
            spec.failures_before_warning,
            spec.failures_before_critical,
        );
        let probe = match &spec.kind {
            CheckKind::Ttl => {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = rt.spawn(ttl::run(id.clone(), spec.ttl, rx, notifier));
                let runner = Runner {
                    task,
                    ttl: Some(TtlHandle {
                        tx,
                        output_max_size: spec.output_max_size,
                    }),
                };
                tracing::debug!(check = %id, ttl = ?spec.ttl, "TTL check started");
                self.running.lock().insert(id, runner);
                return;
            }
            CheckKind::Alias { node, service } if self.alias.is_some() => {
                let Some(source) = self.alias.clone() else {
                    return;
                };
                // Stop the old runner first, so that two never report for one check.
                self.stop(&id);
                let task = rt.spawn(alias::run(
                    id.clone(),
                    node.clone(),
                    service.clone(),
                    source,
                    notifier,
                ));
                tracing::debug!(check = %id, node = %node, service = %service, "alias check started");
                self.running.lock().insert(id, Runner { task, ttl: None });
                return;
            }
            CheckKind::Http { .. } => http::HttpProbe::new(spec).map(Probe::Http),
            CheckKind::Tcp { .. } => tcp::TcpProbe::new(spec).map(Probe::Tcp),
            CheckKind::Udp { .. } => udp::UdpProbe::new(spec).map(Probe::Udp),
            CheckKind::Grpc { .. } => grpc::GrpcProbe::new(spec).map(Probe::Grpc),
            CheckKind::H2Ping { .. } => h2ping::H2PingProbe::new(spec).map(Probe::H2Ping),
            CheckKind::Script {
                docker_container_id,
                ..
            } if docker_container_id.is_empty() => {
                script::ScriptProbe::new(spec).map(Probe::Script)
            }
            other => {
                tracing::warn!(
                    check = %id,
                    kind = other.type_name(),
                    "check type is not run by this agent; it keeps its registered status"
                );
                self.stop(&id);
                return;
            }
        };
        let probe = match probe {
            Ok(p) => p,
            Err(msg) => {
                tracing::warn!(check = %id, error = %msg, "check cannot run");
                self.stop(&id);
                self.notifier
                    .update_check(&id, registry_proto::model::status::CRITICAL, msg);
                return;
            }
        };
        tracing::debug!(check = %id, kind = spec.kind.type_name(), interval = ?spec.interval, "check started");
        let task = rt.spawn(run_interval(
            id.clone(),
            spec.interval,
            probe,
            handler,
            notifier,
        ));
        self.running.lock().insert(id, Runner { task, ttl: None });
    }

    /// Stops the runner of check `id`, if any.
    pub fn stop(&self, id: &str) {
        let removed = self.running.lock().remove(id);
        if removed.is_some() {
            tracing::debug!(check = %id, "check stopped");
        }
    }

    /// Stops every runner.
    pub fn stop_all(&self) {
        let all: Vec<Runner> = self.running.lock().drain().map(|(_, r)| r).collect();
        drop(all);
    }

    /// Renews TTL check `id` with `output` (cut to the check's `OutputMaxSize`); returns
    /// the output to record, or `None` when `id` is not a running TTL check.
    pub fn ttl_update(&self, id: &str, output: String) -> Option<String> {
        let running = self.running.lock();
        let ttl = running.get(id)?.ttl.as_ref()?;
        let output = truncate_output(output, ttl.output_max_size);
        // The task only ends when the runner is dropped, so the send cannot fail here.
        let _ = ttl.tx.send(output.clone());
        Some(output)
    }

    /// Whether a runner exists for `id`.
    pub fn is_running(&self, id: &str) -> bool {
        self.running.lock().contains_key(id)
    }

    /// Whether `id` is a TTL check.
    pub fn is_ttl(&self, id: &str) -> bool {
        self.running.lock().get(id).is_some_and(|r| r.ttl.is_some())
    }
}

impl Drop for CheckRunners {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A notifier that records every update, for runner tests.

    use super::CheckNotifier;
    use parking_lot::Mutex;

    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub(crate) updates: Mutex<Vec<(String, String, String)>>,
    }

    impl Recorder {
        pub(crate) fn take(&self) -> Vec<(String, String, String)> {
            std::mem::take(&mut *self.updates.lock())
        }
    }

    impl CheckNotifier for Recorder {
        fn update_check(&self, check_id: &str, status: &str, output: String) {
            self.updates
                .lock()
                .push((check_id.to_string(), status.to_string(), output));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn truncation() {
        assert_eq!(truncate_output("short".into(), 10), "short");
        assert_eq!(
            truncate_output("abcdefghij".into(), 4),
            "abcd ... (captured 4 of 10 bytes)"
        );
        // Never splits a character.
        assert_eq!(
            truncate_output("ééé".into(), 3),
            "é ... (captured 3 of 6 bytes)"
        );
        let mut t = TailBuffer::new(4);
        t.write(b"abc");
        t.write(b"defg");
        assert_eq!(t.text(), "defg");
        assert_eq!(t.total(), 7);
    }
}
