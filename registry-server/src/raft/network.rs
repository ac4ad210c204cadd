//! Raft RPCs over HTTP: a client ([`HttpNetwork`]) posting postcard-encoded requests to
//! `http://{raft_addr}/v1/internal/raft/{append,vote,snapshot}`, and the handlers
//! serving them (routed by `crate::rpc`).
//!
//! Every response is `200 OK` with a postcard-encoded `Result<Response, RaftError>`; anything
//! else (a non-200 status, an undecodable body) is a network error to the sender.

use super::speculate::{rpc_url, Registration, Speculator};
use super::types::{NodeId, RegistryNode, TypeConfig};
use super::RaftHandle;
use crate::rpc::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest accepted request body: a batch of entries or one snapshot chunk. Room for a
/// snapshot restore (a log entry of up to [`crate::snapshot::MAX_STATE`]) sent together with
/// other entries.
pub(crate) const MAX_BODY: usize = 512 * 1024 * 1024;
const CONTENT_TYPE: &str = "application/x-postcard";
/// Most bytes of log entries in one AppendEntries, unless a single entry is larger.
const MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;
/// An AppendEntries larger than this (a single large entry) is sent on its own task, so that
/// it can take longer than openraft waits for one (see `speculate::LongSend`).
const LONG_APPEND_BYTES: usize = MAX_APPEND_BYTES + 64 * 1024;

/// Creates a connection per peer; all share one HTTP client and its connection pool.
#[derive(Debug, Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    spec: Option<Arc<Speculator>>,
}

impl HttpNetwork {
    /// A network with a fresh HTTP client.
    pub fn new() -> Result<Self, ServerError> {
        let client = crate::tls::rpc::client_builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ServerError::Raft(format!("building raft HTTP client: {e}")))?;
        Ok(HttpNetwork { client, spec: None })
    }

    /// Makes the connections use (and keep informed) the speculative sends of `spec`.
    pub fn with_speculator(mut self, spec: Arc<Speculator>) -> Self {
        self.spec = Some(spec);
        self
    }

    /// A speculator for node `id` sharing this network's HTTP client.
    pub fn speculator(&self, id: NodeId) -> Arc<Speculator> {
        Speculator::new(id, self.client.clone(), CONTENT_TYPE)
    }

    /// The HTTP client (cheap to clone; clones share the connection pool).
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &RegistryNode) -> HttpConnection {
        let append_url = match rpc_url(node, APPEND_PATH) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "raft peer address");
                None
            }
        };
        let spec = match (&self.spec, &append_url) {
            (Some(s), Some(u)) => Some((Arc::clone(s), Arc::new(s.register(target, u.clone())))),
            _ => None,
        };
        HttpConnection {
            client: self.client.clone(),
            target,
            node: node.clone(),
            base: format!("{}://{}", crate::tls::rpc::scheme(), node.raft_addr),
            append_url,
            spec,
        }
    }
}

/// The RPC client to one peer.
#[derive(Debug, Clone)]
pub struct HttpConnection {
    client: reqwest::Client,
    target: NodeId,
    node: RegistryNode,
    base: String,
    /// The AppendEntries URL, parsed once.
    append_url: Option<reqwest::Url>,
    /// The leader's speculative sends, and this connection's registration with them.
    spec: Option<(Arc<Speculator>, Arc<Registration>)>,
}

