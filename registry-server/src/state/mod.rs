//! The in-memory state store: tables of nodes, services, checks and KV entries, their
//! Raft indexes, and the watch channels that wake blocking queries.
//!
//! Reads take the read lock for the length of one query and so see one consistent state.
//! Writes happen only through [`Store::write`], called by `fsm/` with the Raft index of the
//! entry being applied; watchers are notified after the write lock is released.
//!
//! Besides the replicated [`Db`], the store keeps Consul's KV lock-delay map: when a session
//! is invalidated its keys may not be re-acquired for the session's lock-delay. Lock-delay is
//! wall-clock based and so not replicated: each server records it when it applies the
//! invalidation, and only the leader consults it, before proposing an acquire.

mod addresses;
mod db;
mod shared;
mod snapshot;
mod watch;

pub use addresses::{parse_ip, AddrOwner, AddrRef, AddrRefs, AddressIndex};
pub use db::{AclTables, Db, InstanceRefs, NodeChecks, NodeServices, QueryTables, Table};
pub use shared::Shared;
pub use watch::{WatchKey, WatchSet};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch as tokio_watch;

/// A lock-delay to record once a write commits: the key, how long, and the wall-clock time
/// carried by the command (`None`: the applying server's clock).
///
/// Each server times the delay on its own monotonic clock from the moment it applies the
/// entry, as Consul does, so servers whose wall clocks disagree still never shorten it. The
/// command's wall-clock time only tells a replay (a restart re-applying an old destroy) from
/// a live apply: an entry more than [`REPLAY_SLACK`] older than its delay arms nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDelay {
    /// The key that may not be acquired meanwhile.
    pub key: String,
    /// How long.
    pub delay: Duration,
    /// Start, milliseconds since the Unix epoch; `None` means "now".
    pub from_unix_ms: Option<u64>,
}

/// How far the proposer's and this server's wall clocks may disagree before an applied
/// destroy is taken for a replay of an old one (see [`LockDelay`]).
pub const REPLAY_SLACK: Duration = Duration::from_secs(10);

/// A position in a [`WriteTxn`] to roll its side effects back to.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    touched: usize,
    lock_delays: usize,
}

/// Milliseconds since the Unix epoch by this server's clock.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A write in progress: the state to change, the index it is applied at, and what it touched.
#[derive(Debug)]
pub struct WriteTxn<'a> {
    /// The tables.
    pub db: &'a mut Db,
    /// The Raft index of the entry being applied.
    pub index: u64,
    touched: Vec<WatchKey>,
    lock_delays: Vec<LockDelay>,
}

impl WriteTxn<'_> {
    /// Records that `key` changed, so its watchers wake after commit, and bumps the
    /// index of the table it belongs to.
    pub fn touch(&mut self, key: WatchKey) {
        if let WatchKey::Table(t) = &key {
            self.db.table_index.bump(*t, self.index);
        }
        self.touched.push(key);
    }

    /// Records a lock-delay on `key`, effective once the write commits.
    pub fn lock_delay(&mut self, delay: LockDelay) {
        self.lock_delays.push(delay);
    }

    /// The current position, for [`WriteTxn::rollback`].
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            touched: self.touched.len(),
            lock_delays: self.lock_delays.len(),
        }
    }

    /// Forgets the watch notifications and lock-delays recorded since `cp` (the caller
    /// restores the tables themselves).
    pub fn rollback(&mut self, cp: Checkpoint) {
        self.touched.truncate(cp.touched);
        self.lock_delays.truncate(cp.lock_delays);
    }
}

