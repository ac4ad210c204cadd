//! Autopilot, run by the leader: server health, promotion of stable learners to voters and
//! removal of dead servers, as Consul's autopilot does.
//!
//! Every [`INTERVAL`] the leader asks every server of the Raft configuration for its
//! [`ServerStats`] (over the server port; its own are local) and updates each server's
//! health:
//!
//! - **healthy** when the server answered, its last contact with the leader is within
//!   `LastContactThreshold`, it is in the leader's term and its log is at most
//!   `MaxTrailingLogs` entries behind the leader's (the leader itself is always healthy);
//! - **stable since** the last time its healthy flag changed;
//! - **failure tolerance** = healthy voters - quorum, where quorum = voters / 2 + 1.
//!
//! Then it applies the rules (pure functions, unit-tested below):
//!
//! - [`learners_to_promote`]: a learner that has been healthy for at least
//!   `ServerStabilizationTime` becomes a voter (servers join as learners, see `cluster`).
//! - [`servers_to_remove`], with `CleanupDeadServers`: a server the leader has not reached
//!   for [`dead_after`] (`max(ServerStabilizationTime, 30s)`, counted from when this leader
//!   started tracking it) is dead. Dead learners are removed. Dead voters are removed,
//!   longest-dead first, only as many as keep (a) at least `max(MinQuorum, 1)` voters,
//!   (b) a quorum of the remaining configuration among the live voters, and (c) the removal
//!   to a minority of the current voters at once.
//!
//! The health report (`GET /v1/operator/autopilot/health`) and the state report
//! (`autopilot_state`) are built from the same per-server [`ServerReport`]s, refreshed when
//! asked; a follower forwards both to the leader.
//!
//! The configuration is replicated ([`Command::AutopilotSetConfig`], kept in the state's
//! `Db::autopilot`). Until someone stores one, the configured values (`autopilot { }` of
//! the agent configuration) apply, and the leader stores them once when it takes over, so
//! that every server reports the same configuration with its indexes.

use super::autopilot_state;
use crate::query::write::Writer;
use crate::raft::membership::{self, OpResult, RaftConfiguration, ServerStats, STATS_TIMEOUT};
use crate::raft::{NodeId, RaftHandle};
use crate::state::Store;
use crate::ServerError;
use axum::extract::State;
use axum::Json;
use parking_lot::Mutex;
use registry_proto::api::autopilot::AutopilotState;
use registry_proto::command::AutopilotConfig;
use registry_proto::duration::format_go_duration;
use registry_proto::Command;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the leader re-evaluates the servers.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// The shortest time without contact after which a server counts as dead.
pub const DEAD_SERVER_MIN: Duration = Duration::from_secs(30);
pub use crate::rpc::{AUTOPILOT_HEALTH_PATH as HEALTH_PATH, AUTOPILOT_STATE_PATH as STATE_PATH};
/// The version every server reports (all run this build).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Quorum size of `voters` voters.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// How many healthy voters can fail before the cluster loses its quorum.
pub fn failure_tolerance(healthy_voters: usize, voters: usize) -> usize {
    healthy_voters.saturating_sub(quorum(voters))
}

/// How long a server must stay unreachable before it counts as dead:
/// `max(ServerStabilizationTime, min)`, `min` being [`DEAD_SERVER_MIN`] outside tests.
pub fn dead_after(cfg: &AutopilotConfig, min: Duration) -> Duration {
    cfg.server_stabilization_time.max(min)
}

/// Whether a server is healthy by `cfg`: it answered with `stats`, its last contact is
/// within the threshold, it is in `leader`'s term and not too far behind its log.
pub fn server_healthy(
    cfg: &AutopilotConfig,
    stats: Option<&ServerStats>,
    leader: &ServerStats,
) -> bool {
    let Some(s) = stats else { return false };
    if s.id == leader.id {
        return true;
    }
    let threshold = u64::try_from(cfg.last_contact_threshold.as_millis()).unwrap_or(u64::MAX);
    s.last_contact_ms <= threshold
        && s.last_term == leader.last_term
        && leader.last_index.saturating_sub(s.last_index) <= cfg.max_trailing_logs
}

