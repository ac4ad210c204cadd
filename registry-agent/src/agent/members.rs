//! Cluster membership as `/v1/agent/members`, `/v1/agent/join` and `/v1/agent/leave` see
//! it. Until gossip exists, [`LocalMembership`] knows only this node; a gossip layer plugs
//! in by implementing [`Membership`] and passing it to
//! [`LocalAgent::with_membership`](crate::agent::LocalAgent::with_membership).

use futures::future::BoxFuture;
use registry_server::config::ServerConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Serf member status: alive.
pub const STATUS_ALIVE: u8 = 1;
/// Serf member status: leaving.
pub const STATUS_LEAVING: u8 = 2;
/// Serf member status: left.
pub const STATUS_LEFT: u8 = 3;
/// Serf member status: failed.
pub const STATUS_FAILED: u8 = 4;

/// One gossip member, in Consul's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    /// Node name (`<node>.<dc>` in the WAN pool).
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags (`role`, `dc`, `port`, `id`, `build`, `vsn`, ...).
    pub tags: BTreeMap<String, String>,
    /// 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: u8,
    /// Lowest memberlist protocol spoken.
    pub protocol_min: u8,
    /// Highest memberlist protocol spoken.
    pub protocol_max: u8,
    /// Current memberlist protocol.
    pub protocol_cur: u8,
    /// Lowest delegate protocol spoken.
    pub delegate_min: u8,
    /// Highest delegate protocol spoken.
    pub delegate_max: u8,
    /// Current delegate protocol.
    pub delegate_cur: u8,
}

/// The gossip layer, as the agent endpoints need it.
pub trait Membership: Send + Sync + 'static {
    /// LAN pool members, this node included.
    fn lan_members(&self) -> Vec<Member>;
    /// WAN pool members (servers only).
    fn wan_members(&self) -> Vec<Member>;
    /// Joins the cluster through `addr`; returns the number of nodes contacted.
    fn join<'a>(&'a self, addr: &'a str, wan: bool) -> BoxFuture<'a, Result<usize, String>>;
    /// Leaves the cluster gracefully.
    fn leave(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Marks a failed member as left (`prune`: forgets it): `registry force-leave`.
    fn force_leave<'a>(&'a self, node: &'a str, _prune: bool) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("agent: No node found with name '{node}'")) })
    }
    /// Lists or changes the gossip keyring of the pool (`/v1/operator/keyring`).
    fn keyring(
        &self,
        _op: registry_server::agent_api::KeyringOp,
    ) -> BoxFuture<'_, Result<serde_json::Value, registry_server::ServerError>> {
        Box::pin(async {
            Err(registry_server::ServerError::Internal(
                "Keyring is empty (encryption not enabled)".to_string(),
            ))
        })
    }
}

/// This node's serf tags, as a Consul server (`role=consul`) or client (`role=node`)
/// publishes them.
pub fn local_tags(
    config: &ServerConfig,
    node_id: &str,
    version: &str,
    revision: &str,
) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    set("build", format!("{version}:{revision}"));
    set("dc", config.datacenter.clone());
    set("id", node_id.to_string());
    set("segment", String::new());
    set("vsn", "2".into());
    set("vsn_min", "2".into());
    set("vsn_max", "3".into());
    if config.server {
        set("role", "consul".into());
        set("port", config.server_port.to_string());
        set("wan_join_port", config.serf_wan_port.to_string());
        set("raft_vsn", "3".into());
        set("acls", "0".into());
        set("ft_fs", "1".into());
        set("ft_si", "1".into());
        match config.bootstrap_expect {
            0 => {}
            1 => set("bootstrap", "1".into()),
            n => set("expect", n.to_string()),
        }
    } else {
        set("role", "node".into());
    }
    t
}

/// An alive member with Consul's protocol versions.
pub fn alive_member(
    name: String,
    addr: IpAddr,
    port: u16,
    tags: BTreeMap<String, String>,
) -> Member {
    Member {
        name,
        addr: addr.to_string(),
        port,
        tags,
        status: STATUS_ALIVE,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

/// Membership without gossip: this node alone, always alive.
#[derive(Debug, Clone)]
pub struct LocalMembership {
    lan: Member,
    wan: Option<Member>,
}

impl LocalMembership {
    /// This node's LAN member (and WAN member when a server).
    pub fn new(config: &ServerConfig, addr: IpAddr, tags: BTreeMap<String, String>) -> Self {
        let lan = alive_member(
            config.node_name.clone(),
            addr,
            config.serf_lan_port,
            tags.clone(),
        );
        let wan = config.server.then(|| {
            alive_member(
                format!("{}.{}", config.node_name, config.datacenter),
                addr,
                config.serf_wan_port,
                tags,
            )
        });
        LocalMembership { lan, wan }
    }
}

impl Membership for LocalMembership {
    fn lan_members(&self) -> Vec<Member> {
        vec![self.lan.clone()]
    }

    fn wan_members(&self) -> Vec<Member> {
        self.wan.iter().cloned().collect()
    }

    fn join<'a>(&'a self, addr: &'a str, _wan: bool) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            Err(format!(
                "1 error occurred:\n\t* Failed to join {addr}: gossip is not available on this agent\n\n"
            ))
        })
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Membership of a server without gossip: the LAN pool is this node plus the other Raft
/// servers; `join` and `leave` change the Raft cluster (`registry join`, `registry leave`).
pub struct ServerMembership {
    inner: std::sync::Arc<dyn Membership>,
    cluster: std::sync::Arc<registry_server::cluster::Cluster>,
    serf_lan_port: u16,
}

impl ServerMembership {
    /// Wraps `inner` (this node's own member) with the Raft cluster of `cluster`.
    pub fn new(
        inner: std::sync::Arc<dyn Membership>,
        cluster: std::sync::Arc<registry_server::cluster::Cluster>,
        serf_lan_port: u16,
    ) -> Self {
        ServerMembership {
            inner,
            cluster,
            serf_lan_port,
        }
    }

    /// The other servers of the Raft membership as members, tagged like this one.
    fn servers(&self, own: &Member) -> Vec<Member> {
        let raft = self.cluster.raft();
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let me = raft.node_id();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me)
            .filter_map(|(_, n)| {
                let sa: std::net::SocketAddr = n.raft_addr.parse().ok()?;
                let mut tags = own.tags.clone();
                tags.insert("port".into(), sa.port().to_string());
                tags.remove("id");
                Some(alive_member(
                    n.name.clone(),
                    sa.ip(),
                    self.serf_lan_port,
                    tags,
                ))
            })
            .collect()
    }
}

impl Membership for ServerMembership {
    fn lan_members(&self) -> Vec<Member> {
        let mut out = self.inner.lan_members();
        if let Some(own) = out.first().cloned() {
            out.extend(self.servers(&own));
        }
        out
    }

    fn wan_members(&self) -> Vec<Member> {
        self.inner.wan_members()
    }

    fn join<'a>(&'a self, addr: &'a str, wan: bool) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            if wan {
                return self.inner.join(addr, wan).await;
            }
            self.cluster
                .join(addr)
                .await
                .map(|()| 1)
                .map_err(|e| format!("1 error occurred:\n\t* Failed to join {addr}: {e}\n\n"))
        })
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.cluster.leave().await.map_err(|e| e.to_string()) })
    }
}
