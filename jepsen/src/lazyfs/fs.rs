//! The FUSE file system: a pass-through onto a backing directory that keeps file data in
//! memory until the file is synced (see [`super::overlay`]), and that can be made slow.
//! Namespace operations (create, rename, link, unlink, mkdir) reach the backing directory at
//! once; only file contents and sizes wait for `fsync`/`fdatasync`.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::overlay::Pending;

/// No kernel caching of entries or attributes: the overlay changes sizes behind its back.
const TTL: Duration = Duration::ZERO;

/// What the nemesis and the file system share.
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Inner>,
    /// Added to every write and sync, µs (the slow-disk fault).
    delay_us: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    root_ino: u64,
    /// Paths (relative to the root) each inode is known by.
    paths: HashMap<u64, BTreeSet<PathBuf>>,
    pending: HashMap<u64, Pending>,
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_fh: u64,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

impl Shared {
    /// A file system over `root`.
    pub fn new(root: &Path) -> io::Result<Shared> {
        let root_ino = std::fs::metadata(root)?.ino();
        let mut paths = HashMap::new();
        paths.insert(1, BTreeSet::from([PathBuf::new()]));
        Ok(Shared {
            inner: Mutex::new(Inner {
                root: root.to_path_buf(),
                root_ino,
                paths,
                pending: HashMap::new(),
                handles: HashMap::new(),
                next_fh: 1,
            }),
            delay_us: AtomicU64::new(0),
        })
    }

    /// Drops every unsynced change, as a power loss would: the files that had some (a path
    /// relative to the root, or `#<inode>` for a file no longer linked) and the bytes lost.
    pub fn lose_unsynced(&self) -> Vec<(String, u64)> {
        let mut g = lock(&self.inner);
        let lost: Vec<(u64, Pending)> = g.pending.drain().collect();
        let mut files: Vec<(String, u64)> = lost
            .into_iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(ino, p)| {
                let name = g
                    .paths
                    .get(&ino)
                    .and_then(|s| s.iter().next())
                    .map_or_else(|| format!("#{ino}"), |p| p.display().to_string());
                (name, p.bytes())
            })
            .collect();
        files.sort();
        files
    }

    /// Bytes not yet synced.
    #[cfg(test)]
    pub fn unsynced_bytes(&self) -> u64 {
        lock(&self.inner).pending.values().map(Pending::bytes).sum()
    }

    /// Sets the extra latency of every write and sync.
    pub fn set_delay(&self, d: Duration) {
        self.delay_us.store(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    fn delay(&self) {
        let us = self.delay_us.load(Ordering::Relaxed);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
    }
}

impl Inner {
    /// FUSE inode numbers are the backing ones, with the root swapped to 1.
    fn fuse_ino(&self, backing: u64) -> u64 {
        if backing == self.root_ino {
            1
        } else if backing == 1 {
            self.root_ino
        } else {
            backing
        }
    }

    fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.paths
            .get(&ino)
            .and_then(|s| s.iter().next())
            .map(|rel| self.root.join(rel))
            .ok_or(Errno::ENOENT)
    }

    fn rel_child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        let p = self
            .paths
            .get(&parent)
            .and_then(|s| s.iter().next())
            .ok_or(Errno::ENOENT)?;
        Ok(p.join(name))
    }

    fn remember(&mut self, ino: u64, rel: PathBuf) {
        self.paths.entry(ino).or_default().insert(rel);
    }

    fn forget_path(&mut self, rel: &Path) {
        for set in self.paths.values_mut() {
            set.remove(rel);
        }
        self.paths.retain(|ino, s| *ino == 1 || !s.is_empty());
    }

    /// After a rename: every path at or under `from` now lives under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        for set in self.paths.values_mut() {
            let renamed: Vec<PathBuf> = set
                .iter()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect();
            for p in renamed {
                set.remove(&p);
                match p.strip_prefix(from) {
                    Ok(rest) if rest.as_os_str().is_empty() => set.insert(to.to_path_buf()),
                    Ok(rest) => set.insert(to.join(rest)),
                    Err(_) => false,
                };
            }
        }
    }

    fn attr(&self, meta: &Metadata) -> FileAttr {
        let ino = self.fuse_ino(meta.ino());
        let size = match self.pending.get(&ino) {
            Some(p) if meta.is_file() => p.size(meta.len()),
            _ => meta.len(),
        };
        let time = |s: i64, ns: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::new(s as u64, ns as u32)
            } else {
                UNIX_EPOCH
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            FileType::Directory
        } else if ft.is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    fn add_handle(&mut self, ino: u64, f: File) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (ino, Arc::new(f)));
        fh
    }

    /// The backing file for `ino`: an open handle's, else opened by path.
    fn file(&self, ino: u64, fh: Option<u64>) -> Result<Arc<File>, Errno> {
        if let Some((_, f)) = fh.and_then(|fh| self.handles.get(&fh)) {
            return Ok(f.clone());
        }
        if let Some((_, f)) = self.handles.values().find(|(i, _)| *i == ino) {
            return Ok(f.clone());
        }
        let path = self.path(ino)?;
        open_rw(&path).map(Arc::new).map_err(errno)
    }
}

