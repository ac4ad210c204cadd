//! The registry server: Raft-replicated catalog, KV store, HTTP API v1.
//!
//! Data flows left to right:
//! `http/` (endpoints) -> `query/` (reads, blocking, writes) -> `state/` (store, indexes, watches)
//! <- `fsm/` (applies commands) <- `raft/` (openraft glue, segment-file log, snapshots).
//! `rpc/` owns the server port: Raft, cluster membership and requests forwarded by followers
//! and client agents.

pub mod acl;
pub mod agent_api;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod edge;
pub mod error;
pub mod fsm;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod monitor;
pub mod prepared;
pub mod query;
pub mod raft;
pub mod rpc;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod tls;

pub use error::ServerError;
pub use server::Server;
