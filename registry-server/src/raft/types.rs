//! The openraft type configuration of the registry: a log entry carries a [`Proposal`] (a
//! batch of [`Command`]s), its result is a [`ProposalResponse`] (one [`CommandResponse`] per
//! command); nodes are identified by a `u64` and described by a [`RegistryNode`].

use registry_proto::{Command, CommandResponse};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;

/// A Raft node's ID.
pub type NodeId = u64;

/// What the cluster knows about one server: where to reach it and its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegistryNode {
    /// `host:port` serving `/v1/internal/raft/*` (the server RPC address).
    pub raft_addr: String,
    /// `host:port` of the HTTP API.
    pub http_addr: String,
    /// Node name.
    pub name: String,
}

impl fmt::Display for RegistryNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}(raft={}, http={})",
            self.name, self.raft_addr, self.http_addr
        )
    }
}

/// The payload of one log entry: the commands of concurrent writers, committed together
/// (group commit). Each is applied on its own, at a registry index of its own.
pub type Proposal = Vec<Command>;

/// What applying a [`Proposal`] produced: one response per command, in order.
pub type ProposalResponse = Vec<CommandResponse>;

openraft::declare_raft_types!(
    /// The registry's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResponse,
        NodeId = NodeId,
        Node = RegistryNode,
        Entry = openraft::Entry<TypeConfig>,
        // Snapshots travel as one in-memory buffer; openraft's `install_snapshot` RPC sends it in
        // chunks of `Config::snapshot_max_chunk_size`.
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft node type.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log ID.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// A storage IO error.
pub type StorageIOError = openraft::StorageIOError<NodeId>;
/// The last applied membership and the log ID it was stored at.
pub type StoredMembership = openraft::StoredMembership<NodeId, RegistryNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, RegistryNode>;
/// A snapshot with its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Raft metrics.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, RegistryNode>;
/// The log state reported by a log store.
pub type LogState = openraft::storage::LogState<TypeConfig>;
