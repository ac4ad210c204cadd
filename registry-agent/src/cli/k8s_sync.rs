//! `registry k8s-sync [flags]`: runs k8s-sync, the Kubernetes ⇄ catalog sync. It is its own
//! executable (it carries the Kubernetes client, which the registry binary does not link);
//! this subcommand replaces the process with it, so flags, exit status and signals are
//! k8s-sync's own. It is looked up as `REGISTRY_K8S_SYNC_BIN`, then `k8s-sync` next to this
//! executable, then on `PATH`.

use std::path::PathBuf;

/// Where the k8s-sync executable is, if anywhere.
pub fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_K8S_SYNC_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("k8s-sync")))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("k8s-sync"))
                .find(|p| p.is_file())
        })
    })
}

/// Runs k8s-sync with `args` (everything after `k8s-sync`); returns only on failure.
pub fn run(args: &[String]) -> i32 {
    let Some(bin) = locate() else {
        eprintln!(
            "registry k8s-sync: the k8s-sync executable was not found (looked at \
             REGISTRY_K8S_SYNC_BIN, next to this binary and on PATH); install it next to registry"
        );
        return 1;
    };
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // argv[0] as users typed it, for k8s-sync's usage lines.
        cmd.arg0("k8s-sync");
        let err = cmd.exec();
        eprintln!("registry k8s-sync: running {}: {err}", bin.display());
        1
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(st) => st.code().unwrap_or(1),
        Err(err) => {
            eprintln!("registry k8s-sync: running {}: {err}", bin.display());
            1
        }
    }
}
