//! The durable Raft log: append-only segment files for the entries, a small sled database
//! for the metadata.
//!
//! - Entries live in `<path>.wal/<first index>.wal` segment files (`path` is the directory
//!   given to [`SledLogStore::open`], e.g. `raft/log`, which holds the sled database). A
//!   record is `[len u32][checksum u32][log index u64][postcard Entry]`, little-endian; the
//!   checksum covers the index and the entry. A segment is closed (and synced) once it passes
//!   [`SEGMENT_BYTES`]; the next one is named after its first index.
//! - sled's `meta` tree keeps the vote, the last committed log ID and the last purged log ID.
//!
//! An append writes its records with one `pwrite` and makes them durable with `fdatasync` on
//! the segment before openraft hears that they are flushed, so an acknowledged write survives
//! a crash. openraft 0.9 waits for every append to be flushed before it does anything else, so
//! there is one append in flight at a time; a small one (a lone writer) is synced right in
//! the appending task, which saves two thread wake-ups per write, and a larger one (a group
//! commit under load) by the `raft-log-flush` thread, so that the runtime's worker is not
//! blocked for the length of the sync while other requests wait. An append this node makes
//! as leader is first offered to the followers (see `speculate.rs`); when it was sent to any,
//! the flusher syncs it too, so that a runtime worker is free to take the followers' answers
//! meanwhile.
//!
//! On open every segment is scanned; a torn record at the end of the last segment (a crash in
//! the middle of an append that was therefore never acknowledged) is cut off. Entries up to
//! the last purged index are skipped; whole segments below it are deleted by [`purge`].
//! A log left in sled's `logs` tree by an older version is moved into segments on open.
//!
//! [`purge`]: RaftLogStorage::purge

use super::speculate::{self, Speculator};
use super::types::{Entry, LogId, LogState, StorageError, StorageIOError, TypeConfig, Vote};
use crate::ServerError;
use openraft::storage::{LogFlushed, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, OptionalSend};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// A segment is closed once it is larger than this.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Appends up to this size are synced in the appending task; larger ones by the flusher.
const INLINE_SYNC_BYTES: usize = 4 * 1024;
/// Record header: length, checksum, log index.
const HEADER: usize = 16;
/// Largest record accepted when reading a segment back (a corrupt length must not make the
/// reader allocate gigabytes).
const MAX_RECORD: usize = 1 << 30;
const SEGMENT_EXT: &str = "wal";

/// A checksum for torn-write detection (not cryptographic): 8 bytes per step, each mixed
/// by a multiply, with a final avalanche.
fn checksum(data: &[u8]) -> u32 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = K ^ (data.len() as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h ^ (h >> 32)) as u32
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Log index of its first record.
    first: u64,
    path: PathBuf,
    file: File,
}

