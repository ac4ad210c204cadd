//! Forming and changing the server cluster, the Consul way: servers find each other through
//! `retry_join` addresses (and `registry join`), wait until `bootstrap_expect` of them agree
//! on who they are, then bootstrap Raft exactly once; a server that finds an existing cluster
//! asks its leader to add it (as a learner that autopilot promotes once it is stable); a server
//! that leaves asks the leader to remove it from the voters.
//!
//! Servers talk on the server port (`/v1/internal/cluster/*`, JSON bodies, routed by
//! [`crate::rpc`]):
//! `hello` exchanges each side's [`PeerInfo`], `join` and `leave` change the membership on the
//! leader (a follower forwards them). The same listener serves Raft's RPCs and the
//! forwarding endpoints (`crate::rpc`).

pub mod bootstrap;

use crate::config::ServerConfig;
use crate::leader::sessions::SessionTimers;
use crate::raft::{NodeId, RaftHandle, RegistryNode};
use crate::state::Store;
use crate::ServerError;
use bootstrap::Candidate;
use openraft::error::RaftError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::rpc::{HELLO_PATH, JOIN_PATH, LEAVE_PATH};

/// How often an unjoined server retries its `retry_join` addresses while forming a cluster.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// A peer not heard from for this long no longer counts towards `bootstrap_expect`.
const PEER_EXPIRY: Duration = Duration::from_secs(15);
/// A peer's report counts for the bootstrap agreement only while this fresh.
const REPORT_FRESH: Duration = Duration::from_secs(3);
/// How often a server in a membership checks that the leader still lists it.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a membership change asked of the leader may take.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(15);

/// What one server says about itself in a `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Raft node ID.
    pub id: NodeId,
    /// Addresses and name.
    pub node: RegistryNode,
    /// Datacenter.
    pub datacenter: String,
    /// `bootstrap_expect` (0: never bootstraps).
    pub bootstrap_expect: usize,
    /// Whether it belongs to a cluster (has a Raft membership, or is bootstrapping one).
    pub initialized: bool,
    /// The leader it knows, if any.
    pub leader: Option<(NodeId, RegistryNode)>,
    /// IDs in its membership (voters and learners).
    pub members: Vec<NodeId>,
    /// Unjoined servers it knows that would bootstrap with it (itself included), with their
    /// nodes: the set it proposes to bootstrap.
    pub candidates: BTreeMap<NodeId, RegistryNode>,
}

/// A server to add or remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRequest {
    /// Raft node ID.
    pub id: NodeId,
    /// Its node (for a join).
    pub node: Option<RegistryNode>,
}

/// What this server knows about its peers while forming a cluster.
#[derive(Debug, Default)]
struct Discovery {
    /// Last report of each peer and when it arrived.
    peers: BTreeMap<NodeId, (PeerInfo, Instant)>,
    /// Set once this server decided to bootstrap (its reports say "initialized" from then).
    bootstrapping: bool,
}

/// This server's view of the cluster and the operations that change it.
pub struct Cluster {
    raft: RaftHandle,
    config: Arc<ServerConfig>,
    store: Arc<Store>,
    sessions: Arc<SessionTimers>,
    client: reqwest::Client,
    disc: Mutex<Discovery>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", self.raft.node())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster view of the server running `raft`.
    pub fn new(
        raft: RaftHandle,
        config: Arc<ServerConfig>,
        store: Arc<Store>,
        sessions: Arc<SessionTimers>,
    ) -> Result<Arc<Self>, ServerError> {
        let client = crate::tls::rpc::client_builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .timeout(MEMBERSHIP_TIMEOUT + Duration::from_secs(5))
            .build()
            .map_err(|e| ServerError::Internal(format!("building cluster HTTP client: {e}")))?;
        Ok(Arc::new(Cluster {
            raft,
            config,
            store,
            sessions,
            client,
            disc: Mutex::new(Discovery::default()),
        }))
    }

    /// The Raft node.
    pub fn raft(&self) -> &RaftHandle {
        &self.raft
    }

    /// Whether this server belongs to a Raft membership.
    fn in_membership(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = self.raft.node_id();
        m.membership_config.membership().get_node(&id).is_some()
    }

    /// Whether this server has a membership at all (or is bootstrapping one).
    fn initialized(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some()
    }

    /// This server's report, also recording `from` (a peer's report) first.
    pub fn hello(&self, from: Option<PeerInfo>) -> PeerInfo {
        let mut d = self.disc.lock();
        if let Some(p) = from {
            if p.id != self.raft.node_id() && p.datacenter == self.config.datacenter {
                d.peers.insert(p.id, (p, Instant::now()));
            }
        }
        self.report(&d)
    }

