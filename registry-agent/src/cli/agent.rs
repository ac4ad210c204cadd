//! `registry agent`: Consul's agent flags, turned into configuration sources, then a
//! validated `RuntimeConfig`, then a running node.

use crate::config::duration::parse_duration;
use crate::config::{self, Format, LoadOptions, PartialConfig, SystemEnvironment};
use clap::{ArgMatches, Args};
use std::path::PathBuf;
use std::time::Duration;

/// `agent` flags. Flags override configuration files; list flags add to the files' lists.
#[derive(Args, Debug, Default, Clone)]
#[command(
    after_help = "Files given with -config-file and -config-dir are merged in \
    command-line order (a directory's *.json and *.hcl files in lexical order); the flags \
    above override them."
)]
pub struct AgentArgs {
    /// Development mode: an in-memory single-node server, HTTP on 127.0.0.1:8500, DNS on
    /// 127.0.0.1:8600, debug logging. Not for production.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    pub dev: Option<bool>,
    /// Run as a server (Raft voter) rather than a client.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    pub server: Option<bool>,
    /// Bootstrap a single-server cluster: elect this server leader without waiting for peers.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    pub bootstrap: Option<bool>,
    /// Number of servers to wait for before bootstrapping the cluster.
    #[arg(
        long = "bootstrap-expect",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub bootstrap_expect: Option<i64>,
    /// Directory for persistent state (Raft log, snapshots, node ID). Required unless -dev.
    #[arg(long = "data-dir", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Name of this node; must be unique in the cluster. Defaults to the host name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// UUID of this node; generated and kept in the data directory if not given.
    #[arg(long = "node-id", value_name = "UUID")]
    pub node_id: Option<String>,
    /// Address to bind cluster listeners to. Defaults to 0.0.0.0, advertising the host's
    /// private IPv4 address.
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,
    /// Address to bind client interfaces (HTTP, DNS) to. Defaults to 127.0.0.1.
    #[arg(long, value_name = "IP")]
    pub client: Option<String>,
    /// Address to advertise to other nodes instead of the bind address.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<String>,
    /// HTTP API port (8500).
    #[arg(long = "http-port", value_name = "PORT", allow_hyphen_values = true)]
    pub http_port: Option<i64>,
    /// DNS port (8600; -1 disables DNS).
    #[arg(long = "dns-port", value_name = "PORT", allow_hyphen_values = true)]
    pub dns_port: Option<i64>,
    /// Server RPC port (8300).
    #[arg(long = "server-port", value_name = "PORT", allow_hyphen_values = true)]
    pub server_port: Option<i64>,
    /// LAN gossip port (8301).
    #[arg(
        long = "serf-lan-port",
        value_name = "PORT",
        allow_hyphen_values = true
    )]
    pub serf_lan_port: Option<i64>,
    /// WAN gossip port (8302).
    #[arg(
        long = "serf-wan-port",
        value_name = "PORT",
        allow_hyphen_values = true
    )]
    pub serf_wan_port: Option<i64>,
    /// gRPC port (disabled by default; 8502 in -dev). Accepted, not served yet.
    #[arg(long = "grpc-port", value_name = "PORT", allow_hyphen_values = true)]
    pub grpc_port: Option<i64>,
    /// Datacenter of this agent (dc1).
    #[arg(long, value_name = "NAME")]
    pub datacenter: Option<String>,
    /// DNS domain served (consul.).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// A JSON or HCL configuration file; repeatable, read in order.
    #[arg(long = "config-file", value_name = "PATH")]
    pub config_file: Vec<PathBuf>,
    /// A directory whose *.json and *.hcl files are read in lexical order; repeatable.
    #[arg(long = "config-dir", value_name = "PATH")]
    pub config_dir: Vec<PathBuf>,
    /// Read every configuration file as this format, whatever its extension.
    #[arg(long = "config-format", value_name = "json|hcl", value_parser = ["json", "hcl"])]
    pub config_format: Option<String>,
    /// Log level: trace, debug, info, warn or err (info; debug in -dev).
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Write logs as JSON lines.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = super::go_bool, value_name = "BOOL")]
    pub log_json: Option<bool>,
    /// Address of an agent to join, retried until it answers; repeatable.
    #[arg(long = "retry-join", value_name = "ADDR")]
    pub retry_join: Vec<String>,
    /// Address of a server in another datacenter to join over the WAN; repeatable
    /// (accepted).
    #[arg(long = "retry-join-wan", value_name = "ADDR")]
    pub retry_join_wan: Vec<String>,
    /// Address of an agent to join at startup; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,
    /// Time to wait between join attempts (30s).
    #[arg(long = "retry-interval", value_name = "DURATION", value_parser = duration_flag)]
    pub retry_interval: Option<Duration>,
    /// Maximum join attempts (0: retry forever).
    #[arg(long = "retry-max", value_name = "N", allow_hyphen_values = true)]
    pub retry_max: Option<i64>,
    /// Rejoin the cluster after a graceful leave (`rejoin_after_leave`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    pub rejoin: Option<bool>,
    /// Serve the web UI and redirect `GET /` to it (on by default with -dev).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    pub ui: Option<bool>,
    /// URL path of the web UI (default /ui/).
    #[arg(long = "ui-content-path", value_name = "PATH")]
    pub ui_content_path: Option<String>,
    /// Node metadata as `key:value`; repeatable.
    #[arg(long = "node-meta", value_name = "KEY:VALUE")]
    pub node_meta: Vec<String>,
    /// Upstream DNS server for names outside the domain (`ip` or `ip:port`); repeatable.
    #[arg(long, value_name = "ADDR")]
    pub recursor: Vec<String>,
    /// Gossip encryption key (accepted; gossip encryption is not implemented).
    #[arg(long, value_name = "KEY")]
    pub encrypt: Option<String>,
    /// An HCL configuration fragment applied after the flags; repeatable.
    #[arg(long, value_name = "HCL")]
    pub hcl: Vec<String>,
    /// The rest of Consul's agent flags.
    #[command(flatten)]
    pub consul: super::agent_flags::ConsulAgentFlags,
}

