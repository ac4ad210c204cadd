//! The records kept by the state store: nodes, services, health checks and KV entries.
//!
//! These are the internal forms. They serialize without `skip_serializing_if` so that the
//! Raft log's binary encoding stays positional and stable; the HTTP layer builds Consul's
//! exact JSON shapes from them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Check status values, exactly as Consul spells them.
pub mod status {
    /// The check passes.
    pub const PASSING: &str = "passing";
    /// The check warns; instances still serve unless `passing` filtering is asked for.
    pub const WARNING: &str = "warning";
    /// The check fails; instances are excluded from healthy answers.
    pub const CRITICAL: &str = "critical";
    /// Matches every status (for `/v1/health/state/any`).
    pub const ANY: &str = "any";
    /// Maintenance-mode status used by Consul (reported as critical).
    pub const MAINTENANCE: &str = "maintenance";

    /// Whether `s` is a status a check may hold.
    pub fn is_valid(s: &str) -> bool {
        matches!(s, PASSING | WARNING | CRITICAL)
    }

    /// Ordering used to aggregate many checks: the worst wins.
    pub fn severity(s: &str) -> u8 {
        match s {
            PASSING => 0,
            WARNING => 1,
            _ => 2,
        }
    }
}

/// Raft indexes of a record: when it was created and last modified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftIndex {
    /// Index of the log entry that created the record.
    pub create_index: u64,
    /// Index of the log entry that last changed the record.
    pub modify_index: u64,
}

/// A catalog node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node UUID (may be empty).
    pub id: String,
    /// Node name, the primary key.
    pub node: String,
    /// Address other nodes and clients reach it at.
    pub address: String,
    /// Datacenter the node lives in.
    pub datacenter: String,
    /// Extra addresses (`lan`, `wan`, ...).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Raft indexes.
    pub index: RaftIndex,
}

/// Weights used by DNS SRV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// Weight while passing.
    pub passing: i32,
    /// Weight while warning.
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// An address and port pair (`ServiceTaggedAddresses` values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// A service instance on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeService {
    /// Service kind ("" for a typical service).
    pub kind: String,
    /// Instance ID, unique on its node.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address ("" means the node's address).
    pub address: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Metadata.
    #[serde(serialize_with = "serialize_meta")]
    pub meta: MetaMap,
    /// Port.
    pub port: u16,
    /// Unix socket path.
    pub socket_path: String,
    /// DNS weights.
    pub weights: Weights,
    /// Whether catalog tag edits survive anti-entropy.
    pub enable_tag_override: bool,
    /// Raft indexes.
    pub index: RaftIndex,
}

/// Service metadata: a sorted vector, not a tree. Most instances carry a handful of keys,
/// and a one-entry `BTreeMap` allocates a whole 544-byte node; with 100,000 instances that
/// was a third of the store's memory. Encodes exactly like a map (JSON object, postcard map),
/// so stored logs and snapshots are unchanged.
pub type MetaMap = litemap::LiteMap<String, String>;

/// Serializes a [`MetaMap`] as a map in every format (an empty one included, which the
/// map type itself would write as a JSON array).
pub fn serialize_meta<S: serde::Serializer>(m: &MetaMap, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter())
}

/// How an agent runs a check; kept in the catalog as Consul's `Definition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    /// URL probed by an HTTP check.
    pub http: String,
    /// Method of an HTTP check.
    pub method: String,
    /// Headers of an HTTP check.
    pub header: BTreeMap<String, Vec<String>>,
    /// Body of an HTTP check.
    pub body: String,
    /// Skip TLS verification for an HTTPS check.
    pub tls_skip_verify: bool,
    /// SNI name for an HTTPS check.
    pub tls_server_name: String,
    /// `host:port` of a TCP check.
    pub tcp: String,
    /// Interval in nanoseconds.
    pub interval_ns: u64,
    /// Timeout in nanoseconds.
    pub timeout_ns: u64,
    /// TTL in nanoseconds (TTL checks).
    pub ttl_ns: u64,
    /// Reap the service after this long critical, in nanoseconds (0 = never).
    pub deregister_critical_service_after_ns: u64,
}

/// A health check bound to a node and optionally a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Node the check belongs to.
    pub node: String,
    /// Check ID, unique on its node.
    pub check_id: String,
    /// Human name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Operator notes.
    pub notes: String,
    /// Last output.
    pub output: String,
    /// Service instance the check is bound to ("" for a node check).
    pub service_id: String,
    /// Name of that service.
    pub service_name: String,
    /// Tags of that service.
    pub service_tags: Vec<String>,
    /// `ttl`, `http`, `tcp`, ... ("" for externally managed checks).
    pub check_type: String,
    /// How the check runs.
    pub definition: CheckDefinition,
    /// Raft indexes.
    pub index: RaftIndex,
}

