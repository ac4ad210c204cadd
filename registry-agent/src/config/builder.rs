//! Turns merged sources into a validated `RuntimeConfig`: Consul's defaults, dev-mode
//! defaults, the checks and messages of Consul's config builder, address and node-ID
//! resolution.

use super::duration::format_duration;
use super::environment::{private_ipv4, public_ipv6, Environment};
use super::error::ConfigError;
use super::partial::PartialConfig;
use super::runtime::{
    AutopilotConfig, DnsConfig, GossipSettings, JoinConfig, LogLevel, Ports, RaftConfig,
    RuntimeConfig, Storage, TelemetryConfig,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A built configuration and the warnings to log once logging is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The configuration.
    pub config: RuntimeConfig,
    /// Non-fatal remarks (`bootstrap_expect = 1` is bootstrap mode, ...).
    pub warnings: Vec<String>,
}

/// Values `-dev` sets before any file or flag is applied (Consul's `DevSource`).
pub fn dev_source() -> PartialConfig {
    let mut dev = PartialConfig {
        bind_addr: Some("127.0.0.1".to_string()),
        server: Some(true),
        bootstrap: Some(true),
        ui: Some(true),
        // Consul's dev mode logs at debug; a dev agent here logs at info, so its terminal
        // shows what happens rather than every sync and probe (`-log-level debug` for more).
        log_level: Some("info".to_string()),
        raft_multiplier: Some(1),
        ..PartialConfig::default()
    };
    dev.ports.grpc = Some(8502);
    dev
}

