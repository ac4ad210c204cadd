//! Commands stored in the Raft log and applied by the state machine.
//!
//! The log format is stable: variants are appended, never renumbered or reordered, because
//! the binary encoding is positional. Every write of the registry is one of these.

use crate::model::{DirEntry, HealthCheck, Node, NodeService};
use crate::ProtoError;
use serde::{Deserialize, Serialize};

/// A catalog registration: a node, optionally one service and any checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The node (its `index` is ignored; the state machine sets it).
    pub node: Node,
    /// Leave an existing node's address and metadata alone.
    pub skip_node_update: bool,
    /// A service instance to create or replace.
    pub service: Option<NodeService>,
    /// Checks to create or replace.
    pub checks: Vec<HealthCheck>,
}

/// A catalog deregistration: a whole node, one of its services, or one of its checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterRequest {
    /// Node name.
    pub node: String,
    /// Remove only this service instance (and its checks).
    pub service_id: Option<String>,
    /// Remove only this check.
    pub check_id: Option<String>,
}

/// One entry of the Raft log's application payload.
// Registrations dominate the log; boxing them would add an allocation per entry for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing; used to commit an entry (barriers, leadership confirmation).
    Noop,
    /// Register a node, service and checks.
    Register(RegisterRequest),
    /// Deregister a node, service or check.
    Deregister(DeregisterRequest),
    /// Set a KV entry unconditionally.
    KvSet {
        /// The entry (key, value, flags).
        entry: DirEntry,
    },
    /// Set a KV entry if its modify index is `index` (0 = only if absent).
    KvCas {
        /// The entry (key, value, flags).
        entry: DirEntry,
        /// Expected modify index.
        index: u64,
    },
    /// Delete one KV entry.
    KvDelete {
        /// Key.
        key: String,
    },
    /// Delete one KV entry if its modify index is `index`.
    KvDeleteCas {
        /// Key.
        key: String,
        /// Expected modify index.
        index: u64,
    },
    /// Delete every KV entry under a prefix.
    KvDeleteTree {
        /// Prefix ("" deletes everything).
        prefix: String,
    },
    /// Several commands applied as one log entry, each with its own result.
    Batch(Vec<Command>),
}

impl Command {
    /// Encodes the command for the Raft log.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        postcard::to_stdvec(self).map_err(|e| ProtoError::Encoding(e.to_string()))
    }

    /// Decodes a command from the Raft log.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        postcard::from_bytes(bytes).map_err(|e| ProtoError::Encoding(e.to_string()))
    }
}

/// What applying a command produced; identical on every replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied.
    #[default]
    Ok,
    /// A conditional write's outcome (CAS, lock): `true` when it took effect.
    Bool(bool),
    /// Rejected by the state machine, with Consul's error text; nothing changed.
    Rejected(String),
    /// Results of a [`Command::Batch`], in order.
    Batch(Vec<CommandResponse>),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trips() {
        let cmd = Command::Batch(vec![
            Command::KvCas {
                entry: DirEntry {
                    key: "a/b".into(),
                    flags: 0x2ddc_cbc0_58a5_0c18,
                    value: b"v".to_vec(),
                    ..Default::default()
                },
                index: 7,
            },
            Command::Deregister(DeregisterRequest {
                node: "n1".into(),
                service_id: Some("web".into()),
                check_id: None,
            }),
        ]);
        let bytes = cmd.encode().unwrap();
        assert_eq!(Command::decode(&bytes).unwrap(), cmd);
    }
}
