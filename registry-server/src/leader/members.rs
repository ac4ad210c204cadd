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

use crate::query::write::Writer;
use crate::raft::membership::RaftConfiguration;
use crate::raft::types::NodeId;
use crate::raft::RaftHandle;
use crate::state::Store;
use registry_proto::command::{DeregisterRequest, RegisterRequest};
use registry_proto::model::{status, HealthCheck, Node};
use registry_proto::Command;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
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

/// How often the leader reconciles even without a membership change.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
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

/// The commands that bring the catalog in line with `members`. `absent_since` remembers
/// when catalog nodes were first seen missing from gossip; `now` is compared against it.
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
        if m.tags.get("dc").is_some_and(|dc| dc != datacenter) {
            continue;
        }
        known.insert(m.name.as_str(), m.status);
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
    // Catalog nodes kept alive by gossip that gossip no longer knows.
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

/// Reconciles while this server leads: on every membership change and every
/// [`RECONCILE_INTERVAL`].
pub async fn run(
    source: Arc<dyn MemberSource>,
    store: Arc<Store>,
    writer: Writer,
    raft: Option<RaftHandle>,
    self_name: String,
    datacenter: String,
    mut leadership: watch::Receiver<bool>,
) {
    let mut changes = source.changes();
    let mut absent_since: HashMap<String, Instant> = HashMap::new();
    loop {
        let leading = *leadership.borrow_and_update();
        if leading {
            changes.borrow_and_update();
            let members = source.members();
            if let Some(raft) = &raft {
                let gone = departed_servers(&members, &self_name, &raft.configuration());
                if !gone.is_empty() {
                    match raft.remove_servers(gone.clone()).await {
                        Ok(()) => {
                            tracing::info!(servers = ?gone, "removed departed servers from Raft")
                        }
                        Err(e) => {
                            tracing::warn!(servers = ?gone, error = %e, "cannot remove departed servers from Raft")
                        }
                    }
                }
            }
            let cmds = plan(
                &store,
                &members,
                &self_name,
                &datacenter,
                source.settled(),
                &mut absent_since,
                Instant::now(),
            );
            for cmd in cmds {
                let what = describe(&cmd);
                match writer.apply(cmd).await {
                    Ok(_) => tracing::info!(change = %what, "member reconciled into the catalog"),
                    Err(e) => {
                        tracing::warn!(change = %what, error = %e, "member reconcile failed");
                        break;
                    }
                }
            }
        } else {
            absent_since.clear();
        }
        tokio::select! {
            r = leadership.changed() => if r.is_err() { return },
            r = changes.changed(), if leading => if r.is_err() { return },
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
    }
}

fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Register(r) => {
            let st = r.checks.first().map(|c| c.status.as_str()).unwrap_or("");
            format!("node {} serfHealth {st}", r.node.node)
        }
        Command::Deregister(d) => format!("deregister node {}", d.node),
        _ => "other".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