/// Builds the runtime configuration from sources in merge order (files, flags, fragments).
/// `dev` adds `dev_source()` beneath them. `config_files` is recorded as read.
pub fn build(
    dev: bool,
    sources: Vec<PartialConfig>,
    config_files: Vec<PathBuf>,
    env: &dyn Environment,
) -> Result<Built, ConfigError> {
    let mut merged = if dev {
        dev_source()
    } else {
        PartialConfig::default()
    };
    for source in sources {
        merged.merge(source);
    }
    let mut warnings = Vec::new();
    let c = merged;
    // Each key Consul knows that is not acted on is named once.
    let mut named = std::collections::BTreeSet::new();
    for key in &c.ignored {
        if named.insert(key.as_str()) {
            warnings.push(format!(
                "config key {key:?} is accepted but ignored: {}",
                super::consul_keys::reason(key)
            ));
        }
    }

    let datacenter = c
        .datacenter
        .unwrap_or_else(|| "dc1".to_string())
        .to_lowercase();
    if datacenter.is_empty() {
        return Err(ConfigError::invalid("datacenter cannot be empty"));
    }
    if !datacenter
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
    {
        return Err(ConfigError::invalid(
            "datacenter can only contain lowercase alphanumeric, - or _ characters.",
        ));
    }

    let node_name = match c.node_name.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => env.hostname().unwrap_or_default(),
    };
    if node_name.is_empty() {
        return Err(ConfigError::invalid("node_name cannot be empty"));
    }
    if node_name.len() > 63
        || !node_name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        warnings.push(format!(
            "Node name {node_name:?} will not be discoverable via DNS due to invalid characters. \
             Valid characters include all alpha-numerics and dashes."
        ));
    }

    let storage = if dev {
        if c.data_dir.is_some() {
            warnings.push("data_dir is ignored in -dev mode: state is kept in memory".to_string());
        }
        Storage::InMemory
    } else {
        match c.data_dir.filter(|d| !d.as_os_str().is_empty()) {
            None => return Err(ConfigError::invalid("data_dir cannot be empty")),
            Some(dir) => {
                if dir.exists() && !dir.is_dir() {
                    return Err(ConfigError::invalid(format!(
                        "data_dir {:?} is not a directory",
                        dir.display().to_string()
                    )));
                }
                Storage::Directory(dir)
            }
        }
    };

    let server = c.server.unwrap_or(false);
    let gossip = gossip_settings(
        GossipFlags {
            interval: c.gossip_interval,
            reconnect_timeout: c.reconnect_timeout,
            leave_on_terminate: c.leave_on_terminate,
            skip_leave_on_interrupt: c.skip_leave_on_interrupt,
            rejoin_after_leave: c.rejoin_after_leave,
        },
        server,
    )?;
    let mut bootstrap = c.bootstrap.unwrap_or(false);
    let expect = c.bootstrap_expect.unwrap_or(0);
    if expect < 0 {
        return Err(ConfigError::invalid(format!(
            "bootstrap_expect cannot be {expect}. Must be greater than or equal to zero"
        )));
    }
    if expect > 0 && !server {
        return Err(ConfigError::invalid(
            "'bootstrap_expect > 0' requires 'server = true'",
        ));
    }
    if expect > 0 && dev {
        return Err(ConfigError::invalid(
            "'bootstrap_expect > 0' not allowed in dev mode",
        ));
    }
    if expect > 0 && bootstrap {
        return Err(ConfigError::invalid(
            "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
        ));
    }
    if bootstrap && !server {
        return Err(ConfigError::invalid(
            "'bootstrap = true' requires 'server = true'",
        ));
    }
    let mut bootstrap_expect = usize::try_from(expect)
        .map_err(|_| ConfigError::invalid("bootstrap_expect is too large"))?;
    match bootstrap_expect {
        1 => {
            warnings.push("bootstrap_expect = 1: this is the same as bootstrap mode.".to_string());
            bootstrap = true;
            bootstrap_expect = 0;
        }
        2 => warnings.push(
            "bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance."
                .to_string(),
        ),
        n if n > 2 && n % 2 == 0 => warnings.push(format!(
            "bootstrap_expect is even ({n}): A cluster with an even number of servers does not \
             achieve optimum fault tolerance."
        )),
        _ => {}
    }
    if bootstrap && !dev {
        warnings.push("bootstrap = true: do not enable unless necessary".to_string());
    }
    if !server {
        warnings.push("running in client mode (server = false)".to_string());
    }

    let bind_addr = parse_ip("bind_addr", c.bind_addr.as_deref().unwrap_or("0.0.0.0"))?;
    let client_addr = parse_client_addr(c.client_addr.as_deref().unwrap_or("127.0.0.1"))?;
    let advertise_addr = match c.advertise_addr.as_deref() {
        Some(text) => {
            let ip = parse_ip("advertise_addr", text)?;
            if ip.is_unspecified() {
                return Err(ConfigError::invalid(
                    "Advertise address cannot be 0.0.0.0, :: or [::]",
                ));
            }
            ip
        }
        None => match bind_addr {
            IpAddr::V4(v4) if v4.is_unspecified() => private_ipv4(&env.interface_addrs())?,
            IpAddr::V6(v6) if v6.is_unspecified() => public_ipv6(&env.interface_addrs())?,
            ip => ip,
        },
    };

    let ports = Ports {
        http: port("http", c.ports.http, 8500, true)?,
        https: port("https", c.ports.https, -1, true)?,
        dns: port("dns", c.ports.dns, 8600, true)?,
        server: port("server", c.ports.server, 8300, false)?,
        serf_lan: port("serf_lan", c.ports.serf_lan, 8301, false)?,
        serf_wan: port("serf_wan", c.ports.serf_wan, 8302, false)?,
        grpc: port("grpc", c.ports.grpc, -1, true)?,
    };

    let retry_max = c.retry_max.unwrap_or(0);
    let join = JoinConfig {
        start_join: c.start_join,
        retry_join: c.retry_join,
        retry_join_wan: c.retry_join_wan,
        start_join_wan: c.start_join_wan,
        retry_interval: c.retry_interval.unwrap_or(Duration::from_secs(30)),
        retry_max: u32::try_from(retry_max).map_err(|_| {
            ConfigError::invalid(format!(
                "retry_max cannot be {retry_max}. Must be between 0 and {}",
                u32::MAX
            ))
        })?,
    };
    if join.retry_interval.is_zero() {
        return Err(ConfigError::invalid(
            "retry_interval must be greater than zero",
        ));
    }

    let log_file = log_file_config(
        c.log_file.as_deref(),
        c.log_rotate_bytes,
        c.log_rotate_duration,
        c.log_rotate_max_files,
    )?;
    let level_name = c.log_level.unwrap_or_else(|| "info".to_string());
    let log_level = LogLevel::parse(&level_name)
        .ok_or_else(|| ConfigError::invalid(format!("Invalid log level: {level_name}")))?;

    validate_node_meta(&c.node_meta)?;
    let syslog_facility = if c.enable_syslog.unwrap_or(false) {
        let name = c.syslog_facility.as_deref().unwrap_or("LOCAL0");
        Some(crate::log_sinks::facility_code(name).ok_or_else(|| {
            ConfigError::invalid(format!(
                "Syslog setup failed: invalid syslog facility {name:?}"
            ))
        })?)
    } else {
        None
    };

    let multiplier = c.raft_multiplier.unwrap_or(5);
    if !(1..=10).contains(&multiplier) {
        return Err(ConfigError::invalid(format!(
            "performance.raft_multiplier cannot be {multiplier}. Must be between 1 and 10"
        )));
    }
    let raft = RaftConfig {
        snapshot_threshold: c.raft_snapshot_threshold.unwrap_or(16384),
        snapshot_interval: c.raft_snapshot_interval.unwrap_or(Duration::from_secs(30)),
        trailing_logs: c.raft_trailing_logs.unwrap_or(10240),
        multiplier: u8::try_from(multiplier).unwrap_or(5),
    };
    if raft.snapshot_interval.is_zero() {
        return Err(ConfigError::invalid(format!(
            "raft_snapshot_interval cannot be {}",
            format_duration(raft.snapshot_interval)
        )));
    }

    let dns = DnsConfig {
        domain: normalize_domain(c.domain.as_deref().unwrap_or("consul."))?,
        recursors: c
            .recursors
            .iter()
            .map(|r| parse_recursor(r))
            .collect::<Result<_, _>>()?,
        allow_stale: c.dns.allow_stale.unwrap_or(true),
        max_stale: c
            .dns
            .max_stale
            .unwrap_or(Duration::from_secs(87_600 * 3_600)),
        node_ttl: c.dns.node_ttl.unwrap_or(Duration::ZERO),
        service_ttl: c.dns.service_ttl,
        only_passing: c.dns.only_passing.unwrap_or(false),
        udp_answer_limit: non_negative("dns_config.udp_answer_limit", c.dns.udp_answer_limit, 3)?,
        a_record_limit: non_negative("dns_config.a_record_limit", c.dns.a_record_limit, 0)?,
        enable_truncate: c.dns.enable_truncate.unwrap_or(false),
    };

    let defaults = AutopilotConfig::default();
    let a = &c.autopilot;
    let autopilot = AutopilotConfig {
        cleanup_dead_servers: a
            .cleanup_dead_servers
            .unwrap_or(defaults.cleanup_dead_servers),
        last_contact_threshold: a
            .last_contact_threshold
            .unwrap_or(defaults.last_contact_threshold),
        max_trailing_logs: a.max_trailing_logs.unwrap_or(defaults.max_trailing_logs),
        min_quorum: a.min_quorum.unwrap_or(defaults.min_quorum),
        server_stabilization_time: a
            .server_stabilization_time
            .unwrap_or(defaults.server_stabilization_time),
        redundancy_zone_tag: a.redundancy_zone_tag.clone().unwrap_or_default(),
        disable_upgrade_migration: a.disable_upgrade_migration.unwrap_or(false),
        upgrade_version_tag: a.upgrade_version_tag.clone().unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    };

    let node_id = match c.node_id.filter(|id| !id.is_empty()) {
        Some(id) => uuid::Uuid::parse_str(id.trim())
            .map(|uuid| uuid.to_string())
            .map_err(|_| ConfigError::invalid(format!("node_id {id:?} is not a valid UUID")))?,
        None => env.stored_node_id(&storage)?,
    };

    if let Some(key) = &c.encrypt {
        crate::gossip::crypto::GossipKey::from_base64(key)
            .map_err(|e| ConfigError::invalid(format!("encrypt has invalid key: {e}")))?;
    }
    let encrypt = crate::gossip::keyring::EncryptConfig {
        key: c.encrypt.clone(),
        verify_incoming: c.encrypt_verify_incoming.unwrap_or(true),
        verify_outgoing: c.encrypt_verify_outgoing.unwrap_or(true),
        disable_keyring_file: c.disable_keyring_file.unwrap_or(false),
    };

    let tls = c.tls.build(&datacenter, &dns.domain)?;
    let config = RuntimeConfig {
        dev,
        node_name,
        node_id,
        datacenter,
        storage,
        server,
        bootstrap,
        bootstrap_expect,
        bind_addr,
        advertise_addr,
        advertise_addr_wan: c
            .advertise_addr_wan
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(|a| parse_ip("advertise_addr_wan", a))
            .transpose()?,
        translate_wan_addrs: c.translate_wan_addrs.unwrap_or(false),
        client_addr,
        ports,
        join,
        log_level,
        log_json: c.log_json.unwrap_or(false),
        log_file,
        syslog_facility,
        node_meta: c.node_meta,
        ui: c.ui.unwrap_or(false),
        ui_content_path: registry_server::config::UiConfig::normalize_path(
            c.ui_content_path.as_deref().unwrap_or(""),
        ),
        enable_script_checks: c.enable_script_checks.unwrap_or(false),
        use_streaming_backend: c.use_streaming_backend.unwrap_or(true),
        dns,
        raft,
        telemetry: TelemetryConfig {
            prometheus_retention_time: c
                .telemetry
                .prometheus_retention_time
                .unwrap_or(Duration::ZERO),
            disable_hostname: c.telemetry.disable_hostname.unwrap_or(false),
            metrics_prefix: c
                .telemetry
                .metrics_prefix
                .clone()
                .unwrap_or_else(|| "consul".to_string()),
            filter_default: c.telemetry.filter_default.unwrap_or(true),
            prefix_filter: c.telemetry.prefix_filter.clone(),
            statsd_address: c.telemetry.statsd_address.clone(),
            dogstatsd_addr: c.telemetry.dogstatsd_addr.clone(),
            dogstatsd_tags: c.telemetry.dogstatsd_tags.clone(),
        },
        autopilot,
        acl: c.acl.build()?,
        tls,
        limits: c.limits.build()?,
        gossip,
        encrypt,
        services: c.services,
        checks: c.checks,
        config_files,
    };
    Ok(Built { config, warnings })
}

