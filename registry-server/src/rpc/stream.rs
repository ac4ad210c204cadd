//! The server side of the streaming backend: `POST /v1/internal/rpc/subscribe` holds one
//! event stream open per client-agent view (see [`super::views`]), as Consul's
//! `SubscribeService` does for `use_streaming_backend`.
//!
//! The request is the [`ApiRequest`] of one query shape of a [`STREAMABLE`] endpoint,
//! `GET /v1/health/service/:name` or `GET /v1/catalog/service/:name` (name, filters, token;
//! no index). The server runs it through its own v1 router as a
//! blocking query, in a loop, and writes a frame each time the answer's index moves: the
//! whole answer, headers and body, exactly as its HTTP port would have served it, so ACLs,
//! `?filter`, `?tag` and `?passing` behave the same through a stream. Between changes it
//! writes an empty frame every [`HEARTBEAT`], so a client notices a server that stopped
//! answering (SIGSTOP, a cut network) without waiting for TCP. An answer other than 200 is
//! sent and ends the stream.
//!
//! A frame is a 4-byte big-endian length and that many bytes of a postcard [`ApiReply`]; a
//! length of 0 is a heartbeat. `registry_rpc_subscriptions` (gauge) counts the streams a
//! server holds open.

use super::api::{ApiReply, ApiRequest, ApiSlot};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// How long one blocking round waits before a heartbeat frame is sent.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Content type of a frame stream.
pub const STREAM_CONTENT_TYPE: &str = "application/x-registry-frames";
/// Largest frame accepted by a reader.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Query parameters that are not part of a stream's query shape: the stream chooses its own
/// index and wait, and always serves the server's default consistency.
pub const NOT_SHAPE: &[&str] = &[
    "index",
    "wait",
    "cached",
    "stale",
    "consistent",
    "max_stale",
    "max_age",
    "stale-if-error",
    "must-revalidate",
];

/// The endpoints a stream serves (each followed by a service name). Consul's streaming
/// backend serves only `health/service`; its `catalog/service` stays a long poll per watcher
/// (or per entry of its agent cache, with `?cached`). A stream here replays the server's
/// own rendered answer rather than rebuilding it from events, so `catalog/service` streams
/// exactly as `health/service` does.
pub const STREAMABLE: &[&str] = &["/v1/health/service/", "/v1/catalog/service/"];

/// Whether a request is one a stream can serve: a `GET` of a [`STREAMABLE`] endpoint with
/// a service name.
pub fn streamable_path(path: &str) -> bool {
    STREAMABLE.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    })
}

/// One frame: length prefix and body (an empty body is a heartbeat).
pub fn frame(body: &[u8]) -> Bytes {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Splits complete frames off the front of `buf`: `Some(body)` for a frame (empty for a
/// heartbeat), `None` while the frame is incomplete.
pub fn next_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(head);
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let body = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Ok(Some(body))
}

/// The `X-Consul-Index` of an answer (0 when absent).
pub fn reply_index(reply: &ApiReply) -> u64 {
    reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-consul-index"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// `uri` without the parameters in [`NOT_SHAPE`], then with `extra` appended. A parameter
/// without a value (`?passing`) stays without one.
pub fn shape_uri(uri: &str, extra: &[(&str, String)]) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if NOT_SHAPE.contains(&&*k) {
            continue;
        }
        parts.push(if v.is_empty() {
            enc(&k)
        } else {
            format!("{}={}", enc(&k), enc(&v))
        });
    }
    for (k, v) in extra {
        parts.push(format!("{}={}", enc(k), enc(v)));
    }
    if parts.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", parts.join("&"))
    }
}

/// Counts a stream while it is open.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::gauge!("registry_rpc_subscriptions").increment(1.0);
        metrics::counter!("registry_rpc_subscriptions_started").increment(1);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("registry_rpc_subscriptions").decrement(1.0);
    }
}

/// `POST /v1/internal/rpc/subscribe`: a postcard [`ApiRequest`] in, a frame stream out.
pub(crate) async fn subscribe(State(slot): State<Arc<ApiSlot>>, body: Bytes) -> Response {
    let req: ApiRequest = match postcard::from_bytes(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response()
        }
    };
    let path = req.uri.split_once('?').map_or(&*req.uri, |(p, _)| p);
    if req.method != "GET" || !streamable_path(path) {
        return (
            StatusCode::BAD_REQUEST,
            format!("no event stream for {} {path}", req.method),
        )
            .into_response();
    }
    if slot.router_missing() {
        // Not serving the API yet: the client tries another server.
        return (StatusCode::SERVICE_UNAVAILABLE, "not serving yet").into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let _open = Open::new();
        let mut index = 0u64;
        let wait = format!("{}s", HEARTBEAT.as_secs());
        loop {
            let mut round = req.clone();
            round.uri = shape_uri(
                &req.uri,
                &[("index", index.to_string()), ("wait", wait.clone())],
            );
            let Ok(http) = round.into_request() else {
                return;
            };
            let answer = tokio::select! {
                a = slot.call(http) => a,
                _ = tx.closed() => return,
            };
            let Some(resp) = answer else { return };
            let reply = match ApiReply::from_response(resp).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "event stream: reading the answer");
                    return;
                }
            };
            let ok = reply.status == 200;
            let at = reply_index(&reply);
            let out = if !ok || at != index {
                index = at;
                match postcard::to_stdvec(&reply) {
                    Ok(b) => frame(&b),
                    Err(_) => return,
                }
            } else {
                frame(&[])
            };
            if tx.send(Ok(out)).await.is_err() || !ok {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(header::CONTENT_TYPE, STREAM_CONTENT_TYPE)],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_chunks() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&frame(b"abc"));
        buf.extend_from_slice(&frame(b""));
        let second = frame(b"defgh");
        buf.extend_from_slice(&second[..5]);
        assert_eq!(next_frame(&mut buf), Ok(Some(b"abc".to_vec())));
        assert_eq!(next_frame(&mut buf), Ok(Some(Vec::new())));
        assert_eq!(next_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&second[5..]);
        assert_eq!(next_frame(&mut buf), Ok(Some(b"defgh".to_vec())));
        assert!(buf.is_empty());
    }

    #[test]
    fn shape_drops_index_wait_and_consistency() {
        assert_eq!(
            shape_uri(
                "/v1/health/service/web?index=7&passing&wait=5m&stale&tag=a&cached",
                &[("index", "3".into())]
            ),
            "/v1/health/service/web?passing&tag=a&index=3"
        );
        assert_eq!(
            shape_uri("/v1/health/service/web?index=1", &[]),
            "/v1/health/service/web"
        );
        assert_eq!(
            shape_uri(
                "/v1/catalog/service/web?tag=v1&index=4&node-meta=rack:r1&filter=ServicePort%20%3D%3D%2080&consistent",
                &[]
            ),
            "/v1/catalog/service/web?tag=v1&node-meta=rack%3Ar1&filter=ServicePort+%3D%3D+80"
        );
    }

    #[test]
    fn health_and_catalog_service_stream() {
        assert!(streamable_path("/v1/health/service/web"));
        assert!(streamable_path("/v1/catalog/service/web"));
        assert!(!streamable_path("/v1/health/service/"));
        assert!(!streamable_path("/v1/catalog/service/"));
        assert!(!streamable_path("/v1/health/checks/web"));
        assert!(!streamable_path("/v1/catalog/services"));
        assert!(!streamable_path("/v1/catalog/node/web"));
        assert!(!streamable_path("/v1/health/service/web/x"));
        assert!(!streamable_path("/v1/catalog/service/web/x"));
    }
}
