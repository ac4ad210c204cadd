//! The DNS interface (Consul's port 8600): service discovery over UDP and TCP from the local
//! state store, never waiting on Raft.
//!
//! - [`names`]: which domain a question is in and what it asks for (service, tag, RFC 2782,
//!   node, addr, reverse).
//! - [`answer`]: answers built from the catalog (health filtering, SRV targets and their
//!   addresses, TTLs, SOA/NS), pre-encoded for reuse.
//! - [`engine`]: the per-worker cache of answers, kept current by the store's indexes.
//! - [`render`]: one reply from a cached answer: shuffled, cut to the transport's size.
//! - [`wire`]: reading queries (hickory-proto's decoder) and writing records.
//! - [`recursor`]: forwarding names outside the domain.
//! - [`server`]: the UDP threads, the TCP listener and the invalidation task.
//!
//! ```no_run
//! # async fn f(store: std::sync::Arc<registry_server::state::Store>) -> Result<(), registry_server::ServerError> {
//! use registry_server::dns::{serve, DnsConfig, NodeInfo};
//! let node = NodeInfo { name: "n1".into(), datacenter: "dc1".into(), address: "127.0.0.1".parse().unwrap() };
//! let dns = serve(DnsConfig::default(), store, node).await?;
//! println!("DNS on {}", dns.local_addr());
//! dns.shutdown().await;
//! # Ok(()) }
//! ```

pub mod answer;
pub mod config;
pub mod engine;
pub mod names;
pub mod recursor;
pub mod render;
pub mod server;
pub mod wire;

pub use config::{DnsConfig, NodeInfo, RecursorStrategy, SoaConfig};
pub use server::{DnsHandle, DnsStats};

use crate::state::Store;
use crate::ServerError;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Starts the DNS server on `cfg.bind` (UDP and TCP) answering from `store`. Must be called
/// inside a Tokio runtime; the UDP workers are threads of their own.
pub async fn serve(
    cfg: DnsConfig,
    store: Arc<Store>,
    node: NodeInfo,
) -> Result<DnsHandle, ServerError> {
    serve_with_acl(cfg, store, node, None).await
}

/// Like [`serve`], answering from the catalog as `acl_view` shows it (ACLs enabled).
pub async fn serve_with_acl(
    cfg: DnsConfig,
    store: Arc<Store>,
    node: NodeInfo,
    acl_view: Option<crate::acl::DnsView>,
) -> Result<DnsHandle, ServerError> {
    server::start(engine_state(cfg, store, node, acl_view)).await
}

/// Starts the DNS server for an engine state made by [`engine_state`] (so that its
/// [`engine::Shared::remote`] can be set first).
pub async fn serve_state(shared: Arc<engine::Shared>) -> Result<DnsHandle, ServerError> {
    server::start(shared).await
}

/// The state DNS answers are built from, without a listener (answers for client agents).
pub fn engine_state(
    cfg: DnsConfig,
    store: Arc<Store>,
    node: NodeInfo,
    acl_view: Option<crate::acl::DnsView>,
) -> Arc<engine::Shared> {
    Arc::new(engine::Shared {
        acl_view,
        settings: answer::Settings::new(cfg, &node),
        store,
        gen: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        recursing: std::sync::atomic::AtomicUsize::new(0),
        remote: std::sync::OnceLock::new(),
    })
}
