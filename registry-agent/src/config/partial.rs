//! One configuration source (a file, an `-hcl` fragment or the command-line flags) as a set of
//! optional values, and the merge of several sources: later scalars win, lists append, maps
//! merge key by key, as Consul merges its sources.

use super::duration::parse_duration;
use super::error::ConfigError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `ports { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialPorts {
    /// HTTP API port.
    pub http: Option<i64>,
    /// DNS port (`-1` disables).
    pub dns: Option<i64>,
    /// Server RPC port.
    pub server: Option<i64>,
    /// LAN gossip port.
    pub serf_lan: Option<i64>,
    /// WAN gossip port.
    pub serf_wan: Option<i64>,
    /// gRPC port (`-1` disables; accepted, not served).
    pub grpc: Option<i64>,
    /// `ports.https`.
    pub https: Option<i64>,
}

/// `dns_config { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialDns {
    /// Serve DNS from any server, not only the leader.
    pub allow_stale: Option<bool>,
    /// Upper bound on staleness of DNS answers.
    pub max_stale: Option<Duration>,
    /// TTL of node answers.
    pub node_ttl: Option<Duration>,
    /// TTL of service answers by service name (`*` for all).
    pub service_ttl: BTreeMap<String, Duration>,
    /// Only answer with passing instances.
    pub only_passing: Option<bool>,
    /// Records in one UDP answer.
    pub udp_answer_limit: Option<i64>,
    /// A/AAAA records in one answer (0: no limit).
    pub a_record_limit: Option<i64>,
    /// Set the TC bit when answers are cut.
    pub enable_truncate: Option<bool>,
}

/// `telemetry { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialTelemetry {
    /// How long Prometheus metrics are kept (0 disables the Prometheus format).
    pub prometheus_retention_time: Option<Duration>,
    /// Leave the host name out of metric names.
    pub disable_hostname: Option<bool>,
    /// `metrics_prefix`.
    pub metrics_prefix: Option<String>,
    /// `filter_default`.
    pub filter_default: Option<bool>,
    /// `prefix_filter`.
    pub prefix_filter: Vec<String>,
    /// `statsd_address`: where metrics are sent in the statsd line format.
    pub statsd_address: Option<String>,
    /// `dogstatsd_addr`: where metrics are sent in DogStatsD's format (tags).
    pub dogstatsd_addr: Option<String>,
    /// `dogstatsd_tags`: `key:value` tags added to every DogStatsD line.
    pub dogstatsd_tags: Vec<String>,
}

/// `autopilot { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialAutopilot {
    /// Remove dead servers.
    pub cleanup_dead_servers: Option<bool>,
    /// Longest time without leader contact for a healthy server.
    pub last_contact_threshold: Option<Duration>,
    /// Most log entries a healthy server trails the leader by.
    pub max_trailing_logs: Option<u64>,
    /// Fewest voters dead-server cleanup leaves.
    pub min_quorum: Option<u64>,
    /// How long a new server stays healthy before it becomes a voter.
    pub server_stabilization_time: Option<Duration>,
    /// Enterprise-only; accepted and reported.
    pub redundancy_zone_tag: Option<String>,
    /// Enterprise-only; accepted and reported.
    pub disable_upgrade_migration: Option<bool>,
    /// Enterprise-only; accepted and reported.
    pub upgrade_version_tag: Option<String>,
}

