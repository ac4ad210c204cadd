//! Agent request bodies: service and check registration, check updates.
//!
//! Owns `PUT /v1/agent/service/register` ([`AgentServiceRegistration`], Consul's
//! `structs.ServiceDefinition`), `PUT /v1/agent/check/register` ([`AgentCheckRegistration`],
//! `structs.CheckDefinition`), the check shape they share ([`AgentServiceCheck`],
//! `structs.CheckType`), `PUT /v1/agent/check/update/:id` ([`CheckUpdate`]), and their
//! conversion into the model plus a runnable [`CheckSpec`]. Validation follows
//! `agent/agent_endpoint.go` and `agent/structs/check_type.go`, with Consul's error texts.

use super::validate::{is_any_address, is_valid_status, validate_meta, validate_weights};
use crate::duration::{duration_to_nanos, GoDuration};
use crate::lenient::{Field, FieldKind, Lenient, Schema};
use crate::model::{self, status, CheckDefinition, HealthCheck, NodeService};
use crate::ProtoError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Shortest interval a check runs at (Consul's `checks.MinInterval`).
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Timeout of HTTP/TCP/gRPC checks when none is given.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest `DeregisterCriticalServiceAfter` honoured (Consul's `check_deregister_interval_min`).
pub const MIN_DEREGISTER_CRITICAL_SERVICE_AFTER: Duration = Duration::from_secs(60);
/// Default cap on stored check output, in bytes.
pub const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;

/// Schema of [`ServiceAddressIn`].
pub static SERVICE_ADDRESS_SCHEMA: Schema = Schema {
    name: "ServiceAddress",
    fields: &[
        Field::new("Address", FieldKind::String),
        Field::new("Port", FieldKind::Port),
    ],
};

/// Schema of [`WeightsIn`].
pub static WEIGHTS_SCHEMA: Schema = Schema {
    name: "Weights",
    fields: &[
        Field::new("Passing", FieldKind::Int),
        Field::new("Warning", FieldKind::Int),
    ],
};

/// Schema of [`AgentServiceCheck`] (and [`AgentCheckRegistration`]).
pub static AGENT_SERVICE_CHECK_SCHEMA: Schema = Schema {
    name: "AgentServiceCheck",
    fields: &[
        Field::aliased("CheckID", &["ID"], FieldKind::String),
        Field::new("Name", FieldKind::String),
        Field::new("Notes", FieldKind::String),
        Field::new("ServiceID", FieldKind::String),
        Field::new("Status", FieldKind::String),
        Field::new("Token", FieldKind::String),
        Field::aliased("ScriptArgs", &["Args"], FieldKind::StringList),
        Field::new("DockerContainerID", FieldKind::String),
        Field::new("Shell", FieldKind::String),
        Field::new("HTTP", FieldKind::String),
        Field::new("Method", FieldKind::String),
        Field::new("Header", FieldKind::HeaderMap),
        Field::new("Body", FieldKind::String),
        Field::new("DisableRedirects", FieldKind::Bool),
        Field::new("TCP", FieldKind::String),
        Field::new("TCPUseTLS", FieldKind::Bool),
        Field::new("UDP", FieldKind::String),
        Field::new("GRPC", FieldKind::String),
        Field::new("GRPCUseTLS", FieldKind::Bool),
        Field::new("H2PING", FieldKind::String),
        Field::new("H2PingUseTLS", FieldKind::Bool),
        Field::new("OSService", FieldKind::String),
        Field::new("AliasNode", FieldKind::String),
        Field::new("AliasService", FieldKind::String),
        Field::new("TLSServerName", FieldKind::String),
        Field::new("TLSSkipVerify", FieldKind::Bool),
        Field::new("Interval", FieldKind::Duration),
        Field::new("Timeout", FieldKind::Duration),
        Field::new("TTL", FieldKind::Duration),
        Field::new("DeregisterCriticalServiceAfter", FieldKind::Duration),
        Field::new("OutputMaxSize", FieldKind::Int),
        Field::new("SuccessBeforePassing", FieldKind::Int),
        Field::new("FailuresBeforeWarning", FieldKind::Int),
        Field::new("FailuresBeforeCritical", FieldKind::Int),
    ],
};

/// Schema of [`AgentServiceRegistration`].
pub static AGENT_SERVICE_REGISTRATION_SCHEMA: Schema = Schema {
    name: "AgentServiceRegistration",
    fields: &[
        Field::new("Kind", FieldKind::String),
        Field::new("ID", FieldKind::String),
        Field::new("Name", FieldKind::String),
        Field::new("Tags", FieldKind::StringList),
        Field::new("Port", FieldKind::Port),
        Field::new("Address", FieldKind::String),
        Field::new("SocketPath", FieldKind::String),
        Field::new(
            "TaggedAddresses",
            FieldKind::ObjectMap(&SERVICE_ADDRESS_SCHEMA),
        ),
        Field::new("EnableTagOverride", FieldKind::Bool),
        Field::new("Meta", FieldKind::StringMap),
        Field::new("Weights", FieldKind::Object(&WEIGHTS_SCHEMA)),
        Field::new("Check", FieldKind::Object(&AGENT_SERVICE_CHECK_SCHEMA)),
        Field::new("Checks", FieldKind::ObjectList(&AGENT_SERVICE_CHECK_SCHEMA)),
        Field::new("Token", FieldKind::String),
        Field::new("Proxy", FieldKind::Any),
        Field::new("Connect", FieldKind::Any),
        Field::new("Namespace", FieldKind::Any),
        Field::new("Partition", FieldKind::Any),
        Field::new("Locality", FieldKind::Any),
    ],
};

/// Schema of [`CheckUpdate`].
pub static CHECK_UPDATE_SCHEMA: Schema = Schema {
    name: "CheckUpdate",
    fields: &[
        Field::new("Status", FieldKind::String),
        Field::new("Output", FieldKind::String),
    ],
};

/// An address and port in a request (`TaggedAddresses` values of a service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceAddressIn {
    /// Address.
    #[serde(rename = "Address")]
    pub address: String,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
}

impl From<ServiceAddressIn> for model::ServiceAddress {
    fn from(a: ServiceAddressIn) -> Self {
        model::ServiceAddress {
            address: a.address,
            port: a.port,
        }
    }
}

/// DNS weights in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeightsIn {
    /// Weight while passing.
    #[serde(rename = "Passing")]
    pub passing: i64,
    /// Weight while warning.
    #[serde(rename = "Warning")]
    pub warning: i64,
}

