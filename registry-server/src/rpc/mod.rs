//! The server port's RPC layer: every route a server serves to other servers and to client
//! agents (the one route table, [`router`]), their paths, and the forwarding helper
//! ([`forward`]).
//!
//! | prefix | what | bodies |
//! |---|---|---|
//! | `/v1/internal/raft/*` | Raft's append, vote, snapshot (handlers in `raft::network`) | postcard |
//! | `/v1/internal/cluster/*` | hello, join, leave (handlers in [`cluster`]) | JSON |
//! | `/v1/internal/forward/*` | internal proposals, read barriers, session renewals to the leader | postcard |
//! | `/v1/internal/operator/*` | stats, configuration, elect, remove-peer, transfer-leader, autopilot | JSON |
//! | `/v1/internal/rpc/api` | one v1 API request (method, path, query, headers, body) — see [`api`] | postcard |
//! | `/v1/internal/rpc/subscribe` | an event stream of one `health/service` or `catalog/service` query for a client agent's view ([`stream`], [`views`]) | postcard in, frames out |
//! | `/v1/internal/rpc/servers` | the voters, for client agents ([`client`]) | JSON |
//! | `/v1/internal/rpc/dns` | client agents' DNS queries ([`dns`]) | postcard |
//! | `/v1/internal/rpc/{node-records,catalog-sync}` | client agents' anti-entropy ([`catalog`]) | postcard |
//! | `/v1/internal/rpc/ping` | round-trip measurements between datacenters ([`wan`]) | none |
//!
//! Requests for another datacenter (`?dc=`, DNS names with a datacenter) reach that
//! datacenter's servers through the same `/v1/internal/rpc/api` and `/v1/internal/rpc/dns`
//! routes, sent by [`wan::Datacenters`]; [`wan_http`] is the `?dc=` middleware.
//!
//! Requests, not commands, travel: a follower that receives a write forwards the *request*
//! to the leader, which builds the command and runs the checks that need the latest state
//! (lock-delay, session validity, CAS). A client agent sends every non-agent request the same
//! way to a server, which serves it as if it had arrived on its own HTTP port.

pub mod acl_primary;
pub mod api;
pub mod catalog;
pub mod client;
pub mod cluster;
pub mod dns;
pub mod forward;
pub mod stream;
pub mod views;
pub mod wan;
pub mod wan_coord;
pub mod wan_http;

use crate::leader::autopilot::Autopilot;
use crate::raft::RaftHandle;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// AppendEntries.
pub const APPEND_PATH: &str = "/v1/internal/raft/append";
/// RequestVote.
pub const VOTE_PATH: &str = "/v1/internal/raft/vote";
/// InstallSnapshot (one chunk).
pub const SNAPSHOT_PATH: &str = "/v1/internal/raft/snapshot";
/// Hello: a `PeerInfo` in, the receiver's `PeerInfo` out.
pub const HELLO_PATH: &str = "/v1/internal/cluster/hello";
/// Join: a `MemberRequest` in; the leader adds the server.
pub const JOIN_PATH: &str = "/v1/internal/cluster/join";
/// Leave: a `MemberRequest` in; the leader removes the server.
pub const LEAVE_PATH: &str = "/v1/internal/cluster/leave";
/// An internal proposal (session timers, anti-entropy of a server's own agent): a `Proposal`
/// in, a `ProposalResponse` out.
pub const PROPOSE_PATH: &str = "/v1/internal/forward/propose";
/// A read barrier: a [`forward::ReadIndexRequest`] in, a Raft log index out.
pub const READ_INDEX_PATH: &str = "/v1/internal/forward/read-index";
/// A session renewal: a session ID in, the session (if any) out.
pub const SESSION_RENEW_PATH: &str = "/v1/internal/forward/session-renew";
/// Campaign (the target of a leadership transfer).
pub const ELECT_PATH: &str = "/v1/internal/operator/elect";
/// This server's `ServerStats`.
pub const STATS_PATH: &str = "/v1/internal/operator/stats";
/// The leader's `RaftConfiguration`.
pub const CONFIGURATION_PATH: &str = "/v1/internal/operator/configuration";
/// A `PeerRef` in; the leader removes it.
pub const REMOVE_PEER_PATH: &str = "/v1/internal/operator/remove-peer";
/// A `TransferRequest` in; the leader hands over.
pub const TRANSFER_LEADER_PATH: &str = "/v1/internal/operator/transfer-leader";
/// Autopilot health, from the leader.
pub const AUTOPILOT_HEALTH_PATH: &str = "/v1/internal/operator/autopilot-health";
/// Autopilot state, from the leader.
pub const AUTOPILOT_STATE_PATH: &str = "/v1/internal/operator/autopilot-state";
/// One v1 API request: an [`api::ApiRequest`] in, an [`api::ApiReply`] out.
pub const API_PATH: &str = "/v1/internal/rpc/api";
/// The servers of the cluster (for client agents): a `Vec<ServerEntry>` out (JSON).
pub const SERVERS_PATH: &str = "/v1/internal/rpc/servers";
/// A node's catalog records (client anti-entropy): a node name in, [`catalog::NodeRecords`] out.
pub const NODE_RECORDS_PATH: &str = "/v1/internal/rpc/node-records";
/// A DNS query of a client agent: a [`dns::DnsQuery`] in, the reply packet out.
pub const DNS_PATH: &str = "/v1/internal/rpc/dns";
/// An event stream of one `health/service` or `catalog/service` query shape (client
/// agents' `use_streaming_backend`): an [`api::ApiRequest`] in, frames out ([`stream`]).
pub const SUBSCRIBE_PATH: &str = "/v1/internal/rpc/subscribe";
/// An empty answer, for round-trip measurements between datacenters.
pub const PING_PATH: &str = "/v1/internal/rpc/ping";
/// A client agent's registrations of its node: a [`catalog::CatalogSync`] in, the command's
/// response out.
pub const CATALOG_SYNC_PATH: &str = "/v1/internal/rpc/catalog-sync";

