//! The Kubernetes → catalog loop: computes the desired instances from the caches, diffs them
//! against the catalog's copy of k8s-sync's node (read in full at start, after an error and on
//! every `-sync-period`, otherwise mirrored locally), and applies the difference in `/v1/txn`
//! batches. Runs only after every watched kind finished its initial list, so nothing valid is
//! deregistered at startup; a registry error keeps the changes pending and retries with backoff.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use crate::error::Error;
use crate::plan::{apply_to, orphans, plan_service};
use crate::registry::{batches, NodeState, Op, Registry, MAX_TXN_OPS};
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

/// Translates one Service (`None`: it no longer exists) with its EndpointSlices. A Service
/// whose annotations became invalid keeps what it translated to last (`current`).
fn translate_one(
    key: &Key,
    svc: Option<&Service>,
    mut slices: Vec<Arc<EndpointSlice>>,
    caches: &Caches,
    cfg: &SyncConfig,
    current: &HashMap<Key, BTreeMap<String, Instance>>,
) -> BTreeMap<String, Instance> {
    let Some(svc) = svc else {
        return BTreeMap::new();
    };
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    match translate(svc, &slices, &caches.nodes, cfg) {
        Translation::Instances(v) => v.into_iter().map(|i| (i.id.clone(), i)).collect(),
        Translation::NotSynced => BTreeMap::new(),
        Translation::Keep => current.get(key).cloned().unwrap_or_default(),
    }
}

/// Most Services a step of a full pass visits before the loop looks at new events again.
const STEP_SERVICES: usize = 256;
/// Most transaction operations a step of a full pass writes before the loop looks at new
/// events again (a few transactions, written concurrently).
const STEP_OPS: usize = MAX_TXN_OPS * TXNS_IN_FLIGHT;
/// Transactions written concurrently; the registry commits concurrent writes together.
const TXNS_IN_FLIGHT: usize = 4;

/// The loop's memory between passes.
#[derive(Default)]
struct Memory {
    /// What each Service translated to at its last successful write; also its last good
    /// translation, kept while its annotations are invalid.
    current: HashMap<Key, BTreeMap<String, Instance>>,
    /// The catalog's copy of our node, kept in step with our writes; `None` forces a re-read
    /// and a full pass.
    mirror: Option<NodeState>,
    /// The full pass in progress, if any.
    sweep: Option<Sweep>,
}

/// A full pass, run in steps between the per-Service passes: every Service is re-translated
/// and diffed against the catalog, then whatever the catalog holds under our tag that no
/// Service produced is deregistered.
struct Sweep {
    /// Services still to visit.
    queue: Vec<Key>,
    started: Instant,
    written: usize,
}

