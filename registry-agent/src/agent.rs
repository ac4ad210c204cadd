//! [`LocalAgent`]: the local agent behind `/v1/agent/*` (Consul's `agent/agent.go` and the
//! agent half of `agent_endpoint.go`).
//!
//! It owns the local state (`crate::local`), the check runners (`crate::checks`) and
//! anti-entropy (`crate::ae`). Request bodies are decoded with `registry_proto`'s lenient
//! decoders, the same for HTTP bodies and configuration files. Every write reaches the
//! catalog through anti-entropy, which calls `Writer::apply`; HTTP writes wait for that
//! sync so the catalog shows them when the request returns (a failed sync is logged, not
//! returned, as in Consul: anti-entropy retries).

mod info;
pub mod members;
pub(crate) mod persist;
mod reload;

pub use members::{LocalMembership, Member, Membership};
pub use reload::ReloadSource;

use crate::ae::{AeOptions, AntiEntropy, CatalogDelegate, LocalServer};
use crate::checks::CheckRunners;
use crate::local::{
    aggregated_status, LocalOptions, LocalState, NodeInfo, NODE_MAINT_CHECK_ID,
    SERVICE_MAINT_PREFIX,
};
use futures::future::BoxFuture;
use persist::{Persist, PersistedCheck};
use registry_proto::api::{
    AgentCheckRegistration, AgentServiceCheck, AgentServiceOut, AgentServiceRegistration,
    CheckSpec, HealthCheckOut,
};
use registry_proto::lenient::Lenient;
use registry_proto::model::{status, HealthCheck, NodeService};
use registry_server::agent_api::{AgentApi, ServiceHealth};
use registry_server::config::ServerConfig;
use registry_server::query::write::Writer;
use registry_server::query::Reader;
use registry_server::ServerError;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The longest a local change waits for its catalog write before the request answers.
const SYNC_WAIT: Duration = Duration::from_secs(3);

/// The Consul version this agent reports (`Config.Version`, `consul-version` node meta).
pub const CONSUL_COMPAT_VERSION: &str = "1.20.0";

/// Notes of a node maintenance check enabled without a reason.
pub const DEFAULT_NODE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
/// Notes of a service maintenance check enabled without a reason.
pub const DEFAULT_SERVICE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Agent settings beyond [`ServerConfig`]; the defaults are Consul's.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Output-only check changes wait up to this long before syncing (`check_update_interval`, 5m).
    pub check_update_interval: Duration,
    /// Drop check output entirely (`discard_check_output`).
    pub discard_check_output: bool,
    /// Full anti-entropy sync period (1m, scaled by cluster size, plus jitter).
    pub ae_interval: Duration,
    /// Longest retry delay after a failed sync (15s).
    pub ae_retry_interval: Duration,
    /// How often critical services are checked for `DeregisterCriticalServiceAfter` (30s).
    pub check_reap_interval: Duration,
    /// Allow script checks (`enable_script_checks`).
    pub enable_script_checks: bool,
    /// Serve blocking `health/service` and `catalog/service` queries of a client agent from
    /// stream views (`use_streaming_backend`).
    pub use_streaming_backend: bool,
    /// Address advertised for this node; default: `bind_addr`, else `client_addr`, else
    /// 127.0.0.1 when those are unspecified.
    pub advertise_addr: Option<IpAddr>,
    /// gRPC port shown in `DebugConfig` (-1: disabled).
    pub grpc_port: i32,
    /// gRPC TLS port shown in `DebugConfig` (-1: disabled).
    pub grpc_tls_port: i32,
    /// `Config.Version`.
    pub version: String,
    /// `Config.Revision`.
    pub revision: String,
    /// `Config.BuildDate`.
    pub build_date: String,
    /// Primary datacenter (default: this one).
    pub primary_datacenter: Option<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            check_update_interval: Duration::from_secs(300),
            discard_check_output: false,
            ae_interval: Duration::from_secs(60),
            ae_retry_interval: Duration::from_secs(15),
            check_reap_interval: Duration::from_secs(30),
            enable_script_checks: false,
            use_streaming_backend: true,
            advertise_addr: None,
            grpc_port: -1,
            grpc_tls_port: -1,
            version: CONSUL_COMPAT_VERSION.to_string(),
            revision: format!("registry-{}", env!("CARGO_PKG_VERSION")),
            build_date: String::new(),
            primary_datacenter: None,
        }
    }
}

