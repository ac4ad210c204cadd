//! The configuration corpus (`tests/config-corpus/`, see its README): each `valid/` directory
//! holds a real agent configuration (Consul's documented examples, the consul-k8s chart's
//! rendered server and client configurations) that must start the agent and pass
//! `registry validate`; each `invalid/` directory must fail both, with the same message.
//! Ignored keys must be named in the agent's start-up warnings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use registry_tests::{free_tcp_port, free_tcp_udp_port, registry_bin, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = workspace_root().join("tests/config-corpus").join(kind);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no corpus entries under {}", dir.display());
    out
}

fn flags(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("flags"))
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn validate(dir: &Path) -> Result<Output> {
    Ok(Command::new(registry_bin()?)
        .arg("validate")
        .arg(dir)
        .output()?)
}

struct Agent {
    child: Child,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TLS files the corpus's configurations name, by role: they are made with
/// `registry tls` and the paths rewritten in a copy of the directory (the agent loads them at
/// start, as Consul does).
const TLS_FILES: &[(&str, &str)] = &[
    ("/etc/consul.d/consul-agent-ca.pem", "consul-agent-ca.pem"),
    (
        "/etc/consul.d/dc1-server-consul-0-key.pem",
        "dc1-server-consul-0-key.pem",
    ),
    (
        "/etc/consul.d/dc1-server-consul-0.pem",
        "dc1-server-consul-0.pem",
    ),
    ("/consul/tls/ca/tls.crt", "consul-agent-ca.pem"),
    ("/consul/tls/server/tls.crt", "dc1-server-consul-0.pem"),
    ("/consul/tls/server/tls.key", "dc1-server-consul-0-key.pem"),
];

/// A copy of `dir` whose TLS file paths point at certificates made by `registry tls` in
/// `pki` (the directory itself when it names none).
fn with_tls_files(dir: &Path, pki: &Path, scratch: &Path) -> Result<PathBuf> {
    let mut mentions = false;
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        mentions |= TLS_FILES.iter().any(|(from, _)| text.contains(from));
        files.push((p, text));
    }
    if !mentions {
        return Ok(dir.to_path_buf());
    }
    if !pki.join("consul-agent-ca.pem").exists() {
        for args in [
            &["tls", "ca", "create"][..],
            &["tls", "cert", "create", "-server"],
        ] {
            let ok = Command::new(registry_bin()?)
                .args(args)
                .current_dir(pki)
                .output()?
                .status
                .success();
            assert!(ok, "registry {args:?}");
        }
    }
    let copy = scratch.join(dir.file_name().unwrap_or_default());
    std::fs::create_dir_all(&copy)?;
    for (p, mut text) in files {
        for (from, to) in TLS_FILES {
            text = text.replace(from, &pki.join(to).display().to_string());
        }
        std::fs::write(copy.join(p.file_name().unwrap_or_default()), text)?;
    }
    Ok(copy)
}

/// Starts the agent on `dir` with the deployment's flags, then loopback, free ports and a
/// temporary data directory (flags override files).
fn start(dir: &Path, https: bool) -> Result<(Agent, u16)> {
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("agent.log");
    let http = free_tcp_port();
    let mut args: Vec<String> = vec![
        "agent".into(),
        "-config-dir".into(),
        dir.display().to_string(),
    ];
    args.extend(flags(dir));
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    args.extend([
        "-data-dir".into(),
        data.display().to_string(),
        "-client".into(),
        "127.0.0.1".into(),
        "-bind".into(),
        "127.0.0.1".into(),
        "-advertise".into(),
        "127.0.0.1".into(),
        "-http-port".into(),
        http.to_string(),
        "-dns-port".into(),
        free_tcp_udp_port().to_string(),
        "-server-port".into(),
        free_tcp_port().to_string(),
        "-serf-lan-port".into(),
        free_tcp_udp_port().to_string(),
        "-serf-wan-port".into(),
        free_tcp_udp_port().to_string(),
        "-grpc-port".into(),
        "-1".into(),
    ]);
    if https {
        // The files' HTTPS port (8501) moved to a free one, as the other ports.
        args.extend(["-https-port".into(), free_tcp_port().to_string()]);
    }
    let out = std::fs::File::create(&log)?;
    let child = Command::new(registry_bin()?)
        .args(&args)
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .context("spawn registry agent")?;
    Ok((
        Agent {
            child,
            log,
            _tmp: tmp,
        },
        http,
    ))
}

