//! The DNS interface of a running `registry agent -dev`, queried with `dig` (Debian's
//! dnsutils) over UDP and TCP: services registered through the HTTP API, health, tags,
//! RFC 2782, nodes, truncation of a large service.
//!
//! Skipped with a message when `dig` is missing, or when the agent does not answer DNS at
//! all on its `-dns-port`; under `REGISTRY_TESTS_STRICT` (CI) either is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use registry_tests::{eventually, skip_or_fail, TestAgent};
use serde_json::json;

fn dig(a: &TestAgent, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &a.dns_port.to_string(),
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dig_async(a: &TestAgent, args: &[&str]) -> String {
    let port = a.dns_port.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"])
            .args(&args)
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// An agent whose DNS answers, or None (with the reason printed) when the test must skip;
/// under `REGISTRY_TESTS_STRICT` a missing `dig` or a silent agent fails the test instead.
async fn agent() -> Option<TestAgent> {
    if Command::new("dig").arg("-v").output().is_err() {
        skip_or_fail("dig is not installed (apt-get install dnsutils)");
        return None;
    }
    let a = TestAgent::dev().await.expect("start agent");
    let probe = dig_async(&a, &[&format!("{}.node.consul", a.node), "A"]).await;
    if !probe.contains("status: NOERROR") {
        skip_or_fail(&format!(
            "the agent does not answer DNS on port {}: {probe}",
            a.dns_port
        ));
        return None;
    }
    Some(a)
}

#[tokio::test]
async fn services_over_dns() -> Result<()> {
    let Some(a) = agent().await else {
        return Ok(());
    };
    for (id, port, tags) in [("web-1", 8001, vec!["v1"]), ("web-2", 8002, vec!["v2"])] {
        a.register_service(&json!({
            "Name": "web", "ID": id, "Port": port, "Tags": tags,
            "Check": {"TTL": "60s"}
        }))
        .await?;
        a.put(&format!("/v1/agent/check/pass/service:{id}"), "")
            .await?
            .assert_status(200);
    }
    // web-3 stays critical (a TTL check starts critical).
    a.register_service(
        &json!({"Name": "web", "ID": "web-3", "Port": 8003, "Check": {"TTL": "60s"}}),
    )
    .await?;

    let srv = eventually(Duration::from_secs(5), "two SRV records", || async {
        let out = dig_async(&a, &["+short", "web.service.consul", "SRV"]).await;
        Ok((sorted_lines(&out).len() == 2).then_some(out))
    })
    .await?;
    let node_target = format!("{}.node.dc1.consul.", a.node);
    assert_eq!(
        sorted_lines(&srv),
        [
            format!("1 1 8001 {node_target}"),
            format!("1 1 8002 {node_target}")
        ]
    );
    let out = dig(&a, &["+short", "_web._v2.service.consul", "SRV"]);
    assert_eq!(sorted_lines(&out), [format!("1 1 8002 {node_target}")]);
    let out = dig(&a, &["+short", "_web._tcp.service.consul", "SRV"]);
    assert_eq!(sorted_lines(&out).len(), 2);
    let out = dig(&a, &["+short", "v1.web.service.consul", "A"]);
    assert_eq!(sorted_lines(&out), ["127.0.0.1"]);
    let out = dig(&a, &["web.service.consul", "SRV"]);
    assert!(out.contains("ADDITIONAL: "), "{out}");
    // Both instances are on the agent's node: as Consul writes it, each SRV answer carries
    // its own address record, so the node's address is there twice.
    let glue: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(node_target.as_str()) && l.ends_with("\tA\t127.0.0.1"))
        .collect();
    assert_eq!(glue.len(), 2, "{out}");
    let out = dig(
        &a,
        &[
            "+tcp",
            "+short",
            &format!("{}.node.dc1.consul", a.node),
            "A",
        ],
    );
    assert_eq!(sorted_lines(&out), ["127.0.0.1"]);

    let out = dig(&a, &["nosuch.service.consul", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(
        out.contains("IN\tSOA\tns.consul. hostmaster.consul."),
        "{out}"
    );
    let out = dig(&a, &["+short", "-x", "127.0.0.1"]);
    assert!(out.contains(".node.dc1.consul."), "{out}");

    // The critical check passing brings web-3 in.
    a.put("/v1/agent/check/pass/service:web-3", "")
        .await?
        .assert_status(200);
    eventually(Duration::from_secs(5), "web-3 in DNS", || async {
        let out = dig_async(&a, &["+short", "web.service.consul", "SRV"]).await;
        Ok((sorted_lines(&out).len() == 3).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn large_service_truncated_over_udp_complete_over_tcp() -> Result<()> {
    let Some(a) = agent().await else {
        return Ok(());
    };
    for i in 0..200 {
        let r = a
            .put_json(
                "/v1/catalog/register",
                &json!({
                    "Node": format!("big-{i}"),
                    "Address": format!("127.3.{}.{}", i / 250, i % 250 + 1),
                    "Service": {"ID": format!("big-{i}"), "Service": "big", "Port": 9000}
                }),
            )
            .await?;
        r.assert_status(200);
    }
    let udp = dig_async(
        &a,
        &["+bufsize=1232", "+ignore", "big.service.consul", "SRV"],
    )
    .await;
    assert!(udp.contains(" tc"), "UDP answer should be truncated: {udp}");
    let tcp = dig_async(&a, &["+tcp", "+short", "big.service.consul", "SRV"]).await;
    assert_eq!(sorted_lines(&tcp).len(), 200, "{tcp}");
    let tcp_a = dig_async(&a, &["+tcp", "+short", "big.service.consul", "A"]).await;
    assert_eq!(sorted_lines(&tcp_a).len(), 200);
    Ok(())
}
