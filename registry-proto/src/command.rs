//! Commands stored in the Raft log and applied by the state machine.
//!
//! The log format is stable: variants are appended, never renumbered or reordered, because
//! the binary encoding is positional. Every write of the registry is one of these.

use crate::model::{DirEntry, HealthCheck, Node, NodeService, Session};
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
    /// Create a session (its ID chosen by the leader); rejected when its node or checks are
    /// missing, or a check is critical.
    SessionCreate(Session),
    /// Destroy (invalidate) a session: explicit destroy or TTL expiry decided by the leader.
    /// Its locks are released or its keys deleted per its behavior, and those keys enter
    /// lock-delay counted from `at_unix_ms` (the leader's clock when it proposed this).
    SessionDestroy {
        /// Session ID (unknown IDs are a no-op).
        id: String,
        /// Leader wall-clock time, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// Acquire the lock on a key for `entry.session`, setting its value and flags.
    KvLock {
        /// The entry (key, value, flags, session).
        entry: DirEntry,
    },
    /// Release the lock `entry.session` holds on a key, setting its value and flags.
    KvUnlock {
        /// The entry (key, value, flags, session).
        entry: DirEntry,
    },
    /// An atomic transaction: every operation applies, or none does.
    Txn(Vec<TxnOp>),
    /// Replaces the whole state with a saved one (`PUT /v1/snapshot`). `state` is a state
    /// encoding the leader has already verified (the `state.bin` of a snapshot archive). It
    /// is applied on its own: inside a batch or transaction it is rejected.
    Restore {
        /// The encoded state.
        state: Vec<u8>,
    },
    /// Stores the autopilot configuration (`PUT /v1/operator/autopilot/configuration`). With
    /// `cas`, only when the stored configuration's modify index equals it (0: only when none
    /// is stored yet); the response is then [`CommandResponse::Bool`].
    AutopilotSetConfig {
        /// The new configuration (its indexes are set by the state machine).
        config: AutopilotConfig,
        /// Expected modify index of the stored configuration.
        cas: Option<u64>,
    },
    /// Stores a config entry (`PUT /v1/config`). With `cas`, only when the stored entry's
    /// modify index equals it (0: only when none exists). Answers [`CommandResponse::Bool`].
    ConfigEntrySet {
        /// The entry (its indexes are set by the state machine).
        entry: crate::config_entry::ConfigEntry,
        /// Expected modify index.
        cas: Option<u64>,
    },
    /// Deletes a config entry (`DELETE /v1/config/:kind/:name`); with `cas` as above.
    /// Answers [`CommandResponse::Bool`].
    ConfigEntryDelete {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Expected modify index.
        cas: Option<u64>,
    },
    /// A change to the ACL tables.
    Acl(crate::acl::AclCommand),
    /// Creates or replaces a prepared query (its ID chosen by the leader). Rejected, with
    /// Consul's message, when its name is taken, names another query's ID, its session does
    /// not exist or its template does not compile.
    PreparedQuerySet(crate::prepared_query::PreparedQuery),
    /// Deletes a prepared query by ID (a missing one is not an error).
    PreparedQueryDelete {
        /// Query ID.
        id: String,
    },
    /// Stores a batch of node coordinates: one entry per batch period, as Consul's
    /// `Coordinate.Update` batching does. Updates for unknown nodes are skipped.
    CoordinateBatchUpdate(Vec<crate::coordinate::NodeCoordinate>),
}

