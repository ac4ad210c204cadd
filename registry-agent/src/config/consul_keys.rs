//! Consul's agent configuration keys that the registry accepts but does not act on (yet), with
//! their types and the reason. A file may use any of them: its value is type-checked as Consul
//! checks it, dropped, and named in one warning at start. Keys that are neither here nor in
//! the supported schema ([`super::schema`]) are errors, as in Consul.
//!
//! The list follows the `mapstructure` keys of Consul's `agent/config/config.go` (including the
//! deprecated top-level TLS and ACL keys of `deprecated.go`, the Enterprise-only keys that
//! Consul CE accepts, and the internal tuning keys).

use serde_json::Value;

/// The type Consul decodes a key's value into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `bool`.
    Bool,
    /// An integer.
    Int,
    /// A number.
    Float,
    /// A string.
    Str,
    /// A Go duration string (`"10s"`).
    Dur,
    /// A list of strings.
    StrList,
    /// An object with free-form keys.
    Map,
    /// A list of objects with free-form keys.
    ObjList,
}

impl Kind {
    /// Consul's type name, for messages and the reference.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Str => "string",
            Kind::Dur => "duration",
            Kind::StrList => "[]string",
            Kind::Map => "map",
            Kind::ObjList => "[]object",
        }
    }

    /// Checks a value as Consul's decoder would; the message follows mapstructure's.
    pub(crate) fn check(self, v: &Value) -> Result<(), String> {
        let got = match v {
            Value::Null => "nil",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float64",
            Value::Number(_) => "int",
            Value::String(_) => "string",
            Value::Array(_) => "slice",
            Value::Object(_) => "map",
        };
        let ok = match (self, v) {
            (Kind::Bool, Value::Bool(_)) => true,
            (Kind::Int, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            (Kind::Float, Value::Number(_)) => true,
            (Kind::Str, Value::String(_)) => true,
            (Kind::Dur, Value::String(s)) => {
                return super::duration::parse_duration(s)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
            }
            (Kind::StrList, Value::Array(items)) => items.iter().all(Value::is_string),
            // HCL writes a one-element list for a single value, and Consul takes a single
            // string for a list too.
            (Kind::StrList, Value::String(_)) => true,
            (Kind::Map, Value::Object(_)) => true,
            (Kind::Map, Value::Array(items)) => items.iter().all(Value::is_object),
            (Kind::ObjList, Value::Object(_)) => true,
            (Kind::ObjList, Value::Array(items)) => items.iter().all(|i| i.is_object()),
            // A one-element list from HCL for a scalar.
            (_, Value::Array(items)) if items.len() == 1 => return self.check(&items[0]),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected type '{}', got unconvertible type '{got}'",
                self.name()
            ))
        }
    }
}

use Kind::*;