impl ToConsul {
    /// Writes `ops` in transactions, [`TXNS_IN_FLIGHT`] at a time, and applies the ones that
    /// succeeded to `state`. A rejected transaction is retried one write at a time, so one
    /// bad instance does not hold back the others.
    async fn apply(&self, ops: Vec<Op>, state: &mut NodeState) -> Result<usize, Error> {
        let mut written = 0;
        let all = batches(ops);
        for group in all.chunks(TXNS_IN_FLIGHT) {
            let results =
                futures::future::join_all(group.iter().map(|b| self.registry.txn(b))).await;
            let mut failed = None;
            for (batch, result) in group.iter().zip(results) {
                match result {
                    Ok(()) => {
                        metrics::counter!("k8s_sync_registry_txns_total").increment(1);
                        written += batch.len();
                        apply_to(state, batch);
                    }
                    Err(Error::TxnRejected(msg)) => {
                        tracing::warn!(error = %msg, "transaction rejected; retrying its writes one by one");
                        written += self.one_by_one(batch, state).await?;
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(written)
    }

    async fn one_by_one(&self, batch: &[Op], state: &mut NodeState) -> Result<usize, Error> {
        let mut ok = Vec::new();
        for op in batch {
            match self.registry.txn(std::slice::from_ref(op)).await {
                Ok(()) => ok.push(op.clone()),
                Err(Error::TxnRejected(msg)) => {
                    metrics::counter!("k8s_sync_errors_total", "source" => "registry", "kind" => "rejected").increment(1);
                    tracing::error!(op = ?op, error = %msg, "registry rejected a write");
                }
                Err(e) => return Err(e),
            }
        }
        apply_to(state, &ok);
        Ok(ok.len())
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
        let mut step_due = false;
        loop {
            let now = Instant::now();
            if now >= next_resync {
                // The safety net: re-read the catalog and diff everything. The read runs
                // beside the loop, so per-Service changes keep flowing while it lasts (at
                // 50,000 instances it takes a while); writes made meanwhile may be missing
                // from it, which costs only idempotent rewrites in the full pass.
                // A full pass in progress (the first sync of a large cluster) is left to end.
                if resync_read.is_none() && mem.mirror.is_some() && mem.sweep.is_none() {
                    let reg = self.registry.clone();
                    let tag = self.cfg.tag.clone();
                    resync_read = Some(tokio::spawn(async move { reg.node_state(&tag).await }));
                }
                next_resync = now + self.resync;
            }
            let news = dirty.take();
            pending.all |= news.all;
            pending.services.extend(news.services);
            let waiting = retry_at.is_some_and(|t| now < t);
            let has_work = pending.all || !pending.services.is_empty() || mem.sweep.is_some();
            if has_work && !waiting {
                let started = Instant::now();
                // Per-Service changes first; a full pass advances one step at a time between
                // them (and one after each per-Service pass, so a steady stream of changes
                // cannot starve it): a change waits at most for one step, never a whole pass.
                let (kind, result) = if pending.all || mem.mirror.is_none() {
                    pending.all = false;
                    ("start", self.start_sweep(&caches, &mut mem).await)
                } else if !pending.services.is_empty() && (mem.sweep.is_none() || !step_due) {
                    step_due = true;
                    let keys = std::mem::take(&mut pending.services);
                    (
                        "incremental",
                        self.service_pass(&caches, &mut mem, keys).await,
                    )
                } else {
                    step_due = false;
                    ("full", self.sweep_step(&caches, &mut mem).await)
                };
                match result {
                    Ok(written) => {
                        let quiet = pending.services.is_empty() && !pending.all;
                        if kind == "incremental" || (mem.sweep.is_none() && quiet) {
                            if let Some(since) = dirty_since.take() {
                                metrics::histogram!("k8s_sync_lag_seconds", "direction" => "to_consul")
                                    .record(since.elapsed().as_secs_f64());
                            }
                        }
                        if kind == "incremental" {
                            metrics::histogram!("k8s_sync_pass_seconds", "direction" => "to_consul", "kind" => kind)
                                .record(started.elapsed().as_secs_f64());
                            if written > 0 {
                                tracing::debug!(
                                    written,
                                    elapsed_ms = started.elapsed().as_millis() as u64,
                                    "catalog updated"
                                );
                            }
                        }
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
                        mem.sweep = None;
                        pending.all = true;
                        dirty_since.get_or_insert(Instant::now());
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
                // Marks that arrived during the pass are handled right away; a full pass in
                // progress lets other tasks run between its steps.
                tokio::task::yield_now().await;
                continue;
            }
            let wake = match retry_at {
                Some(t) if has_work => t.min(next_resync),
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
                        Ok(Ok(state)) => {
                            mem.mirror = Some(state);
                            pending.all = true;
                            dirty_since.get_or_insert(Instant::now());
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "periodic read of the catalog failed"),
                        Err(e) => tracing::warn!(error = %e, "periodic read of the catalog failed"),
                    }
                }
                _ = dirty.notified() => {
                    dirty_since.get_or_insert(Instant::now());
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

    /// Starts a full pass over every Service (and every Service written before, so that a
    /// deleted one is cleaned up), reading the catalog's copy of our node first if needed.
    async fn start_sweep(&self, caches: &Caches, mem: &mut Memory) -> Result<usize, Error> {
        if mem.mirror.is_none() {
            mem.mirror = Some(self.registry.node_state(&self.cfg.tag).await?);
        }
        let mut keys: HashSet<Key> = mem.current.keys().cloned().collect();
        for svc in caches.services.state() {
            keys.insert((
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            ));
        }
        let mut queue: Vec<Key> = keys.into_iter().collect();
        queue.sort_unstable_by(|a, b| b.cmp(a));
        mem.sweep = Some(Sweep {
            queue,
            started: Instant::now(),
            written: 0,
        });
        Ok(0)
    }

    /// One step of the full pass: the next Services of its queue, until a few transactions'
    /// worth of writes; once the queue is empty, the deregistration of whatever the catalog
    /// holds under our tag that no Service produced.
    async fn sweep_step(&self, caches: &Caches, mem: &mut Memory) -> Result<usize, Error> {
        let Some(sweep) = mem.sweep.as_mut() else {
            return Ok(0);
        };
        if sweep.queue.is_empty() {
            let written = self.finish_sweep(mem).await?;
            return Ok(written);
        }
        let Some(state) = mem.mirror.as_ref() else {
            return Ok(0);
        };
        let mut keys = Vec::new();
        let mut ops = Vec::new();
        let mut weight = 0;
        let next: HashSet<Key> = sweep
            .queue
            .iter()
            .rev()
            .take(STEP_SERVICES)
            .cloned()
            .collect();
        let mut slices = slices_of(caches, Some(&next));
        while let Some(key) = sweep.queue.pop() {
            let instances = self.translate_key(caches, &key, &mut slices, &mem.current);
            let step = self.plan_key(&key, &instances, state, &mem.current);
            weight += step.iter().map(Op::weight).sum::<usize>();
            ops.extend(step);
            keys.push((key, instances));
            if weight >= STEP_OPS || keys.len() >= STEP_SERVICES {
                break;
            }
        }
        let written = self.commit(ops, keys, mem).await?;
        if let Some(s) = mem.sweep.as_mut() {
            s.written += written;
        }
        Ok(written)
    }

    /// Ends a full pass: deletes the instances under our tag no Service produced, writes back
    /// any wanted instance the catalog lacks, registers the node when it is missing, and marks
    /// the first sync done.
    async fn finish_sweep(&self, mem: &mut Memory) -> Result<usize, Error> {
        let Some(state) = mem.mirror.as_mut() else {
            return Ok(0);
        };
        let wanted: HashSet<&str> = mem
            .current
            .values()
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        let mut ops = Vec::new();
        if !state.node_ok && !wanted.is_empty() {
            ops.push(Op::Node);
        }
        // An instance ID two Services share (same catalog name and address) that one of them
        // deleted during the pass is written again for the other.
        for inst in mem.current.values().flat_map(BTreeMap::values) {
            if !state.services.contains_key(&inst.id) {
                ops.push(Op::Set(Box::new(inst.clone())));
            }
        }
        ops.extend(orphans(state, &wanted, &self.cfg.tag));
        drop(wanted);
        let written = self.write(ops, state).await?;
        if let Some(sweep) = mem.sweep.take() {
            let total = sweep.written + written;
            metrics::histogram!("k8s_sync_pass_seconds", "direction" => "to_consul", "kind" => "full")
                .record(sweep.started.elapsed().as_secs_f64());
            if total > 0 {
                tracing::info!(
                    written = total,
                    elapsed_ms = sweep.started.elapsed().as_millis() as u64,
                    "full pass updated the catalog"
                );
            }
        }
        let n: usize = mem.current.values().map(BTreeMap::len).sum();
        metrics::gauge!("k8s_sync_synced_instances", "direction" => "to_consul").set(n as f64);
        self.status.synced_once.store(true, Ordering::Relaxed);
        Ok(written)
    }

    /// Re-translates only `keys` and writes only their changed instances.
    async fn service_pass(
        &self,
        caches: &Caches,
        mem: &mut Memory,
        keys: HashSet<Key>,
    ) -> Result<usize, Error> {
        let Some(state) = mem.mirror.as_ref() else {
            return Ok(0);
        };
        let mut slices = slices_of(caches, Some(&keys));
        let mut ops = Vec::new();
        let mut fresh = Vec::with_capacity(keys.len());
        for key in keys {
            let instances = self.translate_key(caches, &key, &mut slices, &mem.current);
            ops.extend(self.plan_key(&key, &instances, state, &mem.current));
            fresh.push((key, instances));
        }
        let written = self.commit(ops, fresh, mem).await?;
        if mem.sweep.is_none() {
            let n: usize = mem.current.values().map(BTreeMap::len).sum();
            metrics::gauge!("k8s_sync_synced_instances", "direction" => "to_consul").set(n as f64);
        }
        Ok(written)
    }

    fn translate_key(
        &self,
        caches: &Caches,
        key: &Key,
        slices: &mut HashMap<Key, Vec<Arc<EndpointSlice>>>,
        current: &HashMap<Key, BTreeMap<String, Instance>>,
    ) -> BTreeMap<String, Instance> {
        let svc = caches.services.get(&ObjectRef::new(&key.1).within(&key.0));
        let s = slices.remove(key).unwrap_or_default();
        translate_one(key, svc.as_deref(), s, caches, &self.cfg, current)
    }

    fn plan_key(
        &self,
        key: &Key,
        instances: &BTreeMap<String, Instance>,
        state: &NodeState,
        current: &HashMap<Key, BTreeMap<String, Instance>>,
    ) -> Vec<Op> {
        let before = current.get(key).into_iter().flat_map(|m| m.keys());
        plan_service(
            instances.values(),
            before.map(String::as_str),
            state,
            &self.cfg.tag,
        )
    }

    /// Writes `ops`, then records each Service's new translation.
    async fn commit(
        &self,
        ops: Vec<Op>,
        fresh: Vec<(Key, BTreeMap<String, Instance>)>,
        mem: &mut Memory,
    ) -> Result<usize, Error> {
        let Some(state) = mem.mirror.as_mut() else {
            return Ok(0);
        };
        let written = self.write(ops, state).await?;
        for (key, instances) in fresh {
            if instances.is_empty() {
                mem.current.remove(&key);
            } else {
                mem.current.insert(key, instances);
            }
        }
        Ok(written)
    }

    async fn write(&self, mut ops: Vec<Op>, state: &mut NodeState) -> Result<usize, Error> {
        // Every Service planned on a node not yet registered asks for the node: once is enough.
        let mut node = false;
        ops.retain(|op| !matches!(op, Op::Node) || !std::mem::replace(&mut node, true));
        if ops.is_empty() {
            return Ok(0);
        }
        metrics::counter!("k8s_sync_registry_writes_total").increment(ops.len() as u64);
        self.apply(ops, state).await
    }
}

/// The EndpointSlices in the cache by the Service they belong to (only `keys`' when given).
fn slices_of(
    caches: &Caches,
    keys: Option<&HashSet<Key>>,
) -> HashMap<Key, Vec<Arc<EndpointSlice>>> {
    let mut out: HashMap<Key, Vec<Arc<EndpointSlice>>> = HashMap::new();
    for s in caches.slices.state() {
        if let Some(key) = slice_key(&s).filter(|k| keys.is_none_or(|keys| keys.contains(k))) {
            out.entry(key).or_default().push(s);
        }
    }
    out
}