/// What the rules know about one server at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerView {
    /// Raft ID.
    pub id: NodeId,
    /// Whether it votes.
    pub voter: bool,
    /// Whether it is the leader (never removed by autopilot).
    pub leader: bool,
    /// Whether it is healthy now.
    pub healthy: bool,
    /// How long it has been healthy without interruption (zero when unhealthy).
    pub healthy_for: Duration,
    /// How long since the leader last reached it (zero when reachable now).
    pub unreachable_for: Duration,
}

/// Learners that have been healthy for at least `ServerStabilizationTime`.
pub fn learners_to_promote(cfg: &AutopilotConfig, servers: &[ServerView]) -> BTreeSet<NodeId> {
    servers
        .iter()
        .filter(|s| !s.voter && s.healthy && s.healthy_for >= cfg.server_stabilization_time)
        .map(|s| s.id)
        .collect()
}

/// Dead servers to remove now, a server being dead once unreachable for `dead_after` (see
/// the module docs); empty without `CleanupDeadServers`.
pub fn servers_to_remove(
    cfg: &AutopilotConfig,
    servers: &[ServerView],
    dead_after: Duration,
) -> BTreeSet<NodeId> {
    if !cfg.cleanup_dead_servers {
        return BTreeSet::new();
    }
    let limit = dead_after;
    let dead = |s: &&ServerView| !s.leader && s.unreachable_for >= limit;
    let mut out: BTreeSet<NodeId> = servers
        .iter()
        .filter(|s| !s.voter)
        .filter(dead)
        .map(|s| s.id)
        .collect();
    let voters = servers.iter().filter(|s| s.voter).count();
    let mut dead_voters: Vec<&ServerView> =
        servers.iter().filter(|s| s.voter).filter(dead).collect();
    let live_voters = voters - dead_voters.len();
    // Longest-dead first.
    dead_voters.sort_by_key(|s| (std::cmp::Reverse(s.unreachable_for), s.id));
    let floor = usize::try_from(cfg.min_quorum).unwrap_or(usize::MAX).max(1);
    let max_at_once = voters.saturating_sub(1) / 2;
    for (removed, s) in dead_voters.into_iter().enumerate() {
        let remaining = voters - removed - 1;
        if removed + 1 > max_at_once || remaining < floor || live_voters < quorum(remaining) {
            break;
        }
        out.insert(s.id);
    }
    out
}

/// One server in Consul's `GET /v1/operator/autopilot/health` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerHealth {
    /// Raft ID (decimal).
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub name: String,
    /// Raft address.
    pub address: String,
    /// `alive` when reachable, `failed` otherwise.
    pub serf_status: String,
    /// Server version.
    pub version: String,
    /// Whether it leads.
    pub leader: bool,
    /// Time since its last contact with the leader (Go duration).
    pub last_contact: String,
    /// Its current term.
    pub last_term: u64,
    /// Its last log index.
    pub last_index: u64,
    /// Whether it is healthy.
    pub healthy: bool,
    /// Whether it votes.
    pub voter: bool,
    /// When its health last changed (RFC 3339, UTC, whole seconds).
    pub stable_since: String,
}

/// Consul's `OperatorHealthReply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthReply {
    /// Whether every server is healthy.
    pub healthy: bool,
    /// Healthy voters beyond the quorum.
    pub failure_tolerance: usize,
    /// Every server of the Raft configuration.
    pub servers: Vec<ServerHealth>,
}

