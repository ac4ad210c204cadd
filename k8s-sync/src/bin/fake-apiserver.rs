//! `fake-apiserver`: serves the fake Kubernetes API ([`k8s_sync::fake`]) on loopback for tests
//! and benchmarks, and writes a kubeconfig pointing at it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::response::IntoResponse;
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
    /// Serve HTTPS with this PEM certificate chain (with --tls-key), as a real API server does.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<String>,
    /// CA certificate the written kubeconfig names for the HTTPS server.
    #[arg(long)]
    tls_ca: Option<String>,
    /// Answer 401 to every request without `Authorization: Bearer <token>` (a service
    /// account's token, for instance).
    #[arg(long)]
    require_token: Option<String>,
}

/// The authentication layer of --require-token: 401 with a `Status` as the API server answers
/// an unauthenticated request.
async fn require_token(
    axum::extract::State(want): axum::extract::State<Arc<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ok = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == want.as_str());
    if ok {
        return next.run(req).await;
    }
    let body = k8s_sync::fake::status(401, "Unauthorized", "Unauthorized");
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A TLS acceptor for the PEM certificate chain and key.
fn acceptor(cert: &str, key: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {cert}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {cert}"))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {key}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `app` over TLS on `listener` until the process ends.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    app: axum::Router,
) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(acceptor(c, k)?),
        _ => None,
    };
    if let Some(path) = &args.kubeconfig {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ca = match &args.tls_ca {
            Some(ca) => format!("\n    certificate-authority: {ca}"),
            None => String::new(),
        };
        let token = args.require_token.as_deref().unwrap_or("fake");
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {scheme}://{addr}{ca}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n"
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
    if let Some(token) = &args.require_token {
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(token.clone()),
            require_token,
        ));
    }
    match tls {
        Some(tls) => serve_tls(listener, tls, app).await,
        None => Ok(axum::serve(listener, app).await?),
    }
}
