//! Multi-server clusters of real `registry` processes for black-box tests.
//!
//! A [`TestCluster`] runs N servers, each on its own loopback address `127.A.B.i` (i = 1..N)
//! with the default ports (HTTP 8500, server 8300; DNS off) and its own data directory. The
//! block `127.A.B.0/24` is claimed with a lock file under the temp dir, so tests running in
//! parallel (nextest runs each in its own process) never share addresses; A is never 0, so
//! developers' own servers on `127.0.0.x` are never touched.
//!
//! The servers are started at once and form their cluster with `-bootstrap-expect` and
//! `-retry-join` naming each other. Helpers find the leader all servers agree on, kill, stop
//! and restart servers, and read and write through any of them. When a test fails (panics, or
//! the cluster is dropped without [`TestCluster::finish`]), the tail of every server's log is
//! printed and the logs are kept on disk.
//!
//! [`TestCluster::partition`] cuts the network between two groups of servers with iptables:
//! each server of a partitionable cluster runs in a cgroup of its own from its first
//! instruction on, and `OUTPUT` rules drop the packets a group's processes send to the other
//! group's addresses (outgoing connections on loopback all come from 127.0.0.1, so addresses
//! alone cannot tell the servers apart). The test process itself stays in touch with every
//! server, like a client that sits on both sides of the partition.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::Value;

use crate::{registry_bin, Resp};

/// The HTTP port every cluster server listens on (at its own address).
pub const HTTP_PORT: u16 = 8500;
/// The server (Raft and RPC) port every cluster server listens on.
pub const SERVER_PORT: u16 = 8300;
/// Default timeout of a request made through the cluster helpers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a read asks of consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// No query parameter: the leader answers (a follower forwards a read barrier).
    Default,
    /// `?consistent`: the leader confirms its leadership with a quorum first.
    Consistent,
    /// `?stale`: the receiving server answers from its own state.
    Stale,
}

impl Consistency {
    /// The query parameter, without separator.
    pub fn param(self) -> &'static str {
        match self {
            Consistency::Default => "",
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        }
    }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Servers started at once.
    pub servers: usize,
    /// `-bootstrap-expect` (defaults to `servers`).
    pub bootstrap_expect: Option<usize>,
    /// HCL fragments given to every server with `-hcl`.
    pub hcl: Vec<String>,
    /// Run every server in a cgroup of its own so that [`TestCluster::partition`] can cut it
    /// off. Starting fails when that is not possible (see [`partition_support`]).
    pub partitionable: bool,
    /// How long [`TestCluster::start`] waits for the servers to agree on a leader.
    pub leader_timeout: Duration,
    /// Extra command-line arguments of one server, by index (also for servers added later).
    pub server_args: std::collections::BTreeMap<usize, Vec<String>>,
}

impl ClusterOptions {
    /// `servers` servers that bootstrap together.
    pub fn new(servers: usize) -> Self {
        ClusterOptions {
            servers,
            bootstrap_expect: None,
            hcl: Vec::new(),
            partitionable: false,
            leader_timeout: Duration::from_secs(30),
            server_args: Default::default(),
        }
    }

    /// Extra command-line arguments for server `i` (e.g. a flag only that server gets).
    pub fn server_args(mut self, i: usize, args: &[&str]) -> Self {
        self.server_args
            .insert(i, args.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds an HCL configuration fragment for every server.
    pub fn hcl(mut self, fragment: &str) -> Self {
        self.hcl.push(fragment.to_string());
        self
    }

    /// Runs the servers in cgroups of their own (for [`TestCluster::partition`]).
    pub fn partitionable(mut self) -> Self {
        self.partitionable = true;
        self
    }
}

/// A `/24` of loopback addresses claimed for one cluster; released on drop.
#[derive(Debug)]
struct AddrBlock {
    a: u8,
    b: u8,
    lock: PathBuf,
}

impl AddrBlock {
    fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, u8::try_from(i).unwrap_or(u8::MAX))
    }

