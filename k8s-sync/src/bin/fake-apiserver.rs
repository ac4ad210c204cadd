//! `fake-apiserver`: serves the fake Kubernetes API ([`k8s_sync::fake`]) on loopback for tests
//! and benchmarks, and writes a kubeconfig pointing at it.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_sync::fake::{router, Fake, FakeOptions};

/// A fake Kubernetes API server for tests.
#[derive(Parser)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write a kubeconfig for the server here.
    #[arg(long)]
    kubeconfig: Option<String>,
    /// Longest watch, in seconds (a watch asking for longer ends earlier).
    #[arg(long, default_value_t = 1800)]
    max_watch_seconds: u64,
    /// Interval of BOOKMARK events, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    bookmark_interval_ms: u64,
    /// Changes kept for watch replay.
    #[arg(long, default_value_t = 200_000)]
    history: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let fake = Fake::new(FakeOptions {
        max_watch: Duration::from_secs(args.max_watch_seconds),
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms.max(10)),
        history: args.history,
    });
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(path) = &args.kubeconfig {
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake\n"
        );
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, kc)?;
        std::fs::rename(&tmp, path)?;
    }
    println!("listening on {addr}");
    axum::serve(listener, router(fake)).await?;
    Ok(())
}
