//! Catalog request bodies: `PUT /v1/catalog/register` and `PUT /v1/catalog/deregister`.
//!
//! Owns [`CatalogRegisterRequest`] (Consul's `structs.RegisterRequest` as clients such as
//! consul-k8s and python-consul send it: a node, an optional service in the `AgentService`
//! shape, and checks in the `HealthCheck` shape) and [`CatalogDeregisterRequest`], plus their
//! validation (`agent/consul/catalog_endpoint.go` Register/Deregister texts) and conversion
//! into [`crate::command::RegisterRequest`] / [`crate::command::DeregisterRequest`].

use super::agent::{ServiceAddressIn, WeightsIn, SERVICE_ADDRESS_SCHEMA, WEIGHTS_SCHEMA};
use super::validate::{is_any_address, is_valid_status, validate_uuid};
use crate::command::{DeregisterRequest, RegisterRequest};
use crate::duration::GoDuration;
use crate::lenient::{Field, FieldKind, Lenient, Schema};
use crate::model::{self, status, CheckDefinition, HealthCheck, Node, NodeService};
use crate::ProtoError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Schema of [`CatalogService`].
pub static CATALOG_SERVICE_SCHEMA: Schema = Schema {
    name: "CatalogService",
    fields: &[
        Field::new("Kind", FieldKind::String),
        Field::new("ID", FieldKind::String),
        Field::aliased("Service", &["Name", "ServiceName"], FieldKind::String),
        Field::new("Tags", FieldKind::StringList),
        Field::new("Address", FieldKind::String),
        Field::new(
            "TaggedAddresses",
            FieldKind::ObjectMap(&SERVICE_ADDRESS_SCHEMA),
        ),
        Field::new("Meta", FieldKind::StringMap),
        Field::new("Port", FieldKind::Port),
        Field::new("SocketPath", FieldKind::String),
        Field::new("Weights", FieldKind::Object(&WEIGHTS_SCHEMA)),
        Field::new("EnableTagOverride", FieldKind::Bool),
        Field::new("Proxy", FieldKind::Any),
        Field::new("Connect", FieldKind::Any),
        Field::new("Locality", FieldKind::Any),
    ],
};

/// Schema of [`CheckDefinitionIn`].
pub static CHECK_DEFINITION_SCHEMA: Schema = Schema {
    name: "HealthCheckDefinition",
    fields: &[
        Field::new("HTTP", FieldKind::String),
        Field::new("TLSServerName", FieldKind::String),
        Field::new("TLSSkipVerify", FieldKind::Bool),
        Field::new("Header", FieldKind::HeaderMap),
        Field::new("Method", FieldKind::String),
        Field::new("Body", FieldKind::String),
        Field::new("TCP", FieldKind::String),
        Field::new("UDP", FieldKind::String),
        Field::new("GRPC", FieldKind::String),
        Field::new("H2PING", FieldKind::String),
        Field::new("OSService", FieldKind::String),
        Field::new("AliasNode", FieldKind::String),
        Field::new("AliasService", FieldKind::String),
        Field::aliased("ScriptArgs", &["Args"], FieldKind::StringList),
        Field::new("DockerContainerID", FieldKind::String),
        Field::new("Interval", FieldKind::Duration),
        Field::new("Timeout", FieldKind::Duration),
        Field::new("DeregisterCriticalServiceAfter", FieldKind::Duration),
        Field::new("TTL", FieldKind::Duration),
    ],
};

/// Schema of [`CatalogCheck`].
pub static CATALOG_CHECK_SCHEMA: Schema = Schema {
    name: "CatalogCheck",
    fields: &[
        Field::new("Node", FieldKind::String),
        Field::aliased("CheckID", &["ID"], FieldKind::String),
        Field::new("Name", FieldKind::String),
        Field::new("Status", FieldKind::String),
        Field::new("Notes", FieldKind::String),
        Field::new("Output", FieldKind::String),
        Field::new("ServiceID", FieldKind::String),
        Field::new("ServiceName", FieldKind::String),
        Field::new("ServiceTags", FieldKind::StringList),
        Field::new("Type", FieldKind::String),
        Field::new("Definition", FieldKind::Object(&CHECK_DEFINITION_SCHEMA)),
    ],
};

