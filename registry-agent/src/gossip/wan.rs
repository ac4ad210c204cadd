//! The servers' WAN pool: its gossip configuration (members named `<node>.<dc>`, the
//! server's Serf tags, the `serf_wan` port, its own cluster ID) and [`WanDirectory`], the
//! datacenters and alive servers it shows, which is where requests for another datacenter
//! go ([`registry_server::rpc::wan::Datacenters`]).
//!
//! A WAN member that stops answering is declared failed by the same failure detector as on
//! the LAN, and leaves [`WanDirectory::servers`] at once, so forwarding routes around it.

use super::{Gossip, GossipConfig, WAN_CLUSTER_ID};
use registry_server::leader::members::MemberStatus;
use registry_server::rpc::wan::DatacenterDirectory;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the WAN pool of a server is built from.
#[derive(Debug, Clone)]
pub struct WanSettings {
    /// Node name (the member is `<node>.<dc>`).
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
    /// Address the UDP socket binds to.
    pub bind: IpAddr,
    /// `advertise_addr_wan`, else `advertise_addr`.
    pub advertise: IpAddr,
    /// `serf_wan`.
    pub port: u16,
    /// `start_join_wan` then `retry_join_wan`.
    pub join: Vec<String>,
    /// Pause between join attempts.
    pub retry_interval: Duration,
    /// Gossip round interval.
    pub interval: Duration,
    /// A failed member is reaped after this long.
    pub reconnect_timeout: Duration,
    /// The WAN keyring (`<data_dir>/serf/remote.keyring`, else `encrypt`), as Consul keeps
    /// one per pool: every WAN datagram is then encrypted.
    pub keyring: Option<Arc<super::keyring::Keyring>>,
}

impl WanSettings {
    /// The gossip configuration of the WAN pool, with this server's Serf `tags`.
    pub fn gossip_config(&self, tags: BTreeMap<String, String>) -> GossipConfig {
        GossipConfig {
            node_name: format!("{}.{}", self.node_name, self.datacenter),
            datacenter: WAN_CLUSTER_ID.to_string(),
            bind: SocketAddr::new(self.bind, self.port),
            advertise: SocketAddr::new(self.advertise, self.port),
            tags,
            join: self.join.clone(),
            retry_interval: self.retry_interval,
            interval: self.interval,
            phi_threshold: super::DEFAULT_PHI_THRESHOLD,
            reconnect_timeout: self.reconnect_timeout,
            keyring: self.keyring.clone(),
        }
    }
}

/// How often the servers of this datacenter are checked for WAN membership.
const FLOOD_INTERVAL: Duration = Duration::from_secs(2);

/// Consul's flood join: every server of the LAN pool (role `consul`, `wan_join_port` tag)
/// that is not an alive member of the WAN pool is sent a WAN gossip round at its LAN address
/// and WAN port, so joining one server of a datacenter to the WAN joins them all, and a
/// server added later follows.
pub async fn flood_join(lan: std::sync::Weak<Gossip>, wan: std::sync::Weak<Gossip>, dc: String) {
    loop {
        let (Some(lan), Some(wan)) = (lan.upgrade(), wan.upgrade()) else {
            return;
        };
        let alive: BTreeSet<String> = wan
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.name)
            .collect();
        for m in lan.members() {
            if m.status != MemberStatus::Alive || !m.is_server() {
                continue;
            }
            if alive.contains(&format!("{}.{dc}", m.name)) {
                continue;
            }
            if let Some(port) = m.tags.get("wan_join_port").and_then(|p| p.parse().ok()) {
                wan.gossip_to(SocketAddr::new(m.addr, port));
            }
        }
        drop((lan, wan));
        tokio::time::sleep(FLOOD_INTERVAL).await;
    }
}

/// The datacenters and their alive servers, from the WAN member list.
#[derive(Debug, Clone)]
pub struct WanDirectory {
    wan: Arc<Gossip>,
}

impl WanDirectory {
    /// The directory of `wan`.
    pub fn new(wan: Arc<Gossip>) -> Self {
        WanDirectory { wan }
    }
}

impl DatacenterDirectory for WanDirectory {
    fn datacenters(&self) -> Vec<String> {
        let dcs: BTreeSet<String> = self
            .wan
            .members()
            .into_iter()
            .filter(|m| {
                m.is_server() && matches!(m.status, MemberStatus::Alive | MemberStatus::Failed)
            })
            .filter_map(|m| m.tags.get("dc").cloned())
            .collect();
        dcs.into_iter().collect()
    }

    fn servers(&self, dc: &str) -> Vec<(String, String)> {
        self.wan
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && m.is_server())
            .filter(|m| m.tags.get("dc").is_some_and(|d| d.eq_ignore_ascii_case(dc)))
            .filter_map(|m| {
                let port = m.server_port()?;
                Some((m.name, SocketAddr::new(m.addr, port).to_string()))
            })
            .collect()
    }
}
