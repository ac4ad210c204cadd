//! The durable Raft log: a sled database with two trees.
//!
//! - `logs`: one entry per key, the key the big-endian log index (so sled's order is the log's
//!   order), the value the postcard-encoded [`Entry`].
//! - `meta`: the vote, the last committed log ID and the last purged log ID.
//!
//! Appends are written to sled's in-memory buffers at once (so readers see them) and made
//! durable by a dedicated flusher thread: it takes every append callback queued since its last
//! flush, calls one `fsync` for all of them and only then reports them persisted. Under load
//! many appends share one flush (group commit); an acknowledged entry always survives a crash.

use super::types::{Entry, LogId, LogState, StorageError, StorageIOError, TypeConfig, Vote};
use crate::ServerError;
use openraft::storage::{LogFlushed, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, OptionalSend};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The sled handles shared by the store, its readers and the flusher thread.
#[derive(Debug)]
pub(crate) struct Shared {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
}

// openraft's error type is large; these helpers return it because the trait methods do.
#[allow(clippy::result_large_err)]
impl Shared {
    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        let Some(bytes) = self.meta.get(key).map_err(|e| AnyError::new(&e))? else {
            return Ok(None);
        };
        postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| AnyError::new(&e))
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), AnyError> {
        let bytes = postcard::to_stdvec(value).map_err(|e| AnyError::new(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| AnyError::new(&e))?;
        Ok(())
    }

    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, StorageError> {
        let map = |b: Bound<&u64>| match b {
            Bound::Included(i) => Bound::Included(i.to_be_bytes()),
            Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = (map(range.start_bound()), map(range.end_bound()));
        if range_is_empty(&range) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for kv in self.logs.range(range) {
            let (key, value) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry: Entry = postcard::from_bytes(&value).map_err(|e| {
                StorageIOError::read_log_at_index(key_index(&key).unwrap_or_default(), &e)
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some((key, value)) = self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(&e))?
        else {
            return Ok(None);
        };
        let entry: Entry = postcard::from_bytes(&value).map_err(|e| {
            StorageIOError::read_log_at_index(key_index(&key).unwrap_or_default(), &e)
        })?;
        Ok(Some(entry.log_id))
    }

    /// Removes every key of `logs` in `range`, in one batch.
    fn remove_range(
        &self,
        range: (Bound<[u8; 8]>, Bound<[u8; 8]>),
    ) -> Result<usize, StorageIOError> {
        if range_is_empty(&range) {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in self.logs.range(range).keys() {
            let key = key.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(key);
            n += 1;
        }
        if n > 0 {
            self.logs
                .apply_batch(batch)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(n)
    }
}

/// Whether a byte-key range is empty (sled panics on an inverted range).
fn range_is_empty(range: &(Bound<[u8; 8]>, Bound<[u8; 8]>)) -> bool {
    match range {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

fn key_index(key: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

/// The sled-backed [`RaftLogStorage`].
pub struct SledLogStore {
    shared: Arc<Shared>,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    last_purged: Option<LogId>,
}

impl Debug for SledLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLogStore")
            .field("last_purged", &self.last_purged)
            .finish_non_exhaustive()
    }
}

/// A reader of the sled log, used by replication tasks.
#[derive(Debug, Clone)]
pub struct SledLogReader {
    shared: Arc<Shared>,
}

impl SledLogStore {
    /// Opens (creating if needed) the log database in directory `path`. Another process (or a
    /// not yet dropped store of this one) holding the database makes this retry for up to
    /// five seconds before failing.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let db = loop {
            let res = sled::Config::new()
                .path(path)
                .cache_capacity(64 * 1024 * 1024)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(Some(1000))
                .open();
            match res {
                Ok(db) => break db,
                // sled reports its file lock being held as an IO error.
                Err(sled::Error::Io(e)) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "raft log database busy, retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(ServerError::Storage(format!(
                        "opening raft log {}: {e}",
                        path.display()
                    )))
                }
            }
        };
        Self::from_db(db)
    }

    /// A log store over an open sled database.
    pub fn from_db(db: sled::Db) -> Result<Self, ServerError> {
        let st = |e: sled::Error| ServerError::Storage(format!("raft log: {e}"));
        let logs = db.open_tree("logs").map_err(st)?;
        let meta = db.open_tree("meta").map_err(st)?;
        let shared = Arc::new(Shared { db, logs, meta });
        let last_purged = shared
            .get_meta::<LogId>(KEY_LAST_PURGED)
            .map_err(|e| ServerError::Storage(format!("raft log: {e}")))?;
        let (tx, rx) = mpsc::channel();
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flusher(for_thread, rx))
            .map_err(|e| ServerError::Storage(format!("starting raft log flusher: {e}")))?;
        Ok(SledLogStore {
            shared,
            flusher: tx,
            last_purged,
        })
    }

    /// A handle that dies once the database is closed (every store, reader and the flusher
    /// are gone), so that it can be reopened.
    pub(crate) fn liveness(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    async fn flush(&self) -> Result<(), AnyError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.db.flush())
            .await
            .map_err(|e| AnyError::new(&e))?
            .map_err(|e| AnyError::new(&e))?;
        Ok(())
    }
}