/// `log_file` with Consul's rotation defaults (24h, no size limit, every archive kept).
fn log_file_config(
    path: Option<&str>,
    rotate_bytes: Option<i64>,
    rotate_duration: Option<Duration>,
    max_files: Option<i64>,
) -> Result<Option<crate::log_sinks::LogFileConfig>, ConfigError> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let rotate_bytes = u64::try_from(rotate_bytes.unwrap_or(0))
        .map_err(|_| ConfigError::invalid("log_rotate_bytes must not be negative".to_string()))?;
    Ok(Some(crate::log_sinks::LogFileConfig {
        path: PathBuf::from(path),
        rotate_bytes,
        rotate_duration: rotate_duration.unwrap_or(Duration::from_secs(24 * 3600)),
        rotate_max_files: max_files.unwrap_or(0),
    }))
}

fn parse_ip(key: &str, text: &str) -> Result<IpAddr, ConfigError> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed.parse().map_err(|_| {
        ConfigError::invalid(format!(
            "{key}: cannot parse {text:?} as an IP address (go-sockaddr templates are not supported)"
        ))
    })
}

/// `client_addr` may hold several space-separated addresses in Consul; one is supported.
fn parse_client_addr(text: &str) -> Result<IpAddr, ConfigError> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    match parts.as_slice() {
        [one] => parse_ip("client_addr", one),
        [] => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        _ => Err(ConfigError::invalid(format!(
            "client_addr: only one address is supported, got {text:?}"
        ))),
    }
}

