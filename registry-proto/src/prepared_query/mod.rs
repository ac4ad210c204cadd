//! Prepared queries (`/v1/query`): the stored definition in Consul's JSON shape, its
//! case-insensitive decoding, and the checks Consul runs before a query is stored.
//!
//! The same struct is the Raft log and snapshot encoding (postcard, positional) and the
//! HTTP body (serde_json with Consul's field names), so every field is always present: Go's
//! `nil` slices and maps are `None` and render as `null`, as Consul's JSON does.

pub mod template;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The only template type Consul knows; a `Regexp` refines it.
pub const TEMPLATE_NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// What Consul shows instead of a query's token to a caller who may not see it.
pub const REDACTED_TOKEN: &str = "<hidden>";

/// One prepared query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreparedQuery {
    /// UUID chosen by the leader on create.
    #[serde(rename = "ID")]
    pub id: String,
    /// Optional unique name; a template's name is its prefix.
    #[serde(rename = "Name")]
    pub name: String,
    /// Session the query is bound to: it is deleted when the session is invalidated.
    #[serde(rename = "Session")]
    pub session: String,
    /// Token the query executes with (empty: the caller's).
    #[serde(rename = "Token")]
    pub token: String,
    /// Template settings (empty `Type`: not a template).
    #[serde(rename = "Template")]
    pub template: QueryTemplate,
    /// What to look up.
    #[serde(rename = "Service")]
    pub service: ServiceQuery,
    /// DNS answer settings.
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    /// Index at which the query was created.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Index at which it last changed.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// `Template`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryTemplate {
    /// `name_prefix_match`, or empty for a plain query.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Regular expression matched against the executed name; `${match(N)}` reads its groups.
    #[serde(rename = "Regexp")]
    pub regexp: String,
    /// Drop tags that render empty.
    #[serde(rename = "RemoveEmptyTags")]
    pub remove_empty_tags: bool,
}

/// `Service`: the lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceQuery {
    /// Service name (required).
    #[serde(rename = "Service")]
    pub service: String,
    /// Where to look when this datacenter has no healthy instance.
    #[serde(rename = "Failover")]
    pub failover: QueryFailover,
    /// Exclude instances with a warning check too (critical ones are always excluded).
    #[serde(rename = "OnlyPassing")]
    pub only_passing: bool,
    /// Checks whose status is ignored when filtering.
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Option<Vec<String>>,
    /// Sort by estimated RTT from this node (`_agent`: the requesting agent; `_ip`: the
    /// node with the DNS client's address).
    #[serde(rename = "Near")]
    pub near: String,
    /// Required tags; a leading `!` excludes instances with that tag.
    #[serde(rename = "Tags")]
    pub tags: Option<Vec<String>>,
    /// Required node metadata.
    #[serde(rename = "NodeMeta")]
    pub node_meta: Option<BTreeMap<String, String>>,
    /// Required service metadata.
    #[serde(rename = "ServiceMeta")]
    pub service_meta: Option<BTreeMap<String, String>>,
    /// Connect settings.
    #[serde(rename = "Connect")]
    pub connect: QueryConnect,
    /// Cluster peer to query instead of this datacenter (accepted and stored).
    #[serde(rename = "Peer")]
    pub peer: String,
    /// Sameness group (accepted and stored).
    #[serde(rename = "SamenessGroup")]
    pub sameness_group: String,
}

/// `Service.Failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryFailover {
    /// Try the N datacenters nearest by RTT first.
    #[serde(rename = "NearestN")]
    pub nearest_n: i64,
    /// Then these, in order.
    #[serde(rename = "Datacenters")]
    pub datacenters: Option<Vec<String>>,
    /// Explicit targets; when set they replace `NearestN` and `Datacenters`.
    #[serde(rename = "Targets")]
    pub targets: Option<Vec<QueryTarget>>,
}

/// One failover target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryTarget {
    /// Cluster peer.
    #[serde(rename = "Peer")]
    pub peer: String,
    /// Datacenter.
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
}

/// `Service.Connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryConnect {
    /// Return Connect-capable endpoints (proxies and native services) only.
    #[serde(rename = "Enabled")]
    pub enabled: bool,
}

/// `DNS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryDns {
    /// TTL of DNS answers (a Go duration; empty: the agent's service TTL).
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// Every field name of the query types, as Consul spells them: decoding maps keys onto
/// these case-insensitively (Go's `encoding/json` does), `_` and `-` ignored.
const FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Session",
    "Token",
    "Template",
    "Type",
    "Regexp",
    "RemoveEmptyTags",
    "Service",
    "Failover",
    "NearestN",
    "Datacenters",
    "Targets",
    "Peer",
    "Datacenter",
    "OnlyPassing",
    "IgnoreCheckIDs",
    "Near",
    "Tags",
    "NodeMeta",
    "ServiceMeta",
    "Connect",
    "Enabled",
    "SamenessGroup",
    "DNS",
    "TTL",
    "CreateIndex",
    "ModifyIndex",
];