impl Segment {
    /// Creates a segment, its length set to [`SEGMENT_BYTES`] at once: records then
    /// overwrite a hole instead of growing the file, so the sync after each append does not
    /// also have to commit a new file size (a sync after an append is ~30 % faster here).
    fn create(dir: &Path, first: u64) -> io::Result<Segment> {
        let path = dir.join(format!("{first:020}.{SEGMENT_EXT}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(SEGMENT_BYTES)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Segment { first, path, file })
    }

    /// Zeroes everything from `len` on (dropping a torn or truncated tail) and keeps the
    /// preallocated length.
    fn cut(&self, len: u64) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        self.file.set_len(len)?;
        self.file.set_len(size.max(len))?;
        self.file.sync_all()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where one entry is: its segment is the last one starting at or before its index. A `len`
/// of 0 marks an index with no entry (a gap in the log, see [`Index::bridge`]).
#[derive(Debug, Clone, Copy)]
struct Pos {
    offset: u64,
    len: u32,
}

const NO_ENTRY: Pos = Pos { offset: 0, len: 0 };

/// Gaps up to this many indexes are kept as `NO_ENTRY` positions; a larger one drops the
/// entries before it from the index.
const MAX_GAP: u64 = 1 << 16;

/// The entries on disk: segments by first index and the position of every live entry.
#[derive(Debug, Default)]
struct Index {
    segments: BTreeMap<u64, Arc<Segment>>,
    /// Log index of `positions[0]`.
    first: u64,
    positions: VecDeque<Pos>,
    /// Log ID of the last entry (`None` when there is none).
    last: Option<LogId>,
    /// The records of the last append, which openraft reads back at once to apply them.
    tail: Option<Tail>,
}

/// A copy of the last records written.
#[derive(Debug)]
struct Tail {
    /// First index of their segment.
    segment: u64,
    offset: u64,
    bytes: Vec<u8>,
}

/// Appends up to this size stay in memory as the [`Tail`].
const TAIL_BYTES: usize = 1024 * 1024;

// openraft's error type is large; these helpers return it because the trait methods do.
#[allow(clippy::result_large_err)]
impl Index {
    /// The log index after the last entry, if there is any entry.
    fn next_index(&self) -> Option<u64> {
        self.last.map(|l| l.index + 1)
    }

    fn pos(&self, index: u64) -> Option<Pos> {
        let i = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.positions.get(i).copied().filter(|p| p.len > 0)
    }

    fn segment_of(&self, index: u64) -> Option<&Arc<Segment>> {
        self.segments.range(..=index).next_back().map(|(_, s)| s)
    }

    /// Makes the next position pushed be that of log index `to`. Raft itself only leaves a
    /// gap after purging everything before it (a snapshot was installed), but the storage
    /// contract allows appending past the end.
    fn bridge(&mut self, to: u64) {
        let next = self.first + self.positions.len() as u64;
        if self.positions.is_empty() || to < next || to - next > MAX_GAP {
            self.positions.clear();
            self.first = to;
            return;
        }
        for _ in next..to {
            self.positions.push_back(NO_ENTRY);
        }
    }

    /// Drops trailing gap markers after a truncation and finds the new last log ID.
    fn settle_tail(&mut self) -> Result<(), StorageError> {
        while self.positions.back().is_some_and(|p| p.len == 0) {
            self.positions.pop_back();
        }
        self.last = match self.positions.len() as u64 {
            0 => None,
            n => {
                let last = self.first + n - 1;
                self.read(last, last + 1)?.first().map(|e| e.log_id)
            }
        };
        Ok(())
    }

    /// Reads the entries in `start..end`, skipping indexes with no entry: one `pread` per
    /// run of consecutive entries in one segment.
    fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0).min(4096));
        let mut i = start;
        let mut buf = Vec::new();
        while i < end {
            let Some(first) = self.pos(i) else {
                i += 1;
                continue;
            };
            let seg = self.segment_of(i).ok_or_else(|| missing(i))?;
            let seg_end = self
                .segments
                .range(i + 1..)
                .next()
                .map_or(end, |(f, _)| (*f).min(end));
            let mut j = i + 1;
            let mut last = first;
            while j < seg_end {
                match self.pos(j) {
                    Some(p) => last = p,
                    None => break,
                }
                j += 1;
            }
            let end_offset = last.offset + u64::from(last.len);
            let cached = self.tail.as_ref().and_then(|t| {
                let from = usize::try_from(first.offset.checked_sub(t.offset)?).ok()?;
                let to = usize::try_from(end_offset - t.offset).ok()?;
                (t.segment == seg.first && to <= t.bytes.len()).then(|| &t.bytes[from..to])
            });
            let data = match cached {
                Some(d) => d,
                None => {
                    let span = usize::try_from(end_offset - first.offset)
                        .map_err(|e| StorageIOError::read_logs(&e))?;
                    buf.resize(span, 0);
                    seg.file
                        .read_exact_at(&mut buf, first.offset)
                        .map_err(|e| StorageIOError::read_log_at_index(i, &e))?;
                    &buf[..]
                }
            };
            let mut at = 0usize;
            for index in i..j {
                let (entry, len) = decode_record(&data[at..], index)
                    .map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
                out.push(entry);
                at += len;
            }
            i = j;
        }
        Ok(out)
    }
}

fn missing(index: u64) -> StorageError {
    StorageIOError::read_log_at_index(index, &io::Error::other("log entry missing")).into()
}

/// A record's header: the entry's encoded length, the checksum and the log index.
struct Header {
    len: usize,
    sum: u32,
    index: u64,
}

/// The header at the start of `buf`, if `buf` is long enough to hold one.
fn header(buf: &[u8]) -> Option<Header> {
    let h: &[u8; HEADER] = buf.get(..HEADER)?.try_into().ok()?;
    let [l0, l1, l2, l3, s0, s1, s2, s3, i @ ..] = *h;
    Some(Header {
        len: u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        sum: u32::from_le_bytes([s0, s1, s2, s3]),
        index: u64::from_le_bytes(i),
    })
}

/// Decodes the record at the start of `buf`, expected to hold entry `index`; returns it and
/// the record's length.
fn decode_record(buf: &[u8], index: u64) -> io::Result<(Entry, usize)> {
    let bad = |m: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log index {index}: {m}"),
        )
    };
    let Some(Header { len, index: at, .. }) = header(buf) else {
        return Err(bad("short record"));
    };
    if at != index || buf.len() < HEADER + len {
        return Err(bad("record out of place"));
    }
    let entry: Entry = postcard::from_bytes(&buf[HEADER..HEADER + len])
        .map_err(|e| bad(&format!("undecodable entry: {e}")))?;
    Ok((entry, HEADER + len))
}

