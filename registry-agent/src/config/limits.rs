//! `limits { http_max_conns_per_client, rpc_max_conns_per_client, https_handshake_timeout,
//! rpc_handshake_timeout, request_limits { mode, read_rate, write_rate } }`: read from a file,
//! merged key by key, and validated into the server's `Limits`.

use super::duration::parse_duration;
use super::error::ConfigError;
use registry_server::edge::rate::{Mode, RequestLimits};
use registry_server::edge::Limits;
use serde_json::{Map, Value};
use std::time::Duration;

/// The `limits` keys as written, flattened (`request_limits.mode`), last file wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialLimits {
    values: Map<String, Value>,
}

impl PartialLimits {
    /// Reads the `limits` block of a normalised file.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let mut values = Map::new();
        if let Some(Value::Object(limits)) = map.get("limits") {
            for (k, v) in limits {
                match v {
                    Value::Object(inner) => {
                        for (ik, iv) in inner {
                            values.insert(format!("{k}.{ik}"), iv.clone());
                        }
                    }
                    v => {
                        values.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        PartialLimits { values }
    }

    /// Lays `other` over `self`.
    pub fn merge(&mut self, other: PartialLimits) {
        self.values.extend(other.values);
    }

    fn count(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| ConfigError::invalid(format!("limits.{key} cannot be {n}"))),
            Some(v) => Err(ConfigError::invalid(format!(
                "limits.{key}: expected an integer, got {v}"
            ))),
        }
    }

    fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::String(s)) => {
                parse_duration(s).map_err(|e| ConfigError::invalid(format!("limits.{key}: {e}")))
            }
            Some(v) => Err(ConfigError::invalid(format!(
                "limits.{key}: expected a duration, got {v}"
            ))),
        }
    }

    /// A rate: a number, `-1` (or absent) for no limit.
    fn rate(&self, key: &str) -> Result<f64, ConfigError> {
        let v = match self.values.get(key) {
            None | Some(Value::Null) => return Ok(f64::INFINITY),
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(Value::String(s)) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
            Some(v) => {
                return Err(ConfigError::invalid(format!(
                    "limits.{key}: expected a number, got {v}"
                )))
            }
        };
        if v.is_nan() {
            return Err(ConfigError::invalid(format!("limits.{key}: not a number")));
        }
        Ok(if v < 0.0 { f64::INFINITY } else { v })
    }

    /// The validated limits.
    pub fn build(&self) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let mode_text = match self.values.get("request_limits.mode") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(v) => {
                return Err(ConfigError::invalid(format!(
                    "limits.request_limits.mode: expected a string, got {v}"
                )))
            }
        };
        let mode = Mode::parse(&mode_text).ok_or_else(|| {
            ConfigError::invalid(format!(
                "limits.request_limits.mode: {mode_text:?} is not one of disabled, permissive, enforcing"
            ))
        })?;
        Ok(Limits {
            http_max_conns_per_client: self
                .count("http_max_conns_per_client", d.http_max_conns_per_client)?,
            rpc_max_conns_per_client: self
                .count("rpc_max_conns_per_client", d.rpc_max_conns_per_client)?,
            https_handshake_timeout: self
                .duration("https_handshake_timeout", d.https_handshake_timeout)?,
            rpc_handshake_timeout: self
                .duration("rpc_handshake_timeout", d.rpc_handshake_timeout)?,
            header_timeout: d.header_timeout,
            request_limits: RequestLimits {
                mode,
                read_rate: self.rate("request_limits.read_rate")?,
                write_rate: self.rate("request_limits.write_rate")?,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_values() {
        let d = PartialLimits::default().build().unwrap();
        assert_eq!(d.http_max_conns_per_client, 200);
        assert_eq!(d.rpc_max_conns_per_client, 100);
        assert_eq!(d.request_limits.mode, Mode::Disabled);
        let v = json!({"limits": {"http_max_conns_per_client": 5,
            "request_limits": {"mode": "enforcing", "read_rate": 10, "write_rate": -1}}});
        let l = PartialLimits::from_map(v.as_object().unwrap())
            .build()
            .unwrap();
        assert_eq!(l.http_max_conns_per_client, 5);
        assert_eq!(l.request_limits.mode, Mode::Enforcing);
        assert_eq!(l.request_limits.read_rate, 10.0);
        assert!(l.request_limits.write_rate.is_infinite());
        let bad = json!({"limits": {"request_limits": {"mode": "strict"}}});
        assert!(PartialLimits::from_map(bad.as_object().unwrap())
            .build()
            .is_err());
    }
}
