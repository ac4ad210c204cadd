//! Metrics: one Prometheus recorder for the process, rendered at
//! `/v1/agent/metrics?format=prometheus`. Names follow Consul's (`consul_raft_apply`,
//! `consul_rpc_queries_blocking`, ...) so existing dashboards keep working.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (idempotent).
pub fn install() {
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok());
}

/// The current metrics in the Prometheus text exposition format.
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(h)) => h.render(),
        _ => String::new(),
    }
}

/// Consul's JSON metrics summary (`Gauges`, `Counters`, `Samples`, `Points`) built from the
/// Prometheus text: every sample line becomes a gauge or counter entry.
pub fn summary(text: &str) -> Value {
    let mut kinds = std::collections::HashMap::new();
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
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
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let base = name.split('{').next().unwrap_or(name);
        let v: f64 = value.parse().unwrap_or(0.0);
        let entry = json!({"Name": base.replace('_', "."), "Value": v, "Labels": {}});
        match kinds.get(base).map(String::as_str) {
            Some("counter") => counters
                .push(json!({"Name": base.replace('_', "."), "Count": v, "Sum": v, "Labels": {}})),
            _ => gauges.push(entry),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({"Timestamp": now.to_string(), "Gauges": gauges, "Points": [], "Counters": counters, "Samples": []})
}
