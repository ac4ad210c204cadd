//! LAN gossip: membership, failure detection and user events between the agents of a
//! datacenter, on the `serf_lan` port (UDP 8301), built on chitchat (scuttlebutt
//! anti-entropy with a phi-accrual failure detector).
//!
//! Every agent, server or client, is a chitchat node named after its node name, with its
//! start time as generation (a restart is a new generation of the same member). Its gossip
//! state is deliberately small (see `docs/gossip.md`): its Serf tags as one JSON value, a
//! `status` key once it leaves, force-leave markers it publishes for others, and user
//! events for the deletion grace period. Services and checks are not gossiped: they live in
//! the catalog.
//!
//! [`Gossip`] keeps a member list computed from chitchat's state every half gossip interval
//! ([`view`]); it serves `/v1/agent/members` (through [`GossipMembership`]) and the leader's
//! reconciliation of members into the catalog (as a
//! [`MemberSource`](registry_server::leader::members::MemberSource)).
//!
//! The same code runs the WAN pool of the servers (`serf_wan`, UDP 8302): a second
//! [`Gossip`] whose cluster ID is [`WAN_CLUSTER_ID`] and whose members are named
//! `<node>.<dc>` ([`wan`] builds its configuration and turns its members into the
//! datacenter directory that cross-datacenter forwarding uses).

pub mod crypto;
pub mod events;
pub mod keyring;
mod keyring_ops;
mod membership;
pub mod rtt;
pub mod transport;
pub mod view;
pub mod wan;

pub use membership::GossipMembership;

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId};
use chitchat::{FailureDetectorConfig, ListenerHandle, ProtocolVersion};
use registry_server::http::UserEvents;
use registry_server::leader::members::{GossipMember, MemberSource, MemberStatus};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use view::{Observed, Timing, Tracker, FORCE_LEAVE_PREFIX, STATUS_KEY, TAGS_KEY};

/// Gossip settings.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Node name (the chitchat node ID).
    pub node_name: String,
    /// The chitchat cluster ID: the datacenter for a LAN pool, so pools of different
    /// datacenters never mix; [`WAN_CLUSTER_ID`] for the WAN pool.
    pub datacenter: String,
    /// Where the UDP socket binds (`bind_addr:serf_lan`).
    pub bind: SocketAddr,
    /// The address peers reach this node at (`advertise_addr:serf_lan`).
    pub advertise: SocketAddr,
    /// This node's Serf tags.
    pub tags: BTreeMap<String, String>,
    /// `start_join` then `retry_join` addresses (host or IP, optional port).
    pub join: Vec<String>,
    /// Pause between `retry_join` attempts.
    pub retry_interval: Duration,
    /// Gossip round interval (`gossip_lan.gossip_interval`).
    pub interval: Duration,
    /// Phi above which a member is declared failed.
    pub phi_threshold: f64,
    /// A failed member is reaped (and deregistered) after this long.
    pub reconnect_timeout: Duration,
    /// The gossip keyring when `encrypt` is set or a keyring file exists: every datagram
    /// is then encrypted ([`transport::SecureTransport`]).
    pub keyring: Option<Arc<keyring::Keyring>>,
}

impl GossipConfig {
    /// The UDP port gossip addresses default to.
    pub fn default_port(&self) -> u16 {
        self.advertise.port()
    }

    /// `lan` or `wan`: the `network` label of the pool's metrics.
    pub fn network(&self) -> &'static str {
        if self.datacenter == WAN_CLUSTER_ID {
            "wan"
        } else {
            "lan"
        }
    }

    /// "LAN" or "WAN", for messages.
    pub fn pool(&self) -> &'static str {
        if self.datacenter == WAN_CLUSTER_ID {
            "WAN"
        } else {
            "LAN"
        }
    }
}

/// The chitchat cluster ID of the WAN pool (not a valid datacenter name, so it never
/// collides with a LAN pool).
pub const WAN_CLUSTER_ID: &str = "wan:servers";

