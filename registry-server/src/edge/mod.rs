//! The one accept loop of the HTTP, HTTPS and server ports: per-client connection limits
//! (`limits.http_max_conns_per_client`, `limits.rpc_max_conns_per_client`), the TLS
//! handshake with its time limit, refusing plain HTTP on a TLS port, and the slow-client
//! guards of every connection (a time limit for reading a request's headers, a cap on
//! their size). Request rates (`limits.request_limits`) are [`rate`].
//!
//! A client past its connection limit gets `429 Too Many Requests` on a plain-HTTP port (as
//! Consul's connection limiter answers) and is closed at once on a TLS port. Other clients
//! are never held up by one that is slow or over its limit: every connection is its own task.

pub mod rate;

use crate::tls::TlsServer;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How long a client may take to send a request's headers (slowloris guard), as Go's
/// `ReadHeaderTimeout`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers); past it the answer is `431`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long an HTTP/1 connection may stay idle between requests before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The guards of one listener.
#[derive(Debug, Clone)]
pub struct Edge {
    /// What the listener is, for logs (`HTTP`, `HTTPS`, `server RPC`).
    pub name: &'static str,
    /// Concurrent connections one client IP may hold (0: unlimited).
    pub max_conns_per_client: usize,
    /// TLS: the acceptor source (`None`: plain TCP).
    pub tls: Option<Arc<TlsServer>>,
    /// Time limit of the TLS handshake (`limits.https_handshake_timeout`,
    /// `limits.rpc_handshake_timeout`, 5 s).
    pub handshake_timeout: Duration,
    /// Time limit for a request's headers.
    pub header_timeout: Duration,
}

/// Per-client connection counts, shared by a listener's connections (also the DNS TCP port's).
#[derive(Debug, Default)]
pub(crate) struct Counts(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; dropping it releases the slot.
pub(crate) struct Permit {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Counts {
    /// A slot for `ip`, unless it holds `max` already (0: unlimited).
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Permit> {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Permit {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish
/// (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(limit_headers));
    let counts = Arc::new(Counts::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let edge = Arc::new(edge);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = edge.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(permit) = counts.acquire(peer.ip(), edge.max_conns_per_client) else {
            metrics::counter!("registry_conn_limited", "listener" => edge.name).increment(1);
            tracing::debug!(listener = edge.name, %peer, "connection limit reached");
            tokio::spawn(refuse_over_limit(stream, edge.tls.is_none()));
            continue;
        };
        let watcher = graceful.watcher();
        let app = app.clone();
        let edge = edge.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_conn(stream, app, &edge, watcher).await {
                tracing::debug!(listener = edge.name, %peer, error = %e, "connection ended");
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

/// Refuses a request whose headers exceed [`MAX_HEADER_BYTES`] in total with `431` and a
/// message (hyper's own buffer limit closes only requests larger than its read buffer).
async fn limit_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if size > MAX_HEADER_BYTES {
        return (
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("Request headers too large: {size} bytes, max size: {MAX_HEADER_BYTES} bytes"),
        )
            .into_response();
    }
    next.run(req).await
}

fn builder(edge: &Edge) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES * 4)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

async fn serve_conn(
    stream: TcpStream,
    app: Router,
    edge: &Edge,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let svc = TowerToHyperService::new(app);
    let b = builder(edge);
    match &edge.tls {
        None => {
            let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            watcher.watch(conn.into_owned()).await
        }
        Some(tls) => {
            let mut stream = stream;
            if !looks_like_tls(&stream, edge.handshake_timeout).await? {
                // Go's answer to plain HTTP on an HTTPS port.
                let _ = stream
                    .write_all(
                        b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
                          Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
                    )
                    .await;
                let _ = stream.shutdown().await;
                return Ok(());
            }
            let accepted =
                tokio::time::timeout(edge.handshake_timeout, tls.acceptor().accept(stream))
                    .await
                    .map_err(|_| "TLS handshake timed out")??;
            let conn = b.serve_connection_with_upgrades(TokioIo::new(accepted), svc);
            watcher.watch(conn.into_owned()).await
        }
    }
}

/// Whether the first byte is a TLS handshake record (22).
async fn looks_like_tls(stream: &TcpStream, limit: Duration) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limit, stream.peek(&mut first)).await {
        Ok(Ok(0)) => Ok(true), // closed: the handshake fails on its own
        Ok(Ok(_)) => Ok(first[0] == 0x16),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no TLS handshake",
        )),
    }
}

/// Consul's answer to a client past `http_max_conns_per_client`.
const OVER_LIMIT: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

async fn refuse_over_limit(mut stream: TcpStream, plain_http: bool) {
    if plain_http {
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{OVER_LIMIT}",
            OVER_LIMIT.len()
        );
        let _ =
            tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    }
    let _ = stream.shutdown().await;
}

/// `limits { }`: the connection and request limits of the agent's listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Concurrent connections one client IP may hold on the HTTP and HTTPS ports (200; 0:
    /// unlimited).
    pub http_max_conns_per_client: usize,
    /// Concurrent connections one client IP may hold on the server port (100; 0: unlimited).
    pub rpc_max_conns_per_client: usize,
    /// Time limit of an HTTPS handshake (5 s).
    pub https_handshake_timeout: Duration,
    /// Time limit of a server-port TLS handshake (5 s).
    pub rpc_handshake_timeout: Duration,
    /// Time limit for a request's headers on every port.
    pub header_timeout: Duration,
    /// Request rates.
    pub request_limits: rate::RequestLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_conns_per_client: 200,
            rpc_max_conns_per_client: 100,
            https_handshake_timeout: Duration::from_secs(5),
            rpc_handshake_timeout: Duration::from_secs(5),
            header_timeout: HEADER_TIMEOUT,
            request_limits: rate::RequestLimits::default(),
        }
    }
}