fn fold(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Renames keys to their canonical spelling, leaving the keys of metadata maps alone and
/// dropping `null`s (Go leaves the field at its zero value).
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if v.is_null() {
                    continue;
                }
                let f = fold(&k);
                let name = FIELDS
                    .iter()
                    .find(|n| fold(n) == f)
                    .map_or(k, |n| (*n).to_string());
                let v = if name == "NodeMeta" || name == "ServiceMeta" {
                    v
                } else {
                    canonical(v)
                };
                out.insert(name, v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Decodes a request body into a query, with Consul's leniency about key case.
pub fn decode(body: &[u8]) -> Result<PreparedQuery, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Request decode failed: {e}"))?;
    if !v.is_object() {
        return Err("Request decode failed: expected a JSON object".to_string());
    }
    serde_json::from_value(canonical(v)).map_err(|e| format!("Request decode failed: {e}"))
}

/// Consul's checks before a create or update (`parseQuery`), each message prefixed with
/// `Invalid prepared query: ` as Consul's endpoint does. Name uniqueness, the session's
/// existence and the template are checked where the query is stored.
pub fn validate(q: &PreparedQuery) -> Result<(), String> {
    let bad = |m: String| Err(format!("Invalid prepared query: {m}"));
    if q.name.is_empty() && q.template.kind.is_empty() && q.session.is_empty() {
        return bad("Must be bound to a session".into());
    }
    if q.token == REDACTED_TOKEN {
        return bad(format!(
            "Bad Token '{}', it looks like a query definition with a redacted token was submitted",
            q.token
        ));
    }
    if q.service.service.is_empty() {
        return bad("Must provide a Service name to query".into());
    }
    if q.service.failover.nearest_n < 0 {
        return bad(format!(
            "Bad NearestN '{}', must be >= 0",
            q.service.failover.nearest_n
        ));
    }
    if let Some(meta) = &q.service.node_meta {
        for (k, v) in meta {
            if k.is_empty() {
                return bad("Couldn't load metadata pair ('', ''): key must not be empty".into());
            }
            if k.len() > 128 {
                return bad(format!("Key is too long (limit: 128 characters): {k}"));
            }
            if v.len() > 512 {
                return bad(format!("Value is too long (limit: 512 characters): {v}"));
            }
        }
    }
    if !q.dns.ttl.is_empty() {
        match crate::duration::parse_go_duration(&q.dns.ttl) {
            Ok(_) => {}
            Err(e) => return bad(format!("Bad DNS TTL '{}': {e}", q.dns.ttl)),
        }
    }
    Ok(())
}

/// Whether `s` has the shape of a UUID (queries are looked up by ID only then).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl PreparedQuery {
    /// Whether this is a template.
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// The name ACL `query` rules apply to: the name, or a template's (possibly empty)
    /// prefix; `None` for an unnamed query, which only its ID reaches.
    pub fn acl_prefix(&self) -> Option<&str> {
        if !self.name.is_empty() || self.is_template() {
            Some(&self.name)
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_any_case_and_renders_consul_shape() {
        let q = decode(
            br#"{"name":"db","service":{"service":"redis","tags":["a","!b"],
                 "failover":{"nearestn":2,"datacenters":["dc2"]},"onlypassing":true,
                 "node_meta":{"Rack":"r1"}},"dns":{"ttl":"10s"}}"#,
        )
        .unwrap();
        assert_eq!(q.name, "db");
        assert_eq!(q.service.failover.nearest_n, 2);
        assert_eq!(q.service.node_meta.as_ref().unwrap()["Rack"], "r1");
        assert_eq!(q.dns.ttl, "10s");
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["Service"]["IgnoreCheckIDs"], Value::Null);
        assert_eq!(v["Service"]["Failover"]["Datacenters"][0], "dc2");
        assert_eq!(v["Template"]["Type"], "");
        assert_eq!(v["DNS"]["TTL"], "10s");
        let bytes = postcard::to_stdvec(&q).unwrap();
        assert_eq!(postcard::from_bytes::<PreparedQuery>(&bytes).unwrap(), q);
    }

    #[test]
    fn validation_messages() {
        let mut q = PreparedQuery::default();
        assert_eq!(
            validate(&q).unwrap_err(),
            "Invalid prepared query: Must be bound to a session"
        );
        q.name = "x".into();
        assert_eq!(
            validate(&q).unwrap_err(),
            "Invalid prepared query: Must provide a Service name to query"
        );
        q.service.service = "web".into();
        q.service.failover.nearest_n = -1;
        assert!(validate(&q).unwrap_err().contains("Bad NearestN '-1'"));
        q.service.failover.nearest_n = 0;
        q.dns.ttl = "nope".into();
        assert!(validate(&q).unwrap_err().contains("Bad DNS TTL 'nope'"));
        q.dns.ttl = "5s".into();
        assert!(validate(&q).is_ok());
        assert!(is_uuid("8f246b77-f3e1-ff88-5b48-8ec93abf3e05"));
        assert!(!is_uuid("redis"));
    }
}
