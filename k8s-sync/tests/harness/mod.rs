//! Processes for the end-to-end tests: the fake Kubernetes API server, `k8s-sync` itself and
//! `kubectl` against the fake; plus polling helpers. Every process is killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub use registry_tests::{free_tcp_port, TestAgent};

/// Whether a missing tool must fail the test (CI) rather than skip it.
pub fn strict() -> bool {
    std::env::var("REGISTRY_TESTS_STRICT").as_deref() == Ok("1")
}

/// The `kubectl` to use (`KUBECTL`, else on PATH); `None` (test skipped) only outside CI.
pub fn kubectl_bin() -> Option<PathBuf> {
    let found = std::env::var_os("KUBECTL").map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            !strict(),
            "kubectl is required (REGISTRY_TESTS_STRICT=1): install Debian's kubernetes-client"
        );
        eprintln!("kubectl not found: skipping");
    }
    found
}

/// Fails in CI when `dig` is missing.
pub fn dig_available() -> bool {
    let ok = Command::new("dig").arg("-v").output().is_ok();
    assert!(ok || !strict(), "dig is required (REGISTRY_TESTS_STRICT=1)");
    ok
}

/// `dig +short SRV name` against the agent's DNS port, sorted lines.
pub fn dig_srv(agent: &TestAgent, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            "+short",
            "+tries=1",
            "+time=2",
            "@127.0.0.1",
            "-p",
            &agent.dns_port.to_string(),
            name,
            "SRV",
        ])
        .output()
        .expect("running dig");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn log_tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process killed on drop; its output goes to a log file printed when a test panics.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
    name: String,
}

impl Proc {
    fn spawn(
        name: &str,
        bin: &str,
        args: &[String],
        env: &[(String, String)],
        dir: &Path,
    ) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("K8S_SYNC_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("spawning {bin}"))?;
        Ok(Proc {
            child: Some(child),
            log,
            name: name.to_string(),
        })
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `t` for the exit; returns whether it exited cleanly (status 0).
    pub fn terminate(&mut self, t: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} log tail -----\n{}",
                self.name,
                log_tail(&self.log, 60)
            );
        }
        self.kill9();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made by `openssl` (PEM files).
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    anyhow::ensure!(out.status.success(), "openssl {args:?}: {out:?}");
    Ok(())
}

/// Makes [`TestCerts`] in `dir` (`ca.pem`, `srv.pem`, `srv.key`).
pub fn make_certs(dir: &Path) -> Result<TestCerts> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=k8s-sync test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    )?;
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    )?;
    Ok(TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("srv.pem"),
        key: dir.join("srv.key"),
    })
}

