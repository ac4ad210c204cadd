//! The agent owns its node's state: check results that change nothing write nothing to
//! Raft, output-only changes wait for `check_update_interval`, anti-entropy removes catalog
//! entries of this node that the agent does not hold, HTTP registrations survive a restart,
//! and `DeregisterCriticalServiceAfter` reaps a service that stays critical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use registry_tests::{StubHttpServer, TestAgent};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The leader's last Raft log index (`LastIndex` in `/v1/operator/autopilot/health`).
async fn raft_index(a: &TestAgent) -> Result<u64> {
    let v = a.get_json("/v1/operator/autopilot/health").await?;
    v["Servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["Leader"] == true))
        .and_then(|s| s["LastIndex"].as_u64())
        .with_context(|| format!("no leader LastIndex in {v}"))
}

/// The Raft index once it has stopped moving for a second (pending syncs done).
async fn settled_index(a: &TestAgent) -> Result<u64> {
    let mut last = raft_index(a).await?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = raft_index(a).await?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    bail!("the Raft index kept moving")
}

async fn catalog_check(a: &TestAgent, service: &str, id: &str) -> Result<Value> {
    let v = a.get_json(&format!("/v1/health/checks/{service}")).await?;
    v.as_array()
        .and_then(|cs| cs.iter().find(|c| c["CheckID"] == id).cloned())
        .with_context(|| format!("check {id} not in the catalog: {v}"))
}

#[tokio::test]
async fn unchanged_and_output_only_results_cause_no_raft_write() -> Result<()> {
    let a = TestAgent::dev().await?;
    let stub = StubHttpServer::start(200, "same body").await?;
    a.register_service(&json!({
        "Name": "quiet",
        "Checks": [
            {"CheckID": "ttl", "Name": "ttl", "TTL": "10m"},
            {"CheckID": "http", "Name": "http", "HTTP": stub.url("/health"), "Interval": "1s"},
        ]
    }))
    .await?;
    a.put("/v1/agent/check/pass/ttl?note=first", "")
        .await?
        .assert_status(200);
    a.eventually(WAIT, "both checks passing in the catalog", || async {
        let ttl = catalog_check(&a, "quiet", "ttl").await?;
        let http = catalog_check(&a, "quiet", "http").await?;
        Ok((ttl["Status"] == "passing" && http["Status"] == "passing").then_some(()))
    })
    .await?;

    // The measure itself: one KV write moves the index.
    let before_kv = settled_index(&a).await?;
    a.kv_put("probe", "x").await?;
    let after_kv = raft_index(&a).await?;
    assert!(
        after_kv > before_kv,
        "a KV write moved the index: {before_kv} -> {after_kv}"
    );

    let start = settled_index(&a).await?;
    let hits = stub.hits();
    // The same TTL result, again and again.
    for _ in 0..5 {
        a.put("/v1/agent/check/pass/ttl?note=first", "")
            .await?
            .assert_status(200);
    }
    // Output-only changes: kept by the agent, not written.
    for note in ["second", "third"] {
        a.put(&format!("/v1/agent/check/pass/ttl?note={note}"), "")
            .await?
            .assert_status(200);
    }
    // Let the HTTP check run a few more times with the same result.
    a.eventually(WAIT, "three more HTTP check runs", || async {
        Ok((stub.hits() >= hits + 3).then_some(()))
    })
    .await?;
    let end = raft_index(&a).await?;
    assert_eq!(
        start, end,
        "unchanged and output-only check results wrote to Raft"
    );
    let local = a.get_json("/v1/agent/checks").await?;
    assert_eq!(
        local["ttl"]["Output"], "third",
        "the agent has the new output"
    );
    let synced = catalog_check(&a, "quiet", "ttl").await?;
    assert_eq!(
        synced["Output"], "first",
        "the catalog keeps the old output until check_update_interval"
    );

    // A status change is written at once, with the latest output.
    a.put("/v1/agent/check/fail/ttl?note=broken", "")
        .await?
        .assert_status(200);
    let failed = raft_index(&a).await?;
    assert!(failed > end, "a status change is a Raft write");
    let c = catalog_check(&a, "quiet", "ttl").await?;
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Output"], "broken");
    Ok(())
}

#[tokio::test]
async fn full_sync_removes_catalog_entries_the_agent_does_not_hold() -> Result<()> {
    let a = TestAgent::dev_with_env(&[], &[("REGISTRY_AE_INTERVAL", "2s")]).await?;
    a.register_service(&json!({"Name": "mine", "Port": 80}))
        .await?;
    let node = a.node.clone();
    // Someone writes entries for this agent's node straight into the catalog.
    a.put_json(
        "/v1/catalog/register",
        &json!({
            "Node": node, "Address": "127.0.0.1",
            "Service": {"ID": "rogue", "Service": "rogue", "Port": 1},
            "Check": {"CheckID": "rogue-check", "Name": "rogue", "Status": "passing"},
        }),
    )
    .await?
    .assert_status(200);
    let services = a.get_json(&format!("/v1/catalog/node/{node}")).await?;
    assert!(
        services["Services"].get("rogue").is_some(),
        "registered: {services}"
    );
    a.eventually(WAIT, "the rogue service and check removed", || async {
        let services = a.get_json(&format!("/v1/catalog/node/{node}")).await?;
        let checks = a.get_json(&format!("/v1/health/node/{node}")).await?;
        let rogue_check = checks
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["CheckID"] == "rogue-check"));
        Ok((services["Services"].get("rogue").is_none() && !rogue_check).then_some(services))
    })
    .await
    .map(|services| {
        assert!(
            services["Services"].get("mine").is_some(),
            "the agent's own service stays: {services}"
        );
    })?;
    // The agent never held it, so it does not list it either.
    let local = a.get_json("/v1/agent/services").await?;
    assert!(local.get("rogue").is_none(), "{local}");
    Ok(())
}

