//! `telemetry { }` applied end to end: `metrics_prefix` renames Consul's series,
//! `prefix_filter`/`filter_default` hide and show them, in the Prometheus text and the JSON
//! summary alike; and the DNS server's `consul_dns_domain_query` / `consul_dns_ptr_query`
//! timers, fed by real UDP queries; `consul_dns_stale_queries` on a server cut off from its
//! leader; the gossip pool's `consul_memberlist_*` metrics with a client agent joining and
//! being killed, and a client agent's own metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::client::ClientAgent;
use registry_tests::cluster::{ClusterOptions, TestCluster};
use registry_tests::{eventually, TestAgent};
use std::time::Duration;

/// A DNS question for `name` (dotted) of type `qtype`, as a UDP payload.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

async fn ask(a: &TestAgent, packet: &[u8]) -> Result<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(packet, a.dns_addr()).await?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await??;
    buf.truncate(n);
    Ok(buf)
}

async fn prometheus(a: &TestAgent) -> Result<String> {
    Ok(a.get("/v1/agent/metrics?format=prometheus").await?.text())
}

#[tokio::test]
async fn dns_queries_are_timed_by_kind() -> Result<()> {
    let a = TestAgent::dev().await?;
    let reply = ask(&a, &query("consul.service.consul", 1)).await?;
    assert_eq!(&reply[..2], &[0x12, 0x34]);
    ask(&a, &query("1.0.0.127.in-addr.arpa", 12)).await?;
    let text = prometheus(&a).await?;
    for name in ["consul_dns_domain_query", "consul_dns_ptr_query"] {
        let count = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}_count")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"));
        let n: f64 = count.rsplit(' ').next().unwrap().parse()?;
        assert!(n >= 1.0, "{count}");
    }
    let json = a.get_json("/v1/agent/metrics").await?;
    let samples = json["Samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .any(|s| s["Name"] == "consul.dns.domain_query"),
        "{samples:?}"
    );
    Ok(())
}

