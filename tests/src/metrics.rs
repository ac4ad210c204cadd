//! Servers' Prometheus metrics as tests read them (`/v1/agent/metrics?format=prometheus`):
//! the value of one gauge on one server, or summed over several; and the failover step of
//! the streaming tests, which finds a server by its subscription gauge.

use crate::cluster::TestCluster;
use anyhow::{anyhow, Result};
use std::time::Duration;

/// The servers' gauge of open event streams.
pub const SUBSCRIPTIONS: &str = "registry_rpc_subscriptions";

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

/// Kills (SIGKILL) the one server of `all` that holds a client's event stream, waits for a
/// leader among the others and for the stream to reopen on one of them, and returns the
/// servers left.
pub async fn kill_stream_holder(c: &mut TestCluster, all: &[usize]) -> Result<Vec<usize>> {
    let mut holder = None;
    for &i in all {
        if server_gauge(c, i, SUBSCRIPTIONS).await > 0 {
            holder = Some(i);
        }
    }
    let holder = holder.ok_or_else(|| anyhow!("no server holds the stream"))?;
    eprintln!("stream held by server {holder}; killing it");
    c.kill9(holder);
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != holder).collect();
    c.wait_for_leader_among(&rest, Duration::from_secs(30))
        .await?;
    crate::eventually(
        Duration::from_secs(45),
        "the stream on another server",
        || async { Ok((server_gauge_sum(c, &rest, SUBSCRIPTIONS).await == 1).then_some(())) },
    )
    .await?;
    Ok(rest)
}
