//! `tls { defaults { }, internal_rpc { }, https { }, grpc { } }` and Consul's legacy
//! top-level TLS keys (`ca_file`, `cert_file`, `key_file`, `verify_incoming`,
//! `verify_incoming_rpc`, `verify_incoming_https`, `verify_outgoing`,
//! `verify_server_hostname`, `tls_min_version`, `tls_cipher_suites`): read from a file, merged
//! key by key, and validated into the server's `TlsConfig`.
//!
//! As in Consul, the legacy keys are the defaults of every listener (`verify_incoming_rpc` and
//! `verify_incoming_https` of one, `verify_server_hostname` of internal RPC), `tls.defaults`
//! comes over them, and each listener's own block over that.

use super::error::ConfigError;
use registry_server::tls::{ListenerTls, TlsConfig, TlsVersion};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The legacy top-level keys and the listener key each one sets (`*` for every listener).
const LEGACY: &[(&str, &str, &str)] = &[
    ("ca_file", "*", "ca_file"),
    ("ca_path", "*", "ca_path"),
    ("cert_file", "*", "cert_file"),
    ("key_file", "*", "key_file"),
    ("tls_min_version", "*", "tls_min_version"),
    ("tls_cipher_suites", "*", "tls_cipher_suites"),
    ("verify_incoming", "*", "verify_incoming"),
    ("verify_outgoing", "*", "verify_outgoing"),
    ("verify_incoming_rpc", "internal_rpc", "verify_incoming"),
    ("verify_incoming_https", "https", "verify_incoming"),
    (
        "verify_server_hostname",
        "internal_rpc",
        "verify_server_hostname",
    ),
];

/// The TLS keys as written, flattened (`legacy.<key>`, `<block>.<key>`), last file wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialTls {
    values: Map<String, Value>,
}

impl PartialTls {
    /// Reads the `tls` block and the legacy keys of a normalised file.
    pub fn from_map(map: &Map<String, Value>, origin: &str) -> Result<Self, ConfigError> {
        let mut values = Map::new();
        for (key, _, _) in LEGACY {
            if let Some(v) = map.get(*key) {
                values.insert(format!("legacy.{key}"), v.clone());
            }
        }
        if let Some(tls) = map.get("tls") {
            let Value::Object(tls) = tls else {
                return Err(ConfigError::invalid(format!(
                    "{origin}: tls must be a block"
                )));
            };
            for (block, inner) in tls {
                if let Value::Object(inner) = inner {
                    for (k, v) in inner {
                        values.insert(format!("{block}.{k}"), v.clone());
                    }
                }
            }
        }
        Ok(PartialTls { values })
    }

    /// Lays `other` over `self`.
    pub fn merge(&mut self, other: PartialTls) {
        self.values.extend(other.values);
    }

    /// The value of `key` for listener `name`: its block, else `tls.defaults`, else the
    /// legacy key that sets it.
    fn get(&self, name: &str, key: &str) -> Option<&Value> {
        let own = self.values.get(&format!("{name}.{key}"));
        let defaults = self.values.get(&format!("defaults.{key}"));
        let legacy = LEGACY
            .iter()
            .rev()
            .filter(|(_, to, k)| *k == key && (*to == "*" || *to == name))
            .find_map(|(old, _, _)| self.values.get(&format!("legacy.{old}")));
        [own, defaults, legacy]
            .into_iter()
            .flatten()
            .find(|v| !v.is_null())
    }

    fn string(&self, name: &str, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(name, key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Ok(a[0].as_str().map(str::to_string))
            }
            Some(v) => Err(ConfigError::invalid(format!(
                "tls.{name}.{key}: expected a string, got {v}"
            ))),
        }
    }

    fn bool(&self, name: &str, key: &str) -> Result<bool, ConfigError> {
        match self.get(name, key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(v) => Err(ConfigError::invalid(format!(
                "tls.{name}.{key}: expected a boolean, got {v}"
            ))),
        }
    }

    fn listener(&self, name: &str) -> Result<ListenerTls, ConfigError> {
        let path = |k: &str| -> Result<Option<PathBuf>, ConfigError> {
            Ok(self.string(name, k)?.map(PathBuf::from))
        };
        let min_version = TlsVersion::parse(
            self.string(name, "tls_min_version")?
                .as_deref()
                .unwrap_or(""),
        )
        .map_err(|e| ConfigError::invalid(format!("tls.{name}: {e}")))?;
        let cipher_suites = self
            .string(name, "tls_cipher_suites")?
            .map(|s| {
                s.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(ListenerTls {
            ca_file: path("ca_file")?,
            ca_path: path("ca_path")?,
            cert_file: path("cert_file")?,
            key_file: path("key_file")?,
            verify_incoming: self.bool(name, "verify_incoming")?,
            verify_outgoing: self.bool(name, "verify_outgoing")?,
            verify_server_hostname: name == "internal_rpc"
                && self.bool(name, "verify_server_hostname")?,
            min_version,
            cipher_suites,
        })
    }

    /// The validated configuration; `datacenter` and `domain` give the server name
    /// (`server.<datacenter>.<domain>`).
    pub fn build(&self, datacenter: &str, domain: &str) -> Result<TlsConfig, ConfigError> {
        let mut internal_rpc = self.listener("internal_rpc")?;
        // Consul: verify_server_hostname implies verify_outgoing.
        internal_rpc.verify_outgoing |= internal_rpc.verify_server_hostname;
        let cfg = TlsConfig {
            internal_rpc,
            https: self.listener("https")?,
            grpc: self.listener("grpc")?,
            server_name: format!(
                "server.{datacenter}.{}",
                domain.trim_end_matches('.').trim_start_matches('.')
            ),
        };
        cfg.validate()
            .map_err(|e| ConfigError::invalid(e.to_string()))?;
        Ok(cfg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> PartialTls {
        PartialTls::from_map(v.as_object().unwrap(), "test").unwrap()
    }

    #[test]
    fn legacy_defaults_and_blocks_layer_as_consul() {
        let mut t = read(
            json!({"ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem",
            "verify_incoming_rpc": true, "verify_server_hostname": true}),
        );
        t.merge(read(
            json!({"tls": {"defaults": {"tls_min_version": "TLSv1_3"},
            "https": {"cert_file": "/h.pem", "key_file": "/hk.pem", "verify_incoming": false}}}),
        ));
        let c = t.build("dc1", "consul.").unwrap();
        assert_eq!(c.server_name, "server.dc1.consul");
        assert!(c.internal_rpc.verify_incoming && c.internal_rpc.verify_server_hostname);
        assert!(
            c.internal_rpc.verify_outgoing,
            "implied by verify_server_hostname"
        );
        assert!(!c.https.verify_incoming && !c.https.verify_server_hostname);
        assert_eq!(c.https.cert_file, Some(PathBuf::from("/h.pem")));
        assert_eq!(c.internal_rpc.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.https.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.grpc.min_version, TlsVersion::Tls13);
    }

    #[test]
    fn contradictions_are_refused() {
        let e = read(json!({"tls": {"defaults": {"verify_incoming": true}}}))
            .build("dc1", "consul")
            .unwrap_err();
        assert!(e.to_string().contains("no CA certificate"), "{e}");
        assert!(read(json!({"tls_min_version": "TLSv1_0"}))
            .build("dc1", "consul")
            .is_err());
        assert!(read(json!({"tls": {"https": {"cert_file": "/c"}}}))
            .build("dc1", "consul")
            .is_err());
        assert_eq!(
            read(json!({})).build("dc1", "consul").unwrap().https,
            ListenerTls::default()
        );
    }
}
