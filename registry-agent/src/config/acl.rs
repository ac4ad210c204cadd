//! `acl { enabled, default_policy, down_policy, enable_token_persistence,
//! enable_token_replication, tokens { ... } }` and `primary_datacenter`: read from a file,
//! merged key by key, and validated into the server's `AclConfig`.

use super::error::ConfigError;
use registry_server::acl::{AclConfig, AgentTokens};
use serde_json::{Map, Value};

/// The `acl` block as written (every key optional, so files merge).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialAcl {
    /// Every key seen, flattened (`tokens.agent`), last file wins.
    values: Map<String, Value>,
}

/// Consul's deprecated top-level ACL keys and the `acl` key each stands for.
const LEGACY: &[(&str, &str)] = &[
    ("acl_datacenter", "primary_datacenter"),
    ("acl_default_policy", "default_policy"),
    ("acl_down_policy", "down_policy"),
    ("acl_enable_key_list_policy", "enable_key_list_policy"),
    ("acl_ttl", "token_ttl"),
    ("acl_master_token", "tokens.initial_management"),
    ("acl_agent_master_token", "tokens.agent_recovery"),
    ("acl_agent_token", "tokens.agent"),
    ("acl_token", "tokens.default"),
    ("acl_replication_token", "tokens.replication"),
    ("enable_acl_replication", "enable_token_replication"),
];

impl PartialAcl {
    /// Reads `acl` and `primary_datacenter` from a normalised file.
    pub fn from_map(map: &Map<String, Value>, origin: &str) -> Result<Self, ConfigError> {
        let mut values = Map::new();
        // Consul's deprecated top-level keys first, so that `acl { }` in the same file wins.
        for (old, new) in LEGACY {
            if let Some(v) = map.get(*old) {
                values.insert((*new).into(), v.clone());
            }
        }
        // `acl_datacenter` turned ACLs on, and a replication token turned token
        // replication on (Consul's `deprecated.go`).
        if map.contains_key("acl_datacenter") {
            values.insert("enabled".into(), Value::Bool(true));
        }
        if map.contains_key("acl_replication_token") {
            values.insert("enable_token_replication".into(), Value::Bool(true));
        }
        if let Some(v) = map.get("primary_datacenter") {
            values.insert("primary_datacenter".into(), v.clone());
        }
        let Some(acl) = map.get("acl") else {
            return Ok(PartialAcl { values });
        };
        let Value::Object(acl) = acl else {
            return Err(ConfigError::invalid(format!(
                "{origin}: acl must be a block"
            )));
        };
        for (k, v) in acl {
            if k == "tokens" {
                if let Value::Object(t) = v {
                    for (tk, tv) in t {
                        values.insert(format!("tokens.{tk}"), tv.clone());
                    }
                }
            } else {
                values.insert(k.clone(), v.clone());
            }
        }
        Ok(PartialAcl { values })
    }

    /// Lays `other` over `self`.
    pub fn merge(&mut self, other: PartialAcl) {
        self.values.extend(other.values);
    }

    fn string(&self, key: &str) -> Result<String, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(ConfigError::invalid(format!(
                "acl.{key}: expected a string, got {v}"
            ))),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(v) => Err(ConfigError::invalid(format!(
                "acl.{key}: expected a boolean, got {v}"
            ))),
        }
    }

    /// The validated configuration.
    pub fn build(&self) -> Result<AclConfig, ConfigError> {
        let default_allow = match self.string("default_policy")?.as_str() {
            "" | "allow" => true,
            "deny" => false,
            other => {
                return Err(ConfigError::invalid(format!(
                    "Invalid ACL default policy: {other:?}"
                )))
            }
        };
        let down_policy = match self.string("down_policy")?.as_str() {
            "" => "extend-cache".to_string(),
            p @ ("allow" | "deny" | "extend-cache" | "async-cache") => p.to_string(),
            other => {
                return Err(ConfigError::invalid(format!(
                    "Invalid ACL down policy: {other:?}"
                )))
            }
        };
        let first = |a: &str, b: &str| -> Result<String, ConfigError> {
            let v = self.string(&format!("tokens.{a}"))?;
            if v.is_empty() {
                self.string(&format!("tokens.{b}"))
            } else {
                Ok(v)
            }
        };
        Ok(AclConfig {
            enabled: self.bool("enabled")?,
            default_allow,
            down_policy,
            enable_token_persistence: self.bool("enable_token_persistence")?,
            tokens: AgentTokens {
                initial_management: first("initial_management", "master")?,
                agent: self.string("tokens.agent")?,
                agent_recovery: first("agent_recovery", "agent_master")?,
                default: self.string("tokens.default")?,
                replication: self.string("tokens.replication")?,
            },
            primary_datacenter: self.string("primary_datacenter")?,
            enable_token_replication: self.bool("enable_token_replication")?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> PartialAcl {
        PartialAcl::from_map(v.as_object().unwrap(), "test").unwrap()
    }

    #[test]
    fn reads_merges_and_validates() {
        let mut a = read(json!({"acl": {"enabled": true, "default_policy": "deny",
            "tokens": {"initial_management": "root", "agent": "a1"}}}));
        a.merge(read(json!({"acl": {"tokens": {"agent": "a2"}}})));
        let c = a.build().unwrap();
        assert!(c.enabled && !c.default_allow);
        assert_eq!(c.tokens.initial_management, "root");
        assert_eq!(c.tokens.agent, "a2");
        assert_eq!(c.down_policy, "extend-cache");
        let old = read(
            json!({"acl_datacenter": "dc1", "acl_default_policy": "deny",
            "acl_master_token": "m", "acl_agent_token": "ag", "acl_token": "anon",
            "acl_replication_token": "r", "acl": {"tokens": {"agent": "new"}}}),
        )
        .build()
        .unwrap();
        assert!(old.enabled && !old.default_allow && old.enable_token_replication);
        assert_eq!(old.primary_datacenter, "dc1");
        assert_eq!(
            (
                old.tokens.initial_management.as_str(),
                old.tokens.agent.as_str(),
                old.tokens.default.as_str(),
                old.tokens.replication.as_str()
            ),
            ("m", "new", "anon", "r")
        );
        let legacy = read(json!({"acl": {"tokens": {"master": "m"}}}))
            .build()
            .unwrap();
        assert_eq!(legacy.tokens.initial_management, "m");
        assert!(!legacy.enabled && legacy.default_allow);
        assert!(read(json!({"acl": {"default_policy": "maybe"}}))
            .build()
            .is_err());
    }
}
