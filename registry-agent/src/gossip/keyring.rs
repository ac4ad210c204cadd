//! The gossip keyring of an agent: loaded from `<data_dir>/serf/local.keyring` (a JSON list
//! of base64 keys, primary first, as Consul's), created from `encrypt` when that file does not
//! exist, saved after every change; and the keyring operations of `/v1/operator/keyring`
//! carried to every member of the pool through gossip itself.
//!
//! What travels (see `docs/gossip.md`): every member publishes the fingerprints of its keys
//! (`keyring`, primary first), which is how a listing counts real keys per member; a change
//! is a request `kr:<id>` in the requesting member's own gossip state (with a TTL) that every
//! member applies once. An install request carries the new key sealed with the current
//! primary key, so it is never readable on the wire even while a pool still sends plaintext
//! (`encrypt_verify_outgoing = false`); `use` and `remove` carry only a fingerprint.

use super::crypto::{self, GossipKey, Keys};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Gossip state key: this member's key fingerprints, primary first, comma separated.
pub const KEYRING_KEY: &str = "keyring";
/// Gossip state key prefix of keyring change requests.
pub const REQUEST_PREFIX: &str = "kr:";
/// The LAN keyring file under the data directory.
pub const LOCAL_KEYRING: &str = "serf/local.keyring";
/// The WAN keyring file under the data directory (Consul's name, for a WAN pool).
pub const REMOTE_KEYRING: &str = "serf/remote.keyring";

/// A keyring change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `POST`: add a key.
    Install,
    /// `PUT`: make an installed key the primary one.
    Use,
    /// `DELETE`: remove a key that is not the primary one.
    Remove,
}

/// A keyring change request as gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// Fingerprint of the key.
    pub fp: String,
    /// Install only: the key sealed with the requester's primary key, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// The keyring of one pool, and the file it is saved in.
#[derive(Debug)]
pub struct Keyring {
    keys: Arc<Keys>,
    file: Option<PathBuf>,
}

/// Encryption settings from the configuration.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EncryptConfig {
    /// `encrypt`: the initial key (base64).
    pub key: Option<String>,
    /// `encrypt_verify_incoming`.
    pub verify_incoming: bool,
    /// `encrypt_verify_outgoing`.
    pub verify_outgoing: bool,
    /// `disable_keyring_file`.
    pub disable_keyring_file: bool,
}

impl std::fmt::Debug for EncryptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in logs.
        f.debug_struct("EncryptConfig")
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .field("verify_incoming", &self.verify_incoming)
            .field("verify_outgoing", &self.verify_outgoing)
            .field("disable_keyring_file", &self.disable_keyring_file)
            .finish()
    }
}

impl Keyring {
    /// The keyring of an agent: from `<data_dir>/serf/local.keyring` when it exists (then
    /// `encrypt` is not used, as in Consul), else from `encrypt` (saved to that file). `None`
    /// when there is neither: gossip is not encrypted.
    pub fn load(data_dir: Option<&Path>, cfg: &EncryptConfig) -> Result<Option<Keyring>, String> {
        Keyring::load_file(data_dir, LOCAL_KEYRING, cfg)
    }