    fn report(&self, d: &Discovery) -> PeerInfo {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let initialized = d.bootstrapping || membership.voter_ids().next().is_some();
        let leader = m
            .current_leader
            .and_then(|id| membership.get_node(&id).map(|n| (id, n.clone())));
        let members = membership.nodes().map(|(id, _)| *id).collect();
        let candidates = if initialized {
            BTreeMap::new()
        } else {
            bootstrap::candidates(&self.me(), &self.peer_candidates(d))
        };
        PeerInfo {
            id: self.raft.node_id(),
            node: self.raft.node().clone(),
            datacenter: self.config.datacenter.clone(),
            bootstrap_expect: self.config.bootstrap_expect,
            initialized,
            leader,
            members,
            candidates,
        }
    }

    fn me(&self) -> Candidate {
        Candidate {
            id: self.raft.node_id(),
            node: self.raft.node().clone(),
            bootstrap_expect: self.config.bootstrap_expect,
            initialized: false,
            fresh: true,
            candidates: BTreeSet::new(),
        }
    }

    /// The peers' last reports as bootstrap candidates (expired ones dropped).
    fn peer_candidates(&self, d: &Discovery) -> Vec<Candidate> {
        let now = Instant::now();
        d.peers
            .values()
            .filter(|(_, seen)| now.duration_since(*seen) < PEER_EXPIRY)
            .map(|(p, seen)| Candidate {
                id: p.id,
                node: p.node.clone(),
                bootstrap_expect: p.bootstrap_expect,
                initialized: p.initialized,
                fresh: now.duration_since(*seen) < REPORT_FRESH,
                candidates: p.candidates.keys().copied().collect(),
            })
            .collect()
    }

