//! A client agent's streaming backend (`use_streaming_backend`, default true, as in Consul
//! 1.10+): blocking `GET /v1/health/service/:name` and `GET /v1/catalog/service/:name`
//! queries (and `?cached` ones) are served from a local materialized view that one event
//! stream from a server keeps current ([`super::stream`] is the server's side). Consul
//! streams only `health/service`; `catalog/service` goes the same way here because a view
//! holds the server's rendered answer, so it is exact for either endpoint.
//!
//! A view exists per query shape: the path, the query parameters that shape the answer
//! (`passing`, `tag`, `filter`, `dc`, `token`...) and the request's token; `index`, `wait`
//! and the consistency parameters are not part of it. Every watcher of the same shape on
//! this agent waits on the same view, so a thousand local watchers cost the servers one
//! stream, and a change reaches them all from one frame. A view's stream fails over to
//! another server when its server stops answering (the stream breaks, or no frame, not even
//! a heartbeat, arrives for [`STALL`]); watchers keep waiting meanwhile. A view nobody asked
//! for during [`IDLE`] closes its stream.
//!
//! Answers are what the server's HTTP port answers, with Consul's cache headers added:
//! `X-Cache: HIT` when the view held the answer when the request arrived, `MISS` when the
//! request waited (for the stream's first frame, or for a change past its index), `Age: 0`
//! (a view is kept current) and `X-Consul-Query-Backend: streaming`;
//! `X-Consul-Effective-Consistency` is the request's own (`stale` for `?stale`), as Consul's
//! agent reports it. `?near` and `?consistent` queries are not served from views (they are
//! forwarded as they are, as in Consul), and neither is a request of any other endpoint.
//!
//! A view is per endpoint too: a `health/service` and a `catalog/service` watcher of the
//! same service hold two streams, since their answers, indexes and `?filter` fields differ
//! and the server renders each.

use super::api::{ApiReply, ApiRequest, Hop};
use super::client::ServerPool;
use super::forward::CONTENT_TYPE;
use super::stream::{next_frame, reply_index, shape_uri, streamable_path, HEARTBEAT};
use super::SUBSCRIBE_PATH;
use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// No frame for this long: the stream's server is taken as gone.
pub const STALL: Duration = Duration::from_secs(HEARTBEAT.as_secs() * 3);
/// A view unused for this long closes its stream.
pub const IDLE: Duration = Duration::from_secs(120);
/// How long opening a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between rounds over every known server.
const ROUND_PAUSE: Duration = Duration::from_millis(200);
/// The longest wait of a blocking query (Consul's `max_query_time` default is 5 min, 10 at most).
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// One answer of a view.
#[derive(Debug)]
struct Snapshot {
    index: u64,
    reply: ApiReply,
}

#[derive(Debug)]
struct View {
    state: watch::Sender<Option<Arc<Snapshot>>>,
    last_used: Mutex<Instant>,
}

/// The views of one client agent.
#[derive(Debug)]
pub struct StreamViews {
    pool: Arc<ServerPool>,
    views: Mutex<HashMap<String, Arc<View>>>,
}

/// How a stream ended.
enum Ended {
    /// The server answered other than 200: delivered to the watchers, the view closes.
    Answered,
    /// Nobody used the view for [`IDLE`].
    Idle,
    /// The server went away or never answered; another is tried.
    Lost(String),
}

/// Request headers that carry the token (the only headers a view's stream sends).
const TOKEN_HEADERS: &[&str] = &["x-consul-token", "authorization"];

impl StreamViews {
    /// Views whose streams go to the servers of `pool`.
    pub fn new(pool: Arc<ServerPool>) -> Arc<Self> {
        Arc::new(StreamViews {
            pool,
            views: Mutex::new(HashMap::new()),
        })
    }

    /// Streams open now (one per query shape in use).
    pub fn open_views(&self) -> usize {
        self.views.lock().len()
    }

    /// Whether a request is served from a view: a `GET /v1/health/service/:name` or
    /// `GET /v1/catalog/service/:name` that blocks (`?index`) or asks for a cached answer
    /// (`?cached`), without `?near` or `?consistent`.
    pub fn wants(parts: &Parts) -> bool {
        if parts.method != Method::GET || !streamable_path(parts.uri.path()) {
            return false;
        }
        let q = parts.uri.query().unwrap_or("");
        let mut use_view = false;
        for (k, _) in form_urlencoded::parse(q.as_bytes()) {
            match &*k {
                "index" | "cached" => use_view = true,
                "near" | "consistent" => return false,
                _ => {}
            }
        }
        use_view
    }