fn duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

impl AgentArgs {
    /// The flags as a configuration source.
    pub fn to_partial(&self) -> PartialConfig {
        let mut p = PartialConfig {
            node_name: self.node.clone(),
            node_id: self.node_id.clone(),
            datacenter: self.datacenter.clone(),
            data_dir: self.data_dir.clone(),
            client_addr: self.client.clone(),
            bind_addr: self.bind.clone(),
            advertise_addr: self.advertise.clone(),
            server: self.server,
            bootstrap: self.bootstrap,
            bootstrap_expect: self.bootstrap_expect,
            retry_join: self.retry_join.clone(),
            retry_join_wan: self.retry_join_wan.clone(),
            start_join: self.join.clone(),
            retry_interval: self.retry_interval,
            retry_max: self.retry_max,
            log_level: self.log_level.clone(),
            log_json: self.log_json,
            domain: self.domain.clone(),
            ui: self.ui,
            ui_content_path: self.ui_content_path.clone(),
            encrypt: self.encrypt.clone(),
            recursors: self.recursor.clone(),
            rejoin_after_leave: self.rejoin,
            ..PartialConfig::default()
        };
        p.ports.http = self.http_port;
        p.ports.dns = self.dns_port;
        p.ports.server = self.server_port;
        p.ports.serf_lan = self.serf_lan_port;
        p.ports.serf_wan = self.serf_wan_port;
        p.ports.grpc = self.grpc_port;
        self.consul.apply(&mut p);
        for pair in &self.node_meta {
            let (key, value) = pair.split_once(':').unwrap_or((pair, ""));
            p.node_meta.insert(key.to_string(), value.to_string());
        }
        p
    }

    /// `-config-file` and `-config-dir` paths in the order they were given; `matches` are
    /// the `agent` subcommand's matches (without them, files come before directories).
    pub fn config_paths(&self, matches: Option<&ArgMatches>) -> Vec<PathBuf> {
        let indices = |id: &str| -> Vec<usize> {
            matches
                .and_then(|m| m.indices_of(id))
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        let file_idx = indices("config_file");
        let dir_idx = indices("config_dir");
        let mut tagged: Vec<(usize, PathBuf)> = Vec::new();
        for (n, path) in self.config_file.iter().enumerate() {
            tagged.push((file_idx.get(n).copied().unwrap_or(n), path.clone()));
        }
        let offset = self.config_file.len();
        for (n, path) in self.config_dir.iter().enumerate() {
            tagged.push((dir_idx.get(n).copied().unwrap_or(offset + n), path.clone()));
        }
        tagged.sort_by_key(|(i, _)| *i);
        tagged.into_iter().map(|(_, p)| p).collect()
    }

    /// Everything `config::load` needs.
    pub fn load_options(&self, matches: Option<&ArgMatches>) -> LoadOptions {
        LoadOptions {
            dev: self.dev.unwrap_or(false),
            paths: self.config_paths(matches),
            format: self.config_format.as_deref().and_then(Format::parse),
            flags: self.to_partial(),
            hcl: self.hcl.clone(),
        }
    }
}

/// Runs `agent`: builds the configuration, sets up logging, starts the node and waits.
pub fn run(args: &AgentArgs, matches: Option<&ArgMatches>) -> i32 {
    let load = args.load_options(matches);
    let reload_opts = load.clone();
    let reload: crate::agent::ReloadSource = std::sync::Arc::new(move || {
        let built =
            config::load(reload_opts.clone(), &SystemEnvironment).map_err(|e| e.to_string())?;
        // Consul applies a changed log_level on reload.
        crate::logging::set_level(built.config.log_level);
        Ok((built.config.services, built.config.checks))
    });
    let built = match config::load(load, &SystemEnvironment) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    let setup = crate::logging::LogSetup {
        level: built.config.log_level,
        json: built.config.log_json,
        file: built.config.log_file.clone(),
        syslog_facility: built.config.syslog_facility,
    };
    if let Err(e) = crate::logging::init(&setup) {
        eprintln!("==> {e}");
        return 1;
    }
    for warning in &built.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("==> cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(crate::start::run_agent(built.config, Some(reload))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e:#}");
            1
        }
    }
}
