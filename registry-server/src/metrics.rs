//! Metrics: one Prometheus recorder for the process, rendered at
//! `/v1/agent/metrics?format=prometheus`, and Consul's go-metrics JSON summary at
//! `/v1/agent/metrics`. Names are Consul's (`consul_raft_apply`, `consul_kvs_apply`,
//! `consul_api_http{method,path}`, ...) so existing dashboards and alerts keep working; the
//! product's own are under `registry_`. Timers are in milliseconds, as Consul's are.
//!
//! What records what:
//! - the write path ([`command_timer`]): `consul_raft_apply`, `consul_raft_commitTime` and the
//!   endpoint timer of the command (`consul_kvs_apply`, `consul_txn_apply`,
//!   `consul_catalog_register`/`deregister`, `consul_session_apply`);
//! - the state machine: `consul_raft_fsm_apply`;
//! - reads: `consul_rpc_query`, `consul_rpc_queries_blocking`;
//! - the HTTP router ([`http_timer`]): `consul_api_http` by method and route;
//! - [`spawn_sampler`], every second: `consul_raft_state_leader` (a counter of terms led, as
//!   in Consul), `registry_raft_is_leader`, `consul_raft_leader_lastContact`, the runtime
//!   gauges and, every 10 s on the leader, `consul_autopilot_healthy` and
//!   `consul_autopilot_failure_tolerance`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use registry_proto::command::Command;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static STARTED: OnceLock<Instant> = OnceLock::new();
static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

mod sinks;
mod telemetry;
pub use sinks::{spawn as spawn_push_sinks, PushSinks};
pub use telemetry::Telemetry;

/// Sets the `telemetry { }` settings; call before [`install`] (the first call wins).
pub fn configure(telemetry: Telemetry) {
    let _ = TELEMETRY.set(telemetry);
}

/// Environment switch for measuring the cost of metrics (`benches/metrics-overhead.sh`):
/// `REGISTRY_METRICS=off` installs no recorder and skips the timers and the sampler.
pub const SWITCH_ENV: &str = "REGISTRY_METRICS";

/// Installs the process-wide recorder (idempotent).
pub fn install() {
    STARTED.get_or_init(Instant::now);
    HANDLE.get_or_init(|| {
        if std::env::var(SWITCH_ENV).is_ok_and(|v| v == "off") {
            tracing::warn!("metrics off ({SWITCH_ENV}=off)");
            return None;
        }
        let retention = TELEMETRY.get().map_or(Duration::ZERO, |t| t.retention);
        let mut builder = PrometheusBuilder::new();
        if !retention.is_zero() {
            builder = builder.idle_timeout(metrics_util::MetricKindMask::ALL, Some(retention));
        }
        builder.install_recorder().ok()
    });
}

/// Whether a recorder is installed (false before [`install`] and with metrics off).
pub fn enabled() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

/// The current metrics in the Prometheus text exposition format.
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(h)) => match TELEMETRY.get() {
            Some(t) => t.apply(&h.render()),
            None => h.render(),
        },
        _ => String::new(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The endpoint timer Consul records for a write (`consul.kvs.apply`, ...), if any.
pub fn command_metric(cmd: &Command) -> Option<&'static str> {
    Some(match cmd {
        Command::Register(_) => "consul_catalog_register",
        Command::Deregister(_) => "consul_catalog_deregister",
        Command::KvSet { .. }
        | Command::KvCas { .. }
        | Command::KvDelete { .. }
        | Command::KvDeleteCas { .. }
        | Command::KvDeleteTree { .. }
        | Command::KvLock { .. }
        | Command::KvUnlock { .. } => "consul_kvs_apply",
        Command::Txn(_) => "consul_txn_apply",
        Command::SessionCreate(_) | Command::SessionDestroy { .. } => "consul_session_apply",
        _ => return None,
    })
}

/// A metric handle resolved on first use, so that the hot paths record without looking the
/// name up in the recorder's registry. Only resolved once the recorder is installed (the
/// callers check [`enabled`] first).
pub struct Cached<T>(OnceLock<T>, fn() -> T);

impl<T> Cached<T> {
    /// A handle made by `make` on first use.
    pub const fn new(make: fn() -> T) -> Self {
        Cached(OnceLock::new(), make)
    }

    /// The handle.
    pub fn get(&self) -> &T {
        self.0.get_or_init(self.1)
    }
}

/// `consul_raft_apply`.
pub static RAFT_APPLY: Cached<metrics::Counter> =
    Cached::new(|| metrics::counter!("consul_raft_apply"));
/// `consul_raft_fsm_apply`.
pub static FSM_APPLY: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_raft_fsm_apply"));
/// `consul_rpc_query`.
pub static RPC_QUERY: Cached<metrics::Counter> =
    Cached::new(|| metrics::counter!("consul_rpc_query"));
