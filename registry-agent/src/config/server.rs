//! `RuntimeConfig` -> `registry_server::config::ServerConfig`.

use super::runtime::RuntimeConfig;
use registry_server::config::ServerConfig;

/// The server library's view of the agent configuration.
///
/// Starts from `ServerConfig::dev` so that fields the server adds later get its defaults.
/// `bind_addr` receives the *advertised* address (the one other nodes dial); `retry_join`
/// holds `start_join` followed by `retry_join`, without duplicates.
pub fn to_server_config(cfg: &RuntimeConfig) -> ServerConfig {
    let mut out = ServerConfig::dev(&cfg.node_name);
    out.node_id = cfg.node_id.clone();
    out.datacenter = cfg.datacenter.clone();
    out.server = cfg.server;
    out.dev = cfg.dev;
    out.bootstrap_expect = if cfg.bootstrap || cfg.dev {
        1
    } else {
        cfg.bootstrap_expect
    };
    out.data_dir = cfg.storage.data_dir().cloned();
    out.bind_addr = cfg.advertise_addr;
    out.client_addr = cfg.client_addr;
    out.http_port = cfg.ports.http;
    out.https_port = cfg.ports.https;
    out.dns_port = cfg.ports.dns;
    out.server_port = cfg.ports.server;
    out.serf_lan_port = cfg.ports.serf_lan;
    out.serf_wan_port = cfg.ports.serf_wan;
    out.advertise_addr_wan = cfg.advertise_addr_wan;
    out.translate_wan_addrs = cfg.translate_wan_addrs;
    let mut join: Vec<String> = Vec::new();
    for addr in cfg.join.start_join.iter().chain(&cfg.join.retry_join) {
        if !join.contains(addr) {
            join.push(addr.clone());
        }
    }
    out.retry_join = join;
    out.raft_snapshot_threshold = cfg.raft.snapshot_threshold;
    out.raft_snapshot_interval = cfg.raft.snapshot_interval;
    out.raft_trailing_logs = cfg.raft.trailing_logs;
    out.node_meta = cfg.node_meta.clone();
    out.autopilot = cfg.autopilot.clone();
    out.ui = registry_server::config::UiConfig {
        enabled: cfg.ui,
        content_path: cfg.ui_content_path.clone(),
    };
    out.acl = cfg.acl.clone();
    out.tls = cfg.tls.clone();
    out.limits = cfg.limits.clone();
    let d = &cfg.dns;
    out.dns.domain = d.domain.clone();
    out.dns.recursors = d.recursors.clone();
    out.dns.allow_stale = d.allow_stale;
    out.dns.max_stale = d.max_stale;
    out.dns.node_ttl = d.node_ttl;
    out.dns.service_ttl = d.service_ttl.clone();
    out.dns.only_passing = d.only_passing;
    out.dns.udp_answer_limit = d.udp_answer_limit;
    out.dns.a_record_limit = d.a_record_limit;
    out.dns.enable_truncate = d.enable_truncate;
    out
}