/// One server as the leader sees it at one moment: what the health and the state reports
/// are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// Raft ID.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Raft address.
    pub address: String,
    /// Whether the leader reached it in its latest round (always true for the leader).
    pub alive: bool,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes.
    pub voter: bool,
    /// Time since its last contact with the leader.
    pub last_contact: Duration,
    /// Its current term (0 if it never answered).
    pub last_term: u64,
    /// Its last log index.
    pub last_index: u64,
    /// Whether it is healthy.
    pub healthy: bool,
    /// When its health last changed.
    pub stable_since: SystemTime,
}

impl ServerReport {
    /// Consul's node status: `alive` when reachable, `failed` otherwise (no gossip layer).
    pub fn node_status(&self) -> &'static str {
        if self.alive {
            "alive"
        } else {
            "failed"
        }
    }
}

/// What the leader tracks about one server.
#[derive(Debug, Clone)]
struct Tracked {
    first_seen: Instant,
    last_seen: Option<Instant>,
    /// The last stats it answered with, and whether that was in the latest round.
    stats: Option<ServerStats>,
    fresh: bool,
    healthy: bool,
    changed_at: Instant,
    stable_since: SystemTime,
}

impl Tracked {
    fn new(now: Instant) -> Self {
        Tracked {
            first_seen: now,
            last_seen: None,
            stats: None,
            fresh: false,
            healthy: false,
            changed_at: now,
            stable_since: SystemTime::now(),
        }
    }
}

/// The leader's autopilot: the configured defaults and what it tracks per server.
pub struct Autopilot {
    raft: RaftHandle,
    store: Arc<Store>,
    writer: Writer,
    seed: AutopilotConfig,
    /// The shortest time without contact after which a server is dead.
    dead_min: Duration,
    servers: Mutex<BTreeMap<NodeId, Tracked>>,
}