    /// Answers a request that [`Self::wants`].
    pub async fn serve(self: &Arc<Self>, parts: &Parts) -> Response {
        let uri = parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        let (min_index, wait) = blocking_params(parts.uri.query().unwrap_or(""));
        let stale = asks_stale(parts.uri.query().unwrap_or(""));
        let headers: Vec<(String, Bytes)> = TOKEN_HEADERS
            .iter()
            .filter_map(|h| {
                let v = parts.headers.get(*h)?;
                Some((h.to_string(), Bytes::copy_from_slice(v.as_bytes())))
            })
            .collect();
        let upstream = ApiRequest {
            hop: Hop::Client,
            method: "GET".into(),
            uri: shape_uri(&uri, &[]),
            headers,
            body: Bytes::new(),
        };
        let mut key = upstream.uri.clone();
        for (h, v) in &upstream.headers {
            key.push('\n');
            key.push_str(h);
            key.push_str(&String::from_utf8_lossy(v));
        }
        let mut rx = {
            let mut map = self.views.lock();
            let view = map.entry(key.clone()).or_insert_with(|| {
                let view = Arc::new(View {
                    state: watch::Sender::new(None),
                    last_used: Mutex::new(Instant::now()),
                });
                tokio::spawn(self.clone().run(key, upstream, view.clone()));
                view
            });
            *view.last_used.lock() = Instant::now();
            view.state.subscribe()
        };
        // A hit is an answer the view held when the request arrived, as Consul's cache
        // counts it; a request that waited for a change is a miss.
        let mut hit = true;
        let deadline = Instant::now() + wait;
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(s) = &current {
                if s.reply.status != 200 || min_index == 0 || s.index > min_index {
                    return respond(s, hit, stale);
                }
            }
            hit = false;
            let closed = tokio::select! {
                r = rx.changed() => r.is_err(),
                _ = tokio::time::sleep_until(deadline) => true,
            };
            if closed {
                let last = rx.borrow().clone();
                return match last {
                    Some(s) => respond(&s, hit, stale),
                    None => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "rpc error: no server answered the event stream",
                    )
                        .into_response(),
                };
            }
        }
    }

    /// Removes `view` if nobody waits on it and nobody asked for it during [`IDLE`].
    fn close_if_idle(&self, key: &str, view: &Arc<View>) -> bool {
        let mut map = self.views.lock();
        if view.state.receiver_count() > 0 || view.last_used.lock().elapsed() < IDLE {
            return false;
        }
        if map.get(key).is_some_and(|v| Arc::ptr_eq(v, view)) {
            map.remove(key);
        }
        true
    }

    fn remove(&self, key: &str, view: &Arc<View>) {
        let mut map = self.views.lock();
        if map.get(key).is_some_and(|v| Arc::ptr_eq(v, view)) {
            map.remove(key);
        }
    }

    /// Keeps `view` current until it ends: one stream at a time, failing over between the
    /// servers.
    async fn run(self: Arc<Self>, key: String, upstream: ApiRequest, view: Arc<View>) {
        let body = match postcard::to_stdvec(&upstream) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "event stream: encoding the request");
                self.remove(&key, &view);
                return;
            }
        };
        loop {
            for addr in self.pool.order() {
                match self.follow(&addr, body.clone(), &key, &view).await {
                    Ended::Answered | Ended::Idle => {
                        self.remove(&key, &view);
                        return;
                    }
                    Ended::Lost(why) => {
                        self.pool.mark(&addr, false);
                        tracing::debug!(server = %addr, error = %why, query = %upstream.uri, "event stream lost; trying the next server");
                    }
                }
            }
            if self.close_if_idle(&key, &view) {
                return;
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    /// One stream from `addr`, applied to `view` frame by frame.
    async fn follow(&self, addr: &str, body: Bytes, key: &str, view: &Arc<View>) -> Ended {
        let send = self
            .pool
            .http()
            .post(format!(
                "{}://{addr}{SUBSCRIBE_PATH}",
                crate::tls::rpc::scheme()
            ))
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body)
            .send();
        let mut resp = match tokio::time::timeout(OPEN_TIMEOUT, send).await {
            Err(_) => return Ended::Lost("opening timed out".into()),
            Ok(Err(e)) => return Ended::Lost(e.to_string()),
            Ok(Ok(r)) => r,
        };
        if resp.status() != reqwest::StatusCode::OK {
            return Ended::Lost(format!("HTTP {}", resp.status()));
        }
        self.pool.mark(addr, true);
        let mut buf = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(STALL, resp.chunk()).await {
                Err(_) => return Ended::Lost("no frame within the stall limit".into()),
                Ok(Err(e)) => return Ended::Lost(e.to_string()),
                Ok(Ok(None)) => return Ended::Lost("stream closed".into()),
                Ok(Ok(Some(c))) => c,
            };
            buf.extend_from_slice(&chunk);
            loop {
                let f = match next_frame(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Ended::Lost(e),
                };
                if f.is_empty() {
                    if self.close_if_idle(key, view) {
                        return Ended::Idle;
                    }
                    continue;
                }
                let reply: ApiReply = match postcard::from_bytes(&f) {
                    Ok(r) => r,
                    Err(e) => return Ended::Lost(format!("undecodable frame: {e}")),
                };
                let ok = reply.status == 200;
                let index = reply_index(&reply);
                view.state
                    .send_replace(Some(Arc::new(Snapshot { index, reply })));
                metrics::counter!("registry_client_stream_frames").increment(1);
                if !ok {
                    return Ended::Answered;
                }
            }
        }
    }
}

