//! Forwarded API requests: the envelope ([`ApiRequest`], [`ApiReply`]), the server-port
//! handler that runs one through this server's v1 router ([`serve`]), and the v1 middleware
//! that sends a write arriving at a follower on to the leader ([`to_leader`]).
//!
//! A request travels as it arrived (method, path and query, the headers that carry meaning,
//! body), so the server that runs it parses it, builds the command and runs every check
//! exactly as for a request on its own HTTP port. A request that a follower forwards is marked
//! [`Hop::Server`]: the receiver must run it itself and answers "not leader" if it no longer
//! leads, so a request never travels in a circle; the follower then retries with the next
//! leader. A client agent's request is [`Hop::Client`]: the receiving server may pass a write
//! on to its leader.

use super::forward::{ForwardReply, CONTENT_TYPE};
use super::API_PATH;
use crate::raft::RaftHandle;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

/// Largest forwarded request or reply body (a snapshot archive is the largest).
pub const MAX_BODY: usize = crate::snapshot::MAX_ARCHIVE + 1024 * 1024;

/// Who sent a forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hop {
    /// A client agent: the server serves it as its own HTTP port would (a write may go on to
    /// the leader).
    Client,
    /// A follower passing a write to the leader: the receiver must lead to run it.
    Server,
}

/// One v1 API request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiRequest {
    /// Who sends it.
    pub hop: Hop,
    /// HTTP method.
    pub method: String,
    /// Path and query string.
    pub uri: String,
    /// The request's headers, minus the connection-level ones.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// The answer to an [`ApiRequest`]: what the serving server's HTTP port would have answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiReply {
    /// HTTP status.
    pub status: u16,
    /// Response headers, minus the connection-level ones.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// One server of the cluster as [`super::SERVERS_PATH`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    /// Node name.
    pub name: String,
    /// Server RPC address (`host:port`).
    pub rpc_addr: String,
    /// HTTP API address.
    pub http_addr: String,
    /// Whether it is the leader the answering server knows.
    pub leader: bool,
}

/// Marks a request that arrived through [`API_PATH`] (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Forwarded(pub Hop);

/// The node of the agent that first received a forwarded request (a request extension, set
/// only for requests that arrived through [`API_PATH`]): what a request's node defaults to,
/// as in Consul, where the receiving agent fills it in (a session's `Node`).
#[derive(Debug, Clone)]
pub struct OriginNode(pub String);

/// Internal request header carrying [`OriginNode`] between servers.
const ORIGIN_NODE_HEADER: &str = "x-registry-origin-node";

/// A request's whole body, up to [`MAX_BODY`], for forwarding; a larger one is answered 413.
pub async fn buffer_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Failed to buffer the request body: {e}"),
        )
            .into_response()
    })
}

/// Sets the origin-node header of a request about to be forwarded: the origin it arrived
/// with, else `node` (this agent received it first).
pub fn mark_origin(parts: &mut axum::http::request::Parts, node: &str) {
    let origin = parts
        .extensions
        .get::<OriginNode>()
        .map_or(node, |o| o.0.as_str())
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        parts.headers.insert(ORIGIN_NODE_HEADER, v);
    }
}

/// The v1 router, installed once the HTTP side of the server is up.
#[derive(Debug, Default)]
pub struct ApiSlot {
    router: OnceLock<Router>,
}

impl ApiSlot {
    /// Installs the v1 router (later calls are ignored).
    pub fn install(&self, router: Router) {
        let _ = self.router.set(router);
    }

    /// Whether the v1 router is not installed yet.
    pub fn router_missing(&self) -> bool {
        self.router.get().is_none()
    }

    /// Runs `req` through the v1 router.
    pub async fn call(&self, req: Request) -> Option<Response> {
        let router = self.router.get()?.clone();
        let resp: Result<Response, Infallible> = router.oneshot(req).await;
        match resp {
            Ok(r) => Some(r),
            Err(never) => match never {},
        }
    }
}

/// Headers that belong to one connection, never forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::ACCEPT_ENCODING
        || name == header::CONTENT_ENCODING
        || name.as_str() == "keep-alive"
}

