//! Consul-style lenient decoding of JSON request bodies.
//!
//! This module owns the translation of a client's JSON body into the canonical field names of
//! a request type before serde sees it. Consul decodes bodies with Go's `encoding/json`, which
//! matches keys case-insensitively, and accepts snake_case aliases on top
//! (`enable_tag_override`, `deregister_critical_service_after`, `tls_skip_verify`, ...).
//! Clients rely on it: python-consul sends `name`, `ttl`, `checkid`, Patroni sends
//! `enable_tag_override`.
//!
//! A [`Schema`] lists a type's canonical field names, their aliases and their kinds. Keys are
//! matched after lower-casing and removing `_` and `-` (so `Check_ID`, `checkid` and `CheckID`
//! are one key); an exact match beats a folded match, which beats an alias; among equals the
//! last key wins. Keys of map-valued fields (`Meta`, `NodeMeta`, `Header`, `TaggedAddresses`)
//! are kept verbatim; the values of struct-valued maps (service `TaggedAddresses`) are
//! renamed with their own schema. Types are checked on the way, so that a wrong type gives a
//! clear `Request decode failed: invalid type for Port: expected an integer, got a string`
//! instead of a serde message, and never a panic. Unknown keys and `null` values are ignored,
//! as Go ignores them.

use crate::duration::GoDuration;
use crate::ProtoError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

/// Prefix of every decoding error, as Consul words it.
pub const DECODE_ERROR_PREFIX: &str = "Request decode failed: ";

/// The kind of value a field holds; drives type checking and renaming.
#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    /// A JSON string.
    String,
    /// A JSON boolean.
    Bool,
    /// A signed integer (integral floats such as `10.0` are accepted).
    Int,
    /// An unsigned 64-bit integer, kept at full precision.
    UInt,
    /// A port: an integer from 0 to 65535.
    Port,
    /// A Go duration string, or a number of nanoseconds; normalized to integer nanoseconds.
    Duration,
    /// A list of strings.
    StringList,
    /// A map of string to string; keys kept verbatim.
    StringMap,
    /// A map of string to list of strings (HTTP headers); keys kept verbatim; a lone string
    /// value is taken as a one-element list.
    HeaderMap,
    /// A nested object with its own schema.
    Object(&'static Schema),
    /// A list of nested objects; `null` elements are dropped.
    ObjectList(&'static Schema),
    /// A map whose keys are kept verbatim and whose values are objects with their own schema.
    ObjectMap(&'static Schema),
    /// Any JSON value, passed through untouched (accepted-but-ignored fields).
    Any,
}

/// One field of a [`Schema`].
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Canonical name, exactly as the serde type expects it.
    pub name: &'static str,
    /// Other accepted spellings (matched after folding, like the canonical name).
    pub aliases: &'static [&'static str],
    /// What the field holds.
    pub kind: FieldKind,
}

impl Field {
    /// A field without aliases.
    pub const fn new(name: &'static str, kind: FieldKind) -> Field {
        Field {
            name,
            aliases: &[],
            kind,
        }
    }

    /// A field with aliases.
    pub const fn aliased(
        name: &'static str,
        aliases: &'static [&'static str],
        kind: FieldKind,
    ) -> Field {
        Field {
            name,
            aliases,
            kind,
        }
    }
}

/// The field list of one request type.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Type name, for documentation and debugging.
    pub name: &'static str,
    /// The fields.
    pub fields: &'static [Field],
}

/// A request type decoded leniently with its schema.
pub trait Lenient: DeserializeOwned {
    /// The type's schema; its canonical names must match the serde field names.
    const SCHEMA: &'static Schema;

    /// Decodes a request body (empty or `null` means an empty object).
    fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        from_lenient_json(bytes, Self::SCHEMA)
    }

    /// Decodes an already parsed JSON value.
    fn decode_value(value: Value) -> Result<Self, ProtoError> {
        from_lenient_value(value, Self::SCHEMA)
    }
}

