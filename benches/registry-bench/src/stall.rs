//! Write latency while Raft snapshots are built: fills the KV store with large values, then
//! measures small PUTs for a while. Run against a server with a low
//! `raft_snapshot_threshold`, so that snapshots of the whole (large) state are built again
//! and again during the measured window; a build that holds up the state machine shows as
//! PUTs that take as long as the build.

use crate::http::{parse_addr, Pool};
use crate::stats::{emit, round3, vm_rss_kib, Latency};
use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use http::Method;
use serde_json::{json, Map};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct StallArgs {
    /// Registry HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub addr: String,
    /// MiB of KV values to fill the store with before measuring.
    #[arg(long, default_value_t = 400)]
    pub fill_mib: u64,
    /// Size of each filled value.
    #[arg(long, default_value_t = 16_384)]
    pub fill_value_size: usize,
    /// Concurrent PUTs while filling.
    #[arg(long, default_value_t = 8)]
    pub fill_clients: usize,
    /// Seconds to wait between the fill and the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Concurrent PUTs while measuring (each has one request in flight).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Size of each measured PUT's value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// PUTs slower than this are listed (with when they started) in `slow`.
    #[arg(long, default_value_t = 100)]
    pub slow_ms: u64,
    /// Server PID: its VmRSS is reported after the fill and at the end.
    #[arg(long)]
    pub pid: Option<String>,
    #[arg(long, default_value = "")]
    pub label: String,
}

async fn put(pool: &Pool, key: &str, value: Bytes) -> Result<()> {
    let req = pool.request(Method::PUT, &format!("/v1/kv/{key}"), value)?;
    let r = pool.send_ok(req).await?;
    if r.body.as_ref() != b"true" {
        anyhow::bail!("PUT answered {:?}", String::from_utf8_lossy(&r.body));
    }
    Ok(())
}

/// Writes `fill/<n>` keys until `fill_mib` of values are stored; returns the count.
async fn fill(a: &StallArgs, addr: std::net::SocketAddr) -> Result<u64> {
    let size = a.fill_value_size.max(1) as u64;
    let keys = (a.fill_mib << 20).div_ceil(size);
    let next = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![b'f'; a.fill_value_size]);
    let mut tasks = Vec::new();
    for _ in 0..a.fill_clients.max(1) {
        let (next, value) = (Arc::clone(&next), value.clone());
        tasks.push(tokio::spawn(async move {
            let pool = Pool::new(addr, 1);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= keys {
                    break;
                }
                put(&pool, &format!("fill/{n:08}"), value.clone()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(keys)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct ClientResult {
    lat: Latency,
    errors: u64,
    first_error: Option<String>,
    /// (seconds into the window the PUT started, its latency in ms) of the slow ones.
    slow: Vec<(f64, f64)>,
}

pub async fn stall(a: StallArgs) -> Result<()> {
    let addr = parse_addr(&a.addr)?;
    let t_fill = Instant::now();
    let keys = fill(&a, addr).await?;
    let fill_s = t_fill.elapsed().as_secs_f64();
    let rss_after_fill = a.pid.as_deref().map(vm_rss_kib).transpose()?;
    eprintln!(
        "[snapshot-stall] filled {keys} keys ({} MiB) in {fill_s:.1} s",
        a.fill_mib
    );
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;

    let start = Instant::now();
    let start_unix_ms = unix_ms();
    let end = start + Duration::from_secs_f64(a.duration);
    let value = Bytes::from(vec![b'v'; a.value_size]);
    let slow_us = a.slow_ms.saturating_mul(1000);
    let mut handles = Vec::new();
    for c in 0..a.clients.max(1) {
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            let pool = Pool::new(addr, 1);
            let mut r = ClientResult {
                lat: Latency::new()?,
                errors: 0,
                first_error: None,
                slow: Vec::new(),
            };
            let mut seq = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let res = put(&pool, &format!("w/{c}/{:04}", seq % 1000), value.clone()).await;
                seq += 1;
                let d = t0.elapsed();
                match res {
                    Ok(()) => {
                        r.lat.record(d);
                        if d.as_micros() as u64 >= slow_us {
                            let at = (t0 - start).as_secs_f64();
                            r.slow.push((round3(at), round3(d.as_secs_f64() * 1e3)));
                        }
                    }
                    Err(e) => {
                        r.errors += 1;
                        r.first_error.get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            anyhow::Ok(r)
        }));
    }
    let mut total = Latency::new()?;
    let (mut errors, mut first_error, mut slow) = (0u64, None, Vec::new());
    for h in handles {
        let r = h.await??;
        total.merge(&r.lat);
        errors += r.errors;
        first_error = first_error.or(r.first_error);
        slow.extend(r.slow);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let end_unix_ms = unix_ms();
    slow.sort_by(|x, y| x.0.total_cmp(&y.0));

    let mut out = Map::new();
    out.insert("mode".into(), json!("snapshot-stall"));
    out.insert("label".into(), json!(a.label));
    out.insert("fill_keys".into(), json!(keys));
    out.insert("fill_value_size".into(), json!(a.fill_value_size));
    out.insert("fill_mib".into(), json!(a.fill_mib));
    out.insert("fill_s".into(), json!(round3(fill_s)));
    out.insert("clients".into(), json!(a.clients.max(1)));
    out.insert("duration_s".into(), json!(round3(elapsed)));
    out.insert("window_start_unix_ms".into(), json!(start_unix_ms));
    out.insert("window_end_unix_ms".into(), json!(end_unix_ms));
    out.insert("ops".into(), json!(total.count()));
    out.insert("errors".into(), json!(errors));
    out.insert(
        "ops_per_s".into(),
        json!((total.count() as f64 / elapsed.max(1e-9)).round()),
    );
    total.to_json("", &mut out);
    out.insert(format!("over_{}ms", a.slow_ms), json!(slow.len()));
    out.insert(
        "slow_ms_total".into(),
        json!(round3(slow.iter().map(|s| s.1).sum::<f64>())),
    );
    // The slow PUTs in order of start: [seconds into the window, latency ms], at most 200.
    slow.truncate(200);
    out.insert("slow".into(), json!(slow));
    if let Some(kib) = rss_after_fill {
        out.insert("rss_after_fill_kib".into(), json!(kib));
    }
    if let Some(pid) = &a.pid {
        out.insert("rss_end_kib".into(), json!(vm_rss_kib(pid)?));
    }
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    emit(out);
    Ok(())
}