impl std::fmt::Debug for Autopilot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autopilot")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Autopilot {
    /// An autopilot for `raft`, starting from the configured `seed`.
    pub fn new(
        raft: RaftHandle,
        store: Arc<Store>,
        writer: Writer,
        seed: AutopilotConfig,
    ) -> Arc<Self> {
        Arc::new(Autopilot {
            raft,
            store,
            writer,
            seed: AutopilotConfig {
                create_index: 0,
                modify_index: 0,
                ..seed
            },
            dead_min: DEAD_SERVER_MIN,
            servers: Mutex::new(BTreeMap::new()),
        })
    }

    /// The Raft node.
    pub fn raft(&self) -> &RaftHandle {
        &self.raft
    }

    /// The configuration in force: the stored one, else the configured one (indexes 0).
    pub fn config(&self) -> AutopilotConfig {
        self.store
            .read()
            .autopilot
            .clone()
            .unwrap_or_else(|| self.seed.clone())
    }

    /// The configured (not stored) values.
    pub fn seed(&self) -> &AutopilotConfig {
        &self.seed
    }

    /// Stores the configured values unless a configuration is stored already.
    async fn store_seed(&self) -> Result<(), ServerError> {
        if self.store.read().autopilot.is_some() {
            return Ok(());
        }
        let cmd = Command::AutopilotSetConfig {
            config: self.seed.clone(),
            cas: Some(0),
        };
        self.writer.apply(cmd).await.map(|_| ())
    }

    /// Asks every server for its stats and updates their health; returns the configuration
    /// and the leader's view. Leader only.
    async fn refresh(&self) -> Result<(AutopilotConfig, RaftConfiguration), ServerError> {
        if !self.raft.is_leader() {
            return Err(ServerError::NoLeader);
        }
        let cfg = self.config();
        let raft_cfg = self.raft.configuration();
        let me = self.raft.node_id();
        let calls = raft_cfg.servers.iter().map(|s| {
            let raft = self.raft.clone();
            let node = s.node.clone();
            let id = s.id;
            async move {
                if id == me {
                    return (id, Some(raft.stats()));
                }
                match tokio::time::timeout(STATS_TIMEOUT, raft.fetch_stats(&node)).await {
                    Ok(Ok(stats)) if stats.id == id => (id, Some(stats)),
                    Ok(Ok(other)) => {
                        tracing::debug!(
                            id,
                            answered = other.id,
                            "autopilot: another server answered"
                        );
                        (id, None)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(id, error = %e, "autopilot: no stats");
                        (id, None)
                    }
                    Err(_) => (id, None),
                }
            }
        });
        let answers: BTreeMap<NodeId, Option<ServerStats>> =
            futures::future::join_all(calls).await.into_iter().collect();
        let leader_stats = self.raft.stats();
        let now = Instant::now();
        let mut servers = self.servers.lock();
        servers.retain(|id, _| raft_cfg.get(*id).is_some());
        for s in &raft_cfg.servers {
            let t = servers.entry(s.id).or_insert_with(|| Tracked::new(now));
            let stats = answers.get(&s.id).copied().flatten();
            t.fresh = stats.is_some();
            if let Some(mut st) = stats {
                // The leader's own view of the follower's log counts as much as its answer.
                st.last_index = st.last_index.max(s.last_index);
                t.stats = Some(st);
                t.last_seen = Some(now);
            }
            let healthy = server_healthy(&cfg, stats.as_ref(), &leader_stats);
            if healthy != t.healthy {
                t.healthy = healthy;
                t.changed_at = now;
                t.stable_since = SystemTime::now();
            }
        }
        Ok((cfg, raft_cfg))
    }

    /// The rules' view of the tracked servers.
    fn views(&self, raft_cfg: &RaftConfiguration) -> Vec<ServerView> {
        let now = Instant::now();
        let servers = self.servers.lock();
        raft_cfg
            .servers
            .iter()
            .filter_map(|s| {
                let t = servers.get(&s.id)?;
                Some(ServerView {
                    id: s.id,
                    voter: s.voter,
                    leader: s.id == self.raft.node_id(),
                    healthy: t.healthy,
                    healthy_for: if t.healthy {
                        now.duration_since(t.changed_at)
                    } else {
                        Duration::ZERO
                    },
                    unreachable_for: if t.fresh {
                        Duration::ZERO
                    } else {
                        now.duration_since(t.last_seen.unwrap_or(t.first_seen))
                    },
                })
            })
            .collect()
    }

    /// One round: refresh the health, promote stable learners, remove dead servers.
    async fn step(&self) -> Result<(), ServerError> {
        let (cfg, raft_cfg) = self.refresh().await?;
        let views = self.views(&raft_cfg);
        let promote = learners_to_promote(&cfg, &views);
        if !promote.is_empty() {
            tracing::info!(servers = ?promote, "autopilot: promoting stable servers to voters");
            self.raft.promote_voters(promote).await?;
        }
        let remove = servers_to_remove(&cfg, &views, dead_after(&cfg, self.dead_min));
        if !remove.is_empty() {
            tracing::warn!(servers = ?remove, "autopilot: removing dead servers");
            self.raft.remove_servers(remove).await?;
        }
        Ok(())
    }

    /// The cluster health as the leader sees it, refreshed now (`GET
    /// /v1/operator/autopilot/health`); a follower asks the leader.
    pub async fn health(&self) -> Result<HealthReply, ServerError> {
        if !self.raft.is_leader() {
            return self
                .raft
                .call_leader_op::<(), HealthReply>(HEALTH_PATH, None)
                .await;
        }
        let (_, raft_cfg) = self.refresh().await?;
        Ok(self.report(&raft_cfg))
    }

    /// The cluster state in Consul's `AutopilotState` shape, refreshed now (`GET
    /// /v1/operator/autopilot/state`); a follower asks the leader.
    pub async fn state(&self) -> Result<AutopilotState, ServerError> {
        if !self.raft.is_leader() {
            return self
                .raft
                .call_leader_op::<(), AutopilotState>(STATE_PATH, None)
                .await;
        }
        let (_, raft_cfg) = self.refresh().await?;
        let reports = self.observe(&raft_cfg);
        let db = self.store.read();
        Ok(autopilot_state::build(&reports, |name| {
            db.nodes.get(name).map(|n| n.meta.clone())
        }))
    }

    fn report(&self, raft_cfg: &RaftConfiguration) -> HealthReply {
        let out: Vec<ServerHealth> = self
            .observe(raft_cfg)
            .into_iter()
            .map(|r| ServerHealth {
                id: r.id.to_string(),
                serf_status: r.node_status().to_string(),
                version: VERSION.to_string(),
                leader: r.leader,
                last_contact: format_go_duration(r.last_contact),
                last_term: r.last_term,
                last_index: r.last_index,
                healthy: r.healthy,
                voter: r.voter,
                stable_since: rfc3339_utc(r.stable_since),
                name: r.name,
                address: r.address,
            })
            .collect();
        let voters = out.iter().filter(|s| s.voter).count();
        let healthy_voters = out.iter().filter(|s| s.voter && s.healthy).count();
        HealthReply {
            healthy: out.iter().all(|s| s.healthy),
            failure_tolerance: failure_tolerance(healthy_voters, voters),
            servers: out,
        }
    }

    /// What the leader knows about every server of `raft_cfg` now, in its order.
    fn observe(&self, raft_cfg: &RaftConfiguration) -> Vec<ServerReport> {
        let now = Instant::now();
        let servers = self.servers.lock();
        raft_cfg
            .servers
            .iter()
            .map(|s| {
                let t = servers
                    .get(&s.id)
                    .cloned()
                    .unwrap_or_else(|| Tracked::new(now));
                let leader = s.id == self.raft.node_id();
                let last_contact = match (&t.stats, t.fresh) {
                    _ if leader => Duration::ZERO,
                    (Some(st), true) => Duration::from_millis(st.last_contact_ms),
                    _ => now.duration_since(t.last_seen.unwrap_or(t.first_seen)),
                };
                ServerReport {
                    id: s.id,
                    name: s.node.name.clone(),
                    address: s.node.raft_addr.clone(),
                    alive: t.fresh || leader,
                    leader,
                    voter: s.voter,
                    last_contact,
                    last_term: t.stats.map_or(0, |st| st.last_term),
                    last_index: t.stats.map_or(s.last_index, |st| st.last_index),
                    healthy: t.healthy,
                    stable_since: t.stable_since,
                }
            })
            .collect()
    }

    /// Forgets what was tracked (a new leadership term starts afresh).
    fn reset(&self) {
        self.servers.lock().clear();
    }
}