/// The state store shared by the state machine (writer) and every reader.
#[derive(Debug)]
pub struct Store {
    db: RwLock<Db>,
    watches: watch::Watches,
    /// Bumped when the whole state is replaced (restore); every blocking query re-runs.
    abandon: tokio_watch::Sender<u64>,
    /// KV lock-delays: key -> end on this server's monotonic clock. Not replicated.
    lock_delays: Mutex<HashMap<String, Instant>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store {
            db: RwLock::new(Db::default()),
            watches: watch::Watches::default(),
            abandon: tokio_watch::Sender::new(0),
            lock_delays: Mutex::new(HashMap::new()),
        }
    }

    /// A consistent read view; hold it only for the length of one query.
    pub fn read(&self) -> RwLockReadGuard<'_, Db> {
        self.db.read()
    }

    /// An immutable copy of the whole state as it is now, to keep as long as needed (a
    /// snapshot being built). Cheap: the tables are shared copy-on-write, so this takes the
    /// read lock only to bump their reference counts; a later write copies a table it
    /// changes while the view still holds it (its keys and pointers, never the records).
    pub fn view(&self) -> Db {
        self.db.read().clone()
    }

    /// Applies a change at Raft index `index` and wakes the watchers of what it touched.
    pub fn write<R>(&self, index: u64, f: impl FnOnce(&mut WriteTxn<'_>) -> R) -> R {
        let (out, touched, delays) = {
            let mut db = self.db.write();
            let mut txn = WriteTxn {
                db: &mut db,
                index,
                touched: Vec::new(),
                lock_delays: Vec::new(),
            };
            let out = f(&mut txn);
            let touched = std::mem::take(&mut txn.touched);
            let delays = std::mem::take(&mut txn.lock_delays);
            if index > db.index {
                db.index = index;
            }
            (out, touched, delays)
        };
        if !delays.is_empty() {
            self.record_lock_delays(delays);
        }
        self.watches.notify(&touched, index);
        out
    }

    fn record_lock_delays(&self, delays: Vec<LockDelay>) {
        let now = Instant::now();
        let wall_ms = unix_ms_now();
        let mut map = self.lock_delays.lock();
        // Drop the expired ones first so the map stays as small as the delays in force.
        map.retain(|_, end| *end > now);
        for d in delays {
            let stale_after = d.delay.saturating_add(REPLAY_SLACK);
            let stale_ms = u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX);
            if d.delay.is_zero()
                || d.from_unix_ms
                    .is_some_and(|from| wall_ms > from.saturating_add(stale_ms))
            {
                continue;
            }
            let end = now + d.delay;
            let slot = map.entry(d.key).or_insert(end);
            *slot = (*slot).max(end);
        }
    }

    /// How much of the lock-delay on `key` is left, if any.
    pub fn kv_lock_delay(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock_delays
            .lock()
            .get(key)
            .filter(|end| **end > now)
            .map(|end| *end - now)
    }

    /// How many times the whole state was replaced; answers cached under an index are only
    /// valid for the generation they were built in.
    pub fn generation(&self) -> u64 {
        *self.abandon.borrow()
    }

    /// A channel that changes whenever the whole state is replaced (snapshot install or
    /// restore).
    pub fn generation_changes(&self) -> tokio_watch::Receiver<u64> {
        self.abandon.subscribe()
    }

    /// Subscribes to changes of `keys` plus the abandon signal. Subscribe *before* reading,
    /// so that a change between the read and the wait is not missed.
    pub fn watch(&self, keys: &[WatchKey]) -> WatchSet {
        self.watches.subscribe(keys, self.abandon.subscribe())
    }

    /// The index of the last applied entry.
    pub fn last_index(&self) -> u64 {
        self.db.read().index
    }

    /// Replaces the whole state (snapshot install or restore) and wakes every watcher.
    pub fn replace(&self, db: Db) {
        let index = db.index;
        {
            // The generation moves while the write lock is held, so a reader holding the
            // read lock sees the state and its generation together (answer caches key on
            // both).
            let mut guard = self.db.write();
            let old = std::mem::replace(&mut *guard, db);
            self.abandon.send_modify(|v| *v += 1);
            drop(guard);
            // Freeing a large state takes a while: not under the lock.
            drop(old);
        }
        self.watches.notify_all(index);
    }

    /// Number of watch channels currently registered (for metrics and tests).
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }
}
