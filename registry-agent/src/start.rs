//! Agent startup: print the configuration summary, convert to the server's configuration and
//! hand over to the server library; start LAN gossip and wire it to the agent endpoints, the
//! leader's member reconciliation and user events; leave on signals as configured.

use crate::config::duration::format_duration;
use crate::config::{to_server_config, RuntimeConfig};
use crate::gossip::{Gossip, GossipConfig, GossipMembership};
use registry_server::config::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;

/// Gossip and leave settings of an agent.
#[derive(Debug, Clone)]
pub struct GossipStart {
    /// LAN gossip settings (tags are filled in at start).
    pub config: GossipConfig,
    /// Leave gracefully on SIGTERM.
    pub leave_on_terminate: bool,
    /// Stay a member on SIGINT.
    pub skip_leave_on_interrupt: bool,
}

/// The gossip settings of `cfg`.
pub fn gossip_start(cfg: &RuntimeConfig) -> GossipStart {
    let mut join = cfg.join.start_join.clone();
    for a in &cfg.join.retry_join {
        if !join.contains(a) {
            join.push(a.clone());
        }
    }
    GossipStart {
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
        },
        leave_on_terminate: cfg.gossip.leave_on_terminate,
        skip_leave_on_interrupt: cfg.gossip.skip_leave_on_interrupt,
    }
}

/// Runs the agent until it is shut down.
pub async fn run_agent(cfg: RuntimeConfig) -> anyhow::Result<()> {
    print_banner(&cfg);
    tracing::debug!(config = ?cfg, "runtime configuration");
    if !cfg.services.is_empty() || !cfg.checks.is_empty() {
        tracing::info!(
            services = cfg.services.len(),
            checks = cfg.checks.len(),
            "service and check definitions loaded from configuration"
        );
    }
    let server_config = to_server_config(&cfg);
    let opts = crate::agent::AgentOptions {
        enable_script_checks: cfg.enable_script_checks,
        grpc_port: if cfg.ports.grpc == 0 {
            -1
        } else {
            i32::from(cfg.ports.grpc)
        },
        advertise_addr: Some(cfg.advertise_addr),
        ..crate::agent::AgentOptions::default()
    };
    start_server(
        server_config,
        opts,
        cfg.services.clone(),
        cfg.checks.clone(),
        Some(gossip_start(&cfg)),
    )
    .await
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
        "          Client Addr: [{}] (HTTP: {}, DNS: {}, gRPC: {})",
        cfg.client_addr,
        cfg.ports.http,
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
        let addr = advertise.unwrap_or(server.config.bind_addr);
        let local = Arc::new(crate::agent::LocalMembership::new(
            &server.config,
            addr,
            tags,
        ));
        let cluster = server.config.server.then(|| server.cluster.clone());
        agent = agent.with_membership(Arc::new(GossipMembership::new(lan.clone(), local, cluster)));
        if server.config.server {
            server.reconcile_members(lan.clone());
        }
        leave_on = (g.leave_on_terminate, !g.skip_leave_on_interrupt);
        pool = Some(lan);
    }
    let agent = Arc::new(agent);
    if let Some(lan) = &pool {
        let local = agent.local().clone();
        lan.set_local_services(Arc::new(move || {
            local
                .services()
                .iter()
                .map(|s| (s.service.clone(), s.tags.clone()))
                .collect()
        }));
    }
    agent.start();
    agent.register_from_config(services).await?;
    agent.register_checks_from_config(checks).await?;
    let waiter = agent.clone();
    let shutdown = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
            _ = waiter.left() => {
                tracing::info!("left the cluster, shutting down");
                false
            }
        };
        if leave {
            tracing::info!("gracefully leaving the cluster");
            if let Err(e) = registry_server::agent_api::AgentApi::leave(&*waiter).await {
                tracing::warn!(error = %e, "leave failed");
            }
        }
    };
    let result = server.serve(agent.clone(), shutdown).await;
    agent.shutdown();
    if let Some(lan) = pool {
        lan.shutdown();
    }
    result.map_err(Into::into)
}