impl WeightsIn {
    /// Validates with Consul's rules and converts; the error has Consul's
    /// `Invalid Weights: ` prefix.
    pub fn to_model(self) -> Result<model::Weights, ProtoError> {
        validate_weights(self.passing, self.warning)
            .map_err(|e| ProtoError::Invalid(format!("Invalid Weights: {e}")))?;
        // Both values are within 0..=65535 after validation.
        Ok(model::Weights {
            passing: i32::try_from(self.passing).unwrap_or(1),
            warning: i32::try_from(self.warning).unwrap_or(1),
        })
    }
}

/// A check definition, as nested in a service registration (`Check`, `Checks[]`) and as
/// the body of a check registration. Both `CheckID` and `ID` name the check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentServiceCheck {
    /// Check ID (`CheckID` or `ID`).
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Check name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Operator notes.
    #[serde(rename = "Notes")]
    pub notes: String,
    /// Service the check belongs to (check registration only; ignored in a service's checks).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Initial status (`passing`, `warning`, `critical`; default critical).
    #[serde(rename = "Status")]
    pub status: String,
    /// ACL token for the check (accepted, unused).
    #[serde(rename = "Token")]
    pub token: String,
    /// Script arguments (`ScriptArgs` or `Args`).
    #[serde(rename = "ScriptArgs")]
    pub script_args: Vec<String>,
    /// Docker container of a script check.
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    /// Shell of a Docker script check.
    #[serde(rename = "Shell")]
    pub shell: String,
    /// URL of an HTTP check.
    #[serde(rename = "HTTP")]
    pub http: String,
    /// Method of an HTTP check (default GET).
    #[serde(rename = "Method")]
    pub method: String,
    /// Headers of an HTTP check.
    #[serde(rename = "Header")]
    pub header: BTreeMap<String, Vec<String>>,
    /// Body of an HTTP check.
    #[serde(rename = "Body")]
    pub body: String,
    /// Do not follow redirects in an HTTP check.
    #[serde(rename = "DisableRedirects")]
    pub disable_redirects: bool,
    /// `host:port` of a TCP check.
    #[serde(rename = "TCP")]
    pub tcp: String,
    /// Use TLS for a TCP check.
    #[serde(rename = "TCPUseTLS")]
    pub tcp_use_tls: bool,
    /// `host:port` of a UDP check.
    #[serde(rename = "UDP")]
    pub udp: String,
    /// Target of a gRPC check.
    #[serde(rename = "GRPC")]
    pub grpc: String,
    /// Use TLS for a gRPC check.
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    /// Address of an HTTP/2 ping check.
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    /// Use TLS for an HTTP/2 ping check (default true when `H2PING` is set).
    #[serde(rename = "H2PingUseTLS")]
    pub h2ping_use_tls: Option<bool>,
    /// OS service of an OS-service check.
    #[serde(rename = "OSService")]
    pub os_service: String,
    /// Node of an alias check.
    #[serde(rename = "AliasNode")]
    pub alias_node: String,
    /// Service of an alias check.
    #[serde(rename = "AliasService")]
    pub alias_service: String,
    /// SNI name for HTTPS/TLS checks.
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    /// Skip TLS verification.
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// Run interval.
    #[serde(rename = "Interval")]
    pub interval: Option<GoDuration>,
    /// Per-run timeout.
    #[serde(rename = "Timeout")]
    pub timeout: Option<GoDuration>,
    /// TTL of a TTL check.
    #[serde(rename = "TTL")]
    pub ttl: Option<GoDuration>,
    /// Deregister the service after this long critical.
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    pub deregister_critical_service_after: Option<GoDuration>,
    /// Cap on stored output, in bytes (default 4096).
    #[serde(rename = "OutputMaxSize")]
    pub output_max_size: i64,
    /// Consecutive successes needed before passing.
    #[serde(rename = "SuccessBeforePassing")]
    pub success_before_passing: i64,
    /// Consecutive failures needed before warning (default: `FailuresBeforeCritical`).
    #[serde(rename = "FailuresBeforeWarning")]
    pub failures_before_warning: i64,
    /// Consecutive failures needed before critical.
    #[serde(rename = "FailuresBeforeCritical")]
    pub failures_before_critical: i64,
}