fn headers_out(map: &HeaderMap) -> Vec<(String, Bytes)> {
    map.iter()
        .filter(|(n, _)| !hop_by_hop(n))
        .map(|(n, v)| (n.as_str().to_string(), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

fn headers_in(list: &[(String, Bytes)], map: &mut HeaderMap) {
    for (n, v) in list {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            if !hop_by_hop(&n) {
                map.append(n, v);
            }
        }
    }
}

impl ApiRequest {
    /// The envelope of an HTTP request whose body was read.
    pub fn from_parts(hop: Hop, parts: &axum::http::request::Parts, body: Bytes) -> Self {
        ApiRequest {
            hop,
            method: parts.method.as_str().to_string(),
            uri: parts.uri.path_and_query().map_or_else(
                || parts.uri.path().to_string(),
                |pq| pq.as_str().to_string(),
            ),
            headers: headers_out(&parts.headers),
            body,
        }
    }

    /// The HTTP request it describes.
    pub fn into_request(self) -> Result<Request, String> {
        let method =
            Method::from_bytes(self.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let uri: Uri = self.uri.parse().map_err(|e| format!("uri: {e}"))?;
        let mut req = Request::new(Body::from(self.body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        headers_in(&self.headers, req.headers_mut());
        if let Some(origin) = req.headers_mut().remove(ORIGIN_NODE_HEADER) {
            if let Ok(o) = origin.to_str() {
                req.extensions_mut().insert(OriginNode(o.to_string()));
            }
        }
        req.extensions_mut().insert(Forwarded(self.hop));
        Ok(req)
    }

    /// How long the request may take end to end: a blocking query waits up to its `?wait`
    /// (default 5 min, at most 10 min, plus Consul's jitter of 1/16), anything else as long
    /// as a forwarded write.
    pub fn time_limit(&self) -> Duration {
        let query = self.uri.split_once('?').map_or("", |(_, q)| q);
        let mut blocking = false;
        let mut wait = Duration::from_secs(300);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "index" => blocking = true,
                "wait" => {
                    if let Ok(d) = registry_proto::duration::parse_go_duration(&v) {
                        wait = d;
                    }
                }
                _ => {}
            }
        }
        if !blocking {
            return super::forward::CALL_TIMEOUT;
        }
        let wait = wait.min(Duration::from_secs(600));
        wait + wait / 16 + super::forward::CALL_TIMEOUT
    }
}

impl ApiReply {
    /// Reads a response whole.
    pub async fn from_response(resp: Response) -> Result<Self, String> {
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(ApiReply {
            status: parts.status.as_u16(),
            headers: headers_out(&parts.headers),
            body,
        })
    }

    /// The HTTP response it describes.
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut resp = (status, self.body).into_response();
        // The body's own content type, if it had one, replaces axum's default.
        resp.headers_mut().remove(header::CONTENT_TYPE);
        headers_in(&self.headers, resp.headers_mut());
        resp
    }
}

/// Internal response header: the receiver of a [`Hop::Server`] request does not lead.
const NOT_LEADER_HEADER: &str = "x-registry-not-leader";

fn encode(reply: ForwardReply<ApiReply>) -> Response {
    match postcard::to_stdvec(&reply) {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding reply: {e}"),
        )
            .into_response(),
    }
}

/// `POST /v1/internal/rpc/api`: runs one forwarded request through the v1 router.
pub(crate) async fn serve(State(slot): State<Arc<ApiSlot>>, body: Bytes) -> Response {
    let req: ApiRequest = match postcard::from_bytes(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response()
        }
    };
    let req = match req.into_request() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    // Not serving the API yet (still forming the cluster): nothing was done, try another.
    let Some(resp) = slot.call(req).await else {
        return encode(ForwardReply::NotLeader);
    };
    if resp.headers().contains_key(NOT_LEADER_HEADER) {
        return encode(ForwardReply::NotLeader);
    }
    encode(match ApiReply::from_response(resp).await {
        Ok(r) => ForwardReply::Ok(r),
        Err(e) => ForwardReply::Failed(e),
    })
}

