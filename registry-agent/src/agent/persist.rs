//! Persistence of API-registered services and checks under the data directory (Consul's
//! `<data_dir>/services` and `<data_dir>/checks`), so that they survive a restart.
//!
//! One JSON file per service (the service record) and per check (its definition, or the
//! record alone for maintenance checks). Files are written atomically (temporary file,
//! fsync, rename) and named by a hash of the ID, which is also stored inside. Services
//! and checks from configuration files are not persisted: the configuration brings them
//! back.

use parking_lot::Mutex;
use registry_proto::api::AgentServiceCheck;
use registry_proto::model::{HealthCheck, NodeService};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A persisted service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PersistedService {
    /// The service record.
    #[serde(rename = "Service")]
    pub(crate) service: NodeService,
}

/// A persisted check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PersistedCheck {
    /// The check record as registered.
    #[serde(rename = "Check")]
    pub(crate) check: HealthCheck,
    /// How it runs (with its final ID, name and service); `None` for maintenance checks.
    #[serde(rename = "Definition")]
    pub(crate) definition: Option<AgentServiceCheck>,
}

/// The `services` and `checks` directories of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct Persist {
    services: PathBuf,
    checks: PathBuf,
    /// Hash of each file's content as last written or read, so that an unchanged
    /// re-registration does not rewrite (and fsync) its file.
    written: Arc<Mutex<HashMap<PathBuf, u64>>>,
}

fn fnv(bytes: &[u8], basis: u64) -> u64 {
    let mut h = basis;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A 128-bit FNV-1a style hash of `id` as 32 hex digits (two 64-bit lanes).
fn file_name(id: &str) -> String {
    format!(
        "{:016x}{:016x}",
        fnv(id.as_bytes(), 0xcbf2_9ce4_8422_2325),
        fnv(id.as_bytes(), 0x6c62_272e_07bb_0142)
    )
}

/// Writes `dir/name` so that after a crash or power loss it holds either the old or the new
/// bytes, never a torn or empty file: a synced temporary file renamed over it, then the
/// directory synced so the rename itself is durable.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn load<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    written: &Mutex<HashMap<PathBuf, u64>>,
) -> Vec<(PathBuf, T)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read persisted agent state");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() || path.extension().is_some_and(|e| e == "tmp") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                let v = serde_json::from_slice::<T>(&b).map_err(|e| e.to_string())?;
                Ok((v, fnv(&b, 0xcbf2_9ce4_8422_2325)))
            }) {
            Ok((v, digest)) => {
                written.lock().insert(path.clone(), digest);
                out.push((path, v));
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping unreadable persisted agent state");
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl Persist {
    /// Persistence under `data_dir`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Persist {
            services: data_dir.join("services"),
            checks: data_dir.join("checks"),
            written: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Writes `bytes` to `dir/name` unless that exact content is already there.
    async fn save(&self, dir: PathBuf, name: String, bytes: Vec<u8>) -> Result<(), String> {
        let path = dir.join(&name);
        let digest = fnv(&bytes, 0xcbf2_9ce4_8422_2325);
        if self.written.lock().get(&path) == Some(&digest) {
            return Ok(());
        }
        Self::blocking(move || write_atomic(&dir, &name, &bytes)).await?;
        self.written.lock().insert(path, digest);
        Ok(())
    }

    async fn delete(&self, dir: PathBuf, name: String) -> Result<(), String> {
        let path = dir.join(&name);
        self.written.lock().remove(&path);
        Self::blocking(move || remove(&dir, &name)).await
    }

    async fn blocking(
        f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), String> {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Saves a service.
    pub(crate) async fn save_service(&self, service: &NodeService) -> Result<(), String> {
        let rec = PersistedService {
            service: service.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        self.save(self.services.clone(), file_name(&service.id), bytes)
            .await
            .map_err(|e| format!("failed persisting service {:?}: {e}", service.id))
    }

    /// Removes a service's file.
    pub(crate) async fn remove_service(&self, id: &str) -> Result<(), String> {
        self.delete(self.services.clone(), file_name(id)).await
    }

    /// Saves a check.
    pub(crate) async fn save_check(&self, rec: PersistedCheck) -> Result<(), String> {
        let id = rec.check.check_id.clone();
        let bytes = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        self.save(self.checks.clone(), file_name(&id), bytes)
            .await
            .map_err(|e| format!("failed persisting check {id:?}: {e}"))
    }

    /// Removes a check's file.
    pub(crate) async fn remove_check(&self, id: &str) -> Result<(), String> {
        self.delete(self.checks.clone(), file_name(id)).await
    }

    /// Every persisted service, with its file.
    pub(crate) fn load_services(&self) -> Vec<(PathBuf, PersistedService)> {
        load(&self.services, &self.written)
    }

    /// Every persisted check, with its file.
    pub(crate) fn load_checks(&self) -> Vec<(PathBuf, PersistedCheck)> {
        load(&self.checks, &self.written)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = Persist::new(dir.path());
        assert!(p.load_services().is_empty());
        let svc = NodeService {
            id: "web/1 with spaces".into(),
            service: "web".into(),
            port: 80,
            ..Default::default()
        };
        p.save_service(&svc).await.unwrap();
        p.save_check(PersistedCheck {
            check: HealthCheck {
                check_id: "c1".into(),
                ..Default::default()
            },
            definition: None,
        })
        .await
        .unwrap();
        let loaded = p.load_services();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1.service, svc);
        assert_eq!(p.load_checks()[0].1.check.check_id, "c1");
        p.remove_service(&svc.id).await.unwrap();
        p.remove_service(&svc.id).await.unwrap();
        p.remove_check("c1").await.unwrap();
        assert!(p.load_services().is_empty());
        assert!(p.load_checks().is_empty());
        assert_ne!(file_name("a"), file_name("b"));

        // An unchanged save does not touch the disk; a changed one does.
        p.save_service(&svc).await.unwrap();
        let path = dir.path().join("services").join(file_name(&svc.id));
        std::fs::remove_file(&path).unwrap();
        p.save_service(&svc).await.unwrap();
        assert!(!path.exists(), "identical content is not rewritten");
        let mut changed = svc.clone();
        changed.port = 81;
        p.save_service(&changed).await.unwrap();
        assert!(path.exists());
        assert_eq!(file_name("a").len(), 32);
    }
}