impl Lenient for AgentServiceCheck {
    const SCHEMA: &'static Schema = &AGENT_SERVICE_CHECK_SCHEMA;
}

fn dur(d: Option<GoDuration>) -> Duration {
    d.map(GoDuration::get).unwrap_or_default()
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// How a check is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// Passes while clients keep calling `/v1/agent/check/pass|warn|fail|update`.
    Ttl,
    /// An HTTP request; 2xx passes, 429 warns, anything else is critical.
    Http {
        /// URL.
        url: String,
        /// Method (GET when not given).
        method: String,
        /// Headers.
        header: BTreeMap<String, Vec<String>>,
        /// Body.
        body: String,
        /// SNI name.
        tls_server_name: String,
        /// Skip certificate verification.
        tls_skip_verify: bool,
        /// Do not follow redirects.
        disable_redirects: bool,
    },
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        address: String,
        /// Do a TLS handshake after connecting.
        use_tls: bool,
        /// SNI name.
        tls_server_name: String,
        /// Skip certificate verification.
        tls_skip_verify: bool,
    },
    /// A UDP probe.
    Udp {
        /// `host:port`.
        address: String,
    },
    /// A gRPC health probe.
    Grpc {
        /// `host:port[/service]`.
        target: String,
        /// Use TLS.
        use_tls: bool,
        /// SNI name.
        #[serde(default)]
        tls_server_name: String,
        /// Skip certificate verification.
        #[serde(default)]
        tls_skip_verify: bool,
    },
    /// An HTTP/2 ping.
    H2Ping {
        /// `host:port`.
        address: String,
        /// Use TLS.
        use_tls: bool,
        /// SNI name.
        #[serde(default)]
        tls_server_name: String,
        /// Skip certificate verification.
        #[serde(default)]
        tls_skip_verify: bool,
    },
    /// Mirrors the health of another node or service.
    Alias {
        /// Node ("" = this node).
        node: String,
        /// Service ID ("" = the node only).
        service: String,
    },
    /// A script, optionally inside a Docker container.
    Script {
        /// Command and arguments.
        args: Vec<String>,
        /// Docker container ("" = run locally).
        docker_container_id: String,
        /// Shell used inside the container.
        shell: String,
    },
    /// An operating-system service probe.
    OsService {
        /// Service name.
        name: String,
    },
}

