//! Agent startup: print the configuration summary, convert to the server's configuration and
//! hand over to the server library.

use crate::config::duration::format_duration;
use crate::config::{to_server_config, RuntimeConfig};
use registry_server::config::ServerConfig;

/// Runs the agent until it is shut down.
pub async fn run_agent(
    cfg: RuntimeConfig,
    reload: Option<crate::agent::ReloadSource>,
) -> anyhow::Result<()> {
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
    let opts = timing_overrides(opts);
    if !cfg.server && !cfg.dev {
        return start_client(
            server_config,
            opts,
            cfg.services.clone(),
            cfg.checks.clone(),
            reload,
        )
        .await;
    }
    start_server(
        server_config,
        opts,
        cfg.services.clone(),
        cfg.checks.clone(),
        reload,
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

/// SIGHUP reloads the configuration, as in Consul.
fn reload_on_sighup(agent: std::sync::Arc<crate::agent::LocalAgent>) {
    tokio::spawn(async move {
        let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            tracing::info!("caught SIGHUP, reloading configuration");
            if let Err(e) = agent.reload_config().await {
                tracing::error!(error = %e, "reload failed");
            }
        }
    });
}

/// Resolves on Ctrl-C, SIGTERM or once the agent left.
async fn shutdown_signal(agent: std::sync::Arc<crate::agent::LocalAgent>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("caught interrupt, shutting down"),
        _ = term.recv() => tracing::info!("caught SIGTERM, shutting down"),
        _ = agent.left() => tracing::info!("left the cluster, shutting down"),
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
) -> anyhow::Result<()> {
    use registry_server::rpc::client::{ClientForward, SeededDirectory, ServerPool};
    use std::sync::Arc;
    let config = Arc::new(cfg);
    let dir = SeededDirectory::new(config.retry_join.clone(), config.server_port)?;
    tokio::spawn(dir.clone().run());
    let pool = ServerPool::new(dir)?;
    let catalog = Arc::new(crate::ae::RemoteServers::new(pool.clone()));
    let agent = Arc::new(crate::agent::LocalAgent::with_catalog(
        config.clone(),
        catalog,
        opts,
    ));
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
        let addr = registry_server::rpc::dns::serve_client(bind, pool.clone()).await?;
        tracing::info!(%addr, "DNS listening (UDP, answers from the servers)");
    }
    let app = registry_server::http::client_router(state, Arc::new(ClientForward::new(pool)));
    let addr = config.http_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding HTTP listener {addr}: {e}"))?;
    tracing::info!(%addr, "HTTP API listening (client agent)");
    // Answers go out as soon as they are written (no Nagle delay), as on a server.
    let listener = axum::serve::ListenerExt::tap_io(listener, |s: &mut tokio::net::TcpStream| {
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal(agent.clone()))
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

/// Starts the server node and the local agent on it, registers the configured services
/// and checks, and serves until Ctrl-C, SIGTERM or `PUT /v1/agent/leave`.
pub async fn start_server(
    cfg: ServerConfig,
    opts: crate::agent::AgentOptions,
    services: Vec<serde_json::Value>,
    checks: Vec<serde_json::Value>,
    reload: Option<crate::agent::ReloadSource>,
) -> anyhow::Result<()> {
    let server = registry_server::Server::start(cfg).await?;
    let agent = std::sync::Arc::new(
        crate::agent::LocalAgent::with_options(
            server.config.clone(),
            server.reader.clone(),
            server.writer.clone(),
            opts,
        )
        .with_cluster(server.cluster.clone()),
    );
    agent.start();
    agent
        .load_config_definitions(reload, services, checks)
        .await?;
    reload_on_sighup(agent.clone());
    let result = server
        .serve(agent.clone(), shutdown_signal(agent.clone()))
        .await;
    agent.shutdown();
    result.map_err(Into::into)
}
