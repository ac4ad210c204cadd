//! `/v1/health/*` plus the checks the agent runs itself (TTL, HTTP, TCP).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use registry_tests::{eventually, qs, StubHttpServer, TestAgent};
use serde_json::{json, Value};

fn has_keys(v: &Value, keys: &[&str]) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object: {v}"));
    for k in keys {
        assert!(o.contains_key(*k), "missing field {k:?} in {v}");
    }
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// web-1 (tags primary,v1; meta version=1) with a passing TTL check and web-2 (tags v1;
/// meta version=2) whose TTL check stays critical.
async fn two_web_instances(a: &TestAgent) -> Result<()> {
    a.register_service(&json!({
        "Name": "web", "ID": "web-1", "Port": 8001, "Tags": ["primary", "v1"],
        "Meta": {"version": "1"},
        "Check": {"TTL": "60s"}
    }))
    .await?;
    a.register_service(&json!({
        "Name": "web", "ID": "web-2", "Port": 8002, "Address": "127.0.0.9", "Tags": ["v1"],
        "Meta": {"version": "2"},
        "Check": {"TTL": "60s"}
    }))
    .await?;
    let r = a.put("/v1/agent/check/pass/service:web-1", "").await?;
    r.assert_status(200);
    Ok(())
}

#[tokio::test]
async fn health_node_lists_serf_health() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get(&format!("/v1/health/node/{}", a.node)).await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let serf = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap_or_else(|| panic!("serfHealth missing from {v}"));
    has_keys(
        serf,
        &[
            "Node",
            "CheckID",
            "Name",
            "Status",
            "Notes",
            "Output",
            "ServiceID",
            "ServiceName",
            "ServiceTags",
            "Type",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(serf["Node"], a.node.as_str());
    assert_eq!(serf["Name"], "Serf Health Status");
    assert_eq!(serf["Status"], "passing");
    assert_eq!(serf["ServiceID"], "");
    assert_eq!(serf["ServiceTags"], json!([]));

    // Unknown node: empty list.
    let r = a.get("/v1/health/node/nobody").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), json!([]));
    Ok(())
}

#[tokio::test]
async fn health_checks_for_service() -> Result<()> {
    let a = TestAgent::dev().await?;
    two_web_instances(&a).await?;
    let r = a.get("/v1/health/checks/web").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let mut checks: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["CheckID"].as_str().unwrap().to_string(),
                c["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    checks.sort();
    assert_eq!(
        checks,
        [
            ("service:web-1".to_string(), "passing".to_string()),
            ("service:web-2".to_string(), "critical".to_string())
        ]
    );
    let c = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "service:web-1")
        .unwrap();
    assert_eq!(c["ServiceName"], "web");
    assert_eq!(c["ServiceID"], "web-1");
    assert_eq!(c["Name"], "Service 'web' check");
    assert_eq!(c["Type"], "ttl");
    assert_eq!(c["Node"], a.node.as_str());

    let r = a.get("/v1/health/checks/unknown").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), json!([]));
    Ok(())
}

