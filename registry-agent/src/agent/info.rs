//! The `/v1/agent/self` document (Consul's `agent_endpoint.go` Self): `Config`,
//! `DebugConfig` (a small sanitized subset), `Coord`, `Member`, `Stats`, `Meta`, `xDS`.

use super::members::Member;
use super::AgentOptions;
use crate::local::NodeInfo;
use registry_proto::duration::format_go_duration;
use registry_server::config::ServerConfig;
use serde_json::{json, Value};

/// Counts shown under `Stats.agent`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AgentCounts {
    pub(crate) services: usize,
    pub(crate) checks: usize,
    pub(crate) ttl_checks: usize,
    pub(crate) members: usize,
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Builds the `/v1/agent/self` document.
pub(crate) fn self_document(
    config: &ServerConfig,
    opts: &AgentOptions,
    node: &NodeInfo,
    member: Option<&Member>,
    counts: AgentCounts,
) -> Value {
    let primary = opts
        .primary_datacenter
        .clone()
        .unwrap_or_else(|| config.datacenter.clone());
    let member = member
        .and_then(|m| serde_json::to_value(m).ok())
        .unwrap_or(Value::Null);
    let data_dir = config
        .data_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    json!({
        "Config": {
            "Datacenter": config.datacenter,
            "PrimaryDatacenter": primary,
            "NodeName": node.name,
            "NodeID": node.id,
            "Partition": "",
            "Revision": opts.revision,
            "Server": config.server,
            "Version": opts.version,
            "BuildDate": opts.build_date,
        },
        "DebugConfig": {
            "Datacenter": config.datacenter,
            "PrimaryDatacenter": primary,
            "NodeName": node.name,
            "NodeID": node.id,
            "NodeMeta": config.node_meta,
            "ServerMode": config.server,
            "DevMode": config.dev,
            "BootstrapExpect": config.bootstrap_expect,
            "DataDir": data_dir,
            "BindAddr": config.bind_addr.to_string(),
            "AdvertiseAddrLAN": node.address,
            "AdvertiseAddrWAN": node.address,
            "ClientAddrs": [config.client_addr.to_string()],
            "HTTPPort": config.http_port,
            "DNSPort": if config.dns_port == 0 { -1 } else { i32::from(config.dns_port) },
            "ServerPort": config.server_port,
            "SerfPortLAN": config.serf_lan_port,
            "SerfPortWAN": config.serf_wan_port,
            "GRPCPort": opts.grpc_port,
            "GRPCTLSPort": opts.grpc_tls_port,
            "ConnectEnabled": false,
            "RetryJoinLAN": config.retry_join,
            "AEInterval": format_go_duration(opts.ae_interval),
            "CheckUpdateInterval": format_go_duration(opts.check_update_interval),
            "CheckReapInterval": format_go_duration(opts.check_reap_interval),
            "DiscardCheckOutput": opts.discard_check_output,
            "EnableScriptChecks": opts.enable_script_checks,
            "UseStreamingBackend": opts.use_streaming_backend,
            "Version": opts.version,
            "Revision": opts.revision,
        },
        "Coord": {
            "Vec": [0, 0, 0, 0, 0, 0, 0, 0],
            "Error": 1.5,
            "Adjustment": 0,
            "Height": 1e-05,
        },
        "Member": member,
        "Stats": {
            "agent": {
                "check_monitors": "0",
                "check_ttls": counts.ttl_checks.to_string(),
                "checks": counts.checks.to_string(),
                "services": counts.services.to_string(),
            },
            "build": {
                "prerelease": "",
                "revision": opts.revision,
                "version": opts.version,
                "version_metadata": "",
            },
            "consul": {
                "server": config.server.to_string(),
                "bootstrap": (config.bootstrap_expect == 1).to_string(),
                "known_datacenters": "1",
            },
            // Filled by the HTTP layer on a server (`registry_server::http::agent_ops`).
            "raft": {},
            // Hook for the gossip layer: Serf's counters (`event_queue`, `failed`,
            // `health_score`, `intent_queue`, `left`, `member_time`, `query_queue`, ...) go
            // here once membership runs over gossip; until then only the member count is
            // known, and nothing is made up.
            "serf_lan": {
                "members": counts.members.to_string(),
            },
            "runtime": {
                "arch": std::env::consts::ARCH,
                "os": std::env::consts::OS,
                "cpu_count": cpu_count().to_string(),
                "max_procs": cpu_count().to_string(),
                "goroutines": "0",
                "version": "rust",
            },
        },
        "Meta": node.meta,
        "xDS": {
            "SupportedProxies": {"envoy": []},
            "Port": opts.grpc_tls_port,
            "Ports": {"Plaintext": opts.grpc_port, "TLS": opts.grpc_tls_port},
        },
    })
}