    /// [`Keyring::load`] from another file of the data directory (`REMOTE_KEYRING` for a
    /// WAN pool).
    pub fn load_file(
        data_dir: Option<&Path>,
        name: &str,
        cfg: &EncryptConfig,
    ) -> Result<Option<Keyring>, String> {
        let file = match (data_dir, cfg.disable_keyring_file) {
            (Some(dir), false) => Some(dir.join(name)),
            _ => None,
        };
        let mut keys = None;
        if let Some(path) = file.as_ref().filter(|p| p.exists()) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading keyring file {}: {e}", path.display()))?;
            let list: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| format!("keyring file {}: {e}", path.display()))?;
            let parsed = list
                .iter()
                .map(|k| GossipKey::from_base64(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("keyring file {}: {e}", path.display()))?;
            if parsed.is_empty() {
                return Err(format!("keyring file {} has no keys", path.display()));
            }
            if cfg.key.is_some() {
                tracing::info!(file = %path.display(), "a keyring file exists: using its keys, not the encrypt key");
            } else {
                tracing::info!(file = %path.display(), keys = parsed.len(), "gossip keyring loaded");
            }
            keys = Some(parsed);
        }
        let keys = match (keys, &cfg.key) {
            (Some(k), _) => k,
            (None, Some(text)) => {
                vec![GossipKey::from_base64(text).map_err(|e| format!("encrypt: {e}"))?]
            }
            (None, None) => return Ok(None),
        };
        let ring = Keyring {
            keys: Arc::new(Keys::new(keys, cfg.verify_incoming, cfg.verify_outgoing)),
            file,
        };
        ring.save()?;
        Ok(Some(ring))
    }

    /// A keyring that is never saved (tests, benchmarks).
    pub fn in_memory(keys: Arc<Keys>) -> Keyring {
        Keyring { keys, file: None }
    }

    /// The keys, for the transport.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.clone()
    }

    /// What this member publishes: its key fingerprints, primary first.
    pub fn published(&self) -> String {
        self.keys
            .list()
            .iter()
            .map(GossipKey::fingerprint)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let list: Vec<String> = self.keys.list().iter().map(GossipKey::to_base64).collect();
        let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("keyring.tmp");
        write_private(&tmp, text.as_bytes()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(())
    }

    /// The request that makes every member do `op` with `key` (checked here first: removing
    /// the primary key or using a key that is not installed is refused).
    pub fn request(&self, op: Op, key: &GossipKey) -> Result<Request, String> {
        let sealed = match op {
            Op::Install => {
                let Some(primary) = self.keys.primary() else {
                    return Err("No keyring to modify (encryption not enabled)".to_string());
                };
                let mut out = Vec::new();
                crypto::seal(&primary, key.as_bytes(), &mut out);
                Some(base64::engine::general_purpose::STANDARD.encode(out))
            }
            Op::Use => {
                if self.keys.by_fingerprint(&key.fingerprint()).is_none() {
                    return Err("Requested key is not in the keyring".to_string());
                }
                None
            }
            Op::Remove => {
                if self.keys.primary().as_ref() == Some(key) {
                    return Err("Removing the primary key is not allowed".to_string());
                }
                None
            }
        };
        Ok(Request {
            op,
            fp: key.fingerprint(),
            sealed,
        })
    }

    /// Applies a request (from this member or another) and saves the keyring when it
    /// changed. Returns whether it changed.
    pub fn apply(&self, req: &Request) -> Result<bool, String> {
        let changed = match req.op {
            Op::Install => {
                let sealed = req.sealed.as_deref().ok_or("install without a key")?;
                let packet = base64::engine::general_purpose::STANDARD
                    .decode(sealed)
                    .map_err(|e| e.to_string())?;
                let raw = self
                    .keys
                    .open(&packet)
                    .map_err(|e| format!("cannot open the installed key: {e}"))?;
                let key = GossipKey::from_bytes(&raw).map_err(|e| e.to_string())?;
                if key.fingerprint() != req.fp {
                    return Err("installed key does not match its fingerprint".to_string());
                }
                self.keys.install(key)
            }
            Op::Use => {
                let key = self
                    .keys
                    .by_fingerprint(&req.fp)
                    .ok_or("Requested key is not in the keyring")?;
                self.keys.use_key(&key)?
            }
            Op::Remove => match self.keys.by_fingerprint(&req.fp) {
                Some(key) => self.keys.remove(&key)?,
                None => false,
            },
        };
        if changed {
            self.save()?;
            tracing::info!(op = ?req.op, key = %req.fp, "gossip keyring changed");
        }
        Ok(changed)
    }

    /// Whether a member publishing `published` has done `req`.
    pub fn satisfied(req: &Request, published: &str) -> bool {
        let fps: Vec<&str> = published.split(',').filter(|s| !s.is_empty()).collect();
        match req.op {
            Op::Install => fps.contains(&req.fp.as_str()),
            Op::Use => fps.first() == Some(&req.fp.as_str()),
            Op::Remove => !fps.contains(&req.fp.as_str()),
        }
    }

    /// The base64 key of a fingerprint, when installed here (else the fingerprint).
    pub fn name_of(&self, fp: &str) -> String {
        self.keys
            .by_fingerprint(fp)
            .map(|k| k.to_base64())
            .unwrap_or_else(|| format!("fingerprint:{fp}"))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg(key: Option<&str>) -> EncryptConfig {
        EncryptConfig {
            key: key.map(str::to_string),
            verify_incoming: true,
            verify_outgoing: true,
            disable_keyring_file: false,
        }
    }

    #[test]
    fn file_is_created_from_encrypt_then_wins_over_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Keyring::load(Some(dir.path()), &cfg(None))
            .unwrap()
            .is_none());
        let k1 = GossipKey::generate();
        let k2 = GossipKey::generate();
        let ring = Keyring::load(Some(dir.path()), &cfg(Some(&k1.to_base64())))
            .unwrap()
            .unwrap();
        let file = dir.path().join(LOCAL_KEYRING);
        let saved: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(saved, vec![k1.to_base64()]);
        // Rotate: install k2, use it, remove k1.
        for (op, k) in [(Op::Install, &k2), (Op::Use, &k2), (Op::Remove, &k1)] {
            let req = ring.request(op, k).unwrap();
            assert!(ring.apply(&req).unwrap(), "{op:?}");
            assert!(Keyring::satisfied(&req, &ring.published()));
        }
        // A restart with the old encrypt key keeps the rotated keyring.
        let again = Keyring::load(Some(dir.path()), &cfg(Some(&k1.to_base64())))
            .unwrap()
            .unwrap();
        assert_eq!(again.keys().list(), vec![k2.clone()]);
        assert_eq!(again.published(), k2.fingerprint());
    }

    #[test]
    fn refused_requests() {
        let k1 = GossipKey::generate();
        let ring = Keyring::in_memory(Arc::new(Keys::new(vec![k1.clone()], true, true)));
        assert_eq!(
            ring.request(Op::Remove, &k1).unwrap_err(),
            "Removing the primary key is not allowed"
        );
        assert_eq!(
            ring.request(Op::Use, &GossipKey::generate()).unwrap_err(),
            "Requested key is not in the keyring"
        );
        // An install sealed with a key this member lacks cannot be applied.
        let other =
            Keyring::in_memory(Arc::new(Keys::new(vec![GossipKey::generate()], true, true)));
        let req = other.request(Op::Install, &GossipKey::generate()).unwrap();
        assert!(ring.apply(&req).is_err());
        // The sealed key is not the key in clear.
        let k = GossipKey::generate();
        let req = ring.request(Op::Install, &k).unwrap();
        assert!(!req.sealed.as_deref().unwrap().contains(&k.to_base64()));
        assert!(!serde_json::to_string(&req)
            .unwrap()
            .contains(&k.to_base64()));
    }

    #[test]
    fn bad_files_and_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Keyring::load(Some(dir.path()), &cfg(Some("short"))).is_err());
        std::fs::create_dir_all(dir.path().join("serf")).unwrap();
        std::fs::write(dir.path().join(LOCAL_KEYRING), "[]").unwrap();
        assert!(Keyring::load(Some(dir.path()), &cfg(None)).is_err());
        std::fs::write(dir.path().join(LOCAL_KEYRING), "nope").unwrap();
        assert!(Keyring::load(Some(dir.path()), &cfg(None)).is_err());
    }
}