/// Schema of [`CatalogRegisterRequest`].
pub static CATALOG_REGISTER_SCHEMA: Schema = Schema {
    name: "CatalogRegisterRequest",
    fields: &[
        Field::new("Datacenter", FieldKind::String),
        Field::new("ID", FieldKind::String),
        Field::new("Node", FieldKind::String),
        Field::new("Address", FieldKind::String),
        Field::new("TaggedAddresses", FieldKind::StringMap),
        Field::new("NodeMeta", FieldKind::StringMap),
        Field::new("Service", FieldKind::Object(&CATALOG_SERVICE_SCHEMA)),
        Field::new("Check", FieldKind::Object(&CATALOG_CHECK_SCHEMA)),
        Field::new("Checks", FieldKind::ObjectList(&CATALOG_CHECK_SCHEMA)),
        Field::new("SkipNodeUpdate", FieldKind::Bool),
        Field::new("Locality", FieldKind::Any),
        Field::new("Partition", FieldKind::Any),
        Field::new("Namespace", FieldKind::Any),
        Field::new("PeerName", FieldKind::Any),
    ],
};

/// Schema of [`CatalogDeregisterRequest`].
pub static CATALOG_DEREGISTER_SCHEMA: Schema = Schema {
    name: "CatalogDeregisterRequest",
    fields: &[
        Field::new("Datacenter", FieldKind::String),
        Field::new("Node", FieldKind::String),
        Field::new("ServiceID", FieldKind::String),
        Field::new("CheckID", FieldKind::String),
        Field::new("Address", FieldKind::Any),
        Field::new("Partition", FieldKind::Any),
        Field::new("Namespace", FieldKind::Any),
        Field::new("PeerName", FieldKind::Any),
    ],
};

/// A service in a catalog registration (the `NodeService`/`AgentService` shape: the name is
/// `Service`; `Name` is accepted too).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogService {
    /// Service kind.
    #[serde(rename = "Kind")]
    pub kind: String,
    /// Instance ID (defaults to the name).
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
    /// Tagged addresses.
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, ServiceAddressIn>,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Unix socket path.
    #[serde(rename = "SocketPath")]
    pub socket_path: String,
    /// DNS weights (invalid or missing weights become 1/1, as in Consul's catalog).
    #[serde(rename = "Weights")]
    pub weights: Option<WeightsIn>,
    /// Tag override flag.
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    /// Mesh proxy configuration (accepted, ignored).
    #[serde(rename = "Proxy")]
    pub proxy: Option<Value>,
    /// Connect configuration (accepted, ignored).
    #[serde(rename = "Connect")]
    pub connect: Option<Value>,
    /// Locality (accepted, ignored).
    #[serde(rename = "Locality")]
    pub locality: Option<Value>,
}

/// A check definition inside a catalog check (`HealthCheckDefinition`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckDefinitionIn {
    /// URL of an HTTP check.
    #[serde(rename = "HTTP")]
    pub http: String,
    /// SNI name.
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    /// Skip TLS verification.
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// HTTP headers.
    #[serde(rename = "Header")]
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP method.
    #[serde(rename = "Method")]
    pub method: String,
    /// HTTP body.
    #[serde(rename = "Body")]
    pub body: String,
    /// TCP target.
    #[serde(rename = "TCP")]
    pub tcp: String,
    /// UDP target.
    #[serde(rename = "UDP")]
    pub udp: String,
    /// gRPC target.
    #[serde(rename = "GRPC")]
    pub grpc: String,
    /// HTTP/2 ping target.
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    /// OS service.
    #[serde(rename = "OSService")]
    pub os_service: String,
    /// Alias node.
    #[serde(rename = "AliasNode")]
    pub alias_node: String,
    /// Alias service.
    #[serde(rename = "AliasService")]
    pub alias_service: String,
    /// Script arguments.
    #[serde(rename = "ScriptArgs")]
    pub script_args: Vec<String>,
    /// Docker container.
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    /// Interval.
    #[serde(rename = "Interval")]
    pub interval: Option<GoDuration>,
    /// Timeout.
    #[serde(rename = "Timeout")]
    pub timeout: Option<GoDuration>,
    /// Reap the service after this long critical.
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    pub deregister_critical_service_after: Option<GoDuration>,
    /// TTL.
    #[serde(rename = "TTL")]
    pub ttl: Option<GoDuration>,
}

fn nanos(d: Option<GoDuration>) -> u64 {
    d.map(GoDuration::as_nanos_u64).unwrap_or(0)
}