    /// Claims a free block: starts at a hash of the process ID, a counter and the clock, and
    /// takes the first block whose lock file it can create (or whose owner is gone) and whose
    /// ports are all free.
    fn claim(servers: usize) -> Result<AddrBlock> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join("registry-test-addr-blocks");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in [
            u64::from(std::process::id()),
            N.fetch_add(1, Ordering::Relaxed),
            u64::from(nanos),
        ] {
            for byte in v.to_le_bytes() {
                h ^= u64::from(byte);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        // A in 64..=253, B in 0..=255: 48,640 blocks.
        const BLOCKS: u64 = 190 * 256;
        for step in 0..BLOCKS {
            let n = (h + step) % BLOCKS;
            let a = u8::try_from(64 + n / 256).unwrap_or(253);
            let b = u8::try_from(n % 256).unwrap_or(0);
            let lock = dir.join(format!("127.{a}.{b}"));
            if !try_lock(&lock)? {
                continue;
            }
            let block = AddrBlock { a, b, lock };
            // Someone outside this harness may use the addresses: check the ports.
            let free = (1..=servers + 2).all(|i| {
                [HTTP_PORT, SERVER_PORT]
                    .iter()
                    .all(|p| TcpListener::bind((block.ip(i), *p)).is_ok())
            });
            if free {
                return Ok(block);
            }
        }
        bail!("no free loopback address block under 127.64.0.0/10")
    }
}

impl Drop for AddrBlock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Creates the lock file holding this process's ID; a lock whose process is gone is taken
/// over. `false` when another live process holds it.
fn try_lock(path: &Path) -> Result<bool> {
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut f) => {
                write!(f, "{}", std::process::id())?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(path).unwrap_or_default();
                let alive = owner
                    .trim()
                    .parse::<u32>()
                    .map(|pid| Path::new(&format!("/proc/{pid}")).exists())
                    // Being written right now: treat as taken.
                    .unwrap_or(true);
                if alive {
                    return Ok(false);
                }
                let _ = std::fs::remove_file(path);
            }
            Err(e) => return Err(anyhow!("creating {}: {e}", path.display())),
        }
    }
    Ok(false)
}

/// One server process of a [`TestCluster`].
#[derive(Debug)]
pub struct ClusterServer {
    /// Position in the cluster (0-based); its address is `127.A.B.(index + 1)`.
    pub index: usize,
    /// Its address.
    pub ip: Ipv4Addr,
    /// `-node`.
    pub node: String,
    /// `-data-dir`.
    pub data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    extra: Vec<String>,
    child: Option<Child>,
    cgroup: Option<PathBuf>,
}

