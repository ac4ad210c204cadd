//! The `k8s-sync` binary: flags, logging, metrics, the Kubernetes client, leader election and
//! the sync loops, with a graceful shutdown on SIGTERM/SIGINT.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use k8s_sync::acl_init::AclInitFlags;
use k8s_sync::config::{normalize_args, Flags};
use k8s_sync::federation_secret::FederationSecretFlags;
use k8s_sync::gossip_key::GossipKeyFlags;
use k8s_sync::leader::Elector;
use k8s_sync::registry::Registry;
use k8s_sync::status::{self, Status};
use k8s_sync::to_consul::ToConsul;
use k8s_sync::to_k8s::ToK8s;
use tokio::sync::watch;

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},kube=warn,hyper=warn"))
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn kube_client(kubeconfig: Option<&str>) -> anyhow::Result<kube::Client> {
    let mut cfg = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {path}"))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    // Names this client in the API server's logs and audit records.
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("k8s-sync/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(kube::Client::try_from(cfg)?)
}

fn registry_client(flags: &Flags) -> anyhow::Result<Registry> {
    let ca = match &flags.ca_file {
        Some(path) if !path.is_empty() => {
            Some(std::fs::read(path).with_context(|| format!("reading the CA file {path}"))?)
        }
        _ => None,
    };
    Ok(Registry::with_tls(
        &flags.http_addr,
        flags.consul_token.clone(),
        &flags.consul_node_name,
        ca.as_deref(),
        flags.http_ssl,
    )?)
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            } else {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
        // Keep the sender alive so receivers see `true`, not a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}

/// The install Jobs of the Helm chart, run as `k8s-sync <job> [flags]`.
async fn run_job(job: &str, args: Vec<String>) -> anyhow::Result<()> {
    match job {
        "acl-init" => {
            let flags = AclInitFlags::parse_from(args);
            init_logging(&flags.job.log_level, flags.job.log_json);
            let client = kube_client(flags.job.kubeconfig.as_deref()).await?;
            k8s_sync::acl_init::run(flags, client)
                .await
                .context("ACL initialisation")
        }
        "create-federation-secret" => {
            let flags = FederationSecretFlags::parse_from(args);
            init_logging(&flags.job.log_level, flags.job.log_json);
            let client = kube_client(flags.job.kubeconfig.as_deref()).await?;
            k8s_sync::federation_secret::run(flags, client)
                .await
                .context("writing the federation Secret")
        }
        _ => {
            let flags = GossipKeyFlags::parse_from(args);
            init_logging(&flags.job.log_level, flags.job.log_json);
            let client = kube_client(flags.job.kubeconfig.as_deref()).await?;
            k8s_sync::gossip_key::run(flags, client)
                .await
                .context("generating the gossip key")
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = normalize_args(std::env::args());
    if let Some(job) = args
        .get(1)
        .filter(|a| {
            matches!(
                a.as_str(),
                "acl-init" | "gossip-encryption-autogenerate" | "create-federation-secret"
            )
        })
        .cloned()
    {
        return run_job(&job, args.into_iter().skip(1).collect()).await;
    }
    let flags = Flags::parse_from(args);
    init_logging(&flags.log_level, flags.log_json);
    let sync_cfg = flags.sync_config().map_err(|e| anyhow!(e))?;
    if flags.purge_k8s_services_from_node {
        // The uninstall path: needs the registry only, never the Kubernetes API.
        let registry = registry_client(&flags)?;
        let n = k8s_sync::purge::purge_node(&registry, &sync_cfg.tag)
            .await
            .context("purging the sync node")?;
        tracing::info!(node = %flags.consul_node_name, deregistered = n, "purged this sync's services from its node");
        return Ok(());
    }
    let prom = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let client = kube_client(flags.kubeconfig.as_deref())
        .await
        .context("Kubernetes client configuration")?;
    let registry = registry_client(&flags)?;
    let status = Arc::new(Status::default());
    let mut shutdown = shutdown_signal();

    let addr = status::listen_addr(&flags.listen).map_err(|e| anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(listen = %listener.local_addr()?, "health and metrics listener");
    let http = tokio::spawn(status::serve(
        listener,
        status.clone(),
        prom,
        shutdown.clone(),
    ));

    let elector = flags.leader_elect.then(|| {
        let id = flags.leader_elect_id.clone().unwrap_or_else(|| {
            let host = hostname_or_default();
            format!("{host}-{}", std::process::id())
        });
        Elector::new(
            client.clone(),
            &flags.leader_elect_namespace,
            &flags.leader_elect_lease_name,
            &id,
            flags.leader_elect_lease_duration,
        )
    });
    if let Some(el) = &elector {
        status.standby_ready.store(true, Ordering::Relaxed);
        tracing::info!("waiting for the lease");
        loop {
            match el.try_acquire().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "lease attempt failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(el.retry_period()) => {}
                _ = status::stopped(&mut shutdown) => { let _ = http.await; return Ok(()) }
            }
        }
        tracing::info!("lease acquired: this replica syncs");
    }
    status.leader.store(true, Ordering::Relaxed);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut watchers = Vec::new();
    if flags.to_consul {
        let dirty = Arc::new(k8s_sync::source::Dirty::default());
        let (caches, w) =
            k8s_sync::source::start(&client, dirty.clone(), flags.use_endpoint_slices);
        watchers.extend(w);
        let tc = ToConsul {
            registry: registry.clone(),
            cfg: sync_cfg.clone(),
            resync: flags.sync_period,
            status: status.clone(),
        };
        tasks.push(tokio::spawn(tc.run(caches, dirty, stop_rx.clone())));
    } else {
        status.synced_once.store(true, Ordering::Relaxed);
        status.registry_ok.store(true, Ordering::Relaxed);
    }
    if flags.to_k8s {
        let tk = ToK8s {
            registry: registry.clone(),
            client: client.clone(),
            namespace: flags.k8s_write_namespace.clone(),
            prefix: flags.k8s_service_prefix.clone(),
            domain: flags.consul_domain.clone(),
            tag: flags.consul_k8s_tag.clone(),
        };
        tasks.push(tokio::spawn(tk.run(stop_rx.clone())));
    }

    let mut lost = false;
    match &elector {
        Some(el) => tokio::select! {
            _ = el.hold() => { lost = true; tracing::error!("lease lost: stopping") }
            _ = status::stopped(&mut shutdown) => {}
        },
        None => {
            let _ = status::stopped(&mut shutdown).await;
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for w in watchers {
        w.abort();
    }
    if let (Some(el), false) = (&elector, lost) {
        if let Err(e) = el.release().await {
            tracing::warn!(error = %e, "releasing the lease failed");
        }
    }
    if lost {
        // A replica that lost its lease exits non-zero so that its supervisor restarts it
        // as a standby.
        std::process::exit(1);
    }
    http.abort();
    Ok(())
}

fn hostname_or_default() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "k8s-sync".into())
}