/// Default phi threshold. Chitchat's phi is the time since the last heartbeat over the mean
/// interval between heartbeats; members learn each other's heartbeats several times per
/// 200 ms round, so a silent member is declared failed after about 3 to 4 s, and a member
/// must stall for as long before it is falsely suspected.
pub const DEFAULT_PHI_THRESHOLD: f64 = 32.0;

/// An instance never seen live is not listed for this long.
const DISCOVER_GRACE: Duration = Duration::from_secs(10);
/// Gossip counts as settled (absence from the list means something) after this long.
const SETTLE_AFTER: Duration = Duration::from_secs(30);
/// The member list is recomputed at least this often even when chitchat's state is
/// unchanged (the discovery grace and reaping depend on time alone).
const FULL_REFRESH: Duration = Duration::from_secs(1);
/// Gossip rounds spent pushing a leave to every live member before stopping.
const LEAVE_ROUNDS: u32 = 3;

/// Local services, for the event filters: (name, tags).
pub type LocalServices = Arc<dyn Fn() -> Vec<(String, Vec<String>)> + Send + Sync>;

#[derive(Debug, Default)]
struct View {
    members: Vec<GossipMember>,
    generations: HashMap<String, u64>,
}

/// A running LAN gossip member.
pub struct Gossip {
    cfg: GossipConfig,
    handle: ChitchatHandle,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    view: parking_lot::Mutex<View>,
    changes: watch::Sender<u64>,
    started: Instant,
    services: OnceLock<LocalServices>,
    left: std::sync::atomic::AtomicBool,
    rtt: parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<rtt::RttSample>>>,
    /// Keyring change requests applied already (by ID).
    applied: parking_lot::Mutex<std::collections::HashSet<String>>,
    _events: ListenerHandle,
    _keyring_requests: Option<ListenerHandle>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("node", &self.cfg.node_name)
            .field("advertise", &self.cfg.advertise)
            .finish_non_exhaustive()
    }
}