/// Answers an operation that returns nothing.
fn done(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// The mounted file system (one per server).
pub struct LazyFs(pub Arc<Shared>);

impl LazyFs {
    fn entry(&self, rel: PathBuf, reply: ReplyEntry) {
        let mut g = lock(&self.0.inner);
        match std::fs::symlink_metadata(g.root.join(&rel)) {
            Ok(meta) => {
                let ino = g.fuse_ino(meta.ino());
                g.remember(ino, rel);
                let attr = g.attr(&meta);
                reply.entry(&TTL, &attr, Generation(0));
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Removes `name` from `parent` on the backing directory with `op` (a file or a
    /// directory), and forgets the path.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        op: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), Errno> {
        let mut g = lock(&self.0.inner);
        let rel = g.rel_child(parent.0, name)?;
        op(&g.root.join(&rel)).map_err(errno)?;
        g.forget_path(&rel);
        Ok(())
    }

    fn attr_of(&self, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let g = lock(&self.0.inner);
        let meta = match fh.and_then(|fh| g.handles.get(&fh)) {
            Some((_, f)) => f.metadata(),
            None => match g.path(ino) {
                Ok(p) => std::fs::symlink_metadata(p),
                Err(e) => return reply.error(e),
            },
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &g.attr(&m)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let rel = lock(&self.0.inner).rel_child(parent.0, name);
        match rel {
            Ok(rel) => self.entry(rel, reply),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr_of(ino.0, fh.map(|f| f.0), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        {
            let mut g = lock(&self.0.inner);
            if let Some(mode) = mode {
                let r = g.path(ino.0).and_then(|p| {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                        .map_err(errno)
                });
                if let Err(e) = r {
                    return reply.error(e);
                }
            }
            if let Some(size) = size {
                g.pending.entry(ino.0).or_default().truncate(size);
            }
        }
        self.attr_of(ino.0, fh.map(|f| f.0), reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let rel = match lock(&self.0.inner).rel_child(parent.0, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let abs = lock(&self.0.inner).root.join(&rel);
        let r = std::fs::create_dir(&abs).and_then(|()| {
            std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(mode & !umask))
        });
        match r {
            Ok(()) => self.entry(rel, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(
            reply,
            self.remove(parent, name, |p| std::fs::remove_file(p)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(reply, self.remove(parent, name, |p| std::fs::remove_dir(p)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.bits() != 0 {
            return reply.error(Errno::EINVAL);
        }
        let mut g = lock(&self.0.inner);
        let r = g.rel_child(parent.0, name).and_then(|from| {
            let to = g.rel_child(newparent.0, newname)?;
            std::fs::rename(g.root.join(&from), g.root.join(&to)).map_err(errno)?;
            g.forget_path(&to);
            g.moved(&from, &to);
            Ok(())
        });
        done(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = {
            let g = lock(&self.0.inner);
            g.path(ino.0).and_then(|from| {
                let to = g.rel_child(newparent.0, newname)?;
                std::fs::hard_link(from, g.root.join(&to)).map_err(errno)?;
                Ok(to)
            })
        };
        match r {
            Ok(to) => self.entry(to, reply),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut g = lock(&self.0.inner);
        match g.path(ino.0).and_then(|p| open_rw(&p).map_err(errno)) {
            Ok(f) => {
                let fh = g.add_handle(ino.0, f);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut g = lock(&self.0.inner);
        let rel = match g.rel_child(parent.0, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).mode(mode & !umask);
        if flags & libc::O_EXCL != 0 {
            opts.create_new(true);
        } else {
            opts.create(true);
        }
        let opened = opts.open(g.root.join(&rel)).and_then(|f| {
            let m = f.metadata()?;
            Ok((f, m))
        });
        match opened {
            Ok((f, meta)) => {
                let ino = g.fuse_ino(meta.ino());
                g.remember(ino, rel);
                if flags & libc::O_TRUNC != 0 {
                    g.pending.entry(ino).or_default().truncate(0);
                }
                let attr = g.attr(&meta);
                let fh = g.add_handle(ino, f);
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                );
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let g = lock(&self.0.inner);
        let r = g.file(ino.0, Some(fh.0)).and_then(|f| {
            match g.pending.get(&ino.0) {
                Some(p) => p.read(&f, offset, size),
                None => Pending::default().read(&f, offset, size),
            }
            .map_err(errno)
        });
        match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.0.delay();
        lock(&self.0.inner)
            .pending
            .entry(ino.0)
            .or_default()
            .write(offset, data);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.0.inner).handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.0.delay();
        let mut g = lock(&self.0.inner);
        let r = g.file(ino.0, Some(fh.0)).and_then(|f| {
            let mut p = g.pending.remove(&ino.0).unwrap_or_default();
            p.apply(&f, datasync).map_err(errno)
        });
        done(reply, r);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let g = lock(&self.0.inner);
        let dir = match g.path(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".into()),
            (1, FileType::Directory, "..".into()),
        ];
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let kind = match e.file_type() {
                        Ok(t) if t.is_dir() => FileType::Directory,
                        Ok(t) if t.is_symlink() => FileType::Symlink,
                        _ => FileType::RegularFile,
                    };
                    entries.push((g.fuse_ino(e.ino()), kind, e.file_name()));
                }
            }
            Err(e) => return reply.error(errno(e)),
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.0.delay();
        let path = lock(&self.0.inner).path(ino.0);
        done(
            reply,
            path.and_then(|p| File::open(p).and_then(|d| d.sync_all()).map_err(errno)),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let root = lock(&self.0.inner).root.clone();
        match statvfs(&root) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut g = lock(&self.0.inner);
        let len = match g
            .file(ino.0, Some(fh.0))
            .and_then(|f| f.metadata().map_err(errno))
        {
            Ok(m) => m.len(),
            Err(e) => return reply.error(e),
        };
        let p = g.pending.entry(ino.0).or_default();
        let want = offset + length;
        if want > p.size(len) {
            p.truncate(want);
        }
        reply.ok();
    }
}

fn statvfs(path: &Path) -> io::Result<nix::sys::statvfs::Statvfs> {
    nix::sys::statvfs::statvfs(path).map_err(io::Error::from)
}
