//! openraft glue: type configuration, the segment-file and in-memory log stores, the state
//! machine adaptor and the node handle used by the query layer.
//!
//! [`RaftHandle::start`] builds a Raft node over a [`Store`]: with a data directory the log
//! lives in segment files under `data_dir/raft/log.wal` (its metadata in a small sled database
//! at `data_dir/raft/log`), snapshots under `data_dir/raft/snapshots` and the
//! node's Raft ID in `data_dir/raft/node-id`; without one everything is in memory. A server
//! configured to bootstrap alone (`bootstrap_expect == 1` or `-dev`) initializes a single-voter
//! cluster the first time and, on every start, waits until it leads and has re-applied its log.
//!
//! Writes go through [`RaftHandle::write`], which commits concurrent writes together: a log
//! entry carries a [`Proposal`] (several commands). Each command is applied on its own at a
//! registry index of its own, so the store's index counts applied commands and differs from
//! the Raft log index (see [`state_machine`]).
//!
//! The RPC endpoints (routed by [`crate::rpc::router`]) must be served at [`RegistryNode::raft_addr`], which is
//! `bind_addr:server_port`.

mod batcher;
pub mod log_store;
pub mod mem_log_store;
pub mod membership;
pub mod network;
mod read_rounds;
pub mod speculate;
pub mod state_machine;
pub mod types;

pub use log_store::{SledLogReader, SledLogStore};
pub use mem_log_store::MemLogStore;
pub use network::{HttpConnection, HttpNetwork};
pub use state_machine::{RegistrySnapshotBuilder, RegistryStateMachine};
pub use types::{NodeId, Proposal, ProposalResponse, Raft, RaftMetrics, RegistryNode, TypeConfig};

use crate::config::ServerConfig;
use crate::rpc::forward;
use crate::state::Store;
use crate::ServerError;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use registry_proto::Command;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long [`RaftHandle::start`] waits for a bootstrapping server to become leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long [`RaftHandle::shutdown`] waits for the log database to be closed.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
const NEVER: u64 = u64::MAX;
/// How long a request waits for a leader to be elected (or reachable) before it fails with
/// "No cluster leader": Consul's `rpc_hold_timeout`.
pub const LEADER_HOLD: Duration = Duration::from_secs(7);
/// How long a write may wait for its commit once proposed on the leader.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the leader renews its lease (a quorum round of heartbeats).
const LEASE_CHECK: Duration = Duration::from_millis(250);
/// How long a quorum acknowledgement lets the leader serve without asking again: below the
/// election timeout, so no other leader can have been elected meanwhile.
const LEASE: Duration = Duration::from_millis(900);
/// A follower that has not heard from its leader for this long says no leader is known.
const KNOWN_LEADER_CONTACT_MS: u64 = 3_000;
/// How long past its lease a leader waits for a write to commit before giving it up.
const LEASE_GRACE: Duration = Duration::from_secs(2);
/// The same for a snapshot restore (one entry holding the whole state).
/// Environment variable that, set to `1`, makes a leader answer default reads without a valid
/// lease: a deliberately broken mode that lets a leader cut off from its quorum serve stale
/// reads. It exists only so that the consistency checker in `jepsen/` can prove it notices;
/// never set it anywhere else.
pub const UNSAFE_READS_WITHOUT_LEASE_ENV: &str = "REGISTRY_TEST_UNSAFE_DEFAULT_READS_WITHOUT_LEASE";

fn unsafe_reads_without_lease() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var(UNSAFE_READS_WITHOUT_LEASE_ENV).is_ok_and(|v| v == "1");
        if on {
            tracing::warn!("{UNSAFE_READS_WITHOUT_LEASE_ENV}=1: default reads ignore the leader lease (broken on purpose)");
        }
        on
    })
}

const RESTORE_GRACE: Duration = Duration::from_secs(20);