/// Folds a key for matching: lower case, without `_` and `-`.
pub fn fold_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn decode_error(msg: impl std::fmt::Display) -> ProtoError {
    ProtoError::Invalid(format!("{DECODE_ERROR_PREFIX}{msg}"))
}

/// Decodes `bytes` as JSON, renames keys by `schema`, and deserializes into `T`.
///
/// An empty (or all-whitespace) body and a `null` body decode as an empty object. Errors
/// carry Consul's `Request decode failed: ` prefix.
pub fn from_lenient_json<T: DeserializeOwned>(
    bytes: &[u8],
    schema: &Schema,
) -> Result<T, ProtoError> {
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(bytes).map_err(decode_error)?
    };
    from_lenient_value(value, schema)
}

/// Renames keys of an already parsed value by `schema` and deserializes into `T`.
pub fn from_lenient_value<T: DeserializeOwned>(
    value: Value,
    schema: &Schema,
) -> Result<T, ProtoError> {
    let normalized = normalize(value, schema)?;
    serde_json::from_value(normalized).map_err(decode_error)
}

/// Renames and type-checks a top-level value against `schema`; returns an object holding
/// only canonical keys, in schema order. `null` becomes `{}`.
pub fn normalize(value: Value, schema: &Schema) -> Result<Value, ProtoError> {
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(map) => normalize_object(map, schema, "").map(Value::Object),
        other => Err(decode_error(format!(
            "expected a JSON object, got {}",
            type_name(&other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> ProtoError {
    decode_error(format!(
        "invalid type for {path}: expected {expected}, got {}",
        type_name(got)
    ))
}

/// Match priority of `key` for `field`: 0 exact, 1 folded canonical name, 2 folded alias.
fn match_priority(key: &str, folded: &str, field: &Field) -> Option<u8> {
    if key == field.name {
        return Some(0);
    }
    if folded == fold_key(field.name) {
        return Some(1);
    }
    if field.aliases.iter().any(|a| fold_key(a) == folded) {
        return Some(2);
    }
    None
}

fn normalize_object(
    map: Map<String, Value>,
    schema: &Schema,
    path: &str,
) -> Result<Map<String, Value>, ProtoError> {
    // For each schema field: (priority, value) of the best key seen so far.
    let mut chosen: Vec<Option<(u8, Value)>> = vec![None; schema.fields.len()];
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let folded = fold_key(&key);
        let best = schema
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match_priority(&key, &folded, f).map(|p| (p, i)))
            .min();
        let Some((priority, idx)) = best else {
            continue;
        };
        let Some(slot) = chosen.get_mut(idx) else {
            continue;
        };
        let replace = match slot {
            Some((old, _)) => priority <= *old,
            None => true,
        };
        if replace {
            *slot = Some((priority, value));
        }
    }
    let mut out = Map::new();
    for (field, slot) in schema.fields.iter().zip(chosen) {
        if let Some((_, value)) = slot {
            let p = child_path(path, field.name);
            let converted = convert(value, field.kind, &p)?;
            out.insert(field.name.to_string(), converted);
        }
    }
    Ok(out)
}

fn integer_of(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    if f.is_finite() && f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        // Integral and in range: the conversion is exact.
        Some(f as i64)
    } else {
        None
    }
}

fn convert(value: Value, kind: FieldKind, path: &str) -> Result<Value, ProtoError> {
    match kind {
        FieldKind::Any => Ok(value),
        FieldKind::String => match value {
            Value::String(_) => Ok(value),
            other => Err(wrong_type(path, "a string", &other)),
        },
        FieldKind::Bool => match value {
            Value::Bool(_) => Ok(value),
            other => Err(wrong_type(path, "a boolean", &other)),
        },
        FieldKind::Int => match &value {
            Value::Number(n) => match integer_of(n) {
                Some(i) => Ok(Value::from(i)),
                None => Err(decode_error(format!(
                    "invalid value for {path}: {n} is not an integer"
                ))),
            },
            other => Err(wrong_type(path, "an integer", other)),
        },
        FieldKind::UInt => match &value {
            Value::Number(n) => match n.as_u64() {
                Some(u) => Ok(Value::from(u)),
                None => Err(decode_error(format!(
                    "invalid value for {path}: {n} is not an unsigned integer"
                ))),
            },
            other => Err(wrong_type(path, "an unsigned integer", other)),
        },
        FieldKind::Port => match &value {
            Value::Number(n) => match integer_of(n) {
                Some(i) if (0..=65535).contains(&i) => Ok(Value::from(i)),
                _ => Err(decode_error(format!(
                    "invalid value for {path}: {n} is not a port number (0-65535)"
                ))),
            },
            other => Err(wrong_type(path, "an integer", other)),
        },
        FieldKind::Duration => match &value {
            Value::String(_) | Value::Number(_) => match GoDuration::from_json(&value) {
                Ok(d) => Ok(Value::from(d.as_nanos_u64())),
                Err(e) => Err(decode_error(format!("invalid duration for {path}: {e}"))),
            },
            other => Err(wrong_type(path, "a duration string", other)),
        },
        FieldKind::StringList => match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        return Err(wrong_type(&format!("{path}[{i}]"), "a string", item));
                    }
                }
                Ok(Value::Array(items))
            }
            other => Err(wrong_type(path, "a list of strings", &other)),
        },
        FieldKind::StringMap => match value {
            Value::Object(map) => {
                for (k, v) in &map {
                    if !v.is_string() {
                        return Err(wrong_type(&child_path(path, k), "a string", v));
                    }
                }
                Ok(Value::Object(map))
            }
            other => Err(wrong_type(path, "a map of strings", &other)),
        },
        FieldKind::HeaderMap => match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let p = child_path(path, &k);
                    let list = match v {
                        Value::String(_) => Value::Array(vec![v]),
                        Value::Null => Value::Array(Vec::new()),
                        Value::Array(items) => {
                            for (i, item) in items.iter().enumerate() {
                                if !item.is_string() {
                                    return Err(wrong_type(&format!("{p}[{i}]"), "a string", item));
                                }
                            }
                            Value::Array(items)
                        }
                        other => return Err(wrong_type(&p, "a list of strings", &other)),
                    };
                    out.insert(k, list);
                }
                Ok(Value::Object(out))
            }
            other => Err(wrong_type(path, "a map of string lists", &other)),
        },
        FieldKind::Object(schema) => match value {
            Value::Object(map) => normalize_object(map, schema, path).map(Value::Object),
            other => Err(wrong_type(path, "an object", &other)),
        },
        FieldKind::ObjectList(schema) => match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match item {
                        Value::Null => {}
                        Value::Object(map) => {
                            out.push(Value::Object(normalize_object(map, schema, &p)?))
                        }
                        other => return Err(wrong_type(&p, "an object", &other)),
                    }
                }
                Ok(Value::Array(out))
            }
            other => Err(wrong_type(path, "a list of objects", &other)),
        },
        FieldKind::ObjectMap(schema) => match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let p = child_path(path, &k);
                    match v {
                        Value::Object(inner) => {
                            let normalized = normalize_object(inner, schema, &p)?;
                            out.insert(k, Value::Object(normalized));
                        }
                        other => return Err(wrong_type(&p, "an object", &other)),
                    }
                }
                Ok(Value::Object(out))
            }
            other => Err(wrong_type(path, "a map of objects", &other)),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    static ADDR: Schema = Schema {
        name: "Addr",
        fields: &[
            Field::new("Address", FieldKind::String),
            Field::new("Port", FieldKind::Port),
        ],
    };

    static THING: Schema = Schema {
        name: "Thing",
        fields: &[
            Field::new("Name", FieldKind::String),
            Field::aliased("CheckID", &["ID"], FieldKind::String),
            Field::new("EnableTagOverride", FieldKind::Bool),
            Field::new("Port", FieldKind::Port),
            Field::new("Flags", FieldKind::UInt),
            Field::new("Count", FieldKind::Int),
            Field::new("TTL", FieldKind::Duration),
            Field::new("Tags", FieldKind::StringList),
            Field::new("Meta", FieldKind::StringMap),
            Field::new("Header", FieldKind::HeaderMap),
            Field::new("TaggedAddresses", FieldKind::ObjectMap(&ADDR)),
            Field::new("Inner", FieldKind::Object(&ADDR)),
            Field::new("List", FieldKind::ObjectList(&ADDR)),
            Field::new("Proxy", FieldKind::Any),
        ],
    };

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Addr {
        address: String,
        port: u16,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Thing {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "CheckID")]
        check_id: String,
        #[serde(rename = "EnableTagOverride")]
        eto: bool,
        #[serde(rename = "Port")]
        port: u16,
        #[serde(rename = "Flags")]
        flags: u64,
        #[serde(rename = "Count")]
        count: i64,
        #[serde(rename = "TTL")]
        ttl: Option<GoDuration>,
        #[serde(rename = "Tags")]
        tags: Vec<String>,
        #[serde(rename = "Meta")]
        meta: BTreeMap<String, String>,
        #[serde(rename = "Header")]
        header: BTreeMap<String, Vec<String>>,
        #[serde(rename = "TaggedAddresses")]
        tagged: BTreeMap<String, Addr>,
        #[serde(rename = "Inner")]
        inner: Option<Addr>,
        #[serde(rename = "List")]
        list: Vec<Addr>,
        #[serde(rename = "Proxy")]
        proxy: Option<Value>,
    }

    impl Lenient for Thing {
        const SCHEMA: &'static Schema = &THING;
    }

    fn err(body: Value) -> String {
        Thing::decode_value(body).unwrap_err().to_string()
    }

    #[test]
    fn folds_keys() {
        assert_eq!(
            fold_key("Deregister_Critical-Service_After"),
            "deregistercriticalserviceafter"
        );
        assert_eq!(fold_key("tls_skip_verify"), "tlsskipverify");
    }

    #[test]
    fn renames_case_and_snake() {
        let t = Thing::decode(
            br#"{"name":"web","check_id":"c1","enable_tag_override":true,"port":80,
                "flags":18446744073709551615,"count":-3,"ttl":"15.0s","tags":["a"],
                "Unknown":1,"Proxy":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(t.name, "web");
        assert_eq!(t.check_id, "c1");
        assert!(t.eto);
        assert_eq!(t.port, 80);
        assert_eq!(t.flags, u64::MAX);
        assert_eq!(t.count, -3);
        assert_eq!(t.ttl.unwrap().0, std::time::Duration::from_secs(15));
        assert_eq!(t.tags, vec!["a"]);
        assert_eq!(t.proxy, Some(json!({"x":1})));
    }

    #[test]
    fn aliases_and_precedence() {
        let t = Thing::decode_value(json!({"id": "x"})).unwrap();
        assert_eq!(t.check_id, "x");
        // Folded canonical name beats alias regardless of order.
        let t = Thing::decode_value(json!({"checkid": "a", "ID": "b"})).unwrap();
        assert_eq!(t.check_id, "a");
        let t = Thing::decode_value(json!({"ID": "b", "checkid": "a"})).unwrap();
        assert_eq!(t.check_id, "a");
        // Exact beats folded.
        let t = Thing::decode_value(json!({"Name": "exact", "name": "folded"})).unwrap();
        assert_eq!(t.name, "exact");
        // Null is ignored.
        let t = Thing::decode_value(json!({"Name": null, "name": "x"})).unwrap();
        assert_eq!(t.name, "x");
    }

    #[test]
    fn map_keys_kept_verbatim_but_struct_values_renamed() {
        let t = Thing::decode_value(json!({
            "meta": {"Some_Key": "v", "lower": "w"},
            "header": {"X-Token": ["a"], "Single": "b"},
            "tagged_addresses": {"lan_ipv4": {"address": "10.0.0.1", "port": 8080}},
            "inner": {"ADDRESS": "h"},
            "list": [{"port": 1}, null, {"Port": 2}],
        }))
        .unwrap();
        assert_eq!(t.meta.get("Some_Key").map(String::as_str), Some("v"));
        assert_eq!(t.meta.get("lower").map(String::as_str), Some("w"));
        assert_eq!(t.header.get("X-Token"), Some(&vec!["a".to_string()]));
        assert_eq!(t.header.get("Single"), Some(&vec!["b".to_string()]));
        assert_eq!(
            t.tagged.get("lan_ipv4"),
            Some(&Addr {
                address: "10.0.0.1".into(),
                port: 8080
            })
        );
        assert_eq!(t.inner.unwrap().address, "h");
        assert_eq!(t.list.len(), 2);
        assert_eq!(t.list[1].port, 2);
    }

    #[test]
    fn wrong_types_give_clear_errors() {
        assert_eq!(
            err(json!({"Port": "80"})),
            "Request decode failed: invalid type for Port: expected an integer, got a string"
        );
        assert_eq!(
            err(json!({"port": 70000})),
            "Request decode failed: invalid value for Port: 70000 is not a port number (0-65535)"
        );
        assert_eq!(
            err(json!({"Tags": ["a", 1]})),
            "Request decode failed: invalid type for Tags[1]: expected a string, got a number"
        );
        assert_eq!(
            err(json!({"Meta": {"k": 1}})),
            "Request decode failed: invalid type for Meta.k: expected a string, got a number"
        );
        assert_eq!(
            err(json!({"TaggedAddresses": {"lan": {"Port": true}}})),
            "Request decode failed: invalid type for TaggedAddresses.lan.Port: expected an integer, got a boolean"
        );
        assert_eq!(
            err(json!({"List": [{}, {"port": -1}]})),
            "Request decode failed: invalid value for List[1].Port: -1 is not a port number (0-65535)"
        );
        assert!(err(json!({"TTL": "abc"}))
            .starts_with("Request decode failed: invalid duration for TTL: "));
        assert!(err(json!({"TTL": true})).contains("invalid type for TTL"));
        assert!(err(json!({"Count": 1.5})).contains("is not an integer"));
        assert!(err(json!({"Flags": -1})).contains("is not an unsigned integer"));
        assert!(err(json!({"EnableTagOverride": "true"})).contains("expected a boolean"));
        assert!(err(json!([1])).contains("expected a JSON object"));
        assert!(Thing::decode(b"{not json")
            .unwrap_err()
            .to_string()
            .starts_with(DECODE_ERROR_PREFIX));
    }

    #[test]
    fn empty_and_null_bodies() {
        assert_eq!(Thing::decode(b"").unwrap().name, "");
        assert_eq!(Thing::decode(b"  \n").unwrap().name, "");
        assert_eq!(Thing::decode(b"null").unwrap().name, "");
    }

    #[test]
    fn integral_floats_accepted() {
        let t = Thing::decode_value(json!({"Port": 8080.0, "Count": 3.0})).unwrap();
        assert_eq!(t.port, 8080);
        assert_eq!(t.count, 3);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-zA-Z0-9_. ]{0,8}".prop_map(Value::String),
            prop_oneof![Just("10s"), Just("1.5m"), Just("-1s"), Just("x")].prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("Name".to_string()),
                Just("port".to_string()),
                Just("ttl".to_string()),
                Just("tags".to_string()),
                Just("meta".to_string()),
                Just("header".to_string()),
                Just("tagged_addresses".to_string()),
                Just("inner".to_string()),
                Just("list".to_string()),
                Just("Address".to_string()),
                "[a-z_]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_random_json(v in arb_json()) {
            let _ = Thing::decode_value(v.clone());
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            let _ = Thing::decode(&bytes);
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Thing::decode(&bytes);
        }
    }
}
