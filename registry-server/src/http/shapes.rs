//! Consul's JSON output shapes built from the store's records, with Consul's exact field
//! names and order. Lists are `[]` and maps `{}`, never `null`.
//!
//! These borrow from the store, so the catalog and health read paths encode without copying
//! strings. `registry_proto::api::output` has owned twins of the same shapes (used by the
//! agent and txn endpoints); once those borrow too, this module should go.

use registry_proto::model::{HealthCheck, Node, NodeService, ServiceAddress, Weights};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return String::new();
    }
    registry_proto::duration::format_go_duration(std::time::Duration::from_nanos(ns))
}

/// `Weights`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightsOut {
    passing: i32,
    warning: i32,
}

impl From<&Weights> for WeightsOut {
    fn from(w: &Weights) -> Self {
        WeightsOut {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// A service tagged address (`{"Address": .., "Port": ..}`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddrOut<'a> {
    address: &'a str,
    port: u16,
}

fn tagged(m: &BTreeMap<String, ServiceAddress>) -> BTreeMap<&str, AddrOut<'_>> {
    m.iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                AddrOut {
                    address: &v.address,
                    port: v.port,
                },
            )
        })
        .collect()
}

/// A node (`/v1/catalog/nodes`, `Node` of health results).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    meta: &'a BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a Node> for NodeOut<'a> {
    fn from(n: &'a Node) -> Self {
        NodeOut {
            id: &n.id,
            node: &n.node,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: &n.tagged_addresses,
            meta: &n.meta,
            create_index: n.index.create_index,
            modify_index: n.index.modify_index,
        }
    }
}

fn proxy() -> Value {
    json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
}

/// A service instance as the agent and health endpoints show it (`AgentService`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<&'a str, AddrOut<'a>>,
    #[serde(serialize_with = "meta_map")]
    meta: &'a registry_proto::model::MetaMap,
    port: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    socket_path: &'a str,
    weights: WeightsOut,
    enable_tag_override: bool,
    proxy: Value,
    connect: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacenter: Option<&'a str>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> ServiceOut<'a> {
    /// The shape of `s`; `dc` is set for the agent endpoints, which show `Datacenter`.
    pub fn new(s: &'a NodeService, dc: Option<&'a str>) -> Self {
        ServiceOut {
            kind: &s.kind,
            id: &s.id,
            service: &s.service,
            tags: &s.tags,
            address: &s.address,
            tagged_addresses: tagged(&s.tagged_addresses),
            meta: &s.meta,
            port: s.port,
            socket_path: &s.socket_path,
            weights: (&s.weights).into(),
            enable_tag_override: s.enable_tag_override,
            proxy: proxy(),
            connect: json!({}),
            datacenter: dc,
            create_index: s.index.create_index,
            modify_index: s.index.modify_index,
        }
    }
}

/// `structs.ServiceNode` (`/v1/catalog/service/:name`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceNodeOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    node_meta: &'a BTreeMap<String, String>,
    service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    service_address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    service_tagged_addresses: BTreeMap<&'a str, AddrOut<'a>>,
    service_weights: WeightsOut,
    #[serde(serialize_with = "meta_map")]
    service_meta: &'a registry_proto::model::MetaMap,
    service_port: u16,
    service_socket_path: &'a str,
    service_enable_tag_override: bool,
    service_proxy: Value,
    service_connect: Value,
    service_locality: Option<()>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> ServiceNodeOut<'a> {
    /// The shape of one instance on its node.
    pub fn new(n: &'a Node, s: &'a NodeService) -> Self {
        ServiceNodeOut {
            id: &n.id,
            node: &n.node,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: &n.tagged_addresses,
            node_meta: &n.meta,
            service_kind: &s.kind,
            service_id: &s.id,
            service_name: &s.service,
            service_tags: &s.tags,
            service_address: &s.address,
            service_tagged_addresses: tagged(&s.tagged_addresses),
            service_weights: (&s.weights).into(),
            service_meta: &s.meta,
            service_port: s.port,
            service_socket_path: &s.socket_path,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: proxy(),
            service_connect: json!({}),
            service_locality: None,
            create_index: s.index.create_index,
            modify_index: s.index.modify_index,
        }
    }
}

/// `structs.HealthCheck`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckOut<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    status: &'a str,
    notes: &'a str,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    #[serde(rename = "Type")]
    check_type: &'a str,
    interval: String,
    timeout: String,
    exposed_port: u16,
    definition: Value,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a HealthCheck> for CheckOut<'a> {
    fn from(c: &'a HealthCheck) -> Self {
        let d = &c.definition;
        let mut def = Map::new();
        if !d.http.is_empty() {
            def.insert("HTTP".into(), json!(d.http));
            def.insert("Method".into(), json!(d.method));
            def.insert("Header".into(), json!(d.header));
            def.insert("TLSSkipVerify".into(), json!(d.tls_skip_verify));
        }
        if !d.tcp.is_empty() {
            def.insert("TCP".into(), json!(d.tcp));
        }
        if d.interval_ns > 0 {
            def.insert("Interval".into(), json!(go_duration(d.interval_ns)));
        }
        if d.timeout_ns > 0 {
            def.insert("Timeout".into(), json!(go_duration(d.timeout_ns)));
        }
        if d.deregister_critical_service_after_ns > 0 {
            def.insert(
                "DeregisterCriticalServiceAfter".into(),
                json!(go_duration(d.deregister_critical_service_after_ns)),
            );
        }
        CheckOut {
            node: &c.node,
            check_id: &c.check_id,
            name: &c.name,
            status: &c.status,
            notes: &c.notes,
            output: &c.output,
            service_id: &c.service_id,
            service_name: &c.service_name,
            service_tags: &c.service_tags,
            check_type: &c.check_type,
            interval: go_duration(d.interval_ns),
            timeout: go_duration(d.timeout_ns),
            exposed_port: 0,
            definition: Value::Object(def),
            create_index: c.index.create_index,
            modify_index: c.index.modify_index,
        }
    }
}

/// `structs.CheckServiceNode` (`/v1/health/service/:name`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckServiceNodeOut<'a> {
    node: NodeOut<'a>,
    service: ServiceOut<'a>,
    checks: Vec<CheckOut<'a>>,
}

impl<'a> CheckServiceNodeOut<'a> {
    /// One instance with its node and the checks that apply to it.
    pub fn new(n: &'a Node, s: &'a NodeService, checks: &[&'a HealthCheck]) -> Self {
        CheckServiceNodeOut {
            node: n.into(),
            service: ServiceOut::new(s, None),
            checks: checks.iter().map(|c| CheckOut::from(*c)).collect(),
        }
    }
}

/// Service metadata as a JSON object, also when empty.
fn meta_map<S: serde::Serializer>(
    m: &&registry_proto::model::MetaMap,
    s: S,
) -> Result<S::Ok, S::Error> {
    registry_proto::model::serialize_meta(m, s)
}
