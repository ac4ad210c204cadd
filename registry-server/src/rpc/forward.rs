//! The forwarding helper, client side: a follower sends requests, read barriers and internal
//! proposals to the leader's server port, and a client agent sends API requests to a server
//! (`/v1/internal/forward/*`, `/v1/internal/rpc/*`, postcard bodies), as Consul agents and
//! servers forward RPCs. The serving side is routed by [`super::router`].
//!
//! Every reply is `200 OK` with a postcard-encoded [`ForwardReply`]. A call that could not be
//! sent at all (connection refused) is safe to retry against the next leader; a call that was
//! sent and then failed is not, since the leader may have applied it.

use crate::ServerError;
use axum::http::header;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Content type of the postcard bodies.
pub const CONTENT_TYPE: &str = "application/x-postcard";

/// How long a forwarded call may take end to end (a write waits for its commit).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer of a forwarding endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply<T> {
    /// Done.
    Ok(T),
    /// The receiver is not (or no longer) the leader; nothing was done.
    NotLeader,
    /// The leader tried and failed; the text says why.
    Failed(String),
}

/// Which reads a read barrier must order after.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReadIndexRequest {
    /// `true`: the leader first confirms its leadership with a quorum (`?consistent`).
    pub consistent: bool,
}

/// Why a forwarded call did not succeed.
#[derive(Debug)]
pub enum ForwardError {
    /// The request never reached the leader: retrying elsewhere is safe.
    NotSent(String),
    /// The receiver is not the leader: nothing was done, retrying is safe.
    NotLeader,
    /// The request was sent and failed or its outcome is unknown.
    Failed(String),
}

impl From<ForwardError> for ServerError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader => ServerError::NoLeader,
            ForwardError::NotSent(m) | ForwardError::Failed(m) => {
                ServerError::Raft(format!("forwarding to the leader: {m}"))
            }
        }
    }
}

/// Sends forwarded requests to the leader.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: reqwest::Client,
}

impl Forwarder {
    /// A forwarder over `client`: the Raft network's client, so forwarded requests share its
    /// connection pool to each peer.
    pub fn new(client: reqwest::Client) -> Self {
        Forwarder { client }
    }

    /// The HTTP client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Posts `req` to `path` on the server RPC address `addr`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
    ) -> Result<Resp, ForwardError> {
        self.call_timeout(addr, path, req, CALL_TIMEOUT).await
    }

    /// [`Self::call`] with its own end-to-end time limit (a blocking query waits longer).
    pub async fn call_timeout<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ForwardError> {
        let body = postcard::to_stdvec(req).map_err(|e| ForwardError::NotSent(e.to_string()))?;
        let resp = self
            .client
            .post(format!("{}://{addr}{path}", crate::tls::rpc::scheme()))
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    ForwardError::NotSent(format!("{addr}: {e}"))
                } else {
                    ForwardError::Failed(format!("{addr}: {e}"))
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ForwardError::Failed(format!("{addr}: {e}")))?;
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ForwardError::Failed(format!(
                "{addr}{path}: HTTP {status}: {text}"
            )));
        }
        match postcard::from_bytes::<ForwardReply<Resp>>(&bytes) {
            Ok(ForwardReply::Ok(v)) => Ok(v),
            Ok(ForwardReply::NotLeader) => Err(ForwardError::NotLeader),
            Ok(ForwardReply::Failed(m)) => Err(ForwardError::Failed(m)),
            Err(e) => Err(ForwardError::Failed(format!(
                "{addr}{path}: undecodable reply: {e}"
            ))),
        }
    }
}