/// `t` as RFC 3339 in UTC, rounded to the second (Go's `StableSince.Round(time.Second)`).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    utc_text((ms + 500) / 1000, "")
}

/// `t` as RFC 3339 in UTC with its fraction of a second, trailing zeros dropped (Go's
/// `time.RFC3339Nano`, how a `time.Time` goes into JSON).
pub fn rfc3339_utc_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let fraction = match d.subsec_nanos() {
        0 => String::new(),
        n => format!(".{n:09}").trim_end_matches('0').to_string(),
    };
    utc_text(d.as_secs(), &fraction)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS{fraction}Z`.
fn utc_text(secs: u64, fraction: &str) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Runs autopilot for as long as `leader` has senders: a round every [`INTERVAL`] while this
/// server leads.
pub async fn run(ap: Arc<Autopilot>, mut leader: watch::Receiver<bool>) {
    loop {
        while !*leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                return;
            }
        }
        ap.reset();
        let mut seeded = false;
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = leader.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if !*leader.borrow() {
                        break;
                    }
                }
                _ = tick.tick() => {
                    if !seeded {
                        match ap.store_seed().await {
                            Ok(()) => seeded = true,
                            Err(e) => tracing::debug!(error = %e, "autopilot: storing the configuration"),
                        }
                    }
                    if let Err(e) = ap.step().await {
                        tracing::info!(error = %e, "autopilot round failed");
                    }
                }
            }
        }
    }
}

pub(crate) async fn health_endpoint(
    State(ap): State<Arc<Autopilot>>,
) -> Json<OpResult<HealthReply>> {
    let res = if ap.raft.is_leader() {
        ap.health().await
    } else {
        Err(ServerError::NoLeader)
    };
    Json(res.map_err(membership::OpError::from))
}

pub(crate) async fn state_endpoint(
    State(ap): State<Arc<Autopilot>>,
) -> Json<OpResult<AutopilotState>> {
    let res = if ap.raft.is_leader() {
        ap.state().await
    } else {
        Err(ServerError::NoLeader)
    };
    Json(res.map_err(membership::OpError::from))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg() -> AutopilotConfig {
        AutopilotConfig::default()
    }

    fn stats(id: NodeId, contact: u64, term: u64, index: u64) -> ServerStats {
        ServerStats {
            id,
            last_contact_ms: contact,
            last_term: term,
            last_index: index,
            applied_index: index,
            leader: false,
        }
    }

    fn view(id: NodeId, voter: bool) -> ServerView {
        ServerView {
            id,
            voter,
            leader: false,
            healthy: true,
            healthy_for: Duration::from_secs(60),
            unreachable_for: Duration::ZERO,
        }
    }

    fn dead(id: NodeId, voter: bool, for_secs: u64) -> ServerView {
        ServerView {
            healthy: false,
            healthy_for: Duration::ZERO,
            unreachable_for: Duration::from_secs(for_secs),
            ..view(id, voter)
        }
    }

    fn remove(cfg: &AutopilotConfig, servers: &[ServerView]) -> BTreeSet<NodeId> {
        servers_to_remove(cfg, servers, dead_after(cfg, DEAD_SERVER_MIN))
    }

    fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    #[test]
    fn quorum_math() {
        assert_eq!(
            (1..=7).map(quorum).collect::<Vec<_>>(),
            vec![1, 2, 2, 3, 3, 4, 4]
        );
        assert_eq!(failure_tolerance(3, 3), 1);
        assert_eq!(failure_tolerance(2, 3), 0);
        assert_eq!(failure_tolerance(5, 5), 2);
        assert_eq!(failure_tolerance(1, 1), 0);
        assert_eq!(failure_tolerance(0, 3), 0);
        assert_eq!(dead_after(&cfg(), DEAD_SERVER_MIN), Duration::from_secs(30));
        let slow = AutopilotConfig {
            server_stabilization_time: Duration::from_secs(90),
            ..cfg()
        };
        assert_eq!(dead_after(&slow, DEAD_SERVER_MIN), Duration::from_secs(90));
    }

    #[test]
    fn health_rules() {
        let c = cfg();
        let mut leader = stats(1, 0, 4, 1000);
        leader.leader = true;
        assert!(server_healthy(&c, Some(&leader), &leader));
        assert!(server_healthy(&c, Some(&stats(2, 50, 4, 900)), &leader));
        assert!(!server_healthy(&c, None, &leader), "unreachable");
        assert!(
            !server_healthy(&c, Some(&stats(2, 201, 4, 1000)), &leader),
            "stale contact"
        );
        assert!(server_healthy(&c, Some(&stats(2, 200, 4, 1000)), &leader));
        assert!(
            !server_healthy(&c, Some(&stats(2, 10, 3, 1000)), &leader),
            "old term"
        );
        assert!(
            server_healthy(&c, Some(&stats(2, 10, 4, 750)), &leader),
            "250 behind"
        );
        assert!(
            !server_healthy(&c, Some(&stats(2, 10, 4, 749)), &leader),
            "251 behind"
        );
    }

    #[test]
    fn stable_learners_are_promoted() {
        let c = cfg();
        let mut young = view(3, false);
        young.healthy_for = Duration::from_secs(9);
        let mut sick = view(4, false);
        sick.healthy = false;
        let servers = [view(1, true), view(2, false), young, sick];
        assert_eq!(learners_to_promote(&c, &servers), ids(&[2]));
        young.healthy_for = Duration::from_secs(10);
        let servers = [view(1, true), young];
        assert_eq!(learners_to_promote(&c, &servers), ids(&[3]));
    }

    #[test]
    fn dead_servers_are_removed_only_safely() {
        let c = cfg();
        let mut leader = view(1, true);
        leader.leader = true;
        // Not dead long enough; the leader is never removed.
        let mut old_leader = dead(1, true, 300);
        old_leader.leader = true;
        assert!(remove(&c, &[old_leader, view(2, true), dead(3, true, 29)]).is_empty());
        // One dead voter of three: two live voters are a quorum of two.
        assert_eq!(
            remove(&c, &[leader, view(2, true), dead(3, true, 30)]),
            ids(&[3])
        );
        // Dead learners go regardless of quorum.
        assert_eq!(
            remove(
                &c,
                &[
                    leader,
                    dead(2, true, 60),
                    dead(3, true, 60),
                    dead(4, false, 31)
                ]
            ),
            ids(&[4])
        );
        // Two dead of five: a minority at once, longest-dead first; three live voters keep a
        // quorum of three.
        let five = [
            leader,
            view(2, true),
            view(3, true),
            dead(4, true, 40),
            dead(5, true, 90),
        ];
        assert_eq!(remove(&c, &five), ids(&[4, 5]));
        // Three dead of five: the live two are no quorum of any smaller configuration that
        // keeps a minority removal.
        let five = [
            leader,
            view(2, true),
            dead(3, true, 40),
            dead(4, true, 50),
            dead(5, true, 90),
        ];
        assert!(remove(&c, &five).is_empty());
        // Two voters, one dead: a minority of two is zero servers.
        assert!(remove(&c, &[leader, dead(2, true, 100)]).is_empty());
        // MinQuorum: never below it.
        let three = [leader, view(2, true), dead(3, true, 100)];
        let keep3 = AutopilotConfig {
            min_quorum: 3,
            ..cfg()
        };
        assert!(remove(&keep3, &three).is_empty());
        let five = [
            leader,
            view(2, true),
            view(3, true),
            dead(4, true, 40),
            dead(5, true, 90),
        ];
        let keep4 = AutopilotConfig {
            min_quorum: 4,
            ..cfg()
        };
        assert_eq!(remove(&keep4, &five), ids(&[5]));
        // Disabled.
        let off = AutopilotConfig {
            cleanup_dead_servers: false,
            ..cfg()
        };
        assert!(remove(&off, &five).is_empty());
    }

    #[test]
    fn stable_since_is_rfc3339() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_600);
        assert_eq!(rfc3339_utc(t), "2023-11-14T22:13:21Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc_nanos(t), "2023-11-14T22:13:20.6Z");
        assert_eq!(rfc3339_utc_nanos(leap), "2000-02-29T00:00:00Z");
        let fine = UNIX_EPOCH + Duration::new(951_782_400, 1_500);
        assert_eq!(rfc3339_utc_nanos(fine), "2000-02-29T00:00:00.0000015Z");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod cluster_tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::query::write::Proposer;
    use crate::rpc::{operator_routes, raft_routes};
    use openraft::ServerState;

    struct TestNode {
        handle: RaftHandle,
        server: tokio::task::JoinHandle<()>,
    }

    async fn node(name: &str) -> TestNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = ServerConfig::dev(name);
        cfg.dev = false;
        cfg.data_dir = None;
        cfg.bootstrap_expect = 3;
        cfg.server_port = listener.local_addr().unwrap().port();
        let handle = RaftHandle::start(&cfg, Arc::new(Store::new()))
            .await
            .unwrap();
        let app = raft_routes(handle.clone()).merge(operator_routes(handle.clone()));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestNode { handle, server }
    }

    async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn learners_are_promoted_and_a_dead_voter_removed() {
        let nodes = vec![node("a0").await, node("a1").await, node("a2").await];
        let leader = nodes[0].handle.clone();
        leader
            .raft()
            .initialize(BTreeMap::from([(leader.node_id(), leader.node().clone())]))
            .await
            .unwrap();
        leader
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, "bootstrap leader")
            .await
            .unwrap();
        let store = leader.store().clone();
        let proposer: Arc<dyn Proposer> = Arc::new(leader.clone());
        let seed = AutopilotConfig {
            server_stabilization_time: Duration::from_secs(1),
            last_contact_threshold: Duration::from_secs(1),
            ..AutopilotConfig::default()
        };
        let ap = Arc::new(Autopilot {
            raft: leader.clone(),
            store: store.clone(),
            writer: Writer::new(proposer),
            seed,
            dead_min: Duration::from_secs(3),
            servers: Mutex::new(BTreeMap::new()),
        });
        tokio::spawn(run(ap.clone(), crate::leader::leadership(&leader)));

        // The configured values are stored once the leader runs autopilot.
        wait_for("the stored configuration", Duration::from_secs(10), || {
            store.read().autopilot.is_some()
        })
        .await;
        assert_eq!(
            ap.config().server_stabilization_time,
            Duration::from_secs(1)
        );

        for n in &nodes[1..] {
            leader
                .add_learner(n.handle.node_id(), n.handle.node().clone())
                .await
                .unwrap();
        }
        let health = ap.health().await.unwrap();
        assert_eq!(health.servers.len(), 3);
        assert_eq!(health.servers.iter().filter(|s| s.voter).count(), 1);
        let state = ap.state().await.unwrap();
        let leader_id = leader.node_id().to_string();
        assert_eq!(state.voters, std::slice::from_ref(&leader_id));
        assert_eq!(state.servers[&leader_id].status, "leader");
        for n in &nodes[1..] {
            assert_eq!(
                state.servers[&n.handle.node_id().to_string()].status,
                "non-voter"
            );
        }

        // Both learners become voters after a second of stable health.
        wait_for("promotion", Duration::from_secs(15), || {
            leader.configuration().voters().count() == 3
        })
        .await;
        let health = ap.health().await.unwrap();
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.failure_tolerance, 1);
        assert!(health.servers.iter().all(|s| s.serf_status == "alive"));
        assert_eq!(health.servers.iter().filter(|s| s.leader).count(), 1);
        let state = ap.state().await.unwrap();
        assert!(state.healthy, "{state:?}");
        assert_eq!(state.failure_tolerance, 1);
        assert_eq!(state.leader, leader_id);
        assert_eq!(state.voters.len(), 3);
        assert_eq!(state.voters[0], leader_id);
        assert!(state.servers.values().all(|s| s.node_status == "alive"));
        assert_eq!(
            state
                .servers
                .values()
                .filter(|s| s.status == "voter")
                .count(),
            2
        );

        // A voter that dies is reported, then removed once dead long enough.
        let dead = &nodes[2];
        dead.handle.shutdown().await;
        dead.server.abort();
        let dead_id = dead.handle.node_id().to_string();
        let mut saw_failed = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let cfg = leader.configuration();
            if cfg.get(dead.handle.node_id()).is_none() {
                break;
            }
            if let Ok(h) = ap.health().await {
                if let Some(s) = h.servers.iter().find(|s| s.id == dead_id) {
                    if !s.healthy && s.serf_status == "failed" {
                        saw_failed = true;
                        assert!(!h.healthy);
                        assert_eq!(h.failure_tolerance, 0);
                    }
                }
            }
            assert!(Instant::now() < deadline, "dead voter not removed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(saw_failed, "the dead server was reported unhealthy first");
        assert_eq!(leader.configuration().voters().count(), 2);
        // Two voters, both alive: no further removal, and the cluster still commits.
        leader.write(Command::Noop).await.unwrap();

        for n in &nodes {
            n.handle.shutdown().await;
            n.server.abort();
        }
    }
}
