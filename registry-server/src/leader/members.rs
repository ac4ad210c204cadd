//! The leader's reconciliation of gossip membership into the catalog (Consul's
//! `leader.go` `reconcileMember` / `reconcileReaped`).
//!
//! The gossip layer lives in the agent crate; it reaches this module through
//! [`MemberSource`]. While this server leads, [`run`] compares the members it reports with
//! the catalog and proposes Raft commands so that:
//!
//! - every alive member is a catalog node with a passing `serfHealth` check;
//! - a member the failure detector declared failed has a critical `serfHealth` (its
//!   instances leave `?passing` and DNS; sessions bound to the check are invalidated by the
//!   state machine, which releases their locks);
//! - a member that left (gracefully or by `force-leave`) or was reaped after
//!   `reconnect_timeout` is deregistered;
//! - a catalog node that carries a `serfHealth` check but is no gossip member at all is
//!   deregistered once gossip has settled and the node stayed absent for [`ABSENT_GRACE`].
//!
//! A server member that left or was reaped is also removed from the Raft configuration, as
//! Consul's leader does (a graceful leave has already removed itself; this covers
//! `force-leave` and reaping, which would otherwise leave a dead voter counting against the
//! quorum).
//!
//! The leader only ever creates a missing node or rewrites `serfHealth`: node addresses and
//! metadata stay the agent's (its anti-entropy owns them).
//!
//! As in Consul, the work follows membership changes: a change reconciles the members whose
//! status changed, at once, and the whole walk (every member, every catalog node with
//! `serfHealth`) runs when leadership is gained and every [`RECONCILE_INTERVAL`] (see
//! `members/reconcile.rs`). This module holds the member types and the planning.

use crate::raft::membership::RaftConfiguration;
use crate::raft::types::NodeId;
use crate::state::{Db, Store};
use registry_proto::command::{DeregisterRequest, RegisterRequest};
use registry_proto::model::{status, HealthCheck, Node};
use registry_proto::Command;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// ID of the node-level gossip health check.
pub const SERF_CHECK_ID: &str = "serfHealth";
/// Name of the `serfHealth` check.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Output of `serfHealth` while the member is alive (Consul's text).
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Output of `serfHealth` once the member failed (Consul's text).
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// How often the leader walks every member and every catalog node with `serfHealth`
/// (Consul's `reconcile_interval`); between walks only membership changes are reconciled.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Environment variable that changes [`RECONCILE_INTERVAL`], for tests only: a Go duration
/// (`"5s"`).
pub const TEST_RECONCILE_INTERVAL_ENV: &str = "REGISTRY_TEST_RECONCILE_INTERVAL";
/// How long a catalog node with `serfHealth` must stay absent from gossip before it is
/// deregistered.
pub const ABSENT_GRACE: Duration = Duration::from_secs(30);

/// A member's gossip status, as the failure detector and the members' own state say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Heard from recently.
    Alive,
    /// Announced it is leaving.
    Leaving,
    /// Left gracefully (or was force-left).
    Left,
    /// Declared failed by the failure detector.
    Failed,
    /// Failed for longer than `reconnect_timeout`: no longer listed, to be deregistered.
    Reaped,
}

impl MemberStatus {
    /// Serf's numeric status (`/v1/agent/members` `Status`): 1 alive, 2 leaving, 3 left,
    /// 4 failed. A reaped member is never listed; it reports 4.
    pub fn code(self) -> u8 {
        match self {
            MemberStatus::Alive => 1,
            MemberStatus::Leaving => 2,
            MemberStatus::Left => 3,
            MemberStatus::Failed | MemberStatus::Reaped => 4,
        }
    }
}

/// One LAN gossip member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipMember {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: IpAddr,
    /// Gossip port.
    pub port: u16,
    /// Status.
    pub status: MemberStatus,
    /// Serf tags (`role`, `dc`, `id`, `port`, ...).
    pub tags: BTreeMap<String, String>,
}

impl GossipMember {
    /// Whether the member is a server (`role=consul`).
    pub fn is_server(&self) -> bool {
        self.tags.get("role").map(String::as_str) == Some("consul")
    }

    /// The server port a server member advertises (`port` tag).
    pub fn server_port(&self) -> Option<u16> {
        self.tags.get("port")?.parse().ok()
    }
}

/// What the leader needs of the gossip layer.
pub trait MemberSource: Send + Sync + 'static {
    /// Every member this node knows, itself included, reaped members too.
    fn members(&self) -> Vec<GossipMember>;
    /// A channel that changes whenever a member's status changes.
    fn changes(&self) -> watch::Receiver<u64>;
    /// Whether gossip has run long enough that a node absent from [`Self::members`] is
    /// really not a member.
    fn settled(&self) -> bool;
}

/// The alive servers of a member list and their server-port addresses: the "list of
/// servers" client agents forward to.
pub fn alive_servers(members: &[GossipMember]) -> Vec<(String, std::net::SocketAddr)> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive && m.is_server())
        .filter_map(|m| {
            let port = m.server_port()?;
            Some((m.name.clone(), std::net::SocketAddr::new(m.addr, port)))
        })
        .collect()
}