/// `?index` and `?wait` of a blocking query (index 0 when absent).
fn blocking_params(query: &str) -> (u64, Duration) {
    let mut index = 0;
    let mut wait = DEFAULT_WAIT;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "index" => index = v.parse().unwrap_or(0),
            "wait" => {
                if let Ok(d) = registry_proto::duration::parse_go_duration(&v) {
                    if !d.is_zero() {
                        wait = d;
                    }
                }
            }
            _ => {}
        }
    }
    // Consul adds up to wait/16 of jitter so watchers do not all come back at once.
    let wait = wait.min(MAX_WAIT);
    let jitter = wait.mul_f64(rand::random::<f64>() / 16.0);
    (index, wait + jitter)
}

/// Whether a request asks for `?stale` (its view is the same as without; only the
/// consistency it reports differs).
fn asks_stale(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "stale")
}

/// A view's answer to one request. `X-Consul-Effective-Consistency` is the one the request
/// asked for, as Consul's agent reports it for a streamed answer (`?stale` says `stale` even
/// though the view follows the leader; `?consistent` never reaches a view).
fn respond(s: &Snapshot, hit: bool, stale: bool) -> Response {
    let mut resp = s.reply.clone().into_response();
    if s.reply.status == 200 {
        let h = resp.headers_mut();
        h.insert(
            "x-consul-effective-consistency",
            HeaderValue::from_static(if stale { "stale" } else { "leader" }),
        );
        h.insert(
            "x-cache",
            HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
        );
        h.insert(header::AGE, HeaderValue::from_static("0"));
        h.insert(
            "x-consul-query-backend",
            HeaderValue::from_static("streaming"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        let (p, _) = axum::http::Request::get(uri)
            .body(())
            .map(|r| r.into_parts())
            .unwrap_or_else(|_| axum::http::Request::new(()).into_parts());
        p
    }

    #[test]
    fn blocking_and_cached_health_queries_use_views() {
        assert!(StreamViews::wants(&parts("/v1/health/service/web?index=3")));
        assert!(StreamViews::wants(&parts("/v1/health/service/web?cached")));
        assert!(StreamViews::wants(&parts(
            "/v1/health/service/web?passing&index=9&wait=1m"
        )));
        assert!(!StreamViews::wants(&parts("/v1/health/service/web")));
        assert!(!StreamViews::wants(&parts(
            "/v1/health/service/web?index=3&near=_agent"
        )));
        assert!(!StreamViews::wants(&parts(
            "/v1/health/service/web?index=3&consistent"
        )));
        assert!(!StreamViews::wants(&parts("/v1/catalog/services?index=3")));
    }

    #[test]
    fn blocking_and_cached_catalog_queries_use_views() {
        assert!(StreamViews::wants(&parts(
            "/v1/catalog/service/web?index=3"
        )));
        assert!(StreamViews::wants(&parts("/v1/catalog/service/web?cached")));
        assert!(StreamViews::wants(&parts(
            "/v1/catalog/service/web?tag=v1&node-meta=rack:r1&filter=ServicePort%3D%3D80&index=9"
        )));
        assert!(!StreamViews::wants(&parts("/v1/catalog/service/web")));
        assert!(!StreamViews::wants(&parts(
            "/v1/catalog/service/web?index=3&near=_agent"
        )));
        assert!(!StreamViews::wants(&parts(
            "/v1/catalog/service/web?index=3&consistent"
        )));
        assert!(!StreamViews::wants(&parts("/v1/catalog/node/web?index=3")));
    }

    #[test]
    fn stale_is_reported_not_shaped() {
        assert!(asks_stale("index=3&stale"));
        assert!(asks_stale("stale=&tag=a"));
        assert!(!asks_stale("index=3&tag=stale"));
        assert_eq!(
            shape_uri("/v1/catalog/service/web?stale&index=2", &[]),
            "/v1/catalog/service/web"
        );
    }

    #[test]
    fn wait_defaults_to_five_minutes_with_jitter() {
        let (i, w) = blocking_params("index=12");
        assert_eq!(i, 12);
        assert!(w >= DEFAULT_WAIT && w <= DEFAULT_WAIT + DEFAULT_WAIT / 16);
        let (_, w) = blocking_params("index=1&wait=2s");
        assert!(w >= Duration::from_secs(2) && w < Duration::from_millis(2200));
    }
}
