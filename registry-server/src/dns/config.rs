//! DNS settings: Consul's `domain`, `alt_domain`, `recursors` and `dns_config { }` keys, and
//! where the listener binds.

use crate::config::ServerConfig;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the upstream resolvers are tried (`dns_config.recursor_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecursorStrategy {
    /// In the configured order, the next one after a failure (Consul's default).
    #[default]
    Sequential,
    /// A random order per query.
    Random,
}

/// The SOA record's timers (`dns_config.soa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaConfig {
    /// Refresh (3600).
    pub refresh: u32,
    /// Retry (600).
    pub retry: u32,
    /// Expire (86400).
    pub expire: u32,
    /// Minimum TTL (0); also the TTL of the SOA itself and so the negative-cache TTL.
    pub min_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        SoaConfig {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// Everything the DNS server needs besides the state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP listen address (`client_addr:ports.dns`, 127.0.0.1:8600). Port 0 picks a
    /// free port (the same one for UDP and TCP).
    pub bind: SocketAddr,
    /// The domain answered (`consul.`); case-insensitive, trailing dot optional.
    pub domain: String,
    /// A second domain answered the same way (`alt_domain`); empty for none.
    pub alt_domain: String,
    /// Upstream resolvers for names outside the domain; REFUSED when empty.
    pub recursors: Vec<SocketAddr>,
    /// Time limit per upstream attempt (`recursor_timeout`, 2s).
    pub recursor_timeout: Duration,
    /// Order the recursors are tried in.
    pub recursor_strategy: RecursorStrategy,
    /// Answer from this server's state even when it may lag the leader (`allow_stale`, true).
    /// Answers always come from the local store; this and `max_stale` are kept for
    /// configuration compatibility.
    pub allow_stale: bool,
    /// Staleness bound for `allow_stale` (87600h).
    pub max_stale: Duration,
    /// TTL of node records (`node_ttl`, 0).
    pub node_ttl: Duration,
    /// TTL of service records by service name (`service_ttl`); a key ending in `*` is a
    /// prefix (`"*"` matches every service), an exact key wins over prefixes.
    pub service_ttl: BTreeMap<String, Duration>,
    /// Leave out instances with a warning check as well as critical ones (`only_passing`).
    pub only_passing: bool,
    /// Answers in a UDP reply to a client without EDNS (`udp_answer_limit`, 3; at most 8).
    pub udp_answer_limit: usize,
    /// Maximum A/AAAA records in a service answer, UDP and TCP (`a_record_limit`, 0 = none).
    pub a_record_limit: usize,
    /// Also set the TC bit when `udp_answer_limit` cut a UDP answer (`enable_truncate`,
    /// false). An answer cut to fit the 512-byte or EDNS0 size always carries TC.
    pub enable_truncate: bool,
    /// Node metadata as TXT records in the additional section of node and SRV answers
    /// (`enable_additional_node_meta_txt`, true).
    pub enable_additional_node_meta_txt: bool,
    /// SOA timers.
    pub soa: SoaConfig,
    /// UDP worker threads, each with its own socket (0 = one per CPU).
    pub udp_workers: usize,
    /// Give each UDP worker its own socket in an `SO_REUSEPORT` group (the kernel spreads
    /// clients by address hash) instead of all workers reading one socket.
    pub udp_reuse_port: bool,
    /// Cached answers per worker before the cache is emptied (0 = 65536).
    pub cache_entries: usize,
    /// Open TCP connections served at once; more wait in the accept queue.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long is closed (Consul: 8s).
    pub tcp_idle_timeout: Duration,
    /// Concurrent TCP connections one client IP may hold (0: no per-client limit), so that
    /// one client cannot take every slot of `max_tcp_connections`.
    pub max_tcp_connections_per_client: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8600),
            domain: "consul.".to_string(),
            alt_domain: String::new(),
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            recursor_strategy: RecursorStrategy::Sequential,
            allow_stale: true,
            max_stale: Duration::from_secs(87600 * 3600),
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            enable_additional_node_meta_txt: true,
            soa: SoaConfig::default(),
            udp_workers: 0,
            udp_reuse_port: false,
            cache_entries: 0,
            max_tcp_connections: 1024,
            tcp_idle_timeout: Duration::from_secs(8),
            max_tcp_connections_per_client: 64,
        }
    }
}

impl DnsConfig {
    /// Defaults with the listener on `client_addr:dns_port`.
    pub fn from_server_config(cfg: &ServerConfig) -> Self {
        DnsConfig {
            bind: SocketAddr::new(cfg.client_addr, cfg.dns_port),
            ..DnsConfig::default()
        }
    }

    /// The TTL in seconds for a service name (lower-case), per `service_ttl`.
    pub fn service_ttl_secs(&self, service: &str) -> u32 {
        let mut best: Option<(usize, Duration)> = None;
        for (k, v) in &self.service_ttl {
            let k = k.to_ascii_lowercase();
            if let Some(prefix) = k.strip_suffix('*') {
                if service.starts_with(prefix) && best.is_none_or(|(l, _)| prefix.len() >= l) {
                    best = Some((prefix.len(), *v));
                }
            } else if k == service {
                return secs(*v);
            }
        }
        best.map_or(0, |(_, d)| secs(d))
    }

    /// `node_ttl` in seconds.
    pub fn node_ttl_secs(&self) -> u32 {
        secs(self.node_ttl)
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The node this server runs on: its name, datacenter and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Datacenter; names in queries are compared case-insensitively.
    pub datacenter: String,
    /// The node's address, used for the NS glue when no `consul` service is registered.
    pub address: IpAddr,
}

impl NodeInfo {
    /// Node name, datacenter and bind address of `cfg`.
    pub fn from_server_config(cfg: &ServerConfig) -> Self {
        NodeInfo {
            name: cfg.node_name.clone(),
            datacenter: cfg.datacenter.clone(),
            address: cfg.bind_addr,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn service_ttl_prefers_exact_then_longest_prefix() {
        let mut c = DnsConfig::default();
        assert_eq!(c.service_ttl_secs("web"), 0);
        c.service_ttl.insert("*".into(), Duration::from_secs(5));
        c.service_ttl.insert("web".into(), Duration::from_secs(30));
        c.service_ttl.insert("db-*".into(), Duration::from_secs(10));
        c.service_ttl
            .insert("db-a*".into(), Duration::from_secs(11));
        assert_eq!(c.service_ttl_secs("web"), 30);
        assert_eq!(c.service_ttl_secs("webx"), 5);
        assert_eq!(c.service_ttl_secs("db-b"), 10);
        assert_eq!(c.service_ttl_secs("db-abc"), 11);
        assert_eq!(c.service_ttl_secs("other"), 5);
    }
}
