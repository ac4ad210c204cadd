//! The tables and their secondary indexes, with the read helpers queries use.
//!
//! | table    | primary key       | secondary indexes                      |
//! |----------|-------------------|----------------------------------------|
//! | nodes    | node name         | -                                      |
//! | services | (node, id)        | by service name; per-name index        |
//! | (both)   | -                 | by IP address (`addresses.rs`)         |
//! | checks   | (node, check id)  | -                                      |
//! | kvs      | key               | tombstones (deleted key -> index)      |
//! | sessions | session ID        | by node; by (node, check); held keys   |
//! | config entries | (kind, name) | -                                    |
//!
//! Besides the global index (last applied entry) each table has its own index, and each
//! service name and node has one: a query's `X-Consul-Index` comes from the finest one that
//! covers its result.

use super::addresses::AddressIndex;
use super::Shared;
use registry_proto::command::AutopilotConfig;
use registry_proto::config_entry::ConfigEntry;
use registry_proto::model::{DirEntry, HealthCheck, Node, NodeService, Session};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The tables that carry an index of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Table {
    /// Nodes.
    Nodes,
    /// Service instances.
    Services,
    /// Health checks.
    Checks,
    /// KV entries (and their tombstones).
    Kvs,
    /// Sessions.
    Sessions,
}

/// Last modify index of each table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    /// Nodes table.
    pub nodes: u64,
    /// Services table.
    pub services: u64,
    /// Checks table.
    pub checks: u64,
    /// KV table.
    pub kvs: u64,
    /// Sessions table.
    pub sessions: u64,
}

impl TableIndexes {
    /// Index of one table.
    pub fn get(&self, t: Table) -> u64 {
        match t {
            Table::Nodes => self.nodes,
            Table::Services => self.services,
            Table::Checks => self.checks,
            Table::Kvs => self.kvs,
            Table::Sessions => self.sessions,
        }
    }

    pub(crate) fn bump(&mut self, t: Table, index: u64) {
        let slot = match t {
            Table::Nodes => &mut self.nodes,
            Table::Services => &mut self.services,
            Table::Checks => &mut self.checks,
            Table::Kvs => &mut self.kvs,
            Table::Sessions => &mut self.sessions,
        };
        *slot = (*slot).max(index);
    }
}

/// The instances of one service name, as (node, instance ID).
pub type InstanceRefs = BTreeSet<(String, String)>;

/// The services of one node by instance ID. Each record is [`Shared`] too, so that copying
/// the map (a write while a snapshot holds it) copies keys and pointers, not the records.
pub type NodeServices = BTreeMap<String, Shared<NodeService>>;

/// The checks of one node by check ID, each [`Shared`] as in [`NodeServices`].
pub type NodeChecks = BTreeMap<String, Shared<HealthCheck>>;

/// All replicated state. Maps are ordered so that iteration, snapshots and answers are
/// deterministic.
///
/// Every table is [`Shared`] (copy-on-write), and so are the per-node and per-service-name
/// maps nested in them: cloning a `Db` is a handful of reference-count bumps, and the clone
/// keeps its contents while the original is written (see [`Store::view`](super::Store::view)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Db {
    /// Index of the last applied log entry.
    pub index: u64,
    /// Per-table indexes.
    pub table_index: TableIndexes,
    /// Nodes by name.
    pub nodes: Shared<BTreeMap<String, Node>>,
    /// Services by node, then instance ID.
    pub services: Shared<BTreeMap<String, Shared<NodeServices>>>,
    /// Checks by node, then check ID.
    pub checks: Shared<BTreeMap<String, Shared<NodeChecks>>>,
    /// Instances by service name: (node, id).
    pub services_by_name: Shared<BTreeMap<String, Shared<InstanceRefs>>>,
    /// Nodes and instances by IP address, for reverse lookups (see `state/addresses.rs`).
    /// Derived from the nodes and services: not encoded, rebuilt when a state is decoded.
    #[serde(skip)]
    pub addresses: Shared<AddressIndex>,
    /// Last index at which anything about a service name changed (instances, checks, nodes).
    pub service_index: Shared<BTreeMap<String, u64>>,
    /// Last index at which anything about a node changed (node, services, checks).
    pub node_index: Shared<BTreeMap<String, u64>>,
    /// KV entries by key, each [`Shared`] as in [`NodeServices`].
    pub kvs: Shared<BTreeMap<String, Shared<DirEntry>>>,
    /// Deleted keys and the index of their deletion, so prefix indexes never go backwards.
    pub kv_tombstones: Shared<BTreeMap<String, u64>>,
    /// Sessions by ID.
    pub sessions: Shared<BTreeMap<String, Session>>,
    /// Session IDs by node.
    pub sessions_by_node: Shared<BTreeMap<String, BTreeSet<String>>>,
    /// Session IDs by the (node, check ID) they are bound to.
    pub session_checks: Shared<BTreeMap<(String, String), BTreeSet<String>>>,
    /// Keys each session has acquired. May name keys since deleted or re-locked by another
    /// session: readers check `DirEntry::session` before acting on an entry.
    pub session_locks: Shared<BTreeMap<String, BTreeSet<String>>>,
    /// The autopilot configuration, once stored (until then the configured one applies).
    /// Older snapshots are decoded by appending the defaults of the fields after it.
    pub autopilot: Option<AutopilotConfig>,
    /// Config entries by (kind, name) (snapshot version 3).
    pub config_entries: Shared<BTreeMap<(String, String), ConfigEntry>>,
    /// ACL tokens, policies and roles (snapshot version 3).
    pub acl: Shared<AclTables>,
    /// Prepared queries and network coordinates (snapshot version 4). Keep this field last
    /// (see `state/snapshot.rs`).
    pub queries: Shared<QueryTables>,
}

