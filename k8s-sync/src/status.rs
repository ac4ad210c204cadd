//! The process's own HTTP listener (`-listen`): `/healthz` (alive), `/readyz` and consul-k8s's
//! `/health/ready` (initial sync done and the registry reachable), and `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

/// Health shared by the loops and the listener.
#[derive(Debug, Default)]
pub struct Status {
    /// The first full sync to the registry succeeded.
    pub synced_once: AtomicBool,
    /// The last registry call succeeded.
    pub registry_ok: AtomicBool,
    /// This replica is the leader (always true without `-leader-elect`).
    pub leader: AtomicBool,
    /// Syncing is off (a standby replica), so readiness does not wait for a sync.
    pub standby_ready: AtomicBool,
}

impl Status {
    /// Ready: a standby replica, or a leader whose first sync succeeded and whose registry answers.
    pub fn ready(&self) -> bool {
        if !self.leader.load(Ordering::Relaxed) {
            return self.standby_ready.load(Ordering::Relaxed);
        }
        self.synced_once.load(Ordering::Relaxed) && self.registry_ok.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    status: Arc<Status>,
    prom: PrometheusHandle,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.status.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn health_ready(State(s): State<AppState>) -> StatusCode {
    if s.status.ready() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

async fn metrics(State(s): State<AppState>) -> String {
    s.prom.render()
}

/// Serves the listener until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<Status>,
    prom: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/health/ready", get(health_ready))
        .route("/metrics", get(metrics))
        .with_state(AppState { status, prom });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

/// Parses `-listen`: `:8080` means every interface.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|e| format!("invalid -listen {s:?}: {e}"))
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
