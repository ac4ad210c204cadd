//! Response bodies in Consul's exact JSON shapes, built from the model.
//!
//! Owns the serializable output types of the catalog, health, agent and KV endpoints. Field
//! names and order follow `agent/structs/structs.go` and `api/*.go`; Go's `omitempty` fields
//! are skipped when empty; lists serialize as `[]` and maps as `{}`, never `null`, except
//! where Consul itself writes `null` (`ServiceLocality`, an empty KV `Value`).

use crate::duration::format_go_duration;
use crate::model::{self, DirEntry, HealthCheck, Node, NodeService};
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// An object with no fields; serializes as `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EmptyObject {}

/// DNS weights (`{"Passing":1,"Warning":1}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WeightsOut {
    /// Weight while passing.
    #[serde(rename = "Passing")]
    pub passing: i32,
    /// Weight while warning.
    #[serde(rename = "Warning")]
    pub warning: i32,
}

impl From<model::Weights> for WeightsOut {
    fn from(w: model::Weights) -> Self {
        WeightsOut {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// A service tagged address (`{"Address":"10.0.0.1","Port":8080}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceAddressOut {
    /// Address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
}

impl From<&model::ServiceAddress> for ServiceAddressOut {
    fn from(a: &model::ServiceAddress) -> Self {
        ServiceAddressOut {
            address: a.address.clone(),
            port: a.port,
        }
    }
}

fn tagged(map: &BTreeMap<String, model::ServiceAddress>) -> BTreeMap<String, ServiceAddressOut> {
    map.iter().map(|(k, v)| (k.clone(), v.into())).collect()
}

/// Proxy configuration of a typical service: `{"Mode":"","MeshGateway":{},"Expose":{}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyOut {
    /// Proxy mode ("" for typical services).
    #[serde(rename = "Mode")]
    pub mode: String,
    /// Mesh gateway settings.
    #[serde(rename = "MeshGateway")]
    pub mesh_gateway: EmptyObject,
    /// Expose settings.
    #[serde(rename = "Expose")]
    pub expose: EmptyObject,
}

/// A catalog node (`structs.Node`; `GET /v1/catalog/nodes` items, `Node` of other shapes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeOut {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    #[serde(rename = "Node")]
    pub node: String,
    /// Address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Datacenter.
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    /// Tagged addresses.
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// Raft create index.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft modify index.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&Node> for NodeOut {
    fn from(n: &Node) -> Self {
        NodeOut {
            id: n.id.clone(),
            node: n.node.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.index.create_index,
            modify_index: n.index.modify_index,
        }
    }
}

/// A service instance in `structs.NodeService` form (`Service` of health results, items of
/// node-services, values of catalog/node `Services`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeServiceOut {
    /// Kind (omitted when typical).
    #[serde(rename = "Kind", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    #[serde(rename = "Service")]
    pub service: String,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// Address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Tagged addresses (omitted when empty).
    #[serde(rename = "TaggedAddresses", skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddressOut>,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// Port (omitted when 0).
    #[serde(rename = "Port", skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    /// Socket path (omitted when empty).
    #[serde(rename = "SocketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// DNS weights.
    #[serde(rename = "Weights")]
    pub weights: WeightsOut,
    /// Tag override flag.
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    /// Proxy configuration.
    #[serde(rename = "Proxy")]
    pub proxy: ProxyOut,
    /// Connect configuration.
    #[serde(rename = "Connect")]
    pub connect: EmptyObject,
    /// Peer the service was imported from ("").
    #[serde(rename = "PeerName")]
    pub peer_name: String,
    /// Raft create index.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft modify index.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&NodeService> for NodeServiceOut {
    fn from(s: &NodeService) -> Self {
        NodeServiceOut {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.service.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            tagged_addresses: tagged(&s.tagged_addresses),
            meta: s.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            port: s.port,
            socket_path: s.socket_path.clone(),
            weights: s.weights.into(),
            enable_tag_override: s.enable_tag_override,
            proxy: ProxyOut::default(),
            connect: EmptyObject {},
            peer_name: String::new(),
            create_index: s.index.create_index,
            modify_index: s.index.modify_index,
        }
    }
}