impl ClusterServer {
    /// `ip:8500`.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HTTP_PORT))
    }

    /// `ip:8300`, as `/v1/status/leader` and `/v1/status/peers` show it.
    pub fn raft_addr(&self) -> String {
        format!("{}:{SERVER_PORT}", self.ip)
    }

    /// The whole log so far (all runs of this server).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn(&mut self, bin: &Path) -> Result<()> {
        if self.running() {
            bail!("server {} is already running", self.index);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        writeln!(
            &log,
            "=== harness: {} {}",
            bin.display(),
            self.args
                .iter()
                .chain(&self.extra)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        let mut cmd = match &self.cgroup {
            // The shell moves itself into the cgroup, then becomes the server: every socket
            // the server opens belongs to that cgroup.
            Some(cg) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
                    .arg(cg)
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(&self.args)
            .args(&self.extra)
            .env("NO_COLOR", "1")
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

/// Requests to the servers of a cluster by index. Cheap to clone; tasks that write while the
/// test kills or restarts servers hold one of these.
#[derive(Debug, Clone)]
pub struct ClusterClient {
    client: reqwest::Client,
    urls: Vec<String>,
}

impl ClusterClient {
    /// `http://ip:8500` of server `i`.
    pub fn url(&self, i: usize) -> Result<&str> {
        self.urls
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no server {i}"))
    }

    /// Number of servers this handle knows.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether this handle knows no server.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Sends a request to server `i`, failing after `timeout`.
    pub async fn request_timeout(
        &self,
        i: usize,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Resp> {
        let api = registry_client::Client::with_http(
            &registry_client::Config {
                address: self.url(i)?.to_string(),
                ..Default::default()
            },
            self.client.clone(),
        )?;
        let req = api.request(method.clone(), path_and_query).timeout(timeout);
        let r = api
            .send_builder(method.clone(), req, body)
            .await
            .with_context(|| format!("{method} {}{path_and_query}", api.base_url()))?;
        Ok(Resp {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    /// Sends a request to server `i` ([`REQUEST_TIMEOUT`]).
    pub async fn request(
        &self,
        i: usize,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Resp> {
        self.request_timeout(i, method, path_and_query, body, REQUEST_TIMEOUT)
            .await
    }

    /// `GET` on server `i`.
    pub async fn get(&self, i: usize, path: &str) -> Result<Resp> {
        self.request(i, Method::GET, path, None).await
    }

    /// `PUT` with a raw body on server `i`.
    pub async fn put(&self, i: usize, path: &str, body: impl Into<Vec<u8>>) -> Result<Resp> {
        self.request(i, Method::PUT, path, Some(body.into())).await
    }

    /// `PUT` of `body` through whichever of `servers` answers 200 first, retried for up to
    /// 30 s (a write during an election or a failover).
    pub async fn put_through_any(&self, servers: &[usize], path: &str, body: &str) -> Result<()> {
        crate::eventually(
            Duration::from_secs(30),
            "a write through any server",
            || async move {
                for i in servers {
                    if let Ok(r) = self.put(*i, path, body.to_string()).await {
                        if r.status == 200 {
                            return Ok(Some(()));
                        }
                    }
                }
                Ok(None)
            },
        )
        .await
    }

    /// `GET` that must answer 200 with JSON.
    pub async fn get_json(&self, i: usize, path: &str) -> Result<Value> {
        let r = self.get(i, path).await?;
        if r.status != 200 {
            bail!("server {i}: GET {path}: {} {:?}", r.status, r.text());
        }
        serde_json::from_slice(&r.body).map_err(|e| anyhow!("server {i}: GET {path}: {e}"))
    }

    /// `PUT /v1/kv/<key>` through server `i`, which must answer 200 `true`.
    pub async fn kv_put(&self, i: usize, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        let r = self.put(i, &format!("/v1/kv/{key}"), value).await?;
        if r.status != 200 || r.text().trim() != "true" {
            bail!("server {i}: PUT /v1/kv/{key}: {} {:?}", r.status, r.text());
        }
        Ok(())
    }

    /// `GET /v1/kv/<key>` through server `i`: the response (any status).
    pub async fn kv_get_resp(&self, i: usize, key: &str, mode: Consistency) -> Result<Resp> {
        let path = match mode {
            Consistency::Default => format!("/v1/kv/{key}"),
            m => format!("/v1/kv/{key}?{}", m.param()),
        };
        self.get(i, &path).await
    }

    /// The value of `key` read through server `i` (`None`: 404).
    pub async fn kv_get(&self, i: usize, key: &str, mode: Consistency) -> Result<Option<Vec<u8>>> {
        let r = self.kv_get_resp(i, key, mode).await?;
        match r.status {
            404 => Ok(None),
            200 => {
                let v = r.json();
                let value = v[0]["Value"].as_str().map(crate::unb64).unwrap_or_default();
                Ok(Some(value))
            }
            s => bail!("server {i}: GET /v1/kv/{key}: {s} {:?}", r.text()),
        }
    }

    /// Every entry under `prefix` read through server `i` with `?recurse` (empty on 404).
    pub async fn kv_list(&self, i: usize, prefix: &str, mode: Consistency) -> Result<Vec<Value>> {
        let mut path = format!("/v1/kv/{prefix}?recurse");
        if mode != Consistency::Default {
            path.push('&');
            path.push_str(mode.param());
        }
        let r = self.get(i, &path).await?;
        match r.status {
            404 => Ok(Vec::new()),
            200 => match r.json() {
                Value::Array(a) => Ok(a),
                other => bail!("server {i}: GET {path}: not an array: {other}"),
            },
            s => bail!("server {i}: GET {path}: {s} {:?}", r.text()),
        }
    }

    /// `/v1/status/leader` of server `i` (`""` without a leader).
    pub async fn status_leader(&self, i: usize) -> Result<String> {
        let r = self
            .request_timeout(
                i,
                Method::GET,
                "/v1/status/leader",
                None,
                Duration::from_secs(3),
            )
            .await?;
        if r.status != 200 {
            bail!("server {i}: /v1/status/leader: {} {:?}", r.status, r.text());
        }
        match serde_json::from_slice(&r.body)? {
            Value::String(s) => Ok(s),
            other => bail!("server {i}: /v1/status/leader is not a string: {other}"),
        }
    }

    /// `/v1/status/peers` of server `i`, sorted.
    pub async fn status_peers(&self, i: usize) -> Result<Vec<String>> {
        let r = self
            .request_timeout(
                i,
                Method::GET,
                "/v1/status/peers",
                None,
                Duration::from_secs(3),
            )
            .await?;
        if r.status != 200 {
            bail!("server {i}: /v1/status/peers: {} {:?}", r.status, r.text());
        }
        let v: Vec<String> = serde_json::from_slice(&r.body)?;
        let mut v = v;
        v.sort();
        Ok(v)
    }
}

/// N `registry` servers on their own loopback addresses. Every process is killed on drop.
pub struct TestCluster {
    servers: Vec<ClusterServer>,
    opts: ClusterOptions,
    bin: PathBuf,
    block: AddrBlock,
    dir: Option<tempfile::TempDir>,
    api: ClusterClient,
    passed: bool,
    partitions: Vec<PartitionRules>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field(
                "block",
                &format!("127.{}.{}.0/24", self.block.a, self.block.b),
            )
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Starts `n` servers at once with `-bootstrap-expect n` and waits until they agree on a
    /// leader.
    pub async fn start(n: usize) -> Result<TestCluster> {
        Self::start_with(ClusterOptions::new(n)).await
    }

    /// Starts a cluster as `opts` says and waits until its servers agree on a leader.
    pub async fn start_with(opts: ClusterOptions) -> Result<TestCluster> {
        let mut c = Self::launch(opts)?;
        let timeout = c.opts.leader_timeout;
        c.wait_for_leader(timeout).await?;
        Ok(c)
    }

    /// Starts the servers of `opts` at once without waiting for anything.
    pub fn launch(opts: ClusterOptions) -> Result<TestCluster> {
        if opts.partitionable {
            partition_support()?;
        }
        let bin = registry_bin()?;
        let block = AddrBlock::claim(opts.servers)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("registry-cluster-127.{}.{}-", block.a, block.b))
            .tempdir()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()?;
        let mut c = TestCluster {
            servers: Vec::new(),
            opts: opts.clone(),
            bin,
            block,
            dir: Some(dir),
            api: ClusterClient {
                client,
                urls: Vec::new(),
            },
            passed: false,
            partitions: Vec::new(),
        };
        let expect = opts.bootstrap_expect.unwrap_or(opts.servers);
        for _ in 0..opts.servers {
            c.push_server(Some(expect))?;
        }
        for i in 0..c.servers.len() {
            c.servers[i].spawn(&c.bin)?;
        }
        Ok(c)
    }

    /// Adds a server to the block without starting it. With `bootstrap_expect` it lists every
    /// server of the cluster as `-retry-join`; without, it starts alone (to be joined with
    /// `registry join`).
    fn push_server(&mut self, bootstrap_expect: Option<usize>) -> Result<usize> {
        let index = self.servers.len();
        let ip = self.block.ip(index + 1);
        let node = format!("s{}-{}-{}", self.block.a, self.block.b, index + 1);
        let root = self.dir_path().to_path_buf();
        let data_dir = root.join(&node);
        std::fs::create_dir_all(&data_dir)?;
        let mut args: Vec<String> = ["agent", "-server", "-data-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(data_dir.display().to_string());
        args.extend([
            "-node".to_string(),
            node.clone(),
            "-bind".to_string(),
            ip.to_string(),
            "-client".to_string(),
            ip.to_string(),
        ]);
        // No DNS unless this server's own arguments ask for it.
        let own_dns = self
            .opts
            .server_args
            .get(&index)
            .is_some_and(|a| a.iter().any(|f| f.trim_start_matches('-') == "dns-port"));
        if !own_dns {
            args.extend(["-dns-port".to_string(), "0".to_string()]);
        }
        if let Some(expect) = bootstrap_expect {
            args.push("-bootstrap-expect".into());
            args.push(expect.to_string());
            for j in 0..self.opts.servers {
                args.push("-retry-join".into());
                args.push(self.block.ip(j + 1).to_string());
            }
        }
        for h in &self.opts.hcl {
            args.push("-hcl".into());
            args.push(h.clone());
        }
        let cgroup = if self.opts.partitionable {
            let root = cgroup2_root().ok_or_else(|| anyhow!("no cgroup2 hierarchy"))?;
            let name = format!(
                "registry-test-{}-{}-{}",
                self.block.a,
                self.block.b,
                index + 1
            );
            // A test killed before its cleanup may have left rules for this name behind.
            remove_partition_rules(|path| path == name);
            let cg = root.join(&name);
            if cg.exists() {
                let _ = std::fs::remove_dir(&cg);
            }
            std::fs::create_dir_all(&cg)
                .with_context(|| format!("creating cgroup {}", cg.display()))?;
            Some(cg)
        } else {
            None
        };
        self.api
            .urls
            .push(format!("http://{}", SocketAddr::from((ip, HTTP_PORT))));
        self.servers.push(ClusterServer {
            index,
            ip,
            log_path: root.join(format!("{node}.log")),
            node,
            data_dir,
            args,
            extra: self
                .opts
                .server_args
                .get(&index)
                .cloned()
                .unwrap_or_default(),
            child: None,
            cgroup,
        });
        Ok(index)
    }

    /// Starts one more server on the next address, outside the cluster (no `-retry-join`, no
    /// `-bootstrap-expect`), and waits for its HTTP API. Its index is returned.
    pub async fn add_server(&mut self) -> Result<usize> {
        let i = self.push_server(None)?;
        self.servers[i].spawn(&self.bin)?;
        self.wait_http(i, Duration::from_secs(20)).await?;
        Ok(i)
    }

    fn dir_path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Number of servers (running or not).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the cluster has no server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Server `i`.
    pub fn server(&self, i: usize) -> &ClusterServer {
        &self.servers[i]
    }

    /// Raft addresses of the servers listed, sorted.
    pub fn raft_addrs(&self, which: &[usize]) -> Vec<String> {
        let mut v: Vec<String> = which.iter().map(|i| self.servers[*i].raft_addr()).collect();
        v.sort();
        v
    }

    /// Indexes of the servers whose process is running.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|i| self.servers[*i].running())
            .collect()
    }

    /// Whether server `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.servers[i].running()
    }

    /// A handle for requests to the servers (cheap to clone; for concurrent tasks).
    pub fn api(&self) -> ClusterClient {
        self.api.clone()
    }

    /// Waits until server `i` answers HTTP.
    pub async fn wait_http(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.servers[i].running() {
                bail!(
                    "server {i} exited; log tail:\n{}",
                    self.servers[i].log_tail(40)
                );
            }
            if self.status_leader(i).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("server {i}: no HTTP answer after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running server names the same leader, one of them, and returns its
    /// index.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> Result<usize> {
        let running = self.running();
        self.wait_for_leader_among(&running, timeout).await
    }

    /// Waits until every server of `which` names the same leader, a member of `which`, and
    /// returns its index.
    pub async fn wait_for_leader_among(
        &mut self,
        which: &[usize],
        timeout: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut answers = Vec::new();
            for &i in which {
                if !self.servers[i].running() {
                    bail!(
                        "server {i} is not running; log tail:\n{}",
                        self.servers[i].log_tail(40)
                    );
                }
                answers.push(self.status_leader(i).await.map_err(|e| format!("{e:#}")));
            }
            let first = answers.first().cloned();
            if let Some(Ok(leader)) = &first {
                let agreed =
                    !leader.is_empty() && answers.iter().all(|a| a.as_ref().ok() == Some(leader));
                if agreed {
                    if let Some(&l) = which
                        .iter()
                        .find(|&&i| self.servers[i].raft_addr() == *leader)
                    {
                        return Ok(l);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "servers {which:?} did not agree on a leader among them within {timeout:?}; \
                     last answers: {answers:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader all running servers agree on right now (waits at most 10 s).
    pub async fn leader(&mut self) -> Result<usize> {
        self.wait_for_leader(Duration::from_secs(10)).await
    }

    /// Indexes of the running servers other than the leader `leader`.
    pub fn followers(&mut self, leader: usize) -> Vec<usize> {
        self.running()
            .into_iter()
            .filter(|i| *i != leader)
            .collect()
    }

    /// Waits until every server of `which` reports exactly `expected` (Raft addresses) as its
    /// peers.
    pub async fn wait_for_peers(
        &mut self,
        which: &[usize],
        expected: &[String],
        timeout: Duration,
    ) -> Result<()> {
        let mut want = expected.to_vec();
        want.sort();
        let deadline = Instant::now() + timeout;
        loop {
            let mut answers = Vec::new();
            for &i in which {
                answers.push(self.status_peers(i).await.map_err(|e| format!("{e:#}")));
            }
            if answers.iter().all(|a| a.as_ref().ok() == Some(&want)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "servers {which:?} did not report peers {want:?} within {timeout:?}; \
                     last answers: {answers:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills server `i` with SIGKILL and reaps it.
    pub fn kill9(&mut self, i: usize) {
        self.servers[i].kill9();
    }

    /// Stops server `i` with SIGTERM (SIGKILL after 10 s); its exit status if it ran.
    pub fn stop(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.servers[i].terminate(Duration::from_secs(10))
    }

    /// Starts server `i` again with the same arguments and data directory (kills it first if
    /// it runs) and waits for its HTTP API, not for a leader.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.servers[i].kill9();
        let ip = self.servers[i].ip;
        let deadline = Instant::now() + Duration::from_secs(5);
        while (TcpListener::bind((ip, HTTP_PORT)).is_err()
            || TcpListener::bind((ip, SERVER_PORT)).is_err())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.servers[i].spawn(&self.bin)?;
        self.wait_http(i, Duration::from_secs(20)).await
    }

    /// Replaces the extra arguments of server `i` for its next start ([`TestCluster::restart`]).
    pub fn set_server_args(&mut self, i: usize, args: &[&str]) {
        self.servers[i].extra = args.iter().map(|s| s.to_string()).collect();
    }

    /// Waits for the process of server `i` to exit on its own (after `registry leave`).
    pub async fn wait_exit(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.servers[i].child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.servers[i].child = None;
                    return Ok(status);
                }
            } else {
                bail!("server {i} is not running");
            }
            if Instant::now() > deadline {
                bail!("server {i} still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the `registry` CLI with `args` (e.g. `["join", "-http-addr=...", "ADDR"]`) and
    /// returns its exit success, stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running registry {}", args.join(" ")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Cuts the network between the servers of `side` and all the others: packets either
    /// group's processes send to the other group's addresses are dropped. The rules stay until
    /// [`TestCluster::heal`] or drop.
    pub fn partition(&mut self, side: &[usize]) -> Result<()> {
        let a: BTreeSet<usize> = side.iter().copied().collect();
        let b: BTreeSet<usize> = (0..self.servers.len()).filter(|i| !a.contains(i)).collect();
        let mut rules = PartitionRules::default();
        let mut add = |from: &ClusterServer, to: &ClusterServer| -> Result<()> {
            let cg = from
                .cgroup
                .as_ref()
                .ok_or_else(|| anyhow!("the cluster was not started partitionable"))?;
            let path = cgroup_rel_path(cg)?;
            let rule = vec![
                "OUTPUT".to_string(),
                "-m".into(),
                "cgroup".into(),
                "--path".into(),
                path,
                "-d".into(),
                format!("{}/32", to.ip),
                "-m".into(),
                "comment".into(),
                "--comment".into(),
                RULE_COMMENT.into(),
                "-j".into(),
                "DROP".into(),
            ];
            iptables("-I", &rule)?;
            rules.rules.push(rule);
            Ok(())
        };
        for &x in &a {
            for &y in &b {
                add(&self.servers[x], &self.servers[y])?;
                add(&self.servers[y], &self.servers[x])?;
            }
        }
        self.partitions.push(rules);
        Ok(())
    }

    /// Removes every partition rule this cluster added.
    pub fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Marks the test as passed: dropping the cluster then prints no logs.
    pub fn finish(mut self) {
        self.passed = true;
    }

    /// Prints the last `lines` lines of every server's log on stderr.
    pub fn print_logs(&self, lines: usize) {
        for s in &self.servers {
            eprintln!(
                "----- server {} ({} {}) log {} -----\n{}\n----- end of server {} log -----",
                s.index,
                s.node,
                s.ip,
                s.log_path.display(),
                s.log_tail(lines),
                s.index
            );
        }
    }
}

impl std::ops::Deref for TestCluster {
    type Target = ClusterClient;

    fn deref(&self) -> &ClusterClient {
        &self.api
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Heal first: rules must never outlive the test.
        self.partitions.clear();
        for s in &mut self.servers {
            s.kill9();
        }
        let failed = !self.passed || std::thread::panicking();
        if failed {
            self.print_logs(60);
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("cluster logs and data kept in {}", kept.display());
            }
        }
        for s in &self.servers {
            if let Some(cg) = &s.cgroup {
                let _ = std::fs::remove_dir(cg);
            }
        }
    }
}

/// iptables rules added for one partition; deleted on drop.
#[derive(Debug, Default)]
struct PartitionRules {
    rules: Vec<Vec<String>>,
}

impl Drop for PartitionRules {
    fn drop(&mut self) {
        for r in self.rules.drain(..) {
            if let Err(e) = iptables("-D", &r) {
                eprintln!("removing iptables rule {r:?}: {e:#}");
            }
        }
    }
}

fn iptables(op: &str, rule: &[String]) -> Result<()> {
    let out = Command::new("iptables")
        .arg("-w")
        .arg(op)
        .args(rule)
        .stdin(Stdio::null())
        .output()
        .context("running iptables")?;
    if !out.status.success() {
        bail!(
            "iptables {op} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// A cgroup directory's path relative to the cgroup v2 root, as iptables' `--path` wants it.
fn cgroup_rel_path(cg: &Path) -> Result<String> {
    let root = cgroup2_root().ok_or_else(|| anyhow!("no cgroup2 hierarchy"))?;
    let rel = cg
        .strip_prefix(&root)
        .map_err(|_| anyhow!("{} is not under {}", cg.display(), root.display()))?;
    Ok(rel.display().to_string())
}

/// Whether [`TestCluster::partition`] can work here: iptables with the `cgroup` match and a
/// writable cgroup v2 hierarchy. The error says what is missing.
pub fn partition_support() -> Result<()> {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| check_partition_support().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Comment on every rule [`TestCluster::partition`] adds.
const RULE_COMMENT: &str = "registry-test-partition";

/// Deletes the partition rules (ours, by comment) whose cgroup path `stale` selects.
fn remove_partition_rules(stale: impl Fn(&str) -> bool) {
    let Ok(out) = Command::new("iptables")
        .args(["-w", "-S", "OUTPUT"])
        .stdin(Stdio::null())
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.contains(&RULE_COMMENT) || words.first() != Some(&"-A") {
            continue;
        }
        let path = words
            .iter()
            .position(|w| *w == "--path")
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or_default();
        if stale(path) {
            let rule: Vec<String> = words[1..].iter().map(|w| w.to_string()).collect();
            let _ = iptables("-D", &rule);
        }
    }
}

fn check_partition_support() -> Result<()> {
    let root = cgroup2_root().ok_or_else(|| anyhow!("no cgroup2 hierarchy is mounted"))?;
    // Rules of tests that were killed before they could clean up, for cgroups now gone.
    remove_partition_rules(|path| !root.join(path).exists());
    let probe = root.join(format!("registry-test-probe-{}", std::process::id()));
    std::fs::create_dir_all(&probe)
        .with_context(|| format!("cannot create a cgroup under {}", root.display()))?;
    let rel = cgroup_rel_path(&probe);
    let result = rel.and_then(|rel| {
        let rule: Vec<String> = [
            "OUTPUT",
            "-m",
            "cgroup",
            "--path",
            &rel,
            "-d",
            "127.255.255.254/32",
            "-m",
            "comment",
            "--comment",
            "registry-test-probe",
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        iptables("-I", &rule)?;
        iptables("-D", &rule)
    });
    let _ = std::fs::remove_dir(&probe);
    result.context("iptables cannot match on cgroups here")
}

/// `[{"KV": {"Verb": "set", ...}}, ...]` for `/v1/txn`: one set per `(key, value)`.
pub fn txn_sets<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Value {
    Value::Array(
        pairs
            .into_iter()
            .map(|(k, v)| serde_json::json!({"KV": {"Verb": "set", "Key": k, "Value": crate::b64(v)}}))
            .collect(),
    )
}
