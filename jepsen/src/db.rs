//! The database under test: five `registry` servers, each started inside its own network
//! namespace with `ip netns exec`, with its data directory and log under the run's store
//! directory. Servers can be killed with SIGKILL and restarted on the same data, paused with
//! SIGSTOP and resumed, and asked who leads. With `lazy_disks`, each data directory is a
//! [`lazyfs`](crate::lazyfs) mount over `n<i>/backing`, for the disk faults.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::lazyfs::Mount;
use crate::netns;

/// HTTP port of every server (on its own address).
pub const HTTP_PORT: u16 = 8500;

/// How to start the servers.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The `registry` binary.
    pub bin: PathBuf,
    /// Number of servers.
    pub servers: usize,
    /// Extra environment for every server (test-only switches).
    pub env: Vec<(String, String)>,
    /// Mount a lazy file system under every data directory (the disk faults need it).
    pub lazy_disks: bool,
    /// Client agents (each on a machine of its own) that the clients talk to; 0: none.
    pub agents: usize,
}

#[derive(Debug)]
struct Server {
    child: Option<Child>,
    paused: bool,
}

/// The running cluster.
#[derive(Debug)]
pub struct Db {
    opts: DbOptions,
    dir: PathBuf,
    servers: Vec<Mutex<Server>>,
    /// Extra environment per server, set by nemeses (e.g. a clock offset) before a restart.
    extra_env: Mutex<Vec<Vec<(String, String)>>>,
    /// The lazy file system of each server, when `lazy_disks`.
    disks: Mutex<Vec<Mount>>,
    /// The client agents' processes.
    agents: Vec<Mutex<Option<Child>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Db {
    /// Prepares (does not start) the servers; data and logs go under `dir`.
    pub fn new(opts: DbOptions, dir: &Path) -> Db {
        let servers = (0..opts.servers)
            .map(|_| {
                Mutex::new(Server {
                    child: None,
                    paused: false,
                })
            })
            .collect();
        let extra_env = Mutex::new(vec![Vec::new(); opts.servers]);
        Db {
            dir: dir.to_path_buf(),
            servers,
            extra_env,
            disks: Mutex::new(Vec::new()),
            agents: (0..opts.agents).map(|_| Mutex::new(None)).collect(),
            opts,
        }
    }

    /// Mounts the lazy file systems (once, before the first start) when `lazy_disks`.
    pub fn mount_disks(&self) -> Result<()> {
        let mut disks = lock(&self.disks);
        if !self.opts.lazy_disks || !disks.is_empty() {
            return Ok(());
        }
        for i in 1..=self.len() {
            let backing = self.dir.join(format!("n{i}")).join("backing");
            let data = self.data_dir(i);
            std::fs::create_dir_all(&backing)?;
            std::fs::create_dir_all(&data)?;
            let m = Mount::new(&backing, &data)
                .with_context(|| format!("mounting a lazy file system on {}", data.display()))?;
            disks.push(m);
        }
        Ok(())
    }

    /// Drops what server `i` wrote and did not sync (it must be stopped): the files and the
    /// bytes each lost.
    pub fn lose_unsynced(&self, i: usize) -> Vec<(String, u64)> {
        lock(&self.disks)
            .get(i - 1)
            .map(Mount::lose_unsynced)
            .unwrap_or_default()
    }

    /// Extra latency on every write and sync of server `i`'s disk.
    pub fn set_disk_delay(&self, i: usize, d: Duration) {
        if let Some(m) = lock(&self.disks).get(i - 1) {
            m.set_delay(d);
        }
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.opts.servers
    }

    /// Data directory of server `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}")).join("data")
    }

    /// Sets extra environment server `i` gets at its next start.
    pub fn set_env(&self, i: usize, env: Vec<(String, String)>) {
        if let Some(e) = lock(&self.extra_env).get_mut(i - 1) {
            *e = env;
        }
    }

    /// Whether server `i` has extra environment set.
    pub fn has_env(&self, i: usize) -> bool {
        lock(&self.extra_env)
            .get(i - 1)
            .is_some_and(|e| !e.is_empty())
    }

    /// Starts server `i` (1-based) if it is not running.
    pub fn start(&self, i: usize) -> Result<()> {
        let mut s = lock(&self.servers[i - 1]);
        if let Some(c) = s.child.as_mut() {
            if c.try_wait()?.is_none() {
                return Ok(());
            }
        }
        let extra = lock(&self.extra_env)[i - 1].clone();
        let child = self.spawn(
            &format!("n{i}"),
            &netns::ns(i),
            &netns::addr(i),
            true,
            &extra,
        )?;
        s.child = Some(child);
        s.paused = false;
        Ok(())
    }