/// A port value; `disable` allows `-1` (or 0), which becomes 0.
fn port(name: &str, value: Option<i64>, default: i64, disable: bool) -> Result<u16, ConfigError> {
    let value = value.unwrap_or(default);
    if disable && value <= 0 {
        return Ok(0);
    }
    match u16::try_from(value) {
        Ok(port) if port > 0 => Ok(port),
        _ if disable => Err(ConfigError::invalid(format!(
            "ports.{name} cannot be {value}. Must be between 1 and 65535, or -1 to disable"
        ))),
        _ => Err(ConfigError::invalid(format!(
            "ports.{name} cannot be {value}. Must be between 1 and 65535"
        ))),
    }
}

fn non_negative(key: &str, value: Option<i64>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => usize::try_from(v).map_err(|_| {
            ConfigError::invalid(format!(
                "{key} cannot be {v}. Must be greater than or equal to zero"
            ))
        }),
    }
}

/// `consul` -> `consul.`, lower-case.
fn normalize_domain(text: &str) -> Result<String, ConfigError> {
    let domain = text.trim().trim_end_matches('.').to_lowercase();
    if domain.is_empty()
        || !domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        })
    {
        return Err(ConfigError::invalid(format!(
            "domain {text:?} is not a valid DNS name"
        )));
    }
    Ok(format!("{domain}."))
}