/// Consul's autopilot configuration, replicated through Raft. The Enterprise-only fields are
/// kept and returned but have no effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    /// Remove servers the leader has not heard from for long (see the autopilot docs).
    pub cleanup_dead_servers: bool,
    /// A server whose last contact with the leader is older than this is unhealthy.
    pub last_contact_threshold: std::time::Duration,
    /// A server more than this many log entries behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// Dead servers are never removed below this many voters (0: no minimum).
    pub min_quorum: u64,
    /// How long a new server must stay healthy before it is promoted to voter.
    pub server_stabilization_time: std::time::Duration,
    /// Enterprise-only: node metadata key of redundancy zones.
    pub redundancy_zone_tag: String,
    /// Enterprise-only: disable upgrade migrations.
    pub disable_upgrade_migration: bool,
    /// Enterprise-only: node metadata key of the upgrade version.
    pub upgrade_version_tag: String,
    /// Registry index at which the configuration was first stored.
    pub create_index: u64,
    /// Registry index at which it last changed.
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    /// Consul's defaults (`api.NewAutopilotConfiguration`).
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: std::time::Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: std::time::Duration::from_secs(10),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// A KV verb of a transaction, as Consul's `api.KVOp` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvVerb {
    /// `set`.
    Set,
    /// `cas`.
    Cas,
    /// `lock`.
    Lock,
    /// `unlock`.
    Unlock,
    /// `get`.
    Get,
    /// `get-or-empty`.
    GetOrEmpty,
    /// `get-tree`.
    GetTree,
    /// `check-index`.
    CheckIndex,
    /// `check-session`.
    CheckSession,
    /// `check-not-exists`.
    CheckNotExists,
    /// `delete`.
    Delete,
    /// `delete-tree`.
    DeleteTree,
    /// `delete-cas`.
    DeleteCas,
}

impl KvVerb {
    /// Every verb, for parsing and documentation.
    pub const ALL: [KvVerb; 13] = [
        KvVerb::Set,
        KvVerb::Cas,
        KvVerb::Lock,
        KvVerb::Unlock,
        KvVerb::Get,
        KvVerb::GetOrEmpty,
        KvVerb::GetTree,
        KvVerb::CheckIndex,
        KvVerb::CheckSession,
        KvVerb::CheckNotExists,
        KvVerb::Delete,
        KvVerb::DeleteTree,
        KvVerb::DeleteCas,
    ];

    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KvVerb::Set => "set",
            KvVerb::Cas => "cas",
            KvVerb::Lock => "lock",
            KvVerb::Unlock => "unlock",
            KvVerb::Get => "get",
            KvVerb::GetOrEmpty => "get-or-empty",
            KvVerb::GetTree => "get-tree",
            KvVerb::CheckIndex => "check-index",
            KvVerb::CheckSession => "check-session",
            KvVerb::CheckNotExists => "check-not-exists",
            KvVerb::Delete => "delete",
            KvVerb::DeleteTree => "delete-tree",
            KvVerb::DeleteCas => "delete-cas",
        }
    }

    /// Parses Consul's spelling (exact).
    pub fn parse(s: &str) -> Option<KvVerb> {
        KvVerb::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the verb changes state (and so needs Raft).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            KvVerb::Set
                | KvVerb::Cas
                | KvVerb::Lock
                | KvVerb::Unlock
                | KvVerb::Delete
                | KvVerb::DeleteTree
                | KvVerb::DeleteCas
        )
    }
}

/// A node, service or check verb of a transaction (`api.NodeOp`, `ServiceOp`, `CheckOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CatalogVerb {
    /// `set`.
    Set,
    /// `cas`.
    Cas,
    /// `get`.
    Get,
    /// `delete`.
    Delete,
    /// `delete-cas`.
    DeleteCas,
}