fn serf_check(node: &str, alive: bool) -> HealthCheck {
    HealthCheck {
        node: node.to_string(),
        check_id: SERF_CHECK_ID.to_string(),
        name: SERF_CHECK_NAME.to_string(),
        status: if alive {
            status::PASSING
        } else {
            status::CRITICAL
        }
        .to_string(),
        output: if alive {
            SERF_ALIVE_OUTPUT
        } else {
            SERF_FAILED_OUTPUT
        }
        .to_string(),
        ..Default::default()
    }
}

fn new_node(m: &GossipMember, datacenter: &str) -> Node {
    let address = m.addr.to_string();
    let family = if m.addr.is_ipv4() { "ipv4" } else { "ipv6" };
    let mut tagged = BTreeMap::new();
    for pool in ["lan", "wan"] {
        tagged.insert(pool.to_string(), address.clone());
        tagged.insert(format!("{pool}_{family}"), address.clone());
    }
    Node {
        id: m.tags.get("id").cloned().unwrap_or_default(),
        node: m.name.clone(),
        address,
        datacenter: datacenter.to_string(),
        tagged_addresses: tagged,
        ..Default::default()
    }
}

/// Whether `m` belongs to this datacenter's pool (members without a `dc` tag do).
fn in_datacenter(m: &GossipMember, datacenter: &str) -> bool {
    m.tags.get("dc").is_none_or(|dc| dc == datacenter)
}

/// Whether the catalog holds `node` with a `serfHealth` check (a node gossip keeps alive).
fn has_serf_check(db: &Db, node: &str) -> bool {
    db.checks
        .get(node)
        .is_some_and(|c| c.contains_key(SERF_CHECK_ID))
}

/// The command, if any, that brings the catalog in line with member `m` (Consul's
/// `reconcileMember`).
fn plan_member(
    db: &Db,
    m: &GossipMember,
    self_name: &str,
    datacenter: &str,
    out: &mut Vec<Command>,
) {
    let existing = db.nodes.get(&m.name);
    match m.status {
        MemberStatus::Alive | MemberStatus::Failed => {
            let alive = m.status == MemberStatus::Alive;
            let want = serf_check(&m.name, alive);
            let have = db
                .node_checks(&m.name)
                .find(|c| c.check_id == SERF_CHECK_ID);
            match (existing, have) {
                (Some(_), Some(c)) if c.status == want.status && c.output == want.output => {}
                (Some(node), _) => out.push(Command::Register(RegisterRequest {
                    node: node.clone(),
                    skip_node_update: true,
                    service: None,
                    checks: vec![want],
                })),
                // The agent's own anti-entropy may register the node (with its
                // metadata) between this read and the apply: never overwrite it then.
                (None, _) => out.push(Command::Register(RegisterRequest {
                    node: new_node(m, datacenter),
                    skip_node_update: true,
                    service: None,
                    checks: vec![want],
                })),
            }
        }
        MemberStatus::Left | MemberStatus::Reaped => {
            if existing.is_some() && m.name != self_name {
                out.push(Command::Deregister(DeregisterRequest {
                    node: m.name.clone(),
                    ..Default::default()
                }));
            }
        }
        MemberStatus::Leaving => {}
    }
}

/// The commands that bring the catalog in line with `members`: every member, then every
/// catalog node (the full walk). `absent_since` remembers when catalog nodes were first seen
/// missing from gossip; `now` is compared against it.
pub fn plan(
    store: &Store,
    members: &[GossipMember],
    self_name: &str,
    datacenter: &str,
    settled: bool,
    absent_since: &mut HashMap<String, Instant>,
    now: Instant,
) -> Vec<Command> {
    let db = store.read();
    let mut out = Vec::new();
    let mut known: HashMap<&str, MemberStatus> = HashMap::new();
    for m in members {
        if !in_datacenter(m, datacenter) {
            continue;
        }
        known.insert(m.name.as_str(), m.status);
        plan_member(&db, m, self_name, datacenter, &mut out);
    }
    // Catalog nodes kept alive by gossip that gossip no longer knows (Consul's
    // `reconcileReaped`).
    let mut still_absent = HashMap::new();
    for (node, checks) in db.checks.iter() {
        if node == self_name || known.contains_key(node.as_str()) {
            continue;
        }
        if !checks.contains_key(SERF_CHECK_ID) {
            continue;
        }
        let since = absent_since.get(node).copied().unwrap_or(now);
        still_absent.insert(node.clone(), since);
        if settled && now.duration_since(since) >= ABSENT_GRACE {
            out.push(Command::Deregister(DeregisterRequest {
                node: node.clone(),
                ..Default::default()
            }));
        }
    }
    *absent_since = still_absent;
    out
}

/// Raft servers whose gossip member (a server, not this one) left or was reaped.
pub fn departed_servers(
    members: &[GossipMember],
    self_name: &str,
    cfg: &RaftConfiguration,
) -> BTreeSet<NodeId> {
    members
        .iter()
        .filter(|m| m.is_server() && m.name != self_name)
        .filter(|m| matches!(m.status, MemberStatus::Left | MemberStatus::Reaped))
        .filter_map(|m| cfg.servers.iter().find(|s| s.node.name == m.name))
        .map(|s| s.id)
        .collect()
}

mod reconcile;
pub use reconcile::{reconcile_interval, run, Reconciler};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