/// Prepared queries and node coordinates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryTables {
    /// Prepared queries by ID.
    pub queries: BTreeMap<String, registry_proto::prepared_query::PreparedQuery>,
    /// Last index at which a prepared query was written or deleted.
    pub queries_index: u64,
    /// LAN coordinates by (node, segment).
    pub coordinates: BTreeMap<(String, String), registry_proto::coordinate::Coordinate>,
    /// Last index at which coordinates changed.
    pub coordinates_index: u64,
}

impl QueryTables {
    /// The query named `name` (names are unique, compared without case as Consul's index).
    pub fn by_name(&self, name: &str) -> Option<&registry_proto::prepared_query::PreparedQuery> {
        self.queries
            .values()
            .find(|q| !q.name.is_empty() && q.name.eq_ignore_ascii_case(name))
    }

    /// The coordinate of `node` (default segment).
    pub fn coordinate(&self, node: &str) -> Option<&registry_proto::coordinate::Coordinate> {
        self.coordinates.get(&(node.to_string(), String::new()))
    }
}

/// The ACL tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTables {
    /// Tokens by accessor ID.
    pub tokens: BTreeMap<String, registry_proto::acl::Token>,
    /// Accessor IDs by secret ID.
    pub secrets: BTreeMap<String, String>,
    /// Policies by ID.
    pub policies: BTreeMap<String, registry_proto::acl::Policy>,
    /// Roles by ID.
    pub roles: BTreeMap<String, registry_proto::acl::Role>,
    /// Index of the bootstrap (0: never bootstrapped).
    pub bootstrap_index: u64,
    /// Last index at which any ACL table changed.
    pub index: u64,
    /// Auth methods by name.
    pub auth_methods: BTreeMap<String, registry_proto::acl::AuthMethod>,
    /// Binding rules by ID.
    pub binding_rules: BTreeMap<String, registry_proto::acl::BindingRule>,
}

impl AclTables {
    /// The token whose secret is `secret`.
    pub fn token_by_secret(&self, secret: &str) -> Option<&registry_proto::acl::Token> {
        self.tokens.get(self.secrets.get(secret)?)
    }

    /// The policy named `name`.
    pub fn policy_by_name(&self, name: &str) -> Option<&registry_proto::acl::Policy> {
        self.policies.values().find(|p| p.name == name)
    }

    /// The role named `name`.
    pub fn role_by_name(&self, name: &str) -> Option<&registry_proto::acl::Role> {
        self.roles.values().find(|r| r.name == name)
    }
}

/// A never-zero index, as `X-Consul-Index` requires.
pub fn nonzero(i: u64) -> u64 {
    i.max(1)
}

impl Db {
    /// The services on a node (empty when none).
    pub fn node_services(&self, node: &str) -> impl Iterator<Item = &NodeService> {
        self.services
            .get(node)
            .into_iter()
            .flat_map(|m| m.values().map(|s| &**s))
    }

    /// The checks on a node (empty when none).
    pub fn node_checks(&self, node: &str) -> impl Iterator<Item = &HealthCheck> {
        self.checks
            .get(node)
            .into_iter()
            .flat_map(|m| m.values().map(|c| &**c))
    }

    /// The instances of a service name with their nodes, ordered by (node, id).
    pub fn service_instances(&self, name: &str) -> Vec<(&Node, &NodeService)> {
        let Some(set) = self.services_by_name.get(name) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|(node, id)| {
                let n = self.nodes.get(node)?;
                let s = self.services.get(node)?.get(id)?;
                Some((n, &**s))
            })
            .collect()
    }

    /// Checks that apply to one instance: node-level checks plus the instance's own.
    pub fn instance_checks(&self, node: &str, service_id: &str) -> Vec<&HealthCheck> {
        self.node_checks(node)
            .filter(|c| c.service_id.is_empty() || c.service_id == service_id)
            .collect()
    }

    /// Index for queries about one service name.
    pub fn service_name_index(&self, name: &str) -> u64 {
        nonzero(
            self.service_index
                .get(name)
                .copied()
                .unwrap_or(self.table_index.services),
        )
    }

    /// Index for queries about one node.
    pub fn node_name_index(&self, node: &str) -> u64 {
        nonzero(
            self.node_index
                .get(node)
                .copied()
                .unwrap_or(self.table_index.nodes),
        )
    }

    /// Index of a table, never zero.
    pub fn table(&self, t: Table) -> u64 {
        nonzero(self.table_index.get(t))
    }

    /// Entries whose key starts with `prefix`.
    pub fn kv_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a DirEntry> + 'a {
        self.kvs
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, v)| &**v)
    }

    /// Index of a prefix listing: the newest entry or tombstone under it, else the table's.
    pub fn kv_prefix_index(&self, prefix: &str) -> u64 {
        let live = self.kv_prefix(prefix).map(|e| e.index.modify_index).max();
        let dead = self
            .kv_tombstones
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max();
        match live.max(dead) {
            Some(i) if i > 0 => i,
            _ => self.table(Table::Kvs),
        }
    }

    /// The sessions of a node, ordered by ID.
    pub fn node_sessions(&self, node: &str) -> Vec<&Session> {
        self.sessions_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .collect()
    }

    /// The sessions bound to one check of a node, ordered by ID.
    pub fn check_sessions(&self, node: &str, check_id: &str) -> Vec<String> {
        self.session_checks
            .get(&(node.to_string(), check_id.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}
