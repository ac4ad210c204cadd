//! Registers many service instances through `PUT /v1/catalog/register` and reports the
//! server's resident memory per instance beyond the JSON each instance carries.

use crate::http::{parse_addr, Pool};
use crate::stats::{emit, vm_rss_kib};
use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use http::Method;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Registry HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub addr: String,
    /// Instances to register.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Concurrent register requests.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Nodes the instances are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub nodes: u64,
    /// Distinct service names (`<service>-<n>`, or exactly `<service>` when 1).
    #[arg(long, default_value_t = 1_000)]
    pub services: u64,
    #[arg(long, default_value = "svc")]
    pub service: String,
    /// Server PID: its VmRSS is read before and after (memory per instance).
    #[arg(long)]
    pub pid: Option<String>,
    /// Seconds to wait after registering before reading VmRSS.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    #[arg(long, default_value = "")]
    pub label: String,
}

/// The Service object of instance `i` (what a client sends and the catalog stores).
fn service_json(a: &RegisterArgs, i: u64) -> Value {
    let name = if a.services <= 1 {
        a.service.clone()
    } else {
        format!("{}-{}", a.service, i % a.services)
    };
    json!({
        "ID": format!("{name}-{i}"),
        "Service": name,
        "Tags": ["v1", "primary"],
        "Address": format!("127.1.{}.{}", (i / 250) % 250, i % 250 + 1),
        "Port": 20000 + (i % 40000),
        "Meta": {"version": "1.2.3"},
    })
}

fn node_name(a: &RegisterArgs, i: u64) -> String {
    format!("node-{}", i % a.nodes.max(1))
}

fn register_body(a: &RegisterArgs, i: u64) -> Result<(Bytes, usize)> {
    let n = i % a.nodes.max(1);
    let svc = service_json(a, i);
    let svc_len = serde_json::to_vec(&svc)?.len();
    let body = json!({
        "Node": node_name(a, i),
        "Address": format!("127.2.{}.{}", (n / 250) % 250, n % 250 + 1),
        "Datacenter": "dc1",
        "Service": svc,
    });
    Ok((Bytes::from(serde_json::to_vec(&body)?), svc_len))
}

pub async fn register(a: RegisterArgs) -> Result<()> {
    let addr = parse_addr(&a.addr)?;
    let a = Arc::new(a);
    let rss_before = a.pid.as_deref().map(vm_rss_kib).transpose()?;
    let next = Arc::new(AtomicU64::new(0));
    let svc_bytes = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(a.concurrency);
    for _ in 0..a.concurrency.max(1) {
        let (a, next, svc_bytes) = (Arc::clone(&a), Arc::clone(&next), Arc::clone(&svc_bytes));
        tasks.push(tokio::spawn(async move {
            let pool = Pool::new(addr, 1);
            pool.prefill(1).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.count {
                    break;
                }
                let (body, svc_len) = register_body(&a, i)?;
                svc_bytes.fetch_add(svc_len as u64, Ordering::Relaxed);
                let req = pool.request(Method::PUT, "/v1/catalog/register", body)?;
                pool.send_ok(req).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_after = a.pid.as_deref().map(vm_rss_kib).transpose()?;

    // What a reader gets per instance: one entry of /v1/catalog/service/<name>.
    let pool = Pool::new(addr, 1);
    let name = if a.services <= 1 {
        a.service.clone()
    } else {
        format!("{}-0", a.service)
    };
    let r = pool
        .send_ok(pool.request(
            Method::GET,
            &format!("/v1/catalog/service/{name}"),
            Bytes::new(),
        )?)
        .await?;
    let entries: Vec<Value> = serde_json::from_slice(&r.body)?;
    let catalog_entry_bytes = if entries.is_empty() {
        0.0
    } else {
        r.body.len() as f64 / entries.len() as f64
    };

    let count = a.count.max(1);
    let svc_json_bytes = svc_bytes.load(Ordering::Relaxed) as f64 / count as f64;
    let mut out = Map::new();
    out.insert("mode".into(), json!("register"));
    out.insert("label".into(), json!(a.label));
    out.insert("instances".into(), json!(a.count));
    out.insert("nodes".into(), json!(a.nodes));
    out.insert("services".into(), json!(a.services));
    out.insert(
        "seconds".into(),
        json!(crate::stats::round3(took.as_secs_f64())),
    );
    out.insert(
        "ops_per_s".into(),
        json!((a.count as f64 / took.as_secs_f64()).round()),
    );
    out.insert("service_json_bytes".into(), json!(svc_json_bytes.round()));
    out.insert(
        "catalog_entry_json_bytes".into(),
        json!(catalog_entry_bytes.round()),
    );
    if let (Some(b), Some(af)) = (rss_before, rss_after) {
        let per = (af as f64 - b as f64) * 1024.0 / count as f64;
        out.insert("rss_empty_kib".into(), json!(b));
        out.insert("rss_full_kib".into(), json!(af));
        out.insert("rss_bytes_per_instance".into(), json!(per.round()));
        out.insert(
            "overhead_bytes_per_instance".into(),
            json!((per - svc_json_bytes).round()),
        );
    }
    emit(out);
    Ok(())
}