#[tokio::test]
async fn metrics_prefix_and_filters_apply() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("telemetry.hcl");
    std::fs::write(
        &cfg,
        r#"telemetry {
  prometheus_retention_time = "1h"
  metrics_prefix = "reg"
  prefix_filter = ["-reg.raft", "+reg.raft.apply", "-registry"]
}
"#,
    )?;
    let a = TestAgent::dev_with_args(&[&format!("-config-file={}", cfg.display())]).await?;
    a.kv_put("k", "v").await?;
    let text = prometheus(&a).await?;
    assert!(text.contains("reg_kvs_apply"), "{text}");
    assert!(text.contains("reg_raft_apply "), "{text}");
    assert!(!text.contains("reg_raft_commitTime"), "filtered: {text}");
    assert!(!text.contains("consul_"), "renamed: {text}");
    assert!(!text.contains("registry_"), "filtered: {text}");
    let json = a.get_json("/v1/agent/metrics").await?;
    let names: Vec<String> = ["Gauges", "Counters", "Samples"]
        .iter()
        .flat_map(|k| json[k].as_array().cloned().unwrap_or_default())
        .map(|m| m["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "reg.kvs.apply"), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("consul.")), "{names:?}");

    // filter_default = false shows only what a rule allows.
    std::fs::write(
        &cfg,
        "telemetry {\n  filter_default = false\n  prefix_filter = [\"+consul.kvs\"]\n}\n",
    )?;
    let b = TestAgent::dev_with_args(&[&format!("-config-file={}", cfg.display())]).await?;
    b.kv_put("k", "v").await?;
    let text = prometheus(&b).await?;
    assert!(text.contains("consul_kvs_apply"), "{text}");
    assert!(!text.contains("consul_raft"), "{text}");
    assert!(!text.contains("consul_runtime"), "{text}");
    Ok(())
}

#[tokio::test]
async fn snapshots_are_timed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("snap.hcl");
    std::fs::write(&cfg, "raft_snapshot_threshold = 16\n")?;
    let a = TestAgent::with_data_dir_env(
        dir.path().join("data"),
        &[&format!("-config-file={}", cfg.display())],
        &[],
    )
    .await?;
    for i in 0..64 {
        a.kv_put(&format!("snap/{i}"), "v").await?;
    }
    let archive = a.get("/v1/snapshot").await?;
    archive.assert_status(200);
    a.put("/v1/snapshot", archive.body.clone())
        .await?
        .assert_status(200);
    let want = [
        "consul_snapshot_save",
        "consul_raft_restoreUserSnapshot",
        "consul_raft_snapshot_takeSnapshot",
        "consul_raft_snapshot_persist",
        "consul_raft_fsm_snapshot",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = prometheus(&a).await?;
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|n| !text.contains(&format!("{n}_count")))
            .collect();
        if missing.is_empty() {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "missing {missing:?}");
        a.kv_put("snap/more", "v").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn gossip_member_events_are_counted() -> Result<()> {
    let a = TestAgent::dev().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = prometheus(&a).await?;
        let joined = text
            .lines()
            .find(|l| l.starts_with("consul_serf_member_join "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if joined.is_some_and(|n| n >= 1.0) {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no member join: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let json = a.get_json("/v1/agent/metrics").await?;
    let counters = json["Counters"].as_array().unwrap();
    assert!(
        counters
            .iter()
            .any(|c| c["Name"] == "consul.serf.member.join"),
        "{counters:?}"
    );
    Ok(())
}

/// The value of the first sample line of `series` (a name with its labels, as printed
/// before the value) in a Prometheus text, if any.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn prometheus_at(c: &reqwest::Client, base: &str) -> Result<String> {
    Ok(c.get(format!("{base}/v1/agent/metrics?format=prometheus"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

#[tokio::test]
async fn memberlist_traffic_and_member_messages_are_counted() -> Result<()> {
    let mut cluster = TestCluster::start(1).await?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let api = cluster.api();
    let server = |path: &'static str| {
        let api = &api;
        async move { anyhow::Ok(api.get(0, path).await?.text()) }
    };
    let join = format!("{}:8301", cluster.server(0).ip);
    let c = ClientAgent::start("metrics-client", &[join]).await?;
    let lan = |name: &str| format!("{name}{{network=\"lan\"}}");
    // The server has gossiped with the client: bytes both ways, timed gossip messages and
    // answered probes, and two members seen alive (itself and the client).
    let last = std::sync::Mutex::new(String::new());
    let text = eventually(Duration::from_secs(30), "memberlist metrics", || async {
        let text = server("/v1/agent/metrics?format=prometheus").await?;
        *last.lock().unwrap() = text.clone();
        let ok = value(&text, &lan("consul_memberlist_udp_sent")).is_some_and(|v| v > 0.0)
            && value(&text, &lan("consul_memberlist_udp_received")).is_some_and(|v| v > 0.0)
            && value(&text, &lan("consul_memberlist_gossip_count")).is_some_and(|v| v >= 1.0)
            && value(&text, &lan("consul_memberlist_probeNode_count")).is_some_and(|v| v >= 1.0)
            && value(&text, &lan("consul_memberlist_msg_alive")).is_some_and(|v| v >= 2.0);
        Ok(ok.then_some(text))
    })
    .await
    .map_err(|e| {
        let text = last.lock().unwrap();
        let ours: Vec<&str> = text.lines().filter(|l| l.contains("memberlist")).collect();
        e.context(ours.join("\n"))
    })?;
    assert_eq!(
        value(&text, &lan("consul_memberlist_msg_dead")),
        Some(0.0),
        "nobody failed yet: {text}"
    );
    // The JSON carries Consul's dotted names.
    let json: serde_json::Value = serde_json::from_str(&server("/v1/agent/metrics").await?)?;
    let names: Vec<&str> = ["Counters", "Samples"]
        .iter()
        .flat_map(|k| json[k].as_array().unwrap().iter())
        .filter_map(|m| m["Name"].as_str())
        .collect();
    for n in [
        "consul.memberlist.udp.sent",
        "consul.memberlist.udp.received",
        "consul.memberlist.gossip",
        "consul.memberlist.probeNode",
        "consul.memberlist.msg.alive",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    // The client agent has metrics of its own: its gossip and its runtime.
    eventually(Duration::from_secs(15), "client agent metrics", || async {
        let text = c.get("/v1/agent/metrics?format=prometheus").await?.text();
        Ok(
            (value(&text, &lan("consul_memberlist_udp_sent")).is_some_and(|v| v > 0.0)
                && value(&text, "consul_runtime_alloc_bytes").is_some_and(|v| v > 0.0))
            .then_some(()),
        )
    })
    .await?;
    // Killed, the client is suspected and declared dead.
    drop(c);
    eventually(
        Duration::from_secs(40),
        "msg_dead after the client died",
        || async {
            let text = server("/v1/agent/metrics?format=prometheus").await?;
            Ok(
                (value(&text, &lan("consul_memberlist_msg_dead")).is_some_and(|v| v >= 1.0)
                    && value(&text, &lan("consul_memberlist_msg_suspect"))
                        .is_some_and(|v| v >= 1.0))
                .then_some(()),
            )
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn dns_answers_of_a_server_cut_off_from_its_leader_count_as_stale() -> Result<()> {
    let mut opts = ClusterOptions::new(3);
    for i in 0..3 {
        opts = opts.server_args(i, &["-dns-port", "8600"]);
    }
    let mut c = TestCluster::start_with(opts).await?;
    let leader = c.wait_for_leader(Duration::from_secs(30)).await?;
    let f = c.followers(leader)[0];
    let dns = std::net::SocketAddr::new(c.server(f).ip.into(), 8600);
    let ask_f = || async move {
        let sock = tokio::net::UdpSocket::bind((dns.ip(), 0)).await?;
        sock.send_to(&query("consul.service.consul", 1), dns)
            .await?;
        let mut buf = vec![0u8; 4096];
        let (n, _) =
            tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await??;
        anyhow::ensure!(n > 12 && buf[..2] == [0x12, 0x34], "bad reply");
        anyhow::Ok(())
    };
    let api = c.api();
    let base = api.url(f)?.to_string();
    let http = reqwest::Client::new();
    // In contact with the leader: answered, nothing stale.
    ask_f().await?;
    let text = prometheus_at(&http, &base).await?;
    assert!(value(&text, "consul_dns_domain_query_count").is_some_and(|v| v >= 1.0));
    assert!(value(&text, "consul_dns_stale_queries").is_none(), "{text}");
    // Without the other two servers the follower keeps answering from its own state, which
    // stops being current: after 5 s without a leader its answers count as stale.
    for i in 0..3 {
        if i != f {
            c.kill9(i);
        }
    }
    eventually(Duration::from_secs(30), "a stale DNS answer", || async {
        ask_f().await?;
        let text = prometheus_at(&http, &base).await?;
        Ok(value(&text, "consul_dns_stale_queries")
            .is_some_and(|v| v >= 1.0)
            .then_some(()))
    })
    .await?;
    Ok(())
}

/// Reads datagrams from `sock` until `done` holds for the lines seen so far.
async fn statsd_lines(
    sock: &tokio::net::UdpSocket,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !done(&lines) {
        let (n, _) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .map_err(|_| anyhow::anyhow!("no {what} in {lines:#?}"))??;
        anyhow::ensure!(n <= 1432, "datagram of {n} bytes");
        lines.extend(
            String::from_utf8(buf[..n].to_vec())?
                .lines()
                .map(str::to_string),
        );
    }
    Ok(lines)
}

#[tokio::test]
async fn statsd_and_dogstatsd_sinks_receive_consul_metrics() -> Result<()> {
    let statsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let dog = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let hcl = format!(
        r#"telemetry {{
            statsd_address = "{}"
            dogstatsd_addr = "{}"
            dogstatsd_tags = ["env:ci"]
        }}"#,
        statsd.local_addr()?,
        dog.local_addr()?
    );
    let a = TestAgent::dev_with_args(&["-hcl", &hcl]).await?;
    a.kv_put("statsd/k", "v").await?;
    let host = hostname_of_this_machine();
    let lines = statsd_lines(&statsd, "statsd lines", |ls| {
        ls.iter()
            .any(|l| l.starts_with("consul.raft.apply:") && l.contains("|c"))
            && ls
                .iter()
                .any(|l| l.starts_with("consul.kvs.apply:") && l.contains("|ms"))
            && ls
                .iter()
                .any(|l| l.starts_with("consul.api.http.PUT.v1_kv_:") && l.contains("|ms"))
            && ls.iter().any(|l| {
                l.starts_with(&format!("consul.{host}.runtime.alloc_bytes:")) && l.ends_with("|g")
            })
    })
    .await?;
    let alloc = lines
        .iter()
        .find(|l| l.starts_with(&format!("consul.{host}.runtime.alloc_bytes:")))
        .unwrap();
    let v: f64 = alloc.split([':', '|']).nth(1).unwrap().parse()?;
    assert!(v > 1e6, "{alloc}");
    statsd_lines(&dog, "DogStatsD lines", |ls| {
        ls.iter().any(|l| {
            l.starts_with("consul.api.http:")
                && l.contains("|ms")
                && l.contains("method:PUT")
                && l.contains("path:v1_kv_")
                && l.contains("env:ci")
                && l.contains(&format!("host:{host}"))
        }) && ls
            .iter()
            .any(|l| l.starts_with("consul.runtime.alloc_bytes:") && l.contains("|g|#"))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn disable_hostname_leaves_the_host_out_of_statsd_names() -> Result<()> {
    let statsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let hcl = format!(
        r#"telemetry {{
            statsd_address = "{}"
            disable_hostname = true
        }}"#,
        statsd.local_addr()?
    );
    let _a = TestAgent::dev_with_args(&["-hcl", &hcl]).await?;
    let host = hostname_of_this_machine();
    let lines = statsd_lines(&statsd, "the runtime gauge", |ls| {
        ls.iter()
            .any(|l| l.starts_with("consul.runtime.alloc_bytes:"))
    })
    .await?;
    assert!(
        !lines.iter().any(|l| l.contains(&format!(".{host}."))),
        "{lines:#?}"
    );
    Ok(())
}

fn hostname_of_this_machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
