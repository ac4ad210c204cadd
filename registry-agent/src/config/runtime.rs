//! `RuntimeConfig`: the agent's validated configuration. Every value is resolved (defaults,
//! dev mode, files and flags merged; addresses and node ID decided), so nothing is optional.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where Raft state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory only (`-dev`).
    InMemory,
    /// Under this data directory.
    Directory(PathBuf),
}

impl Storage {
    /// The data directory, if any.
    pub fn data_dir(&self) -> Option<&PathBuf> {
        match self {
            Storage::InMemory => None,
            Storage::Directory(path) => Some(path),
        }
    }
}

/// Log verbosity (`-log-level`): Consul's names, `err` being `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `err` / `error`.
    Error,
}

impl LogLevel {
    /// Parses a level name, case-insensitively.
    pub fn parse(name: &str) -> Option<LogLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(LogLevel::Trace),
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "err" | "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Listener ports. `dns` and `grpc` are 0 when disabled (`-1` in Consul's files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP API (8500; 0: off, `-1` in Consul's files).
    pub http: u16,
    /// HTTPS API (0: off; Consul's 8501 when set).
    pub https: u16,
    /// DNS (8600; 0: disabled).
    pub dns: u16,
    /// Server RPC (8300).
    pub server: u16,
    /// LAN gossip (8301).
    pub serf_lan: u16,
    /// WAN gossip (8302).
    pub serf_wan: u16,
    /// gRPC (0: disabled; 8502 in dev mode). Accepted, not served.
    pub grpc: u16,
}

/// How and where to join a cluster at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// `start_join` / `-join`: joined once at startup.
    pub start_join: Vec<String>,
    /// `retry_join` / `-retry-join`: retried until one answers.
    pub retry_join: Vec<String>,
    /// `retry_join_wan` / `-retry-join-wan`: WAN pool members retried until one answers
    /// (servers).
    pub retry_join_wan: Vec<String>,
    /// `start_join_wan` / `-join-wan`: WAN pool members joined at startup (servers).
    pub start_join_wan: Vec<String>,
    /// Pause between join attempts (30s).
    pub retry_interval: Duration,
    /// Attempts before giving up (0: forever).
    pub retry_max: u32,
}

/// DNS interface settings (`domain`, `recursors`, `dns_config { }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The DNS domain, fully qualified and lower-case (`consul.`).
    pub domain: String,
    /// Upstream resolvers for names outside the domain.
    pub recursors: Vec<SocketAddr>,
    /// Answer from any server's state.
    pub allow_stale: bool,
    /// Staleness bound for `allow_stale`.
    pub max_stale: Duration,
    /// TTL of node records.
    pub node_ttl: Duration,
    /// TTL of service records by service name; `*` matches all.
    pub service_ttl: BTreeMap<String, Duration>,
    /// Only return passing instances.
    pub only_passing: bool,
    /// Maximum records in a UDP answer.
    pub udp_answer_limit: usize,
    /// Maximum A/AAAA records in an answer (0: no limit).
    pub a_record_limit: usize,
    /// Set the TC bit when a UDP answer was cut.
    pub enable_truncate: bool,
}

/// LAN gossip settings and what the agent does on shutdown signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GossipSettings {
    /// Gossip round interval (`gossip_lan.gossip_interval`, 200ms).
    pub interval: Duration,
    /// A failed member is reaped after this long (`reconnect_timeout`, 72h, at least 8h;
    /// `REGISTRY_TEST_RECONNECT_TIMEOUT` lowers it for tests).
    pub reconnect_timeout: Duration,
    /// Leave gracefully on SIGTERM (`leave_on_terminate`; default: clients only).
    pub leave_on_terminate: bool,
    /// Do not leave on SIGINT (`skip_leave_on_interrupt`; default: servers only).
    pub skip_leave_on_interrupt: bool,
    /// Rejoin after a graceful leave (`rejoin_after_leave` / `-rejoin`).
    pub rejoin_after_leave: bool,
}

/// Raft tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftConfig {
    /// Entries applied since the last snapshot that trigger a new one (16384).
    pub snapshot_threshold: u64,
    /// How often the threshold is checked (30s).
    pub snapshot_interval: Duration,
    /// Entries kept behind a snapshot (10240).
    pub trailing_logs: u64,
    /// Timing scale factor, 1 (fast) to 10 (`performance.raft_multiplier`, default 5).
    pub multiplier: u8,
}

