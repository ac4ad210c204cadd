//! The agent's operational endpoints as Consul answers them: `Stats` in `/v1/agent/self`,
//! `/v1/agent/version`, `/v1/agent/host`, `/v1/agent/monitor` (with its log-level check),
//! `/v1/agent/reload` and `registry reload`, `/v1/operator/usage`, gzip responses, and
//! `?filter` on `/v1/catalog/node/:node`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Result};
use registry_tests::{registry_bin, TestAgent};
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

#[tokio::test]
async fn self_stats_name_the_leader_and_raft_state() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "web", "Port": 80}))
        .await?;
    let leader = a.get_json("/v1/status/leader").await?;
    let me = a.get_json("/v1/agent/self").await?;
    let stats = &me["Stats"];
    assert_eq!(stats["consul"]["server"], "true", "{stats}");
    assert_eq!(stats["consul"]["leader"], "true", "{stats}");
    assert_eq!(stats["consul"]["leader_addr"], leader, "{stats}");
    assert_eq!(stats["raft"]["state"], "Leader", "{stats}");
    assert_eq!(stats["raft"]["num_peers"], "0", "{stats}");
    assert_eq!(stats["raft"]["last_contact"], "0", "{stats}");
    let applied: u64 = stats["raft"]["applied_index"].as_str().unwrap().parse()?;
    assert!(applied > 0, "{stats}");
    assert!(
        stats["raft"]["latest_configuration"]
            .as_str()
            .unwrap()
            .contains(leader.as_str().unwrap()),
        "{stats}"
    );
    assert_eq!(stats["agent"]["services"], "1", "{stats}");
    assert_eq!(stats["runtime"]["os"], "linux", "{stats}");
    // Every value is a string, as in Consul's map[string]map[string]string.
    for (section, kv) in stats.as_object().unwrap() {
        for (k, v) in kv.as_object().unwrap() {
            assert!(v.is_string(), "{section}.{k} = {v}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn version_host_and_usage() -> Result<()> {
    let a = TestAgent::dev().await?;
    let v = a.get_json("/v1/agent/version").await?;
    let me = a.get_json("/v1/agent/self").await?;
    assert_eq!(v["HumanVersion"], me["Config"]["Version"], "{v}");
    assert!(v["Revision"].is_string(), "{v}");

    let h = a.get_json("/v1/agent/host").await?;
    assert!(h["Memory"]["total"].as_u64().unwrap() > 0, "{h}");
    assert!(!h["CPU"].as_array().unwrap().is_empty(), "{h}");
    assert!(h["Host"]["hostname"].is_string(), "{h}");
    assert!(h["CollectionTime"].as_u64().unwrap() > 0, "{h}");

    for (i, port) in [8080, 8081].iter().enumerate() {
        a.put_json(
            "/v1/catalog/register",
            &json!({"Node": format!("n{i}"), "Address": "127.0.0.9",
                    "Service": {"Service": "api", "ID": format!("api-{i}"), "Port": port}}),
        )
        .await?
        .assert_status(200);
    }
    let r = a.get("/v1/operator/usage").await?;
    r.assert_status(200);
    assert!(r.index() > 0);
    let u = r.json();
    let dc = &u["Usage"]["dc1"];
    // consul + api; 1 consul instance + 2 api instances; the agent's node + n0 + n1.
    assert_eq!(dc["Services"], 2, "{u}");
    assert_eq!(dc["ServiceInstances"], 3, "{u}");
    assert_eq!(dc["BillableServiceInstances"], 2, "{u}");
    assert_eq!(dc["Nodes"], 3, "{u}");
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 0, "{u}");
    assert_eq!(u["KnownLeader"], true, "{u}");
    Ok(())
}

#[tokio::test]
async fn monitor_checks_the_level_and_streams_log_lines() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/agent/monitor?loglevel=verbose").await?;
    r.assert_status(400);
    assert_eq!(r.text(), "Unknown log level: verbose");

    for (query, want_json) in [("loglevel=info", false), ("loglevel=DEBUG&logjson", true)] {
        let url = format!("{}/v1/agent/monitor?{query}", a.base_url());
        let mut resp = a.client().get(&url).send().await?;
        assert_eq!(resp.status(), 200);
        let name = registry_tests::unique_name("mon");
        a.register_service(&json!({"Name": name, "Port": 1}))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = String::new();
        while !seen.contains(&name) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, resp.chunk()).await {
                Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
                other => bail!("monitor ({query}) ended or timed out: {other:?}; got {seen:?}"),
            }
        }
        let line = seen.lines().find(|l| l.contains(&name)).unwrap();
        if want_json {
            let v: Value = serde_json::from_str(line)?;
            assert!(
                v["@message"].is_string() && v["@level"].is_string(),
                "{line}"
            );
        } else {
            assert!(line.contains("[INFO]"), "{line}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn reload_rereads_service_definitions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("svc.json");
    std::fs::write(&file, r#"{"service": {"name": "old", "port": 1}}"#)?;
    let a = TestAgent::dev_with_args(&["-config-dir", dir.path().to_str().unwrap()]).await?;
    a.register_service(&json!({"Name": "api-made", "Port": 3}))
        .await?;
    let services = a.get_json("/v1/agent/services").await?;
    assert!(services.get("old").is_some(), "{services}");

    std::fs::write(&file, r#"{"service": {"name": "new", "port": 2}}"#)?;
    a.put("/v1/agent/reload", "").await?.assert_status(200);
    let services = a.get_json("/v1/agent/services").await?;
    assert!(services.get("old").is_none(), "{services}");
    assert_eq!(services["new"]["Port"], 2, "{services}");
    assert!(
        services.get("api-made").is_some(),
        "API registrations stay: {services}"
    );
    let catalog = a.get_json("/v1/catalog/service/new").await?;
    assert_eq!(catalog.as_array().unwrap().len(), 1, "{catalog}");

    // The CLI, and a configuration that no longer validates: the reload fails and nothing
    // changes.
    std::fs::write(&file, r#"{"service": {"name": "third", "port": 3}}"#)?;
    let out = std::process::Command::new(registry_bin()?)
        .args(["reload", "-http-addr", &a.http_addr()])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Configuration reload triggered"
    );
    assert!(a
        .get_json("/v1/agent/services")
        .await?
        .get("third")
        .is_some());
    std::fs::write(&file, r#"{"service": {"name": "x", "port": "nope"}}"#)?;
    let r = a.put("/v1/agent/reload", "").await?;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(a
        .get_json("/v1/agent/services")
        .await?
        .get("third")
        .is_some());
    Ok(())
}

#[tokio::test]
async fn responses_are_gzipped_when_asked() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("big", "x".repeat(4096)).await?;
    let url = format!("{}/v1/kv/big", a.base_url());
    let r = a
        .client()
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    assert!(r.headers().get("x-consul-index").is_some());
    let body = r.bytes().await?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text)?;
    let v: Value = serde_json::from_str(&text)?;
    assert_eq!(v[0]["Key"], "big");
    // Without the header: plain.
    let r = a.client().get(&url).send().await?;
    assert!(r.headers().get("content-encoding").is_none());
    // A snapshot is a gzipped archive already: sent as it is.
    let r = a
        .client()
        .get(format!("{}/v1/snapshot", a.base_url()))
        .header("Accept-Encoding", "gzip")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    let body = r.bytes().await?;
    assert_eq!(&body[..2], b"\x1f\x8b");
    Ok(())
}

#[tokio::test]
async fn catalog_node_filter_applies_to_each_service() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "fnode", "Address": "127.0.0.8"}),
    )
    .await?
    .assert_status(200);
    for (id, port, tag) in [("a", 1, "prod"), ("b", 2, "dev"), ("c", 3, "prod")] {
        a.put_json(
            "/v1/catalog/register",
            &json!({"Node": "fnode", "Address": "127.0.0.8",
                    "Service": {"ID": id, "Service": "svc", "Port": port, "Tags": [tag]}}),
        )
        .await?
        .assert_status(200);
    }
    let v = a
        .get_json("/v1/catalog/node/fnode?filter=prod%20in%20Tags")
        .await?;
    let ids: Vec<&String> = v["Services"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["a", "c"], "{v}");
    assert_eq!(v["Node"]["Node"], "fnode");
    let v = a
        .get_json("/v1/catalog/node/fnode?filter=Port%20%3D%3D%209")
        .await?;
    assert_eq!(v["Services"], json!({}), "{v}");
    let r = a.get("/v1/catalog/node/fnode?filter=Port%20%3D%3D").await?;
    r.assert_status(400);
    Ok(())
}
