//! Agent startup: print the configuration summary, convert to the server's configuration and
//! hand over to the server library; start LAN gossip and wire it to the agent endpoints, the
//! leader's member reconciliation and user events; leave on signals as configured.

use crate::config::duration::format_duration;
use crate::config::{to_server_config, RuntimeConfig};
use crate::gossip::wan::{WanDirectory, WanSettings};
use crate::gossip::{Gossip, GossipConfig, GossipMembership};
use registry_server::config::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;

/// Gossip and leave settings of an agent.
#[derive(Debug, Clone)]
pub struct GossipStart {
    /// LAN gossip settings (tags are filled in at start).
    pub config: GossipConfig,
    /// The WAN pool (servers).
    pub wan: Option<WanSettings>,
    /// Leave gracefully on SIGTERM.
    pub leave_on_terminate: bool,
    /// Stay a member on SIGINT.
    pub skip_leave_on_interrupt: bool,
}

/// The gossip settings of `cfg`, with its keyring loaded (`<data_dir>/serf/local.keyring`,
/// else `encrypt`).
pub fn gossip_start(cfg: &RuntimeConfig) -> anyhow::Result<GossipStart> {
    let keyring = crate::gossip::keyring::Keyring::load(
        cfg.storage.data_dir().map(|p| p.as_path()),
        &cfg.encrypt,
    )
    .map_err(|e| anyhow::anyhow!("Failed to configure keyring: {e}"))?
    .map(Arc::new);
    let wan_keyring = if cfg.server {
        crate::gossip::keyring::Keyring::load_file(
            cfg.storage.data_dir().map(|p| p.as_path()),
            crate::gossip::keyring::REMOTE_KEYRING,
            &cfg.encrypt,
        )
        .map_err(|e| anyhow::anyhow!("Failed to configure WAN keyring: {e}"))?
        .map(Arc::new)
    } else {
        None
    };
    let mut join = cfg.join.start_join.clone();
    for a in &cfg.join.retry_join {
        if !join.contains(a) {
            join.push(a.clone());
        }
    }
    Ok(GossipStart {
        config: GossipConfig {
            node_name: cfg.node_name.clone(),
            datacenter: cfg.datacenter.clone(),
            bind: SocketAddr::new(cfg.bind_addr, cfg.ports.serf_lan),
            advertise: SocketAddr::new(cfg.advertise_addr, cfg.ports.serf_lan),
            tags: Default::default(),
            join,
            retry_interval: cfg.join.retry_interval,
            interval: cfg.gossip.interval,
            phi_threshold: crate::gossip::DEFAULT_PHI_THRESHOLD,
            reconnect_timeout: cfg.gossip.reconnect_timeout,
            keyring,
        },
        wan: cfg.server.then(|| {
            let mut join = cfg.join.start_join_wan.clone();
            for a in &cfg.join.retry_join_wan {
                if !join.contains(a) {
                    join.push(a.clone());
                }
            }
            WanSettings {
                node_name: cfg.node_name.clone(),
                datacenter: cfg.datacenter.clone(),
                bind: cfg.bind_addr,
                advertise: cfg.advertise_addr_wan.unwrap_or(cfg.advertise_addr),
                port: cfg.ports.serf_wan,
                join,
                retry_interval: cfg.join.retry_interval,
                interval: cfg.gossip.interval,
                reconnect_timeout: cfg.gossip.reconnect_timeout,
                keyring: wan_keyring,
            }
        }),
        leave_on_terminate: cfg.gossip.leave_on_terminate,
        skip_leave_on_interrupt: cfg.gossip.skip_leave_on_interrupt,
    })
}

/// Starts the WAN pool of a server and hands its datacenter directory to the server's
/// cross-datacenter forwarding. A WAN socket that cannot be bound is logged and the server
/// runs without other datacenters.
async fn start_wan(
    settings: &WanSettings,
    tags: std::collections::BTreeMap<String, String>,
    server: &registry_server::Server,
) -> Option<Arc<Gossip>> {
    let cfg = settings.gossip_config(tags);
    // WAN members carry no user events: the pool gets a sink of its own.
    let events = Arc::new(registry_server::http::UserEvents::new());
    match Gossip::start(cfg, events).await {
        Ok(wan) => {
            server
                .datacenters
                .install(Arc::new(WanDirectory::new(wan.clone())));
            Some(wan)
        }
        Err(e) => {
            tracing::error!(error = %e, "WAN gossip not started: other datacenters are unreachable");
            None
        }
    }
}