/// Appends the record of `entry` to `buf`.
fn encode_record(buf: &mut Vec<u8>, entry: &Entry) -> Result<(), postcard::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.extend_from_slice(&entry.log_id.index.to_le_bytes());
    let mut body = std::mem::take(buf);
    body = postcard::to_extend(entry, body)?;
    *buf = body;
    let len = u32::try_from(buf.len() - start - HEADER)
        .map_err(|_| postcard::Error::SerializeBufferFull)?;
    let sum = checksum(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// What a scan of one segment found.
struct Scanned {
    positions: Vec<(u64, Pos)>,
    last: Option<LogId>,
    /// Length of the valid prefix of the file.
    valid: u64,
    /// Whether something invalid followed the valid prefix.
    torn: bool,
}

/// Reads every valid record of a segment, in order, starting at its first log index. The
/// records end at a zeroed header (the unwritten rest of the segment) or at the end of the
/// file; anything else that is not a valid record is a torn write.
fn scan(seg: &Segment) -> io::Result<Scanned> {
    let mut r = io::BufReader::with_capacity(1 << 20, &seg.file);
    let mut out = Scanned {
        positions: Vec::new(),
        last: None,
        valid: 0,
        torn: false,
    };
    let mut index = seg.first;
    let mut record = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        match read_full(&mut r, &mut header)? {
            0 => break,
            n if n < HEADER => {
                out.torn = header[..n].iter().any(|b| *b != 0);
                break;
            }
            _ => {}
        }
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let Some(Header { len, sum, .. }) = self::header(&header) else {
            break;
        };
        if len > MAX_RECORD {
            out.torn = true;
            break;
        }
        record.clear();
        record.extend_from_slice(&header);
        record.resize(HEADER + len, 0);
        if read_full(&mut r, &mut record[HEADER..])? < len || checksum(&record[8..]) != sum {
            out.torn = true;
            break;
        }
        let (entry, n) = decode_record(&record, index)?;
        out.positions.push((
            index,
            Pos {
                offset: out.valid,
                len: n as u32,
            },
        ));
        out.last = Some(entry.log_id);
        out.valid += n as u64;
        index += 1;
    }
    Ok(out)
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The sled metadata and the segments, shared by the store, its readers and the flusher
/// thread.
#[derive(Debug)]
pub(crate) struct Shared {
    db: sled::Db,
    meta: sled::Tree,
    dir: PathBuf,
    index: RwLock<Index>,
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
        let index = self.index.read();
        let Some(next) = index.next_index() else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(index.first);
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        }
        .min(next);
        if start >= end {
            return Ok(Vec::new());
        }
        index.read(start, end)
    }
}

/// The [`RaftLogStorage`]: segment files for the entries, sled for the metadata.
pub struct SledLogStore {
    shared: Arc<Shared>,
    flusher: mpsc::Sender<Flush>,
    last_purged: Option<LogId>,
    /// The segment appends go to, and its length.
    active: Option<(Arc<Segment>, u64)>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// The leader's speculative sends to followers (see speculate.rs), if any.
    spec: Option<Arc<Speculator>>,
    /// The last committed log ID openraft saved.
    committed: Option<LogId>,
}

impl Debug for SledLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLogStore")
            .field("last_purged", &self.last_purged)
            .finish_non_exhaustive()
    }
}

/// A reader of the log, used by replication tasks.
#[derive(Debug, Clone)]
pub struct SledLogReader {
    shared: Arc<Shared>,
}

/// A sync for the flusher thread: the segment to sync, then the callback to answer.
struct Flush {
    segment: Arc<Segment>,
    callback: LogFlushed<TypeConfig>,
}

fn storage(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Storage(format!("raft log: {what}: {e}"))
}

