//! Config entries (`/v1/config`): Consul's centrally stored configuration records, identified
//! by kind and name. The registry stores and returns them with Consul's kind and name
//! validation; the kinds that only configure the service mesh are stored, not acted on.
//!
//! An entry's body is kept as its JSON text (keys in Consul's CamelCase, without the
//! indexes), so that the log and snapshot encodings stay independent of each kind's fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The kinds accepted, as Consul spells them.
pub const KINDS: &[&str] = &[
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "mesh",
    "exported-services",
];

/// One stored entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Kind (one of [`KINDS`]).
    pub kind: String,
    /// Name (`global` for proxy-defaults, `mesh` for mesh).
    pub name: String,
    /// The entry as a JSON object in CamelCase, `Kind` and `Name` included, indexes not.
    pub body: String,
    /// Index at which the entry was created.
    pub create_index: u64,
    /// Index at which it last changed.
    pub modify_index: u64,
}

impl ConfigEntry {
    /// The JSON Consul returns: the body with `CreateIndex` and `ModifyIndex`.
    pub fn to_json(&self) -> Value {
        let mut obj = match serde_json::from_str::<Value>(&self.body) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        obj.insert("CreateIndex".into(), self.create_index.into());
        obj.insert("ModifyIndex".into(), self.modify_index.into());
        Value::Object(obj)
    }
}

/// Checks a kind as Consul's `MakeConfigEntry` does.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(format!("invalid config entry kind: {kind}"))
    }
}

/// `snake_case` -> `CamelCase` (`mesh_gateway` -> `MeshGateway`); CamelCase is kept.
fn camel(key: &str) -> String {
    if !key.contains('_') && key.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    for part in key.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    // Consul's acronyms.
    match out.as_str() {
        "Id" => "ID".into(),
        "Ttl" => "TTL".into(),
        _ => out,
    }
}

/// Keys of these fields are user data and keep their spelling.
const OPAQUE: &[&str] = &["Config", "Meta", "Header", "Add", "Set", "EnvoyExtensions"];

fn camelize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = camel(&k);
                    let v = if OPAQUE.contains(&k.as_str()) {
                        v
                    } else {
                        camelize(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camelize).collect()),
        other => other,
    }
}

/// Decodes a request body (`PUT /v1/config`, `registry config write`) into an entry,
/// translating snake_case keys and checking kind and name as Consul does. `kind`/`name`
/// come from the body (`Kind`/`kind`, `Name`/`name`).
pub fn decode(body: Value) -> Result<ConfigEntry, String> {
    let Value::Object(raw) = camelize(body) else {
        return Err("Request decoding failed: the body must be a JSON object".into());
    };
    let mut obj = raw;
    let kind = match obj.get("Kind") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err("Kind must be a string".into()),
        None => return Err("Payload does not contain a kind/Kind key at the top level".into()),
    };
    check_kind(&kind)?;
    let mut name = match obj.get("Name") {
        Some(Value::String(n)) => n.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err("Name must be a string".into()),
    };
    obj.remove("CreateIndex");
    obj.remove("ModifyIndex");
    match kind.as_str() {
        "proxy-defaults" => {
            if name.is_empty() {
                name = "global".into();
            }
            if name != "global" {
                return Err(format!(
                    "invalid name (\"{name}\"), only \"global\" is supported"
                ));
            }
        }
        // A singleton: its name is always "mesh".
        "mesh" => name = "mesh".into(),
        "exported-services" => {
            if name.is_empty() {
                name = "default".into();
            }
            if name != "default" {
                return Err(
                    "exported-services Name must be \"default\" (the partition name)".into(),
                );
            }
        }
        _ => {
            if name.is_empty() {
                return Err("Name is required".into());
            }
        }
    }
    if kind == "service-splitter" {
        check_splits(&obj)?;
    }
    obj.insert("Kind".into(), kind.clone().into());
    obj.insert("Name".into(), name.clone().into());
    let body = Value::Object(obj).to_string();
    Ok(ConfigEntry {
        kind,
        name,
        body,
        create_index: 0,
        modify_index: 0,
    })
}

/// A splitter's weights must add up to 100 (Consul allows a rounding error of 0.01).
fn check_splits(obj: &Map<String, Value>) -> Result<(), String> {
    let Some(Value::Array(splits)) = obj.get("Splits") else {
        return Err("no splits configured".into());
    };
    if splits.is_empty() {
        return Err("no splits configured".into());
    }
    let total: f64 = splits
        .iter()
        .map(|s| s.get("Weight").and_then(Value::as_f64).unwrap_or(0.0))
        .sum();
    if (total - 100.0).abs() > 0.01 {
        return Err(format!(
            "the sum of all split weights must be 100, not {total:.6}"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_is_translated_but_user_maps_are_not() {
        let e = decode(
            json!({"kind": "proxy-defaults", "config": {"local_connect_timeout_ms": 1},
                             "mesh_gateway": {"mode": "local"}}),
        )
        .unwrap();
        assert_eq!(e.name, "global");
        let v: Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["Config"]["local_connect_timeout_ms"], 1);
        assert_eq!(v["MeshGateway"]["Mode"], "local");
    }

    #[test]
    fn kinds_and_names_are_checked() {
        assert_eq!(
            decode(json!({"Kind": "nope", "Name": "x"})).unwrap_err(),
            "invalid config entry kind: nope"
        );
        assert!(decode(json!({"Kind": "service-defaults"})).is_err());
        assert!(decode(json!({"Kind": "proxy-defaults", "Name": "other"})).is_err());
        assert_eq!(decode(json!({"Kind": "mesh"})).unwrap().name, "mesh");
        assert!(decode(json!({"Kind": "service-splitter", "Name": "s",
                              "Splits": [{"Weight": 50}, {"Weight": 40}]}))
        .unwrap_err()
        .contains("must be 100"));
        assert!(decode(json!({"Kind": "service-splitter", "Name": "s",
                              "Splits": [{"Weight": 50}, {"Weight": 50}]}))
        .is_ok());
    }
}
