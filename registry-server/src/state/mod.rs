//! The in-memory state store: tables of nodes, services, checks and KV entries, their
//! Raft indexes, and the watch channels that wake blocking queries.
//!
//! Reads take the read lock for the length of one query and so see one consistent state.
//! Writes happen only through [`Store::write`], called by `fsm/` with the Raft index of the
//! entry being applied; watchers are notified after the write lock is released.

mod db;
mod snapshot;
mod watch;

pub use db::{Db, Table};
pub use watch::{WatchKey, WatchSet};

use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::watch as tokio_watch;

/// A write in progress: the state to change, the index it is applied at, and what it touched.
#[derive(Debug)]
pub struct WriteTxn<'a> {
    /// The tables.
    pub db: &'a mut Db,
    /// The Raft index of the entry being applied.
    pub index: u64,
    touched: Vec<WatchKey>,
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
}

/// The state store shared by the state machine (writer) and every reader.
#[derive(Debug)]
pub struct Store {
    db: RwLock<Db>,
    watches: watch::Watches,
    /// Bumped when the whole state is replaced (restore); every blocking query re-runs.
    abandon: tokio_watch::Sender<u64>,
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
        }
    }

    /// A consistent read view; hold it only for the length of one query.
    pub fn read(&self) -> RwLockReadGuard<'_, Db> {
        self.db.read()
    }

    /// Applies a change at Raft index `index` and wakes the watchers of what it touched.
    pub fn write<R>(&self, index: u64, f: impl FnOnce(&mut WriteTxn<'_>) -> R) -> R {
        let (out, touched) = {
            let mut db = self.db.write();
            let mut txn = WriteTxn {
                db: &mut db,
                index,
                touched: Vec::new(),
            };
            let out = f(&mut txn);
            let touched = std::mem::take(&mut txn.touched);
            if index > db.index {
                db.index = index;
            }
            (out, touched)
        };
        self.watches.notify(&touched, index);
        out
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
        *self.db.write() = db;
        self.abandon.send_modify(|v| *v += 1);
        self.watches.notify_all(index);
    }

    /// Number of watch channels currently registered (for metrics and tests).
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }
}