/// Every accepted-and-ignored key, dotted, with its type. A key under a block is listed with
/// its full path; the blocks themselves are implied.
pub(crate) const IGNORED: &[(&str, Kind)] = &[
    // Top level.
    ("advertise_addr_ipv4", Str),
    ("advertise_addr_ipv6", Str),
    ("advertise_addr_wan_ipv4", Str),
    ("advertise_addr_wan_ipv6", Str),
    ("advertise_reconnect_timeout", Dur),
    ("alt_domain", Str),
    ("auto_reload_config", Bool),
    ("check_output_max_size", Int),
    ("check_update_interval", Dur),
    ("default_query_time", Dur),
    ("disable_anonymous_signature", Bool),
    ("disable_coordinates", Bool),
    ("disable_host_node_id", Bool),
    ("disable_http_unprintable_char_filter", Bool),
    ("disable_remote_exec", Bool),
    ("disable_update_check", Bool),
    ("discard_check_output", Bool),
    ("discovery_max_stale", Dur),
    ("enable_agent_tls_for_checks", Bool),
    ("enable_central_service_config", Bool),
    ("enable_debug", Bool),
    ("enable_local_script_checks", Bool),
    ("license_path", Str),
    ("log_sublevels", Map),
    ("max_query_time", Dur),
    ("pid_file", Str),
    ("primary_gateways", StrList),
    ("primary_gateways_interval", Dur),
    ("protocol", Int),
    ("raft_protocol", Int),
    ("reconnect_timeout_wan", Dur),
    ("retry_interval_wan", Dur),
    ("retry_max_wan", Int),
    ("serf_lan", Str),
    ("serf_lan_allowed_cidrs", StrList),
    ("serf_wan", Str),
    ("serf_wan_allowed_cidrs", StrList),
    ("server_name", Str),
    ("session_ttl_min", Dur),
    ("snapshot_agent", Map),
    ("tagged_addresses", Map),
    ("ui_content_path", Str),
    ("ui_dir", Str),
    ("watches", ObjList),
    // Deprecated top-level TLS key (the ACL ones are mapped onto `acl`, see `super::acl`).
    ("tls_prefer_server_cipher_suites", Bool),
    // Enterprise-only keys (Consul CE accepts them with a warning).
    ("non_voting_server", Bool),
    ("read_replica", Bool),
    ("segment", Str),
    ("segments", ObjList),
    ("partition", Str),
    ("audit.enabled", Bool),
    ("audit.sink", Map),
    ("reporting.license.enabled", Bool),
    // Internal tuning keys.
    ("ae_interval", Dur),
    ("build_date", Str),
    ("check_deregister_interval_min", Dur),
    ("check_reap_interval", Dur),
    ("license_poll_base_time", Dur),
    ("license_poll_max_time", Dur),
    ("license_update_base_time", Dur),
    ("license_update_max_time", Dur),
    ("revision", Str),
    ("segment_limit", Int),
    ("segment_name_limit", Int),
    ("sync_coordinate_interval_min", Dur),
    ("sync_coordinate_rate_target", Float),
    ("version", Str),
    ("version_metadata", Str),
    ("version_prerelease", Str),
    ("consul.coordinate.update_batch_size", Int),
    ("consul.coordinate.update_max_batches", Int),
    ("consul.coordinate.update_period", Dur),
    ("consul.raft.election_timeout", Dur),
    ("consul.raft.heartbeat_timeout", Dur),
    ("consul.raft.leader_lease_timeout", Dur),
    ("consul.server.health_interval", Dur),
    // acl { }.
    ("acl.msp_disable_bootstrap", Bool),
    ("acl.tokens.managed_service_provider", ObjList),
    // addresses { }.
    ("addresses.dns", Str),
    ("addresses.grpc", Str),
    ("addresses.grpc_tls", Str),
    ("addresses.http", Str),
    ("addresses.https", Str),
    // auto_config { }, auto_encrypt { }.
    ("auto_config.authorization.enabled", Bool),
    ("auto_config.authorization.static", Map),
    ("auto_config.dns_sans", StrList),
    ("auto_config.enabled", Bool),
    ("auto_config.intro_token", Str),
    ("auto_config.intro_token_file", Str),
    ("auto_config.ip_sans", StrList),
    ("auto_config.server_addresses", StrList),
    ("auto_encrypt.allow_tls", Bool),
    ("auto_encrypt.dns_san", StrList),
    ("auto_encrypt.ip_san", StrList),
    ("auto_encrypt.tls", Bool),
    // cache { }, cloud { }, config_entries { }.
    ("cache.entry_fetch_max_burst", Int),
    ("cache.entry_fetch_rate", Float),
    ("cloud.auth_url", Str),
    ("cloud.client_id", Str),
    ("cloud.client_secret", Str),
    ("cloud.hostname", Str),
    ("cloud.resource_id", Str),
    ("cloud.scada_address", Str),
    ("config_entries.bootstrap", ObjList),
    // connect { }.
    ("connect.ca_config", Map),
    ("connect.ca_provider", Str),
    ("connect.enable_mesh_gateway_wan_federation", Bool),
    ("connect.enabled", Bool),
    ("connect.test_ca_leaf_root_change_spread", Dur),
    // dns_config { } beyond what the DNS server reads.
    ("dns_config.cache_max_age", Dur),
    ("dns_config.disable_compression", Bool),
    ("dns_config.enable_additional_node_meta_txt", Bool),
    ("dns_config.prefer_namespace", Bool),
    ("dns_config.recursor_strategy", Str),
    ("dns_config.recursor_timeout", Dur),
    ("dns_config.soa", Map),
    ("dns_config.use_cache", Bool),
    // gossip_lan { }, gossip_wan { }.
    ("gossip_wan.gossip_interval", Dur),
    ("gossip_wan.gossip_nodes", Int),
    ("gossip_wan.probe_interval", Dur),
    ("gossip_wan.probe_timeout", Dur),
    ("gossip_wan.retransmit_mult", Int),
    ("gossip_wan.suspicion_mult", Int),
    // http_config { }.
    ("http_config.allow_write_http_from", StrList),
    ("http_config.block_endpoints", StrList),
    ("http_config.max_header_bytes", Int),
    ("http_config.response_headers", Map),
    ("http_config.use_cache", Bool),
    // limits { }.
    ("limits.kv_max_value_size", Int),
    ("limits.rpc_client_timeout", Dur),
    ("limits.rpc_max_burst", Int),
    ("limits.rpc_rate", Float),
    ("limits.txn_max_req_len", Int),
    // locality { }, peering { }.
    ("locality.region", Str),
    ("locality.zone", Str),
    ("peering.enabled", Bool),
    ("peering.test_allow_peer_registrations", Bool),
    // performance { } and ports { } beyond what is served.
    ("performance.leave_drain_time", Dur),
    ("performance.rpc_hold_timeout", Dur),
    ("ports.expose_max_port", Int),
    ("ports.expose_min_port", Int),
    ("ports.grpc_tls", Int),
    ("ports.proxy_max_port", Int),
    ("ports.proxy_min_port", Int),
    ("ports.sidecar_max_port", Int),
    ("ports.sidecar_min_port", Int),
    // raft_logstore { }, rpc { }.
    ("raft_logstore.backend", Str),
    ("raft_logstore.boltdb.no_freelist_sync", Bool),
    ("raft_logstore.disable_log_cache", Bool),
    ("raft_logstore.verification.enabled", Bool),
    ("raft_logstore.verification.interval", Dur),
    ("raft_logstore.wal.segment_size_mb", Int),
    ("rpc.enable_streaming", Bool),
    // telemetry { } beyond Prometheus.
    ("telemetry.circonus_api_app", Str),
    ("telemetry.circonus_api_token", Str),
    ("telemetry.circonus_api_url", Str),
    ("telemetry.circonus_broker_id", Str),
    ("telemetry.circonus_broker_select_tag", Str),
    ("telemetry.circonus_check_display_name", Str),
    ("telemetry.circonus_check_force_metric_activation", Str),
    ("telemetry.circonus_check_id", Str),
    ("telemetry.circonus_check_instance_id", Str),
    ("telemetry.circonus_check_search_tag", Str),
    ("telemetry.circonus_check_tags", Str),
    ("telemetry.circonus_submission_interval", Str),
    ("telemetry.circonus_submission_url", Str),
    ("telemetry.disable_compat_1.9", Bool),
    ("telemetry.enable_host_metrics", Bool),
    ("telemetry.retry_failed_connection", Bool),
    ("telemetry.statsite_address", Str),
    // tls { defaults, internal_rpc, https, grpc }.
    ("tls.defaults.use_auto_cert", Bool),
    ("tls.grpc.use_auto_cert", Bool),
    ("tls.https.use_auto_cert", Bool),
    ("tls.internal_rpc.use_auto_cert", Bool),
    // unix_sockets { }, xds { }.
    ("unix_sockets.group", Str),
    ("unix_sockets.mode", Str),
    ("unix_sockets.user", Str),
    ("xds.update_max_per_second", Float),
];

