//! `telemetry { }` applied end to end: `metrics_prefix` renames Consul's series,
//! `prefix_filter`/`filter_default` hide and show them, in the Prometheus text and the JSON
//! summary alike; and the DNS server's `consul_dns_domain_query` / `consul_dns_ptr_query`
//! timers, fed by real UDP queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::TestAgent;
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
