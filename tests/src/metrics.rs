//! Servers' Prometheus metrics as tests read them (`/v1/agent/metrics?format=prometheus`):
//! the value of one gauge on one server, or summed over several.

use crate::cluster::TestCluster;

/// Gauge `name` of server `i` (0 when absent, negative, or the server does not answer).
pub async fn server_gauge(c: &TestCluster, i: usize, name: &str) -> u64 {
    let Ok(r) = c.get(i, "/v1/agent/metrics?format=prometheus").await else {
        return 0;
    };
    let prefix = format!("{name} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v.max(0.0) as u64)
}

/// Gauge `name` summed over `servers`.
pub async fn server_gauge_sum(c: &TestCluster, servers: &[usize], name: &str) -> u64 {
    let mut sum = 0;
    for i in servers {
        sum += server_gauge(c, *i, name).await;
    }
    sum
}
