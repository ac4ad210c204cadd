//! The Raft state machine: applies committed entries to the [`Store`] through
//! [`fsm::apply`], and builds, persists and installs snapshots of the whole [`Db`].
//!
//! A log entry carries a batch of commands (group commit). Each command is applied at its own
//! *registry index*: the store's index plus one. The store's index thus counts applied
//! commands and is not the Raft log index; it is still a pure function of the log, and is
//! saved in snapshots with the rest of the [`Db`]. A restore ([`Command::Restore`]) moves the
//! store's index to the larger of the saved state's and its own; commands after it count from
//! there, on every replica alike.
//!
//! A snapshot is built without holding up applies: [`get_snapshot_builder`] takes a
//! copy-on-write view of the [`Db`] ([`Store::view`], a few reference counts), and the
//! builder encodes and saves it on a blocking thread while the state machine goes on.
//!
//! [`get_snapshot_builder`]: RaftStateMachine::get_snapshot_builder
//!
//! The state itself lives in memory only. What makes a restart work is the snapshot: with a
//! data directory every snapshot (built here or received from the leader) is written to
//! `snapshots/current.snap` (written to a temporary file, fsynced, renamed) before it is
//! reported; on startup it is loaded into the store and openraft re-applies the committed log
//! entries after it.
//!
//! A snapshot file is `REGRAFT1`, the length of the metadata (u64, little-endian), the
//! postcard-encoded [`SnapshotMeta`] and then the [`Db::encode`] bytes.

use super::types::{
    Entry, LogId, ProposalResponse, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, TypeConfig,
};
use crate::fsm;
use crate::state::{Db, Store};
use crate::ServerError;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{AnyError, EntryPayload, OptionalSend};
use registry_proto::Command;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SNAP_MAGIC: &[u8; 8] = b"REGRAFT1";
const CURRENT: &str = "current.snap";
const TMP_SUFFIX: &str = ".tmp";
/// How much of a snapshot file is written between syncs.
const SYNC_CHUNK: usize = 8 << 20;

/// A snapshot read back: its metadata and data.
type Stored = (SnapshotMeta, Vec<u8>);

/// The latest snapshot: only its metadata when it is on disk, its bytes too in memory mode.
#[derive(Debug, Default)]
struct Current {
    meta: Option<SnapshotMeta>,
    data: Option<Arc<Vec<u8>>>,
}

/// Where the latest snapshot is kept. Shared by the state machine and its snapshot builders,
/// which finish in tasks of their own.
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    dir: Option<PathBuf>,
    /// Held only in blocking code, never across an await.
    current: Mutex<Current>,
    tmp_seq: AtomicU64,
}

impl SnapshotStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens `dir` (creating it), removes leftover temporary files and reads the current
    /// snapshot, if any.
    fn open(dir: Option<PathBuf>) -> Result<(Self, Option<Stored>), ServerError> {
        let store = SnapshotStore {
            dir,
            current: Mutex::new(Current::default()),
            tmp_seq: AtomicU64::new(0),
        };
        let Some(dir) = &store.dir else {
            return Ok((store, None));
        };
        let io = |e: std::io::Error| ServerError::Storage(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        for ent in std::fs::read_dir(dir).map_err(io)? {
            let ent = ent.map_err(io)?;
            if ent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(ent.path());
            }
        }
        let loaded = read_snapshot_file(&dir.join(CURRENT))?;
        if let Some((meta, _)) = &loaded {
            store.lock().meta = Some(meta.clone());
        }
        Ok((store, loaded))
    }

    fn current_meta(&self) -> Option<SnapshotMeta> {
        self.lock().meta.clone()
    }

    /// Makes `meta`/`data` the current snapshot unless a newer one already is (a builder may
    /// finish after a newer snapshot was installed). Blocking: call from a blocking thread.
    fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<bool, AnyError> {
        let is_newer = |cur: &Current| match &cur.meta {
            Some(m) => meta.last_log_id >= m.last_log_id,
            None => true,
        };
        let Some(dir) = &self.dir else {
            let mut cur = self.lock();
            if !is_newer(&cur) {
                return Ok(false);
            }
            cur.meta = Some(meta.clone());
            cur.data = Some(Arc::new(data.to_vec()));
            return Ok(true);
        };
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("snapshot-{seq}{TMP_SUFFIX}"));
        let meta_bytes = postcard::to_stdvec(meta).map_err(|e| AnyError::new(&e))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(SNAP_MAGIC)?;
            f.write_all(&(meta_bytes.len() as u64).to_le_bytes())?;
            f.write_all(&meta_bytes)?;
            // Synced as it is written: a whole snapshot flushed at the end would keep the
            // disk busy for as long as it takes, and every log append's sync behind it.
            for chunk in data.chunks(SYNC_CHUNK) {
                f.write_all(chunk)?;
                f.sync_data()?;
            }
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(AnyError::new(&e));
        }
        let mut cur = self.lock();
        if !is_newer(&cur) {
            let _ = std::fs::remove_file(&tmp);
            return Ok(false);
        }
        // The snapshot being replaced keeps a second name, so that the rename does not free
        // all its blocks at once: see `release`.
        let replaced = dir.join(format!("replaced-{seq}{TMP_SUFFIX}"));
        let kept = std::fs::hard_link(dir.join(CURRENT), &replaced).is_ok();
        std::fs::rename(&tmp, dir.join(CURRENT)).map_err(|e| AnyError::new(&e))?;
        // Make the rename itself durable.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AnyError::new(&e))?;
        cur.meta = Some(meta.clone());
        drop(cur);
        if kept {
            release(&replaced);
        }
        Ok(true)
    }

    /// The current snapshot with its data. Blocking: call from a blocking thread.
    fn read_current(&self) -> Result<Option<Stored>, ServerError> {
        match &self.dir {
            None => {
                let cur = self.lock();
                Ok(match (&cur.meta, &cur.data) {
                    (Some(m), Some(d)) => Some((m.clone(), d.as_ref().clone())),
                    _ => None,
                })
            }
            // The file is replaced by rename, so this reads one whole snapshot.
            Some(dir) => read_snapshot_file(&dir.join(CURRENT)),
        }
    }
}