/// `GET /v1/internal/rpc/servers`: the servers in the Raft membership.
pub(crate) async fn servers(State(raft): State<RaftHandle>) -> Json<Vec<ServerEntry>> {
    let leader = raft.leader().map(|(id, _)| id);
    let m = raft.metrics().borrow().clone();
    let list = m
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| {
            m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == **id)
        })
        .map(|(id, n)| ServerEntry {
            name: n.name.clone(),
            rpc_addr: n.raft_addr.clone(),
            http_addr: n.http_addr.clone(),
            leader: Some(*id) == leader,
        })
        .collect();
    Json(list)
}

/// Whether a request changes replicated state and so must be built and checked by the
/// leader: writes to the KV store, sessions, the catalog, transactions, the autopilot
/// configuration, config entries and the ACL tables (login and logout included). The leader
/// runs the request's ACL decision against its latest state, so a token deleted there stops
/// working for writes at once, however far a follower lags. Agent endpoints act on this
/// agent; snapshot restores and the Raft operator endpoints have their own forwarding; user
/// events are per agent.
pub fn needs_leader(method: &Method, path: &str) -> bool {
    if path == "/v1/acl/replication" {
        // The leader runs ACL replication and holds its status.
        return *method == Method::GET;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    path.starts_with("/v1/kv/")
        || path.starts_with("/v1/session/")
        || path.starts_with("/v1/acl/")
        || path == "/v1/config"
        || path.starts_with("/v1/config/")
        || path == "/v1/catalog/register"
        || path == "/v1/catalog/deregister"
        || path == "/v1/txn"
        || path == "/v1/operator/autopilot/configuration"
        || path == "/v1/query"
        || path.starts_with("/v1/query/")
        || path == "/v1/coordinate/update"
}

/// Gives a request that carries no token the forwarding agent's `default` token, as Consul's
/// HTTP layer does before it sends a request on: the server that decides then resolves the
/// same secret the receiving agent would have used.
pub fn add_default_token(parts: &mut axum::http::request::Parts, default: &str) {
    if default.is_empty()
        || !crate::http::acl_guard::request_token(parts.uri.query(), &parts.headers).is_empty()
    {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(default) {
        parts.headers.insert("x-consul-token", v);
    }
}

/// What [`to_leader`] needs: the Raft handle, this agent's node name and its ACL settings.
#[derive(Debug, Clone)]
pub struct LeaderRoute {
    /// The Raft handle.
    pub raft: RaftHandle,
    /// This agent's node name.
    pub node: Arc<str>,
    /// This agent's ACL settings (its `default` token goes with forwarded requests).
    pub acl: Arc<crate::acl::AclRuntime>,
}

/// The v1 middleware: a write that arrives at a follower is forwarded to the leader as a
/// request. On the leader, and for everything else, the request runs here.
pub async fn to_leader(State(route): State<LeaderRoute>, req: Request, next: Next) -> Response {
    let LeaderRoute { raft, node, acl } = route;
    if !needs_leader(req.method(), req.uri().path()) || raft.is_leader() {
        return next.run(req).await;
    }
    let hop = req.extensions().get::<Forwarded>().map(|f| f.0);
    if hop == Some(Hop::Server) {
        // Sent here as the leader, which this server no longer is: the sender retries.
        let mut resp = StatusCode::SERVICE_UNAVAILABLE.into_response();
        resp.headers_mut()
            .insert(NOT_LEADER_HEADER, HeaderValue::from_static("1"));
        return resp;
    }
    let (mut parts, body) = req.into_parts();
    let body = match buffer_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    mark_origin(&mut parts, &node);
    if acl.enabled() {
        add_default_token(&mut parts, &acl.tokens().default);
    }
    let fwd = ApiRequest::from_parts(Hop::Server, &parts, body.clone());
    let limit = fwd.time_limit();
    match raft
        .call_leader_within::<_, ApiReply>(API_PATH, &fwd, limit)
        .await
    {
        Ok(Some(reply)) => reply.into_response(),
        // This server became the leader meanwhile: run it here.
        Ok(None) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(e) => crate::http::respond::ApiError(e).into_response(),
    }
}