impl SledLogStore {
    /// Opens (creating if needed) the log in directory `path` (sled metadata) and its
    /// segments in `path` with the extension `.wal`. Another process (or a not yet dropped
    /// store of this one) holding the database makes this retry for up to five seconds
    /// before failing.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let db = loop {
            let res = sled::Config::new()
                .path(path)
                // Only the metadata and, once, a log left by an older version live here.
                .cache_capacity(1024 * 1024)
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
        Self::from_db(db, &path.with_extension(SEGMENT_EXT))
    }

    /// A log store over an open sled database (metadata) and the segment directory `dir`.
    fn from_db(db: sled::Db, dir: &Path) -> Result<Self, ServerError> {
        let meta = db.open_tree("meta").map_err(|e| storage("meta", e))?;
        std::fs::create_dir_all(dir).map_err(|e| storage(&dir.display().to_string(), e))?;
        let shared = Arc::new(Shared {
            db,
            meta,
            dir: dir.to_path_buf(),
            index: RwLock::new(Index::default()),
        });
        let last_purged = shared
            .get_meta::<LogId>(KEY_LAST_PURGED)
            .map_err(|e| storage("last purged", e))?;
        let (tx, rx) = mpsc::channel();
        let mut store = SledLogStore {
            shared: Arc::clone(&shared),
            flusher: tx,
            last_purged,
            active: None,
            buf: Vec::new(),
            spec: None,
            committed: None,
        };
        store.load()?;
        store.migrate_sled_log()?;
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flusher(shared, rx))
            .map_err(|e| storage("starting the flusher", e))?;
        Ok(store)
    }

    /// Reads the segments: positions of the live entries, the last log ID, the active
    /// segment; cuts off a torn tail.
    fn load(&mut self) -> Result<(), ServerError> {
        let dir = self.shared.dir.clone();
        let io = |e: io::Error| storage(&dir.display().to_string(), e);
        let mut firsts = Vec::new();
        for ent in std::fs::read_dir(&dir).map_err(io)? {
            let ent = ent.map_err(io)?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(&format!(".{SEGMENT_EXT}"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let purged = self.last_purged.map(|l| l.index);
        let mut index = Index::default();
        let count = firsts.len();
        for (n, first) in firsts.into_iter().enumerate() {
            let path = dir.join(format!("{first:020}.{SEGMENT_EXT}"));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io)?;
            let seg = Arc::new(Segment { first, path, file });
            let scanned = scan(&seg).map_err(io)?;
            let is_last = n + 1 == count;
            if scanned.torn {
                if !is_last {
                    return Err(storage(
                        &seg.path.display().to_string(),
                        "corrupt record in a closed segment",
                    ));
                }
                tracing::warn!(
                    segment = %seg.path.display(),
                    valid_bytes = scanned.valid,
                    "cutting off a torn record at the end of the raft log"
                );
                seg.cut(scanned.valid).map_err(io)?;
            }
            if let Some(expect) = index.next_index() {
                if !scanned.positions.is_empty() && first < expect {
                    return Err(storage(
                        &seg.path.display().to_string(),
                        format!("segment starts at {first}, before the end of the log ({expect})"),
                    ));
                }
            }
            for (i, pos) in scanned.positions {
                if purged.is_some_and(|p| i <= p) {
                    continue;
                }
                if index.positions.is_empty() || i != index.first + index.positions.len() as u64 {
                    index.bridge(i);
                }
                index.positions.push_back(pos);
            }
            if scanned.last.is_some() {
                index.last = scanned.last;
            }
            if is_last {
                self.active = Some((Arc::clone(&seg), scanned.valid));
            }
            index.segments.insert(first, seg);
        }
        if purged.is_some_and(|p| index.last.is_some_and(|l| l.index <= p)) {
            // Everything left is purged: the next append starts a new segment.
            index.positions.clear();
            index.last = None;
        }
        if index.positions.is_empty() {
            index.first = index.next_index().unwrap_or(0);
        }
        *self.shared.index.write() = index;
        Ok(())
    }

    /// Moves a log kept in sled's `logs` tree (older versions) into segments. The tree is
    /// emptied only once the segments are durable, so an interrupted move is redone.
    fn migrate_sled_log(&mut self) -> Result<(), ServerError> {
        let st = |e: &dyn std::fmt::Display| storage("moving the log out of sled", e);
        let names = self.shared.db.tree_names();
        if !names.iter().any(|n| n.as_ref() == b"logs") {
            return Ok(());
        }
        let logs = self.shared.db.open_tree("logs").map_err(|e| st(&e))?;
        if logs.is_empty() {
            return Ok(());
        }
        // Start over: segments written by an interrupted move are incomplete.
        let old: Vec<Arc<Segment>> = std::mem::take(&mut self.shared.index.write().segments)
            .into_values()
            .collect();
        for seg in old {
            std::fs::remove_file(&seg.path).map_err(|e| st(&e))?;
        }
        *self.shared.index.write() = Index::default();
        self.active = None;
        let purged = self.last_purged.map(|l| l.index);
        let mut batch = Vec::new();
        let mut moved = 0usize;
        for kv in logs.iter() {
            let (_, value) = kv.map_err(|e| st(&e))?;
            let entry: Entry = postcard::from_bytes(&value).map_err(|e| st(&e))?;
            if purged.is_some_and(|p| entry.log_id.index <= p) {
                continue;
            }
            batch.push(entry);
            if batch.len() == 1024 {
                moved += batch.len();
                self.write_entries(std::mem::take(&mut batch))
                    .map_err(|e| st(&e))?;
            }
        }
        moved += batch.len();
        if !batch.is_empty() {
            self.write_entries(batch).map_err(|e| st(&e))?;
        }
        if let Some((seg, _)) = &self.active {
            seg.file.sync_data().map_err(|e| st(&e))?;
        }
        self.shared.db.drop_tree("logs").map_err(|e| st(&e))?;
        self.shared.db.flush().map_err(|e| st(&e))?;
        tracing::info!(
            entries = moved,
            "moved the raft log from sled to segment files"
        );
        Ok(())
    }

    /// A handle that dies once the database is closed (every store, reader and the flusher
    /// are gone), so that it can be reopened.
    pub(crate) fn liveness(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    async fn flush_meta(&self) -> Result<(), AnyError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.db.flush())
            .await
            .map_err(|e| AnyError::new(&e))?
            .map_err(|e| AnyError::new(&e))?;
        Ok(())
    }

    /// Writes `entries` (the next ones of the log) to the active segment, opening a new one
    /// when needed, and publishes their positions. Does not sync; returns the segment
    /// written to and the bytes written.
    /// Makes appends of this node's own entries (as leader) go to caught-up followers at
    /// once, in parallel with their sync here.
    pub fn with_speculator(mut self, spec: Arc<Speculator>) -> Self {
        self.spec = Some(spec);
        self
    }

    /// Offers the entries just written (the [`Tail`]) to the speculator, if they are this
    /// node's own and directly follow `prev`.
    fn speculate(&self, prev: Option<LogId>) -> bool {
        let (Some(spec), Some(prev)) = (&self.spec, prev) else {
            return false;
        };
        let index = self.shared.index.read();
        let (Some(last), Some(tail)) = (index.last, &index.tail) else {
            return false;
        };
        if !spec.is_own(&last) {
            return false;
        }
        let bytes = &tail.bytes;
        let mut entries = Vec::new();
        let mut at = 0;
        let mut first = None;
        while let Some(h) = bytes.get(at..).and_then(header) {
            first.get_or_insert(h.index);
            let Some(entry) = bytes.get(at + HEADER..at + HEADER + h.len) else {
                return false;
            };
            entries.push(entry);
            at += HEADER + h.len;
        }
        if first != Some(prev.index + 1) || last.index != prev.index + entries.len() as u64 {
            // Not a plain extension of the log (a truncation, or not this append's records).
            return false;
        }
        spec.offer(speculate::Offer {
            prev,
            last,
            entries,
            leader_commit: self.committed,
        })
    }

    fn write_entries<I>(&mut self, entries: I) -> io::Result<(Option<Arc<Segment>>, usize)>
    where
        I: IntoIterator<Item = Entry>,
    {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut records: Vec<(u64, u32)> = Vec::new();
        let mut first_index = None;
        let mut last = None;
        for entry in entries {
            let start = buf.len();
            encode_record(&mut buf, &entry).map_err(io::Error::other)?;
            records.push((start as u64, (buf.len() - start) as u32));
            first_index.get_or_insert(entry.log_id.index);
            if let Some(prev) = last.map(|l: LogId| l.index) {
                if entry.log_id.index != prev + 1 {
                    return Err(io::Error::other(format!(
                        "non-consecutive append: {} after {prev}",
                        entry.log_id.index
                    )));
                }
            }
            last = Some(entry.log_id);
        }
        let (Some(first_index), Some(last)) = (first_index, last) else {
            self.buf = buf;
            return Ok((None, 0));
        };
        if self
            .shared
            .index
            .read()
            .next_index()
            .is_some_and(|next| first_index < next)
        {
            // Appending over existing entries replaces them and everything after them.
            self.truncate_from(first_index)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let next = self.shared.index.read().next_index();
        let roll = match (&self.active, next) {
            // The first append, or the first after everything was purged or truncated.
            (None, _) | (Some(_), None) => true,
            // A gap: a segment's records are consecutive, so a new one starts here.
            (Some(_), Some(next)) if next != first_index => true,
            // An empty segment made for other entries (a crash right after a roll).
            (Some((seg, 0)), Some(_)) if seg.first != first_index => true,
            (Some((_, len)), Some(_)) => *len > 0 && *len + buf.len() as u64 > SEGMENT_BYTES,
        };
        if roll {
            match &self.active {
                // A segment that never got a record goes (it would otherwise claim the log
                // indexes from its name on).
                Some((old, 0)) => {
                    self.shared.index.write().segments.remove(&old.first);
                    std::fs::remove_file(&old.path)?;
                }
                // Entries of a closed segment must be durable before the next segment's are
                // reported flushed (the flusher syncs only the segment it is handed). A
                // closed segment keeps only its records.
                Some((old, len)) => {
                    old.file.set_len(*len)?;
                    old.file.sync_all()?;
                }
                None => {}
            }
            let seg = Arc::new(Segment::create(&self.shared.dir, first_index)?);
            self.shared
                .index
                .write()
                .segments
                .insert(first_index, Arc::clone(&seg));
            self.active = Some((seg, 0));
        }
        let Some((seg, len)) = &mut self.active else {
            return Err(io::Error::other("no active segment"));
        };
        seg.file.write_all_at(&buf, *len)?;
        let base = *len;
        *len += buf.len() as u64;
        let seg = Arc::clone(seg);
        {
            let mut index = self.shared.index.write();
            if index.positions.is_empty()
                || first_index != index.first + index.positions.len() as u64
            {
                index.bridge(first_index);
            }
            for (offset, len) in records {
                index.positions.push_back(Pos {
                    offset: base + offset,
                    len,
                });
            }
            index.last = Some(last);
            let written = buf.len();
            if written <= TAIL_BYTES {
                let old = index.tail.replace(Tail {
                    segment: seg.first,
                    offset: base,
                    bytes: buf,
                });
                self.buf = old.map(|t| t.bytes).unwrap_or_default();
            } else {
                index.tail = None;
                self.buf = if buf.capacity() > 4 * TAIL_BYTES {
                    Vec::new()
                } else {
                    buf
                };
            }
            Ok((Some(seg), written))
        }
    }

    /// Removes the entries at and after log index `at`.
    #[allow(clippy::result_large_err)]
    fn truncate_from(&mut self, at: u64) -> Result<(), StorageError> {
        let w = |e: io::Error| StorageError::from(StorageIOError::write_logs(&e));
        let mut index = self.shared.index.write();
        let Some(next) = index.next_index() else {
            return Ok(());
        };
        if at >= next {
            return Ok(());
        }
        let at = at.max(index.first);
        // The segment holding `at` is cut at its record, unless it starts there; segments
        // that start at or after `at` go entirely.
        let cut = match index.segment_of(at) {
            Some(seg) if seg.first < at => index.pos(at).map(|p| (Arc::clone(seg), p.offset)),
            _ => None,
        };
        let gone: Vec<u64> = index.segments.range(at..).map(|(f, _)| *f).collect();
        for first in gone {
            if let Some(seg) = index.segments.remove(&first) {
                std::fs::remove_file(&seg.path).map_err(w)?;
            }
        }
        let keep = usize::try_from(at - index.first).unwrap_or(usize::MAX);
        index.positions.truncate(keep);
        index.tail = None;
        if let Some((seg, len)) = &cut {
            seg.cut(*len).map_err(w)?;
        }
        self.active = match (cut, index.segments.iter().next_back()) {
            (Some(active), _) => Some(active),
            (None, Some((_, seg))) => {
                // A closed segment (trimmed to its records) becomes the active one again.
                let len = seg.file.metadata().map_err(w)?.len();
                seg.file.set_len(len.max(SEGMENT_BYTES)).map_err(w)?;
                seg.file.sync_all().map_err(w)?;
                Some((Arc::clone(seg), len))
            }
            (None, None) => None,
        };
        sync_dir(&self.shared.dir).map_err(w)?;
        index.settle_tail()?;
        if index.positions.is_empty() {
            index.first = at;
        }
        Ok(())
    }
}

/// Environment variable that, set to `1`, makes the log report appends durable without
/// syncing them: a deliberately broken mode that loses acknowledged writes in a power loss.
/// It exists only so that the disk nemesis in `jepsen/` can prove it notices; never set it
/// anywhere else.
pub const UNSAFE_SKIP_LOG_SYNC_ENV: &str = "REGISTRY_TEST_UNSAFE_SKIP_LOG_SYNC";

fn skip_log_sync() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var(UNSAFE_SKIP_LOG_SYNC_ENV).is_ok_and(|v| v == "1");
        if on {
            tracing::warn!(
                "{UNSAFE_SKIP_LOG_SYNC_ENV}=1: log appends are not synced (broken on purpose)"
            );
        }
        on
    })
}

