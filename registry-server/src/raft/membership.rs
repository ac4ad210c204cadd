//! Raft membership operations, run on the leader: the configuration as Consul lists it,
//! adding learners, promoting them to voters, removing servers and transferring leadership.
//!
//! The leader's view comes from openraft's metrics: the membership, its log index, and for
//! each follower or learner the last log index the leader knows it holds (`replication`).
//!
//! # Leadership transfer
//!
//! openraft 0.9 has no leadership-transfer call, so [`RaftHandle::transfer_leader`] builds
//! one from its parts. A voter grants its vote to a candidate with a higher term and a log at
//! least as long as its own, unless its *vote lease* is still running: it refuses while less
//! than `election_timeout_max` has passed since it last heard from a leader (openraft's
//! `Engine::handle_vote_req`). The leader itself only refreshes its own vote when it is
//! elected, so once it has led for longer than the lease it grants the vote at once, which
//! makes it step down. The steps:
//!
//! 1. the leader stops its periodic heartbeats (`runtime_config().heartbeat(false)`), so that
//!    the other voters' leases run out;
//! 2. it asks the target, over the internal endpoint [`ELECT_PATH`] on the server port, to
//!    catch up with the leader's last log index and then to campaign
//!    (`trigger().elect()`), again every [`ELECT_RETRY`] until it leads or the deadline
//!    passes (each attempt has a higher term; voters whose lease is still running refuse,
//!    the next attempt finds more of them free);
//! 3. the leader waits (bounded by [`TRANSFER_TIMEOUT`]) until it sees the new leader, and
//!    in every case turns its heartbeats back on (the setting outlives this term).
//!
//! With three voters the target needs one vote besides its own, and the old leader's is free
//! as soon as it has led for `election_timeout_max` (2 s); in larger clusters the followers'
//! leases lapse 2 s after the last heartbeat, still before they would campaign themselves
//! (lease plus election timeout, 3 s or more).
//!
//! # Internal endpoints
//!
//! The handlers here serve (routed by `crate::rpc`), on the server port, the target side of a transfer and the
//! calls a follower makes to act on the leader: `stats` (what autopilot asks every server),
//! `configuration`, `remove-peer` and `transfer-leader`. Bodies are JSON; replies are
//! `200 OK` with a JSON [`OpResult`].

use super::types::{NodeId, RegistryNode};
use super::RaftHandle;
use crate::ServerError;
use axum::extract::State;
use axum::Json;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

pub use crate::rpc::{
    CONFIGURATION_PATH, ELECT_PATH, REMOVE_PEER_PATH, STATS_PATH, TRANSFER_LEADER_PATH,
};

/// How long a membership change may take to commit.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a leadership transfer may take end to end.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the transfer target campaigns again while it is not elected.
pub const ELECT_RETRY: Duration = Duration::from_millis(400);
/// How long a call to another server may take (a transfer waits for the election).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stats call may take before the server counts as unreachable.
pub const STATS_TIMEOUT: Duration = Duration::from_millis(900);
/// How long the stats endpoint waits for the next contact from the leader, so that the
/// last contact it reports does not depend on where in the heartbeat interval (150 ms) the
/// question falls.
pub const STATS_FRESH_WAIT: Duration = Duration::from_millis(400);
/// A last contact this recent needs no waiting.
const FRESH_CONTACT_MS: u64 = 30;

/// One server of the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftServerInfo {
    /// Raft node ID.
    pub id: NodeId,
    /// Name and addresses.
    pub node: RegistryNode,
    /// Whether it is the current leader.
    pub leader: bool,
    /// Whether it votes (a learner does not).
    pub voter: bool,
    /// The last log index it holds, as far as the answering server knows (the leader knows
    /// every server's; a follower only its own, 0 for the others).
    pub last_index: u64,
}

/// The Raft configuration: its servers (by ID) and the log index it was stored at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfiguration {
    /// The servers, ordered by ID.
    pub servers: Vec<RaftServerInfo>,
    /// Log index of the membership entry.
    pub index: u64,
}

impl RaftConfiguration {
    /// The server with this ID.
    pub fn get(&self, id: NodeId) -> Option<&RaftServerInfo> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// The IDs of the voters.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.servers.iter().filter(|s| s.voter).map(|s| s.id)
    }
}