/// One item of `GET /v1/catalog/service/:name` (`structs.ServiceNode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceNode {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    #[serde(rename = "Node")]
    pub node: String,
    /// Node address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Datacenter.
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    /// Node tagged addresses.
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(rename = "NodeMeta")]
    pub node_meta: BTreeMap<String, String>,
    /// Service kind.
    #[serde(rename = "ServiceKind")]
    pub service_kind: String,
    /// Instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    /// Service tags.
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    /// Service address ("" means use `Address`).
    #[serde(rename = "ServiceAddress")]
    pub service_address: String,
    /// Service tagged addresses (omitted when empty).
    #[serde(
        rename = "ServiceTaggedAddresses",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub service_tagged_addresses: BTreeMap<String, ServiceAddressOut>,
    /// DNS weights.
    #[serde(rename = "ServiceWeights")]
    pub service_weights: WeightsOut,
    /// Service metadata.
    #[serde(rename = "ServiceMeta")]
    pub service_meta: BTreeMap<String, String>,
    /// Service port.
    #[serde(rename = "ServicePort")]
    pub service_port: u16,
    /// Service socket path.
    #[serde(rename = "ServiceSocketPath")]
    pub service_socket_path: String,
    /// Tag override flag.
    #[serde(rename = "ServiceEnableTagOverride")]
    pub service_enable_tag_override: bool,
    /// Proxy configuration.
    #[serde(rename = "ServiceProxy")]
    pub service_proxy: ProxyOut,
    /// Connect configuration.
    #[serde(rename = "ServiceConnect")]
    pub service_connect: EmptyObject,
    /// Locality (always `null`).
    #[serde(rename = "ServiceLocality")]
    pub service_locality: Option<EmptyObject>,
    /// Service create index.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Service modify index.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl ServiceNode {
    /// Joins a service instance with its node.
    pub fn new(node: &Node, service: &NodeService) -> ServiceNode {
        ServiceNode {
            id: node.id.clone(),
            node: node.node.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_kind: service.kind.clone(),
            service_id: service.id.clone(),
            service_name: service.service.clone(),
            service_tags: service.tags.clone(),
            service_address: service.address.clone(),
            service_tagged_addresses: tagged(&service.tagged_addresses),
            service_weights: service.weights.into(),
            service_meta: service
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            service_port: service.port,
            service_socket_path: service.socket_path.clone(),
            service_enable_tag_override: service.enable_tag_override,
            service_proxy: ProxyOut::default(),
            service_connect: EmptyObject {},
            service_locality: None,
            create_index: service.index.create_index,
            modify_index: service.index.modify_index,
        }
    }
}

/// A check's `Definition` (`structs.HealthCheckDefinition` as its `MarshalJSON` writes it:
/// every field omitted when empty, durations as Go strings, `TTL` in nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckDefinitionOut {
    /// Interval.
    #[serde(rename = "Interval", skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Timeout.
    #[serde(rename = "Timeout", skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// Reap delay.
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        skip_serializing_if = "String::is_empty"
    )]
    pub deregister_critical_service_after: String,
    /// HTTP URL.
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    /// SNI name.
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    /// Skip TLS verification.
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    pub tls_skip_verify: bool,
    /// HTTP headers.
    #[serde(rename = "Header", skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP method.
    #[serde(rename = "Method", skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// HTTP body.
    #[serde(rename = "Body", skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// TCP target.
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    /// TTL in nanoseconds.
    #[serde(rename = "TTL", skip_serializing_if = "is_zero_u64")]
    pub ttl: u64,
}

fn go_duration_or_empty(ns: u64) -> String {
    if ns == 0 {
        String::new()
    } else {
        format_go_duration(Duration::from_nanos(ns))
    }
}

impl From<&model::CheckDefinition> for CheckDefinitionOut {
    fn from(d: &model::CheckDefinition) -> Self {
        CheckDefinitionOut {
            interval: go_duration_or_empty(d.interval_ns),
            timeout: go_duration_or_empty(d.timeout_ns),
            deregister_critical_service_after: go_duration_or_empty(
                d.deregister_critical_service_after_ns,
            ),
            http: d.http.clone(),
            tls_server_name: d.tls_server_name.clone(),
            tls_skip_verify: d.tls_skip_verify,
            header: d.header.clone(),
            method: d.method.clone(),
            body: d.body.clone(),
            tcp: d.tcp.clone(),
            ttl: d.ttl_ns,
        }
    }
}