#[tokio::test]
async fn http_registrations_survive_a_restart_and_deregistrations_stay_gone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = TestAgent::with_data_dir(dir.path().join("data")).await?;
    a.register_service(&json!({
        "Name": "keep", "ID": "keep1", "Port": 1234, "Tags": ["a"],
        "Check": {"CheckID": "keep-ttl", "TTL": "60s"}
    }))
    .await?;
    a.register_service(&json!({"Name": "gone", "Port": 1}))
        .await?;
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "node-ttl", "Name": "node ttl", "TTL": "60s"}),
    )
    .await?
    .assert_status(200);
    a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "node-gone", "Name": "node gone", "TTL": "60s"}),
    )
    .await?
    .assert_status(200);
    a.put("/v1/agent/service/deregister/gone", "")
        .await?
        .assert_status(200);
    a.put("/v1/agent/check/deregister/node-gone", "")
        .await?
        .assert_status(200);

    a.terminate(Duration::from_secs(10));
    a.restart().await?;

    let services = a.get_json("/v1/agent/services").await?;
    assert_eq!(services["keep1"]["Port"], 1234, "{services}");
    assert_eq!(services["keep1"]["Tags"], json!(["a"]), "{services}");
    assert!(services.get("gone").is_none(), "{services}");
    let checks = a.get_json("/v1/agent/checks").await?;
    assert!(checks.get("keep-ttl").is_some(), "{checks}");
    assert_eq!(checks["node-ttl"]["Name"], "node ttl", "{checks}");
    assert!(checks.get("node-gone").is_none(), "{checks}");
    // And they are back in the catalog, synced by the restarted agent.
    let node = a.node.clone();
    a.eventually(WAIT, "restored entries in the catalog", || async {
        let v = a.get_json(&format!("/v1/health/node/{node}")).await?;
        let ids: Vec<&str> = v
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["CheckID"].as_str()).collect())
            .unwrap_or_default();
        Ok(
            (ids.contains(&"keep-ttl") && ids.contains(&"node-ttl") && !ids.contains(&"node-gone"))
                .then_some(()),
        )
    })
    .await?;
    // Restored checks restart: the TTL check takes updates again.
    a.put("/v1/agent/check/pass/node-ttl", "")
        .await?
        .assert_status(200);
    Ok(())
}

#[tokio::test]
async fn critical_service_is_reaped_after_deregister_critical_service_after() -> Result<()> {
    let a = TestAgent::dev_with_env(&[], &[("REGISTRY_CHECK_REAP_INTERVAL", "1s")]).await?;
    // Consul's minimum for DeregisterCriticalServiceAfter is one minute.
    a.register_service(&json!({
        "Name": "doomed",
        "Check": {"CheckID": "doomed-ttl", "TTL": "1s", "DeregisterCriticalServiceAfter": "1m"}
    }))
    .await?;
    a.register_service(&json!({
        "Name": "healthy",
        "Check": {"CheckID": "healthy-ttl", "TTL": "10m", "DeregisterCriticalServiceAfter": "1m",
                  "Status": "passing"}
    }))
    .await?;
    tokio::time::sleep(Duration::from_secs(45)).await;
    let services = a.get_json("/v1/agent/services").await?;
    assert!(
        services.get("doomed").is_some(),
        "not reaped before a minute: {services}"
    );
    a.eventually(Duration::from_secs(40), "doomed reaped", || async {
        let local = a.get_json("/v1/agent/services").await?;
        let catalog = a.get_json("/v1/catalog/service/doomed").await?;
        Ok(
            (local.get("doomed").is_none() && catalog.as_array().is_some_and(|c| c.is_empty()))
                .then_some(()),
        )
    })
    .await?;
    let services = a.get_json("/v1/agent/services").await?;
    assert!(
        services.get("healthy").is_some(),
        "a passing service stays: {services}"
    );
    Ok(())
}