static COMMIT_TIME: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_raft_commitTime"));
static CATALOG_REGISTER: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_catalog_register"));
static CATALOG_DEREGISTER: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_catalog_deregister"));
static KVS_APPLY: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_kvs_apply"));
static TXN_APPLY: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_txn_apply"));
static SESSION_APPLY: Cached<metrics::Histogram> =
    Cached::new(|| metrics::histogram!("consul_session_apply"));

/// Records one write's timers: the command's endpoint timer and `consul_raft_commitTime`.
pub fn command_timer(name: Option<&'static str>, started: Instant) {
    if !enabled() {
        return;
    }
    let elapsed = ms(started.elapsed());
    COMMIT_TIME.get().record(elapsed);
    let handle = match name {
        None => return,
        Some("consul_catalog_register") => CATALOG_REGISTER.get(),
        Some("consul_catalog_deregister") => CATALOG_DEREGISTER.get(),
        Some("consul_kvs_apply") => KVS_APPLY.get(),
        Some("consul_txn_apply") => TXN_APPLY.get(),
        Some("consul_session_apply") => SESSION_APPLY.get(),
        Some(other) => {
            metrics::histogram!(other).record(elapsed);
            return;
        }
    };
    handle.record(elapsed);
}

/// `consul_api_http` handles by route pattern, one per common method (GET, PUT, POST,
/// DELETE, other), so that a request records after one read-locked map lookup and no
/// allocation.
type HttpHandles = [Option<metrics::Histogram>; 5];
static HTTP: OnceLock<parking_lot::RwLock<std::collections::HashMap<String, HttpHandles>>> =
    OnceLock::new();

fn method_slot(method: &axum::http::Method) -> usize {
    match *method {
        axum::http::Method::GET => 0,
        axum::http::Method::PUT => 1,
        axum::http::Method::POST => 2,
        axum::http::Method::DELETE => 3,
        _ => 4,
    }
}

fn http_histogram(method: &axum::http::Method, pattern: &str) -> metrics::Histogram {
    let map = HTTP.get_or_init(Default::default);
    let slot = method_slot(method);
    if let Some(h) = map.read().get(pattern).and_then(|hs| hs[slot].clone()) {
        return h;
    }
    let h = metrics::histogram!(
        "consul_api_http",
        "method" => method.as_str().to_string(),
        "path" => path_label(pattern)
    );
    if slot < 4 {
        map.write().entry(pattern.to_string()).or_default()[slot] = Some(h.clone());
    }
    h
}

/// Consul's `path` label of `consul.api.http`: the route's pattern up to its first
/// parameter, `/` replaced by `_` (`/v1/kv/{*key}` -> `v1_kv_`).
pub fn path_label(pattern: &str) -> String {
    let fixed = pattern.split('{').next().unwrap_or(pattern);
    fixed.trim_start_matches('/').replace('/', "_")
}

/// Middleware timing every routed request as `consul_api_http{method, path}`.
pub async fn http_timer(req: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(req).await;
    }
    let timer = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| http_histogram(req.method(), p.as_str()));
    let started = Instant::now();
    let resp = next.run(req).await;
    if let Some(timer) = timer {
        timer.record(ms(started.elapsed()));
    }
    resp
}

/// Resident and virtual memory of this process in bytes (`/proc/self/statm`).
fn memory() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut it = statm.split_whitespace();
    let virt: u64 = it.next()?.parse().ok()?;
    let rss: u64 = it.next()?.parse().ok()?;
    Some((rss * 4096, virt * 4096))
}

/// The runtime gauges: memory and live tasks.
fn sample_runtime() {
    if let Some((rss, virt)) = memory() {
        metrics::gauge!("consul_runtime_alloc_bytes").set(rss as f64);
        metrics::gauge!("consul_runtime_sys_bytes").set(virt as f64);
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    metrics::gauge!("consul_runtime_num_goroutines").set(tasks as f64);
}

/// A client agent's sampler (no Raft): the runtime gauges once a second.
pub fn spawn_runtime_sampler() {
    if !enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            sample_runtime();
        }
    });
}

/// Consul's `staleCounterThreshold`: an answer from a server that last heard from a leader
/// longer ago than this counts in `consul_dns_stale_queries`.
const STALE_THRESHOLD_MS: u64 = 5_000;

/// Whether this server's state lags by more than [`STALE_THRESHOLD_MS`] (set by the
/// sampler once a second; always false on the leader).
static DNS_STALE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static DNS_STALE_QUERIES: Cached<metrics::Counter> =
    Cached::new(|| metrics::counter!("consul_dns_stale_queries"));