/// Telemetry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// How long metrics stay in the Prometheus output (0: Prometheus format disabled).
    pub prometheus_retention_time: Duration,
    /// Leave the host name out of metric names.
    pub disable_hostname: bool,
    /// `metrics_prefix` (default `consul`).
    pub metrics_prefix: String,
    /// `filter_default` (default true).
    pub filter_default: bool,
    /// `prefix_filter` rules (`+name.prefix`, `-name.prefix`).
    pub prefix_filter: Vec<String>,
    /// `statsd_address` (`host:port`, UDP).
    pub statsd_address: Option<String>,
    /// `dogstatsd_addr` (`host:port`, UDP).
    pub dogstatsd_addr: Option<String>,
    /// `dogstatsd_tags` (`key:value`).
    pub dogstatsd_tags: Vec<String>,
}

/// Autopilot settings (`autopilot { }`), Consul's defaults unless set.
pub type AutopilotConfig = registry_proto::command::AutopilotConfig;

/// The agent's complete, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// `-dev`: in-memory single-node server.
    pub dev: bool,
    /// Node name (the host name unless set).
    pub node_name: String,
    /// Node UUID, lower-case (given, persisted in `<data_dir>/node-id`, or random in dev).
    pub node_id: String,
    /// Datacenter, lower-case.
    pub datacenter: String,
    /// Where Raft state lives.
    pub storage: Storage,
    /// Server mode.
    pub server: bool,
    /// Bootstrap a single-server cluster (also set by `bootstrap_expect = 1` and by `-dev`).
    pub bootstrap: bool,
    /// Servers to wait for before bootstrapping (0 when `bootstrap` is set or not a server).
    pub bootstrap_expect: usize,
    /// Address the cluster listeners bind to (may be unspecified, 0.0.0.0).
    pub bind_addr: IpAddr,
    /// Address advertised to other nodes (`advertise_addr`, else `bind_addr`, else the one
    /// private IPv4 address of the host).
    pub advertise_addr: IpAddr,
    /// `advertise_addr_wan` / `-advertise-wan`: the address other datacenters reach this
    /// server at (`None`: `advertise_addr`).
    pub advertise_addr_wan: Option<IpAddr>,
    /// `translate_wan_addrs`.
    pub translate_wan_addrs: bool,
    /// Address the HTTP and DNS listeners bind to.
    pub client_addr: IpAddr,
    /// Listener ports.
    pub ports: Ports,
    /// Cluster join settings.
    pub join: JoinConfig,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Log as JSON lines.
    pub log_json: bool,
    /// `log_file` and its rotation, when set.
    pub log_file: Option<crate::log_sinks::LogFileConfig>,
    /// `enable_syslog`: the facility code of `syslog_facility` (LOCAL0 by default).
    pub syslog_facility: Option<u8>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Serve the web UI.
    pub ui: bool,
    /// URL path of the web UI (`ui_config.content_path`, normalised; default `/ui/`).
    pub ui_content_path: String,
    /// Allow script checks (accepted).
    pub enable_script_checks: bool,
    /// `use_streaming_backend` (default true): a client agent serves blocking
    /// `/v1/health/service` and `/v1/catalog/service` queries from one server event stream
    /// per query shape.
    pub use_streaming_backend: bool,
    /// DNS settings.
    pub dns: DnsConfig,
    /// Raft tuning.
    pub raft: RaftConfig,
    /// Telemetry settings.
    pub telemetry: TelemetryConfig,
    /// Autopilot settings; they apply until a configuration is stored through the API.
    pub autopilot: AutopilotConfig,
    /// `acl { }`.
    pub acl: registry_server::acl::AclConfig,
    /// `tls { }` and the legacy top-level TLS keys.
    pub tls: registry_server::tls::TlsConfig,
    /// `limits { }`.
    pub limits: registry_server::edge::Limits,
    /// LAN gossip and leave behaviour.
    pub gossip: GossipSettings,
    /// Gossip encryption (`encrypt`, `encrypt_verify_*`, `disable_keyring_file`).
    pub encrypt: crate::gossip::keyring::EncryptConfig,
    /// Service definitions from `service { }` / `services [ ]`, in file order, exactly as
    /// written (snake_case or CamelCase keys; `checks` always an array).
    pub services: Vec<Value>,
    /// Check definitions from `check { }` / `checks [ ]`, in file order, as written.
    pub checks: Vec<Value>,
    /// The configuration files that were read, in merge order.
    pub config_files: Vec<PathBuf>,
}

impl RuntimeConfig {
    /// The HTTP listener address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.client_addr, self.ports.http)
    }
}
