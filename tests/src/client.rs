//! A client agent process for black-box tests: `registry agent` without `-server`, joined to
//! the servers of a test cluster, on free loopback ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_tcp_port, free_tcp_udp_port, registry_bin, Method};
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One client agent process on 127.0.0.1 with free ports. Killed on drop.
pub struct ClientAgent {
    child: Option<Child>,
    /// A client of its HTTP API.
    pub api: registry_client::Client,
    dns_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ClientAgent {
    /// Starts a client agent named `name` joining `servers`.
    pub async fn start(name: &str, servers: &[String]) -> Result<ClientAgent> {
        Self::start_with(name, servers, &[]).await
    }

    /// [`ClientAgent::start`] with more command-line arguments (`-hcl ...`).
    pub async fn start_with(name: &str, servers: &[String], extra: &[&str]) -> Result<ClientAgent> {
        let dir = tempfile::Builder::new()
            .prefix("registry-client-agent")
            .tempdir()?;
        let http_port = free_tcp_port();
        let dns_port = free_tcp_udp_port();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-node".into(),
            name.into(),
            "-data-dir".into(),
            dir.path().join("data").display().to_string(),
            "-bind".into(),
            "127.0.0.1".into(),
            "-client".into(),
            "127.0.0.1".into(),
            "-http-port".into(),
            http_port.to_string(),
            "-dns-port".into(),
            dns_port.to_string(),
            "-server-port".into(),
            free_tcp_port().to_string(),
            "-serf-lan-port".into(),
            free_tcp_udp_port().to_string(),
        ];
        for s in servers {
            args.push("-retry-join".into());
            args.push(s.clone());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = dir.path().join("agent.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(registry_bin()?)
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning a client agent")?;
        let api = registry_client::Client::new(&registry_client::Config {
            address: format!("127.0.0.1:{http_port}"),
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        })?;
        let agent = ClientAgent {
            child: Some(child),
            api,
            dns_port,
            log,
            _dir: dir,
        };
        // Up once it answers reads through a server.
        eventually(Duration::from_secs(30), "client agent to serve", || async {
            let r = agent.get("/v1/status/leader").await;
            Ok(r.ok().filter(|r| r.status == 200 && r.text().contains(':')))
        })
        .await
        .with_context(|| agent.log_text())?;
        Ok(agent)
    }

    /// `dig +short` against this agent's DNS port.
    pub fn dig(&self, name: &str, qtype: &str) -> Result<String> {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.dns_port.to_string(),
                "+short",
                "+time=2",
                "+tries=1",
                name,
                qtype,
            ])
            .output()
            .context("running dig (dnsutils)")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET` through the agent.
    pub async fn get(&self, path: &str) -> Result<registry_client::Response> {
        Ok(self.api.send(Method::GET, path, None).await?)
    }

    /// `PUT` through the agent.
    pub async fn put(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<registry_client::Response> {
        Ok(self.api.send(Method::PUT, path, Some(body.into())).await?)
    }

    /// `GET` answered 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let r = self.get(path).await?;
        if r.status != 200 {
            bail!("GET {path}: {} {}", r.status, r.text());
        }
        Ok(r.json()?)
    }
}

impl Drop for ClientAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- client agent log -----\n{}", self.log_text());
        }
    }
}