impl CheckKind {
    /// Consul's `Type` string for this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Ttl => "ttl",
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::H2Ping { .. } => "h2ping",
            CheckKind::Alias { .. } => "alias",
            CheckKind::Script {
                docker_container_id,
                ..
            } => {
                if docker_container_id.is_empty() {
                    "script"
                } else {
                    "docker"
                }
            }
            CheckKind::OsService { .. } => "os_service",
        }
    }
}

/// A check ready to be run by the agent: the catalog record plus its runtime settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// The catalog record (node, ID, name, initial status, service, type, definition).
    pub check: HealthCheck,
    /// What to run.
    pub kind: CheckKind,
    /// Effective run interval (at least 1s; zero for TTL and alias checks).
    pub interval: Duration,
    /// Effective per-run timeout (10s when not given).
    pub timeout: Duration,
    /// TTL (zero unless a TTL check).
    pub ttl: Duration,
    /// Reap the service after this long critical (at least 1m), if set.
    pub deregister_critical_service_after: Option<Duration>,
    /// Consecutive successes needed before passing.
    pub success_before_passing: u32,
    /// Consecutive failures needed before warning.
    pub failures_before_warning: u32,
    /// Consecutive failures needed before critical.
    pub failures_before_critical: u32,
    /// Cap on stored output, in bytes.
    pub output_max_size: usize,
}

impl CheckSpec {
    /// The check's ID.
    pub fn check_id(&self) -> &str {
        &self.check.check_id
    }

    /// The status the check starts in.
    pub fn initial_status(&self) -> &str {
        &self.check.status
    }
}

impl AgentServiceCheck {
    /// Whether nothing at all was given (Consul skips an empty `Check` object).
    pub fn is_empty(&self) -> bool {
        *self == AgentServiceCheck::default()
    }

    fn is_script(&self) -> bool {
        !self.script_args.is_empty()
    }

    fn is_alias(&self) -> bool {
        !self.alias_node.is_empty() || !self.alias_service.is_empty()
    }

    fn is_interval_check(&self) -> bool {
        self.is_script()
            || !self.http.is_empty()
            || !self.tcp.is_empty()
            || !self.udp.is_empty()
            || !self.grpc.is_empty()
            || !self.h2ping.is_empty()
            || !self.os_service.is_empty()
    }

