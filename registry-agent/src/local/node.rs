//! This node's identity as the catalog should show it, and the node-level `serfHealth`
//! check the agent keeps passing while it runs.

use registry_proto::model::{status, HealthCheck, Node, NodeService, Weights};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// ID of the node-level check that reports gossip health.
pub const SERF_CHECK_ID: &str = "serfHealth";
/// Name of the `serfHealth` check.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Output of the `serfHealth` check while the node is alive.
pub const SERF_CHECK_ALIVE_OUTPUT: &str = "Agent alive and reachable";

/// ID and name of the service every server registers for itself.
pub const CONSUL_SERVICE_ID: &str = "consul";

/// Node metadata key Consul fills with the network segment ("" in CE).
pub const META_SEGMENT_KEY: &str = "consul-network-segment";
/// Node metadata key Consul fills with its version.
pub const META_VERSION_KEY: &str = "consul-version";

/// This node as registered in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node UUID (may be empty).
    pub id: String,
    /// Advertised address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses (`lan`, `lan_ipv4`, `wan`, `wan_ipv4`).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata, including Consul's own `consul-network-segment` and `consul-version`.
    pub meta: BTreeMap<String, String>,
    /// On a server, the `consul` service registered with the node (as Consul's leader
    /// registers it for every alive server).
    pub consul_service: Option<NodeService>,
}

impl NodeInfo {
    /// A node advertised at `addr`, with Consul's tagged addresses and metadata: the
    /// configured `meta` plus `consul-network-segment` ("") and `consul-version`.
    pub fn new(
        name: &str,
        id: &str,
        datacenter: &str,
        addr: IpAddr,
        meta: &BTreeMap<String, String>,
        version: &str,
    ) -> Self {
        let address = addr.to_string();
        let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
        let mut tagged = BTreeMap::new();
        for pool in ["lan", "wan"] {
            tagged.insert(pool.to_string(), address.clone());
            tagged.insert(format!("{pool}_{family}"), address.clone());
        }
        let mut meta = meta.clone();
        meta.insert(META_SEGMENT_KEY.to_string(), String::new());
        meta.insert(META_VERSION_KEY.to_string(), version.to_string());
        NodeInfo {
            name: name.to_string(),
            id: id.to_string(),
            address,
            datacenter: datacenter.to_string(),
            tagged_addresses: tagged,
            meta,
            consul_service: None,
        }
    }

    /// Adds the `consul` service of a server listening for RPC on `port`, with the metadata
    /// Consul's leader gives it.
    pub fn with_consul_service(mut self, port: u16, version: &str) -> Self {
        let meta = [
            ("non_voter", "false"),
            ("read_replica", "false"),
            ("raft_version", "3"),
            ("serf_protocol_current", "2"),
            ("serf_protocol_min", "1"),
            ("serf_protocol_max", "5"),
            ("version", version),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.consul_service = Some(NodeService {
            id: CONSUL_SERVICE_ID.to_string(),
            service: CONSUL_SERVICE_ID.to_string(),
            port,
            meta,
            weights: Weights::default(),
            ..Default::default()
        });
        self
    }

    /// The catalog record of this node.
    pub fn to_node(&self) -> Node {
        Node {
            id: self.id.clone(),
            node: self.name.clone(),
            address: self.address.clone(),
            datacenter: self.datacenter.clone(),
            tagged_addresses: self.tagged_addresses.clone(),
            meta: self.meta.clone(),
            index: Default::default(),
        }
    }

    /// Whether the catalog's record of this node matches (indexes aside; an empty ID in
    /// the catalog is kept by the state machine, so it is not a difference either way).
    pub fn matches(&self, n: &Node) -> bool {
        n.node == self.name
            && (self.id.is_empty() || n.id == self.id)
            && n.address == self.address
            && n.datacenter == self.datacenter
            && n.tagged_addresses == self.tagged_addresses
            && n.meta == self.meta
    }

    /// The passing `serfHealth` check of this node.
    pub fn serf_health(&self) -> HealthCheck {
        HealthCheck {
            node: self.name.clone(),
            check_id: SERF_CHECK_ID.to_string(),
            name: SERF_CHECK_NAME.to_string(),
            status: status::PASSING.to_string(),
            output: SERF_CHECK_ALIVE_OUTPUT.to_string(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tagged_addresses_and_meta() {
        let mut meta = BTreeMap::new();
        meta.insert("rack".to_string(), "r1".to_string());
        let n = NodeInfo::new(
            "n1",
            "id",
            "dc1",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            &meta,
            "1.20.0",
        );
        assert_eq!(n.address, "10.0.0.1");
        assert_eq!(n.tagged_addresses["lan"], "10.0.0.1");
        assert_eq!(n.tagged_addresses["lan_ipv4"], "10.0.0.1");
        assert_eq!(n.tagged_addresses["wan_ipv4"], "10.0.0.1");
        assert_eq!(n.meta["rack"], "r1");
        assert_eq!(n.meta[META_SEGMENT_KEY], "");
        assert_eq!(n.meta[META_VERSION_KEY], "1.20.0");
        let node = n.to_node();
        assert!(n.matches(&node));
        let mut other = node.clone();
        other.address = "10.0.0.2".into();
        assert!(!n.matches(&other));
        let serf = n.serf_health();
        assert_eq!(serf.check_id, "serfHealth");
        assert_eq!(serf.status, "passing");
        assert_eq!(serf.output, "Agent alive and reachable");
    }
}