/// A running Raft node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    id: NodeId,
    node: RegistryNode,
    store: Arc<Store>,
    metrics: watch::Receiver<RaftMetrics>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last RPC from a leader (`NEVER` if none yet).
    last_contact: AtomicU64,
    /// Dies once the sled log is closed (`None` for the in-memory log).
    log_liveness: Option<Weak<log_store::Shared>>,
    /// Writes waiting for the next group commit.
    batch: batcher::Batcher,
    /// Sends proposals and read barriers to the leader when this node is not it.
    forward: forward::Forwarder,
    /// Milliseconds since `epoch` until which a quorum has confirmed this node's leadership.
    lease_until: AtomicU64,
    /// The term `lease_until` was granted in ([`NEVER`] before the first grant). A lease
    /// counts only in its own term: a new leader first applies what earlier terms committed.
    lease_term: AtomicU64,
    /// The last log index this node had when it started. A server restarted while it led
    /// resumes as leader of the same term (its vote is committed) but only knows the commit
    /// index it last saved: entries after it may have been committed and acknowledged before
    /// the restart, so no read is served from a store that has not applied them.
    startup_log_index: u64,
    /// Reads waiting for a shared quorum round or leader read index.
    reads: read_rounds::AllRounds,
    /// Speculative sends to followers (with a durable log only).
    speculator: Option<Arc<speculate::Speculator>>,
}

impl std::fmt::Debug for RaftHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftHandle")
            .field("id", &self.inner.id)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// The openraft configuration for `cfg`.
pub fn raft_config(cfg: &ServerConfig) -> Result<openraft::Config, ServerError> {
    openraft::Config {
        cluster_name: cfg.datacenter.clone(),
        heartbeat_interval: 150,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 10_000,
        // Bounded so one AppendEntries (batches of up to 1 MiB each) is sent and flushed
        // well within openraft's per-RPC timeout, the heartbeat interval.
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.raft_snapshot_threshold.max(1)),
        max_in_snapshot_log_to_keep: cfg.raft_trailing_logs,
        // Purge once this many entries are purgeable: at most once per snapshot.
        purge_batch_size: (cfg.raft_snapshot_threshold / 2).clamp(1, 1024),
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ServerError::Raft(format!("invalid raft configuration: {e}")))
}

/// This server as a Raft node: its RPC address, HTTP address and name.
pub fn local_node(cfg: &ServerConfig) -> RegistryNode {
    let http_ip = if cfg.client_addr.is_unspecified() {
        cfg.bind_addr
    } else {
        cfg.client_addr
    };
    RegistryNode {
        raft_addr: SocketAddr::new(cfg.bind_addr, cfg.server_port).to_string(),
        http_addr: SocketAddr::new(http_ip, cfg.http_port).to_string(),
        name: cfg.node_name.clone(),
    }
}

