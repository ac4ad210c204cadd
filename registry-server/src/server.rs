//! Starting one server node: the state store, Raft, the query layer and the HTTP listener.
//!
//! The agent binary calls [`Server::start`], builds its local agent on the returned
//! reader and writer, then calls [`Server::serve`] with it.

use crate::agent_api::AgentApi;
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::http::{self, AppState, UserEvents};
use crate::leader::autopilot::Autopilot;
use crate::leader::sessions::SessionTimers;
use crate::query::blocking::RaftStatus;
use crate::query::write::{Proposer, Writer};
use crate::query::Reader;
use crate::raft::RaftHandle;
use crate::state::Store;
use crate::ServerError;
use futures::future::BoxFuture;
use registry_proto::{Command, CommandResponse};
use std::future::Future;
use std::sync::Arc;

impl RaftStatus for RaftHandle {
    fn is_leader(&self) -> bool {
        RaftHandle::is_leader(self)
    }
    fn known_leader(&self) -> bool {
        RaftHandle::known_leader(self)
    }
    fn last_contact_ms(&self) -> u64 {
        RaftHandle::last_contact_ms(self)
    }
    fn leader_addr(&self) -> Option<String> {
        self.leader().map(|(_, n)| n.raft_addr)
    }
    fn peers(&self) -> Vec<String> {
        RaftHandle::peers(self)
    }
    fn ensure_linearizable(&self) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(RaftHandle::ensure_linearizable(self))
    }
    fn serves_reads(&self) -> bool {
        self.serves_default_reads()
    }
    fn term(&self) -> u64 {
        self.metrics().borrow().current_term
    }
    fn read_barrier(&self, consistent: bool) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(RaftHandle::read_barrier(self, consistent))
    }
}

impl Proposer for RaftHandle {
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<CommandResponse, ServerError>> {
        Box::pin(self.write(cmd))
    }
}

/// A running server node.
#[derive(Clone)]
pub struct Server {
    /// Runtime configuration.
    pub config: Arc<ServerConfig>,
    /// The state store.
    pub store: Arc<Store>,
    /// The Raft node.
    pub raft: RaftHandle,
    /// Reads.
    pub reader: Reader,
    /// Writes.
    pub writer: Writer,
    /// Session TTL timers, kept while this server leads.
    pub sessions: Arc<SessionTimers>,
    /// This agent's recent user events.
    pub events: Arc<UserEvents>,
    /// Cluster membership: discovery, join, leave.
    pub cluster: Arc<Cluster>,
    /// Autopilot: server health, promotion and dead-server cleanup while this server leads.
    pub autopilot: Arc<Autopilot>,
    /// The v1 router as the server port runs forwarded requests through it.
    pub api: Arc<crate::rpc::api::ApiSlot>,
    /// DNS answers for client agents.
    pub dns: Arc<crate::rpc::dns::DnsSlot>,
    /// Other datacenters (the WAN pool installs their directory).
    pub datacenters: Arc<crate::rpc::wan::Datacenters>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the state, starts Raft and waits until this node can serve.
    pub async fn start(mut config: ServerConfig) -> Result<Server, ServerError> {
        crate::metrics::install();
        if let Some(min) = test_session_ttl_min() {
            tracing::warn!(
                ?min,
                "session TTL minimum lowered by {TEST_SESSION_TTL_MIN_ENV}"
            );
            config.session_ttl_min = min;
        }
        let config = Arc::new(config);
        let store = Arc::new(Store::new());
        let raft = RaftHandle::start(&config, store.clone()).await?;
        let status: Arc<dyn RaftStatus> = Arc::new(raft.clone());
        let proposer: Arc<dyn Proposer> = Arc::new(raft.clone());
        let writer = Writer::new(proposer);
        let sessions = Arc::new(SessionTimers::new());
        tokio::spawn(crate::leader::sessions::run(
            sessions.clone(),
            store.clone(),
            writer.clone(),
            status.clone(),
            crate::leader::leadership(&raft),
        ));
        let autopilot = Autopilot::new(
            raft.clone(),
            store.clone(),
            writer.clone(),
            config.autopilot.clone(),
        );
        tokio::spawn(crate::leader::autopilot::run(
            autopilot.clone(),
            crate::leader::leadership(&raft),
        ));
        crate::metrics::spawn_sampler(raft.clone(), autopilot.clone());
        let cluster = Cluster::new(
            raft.clone(),
            config.clone(),
            store.clone(),
            sessions.clone(),
        )?;
        let api: Arc<crate::rpc::api::ApiSlot> = Arc::default();
        let datacenters = crate::rpc::wan::Datacenters::new(&config.datacenter, api.clone())?;
        let server = Server {
            reader: Reader::new(store.clone(), status),
            writer,
            config,
            store,
            raft,
            sessions,
            events: Arc::new(UserEvents::new()),
            cluster,
            autopilot,
            api,
            dns: Arc::default(),
            datacenters,
        };
        let shared = crate::dns::engine_state(
            server.config.dns.clone(),
            server.store.clone(),
            crate::dns::NodeInfo::from_server_config(&server.config),
            None,
        );
        let _ = shared
            .remote
            .set(crate::rpc::dns::WanDns::new(server.datacenters.clone()));
        server.dns.install(shared);
        if !server.config.dev {
            // Peers must reach this server while it forms or joins a cluster, before the
            // HTTP API is up.
            server.serve_rpc().await?;
            tokio::spawn(server.cluster.clone().discover());
        }
        Ok(server)
    }