/// Deletes a large file a slice at a time, each shrink synced on its own. Freeing a whole
/// snapshot's blocks in one journal commit (and discarding them, on a filesystem mounted with
/// `discard`) holds up every other sync on the disk, the log's included, for as long as it
/// takes. Best effort: a leftover is removed on the next start.
fn release(path: &Path) {
    let shrink = || -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        let mut len = f.metadata()?.len();
        while len > 0 {
            len = len.saturating_sub(SYNC_CHUNK as u64);
            f.set_len(len)?;
            f.sync_all()?;
        }
        Ok(())
    };
    if let Err(e) = shrink() {
        tracing::debug!(path = %path.display(), error = %e, "shrinking a replaced snapshot");
    }
    let _ = std::fs::remove_file(path);
}

/// Reads and parses a snapshot file; `None` when it does not exist.
fn read_snapshot_file(path: &Path) -> Result<Option<Stored>, ServerError> {
    let bad = |m: String| ServerError::Snapshot(format!("{}: {m}", path.display()));
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    if bytes.len() < 16 || &bytes[..8] != SNAP_MAGIC {
        return Err(bad("not a raft snapshot file".into()));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let meta_len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| bad(e.to_string()))?;
    let end = 16usize
        .checked_add(meta_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| bad("truncated snapshot metadata".into()))?;
    let meta: SnapshotMeta =
        postcard::from_bytes(&bytes[16..end]).map_err(|e| bad(e.to_string()))?;
    bytes.drain(..end);
    Ok(Some((meta, bytes)))
}

/// The [`RaftStateMachine`] over the shared [`Store`].
#[derive(Debug)]
pub struct RegistryStateMachine {
    store: Arc<Store>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: Arc<SnapshotStore>,
}

impl RegistryStateMachine {
    /// A state machine keeping snapshots in memory.
    pub fn in_memory(store: Arc<Store>) -> Self {
        RegistryStateMachine {
            store,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshots: Arc::new(SnapshotStore {
                dir: None,
                current: Mutex::new(Current::default()),
                tmp_seq: AtomicU64::new(0),
            }),
        }
    }

    /// A state machine keeping snapshots in `dir` (`None`: in memory). When `dir` holds a
    /// snapshot it is loaded into `store` and becomes the last applied state. Blocking.
    pub fn open(store: Arc<Store>, dir: Option<PathBuf>) -> Result<Self, ServerError> {
        let (snapshots, loaded) = SnapshotStore::open(dir)?;
        let mut sm = RegistryStateMachine {
            store,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshots: Arc::new(snapshots),
        };
        if let Some((meta, data)) = loaded {
            let db = Db::decode(&data)?;
            tracing::info!(
                last_log_id = ?meta.last_log_id,
                bytes = data.len(),
                "restored state from snapshot"
            );
            sm.store.replace(db);
            sm.last_applied = meta.last_log_id;
            sm.last_membership = meta.last_membership;
        }
        Ok(sm)
    }