/// A health check (`structs.HealthCheck`): items of health/checks, health/node,
/// health/state, `Checks` of health/service, values of agent/checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheckOut {
    /// Node.
    #[serde(rename = "Node")]
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Status.
    #[serde(rename = "Status")]
    pub status: String,
    /// Notes.
    #[serde(rename = "Notes")]
    pub notes: String,
    /// Output.
    #[serde(rename = "Output")]
    pub output: String,
    /// Service ID ("" for node checks).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    /// Service tags (never null).
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    /// Type (`http`, `ttl`, ...; "" for external checks).
    #[serde(rename = "Type")]
    pub check_type: String,
    /// Interval as a Go string ("" when none).
    #[serde(rename = "Interval")]
    pub interval: String,
    /// Timeout as a Go string ("" when none).
    #[serde(rename = "Timeout")]
    pub timeout: String,
    /// Exposed Envoy port (0).
    #[serde(rename = "ExposedPort")]
    pub exposed_port: u16,
    /// How the check runs.
    #[serde(rename = "Definition")]
    pub definition: CheckDefinitionOut,
    /// Raft create index.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft modify index.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&HealthCheck> for HealthCheckOut {
    fn from(c: &HealthCheck) -> Self {
        HealthCheckOut {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status.clone(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            check_type: c.check_type.clone(),
            interval: go_duration_or_empty(c.definition.interval_ns),
            timeout: go_duration_or_empty(c.definition.timeout_ns),
            exposed_port: 0,
            definition: (&c.definition).into(),
            create_index: c.index.create_index,
            modify_index: c.index.modify_index,
        }
    }
}

/// Values of `GET /v1/agent/checks` (Consul returns `structs.HealthCheck` there too).
pub type AgentCheckOut = HealthCheckOut;

/// One item of `GET /v1/health/service/:name` (`structs.CheckServiceNode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckServiceNode {
    /// The node.
    #[serde(rename = "Node")]
    pub node: NodeOut,
    /// The service instance.
    #[serde(rename = "Service")]
    pub service: NodeServiceOut,
    /// Node-level and service-level checks.
    #[serde(rename = "Checks")]
    pub checks: Vec<HealthCheckOut>,
}

impl CheckServiceNode {
    /// Builds an entry; `checks` should hold the node's checks and the service's checks.
    pub fn new<'a>(
        node: &Node,
        service: &NodeService,
        checks: impl IntoIterator<Item = &'a HealthCheck>,
    ) -> CheckServiceNode {
        CheckServiceNode {
            node: node.into(),
            service: service.into(),
            checks: checks.into_iter().map(HealthCheckOut::from).collect(),
        }
    }

    /// Whether every check passes (what `?passing` keeps).
    pub fn all_passing(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.status == model::status::PASSING)
    }
}

/// Values of `GET /v1/agent/services` and the body of `GET /v1/agent/service/:id`
/// (`api.AgentService`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentServiceOut {
    /// Kind (omitted when typical).
    #[serde(rename = "Kind", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    #[serde(rename = "Service")]
    pub service: String,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Socket path (omitted when empty).
    #[serde(rename = "SocketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// Tagged addresses (omitted when empty).
    #[serde(rename = "TaggedAddresses", skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddressOut>,
    /// DNS weights.
    #[serde(rename = "Weights")]
    pub weights: WeightsOut,
    /// Tag override flag.
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    /// Raft create index (omitted when 0).
    #[serde(rename = "CreateIndex", skip_serializing_if = "is_zero_u64")]
    pub create_index: u64,
    /// Raft modify index (omitted when 0).
    #[serde(rename = "ModifyIndex", skip_serializing_if = "is_zero_u64")]
    pub modify_index: u64,
    /// Content hash for hash-based blocking (omitted when empty).
    #[serde(rename = "ContentHash", skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    /// Datacenter of the agent (omitted when empty).
    #[serde(rename = "Datacenter", skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
}