/// Runs the agent until it is shut down.
pub async fn run_agent(
    cfg: RuntimeConfig,
    reload: Option<crate::agent::ReloadSource>,
) -> anyhow::Result<()> {
    print_banner(&cfg);
    registry_server::metrics::configure(registry_server::metrics::Telemetry {
        retention: cfg.telemetry.prometheus_retention_time,
        prefix: cfg.telemetry.metrics_prefix.clone(),
        filter_default: cfg.telemetry.filter_default,
        prefix_filter: cfg.telemetry.prefix_filter.clone(),
    });
    registry_server::metrics::spawn_push_sinks(registry_server::metrics::PushSinks {
        statsd: cfg.telemetry.statsd_address.clone(),
        dogstatsd: cfg.telemetry.dogstatsd_addr.clone(),
        dogstatsd_tags: cfg.telemetry.dogstatsd_tags.clone(),
        hostname: (!cfg.telemetry.disable_hostname)
            .then(|| hostname::get().ok())
            .flatten()
            .map(|h| h.to_string_lossy().into_owned()),
    });
    tracing::debug!(config = ?cfg, "runtime configuration");
    if !cfg.services.is_empty() || !cfg.checks.is_empty() {
        tracing::info!(
            services = cfg.services.len(),
            checks = cfg.checks.len(),
            "service and check definitions loaded from configuration"
        );
    }
    let server_config = to_server_config(&cfg);
    // Before any client of the server port is built: they all take TLS from here.
    registry_server::tls::rpc::install(&server_config.tls)?;
    let opts = crate::agent::AgentOptions {
        enable_script_checks: cfg.enable_script_checks,
        use_streaming_backend: cfg.use_streaming_backend,
        grpc_port: if cfg.ports.grpc == 0 {
            -1
        } else {
            i32::from(cfg.ports.grpc)
        },
        advertise_addr: Some(cfg.advertise_addr),
        primary_datacenter: Some(cfg.acl.primary_datacenter.clone()).filter(|p| !p.is_empty()),
        ..crate::agent::AgentOptions::default()
    };
    let opts = timing_overrides(opts);
    if !cfg.server && !cfg.dev {
        return start_client(
            server_config,
            opts,
            cfg.services.clone(),
            cfg.checks.clone(),
            reload,
            gossip_start(&cfg)?,
        )
        .await;
    }
    start_server(
        server_config,
        opts,
        cfg.services.clone(),
        cfg.checks.clone(),
        reload,
        Some(gossip_start(&cfg)?),
    )
    .await
}

/// Timings that Consul keeps out of its user configuration (`ae_interval`,
/// `check_reap_interval`), settable for tests through `REGISTRY_AE_INTERVAL` and
/// `REGISTRY_CHECK_REAP_INTERVAL` (Go durations). Unset or unparsable values keep Consul's
/// 1m and 30s.
fn timing_overrides(mut opts: crate::agent::AgentOptions) -> crate::agent::AgentOptions {
    let read = |name: &str| -> Option<std::time::Duration> {
        let raw = std::env::var(name).ok()?;
        match crate::config::duration::parse_duration(&raw) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                tracing::warn!(variable = name, value = %raw, "ignoring invalid duration");
                None
            }
        }
    };
    if let Some(d) = read("REGISTRY_AE_INTERVAL") {
        opts.ae_interval = d;
    }
    if let Some(d) = read("REGISTRY_CHECK_REAP_INTERVAL") {
        opts.check_reap_interval = d;
    }
    opts
}

/// Lets gossip's user-event filters see the agent's services (names and tags).
fn publish_local_services(lan: &Gossip, agent: &crate::agent::LocalAgent) {
    let local = agent.local().clone();
    lan.set_local_services(Arc::new(move || {
        local
            .services()
            .iter()
            .map(|s| (s.service.clone(), s.tags.clone()))
            .collect()
    }));
}

/// SIGHUP reloads the configuration, as in Consul.
fn reload_on_sighup(agent: std::sync::Arc<crate::agent::LocalAgent>) {
    tokio::spawn(async move {
        let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            tracing::info!("caught SIGHUP, reloading configuration");
            match registry_server::tls::reload_all() {
                Ok(()) => tracing::info!("TLS certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; the previous certificates stay")
                }
            }
            if let Err(e) = agent.reload_config().await {
                tracing::error!(error = %e, "reload failed");
            }
        }
    });
}

/// Resolves on Ctrl-C, SIGTERM or once the agent left; `leave_on` says whether SIGTERM
/// (`leave_on_terminate`) and Ctrl-C (not `skip_leave_on_interrupt`) leave the gossip pool
/// gracefully first.
async fn shutdown_signal(agent: Arc<crate::agent::LocalAgent>, leave_on: (bool, bool)) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    let leave = tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("caught interrupt, shutting down");
            leave_on.1
        }
        _ = term.recv() => {
            tracing::info!("caught SIGTERM, shutting down");
            leave_on.0
        }
        _ = agent.left() => {
            tracing::info!("left the cluster, shutting down");
            false
        }
    };
    if leave {
        tracing::info!("gracefully leaving the cluster");
        if let Err(e) = registry_server::agent_api::AgentApi::leave(&*agent).await {
            tracing::warn!(error = %e, "leave failed");
        }
    }
}

