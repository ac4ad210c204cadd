//! `limits.request_limits { mode, read_rate, write_rate }`: the server's global read and
//! write rates, as Consul's RPC rate limiter. In `permissive` mode a request over the rate is
//! counted and logged and still served; in `enforcing` mode it is answered `429 Too Many
//! Requests` ("try again later or against a different server"), or `503` for a write on the
//! leader, which no other server can take. The agent's own endpoints and `/v1/status/*` are
//! exempt, as they are not server RPCs in Consul.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::time::Instant;

/// What happens to a request over the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No limit (Consul's default).
    #[default]
    Disabled,
    /// Count and log, serve anyway.
    Permissive,
    /// Refuse.
    Enforcing,
}

impl Mode {
    /// Consul's names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "disabled" => Some(Mode::Disabled),
            "permissive" => Some(Mode::Permissive),
            "enforcing" => Some(Mode::Enforcing),
            _ => None,
        }
    }
}

/// The request-rate settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimits {
    /// Mode.
    pub mode: Mode,
    /// Reads per second (infinite: no limit).
    pub read_rate: f64,
    /// Writes per second (infinite: no limit).
    pub write_rate: f64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            mode: Mode::Disabled,
            read_rate: f64::INFINITY,
            write_rate: f64::INFINITY,
        }
    }
}

/// Consul's message for a request that another server could serve.
pub const RETRY_ELSEWHERE: &str =
    "rate limit exceeded, try again later or against a different server";
/// Consul's message for a write on the leader.
pub const RETRY_LATER: &str =
    "rate limit exceeded for operation that can only be performed by the leader, try again later";

/// A token bucket: `rate` tokens a second, up to `burst`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        let burst = rate.max(1.0);
        Bucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        if !self.rate.is_finite() {
            return true;
        }
        let mut s = self.state.lock();
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The limiter of one server.
pub struct Limiter {
    mode: Mode,
    read: Bucket,
    write: Bucket,
    is_leader: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("mode", &self.mode).finish()
    }
}

impl Limiter {
    /// A limiter for `limits`; `is_leader` picks the answer for writes.
    pub fn new(limits: RequestLimits, is_leader: Box<dyn Fn() -> bool + Send + Sync>) -> Arc<Self> {
        Arc::new(Limiter {
            mode: limits.mode,
            read: Bucket::new(limits.read_rate),
            write: Bucket::new(limits.write_rate),
            is_leader,
        })
    }

    /// Whether the limiter does anything.
    pub fn active(&self) -> bool {
        self.mode != Mode::Disabled
    }
}

fn exempt(path: &str) -> bool {
    path.starts_with("/v1/agent/") || path.starts_with("/v1/status/") || !path.starts_with("/v1/")
}

/// The middleware.
pub async fn limit(State(l): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    if l.mode == Mode::Disabled || exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let allowed = if write {
        l.write.allow()
    } else {
        l.read.allow()
    };
    if allowed {
        return next.run(req).await;
    }
    let kind = if write { "global/write" } else { "global/read" };
    let mode = if l.mode == Mode::Enforcing {
        "enforcing"
    } else {
        "permissive"
    };
    metrics::counter!("consul_rpc_rate_limit_exceeded", "limit_type" => kind, "mode" => mode)
        .increment(1);
    tracing::debug!(path = %req.uri().path(), limit_type = kind, mode, "request exceeded the rate limit");
    if l.mode == Mode::Permissive {
        return next.run(req).await;
    }
    if write && (l.is_leader)() {
        (StatusCode::SERVICE_UNAVAILABLE, RETRY_LATER).into_response()
    } else {
        (StatusCode::TOO_MANY_REQUESTS, RETRY_ELSEWHERE).into_response()
    }
}
