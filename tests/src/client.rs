//! Client agents (`registry agent` without `-server`) for black-box tests.
//!
//! A [`ClientAgent`] is one client process joined to the servers of a test cluster. It runs
//! either on its own loopback address with the default ports ([`ClientAgent::start_at`]: HTTP
//! 8500, DNS 8600, serf 8301, as next to a [`TestCluster`](crate::cluster::TestCluster)'s
//! servers in the same `127.A.B.0/24` block) or on 127.0.0.1 with free ports
//! ([`ClientAgent::start`]). Its data and config directories live in a temp dir kept for the
//! whole test, so a restart (same arguments) finds its persisted services again. Killed on
//! drop; the log is printed when the test panics.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::Value;

use crate::{eventually, free_tcp_port, free_tcp_udp_port, registry_bin};

/// One client agent process.
pub struct ClientAgent {
    /// `-node`.
    pub name: String,
    /// Address of its HTTP and DNS listeners and of its gossip socket.
    pub ip: IpAddr,
    /// HTTP API client for this agent.
    pub api: registry_client::Client,
    /// DNS port (UDP and TCP).
    pub dns_port: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl ClientAgent {
    /// A client on 127.0.0.1 with free ports, joining `servers`.
    pub async fn start(name: &str, servers: &[String]) -> Result<ClientAgent> {
        Self::start_with(name, servers, &[]).await
    }

    /// [`ClientAgent::start`] with more command-line arguments (`-hcl ...`).
    pub async fn start_with(name: &str, servers: &[String], extra: &[&str]) -> Result<ClientAgent> {
        let ports = vec![
            ("-http-port", free_tcp_port()),
            ("-dns-port", free_tcp_udp_port()),
            ("-server-port", free_tcp_port()),
            ("-serf-lan-port", free_tcp_udp_port()),
        ];
        let mut agent = Self::launch(
            name,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &ports,
            servers,
            &[],
            extra,
        )
        .await?;
        agent.spawn_and_wait().await?;
        Ok(agent)
    }

    /// A client on 127.0.0.1 with free ports that knows no server yet: up once its own
    /// `/v1/agent/self` answers (join it later with `PUT /v1/agent/join/:addr`).
    pub async fn start_alone(name: &str) -> Result<ClientAgent> {
        let ports = vec![
            ("-http-port", free_tcp_port()),
            ("-dns-port", free_tcp_udp_port()),
            ("-server-port", free_tcp_port()),
            ("-serf-lan-port", free_tcp_udp_port()),
        ];
        let mut agent =
            Self::launch(name, IpAddr::V4(Ipv4Addr::LOCALHOST), &ports, &[], &[], &[]).await?;
        agent.spawn()?;
        let me = &agent;
        eventually(
            Duration::from_secs(30),
            "client agent's own API",
            || async {
                let r = me.get("/v1/agent/self").await;
                Ok(r.ok().filter(|r| r.status == 200).map(|_| ()))
            },
        )
        .await
        .with_context(|| agent.log_text())?;
        Ok(agent)
    }

    /// A client on its own address `ip` with the default ports, joining `servers`, with
    /// `config` files (name, contents) written into its `-config-dir` first.
    pub async fn start_at(
        name: &str,
        ip: IpAddr,
        servers: &[String],
        config: &[(&str, String)],
    ) -> Result<ClientAgent> {
        let mut agent = Self::launch(name, ip, &[], servers, config, &[]).await?;
        agent.spawn_and_wait().await?;
        Ok(agent)
    }

    async fn launch(
        name: &str,
        ip: IpAddr,
        ports: &[(&str, u16)],
        servers: &[String],
        config: &[(&str, String)],
        extra: &[&str],
    ) -> Result<ClientAgent> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("registry-client-{name}-"))
            .tempdir()?;
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(&config_dir)?;
        for (file, text) in config {
            std::fs::write(config_dir.join(file), text)?;
        }
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-node".into(),
            name.into(),
            "-data-dir".into(),
            dir.path().join("data").display().to_string(),
            "-config-dir".into(),
            config_dir.display().to_string(),
            "-bind".into(),
            ip.to_string(),
            "-client".into(),
            ip.to_string(),
        ];
        let mut http_port = 8500;
        let mut dns_port = 8600;
        for (flag, port) in ports {
            match *flag {
                "-http-port" => http_port = *port,
                "-dns-port" => dns_port = *port,
                _ => {}
            }
            args.push(flag.to_string());
            args.push(port.to_string());
        }
        for s in servers {
            args.push("-retry-join".into());
            args.push(s.clone());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let api = registry_client::Client::new(&registry_client::Config {
            address: format!("{ip}:{http_port}"),
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        })?;
        Ok(ClientAgent {
            name: name.to_string(),
            ip,
            api,
            dns_port,
            args,
            child: None,
            log: dir.path().join("agent.log"),
            dir,
        })
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.spawn()?;
        // Up once it answers reads through a server.
        let agent = &*self;
        eventually(Duration::from_secs(30), "client agent to serve", || async {
            let r = agent.get("/v1/status/leader").await;
            Ok(r.ok().filter(|r| r.status == 200 && r.text().contains(':')))
        })
        .await
        .with_context(|| self.log_text())?;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(registry_bin()?)
            .args(&self.args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning a client agent")?;
        self.child = Some(child);
        Ok(())
    }

    /// Its `-config-dir`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Its temp dir (data and config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-HUP`, ...) to the process.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("{} not running", self.name))?;
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself (after a leave).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let Some(c) = self.child.as_mut() else {
            return Ok(());
        };
        while std::time::Instant::now() < deadline {
            if c.try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} still running after {timeout:?}", self.name)
    }

    /// Starts it again with the same arguments (node name, addresses, data and config dir).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn_and_wait().await
    }

    /// The log so far (every run).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dig +short` against this agent's DNS port (`tcp`: over TCP).
    pub fn dig(&self, name: &str, qtype: &str) -> Result<String> {
        self.dig_with(name, qtype, &[])
    }

    /// `dig +short` with extra options (`+tcp`, `+bufsize=...`, ...).
    pub fn dig_with(&self, name: &str, qtype: &str, opts: &[&str]) -> Result<String> {
        let server = format!("@{}", self.ip);
        let port = self.dns_port.to_string();
        let out = Command::new("dig")
            .args([
                server.as_str(),
                "-p",
                &port,
                "+short",
                "+time=2",
                "+tries=1",
            ])
            .args(opts)
            .args([name, qtype])
            .output()
            .context("running dig (dnsutils)")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The response code dig reports (`NOERROR`, `NXDOMAIN`, ...).
    pub fn dig_status(&self, name: &str) -> Result<String> {
        let out = Command::new("dig")
            .args([
                &format!("@{}", self.ip),
                "-p",
                &self.dns_port.to_string(),
                "+time=3",
                "+tries=1",
                name,
                "A",
            ])
            .output()
            .context("running dig (dnsutils)")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(text
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("")
            .to_string())
    }

    pub async fn get(&self, path: &str) -> Result<registry_client::Response> {
        Ok(self.api.send(Method::GET, path, None).await?)
    }

    pub async fn post(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<registry_client::Response> {
        Ok(self.api.send(Method::POST, path, Some(body.into())).await?)
    }

    pub async fn put(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<registry_client::Response> {
        Ok(self.api.send(Method::PUT, path, Some(body.into())).await?)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let r = self.get(path).await?;
        if r.status != 200 {
            bail!("GET {path} on {}: {} {}", self.name, r.status, r.text());
        }
        Ok(r.json()?)
    }
}

impl Drop for ClientAgent {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A stopped process ignores nothing but SIGKILL; resume it anyway so it can die.
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "----- client agent {} log -----\n{}",
                self.name,
                self.log_text()
            );
        }
    }
}