/// Starts a client agent: no Raft and no state of its own. Its `/v1/agent/*` endpoints
/// serve its local state; every other request, and its anti-entropy, goes to a server
/// found through the join addresses, failing over when that server goes away.
pub async fn start_client(
    cfg: ServerConfig,
    opts: crate::agent::AgentOptions,
    services: Vec<serde_json::Value>,
    checks: Vec<serde_json::Value>,
    reload: Option<crate::agent::ReloadSource>,
    gossip: GossipStart,
) -> anyhow::Result<()> {
    use registry_server::rpc::client::{ClientForward, SeededDirectory, ServerPool};
    let config = Arc::new(cfg);
    let seeded = SeededDirectory::new(config.retry_join.clone(), config.server_port)?;
    tokio::spawn(seeded.clone().run());
    // LAN gossip: the client is a member, and the alive servers it sees are where its
    // requests go (the join hosts' server list until gossip has converged).
    let mut gc = gossip.config;
    let version = opts.version.clone();
    let tags =
        crate::agent::members::local_tags(&config, &config.node_id, &version, &opts.revision);
    gc.tags = tags.clone();
    let events = Arc::new(registry_server::http::UserEvents::new());
    // A client agent has metrics of its own (runtime, gossip, HTTP), as Consul's do.
    registry_server::metrics::install();
    registry_server::metrics::spawn_runtime_sampler();
    let lan = Gossip::start(gc, events.clone()).await?;
    crate::coordinate::spawn(lan.clone(), local_http(&config), agent_token(&config));
    let dir = Arc::new(GossipDirectory {
        lan: lan.clone(),
        seeded,
    });
    let pool = ServerPool::new(dir)?;
    let catalog = Arc::new(crate::ae::RemoteServers::new(pool.clone()));
    let addr = opts.advertise_addr.unwrap_or(config.bind_addr);
    let local = Arc::new(crate::agent::LocalMembership::new(&config, addr, tags));
    let mut forward = ClientForward::new(pool.clone(), &config.node_name)
        .with_default_token(&config.acl.tokens.default);
    if opts.use_streaming_backend {
        forward = forward.with_stream_views();
    }
    let forward = Arc::new(forward);
    let agent = Arc::new(
        crate::agent::LocalAgent::with_catalog(config.clone(), catalog, opts)
            .with_membership(Arc::new(GossipMembership::new(lan.clone(), local, None)))
            .with_remote_alias(forward.clone()),
    );
    let leave_on = (gossip.leave_on_terminate, !gossip.skip_leave_on_interrupt);
    publish_local_services(&lan, &agent);
    agent.start();
    agent
        .load_config_definitions(reload, services, checks)
        .await?;
    reload_on_sighup(agent.clone());
    let state = registry_server::http::AgentState {
        config: config.clone(),
        agent: agent.clone(),
    };
    if config.dns_port != 0 {
        let bind = std::net::SocketAddr::new(config.client_addr, config.dns_port);
        let addr = registry_server::rpc::dns::serve_client(
            bind,
            pool.clone(),
            config.acl.tokens.default.clone(),
        )
        .await?;
        tracing::info!(%addr, "DNS listening (UDP and TCP, answers from the servers)");
    }
    let app = registry_server::http::client_router(state, forward, events);
    let result =
        registry_server::server::serve_api(&config, app, shutdown_signal(agent.clone(), leave_on))
            .await;
    agent.shutdown();
    result.map_err(Into::into)
}

/// The agent's startup summary, in the shape of Consul's.
fn print_banner(cfg: &RuntimeConfig) {
    let port = |p: u16| {
        if p == 0 {
            "-1".to_string()
        } else {
            p.to_string()
        }
    };
    println!("==> Starting Registry agent...");
    println!("              Version: '{}'", env!("CARGO_PKG_VERSION"));
    println!("              Node ID: '{}'", cfg.node_id);
    println!("            Node name: '{}'", cfg.node_name);
    println!("           Datacenter: '{}'", cfg.datacenter);
    println!(
        "               Server: {} (Bootstrap: {})",
        cfg.server, cfg.bootstrap
    );
    println!(
        "          Client Addr: [{}] (HTTP: {}, HTTPS: {}, DNS: {}, gRPC: {})",
        cfg.client_addr,
        port(cfg.ports.http),
        port(cfg.ports.https),
        port(cfg.ports.dns),
        port(cfg.ports.grpc)
    );
    println!(
        "         Cluster Addr: {} (LAN: {}, WAN: {})",
        cfg.advertise_addr, cfg.ports.serf_lan, cfg.ports.serf_wan
    );
    match cfg.storage.data_dir() {
        Some(dir) => println!("             Data Dir: {}", dir.display()),
        None => println!("             Data Dir: (in memory, -dev)"),
    }
    println!(
        "       Raft snapshots: every {} entries, checked every {}",
        cfg.raft.snapshot_threshold,
        format_duration(cfg.raft.snapshot_interval)
    );
    println!();
    println!("==> Log data will now stream in as it occurs:");
    println!();
}