    /// Consul's check `Type` for this definition (`http`, `tcp`, `ttl`, ...; "" if none).
    pub fn check_type(&self) -> &'static str {
        let has_interval = !dur(self.interval).is_zero();
        if !self.grpc.is_empty() && has_interval {
            "grpc"
        } else if !self.http.is_empty() && has_interval {
            "http"
        } else if !dur(self.ttl).is_zero() {
            "ttl"
        } else if !self.tcp.is_empty() && has_interval {
            "tcp"
        } else if !self.udp.is_empty() && has_interval {
            "udp"
        } else if self.is_alias() {
            "alias"
        } else if self.is_script() && !self.docker_container_id.is_empty() && has_interval {
            "docker"
        } else if self.is_script() && has_interval {
            "script"
        } else if !self.h2ping.is_empty() && has_interval {
            "h2ping"
        } else if !self.os_service.is_empty() && has_interval {
            "os_service"
        } else {
            ""
        }
    }

    /// Consul's `CheckType.Validate`; the error has no `Invalid check: ` prefix.
    pub fn validate(&self) -> Result<(), String> {
        let interval = dur(self.interval);
        let ttl = dur(self.ttl);
        let interval_check = self.is_interval_check();
        if !interval.is_zero() && !ttl.is_zero() {
            return Err("Interval and TTL cannot both be specified".to_string());
        }
        if interval_check && interval.is_zero() {
            return Err(
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
                    .to_string(),
            );
        }
        if interval_check && self.is_alias() {
            return Err("Interval cannot be set for Alias checks".to_string());
        }
        if self.is_alias() && !ttl.is_zero() {
            return Err("TTL must be not be set for Alias checks".to_string());
        }
        if !interval_check && !self.is_alias() && ttl.is_zero() {
            return Err("TTL must be > 0 for TTL checks".to_string());
        }
        if self.output_max_size < 0 {
            return Err("MaxOutputMaxSize must be positive".to_string());
        }
        if self.failures_before_warning > self.failures_before_critical {
            return Err(
                "FailuresBeforeWarning can't be higher than FailuresBeforeCritical".to_string(),
            );
        }
        Ok(())
    }

    fn kind(&self) -> CheckKind {
        match self.check_type() {
            "grpc" => CheckKind::Grpc {
                target: self.grpc.clone(),
                use_tls: self.grpc_use_tls,
                tls_server_name: self.tls_server_name.clone(),
                tls_skip_verify: self.tls_skip_verify,
            },
            "http" => CheckKind::Http {
                url: self.http.clone(),
                method: if self.method.is_empty() {
                    "GET".to_string()
                } else {
                    self.method.clone()
                },
                header: self.header.clone(),
                body: self.body.clone(),
                tls_server_name: self.tls_server_name.clone(),
                tls_skip_verify: self.tls_skip_verify,
                disable_redirects: self.disable_redirects,
            },
            "tcp" => CheckKind::Tcp {
                address: self.tcp.clone(),
                use_tls: self.tcp_use_tls,
                tls_server_name: self.tls_server_name.clone(),
                tls_skip_verify: self.tls_skip_verify,
            },
            "udp" => CheckKind::Udp {
                address: self.udp.clone(),
            },
            "alias" => CheckKind::Alias {
                node: self.alias_node.clone(),
                service: self.alias_service.clone(),
            },
            "docker" | "script" => CheckKind::Script {
                args: self.script_args.clone(),
                docker_container_id: self.docker_container_id.clone(),
                shell: self.shell.clone(),
            },
            "h2ping" => CheckKind::H2Ping {
                address: self.h2ping.clone(),
                use_tls: self.h2ping_use_tls.unwrap_or(true),
                tls_server_name: self.tls_server_name.clone(),
                tls_skip_verify: self.tls_skip_verify,
            },
            "os_service" => CheckKind::OsService {
                name: self.os_service.clone(),
            },
            // Validation guarantees a TTL in every remaining case.
            _ => CheckKind::Ttl,
        }
    }

    /// The model's stored definition of this check.
    pub fn definition(&self) -> CheckDefinition {
        CheckDefinition {
            http: self.http.clone(),
            method: self.method.clone(),
            header: self.header.clone(),
            body: self.body.clone(),
            tls_skip_verify: self.tls_skip_verify,
            tls_server_name: self.tls_server_name.clone(),
            tcp: self.tcp.clone(),
            interval_ns: duration_to_nanos(dur(self.interval)),
            timeout_ns: duration_to_nanos(dur(self.timeout)),
            ttl_ns: duration_to_nanos(dur(self.ttl)),
            deregister_critical_service_after_ns: duration_to_nanos(dur(
                self.deregister_critical_service_after
            )),
        }
    }

    /// Builds the runnable spec; `self` must have passed [`AgentServiceCheck::validate`].
    fn to_spec(&self, check: HealthCheck) -> CheckSpec {
        let kind = self.kind();
        let interval = match kind {
            CheckKind::Ttl | CheckKind::Alias { .. } => Duration::ZERO,
            _ => dur(self.interval).max(MIN_CHECK_INTERVAL),
        };
        let timeout = match dur(self.timeout) {
            t if t.is_zero() => DEFAULT_CHECK_TIMEOUT,
            t => t,
        };
        let deregister = match dur(self.deregister_critical_service_after) {
            d if d.is_zero() => None,
            d => Some(d.max(MIN_DEREGISTER_CRITICAL_SERVICE_AFTER)),
        };
        let failures_before_critical = clamp_u32(self.failures_before_critical);
        let failures_before_warning = match clamp_u32(self.failures_before_warning) {
            0 => failures_before_critical,
            n => n,
        };
        let output_max_size = match usize::try_from(self.output_max_size) {
            Ok(0) | Err(_) => DEFAULT_OUTPUT_MAX_SIZE,
            Ok(n) => n,
        };
        CheckSpec {
            check,
            kind,
            interval,
            timeout,
            ttl: dur(self.ttl),
            deregister_critical_service_after: deregister,
            success_before_passing: clamp_u32(self.success_before_passing),
            failures_before_warning,
            failures_before_critical,
            output_max_size,
        }
    }

    fn initial_status(&self) -> String {
        if self.status.is_empty() {
            status::CRITICAL.to_string()
        } else {
            self.status.clone()
        }
    }
}