/// A KV entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Full key.
    pub key: String,
    /// Opaque client flags (full u64).
    pub flags: u64,
    /// Raw value (empty = Consul's `null`). Shared bytes, so that copying an entry (a
    /// copy-on-write table, a read answer) never copies the value; encoded exactly as a
    /// `Vec<u8>` would be (a length-prefixed byte sequence, or an array of numbers in JSON).
    pub value: Bytes,
    /// Number of times the key was acquired by a session.
    pub lock_index: u64,
    /// Session holding the lock ("" for none).
    pub session: String,
    /// Raft indexes.
    pub index: RaftIndex,
}

/// What happens to the keys a session holds when the session is invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionBehavior {
    /// The locks are released; the keys stay (Consul's default).
    #[default]
    Release,
    /// The locked keys are deleted.
    Delete,
}

impl SessionBehavior {
    /// Consul's spelling: `release` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }

    /// Parses Consul's spelling (exact, lower case).
    pub fn parse(s: &str) -> Option<SessionBehavior> {
        match s {
            "release" => Some(SessionBehavior::Release),
            "delete" => Some(SessionBehavior::Delete),
            _ => None,
        }
    }
}

/// A service check a session is bound to (`ServiceChecks` entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCheck {
    /// Check ID.
    pub id: String,
    /// Namespace (always "" outside Consul Enterprise; kept for the JSON shape).
    pub namespace: String,
}

/// A session: the owner of KV locks, invalidated by its TTL, its checks or its node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Session UUID, chosen by the leader before the create is proposed.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Node the session belongs to; deregistering the node invalidates the session.
    pub node: String,
    /// Lock-delay in nanoseconds, as given (capped at 60 s when applied).
    pub lock_delay_ns: u64,
    /// Release or delete the held keys on invalidation.
    pub behavior: SessionBehavior,
    /// TTL exactly as given (`"15s"`, `"15.0s"`); "" for none.
    pub ttl: String,
    /// Node-level checks the session is bound to.
    pub node_checks: Vec<String>,
    /// Service checks the session is bound to.
    pub service_checks: Vec<ServiceCheck>,
    /// Deprecated `Checks` list (pre-1.7 clients), still honoured.
    pub checks: Vec<String>,
    /// Raft indexes.
    pub index: RaftIndex,
}

impl Session {
    /// Every check the session is bound to: `Checks`, then `NodeChecks`, then `ServiceChecks`,
    /// without duplicates.
    pub fn check_ids(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let all = self
            .checks
            .iter()
            .map(String::as_str)
            .chain(self.node_checks.iter().map(String::as_str))
            .chain(self.service_checks.iter().map(|c| c.id.as_str()));
        for id in all {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// [`DirEntry`] as it was with a `Vec<u8>` value: the encodings must not have changed.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct VecDirEntry {
        key: String,
        flags: u64,
        value: Vec<u8>,
        lock_index: u64,
        session: String,
        index: RaftIndex,
    }

    #[test]
    fn kv_values_encode_as_a_vec_did() {
        for value in [
            Vec::new(),
            b"v".to_vec(),
            (0..=255u8).cycle().take(70_000).collect(),
        ] {
            let old = VecDirEntry {
                key: "a/b".into(),
                flags: 0x2ddc_cbc0_58a5_0c18,
                value: value.clone(),
                lock_index: 3,
                session: "s".into(),
                index: RaftIndex {
                    create_index: 5,
                    modify_index: 300,
                },
            };
            let new = DirEntry {
                key: old.key.clone(),
                flags: old.flags,
                value: Bytes::from(value),
                lock_index: old.lock_index,
                session: old.session.clone(),
                index: old.index,
            };
            let bin = postcard::to_stdvec(&old).unwrap();
            assert_eq!(postcard::to_stdvec(&new).unwrap(), bin);
            assert_eq!(postcard::from_bytes::<DirEntry>(&bin).unwrap(), new);
            let json = serde_json::to_string(&old).unwrap();
            assert_eq!(serde_json::to_string(&new).unwrap(), json);
            assert_eq!(
                serde_json::to_string_pretty(&new).unwrap(),
                serde_json::to_string_pretty(&old).unwrap()
            );
            assert_eq!(serde_json::from_str::<DirEntry>(&json).unwrap(), new);
        }
    }
}
