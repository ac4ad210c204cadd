//! `tls-get`: GET/s of one URL over HTTP or HTTPS with the same client stack (reqwest on
//! rustls), so that the two figures of one run compare TLS with plain HTTP. With
//! `--reconnect` every request opens a new connection: over HTTPS that is one full TLS
//! handshake per request (handshakes/s).

use anyhow::{Context, Result};
use clap::Args;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `tls-get`.
#[derive(Args, Debug)]
pub struct TlsGetArgs {
    /// The URL (`http://127.0.0.1:8500/v1/kv/k`, `https://...`).
    #[arg(long)]
    url: String,
    /// CA file trusted for HTTPS.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// A new connection (and TLS handshake) for every request.
    #[arg(long)]
    reconnect: bool,
    /// Label of the JSON line.
    #[arg(long, default_value = "tls-get")]
    label: String,
}

fn client(a: &TlsGetArgs) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    if a.reconnect {
        b = b.pool_max_idle_per_host(0);
    }
    if let Some(ca) = &a.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(b.build()?)
}

/// Runs the load and prints one JSON line.
pub async fn tls_get(a: TlsGetArgs) -> Result<()> {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let mut tasks = Vec::new();
    for _ in 0..a.clients.max(1) {
        let c = client(&a)?;
        let (ok, errors, url) = (ok.clone(), errors.clone(), a.url.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match c.get(&url).send().await {
                    Ok(r) if r.status().is_success() || r.status() == 404 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    let line = serde_json::json!({
        "label": a.label,
        "mode": "tls-get",
        "url": a.url,
        "clients": a.clients,
        "reconnect": a.reconnect,
        "ops": n,
        "errors": errors.load(Ordering::Relaxed),
        "ops_per_s": (n as f64 / secs).round(),
    });
    eprintln!(
        "{}: {:.0} GET/s ({} errors)",
        a.label,
        n as f64 / secs,
        errors.load(Ordering::Relaxed)
    );
    println!("{line}");
    Ok(())
}
