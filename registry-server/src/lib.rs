//! The registry server: Raft-replicated catalog, KV store, HTTP API v1.
//!
//! Data flows left to right:
//! `http/` (endpoints) -> `query/` (reads, blocking, writes) -> `state/` (store, indexes, watches)
//! <- `fsm/` (applies commands) <- `raft/` (openraft glue, sled log, snapshots).

pub mod error;
pub mod fsm;
pub mod raft;
pub mod state;

pub use error::ServerError;