/// A stable Raft node ID derived from the node ID (a UUID) or, without one, the node name:
/// 64-bit FNV-1a, never 0.
pub fn derive_node_id(cfg: &ServerConfig) -> NodeId {
    let seed = if cfg.node_id.is_empty() {
        cfg.node_name.as_bytes()
    } else {
        cfg.node_id.as_bytes()
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// Reads the node ID persisted in `dir/node-id`, or derives one and persists it.
fn load_or_create_node_id(dir: &Path, cfg: &ServerConfig) -> Result<NodeId, ServerError> {
    let path = dir.join("node-id");
    let st = |e: std::io::Error| ServerError::Storage(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|e| ServerError::Storage(format!("{}: bad node id: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = derive_node_id(cfg);
            let tmp = dir.join("node-id.tmp");
            std::fs::write(&tmp, format!("{id}\n")).map_err(st)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(st)?;
            std::fs::rename(&tmp, &path).map_err(st)?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(st)?;
            Ok(id)
        }
        Err(e) => Err(st(e)),
    }
}

/// A copy of `e` for each of several waiters failed by one error (a batch, a shared round).
pub(crate) fn shared_error(e: &ServerError) -> ServerError {
    match e {
        ServerError::NoLeader => ServerError::NoLeader,
        other => ServerError::Raft(other.to_string()),
    }
}

fn raft_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Raft(e.to_string())
}

impl RaftHandle {
    /// Starts the Raft node of `cfg` over `store` (which must be empty: a snapshot found in the
    /// data directory is loaded into it). A server that bootstraps alone is initialized if it
    /// never was, and this returns once it is the leader and has applied its whole log.
    pub async fn start(cfg: &ServerConfig, store: Arc<Store>) -> Result<RaftHandle, ServerError> {
        let node = local_node(cfg);
        let config = Arc::new(raft_config(cfg)?);
        let network = HttpNetwork::new()?;
        let forward = forward::Forwarder::new(network.client());

        let (raft, id, log_liveness, speculator) = match &cfg.data_dir {
            Some(data_dir) => {
                let dir = data_dir.join("raft");
                let cfg2 = cfg.clone();
                let store2 = Arc::clone(&store);
                let (id, log, sm) = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        ServerError::Storage(format!("creating {}: {e}", dir.display()))
                    })?;
                    let id = load_or_create_node_id(&dir, &cfg2)?;
                    let log = SledLogStore::open(&dir.join("log"))?;
                    let sm = RegistryStateMachine::open(store2, Some(dir.join("snapshots")))?;
                    Ok::<_, ServerError>((id, log, sm))
                })
                .await
                .map_err(raft_err)??;
                let liveness = log.liveness();
                let spec = network.speculator(id);
                let log = log.with_speculator(Arc::clone(&spec));
                let network = network.with_speculator(Arc::clone(&spec));
                let raft = Raft::new(id, config, network, log, sm)
                    .await
                    .map_err(raft_err)?;
                (raft, id, Some(liveness), Some(spec))
            }
            None => {
                let id = derive_node_id(cfg);
                let sm = RegistryStateMachine::in_memory(Arc::clone(&store));
                let raft = Raft::new(id, config, network, MemLogStore::new(), sm)
                    .await
                    .map_err(raft_err)?;
                (raft, id, None, None)
            }
        };
        tracing::info!(id, node = %node, "raft node started");

        let startup_log_index = raft.metrics().borrow().last_log_index.unwrap_or(0);
        let handle = RaftHandle {
            inner: Arc::new(Inner {
                metrics: raft.metrics(),
                raft,
                id,
                node,
                store,
                epoch: Instant::now(),
                last_contact: AtomicU64::new(NEVER),
                log_liveness,
                batch: batcher::Batcher::default(),
                forward,
                lease_until: AtomicU64::new(0),
                lease_term: AtomicU64::new(NEVER),
                startup_log_index,
                reads: read_rounds::AllRounds::default(),
                speculator,
            }),
        };
        tokio::spawn(lease_loop(Arc::downgrade(&handle.inner)));

        if cfg.server && (cfg.dev || cfg.bootstrap_expect == 1) {
            handle.bootstrap_single().await?;
        }
        Ok(handle)
    }

    /// Initializes a single-voter cluster unless already initialized; when this node is the
    /// only voter, makes it leader at once and waits until its log is applied.
    async fn bootstrap_single(&self) -> Result<(), ServerError> {
        let raft = &self.inner.raft;
        let id = self.inner.id;
        if !raft.is_initialized().await.map_err(raft_err)? {
            let members = BTreeMap::from([(id, self.inner.node.clone())]);
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id, "bootstrapped a single-server cluster"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_err(e)),
            }
        }
        // Ask the core (metrics may lag behind `initialize`).
        let voters: BTreeSet<NodeId> = raft
            .with_raft_state(|st| st.membership_state.effective().voter_ids().collect())
            .await
            .map_err(raft_err)?;
        let sole_voter = voters == BTreeSet::from([id]);
        if !sole_voter {
            return Ok(());
        }
        if !self.is_leader() {
            // No one else can win; skip the election timeout.
            raft.trigger().elect().await.map_err(raft_err)?;
        }
        raft.wait(Some(LEADER_WAIT))
            .state(ServerState::Leader, "bootstrap: become leader")
            .await
            .map_err(|e| ServerError::Raft(format!("waiting for leadership: {e}")))?;
        // Everything committed before the restart is applied once the leader's first entry is.
        self.ensure_linearizable().await
    }

    /// Proposes one log entry carrying `cmds`; their responses, in order. On a follower the
    /// proposal is forwarded to the leader; while no leader is known this waits up to
    /// [`LEADER_HOLD`] for one, then fails with [`ServerError::NoLeader`].
    async fn propose(&self, cmds: Proposal) -> Result<ProposalResponse, ServerError> {
        match self.call_leader(crate::rpc::PROPOSE_PATH, &cmds).await? {
            Some(resp) => Ok(resp),
            None => self.propose_local(cmds).await,
        }
    }

    /// Sends `req` to the leader's forwarding endpoint `path` and returns its answer, or
    /// `None` when this node is the leader (the caller then serves it here). Waits up to
    /// [`LEADER_HOLD`] for a leader, retrying calls that could not be sent or reached a node
    /// that no longer leads; fails with [`ServerError::NoLeader`] after that.
    pub async fn call_leader<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Option<Resp>, ServerError> {
        self.call_leader_within(path, req, forward::CALL_TIMEOUT)
            .await
    }

    /// [`Self::call_leader`] where one call may take up to `limit` (a blocking query).
    pub async fn call_leader_within<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        limit: Duration,
    ) -> Result<Option<Resp>, ServerError> {
        self.call_leader_inner(path, req, limit, false).await
    }

    /// [`Self::call_leader`] for a call that may be repeated (a read barrier): a call whose
    /// outcome is unknown (the leader died while it was there) is retried with the next
    /// leader too.
    pub async fn call_leader_idempotent<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Option<Resp>, ServerError> {
        self.call_leader_inner(path, req, forward::CALL_TIMEOUT, true)
            .await
    }

    async fn call_leader_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        limit: Duration,
        idempotent: bool,
    ) -> Result<Option<Resp>, ServerError> {
        let deadline = tokio::time::Instant::now() + LEADER_HOLD;
        loop {
            let Some((leader_id, leader)) = self.leader_target(deadline).await? else {
                return Ok(None);
            };
            // A leader cut off mid-call never answers; once another election starts the
            // outcome is unknown, and the caller is told so rather than left waiting.
            let call = self
                .inner
                .forward
                .call_timeout(&leader.raft_addr, path, req, limit);
            let res = tokio::select! {
                r = call => r,
                () = self.leader_changed(leader_id) => Err(forward::ForwardError::Failed(
                    "leadership changed while the request was with the leader; its outcome is unknown".into(),
                )),
            };
            match res {
                Ok(resp) => return Ok(Some(resp)),
                Err(forward::ForwardError::NotSent(e)) => {
                    tracing::debug!(leader = %leader, error = %e, "leader unreachable; retrying");
                    self.pause_until_retry(deadline).await?;
                }
                Err(forward::ForwardError::NotLeader) => self.pause_until_retry(deadline).await?,
                Err(forward::ForwardError::Failed(e)) if idempotent => {
                    tracing::debug!(leader = %leader, error = %e, "call to the leader failed; retrying");
                    self.pause_until_retry(deadline).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Proposes on this node, which must lead (forwarded proposals end here).
    pub(crate) async fn propose_local(
        &self,
        cmds: Proposal,
    ) -> Result<ProposalResponse, ServerError> {
        if !self.serving_leader() {
            return Err(ServerError::NoLeader);
        }
        // A restore carries the whole state in one entry: writing and sending it keeps every
        // server busy for a while, during which the lease cannot be renewed.
        let grace = if cmds.iter().any(|c| matches!(c, Command::Restore { .. })) {
            RESTORE_GRACE
        } else {
            LEASE_GRACE
        };
        let write = tokio::time::timeout(COMMIT_TIMEOUT, self.inner.raft.client_write(cmds));
        let res = tokio::select! {
            r = write => r,
            () = self.leadership_lost(grace) => {
                return Err(ServerError::Raft("leadership lost while committing log".into()));
            }
        };
        match res {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(ServerError::NoLeader)
            }
            Ok(Err(e)) => Err(raft_err(e)),
            Err(_) => Err(ServerError::Raft(
                "timed out waiting for the write to commit".into(),
            )),
        }
    }

    /// Resolves once the leader this node knows is no longer `from` (an election started or
    /// another node won).
    async fn leader_changed(&self, from: NodeId) {
        let mut metrics = self.inner.metrics.clone();
        if metrics
            .wait_for(|m| m.current_leader != Some(from))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this node stops leading, or has gone without a quorum's acknowledgement
    /// for well past its lease (cut off from the cluster).
    async fn leadership_lost(&self, grace: Duration) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !self.is_leader() {
                return;
            }
            if !self.sole_voter() {
                let until = self.inner.lease_until.load(Ordering::Acquire);
                let grace = u64::try_from(grace.as_millis()).unwrap_or(0);
                if self.now_ms() > until + grace {
                    return;
                }
            }
        }
    }

    /// Sleeps a little before a retry, or fails with "No cluster leader" past `deadline`.
    async fn pause_until_retry(&self, deadline: tokio::time::Instant) -> Result<(), ServerError> {
        let next = tokio::time::Instant::now() + Duration::from_millis(50);
        if next >= deadline {
            return Err(ServerError::NoLeader);
        }
        tokio::time::sleep_until(next).await;
        Ok(())
    }

    /// Where a request that needs the leader goes: `None` for this node, or the leader's
    /// node. Waits until `deadline` for a leader that can serve.
    async fn leader_target(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<(NodeId, RegistryNode)>, ServerError> {
        let mut metrics = self.inner.metrics.clone();
        loop {
            if self.serving_leader() {
                return Ok(None);
            }
            let remote = {
                let m = metrics.borrow_and_update();
                match m.current_leader {
                    Some(id) if id != self.inner.id => m
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map(|n| (id, n.clone())),
                    _ => None,
                }
            };
            if let Some(node) = remote {
                return Ok(Some(node));
            }
            // A new leader shows in the metrics; a renewed lease does not, so look again
            // shortly in any case.
            let tick = (tokio::time::Instant::now() + LEASE_CHECK / 2).min(deadline);
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return Err(ServerError::NoLeader) },
                _ = tokio::time::sleep_until(tick) => {
                    if tick >= deadline {
                        return Err(ServerError::NoLeader);
                    }
                }
            }
        }
    }

    /// Orders a read after the writes the leader has applied (`consistent`: after confirming
    /// its leadership with a quorum). On the leader this is local; on a follower it asks the
    /// leader for its index and waits until this node has applied as far.
    pub async fn read_barrier(&self, consistent: bool) -> Result<(), ServerError> {
        if !consistent && self.serves_default_reads() {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        let round = read_rounds::Round::LeaderIndex { consistent };
        let Some(index) = self.shared_round(round).await? else {
            return if consistent {
                self.ensure_linearizable().await
            } else {
                Ok(())
            };
        };
        let wait = (started + LEADER_HOLD).saturating_duration_since(tokio::time::Instant::now());
        self.inner
            .raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|_| ServerError::NoLeader)
    }

    /// The Raft log index a read on behalf of a follower must wait for (this node leads):
    /// its commit index, or with `consistent` the index confirmed by a quorum round.
    pub(crate) async fn local_read_index(&self, consistent: bool) -> Result<u64, ServerError> {
        if !self.serving_leader() {
            return Err(ServerError::NoLeader);
        }
        if let Some(s) = &self.inner.speculator {
            // The follower asking waits for this index: it must hear of it now.
            s.flush_notices();
        }
        if consistent {
            return self.linearizable_index().await;
        }
        // The commit index, not this node's applied index: another follower may already have
        // applied (and answered with) entries this leader has committed but not yet applied,
        // and a read that starts after such an answer must not go back behind it.
        let committed = self
            .inner
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(raft_err)?;
        let applied = self
            .inner
            .metrics
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        Ok(committed.unwrap_or(0).max(applied))
    }

    /// Whether this node leads and may serve as leader now: a single voter always may; in a
    /// larger cluster a quorum must have acknowledged it within the lease. A leader cut off
    /// from its quorum stops serving before another can be elected.
    pub fn serving_leader(&self) -> bool {
        if !self.is_leader() {
            return false;
        }
        if self.sole_voter() {
            return true;
        }
        let term = self.inner.metrics.borrow().current_term;
        self.inner.lease_term.load(Ordering::Acquire) == term
            && self.now_ms() < self.inner.lease_until.load(Ordering::Acquire)
    }

    /// Whether this node answers default reads from its own store: when it is the serving
    /// leader (or, in the deliberately broken test mode, any leader, lease or not).
    pub fn serves_default_reads(&self) -> bool {
        self.serving_leader() || (unsafe_reads_without_lease() && self.is_leader())
    }

    /// Whether this node is the only voter.
    fn sole_voter(&self) -> bool {
        let m = self.inner.metrics.borrow();
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(self.inner.id) && voters.next().is_none()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.inner.metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.id)
    }

    /// The leader's ID and node, when one is known.
    pub fn leader(&self) -> Option<(NodeId, RegistryNode)> {
        let m = self.inner.metrics.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// The leader's Raft address, when one is known (`/v1/status/leader`).
    pub fn leader_addr(&self) -> Option<String> {
        self.leader().map(|(_, n)| n.raft_addr)
    }

    /// Whether a leader that can serve is known: this node with a valid lease, or another
    /// node this one follows.
    pub fn known_leader(&self) -> bool {
        if self.is_leader() {
            return self.serving_leader();
        }
        let followed = {
            let m = self.inner.metrics.borrow();
            matches!(m.current_leader, Some(id) if id != self.inner.id)
        };
        // openraft names the old leader until this node starts an election; a leader not
        // heard from for longer than the election timeout is not known to be one.
        followed && self.last_contact_ms() <= KNOWN_LEADER_CONTACT_MS
    }

    /// Milliseconds since a leader was last heard from: 0 on the leader; since startup when
    /// no leader ever contacted this node.
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        let now = u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        match self.inner.last_contact.load(Ordering::Relaxed) {
            NEVER => now,
            t => now.saturating_sub(t),
        }
    }

    /// Records an RPC from the current leader (called by the RPC endpoints).
    pub(crate) fn note_leader_contact(&self) {
        let now = self.now_ms();
        self.inner.last_contact.store(now, Ordering::Relaxed);
    }

    /// Confirms leadership with a quorum and waits until everything committed before this
    /// call is applied, so that a read of the store that follows is linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), ServerError> {
        self.linearizable_index().await.map(|_| ())
    }

    /// One quorum round (concurrent reads share it, see [`read_rounds`]): the confirmed read
    /// index, applied here before this returns.
    async fn quorum_round(&self) -> Result<u64, ServerError> {
        let res = tokio::time::timeout(LEADER_HOLD, self.inner.raft.ensure_linearizable())
            .await
            .map_err(|_| ServerError::NoLeader)?;
        match res {
            Ok(log_id) => {
                let index = log_id.map_or(0, |l| l.index);
                let floor = self.inner.startup_log_index;
                if index >= floor {
                    return Ok(index);
                }
                // Restarted while leading: wait for what the log held before the restart.
                self.inner
                    .raft
                    .wait(Some(LEADER_HOLD))
                    .applied_index_at_least(Some(floor), "startup log")
                    .await
                    .map_err(|_| ServerError::NoLeader)?;
                Ok(floor)
            }
            Err(RaftError::APIError(
                CheckIsLeaderError::ForwardToLeader(_) | CheckIsLeaderError::QuorumNotEnough(_),
            )) => Err(ServerError::NoLeader),
            Err(e) => Err(raft_err(e)),
        }
    }

    /// Raft addresses of the voters (`/v1/status/peers`), ordered by node ID.
    pub fn peers(&self) -> Vec<String> {
        let m = self.inner.metrics.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.raft_addr.clone()))
            .collect()
    }

    /// Stops the node and waits until its log database is closed, so the data directory can
    /// be opened again. Idempotent.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Some(liveness) = &self.inner.log_liveness {
            let deadline = Instant::now() + CLOSE_WAIT;
            while liveness.strong_count() > 0 {
                if Instant::now() >= deadline {
                    tracing::warn!("raft log still open after shutdown");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// The Raft metrics channel.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.inner.metrics.clone()
    }

    /// Builds a snapshot now (it is otherwise built every `raft_snapshot_threshold` entries).
    pub async fn trigger_snapshot(&self) -> Result<(), ServerError> {
        self.inner.raft.trigger().snapshot().await.map_err(raft_err)
    }

    /// The underlying openraft node (membership changes, RPC endpoints).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// This node's Raft ID.
    /// Speculative AppendEntries sent, and how many of their answers replication used.
    pub fn speculation_stats(&self) -> (u64, u64) {
        self.inner.speculator.as_ref().map_or((0, 0), |s| s.stats())
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's description as stored in the membership.
    pub fn node(&self) -> &RegistryNode {
        &self.inner.node
    }

    /// The state store this node applies to.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }
}

/// Renews the leader's lease with a quorum round every [`LEASE_CHECK`] while it leads a
/// cluster of more than one voter, and at once when it becomes leader (retrying quickly until
/// the first round succeeds). Ends with the node.
async fn lease_loop(inner: Weak<Inner>) {
    let mut metrics = match inner.upgrade() {
        Some(i) => i.metrics.clone(),
        None => return,
    };
    loop {
        let pause = {
            let Some(inner) = inner.upgrade() else { return };
            let handle = RaftHandle { inner };
            if handle.is_leader() && !handle.sole_voter() {
                let term = handle.inner.metrics.borrow().current_term;
                let start = handle.now_ms();
                let round =
                    tokio::time::timeout(LEASE_CHECK * 4, handle.raft().get_read_log_id()).await;
                match round {
                    Ok(Ok((read, applied))) => {
                        let granted = handle.inner.lease_term.load(Ordering::Acquire);
                        let floor = Some(handle.inner.startup_log_index);
                        let read = read.map(|l| l.index).max(floor);
                        if lease_may_start(granted, term, read, applied.map(|l| l.index)) {
                            let until = start + u64::try_from(LEASE.as_millis()).unwrap_or(0);
                            handle.inner.lease_until.fetch_max(until, Ordering::AcqRel);
                            handle.inner.lease_term.store(term, Ordering::Release);
                            Some(LEASE_CHECK)
                        } else {
                            // A new leader's store may still miss entries committed in
                            // earlier terms (Raft thesis 6.4): no default read or read index
                            // is served from it before it has applied them.
                            let _ = handle
                                .inner
                                .raft
                                .wait(Some(LEASE_CHECK * 4))
                                .applied_index_at_least(read, "leader catch-up")
                                .await;
                            Some(Duration::ZERO)
                        }
                    }
                    Ok(Err(RaftError::Fatal(_))) => return,
                    Ok(Err(_)) | Err(_) => Some(Duration::from_millis(50)),
                }
            } else if handle.is_leader() {
                // A single voter needs no lease; membership changes are rare.
                Some(LEASE_CHECK * 4)
            } else {
                None
            }
        };
        match pause {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                // Wait to become leader; look again now and then (membership may change).
                let became = metrics.wait_for(|m| m.state == ServerState::Leader);
                if let Ok(Err(_)) = tokio::time::timeout(LEASE_CHECK * 4, became).await {
                    return;
                }
            }
        }
    }
}

/// Whether a quorum round that confirmed leadership in `term` may grant the lease: at once if
/// the lease was already granted in this term; in a new term only once this node has applied
/// up to the read index of the round (which covers every entry committed before the term),
/// so that a new leader never answers from a store missing acknowledged writes.
fn lease_may_start(granted_term: u64, term: u64, read: Option<u64>, applied: Option<u64>) -> bool {
    granted_term == term || applied >= read
}

#[cfg(test)]
mod tests;
