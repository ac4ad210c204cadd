//! The Kubernetes → catalog loop: computes the desired instances from the caches, diffs them
//! against the catalog's copy of k8s-sync's node (read in full at start, after an error and on
//! every `-sync-period`, otherwise mirrored locally), and applies the difference in `/v1/txn`
//! batches. Runs only after every watched kind finished its initial list, so nothing valid is
//! deregistered at startup; a registry error keeps the changes pending and retries with backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use crate::error::Error;
use crate::plan::{apply_to, plan, plan_service};
use crate::registry::{batches, NodeState, Op, Registry};
use crate::source::{slice_key, Caches, Changes, Dirty, Key};
use crate::status::Status;
use crate::translate::{translate, Instance, SyncConfig, Translation};

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

/// What each Service translates to (instances by ID, per Service), from the caches. `keep`
/// holds each Service's last good translation, used when its annotations become invalid.
pub fn desired_by_service(
    caches: &Caches,
    cfg: &SyncConfig,
    keep: &mut HashMap<Key, Vec<Instance>>,
) -> HashMap<Key, BTreeMap<String, Instance>> {
    let mut by_svc: HashMap<Key, Vec<Arc<EndpointSlice>>> = HashMap::new();
    for s in caches.slices.state() {
        if let Some(key) = slice_key(&s) {
            by_svc.entry(key).or_default().push(s);
        }
    }
    let mut out = HashMap::new();
    for svc in caches.services.state() {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let slices = by_svc.get_mut(&key).map(std::mem::take).unwrap_or_default();
        let instances = translate_one(&key, Some(&svc), slices, caches, cfg, keep);
        out.insert(key, instances);
    }
    keep.retain(|k, _| out.contains_key(k));
    out
}

/// Translates one Service (`None`: it no longer exists) with its EndpointSlices.
fn translate_one(
    key: &Key,
    svc: Option<&Service>,
    mut slices: Vec<Arc<EndpointSlice>>,
    caches: &Caches,
    cfg: &SyncConfig,
    keep: &mut HashMap<Key, Vec<Instance>>,
) -> BTreeMap<String, Instance> {
    let Some(svc) = svc else {
        keep.remove(key);
        return BTreeMap::new();
    };
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let instances = match translate(svc, &slices, &caches.nodes, cfg) {
        Translation::Instances(v) => {
            keep.insert(key.clone(), v.clone());
            v
        }
        Translation::NotSynced => {
            keep.remove(key);
            Vec::new()
        }
        Translation::Keep => keep.get(key).cloned().unwrap_or_default(),
    };
    instances.into_iter().map(|i| (i.id.clone(), i)).collect()
}

/// What every synced Service translates to, keyed by instance ID.
pub fn desired(
    caches: &Caches,
    cfg: &SyncConfig,
    keep: &mut HashMap<Key, Vec<Instance>>,
) -> BTreeMap<String, Instance> {
    desired_by_service(caches, cfg, keep)
        .into_values()
        .flatten()
        .collect()
}