/// `ip`, `ip:port`, `[v6]:port` or a bare IPv6 address; port 53 by default.
fn parse_recursor(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| ConfigError::invalid(format!("recursors: invalid address {text:?}")))
}

/// Consul's `ValidateNodeMetadata` limits.
fn validate_node_meta(meta: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let fail = |reason: String| Err(ConfigError::invalid(format!("node_meta invalid: {reason}")));
    if meta.len() > 64 {
        return fail("Node metadata cannot contain more than 64 key/value pairs".to_string());
    }
    for (key, value) in meta {
        if key.is_empty() {
            return fail("Key cannot be blank".to_string());
        }
        if !key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return fail(format!("Key contains invalid characters: {key:?}"));
        }
        if key.len() > 128 {
            return fail(format!("Key is too long (limit: 128 characters): {key:?}"));
        }
        if key.starts_with("consul-") {
            return fail(format!(
                "Key prefix 'consul-' is reserved for internal use: {key:?}"
            ));
        }
        if value.len() > 512 {
            return fail(format!(
                "Value is too long (limit: 512 characters): {key:?}"
            ));
        }
    }
    Ok(())
}

/// Environment variable that lowers `reconnect_timeout` below Consul's 8h minimum, for tests
/// only: a Go duration (`"20s"`).
pub const TEST_RECONNECT_TIMEOUT_ENV: &str = "REGISTRY_TEST_RECONNECT_TIMEOUT";

/// The gossip keys as a source set them.
struct GossipFlags {
    interval: Option<Duration>,
    reconnect_timeout: Option<Duration>,
    leave_on_terminate: Option<bool>,
    skip_leave_on_interrupt: Option<bool>,
    rejoin_after_leave: Option<bool>,
}

/// Gossip settings with Consul's defaults and limits.
fn gossip_settings(c: GossipFlags, server: bool) -> Result<GossipSettings, ConfigError> {
    let interval = c.interval.unwrap_or(Duration::from_millis(200));
    if interval.is_zero() {
        return Err(ConfigError::invalid(
            "gossip_lan.gossip_interval must be greater than zero",
        ));
    }
    let mut reconnect_timeout = c
        .reconnect_timeout
        .unwrap_or(Duration::from_secs(72 * 3600));
    if reconnect_timeout < Duration::from_secs(8 * 3600) {
        return Err(ConfigError::invalid(format!(
            "reconnect_timeout must be >= 8h, got {}",
            format_duration(reconnect_timeout)
        )));
    }
    if let Ok(v) = std::env::var(TEST_RECONNECT_TIMEOUT_ENV) {
        if let Ok(d) = registry_proto::duration::parse_go_duration(v.trim()) {
            reconnect_timeout = d;
        }
    }
    Ok(GossipSettings {
        interval,
        reconnect_timeout,
        leave_on_terminate: c.leave_on_terminate.unwrap_or(!server),
        skip_leave_on_interrupt: c.skip_leave_on_interrupt.unwrap_or(server),
        rejoin_after_leave: c.rejoin_after_leave.unwrap_or(false),
    })
}
