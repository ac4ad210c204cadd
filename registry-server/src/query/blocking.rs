//! Consistency modes and the blocking-query loop.
//!
//! A query subscribes to the watch channels of exactly what it reads *before* it reads,
//! runs against one consistent view, and if its index is not past the client's `?index`,
//! sleeps until one of those channels fires or the wait (plus up to wait/16 jitter) ends.
//! Nothing polls: a write wakes only the queries whose result it may have changed.

use super::options::{Consistency, QueryOptions};
use crate::state::{Db, Store, WatchKey};
use crate::ServerError;
use futures::future::BoxFuture;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// What the query layer needs to know about Raft to honour consistency modes.
pub trait RaftStatus: Send + Sync + 'static {
    /// Whether this server is the leader.
    fn is_leader(&self) -> bool;
    /// Whether any leader is known.
    fn known_leader(&self) -> bool;
    /// Milliseconds since the leader was last heard from (0 on the leader).
    fn last_contact_ms(&self) -> u64;
    /// Raft address of the leader, if known (`/v1/status/leader`).
    fn leader_addr(&self) -> Option<String>;
    /// Raft addresses of the voters (`/v1/status/peers`).
    fn peers(&self) -> Vec<String>;
    /// Confirms leadership with a quorum (for `?consistent`).
    fn ensure_linearizable(&self) -> BoxFuture<'_, Result<(), ServerError>>;
    /// The current Raft term (0 when unknown).
    fn term(&self) -> u64 {
        0
    }
    /// Whether this server may answer a default-consistency read from its own store right
    /// now without asking anyone (it leads, with a valid lease).
    fn serves_reads(&self) -> bool {
        self.is_leader()
    }
    /// Orders a read after the leader's applied writes (`consistent`: after a quorum confirms
    /// the leader). A follower asks the leader and waits to catch up; without a leader this
    /// fails with "No cluster leader" after a bounded wait.
    fn read_barrier(&self, consistent: bool) -> BoxFuture<'_, Result<(), ServerError>> {
        if consistent {
            self.ensure_linearizable()
        } else if self.known_leader() {
            Box::pin(async { Ok(()) })
        } else {
            Box::pin(async { Err(ServerError::NoLeader) })
        }
    }
}

/// Metadata returned with every read, turned into `X-Consul-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryMeta {
    /// Index of the result, never 0.
    pub index: u64,
    /// Whether a leader is known.
    pub known_leader: bool,
    /// Milliseconds since last contact with the leader.
    pub last_contact_ms: u64,
    /// The consistency actually used.
    pub consistency: Consistency,
}

/// Runs reads against the store with Consul's consistency and blocking rules.
#[derive(Clone)]
pub struct Reader {
    store: Arc<Store>,
    raft: Arc<dyn RaftStatus>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader over `store`, asking `raft` about leadership.
    pub fn new(store: Arc<Store>, raft: Arc<dyn RaftStatus>) -> Self {
        Reader { store, raft }
    }

    /// The store (for non-blocking reads such as DNS answers).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Checks the consistency mode before a read: default reads are served as the leader
    /// would serve them (a follower first catches up with the leader), `?consistent` ones
    /// after a quorum confirms the leader, `?stale` ones from the local store unless it is
    /// further behind than `max_stale`.
    async fn gate(&self, opts: &QueryOptions) -> Result<(), ServerError> {
        match opts.consistency {
            Consistency::Stale => {
                if let Some(max) = opts.max_stale {
                    let lag = Duration::from_millis(self.raft.last_contact_ms());
                    if lag > max && !self.raft.serves_reads() {
                        return self.raft.read_barrier(false).await;
                    }
                }
                Ok(())
            }
            Consistency::Default => {
                if self.raft.serves_reads() {
                    Ok(())
                } else {
                    self.raft.read_barrier(false).await
                }
            }
            Consistency::Consistent => self.raft.read_barrier(true).await,
        }
    }

    fn meta(&self, index: u64, opts: &QueryOptions) -> QueryMeta {
        QueryMeta {
            index: index.max(1),
            known_leader: self.raft.known_leader(),
            last_contact_ms: self.raft.last_contact_ms(),
            consistency: opts.consistency,
        }
    }

    /// Runs `f` once, honouring the consistency mode but never blocking.
    pub async fn once<T>(
        &self,
        opts: &QueryOptions,
        f: impl FnOnce(&Db) -> (T, u64),
    ) -> Result<(T, QueryMeta), ServerError> {
        if crate::metrics::enabled() {
            crate::metrics::RPC_QUERY.get().increment(1);
        }
        self.gate(opts).await?;
        let (out, index) = f(&self.store.read());
        Ok((out, self.meta(index, opts)))
    }

    /// Runs `f` as a blocking query watching `keys`: returns at once when `?index` is 0 or
    /// behind the result, otherwise when the result's index moves past it or the wait ends.
    pub async fn blocking<T>(
        &self,
        opts: &QueryOptions,
        keys: &[WatchKey],
        mut f: impl FnMut(&Db) -> (T, u64),
    ) -> Result<(T, QueryMeta), ServerError> {
        if opts.index == 0 {
            return self.once(opts, f).await;
        }
        if crate::metrics::enabled() {
            crate::metrics::RPC_QUERY.get().increment(1);
        }
        let jitter = opts.wait.as_nanos() as u64 / 16;
        let jitter = if jitter > 0 {
            rand::thread_rng().gen_range(0..=jitter)
        } else {
            0
        };
        let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_nanos(jitter);
        metrics::gauge!("consul_rpc_queries_blocking").increment(1.0);
        let _guard = BlockingGauge;
        // A restore replaces the state, and its indexes may be below the client's: answer
        // as soon as the state is replaced, whatever the index.
        let generation = self.store.generation();
        // Once caught up with the leader, later wakes only see newer state: only
        // `?consistent` asks the quorum again.
        self.gate(opts).await?;
        let mut first = true;
        loop {
            if !first && opts.consistency == Consistency::Consistent {
                self.gate(opts).await?;
            }
            first = false;
            let mut watch = self.store.watch(keys);
            let (out, index) = f(&self.store.read());
            let index = index.max(1);
            if index > opts.index || self.store.generation() != generation {
                return Ok((out, self.meta(index, opts)));
            }
            tokio::select! {
                _ = watch.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok((out, self.meta(index, opts)));
                }
            }
        }
    }
}

/// Decrements the blocking-queries gauge when a query ends, however it ends.
struct BlockingGauge;

impl Drop for BlockingGauge {
    fn drop(&mut self) {
        metrics::gauge!("consul_rpc_queries_blocking").decrement(1.0);
    }
}