/// `PUT /v1/agent/service/register` body (Consul's `ServiceDefinition`).
///
/// `Proxy`, `Connect` (including `SidecarService`), `Namespace`, `Partition` and `Locality`
/// are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentServiceRegistration {
    /// Service kind ("" for a typical service).
    #[serde(rename = "Kind")]
    pub kind: String,
    /// Instance ID (defaults to `Name`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name (required).
    #[serde(rename = "Name")]
    pub name: String,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Address ("" = the node's).
    #[serde(rename = "Address")]
    pub address: String,
    /// Unix socket path.
    #[serde(rename = "SocketPath")]
    pub socket_path: String,
    /// Tagged addresses (`lan`, `wan`, ...).
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, ServiceAddressIn>,
    /// Whether catalog tag edits survive anti-entropy.
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// DNS weights (default 1/1).
    #[serde(rename = "Weights")]
    pub weights: Option<WeightsIn>,
    /// A single check.
    #[serde(rename = "Check")]
    pub check: Option<AgentServiceCheck>,
    /// More checks.
    #[serde(rename = "Checks")]
    pub checks: Vec<AgentServiceCheck>,
    /// ACL token for the service (accepted, unused).
    #[serde(rename = "Token")]
    pub token: String,
    /// Mesh proxy configuration (accepted, ignored).
    #[serde(rename = "Proxy")]
    pub proxy: Option<Value>,
    /// Connect configuration (accepted, ignored).
    #[serde(rename = "Connect")]
    pub connect: Option<Value>,
    /// Enterprise namespace (accepted, ignored).
    #[serde(rename = "Namespace")]
    pub namespace: Option<Value>,
    /// Enterprise partition (accepted, ignored).
    #[serde(rename = "Partition")]
    pub partition: Option<Value>,
    /// Locality (accepted, ignored).
    #[serde(rename = "Locality")]
    pub locality: Option<Value>,
}

impl Lenient for AgentServiceRegistration {
    const SCHEMA: &'static Schema = &AGENT_SERVICE_REGISTRATION_SCHEMA;
}

impl AgentServiceRegistration {
    /// The instance ID this registration will get (`ID`, else `Name`).
    pub fn service_id(&self) -> &str {
        if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        }
    }

    /// The checks that will be registered: `Check` (unless empty) then `Checks`.
    fn check_list(&self) -> Vec<&AgentServiceCheck> {
        let mut list = Vec::with_capacity(self.checks.len() + 1);
        if let Some(c) = &self.check {
            if !c.is_empty() {
                list.push(c);
            }
        }
        list.extend(self.checks.iter());
        list
    }

    /// Validates as Consul's agent endpoint does and converts into the model service and
    /// its runnable checks on node `node`.
    ///
    /// Check IDs default to `service:<id>` (`service:<id>:<n>`, 1-based, when there are
    /// several checks), names to `Service '<name>' check`, statuses to critical.
    pub fn into_model(self, node: &str) -> Result<(NodeService, Vec<CheckSpec>), ProtoError> {
        let invalid = |m: String| ProtoError::Invalid(m);
        if self.name.is_empty() {
            return Err(invalid("Missing service name".to_string()));
        }
        if is_any_address(&self.address) {
            return Err(invalid("Invalid service address".to_string()));
        }
        let weights = match self.weights {
            Some(w) => w.to_model()?,
            None => model::Weights::default(),
        };
        validate_meta(&self.meta, false)
            .map_err(|e| invalid(format!("Invalid Service Meta: {e}")))?;
        let checks = self.check_list();
        for c in &checks {
            c.validate()
                .map_err(|e| invalid(format!("Invalid check: {e}")))?;
        }
        for c in &checks {
            if !c.status.is_empty() && !is_valid_status(&c.status) {
                return Err(invalid(
                    "Status for checks must 'passing', 'warning', 'critical'".to_string(),
                ));
            }
        }
        let service_id = self.service_id().to_string();
        let several = checks.len() > 1;
        let mut specs = Vec::with_capacity(checks.len());
        for (i, c) in checks.iter().enumerate() {
            let check_id = if !c.check_id.is_empty() {
                c.check_id.clone()
            } else if several {
                format!("service:{service_id}:{}", i + 1)
            } else {
                format!("service:{service_id}")
            };
            let name = if c.name.is_empty() {
                format!("Service '{}' check", self.name)
            } else {
                c.name.clone()
            };
            let record = HealthCheck {
                node: node.to_string(),
                check_id,
                name,
                status: c.initial_status(),
                notes: c.notes.clone(),
                output: String::new(),
                service_id: service_id.clone(),
                service_name: self.name.clone(),
                service_tags: self.tags.clone(),
                check_type: c.check_type().to_string(),
                definition: c.definition(),
                index: model::RaftIndex::default(),
            };
            specs.push(c.to_spec(record));
        }
        let service = NodeService {
            kind: self.kind,
            id: service_id,
            service: self.name,
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
        };
        Ok((service, specs))
    }
}