    /// The state store this machine applies to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Builds one snapshot of the state as it was when the builder was made.
///
/// The builder holds a [`Store::view`]: the tables are shared copy-on-write with the live
/// store, so making it is cheap and the state machine goes on applying while the view is
/// encoded and saved, on a blocking thread, in [`build_snapshot`](Self::build_snapshot).
#[derive(Debug)]
pub struct RegistrySnapshotBuilder {
    /// The state at `last_applied`, taken once.
    view: Option<Db>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: Arc<SnapshotStore>,
    /// Runs on the blocking thread just before the view is encoded (tests hold it there).
    #[cfg(test)]
    before_encode: Option<tests::Hook>,
}

impl RaftSnapshotBuilder<TypeConfig> for RegistrySnapshotBuilder {
    #[tracing::instrument(level = "info", skip_all, fields(last_applied = ?self.last_applied))]
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let view = self
            .view
            .take()
            .ok_or_else(|| ServerError::Snapshot("snapshot already built".into()));
        #[cfg(test)]
        let before_encode = self.before_encode.take();
        let snapshot_id = match &self.last_applied {
            Some(l) => format!(
                "{}-{}-{}",
                l.leader_id,
                l.index,
                uuid::Uuid::new_v4().simple()
            ),
            None => format!("none-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        let snapshots = Arc::clone(&self.snapshots);
        let m = meta.clone();
        let started = std::time::Instant::now();
        let data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, AnyError> {
            #[cfg(test)]
            if let Some(hook) = before_encode {
                (hook.0)();
            }
            let view = view.map_err(|e| AnyError::new(&e))?;
            let encoding = std::time::Instant::now();
            let data = view.encode();
            // Let go of the view before the (slow) write: from here on the live store
            // copies nothing more on account of this snapshot.
            drop(view);
            crate::metrics::time_since("consul_raft_fsm_snapshot", encoding);
            let data = data.map_err(|e| AnyError::new(&e))?;
            let persisting = std::time::Instant::now();
            snapshots.save(&m, &data)?;
            crate::metrics::time_since("consul_raft_snapshot_persist", persisting);
            Ok(data)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        crate::metrics::time_since("consul_raft_snapshot_takeSnapshot", started);
        tracing::info!(
            bytes = data.len(),
            ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for RegistryStateMachine {
    type SnapshotBuilder = RegistrySnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut out = Vec::with_capacity(entries.size_hint().0);
        // Commands get consecutive registry indexes: the store's index counts applied
        // commands, so that every write has an index of its own although many share a log
        // entry. It is a function of the log alone, the same on every replica.
        let mut index = self.store.last_index();
        for entry in entries {
            let log_id = entry.log_id;
            let resp = match entry.payload {
                EntryPayload::Normal(cmds) => cmds
                    .iter()
                    .map(|cmd| {
                        index += 1;
                        let resp = fsm::apply(&self.store, index, cmd);
                        if matches!(cmd, Command::Restore { .. }) {
                            // A restore sets the store's index (to the saved one when that
                            // is ahead): the commands after it count from there.
                            index = self.store.last_index();
                        }
                        resp
                    })
                    .collect(),
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Membership(m) => {
                    self.last_membership = StoredMembership::new(Some(log_id), m);
                    Vec::new()
                }
            };
            self.last_applied = Some(log_id);
            out.push(resp);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // apply() runs on this same task, so the view is exactly the state at last_applied.
        // Taking it only bumps the tables' reference counts; encoding is left to
        // build_snapshot, which openraft runs on a task of its own. Writes meanwhile copy
        // the tables they change (keys and pointers) for as long as the view is held.
        RegistrySnapshotBuilder {
            view: Some(self.store.view()),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshots: Arc::clone(&self.snapshots),
            #[cfg(test)]
            before_encode: None,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    #[tracing::instrument(level = "info", skip_all, fields(last_log_id = ?meta.last_log_id))]
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let snapshots = Arc::clone(&self.snapshots);
        let m = meta.clone();
        let started = std::time::Instant::now();
        let db = tokio::task::spawn_blocking(move || -> Result<Db, AnyError> {
            let db = Db::decode(&data).map_err(|e| AnyError::new(&e))?;
            snapshots.save(&m, &data)?;
            Ok(db)
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), e))?;
        self.store.replace(db);
        crate::metrics::time_since("consul_raft_fsm_restore", started);
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        tracing::info!("installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = self.snapshots.current_meta() else {
            return Ok(None);
        };
        let snapshots = Arc::clone(&self.snapshots);
        let got = tokio::task::spawn_blocking(move || snapshots.read_current())
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(got.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests;