    /// Starts the leader's reconciliation of gossip membership into the catalog
    /// (`serfHealth` of every member, deregistration of members that left); see
    /// [`crate::leader::members`].
    pub fn reconcile_members(&self, source: Arc<dyn crate::leader::members::MemberSource>) {
        tokio::spawn(crate::leader::members::run(
            source,
            self.store.clone(),
            self.writer.clone(),
            Some(self.raft.clone()),
            self.config.node_name.clone(),
            self.config.datacenter.clone(),
            crate::leader::leadership(&self.raft),
        ));
    }

    /// Serves the HTTP API (and the internal Raft endpoints) until `shutdown` resolves.
    pub async fn serve(
        &self,
        agent: Arc<dyn AgentApi>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = AppState {
            config: self.config.clone(),
            reader: self.reader.clone(),
            writer: self.writer.clone(),
            raft: Arc::new(self.raft.clone()),
            agent,
            cache: Default::default(),
            sessions: self.sessions.clone(),
            events: self.events.clone(),
            cluster: self.cluster.clone(),
            autopilot: self.autopilot.clone(),
            acl: Arc::new(crate::acl::AclRuntime::new(self.config.acl.clone())),
            datacenters: self.datacenters.clone(),
            remote_queries: Arc::new(crate::prepared::remote::WanQueries(
                self.datacenters.clone(),
            )),
            coordinates: Default::default(),
        };
        let acl_view = state
            .acl
            .enabled()
            .then(|| crate::acl::DnsView::new(state.acl.clone(), self.config.datacenter.clone()));
        let dns = if self.config.dns_port != 0 {
            let mut cfg = self.config.dns.clone();
            cfg.bind = std::net::SocketAddr::new(self.config.client_addr, self.config.dns_port);
            let node = crate::dns::NodeInfo::from_server_config(&self.config);
            let shared = crate::dns::engine_state(cfg, self.store.clone(), node, acl_view);
            let _ = shared
                .remote
                .set(crate::rpc::dns::WanDns::new(self.datacenters.clone()));
            let handle = crate::dns::serve_state(shared).await?;
            tracing::info!(addr = %handle.local_addr(), "DNS listening");
            Some(handle)
        } else {
            None
        };
        if state.acl.enabled() {
            // Client agents' DNS queries are answered as their own default token sees the
            // catalog.
            self.dns
                .install_acl(state.acl.clone(), self.config.datacenter.clone());
            // The leader creates the built-in ACL records and the `initial_management` token;
            // checked again after every leadership change.
            let acl_state = state.clone();
            // A secondary datacenter's leader replicates the primary's ACL records.
            tokio::spawn(crate::acl::replication::run(
                crate::acl::replication::Replicator {
                    acl: state.acl.clone(),
                    store: self.store.clone(),
                    writer: self.writer.clone(),
                    datacenters: self.datacenters.clone(),
                },
                self.config.datacenter.clone(),
                crate::leader::leadership(&self.raft),
            ));
            tokio::spawn(async move {
                loop {
                    if acl_state.raft.is_leader() {
                        http::acl::initialize(&acl_state).await;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            });
        }
        let node: Arc<str> = self.config.node_name.as_str().into();
        let wan = crate::rpc::wan_http::WanState {
            dcs: self.datacenters.clone(),
            node: node.clone(),
            translate: self.config.translate_wan_addrs,
        };
        let route = crate::rpc::api::LeaderRoute {
            raft: self.raft.clone(),
            node: node.clone(),
            acl: state.acl.clone(),
        };
        // A secondary datacenter sends policy, role and global token writes to the primary.
        let primary = state
            .acl
            .config
            .is_secondary(&self.config.datacenter)
            .then(|| crate::rpc::acl_primary::PrimaryRoute {
                dcs: self.datacenters.clone(),
                primary: state.acl.config.primary_datacenter.clone(),
                store: self.store.clone(),
                node,
                acl: state.acl.clone(),
            });
        let app = http::router(state).layer(axum::middleware::from_fn_with_state(
            route,
            crate::rpc::api::to_leader,
        ));
        let app = match primary {
            Some(p) => app.layer(axum::middleware::from_fn_with_state(
                p,
                crate::rpc::acl_primary::to_primary,
            )),
            None => app,
        };
        let app = app.layer(axum::middleware::from_fn_with_state(
            wan,
            crate::rpc::wan_http::to_datacenter,
        ));
        self.api.install(app.clone());
        let raft = self.raft.clone();
        let limiter = crate::edge::rate::Limiter::new(
            self.config.limits.request_limits,
            Box::new(move || raft.is_leader()),
        );
        let app = if limiter.active() {
            app.layer(axum::middleware::from_fn_with_state(
                limiter,
                crate::edge::rate::limit,
            ))
        } else {
            app
        };
        serve_api(&self.config, app, shutdown).await?;
        if let Some(dns) = dns {
            dns.shutdown().await;
        }
        self.raft.shutdown().await;
        Ok(())
    }

    /// Serves server-to-server traffic on the server port: Raft RPCs, cluster membership and
    /// requests forwarded to the leader.
    async fn serve_rpc(&self) -> Result<(), ServerError> {
        let addr = std::net::SocketAddr::new(self.config.bind_addr, self.config.server_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Internal(format!("binding server port {addr}: {e}")))?;
        let app = crate::rpc::router(crate::rpc::Parts {
            raft: self.raft.clone(),
            cluster: self.cluster.clone(),
            autopilot: self.autopilot.clone(),
            api: self.api.clone(),
            catalog: crate::rpc::catalog::CatalogRpc {
                store: self.store.clone(),
                writer: self.writer.clone(),
            },
            dns: self.dns.clone(),
        });
        let tls = crate::tls::rpc::server();
        tracing::info!(%addr, tls = tls.is_some(), "server RPC listening");
        let edge = crate::edge::Edge {
            name: "server RPC",
            max_conns_per_client: self.config.limits.rpc_max_conns_per_client,
            tls,
            handshake_timeout: self.config.limits.rpc_handshake_timeout,
            header_timeout: self.config.limits.header_timeout,
        };
        tokio::spawn(async move {
            if let Err(e) = crate::edge::serve(listener, app, edge, std::future::pending()).await {
                tracing::error!(error = %e, "server RPC listener stopped");
            }
        });
        Ok(())
    }
}

/// Serves the v1 API on the HTTP and HTTPS ports that are on (`0`: off) until `shutdown`
/// resolves. Also used by client agents.
pub async fn serve_api(
    config: &ServerConfig,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let mut tasks = Vec::new();
    if config.http_port != 0 {
        let addr = config.http_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Internal(format!("binding HTTP listener {addr}: {e}")))?;
        tracing::info!(%addr, "HTTP API listening");
        let edge = crate::edge::Edge {
            name: "HTTP",
            max_conns_per_client: config.limits.http_max_conns_per_client,
            tls: None,
            handshake_timeout: config.limits.https_handshake_timeout,
            header_timeout: config.limits.header_timeout,
        };
        tasks.push(tokio::spawn(crate::edge::serve(
            listener,
            app.clone(),
            edge,
            stopped(),
        )));
    }
    if config.https_port != 0 {
        let addr = std::net::SocketAddr::new(config.client_addr, config.https_port);
        let tls = crate::tls::TlsServer::new(config.tls.https.clone(), "https")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Internal(format!("binding HTTPS listener {addr}: {e}")))?;
        tracing::info!(%addr, "HTTPS API listening");
        let edge = crate::edge::Edge {
            name: "HTTPS",
            max_conns_per_client: config.limits.http_max_conns_per_client,
            tls: Some(tls),
            handshake_timeout: config.limits.https_handshake_timeout,
            header_timeout: config.limits.header_timeout,
        };
        tasks.push(tokio::spawn(crate::edge::serve(
            listener,
            app,
            edge,
            stopped(),
        )));
    }
    if tasks.is_empty() {
        // Neither port is on: nothing to serve, wait for the end.
        stopped().await;
    }
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServerError::Internal(format!("API listener: {e}"))),
            Err(e) => return Err(ServerError::Internal(format!("API listener task: {e}"))),
        }
    }
    Ok(())
}

/// Environment variable that lowers the session TTL minimum, for tests only: a Go duration
/// (`"1s"`, `"500ms"`). The API keeps Consul's 10 s minimum without it.
pub const TEST_SESSION_TTL_MIN_ENV: &str = "REGISTRY_TEST_SESSION_TTL_MIN";

fn test_session_ttl_min() -> Option<std::time::Duration> {
    let v = std::env::var(TEST_SESSION_TTL_MIN_ENV).ok()?;
    match registry_proto::duration::parse_go_duration(v.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(value = %v, error = %e, "ignoring {TEST_SESSION_TTL_MIN_ENV}");
            None
        }
    }
}