/// `PUT /v1/agent/check/register` body (Consul's `CheckDefinition`): the check shape with
/// `ID` (or `CheckID`), `Name` (required) and an optional `ServiceID`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentCheckRegistration(pub AgentServiceCheck);

impl Lenient for AgentCheckRegistration {
    const SCHEMA: &'static Schema = &AGENT_SERVICE_CHECK_SCHEMA;
}

impl AgentCheckRegistration {
    /// The service the check is bound to, if any. The caller must look it up first and
    /// answer 404 `ServiceID "<id>" does not exist` when it is unknown.
    pub fn service_id(&self) -> Option<&str> {
        if self.0.service_id.is_empty() {
            None
        } else {
            Some(&self.0.service_id)
        }
    }

    /// The check ID this registration will get (`ID`, else `Name`).
    pub fn check_id(&self) -> &str {
        if self.0.check_id.is_empty() {
            &self.0.name
        } else {
            &self.0.check_id
        }
    }

    /// Validates as Consul's agent endpoint does and converts into a runnable check on
    /// `node`. `service` is the local service named by `ServiceID` (its name and tags are
    /// copied into the check); passing `None` while `ServiceID` is set is an error with
    /// Consul's 404 text.
    pub fn into_model(
        self,
        node: &str,
        service: Option<&NodeService>,
    ) -> Result<CheckSpec, ProtoError> {
        let c = self.0;
        if c.name.is_empty() {
            return Err(ProtoError::Invalid("Missing check name".to_string()));
        }
        if !c.status.is_empty() && !is_valid_status(&c.status) {
            return Err(ProtoError::Invalid("Bad check status".to_string()));
        }
        c.validate()
            .map_err(|e| ProtoError::Invalid(format!("Invalid check: {e}")))?;
        let (service_name, service_tags) = if c.service_id.is_empty() {
            (String::new(), Vec::new())
        } else {
            match service {
                Some(s) if s.id == c.service_id => (s.service.clone(), s.tags.clone()),
                _ => {
                    return Err(ProtoError::Invalid(format!(
                        "ServiceID {:?} does not exist",
                        c.service_id
                    )))
                }
            }
        };
        let check_id = if c.check_id.is_empty() {
            c.name.clone()
        } else {
            c.check_id.clone()
        };
        let record = HealthCheck {
            node: node.to_string(),
            check_id,
            name: c.name.clone(),
            status: c.initial_status(),
            notes: c.notes.clone(),
            output: String::new(),
            service_id: c.service_id.clone(),
            service_name,
            service_tags,
            check_type: c.check_type().to_string(),
            definition: c.definition(),
            index: model::RaftIndex::default(),
        };
        Ok(c.to_spec(record))
    }
}

/// `PUT /v1/agent/check/update/:id` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckUpdate {
    /// New status: `passing`, `warning` or `critical`.
    #[serde(rename = "Status")]
    pub status: String,
    /// Output to record.
    #[serde(rename = "Output")]
    pub output: String,
}

impl Lenient for CheckUpdate {
    const SCHEMA: &'static Schema = &CHECK_UPDATE_SCHEMA;
}

impl CheckUpdate {
    /// Rejects statuses other than passing, warning and critical, with Consul's text.
    pub fn validate(&self) -> Result<(), ProtoError> {
        if is_valid_status(&self.status) {
            Ok(())
        } else {
            Err(ProtoError::Invalid(format!(
                "Invalid check status: '{}'",
                self.status
            )))
        }
    }
}