impl CatalogVerb {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogVerb::Set => "set",
            CatalogVerb::Cas => "cas",
            CatalogVerb::Get => "get",
            CatalogVerb::Delete => "delete",
            CatalogVerb::DeleteCas => "delete-cas",
        }
    }

    /// Parses Consul's spelling (exact).
    pub fn parse(s: &str) -> Option<CatalogVerb> {
        [
            CatalogVerb::Set,
            CatalogVerb::Cas,
            CatalogVerb::Get,
            CatalogVerb::Delete,
            CatalogVerb::DeleteCas,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether the verb changes state.
    pub fn is_write(self) -> bool {
        self != CatalogVerb::Get
    }
}

/// One operation of a transaction.
// At most 64 per transaction; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV operation. `entry.session` is the session of `lock`, `unlock` and
    /// `check-session`; `index` the expected modify index of `cas`, `check-index` and
    /// `delete-cas`.
    Kv {
        /// Verb.
        verb: KvVerb,
        /// Key, value, flags and session.
        entry: DirEntry,
        /// Expected modify index.
        index: u64,
    },
    /// A node operation (`delete` removes its services, checks and sessions).
    Node {
        /// Verb.
        verb: CatalogVerb,
        /// The node.
        node: Node,
        /// Expected modify index of `cas` and `delete-cas`.
        index: u64,
    },
    /// A service operation on one node.
    Service {
        /// Verb.
        verb: CatalogVerb,
        /// Node name.
        node: String,
        /// The service instance.
        service: NodeService,
        /// Expected modify index of `cas` and `delete-cas`.
        index: u64,
    },
    /// A health check operation.
    Check {
        /// Verb.
        verb: CatalogVerb,
        /// The check (its `node` says where).
        check: HealthCheck,
        /// Expected modify index of `cas` and `delete-cas`.
        index: u64,
    },
}

impl TxnOp {
    /// Whether the operation changes state.
    pub fn is_write(&self) -> bool {
        match self {
            TxnOp::Kv { verb, .. } => verb.is_write(),
            TxnOp::Node { verb, .. } | TxnOp::Service { verb, .. } | TxnOp::Check { verb, .. } => {
                verb.is_write()
            }
        }
    }
}

/// One result of a transaction (Consul's `TxnResult`: exactly one of KV, Node, Service,
/// Check).
// At most 64 per transaction; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A KV entry (its value is kept only for the get verbs).
    Kv(DirEntry),
    /// A node.
    Node(Node),
    /// A service instance.
    Service(NodeService),
    /// A health check.
    Check(HealthCheck),
}

/// An operation that failed, which rolled the whole transaction back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// Position of the operation in the request.
    pub op_index: u32,
    /// Consul's error text.
    pub what: String,
}

/// The outcome of a transaction: results when it applied, errors when it rolled back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Results in operation order (empty when there are errors).
    pub results: Vec<TxnResult>,
    /// Errors (empty when the transaction applied).
    pub errors: Vec<TxnError>,
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
    /// Outcome of a [`Command::Txn`].
    Txn(TxnResponse),
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
                    value: b"v".to_vec().into(),
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

    #[test]
    fn session_and_txn_commands_round_trip() {
        let lock = DirEntry {
            key: "svc/leader".into(),
            flags: 0xe0f6_9a2b_aa41_4de0,
            session: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
            ..Default::default()
        };
        let cmds = vec![
            Command::SessionCreate(crate::model::Session {
                id: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
                node: "n1".into(),
                lock_delay_ns: 15_000_000_000,
                behavior: crate::model::SessionBehavior::Delete,
                ttl: "15.0s".into(),
                node_checks: vec!["serfHealth".into()],
                ..Default::default()
            }),
            Command::SessionDestroy {
                id: "x".into(),
                at_unix_ms: 1_700_000_000_000,
            },
            Command::KvLock {
                entry: lock.clone(),
            },
            Command::KvUnlock {
                entry: lock.clone(),
            },
            Command::Txn(vec![
                TxnOp::Kv {
                    verb: KvVerb::CheckIndex,
                    entry: lock,
                    index: 3,
                },
                TxnOp::Node {
                    verb: CatalogVerb::DeleteCas,
                    node: Node::default(),
                    index: 9,
                },
            ]),
        ];
        for cmd in cmds {
            let bytes = cmd.encode().unwrap();
            assert_eq!(Command::decode(&bytes).unwrap(), cmd);
        }
        for v in KvVerb::ALL {
            assert_eq!(KvVerb::parse(v.as_str()), Some(v));
        }
        assert_eq!(KvVerb::parse("SET"), None);
        assert!(KvVerb::Lock.is_write() && !KvVerb::GetTree.is_write());
    }
}