/// Counts one DNS answer in `consul_dns_stale_queries` if this server's state is stale (an
/// atomic load when it is not).
pub fn dns_answered() {
    if DNS_STALE.load(std::sync::atomic::Ordering::Relaxed) {
        DNS_STALE_QUERIES.get().increment(1);
    }
}

/// Samples the gauges that have no event of their own, once a second until the runtime
/// stops. `consul_runtime_alloc_bytes` is the resident set and `consul_runtime_sys_bytes`
/// the virtual size; `consul_runtime_num_goroutines` counts live tokio tasks.
pub fn spawn_sampler(
    raft: crate::raft::RaftHandle,
    autopilot: std::sync::Arc<crate::leader::autopilot::Autopilot>,
) {
    if !enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut led_term = None;
        let mut autopilot_at: Option<Instant> = None;
        loop {
            tick.tick().await;
            sample_runtime();
            // Consul counts a DNS answer as stale when the server it came from last heard
            // from a leader more than 5 s ago.
            DNS_STALE.store(
                raft.last_contact_ms() > STALE_THRESHOLD_MS,
                std::sync::atomic::Ordering::Relaxed,
            );
            let (leader, term, quorum_ack) = {
                let m = raft.metrics();
                let m = m.borrow();
                (
                    m.state.is_leader(),
                    m.current_term,
                    m.millis_since_quorum_ack,
                )
            };
            metrics::gauge!("registry_raft_is_leader").set(if leader { 1.0 } else { 0.0 });
            if leader && led_term != Some(term) {
                led_term = Some(term);
                metrics::counter!("consul_raft_state_leader").increment(1);
            }
            if !leader {
                led_term = None;
                continue;
            }
            if let Some(ack) = quorum_ack {
                metrics::histogram!("consul_raft_leader_lastContact").record(ack as f64);
            }
            if autopilot_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                autopilot_at = Some(Instant::now());
                if let Ok(h) = autopilot.health().await {
                    metrics::gauge!("consul_autopilot_healthy").set(if h.healthy {
                        1.0
                    } else {
                        0.0
                    });
                    metrics::gauge!("consul_autopilot_failure_tolerance")
                        .set(h.failure_tolerance as f64);
                }
            }
        }
    });
}

/// Increments a counter when metrics are on (rare events: member changes).
pub fn increment(name: &'static str) {
    if enabled() {
        metrics::counter!(name).increment(1);
    }
}

/// Records a timer (milliseconds since `started`) when metrics are on: for the rare events
/// (snapshots, restores) where a name lookup does not matter.
pub fn time_since(name: &'static str, started: Instant) {
    if enabled() {
        metrics::histogram!(name).record(ms(started.elapsed()));
    }
}

/// The DNS query timers (`consul_dns_domain_query`, `consul_dns_ptr_query`), resolved once
/// per DNS worker so that a query records without a name lookup; None with metrics off.
pub fn dns_timers() -> Option<(metrics::Histogram, metrics::Histogram)> {
    enabled().then(|| {
        (
            metrics::histogram!("consul_dns_domain_query"),
            metrics::histogram!("consul_dns_ptr_query"),
        )
    })
}

/// Consul's dotted name of a Prometheus name: `consul_raft_apply` -> `consul.raft.apply`.
/// The segments that carry an underscore in Consul keep it.
pub fn dotted(name: &str) -> String {
    const KEEP: &[&str] = &[
        "alloc_bytes",
        "sys_bytes",
        "num_goroutines",
        "queries_blocking",
        "failure_tolerance",
        "domain_query",
        "ptr_query",
        "stale_queries",
        "session_ttl",
        "is_leader",
    ];
    let mut out = name.replace('_', ".");
    for k in KEEP {
        out = out.replace(&k.replace('_', "."), k);
    }
    out
}

/// One sample line: base name, labels, value.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            for pair in split_labels(body) {
                let (k, v) = pair.split_once('=')?;
                let v = v
                    .trim_matches('"')
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\");
                labels.insert(k.to_string(), v);
            }
            (name, labels)
        }
    };
    Some((name, labels, value))
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        out.push(&body[start..]);
    }
    out
}

#[derive(Default)]
struct Sample {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
}

fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<String, Value>>(),
    )
}