/// Flushes sled for every batch of queued append callbacks, then reports them persisted.
fn flusher(shared: Arc<Shared>, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let span = tracing::trace_span!("raft_log_flush", callbacks = batch.len());
        let res = span.in_scope(|| shared.db.flush());
        for cb in batch.drain(..) {
            let r = match &res {
                Ok(_) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            cb.log_io_completed(r);
        }
    }
    if let Err(e) = shared.db.flush() {
        tracing::error!(error = %e, "final raft log flush failed");
    }
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared.read_range(range)
    }
}

impl RaftLogReader<TypeConfig> for SledLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared.read_range(range)
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = SledLogReader;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        let last = self.shared.last_log_id()?;
        let last_purged = self.last_purged;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        SledLogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.shared
            .put_meta(KEY_VOTE, vote)
            .map_err(StorageIOError::write_vote)?;
        self.flush().await.map_err(StorageIOError::write_vote)?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self
            .shared
            .get_meta(KEY_VOTE)
            .map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: a committed ID lost in a crash only means fewer entries are
        // re-applied at startup; the rest are applied once the leader commits again.
        self.shared
            .put_meta(KEY_COMMITTED, &committed)
            .map_err(StorageIOError::write)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .shared
            .get_meta::<Option<LogId>>(KEY_COMMITTED)
            .map_err(StorageIOError::read)?
            .flatten())
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
            n += 1;
        }
        tracing::trace!(entries = n, "append");
        self.shared
            .logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        if let Err(mpsc::SendError(callback)) = self.flusher.send(callback) {
            // The flusher thread is gone (it only stops when this store is dropped, or if it
            // panicked): flush here instead.
            let res = self.flush().await;
            callback.log_io_completed(res.map_err(|e| std::io::Error::other(e.to_string())));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.shared.remove_range((
            Bound::Included(log_id.index.to_be_bytes()),
            Bound::Unbounded,
        ))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if self.last_purged.is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        // Record the purge point first: sled persists writes in order, so entries are never
        // gone without the purge point that explains their absence.
        self.shared
            .put_meta(KEY_LAST_PURGED, &log_id)
            .map_err(StorageIOError::write_logs)?;
        self.last_purged = Some(log_id);
        self.shared.remove_range((
            Bound::Unbounded,
            Bound::Included(log_id.index.to_be_bytes()),
        ))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ranges_are_detected() {
        let b = |i: u64| i.to_be_bytes();
        assert!(range_is_empty(&(
            Bound::Included(b(5)),
            Bound::Excluded(b(5))
        )));
        assert!(range_is_empty(&(
            Bound::Included(b(6)),
            Bound::Included(b(5))
        )));
        assert!(!range_is_empty(&(
            Bound::Included(b(5)),
            Bound::Included(b(5))
        )));
        assert!(!range_is_empty(&(Bound::Unbounded, Bound::Excluded(b(0)))));
    }
}
