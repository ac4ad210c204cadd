//! `fake-apiserver`: serves the fake Kubernetes API ([`k8s_sync::fake`]) on loopback for tests
//! and benchmarks, and writes a kubeconfig pointing at it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_sync::fake::{router, Fake, FakeOptions};
use parking_lot::Mutex;

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
    /// Create this many ClusterIP Services (`svc-<i>` in `default`) before serving.
    #[arg(long, default_value_t = 0)]
    preload_services: usize,
    /// Ready endpoints in each preloaded Service's EndpointSlice.
    #[arg(long, default_value_t = 10)]
    preload_endpoints: usize,
    /// Append one line per request (`METHOD path?query user-agent`) to this file: what a
    /// client asked of the API, e.g. to compare with the RBAC rules it is granted.
    #[arg(long)]
    request_log: Option<String>,
}

/// The request-log layer: one `METHOD uri user-agent` line per request, written before it is served.
async fn log_request(
    axum::extract::State(log): axum::extract::State<Arc<Mutex<std::fs::File>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    {
        use std::io::Write;
        let mut f = log.lock();
        let agent = req
            .headers()
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .replace(' ', "_");
        let _ = writeln!(f, "{} {} {agent}", req.method(), req.uri());
    }
    next.run(req).await
}

/// Preloads `n` Services with one EndpointSlice of `eps` ready endpoints each.
fn preload(fake: &Fake, n: usize, eps: usize) -> anyhow::Result<()> {
    let svc = k8s_sync::fake::kind_index("", "v1", "services").context("services kind")?;
    let es = k8s_sync::fake::kind_index("discovery.k8s.io", "v1", "endpointslices")
        .context("slices kind")?;
    for i in 0..n {
        let name = format!("svc-{i}");
        fake.create(svc, "default", serde_json::json!({"metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let endpoints: Vec<_> = (0..eps)
            .map(|j| serde_json::json!({"addresses": [format!("10.{}.{}.{}", i / 250, i % 250, j + 1)], "conditions": {"ready": true}}))
            .collect();
        fake.create(
            es,
            "default",
            serde_json::json!({"metadata": {"name": format!("{name}-1"),
            "labels": {"kubernetes.io/service-name": name}}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints}),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(())
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
    preload(&fake, args.preload_services, args.preload_endpoints)?;
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
    let mut app = router(fake);
    if let Some(path) = &args.request_log {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(Mutex::new(f)),
            log_request,
        ));
    }
    axum::serve(listener, app).await?;
    Ok(())
}
