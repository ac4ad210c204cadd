//! `-purge-k8s-services-from-node`: removes from the catalog everything this sync registered
//! on its node (the instances carrying its tag, with their checks), then the node itself when
//! nothing else is left on it, and returns. The chart runs it as a pre-delete hook so that
//! `helm uninstall` leaves no synced services behind. Like consul-k8s it needs the registry
//! only, never the Kubernetes API; unlike consul-k8s it leaves alone entries on the same node
//! that carry another cluster's tag.

use std::time::Duration;

use crate::error::Result;
use crate::registry::{batches, Op, Registry};

/// How many times a failing registry call is tried before giving up.
const TRIES: u32 = 5;

async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < TRIES => {
                tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deregisters every instance on the registry client's node that carries `tag`, and the node
/// when it is left empty; returns how many instances were deregistered.
pub async fn purge_node(registry: &Registry, tag: &str) -> Result<usize> {
    let state = retry("reading the node", || registry.node_state(tag)).await?;
    let ids: Vec<String> = state.services.keys().cloned().collect();
    let n = ids.len();
    for batch in batches(ids.into_iter().map(Op::Delete).collect()) {
        retry("deregistering", || registry.txn(&batch)).await?;
    }
    // Anything left on the node (another cluster's tag, or registered by hand) keeps it.
    match retry("reading the node", || registry.node_service_count()).await? {
        None => {}
        Some(0) => retry("deregistering the node", || registry.deregister_node()).await?,
        Some(left) => {
            tracing::info!(left, "other services remain on the node: the node is kept")
        }
    }
    Ok(n)
}
