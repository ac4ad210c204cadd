//! The rest of Consul's `agent` flags (`agent/config/flags.go`): each sets the configuration
//! key of the same meaning, and like that key is accepted and named in a warning at start
//! when the registry does not act on it. `-enable-script-checks` is acted on.

use super::go_bool;
use crate::config::duration::parse_duration;
use crate::config::PartialConfig;
use clap::Args;
use std::time::Duration;

fn duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Flags Consul's agent takes beyond the common ones in [`super::agent::AgentArgs`].
#[derive(Args, Debug, Default, Clone)]
pub struct ConsulAgentFlags {
    /// Enable script checks registered through the HTTP API and configuration.
    #[arg(long = "enable-script-checks", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub enable_script_checks: Option<bool>,
    /// Enable script checks from configuration files only (accepted).
    #[arg(long = "enable-local-script-checks", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub enable_local_script_checks: Option<bool>,
    /// Address to advertise on the WAN (servers).
    #[arg(long = "advertise-wan", value_name = "IP")]
    pub advertise_wan: Option<String>,
    /// Alternate DNS domain (accepted).
    #[arg(long = "alt-domain", value_name = "DOMAIN")]
    pub alt_domain: Option<String>,
    /// Only allow writes from these networks (accepted).
    #[arg(long = "allow-write-http-from", value_name = "CIDR")]
    pub allow_write_http_from: Vec<String>,
    /// Watch configuration files and reload on change (accepted; use SIGHUP or `reload`).
    #[arg(long = "auto-reload-config", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub auto_reload_config: Option<bool>,
    /// Maximum size of check output (accepted).
    #[arg(
        long = "check_output_max_size",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub check_output_max_size: Option<i64>,
    /// Default wait of blocking queries (accepted).
    #[arg(long = "default-query-time", value_name = "DURATION", value_parser = duration_flag)]
    pub default_query_time: Option<Duration>,
    /// Maximum wait of blocking queries (accepted).
    #[arg(long = "max-query-time", value_name = "DURATION", value_parser = duration_flag)]
    pub max_query_time: Option<Duration>,
    /// Generate a random node ID instead of one from the host (accepted).
    #[arg(long = "disable-host-node-id", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub disable_host_node_id: Option<bool>,
    /// Do not back up the gossip keyring to a file (accepted).
    #[arg(long = "disable-keyring-file", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub disable_keyring_file: Option<bool>,
    /// gRPC TLS port (accepted; -1 disables).
    #[arg(
        long = "grpc-tls-port",
        value_name = "PORT",
        allow_hyphen_values = true
    )]
    pub grpc_tls_port: Option<i64>,
    /// HTTPS port (accepted; -1 disables).
    #[arg(long = "https-port", value_name = "PORT", allow_hyphen_values = true)]
    pub https_port: Option<i64>,
    /// WAN pool member to join at start (servers).
    #[arg(long = "join-wan", value_name = "ADDR")]
    pub join_wan: Vec<String>,
    /// Also write the log to this file (a path ending in `/`: `consul.log` in that
    /// directory), rotated as the -log-rotate-* flags say.
    #[arg(long = "log-file", value_name = "PATH")]
    pub log_file: Option<String>,
    /// Rotate the log file once it would pass this many bytes (0: no size limit).
    #[arg(
        long = "log-rotate-bytes",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub log_rotate_bytes: Option<i64>,
    /// Rotate the log file when it is this old (default 24h).
    #[arg(long = "log-rotate-duration", value_name = "DURATION", value_parser = duration_flag)]
    pub log_rotate_duration: Option<Duration>,
    /// Rotated log files to keep (0: all, -1: none).
    #[arg(
        long = "log-rotate-max-files",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub log_rotate_max_files: Option<i64>,
    /// (Enterprise) Read replica (accepted).
    #[arg(long = "read-replica", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub read_replica: Option<bool>,
    /// (Enterprise) Deprecated name of -read-replica (accepted).
    #[arg(long = "non-voting-server", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub non_voting_server: Option<bool>,
    /// PID file (accepted).
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<String>,
    /// RPC protocol version (accepted).
    #[arg(long = "protocol", value_name = "N", allow_hyphen_values = true)]
    pub protocol: Option<i64>,
    /// Raft protocol version (accepted; always 3).
    #[arg(long = "raft-protocol", value_name = "N", allow_hyphen_values = true)]
    pub raft_protocol: Option<i64>,
    /// Mesh gateway in the primary datacenter (accepted).
    #[arg(long = "primary-gateway", value_name = "ADDR")]
    pub primary_gateway: Vec<String>,
    /// Time between WAN join attempts (accepted).
    #[arg(long = "retry-interval-wan", value_name = "DURATION", value_parser = duration_flag)]
    pub retry_interval_wan: Option<Duration>,
    /// Maximum WAN join attempts (accepted).
    #[arg(long = "retry-max-wan", value_name = "N", allow_hyphen_values = true)]
    pub retry_max_wan: Option<i64>,
    /// Networks allowed for Serf LAN (accepted).
    #[arg(long = "serf-lan-allowed-cidrs", value_name = "CIDR")]
    pub serf_lan_allowed_cidrs: Vec<String>,
    /// Networks allowed for Serf WAN (accepted).
    #[arg(long = "serf-wan-allowed-cidrs", value_name = "CIDR")]
    pub serf_wan_allowed_cidrs: Vec<String>,
    /// Address for Serf LAN listeners (accepted).
    #[arg(long = "serf-lan-bind", value_name = "IP")]
    pub serf_lan_bind: Option<String>,
    /// Address for Serf WAN listeners (accepted).
    #[arg(long = "serf-wan-bind", value_name = "IP")]
    pub serf_wan_bind: Option<String>,
    /// (Enterprise) Network segment (accepted).
    #[arg(long = "segment", value_name = "NAME")]
    pub segment: Option<String>,
    /// Also send the log to the local syslog (/dev/log), facility `syslog_facility`.
    #[arg(long = "syslog", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub syslog: Option<bool>,
    /// UI directory (accepted).
    #[arg(long = "ui-dir", value_name = "PATH")]
    pub ui_dir: Option<String>,
}