/// The values one source sets. `None` and empty lists mean "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialConfig {
    /// `node_name` / `-node`.
    pub node_name: Option<String>,
    /// `node_id` / `-node-id`.
    pub node_id: Option<String>,
    /// `datacenter` / `-datacenter`.
    pub datacenter: Option<String>,
    /// `data_dir` / `-data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `client_addr` / `-client`.
    pub client_addr: Option<String>,
    /// `bind_addr` / `-bind`.
    pub bind_addr: Option<String>,
    /// `advertise_addr` / `-advertise`.
    pub advertise_addr: Option<String>,
    /// `ports { }` / `-*-port`.
    pub ports: PartialPorts,
    /// `server` / `-server`.
    pub server: Option<bool>,
    /// `bootstrap` / `-bootstrap`.
    pub bootstrap: Option<bool>,
    /// `bootstrap_expect` / `-bootstrap-expect`.
    pub bootstrap_expect: Option<i64>,
    /// `retry_join` / `-retry-join`.
    pub retry_join: Vec<String>,
    /// `retry_join_wan` / `-retry-join-wan`.
    pub retry_join_wan: Vec<String>,
    /// `start_join_wan` / `-join-wan`.
    pub start_join_wan: Vec<String>,
    /// `advertise_addr_wan` / `-advertise-wan`.
    pub advertise_addr_wan: Option<String>,
    /// `translate_wan_addrs`.
    pub translate_wan_addrs: Option<bool>,
    /// `start_join` / `-join`.
    pub start_join: Vec<String>,
    /// `retry_interval` / `-retry-interval`.
    pub retry_interval: Option<Duration>,
    /// `retry_max` / `-retry-max`.
    pub retry_max: Option<i64>,
    /// `log_level` / `-log-level`.
    pub log_level: Option<String>,
    /// `log_json` / `-log-json`.
    pub log_json: Option<bool>,
    /// `log_file` / `-log-file`.
    pub log_file: Option<String>,
    /// `log_rotate_bytes` / `-log-rotate-bytes`.
    pub log_rotate_bytes: Option<i64>,
    /// `log_rotate_duration` / `-log-rotate-duration`.
    pub log_rotate_duration: Option<Duration>,
    /// `log_rotate_max_files` / `-log-rotate-max-files`.
    pub log_rotate_max_files: Option<i64>,
    /// `enable_syslog` / `-syslog`.
    pub enable_syslog: Option<bool>,
    /// `syslog_facility`.
    pub syslog_facility: Option<String>,
    /// `domain` / `-domain`.
    pub domain: Option<String>,
    /// `node_meta { }` / `-node-meta`.
    pub node_meta: BTreeMap<String, String>,
    /// `ui`, `ui_config { enabled }` / `-ui`.
    pub ui: Option<bool>,
    /// `ui_config { content_path }` / `-ui-content-path`.
    pub ui_content_path: Option<String>,
    /// `enable_script_checks`.
    pub enable_script_checks: Option<bool>,
    /// `use_streaming_backend`: client agents serve blocking `health/service` and
    /// `catalog/service` queries from one event stream per query (default true).
    pub use_streaming_backend: Option<bool>,
    /// `encrypt` / `-encrypt`: the gossip encryption key (base64 of 16, 24 or 32 bytes).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming`: refuse plaintext gossip (default true).
    pub encrypt_verify_incoming: Option<bool>,
    /// `encrypt_verify_outgoing`: send gossip encrypted (default true).
    pub encrypt_verify_outgoing: Option<bool>,
    /// `disable_keyring_file`: keep the gossip keyring in memory only.
    pub disable_keyring_file: Option<bool>,
    /// `dns_config { }`.
    pub dns: PartialDns,
    /// `recursors` / `-recursor`.
    pub recursors: Vec<String>,
    /// `raft_snapshot_threshold`.
    pub raft_snapshot_threshold: Option<u64>,
    /// `raft_snapshot_interval`.
    pub raft_snapshot_interval: Option<Duration>,
    /// `raft_trailing_logs`.
    pub raft_trailing_logs: Option<u64>,
    /// `performance { raft_multiplier }`.
    pub raft_multiplier: Option<i64>,
    /// `telemetry { }`.
    pub telemetry: PartialTelemetry,
    /// `autopilot { }`.
    pub autopilot: PartialAutopilot,
    /// `acl { }` and `primary_datacenter`.
    pub acl: super::acl::PartialAcl,
    /// `tls { }` and the legacy top-level TLS keys.
    pub tls: super::tls::PartialTls,
    /// `limits { }`.
    pub limits: super::limits::PartialLimits,
    /// `reconnect_timeout`.
    pub reconnect_timeout: Option<Duration>,
    /// `leave_on_terminate`.
    pub leave_on_terminate: Option<bool>,
    /// `skip_leave_on_interrupt`.
    pub skip_leave_on_interrupt: Option<bool>,
    /// `rejoin_after_leave` / `-rejoin`.
    pub rejoin_after_leave: Option<bool>,
    /// `gossip_lan { gossip_interval }`.
    pub gossip_interval: Option<Duration>,
    /// `service { }` and `services [ ]`, as written.
    pub services: Vec<Value>,
    /// `check { }` and `checks [ ]`, as written.
    pub checks: Vec<Value>,
    /// Keys Consul knows that were accepted and are not acted on, dotted.
    pub ignored: Vec<String>,
}