/// Why the keys under `path` are accepted but not acted on.
pub(crate) fn reason(path: &str) -> &'static str {
    let first = path.split('.').next().unwrap_or(path);
    match first {
        "acl" => "this ACL setting has no effect here",
        "tls"
        | "ca_file"
        | "ca_path"
        | "cert_file"
        | "key_file"
        | "tls_cipher_suites"
        | "tls_min_version"
        | "tls_prefer_server_cipher_suites"
        | "verify_incoming"
        | "verify_incoming_https"
        | "verify_incoming_rpc"
        | "verify_outgoing"
        | "verify_server_hostname"
        | "auto_encrypt"
        | "enable_agent_tls_for_checks"
        | "auto_config" => "TLS is not implemented: every listener is plain TCP",
        "connect"
        | "peering"
        | "xds"
        | "config_entries"
        | "primary_gateways"
        | "primary_gateways_interval" => {
            "service mesh (Connect), peering and mesh gateways are not implemented"
        }
        "ports" if path.contains("https") || path.contains("grpc_tls") => {
            "TLS listeners are not implemented (a port of -1 is what disables them)"
        }
        "ports" => "sidecar, expose and proxy port ranges only matter to the service mesh",
        "addresses" => "every listener binds to client_addr",
        "telemetry" => {
            "metrics are exported at /v1/agent/metrics (JSON, Prometheus) and to statsd or DogStatsD only"
        }
        "gossip_lan"
        | "gossip_wan"
        | "serf_lan"
        | "serf_wan"
        | "serf_lan_allowed_cidrs"
        | "serf_wan_allowed_cidrs"
        | "advertise_reconnect_timeout"
        | "reconnect_timeout"
        | "reconnect_timeout_wan" => "gossip timing and reaping are not tunable",
        "limits" | "http_config" => "request rate, size and connection limits are not enforced",
        "log_sublevels" => "one level applies to every subsystem",
        "audit" | "reporting" | "non_voting_server" | "read_replica" | "segment" | "segments"
        | "partition" | "license_path" => "a Consul Enterprise feature",
        "ae_interval"
        | "build_date"
        | "check_deregister_interval_min"
        | "check_reap_interval"
        | "license_poll_base_time"
        | "license_poll_max_time"
        | "license_update_base_time"
        | "license_update_max_time"
        | "revision"
        | "segment_limit"
        | "segment_name_limit"
        | "sync_coordinate_interval_min"
        | "sync_coordinate_rate_target"
        | "version"
        | "version_metadata"
        | "version_prerelease"
        | "consul" => "an internal Consul tuning key",
        "raft_logstore" | "raft_protocol" | "protocol" => {
            "the Raft log store and protocol are fixed (sled log, protocol 3)"
        }
        "cloud" => "HCP is not supported",
        "dns_config" | "alt_domain" => "this DNS option is not implemented yet",
        "performance" => "only raft_multiplier is used",
        "disable_coordinates" => "network coordinates are not computed",
        "disable_remote_exec" | "disable_update_check" | "disable_anonymous_signature" => {
            "the feature it turns off does not exist here"
        }
        "watches" => "watch handlers are not run; use blocking queries",
        "snapshot_agent" => "the snapshot agent is a separate Consul Enterprise program",
        "tagged_addresses"
        | "advertise_addr_wan_ipv4"
        | "advertise_addr_wan_ipv6"
        | "retry_interval_wan"
        | "retry_max_wan" => "this WAN setting is not implemented (docs/multi-dc.md)",
        _ => "accepted for compatibility; the feature is not implemented yet",
    }
}