/// The loop's memory between passes.
#[derive(Default)]
struct Memory {
    /// Each Service's last good translation.
    keep: HashMap<Key, Vec<Instance>>,
    /// What each Service translated to at the last successful pass.
    current: HashMap<Key, BTreeMap<String, Instance>>,
    /// The catalog's copy of our node, kept in step with our writes; `None` forces a re-read
    /// and a full pass.
    mirror: Option<NodeState>,
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
    pub async fn run(self, caches: Caches, dirty: Arc<Dirty>, mut shutdown: watch::Receiver<bool>) {
        tokio::select! {
            ok = caches.wait_until_ready() => if !ok { return },
            _ = crate::status::stopped(&mut shutdown) => return,
        }
        tracing::info!("initial lists of services, endpointslices and nodes complete");
        let mut mem = Memory::default();
        // The first pass is a full one (it reads the catalog's copy of our node).
        let mut pending = Changes {
            all: true,
            ..Changes::default()
        };
        let mut dirty_since = Some(Instant::now());
        let mut next_resync = Instant::now() + self.resync;
        let mut resync_read: Option<tokio::task::JoinHandle<Result<NodeState, Error>>> = None;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now >= next_resync {
                // The safety net: re-read the catalog and diff everything. The read runs
                // beside the loop, so per-Service changes keep flowing while it lasts (at
                // 50,000 instances it takes seconds); writes made meanwhile may be missing
                // from it, which costs only idempotent rewrites in the full diff.
                if resync_read.is_none() && mem.mirror.is_some() {
                    let reg = self.registry.clone();
                    let tag = self.cfg.tag.clone();
                    resync_read = Some(tokio::spawn(async move { reg.node_state(&tag).await }));
                }
                next_resync = now + self.resync;
            }
            let news = dirty.take();
            pending.all |= news.all;
            pending.services.extend(news.services);
            let has_work = pending.all || !pending.services.is_empty();
            if has_work && retry_at.is_none_or(|t| now >= t) {
                let started = Instant::now();
                let work = std::mem::take(&mut pending);
                let full = work.all || mem.mirror.is_none();
                let result = if full {
                    self.full_pass(&caches, &mut mem).await
                } else {
                    self.service_pass(&caches, &mut mem, work.services).await
                };
                match result {
                    Ok(written) => {
                        if let Some(since) = dirty_since.take() {
                            metrics::histogram!("k8s_sync_lag_seconds", "direction" => "to_consul")
                                .record(since.elapsed().as_secs_f64());
                        }
                        let kind = if full { "full" } else { "incremental" };
                        metrics::histogram!("k8s_sync_pass_seconds", "direction" => "to_consul", "kind" => kind)
                            .record(started.elapsed().as_secs_f64());
                        if written > 0 {
                            tracing::info!(
                                written,
                                kind,
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
                        // Nothing is lost: the retry re-reads the catalog and diffs everything.
                        mem.mirror = None;
                        pending.all = true;
                        dirty_since.get_or_insert(Instant::now());
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
                // Marks that arrived during the pass are handled right away.
                continue;
            }
            let wake = match retry_at {
                Some(t) if !pending.services.is_empty() || pending.all => t.min(next_resync),
                _ => next_resync,
            };
            tokio::select! {
                read = async {
                    match resync_read.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if resync_read.is_some() => {
                    resync_read = None;
                    match read {
                        Ok(Ok(state)) => mem.mirror = Some(state),
                        Ok(Err(e)) => tracing::warn!(error = %e, "periodic read of the catalog failed"),
                        Err(e) => tracing::warn!(error = %e, "periodic read of the catalog failed"),
                    }
                    pending.all = true;
                    dirty_since.get_or_insert(Instant::now());
                }
                _ = dirty.notified() => {
                    dirty_since.get_or_insert(Instant::now());
                    // Let a burst of events land before diffing.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = crate::status::stopped(&mut shutdown) => break,
            }
        }
        if let Some(r) = resync_read {
            r.abort();
        }
        tracing::info!("to-consul loop stopped");
    }

    /// Re-translates every Service and diffs the whole node (reading it first if needed).
    async fn full_pass(&self, caches: &Caches, mem: &mut Memory) -> Result<usize, Error> {
        let by_svc = desired_by_service(caches, &self.cfg, &mut mem.keep);
        let want: BTreeMap<String, Instance> = by_svc
            .values()
            .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        metrics::gauge!("k8s_sync_synced_instances", "direction" => "to_consul")
            .set(want.len() as f64);
        if mem.mirror.is_none() {
            mem.mirror = Some(self.registry.node_state(&self.cfg.tag).await?);
        }
        let Some(state) = mem.mirror.as_mut() else {
            return Ok(0);
        };
        let ops = plan(&want, state, &self.cfg.tag, true);
        let written = self.write(ops, state).await?;
        mem.current = by_svc;
        Ok(written)
    }

    /// Re-translates only `keys` and writes only their changed instances.
    async fn service_pass(
        &self,
        caches: &Caches,
        mem: &mut Memory,
        keys: std::collections::HashSet<Key>,
    ) -> Result<usize, Error> {
        let mut slices: HashMap<Key, Vec<Arc<EndpointSlice>>> = HashMap::new();
        for s in caches.slices.state() {
            if let Some(key) = slice_key(&s).filter(|k| keys.contains(k)) {
                slices.entry(key).or_default().push(s);
            }
        }
        let mut fresh = Vec::with_capacity(keys.len());
        for key in keys {
            let svc = caches.services.get(&ObjectRef::new(&key.1).within(&key.0));
            let s = slices.remove(&key).unwrap_or_default();
            let instances =
                translate_one(&key, svc.as_deref(), s, caches, &self.cfg, &mut mem.keep);
            fresh.push((key, instances));
        }
        let Some(state) = mem.mirror.as_mut() else {
            return Ok(0);
        };
        let empty = BTreeMap::new();
        let mut ops = Vec::new();
        for (key, instances) in &fresh {
            let before = mem.current.get(key).unwrap_or(&empty);
            ops.extend(plan_service(
                instances.values(),
                before.keys().map(String::as_str),
                state,
                &self.cfg.tag,
            ));
        }
        let written = self.write(ops, state).await?;
        for (key, instances) in fresh {
            if instances.is_empty() {
                mem.current.remove(&key);
            } else {
                mem.current.insert(key, instances);
            }
        }
        let n: usize = mem.current.values().map(BTreeMap::len).sum();
        metrics::gauge!("k8s_sync_synced_instances", "direction" => "to_consul").set(n as f64);
        Ok(written)
    }

    async fn write(&self, ops: Vec<Op>, state: &mut NodeState) -> Result<usize, Error> {
        if ops.is_empty() {
            return Ok(0);
        }
        metrics::counter!("k8s_sync_registry_writes_total").increment(ops.len() as u64);
        self.apply(ops, state).await
    }
}
