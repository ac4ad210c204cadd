//! `registry-bench`: the load generator behind `benches/run.sh`.
//!
//! Every mode prints one JSON line on stdout (and a readable summary on stderr). It only
//! talks to loopback addresses, every loop is bounded in time or count, and nothing in it
//! asserts on timing: it measures, it does not test.

mod etcd;
mod fill;
mod http;
mod kv;
mod load;
mod reconcile;
mod register;
mod stall;
mod stats;
mod tls_get;
mod watch;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "registry-bench",
    about = "Load generator for the registry and its anchors"
)]
struct Cli {
    /// Tokio worker threads of the load generator (it shares the machine with the server).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// PUT /v1/kv/<key> with a fixed-size body.
    KvPut(kv::KvPutArgs),
    /// GET /v1/kv/<key> (default, ?stale or ?consistent).
    KvGet(kv::KvGetArgs),
    /// GET of any loopback URL (e.g. /v1/health/service/web, or nginx).
    HttpGet(kv::HttpGetArgs),
    /// Blocking-query fan-out: watchers of one key, parked watchers of others, paced writes.
    Watch(watch::WatchArgs),
    /// Grow the catalog (nodes with their instances) or the KV store through batched txns.
    Fill(fill::FillArgs),
    /// Register N service instances through the catalog (memory per instance).
    Register(register::RegisterArgs),
    /// Fill the KV store with large values, then PUT latency while snapshots are built.
    SnapshotStall(stall::StallArgs),
    /// etcd v3 Put (gRPC, or the JSON gateway with --gateway).
    EtcdPut(etcd::EtcdPutArgs),
    /// etcd v3 Range of one key (linearizable, or --serializable).
    EtcdGet(etcd::EtcdGetArgs),
    /// etcd v3 Watch fan-out on one key with paced puts.
    EtcdWatch(etcd::EtcdWatchArgs),
    /// GET/s over HTTP or HTTPS with one client stack; `--reconnect` for handshakes/s.
    TlsGet(tls_get::TlsGetArgs),
    /// The leader's gossip reconciliation in process: a full walk vs a change-driven pass.
    ReconcileWalk(reconcile::ReconcileArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::KvPut(a) => kv::kv_put(a).await,
            Cmd::KvGet(a) => kv::kv_get(a).await,
            Cmd::HttpGet(a) => kv::http_get(a).await,
            Cmd::Watch(a) => watch::watch(a).await,
            Cmd::Fill(a) => fill::fill(a).await,
            Cmd::Register(a) => register::register(a).await,
            Cmd::SnapshotStall(a) => stall::stall(a).await,
            Cmd::EtcdPut(a) => etcd::etcd_put(a).await,
            Cmd::EtcdGet(a) => etcd::etcd_get(a).await,
            Cmd::EtcdWatch(a) => etcd::etcd_watch(a).await,
            Cmd::TlsGet(a) => tls_get::tls_get(a).await,
            Cmd::ReconcileWalk(a) => reconcile::reconcile(a),
        }
    })
}