impl ConsulAgentFlags {
    /// Adds these flags to a configuration source: supported keys as values, the others as
    /// accepted-and-ignored keys.
    pub fn apply(&self, p: &mut PartialConfig) {
        if self.https_port.is_some() {
            p.ports.https = self.https_port;
        }
        if self.enable_script_checks.is_some() {
            p.enable_script_checks = self.enable_script_checks;
        }
        if self.advertise_wan.is_some() {
            p.advertise_addr_wan = self.advertise_wan.clone();
        }
        p.start_join_wan.extend(self.join_wan.iter().cloned());
        let set = [
            (
                "enable_local_script_checks",
                self.enable_local_script_checks.is_some(),
            ),
            ("alt_domain", self.alt_domain.is_some()),
            (
                "http_config.allow_write_http_from",
                !self.allow_write_http_from.is_empty(),
            ),
            ("auto_reload_config", self.auto_reload_config.is_some()),
            (
                "check_output_max_size",
                self.check_output_max_size.is_some(),
            ),
            ("default_query_time", self.default_query_time.is_some()),
            ("max_query_time", self.max_query_time.is_some()),
            ("disable_host_node_id", self.disable_host_node_id.is_some()),
            ("disable_keyring_file", self.disable_keyring_file.is_some()),
            ("ports.grpc_tls", self.grpc_tls_port.is_some()),
            ("read_replica", self.read_replica.is_some()),
            ("non_voting_server", self.non_voting_server.is_some()),
            ("pid_file", self.pid_file.is_some()),
            ("protocol", self.protocol.is_some()),
            ("raft_protocol", self.raft_protocol.is_some()),
            ("primary_gateways", !self.primary_gateway.is_empty()),
            ("retry_interval_wan", self.retry_interval_wan.is_some()),
            ("retry_max_wan", self.retry_max_wan.is_some()),
            (
                "serf_lan_allowed_cidrs",
                !self.serf_lan_allowed_cidrs.is_empty(),
            ),
            (
                "serf_wan_allowed_cidrs",
                !self.serf_wan_allowed_cidrs.is_empty(),
            ),
            ("serf_lan", self.serf_lan_bind.is_some()),
            ("serf_wan", self.serf_wan_bind.is_some()),
            ("segment", self.segment.is_some()),
            ("ui_dir", self.ui_dir.is_some()),
        ];
        p.log_file = self.log_file.clone().or(p.log_file.take());
        p.log_rotate_bytes = self.log_rotate_bytes.or(p.log_rotate_bytes);
        p.log_rotate_duration = self.log_rotate_duration.or(p.log_rotate_duration);
        p.log_rotate_max_files = self.log_rotate_max_files.or(p.log_rotate_max_files);
        p.enable_syslog = self.syslog.or(p.enable_syslog);
        for (key, given) in set {
            if given {
                p.ignored.push(key.to_string());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::cli::{parse, Command};

    /// Every flag of Consul's `agent` command (agent/config/flags.go) parses.
    #[test]
    fn every_consul_agent_flag_is_accepted() {
        let line = "registry agent -advertise=10.0.0.1 -advertise-wan=10.0.0.2 -alt-domain=alt. \
            -allow-write-http-from=127.0.0.0/8 -auto-reload-config -bind=0.0.0.0 -bootstrap \
            -bootstrap-expect=1 -check_output_max_size=4096 -client=127.0.0.1 \
            -config-dir=/tmp -config-format=json -data-dir=/tmp/d -datacenter=dc1 \
            -default-query-time=300s -dev -disable-host-node-id -disable-keyring-file \
            -dns-port=8600 -domain=consul -enable-local-script-checks -enable-script-checks \
            -encrypt=k -grpc-port=8502 -grpc-tls-port=8503 -hcl=x=1 -http-port=8500 \
            -https-port=-1 -join=a -join-wan=b -log-file=/tmp/l -log-json -log-level=info \
            -log-rotate-bytes=1 -log-rotate-duration=24h -log-rotate-max-files=2 \
            -max-query-time=600s -node=n -node-id=00000000-0000-0000-0000-000000000001 \
            -node-meta=a:b -non-voting-server -read-replica -pid-file=/tmp/p -primary-gateway=g \
            -protocol=2 -raft-protocol=3 -recursor=127.0.0.1 -rejoin -retry-interval=30s \
            -retry-interval-wan=30s -retry-join=a -retry-join-wan=b -retry-max=0 \
            -retry-max-wan=0 -segment=s -serf-lan-allowed-cidrs=127.0.0.0/8 -serf-lan-bind=0.0.0.0 \
            -serf-lan-port=8301 -serf-wan-allowed-cidrs=127.0.0.0/8 -serf-wan-bind=0.0.0.0 \
            -serf-wan-port=8302 -server -server-port=8300 -syslog -ui -ui-content-path=/ui/ \
            -ui-dir=/tmp/ui";
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let (cli, _) = parse(&args).expect("every Consul agent flag parses");
        let Command::Agent(a) = cli.command else {
            panic!("not agent");
        };
        let p = a.to_partial();
        assert_eq!(p.enable_script_checks, Some(true));
        assert_eq!(p.log_file.as_deref(), Some("/tmp/l"));
        assert_eq!(p.enable_syslog, Some(true));
        assert_eq!(p.ports.https, Some(-1));
        for key in ["serf_lan", "ui_dir"] {
            assert!(
                p.ignored.iter().any(|k| k == key),
                "{key} in {:?}",
                p.ignored
            );
        }
    }
}
