//! The closed-loop load runner: N clients, each issuing one request at a time for a fixed
//! duration after a warm-up; throughput and latency count only completions inside the
//! measured window, and server CPU is read from `/proc` at its edges.

use crate::stats::{emit, CpuMeter, Latency};
use anyhow::Result;
use clap::Args;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Options shared by every throughput mode.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Concurrent clients (each has at most one request in flight).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Connections the clients share (default: one per client for HTTP/1.1, min(clients,
    /// 100) for etcd's gRPC, as etcd's benchmark does).
    #[arg(long)]
    pub conns: Option<usize>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured warm-up seconds before the measured window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Server PID(s) whose CPU time is metered (utime+stime from /proc/<pid>/stat).
    #[arg(long = "pid")]
    pub pids: Vec<String>,
    /// A free-form label copied into the result line.
    #[arg(long, default_value = "")]
    pub label: String,
}

/// One client's operation; `seq` counts the client's own requests.
pub trait Op: Send + 'static {
    fn call(&mut self, seq: u64) -> impl Future<Output = Result<()>> + Send + '_;
}

struct ClientResult {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    lat: Latency,
}

/// Runs `ops` (one per client) and emits the result line with `extra` fields.
pub async fn run<O: Op>(
    args: &LoadArgs,
    mode: &str,
    ops: Vec<O>,
    extra: Map<String, Value>,
) -> Result<()> {
    let clients = ops.len();
    let now = Instant::now();
    let start = now + Duration::from_secs_f64(args.warmup);
    let end = start + Duration::from_secs_f64(args.duration);
    let mut handles = Vec::with_capacity(clients);
    for mut op in ops {
        handles.push(tokio::spawn(async move {
            let mut r = ClientResult {
                ops: 0,
                errors: 0,
                first_error: None,
                lat: Latency::new()?,
            };
            let mut seq = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let res = op.call(seq).await;
                seq += 1;
                let t1 = Instant::now();
                let counted = t1 >= start && t1 <= end;
                match res {
                    Ok(()) if counted => {
                        r.ops += 1;
                        r.lat.record(t1 - t0);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if counted {
                            r.errors += 1;
                        }
                        if r.first_error.is_none() {
                            r.first_error = Some(format!("{e:#}"));
                        }
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            anyhow::Ok(r)
        }));
    }
    tokio::time::sleep_until(start).await;
    let meter = CpuMeter::start(&args.pids)?;
    tokio::time::sleep_until(end).await;
    let cpu = meter.stop()?;
    let mut total = Latency::new()?;
    let (mut n, mut errors, mut first_error) = (0u64, 0u64, None);
    for h in handles {
        let r = h.await??;
        n += r.ops;
        errors += r.errors;
        total.merge(&r.lat);
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let mut out = Map::new();
    out.insert("mode".into(), json!(mode));
    out.insert("label".into(), json!(args.label));
    out.insert("clients".into(), json!(clients));
    out.insert("duration_s".into(), json!(args.duration));
    out.insert("ops".into(), json!(n));
    out.insert("errors".into(), json!(errors));
    out.insert(
        "ops_per_s".into(),
        json!((n as f64 / args.duration).round()),
    );
    total.to_json("", &mut out);
    cpu.add_to(n, &mut out);
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    out.extend(extra);
    emit(out);
    Ok(())
}
