//! The catalog RPCs of a client agent's anti-entropy, served by any server: this node's
//! records as the catalog holds them ([`NodeRecords`]), and the agent's registrations and
//! deregistrations of its own node ([`CatalogSync`]), which the server proposes (a follower's
//! proposal goes on to the leader).

use super::forward::{ForwardReply, CONTENT_TYPE};
use crate::query::write::Writer;
use crate::state::Store;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use registry_proto::model::{HealthCheck, Node, NodeService};
use registry_proto::{Command, CommandResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One node's catalog records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeRecords {
    /// The node, if registered.
    pub node: Option<Node>,
    /// Its services.
    pub services: Vec<NodeService>,
    /// Its checks.
    pub checks: Vec<HealthCheck>,
    /// How many nodes the catalog holds (anti-entropy scales its interval with it).
    pub nodes: usize,
}

/// A client agent's catalog writes for its own node: `Register` and `Deregister` only,
/// applied in one log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogSync {
    /// The node all writes are for.
    pub node: String,
    /// The writes.
    pub ops: Vec<Command>,
}

impl NodeRecords {
    /// `node`'s records in `store`.
    pub fn read(store: &Store, node: &str) -> Self {
        let db = store.read();
        NodeRecords {
            node: db.nodes.get(node).cloned(),
            services: db
                .services
                .get(node)
                .map(|m| m.values().map(|s| (**s).clone()).collect())
                .unwrap_or_default(),
            checks: db
                .checks
                .get(node)
                .map(|m| m.values().map(|c| (**c).clone()).collect())
                .unwrap_or_default(),
            nodes: db.nodes.len(),
        }
    }
}

impl CatalogSync {
    /// The command to propose, after checking every write is a registration of `node`.
    pub fn command(self) -> Result<Command, ServerError> {
        for op in &self.ops {
            let target = match op {
                Command::Register(r) => &r.node.node,
                Command::Deregister(d) => &d.node,
                _ => {
                    return Err(ServerError::BadRequest(
                        "only catalog registrations can be synced".into(),
                    ))
                }
            };
            if *target != self.node {
                return Err(ServerError::BadRequest(format!(
                    "write for node {target:?} in a sync of {:?}",
                    self.node
                )));
            }
        }
        let mut ops = self.ops;
        Ok(if ops.len() == 1 {
            ops.remove(0)
        } else {
            Command::Batch(ops)
        })
    }
}

/// What the catalog RPCs reach.
#[derive(Clone)]
pub struct CatalogRpc {
    /// The state store.
    pub store: Arc<Store>,
    /// Writes through Raft.
    pub writer: Writer,
}

fn encode<T: Serialize>(reply: ForwardReply<T>) -> Response {
    match postcard::to_stdvec(&reply) {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding reply: {e}"),
        )
            .into_response(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    postcard::from_bytes(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response())
    })
}

/// `POST /v1/internal/rpc/node-records`: a node name in, its [`NodeRecords`] out.
pub(crate) async fn node_records(State(c): State<CatalogRpc>, body: Bytes) -> Response {
    match decode::<String>(&body) {
        Ok(node) => encode(ForwardReply::Ok(NodeRecords::read(&c.store, &node))),
        Err(r) => *r,
    }
}

/// `POST /v1/internal/rpc/catalog-sync`: a [`CatalogSync`] in, the command's response out.
pub(crate) async fn catalog_sync(State(c): State<CatalogRpc>, body: Bytes) -> Response {
    let sync = match decode::<CatalogSync>(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let res: Result<CommandResponse, ServerError> = match sync.command() {
        Ok(cmd) => c.writer.apply(cmd).await,
        Err(e) => Err(e),
    };
    encode(match res {
        Ok(r) => ForwardReply::Ok(r),
        // A rejection is an answer, as `Writer::apply` gives it to a server's own agent.
        Err(ServerError::Internal(m)) => ForwardReply::Ok(CommandResponse::Rejected(m)),
        Err(ServerError::NoLeader) => ForwardReply::NotLeader,
        Err(e) => ForwardReply::Failed(e.to_string()),
    })
}
