//! The Kubernetes → catalog loop: computes the desired instances from the caches, diffs them
//! against the catalog's copy of k8s-sync's node (read in full at start, after an error and on
//! every `-sync-period`, otherwise mirrored locally), and applies the difference in `/v1/txn`
//! batches. Runs only after every watched kind finished its initial list, so nothing valid is
//! deregistered at startup; a registry error keeps the changes pending and retries with backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::{watch, Notify};

use crate::error::Error;
use crate::plan::{apply_to, plan};
use crate::registry::{batches, NodeState, Op, Registry};
use crate::source::Caches;
use crate::status::Status;
use crate::translate::{translate, Instance, SyncConfig, Translation, SERVICE_NAME_LABEL};

/// Settings of the loop.
#[derive(Clone)]
pub struct ToConsul {
    /// The registry client (its node is `-consul-node-name`).
    pub registry: Registry,
    /// Translation flags.
    pub cfg: SyncConfig,
    /// Full re-read of the catalog and full diff at least this often.
    pub resync: Duration,
    /// Shared health and readiness.
    pub status: Arc<Status>,
}

type Key = (String, String);

/// What every synced Service translates to, keyed by instance ID. `keep` holds each Service's
/// last good translation, used when its annotations become invalid.
pub fn desired(
    caches: &Caches,
    cfg: &SyncConfig,
    keep: &mut HashMap<Key, Vec<Instance>>,
) -> BTreeMap<String, Instance> {
    let mut by_svc: HashMap<Key, Vec<Arc<EndpointSlice>>> = HashMap::new();
    for s in caches.slices.state() {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        if let Some(name) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        {
            by_svc.entry((ns, name.clone())).or_default().push(s);
        }
    }
    for v in by_svc.values_mut() {
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let mut out = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for svc in caches.services.state() {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let slices = by_svc.get(&key).map(Vec::as_slice).unwrap_or_default();
        let instances = match translate(&svc, slices, &caches.nodes, cfg) {
            Translation::Instances(v) => {
                keep.insert(key.clone(), v.clone());
                v
            }
            Translation::NotSynced => {
                keep.remove(&key);
                Vec::new()
            }
            Translation::Keep => keep.get(&key).cloned().unwrap_or_default(),
        };
        seen.insert(key);
        for i in instances {
            out.insert(i.id.clone(), i);
        }
    }
    keep.retain(|k, _| seen.contains(k));
    out
}

impl ToConsul {
    async fn apply(&self, ops: Vec<Op>, state: &mut NodeState) -> Result<usize, Error> {
        let mut written = 0;
        for batch in batches(ops) {
            match self.registry.txn(&batch).await {
                Ok(()) => {}
                Err(Error::TxnRejected(msg)) => {
                    // One bad instance must not hold back the others: apply one by one.
                    tracing::warn!(error = %msg, "transaction rejected; retrying its writes one by one");
                    let mut ok = Vec::new();
                    for op in batch {
                        match self.registry.txn(std::slice::from_ref(&op)).await {
                            Ok(()) => ok.push(op),
                            Err(Error::TxnRejected(msg)) => {
                                metrics::counter!("k8s_sync_errors_total", "source" => "registry", "kind" => "rejected").increment(1);
                                tracing::error!(op = ?op, error = %msg, "registry rejected a write");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    written += ok.len();
                    apply_to(state, &ok);
                    continue;
                }
                Err(e) => return Err(e),
            }
            metrics::counter!("k8s_sync_registry_txns_total").increment(1);
            written += batch.len();
            apply_to(state, &batch);
        }
        Ok(written)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        self,
        caches: Caches,
        changed: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tokio::select! {
            ok = caches.wait_until_ready() => if !ok { return },
            _ = crate::status::stopped(&mut shutdown) => return,
        }
        tracing::info!("initial lists of services, endpointslices and nodes complete");
        let tag = self.cfg.tag.clone();
        let mut keep = HashMap::new();
        let mut mirror: Option<NodeState> = None;
        let mut dirty_since = Some(Instant::now());
        let mut next_resync = Instant::now() + self.resync;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now >= next_resync {
                mirror = None;
                dirty_since.get_or_insert(now);
                next_resync = now + self.resync;
            }
            if dirty_since.is_some() && retry_at.is_none_or(|t| now >= t) {
                let started = Instant::now();
                match self.pass(&caches, &tag, &mut keep, &mut mirror).await {
                    Ok(written) => {
                        if let Some(since) = dirty_since.take() {
                            metrics::histogram!("k8s_sync_lag_seconds", "direction" => "to_consul")
                                .record(since.elapsed().as_secs_f64());
                        }
                        metrics::histogram!("k8s_sync_pass_seconds", "direction" => "to_consul")
                            .record(started.elapsed().as_secs_f64());
                        if written > 0 {
                            tracing::info!(
                                written,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "catalog updated"
                            );
                        }
                        self.status.synced_once.store(true, Ordering::Relaxed);
                        self.status.registry_ok.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(200);
                        retry_at = None;
                    }
                    Err(e) => {
                        metrics::counter!("k8s_sync_errors_total", "source" => "registry", "kind" => "write").increment(1);
                        self.status.registry_ok.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "sync to the registry failed");
                        mirror = None;
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            let wake = match retry_at {
                Some(t) if dirty_since.is_some() => t.min(next_resync),
                _ => next_resync,
            };
            tokio::select! {
                _ = changed.notified() => {
                    dirty_since.get_or_insert(Instant::now());
                    // Let a burst of events land before diffing.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = crate::status::stopped(&mut shutdown) => break,
            }
        }
        tracing::info!("to-consul loop stopped");
    }

    async fn pass(
        &self,
        caches: &Caches,
        tag: &str,
        keep: &mut HashMap<Key, Vec<Instance>>,
        mirror: &mut Option<NodeState>,
    ) -> Result<usize, Error> {
        let want = desired(caches, &self.cfg, keep);
        metrics::gauge!("k8s_sync_synced_instances", "direction" => "to_consul")
            .set(want.len() as f64);
        if mirror.is_none() {
            *mirror = Some(self.registry.node_state(tag).await?);
        }
        let Some(state) = mirror.as_mut() else {
            return Ok(0);
        };
        let ops = plan(&want, state, tag, true);
        if ops.is_empty() {
            return Ok(0);
        }
        let n = ops.len();
        metrics::counter!("k8s_sync_registry_writes_total").increment(n as u64);
        self.apply(ops, state).await
    }
}
