//! DNS reverse lookups (PTR) of a running `registry agent -dev`, asked with `dig -x`
//! (Debian's dnsutils): which name answers when several nodes and instances share an
//! address (the first node by name, else the first instance by node then ID, as Consul's
//! `handlePtr`), and that every catalog write changes the answer: deregistrations, a node
//! moving to another address, a rolled-back transaction, a snapshot restore.
//!
//! Skipped with a message when `dig` is missing or the agent does not answer DNS; under
//! `REGISTRY_TESTS_STRICT` (CI) either is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use anyhow::{ensure, Result};
use registry_tests::{skip_or_fail, TestAgent};
use serde_json::{json, Value};

/// `dig -x ip` through the agent: (status, PTR targets).
fn ptr(a: &TestAgent, ip: &str) -> Result<(String, Vec<String>)> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &a.dns_port.to_string(), "+time=2"])
        .args(["+tries=2", "-x", ip])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let targets = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == "PTR").then(|| f[4].to_string())
        })
        .collect();
    Ok((status, targets))
}

/// Asserts the single PTR answer for `ip` is `want` (`None`: NXDOMAIN).
fn expect(a: &TestAgent, ip: &str, want: Option<&str>, when: &str) -> Result<()> {
    let (status, targets) = ptr(a, ip)?;
    match want {
        Some(name) => ensure!(
            status == "NOERROR" && targets == [name],
            "{when}: -x {ip} gave {status} {targets:?}, want {name}"
        ),
        None => ensure!(
            status == "NXDOMAIN" && targets.is_empty(),
            "{when}: -x {ip} gave {status} {targets:?}, want NXDOMAIN"
        ),
    }
    Ok(())
}

async fn register(a: &TestAgent, node: &str, addr: &str, svc: Option<Value>) -> Result<()> {
    let mut body = json!({"Node": node, "Address": addr});
    if let Some(s) = svc {
        body["Service"] = s;
    }
    a.put_json("/v1/catalog/register", &body)
        .await?
        .assert_status(200);
    Ok(())
}

async fn deregister(a: &TestAgent, body: Value) -> Result<()> {
    a.put_json("/v1/catalog/deregister", &body)
        .await?
        .assert_status(200);
    Ok(())
}

#[tokio::test]
async fn reverse_lookups_follow_the_catalog() -> Result<()> {
    if !registry_tests::have_dig() {
        return Ok(());
    }
    let a = TestAgent::dev().await?;
    if ptr(&a, "127.0.0.1")?.0 != "NOERROR" {
        skip_or_fail(&format!("the agent does not answer DNS on {}", a.dns_port));
        return Ok(());
    }
    // Two nodes on one address, registered in reverse name order.
    register(&a, "ptr-b", "127.4.0.1", None).await?;
    register(&a, "ptr-a", "127.4.0.1", None).await?;
    // An address only instances carry, on two nodes; the first node's instance answers.
    let svc = |id: &str, name: &str, addr: &str| {
        Some(json!({"ID": id, "Service": name, "Address": addr, "Port": 80}))
    };
    register(&a, "ptr-d", "127.4.0.5", svc("y1", "svc-y", "127.4.0.9")).await?;
    register(&a, "ptr-c", "127.4.0.2", svc("z1", "svc-z", "127.4.0.9")).await?;
    // An instance at its node's address: the node answers.
    register(&a, "ptr-e", "127.4.0.3", svc("e1", "svc-e", "127.4.0.3")).await?;
    // IPv6.
    register(&a, "ptr-f", "fd00::4", None).await?;

    expect(&a, "127.4.0.1", Some("ptr-a.node.dc1.consul."), "two nodes")?;
    expect(
        &a,
        "127.4.0.9",
        Some("svc-z.service.dc1.consul."),
        "two instances",
    )?;
    expect(
        &a,
        "127.4.0.3",
        Some("ptr-e.node.dc1.consul."),
        "node and instance",
    )?;
    expect(&a, "127.4.0.2", Some("ptr-c.node.dc1.consul."), "one node")?;
    expect(&a, "fd00::4", Some("ptr-f.node.dc1.consul."), "IPv6")?;
    expect(&a, "127.4.0.77", None, "nobody")?;
    let saved = a.get("/v1/snapshot").await?;
    saved.assert_status(200);

    // Deregistrations take the answer away, one carrier at a time.
    deregister(&a, json!({"Node": "ptr-a"})).await?;
    expect(
        &a,
        "127.4.0.1",
        Some("ptr-b.node.dc1.consul."),
        "ptr-a gone",
    )?;
    deregister(&a, json!({"Node": "ptr-b"})).await?;
    expect(&a, "127.4.0.1", None, "both nodes gone")?;
    deregister(&a, json!({"Node": "ptr-c", "ServiceID": "z1"})).await?;
    expect(
        &a,
        "127.4.0.9",
        Some("svc-y.service.dc1.consul."),
        "z1 gone",
    )?;
    expect(&a, "127.4.0.2", Some("ptr-c.node.dc1.consul."), "z1 gone")?;
    // The node moves: its old address is its instance's alone now.
    register(&a, "ptr-e", "127.4.0.4", None).await?;
    expect(
        &a,
        "127.4.0.3",
        Some("svc-e.service.dc1.consul."),
        "ptr-e moved",
    )?;
    expect(
        &a,
        "127.4.0.4",
        Some("ptr-e.node.dc1.consul."),
        "ptr-e moved",
    )?;

    // A transaction that fails changes nothing.
    let txn = json!([
        {"Node": {"Verb": "set", "Node": {"Node": "ptr-g", "Address": "127.4.0.7"}}},
        {"Node": {"Verb": "set", "Node": {"Node": "ptr-e", "Address": "127.4.0.8"}}},
        {"Service": {"Verb": "delete", "Node": "ptr-d", "Service": {"ID": "y1"}}},
        {"Node": {"Verb": "cas", "Node": {"Node": "ptr-f", "Address": "fd00::4"}, "Index": 999999}}
    ]);
    let r = a.put_json("/v1/txn", &txn).await?;
    ensure!(r.status == 409, "txn: {} {}", r.status, r.text());
    expect(&a, "127.4.0.7", None, "rolled-back txn")?;
    expect(&a, "127.4.0.8", None, "rolled-back txn")?;
    expect(
        &a,
        "127.4.0.4",
        Some("ptr-e.node.dc1.consul."),
        "rolled-back txn",
    )?;
    expect(
        &a,
        "127.4.0.9",
        Some("svc-y.service.dc1.consul."),
        "rolled-back txn",
    )?;

    // A restore brings back the answers of the saved state.
    a.put("/v1/snapshot", saved.body.clone())
        .await?
        .assert_status(200);
    expect(&a, "127.4.0.1", Some("ptr-a.node.dc1.consul."), "restore")?;
    expect(
        &a,
        "127.4.0.9",
        Some("svc-z.service.dc1.consul."),
        "restore",
    )?;
    expect(&a, "127.4.0.3", Some("ptr-e.node.dc1.consul."), "restore")?;
    expect(&a, "127.4.0.4", None, "restore")?;
    Ok(())
}