impl PartialConfig {
    /// Reads a normalised file (see `schema::normalize`). `origin` names it in errors.
    pub fn from_map(map: &Map<String, Value>, origin: &str) -> Result<Self, ConfigError> {
        let top = Fields::new(map, origin, "");
        let mut cfg = PartialConfig {
            node_name: top.string("node_name")?,
            node_id: top.string("node_id")?,
            datacenter: top.string("datacenter")?,
            data_dir: top.string("data_dir")?.map(PathBuf::from),
            client_addr: top.string("client_addr")?,
            bind_addr: top.string("bind_addr")?,
            advertise_addr: top.string("advertise_addr")?,
            server: top.bool("server")?,
            bootstrap: top.bool("bootstrap")?,
            bootstrap_expect: top.int("bootstrap_expect")?,
            retry_join: top.strings("retry_join")?,
            retry_join_wan: top.strings("retry_join_wan")?,
            start_join_wan: top.strings("start_join_wan")?,
            advertise_addr_wan: top.string("advertise_addr_wan")?,
            translate_wan_addrs: top.bool("translate_wan_addrs")?,
            start_join: top.strings("start_join")?,
            retry_interval: top.duration("retry_interval")?,
            retry_max: top.int("retry_max")?,
            log_level: top.string("log_level")?,
            log_json: top.bool("log_json")?,
            log_file: top.string("log_file")?,
            log_rotate_bytes: top.int("log_rotate_bytes")?,
            log_rotate_duration: top.duration("log_rotate_duration")?,
            log_rotate_max_files: top.int("log_rotate_max_files")?,
            enable_syslog: top.bool("enable_syslog")?,
            syslog_facility: top.string("syslog_facility")?,
            domain: top.string("domain")?,
            node_meta: top.string_map("node_meta")?,
            ui: top.bool("ui")?,
            enable_script_checks: top.bool("enable_script_checks")?,
            use_streaming_backend: top.bool("use_streaming_backend")?,
            encrypt: top.string("encrypt")?,
            encrypt_verify_incoming: top.bool("encrypt_verify_incoming")?,
            encrypt_verify_outgoing: top.bool("encrypt_verify_outgoing")?,
            disable_keyring_file: top.bool("disable_keyring_file")?,
            recursors: top.strings("recursors")?,
            raft_snapshot_threshold: top.uint("raft_snapshot_threshold")?,
            raft_snapshot_interval: top.duration("raft_snapshot_interval")?,
            raft_trailing_logs: top.uint("raft_trailing_logs")?,
            reconnect_timeout: top.duration("reconnect_timeout")?,
            leave_on_terminate: top.bool("leave_on_terminate")?,
            skip_leave_on_interrupt: top.bool("skip_leave_on_interrupt")?,
            rejoin_after_leave: top.bool("rejoin_after_leave")?,
            services: top.objects("service")?,
            checks: top.objects("check")?,
            ..PartialConfig::default()
        };
        cfg.services.extend(top.objects("services")?);
        cfg.checks.extend(top.objects("checks")?);
        if let Some(ui_config) = top.block("ui_config") {
            if let Some(enabled) = ui_config.bool("enabled")? {
                cfg.ui = Some(enabled);
            }
            cfg.ui_content_path = ui_config.string("content_path")?;
        }
        if let Some(ports) = top.block("ports") {
            cfg.ports = PartialPorts {
                http: ports.int("http")?,
                dns: ports.int("dns")?,
                server: ports.int("server")?,
                serf_lan: ports.int("serf_lan")?,
                serf_wan: ports.int("serf_wan")?,
                grpc: ports.int("grpc")?,
                https: ports.int("https")?,
            };
        }
        if let Some(dns) = top.block("dns_config") {
            cfg.dns = PartialDns {
                allow_stale: dns.bool("allow_stale")?,
                max_stale: dns.duration("max_stale")?,
                node_ttl: dns.duration("node_ttl")?,
                service_ttl: dns.duration_map("service_ttl")?,
                only_passing: dns.bool("only_passing")?,
                udp_answer_limit: dns.int("udp_answer_limit")?,
                a_record_limit: dns.int("a_record_limit")?,
                enable_truncate: dns.bool("enable_truncate")?,
            };
        }
        if let Some(gossip) = top.block("gossip_lan") {
            cfg.gossip_interval = gossip.duration("gossip_interval")?;
        }
        if let Some(performance) = top.block("performance") {
            cfg.raft_multiplier = performance.int("raft_multiplier")?;
        }
        if let Some(autopilot) = top.block("autopilot") {
            cfg.autopilot = PartialAutopilot {
                cleanup_dead_servers: autopilot.bool("cleanup_dead_servers")?,
                last_contact_threshold: autopilot.duration("last_contact_threshold")?,
                max_trailing_logs: autopilot.uint("max_trailing_logs")?,
                min_quorum: autopilot.uint("min_quorum")?,
                server_stabilization_time: autopilot.duration("server_stabilization_time")?,
                redundancy_zone_tag: autopilot.string("redundancy_zone_tag")?,
                disable_upgrade_migration: autopilot.bool("disable_upgrade_migration")?,
                upgrade_version_tag: autopilot.string("upgrade_version_tag")?,
            };
        }
        cfg.acl = super::acl::PartialAcl::from_map(map, origin)?;
        cfg.tls = super::tls::PartialTls::from_map(map, origin)?;
        cfg.limits = super::limits::PartialLimits::from_map(map);
        if let Some(telemetry) = top.block("telemetry") {
            cfg.telemetry = PartialTelemetry {
                prometheus_retention_time: telemetry.duration("prometheus_retention_time")?,
                disable_hostname: telemetry.bool("disable_hostname")?,
                metrics_prefix: telemetry.string("metrics_prefix")?,
                filter_default: telemetry.bool("filter_default")?,
                prefix_filter: telemetry.strings("prefix_filter")?,
                statsd_address: telemetry.string("statsd_address")?,
                dogstatsd_addr: telemetry.string("dogstatsd_addr")?,
                dogstatsd_tags: telemetry.strings("dogstatsd_tags")?,
            };
        }
        Ok(cfg)
    }