impl AgentServiceOut {
    /// Builds the agent view of a local service; `datacenter` is the agent's.
    pub fn new(service: &NodeService, datacenter: &str) -> AgentServiceOut {
        AgentServiceOut {
            kind: service.kind.clone(),
            id: service.id.clone(),
            service: service.service.clone(),
            tags: service.tags.clone(),
            meta: service
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            port: service.port,
            address: service.address.clone(),
            socket_path: service.socket_path.clone(),
            tagged_addresses: tagged(&service.tagged_addresses),
            weights: service.weights.into(),
            enable_tag_override: service.enable_tag_override,
            create_index: service.index.create_index,
            modify_index: service.index.modify_index,
            content_hash: String::new(),
            datacenter: datacenter.to_string(),
        }
    }

    /// A stable hash of every field but `ContentHash`, as lowercase hex (FNV-1a, 64 bits);
    /// use it for `X-Consul-ContentHash` and `?hash=` blocking.
    pub fn content_hash(&self) -> String {
        let mut copy = self.clone();
        copy.content_hash = String::new();
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:x}")
    }

    /// Returns `self` with `ContentHash` filled in.
    pub fn with_content_hash(mut self) -> AgentServiceOut {
        self.content_hash = self.content_hash();
        self
    }
}

/// Body of `GET /v1/catalog/node/:node` (`structs.NodeServices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogNodeOut {
    /// The node.
    #[serde(rename = "Node")]
    pub node: NodeOut,
    /// Its services, by instance ID.
    #[serde(rename = "Services")]
    pub services: BTreeMap<String, NodeServiceOut>,
}

impl CatalogNodeOut {
    /// Builds the body from a node and its services.
    pub fn new<'a>(
        node: &Node,
        services: impl IntoIterator<Item = &'a NodeService>,
    ) -> CatalogNodeOut {
        CatalogNodeOut {
            node: node.into(),
            services: services
                .into_iter()
                .map(|s| (s.id.clone(), NodeServiceOut::from(s)))
                .collect(),
        }
    }
}

/// Body of `GET /v1/catalog/node-services/:node` (`structs.NodeServiceList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeServicesOut {
    /// The node.
    #[serde(rename = "Node")]
    pub node: NodeOut,
    /// Its services.
    #[serde(rename = "Services")]
    pub services: Vec<NodeServiceOut>,
}

impl NodeServicesOut {
    /// Builds the body from a node and its services.
    pub fn new<'a>(
        node: &Node,
        services: impl IntoIterator<Item = &'a NodeService>,
    ) -> NodeServicesOut {
        NodeServicesOut {
            node: node.into(),
            services: services.into_iter().map(NodeServiceOut::from).collect(),
        }
    }
}

/// A KV entry (`structs.DirEntry`), as in `GET /v1/kv/:key` arrays and txn results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvPairOut {
    /// Times the key was acquired.
    #[serde(rename = "LockIndex")]
    pub lock_index: u64,
    /// Key.
    #[serde(rename = "Key")]
    pub key: String,
    /// Client flags (full u64).
    #[serde(rename = "Flags")]
    pub flags: u64,
    /// Base64 value, `null` when empty.
    #[serde(rename = "Value")]
    pub value: Option<String>,
    /// Lock holder (omitted when none).
    #[serde(rename = "Session", skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// Raft create index.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Raft modify index.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&DirEntry> for KvPairOut {
    fn from(e: &DirEntry) -> Self {
        KvPairOut {
            lock_index: e.lock_index,
            key: e.key.clone(),
            flags: e.flags,
            value: if e.value.is_empty() {
                None
            } else {
                Some(base64::engine::general_purpose::STANDARD.encode(&e.value))
            },
            session: e.session.clone(),
            create_index: e.index.create_index,
            modify_index: e.index.modify_index,
        }
    }
}

impl KvPairOut {
    /// The same entry with `Value` forced to `null` (txn results of non-read verbs).
    pub fn without_value(mut self) -> KvPairOut {
        self.value = None;
        self
    }
}
