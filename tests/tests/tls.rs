//! TLS end to end, with certificates made by the real `registry tls ca create` and
//! `registry tls cert create`: the HTTPS API with `verify_incoming` (a client without a
//! certificate is refused, one with is served; curl and the CLI with a CA file), a 3-server
//! cluster whose server port speaks only TLS with `verify_incoming` and
//! `verify_server_hostname` (it forms, a follower forwards, a client agent forwards through
//! it), plain HTTP to the server port refused, and a server or client whose certificate comes
//! from another CA unable to join, forward or call the server port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use registry_tests::cluster::{ClusterOptions, Consistency, TestCluster, SERVER_PORT};
use registry_tests::{eventually, free_tcp_port, free_tcp_udp_port, registry_bin, Method};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `registry tls ...` in `dir` and checks it succeeded.
fn tls_cli(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(registry_bin()?)
        .arg("tls")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "registry tls {}: {text}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// A CA and a server, client and CLI certificate, in a directory of their own.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn create(extra_server_args: &[&str]) -> Result<Pki> {
        let dir = tempfile::Builder::new().prefix("registry-pki").tempdir()?;
        let out = tls_cli(dir.path(), &["ca", "create"])?;
        assert!(out.contains("==> Saved consul-agent-ca.pem"), "{out}");
        assert!(out.contains("==> Saved consul-agent-ca-key.pem"), "{out}");
        let mut server = vec!["cert", "create", "-server", "-dc", "dc1"];
        server.extend_from_slice(extra_server_args);
        let out = tls_cli(dir.path(), &server)?;
        assert!(out.contains("==> Saved dc1-server-consul-0.pem"), "{out}");
        assert!(
            out.contains("==> Saved dc1-server-consul-0-key.pem"),
            "{out}"
        );
        tls_cli(dir.path(), &["cert", "create", "-client"])?;
        tls_cli(dir.path(), &["cert", "create", "-cli"])?;
        // A second server certificate gets the next number, as in Consul.
        let out = tls_cli(dir.path(), &["cert", "create", "-server"])?;
        assert!(out.contains("dc1-server-consul-1.pem"), "{out}");
        Ok(Pki { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn ca(&self) -> String {
        self.path("consul-agent-ca.pem")
    }

    fn ca_pem(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&std::fs::read(self.ca()).unwrap()).unwrap()
    }

    fn identity(&self, kind: &str) -> reqwest::Identity {
        let mut pem = std::fs::read(self.path(&format!("dc1-{kind}-consul-0.pem"))).unwrap();
        pem.extend(std::fs::read(self.path(&format!("dc1-{kind}-consul-0-key.pem"))).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    }

    /// The internal-RPC TLS settings of a server (or, with `kind = "client"`, a client agent).
    fn rpc_hcl(&self, kind: &str) -> String {
        format!(
            r#"tls {{
  defaults {{
    ca_file = "{}"
    cert_file = "{}"
    key_file = "{}"
  }}
  internal_rpc {{
    verify_incoming = true
    verify_outgoing = true
    verify_server_hostname = true
  }}
}}"#,
            self.ca(),
            self.path(&format!("dc1-{kind}-consul-0.pem")),
            self.path(&format!("dc1-{kind}-consul-0-key.pem")),
        )
    }
}

