//! The keys a configuration file may contain, and the normalisation that gives JSON and HCL
//! files one shape: repeated HCL blocks of a single-object key (`ports { }` twice) are merged,
//! list keys (`service`, `checks`) always hold an array of objects, and an unknown key is an
//! error that names the key and the file.

use super::consul_keys::{self, Found};
use super::error::ConfigError;
use serde_json::{Map, Value};

/// How the value of a known key is shaped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// A scalar or a list of scalars; its type is checked when the value is read.
    Scalar,
    /// An object with known keys of its own.
    Block(&'static [(&'static str, Shape)]),
    /// An object with free-form keys (`node_meta`, `ui_config`).
    Map,
    /// A list of objects kept as JSON (`service`, `services`, `check`, `checks`).
    List,
}

const PORTS: &[(&str, Shape)] = &[
    ("http", Shape::Scalar),
    ("dns", Shape::Scalar),
    ("server", Shape::Scalar),
    ("serf_lan", Shape::Scalar),
    ("serf_wan", Shape::Scalar),
    ("grpc", Shape::Scalar),
    ("https", Shape::Scalar),
];

const TLS_LISTENER: &[(&str, Shape)] = &[
    ("ca_file", Shape::Scalar),
    ("ca_path", Shape::Scalar),
    ("cert_file", Shape::Scalar),
    ("key_file", Shape::Scalar),
    ("tls_min_version", Shape::Scalar),
    ("tls_cipher_suites", Shape::Scalar),
    ("verify_incoming", Shape::Scalar),
    ("verify_outgoing", Shape::Scalar),
    ("verify_server_hostname", Shape::Scalar),
];

const TLS: &[(&str, Shape)] = &[
    ("defaults", Shape::Block(TLS_LISTENER)),
    ("internal_rpc", Shape::Block(TLS_LISTENER)),
    ("https", Shape::Block(TLS_LISTENER)),
    ("grpc", Shape::Block(TLS_LISTENER)),
];

const REQUEST_LIMITS: &[(&str, Shape)] = &[
    ("mode", Shape::Scalar),
    ("read_rate", Shape::Scalar),
    ("write_rate", Shape::Scalar),
];

const LIMITS: &[(&str, Shape)] = &[
    ("http_max_conns_per_client", Shape::Scalar),
    ("rpc_max_conns_per_client", Shape::Scalar),
    ("https_handshake_timeout", Shape::Scalar),
    ("rpc_handshake_timeout", Shape::Scalar),
    ("request_limits", Shape::Block(REQUEST_LIMITS)),
];

const DNS_CONFIG: &[(&str, Shape)] = &[
    ("allow_stale", Shape::Scalar),
    ("max_stale", Shape::Scalar),
    ("node_ttl", Shape::Scalar),
    ("service_ttl", Shape::Map),
    ("only_passing", Shape::Scalar),
    ("udp_answer_limit", Shape::Scalar),
    ("a_record_limit", Shape::Scalar),
    ("enable_truncate", Shape::Scalar),
];

const GOSSIP_LAN: &[(&str, Shape)] = &[
    ("gossip_interval", Shape::Scalar),
    ("gossip_nodes", Shape::Scalar),
    ("probe_interval", Shape::Scalar),
    ("probe_timeout", Shape::Scalar),
    ("retransmit_mult", Shape::Scalar),
    ("suspicion_mult", Shape::Scalar),
];

const PERFORMANCE: &[(&str, Shape)] = &[("raft_multiplier", Shape::Scalar)];

const AUTOPILOT: &[(&str, Shape)] = &[
    ("cleanup_dead_servers", Shape::Scalar),
    ("last_contact_threshold", Shape::Scalar),
    ("max_trailing_logs", Shape::Scalar),
    ("min_quorum", Shape::Scalar),
    ("server_stabilization_time", Shape::Scalar),
    ("redundancy_zone_tag", Shape::Scalar),
    ("disable_upgrade_migration", Shape::Scalar),
    ("upgrade_version_tag", Shape::Scalar),
];