/// What one server says about its Raft state (Consul's autopilot `ServerStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Raft node ID.
    pub id: NodeId,
    /// Milliseconds since it last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
    /// Its current term.
    pub last_term: u64,
    /// Its last log index.
    pub last_index: u64,
    /// Its last applied log index.
    pub applied_index: u64,
    /// Whether it leads.
    pub leader: bool,
}

/// A server named by Raft ID or by Raft address (`?id=` / `?address=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRef {
    /// The Raft ID, as listed in the configuration (decimal).
    Id(String),
    /// The Raft address, `ip:port`.
    Address(String),
}

/// A leadership transfer request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The voter to hand over to (decimal Raft ID); any up-to-date voter when absent.
    pub id: Option<String>,
}

/// The target side of a transfer: catch up to `catch_up_to`, then campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectRequest {
    /// The leader's last log index when it asked.
    pub catch_up_to: u64,
    /// How long to keep trying, in milliseconds.
    pub within_ms: u64,
}

/// Why an operation on another server failed, as carried over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpError {
    /// Bad input (HTTP 400).
    BadRequest(String),
    /// Unknown server (HTTP 404).
    NotFound(String),
    /// The receiver is not the leader, or none is known.
    NoLeader,
    /// Anything else, with its text.
    Failed(String),
}

/// The reply of an internal operator endpoint.
pub type OpResult<T> = Result<T, OpError>;

impl From<ServerError> for OpError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::BadRequest(m) => OpError::BadRequest(m),
            ServerError::NotFound(m) => OpError::NotFound(m),
            ServerError::NoLeader => OpError::NoLeader,
            other => OpError::Failed(other.to_string()),
        }
    }
}

impl From<OpError> for ServerError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::BadRequest(m) => ServerError::BadRequest(m),
            OpError::NotFound(m) => ServerError::NotFound(m),
            OpError::NoLeader => ServerError::NoLeader,
            OpError::Failed(m) => ServerError::Internal(m),
        }
    }
}

/// Maps the outcome of a membership change.
fn change_result<T>(
    res: Result<T, RaftError<NodeId, ClientWriteError<NodeId, RegistryNode>>>,
) -> Result<(), ServerError> {
    match res {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(ServerError::NoLeader)
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(_),
        ))) => Err(ServerError::Internal(
            "another Raft configuration change is in progress; try again".into(),
        )),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ServerError::BadRequest(e.to_string()))
        }
        Err(e) => Err(ServerError::Raft(e.to_string())),
    }
}

/// The shared client of operator calls between servers (`None` if it cannot be built).
fn client() -> Result<&'static reqwest::Client, ServerError> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::tls::rpc::client_builder()
                .tcp_nodelay(true)
                .no_proxy()
                .connect_timeout(Duration::from_secs(2))
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| ServerError::Internal("cannot build the operator HTTP client".into()))
}

/// Calls an internal operator endpoint at `raft_addr`: `GET` without a body, else `POST`.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    raft_addr: &str,
    path: &str,
    req: Option<&Req>,
    timeout: Duration,
) -> Result<Resp, ServerError> {
    let url = format!("{}://{raft_addr}{path}", crate::tls::rpc::scheme());
    let builder = match req {
        Some(body) => client()?.post(&url).json(body),
        None => client()?.get(&url),
    };
    let fail = |e: reqwest::Error| ServerError::Internal(format!("{raft_addr}{path}: {e}"));
    let resp = builder.timeout(timeout).send().await.map_err(fail)?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(ServerError::Internal(format!(
            "{raft_addr}{path}: HTTP {status}: {text}"
        )));
    }
    let reply: OpResult<Resp> = resp.json().await.map_err(fail)?;
    reply.map_err(ServerError::from)
}

