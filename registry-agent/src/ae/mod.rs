//! Anti-entropy (Consul's `agent/ae` and the sync half of `agent/local`): keeps the catalog's
//! view of this node equal to the agent's local state. The agent is the source of truth.
//!
//! - A *partial sync* ([`AntiEntropy::sync_changes`]) writes whatever the local state marks
//!   out of sync. It runs right after every local change (the local state's trigger, and
//!   directly from the HTTP handlers so that a registration is in the catalog when the
//!   request returns).
//! - A *full sync* ([`AntiEntropy::sync_full`]) first compares the local state with the
//!   catalog (this node's records in the store), so drift from direct catalog writes is
//!   reverted, then writes. It runs at startup (registering the node and its `serfHealth`
//!   check), then every `interval` (60s) plus a random stagger scaled by the cluster size
//!   (the LAN gossip members once the agent has a member list, as Consul's `aeScale`;
//!   otherwise the catalog's node count), and is retried with backoff (up to `retry_interval`, 15s) after a failure.
//!
//! Every read and write goes through the agent's [`CatalogDelegate`] (the local server, or
//! the servers over RPC on a client agent); several pending writes go as one
//! [`Command::Batch`]. Syncs are serialized so that writes reach Raft in order.

pub mod delegate;
mod diff;

pub use delegate::{CatalogDelegate, LocalServer, RemoteServers};
pub(crate) use diff::{compare, mark, plan};
pub use diff::{Op, Plan, Remote};

use crate::checks::random_stagger;
use crate::local::LocalState;
use registry_proto::{Command, CommandResponse};
use registry_server::ServerError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Most commands written in one Raft entry.
const MAX_BATCH: usize = 64;
/// First retry delay after a failed sync; doubles up to `retry_interval`.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Anti-entropy timing.
#[derive(Debug, Clone, Copy)]
pub struct AeOptions {
    /// Base period of full syncs (Consul's 1m).
    pub interval: Duration,
    /// Longest wait before retrying a failed sync (Consul's 15s).
    pub retry_interval: Duration,
}

impl Default for AeOptions {
    fn default() -> Self {
        AeOptions {
            interval: Duration::from_secs(60),
            retry_interval: Duration::from_secs(15),
        }
    }
}

/// Consul's `scaleFactor`: 1 up to 128 nodes, then one more per doubling.
pub fn scale_factor(nodes: usize) -> u32 {
    const THRESHOLD: f64 = 128.0;
    let n = nodes as f64;
    if n <= THRESHOLD {
        return 1;
    }
    ((n.log2() - THRESHOLD.log2()).ceil() as u32) + 1
}

/// What one sync wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Commands applied.
    pub applied: usize,
    /// Commands the state machine rejected (they stay out of sync).
    pub rejected: usize,
}

/// The number of LAN members (every status), as the gossip layer knows it.
pub type ClusterSize = Arc<dyn Fn() -> usize + Send + Sync>;

/// Pushes the local state to the catalog.
pub struct AntiEntropy {
    local: Arc<LocalState>,
    catalog: Arc<dyn CatalogDelegate>,
    opts: AeOptions,
    lock: tokio::sync::Mutex<()>,
    cluster_size: std::sync::OnceLock<ClusterSize>,
}