const TELEMETRY: &[(&str, Shape)] = &[
    ("prometheus_retention_time", Shape::Scalar),
    ("disable_hostname", Shape::Scalar),
    ("metrics_prefix", Shape::Scalar),
    ("filter_default", Shape::Scalar),
    ("prefix_filter", Shape::Scalar),
    ("statsd_address", Shape::Scalar),
    ("dogstatsd_addr", Shape::Scalar),
    ("dogstatsd_tags", Shape::Scalar),
];

const ACL_TOKENS: &[(&str, Shape)] = &[
    ("initial_management", Shape::Scalar),
    ("master", Shape::Scalar),
    ("agent", Shape::Scalar),
    ("agent_recovery", Shape::Scalar),
    ("agent_master", Shape::Scalar),
    ("default", Shape::Scalar),
    ("replication", Shape::Scalar),
    ("config_file_service_registration", Shape::Scalar),
];

const ACL: &[(&str, Shape)] = &[
    ("enabled", Shape::Scalar),
    ("default_policy", Shape::Scalar),
    ("down_policy", Shape::Scalar),
    ("enable_token_persistence", Shape::Scalar),
    ("enable_token_replication", Shape::Scalar),
    ("enable_key_list_policy", Shape::Scalar),
    ("token_ttl", Shape::Scalar),
    ("policy_ttl", Shape::Scalar),
    ("role_ttl", Shape::Scalar),
    ("tokens", Shape::Block(ACL_TOKENS)),
];

/// Every key accepted at the top level of a configuration file.
pub(crate) const TOP_LEVEL: &[(&str, Shape)] = &[
    ("node_name", Shape::Scalar),
    ("node_id", Shape::Scalar),
    ("datacenter", Shape::Scalar),
    ("data_dir", Shape::Scalar),
    ("client_addr", Shape::Scalar),
    ("bind_addr", Shape::Scalar),
    ("advertise_addr", Shape::Scalar),
    ("ports", Shape::Block(PORTS)),
    ("server", Shape::Scalar),
    ("bootstrap", Shape::Scalar),
    ("bootstrap_expect", Shape::Scalar),
    ("retry_join", Shape::Scalar),
    ("retry_join_wan", Shape::Scalar),
    ("start_join_wan", Shape::Scalar),
    ("advertise_addr_wan", Shape::Scalar),
    ("translate_wan_addrs", Shape::Scalar),
    ("start_join", Shape::Scalar),
    ("retry_interval", Shape::Scalar),
    ("retry_max", Shape::Scalar),
    ("log_level", Shape::Scalar),
    ("log_json", Shape::Scalar),
    ("log_file", Shape::Scalar),
    ("log_rotate_bytes", Shape::Scalar),
    ("log_rotate_duration", Shape::Scalar),
    ("log_rotate_max_files", Shape::Scalar),
    ("enable_syslog", Shape::Scalar),
    ("syslog_facility", Shape::Scalar),
    ("domain", Shape::Scalar),
    ("node_meta", Shape::Map),
    ("ui", Shape::Scalar),
    ("ui_config", Shape::Map),
    ("enable_script_checks", Shape::Scalar),
    ("use_streaming_backend", Shape::Scalar),
    ("encrypt", Shape::Scalar),
    ("encrypt_verify_incoming", Shape::Scalar),
    ("encrypt_verify_outgoing", Shape::Scalar),
    ("disable_keyring_file", Shape::Scalar),
    ("dns_config", Shape::Block(DNS_CONFIG)),
    ("recursors", Shape::Scalar),
    ("raft_snapshot_threshold", Shape::Scalar),
    ("raft_snapshot_interval", Shape::Scalar),
    ("raft_trailing_logs", Shape::Scalar),
    ("performance", Shape::Block(PERFORMANCE)),
    ("gossip_lan", Shape::Block(GOSSIP_LAN)),
    ("reconnect_timeout", Shape::Scalar),
    ("leave_on_terminate", Shape::Scalar),
    ("skip_leave_on_interrupt", Shape::Scalar),
    ("rejoin_after_leave", Shape::Scalar),
    ("autopilot", Shape::Block(AUTOPILOT)),
    ("acl", Shape::Block(ACL)),
    ("primary_datacenter", Shape::Scalar),
    // Deprecated top-level ACL keys, mapped onto `acl { }` (see `super::acl`).
    ("acl_agent_master_token", Shape::Scalar),
    ("acl_agent_token", Shape::Scalar),
    ("acl_datacenter", Shape::Scalar),
    ("acl_default_policy", Shape::Scalar),
    ("acl_down_policy", Shape::Scalar),
    ("acl_enable_key_list_policy", Shape::Scalar),
    ("acl_master_token", Shape::Scalar),
    ("acl_replication_token", Shape::Scalar),
    ("acl_token", Shape::Scalar),
    ("acl_ttl", Shape::Scalar),
    ("enable_acl_replication", Shape::Scalar),
    ("telemetry", Shape::Block(TELEMETRY)),
    ("tls", Shape::Block(TLS)),
    ("limits", Shape::Block(LIMITS)),
    ("ca_file", Shape::Scalar),
    ("ca_path", Shape::Scalar),
    ("cert_file", Shape::Scalar),
    ("key_file", Shape::Scalar),
    ("tls_cipher_suites", Shape::Scalar),
    ("tls_min_version", Shape::Scalar),
    ("verify_incoming", Shape::Scalar),
    ("verify_incoming_https", Shape::Scalar),
    ("verify_incoming_rpc", Shape::Scalar),
    ("verify_outgoing", Shape::Scalar),
    ("verify_server_hostname", Shape::Scalar),
    ("service", Shape::List),
    ("services", Shape::List),
    ("check", Shape::List),
    ("checks", Shape::List),
];