/// An HTTPS client of a server port trusting `ca`, presenting `identity`, checking the name
/// `server.dc1.consul` (resolved to `ip`).
fn rpc_client(
    ca: reqwest::Certificate,
    identity: Option<reqwest::Identity>,
    ip: std::net::Ipv4Addr,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(ca)
        .resolve(
            "server.dc1.consul",
            std::net::SocketAddr::from((ip, SERVER_PORT)),
        );
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// One agent process (a client agent, or a server outside the cluster), killed on drop.
struct Agent {
    child: Child,
    http: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn spawn(ip: &str, extra: &[String], http_port: u16) -> Result<Agent> {
        let dir = tempfile::Builder::new()
            .prefix("registry-tls-agent")
            .tempdir()?;
        let log = dir.path().join("agent.log");
        let out = std::fs::File::create(&log)?;
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-data-dir".into(),
            dir.path().join("data").display().to_string(),
            "-bind".into(),
            ip.into(),
            "-client".into(),
            ip.into(),
            "-http-port".into(),
            http_port.to_string(),
            "-dns-port".into(),
            "0".into(),
        ];
        args.extend(extra.iter().cloned());
        let child = Command::new(registry_bin()?)
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Agent {
            child,
            http: format!("http://{ip}:{http_port}"),
            log,
            _dir: dir,
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- agent log -----\n{}", self.log_text());
        }
    }
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_forms_forwards_and_refuses_strangers() -> Result<()> {
    let pki = Pki::create(&[])?;
    let rogue = Pki::create(&[])?;
    let mut c = TestCluster::start_with(ClusterOptions::new(3).hcl(&pki.rpc_hcl("server"))).await?;
    let leader = c.wait_for_leader(Duration::from_secs(30)).await?;
    let follower = c.followers(leader)[0];
    let api = c.api();
    // A write through a follower is forwarded to the leader over TLS; reads see it everywhere.
    api.kv_put(follower, "tls/one", "1").await?;
    for i in 0..3 {
        assert_eq!(
            api.kv_get(i, "tls/one", Consistency::Default).await?,
            Some(b"1".to_vec())
        );
    }
    let peers = api.status_peers(leader).await?;
    assert_eq!(peers.len(), 3, "{peers:?}");

    let ip = c.server(leader).ip;
    // Plain HTTP to the server port is refused, and does nothing.
    let r = plain()
        .post(format!(
            "http://{ip}:{SERVER_PORT}/v1/internal/cluster/join"
        ))
        .body("{}")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert!(r.text().await?.contains("HTTP request to an HTTPS server"));
    // TLS without a certificate, or with one from another CA: the handshake fails.
    let url = format!("https://server.dc1.consul:{SERVER_PORT}/v1/internal/rpc/servers");
    let no_cert = rpc_client(pki.ca_pem(), None, ip).get(&url).send().await;
    assert!(no_cert.is_err(), "served without a client certificate");
    let foreign = rpc_client(pki.ca_pem(), Some(rogue.identity("server")), ip)
        .get(&url)
        .send()
        .await;
    assert!(foreign.is_err(), "served a certificate from another CA");
    // With a certificate of the CA: served.
    let ok = rpc_client(pki.ca_pem(), Some(pki.identity("client")), ip)
        .get(&url)
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let servers: serde_json::Value = ok.json().await?;
    assert_eq!(servers.as_array().map(Vec::len), Some(3), "{servers}");

    // A client agent with a client certificate of the CA forwards through the TLS cluster.
    let joins: Vec<String> = (0..3)
        .flat_map(|i| ["-retry-join".to_string(), c.server(i).raft_addr()])
        .collect();
    let mut extra = joins.clone();
    extra.extend([
        "-node".to_string(),
        "tls-client".to_string(),
        "-server-port".to_string(),
        free_tcp_port().to_string(),
        "-serf-lan-port".to_string(),
        free_tcp_udp_port().to_string(),
        "-hcl".to_string(),
        pki.rpc_hcl("client"),
    ]);
    let client = Agent::spawn("127.0.0.1", &extra, free_tcp_port())?;
    let http = plain();
    let base = client.http.clone();
    eventually(
        Duration::from_secs(30),
        "client agent forwards a write",
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .put(format!("{base}/v1/kv/tls/via-client"))
                    .body("2")
                    .send()
                    .await;
                Ok(r.ok().filter(|r| r.status() == 200).map(|_| ()))
            }
        },
    )
    .await
    .with_context(|| client.log_text())?;
    assert_eq!(
        api.kv_get(leader, "tls/via-client", Consistency::Default)
            .await?,
        Some(b"2".to_vec())
    );

    // A client agent whose certificate comes from another CA cannot forward anything.
    let mut extra = joins.clone();
    extra.extend([
        "-node".to_string(),
        "rogue-client".to_string(),
        "-server-port".to_string(),
        free_tcp_port().to_string(),
        "-serf-lan-port".to_string(),
        free_tcp_udp_port().to_string(),
        "-hcl".to_string(),
        rogue.rpc_hcl("client"),
    ]);
    let bad_client = Agent::spawn("127.0.0.1", &extra, free_tcp_port())?;
    let base = bad_client.http.clone();
    eventually(
        Duration::from_secs(20),
        "the rogue client agent's HTTP API",
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                Ok(http
                    .get(format!("{base}/v1/agent/self"))
                    .send()
                    .await
                    .ok()
                    .map(|_| ()))
            }
        },
    )
    .await?;
    let r = http
        .put(format!("{base}/v1/kv/tls/rogue"))
        .body("x")
        .send()
        .await?;
    assert_ne!(r.status(), 200, "a write through a foreign-CA client agent");
    assert_eq!(
        api.kv_get(leader, "tls/rogue", Consistency::Default)
            .await?,
        None
    );

    // A server whose certificate comes from another CA cannot join.
    let rogue_ip = format!("{}", {
        let o = c.server(0).ip.octets();
        std::net::Ipv4Addr::new(o[0], o[1], o[2], 4)
    });
    let rogue_http = free_tcp_port();
    let rogue_server = Agent::spawn(
        &rogue_ip,
        &[
            "-server".to_string(),
            "-node".to_string(),
            "rogue-server".to_string(),
            "-retry-join".to_string(),
            c.server(leader).ip.to_string(),
            "-hcl".to_string(),
            rogue.rpc_hcl("server"),
        ],
        rogue_http,
    )?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let peers = api.status_peers(leader).await?;
    assert_eq!(peers.len(), 3, "a foreign-CA server joined: {peers:?}");
    assert!(
        !peers.iter().any(|p| p.starts_with(&rogue_ip)),
        "{peers:?}\n{}",
        rogue_server.log_text()
    );
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_with_verify_incoming() -> Result<()> {
    let pki = Pki::create(&[])?;
    let https_port = 8501;
    let hcl = format!(
        r#"ports {{
  https = {https_port}
}}
tls {{
  https {{
    ca_file = "{}"
    cert_file = "{}"
    key_file = "{}"
    verify_incoming = true
  }}
}}"#,
        pki.ca(),
        pki.path("dc1-server-consul-0.pem"),
        pki.path("dc1-server-consul-0-key.pem"),
    );
    let c = TestCluster::start_with(ClusterOptions::new(1).hcl(&hcl)).await?;
    let ip = c.server(0).ip;
    let url = format!("https://server.dc1.consul:{https_port}/v1/status/leader");
    let base = |id: Option<reqwest::Identity>| {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .add_root_certificate(pki.ca_pem())
            .resolve(
                "server.dc1.consul",
                std::net::SocketAddr::from((ip, https_port)),
            );
        if let Some(id) = id {
            b = b.identity(id);
        }
        b.build().unwrap()
    };
    assert!(
        base(None).get(&url).send().await.is_err(),
        "served without a client certificate"
    );
    let r = base(Some(pki.identity("cli"))).get(&url).send().await?;
    assert_eq!(r.status(), 200);
    assert!(r.text().await?.contains(":8300"));

    // curl, with the CA and the CLI certificate; refused without the certificate.
    let resolve = format!("server.dc1.consul:{https_port}:{ip}");
    let curl = |with_cert: bool| -> Result<(bool, String)> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "5",
            "--resolve",
            &resolve,
            "--cacert",
            &pki.ca(),
        ]);
        if with_cert {
            cmd.args([
                "--cert",
                &pki.path("dc1-cli-consul-0.pem"),
                "--key",
                &pki.path("dc1-cli-consul-0-key.pem"),
            ]);
        }
        let out = cmd.arg(&url).output().context("running curl")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (ok, body) = curl(true)?;
    assert!(ok && body.contains(":8300"), "{body}");
    let (ok, _) = curl(false)?;
    assert!(!ok, "curl without a client certificate was served");

    // The CLI: flags and CONSUL_* variables, with the server name checked.
    let addr = format!("https://{ip}:{https_port}");
    let (ok, out, err) = c.cli(&[
        "members",
        &format!("-http-addr={addr}"),
        &format!("-ca-file={}", pki.ca()),
        &format!("-client-cert={}", pki.path("dc1-cli-consul-0.pem")),
        &format!("-client-key={}", pki.path("dc1-cli-consul-0-key.pem")),
        "-tls-server-name=server.dc1.consul",
    ])?;
    assert!(ok, "{out}{err}");
    assert!(out.contains("alive"), "{out}");
    let out = Command::new(registry_bin()?)
        .args(["kv", "put", "via/https", "v"])
        .env("CONSUL_HTTP_ADDR", &addr)
        .env("CONSUL_CAPATH", pki.dir.path())
        .env("CONSUL_CLIENT_CERT", pki.path("dc1-cli-consul-0.pem"))
        .env("CONSUL_CLIENT_KEY", pki.path("dc1-cli-consul-0-key.pem"))
        .env("CONSUL_TLS_SERVER_NAME", "server.dc1.consul")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the client certificate the CLI is refused.
    let (ok, _, _) = c.cli(&[
        "members",
        &format!("-http-addr={addr}"),
        &format!("-ca-file={}", pki.ca()),
        "-tls-server-name=server.dc1.consul",
    ])?;
    assert!(!ok, "the CLI was served without a client certificate");
    // Plain HTTP still answers on its own port, and plain HTTP to the HTTPS port is refused.
    let r = plain()
        .get(format!("http://{ip}:8500/v1/kv/via/https?raw"))
        .send()
        .await?;
    assert_eq!(r.text().await?, "v");
    let r = plain()
        .get(format!("http://{ip}:{https_port}/v1/status/leader"))
        .send()
        .await?;
    assert_eq!(r.status(), 400);

    // Certificate rotation on SIGHUP: a new CA and server certificate replace the files the
    // configuration names; after the signal, clients of the new CA are served.
    let next = Pki::create(&[])?;
    for f in [
        "consul-agent-ca.pem",
        "dc1-server-consul-0.pem",
        "dc1-server-consul-0-key.pem",
    ] {
        std::fs::copy(next.path(f), pki.path(f))?;
    }
    let with_next = || {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .add_root_certificate(next.ca_pem())
            .identity(next.identity("cli"))
            .resolve(
                "server.dc1.consul",
                std::net::SocketAddr::from((ip, https_port)),
            )
            .build()
            .unwrap()
    };
    assert!(
        with_next().get(&url).send().await.is_err(),
        "new certificates served before the reload"
    );
    let pid = c.server(0).pid().expect("server pid");
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    assert!(status.success());
    eventually(Duration::from_secs(10), "the reloaded certificate", || {
        let client = with_next();
        let url = url.clone();
        async move {
            Ok(client
                .get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200))
        }
    })
    .await?;
    let _ = Method::GET;
    Ok(())
}