impl std::fmt::Debug for AntiEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AntiEntropy")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl AntiEntropy {
    /// Anti-entropy for `local` against the catalog of `catalog`.
    pub fn new(local: Arc<LocalState>, catalog: Arc<dyn CatalogDelegate>, opts: AeOptions) -> Self {
        AntiEntropy {
            local,
            catalog,
            opts,
            lock: tokio::sync::Mutex::new(()),
            cluster_size: std::sync::OnceLock::new(),
        }
    }

    /// Scales the full-sync interval by `size` (the LAN members) from now on rather than
    /// by the catalog's node count. Later calls are ignored.
    pub fn set_cluster_size(&self, size: ClusterSize) {
        let _ = self.cluster_size.set(size);
    }

    /// The cluster size the full-sync interval scales with.
    pub fn cluster_size(&self) -> usize {
        self.cluster_size
            .get()
            .map(|f| f())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| self.catalog.node_count())
    }

    /// Writes everything the local state marks out of sync.
    pub async fn sync_changes(&self) -> Result<SyncReport, ServerError> {
        let _serial = self.lock.lock().await;
        self.write_pending().await
    }

    /// Compares the local state with the catalog, then writes the differences.
    pub async fn sync_full(&self) -> Result<SyncReport, ServerError> {
        let _serial = self.lock.lock().await;
        let name = self.local.node().name;
        let remote = self.catalog.node_records(&name).await?;
        {
            let defer = !self.local.options().check_update_interval.is_zero();
            let mut inner = self.local.lock();
            compare(&mut inner, &remote, defer);
        }
        self.write_pending().await
    }

    async fn write_pending(&self) -> Result<SyncReport, ServerError> {
        let plan = {
            let mut inner = self.local.lock();
            plan(&mut inner)
        };
        if plan.is_empty() {
            return Ok(SyncReport::default());
        }
        let mut ok = Vec::with_capacity(plan.ops.len());
        let mut report = SyncReport::default();
        let mut failure = None;
        for chunk in plan.commands.chunks(MAX_BATCH) {
            match self.write(chunk).await {
                Ok(results) => ok.extend(results),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Ops after a failed chunk count as not applied.
        ok.resize(plan.ops.len(), false);
        for (op, applied) in plan.ops.iter().zip(&ok) {
            if *applied {
                report.applied += 1;
                tracing::debug!(op = ?op, "synced");
            }
        }
        {
            let mut inner = self.local.lock();
            mark(&mut inner, &plan, &ok);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        report.rejected = ok.iter().filter(|a| !**a).count();
        Ok(report)
    }

    /// Applies `cmds` (as one batch when several); returns per-command success.
    async fn write(&self, cmds: &[Command]) -> Result<Vec<bool>, ServerError> {
        let node = self.local.node().name;
        if let [single] = cmds {
            return match self.catalog.apply(&node, single.clone()).await {
                Ok(_) => Ok(vec![true]),
                Err(ServerError::Internal(msg)) => {
                    tracing::warn!(error = %msg, "catalog rejected an anti-entropy write");
                    Ok(vec![false])
                }
                Err(e) => Err(e),
            };
        }
        match self
            .catalog
            .apply(&node, Command::Batch(cmds.to_vec()))
            .await?
        {
            CommandResponse::Batch(results) => {
                let mut out = Vec::with_capacity(cmds.len());
                for (i, _) in cmds.iter().enumerate() {
                    match results.get(i) {
                        Some(CommandResponse::Rejected(msg)) => {
                            tracing::warn!(error = %msg, "catalog rejected an anti-entropy write");
                            out.push(false);
                        }
                        Some(_) => out.push(true),
                        None => out.push(false),
                    }
                }
                Ok(out)
            }
            _ => Ok(vec![true; cmds.len()]),
        }
    }

    fn next_full_sync(&self) -> Duration {
        let nodes = self.cluster_size();
        let scaled = self.opts.interval * scale_factor(nodes);
        self.opts.interval + random_stagger(scaled)
    }

    /// Runs until `shutdown` turns true: a full sync at once (retried until it succeeds),
    /// then periodically, and a partial sync whenever the local state changes.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!("anti-entropy started");
        let mut next_full = Instant::now();
        let mut backoff = FIRST_RETRY;
        let mut first = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next_full) => {
                    match self.sync_full().await {
                        Ok(report) => {
                            if first {
                                tracing::info!(applied = report.applied, "node registered in the catalog");
                                first = false;
                            } else {
                                tracing::debug!(applied = report.applied, rejected = report.rejected, "full sync done");
                            }
                            backoff = FIRST_RETRY;
                            next_full = Instant::now() + self.next_full_sync();
                        }
                        Err(e) => {
                            log_failure("full sync", &e, backoff, self.opts.retry_interval);
                            next_full = Instant::now() + backoff;
                            backoff = (backoff * 2).min(self.opts.retry_interval);
                        }
                    }
                }
                _ = self.local.trigger().notified() => {
                    match self.sync_changes().await {
                        Ok(report) => {
                            tracing::debug!(applied = report.applied, rejected = report.rejected, "partial sync done");
                        }
                        Err(e) => {
                            log_failure("partial sync", &e, backoff, self.opts.retry_interval);
                            next_full = next_full.min(Instant::now() + backoff);
                        }
                    }
                }
            }
        }
        tracing::info!("anti-entropy stopped");
    }
}

fn log_failure(what: &str, e: &ServerError, backoff: Duration, max: Duration) {
    // Before a leader is elected every write fails; only a lasting failure is worth a warning.
    if matches!(e, ServerError::NoLeader) && backoff < max {
        tracing::debug!(error = %e, retry_in = ?backoff, "{what} failed");
    } else {
        tracing::warn!(error = %e, retry_in = ?backoff, "{what} failed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A catalog that holds `0` nodes and answers nothing.
    struct Catalog(usize);

    impl CatalogDelegate for Catalog {
        fn node_records<'a>(
            &'a self,
            _node: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Remote, ServerError>> {
            Box::pin(async { Err(ServerError::NoLeader) })
        }

        fn apply<'a>(
            &'a self,
            _node: &'a str,
            _cmd: Command,
        ) -> futures::future::BoxFuture<'a, Result<CommandResponse, ServerError>> {
            Box::pin(async { Err(ServerError::NoLeader) })
        }

        fn node_count(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn full_syncs_scale_with_the_gossip_members_once_known() {
        let local = LocalState::new(
            crate::local::NodeInfo::default(),
            crate::local::LocalOptions::default(),
        );
        let ae = AntiEntropy::new(local, Arc::new(Catalog(3)), AeOptions::default());
        assert_eq!(
            ae.cluster_size(),
            3,
            "the catalog's count until gossip is known"
        );
        let members = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let m = members.clone();
        ae.set_cluster_size(Arc::new(move || {
            m.load(std::sync::atomic::Ordering::Relaxed)
        }));
        assert_eq!(ae.cluster_size(), 3, "an empty member list is not a size");
        members.store(1000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ae.cluster_size(), 1000);
        // 1,000 members: scale factor 4, so the next full sync is 60 s plus up to 240 s.
        for _ in 0..50 {
            let next = ae.next_full_sync();
            assert!(next >= Duration::from_secs(60) && next < Duration::from_secs(300));
        }
        assert!((0..200).any(|_| ae.next_full_sync() > Duration::from_secs(120)));
    }

    #[test]
    fn scale() {
        assert_eq!(scale_factor(1), 1);
        assert_eq!(scale_factor(128), 1);
        assert_eq!(scale_factor(129), 2);
        assert_eq!(scale_factor(256), 2);
        assert_eq!(scale_factor(257), 3);
        assert_eq!(scale_factor(8192), 7);
    }
}