    /// Exchanges reports with the server at `addr` (`host`, `host:port`; the default port is
    /// this server's server port, and Consul's Serf LAN port is taken to mean it too).
    pub async fn contact(&self, addr: &str) -> Result<PeerInfo, ServerError> {
        let target = self.resolve(addr).await?;
        let mine = self.hello(None);
        let resp = self
            .client
            .post(format!(
                "{}://{target}{HELLO_PATH}",
                crate::tls::rpc::scheme()
            ))
            .json(&mine)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| ServerError::Internal(format!("contacting {addr} ({target}): {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(ServerError::Internal(format!(
                "contacting {addr} ({target}): HTTP {status}: {text}"
            )));
        }
        let info: PeerInfo = resp
            .json()
            .await
            .map_err(|e| ServerError::Internal(format!("contacting {addr} ({target}): {e}")))?;
        if info.datacenter != self.config.datacenter {
            return Err(ServerError::Internal(format!(
                "{addr} is in datacenter {:?}, not {:?}",
                info.datacenter, self.config.datacenter
            )));
        }
        if info.id != self.raft.node_id() {
            let mut d = self.disc.lock();
            d.peers.insert(info.id, (info.clone(), Instant::now()));
        }
        Ok(info)
    }

    async fn resolve(&self, addr: &str) -> Result<SocketAddr, ServerError> {
        let addr = addr.trim();
        let with_port = if addr.parse::<SocketAddr>().is_ok() {
            addr.to_string()
        } else if let Ok(ip) = addr.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            SocketAddr::new(ip, self.config.server_port).to_string()
        } else if addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            addr.to_string()
        } else {
            format!("{addr}:{}", self.config.server_port)
        };
        let mut found = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| ServerError::BadRequest(format!("cannot resolve {addr:?}: {e}")))?;
        let mut sa = found
            .next()
            .ok_or_else(|| ServerError::BadRequest(format!("no address for {addr:?}")))?;
        if sa.port() == self.config.serf_lan_port && sa.port() != self.config.server_port {
            sa.set_port(self.config.server_port);
        }
        Ok(sa)
    }

    /// `registry join ADDR`: contacts the server at `addr` and merges the two: an unjoined
    /// side is added to the other's cluster; two unjoined servers just learn of each other
    /// (for `bootstrap_expect`). Two different clusters cannot be merged.
    pub async fn join(&self, addr: &str) -> Result<(), ServerError> {
        let peer = self.contact(addr).await?;
        if peer.id == self.raft.node_id() {
            return Ok(());
        }
        let me_init = self.initialized();
        match (me_init, peer.initialized) {
            (false, true) => self.ask_to_join(&peer).await,
            (true, false) => {
                let req = MemberRequest {
                    id: peer.id,
                    node: Some(peer.node.clone()),
                };
                self.membership_call(JOIN_PATH, &req).await
            }
            (true, true) => {
                let mine = self.hello(None);
                if peer.members.contains(&mine.id) || mine.members.contains(&peer.id) {
                    Ok(())
                } else {
                    Err(ServerError::BadRequest(format!(
                        "{addr} belongs to another cluster; a server can only join one cluster"
                    )))
                }
            }
            (false, false) => Ok(()),
        }
    }

    /// Asks the cluster `peer` belongs to (through `peer`, which forwards to its leader) to
    /// add this server.
    async fn ask_to_join(&self, peer: &PeerInfo) -> Result<(), ServerError> {
        let req = MemberRequest {
            id: self.raft.node_id(),
            node: Some(self.raft.node().clone()),
        };
        self.post_json(&peer.node.raft_addr, JOIN_PATH, &req).await
    }

    /// Sends a membership request to the leader (this server, or over the network).
    async fn membership_call(&self, path: &str, req: &MemberRequest) -> Result<(), ServerError> {
        if self.raft.is_leader() {
            return self.apply_member_request(path, req).await;
        }
        let (_, leader) = self.raft.leader().ok_or(ServerError::NoLeader)?;
        self.post_json(&leader.raft_addr, path, req).await
    }

    pub(crate) async fn post_json(
        &self,
        addr: &str,
        path: &str,
        req: &MemberRequest,
    ) -> Result<(), ServerError> {
        let resp = self
            .client
            .post(format!("{}://{addr}{path}", crate::tls::rpc::scheme()))
            .json(req)
            .send()
            .await
            .map_err(|e| ServerError::Internal(format!("{addr}{path}: {e}")))?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if text == "No cluster leader" {
            return Err(ServerError::NoLeader);
        }
        Err(ServerError::Internal(format!(
            "{addr}{path}: HTTP {status}: {text}"
        )))
    }

    /// Applies a join or leave on the leader.
    pub(crate) async fn apply_member_request(
        &self,
        path: &str,
        req: &MemberRequest,
    ) -> Result<(), ServerError> {
        if path == JOIN_PATH {
            let node = req
                .node
                .clone()
                .ok_or_else(|| ServerError::BadRequest("join without a node".into()))?;
            self.add_server(req.id, node).await
        } else {
            self.remove_server(req.id).await
        }
    }

    /// Adds a server as a learner (autopilot promotes it to voter once stable). A server
    /// already in the membership is left alone; another member at the same Raft address (a
    /// server that restarted with a new ID) is removed first.
    pub async fn add_server(&self, id: NodeId, node: RegistryNode) -> Result<(), ServerError> {
        let cfg = self.raft.configuration();
        if cfg.get(id).is_some() {
            return Ok(());
        }
        let stale: BTreeSet<NodeId> = cfg
            .servers
            .iter()
            .filter(|s| s.node.raft_addr == node.raft_addr)
            .map(|s| s.id)
            .collect();
        if !stale.is_empty() {
            tracing::info!(old = ?stale, addr = %node.raft_addr, "removing the previous server at this address");
            self.raft.remove_servers(stale).await?;
        }
        tracing::info!(id, node = %node, "adding server as a learner");
        self.raft.add_learner(id, node).await
    }

    /// Removes a server from the voters and the membership.
    pub async fn remove_server(&self, id: NodeId) -> Result<(), ServerError> {
        self.raft.remove_servers(BTreeSet::from([id])).await
    }

    /// Graceful leave: asks the leader to remove this server from the cluster (this server
    /// steps down first if it leads). A lone server has nothing to leave.
    pub async fn leave(&self) -> Result<(), ServerError> {
        if !self.in_membership() {
            return Ok(());
        }
        let others = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let id = self.raft.node_id();
            m.membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != id)
                .count()
        };
        if others == 0 {
            return Ok(());
        }
        let req = MemberRequest {
            id: self.raft.node_id(),
            node: None,
        };
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_TIMEOUT;
        loop {
            match self.membership_call(LEAVE_PATH, &req).await {
                Ok(()) => {
                    tracing::info!("left the cluster: removed from the Raft membership");
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "leave: retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forms or joins a cluster from the `retry_join` addresses: contacts them (and every peer
    /// they name) every second until this server is in a Raft membership, bootstrapping with
    /// `bootstrap_expect` agreeing servers or joining a cluster one of them belongs to.
    pub async fn discover(self: Arc<Self>) {
        if self.config.dev {
            return;
        }
        let mut attempt: u64 = 0;
        let mut joined = false;
        loop {
            if self.in_membership() {
                if !joined && attempt > 0 {
                    tracing::info!("joined the cluster");
                }
                joined = true;
                self.reconcile().await;
                tokio::time::sleep(RECONCILE_INTERVAL).await;
                continue;
            }
            attempt += 1;
            self.discovery_round(attempt).await;
            tokio::time::sleep(DISCOVERY_INTERVAL).await;
        }
    }

    /// A server removed while it was down (by autopilot or `remove-peer`) still finds itself
    /// in the membership of its own log, and the leader no longer talks to it. Asks the
    /// servers it knows; when the leader's own membership lacks this server, asks to join
    /// again, as Consul's leader re-adds a returning server.
    async fn reconcile(&self) {
        let me = self.raft.node_id();
        let mut targets: BTreeSet<String> = self.config.retry_join.iter().cloned().collect();
        {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.current_leader.is_some() && m.current_leader != Some(me) {
                // Followed by a leader: in the cluster.
                if self.raft.last_contact_ms() < 5_000 {
                    return;
                }
            }
            if m.current_leader == Some(me) {
                return;
            }
            for (id, n) in m.membership_config.membership().nodes() {
                if *id != me {
                    targets.insert(n.raft_addr.clone());
                }
            }
        }
        for t in &targets {
            let Ok(info) = self.contact(t).await else {
                continue;
            };
            let leads = info.leader.as_ref().is_some_and(|(id, _)| *id == info.id);
            if leads && !info.members.contains(&me) {
                tracing::info!(leader = %info.node, "the cluster no longer lists this server; asking to join again");
                if let Err(e) = self.ask_to_join(&info).await {
                    tracing::info!(error = %e, "join request failed; retrying");
                }
                return;
            }
        }
    }

    async fn discovery_round(&self, attempt: u64) {
        let mut targets: BTreeSet<String> = self.config.retry_join.iter().cloned().collect();
        {
            let d = self.disc.lock();
            let now = Instant::now();
            for (p, seen) in d.peers.values() {
                if now.duration_since(*seen) < PEER_EXPIRY {
                    targets.insert(p.node.raft_addr.clone());
                }
                for n in p.candidates.values() {
                    targets.insert(n.raft_addr.clone());
                }
            }
        }
        targets.remove(&self.raft.node().raft_addr);
        let mut joined_via: Option<PeerInfo> = None;
        for t in &targets {
            match self.contact(t).await {
                Ok(info) if info.initialized && info.id != self.raft.node_id() => {
                    joined_via.get_or_insert(info);
                }
                Ok(_) => {}
                Err(e) => {
                    if attempt % 10 == 1 {
                        tracing::info!(target = %t, error = %e, "join: server not reachable yet");
                    }
                }
            }
        }
        if self.initialized() {
            // Bootstrapped (or being added): wait to appear in the membership.
            return;
        }
        if let Some(peer) = joined_via {
            if peer.leader.is_some() {
                match self.ask_to_join(&peer).await {
                    Ok(()) => {
                        tracing::info!(via = %peer.node, "asked the cluster to add this server")
                    }
                    Err(e) => {
                        tracing::info!(via = %peer.node, error = %e, "join request failed; retrying")
                    }
                }
            }
            return;
        }
        if self.config.bootstrap_expect > 1 {
            self.try_bootstrap().await;
        }
    }

    /// Bootstraps when `bootstrap_expect` unjoined servers agree on the same set.
    async fn try_bootstrap(&self) {
        let members = {
            let mut d = self.disc.lock();
            if d.bootstrapping {
                return;
            }
            let peers = self.peer_candidates(&d);
            match bootstrap::decide(&self.me(), &peers) {
                Some(m) => {
                    d.bootstrapping = true;
                    m
                }
                None => return,
            }
        };
        tracing::info!(
            servers = members.len(),
            ids = ?members.keys().collect::<Vec<_>>(),
            "found the expected servers; bootstrapping the cluster"
        );
        match self.raft.raft().initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
            Err(e) => {
                tracing::error!(error = %e, "bootstrap failed");
                self.disc.lock().bootstrapping = false;
            }
        }
    }

    /// `PUT /v1/session/renew`: renews on the leader (forwarding there from a follower),
    /// where the TTL timers live. `None` for an unknown session.
    pub async fn renew(
        &self,
        id: &str,
    ) -> Result<Option<registry_proto::model::Session>, ServerError> {
        let req = id.to_string();
        match self
            .raft
            .call_leader(crate::rpc::SESSION_RENEW_PATH, &req)
            .await?
        {
            Some(found) => Ok(found),
            None => self.renew_session(id),
        }
    }

    /// The leader-side session renewal (a follower forwards `PUT /v1/session/renew`): the
    /// session if it exists, its TTL timer reset.
    pub fn renew_session(
        &self,
        id: &str,
    ) -> Result<Option<registry_proto::model::Session>, ServerError> {
        if !self.raft.serving_leader() {
            return Err(ServerError::NoLeader);
        }
        let found = self.store.read().sessions.get(id).cloned();
        if let Some(sess) = &found {
            if let Some(ttl) = crate::leader::sessions::session_ttl(sess) {
                self.sessions.reset(id, ttl);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
