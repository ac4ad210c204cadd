//! Where log lines go besides standard output, as Consul's `log_file` and `enable_syslog`:
//! a log file rotated by size (`log_rotate_bytes`) and age (`log_rotate_duration`) keeping
//! `log_rotate_max_files` archives, and the local syslog socket (`/dev/log`) with Consul's
//! level-to-priority mapping and `syslog_facility`.

use registry_server::monitor::Level;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `log_file` and its rotation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// The file (a path ending in `/` is a directory: `consul.log` in it).
    pub path: PathBuf,
    /// Rotate once the file would pass this size (0: no size limit).
    pub rotate_bytes: u64,
    /// Rotate when the file is this old (Consul's default is 24h).
    pub rotate_duration: Duration,
    /// Archives kept: 0 keeps all, -1 keeps none, N keeps the newest N.
    pub rotate_max_files: i64,
}

impl LogFileConfig {
    /// The active file's path.
    pub fn active_path(&self) -> PathBuf {
        let text = self.path.to_string_lossy();
        if text.ends_with('/') || self.path.is_dir() {
            self.path.join("consul.log")
        } else {
            self.path.clone()
        }
    }
}

/// A log file that rotates itself.
#[derive(Debug)]
pub struct RotatingFile {
    cfg: LogFileConfig,
    active: PathBuf,
    file: File,
    bytes: u64,
    opened: Instant,
}

impl RotatingFile {
    /// Opens (appending to) the active file, creating its directory.
    pub fn open(cfg: LogFileConfig) -> std::io::Result<RotatingFile> {
        let active = cfg.active_path();
        if let Some(dir) = active.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&active)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            cfg,
            active,
            file,
            bytes,
            opened: Instant::now(),
        })
    }

    /// Appends one line, rotating first when it is due.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        let too_big =
            self.cfg.rotate_bytes > 0 && self.bytes > 0 && self.bytes + len > self.cfg.rotate_bytes;
        let too_old = !self.cfg.rotate_duration.is_zero()
            && self.opened.elapsed() >= self.cfg.rotate_duration;
        if too_big || too_old {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.bytes += len;
        Ok(())
    }

    /// Renames the active file to `<name>-<unix nanoseconds><ext>`, starts a new one and
    /// prunes the archives beyond `rotate_max_files`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let (stem, ext) = split_name(&self.active);
        let archived = self.active.with_file_name(format!("{stem}-{nanos}{ext}"));
        std::fs::rename(&self.active, &archived)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.active)?;
        self.bytes = 0;
        self.opened = Instant::now();
        self.prune()
    }

    fn prune(&self) -> std::io::Result<()> {
        let keep = match self.cfg.rotate_max_files {
            0 => return Ok(()),
            n if n < 0 => 0,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut archives = archives_of(&self.active)?;
        archives.sort();
        let excess = archives.len().saturating_sub(keep);
        for (_, path) in archives.into_iter().take(excess) {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }
}

/// `consul.log` -> (`consul`, `.log`).
fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// The rotated archives next to `active`, with their timestamps.
pub fn archives_of(active: &Path) -> std::io::Result<Vec<(u128, PathBuf)>> {
    let (stem, ext) = split_name(active);
    let dir = active
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = name
            .strip_prefix(&format!("{stem}-"))
            .and_then(|rest| rest.strip_suffix(ext.as_str()))
            .and_then(|n| n.parse::<u128>().ok());
        if let Some(stamp) = stamp {
            out.push((stamp, path));
        }
    }
    Ok(out)
}

/// Syslog facility codes by Consul's names.
pub fn facility_code(name: &str) -> Option<u8> {
    let code = match name.trim().to_ascii_uppercase().as_str() {
        "KERN" => 0,
        "USER" => 1,
        "MAIL" => 2,
        "DAEMON" => 3,
        "AUTH" => 4,
        "SYSLOG" => 5,
        "LPR" => 6,
        "NEWS" => 7,
        "UUCP" => 8,
        "CRON" => 9,
        "AUTHPRIV" => 10,
        "FTP" => 11,
        "LOCAL0" => 16,
        "LOCAL1" => 17,
        "LOCAL2" => 18,
        "LOCAL3" => 19,
        "LOCAL4" => 20,
        "LOCAL5" => 21,
        "LOCAL6" => 22,
        "LOCAL7" => 23,
        _ => return None,
    };
    Some(code)
}

/// Consul's level-to-severity mapping (one step down from the names: info is notice).
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Trace => 7,
        Level::Debug => 6,
        Level::Info => 5,
        Level::Warn => 4,
        Level::Error | Level::Off => 3,
    }
}

/// The local syslog socket.
#[derive(Debug)]
pub struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
    facility: u8,
    tag: String,
}

impl Syslog {
    /// The socket path: `/dev/log`, unless `REGISTRY_SYSLOG_SOCKET` names another.
    pub fn socket_path() -> PathBuf {
        std::env::var_os("REGISTRY_SYSLOG_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/log"))
    }

    /// Connects to the local syslog socket.
    pub fn connect(facility: u8) -> std::io::Result<Syslog> {
        let path = Self::socket_path();
        let socket = UnixDatagram::unbound()?;
        socket.connect(&path)?;
        // A syslog daemon that falls behind loses lines rather than stalling the agent.
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket,
            path,
            facility,
            tag: format!("consul[{}]", std::process::id()),
        })
    }

    /// Sends one message (`<PRI>tag[pid]: text`). A full socket drops the line; a syslog
    /// daemon that restarted is reconnected once.
    pub fn send(&self, level: Level, text: &str) {
        let pri = u32::from(self.facility) * 8 + u32::from(severity(level));
        let msg = format!("<{pri}>{}: {text}", self.tag);
        match self.socket.send(msg.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                let _ = self.socket.connect(&self.path);
                let _ = self.socket.send(msg.as_bytes());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_prunes_archives() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = LogFileConfig {
            path: dir.path().join("agent.log"),
            rotate_bytes: 20,
            rotate_duration: Duration::from_secs(3600),
            rotate_max_files: 2,
        };
        let mut f = RotatingFile::open(cfg).expect("open");
        for i in 0..10 {
            f.write_line(&format!("line number {i}")).expect("write");
            std::thread::sleep(Duration::from_millis(2));
        }
        let archives = archives_of(&dir.path().join("agent.log")).expect("list");
        assert_eq!(archives.len(), 2, "{archives:?}");
        let active = std::fs::read_to_string(dir.path().join("agent.log")).expect("read");
        assert_eq!(active, "line number 9\n");
    }

    #[test]
    fn directory_paths_hold_consul_log() {
        let cfg = LogFileConfig {
            path: PathBuf::from("/var/log/registry/"),
            rotate_bytes: 0,
            rotate_duration: Duration::ZERO,
            rotate_max_files: 0,
        };
        assert_eq!(
            cfg.active_path(),
            PathBuf::from("/var/log/registry/consul.log")
        );
    }

    #[test]
    fn facilities_and_priorities_follow_syslog() {
        assert_eq!(facility_code("local0"), Some(16));
        assert_eq!(facility_code("nope"), None);
        assert_eq!(16 * 8 + u32::from(severity(Level::Info)), 133);
    }
}