/// Makes an append durable (the data of its segment).
fn sync_append(segment: &Segment) -> io::Result<()> {
    if skip_log_sync() {
        return Ok(());
    }
    segment.file.sync_data()
}

/// Syncs the segments of every queued append, then reports them flushed.
fn flusher(shared: Arc<Shared>, rx: mpsc::Receiver<Flush>) {
    let mut batch: Vec<Flush> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let span = tracing::trace_span!("raft_log_flush", callbacks = batch.len());
        let res = span.in_scope(|| {
            let mut synced: Vec<*const Segment> = Vec::new();
            for f in &batch {
                let p = Arc::as_ptr(&f.segment);
                if !synced.contains(&p) {
                    sync_append(&f.segment)?;
                    synced.push(p);
                }
            }
            io::Result::Ok(())
        });
        for f in batch.drain(..) {
            let r = match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            f.callback.log_io_completed(r);
        }
    }
    if let Err(e) = shared.db.flush() {
        tracing::error!(error = %e, "final raft log metadata flush failed");
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
        let last = self.shared.index.read().last;
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
        self.flush_meta()
            .await
            .map_err(StorageIOError::write_vote)?;
        Ok(())
    }

    /// The vote, read once at startup, always as *not committed*. openraft restarts a node
    /// whose committed vote names itself as the leader of that term at once, trusting that
    /// its log still holds every entry it ever sent. With speculative replication (entries go
    /// to the followers while the leader's own write and sync are still running) that is not
    /// so: a leader killed or powered off in between comes back with a shorter log than an
    /// entry its followers acknowledged and the cluster committed, and would then write a
    /// different entry at that index in the same term. Read as uncommitted, the vote still
    /// keeps this node from voting twice in its term, and leadership goes through an election
    /// in a later term, which only a server holding every committed entry can win.
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let vote: Option<Vote> = self
            .shared
            .get_meta(KEY_VOTE)
            .map_err(StorageIOError::read_vote)?;
        Ok(vote.map(|mut v| {
            v.committed = false;
            v
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed = committed;
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
        let prev = self.shared.index.read().last;
        let (segment, bytes) = self
            .write_entries(entries)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let Some(segment) = segment else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        tracing::trace!(bytes, "append");
        let offered = bytes <= speculate::MAX_BYTES && self.speculate(prev);
        if bytes <= INLINE_SYNC_BYTES && !offered {
            // A lone writer: handing the sync to the flusher thread and back would cost two
            // thread wake-ups, more than the sync itself.
            callback.log_io_completed(sync_append(&segment));
            return Ok(());
        }
        if let Err(mpsc::SendError(f)) = self.flusher.send(Flush { segment, callback }) {
            // The flusher thread is gone (it only stops when this store is dropped, or if it
            // panicked): sync here instead.
            f.callback.log_io_completed(sync_append(&f.segment));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.truncate_from(log_id.index)
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if self.last_purged.is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        // Record the purge point durably first: entries are never gone without the purge
        // point that explains their absence.
        self.shared
            .put_meta(KEY_LAST_PURGED, &log_id)
            .map_err(StorageIOError::write_logs)?;
        self.flush_meta()
            .await
            .map_err(StorageIOError::write_logs)?;
        self.last_purged = Some(log_id);
        let w = |e: io::Error| StorageError::from(StorageIOError::write_logs(&e));
        let mut index = self.shared.index.write();
        // Forget the positions of the purged entries.
        let upto = log_id.index;
        if let Some(next) = index.next_index() {
            let n = upto.saturating_add(1).min(next).saturating_sub(index.first);
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let n = n.min(index.positions.len());
            index.positions.drain(..n);
            index.first += n as u64;
            if index.positions.is_empty() {
                index.first = upto.saturating_add(1).max(next);
                if upto >= next - 1 {
                    index.last = None;
                }
            }
        }
        // Delete every segment whose entries are all purged: those followed by a segment
        // starting at or below `upto + 1`. The active segment stays (it is written to).
        let firsts: Vec<u64> = index.segments.keys().copied().collect();
        for pair in firsts.windows(2) {
            if pair[1] <= upto.saturating_add(1) {
                if let Some(seg) = index.segments.remove(&pair[0]) {
                    std::fs::remove_file(&seg.path).map_err(w)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use registry_proto::Command;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(vec![Command::Noop]),
        }
    }

    fn open(dir: &Path) -> SledLogStore {
        SledLogStore::open(&dir.join("log")).unwrap()
    }

    /// Appends without openraft: writes and syncs, as `append` does.
    fn put(log: &mut SledLogStore, entries: Vec<Entry>) {
        let (seg, _) = log.write_entries(entries).unwrap();
        seg.unwrap().file.sync_data().unwrap();
    }

    fn indexes(log: &SledLogStore, range: impl RangeBounds<u64>) -> Vec<u64> {
        log.shared
            .read_range(range)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    /// Waits until the store's files are released so it can be opened again.
    fn close(log: SledLogStore) {
        let live = log.liveness();
        drop(log);
        for _ in 0..500 {
            if live.strong_count() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("log store not closed");
    }

    #[tokio::test]
    async fn a_leaders_vote_is_read_back_uncommitted() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut log = open(dir.path());
        let mut vote = Vote::new(21, 3);
        vote.commit();
        log.save_vote(&vote).await.unwrap();
        close(log);
        let mut log = open(dir.path());
        let read = log.read_vote().await.unwrap().unwrap();
        assert!(
            !read.committed,
            "a restarted leader must win an election again"
        );
        assert_eq!(read.leader_id, vote.leader_id, "still voted in its term");
    }

    #[test]
    fn checksum_sees_torn_and_shifted_data() {
        let a = checksum(b"hello world, this is a record");
        assert_ne!(a, checksum(b"hello world, this is a recorc"));
        assert_ne!(a, checksum(b"hello world, this is a record\0"));
        assert_ne!(checksum(&[0u8; 16]), checksum(&[0u8; 17]));
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut log = open(dir.path());
        put(&mut log, (1..=5).map(|i| entry(1, i)).collect());
        put(&mut log, vec![entry(2, 6)]);
        assert_eq!(indexes(&log, ..), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(indexes(&log, 2..4), vec![2, 3]);
        assert_eq!(indexes(&log, 5..=100), vec![5, 6]);
        let (seg, end) = {
            let (seg, end) = log.active.as_ref().unwrap();
            (seg.path.clone(), *end)
        };
        close(log);

        // A crash in the middle of an append: half a record after the last one.
        let mut buf = Vec::new();
        encode_record(&mut buf, &entry(2, 7)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .write_all_at(&buf[..buf.len() / 2], end)
            .unwrap();
        let mut log = open(dir.path());
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), SEGMENT_BYTES);
        let mut after = vec![1u8; buf.len()];
        std::fs::File::open(&seg)
            .unwrap()
            .read_exact_at(&mut after, end)
            .unwrap();
        assert!(after.iter().all(|b| *b == 0), "torn record zeroed");
        assert_eq!(indexes(&log, ..), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(log.shared.index.read().last.unwrap().leader_id.term, 2);
        put(&mut log, vec![entry(2, 7)]);
        assert_eq!(indexes(&log, 6..), vec![6, 7]);
        close(log);
        let log = open(dir.path());
        assert_eq!(indexes(&log, ..), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn truncate_purge_and_segments() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut log = open(dir.path());
        put(&mut log, (1..=4).map(|i| entry(1, i)).collect());
        // A full segment: the next append goes to a new one.
        log.active.as_mut().unwrap().1 = SEGMENT_BYTES;
        put(&mut log, (5..=8).map(|i| entry(1, i)).collect());
        assert_eq!(log.shared.index.read().segments.len(), 2);
        assert_eq!(indexes(&log, 3..7), vec![3, 4, 5, 6]);

        // Truncate inside the second segment, then append other terms.
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 7))
            .await
            .unwrap();
        assert_eq!(indexes(&log, ..), vec![1, 2, 3, 4, 5, 6]);
        put(&mut log, vec![entry(3, 7), entry(3, 8)]);
        // Truncate at the start of the second segment: it goes.
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 5))
            .await
            .unwrap();
        assert_eq!(log.shared.index.read().segments.len(), 1);
        assert_eq!(indexes(&log, ..), vec![1, 2, 3, 4]);
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index,
            4
        );
        put(&mut log, (5..=9).map(|i| entry(4, i)).collect());

        // Purge: positions go, the segment stays while it has live entries.
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .await
            .unwrap();
        assert_eq!(indexes(&log, ..), vec![4, 5, 6, 7, 8, 9]);
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.unwrap().index, 3);
        assert_eq!(st.last_log_id.unwrap().index, 9);
        close(log);
        let mut log = open(dir.path());
        assert_eq!(indexes(&log, ..), vec![4, 5, 6, 7, 8, 9]);

        // Purge everything, then the log continues after a gap (a snapshot install).
        log.purge(LogId::new(CommittedLeaderId::new(4, 1), 9))
            .await
            .unwrap();
        assert!(indexes(&log, ..).is_empty());
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index,
            9
        );
        put(&mut log, vec![entry(5, 20), entry(5, 21)]);
        assert_eq!(indexes(&log, ..), vec![20, 21]);
        close(log);
        let mut log = open(dir.path());
        assert_eq!(indexes(&log, ..), vec![20, 21]);
        log.purge(LogId::new(CommittedLeaderId::new(5, 1), 20))
            .await
            .unwrap();
        assert_eq!(log.shared.index.read().segments.len(), 1);
        assert_eq!(indexes(&log, ..), vec![21]);
    }

    #[test]
    fn an_empty_segment_left_by_a_crash_after_a_roll_is_not_written_into() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut log = open(dir.path());
        put(&mut log, (1..=3).map(|i| entry(1, i)).collect());
        let wal = log.shared.dir.clone();
        close(log);
        // The roll to a segment for entry 10 happened, the append did not.
        Segment::create(&wal, 10).unwrap();
        let mut log = open(dir.path());
        assert_eq!(indexes(&log, ..), vec![1, 2, 3]);
        put(&mut log, (4..=12).map(|i| entry(1, i)).collect());
        assert_eq!(indexes(&log, 9..), vec![9, 10, 11, 12]);
        close(log);
        let log = open(dir.path());
        assert_eq!(indexes(&log, ..), (1..=12).collect::<Vec<_>>());
        assert!(!wal.join(format!("{:020}.{SEGMENT_EXT}", 10)).exists());
    }

    #[test]
    fn a_log_in_sled_is_moved_to_segments() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("log");
        {
            let db = sled::Config::new().path(&path).open().unwrap();
            let logs = db.open_tree("logs").unwrap();
            for i in 1..=3u64 {
                let bytes = postcard::to_stdvec(&entry(1, i)).unwrap();
                logs.insert(i.to_be_bytes(), bytes).unwrap();
            }
            let meta = db.open_tree("meta").unwrap();
            let purged = LogId::new(CommittedLeaderId::new(1, 1), 1);
            meta.insert(KEY_LAST_PURGED, postcard::to_stdvec(&purged).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let log = open(dir.path());
        assert_eq!(indexes(&log, ..), vec![2, 3]);
        assert!(!log
            .shared
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"logs"));
        close(log);
        let log = open(dir.path());
        assert_eq!(indexes(&log, ..), vec![2, 3]);
    }
}