/// Checks the keys of a parsed file and brings its values into one shape. Also returns the
/// keys Consul knows that are accepted and ignored ([`consul_keys`]), dotted, in file order.
pub(crate) fn normalize(
    value: Value,
    origin: &str,
) -> Result<(Map<String, Value>, Vec<String>), ConfigError> {
    let mut ignored = Vec::new();
    match value {
        Value::Object(map) => {
            let out = normalize_object(map, TOP_LEVEL, "", origin, &mut ignored)?;
            Ok((out, ignored))
        }
        _ => Err(ConfigError::Parse {
            origin: origin.to_string(),
            message: "the top level must be an object".to_string(),
        }),
    }
}

/// A key the registry does not act on: type-checked, recorded, dropped. `Err` for a key
/// Consul does not know either.
fn ignored_key(
    value: Value,
    path: &str,
    origin: &str,
    ignored: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownKey {
        key: path.to_string(),
        origin: origin.to_string(),
    };
    match consul_keys::lookup(path).ok_or_else(unknown)? {
        Found::Leaf(kind) => {
            kind.check(&value)
                .map_err(|reason| ConfigError::InvalidValue {
                    key: path.to_string(),
                    origin: origin.to_string(),
                    reason,
                })?;
            ignored.push(path.to_string());
            Ok(())
        }
        Found::Block => {
            for (key, inner) in merge_objects(value, path, origin)? {
                ignored_key(inner, &format!("{path}.{key}"), origin, ignored)?;
            }
            Ok(())
        }
    }
}

fn normalize_object(
    map: Map<String, Value>,
    keys: &[(&str, Shape)],
    prefix: &str,
    origin: &str,
    ignored: &mut Vec<String>,
) -> Result<Map<String, Value>, ConfigError> {
    let mut out = Map::new();
    for (key, value) in map {
        let path = format!("{prefix}{key}");
        let Some(shape) = keys
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, shape)| *shape)
        else {
            ignored_key(value, &path, origin, ignored)?;
            continue;
        };
        let normalized = match shape {
            Shape::Scalar => value,
            Shape::Map => Value::Object(merge_objects(value, &path, origin)?),
            Shape::Block(inner) => {
                let merged = merge_objects(value, &path, origin)?;
                Value::Object(normalize_object(
                    merged,
                    inner,
                    &format!("{path}."),
                    origin,
                    ignored,
                )?)
            }
            Shape::List => Value::Array(
                object_list(value, &path, origin)?
                    .into_iter()
                    .map(normalize_definition)
                    .collect(),
            ),
        };
        out.insert(key, normalized);
    }
    Ok(out)
}

