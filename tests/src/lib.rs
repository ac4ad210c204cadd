//! Harness for black-box tests: starts real `registry` processes on loopback and talks to
//! them over HTTP, DNS and the CLI.
//!
//! Every [`TestAgent`] is its own process on its own free loopback ports with a unique node
//! name, so tests can run in parallel. The binary is found through `REGISTRY_BIN`, else in
//! `target/{release,debug}/registry` under `CARGO_TARGET_DIR` or the workspace.
//!
//! The process's stdout and stderr go to a log file; when a test panics while an agent is
//! alive, the tail of that log is printed (the test harness shows it with the failure).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod acl;
pub mod client;
pub mod cluster;
pub mod metrics;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
pub use reqwest::header::HeaderMap;
pub use reqwest::Method;
use serde_json::Value;

/// How long [`TestAgent`] waits for a leader after starting the process.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Absolute path of the `registry` binary under test.
pub fn registry_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("REGISTRY_BIN={} does not exist", p.display());
        }
        return Ok(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => workspace_root().join("target"),
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("registry");
        if let Ok(meta) = std::fs::metadata(&p) {
            if meta.is_file() {
                found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), p));
            }
        }
    }
    // Prefer the most recently built one.
    found.sort();
    match found.pop() {
        Some((_, p)) => Ok(p),
        None => bail!(
            "registry binary not found: set REGISTRY_BIN or run `cargo build -p registry-agent` \
             (looked in {}/{{release,debug}}/registry)",
            target.display()
        ),
    }
}