impl RaftHandle {
    /// Fails unless this node is the leader.
    fn require_leader(&self) -> Result<(), ServerError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(ServerError::NoLeader)
        }
    }

    /// The Raft configuration as this node sees it (complete with every server's last log
    /// index on the leader).
    pub fn configuration(&self) -> RaftConfiguration {
        let metrics = self.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let me = self.node_id();
        let leading = m.state == ServerState::Leader && m.current_leader == Some(me);
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let servers = membership
            .nodes()
            .map(|(id, node)| {
                let last_index = if *id == me {
                    m.last_log_index.unwrap_or(0)
                } else if leading {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .and_then(|l| l.as_ref())
                        .map_or(0, |l| l.index)
                } else {
                    0
                };
                RaftServerInfo {
                    id: *id,
                    node: node.clone(),
                    leader: m.current_leader == Some(*id),
                    voter: voters.contains(id),
                    last_index,
                }
            })
            .collect();
        RaftConfiguration {
            servers,
            index: m.membership_config.log_id().as_ref().map_or(0, |l| l.index),
        }
    }

    /// This server's Raft statistics (what autopilot asks every server for).
    pub fn stats(&self) -> ServerStats {
        let contact = self.last_contact_ms();
        let metrics = self.metrics();
        let m = metrics.borrow();
        ServerStats {
            id: self.node_id(),
            last_contact_ms: contact,
            last_term: m.current_term,
            last_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
            leader: m.state == ServerState::Leader && m.current_leader == Some(self.node_id()),
        }
    }

    /// This server's statistics, taken just after its next contact with the leader when one
    /// comes within [`STATS_FRESH_WAIT`] (what the stats endpoint answers): a follower that
    /// hears from the leader every heartbeat reports a last contact of a few milliseconds, one
    /// cut off from it reports the real, growing figure.
    pub async fn fresh_stats(&self) -> ServerStats {
        let deadline = tokio::time::Instant::now() + STATS_FRESH_WAIT;
        loop {
            let s = self.stats();
            if s.leader
                || s.last_contact_ms <= FRESH_CONTACT_MS
                || tokio::time::Instant::now() >= deadline
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks the server at `node` for its statistics (this server's own are local).
    pub async fn fetch_stats(&self, node: &RegistryNode) -> Result<ServerStats, ServerError> {
        if node.raft_addr == self.node().raft_addr {
            return Ok(self.stats());
        }
        call::<(), ServerStats>(&node.raft_addr, STATS_PATH, None, STATS_TIMEOUT).await
    }

    /// Adds a server as a learner (non-voting; replication starts at once). Leader only.
    pub async fn add_learner(&self, id: NodeId, node: RegistryNode) -> Result<(), ServerError> {
        self.require_leader()?;
        let res =
            tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.raft().add_learner(id, node, false))
                .await
                .map_err(|_| ServerError::Raft("timed out adding the learner".into()))?;
        change_result(res)
    }

    /// Promotes learners to voters, in one configuration change. Leader only.
    pub async fn promote_voters(&self, ids: BTreeSet<NodeId>) -> Result<(), ServerError> {
        self.require_leader()?;
        if ids.is_empty() {
            return Ok(());
        }
        let res = tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft()
                .change_membership(ChangeMembers::AddVoterIds(ids), false),
        )
        .await
        .map_err(|_| ServerError::Raft("timed out promoting to voter".into()))?;
        change_result(res)
    }

    /// The Raft ID `peer` names, with Consul's error text when none matches.
    pub fn resolve_peer(&self, peer: &PeerRef) -> Result<NodeId, ServerError> {
        let cfg = self.configuration();
        let found = match peer {
            PeerRef::Id(text) => text
                .trim()
                .parse::<NodeId>()
                .ok()
                .filter(|id| cfg.get(*id).is_some()),
            PeerRef::Address(addr) => cfg
                .servers
                .iter()
                .find(|s| s.node.raft_addr == *addr)
                .map(|s| s.id),
        };
        // Consul answers these with a 500 (a plain RPC error), and clients such as py-consul
        // tell them from a 404 "not found" result.
        found.ok_or_else(|| {
            ServerError::Internal(match peer {
                PeerRef::Id(id) => format!("id {id:?} was not found in the Raft configuration"),
                PeerRef::Address(a) => {
                    format!("address {a:?} was not found in the Raft configuration")
                }
            })
        })
    }

    /// Removes servers (voters or learners) in one configuration change; refuses to remove
    /// every voter. Removing the leader itself works: openraft keeps it leading until the
    /// new configuration is committed, then it steps down and the rest elect a leader.
    /// Leader only.
    pub async fn remove_servers(&self, ids: BTreeSet<NodeId>) -> Result<(), ServerError> {
        self.require_leader()?;
        let cfg = self.configuration();
        let ids: BTreeSet<NodeId> = ids
            .into_iter()
            .filter(|id| cfg.get(*id).is_some())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = cfg.voters().collect();
        let (gone_voters, gone_learners): (BTreeSet<NodeId>, BTreeSet<NodeId>) =
            ids.iter().partition(|id| voters.contains(id));
        if !gone_voters.is_empty() && gone_voters.len() >= voters.len() {
            return Err(ServerError::BadRequest(
                "cannot remove the last voter of the Raft configuration".into(),
            ));
        }
        tracing::warn!(voters = ?gone_voters, learners = ?gone_learners, "removing Raft servers");
        if !gone_voters.is_empty() {
            let res = tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                self.raft()
                    .change_membership(ChangeMembers::RemoveVoters(gone_voters), false),
            )
            .await
            .map_err(|_| ServerError::Raft("timed out removing the server".into()))?;
            change_result(res)?;
        }
        if !gone_learners.is_empty() {
            let res = tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                self.raft()
                    .change_membership(ChangeMembers::RemoveNodes(gone_learners), false),
            )
            .await
            .map_err(|_| ServerError::Raft("timed out removing the server".into()))?;
            change_result(res)?;
        }
        Ok(())
    }

    /// Removes one server by ID or Raft address (`DELETE /v1/operator/raft/peer`). Leader
    /// only.
    pub async fn remove_peer(&self, peer: &PeerRef) -> Result<NodeId, ServerError> {
        self.require_leader()?;
        let id = self.resolve_peer(peer)?;
        self.remove_servers(BTreeSet::from([id])).await?;
        Ok(id)
    }

    /// Hands leadership to the voter `target` (the most up-to-date other voter when `None`)
    /// and returns the new leader's ID once this node sees it lead. See the module docs.
    /// Leader only.
    pub async fn transfer_leader(&self, target: Option<&str>) -> Result<NodeId, ServerError> {
        self.require_leader()?;
        let me = self.node_id();
        let cfg = self.configuration();
        let target = match target {
            Some(text) => {
                let id = self.resolve_peer(&PeerRef::Id(text.to_string()))?;
                if id == me {
                    return Err(ServerError::BadRequest(
                        "cannot transfer leadership to itself".into(),
                    ));
                }
                if !cfg.get(id).is_some_and(|s| s.voter) {
                    return Err(ServerError::BadRequest(format!(
                        "server {id} is not a voter and cannot become leader"
                    )));
                }
                id
            }
            None => cfg
                .servers
                .iter()
                .filter(|s| s.voter && s.id != me)
                .max_by_key(|s| (s.last_index, std::cmp::Reverse(s.id)))
                .map(|s| s.id)
                .ok_or_else(|| {
                    ServerError::Internal(
                        "cannot transfer leadership: there is no other voter".into(),
                    )
                })?,
        };
        let node = cfg
            .get(target)
            .map(|s| s.node.clone())
            .ok_or_else(|| ServerError::NotFound(format!("server {target} not found")))?;
        let catch_up_to = self.metrics().borrow().last_log_index.unwrap_or(0);
        tracing::info!(target, node = %node, "transferring leadership");

        self.raft().runtime_config().heartbeat(false);
        let outcome = self.hand_over(target, &node, catch_up_to).await;
        self.raft().runtime_config().heartbeat(true);
        outcome?;
        Ok(target)
    }

    async fn hand_over(
        &self,
        target: NodeId,
        node: &RegistryNode,
        catch_up_to: u64,
    ) -> Result<(), ServerError> {
        let me = self.node_id();
        let req = ElectRequest {
            catch_up_to,
            within_ms: u64::try_from(TRANSFER_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        };
        let campaign = async {
            if node.raft_addr == self.node().raft_addr {
                return Err(ServerError::Internal(format!(
                    "server {target} has this server's address"
                )));
            }
            call::<ElectRequest, ()>(
                &node.raft_addr,
                ELECT_PATH,
                Some(&req),
                TRANSFER_TIMEOUT + Duration::from_secs(2),
            )
            .await
        };
        let campaign_result = campaign.await;
        // Whatever the target said, what counts is whether this node sees another leader.
        let seen = self
            .raft()
            .wait(Some(Duration::from_secs(3)))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "leadership transferred",
            )
            .await;
        match seen {
            Ok(m) if m.current_leader == Some(target) => Ok(()),
            Ok(m) => Err(ServerError::Internal(format!(
                "leadership went to {} instead of {target}",
                m.current_leader.map_or_else(String::new, |l| l.to_string())
            ))),
            Err(_) => Err(match campaign_result {
                Err(e) => ServerError::Internal(format!("failed to transfer leadership: {e}")),
                Ok(()) => ServerError::Internal(
                    "failed to transfer leadership: no new leader was seen".into(),
                ),
            }),
        }
    }

    /// The target side of a transfer: waits (bounded) until this node's log reaches
    /// `req.catch_up_to`, then campaigns every [`ELECT_RETRY`] until it leads or
    /// `req.within_ms` pass.
    pub async fn campaign(&self, req: ElectRequest) -> Result<(), ServerError> {
        let me = self.node_id();
        if !self
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me)
        {
            return Err(ServerError::BadRequest(format!(
                "server {me} is not a voter and cannot become leader"
            )));
        }
        let within = Duration::from_millis(req.within_ms).min(TRANSFER_TIMEOUT);
        let deadline = tokio::time::Instant::now() + within;
        let catch_up = within / 2;
        let caught_up = self
            .raft()
            .wait(Some(catch_up))
            .metrics(
                |m| m.last_log_index.unwrap_or(0) >= req.catch_up_to,
                "transfer target catches up",
            )
            .await;
        if caught_up.is_err() {
            tracing::info!(
                index = req.catch_up_to,
                "leadership transfer: log still behind the leader's; campaigning anyway"
            );
        }
        loop {
            if self.is_leader() {
                tracing::info!("leadership transfer: this server now leads");
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ServerError::Internal(
                    "leadership transfer: the target was not elected in time".into(),
                ));
            }
            self.raft()
                .trigger()
                .elect()
                .await
                .map_err(|e| ServerError::Raft(e.to_string()))?;
            let step = ELECT_RETRY.min(deadline - now);
            let _ = self
                .raft()
                .wait(Some(step))
                .state(ServerState::Leader, "transfer target elected")
                .await;
        }
    }

    /// Calls the internal operator endpoint `path` on the leader (`GET` without a body).
    pub async fn call_leader_op<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: Option<&Req>,
    ) -> Result<Resp, ServerError> {
        let (id, leader) = self.leader().ok_or(ServerError::NoLeader)?;
        if id == self.node_id() {
            return Err(ServerError::Internal(
                "this server leads; the operation runs locally".into(),
            ));
        }
        call(&leader.raft_addr, path, req, CALL_TIMEOUT).await
    }
}

fn reply<T>(res: Result<T, ServerError>) -> Json<OpResult<T>> {
    Json(res.map_err(OpError::from))
}

pub(crate) async fn stats(State(h): State<RaftHandle>) -> Json<OpResult<ServerStats>> {
    reply(Ok(h.fresh_stats().await))
}

pub(crate) async fn configuration(
    State(h): State<RaftHandle>,
) -> Json<OpResult<RaftConfiguration>> {
    reply(h.require_leader().map(|()| h.configuration()))
}

pub(crate) async fn elect(
    State(h): State<RaftHandle>,
    Json(req): Json<ElectRequest>,
) -> Json<OpResult<()>> {
    reply(h.campaign(req).await)
}

pub(crate) async fn remove_peer(
    State(h): State<RaftHandle>,
    Json(peer): Json<PeerRef>,
) -> Json<OpResult<NodeId>> {
    reply(h.remove_peer(&peer).await)
}

pub(crate) async fn transfer_leader(
    State(h): State<RaftHandle>,
    Json(req): Json<TransferRequest>,
) -> Json<OpResult<NodeId>> {
    reply(h.transfer_leader(req.id.as_deref()).await)
}

#[cfg(test)]
mod tests;
