//! `/v1/agent/metrics`: Consul's metric names in the Prometheus format, Consul's go-metrics
//! JSON shape, and the Grafana dashboard in docs/ using only exported metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{workspace_root, TestAgent};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// Names from Consul's telemetry documentation (agent/telemetry) that this server exports,
/// as Prometheus shows them.
const CONSUL_NAMES: &[&str] = &[
    "consul_raft_state_leader",
    "consul_raft_leader_lastContact",
    "consul_raft_commitTime",
    "consul_raft_apply",
    "consul_raft_fsm_apply",
    "consul_autopilot_healthy",
    "consul_autopilot_failure_tolerance",
    "consul_catalog_register",
    "consul_catalog_deregister",
    "consul_kvs_apply",
    "consul_txn_apply",
    "consul_session_apply",
    "consul_session_ttl_active",
    "consul_rpc_query",
    "consul_rpc_queries_blocking",
    "consul_api_http",
    "consul_runtime_alloc_bytes",
    "consul_runtime_sys_bytes",
    "consul_runtime_num_goroutines",
    "consul_serf_member_join",
    "consul_memberlist_udp_sent",
    "consul_memberlist_udp_received",
    "consul_memberlist_gossip",
    "consul_memberlist_probeNode",
    "consul_memberlist_msg_alive",
];

/// Some of every kind of write and read, so that every event metric has a sample.
async fn exercise(a: &TestAgent) -> Result<()> {
    a.kv_put("metrics/a", "1").await?;
    a.put(
        "/v1/txn",
        r#"[{"KV":{"Verb":"set","Key":"metrics/b","Value":"eA=="}}]"#,
    )
    .await?
    .assert_status(200);
    let sid = a
        .put_json("/v1/session/create", &json!({"Name": "m", "TTL": "30s"}))
        .await?
        .json()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    a.put(&format!("/v1/session/destroy/{sid}"), "").await?;
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "m1", "Address": "10.1.1.1"}),
    )
    .await?
    .assert_status(200);
    a.put_json("/v1/catalog/deregister", &json!({"Node": "m1"}))
        .await?
        .assert_status(200);
    a.get("/v1/kv/metrics/a").await?.assert_status(200);
    let index = a.get("/v1/kv/metrics/a").await?.index();
    a.get(&format!("/v1/kv/metrics/a?index={index}&wait=50ms"))
        .await?
        .assert_status(200);
    Ok(())
}

/// The `consul_*` and `registry_*` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    expr.split(|c: char| !ident(c))
        .filter(|w| w.starts_with("consul_") || w.starts_with("registry_"))
        .map(str::to_string)
        .collect()
}

/// Series names (before `{` or the value) of a Prometheus text.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

async fn prometheus_with(a: &TestAgent, names: &[String]) -> Result<BTreeSet<String>> {
    a.eventually(Duration::from_secs(20), "every metric exported", || async {
        let r = a.get("/v1/agent/metrics?format=prometheus").await?;
        let got = series(&r.text());
        let missing: Vec<&String> = names.iter().filter(|n| !got.contains(*n)).collect();
        if missing.is_empty() {
            Ok(Some(got))
        } else {
            anyhow::bail!("missing {missing:?}")
        }
    })
    .await
}

#[tokio::test]
async fn consul_metric_names_are_exported_in_both_formats() -> Result<()> {
    let a = TestAgent::dev().await?;
    exercise(&a).await?;
    // A timer shows as a summary: its `_count` series is there.
    let want: Vec<String> = CONSUL_NAMES.iter().map(|s| s.to_string()).collect();
    let got = prometheus_with(&a, &want).await?;
    assert!(got.contains("consul_kvs_apply_count") && got.contains("consul_kvs_apply_sum"));
    let r = a.get("/v1/agent/metrics?format=prometheus").await?;
    r.assert_status(200);
    assert!(r.content_type().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(
        text.contains("consul_api_http_count{method=\"PUT\",path=\"v1_kv_\"}"),
        "{text}"
    );
    assert!(text.contains("consul_api_http_count{method=\"PUT\",path=\"v1_txn\"}"));
    assert!(text.contains("consul_raft_state_leader 1"), "one term led");

    // The JSON: go-metrics' shape with Consul's dotted names.
    let v: Value = a.get_json("/v1/agent/metrics").await?;
    let ts = v["Timestamp"].as_str().unwrap();
    assert!(ts.ends_with(" +0000 UTC"), "{ts}");
    assert_eq!(v["Points"], json!([]));
    let find = |list: &str, name: &str| -> Value {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {list}: {}", v[list]))
    };
    assert_eq!(find("Gauges", "consul.autopilot.healthy")["Value"], 1.0);
    assert!(
        find("Gauges", "consul.runtime.alloc_bytes")["Value"]
            .as_f64()
            .unwrap()
            > 1e6
    );
    assert!(
        find("Gauges", "consul.runtime.num_goroutines")["Value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert!(
        find("Counters", "consul.raft.apply")["Count"]
            .as_f64()
            .unwrap()
            >= 6.0
    );
    let kvs = find("Samples", "consul.kvs.apply");
    for field in ["Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev"] {
        assert!(kvs[field].is_number(), "{field} in {kvs}");
    }
    assert!(kvs["Count"].as_f64().unwrap() >= 1.0);
    assert!(kvs["Max"].as_f64().unwrap() >= kvs["Min"].as_f64().unwrap());
    let http = v["Samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == "consul.api.http" && m["Labels"]["path"] == "v1_session_create")
        .cloned()
        .expect("consul.api.http for session create");
    assert_eq!(http["Labels"]["method"], "PUT");
    Ok(())
}

#[tokio::test]
async fn every_metric_of_the_grafana_dashboard_is_exported() -> Result<()> {
    let path = workspace_root().join("docs/grafana-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            names.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(names.len() >= 15, "the dashboard uses {names:?}");
    let a = TestAgent::dev().await?;
    exercise(&a).await?;
    let names: Vec<String> = names.into_iter().collect();
    prometheus_with(&a, &names).await?;
    Ok(())
}