impl CheckDefinitionIn {
    /// Consul's `CheckType().Type()` for a catalog check without an explicit `Type`.
    pub fn check_type(&self) -> &'static str {
        let has_interval = nanos(self.interval) > 0;
        let script = !self.script_args.is_empty();
        if !self.grpc.is_empty() && has_interval {
            "grpc"
        } else if !self.http.is_empty() && has_interval {
            "http"
        } else if nanos(self.ttl) > 0 {
            "ttl"
        } else if !self.tcp.is_empty() && has_interval {
            "tcp"
        } else if !self.udp.is_empty() && has_interval {
            "udp"
        } else if !self.alias_node.is_empty() || !self.alias_service.is_empty() {
            "alias"
        } else if script && !self.docker_container_id.is_empty() && has_interval {
            "docker"
        } else if script && has_interval {
            "script"
        } else if !self.h2ping.is_empty() && has_interval {
            "h2ping"
        } else if !self.os_service.is_empty() && has_interval {
            "os_service"
        } else {
            ""
        }
    }

    /// The model's stored definition.
    pub fn to_model(&self) -> CheckDefinition {
        CheckDefinition {
            http: self.http.clone(),
            method: self.method.clone(),
            header: self.header.clone(),
            body: self.body.clone(),
            tls_skip_verify: self.tls_skip_verify,
            tls_server_name: self.tls_server_name.clone(),
            tcp: self.tcp.clone(),
            interval_ns: nanos(self.interval),
            timeout_ns: nanos(self.timeout),
            ttl_ns: nanos(self.ttl),
            deregister_critical_service_after_ns: nanos(self.deregister_critical_service_after),
        }
    }
}

/// A check in a catalog registration (the `HealthCheck` shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogCheck {
    /// Node (defaults to the request's node; must match it).
    #[serde(rename = "Node")]
    pub node: String,
    /// Check ID (defaults to `Name`).
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Status (default critical).
    #[serde(rename = "Status")]
    pub status: String,
    /// Notes.
    #[serde(rename = "Notes")]
    pub notes: String,
    /// Output.
    #[serde(rename = "Output")]
    pub output: String,
    /// Service the check belongs to.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name (filled from the service when it is in the same request).
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    /// Service tags (filled from the service when it is in the same request).
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    /// Check type (derived from `Definition` when empty).
    #[serde(rename = "Type")]
    pub check_type: String,
    /// How the check runs.
    #[serde(rename = "Definition")]
    pub definition: Option<CheckDefinitionIn>,
}

/// `PUT /v1/catalog/register` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogRegisterRequest {
    /// Target datacenter ("" = the local one).
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name (required).
    #[serde(rename = "Node")]
    pub node: String,
    /// Node address (required unless `SkipNodeUpdate`).
    #[serde(rename = "Address")]
    pub address: String,
    /// Node tagged addresses.
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(rename = "NodeMeta")]
    pub node_meta: BTreeMap<String, String>,
    /// A service to register.
    #[serde(rename = "Service")]
    pub service: Option<CatalogService>,
    /// A single check (appended after `Checks`).
    #[serde(rename = "Check")]
    pub check: Option<CatalogCheck>,
    /// Checks.
    #[serde(rename = "Checks")]
    pub checks: Vec<CatalogCheck>,
    /// Leave an existing node's fields alone.
    #[serde(rename = "SkipNodeUpdate")]
    pub skip_node_update: bool,
    /// Locality (accepted, ignored).
    #[serde(rename = "Locality")]
    pub locality: Option<Value>,
    /// Enterprise partition (accepted, ignored).
    #[serde(rename = "Partition")]
    pub partition: Option<Value>,
    /// Enterprise namespace (accepted, ignored).
    #[serde(rename = "Namespace")]
    pub namespace: Option<Value>,
    /// Peer name (accepted, ignored).
    #[serde(rename = "PeerName")]
    pub peer_name: Option<Value>,
}

impl Lenient for CatalogRegisterRequest {
    const SCHEMA: &'static Schema = &CATALOG_REGISTER_SCHEMA;
}

impl CatalogService {
    fn into_model(self) -> Result<NodeService, ProtoError> {
        if self.service.is_empty() {
            return Err(ProtoError::Invalid(if self.id.is_empty() {
                "Must provide service name".to_string()
            } else {
                "Must provide service name with ID".to_string()
            }));
        }
        if is_any_address(&self.address) {
            return Err(ProtoError::Invalid("Invalid service address".to_string()));
        }
        let weights = self
            .weights
            .and_then(|w| w.to_model().ok())
            .unwrap_or_default();
        let id = if self.id.is_empty() {
            self.service.clone()
        } else {
            self.id
        };
        Ok(NodeService {
            kind: self.kind,
            id,
            service: self.service,
            tags: self.tags,
            address: self.address,
            tagged_addresses: self
                .tagged_addresses
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            meta: self.meta.into_iter().collect(),
            port: self.port,
            socket_path: self.socket_path,
            weights,
            enable_tag_override: self.enable_tag_override,
            index: model::RaftIndex::default(),
        })
    }
}

impl CatalogRegisterRequest {
    /// The datacenter the request targets: `Datacenter`, else `local_datacenter`.
    pub fn target_datacenter<'a>(&'a self, local_datacenter: &'a str) -> &'a str {
        if self.datacenter.is_empty() {
            local_datacenter
        } else {
            &self.datacenter
        }
    }