/// What the server-port routes serve.
#[derive(Clone)]
pub struct Parts {
    /// The Raft node.
    pub raft: RaftHandle,
    /// Cluster membership.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Autopilot.
    pub autopilot: Arc<Autopilot>,
    /// The v1 API, once the HTTP side is up.
    pub api: Arc<api::ApiSlot>,
    /// The store and the write path, for client agents' catalog RPCs.
    pub catalog: catalog::CatalogRpc,
    /// DNS answers for client agents.
    pub dns: Arc<dns::DnsSlot>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// THE server-port route table.
pub fn router(parts: Parts) -> Router {
    raft_routes(parts.raft.clone())
        .merge(cluster_routes(parts.cluster.clone()))
        .merge(operator_routes(parts.raft.clone()))
        .merge(autopilot_routes(parts.autopilot.clone()))
        .merge(api_routes(parts.api.clone(), parts.raft.clone()))
        .merge(catalog_routes(parts.catalog.clone()))
        .merge(
            Router::new()
                .route(DNS_PATH, post(dns::serve))
                .with_state(parts.dns.clone()),
        )
        .route(PING_PATH, get(wan::ping))
}

/// Client agents' anti-entropy.
pub fn catalog_routes(c: catalog::CatalogRpc) -> Router {
    Router::new()
        .route(NODE_RECORDS_PATH, post(catalog::node_records))
        .route(CATALOG_SYNC_PATH, post(catalog::catalog_sync))
        .layer(DefaultBodyLimit::max(api::MAX_BODY))
        .with_state(c)
}

/// Raft's own RPCs.
pub fn raft_routes(raft: RaftHandle) -> Router {
    use crate::raft::network::{append, snapshot, vote, MAX_BODY};
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(raft)
}

/// Cluster membership and the Raft-level forwarding endpoints.
pub fn cluster_routes(c: Arc<crate::cluster::Cluster>) -> Router {
    Router::new()
        .route(HELLO_PATH, post(cluster::hello))
        .route(JOIN_PATH, post(cluster::join))
        .route(LEAVE_PATH, post(cluster::leave))
        .route(PROPOSE_PATH, post(cluster::propose))
        .route(READ_INDEX_PATH, post(cluster::read_index))
        .route(SESSION_RENEW_PATH, post(cluster::session_renew))
        .layer(DefaultBodyLimit::max(cluster::MAX_BODY))
        .with_state(c)
}

/// The operator endpoints a follower forwards to the leader (and a transfer's target side).
pub fn operator_routes(raft: RaftHandle) -> Router {
    use crate::raft::membership::{configuration, elect, remove_peer, stats, transfer_leader};
    Router::new()
        .route(STATS_PATH, get(stats))
        .route(CONFIGURATION_PATH, get(configuration))
        .route(ELECT_PATH, post(elect))
        .route(REMOVE_PEER_PATH, post(remove_peer))
        .route(TRANSFER_LEADER_PATH, post(transfer_leader))
        .with_state(raft)
}

/// Autopilot's health and state, answered by the leader.
pub fn autopilot_routes(ap: Arc<Autopilot>) -> Router {
    use crate::leader::autopilot::{health_endpoint, state_endpoint};
    Router::new()
        .route(AUTOPILOT_HEALTH_PATH, get(health_endpoint))
        .route(AUTOPILOT_STATE_PATH, get(state_endpoint))
        .with_state(ap)
}

/// Forwarded API requests and the server list for client agents.
pub fn api_routes(slot: Arc<api::ApiSlot>, raft: RaftHandle) -> Router {
    Router::new()
        .route(API_PATH, post(api::serve))
        .route(SUBSCRIBE_PATH, post(stream::subscribe))
        .layer(DefaultBodyLimit::max(api::MAX_BODY))
        .with_state(slot)
        .merge(
            Router::new()
                .route(SERVERS_PATH, get(api::servers))
                .with_state(raft),
        )
}