/// The fake API server process.
pub struct FakeApi {
    pub proc: Proc,
    pub kubeconfig: PathBuf,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl FakeApi {
    /// Starts `fake-apiserver` with short watches (5 s) and frequent bookmarks, so tests also
    /// go through watch timeouts and BOOKMARK handling.
    pub async fn start() -> Result<FakeApi> {
        Self::start_with(None, None).await
    }

    /// Like [`FakeApi::start`]; with `tls` (CA, certificate, key as PEM files) it serves HTTPS,
    /// and with `token` it answers 401 to requests without it, as a real API server does. The
    /// test's own client trusts the CA and sends the token.
    pub async fn start_with(tls: Option<&TestCerts>, token: Option<&str>) -> Result<FakeApi> {
        let dir = tempfile::Builder::new().prefix("k8s-sync-test").tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let mut args = vec![
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--max-watch-seconds".into(),
            "5".into(),
            "--bookmark-interval-ms".into(),
            "700".into(),
        ];
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20));
        if let Some(c) = tls {
            for (flag, path) in [
                ("--tls-cert", &c.cert),
                ("--tls-key", &c.key),
                ("--tls-ca", &c.ca),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            http =
                http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&c.ca)?)?);
        }
        if let Some(t) = token {
            args.push("--require-token".into());
            args.push(t.into());
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse()?,
            );
            http = http.default_headers(h);
        }
        let http = http.build()?;
        let proc = Proc::spawn(
            "fake-apiserver",
            env!("CARGO_BIN_EXE_fake-apiserver"),
            &args,
            &[],
            dir.path(),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !kubeconfig.exists() {
            if Instant::now() > deadline {
                bail!(
                    "fake-apiserver wrote no kubeconfig: {}",
                    log_tail(&proc.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kc = std::fs::read_to_string(&kubeconfig)?;
        let url = kc
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .context("server in kubeconfig")?
            .to_string();
        Ok(FakeApi {
            proc,
            kubeconfig,
            url,
            dir,
            http,
        })
    }

    /// Sends a request to the fake; returns (status, JSON or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some((ctype, b)) = body {
            req = req
                .header("Content-Type", ctype)
                .body(serde_json::to_vec(&b)?);
        }
        let r = req.send().await?;
        let st = r.status().as_u16();
        let bytes = r.bytes().await?;
        Ok((st, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Creates or replaces an object given as JSON through the API (POST, PUT on conflict).
    pub async fn apply(&self, obj: Value) -> Result<Value> {
        let path = collection_path(&obj);
        let (st, v) = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(("application/json", obj.clone())),
            )
            .await?;
        if st == 201 {
            return Ok(v);
        }
        if st != 409 {
            bail!("create {path}: {st} {v}");
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (st, v) = self
            .call(
                reqwest::Method::PUT,
                &format!("{path}/{name}"),
                Some(("application/json", obj)),
            )
            .await?;
        if st != 200 {
            bail!("update {path}/{name}: {st} {v}");
        }
        Ok(v)
    }

    /// Deletes an object by its collection path and name.
    pub async fn delete(&self, collection: &str, name: &str) -> Result<()> {
        let (st, v) = self
            .call(
                reqwest::Method::DELETE,
                &format!("{collection}/{name}"),
                None,
            )
            .await?;
        if st != 200 {
            bail!("delete {collection}/{name}: {st} {v}");
        }
        Ok(())
    }

    /// Runs kubectl against the fake with `args`; fails on a non-zero exit.
    pub fn kubectl(&self, kubectl: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
        use std::io::Write;
        let mut cmd = Command::new(kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning kubectl")?;
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(s.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("kubectl {args:?} failed: {text}");
        }
        Ok(text)
    }
}

/// `/api/v1/namespaces/<ns>/services` and the like for an object.
pub fn collection_path(obj: &Value) -> String {
    let api = obj["apiVersion"].as_str().unwrap_or("v1");
    let kind = obj["kind"].as_str().unwrap_or("");
    let plural = match kind {
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Node" => "nodes",
        "Lease" => "leases",
        "Endpoints" => "endpoints",
        other => panic!("unknown kind {other}"),
    };
    let prefix = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if kind != "Node" => format!("{prefix}/namespaces/{ns}/{plural}"),
        _ if kind == "Node" => format!("{prefix}/{plural}"),
        _ => format!("{prefix}/namespaces/default/{plural}"),
    }
}

/// A running `k8s-sync`.
pub struct Sync {
    pub proc: Proc,
    pub listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Sync {
    /// Starts k8s-sync against `agent` and `fake` with `extra` flags (after the defaults:
    /// every namespace allowed, 2 s full resync unless `extra` sets `-sync-period`).
    pub fn start(agent: &TestAgent, fake: &FakeApi, name: &str, extra: &[&str]) -> Result<Sync> {
        Self::start_env(agent, fake, name, extra, &[])
    }

    /// Like [`Sync::start`], with extra environment variables (e.g. `CONSUL_HTTP_TOKEN`).
    pub fn start_env(
        agent: &TestAgent,
        fake: &FakeApi,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Sync> {
        let listen = format!("127.0.0.1:{}", free_tcp_port());
        let mut args: Vec<String> = vec![
            "-http-addr".into(),
            agent.http_addr(),
            "-kubeconfig".into(),
            fake.kubeconfig.display().to_string(),
            "-allow-k8s-namespace=*".into(),
            "-listen".into(),
            listen.clone(),
        ];
        if !extra.iter().any(|a| a.starts_with("-sync-period")) {
            args.push("-sync-period=2s".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let proc = Proc::spawn(
            name,
            env!("CARGO_BIN_EXE_k8s-sync"),
            &args,
            &env,
            fake.dir.path(),
        )?;
        Ok(Sync {
            proc,
            listen,
            args,
            env,
            dir: fake.dir.path().to_path_buf(),
        })
    }

    /// Starts it again with the same flags (after a kill).
    pub fn restart(&mut self, name: &str) -> Result<()> {
        self.proc.kill9();
        self.proc = Proc::spawn(
            name,
            env!("CARGO_BIN_EXE_k8s-sync"),
            &self.args,
            &self.env,
            &self.dir,
        )?;
        Ok(())
    }

    /// GET on its own listener: (status, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("http://{}{path}", self.listen))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

/// Polls `f` every 50 ms until it returns `Some`, failing after `timeout` with the last value.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last: String;
    loop {
        match f().await {
            Ok(Some(v)) => return v,
            Ok(None) => last = "condition not met".into(),
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/v1/catalog/service/<name>`: sorted (ServiceAddress, ServicePort, tags) of the instances.
pub async fn catalog(agent: &TestAgent, name: &str) -> Result<Vec<(String, u64)>> {
    let v = agent
        .get(&format!("/v1/catalog/service/{name}"))
        .await?
        .json();
    let mut out: Vec<(String, u64)> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["ServiceAddress"].as_str().unwrap_or("").to_string(),
                e["ServicePort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The raw `/v1/catalog/service/<name>` entries.
pub async fn catalog_raw(agent: &TestAgent, name: &str) -> Result<Vec<Value>> {
    Ok(agent
        .get(&format!("/v1/catalog/service/{name}"))
        .await?
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Sorted addresses of `/v1/health/service/<name>?passing`.
pub async fn passing(agent: &TestAgent, name: &str) -> Result<Vec<String>> {
    let v = agent
        .get(&format!("/v1/health/service/{name}?passing"))
        .await?
        .json();
    let mut out: Vec<String> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["Service"]["Address"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    Ok(out)
}

/// A ClusterIP Service `name` in `ns` with port http 80 → 8080, as JSON.
pub fn service(ns: &str, name: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
}

/// An EndpointSlice for Service `svc` with (address, ready) endpoints on port 8080.
pub fn slice(ns: &str, svc: &str, name: &str, eps: &[(&str, bool)]) -> Value {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(a, r)| serde_json::json!({"addresses": [a], "conditions": {"ready": r}, "nodeName": "node-1",
                                         "targetRef": {"kind": "Pod", "name": format!("{svc}-{a}"), "namespace": ns}}))
        .collect();
    serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints})
}

/// Runs `k8s-sync` to completion with `args` (no kubeconfig: `KUBECONFIG` points nowhere, so a
/// run that touched the Kubernetes API would fail); returns (exit success, output).
pub fn run_k8s_sync_once(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_k8s-sync"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .context("running k8s-sync")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}
