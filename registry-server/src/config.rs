//! The server's runtime configuration: validated, no optionals, built by the agent binary
//! from flags and config files.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server library needs to run one node.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Node name.
    pub node_name: String,
    /// Node UUID.
    pub node_id: String,
    /// Datacenter name (lower-case).
    pub datacenter: String,
    /// Whether this node is a Raft server (always true for now).
    pub server: bool,
    /// Development mode: in-memory state, single voter.
    pub dev: bool,
    /// Expected number of servers before bootstrapping.
    pub bootstrap_expect: usize,
    /// Where the Raft log, vote and snapshots live (`None`: in memory).
    pub data_dir: Option<PathBuf>,
    /// Address advertised to other nodes.
    pub bind_addr: IpAddr,
    /// Address the HTTP and DNS listeners bind to.
    pub client_addr: IpAddr,
    /// HTTP API port (8500; 0: no plain-HTTP listener).
    pub http_port: u16,
    /// HTTPS API port (0: off; Consul's 8501 when set).
    pub https_port: u16,
    /// DNS port (8600; 0 disables DNS).
    pub dns_port: u16,
    /// Server RPC port (8300).
    pub server_port: u16,
    /// Gossip LAN port (8301).
    pub serf_lan_port: u16,
    /// Gossip WAN port (8302).
    pub serf_wan_port: u16,
    /// `advertise_addr_wan`: the address other datacenters reach this server at (the
    /// node's `wan` tagged address); `None`: the advertised LAN address.
    pub advertise_addr_wan: Option<IpAddr>,
    /// `translate_wan_addrs`: answers from other datacenters carry `wan` tagged addresses.
    pub translate_wan_addrs: bool,
    /// Addresses to join, retried until one answers.
    pub retry_join: Vec<String>,
    /// Take a snapshot after this many applied entries since the last one.
    pub raft_snapshot_threshold: u64,
    /// Check the snapshot threshold this often.
    pub raft_snapshot_interval: Duration,
    /// Log entries kept behind a snapshot for slow followers.
    pub raft_trailing_logs: u64,
    /// Node metadata.
    pub node_meta: std::collections::BTreeMap<String, String>,
    /// Shortest session TTL accepted (Consul's `session_ttl_min`, 10 s). Tests may lower it
    /// with the `REGISTRY_TEST_SESSION_TTL_MIN` environment variable (a Go duration).
    pub session_ttl_min: Duration,
    /// DNS interface settings; its listener address is `client_addr:dns_port`.
    pub dns: crate::dns::DnsConfig,
    /// Autopilot settings (`autopilot { }`): they apply until a configuration is stored
    /// through `PUT /v1/operator/autopilot/configuration`.
    pub autopilot: registry_proto::command::AutopilotConfig,
    /// Web UI settings (`ui_config { enabled, content_path }`, `-ui`).
    pub ui: UiConfig,
    /// `acl { }` (disabled by default).
    pub acl: crate::acl::AclConfig,
    /// `tls { }` and the legacy top-level TLS keys.
    pub tls: crate::tls::TlsConfig,
    /// `limits { }`.
    pub limits: crate::edge::Limits,
}

/// Where and whether the web UI is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Serve the UI under `content_path` and redirect `GET /` there.
    pub enabled: bool,
    /// URL path of the UI, with leading and trailing `/` (Consul's default `/ui/`).
    pub content_path: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            content_path: "/ui/".to_string(),
        }
    }
}

impl UiConfig {
    /// Consul's normalisation of `ui_config.content_path`: surrounding slashes trimmed, then
    /// one put back on each side. An empty path (or only slashes, which would take the API's
    /// root) means `/ui/`.
    pub fn normalize_path(path: &str) -> String {
        let trimmed = path.trim_matches('/');
        if trimmed.is_empty() {
            "/ui/".to_string()
        } else {
            format!("/{trimmed}/")
        }
    }
}

impl ServerConfig {
    /// A development configuration: `dc1`, in memory, HTTP on 127.0.0.1:8500.
    pub fn dev(node_name: &str) -> Self {
        ServerConfig {
            node_name: node_name.to_string(),
            node_id: String::new(),
            datacenter: "dc1".to_string(),
            server: true,
            dev: true,
            bootstrap_expect: 1,
            data_dir: None,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 8500,
            https_port: 0,
            dns_port: 8600,
            server_port: 8300,
            serf_lan_port: 8301,
            serf_wan_port: 8302,
            advertise_addr_wan: None,
            translate_wan_addrs: false,
            retry_join: Vec::new(),
            raft_snapshot_threshold: 16384,
            raft_snapshot_interval: Duration::from_secs(30),
            raft_trailing_logs: 10240,
            node_meta: Default::default(),
            session_ttl_min: Duration::from_secs(10),
            dns: crate::dns::DnsConfig::default(),
            autopilot: registry_proto::command::AutopilotConfig::default(),
            ui: UiConfig::default(),
            acl: crate::acl::AclConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            limits: crate::edge::Limits::default(),
        }
    }

    /// The HTTP listener address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.client_addr, self.http_port)
    }
}