    /// Validates as Consul's `Catalog.Register` does and converts into the Raft command.
    ///
    /// The node's datacenter is `Datacenter`, else `local_datacenter`. Checks get the
    /// request's node, an ID defaulting to their name, status critical when unset and a
    /// type derived from their definition. A check bound to the service in the same request
    /// gets its name and tags; other bound checks are left for the state machine to resolve.
    pub fn into_command(self, local_datacenter: &str) -> Result<RegisterRequest, ProtoError> {
        let invalid = |m: String| ProtoError::Invalid(m);
        if self.node.is_empty() {
            return Err(invalid("Must provide node".to_string()));
        }
        if !self.id.is_empty() {
            validate_uuid(&self.id).map_err(|e| invalid(format!("Bad node ID: {e}")))?;
        }
        if self.address.is_empty() && !self.skip_node_update {
            return Err(invalid(
                "Must provide address if SkipNodeUpdate is not set".to_string(),
            ));
        }
        let datacenter = self.target_datacenter(local_datacenter).to_string();
        let service = self.service.map(CatalogService::into_model).transpose()?;
        let mut raw_checks = self.checks;
        if let Some(c) = self.check {
            raw_checks.push(c);
        }
        let mut checks = Vec::with_capacity(raw_checks.len());
        for c in raw_checks {
            let node = if c.node.is_empty() {
                self.node.clone()
            } else {
                c.node
            };
            if node != self.node {
                return Err(invalid(format!(
                    "check node {:?} does not match node {:?}",
                    node, self.node
                )));
            }
            let check_id = if c.check_id.is_empty() {
                c.name.clone()
            } else {
                c.check_id
            };
            if check_id.is_empty() {
                return Err(invalid("Must provide check ID or name".to_string()));
            }
            let status = if c.status.is_empty() {
                status::CRITICAL.to_string()
            } else if is_valid_status(&c.status) {
                c.status
            } else {
                return Err(invalid(format!("Invalid check status: '{}'", c.status)));
            };
            let definition = c.definition.unwrap_or_default();
            let check_type = if c.check_type.is_empty() {
                definition.check_type().to_string()
            } else {
                c.check_type
            };
            let (service_name, service_tags) = match &service {
                Some(s) if !c.service_id.is_empty() && s.id == c.service_id => {
                    (s.service.clone(), s.tags.clone())
                }
                _ => (c.service_name, c.service_tags),
            };
            checks.push(HealthCheck {
                node,
                check_id,
                name: c.name,
                status,
                notes: c.notes,
                output: c.output,
                service_id: c.service_id,
                service_name,
                service_tags,
                check_type,
                definition: definition.to_model(),
                index: model::RaftIndex::default(),
            });
        }
        Ok(RegisterRequest {
            node: Node {
                id: self.id,
                node: self.node,
                address: self.address,
                datacenter,
                tagged_addresses: self.tagged_addresses,
                meta: self.node_meta,
                index: model::RaftIndex::default(),
            },
            skip_node_update: self.skip_node_update,
            service,
            checks,
        })
    }
}

/// `PUT /v1/catalog/deregister` body: a node, or one of its services or checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogDeregisterRequest {
    /// Target datacenter ("" = the local one).
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    /// Node name (required).
    #[serde(rename = "Node")]
    pub node: String,
    /// Service instance to remove.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Check to remove.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Obsolete field (accepted, ignored).
    #[serde(rename = "Address")]
    pub address: Option<Value>,
    /// Enterprise partition (accepted, ignored).
    #[serde(rename = "Partition")]
    pub partition: Option<Value>,
    /// Enterprise namespace (accepted, ignored).
    #[serde(rename = "Namespace")]
    pub namespace: Option<Value>,
    /// Peer name (accepted, ignored).
    #[serde(rename = "PeerName")]
    pub peer_name: Option<Value>,
}

impl Lenient for CatalogDeregisterRequest {
    const SCHEMA: &'static Schema = &CATALOG_DEREGISTER_SCHEMA;
}

impl CatalogDeregisterRequest {
    /// Validates (`Must provide node`) and converts into the Raft command.
    pub fn into_command(self) -> Result<DeregisterRequest, ProtoError> {
        if self.node.is_empty() {
            return Err(ProtoError::Invalid("Must provide node".to_string()));
        }
        let opt = |s: String| if s.is_empty() { None } else { Some(s) };
        Ok(DeregisterRequest {
            node: self.node,
            service_id: opt(self.service_id),
            check_id: opt(self.check_id),
        })
    }
}