/// The address this node advertises.
fn advertise_ip(config: &ServerConfig, opts: &AgentOptions) -> IpAddr {
    if let Some(a) = opts.advertise_addr {
        return a;
    }
    if !config.bind_addr.is_unspecified() {
        return config.bind_addr;
    }
    if !config.client_addr.is_unspecified() {
        return config.client_addr;
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn bad(e: impl std::fmt::Display) -> ServerError {
    ServerError::BadRequest(e.to_string())
}

fn unknown_check(id: &str) -> ServerError {
    ServerError::NotFound(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

fn unknown_service(id: &str) -> ServerError {
    ServerError::NotFound(format!(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

fn check_json(c: &HealthCheck) -> Value {
    serde_json::to_value(HealthCheckOut::from(c)).unwrap_or_default()
}

/// One async lock per key, created on first use and kept.
#[derive(Debug, Default)]
struct KeyLocks {
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    async fn lock(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self.locks.lock().entry(key).or_default().clone();
        m.lock_owned().await
    }

    /// The lock of a service and everything bound to it.
    async fn service(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock(format!("svc:{id}")).await
    }

    /// The lock of a node-level check.
    async fn check(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock(format!("chk:{id}")).await
    }
}

/// The local agent: implements [`AgentApi`] for the HTTP layer.
pub struct LocalAgent {
    config: Arc<ServerConfig>,
    opts: AgentOptions,
    local: Arc<LocalState>,
    runners: CheckRunners,
    ae: Arc<AntiEntropy>,
    members: Arc<dyn Membership>,
    /// Where API registrations are persisted (with a data directory).
    persist: Option<Persist>,
    /// Serializes operations on one service (or one node-level check), persistence
    /// included; operations on different services run concurrently.
    keys: KeyLocks,
    shutdown: watch::Sender<bool>,
    started: AtomicBool,
    left: Notify,
    has_left: AtomicBool,
    /// What `reload` re-reads and which definitions came from configuration files.
    reload: reload::ReloadState,
}

impl std::fmt::Debug for LocalAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAgent")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl LocalAgent {
    /// An agent for this node with Consul's default timings.
    pub fn new(config: Arc<ServerConfig>, reader: Reader, writer: Writer) -> Self {
        Self::with_options(config, reader, writer, AgentOptions::default())
    }

    /// An agent with explicit options.
    pub fn with_options(
        config: Arc<ServerConfig>,
        reader: Reader,
        writer: Writer,
        opts: AgentOptions,
    ) -> Self {
        let alias_reader = Some(reader.clone());
        Self::build(
            config,
            Arc::new(LocalServer { reader, writer }),
            alias_reader,
            opts,
        )
    }

    /// An agent reaching the catalog through `catalog`: the local server, or the servers
    /// over RPC on a client agent.
    pub fn with_catalog(
        config: Arc<ServerConfig>,
        catalog: Arc<dyn CatalogDelegate>,
        opts: AgentOptions,
    ) -> Self {
        Self::build(config, catalog, None, opts)
    }

    /// `alias_reader` is the local store that alias checks of other nodes follow (none on a
    /// client agent).
    fn build(
        config: Arc<ServerConfig>,
        catalog: Arc<dyn CatalogDelegate>,
        alias_reader: Option<Reader>,
        opts: AgentOptions,
    ) -> Self {
        let addr = advertise_ip(&config, &opts);
        let node_id = if config.node_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            config.node_id.clone()
        };
        let mut node = NodeInfo::new(
            &config.node_name,
            &node_id,
            &config.datacenter,
            addr,
            &config.node_meta,
            &opts.version,
        );
        if let Some(wan) = config.advertise_addr_wan {
            // `advertise_addr_wan`: the address other datacenters see (`translate_wan_addrs`).
            let family = if wan.is_ipv4() {
                "wan_ipv4"
            } else {
                "wan_ipv6"
            };
            node.tagged_addresses.insert("wan".into(), wan.to_string());
            node.tagged_addresses.insert(family.into(), wan.to_string());
        }
        if config.server {
            node = node.with_consul_service(config.server_port, &opts.version);
        }
        let local = LocalState::new(
            node,
            LocalOptions {
                check_update_interval: opts.check_update_interval,
                discard_check_output: opts.discard_check_output,
            },
        );
        let runners = CheckRunners::new(local.clone(), opts.enable_script_checks)
            .with_alias_source(Arc::new(crate::checks::AgentAliasSource::new(
                local.clone(),
                alias_reader,
            )));
        let ae = Arc::new(AntiEntropy::new(
            local.clone(),
            catalog,
            AeOptions {
                interval: opts.ae_interval,
                retry_interval: opts.ae_retry_interval,
            },
        ));
        let tags = members::local_tags(&config, &node_id, &opts.version, &opts.revision);
        let members: Arc<dyn Membership> = Arc::new(LocalMembership::new(&config, addr, tags));
        let (shutdown, _) = watch::channel(false);
        let persist = config.data_dir.as_deref().map(Persist::new);
        let agent = LocalAgent {
            config,
            opts,
            local,
            runners,
            ae,
            members,
            persist,
            keys: KeyLocks::default(),
            shutdown,
            started: AtomicBool::new(false),
            left: Notify::new(),
            has_left: AtomicBool::new(false),
            reload: reload::ReloadState::default(),
        };
        agent.restore();
        agent
    }

    /// Restores the services and checks persisted by an earlier run. Checks come back
    /// critical until they run, as in Consul; unusable files are removed.
    fn restore(&self) {
        let Some(p) = &self.persist else {
            return;
        };
        let node = self.local.node().name;
        let services = p.load_services();
        let checks = p.load_checks();
        if services.is_empty() && checks.is_empty() {
            return;
        }
        let (mut restored_services, mut restored_checks) = (0, 0);
        for (_, rec) in services {
            self.local.add_service(rec.service);
            restored_services += 1;
        }
        for (path, rec) in checks {
            let id = rec.check.check_id.clone();
            let service = if rec.check.service_id.is_empty() {
                None
            } else {
                match self.local.service(&rec.check.service_id) {
                    Some(s) => Some(s),
                    None => {
                        tracing::warn!(check = %id, service = %rec.check.service_id, "persisted check of an unknown service; removed");
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                }
            };
            match rec.definition {
                Some(def) => {
                    let spec = AgentCheckRegistration(def)
                        .into_model(&node, service.as_ref())
                        .map_err(|e| e.to_string())
                        .and_then(|spec| self.runners.admit(&spec).map(|_| spec));
                    match spec {
                        Ok(spec) => {
                            let mut check = spec.check.clone();
                            check.status = status::CRITICAL.to_string();
                            self.start_check(check, &spec);
                        }
                        Err(e) => {
                            tracing::warn!(check = %id, error = %e, "cannot restore persisted check; removed");
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                    }
                }
                None => {
                    let mut check = rec.check;
                    check.node = node.clone();
                    self.local.add_check(check, None);
                }
            }
            restored_checks += 1;
        }
        tracing::info!(
            services = restored_services,
            checks = restored_checks,
            "restored persisted services and checks"
        );
    }

    /// Makes `registry join`/`leave` and the member list act on the Raft cluster of a server.
    pub fn with_cluster(mut self, cluster: Arc<registry_server::cluster::Cluster>) -> Self {
        let port = self.config.serf_lan_port;
        self.members = Arc::new(members::ServerMembership::new(
            self.members.clone(),
            cluster,
            port,
        ));
        self
    }

    /// Alias checks of other nodes read the servers' catalog through `forward` (a client
    /// agent, which has no store of its own).
    pub fn with_remote_alias(
        mut self,
        forward: Arc<dyn registry_server::http::ForwardApi>,
    ) -> Self {
        let source =
            crate::checks::AgentAliasSource::new(self.local.clone(), None).with_remote(forward);
        self.runners = self.runners.with_alias_source(Arc::new(source));
        self
    }

    /// Replaces the membership view (the gossip layer plugs in here). Anti-entropy's
    /// full-sync interval then scales with its LAN member count, as Consul's `aeScale`.
    pub fn with_membership(mut self, members: Arc<dyn Membership>) -> Self {
        let view = Arc::downgrade(&members);
        self.ae.set_cluster_size(Arc::new(move || {
            view.upgrade().map_or(0, |m| m.lan_members().len())
        }));
        self.members = members;
        self
    }

    /// The local state (services, checks, node identity).
    pub fn local(&self) -> &Arc<LocalState> {
        &self.local
    }

    /// Anti-entropy, for an immediate sync.
    pub fn anti_entropy(&self) -> &Arc<AntiEntropy> {
        &self.ae
    }

    /// Starts anti-entropy (which registers the node and `serfHealth` at once) and the
    /// reaper of `DeregisterCriticalServiceAfter`. Check runners start as checks are
    /// registered. Idempotent. Must be called inside a tokio runtime.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(self.ae.clone().run(self.shutdown.subscribe()));
        let me = Arc::downgrade(self);
        let mut stop = self.shutdown.subscribe();
        let every = self.opts.check_reap_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(agent) = me.upgrade() else { return };
                agent.reap_critical_services().await;
            }
        });
        tracing::info!(node = %self.config.node_name, "local agent started");
    }

    /// Stops anti-entropy, the reaper and every check runner.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.runners.stop_all();
        tracing::info!("local agent stopped");
    }

    /// Resolves once `PUT /v1/agent/leave` succeeded; the caller then shuts down.
    pub async fn left(&self) {
        loop {
            let notified = self.left.notified();
            if self.has_left.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Registers service definitions from configuration files (`service {}` /
    /// `services []`), decoded exactly like `PUT /v1/agent/service/register` bodies.
    /// Stops at the first invalid definition.
    pub async fn register_from_config(&self, defs: Vec<Value>) -> Result<(), ServerError> {
        for def in defs {
            let reg = AgentServiceRegistration::decode_value(def)
                .map_err(|e| ServerError::BadRequest(format!("Failed to register service: {e}")))?;
            let name = reg.name.clone();
            self.add_service(reg, false, false).await.map_err(|e| {
                ServerError::BadRequest(format!("Failed to register service {name:?}: {e}"))
            })?;
        }
        Ok(())
    }

    /// Registers check definitions from configuration files (`check {}` / `checks []`),
    /// decoded exactly like `PUT /v1/agent/check/register` bodies.
    pub async fn register_checks_from_config(&self, defs: Vec<Value>) -> Result<(), ServerError> {
        for def in defs {
            let reg = AgentCheckRegistration::decode_value(def)
                .map_err(|e| ServerError::BadRequest(format!("Failed to register check: {e}")))?;
            let name = reg.0.name.clone();
            self.add_check(reg, false).await.map_err(|e| {
                ServerError::BadRequest(format!("Failed to register check {name:?}: {e}"))
            })?;
        }
        Ok(())
    }

    /// Pushes pending local changes to the catalog now, so that a registration is in the
    /// catalog when its request answers; failures are left to the anti-entropy loop. The
    /// wait is bounded by [`SYNC_WAIT`]: a client agent whose servers are not known yet (or
    /// unreachable) still starts its HTTP API and answers registrations at once, as Consul's,
    /// and the anti-entropy loop, woken by the same change, writes it when a server answers.
    async fn sync(&self) {
        match tokio::time::timeout(SYNC_WAIT, self.ae.sync_changes()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to sync changes"),
            Err(_) => tracing::debug!(
                wait = ?SYNC_WAIT,
                "catalog sync still pending; anti-entropy will finish it"
            ),
        }
    }

    /// Adds a service and its checks (Consul's `AddService`). Checks that already existed
    /// keep their status and output; with `replace_existing_checks` the service's other
    /// checks are removed. With `persist` (API registrations) the service and its checks
    /// are saved under the data directory.
    async fn add_service(
        &self,
        reg: AgentServiceRegistration,
        replace_existing_checks: bool,
        persist: bool,
    ) -> Result<(), ServerError> {
        let node = self.local.node().name;
        // The check definitions in the order `into_model` numbers them: `Check`, then `Checks`.
        let defs: Vec<AgentServiceCheck> = reg
            .check
            .iter()
            .filter(|c| !c.is_empty())
            .chain(reg.checks.iter())
            .cloned()
            .collect();
        let (service, specs) = reg.into_model(&node).map_err(bad)?;
        for spec in &specs {
            self.runners.admit(spec).map_err(ServerError::Internal)?;
        }
        {
            let _service = self.keys.service(&service.id).await;
            if persist {
                self.persist_service(&service, &specs, &defs).await?;
            }
            let previous: Vec<HealthCheck> = specs
                .iter()
                .filter_map(|s| self.local.check(s.check_id()))
                .collect();
            if replace_existing_checks {
                for c in self.local.checks_for_service(&service.id, false) {
                    if !specs.iter().any(|s| s.check_id() == c.check_id) {
                        self.remove_check_locked(&c.check_id);
                        self.unpersist_check(&c.check_id).await;
                    }
                }
            }
            let id = service.id.clone();
            self.local.add_service(service);
            for spec in &specs {
                let mut check = spec.check.clone();
                if let Some(prev) = previous.iter().find(|p| p.check_id == check.check_id) {
                    check.status = prev.status.clone();
                    check.output = prev.output.clone();
                }
                self.start_check(check, spec);
            }
            tracing::info!(service = %id, checks = specs.len(), "service registered");
        }
        self.sync().await;
        Ok(())
    }

    async fn persist_service(
        &self,
        service: &NodeService,
        specs: &[CheckSpec],
        defs: &[AgentServiceCheck],
    ) -> Result<(), ServerError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        p.save_service(service)
            .await
            .map_err(ServerError::Internal)?;
        if defs.len() != specs.len() {
            tracing::warn!(service = %service.id, "check definitions do not line up; checks not persisted");
            return Ok(());
        }
        for (def, spec) in defs.iter().zip(specs) {
            let mut def = def.clone();
            def.check_id = spec.check.check_id.clone();
            def.name = spec.check.name.clone();
            def.service_id = spec.check.service_id.clone();
            p.save_check(PersistedCheck {
                check: spec.check.clone(),
                definition: Some(def),
            })
            .await
            .map_err(ServerError::Internal)?;
        }
        Ok(())
    }

    async fn unpersist_service(&self, id: &str, checks: &[String]) {
        let Some(p) = &self.persist else {
            return;
        };
        if let Err(e) = p.remove_service(id).await {
            tracing::warn!(service = %id, error = %e, "cannot remove persisted service");
        }
        for c in checks {
            self.unpersist_check(c).await;
        }
    }

    async fn unpersist_check(&self, id: &str) {
        let Some(p) = &self.persist else {
            return;
        };
        if let Err(e) = p.remove_check(id).await {
            tracing::warn!(check = %id, error = %e, "cannot remove persisted check");
        }
    }

    async fn persist_check(
        &self,
        check: &HealthCheck,
        definition: Option<AgentServiceCheck>,
    ) -> Result<(), ServerError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        p.save_check(PersistedCheck {
            check: check.clone(),
            definition,
        })
        .await
        .map_err(ServerError::Internal)
    }

    fn start_check(&self, check: HealthCheck, spec: &CheckSpec) {
        self.local
            .add_check(check, spec.deregister_critical_service_after);
        self.runners.start(spec);
    }

    fn remove_check_locked(&self, id: &str) -> bool {
        self.runners.stop(id);
        self.local.remove_check(id)
    }

    /// Adds a standalone check (Consul's `AddCheck`), saved under the data directory with
    /// `persist`.
    async fn add_check(
        &self,
        reg: AgentCheckRegistration,
        persist: bool,
    ) -> Result<(), ServerError> {
        let node = self.local.node().name;
        let mut def = reg.0.clone();
        let wanted = reg.service_id().map(str::to_string);
        let service = wanted.as_deref().and_then(|sid| self.local.service(sid));
        let spec = match reg.into_model(&node, service.as_ref()) {
            Ok(spec) => spec,
            Err(e) => {
                if let (Some(sid), None) = (&wanted, &service) {
                    if e.to_string() == format!("ServiceID {sid:?} does not exist") {
                        return Err(ServerError::NotFound(e.to_string()));
                    }
                }
                return Err(bad(e));
            }
        };
        self.runners.admit(&spec).map_err(ServerError::Internal)?;
        {
            let _key = match &wanted {
                Some(sid) => self.keys.service(sid).await,
                None => self.keys.check(spec.check_id()).await,
            };
            if let Some(sid) = &wanted {
                // The service may have gone while we were decoding.
                if self.local.service(sid).is_none() {
                    return Err(ServerError::NotFound(format!(
                        "ServiceID {sid:?} does not exist"
                    )));
                }
            }
            if persist {
                def.check_id = spec.check.check_id.clone();
                self.persist_check(&spec.check, Some(def)).await?;
            }
            self.start_check(spec.check.clone(), &spec);
            tracing::info!(check = %spec.check_id(), "check registered");
        }
        self.sync().await;
        Ok(())
    }

    /// Removes a service and its checks; false when unknown.
    async fn remove_service(&self, id: &str) -> bool {
        let removed = {
            let _service = self.keys.service(id).await;
            let Some(checks) = self.local.remove_service(id) else {
                return false;
            };
            for c in &checks {
                self.runners.stop(c);
            }
            self.unpersist_service(id, &checks).await;
            checks
        };
        tracing::info!(service = %id, checks = removed.len(), "service deregistered");
        self.sync().await;
        true
    }

    /// Deregisters services whose check has been critical past its
    /// `DeregisterCriticalServiceAfter`.
    pub async fn reap_critical_services(&self) {
        let due = self.local.services_to_reap(tokio::time::Instant::now());
        for (service, check) in due {
            if self.remove_service(&service).await {
                tracing::info!(
                    service = %service,
                    check = %check,
                    "check for service has been critical for too long; deregistered service"
                );
            }
        }
    }

    fn maintenance_check(
        &self,
        id: String,
        name: &str,
        reason: String,
        svc: Option<&NodeService>,
    ) -> HealthCheck {
        HealthCheck {
            node: self.local.node().name,
            check_id: id,
            name: name.to_string(),
            status: status::CRITICAL.to_string(),
            notes: reason,
            service_id: svc.map(|s| s.id.clone()).unwrap_or_default(),
            service_name: svc.map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: svc.map(|s| s.tags.clone()).unwrap_or_default(),
            ..Default::default()
        }
    }

    fn health_of(&self, svc: &NodeService) -> ServiceHealth {
        let checks = self.local.checks_for_service(&svc.id, true);
        ServiceHealth {
            status: aggregated_status(&checks).to_string(),
            service: serde_json::to_value(AgentServiceOut::new(svc, &self.config.datacenter))
                .unwrap_or_default(),
            checks: checks.iter().map(check_json).collect(),
        }
    }
}

impl AgentApi for LocalAgent {
    fn self_info(&self) -> Value {
        let lan = self.members.lan_members();
        let me = lan.iter().find(|m| m.name == self.config.node_name);
        let checks = self.local.checks();
        let counts = info::AgentCounts {
            services: self.local.services().len(),
            ttl_checks: checks
                .iter()
                .filter(|c| self.runners.is_ttl(&c.check_id))
                .count(),
            checks: checks.len(),
            members: lan.len(),
        };
        info::self_document(&self.config, &self.opts, &self.local.node(), me, counts)
    }

    fn members(&self, wan: bool) -> Value {
        let list = if wan {
            self.members.wan_members()
        } else {
            self.members.lan_members()
        };
        serde_json::to_value(list).unwrap_or_else(|_| Value::Array(Vec::new()))
    }

    fn services(&self) -> Value {
        let dc = &self.config.datacenter;
        let map: Map<String, Value> = self
            .local
            .services()
            .iter()
            .map(|s| {
                let v = serde_json::to_value(AgentServiceOut::new(s, dc)).unwrap_or_default();
                (s.id.clone(), v)
            })
            .collect();
        Value::Object(map)
    }

    fn service(&self, id: &str) -> Option<Value> {
        let s = self.local.service(id)?;
        let out = AgentServiceOut::new(&s, &self.config.datacenter).with_content_hash();
        serde_json::to_value(out).ok()
    }

    fn checks(&self) -> Value {
        let map: Map<String, Value> = self
            .local
            .checks()
            .iter()
            .map(|c| (c.check_id.clone(), check_json(c)))
            .collect();
        Value::Object(map)
    }

    fn service_health(&self, id_or_name: &str, by_name: bool) -> Vec<ServiceHealth> {
        if by_name {
            self.local
                .services()
                .iter()
                .filter(|s| s.service == id_or_name)
                .map(|s| self.health_of(s))
                .collect()
        } else {
            self.local
                .service(id_or_name)
                .map(|s| vec![self.health_of(&s)])
                .unwrap_or_default()
        }
    }

    fn register_service<'a>(
        &'a self,
        body: &'a [u8],
        replace_existing_checks: bool,
    ) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            let reg = AgentServiceRegistration::decode(body).map_err(bad)?;
            self.add_service(reg, replace_existing_checks, true).await
        })
    }

    fn deregister_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            if self.remove_service(id).await {
                Ok(())
            } else {
                Err(unknown_service(id))
            }
        })
    }

    fn register_check<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            let reg = AgentCheckRegistration::decode(body).map_err(bad)?;
            self.add_check(reg, true).await
        })
    }

    fn deregister_check<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            {
                let owner = self.local.check(id).map(|c| c.service_id);
                let _key = match owner.as_deref() {
                    Some(sid) if !sid.is_empty() => self.keys.service(sid).await,
                    _ => self.keys.check(id).await,
                };
                if !self.remove_check_locked(id) {
                    return Err(unknown_check(id));
                }
                self.unpersist_check(id).await;
            }
            tracing::info!(check = %id, "check deregistered");
            self.sync().await;
            Ok(())
        })
    }

    fn update_check<'a>(
        &'a self,
        id: &'a str,
        new_status: &'a str,
        output: String,
    ) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            if self.local.check(id).is_none() {
                return Err(unknown_check(id));
            }
            let Some(output) = self.runners.ttl_update(id, output) else {
                return Err(ServerError::Internal(format!(
                    "CheckID {id:?} does not have associated TTL"
                )));
            };
            self.local.update_check(id, new_status, output);
            self.sync().await;
            Ok(())
        })
    }

    fn service_maintenance<'a>(
        &'a self,
        id: &'a str,
        enable: bool,
        reason: String,
    ) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            {
                let _service = self.keys.service(id).await;
                let Some(svc) = self.local.service(id) else {
                    return Err(ServerError::NotFound(format!(
                        "No service registered with ID {id:?}"
                    )));
                };
                let check_id = format!("{SERVICE_MAINT_PREFIX}{id}");
                if enable {
                    if self.local.check(&check_id).is_some() {
                        return Ok(());
                    }
                    let reason = if reason.is_empty() {
                        DEFAULT_SERVICE_MAINT_REASON.to_string()
                    } else {
                        reason
                    };
                    let check = self.maintenance_check(
                        check_id,
                        "Service Maintenance Mode",
                        reason,
                        Some(&svc),
                    );
                    self.persist_check(&check, None).await?;
                    self.local.add_check(check, None);
                    tracing::info!(service = %id, "service entered maintenance mode");
                } else if self.remove_check_locked(&check_id) {
                    self.unpersist_check(&check_id).await;
                    tracing::info!(service = %id, "service left maintenance mode");
                }
            }
            self.sync().await;
            Ok(())
        })
    }

    fn node_maintenance(
        &self,
        enable: bool,
        reason: String,
    ) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(async move {
            {
                let _key = self.keys.check(NODE_MAINT_CHECK_ID).await;
                if enable {
                    if self.local.check(NODE_MAINT_CHECK_ID).is_some() {
                        return Ok(());
                    }
                    let reason = if reason.is_empty() {
                        DEFAULT_NODE_MAINT_REASON.to_string()
                    } else {
                        reason
                    };
                    let check = self.maintenance_check(
                        NODE_MAINT_CHECK_ID.to_string(),
                        "Node Maintenance Mode",
                        reason,
                        None,
                    );
                    self.persist_check(&check, None).await?;
                    self.local.add_check(check, None);
                    tracing::info!("node entered maintenance mode");
                } else if self.remove_check_locked(NODE_MAINT_CHECK_ID) {
                    self.unpersist_check(NODE_MAINT_CHECK_ID).await;
                    tracing::info!("node left maintenance mode");
                }
            }
            self.sync().await;
            Ok(())
        })
    }

    fn join<'a>(&'a self, addr: &'a str, wan: bool) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            let n = self
                .members
                .join(addr, wan)
                .await
                .map_err(ServerError::Internal)?;
            tracing::info!(%addr, wan, nodes = n, "joined cluster");
            Ok(())
        })
    }

    fn reload(&self) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(self.reload_config())
    }

    fn keyring(
        &self,
        op: registry_server::agent_api::KeyringOp,
    ) -> BoxFuture<'_, Result<serde_json::Value, ServerError>> {
        self.members.keyring(op)
    }

    fn force_leave<'a>(
        &'a self,
        node: &'a str,
        prune: bool,
    ) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            self.members
                .force_leave(node, prune)
                .await
                .map_err(ServerError::Internal)
        })
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(async move {
            self.members.leave().await.map_err(ServerError::Internal)?;
            tracing::info!("leave requested: shutting down");
            self.has_left.store(true, Ordering::SeqCst);
            self.left.notify_waiters();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
