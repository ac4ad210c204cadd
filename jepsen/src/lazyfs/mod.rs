//! A FUSE file system under each server's data directory, for the disk faults:
//!
//! * `lose-unsynced`: file data the server wrote but did not `fsync`/`fdatasync` is held in
//!   memory; the nemesis kills the server and drops that data, as a power loss drops the page
//!   cache (SIGKILL alone keeps it). Namespace operations (create, rename, unlink, link) are
//!   durable at once, so the fault finds data that was acknowledged before it was synced,
//!   not missing directory syncs.
//! * `slow-disk`: every write and sync takes extra milliseconds.
//!
//! The file system runs on a thread of the test process ([`fuser::spawn_mount`]); the mount
//! is made in the test's mount namespace before the servers start, so they inherit it.

mod fs;
mod overlay;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption};

pub use fs::Shared;

/// One mounted file system; unmounted on drop.
pub struct Mount {
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl Mount {
    /// Mounts a lazy view of `backing` on `mountpoint` (both must exist).
    pub fn new(backing: &Path, mountpoint: &Path) -> io::Result<Mount> {
        let shared = Arc::new(Shared::new(backing)?);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
        ];
        let session = fuser::spawn_mount(fs::LazyFs(shared.clone()), mountpoint, &config)?;
        Ok(Mount {
            shared,
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
        })
    }

    /// Drops every unsynced change: the files that had some and the bytes each lost.
    pub fn lose_unsynced(&self) -> Vec<(String, u64)> {
        self.shared.lose_unsynced()
    }

    /// Bytes written and not yet synced.
    #[cfg(test)]
    pub fn unsynced_bytes(&self) -> u64 {
        self.shared.unsynced_bytes()
    }

    /// Extra latency for every write and sync (zero heals).
    pub fn set_delay(&self, d: Duration) {
        self.shared.set_delay(d);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Detach first so a server that still holds a file cannot keep the session alive.
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        drop(self.session.take());
    }
}

#[cfg(test)]
mod tests {
    //! Mounts a real FUSE file system: needs root and /dev/fuse, as the jepsen runs do.
    use super::*;
    use std::io::Write;

    fn scratch() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "lazyfs-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(p.join("backing")).unwrap();
        std::fs::create_dir_all(p.join("mnt")).unwrap();
        p
    }

    fn strict() -> bool {
        std::env::var("REGISTRY_TESTS_STRICT").is_ok_and(|v| v == "1")
    }

    #[test]
    fn unsynced_data_is_lost_and_synced_data_survives() {
        let dir = scratch();
        let m = match Mount::new(&dir.join("backing"), &dir.join("mnt")) {
            Ok(m) => m,
            Err(e) if !strict() => {
                eprintln!("skipping: cannot mount FUSE here: {e}");
                return;
            }
            Err(e) => panic!("mounting FUSE: {e}"),
        };
        let synced = dir.join("mnt/synced");
        let lazy = dir.join("mnt/lazy");
        let mut f = std::fs::File::create(&synced).unwrap();
        f.write_all(b"durable").unwrap();
        f.sync_data().unwrap();
        f.write_all(b" and not").unwrap();
        drop(f);
        std::fs::write(&lazy, b"never synced").unwrap();
        std::fs::create_dir(dir.join("mnt/sub")).unwrap();
        std::fs::rename(&lazy, dir.join("mnt/sub/renamed")).unwrap();
        assert_eq!(std::fs::read(&synced).unwrap(), b"durable and not");
        assert_eq!(
            std::fs::read(dir.join("mnt/sub/renamed")).unwrap(),
            b"never synced"
        );
        assert_eq!(m.unsynced_bytes(), 8 + 12);

        assert_eq!(
            m.lose_unsynced(),
            [("sub/renamed".to_string(), 12), ("synced".to_string(), 8)]
        );
        assert_eq!(std::fs::read(&synced).unwrap(), b"durable");
        // The rename reached the disk, the data did not: an empty file.
        assert_eq!(std::fs::read(dir.join("mnt/sub/renamed")).unwrap(), b"");
        assert_eq!(
            std::fs::read(dir.join("backing/synced")).unwrap(),
            b"durable"
        );

        // Truncation is data too: lost unless synced.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&synced)
            .unwrap();
        f.set_len(3).unwrap();
        assert_eq!(std::fs::read(&synced).unwrap(), b"dur");
        m.lose_unsynced();
        assert_eq!(std::fs::read(&synced).unwrap(), b"durable");
        f.set_len(3).unwrap();
        f.sync_all().unwrap();
        m.lose_unsynced();
        assert_eq!(std::fs::read(&synced).unwrap(), b"dur");

        // Hard links share the inode's pending data.
        std::fs::hard_link(&synced, dir.join("mnt/link")).unwrap();
        std::fs::remove_file(&synced).unwrap();
        assert_eq!(std::fs::read(dir.join("mnt/link")).unwrap(), b"dur");
        let mut names: Vec<String> = std::fs::read_dir(dir.join("mnt"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["link", "sub"]);

        m.set_delay(Duration::from_millis(50));
        let t = std::time::Instant::now();
        let f = std::fs::File::create(dir.join("mnt/slow")).unwrap();
        f.sync_all().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(50));
        drop(f);
        drop(m);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