impl HttpConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, RegistryNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(format!("{}{path}", self.base), path, body, option)
            .await
    }

    async fn send<Resp, E>(
        &self,
        url: impl reqwest::IntoUrl,
        path: &str,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, RegistryNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let resp = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .timeout(option.hard_ttl())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes);
            let e = std::io::Error::other(format!("{path}: HTTP {status}: {text}"));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        self.decode_answer(&bytes)
    }

    /// Decodes a peer's answer: a postcard-encoded `Result<Resp, E>`.
    #[allow(clippy::result_large_err)] // openraft's error type, as the trait methods return it
    fn decode_answer<Resp, E>(
        &self,
        bytes: &[u8],
    ) -> Result<Resp, RPCError<NodeId, RegistryNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let res: Result<Resp, E> =
            postcard::from_bytes(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    #[tracing::instrument(level = "trace", skip_all, fields(target = self.target))]
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, RegistryNode, RaftError<NodeId>>>
    {
        // openraft gives every AppendEntries one heartbeat interval, whatever it carries: send
        // only as many entries as fit in MAX_APPEND_BYTES and report the rest as not yet
        // matched (the follower commits no further than what it accepted).
        let mut rpc = rpc;
        if let Some((spec, _)) = &self.spec {
            if spec.defer_commit_notice(self.target, &rpc) {
                return Ok(AppendEntriesResponse::Success);
            }
            // The follower may already have answered this very request (see speculate.rs).
            if let Some(s) = spec.claim(self.target, &rpc) {
                if let Ok(Some(resp)) = tokio::time::timeout(option.hard_ttl(), s.outcome()).await {
                    spec.note_used();
                    spec.observe(self.target, &rpc, Some(&resp));
                    return Ok(resp);
                }
            }
        }
        let net = |e: postcard::Error| RPCError::Network(NetworkError::new(&e));
        let mut body = postcard::to_stdvec(&rpc).map_err(net)?;
        let mut truncated = false;
        while body.len() > MAX_APPEND_BYTES && rpc.entries.len() > 1 {
            let keep = rpc.entries.len() / 2;
            rpc.entries.truncate(keep);
            truncated = true;
            body = postcard::to_stdvec(&rpc).map_err(net)?;
        }
        let last = rpc.entries.last().map(|e| e.log_id);
        let res = match (&self.spec, &self.append_url) {
            (Some((spec, _)), _) if body.len() > LONG_APPEND_BYTES => {
                match spec.long_send(self.target, &rpc, body) {
                    Some(l) => {
                        // openraft stops waiting after its heartbeat interval; the send goes
                        // on, and its next attempt at these entries picks up the answer.
                        let answer = l.answer().await;
                        spec.end_long_send(self.target, &l);
                        let bytes = answer.map_err(|e| {
                            RPCError::Network(NetworkError::new(&std::io::Error::other(e)))
                        })?;
                        self.decode_answer(&bytes)
                    }
                    None => Err(RPCError::Network(NetworkError::new(
                        &std::io::Error::other("no entries to send"),
                    ))),
                }
            }
            (_, Some(u)) => self.send(u.clone(), APPEND_PATH, body, &option).await,
            (_, None) => {
                let url = format!("{}{APPEND_PATH}", self.base);
                self.send(url, APPEND_PATH, body, &option).await
            }
        };
        if let Some((spec, _)) = &self.spec {
            spec.observe(self.target, &rpc, res.as_ref().ok());
        }
        Ok(match res? {
            AppendEntriesResponse::Success if truncated => {
                AppendEntriesResponse::PartialSuccess(last)
            }
            other => other,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target))]
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, RegistryNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(SNAPSHOT_PATH, &rpc, &option).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target))]
    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, RegistryNode, RaftError<NodeId>>> {
        self.call(VOTE_PATH, &rpc, &option).await
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    postcard::from_bytes(body).map_err(|e| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                format!("undecodable raft request: {e}"),
            )
                .into_response(),
        )
    })
}

fn encode<T: Serialize>(value: &T) -> Response {
    match postcard::to_stdvec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding raft response: {e}"),
        )
            .into_response(),
    }
}

pub(crate) async fn append(State(h): State<RaftHandle>, body: Bytes) -> Response {
    let req: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let res = h.raft().append_entries(req).await;
    if matches!(&res, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
        h.note_leader_contact();
    }
    encode(&res)
}

pub(crate) async fn vote(State(h): State<RaftHandle>, body: Bytes) -> Response {
    let req: VoteRequest<NodeId> = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    encode(&h.raft().vote(req).await)
}

pub(crate) async fn snapshot(State(h): State<RaftHandle>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let res = h.raft().install_snapshot(req).await;
    if res.is_ok() {
        h.note_leader_contact();
    }
    encode(&res)
}
