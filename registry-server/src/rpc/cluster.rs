//! Handlers of the cluster endpoints (`hello`, `join`, `leave`, JSON) and of the Raft-level
//! forwarding endpoints (`propose`, `read-index`, `session-renew`, postcard; the client side
//! is [`super::forward`]).

use super::forward::{ForwardReply, ReadIndexRequest, CONTENT_TYPE};
use super::{JOIN_PATH, LEAVE_PATH};
use crate::cluster::{Cluster, MemberRequest, PeerInfo};
use crate::raft::Proposal;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Largest forwarded proposal (a batch of writes; a snapshot restore is the largest).
pub(crate) const MAX_BODY: usize = 256 * 1024 * 1024;

pub(crate) async fn hello(
    State(c): State<Arc<Cluster>>,
    Json(from): Json<PeerInfo>,
) -> Json<PeerInfo> {
    Json(c.hello(Some(from)))
}

pub(crate) async fn join(
    State(c): State<Arc<Cluster>>,
    Json(req): Json<MemberRequest>,
) -> Response {
    member_change(&c, JOIN_PATH, req).await
}

pub(crate) async fn leave(
    State(c): State<Arc<Cluster>>,
    Json(req): Json<MemberRequest>,
) -> Response {
    member_change(&c, LEAVE_PATH, req).await
}

/// Applies a membership request on the leader, or passes it on to the leader (one hop).
async fn member_change(c: &Cluster, path: &str, req: MemberRequest) -> Response {
    let res = if c.raft().is_leader() {
        c.apply_member_request(path, &req).await
    } else {
        match c.raft().leader() {
            Some((_, leader)) if leader.raft_addr != c.raft().node().raft_addr => {
                c.post_json(&leader.raft_addr, path, &req).await
            }
            _ => Err(ServerError::NoLeader),
        }
    };
    match res {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e @ ServerError::BadRequest(_)) => {
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    postcard::from_bytes(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response())
    })
}

fn reply<T: Serialize>(res: Result<T, ServerError>) -> Response {
    let r = match res {
        Ok(v) => ForwardReply::Ok(v),
        Err(ServerError::NoLeader) => ForwardReply::NotLeader,
        Err(e) => ForwardReply::Failed(e.to_string()),
    };
    match postcard::to_stdvec(&r) {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding reply: {e}"),
        )
            .into_response(),
    }
}

pub(crate) async fn propose(State(c): State<Arc<Cluster>>, body: Bytes) -> Response {
    let p: Proposal = match decode(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    reply(c.raft().propose_local(p).await)
}

pub(crate) async fn read_index(State(c): State<Arc<Cluster>>, body: Bytes) -> Response {
    let req: ReadIndexRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    reply(c.raft().local_read_index(req.consistent).await)
}

pub(crate) async fn session_renew(State(c): State<Arc<Cluster>>, body: Bytes) -> Response {
    let id: String = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    reply(c.renew_session(&id))
}