/// Whether `path` is an ignored leaf (with its type) or a block holding ignored keys.
pub(crate) enum Found {
    /// A leaf of this type.
    Leaf(Kind),
    /// A block: its keys are looked up in turn.
    Block,
}

/// Looks `path` up in [`IGNORED`].
pub(crate) fn lookup(path: &str) -> Option<Found> {
    if let Some((_, kind)) = IGNORED.iter().find(|(p, _)| *p == path) {
        return Some(Found::Leaf(*kind));
    }
    let prefix = format!("{path}.");
    IGNORED
        .iter()
        .any(|(p, _)| p.starts_with(&prefix))
        .then_some(Found::Block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorted_within_blocks_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (p, _) in IGNORED {
            assert!(seen.insert(*p), "{p} twice");
        }
    }

    #[test]
    fn types_are_checked_as_consul_does() {
        assert!(Kind::Bool.check(&json!(true)).is_ok());
        assert_eq!(
            Kind::Bool.check(&json!("true")).unwrap_err(),
            "expected type 'bool', got unconvertible type 'string'"
        );
        assert!(Kind::Int.check(&json!(-1)).is_ok());
        assert!(Kind::Int.check(&json!(1.5)).is_err());
        assert!(Kind::Dur.check(&json!("10s")).is_ok());
        assert!(Kind::Dur.check(&json!("ten")).is_err());
        assert!(Kind::StrList.check(&json!(["a"])).is_ok());
        assert!(Kind::StrList.check(&json!([1])).is_err());
        assert!(
            Kind::Str.check(&json!(["one"])).is_ok(),
            "HCL's one-element list"
        );
    }

    #[test]
    fn blocks_and_leaves() {
        assert!(matches!(lookup("audit"), Some(Found::Block)));
        assert!(matches!(lookup("acl.tokens"), Some(Found::Block)));
        assert!(matches!(
            lookup("acl.tokens.managed_service_provider"),
            Some(Found::Leaf(Kind::ObjList))
        ));
        assert!(matches!(
            lookup("ports.grpc_tls"),
            Some(Found::Leaf(Kind::Int))
        ));
        assert!(lookup("ports.htps").is_none());
        assert!(lookup("nonsense").is_none());
    }
}