/// Consul's go-metrics JSON (`Timestamp`, `Gauges`, `Points`, `Counters`, `Samples`) built
/// from the Prometheus text. Values are cumulative since the agent started (the Prometheus
/// recorder's), not go-metrics' 10-second intervals: `Rate` is per second over that time.
/// Samples (timers) carry `Count`, `Sum`, `Min`, `Max` and `Mean`; `Min`/`Max` are the
/// recorder's extreme quantiles over its recent window; `Stddev` is not kept (0).
pub fn summary(text: &str) -> Value {
    let mut kinds = std::collections::HashMap::new();
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    let mut samples: BTreeMap<(String, Vec<(String, String)>), Sample> = BTreeMap::new();
    let uptime = STARTED
        .get()
        .map(|s| s.elapsed().as_secs_f64())
        .unwrap_or(0.0)
        .max(1.0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(k)) = (it.next(), it.next()) {
                kinds.insert(n.to_string(), k.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, mut labels, v)) = parse_line(line) else {
            continue;
        };
        let (base, part) = if let Some(b) = name.strip_suffix("_sum") {
            (b, "sum")
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, "count")
        } else {
            (name, "value")
        };
        match kinds.get(base).map(String::as_str) {
            Some("summary") | Some("histogram") => {
                let quantile = labels.remove("quantile");
                let key = (
                    dotted(base),
                    labels.into_iter().collect::<Vec<(String, String)>>(),
                );
                let s = samples.entry(key).or_default();
                match (part, quantile.as_deref()) {
                    ("sum", _) => s.sum = v,
                    ("count", _) => s.count = v,
                    (_, Some("0")) => s.min = v,
                    (_, Some("1")) => s.max = v,
                    _ => {}
                }
            }
            Some("counter") => counters.push(json!({
                "Name": dotted(base), "Count": v, "Rate": v / uptime, "Sum": v,
                "Min": 1, "Max": 1, "Mean": 1, "Stddev": 0, "Labels": labels_json(&labels),
            })),
            _ => gauges.push(json!({
                "Name": dotted(base), "Value": v, "Labels": labels_json(&labels),
            })),
        }
    }
    let samples: Vec<Value> = samples
        .into_iter()
        .map(|((name, labels), s)| {
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            json!({
                "Name": name, "Count": s.count, "Rate": s.sum / uptime, "Sum": s.sum,
                "Min": s.min, "Max": s.max,
                "Mean": if s.count > 0.0 { s.sum / s.count } else { 0.0 },
                "Stddev": 0, "Labels": labels_json(&labels),
            })
        })
        .collect();
    json!({
        "Timestamp": go_time(SystemTime::now()),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    })
}

/// go-metrics' timestamp format: `2017-08-08 02:55:10 +0000 UTC`.
fn go_time(t: SystemTime) -> String {
    let s = crate::leader::autopilot::rfc3339_utc(t);
    format!("{} +0000 UTC", s.trim_end_matches('Z').replace('T', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_becomes_go_metrics_json() {
        let text = "# TYPE consul_raft_apply counter\nconsul_raft_apply 4\n\
            # TYPE consul_runtime_alloc_bytes gauge\nconsul_runtime_alloc_bytes 1024\n\
            # TYPE consul_api_http summary\n\
            consul_api_http{method=\"GET\",path=\"v1_kv_\",quantile=\"0\"} 0.5\n\
            consul_api_http{method=\"GET\",path=\"v1_kv_\",quantile=\"0.5\"} 1\n\
            consul_api_http{method=\"GET\",path=\"v1_kv_\",quantile=\"1\"} 3\n\
            consul_api_http_sum{method=\"GET\",path=\"v1_kv_\"} 6\n\
            consul_api_http_count{method=\"GET\",path=\"v1_kv_\"} 4\n";
        let v = summary(text);
        assert_eq!(v["Counters"][0]["Name"], "consul.raft.apply");
        assert_eq!(v["Counters"][0]["Count"], 4.0);
        assert_eq!(v["Gauges"][0]["Name"], "consul.runtime.alloc_bytes");
        let s = &v["Samples"][0];
        assert_eq!(s["Name"], "consul.api.http");
        assert_eq!(s["Labels"], json!({"method": "GET", "path": "v1_kv_"}));
        assert_eq!((&s["Count"], &s["Sum"]), (&json!(4.0), &json!(6.0)));
        assert_eq!(
            (&s["Min"], &s["Max"], &s["Mean"]),
            (&json!(0.5), &json!(3.0), &json!(1.5))
        );
        let ts = v["Timestamp"].as_str().unwrap();
        assert!(ts.ends_with(" +0000 UTC") && ts.len() == 29, "{ts}");
    }

    #[test]
    fn path_labels_are_consuls() {
        assert_eq!(path_label("/v1/kv/{*key}"), "v1_kv_");
        assert_eq!(path_label("/v1/agent/self"), "v1_agent_self");
        assert_eq!(
            path_label("/v1/health/service/{name}"),
            "v1_health_service_"
        );
        assert_eq!(
            dotted("consul_rpc_queries_blocking"),
            "consul.rpc.queries_blocking"
        );
        assert_eq!(dotted("registry_raft_is_leader"), "registry.raft.is_leader");
        assert_eq!(
            split_labels("a=\"x,y\",b=\"z\""),
            vec!["a=\"x,y\"", "b=\"z\""]
        );
    }
}