/// `addr` with `port` unless it names one (`host`, `1.2.3.4`, `[::1]`, `host:port`).
pub fn with_port(addr: &str, port: u16) -> String {
    let addr = addr.trim();
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return SocketAddr::new(ip, port).to_string();
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_string();
    }
    if let Some(inner) = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        return format!("[{inner}]:{port}");
    }
    match addr.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => addr.to_string(),
        _ => format!("{addr}:{port}"),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Gossip {
    /// Binds the gossip socket, starts chitchat, the member list refresh, the join attempts
    /// and event delivery into `events`.
    /// Round trips of gossip rounds are measured (see [`rtt`]) and available from
    /// [`Gossip::take_rtt_samples`]; with a keyring every datagram is encrypted (see
    /// [`transport`]).
    pub async fn start(cfg: GossipConfig, events: Arc<UserEvents>) -> anyhow::Result<Arc<Gossip>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let g = match cfg.keyring.clone() {
            Some(ring) => {
                let secure = transport::SecureTransport::new(ring.keys());
                let transport = rtt::RttTransport::new(secure, tx).metered(cfg.network());
                Self::start_with_transport(cfg, events, &transport).await?
            }
            None => {
                let transport = rtt::RttTransport::new(UdpTransport, tx).metered(cfg.network());
                Self::start_with_transport(cfg, events, &transport).await?
            }
        };
        *g.rtt.lock() = Some(rx);
        Ok(g)
    }

    /// The round-trip samples of gossip rounds (once; `None` afterwards, or when started
    /// over another transport).
    pub fn take_rtt_samples(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<rtt::RttSample>> {
        self.rtt.lock().take()
    }

    /// Publishes `key` = `value` in this node's gossip state.
    pub async fn set_key(&self, key: &str, value: String) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(key.to_string(), value);
    }

    /// The name of the member at gossip address `addr` and its value of `key`.
    pub async fn peer_key(&self, addr: SocketAddr, key: &str) -> Option<(String, Option<String>)> {
        let cc = self.chitchat.lock().await;
        cc.node_states()
            .iter()
            .filter(|(id, _)| id.gossip_advertise_addr == addr)
            .max_by_key(|(id, _)| id.generation_id)
            .map(|(id, st)| (id.node_id.to_string(), st.get(key).map(str::to_string)))
    }

    /// Every member's value of `key` (newest generation of each name), this node included.
    pub async fn member_keys(&self, key: &str) -> Vec<(String, String)> {
        let cc = self.chitchat.lock().await;
        let mut best: std::collections::HashMap<String, (u64, String)> = Default::default();
        for (id, st) in cc.node_states() {
            let Some(v) = st.get(key) else { continue };
            let e = best
                .entry(id.node_id.to_string())
                .or_insert((id.generation_id, v.to_string()));
            if id.generation_id > e.0 {
                *e = (id.generation_id, v.to_string());
            }
        }
        best.into_iter().map(|(n, (_, v))| (n, v)).collect()
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.cfg.node_name
    }

    /// [`Gossip::start`] over another chitchat transport (the benchmark counts bytes with a
    /// wrapper around UDP).
    pub async fn start_with_transport(
        cfg: GossipConfig,
        events: Arc<UserEvents>,
        transport: &dyn chitchat::transport::Transport,
    ) -> anyhow::Result<Arc<Gossip>> {
        let generation = unix_ms();
        let id = ChitchatId::new(cfg.node_name.clone(), generation, cfg.advertise);
        let grace = (cfg.reconnect_timeout * 2).max(Duration::from_secs(120));
        let config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: cfg.datacenter.clone(),
            gossip_interval: cfg.interval,
            listen_addr: cfg.bind,
            seed_nodes: cfg
                .join
                .iter()
                .map(|a| with_port(a, cfg.default_port()))
                .collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: cfg.phi_threshold,
                sampling_window_size: 1_000,
                max_interval: Duration::from_secs(10),
                initial_interval: cfg.interval,
                dead_node_grace_period: grace,
            },
            marked_for_deletion_grace_period: Duration::from_secs(600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: digest_format(),
        };
        let tags = serde_json::to_string(&cfg.tags)?;
        let mut initial = vec![(TAGS_KEY.to_string(), tags)];
        if let Some(ring) = &cfg.keyring {
            initial.push((keyring::KEYRING_KEY.to_string(), ring.published()));
            tracing::info!(
                verify_incoming = ring.keys().verify_incoming(),
                verify_outgoing = ring.keys().verify_outgoing(),
                "gossip encryption enabled"
            );
        }
        let handle = spawn_chitchat(config, initial, transport)
            .await
            .map_err(|e| {
                anyhow::anyhow!("starting {} gossip on {}: {e:#}", cfg.pool(), cfg.bind)
            })?;
        let chitchat = handle.chitchat();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let listener = chitchat
            .lock()
            .await
            .subscribe_event(events::EVENT_PREFIX, move |ev| {
                let _ = tx.send(ev.value.to_string());
            });
        let (ktx, krx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        let keyring_requests = match cfg.keyring.is_some() {
            true => Some(chitchat.lock().await.subscribe_event(
                keyring::REQUEST_PREFIX,
                move |ev| {
                    let _ = ktx.send((ev.key.to_string(), ev.value.to_string()));
                },
            )),
            false => None,
        };
        let gossip = Arc::new(Gossip {
            handle,
            chitchat,
            view: parking_lot::Mutex::new(View::default()),
            changes: watch::Sender::new(0),
            started: Instant::now(),
            services: OnceLock::new(),
            left: std::sync::atomic::AtomicBool::new(false),
            rtt: parking_lot::Mutex::new(None),
            applied: parking_lot::Mutex::new(Default::default()),
            _events: listener,
            _keyring_requests: keyring_requests,
            cfg,
        });
        tokio::spawn(keyring_ops::apply_requests(Arc::downgrade(&gossip), krx));
        tracing::info!(pool = gossip.cfg.pool(), bind = %gossip.cfg.bind, advertise = %gossip.cfg.advertise, "gossip listening");

        // Events from other agents.
        let me = Arc::downgrade(&gossip);
        let sink = events.clone();
        let mut dedup = events::Dedup::new(&gossip.cfg.node_name, generation);
        tokio::spawn(async move {
            while let Some(value) = rx.recv().await {
                let Some(event) = dedup.accept(&value) else {
                    continue;
                };
                let Some(g) = me.upgrade() else { return };
                let services = g.services.get().map(|f| f()).unwrap_or_default();
                if event.accepted_by(&g.cfg.node_name, &services) {
                    tracing::debug!(name = %event.name, id = %event.id, "user event received");
                    sink.ingest(event);
                }
            }
        });
        // Events fired here.
        let me = Arc::downgrade(&gossip);
        events.set_broadcaster(Arc::new(move |event| {
            let Some(g) = me.upgrade() else { return };
            let key = format!("{}{}", events::EVENT_PREFIX, event.id);
            let value = events::encode(event, &g.cfg.node_name, unix_ms());
            tokio::spawn(async move {
                g.chitchat
                    .lock()
                    .await
                    .self_node_state()
                    .set_with_ttl(key, value);
            });
        }));

        tokio::spawn(refresh_loop(Arc::downgrade(&gossip)));
        if !gossip.cfg.join.is_empty() {
            tokio::spawn(retry_join(Arc::downgrade(&gossip)));
        }
        Ok(gossip)
    }

    /// Sets where the event filters find this agent's services.
    pub fn set_local_services(&self, f: LocalServices) {
        let _ = self.services.set(f);
    }

    /// The current member list (reaped members included).
    pub fn members(&self) -> Vec<GossipMember> {
        self.view.lock().members.clone()
    }

    /// The status of member `name`, without copying the list.
    pub fn member_status(&self, name: &str) -> Option<MemberStatus> {
        let v = self.view.lock();
        v.members.iter().find(|m| m.name == name).map(|m| m.status)
    }

    /// How many members have `status`, without copying the list.
    pub fn count_with_status(&self, status: MemberStatus) -> usize {
        let v = self.view.lock();
        v.members.iter().filter(|m| m.status == status).count()
    }

    /// This node's gossip address.
    pub fn advertise(&self) -> SocketAddr {
        self.cfg.advertise
    }

    /// Sends one gossip round to `addr` (a flood join: see [`wan::flood_join`]).
    pub fn gossip_to(&self, addr: SocketAddr) {
        let _ = self.handle.gossip(addr);
    }

    /// Whether a member of this name was ever seen (for `force-leave` on the right pool).
    pub fn knows(&self, node: &str) -> bool {
        self.view.lock().generations.contains_key(node)
    }

    /// Recomputes the member list from chitchat's state when that state changed (an
    /// instance appeared or went, its liveness flipped, or one of its keys changed) or
    /// [`FULL_REFRESH`] passed (for the time-based transitions: discovery grace, reaping).
    /// Checking costs one pass over the instances without allocating; the recompute
    /// (which parses every member's tags) runs only then, so a pool of hundreds of members
    /// in steady state costs next to nothing here.
    async fn refresh(&self, tracker: &mut Tracker, last: &mut Option<(u64, Instant)>) {
        let (observed, force_left) = {
            let cc = self.chitchat.lock().await;
            let live: std::collections::HashSet<&ChitchatId> = cc.live_nodes().collect();
            let fingerprint = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for (id, st) in cc.node_states() {
                    id.hash(&mut h);
                    live.contains(id).hash(&mut h);
                    st.max_version().hash(&mut h);
                }
                h.finish()
            };
            let now = Instant::now();
            match last {
                Some((fp, at)) if *fp == fingerprint && now.duration_since(*at) < FULL_REFRESH => {
                    return;
                }
                _ => *last = Some((fingerprint, now)),
            }
            let mut force_left = HashMap::new();
            let observed: Vec<Observed> = cc
                .node_states()
                .iter()
                .map(|(id, st)| {
                    for (k, v) in st.iter_prefix(FORCE_LEAVE_PREFIX) {
                        if let (Some(name), Some(fl)) = (
                            k.strip_prefix(FORCE_LEAVE_PREFIX),
                            view::parse_force_left(&v.value),
                        ) {
                            let e = force_left.entry(name.to_string()).or_insert(fl);
                            if fl.generation > e.generation
                                || (fl.generation == e.generation && fl.prune)
                            {
                                *e = fl;
                            }
                        }
                    }
                    Observed {
                        name: id.node_id.to_string(),
                        generation: id.generation_id,
                        addr: id.gossip_advertise_addr,
                        live: live.contains(id),
                        status: st.get(STATUS_KEY).map(str::to_string),
                        tags: st.get(TAGS_KEY).map(str::to_string),
                    }
                })
                .collect();
            (observed, force_left)
        };
        let timing = Timing {
            reconnect_timeout: self.cfg.reconnect_timeout,
            discover_grace: DISCOVER_GRACE,
        };
        let members = tracker.members(Instant::now(), &observed, &force_left, timing);
        let mut generations: HashMap<String, u64> = HashMap::new();
        for o in &observed {
            let g = generations.entry(o.name.clone()).or_insert(o.generation);
            *g = (*g).max(o.generation);
        }
        let changed = {
            let mut v = self.view.lock();
            let before: Vec<(&str, MemberStatus)> = v
                .members
                .iter()
                .map(|m| (m.name.as_str(), m.status))
                .collect();
            let after: Vec<(&str, MemberStatus)> = members
                .iter()
                .map(|m| (m.name.as_str(), m.status))
                .collect();
            let changed = before != after;
            if changed {
                for m in &members {
                    let old = v
                        .members
                        .iter()
                        .find(|o| o.name == m.name)
                        .map(|o| o.status);
                    if old != Some(m.status) {
                        tracing::info!(member = %m.name, addr = %m.addr, status = ?m.status, "gossip member status");
                        member_event_metric(m.status, self.cfg.network());
                    }
                }
            }
            v.members = members;
            v.generations = generations;
            changed
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Sends a gossip round to `addr` (resolved now) and waits until a member at that
    /// address is alive. Returns the number of members reached.
    pub async fn join(&self, addr: &str) -> Result<usize, String> {
        let target = with_port(addr, self.cfg.default_port());
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(target.clone())
            .await
            .map_err(|e| format!("Failed to join {target}: {e}"))?
            .collect();
        if resolved.is_empty() {
            return Err(format!("Failed to join {target}: no address"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for sa in &resolved {
                let _ = self.handle.gossip(*sa);
            }
            let reached = self
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .filter(|m| {
                    resolved
                        .iter()
                        .any(|sa| sa.ip() == m.addr && sa.port() == m.port)
                })
                .count();
            if reached > 0 {
                return Ok(reached);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Failed to join {target}: no answer from a gossip member"
                ));
            }
            tokio::time::sleep(self.cfg.interval).await;
        }
    }

    /// Leaves gracefully: publishes `status=left`, pushes it to every live member for a few
    /// rounds, then stops gossiping.
    pub async fn leave(&self) {
        if self.left.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(STATUS_KEY, "left");
        for _ in 0..LEAVE_ROUNDS {
            let peers: Vec<SocketAddr> = self
                .members()
                .iter()
                .filter(|m| m.name != self.cfg.node_name && m.status == MemberStatus::Alive)
                .map(|m| SocketAddr::new(m.addr, m.port))
                .collect();
            for p in peers {
                let _ = self.handle.gossip(p);
            }
            tokio::time::sleep(self.cfg.interval).await;
        }
        let _ = self.handle.initiate_shutdown();
        tracing::info!(pool = self.cfg.pool(), "left the gossip pool");
    }

    /// Marks a member that is not alive as left (`prune`: removed from the list), for
    /// every agent: `registry force-leave`.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), String> {
        let generation = self.view.lock().generations.get(node).copied();
        let Some(generation) = generation else {
            return Err(format!("agent: No node found with name '{node}'"));
        };
        let value = if prune {
            format!("{generation}:prune")
        } else {
            generation.to_string()
        };
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(format!("{FORCE_LEAVE_PREFIX}{node}"), value);
        tracing::info!(%node, prune, "force-leave published");
        Ok(())
    }

    /// Stops gossiping without leaving (peers will see this member fail).
    pub fn shutdown(&self) {
        let _ = self.handle.initiate_shutdown();
    }
}