    /// Lays `other` over `self`: its scalars win, its lists are appended, its maps merged.
    pub fn merge(&mut self, other: PartialConfig) {
        fn set<T>(slot: &mut Option<T>, value: Option<T>) {
            if value.is_some() {
                *slot = value;
            }
        }
        set(&mut self.node_name, other.node_name);
        set(&mut self.node_id, other.node_id);
        set(&mut self.datacenter, other.datacenter);
        set(&mut self.data_dir, other.data_dir);
        set(&mut self.client_addr, other.client_addr);
        set(&mut self.bind_addr, other.bind_addr);
        set(&mut self.advertise_addr, other.advertise_addr);
        set(&mut self.ports.http, other.ports.http);
        set(&mut self.ports.dns, other.ports.dns);
        set(&mut self.ports.server, other.ports.server);
        set(&mut self.ports.serf_lan, other.ports.serf_lan);
        set(&mut self.ports.serf_wan, other.ports.serf_wan);
        set(&mut self.ports.grpc, other.ports.grpc);
        set(&mut self.ports.https, other.ports.https);
        set(&mut self.server, other.server);
        set(&mut self.bootstrap, other.bootstrap);
        set(&mut self.bootstrap_expect, other.bootstrap_expect);
        self.retry_join.extend(other.retry_join);
        self.retry_join_wan.extend(other.retry_join_wan);
        self.start_join_wan.extend(other.start_join_wan);
        set(&mut self.advertise_addr_wan, other.advertise_addr_wan);
        set(&mut self.translate_wan_addrs, other.translate_wan_addrs);
        self.start_join.extend(other.start_join);
        set(&mut self.retry_interval, other.retry_interval);
        set(&mut self.retry_max, other.retry_max);
        set(&mut self.log_level, other.log_level);
        set(&mut self.log_json, other.log_json);
        set(&mut self.log_file, other.log_file);
        set(&mut self.log_rotate_bytes, other.log_rotate_bytes);
        set(&mut self.log_rotate_duration, other.log_rotate_duration);
        set(&mut self.log_rotate_max_files, other.log_rotate_max_files);
        set(&mut self.enable_syslog, other.enable_syslog);
        set(&mut self.syslog_facility, other.syslog_facility);
        set(&mut self.domain, other.domain);
        self.node_meta.extend(other.node_meta);
        set(&mut self.ui, other.ui);
        set(&mut self.ui_content_path, other.ui_content_path);
        set(&mut self.enable_script_checks, other.enable_script_checks);
        set(&mut self.use_streaming_backend, other.use_streaming_backend);
        set(&mut self.encrypt, other.encrypt);
        set(
            &mut self.encrypt_verify_incoming,
            other.encrypt_verify_incoming,
        );
        set(
            &mut self.encrypt_verify_outgoing,
            other.encrypt_verify_outgoing,
        );
        set(&mut self.disable_keyring_file, other.disable_keyring_file);
        set(&mut self.dns.allow_stale, other.dns.allow_stale);
        set(&mut self.dns.max_stale, other.dns.max_stale);
        set(&mut self.dns.node_ttl, other.dns.node_ttl);
        self.dns.service_ttl.extend(other.dns.service_ttl);
        set(&mut self.dns.only_passing, other.dns.only_passing);
        set(&mut self.dns.udp_answer_limit, other.dns.udp_answer_limit);
        set(&mut self.dns.a_record_limit, other.dns.a_record_limit);
        set(&mut self.dns.enable_truncate, other.dns.enable_truncate);
        self.recursors.extend(other.recursors);
        set(
            &mut self.raft_snapshot_threshold,
            other.raft_snapshot_threshold,
        );
        set(
            &mut self.raft_snapshot_interval,
            other.raft_snapshot_interval,
        );
        set(&mut self.raft_trailing_logs, other.raft_trailing_logs);
        set(&mut self.raft_multiplier, other.raft_multiplier);
        set(&mut self.reconnect_timeout, other.reconnect_timeout);
        set(&mut self.leave_on_terminate, other.leave_on_terminate);
        set(
            &mut self.skip_leave_on_interrupt,
            other.skip_leave_on_interrupt,
        );
        set(&mut self.rejoin_after_leave, other.rejoin_after_leave);
        set(&mut self.gossip_interval, other.gossip_interval);
        set(
            &mut self.telemetry.prometheus_retention_time,
            other.telemetry.prometheus_retention_time,
        );
        set(
            &mut self.telemetry.disable_hostname,
            other.telemetry.disable_hostname,
        );
        set(
            &mut self.telemetry.metrics_prefix,
            other.telemetry.metrics_prefix,
        );
        set(
            &mut self.telemetry.filter_default,
            other.telemetry.filter_default,
        );
        self.telemetry
            .prefix_filter
            .extend(other.telemetry.prefix_filter);
        set(
            &mut self.telemetry.statsd_address,
            other.telemetry.statsd_address,
        );
        set(
            &mut self.telemetry.dogstatsd_addr,
            other.telemetry.dogstatsd_addr,
        );
        self.telemetry
            .dogstatsd_tags
            .extend(other.telemetry.dogstatsd_tags);
        self.acl.merge(other.acl);
        self.tls.merge(other.tls);
        self.limits.merge(other.limits);
        let (a, b) = (&mut self.autopilot, other.autopilot);
        set(&mut a.cleanup_dead_servers, b.cleanup_dead_servers);
        set(&mut a.last_contact_threshold, b.last_contact_threshold);
        set(&mut a.max_trailing_logs, b.max_trailing_logs);
        set(&mut a.min_quorum, b.min_quorum);
        set(
            &mut a.server_stabilization_time,
            b.server_stabilization_time,
        );
        set(&mut a.redundancy_zone_tag, b.redundancy_zone_tag);
        set(
            &mut a.disable_upgrade_migration,
            b.disable_upgrade_migration,
        );
        set(&mut a.upgrade_version_tag, b.upgrade_version_tag);
        self.services.extend(other.services);
        self.checks.extend(other.checks);
        self.ignored.extend(other.ignored);
    }
}