#[tokio::test]
async fn health_service_shape() -> Result<()> {
    let a = TestAgent::dev().await?;
    two_web_instances(&a).await?;
    let r = a.get("/v1/health/service/web").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    assert_eq!(ids(&v), ["web-1", "web-2"]);
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Service"]["ID"] == "web-1")
        .unwrap();
    has_keys(e, &["Node", "Service", "Checks"]);
    has_keys(
        &e["Node"],
        &[
            "ID",
            "Node",
            "Address",
            "Datacenter",
            "TaggedAddresses",
            "Meta",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(e["Node"]["Node"], a.node.as_str());
    assert_eq!(e["Node"]["Address"], "127.0.0.1");
    assert_eq!(e["Node"]["Datacenter"], "dc1");
    has_keys(
        &e["Service"],
        &[
            "ID",
            "Service",
            "Tags",
            "Address",
            "Meta",
            "Port",
            "Weights",
            "EnableTagOverride",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(e["Service"]["Service"], "web");
    assert_eq!(e["Service"]["Tags"], json!(["primary", "v1"]));
    assert_eq!(e["Service"]["Port"], 8001);
    assert_eq!(e["Service"]["Address"], "");
    assert_eq!(e["Service"]["Meta"], json!({"version": "1"}));
    assert_eq!(e["Service"]["Weights"], json!({"Passing": 1, "Warning": 1}));
    // Checks include the node-level serfHealth and the service's own check.
    let mut cids: Vec<&str> = e["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    cids.sort();
    assert_eq!(cids, ["serfHealth", "service:web-1"]);
    let e2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Service"]["ID"] == "web-2")
        .unwrap();
    assert_eq!(e2["Service"]["Address"], "127.0.0.9");

    // Unknown service: [] (never null), with index headers.
    let r = a.get("/v1/health/service/nope").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), json!([]));
    Ok(())
}

#[tokio::test]
async fn health_service_passing_variants() -> Result<()> {
    let a = TestAgent::dev().await?;
    two_web_instances(&a).await?;
    for q in ["?passing", "?passing=1", "?passing=true", "?passing=True"] {
        let v = a.get_json(&format!("/v1/health/service/web{q}")).await?;
        assert_eq!(ids(&v), ["web-1"], "query {q}");
    }
    for q in ["", "?passing=false", "?passing=0"] {
        let v = a.get_json(&format!("/v1/health/service/web{q}")).await?;
        assert_eq!(ids(&v), ["web-1", "web-2"], "query {q:?}");
    }
    // A warning check also fails ?passing.
    let r = a
        .put("/v1/agent/check/warn/service:web-1?note=slow", "")
        .await?;
    r.assert_status(200);
    let v = a.get_json("/v1/health/service/web?passing").await?;
    assert_eq!(v, json!([]));
    let r = a.get("/v1/health/service/web?passing=maybe").await?;
    r.assert_status(400);
    Ok(())
}

#[tokio::test]
async fn health_service_tag_meta_and_filter() -> Result<()> {
    let a = TestAgent::dev().await?;
    two_web_instances(&a).await?;
    let v = a.get_json("/v1/health/service/web?tag=v1").await?;
    assert_eq!(ids(&v), ["web-1", "web-2"]);
    let v = a.get_json("/v1/health/service/web?tag=primary").await?;
    assert_eq!(ids(&v), ["web-1"]);
    let v = a
        .get_json("/v1/health/service/web?tag=primary&tag=v1")
        .await?;
    assert_eq!(ids(&v), ["web-1"]);
    let v = a
        .get_json("/v1/health/service/web?tag=primary&tag=nope")
        .await?;
    assert_eq!(v, json!([]));

    // node-meta: the dev node has no "rack" meta, so this matches nothing.
    let v = a
        .get_json("/v1/health/service/web?node-meta=rack:r1")
        .await?;
    assert_eq!(v, json!([]));

    let f = qs(r#"Service.Meta.version == "2""#);
    let v = a
        .get_json(&format!("/v1/health/service/web?filter={f}"))
        .await?;
    assert_eq!(ids(&v), ["web-2"]);
    let f = qs(r#""primary" in Service.Tags"#);
    let v = a
        .get_json(&format!("/v1/health/service/web?filter={f}"))
        .await?;
    assert_eq!(ids(&v), ["web-1"]);
    let f = qs(r#"Service.Port == 8002 or Service.ID == "web-1""#);
    let v = a
        .get_json(&format!("/v1/health/service/web?filter={f}"))
        .await?;
    assert_eq!(ids(&v), ["web-1", "web-2"]);
    let f = qs(r#"Checks.Status contains "critical""#);
    let r = a.get(&format!("/v1/health/service/web?filter={f}")).await?;
    r.assert_status(200);
    let f = qs("this is not ( a filter");
    let r = a.get(&format!("/v1/health/service/web?filter={f}")).await?;
    r.assert_status(400);
    Ok(())
}

#[tokio::test]
async fn health_service_node_meta_matches() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({
                "Node": "meta-node", "Address": "127.0.0.3", "NodeMeta": {"rack": "r1"},
                "Service": {"ID": "db1", "Service": "db", "Port": 5432}
            }),
        )
        .await?;
    r.assert_status(200);
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({
                "Node": "meta-node-2", "Address": "127.0.0.4", "NodeMeta": {"rack": "r2"},
                "Service": {"ID": "db2", "Service": "db", "Port": 5432}
            }),
        )
        .await?;
    r.assert_status(200);
    let v = a
        .get_json("/v1/health/service/db?node-meta=rack:r1")
        .await?;
    assert_eq!(ids(&v), ["db1"]);
    assert_eq!(v[0]["Node"]["Meta"]["rack"], "r1");
    // Catalog-registered service with no checks: Checks is [] and it counts as passing.
    assert_eq!(v[0]["Checks"], json!([]));
    let v = a.get_json("/v1/health/service/db?passing").await?;
    assert_eq!(ids(&v), ["db1", "db2"]);
    Ok(())
}

#[tokio::test]
async fn health_state() -> Result<()> {
    let a = TestAgent::dev().await?;
    two_web_instances(&a).await?;
    let check_ids = |v: &Value| -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap_or_else(|| panic!("expected an array: {v}"))
            .iter()
            .map(|c| c["CheckID"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    let r = a.get("/v1/health/state/any").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(
        check_ids(&r.json()),
        ["serfHealth", "service:web-1", "service:web-2"]
    );
    let v = a.get_json("/v1/health/state/passing").await?;
    assert_eq!(check_ids(&v), ["serfHealth", "service:web-1"]);
    let v = a.get_json("/v1/health/state/critical").await?;
    assert_eq!(check_ids(&v), ["service:web-2"]);
    let r = a.get("/v1/health/state/warning").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), json!([]), "empty state is [] not null");
    let r = a.get("/v1/health/state/bogus").await?;
    r.assert_status(400);
    Ok(())
}

async fn check_status(a: &TestAgent, check_id: &str) -> Result<(String, String)> {
    let v = a.get_json("/v1/agent/checks").await?;
    let Some(c) = v.get(check_id) else {
        bail!("check {check_id} not in agent/checks: {v}");
    };
    Ok((
        c["Status"].as_str().unwrap_or_default().to_string(),
        c["Output"].as_str().unwrap_or_default().to_string(),
    ))
}

async fn wait_status(
    a: &TestAgent,
    check_id: &str,
    want: &str,
    timeout: Duration,
) -> Result<String> {
    eventually(timeout, &format!("{check_id} to become {want}"), || async {
        let (status, output) = check_status(a, check_id).await?;
        if status == want {
            // The catalog view (health endpoint) must agree.
            let v = a.get_json(&format!("/v1/health/node/{}", a.node)).await?;
            let cat = v
                .as_array()
                .and_then(|l| l.iter().find(|c| c["CheckID"] == check_id))
                .map(|c| c["Status"].as_str().unwrap_or_default().to_string());
            if cat.as_deref() == Some(want) {
                return Ok(Some(output));
            }
            bail!("agent says {want}, catalog says {cat:?}");
        }
        bail!("status {status:?} output {output:?}")
    })
    .await
}

#[tokio::test]
async fn ttl_check_passes_then_expires() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "ttl-svc", "Check": {"TTL": "1s"}}))
        .await?;
    let (status, _) = check_status(&a, "service:ttl-svc").await?;
    assert_eq!(status, "critical", "checks start critical by default");

    let r = a
        .put("/v1/agent/check/pass/service:ttl-svc?note=alive", "")
        .await?;
    r.assert_status(200);
    let (status, output) = check_status(&a, "service:ttl-svc").await?;
    assert_eq!(status, "passing");
    assert_eq!(output, "alive");
    let passed_at = Instant::now();
    let v = a.get_json("/v1/health/service/ttl-svc?passing").await?;
    assert_eq!(v.as_array().unwrap().len(), 1);

    // No further heartbeat: after the 1s TTL it turns critical.
    let output = wait_status(&a, "service:ttl-svc", "critical", Duration::from_secs(10)).await?;
    assert!(
        passed_at.elapsed() >= Duration::from_millis(900),
        "expired too early: {:?}",
        passed_at.elapsed()
    );
    assert!(
        output.contains("TTL expired"),
        "output after expiry: {output:?}"
    );
    let v = a.get_json("/v1/health/service/ttl-svc?passing").await?;
    assert_eq!(v, json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_maps_status_codes() -> Result<()> {
    let a = TestAgent::dev().await?;
    let stub = StubHttpServer::start(200, "ok").await?;
    a.register_service(&json!({
        "Name": "http-svc",
        "Port": stub.addr.port(),
        "Check": {"HTTP": stub.url("/health"), "Interval": "1s", "Timeout": "1s"}
    }))
    .await?;
    let t = Duration::from_secs(15);
    wait_status(&a, "service:http-svc", "passing", t).await?;
    assert!(stub.hits() > 0);
    let v = a.get_json("/v1/agent/checks").await?;
    assert_eq!(v["service:http-svc"]["Type"], "http");

    stub.set_status(429);
    wait_status(&a, "service:http-svc", "warning", t).await?;
    stub.set_status(500);
    wait_status(&a, "service:http-svc", "critical", t).await?;
    stub.set_status(204);
    wait_status(&a, "service:http-svc", "passing", t).await?;
    Ok(())
}

#[tokio::test]
async fn tcp_check_passes_and_fails() -> Result<()> {
    let a = TestAgent::dev().await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    a.register_service(&json!({
        "Name": "tcp-svc",
        "Port": addr.port(),
        "Check": {"TCP": addr.to_string(), "Interval": "1s", "Timeout": "1s"}
    }))
    .await?;
    let t = Duration::from_secs(15);
    wait_status(&a, "service:tcp-svc", "passing", t).await?;
    let v = a.get_json("/v1/agent/checks").await?;
    assert_eq!(v["service:tcp-svc"]["Type"], "tcp");
    drop(listener);
    wait_status(&a, "service:tcp-svc", "critical", t).await?;
    Ok(())
}