impl MemberSource for Gossip {
    fn members(&self) -> Vec<GossipMember> {
        Gossip::members(self)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn settled(&self) -> bool {
        self.started.elapsed() >= SETTLE_AFTER
    }
}

/// Consul's serf member event counters: `consul_serf_member_join` (a member becomes alive,
/// this agent included), `consul_serf_member_failed` and `consul_serf_member_left`; and the
/// memberlist message counters of the pool (`network` label): `consul_memberlist_msg_alive`
/// when a member is seen alive, `consul_memberlist_msg_suspect` and
/// `consul_memberlist_msg_dead` when it is declared failed. Chitchat's phi-accrual detector
/// has no separate suspicion phase with refutation: crossing its threshold is both the
/// suspicion and the verdict, so the two count together.
fn member_event_metric(status: MemberStatus, network: &'static str) {
    if registry_server::metrics::enabled() {
        let msgs: &[&'static str] = match status {
            MemberStatus::Alive => &["consul_memberlist_msg_alive"],
            MemberStatus::Failed => &[
                "consul_memberlist_msg_suspect",
                "consul_memberlist_msg_dead",
            ],
            _ => &[],
        };
        for name in msgs {
            metrics::counter!(*name, "network" => network).increment(1);
        }
    }
    let name = match status {
        MemberStatus::Alive => "consul_serf_member_join",
        MemberStatus::Failed => "consul_serf_member_failed",
        MemberStatus::Left | MemberStatus::Leaving => "consul_serf_member_left",
        MemberStatus::Reaped => return,
    };
    registry_server::metrics::increment(name);
}

/// The digest format: compressed (V1) unless `REGISTRY_GOSSIP_DIGEST=v0` (the benchmark
/// compares both). Every member runs this code and answers in the format it was asked in,
/// so members with either setting understand each other.
fn digest_format() -> ProtocolVersion {
    match std::env::var("REGISTRY_GOSSIP_DIGEST").as_deref() {
        Ok("v0") => ProtocolVersion::V0,
        _ => ProtocolVersion::V1,
    }
}

/// `REGISTRY_GOSSIP_ALWAYS_RECOMPUTE=1` recomputes the member list on every poll, as
/// before the change check existed: the gossip benchmark's baseline.
fn always_recompute() -> bool {
    std::env::var("REGISTRY_GOSSIP_ALWAYS_RECOMPUTE").is_ok_and(|v| v == "1")
}

async fn refresh_loop(me: std::sync::Weak<Gossip>) {
    let mut tracker = Tracker::default();
    let mut last = None;
    let always = always_recompute();
    loop {
        let Some(g) = me.upgrade() else { return };
        if always {
            last = None;
        }
        g.refresh(&mut tracker, &mut last).await;
        let every = g.cfg.interval / 2;
        drop(g);
        tokio::time::sleep(every).await;
    }
}

/// `-join` / `-retry-join`: sends a gossip round to every address, resolving host names
/// again on each attempt, until another member is alive.
async fn retry_join(me: std::sync::Weak<Gossip>) {
    let mut attempt: u64 = 0;
    loop {
        let Some(g) = me.upgrade() else { return };
        let joined = g
            .members()
            .iter()
            .any(|m| m.name != g.cfg.node_name && m.status == MemberStatus::Alive);
        if joined {
            tracing::info!(
                pool = g.cfg.pool(),
                attempts = attempt,
                "joined the gossip pool"
            );
            return;
        }
        attempt += 1;
        for addr in &g.cfg.join {
            let target = with_port(addr, g.cfg.default_port());
            match tokio::net::lookup_host(target.clone()).await {
                Ok(found) => {
                    for sa in found {
                        if sa != g.cfg.advertise {
                            let _ = g.handle.gossip(sa);
                        }
                    }
                }
                Err(e) => tracing::warn!(addr = %target, error = %e, "cannot resolve join address"),
            }
        }
        // Quick attempts while the pool forms, then the configured interval.
        let pause = if attempt < 30 {
            Duration::from_secs(1)
        } else {
            g.cfg.retry_interval
        };
        drop(g);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
