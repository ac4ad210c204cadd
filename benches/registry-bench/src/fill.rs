//! Fills a registry through the public API in batches: `PUT /v1/txn` transactions of at most
//! 64 operations, each holding whole nodes (a `Node` set followed by that node's `Service`
//! sets, so no transaction depends on another in flight), or KV sets. Nodes and keys are
//! numbered, so repeated calls with consecutive ranges grow the same catalog in steps.

use crate::http::{parse_addr, Pool};
use crate::stats::emit;
use anyhow::{bail, Result};
use bytes::Bytes;
use clap::Args;
use http::Method;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// Consul's limit on operations per transaction.
const TXN_MAX_OPS: u64 = 64;

#[derive(Args, Debug)]
pub struct FillArgs {
    /// Registry HTTP address (the leader's, to save a forward per transaction).
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub addr: String,
    /// First node number registered (`node-<n>`).
    #[arg(long, default_value_t = 0)]
    pub nodes_from: u64,
    /// One past the last node number registered.
    #[arg(long, default_value_t = 0)]
    pub nodes_to: u64,
    /// Service instances per node.
    #[arg(long, default_value_t = 17)]
    pub per_node: u64,
    /// Distinct service names the instances are spread over (`svc-<n>`).
    #[arg(long, default_value_t = 10_000)]
    pub services: u64,
    /// First KV key number written (`kv/<n>`, zero-padded to 8 digits).
    #[arg(long, default_value_t = 0)]
    pub kv_from: u64,
    /// One past the last KV key number written.
    #[arg(long, default_value_t = 0)]
    pub kv_to: u64,
    /// KV value size in bytes.
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,
    /// Transactions in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Give every node a passing node-level check (`node-ok`), as gossip members have
    /// theirs (the leader's reconciliation walks the nodes that have checks).
    #[arg(long)]
    pub node_check: bool,
    #[arg(long, default_value = "")]
    pub label: String,
}

/// The Service object of instance `j` on node `n` (what a client sends and the catalog
/// stores).
fn service(a: &FillArgs, n: u64, j: u64) -> Value {
    let i = n * a.per_node + j;
    let name = format!("svc-{}", i % a.services.max(1));
    json!({
        "ID": format!("{name}-{i}"),
        "Service": name,
        "Tags": ["v1", "primary"],
        "Address": format!("10.{}.{}.{}", (n / 62500) % 250, (n / 250) % 250, n % 250 + 1),
        "Port": 20000 + j,
        "Meta": {"version": "1.2.3"},
    })
}

/// One transaction's body for nodes `[lo, hi)`; adds the instances' JSON size to `svc_bytes`.
fn node_txn(a: &FillArgs, lo: u64, hi: u64, svc_bytes: &AtomicU64) -> Result<Bytes> {
    let mut ops = Vec::with_capacity(((hi - lo) * (2 + a.per_node)) as usize);
    for n in lo..hi {
        ops.push(json!({"Node": {"Verb": "set", "Node": {
            "Node": format!("node-{n}"),
            "Address": format!("10.{}.{}.{}", (n / 62500) % 250, (n / 250) % 250, n % 250 + 1),
        }}}));
        if a.node_check {
            ops.push(json!({"Check": {"Verb": "set", "Check": {
                "Node": format!("node-{n}"), "CheckID": "node-ok", "Name": "node-ok",
                "Status": "passing",
            }}}));
        }
        for j in 0..a.per_node {
            let s = service(a, n, j);
            svc_bytes.fetch_add(serde_json::to_vec(&s)?.len() as u64, Ordering::Relaxed);
            ops.push(
                json!({"Service": {"Verb": "set", "Node": format!("node-{n}"), "Service": s}}),
            );
        }
    }
    Ok(Bytes::from(serde_json::to_vec(&ops)?))
}

fn kv_txn(a: &FillArgs, lo: u64, hi: u64) -> Result<Bytes> {
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD.encode(vec![b'v'; a.value_size]);
    let ops: Vec<Value> = (lo..hi)
        .map(|k| json!({"KV": {"Verb": "set", "Key": format!("kv/{k:08}"), "Value": value}}))
        .collect();
    Ok(Bytes::from(serde_json::to_vec(&ops)?))
}

pub async fn fill(a: FillArgs) -> Result<()> {
    let addr = parse_addr(&a.addr)?;
    let nodes = a.nodes_to.saturating_sub(a.nodes_from);
    let keys = a.kv_to.saturating_sub(a.kv_from);
    let nodes_per_txn = TXN_MAX_OPS / (1 + u64::from(a.node_check) + a.per_node);
    if nodes > 0 && nodes_per_txn == 0 {
        bail!(
            "--per-node {} does not fit a 64-operation transaction",
            a.per_node
        );
    }
    // Batches as [lo, hi) ranges: nodes first, then keys.
    let mut batches: Vec<(bool, u64, u64)> = Vec::new();
    let mut n = a.nodes_from;
    while n < a.nodes_to {
        let hi = (n + nodes_per_txn).min(a.nodes_to);
        batches.push((true, n, hi));
        n = hi;
    }
    let mut k = a.kv_from;
    while k < a.kv_to {
        let hi = (k + TXN_MAX_OPS).min(a.kv_to);
        batches.push((false, k, hi));
        k = hi;
    }
    let a = Arc::new(a);
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicU64::new(0));
    let svc_bytes = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (a, batches, next, svc_bytes) = (
            Arc::clone(&a),
            Arc::clone(&batches),
            Arc::clone(&next),
            Arc::clone(&svc_bytes),
        );
        tasks.push(tokio::spawn(async move {
            let pool = Pool::new(addr, 1);
            pool.prefill(1).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(is_node, lo, hi)) = batches.get(i) else {
                    break;
                };
                let body = if is_node {
                    node_txn(&a, lo, hi, &svc_bytes)?
                } else {
                    kv_txn(&a, lo, hi)?
                };
                let r = pool
                    .send(pool.request(Method::PUT, "/v1/txn", body)?)
                    .await?;
                if r.status != http::StatusCode::OK {
                    bail!(
                        "txn: HTTP {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let instances = nodes * a.per_node;
    let mut out = Map::new();
    out.insert("mode".into(), json!("fill"));
    out.insert("label".into(), json!(a.label));
    out.insert("nodes".into(), json!(nodes));
    out.insert("instances".into(), json!(instances));
    out.insert("kv_keys".into(), json!(keys));
    out.insert("txns".into(), json!(batches.len()));
    out.insert("seconds".into(), json!(crate::stats::round3(secs)));
    out.insert(
        "instances_per_s".into(),
        json!((instances as f64 / secs).round()),
    );
    out.insert("kv_keys_per_s".into(), json!((keys as f64 / secs).round()));
    if instances > 0 {
        out.insert(
            "service_json_bytes".into(),
            json!((svc_bytes.load(Ordering::Relaxed) as f64 / instances as f64).round()),
        );
    }
    emit(out);
    Ok(())
}