/// Starts the server node and the local agent on it (and LAN gossip with `gossip`),
/// registers the configured services and checks, and serves until Ctrl-C, SIGTERM or
/// `PUT /v1/agent/leave`.
pub async fn start_server(
    cfg: ServerConfig,
    opts: crate::agent::AgentOptions,
    services: Vec<serde_json::Value>,
    checks: Vec<serde_json::Value>,
    reload: Option<crate::agent::ReloadSource>,
    gossip: Option<GossipStart>,
) -> anyhow::Result<()> {
    let server = registry_server::Server::start(cfg).await?;
    let version = opts.version.clone();
    let revision = opts.revision.clone();
    let advertise = opts.advertise_addr;
    let mut agent = crate::agent::LocalAgent::with_options(
        server.config.clone(),
        server.reader.clone(),
        server.writer.clone(),
        opts,
    )
    .with_cluster(server.cluster.clone());
    let mut leave_on = (false, false);
    let mut pool: Option<Arc<Gossip>> = None;
    let mut wan_pool: Option<Arc<Gossip>> = None;
    if let Some(g) = gossip {
        let mut gc = g.config;
        let tags = crate::agent::members::local_tags(
            &server.config,
            &server.config.node_id,
            &version,
            &revision,
        );
        gc.tags = tags.clone();
        let lan = Gossip::start(gc, server.events.clone()).await?;
        let wan = match &g.wan {
            Some(w) if server.config.server => start_wan(w, tags.clone(), &server).await,
            _ => None,
        };
        if let Some(w) = &wan {
            crate::coordinate::spawn_wan(w.clone(), server.datacenters.clone());
            tokio::spawn(crate::gossip::wan::flood_join(
                Arc::downgrade(&lan),
                Arc::downgrade(w),
                server.config.datacenter.clone(),
            ));
        }
        crate::coordinate::spawn(
            lan.clone(),
            local_http(&server.config),
            agent_token(&server.config),
        );
        let addr = advertise.unwrap_or(server.config.bind_addr);
        let local = Arc::new(crate::agent::LocalMembership::new(
            &server.config,
            addr,
            tags,
        ));
        let cluster = server.config.server.then(|| server.cluster.clone());
        agent = agent.with_membership(Arc::new(
            GossipMembership::new(lan.clone(), local, cluster).with_wan(wan.clone()),
        ));
        if server.config.server {
            server.reconcile_members(lan.clone());
        }
        leave_on = (g.leave_on_terminate, !g.skip_leave_on_interrupt);
        pool = Some(lan);
        wan_pool = wan;
    }
    let agent = Arc::new(agent);
    if let Some(lan) = &pool {
        publish_local_services(lan, &agent);
    }
    agent.start();
    agent
        .load_config_definitions(reload, services, checks)
        .await?;
    reload_on_sighup(agent.clone());
    let result = server
        .serve(agent.clone(), shutdown_signal(agent.clone(), leave_on))
        .await;
    agent.shutdown();
    if let Some(lan) = pool {
        lan.shutdown();
    }
    if let Some(wan) = wan_pool {
        wan.shutdown();
    }
    result.map_err(Into::into)
}

/// A client agent's servers: the alive members with the server role that gossip knows, else
/// what the join hosts last said.
struct GossipDirectory {
    lan: Arc<Gossip>,
    seeded: Arc<registry_server::rpc::client::SeededDirectory>,
}

impl registry_server::rpc::client::ServerDirectory for GossipDirectory {
    fn servers(&self) -> Vec<String> {
        let alive = registry_server::leader::members::alive_servers(&self.lan.members());
        if alive.is_empty() {
            return self.seeded.servers();
        }
        alive
            .into_iter()
            .map(|(_, addr)| addr.to_string())
            .collect()
    }
}

/// This agent's own HTTP API, as its coordinate loop reaches it.
fn local_http(cfg: &ServerConfig) -> String {
    let ip = match cfg.client_addr {
        std::net::IpAddr::V4(v) if v.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v) if v.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, cfg.http_port))
}

/// The token the agent's own requests carry.
fn agent_token(cfg: &ServerConfig) -> String {
    let t = &cfg.acl.tokens;
    if !t.agent.is_empty() {
        t.agent.clone()
    } else {
        t.default.clone()
    }
}