/// Whether `REGISTRY_TESTS_STRICT` is set (CI): no test may pass by skipping, so a missing
/// tool or a non-answering agent is a failure.
pub fn strict() -> bool {
    std::env::var_os("REGISTRY_TESTS_STRICT").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether `dig` (Debian's dnsutils) can run; when it cannot, [`skip_or_fail`] says so, so a
/// DNS test returns early with `if !have_dig() { return Ok(()); }`.
pub fn have_dig() -> bool {
    if std::process::Command::new("dig").arg("-v").output().is_ok() {
        return true;
    }
    skip_or_fail("dig is not installed (apt-get install dnsutils)");
    false
}

/// Reports why a test cannot run: a failure (panic) under [`strict`], else a printed `SKIP`.
pub fn skip_or_fail(reason: &str) {
    if strict() {
        panic!("{reason} (REGISTRY_TESTS_STRICT is set: not skipping)");
    }
    eprintln!("SKIP: {reason}");
}

/// The workspace root (parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A port that is free for both TCP and UDP on 127.0.0.1 (DNS and gossip use both).
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = t.local_addr().expect("local_addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// A node name that no other test in this run uses.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xffff)
}

/// Flags of `registry agent` beyond the ones every test passes; detected once from `agent -h`
/// so that extra listeners (server RPC, gossip, gRPC) also get free ports when supported.
fn optional_port_flags(bin: &Path) -> &'static [&'static str] {
    static FLAGS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let out = Command::new(bin)
            .args(["agent", "-h"])
            .stdin(Stdio::null())
            .output();
        let text = match out {
            Ok(o) => {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s
            }
            Err(_) => String::new(),
        };
        [
            "-server-port",
            "-serf-lan-port",
            "-serf-wan-port",
            "-grpc-port",
        ]
        .into_iter()
        .filter(|f| {
            // Accept "-flag", "--flag" and "-flag=" spellings in the help text.
            text.split(|c: char| c.is_whitespace() || c == '=' || c == ',' || c == '[')
                .any(|w| w.trim_start_matches('-') == f.trim_start_matches('-'))
        })
        .collect()
    })
}

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {:?}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as a string (first one if repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// `X-Consul-Index` as a number; panics when it is missing or not a number.
    pub fn index(&self) -> u64 {
        let h = self
            .header("X-Consul-Index")
            .unwrap_or_else(|| panic!("no X-Consul-Index header; status {}", self.status));
        h.parse()
            .unwrap_or_else(|_| panic!("X-Consul-Index is not a u64: {h:?}"))
    }

    /// Asserts the status code, printing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {:?}",
            self.text()
        );
        self
    }

    /// Asserts the headers every read endpoint must set: `X-Consul-Index` (a u64, never 0),
    /// `X-Consul-KnownLeader: true` and an integer `X-Consul-LastContact`.
    #[track_caller]
    pub fn assert_read_headers(&self) -> &Self {
        let idx = self.index();
        assert_ne!(idx, 0, "X-Consul-Index must never be 0");
        assert_eq!(
            self.header("X-Consul-KnownLeader").as_deref(),
            Some("true"),
            "X-Consul-KnownLeader"
        );
        let lc = self
            .header("X-Consul-LastContact")
            .expect("X-Consul-LastContact header missing");
        lc.parse::<u64>()
            .unwrap_or_else(|_| panic!("X-Consul-LastContact is not an integer: {lc:?}"));
        self
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> String {
        self.header("Content-Type").unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Spawn {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A running `registry agent` process. Killed on drop.
pub struct TestAgent {
    child: Option<Child>,
    spawn: Spawn,
    /// Node name given with `-node`.
    pub node: String,
    pub http_port: u16,
    pub dns_port: u16,
    /// `-data-dir` when the agent persists.
    pub data_dir: Option<PathBuf>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    api: registry_client::Client,
}

impl TestAgent {
    /// Starts `registry agent -dev` on free loopback ports and waits for a leader.
    pub async fn dev() -> Result<TestAgent> {
        Self::start(None, &[]).await
    }

    /// Like [`TestAgent::dev`] with extra command-line arguments.
    pub async fn dev_with_args(extra: &[&str]) -> Result<TestAgent> {
        Self::start(None, extra).await
    }

    /// Like [`TestAgent::dev_with_args`] with extra environment variables for the process.
    pub async fn dev_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<TestAgent> {
        Self::start_with_env(None, extra, env).await
    }

    /// A persistent single-node server with extra arguments and environment variables.
    pub async fn with_data_dir_env(
        path: impl AsRef<Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<TestAgent> {
        Self::start_with_env(Some(path.as_ref().to_path_buf()), extra, env).await
    }

    /// Starts a persistent single-node server (`-server -bootstrap-expect 1 -data-dir path`).
    pub async fn with_data_dir(path: impl AsRef<Path>) -> Result<TestAgent> {
        Self::start(Some(path.as_ref().to_path_buf()), &[]).await
    }

    async fn start(data_dir: Option<PathBuf>, extra: &[&str]) -> Result<TestAgent> {
        Self::start_with_env(data_dir, extra, &[]).await
    }

    async fn start_with_env(
        data_dir: Option<PathBuf>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<TestAgent> {
        let bin = registry_bin()?;
        let node = unique_name("node");
        let http_port = free_tcp_port();
        let dns_port = free_tcp_udp_port();
        let mut args: Vec<String> = vec!["agent".into()];
        match &data_dir {
            None => args.push("-dev".into()),
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating data dir {}", d.display()))?;
                args.extend([
                    "-server".into(),
                    "-bootstrap-expect".into(),
                    "1".into(),
                    "-data-dir".into(),
                    d.display().to_string(),
                ]);
            }
        }
        args.extend([
            "-http-port".into(),
            http_port.to_string(),
            "-dns-port".into(),
            dns_port.to_string(),
            "-node".into(),
            node.clone(),
            "-client".into(),
            "127.0.0.1".into(),
            "-bind".into(),
            "127.0.0.1".into(),
        ]);
        for flag in optional_port_flags(&bin) {
            let port = if flag.contains("serf") {
                free_tcp_udp_port()
            } else {
                free_tcp_port()
            };
            args.push(flag.to_string());
            args.push(port.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));

        let log_dir = tempfile::Builder::new()
            .prefix("registry-test-log")
            .tempdir()?;
        let log_path = log_dir.path().join(format!("{node}.log"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()?;
        let mut agent = TestAgent {
            child: None,
            spawn: Spawn {
                bin,
                args,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            node,
            http_port,
            dns_port,
            data_dir,
            log_path,
            _log_dir: log_dir,
            api: registry_client::Client::with_http(
                &registry_client::Config {
                    address: format!("127.0.0.1:{http_port}"),
                    ..Default::default()
                },
                client,
            )?,
        };
        agent.spawn_and_wait().await?;
        Ok(agent)
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        {
            let mut l = &log;
            writeln!(
                l,
                "=== harness: {} {}",
                self.spawn.bin.display(),
                self.spawn.args.join(" ")
            )?;
        }
        let child = Command::new(&self.spawn.bin)
            .args(&self.spawn.args)
            .env("NO_COLOR", "1")
            .envs(self.spawn.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.spawn.bin.display()))?;
        self.child = Some(child);
        if let Err(e) = self.wait_for_leader(START_TIMEOUT).await {
            let tail = self.log_tail(80);
            self.kill9();
            return Err(e.context(format!("agent did not become ready; log tail:\n{tail}")));
        }
        Ok(())
    }

    /// Polls `GET /v1/status/leader` every 50 ms until it returns a non-empty leader.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("registry process exited early with {status}");
                }
            } else {
                bail!("agent is not running");
            }
            match self.get("/v1/status/leader").await {
                Ok(r) if r.status == 200 => {
                    if let Ok(Value::String(s)) = serde_json::from_slice::<Value>(&r.body) {
                        if !s.is_empty() {
                            return Ok(s);
                        }
                    }
                    last = format!("200 {:?}", r.text());
                }
                Ok(r) => last = format!("{} {:?}", r.status, r.text()),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!("no leader after {timeout:?}; last answer: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process with SIGKILL and reaps it. Idempotent.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit, then SIGKILLs.
    pub fn terminate(&mut self, timeout: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same arguments (ports, node name, data dir) and waits
    /// for a leader. Kills it first if it is still running.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        // The ports were ours a moment ago; give the kernel a moment if a listener lingers.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(("127.0.0.1", self.http_port)).is_err() && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.spawn_and_wait().await
    }

    /// The agent's process ID (to signal it), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `127.0.0.1:<http port>`.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// `http://127.0.0.1:<http port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dns_port))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
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

    /// The shared HTTP client (no proxy, 60 s timeout).
    pub fn client(&self) -> &reqwest::Client {
        self.api.http()
    }

    /// The shared v1 API client pointed at this agent.
    pub fn api(&self) -> &registry_client::Client {
        &self.api
    }

    /// Sends a request; `path_and_query` starts with `/`, e.g. `/v1/kv/a?recurse`.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Resp> {
        let r = self
            .api
            .send(method, path_and_query, body)
            .await
            .context("request to the agent")?;
        Ok(Resp {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Resp> {
        self.request(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Resp> {
        self.request(Method::DELETE, path, None).await
    }

    /// PUT with a raw body (bytes or text).
    pub async fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Result<Resp> {
        self.request(Method::PUT, path, Some(body.into())).await
    }

    /// PUT with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Resp> {
        self.request(Method::PUT, path, Some(serde_json::to_vec(body)?))
            .await
    }

    /// GET that must return 200; returns the parsed JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let r = self.get(path).await?;
        if r.status != 200 {
            bail!("GET {path}: {} {:?}", r.status, r.text());
        }
        serde_json::from_slice(&r.body).map_err(|e| anyhow!("GET {path}: bad JSON {e}"))
    }

    /// `PUT /v1/kv/<key>` that must return 200 `true`.
    pub async fn kv_put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        let r = self.put(&format!("/v1/kv/{key}"), value).await?;
        if r.status != 200 || r.text().trim() != "true" {
            bail!("PUT /v1/kv/{key}: {} {:?}", r.status, r.text());
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/register` that must return 200.
    pub async fn register_service(&self, def: &Value) -> Result<()> {
        let r = self.put_json("/v1/agent/service/register", def).await?;
        if r.status != 200 {
            bail!("register service {def}: {} {:?}", r.status, r.text());
        }
        Ok(())
    }

    /// Polls `f` every 100 ms until it returns `Ok(Some(t))`, up to `timeout`.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        eventually(timeout, what, &mut f).await
    }
}

/// Polls `f` every 100 ms until it returns `Ok(Some(t))`, up to `timeout`; the error names
/// `what` and the last error or `None`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match f().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- registry log ({}) node {} http {} -----\n{}\n----- end of registry log -----",
                self.log_path.display(),
                self.node,
                self.http_port,
                self.log_tail(200)
            );
        }
        self.kill9();
    }
}

/// A tiny HTTP server on 127.0.0.1 for agent-run HTTP checks and scrape targets. Every request
/// gets the current status code and body; both can be changed while it runs.
pub struct StubHttpServer {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    body: Arc<Mutex<Vec<u8>>>,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StubHttpServer {
    /// Starts serving `status` with `body` on a free loopback port.
    pub async fn start(status: u16, body: &str) -> Result<StubHttpServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let status_v = Arc::new(AtomicU16::new(status));
        let body_v = Arc::new(Mutex::new(body.as_bytes().to_vec()));
        let hits = Arc::new(AtomicU64::new(0));
        let (s, b, h) = (status_v.clone(), body_v.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (s, b, h) = (s.clone(), b.clone(), h.clone());
                tokio::spawn(async move {
                    let _ = serve_conn(sock, &s, &b, &h).await;
                });
            }
        });
        Ok(StubHttpServer {
            addr,
            status: status_v,
            body: body_v,
            hits,
            task,
        })
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn set_body(&self, body: &str) {
        if let Ok(mut b) = self.body.lock() {
            *b = body.as_bytes().to_vec();
        }
    }

    /// Number of requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for StubHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_conn(
    mut sock: tokio::net::TcpStream,
    status: &AtomicU16,
    body: &Mutex<Vec<u8>>,
    hits: &AtomicU64,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head (bodies of check requests are ignored; GET has none).
        let head_end;
        loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                head_end = pos + 4;
                break;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let content_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + content_len {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + content_len);
        hits.fetch_add(1, Ordering::SeqCst);
        let code = status.load(Ordering::SeqCst);
        let payload = body.lock().map(|b| b.clone()).unwrap_or_default();
        let reason = match code {
            200 => "OK",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let resp = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        sock.write_all(resp.as_bytes()).await?;
        sock.write_all(&payload).await?;
        sock.flush().await?;
    }
}

/// Base64 (standard alphabet, padded) as Consul uses for KV values.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes a Consul base64 value.
pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters stay as they are).
pub fn qs(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Runs `n` async jobs with at most `concurrency` in flight; returns the first error.
pub async fn run_concurrently<F, Fut>(n: usize, concurrency: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(0..n)
        .map(f)
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