/// The `acl.tokens.initial_management` value written in a config directory's files, if any.
fn initial_management(dir: &std::path::Path) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()? {
        let text = std::fs::read_to_string(entry.ok()?.path()).unwrap_or_default();
        if let Some(i) = text.find("initial_management") {
            let rest = &text[i + "initial_management".len()..];
            let start = rest.find('"')? + 1;
            let len = rest[start..].find('"')?;
            return Some(rest[start..start + len].to_string());
        }
    }
    None
}

fn log_of(a: &Agent) -> String {
    std::fs::read_to_string(&a.log).unwrap_or_default()
}

#[tokio::test]
async fn every_valid_config_starts_the_agent_and_validates() -> Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let pki = tempfile::tempdir()?;
    let scratch = tempfile::tempdir()?;
    for dir in corpus("valid") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let original = dir.clone();
        let dir = with_tls_files(&dir, pki.path(), scratch.path())?;
        let tls = dir != original;
        let v = validate(&dir)?;
        assert!(
            v.status.success(),
            "{name}: registry validate failed: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(String::from_utf8_lossy(&v.stdout).contains("Configuration is valid!"));

        let (mut agent, mut http) = start(&dir, tls)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut token: Option<String> = None;
        let mut port_retries = 3;
        let me: Value = loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                // A free port picked for it was taken by another test in the meantime.
                let log = log_of(&agent);
                if log.contains("Address already in use") && port_retries > 0 {
                    port_retries -= 1;
                    eprintln!("{name}: a port was taken, starting again:\n{log}");
                    (agent, http) = start(&dir, tls)?;
                    continue;
                }
                bail!("{name}: agent exited with {status}:\n{log}");
            }
            if Instant::now() > deadline {
                bail!(
                    "{name}: agent never answered /v1/agent/self:\n{}",
                    log_of(&agent)
                );
            }
            let mut req = client.get(format!("http://127.0.0.1:{http}/v1/agent/self"));
            if let Some(t) = &token {
                req = req.header("X-Consul-Token", t);
            }
            match req.send().await {
                Ok(r) if r.status() == 200 => break r.json().await?,
                // ACLs with `default_policy = deny` and no token in the files (the chart's
                // secure server): bootstrap them, as an operator would, and ask again.
                Ok(r) if r.status() == 403 && token.is_none() => {
                    // The files' own management token, if they name one.
                    token = initial_management(&dir);
                    if token.is_some() {
                        continue;
                    }
                    if let Ok(b) = client
                        .put(format!("http://127.0.0.1:{http}/v1/acl/bootstrap"))
                        .send()
                        .await
                    {
                        if b.status() == 200 {
                            let v: Value = b.json().await?;
                            token = v["SecretID"].as_str().map(str::to_string);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(me["Config"]["Datacenter"].is_string(), "{name}: {me}");
        // Each ignored key the validator names is also named by the agent at start.
        let log = log_of(&agent);
        for line in String::from_utf8_lossy(&v.stdout).lines() {
            if let Some(key) = line
                .strip_prefix("Warning: config key \"")
                .and_then(|r| r.split('"').next())
            {
                assert!(
                    log.contains(&format!("config key \\\"{key}\\\""))
                        || log.contains(&format!("config key \"{key}\"")),
                    "{name}: the agent did not warn about {key}:\n{log}"
                );
            }
        }
        drop(agent);
    }
    Ok(())
}

#[tokio::test]
async fn every_invalid_config_fails_to_start_and_to_validate() -> Result<()> {
    for dir in corpus("invalid") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let v = validate(&dir)?;
        assert!(!v.status.success(), "{name}: registry validate accepted it");
        let msg = String::from_utf8_lossy(&v.stderr).into_owned();
        let reason = msg
            .trim()
            .strip_prefix("Config validation failed: ")
            .unwrap_or_else(|| panic!("{name}: {msg}"))
            .to_string();
        let (mut agent, _) = start(&dir, false)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = agent.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                bail!("{name}: the agent started:\n{}", log_of(&agent));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "{name}");
        let log = log_of(&agent);
        assert!(
            log.contains(&reason),
            "{name}: agent said {log:?}, validate said {reason:?}"
        );
    }
    Ok(())
}