/// Typed, leniently converted reads from one object (Consul decodes weakly: `"3"` is a fine
/// integer, `"true"` a fine boolean). Errors name the dotted key and the origin.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    origin: &'a str,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, origin: &'a str, prefix: &str) -> Self {
        Fields {
            map,
            origin,
            prefix: prefix.to_string(),
        }
    }

    fn error(&self, key: &str, reason: &str) -> ConfigError {
        ConfigError::InvalidValue {
            key: format!("{}{key}", self.prefix),
            origin: self.origin.to_string(),
            reason: reason.to_string(),
        }
    }

    fn block(&self, key: &str) -> Option<Fields<'a>> {
        match self.map.get(key) {
            Some(Value::Object(inner)) => Some(Fields::new(
                inner,
                self.origin,
                &format!("{}{key}.", self.prefix),
            )),
            _ => None,
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => scalar_string(value)
                .map(Some)
                .ok_or_else(|| self.error(key, "expected a string")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s)
                .map(Some)
                .ok_or_else(|| self.error(key, "expected a boolean")),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => Err(self.error(key, "expected a boolean")),
            },
            Some(_) => Err(self.error(key, "expected a boolean")),
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(key, "expected an integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.error(key, "expected an integer")),
            Some(_) => Err(self.error(key, "expected an integer")),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.error(key, "expected a non-negative integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.error(key, "expected a non-negative integer")),
            Some(_) => Err(self.error(key, "expected a non-negative integer")),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .map_err(|reason| self.error(key, &reason)),
            Some(_) => Err(self.error(key, "expected a duration string such as \"30s\"")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    scalar_string(item).ok_or_else(|| self.error(key, "expected a list of strings"))
                })
                .collect(),
            Some(value) => scalar_string(value)
                .map(|s| vec![s])
                .ok_or_else(|| self.error(key, "expected a list of strings")),
        }
    }

    fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(inner) = self.block(key) else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for name in inner.map.keys() {
            if let Some(value) = inner.string(name)? {
                out.insert(name.clone(), value);
            }
        }
        Ok(out)
    }

    fn duration_map(&self, key: &str) -> Result<BTreeMap<String, Duration>, ConfigError> {
        let Some(inner) = self.block(key) else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for name in inner.map.keys() {
            if let Some(value) = inner.duration(name)? {
                out.insert(name.clone(), value);
            }
        }
        Ok(out)
    }

    fn objects(&self, key: &str) -> Result<Vec<Value>, ConfigError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(self.error(key, "expected a list of objects")),
        }
    }
}

fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> Result<PartialConfig, ConfigError> {
        let Value::Object(map) = value else {
            panic!("object expected")
        };
        PartialConfig::from_map(&map, "test.json")
    }

    #[test]
    fn weak_typing_like_consul() {
        let cfg = read(json!({"bootstrap_expect": "3", "server": "true", "retry_join": "a"}))
            .expect("read");
        assert_eq!(cfg.bootstrap_expect, Some(3));
        assert_eq!(cfg.server, Some(true));
        assert_eq!(cfg.retry_join, vec!["a".to_string()]);
    }

    #[test]
    fn type_errors_name_key_and_origin() {
        let err = read(json!({"ports": {"http": "x"}})).expect_err("bad port");
        assert_eq!(
            err.to_string(),
            "config: invalid value for \"ports.http\" in test.json: expected an integer"
        );
        let err = read(json!({"raft_snapshot_interval": 5})).expect_err("bad duration");
        assert!(err.to_string().contains("\"raft_snapshot_interval\""));
    }

    #[test]
    fn autopilot_block_reads_and_merges() {
        let mut base = read(json!({"autopilot": {
            "cleanup_dead_servers": "false",
            "last_contact_threshold": "1s",
            "max_trailing_logs": 100,
            "min_quorum": "3"
        }}))
        .expect("read");
        assert_eq!(base.autopilot.cleanup_dead_servers, Some(false));
        assert_eq!(
            base.autopilot.last_contact_threshold,
            Some(Duration::from_secs(1))
        );
        assert_eq!(base.autopilot.min_quorum, Some(3));
        let over =
            read(json!({"autopilot": {"server_stabilization_time": "30s", "min_quorum": 5}}))
                .expect("read");
        base.merge(over);
        assert_eq!(base.autopilot.min_quorum, Some(5));
        assert_eq!(base.autopilot.max_trailing_logs, Some(100));
        assert_eq!(
            base.autopilot.server_stabilization_time,
            Some(Duration::from_secs(30))
        );
        let err = read(json!({"autopilot": {"max_trailing_logs": -1}})).expect_err("negative");
        assert!(
            err.to_string().contains("autopilot.max_trailing_logs"),
            "{err}"
        );
    }

    #[test]
    fn merge_overrides_scalars_and_appends_lists() {
        let mut base =
            read(json!({"node_name": "a", "retry_join": ["x"], "node_meta": {"k": "1"}}))
                .expect("read");
        let over = read(json!({"node_name": "b", "retry_join": ["y"], "node_meta": {"j": "2"}}))
            .expect("read");
        base.merge(over);
        assert_eq!(base.node_name.as_deref(), Some("b"));
        assert_eq!(base.retry_join, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(base.node_meta.len(), 2);
    }
}
