//! Gossip encryption end to end on real processes: a UDP proxy between two members sees
//! node names in clear without `encrypt` and none with it; a member with another key is
//! never admitted; a key rotation (install, use, remove) on 3 servers and a client agent
//! keeps every member alive, `registry keyring -list` counts match at every step, and a
//! restarted server keeps the rotated key; a pool moves from plaintext to encrypted with
//! `encrypt_verify_incoming`/`encrypt_verify_outgoing` one server at a time without losing a
//! member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use registry_tests::cluster::{ClusterOptions, TestCluster};
use registry_tests::{eventually, registry_bin};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(40);
const SERF_PORT: u16 = 8301;

// Fixed test keys (base64 of 32, 16 and 24 bytes).
const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const K2: &str = "HH9f3S6PSg2gjCqWmR+DwA==";
const K3: &str = "Ok7S3aO5yFX3nC9oCWxTqj0yJ04fGvq1";

/// The address `n` of the cluster's loopback block (`127.A.B.n`).
fn block_ip(c: &TestCluster, n: u8) -> Ipv4Addr {
    let o = c.server(0).ip.octets();
    Ipv4Addr::new(o[0], o[1], o[2], n)
}

/// Alive member names in server `i`'s `/v1/agent/members`.
async fn alive(c: &TestCluster, i: usize) -> Result<Vec<String>> {
    let v = c.api().get_json(i, "/v1/agent/members").await?;
    let mut names: Vec<String> = v
        .as_array()
        .ok_or_else(|| anyhow!("members: {v}"))?
        .iter()
        .filter(|m| m["Status"] == 1)
        .map(|m| m["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Waits until every running server in `servers` lists exactly `want` alive.
async fn converged(c: &TestCluster, servers: &[usize], want: &[String]) -> Result<()> {
    let mut want = want.to_vec();
    want.sort();
    for &i in servers {
        eventually(
            WAIT,
            &format!("server {i} to list {want:?} alive"),
            || async { Ok((alive(c, i).await? == want).then_some(())) },
        )
        .await?;
    }
    Ok(())
}

/// A client agent process on its own loopback address of the cluster's block.
struct Client {
    child: Option<Child>,
    name: String,
    ip: Ipv4Addr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Client {
    fn start(
        name: &str,
        ip: Ipv4Addr,
        advertise: Option<Ipv4Addr>,
        join: Ipv4Addr,
        extra: &[&str],
    ) -> Result<Client> {
        let dir = tempfile::Builder::new()
            .prefix("registry-gossip-client")
            .tempdir()?;
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-node".into(),
            name.into(),
            "-data-dir".into(),
            dir.path().join("data").display().to_string(),
            "-bind".into(),
            ip.to_string(),
            "-client".into(),
            ip.to_string(),
            "-dns-port".into(),
            "0".into(),
            "-retry-join".into(),
            join.to_string(),
        ];
        if let Some(a) = advertise {
            args.push("-advertise".into());
            args.push(a.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
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
        Ok(Client {
            child: Some(child),
            name: name.to_string(),
            ip,
            log,
            _dir: dir,
        })
    }

    fn http(&self) -> String {
        format!("-http-addr={}:8500", self.ip)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- client {} log -----\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A UDP proxy on `listen` to `target`: each sender gets an upstream socket of its own so
/// replies go back to it. Every datagram in either direction is appended to the capture.
async fn udp_proxy(
    listen: SocketAddr,
    target: SocketAddr,
    capture: Arc<Mutex<Vec<u8>>>,
) -> Result<()> {
    let front = Arc::new(UdpSocket::bind(listen).await?);
    tokio::spawn(async move {
        let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, peer)) = front.recv_from(&mut buf).await else {
                return;
            };
            capture.lock().unwrap().extend_from_slice(&buf[..n]);
            let up = match upstreams.get(&peer) {
                Some(u) => u.clone(),
                None => {
                    let Ok(u) = UdpSocket::bind(SocketAddr::new(listen.ip(), 0)).await else {
                        continue;
                    };
                    let u = Arc::new(u);
                    let (u2, f2, cap2) = (u.clone(), front.clone(), capture.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                            cap2.lock().unwrap().extend_from_slice(&buf[..n]);
                            let _ = f2.send_to(&buf[..n], peer).await;
                        }
                    });
                    upstreams.insert(peer, u.clone());
                    u
                }
            };
            let _ = up.send_to(&buf[..n], target).await;
        }
    });
    Ok(())
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// One server and one client whose gossip address is a proxy; returns the server's and the
/// client's node names and what the proxy saw in 6 s of gossip once the client is a member.
async fn capture_gossip(encrypt: Option<&str>) -> Result<(String, String, Vec<u8>)> {
    let mut opts = ClusterOptions::new(1);
    if let Some(k) = encrypt {
        opts = opts.server_args(0, &["-encrypt", k]);
    }
    let mut c = TestCluster::start_with(opts).await?;
    c.wait_for_leader(WAIT).await?;
    let (bind, front) = (block_ip(&c, 2), block_ip(&c, 3));
    let capture = Arc::new(Mutex::new(Vec::new()));
    udp_proxy(
        SocketAddr::from((front, SERF_PORT)),
        SocketAddr::from((bind, SERF_PORT)),
        capture.clone(),
    )
    .await?;
    let extra: Vec<&str> = encrypt.map(|k| vec!["-encrypt", k]).unwrap_or_default();
    let client = Client::start(
        "canary-member-name",
        bind,
        Some(front),
        c.server(0).ip,
        &extra,
    )?;
    converged(&c, &[0], &[c.server(0).node.clone(), client.name.clone()]).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let seen = capture.lock().unwrap().clone();
    if seen.len() < 1000 {
        bail!("the proxy saw only {} bytes of gossip", seen.len());
    }
    let server = c.server(0).node.clone();
    let name = client.name.clone();
    c.finish();
    Ok((server, name, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_sees_node_names_only_without_encryption() -> Result<()> {
    let (server, client, bytes) = capture_gossip(None).await?;
    assert!(
        contains(&bytes, &server) || contains(&bytes, &client),
        "plaintext gossip shows a node name ({} bytes captured)",
        bytes.len()
    );
    assert!(
        contains(&bytes, "dc1"),
        "plaintext gossip shows the datacenter"
    );

    let (server, client, bytes) = capture_gossip(Some(K1)).await?;
    for needle in [
        server.as_str(),
        client.as_str(),
        "canary",
        "dc1",
        "consul",
        "role",
    ] {
        assert!(
            !contains(&bytes, needle),
            "{needle:?} in clear in encrypted gossip"
        );
    }
    // Every datagram starts with the format version.
    assert_eq!(bytes.first(), Some(&1u8));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_key_is_not_admitted() -> Result<()> {
    let opts = ClusterOptions::new(2)
        .server_args(0, &["-encrypt", K1])
        .server_args(1, &["-encrypt", K1]);
    let mut c = TestCluster::start_with(opts).await?;
    c.wait_for_leader(WAIT).await?;
    let pool = vec![c.server(0).node.clone(), c.server(1).node.clone()];
    converged(&c, &[0, 1], &pool).await?;
    // A client agent with another key (a 24-byte one) that keeps trying to join.
    let ip = block_ip(&c, 3);
    let odd = Client::start(
        "odd-key-client",
        ip,
        None,
        c.server(0).ip,
        &["-encrypt", K3],
    )?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://{ip}:8500/v1/agent/members");
    eventually(WAIT, "the odd client to answer", || async {
        Ok(http
            .get(&url)
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ()))
    })
    .await?;
    // An explicit join fails too.
    let (ok, _out, err) = c.cli(&["join", &odd.http(), &c.server(1).ip.to_string()])?;
    assert!(!ok, "join with a wrong key must fail");
    assert!(err.contains("Failed to join"), "{err}");
    for _ in 0..10 {
        assert_eq!(alive(&c, 0).await?, pool);
        assert_eq!(alive(&c, 1).await?, pool);
        let members = c.api().get_json(0, "/v1/agent/members").await?;
        assert!(
            !members.to_string().contains(&odd.name),
            "the odd member is listed: {members}"
        );
        // And it sees nobody but itself.
        let seen: serde_json::Value = http.get(&url).send().await?.json().await?;
        let names: Vec<&str> = seen
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert_eq!(names, vec![odd.name.as_str()], "{seen}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The refused packets were counted.
    let metrics = c
        .api()
        .get(0, "/v1/agent/metrics?format=prometheus")
        .await?
        .text();
    let dropped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("registry_gossip_packets_dropped") && l.contains("auth"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped > 0.0, "no dropped packets counted:\n{metrics}");
    c.finish();
    Ok(())
}

/// `registry keyring -list` through `http`: key -> (holders, members) of the LAN pool.
fn keyring_list(c: &TestCluster, http: &str) -> Result<HashMap<String, (u64, u64)>> {
    let (ok, out, err) = c.cli(&["keyring", "-list", http])?;
    if !ok {
        bail!("keyring -list failed: {err}");
    }
    let mut keys = HashMap::new();
    let mut in_lan = false;
    for line in out.lines() {
        if line.ends_with("(LAN):") {
            in_lan = true;
            continue;
        }
        if in_lan {
            if let Some((key, count)) = line.trim().split_once(' ') {
                let count = count.trim_matches(|ch| ch == '[' || ch == ']');
                let (a, b) = count
                    .split_once('/')
                    .ok_or_else(|| anyhow!("line {line:?}"))?;
                keys.insert(key.to_string(), (a.parse()?, b.parse()?));
            }
        }
    }
    if !out.starts_with("==> Gathering installed encryption keys...") {
        bail!("unexpected output: {out}");
    }
    Ok(keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_every_member_alive_and_survives_a_restart() -> Result<()> {
    let mut opts = ClusterOptions::new(3);
    for i in 0..3 {
        opts = opts.server_args(i, &["-encrypt", K1]);
    }
    let mut c = TestCluster::start_with(opts).await?;
    c.wait_for_leader(WAIT).await?;
    let client = Client::start(
        "gossip-client",
        block_ip(&c, 4),
        None,
        c.server(0).ip,
        &["-encrypt", K1],
    )?;
    let mut pool: Vec<String> = (0..3).map(|i| c.server(i).node.clone()).collect();
    pool.push(client.name.clone());
    converged(&c, &[0, 1, 2], &pool).await?;

    // Watch the member lists of every server for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let api = c.api();
    let watcher = {
        let (stop, pool) = (stop.clone(), pool.clone());
        tokio::spawn(async move {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for i in 0..3 {
                    if let Ok(v) = api.get_json(i, "/v1/agent/members").await {
                        for m in v.as_array().into_iter().flatten() {
                            if m["Status"] != 1 && pool.iter().any(|p| m["Name"] == p.as_str()) {
                                bad.push(format!("server {i}: {m}"));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            bad
        })
    };
    let s0 = format!("-http-addr={}", c.server(0).http_addr());
    let s2 = format!("-http-addr={}", c.server(2).http_addr());
    assert_eq!(
        keyring_list(&c, &s0)?,
        HashMap::from([(K1.to_string(), (4, 4))])
    );

    let (ok, out, err) = c.cli(&["keyring", "-install", K2, &s0])?;
    assert!(ok, "install: {out} {err}");
    assert_eq!(out.trim(), "==> Installing new gossip encryption key...");
    let both = HashMap::from([(K1.to_string(), (4, 4)), (K2.to_string(), (4, 4))]);
    // The agent that made the change answered once every member published it; through
    // another server and the client agent the same counts, once gossip brought them there.
    assert_eq!(keyring_list(&c, &s0)?, both);
    for via in [&s2, &client.http()] {
        eventually(
            Duration::from_secs(5),
            "the same counts elsewhere",
            || async { Ok((keyring_list(&c, via)? == both).then_some(())) },
        )
        .await?;
    }

    let (ok, out, err) = c.cli(&["keyring", "-use", K2, &client.http()])?;
    assert!(ok, "use: {out} {err}");
    // The agent that made the change answered once every member published it, so its own
    // listing has it at once; another member's listing has it once gossip brought it there.
    let v: serde_json::Value =
        reqwest::get(format!("http://{}:8500/v1/operator/keyring", client.ip))
            .await?
            .json()
            .await?;
    assert_eq!(v[0]["PrimaryKeys"], serde_json::json!({ K2: 4 }), "{v}");
    let v = eventually(
        Duration::from_secs(5),
        "server 1 lists the new primary",
        || async {
            let v = c.api().get_json(1, "/v1/operator/keyring").await?;
            Ok((v[0]["PrimaryKeys"] == serde_json::json!({ K2: 4 })).then_some(v))
        },
    )
    .await?;
    assert_eq!(v[0]["NumNodes"], 4);
    assert_eq!(v[0]["WAN"], false);
    assert_eq!(v[0]["Datacenter"], "dc1");

    // The primary key cannot be removed.
    let (ok, _, err) = c.cli(&["keyring", "-remove", K2, &s0])?;
    assert!(!ok);
    assert!(
        err.contains("Removing the primary key is not allowed"),
        "{err}"
    );

    let (ok, out, err) = c.cli(&["keyring", "-remove", K1, &s2])?;
    assert!(ok, "remove: {out} {err}");
    let only_k2 = HashMap::from([(K2.to_string(), (4, 4))]);
    assert_eq!(keyring_list(&c, &s2)?, only_k2);
    eventually(Duration::from_secs(5), "server 0 lists K2 only", || async {
        Ok((keyring_list(&c, &s0)? == only_k2).then_some(()))
    })
    .await?;
    converged(&c, &[0, 1, 2], &pool).await?;

    stop.store(true, Ordering::Relaxed);
    let bad = watcher.await?;
    assert!(
        bad.is_empty(),
        "members not alive during the rotation: {bad:?}"
    );

    // The old key no longer opens anything: the keyring file of every server holds K2 only.
    for i in 0..3 {
        let file = c.server(i).data_dir.join("serf/local.keyring");
        let keys: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        assert_eq!(keys, vec![K2.to_string()], "{}", file.display());
    }
    // A restart (still given -encrypt K1) keeps the rotated keyring and rejoins.
    c.restart(1).await?;
    converged(&c, &[0, 1, 2], &pool).await?;
    assert_eq!(
        keyring_list(&c, &s0)?,
        HashMap::from([(K2.to_string(), (4, 4))])
    );
    assert!(c.server(1).log().contains("a keyring file exists"));

    // Bad input is refused with 400.
    let r = c
        .api()
        .request(
            1,
            registry_tests::Method::POST,
            "/v1/operator/keyring",
            Some(br#"{"Key":"c2hvcnQ="}"#.to_vec()),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c
        .api()
        .get(1, "/v1/operator/keyring?relay-factor=9")
        .await?;
    assert_eq!(r.status, 400);
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_pool_turns_encrypted_one_server_at_a_time() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    c.wait_for_leader(WAIT).await?;
    let pool: Vec<String> = (0..3).map(|i| c.server(i).node.clone()).collect();
    converged(&c, &[0, 1, 2], &pool).await?;
    let stages: [&[&str]; 3] = [
        // 1: keys everywhere, still sending plaintext and accepting both.
        &[
            "-encrypt",
            K1,
            "-hcl",
            "encrypt_verify_incoming = false",
            "-hcl",
            "encrypt_verify_outgoing = false",
        ],
        // 2: sending encrypted, still accepting plaintext.
        &["-encrypt", K1, "-hcl", "encrypt_verify_incoming = false"],
        // 3: encrypted only.
        &["-encrypt", K1],
    ];
    for (stage, args) in stages.iter().enumerate() {
        for i in 0..3 {
            c.set_server_args(i, args);
            c.restart(i).await?;
            // The restarted server (a fresh process that knows only itself) lists every
            // member alive, and so does every other server.
            let order = [i, (i + 1) % 3, (i + 2) % 3];
            converged(&c, &order, &pool)
                .await
                .with_context(|| format!("stage {} after restarting server {i}", stage + 1))?;
        }
        // Longer than failure detection: nobody was declared failed meanwhile.
        tokio::time::sleep(Duration::from_secs(5)).await;
        converged(&c, &[0, 1, 2], &pool)
            .await
            .with_context(|| format!("stage {} settled", stage + 1))?;
        c.wait_for_leader(WAIT).await?;
    }
    // The pool is encrypted: a plaintext agent is not admitted.
    let plain = Client::start("plain-client", block_ip(&c, 4), None, c.server(0).ip, &[])?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(alive(&c, 0).await?, {
        let mut p = pool.clone();
        p.sort();
        p
    });
    drop(plain);
    let v = c.api().get_json(0, "/v1/operator/keyring").await?;
    assert_eq!(v[0]["Keys"], serde_json::json!({ K1: 3 }), "{v}");
    c.finish();
    Ok(())
}

#[test]
fn keygen_prints_a_32_byte_key() -> Result<()> {
    let out = Command::new(registry_bin()?).arg("keygen").output()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    let key = text.trim();
    assert_eq!(key.len(), 44, "{key}");
    let again = Command::new(registry_bin()?).arg("keygen").output()?;
    assert_ne!(String::from_utf8(again.stdout)?.trim(), key);
    Ok(())
}

#[test]
fn keyring_without_encryption_or_action_fails() -> Result<()> {
    let out = Command::new(registry_bin()?).arg("keyring").output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: registry keyring"));
    let out = Command::new(registry_bin()?)
        .args(["keyring", "-list", "-install", K2])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Only a single action is allowed"));
    Ok(())
}