/// An object, or the merge (later keys win) of an array of objects from repeated blocks.
fn merge_objects(value: Value, key: &str, origin: &str) -> Result<Map<String, Value>, ConfigError> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Array(items) => {
            let mut merged = Map::new();
            for item in items {
                merged.extend(merge_objects(item, key, origin)?);
            }
            Ok(merged)
        }
        _ => Err(ConfigError::InvalidValue {
            key: key.to_string(),
            origin: origin.to_string(),
            reason: "expected an object".to_string(),
        }),
    }
}

/// A list of objects from an object, an array of objects, or nested arrays of them.
fn object_list(value: Value, key: &str, origin: &str) -> Result<Vec<Value>, ConfigError> {
    match value {
        Value::Object(map) => Ok(vec![Value::Object(map)]),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(object_list(item, key, origin)?);
            }
            Ok(out)
        }
        _ => Err(ConfigError::InvalidValue {
            key: key.to_string(),
            origin: origin.to_string(),
            reason: "expected an object or a list of objects".to_string(),
        }),
    }
}

/// Inside a service or check definition: `checks` is always an array, and repeated `check`
/// blocks move into `checks`.
fn normalize_definition(value: Value) -> Value {
    let Value::Object(mut map) = value else {
        return value;
    };
    let mut checks = match map.remove("checks") {
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    match map.remove("check") {
        Some(Value::Array(items)) => checks.extend(items),
        Some(single) => {
            map.insert("check".to_string(), single);
        }
        None => {}
    }
    if !checks.is_empty() {
        map.insert("checks".to_string(), Value::Array(checks));
    }
    Value::Object(map)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_top_level_key_is_named() {
        let err = normalize(json!({"foo": 1}), "/etc/x.json").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "config: unknown key \"foo\" in /etc/x.json"
        );
    }

    #[test]
    fn unknown_nested_key_is_dotted() {
        let err = normalize(json!({"ports": {"htp": 1}}), "f.hcl").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "config: unknown key \"ports.htp\" in f.hcl"
        );
    }

    #[test]
    fn repeated_blocks_merge_and_lists_wrap() {
        let value = json!({
            "ports": [{"http": 1}, {"dns": 2}],
            "service": {"name": "web", "checks": {"ttl": "5s"}},
            "checks": [[{"id": "a"}], {"id": "b"}]
        });
        let (map, _) = normalize(value, "x").expect("normalize");
        assert_eq!(map["ports"], json!({"http": 1, "dns": 2}));
        assert_eq!(
            map["service"],
            json!([{"name": "web", "checks": [{"ttl": "5s"}]}])
        );
        assert_eq!(map["checks"], json!([{"id": "a"}, {"id": "b"}]));
    }

    #[test]
    fn repeated_check_blocks_move_into_checks() {
        let value = json!({"service": {"name": "w", "check": [{"ttl": "1s"}, {"ttl": "2s"}]}});
        let (map, _) = normalize(value, "x").expect("normalize");
        assert_eq!(
            map["service"],
            json!([{"name": "w", "checks": [{"ttl": "1s"}, {"ttl": "2s"}]}])
        );
    }

    #[test]
    fn consul_keys_are_accepted_typed_and_listed() {
        let value = json!({
            "ports": {"http": 1, "https": -1, "grpc_tls": -1},
            "audit": {"enabled": true},
            "limits": {"http_max_conns_per_client": 200},
            "log_sublevels": {"raft": "warn"},
            "tls": {"https": {"verify_incoming": true}}
        });
        let (map, ignored) = normalize(value, "x").expect("normalize");
        assert_eq!(map["ports"], json!({"http": 1, "https": -1}));
        assert!(map.get("audit").is_none());
        assert_eq!(
            ignored,
            ["ports.grpc_tls", "audit.enabled", "log_sublevels"]
        );
        let err = normalize(json!({"audit": {"enabled": "yes"}}), "f.json").expect_err("type");
        assert_eq!(
            err.to_string(),
            "config: invalid value for \"audit.enabled\" in f.json: expected type 'bool', got unconvertible type 'string'"
        );
        let err = normalize(json!({"audit": {"enabeld": true}}), "f.json").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "config: unknown key \"audit.enabeld\" in f.json"
        );
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        assert!(normalize(json!({"ports": 5}), "x").is_err());
        assert!(normalize(json!({"services": "web"}), "x").is_err());
        assert!(normalize(json!([1]), "x").is_err());
    }
}
