//! Kubernetes → catalog translation: which Services are synced and the catalog instances a
//! Service with its EndpointSlices and Nodes becomes. Pure functions, no I/O; the tables in
//! docs/kubernetes.md describe every rule implemented here.

pub mod annotations;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use sha1::{Digest, Sha1};

use annotations as ann;

/// Meta key and value marking everything k8s-sync registers.
pub const SOURCE_KEY: &str = "external-source";
/// See [`SOURCE_KEY`].
pub const SOURCE_VALUE: &str = "kubernetes";
/// Service meta: the Kubernetes namespace of the Service.
pub const META_K8S_NS: &str = "external-k8s-ns";
/// Instance meta: kind of the endpoint's `targetRef`.
pub const META_REF_KIND: &str = "external-k8s-ref-kind";
/// Instance meta: name of the endpoint's `targetRef`.
pub const META_REF_NAME: &str = "external-k8s-ref-name";
/// Instance meta: the endpoint's node.
pub const META_NODE_NAME: &str = "external-k8s-node-name";
/// Instance meta: the endpoint's zone.
pub const META_ZONE: &str = "external-k8s-topology-zone";
/// Name of the readiness check of endpoint-based instances.
pub const CHECK_NAME: &str = "Kubernetes Readiness Check";
/// Type of the readiness check.
pub const CHECK_TYPE: &str = "kubernetes-readiness";
/// Output of a passing readiness check.
pub const CHECK_PASSING_OUTPUT: &str = "Kubernetes health checks passing";
/// Output of a critical readiness check.
pub const CHECK_CRITICAL_OUTPUT: &str = "Kubernetes health checks failing";
/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Which node address a NodePort instance is registered at (`-node-port-sync-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePortSyncType {
    /// The node's ExternalIP; no instance when it has none.
    ExternalOnly,
    /// The node's InternalIP.
    InternalOnly,
    /// ExternalIP, else InternalIP.
    ExternalFirst,
}

impl std::str::FromStr for NodePortSyncType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ExternalOnly" => Ok(Self::ExternalOnly),
            "InternalOnly" => Ok(Self::InternalOnly),
            "ExternalFirst" => Ok(Self::ExternalFirst),
            other => Err(format!(
                "invalid node port sync type {other:?}: ExternalOnly, InternalOnly or ExternalFirst"
            )),
        }
    }
}

/// The flags that shape translation.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `-allow-k8s-namespace` (`*` = all); empty allows nothing.
    pub allow_namespaces: BTreeSet<String>,
    /// `-deny-k8s-namespace`; wins over the allow list.
    pub deny_namespaces: BTreeSet<String>,
    /// `-k8s-default-sync`.
    pub default_sync: bool,
    /// `-sync-clusterip-services`.
    pub sync_clusterip: bool,
    /// `-sync-lb-services-endpoints`.
    pub sync_lb_endpoints: bool,
    /// `-node-port-sync-type`.
    pub node_port_sync: NodePortSyncType,
    /// `-consul-service-prefix`.
    pub consul_prefix: String,
    /// `-add-k8s-namespace-suffix`.
    pub add_namespace_suffix: bool,
    /// `-consul-k8s-tag`.
    pub tag: String,
}

impl Default for SyncConfig {
    /// The binary's flag defaults, except that every namespace is allowed.
    fn default() -> Self {
        SyncConfig {
            allow_namespaces: ["*".to_string()].into(),
            deny_namespaces: BTreeSet::new(),
            default_sync: true,
            sync_clusterip: true,
            sync_lb_endpoints: false,
            node_port_sync: NodePortSyncType::ExternalOnly,
            consul_prefix: String::new(),
            add_namespace_suffix: false,
            tag: "k8s".into(),
        }
    }
}

/// The readiness check of an endpoint-based instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessCheck {
    /// `<k8s namespace>/<service ID>`.
    pub id: String,
    /// Endpoint `conditions.ready == true`.
    pub passing: bool,
}

/// One catalog service instance k8s-sync wants on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Service ID (`name-<12 hex of sha1(name-addr)>`).
    pub id: String,
    /// Catalog service name.
    pub service: String,
    /// Instance address.
    pub address: String,
    /// Instance port (0 when the Service has no ports).
    pub port: i32,
    /// The k8s tag first, then the `service-tags` annotation's.
    pub tags: Vec<String>,
    /// Service meta.
    pub meta: BTreeMap<String, String>,
    /// `Weights.Passing` from `service-weight`, when set.
    pub weight: Option<i32>,
    /// Readiness check, for endpoint-based instances.
    pub check: Option<ReadinessCheck>,
}

/// What a Service translates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translation {
    /// Not synced (filtered out, or a type that registers nothing): none of its instances stay.
    NotSynced,
    /// These instances (possibly none, e.g. a LoadBalancer without an address yet).
    Instances(Vec<Instance>),
    /// The Service's annotations are invalid: keep whatever was registered for it before.
    Keep,
}

/// Looks nodes up by name (NodePort addresses).
pub trait NodeLookup {
    /// The node called `name`, if known.
    fn node(&self, name: &str) -> Option<Arc<Node>>;
}

impl NodeLookup for BTreeMap<String, Arc<Node>> {
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.get(name).cloned()
    }
}

/// consul-k8s's instance ID: `name-` + the first 12 hex digits of sha1(`name-addr`).
pub fn service_id(name: &str, addr: &str) -> String {
    let sum = Sha1::digest(format!("{name}-{addr}").as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}-{}", &hex[..12])
}

fn service_type(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether the Service passes the namespace lists, the ClusterIP switch and the
/// `service-sync` annotation (in that order; an unparseable annotation uses the default).
pub fn should_sync(svc: &Service, cfg: &SyncConfig) -> bool {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    if cfg.deny_namespaces.contains(ns) {
        return false;
    }
    if !cfg.allow_namespaces.contains("*") && !cfg.allow_namespaces.contains(ns) {
        return false;
    }
    if service_type(svc) == "ClusterIP" && !cfg.sync_clusterip {
        return false;
    }
    match annotation(svc, ann::SERVICE_SYNC) {
        Some(v) => match ann::parse_go_bool(v) {
            Some(b) => b,
            None => {
                tracing::warn!(service = ?svc.metadata.name, namespace = ns, value = v,
                    "invalid {} annotation, using the default", ann::SERVICE_SYNC);
                cfg.default_sync
            }
        },
        None => cfg.default_sync,
    }
}

/// The catalog name of a Service: the `service-name` annotation (trimmed, 1..=255 chars), else
/// prefix + name (+ `-namespace`). `None` when the annotation is invalid.
pub fn catalog_name(svc: &Service, cfg: &SyncConfig) -> Option<String> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    if let Some(v) = annotation(svc, ann::SERVICE_NAME) {
        let t = v.trim();
        if t.is_empty() || t.len() > 255 {
            tracing::error!(
                service = name,
                namespace = ns,
                length = t.len(),
                "invalid service name length in annotation: must be 1-255 characters"
            );
            return None;
        }
        return Some(t.to_string());
    }
    let mut out = format!("{}{name}", cfg.consul_prefix);
    if cfg.add_namespace_suffix {
        out.push('-');
        out.push_str(ns);
    }
    Some(out)
}

/// The port override from the `service-port` annotation.
enum PortOverride {
    None,
    Number,
    Name(String),
}

/// Everything shared by the instances of one Service.
struct Base {
    name: String,
    ns: String,
    port: i32,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    weight: Option<i32>,
    port_override: PortOverride,
}

impl Base {
    fn instance(&self, addr: &str, address: &str, port: i32) -> Instance {
        Instance {
            id: service_id(&self.name, addr),
            service: self.name.clone(),
            address: address.to_string(),
            port,
            tags: self.tags.clone(),
            meta: self.meta.clone(),
            weight: None,
            check: None,
        }
    }
}

fn base(svc: &Service, name: String, cfg: &SyncConfig) -> Base {
    let ns = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let is_node_port = service_type(svc) == "NodePort";
    let mut port_override = PortOverride::None;
    let mut port = 0;
    if let Some(v) = annotation(svc, ann::SERVICE_PORT) {
        match ann::parse_go_int(v).and_then(|p| i32::try_from(p).ok()) {
            Some(p) => {
                port = p;
                port_override = PortOverride::Number;
            }
            None => port_override = PortOverride::Name(v.to_string()),
        }
    }
    if let PortOverride::Name(wanted) = &port_override {
        if let Some(p) = ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == wanted)
        {
            port = match p.node_port {
                Some(np) if is_node_port && np > 0 => np,
                _ => p.port,
            };
        }
    }
    if port == 0 {
        if is_node_port {
            port = ports
                .iter()
                .filter_map(|p| p.node_port)
                .find(|np| *np > 0)
                .unwrap_or(0);
        } else if let Some(p) = ports.first() {
            port = p.port;
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert(SOURCE_KEY.to_string(), SOURCE_VALUE.to_string());
    meta.insert(META_K8S_NS.to_string(), ns.clone());
    for p in ports {
        meta.insert(
            format!("port-{}", p.name.as_deref().unwrap_or("")),
            p.port.to_string(),
        );
    }
    let mut tags = vec![cfg.tag.clone()];
    if let Some(raw) = annotation(svc, ann::SERVICE_TAGS) {
        tags.extend(ann::parse_tags(raw));
    }
    if let Some(all) = svc.metadata.annotations.as_ref() {
        for (k, v) in all {
            if let Some(key) = k.strip_prefix(ann::SERVICE_META_PREFIX) {
                meta.insert(key.to_string(), v.clone());
            }
        }
    }
    let weight = annotation(svc, ann::SERVICE_WEIGHT).and_then(ann::parse_weight);
    Base {
        name,
        ns,
        port,
        tags,
        meta,
        weight,
        port_override,
    }
}

fn endpoint_meta(base: &BTreeMap<String, String>, ep: &Endpoint) -> BTreeMap<String, String> {
    let mut meta = base.clone();
    if let Some(r) = &ep.target_ref {
        meta.insert(META_REF_NAME.into(), r.name.clone().unwrap_or_default());
        meta.insert(META_REF_KIND.into(), r.kind.clone().unwrap_or_default());
    }
    if let Some(n) = &ep.node_name {
        meta.insert(META_NODE_NAME.into(), n.clone());
    }
    if let Some(z) = &ep.zone {
        meta.insert(META_ZONE.into(), z.clone());
    }
    meta
}

/// The instances of one Service. `slices` are the EndpointSlices labelled with its name (in
/// its namespace); `nodes` resolves NodePort addresses.
pub fn translate(
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
    nodes: &dyn NodeLookup,
    cfg: &SyncConfig,
) -> Translation {
    if !should_sync(svc, cfg) {
        return Translation::NotSynced;
    }
    let Some(name) = catalog_name(svc, cfg) else {
        return Translation::Keep;
    };
    let b = base(svc, name, cfg);
    let spec = svc.spec.clone().unwrap_or_default();

    if let Some(ips) = spec.external_ips.as_ref().filter(|ips| !ips.is_empty()) {
        let out = ips
            .iter()
            .map(|ip| {
                let mut i = b.instance(ip, ip, b.port);
                i.weight = b.weight;
                i
            })
            .collect();
        return Translation::Instances(out);
    }

    match service_type(svc) {
        "LoadBalancer" if cfg.sync_lb_endpoints => {
            Translation::Instances(endpoint_instances(&b, slices, false))
        }
        "LoadBalancer" => {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            let ingress = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_deref())
                .unwrap_or_default();
            for ing in ingress {
                let addr = ing
                    .ip
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .or(ing.hostname.as_deref())
                    .unwrap_or("");
                if addr.is_empty() || !seen.insert(addr.to_string()) {
                    continue;
                }
                let mut i = b.instance(addr, addr, b.port);
                i.weight = b.weight;
                out.push(i);
            }
            Translation::Instances(out)
        }
        "NodePort" => Translation::Instances(node_port_instances(&b, slices, nodes, cfg)),
        "ClusterIP" => Translation::Instances(endpoint_instances(&b, slices, true)),
        _ => Translation::NotSynced,
    }
}

fn node_port_instances(
    b: &Base,
    slices: &[Arc<EndpointSlice>],
    nodes: &dyn NodeLookup,
    cfg: &SyncConfig,
) -> Vec<Instance> {
    let mut out = Vec::new();
    for slice in slices {
        for ep in &slice.endpoints {
            let Some(node_name) = ep.node_name.as_deref() else {
                continue;
            };
            let Some(node) = nodes.node(node_name) else {
                tracing::debug!(node = node_name, "node of a NodePort endpoint is not known");
                continue;
            };
            let addrs = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_deref())
                .unwrap_or_default();
            let first = |t: &str| {
                addrs
                    .iter()
                    .find(|a| a.type_ == t)
                    .map(|a| a.address.clone())
            };
            let node_addr = match cfg.node_port_sync {
                NodePortSyncType::ExternalOnly => first("ExternalIP"),
                NodePortSyncType::InternalOnly => first("InternalIP"),
                NodePortSyncType::ExternalFirst => {
                    first("ExternalIP").or_else(|| first("InternalIP"))
                }
            };
            let Some(node_addr) = node_addr else {
                continue;
            };
            for ep_addr in &ep.addresses {
                let mut i = b.instance(ep_addr, &node_addr, b.port);
                i.meta = endpoint_meta(&b.meta, ep);
                out.push(i);
            }
        }
    }
    out
}

fn endpoint_instances(
    b: &Base,
    slices: &[Arc<EndpointSlice>],
    use_hostname: bool,
) -> Vec<Instance> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let mut port = b.port;
        match &b.port_override {
            PortOverride::Name(wanted) => {
                if let Some(p) = ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(wanted.as_str()))
                {
                    port = p.port.unwrap_or(port);
                }
            }
            PortOverride::None => {
                if let Some(p) = ports.first() {
                    port = p.port.unwrap_or(port);
                }
            }
            PortOverride::Number => {}
        }
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            let mut addrs: Vec<&str> = ep.addresses.iter().map(String::as_str).collect();
            if addrs.is_empty() && use_hostname {
                if let Some(h) = ep.hostname.as_deref() {
                    addrs.push(h);
                }
            }
            for addr in addrs {
                if addr.is_empty() || !seen.insert(addr.to_string()) {
                    continue;
                }
                let mut i = b.instance(addr, addr, port);
                i.meta = endpoint_meta(&b.meta, ep);
                i.check = Some(ReadinessCheck {
                    id: format!("{}/{}", b.ns, i.id),
                    passing: ready,
                });
                out.push(i);
            }
        }
    }
    out
}