    /// Starts `registry agent` as `node` in namespace `ns` on `addr`, joined to the servers;
    /// its data directory and log go under `<run>/<node>/`.
    fn spawn(
        &self,
        node: &str,
        ns: &str,
        addr: &str,
        server: bool,
        extra_env: &[(String, String)],
    ) -> Result<Child> {
        let data = self.dir.join(node).join("data");
        std::fs::create_dir_all(&data)?;
        let log_path = self
            .dir
            .join(node)
            .join(if server { "server.log" } else { "agent.log" });
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.opts.bin)
            .args(["agent", "-node", node, "-data-dir"])
            .arg(&data)
            .args(["-bind", addr, "-client", addr, "-dns-port", "0"]);
        if server {
            cmd.args([
                "-server",
                "-bootstrap-expect",
                &self.opts.servers.to_string(),
            ]);
        }
        for j in 1..=self.opts.servers {
            cmd.args(["-retry-join", &netns::addr(j)]);
        }
        for (k, v) in self.opts.env.iter().chain(extra_env) {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.spawn()
            .with_context(|| format!("starting {}", self.opts.bin.display()))
    }

    /// Starts every client agent.
    pub fn start_agents(&self) -> Result<()> {
        for (j, slot) in self.agents.iter().enumerate() {
            let j = j + 1;
            let child = self.spawn(
                &format!("a{j}"),
                &netns::agent_ns(j),
                &netns::agent_addr(j),
                false,
                &[],
            )?;
            *lock(slot) = Some(child);
        }
        Ok(())
    }

    /// Number of client agents.
    pub fn agents(&self) -> usize {
        self.agents.len()
    }

    /// Base URL of client agent `j`'s HTTP API.
    pub fn agent_url(j: usize) -> String {
        format!("http://{}:{HTTP_PORT}", netns::agent_addr(j))
    }

    /// Waits until every client agent forwards a write to the cluster.
    pub async fn wait_agents(&self, http: &reqwest::Client, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for j in 1..=self.agents() {
            loop {
                let url = format!("{}/v1/kv/jepsen-ready", Db::agent_url(j));
                let ok = http
                    .put(url)
                    .body("1")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(anyhow!(
                        "client agent a{j} not forwarding after {timeout:?}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }

    /// Starts every server.
    pub fn start_all(&self) -> Result<()> {
        self.mount_disks()?;
        for i in 1..=self.len() {
            self.start(i)?;
        }
        Ok(())
    }

    fn signal(&self, i: usize, sig: &str) -> Result<bool> {
        let s = lock(&self.servers[i - 1]);
        match s.child.as_ref() {
            Some(c) => {
                netns::sh("kill", &[sig, &c.id().to_string()])?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Kills server `i` with SIGKILL and reaps it. `false` if it was not running.
    pub fn kill(&self, i: usize) -> Result<bool> {
        let mut s = lock(&self.servers[i - 1]);
        let Some(mut c) = s.child.take() else {
            return Ok(false);
        };
        let _ = netns::sh("kill", &["-KILL", &c.id().to_string()]);
        c.wait()?;
        s.paused = false;
        Ok(true)
    }

    /// Stops server `i` with SIGSTOP.
    pub fn pause(&self, i: usize) -> Result<bool> {
        let ok = self.signal(i, "-STOP")?;
        if ok {
            lock(&self.servers[i - 1]).paused = true;
        }
        Ok(ok)
    }

    /// Resumes every paused server with SIGCONT.
    pub fn resume_all(&self) -> Result<()> {
        for i in 1..=self.len() {
            if lock(&self.servers[i - 1]).paused {
                self.signal(i, "-CONT")?;
                lock(&self.servers[i - 1]).paused = false;
            }
        }
        Ok(())
    }

    /// Kills every server and client agent.
    pub fn stop_all(&self) {
        for slot in &self.agents {
            if let Some(mut c) = lock(slot).take() {
                let _ = netns::sh("kill", &["-KILL", &c.id().to_string()]);
                let _ = c.wait();
            }
        }
        for i in 1..=self.len() {
            let _ = self.signal(i, "-CONT");
            let _ = self.kill(i);
        }
    }

    /// Base URL of server `i`'s HTTP API.
    pub fn url(i: usize) -> String {
        format!("http://{}:{HTTP_PORT}", netns::addr(i))
    }

    /// The leader most servers name, as a server number.
    pub async fn leader(&self, http: &reqwest::Client) -> Option<usize> {
        let mut votes = vec![0usize; self.len() + 1];
        for i in 1..=self.len() {
            let url = format!("{}/v1/status/leader", Db::url(i));
            let Ok(r) = http.get(url).timeout(Duration::from_secs(1)).send().await else {
                continue;
            };
            let Ok(text) = r.text().await else { continue };
            let host = text.trim().trim_matches('"');
            let Some(ip) = host.split(':').next() else {
                continue;
            };
            if let Some(j) = (1..=self.len()).find(|j| netns::addr(*j) == ip) {
                votes[j] += 1;
            }
        }
        let (best, n) = votes
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .map(|(i, n)| (i, *n))?;
        (n > 0).then_some(best)
    }

    /// Waits until a majority agrees on a leader and a write through it succeeds.
    pub async fn wait_ready(&self, http: &reqwest::Client, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader(http).await {
                let url = format!("{}/v1/kv/jepsen-ready", Db::url(l));
                let ok = http
                    .put(url)
                    .body("1")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    return Ok(l);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("no writable leader after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop_all();
        lock(&self.disks).clear();
    }
}
