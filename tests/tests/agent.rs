//! `/v1/agent/*`: self, members, services, checks, service and check registration, TTL updates,
//! maintenance, and the agent health endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::TestAgent;
use serde_json::{json, Value};

fn has_keys(v: &Value, keys: &[&str]) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object: {v}"));
    for k in keys {
        assert!(o.contains_key(*k), "missing field {k:?} in {v}");
    }
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn self_describes_the_agent() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/agent/self").await?;
    r.assert_status(200);
    let v = r.json();
    has_keys(
        &v,
        &["Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"],
    );
    let c = &v["Config"];
    assert_eq!(c["Datacenter"], "dc1");
    assert_eq!(c["PrimaryDatacenter"], "dc1");
    assert_eq!(c["NodeName"], a.node.as_str());
    assert_eq!(c["Server"], true);
    assert!(c["NodeID"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(c["Revision"].is_string());
    let version = c["Version"].as_str().unwrap();
    let parts: Vec<&str> = version
        .split(['-', '+'])
        .next()
        .unwrap()
        .split('.')
        .collect();
    assert_eq!(parts.len(), 3, "Version must be semver: {version:?}");
    assert!(
        parts.iter().all(|p| p.parse::<u64>().is_ok()),
        "Version must be semver: {version:?}"
    );
    let d = &v["DebugConfig"];
    has_keys(d, &["ConnectEnabled", "GRPCPort", "GRPCTLSPort"]);
    let m = &v["Member"];
    assert_eq!(m["Name"], a.node.as_str());
    assert_eq!(m["Addr"], "127.0.0.1");
    assert_eq!(m["Status"], 1);
    assert!(m["Port"].as_u64().is_some());
    assert_eq!(m["Tags"]["dc"], "dc1");
    assert_eq!(m["Tags"]["role"], "consul");
    assert!(v["Coord"]["Vec"].is_array());
    Ok(())
}

#[tokio::test]
async fn members_lists_self_alive() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/agent/members").await?;
    r.assert_status(200);
    let v = r.json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    let m = &list[0];
    has_keys(
        m,
        &[
            "Name",
            "Addr",
            "Port",
            "Tags",
            "Status",
            "ProtocolMin",
            "ProtocolMax",
            "ProtocolCur",
            "DelegateMin",
            "DelegateMax",
            "DelegateCur",
        ],
    );
    assert_eq!(m["Name"], a.node.as_str());
    assert_eq!(m["Addr"], "127.0.0.1");
    assert_eq!(m["Status"], 1);
    assert_eq!(m["Tags"]["role"], "consul");
    assert_eq!(m["Tags"]["dc"], "dc1");

    // WAN pool: servers only, named <node>.<dc>.
    let v = a.get_json("/v1/agent/members?wan").await?;
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{}.dc1", a.node)]);
    Ok(())
}

#[tokio::test]
async fn register_service_defaults_and_read_back() -> Result<()> {
    let a = TestAgent::dev().await?;
    // ID defaults to Name.
    a.register_service(&json!({"Name": "redis", "Port": 6379}))
        .await?;
    let r = a.get("/v1/agent/services").await?;
    r.assert_status(200);
    let v = r.json();
    let s = &v["redis"];
    has_keys(
        s,
        &[
            "ID",
            "Service",
            "Tags",
            "Meta",
            "Port",
            "Address",
            "Weights",
            "EnableTagOverride",
            "Datacenter",
        ],
    );
    assert_eq!(s["ID"], "redis");
    assert_eq!(s["Service"], "redis");
    assert_eq!(s["Tags"], json!([]), "Tags default to []");
    assert_eq!(s["Meta"], json!({}), "Meta defaults to {{}}");
    assert_eq!(s["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(s["Port"], 6379);
    assert_eq!(s["Address"], "");
    assert_eq!(s["EnableTagOverride"], false);
    assert_eq!(s["Datacenter"], "dc1");

    // agent/service/:id: same object plus a content hash.
    let r = a.get("/v1/agent/service/redis").await?;
    r.assert_status(200);
    let one = r.json();
    assert_eq!(one["ID"], "redis");
    assert_eq!(one["Service"], "redis");
    assert!(
        one["ContentHash"].as_str().is_some_and(|h| !h.is_empty()),
        "ContentHash in {one}"
    );
    assert_eq!(
        r.header("X-Consul-ContentHash").as_deref(),
        one["ContentHash"].as_str()
    );

    let r = a.get("/v1/agent/service/nope").await?;
    r.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn register_full_definition() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({
        "ID": "redis1", "Name": "redis", "Tags": ["primary", "v1"], "Address": "127.0.0.1",
        "Port": 8000, "Meta": {"redis_version": "4.0"}, "EnableTagOverride": true,
        "Weights": {"Passing": 10, "Warning": 1},
        "TaggedAddresses": {"lan": {"Address": "127.0.0.1", "Port": 8000}},
        "Checks": [
            {"TTL": "15s", "CheckID": "redis-ttl", "Name": "ttl"},
            {"TTL": "30s", "Notes": "second", "Status": "passing"}
        ]
    }))
    .await?;
    let v = a.get_json("/v1/agent/services").await?;
    let s = &v["redis1"];
    assert_eq!(s["Tags"], json!(["primary", "v1"]));
    assert_eq!(s["Meta"]["redis_version"], "4.0");
    assert_eq!(s["EnableTagOverride"], true);
    assert_eq!(s["Weights"], json!({"Passing": 10, "Warning": 1}));
    assert_eq!(s["TaggedAddresses"]["lan"]["Address"], "127.0.0.1");
    assert_eq!(s["TaggedAddresses"]["lan"]["Port"], 8000);

    let checks = a.get_json("/v1/agent/checks").await?;
    let c1 = &checks["redis-ttl"];
    assert_eq!(c1["Name"], "ttl");
    assert_eq!(c1["Status"], "critical");
    assert_eq!(c1["ServiceID"], "redis1");
    assert_eq!(c1["ServiceName"], "redis");
    // The unnamed second check gets service:<id>:<n> (1-based index in Checks).
    let c2 = &checks["service:redis1:2"];
    assert_eq!(c2["Status"], "passing", "initial Status honoured: {checks}");
    assert_eq!(c2["Notes"], "second");
    assert_eq!(c2["Name"], "Service 'redis' check");
    assert_eq!(c2["Node"], a.node.as_str());
    Ok(())
}

#[tokio::test]
async fn register_accepts_lowercase_and_snake_case() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({
        "name": "lc", "id": "lc-1", "port": 81, "tags": ["t"],
        "enable_tag_override": true,
        "check": {"ttl": "10s", "deregister_critical_service_after": "90m"}
    }))
    .await?;
    let v = a.get_json("/v1/agent/services").await?;
    assert_eq!(v["lc-1"]["Service"], "lc");
    assert_eq!(v["lc-1"]["Port"], 81);
    assert_eq!(v["lc-1"]["Tags"], json!(["t"]));
    assert_eq!(v["lc-1"]["EnableTagOverride"], true);
    let c = a.get_json("/v1/agent/checks").await?;
    assert_eq!(c["service:lc-1"]["Type"], "ttl");
    Ok(())
}

#[tokio::test]
async fn replace_existing_checks() -> Result<()> {
    let a = TestAgent::dev().await?;
    let def = |checks: Value| json!({"Name": "svc", "ID": "svc1", "Checks": checks});
    a.register_service(&def(json!([
        {"CheckID": "c1", "TTL": "30s"},
        {"CheckID": "c2", "TTL": "30s"}
    ])))
    .await?;
    assert_eq!(
        sorted_keys(&a.get_json("/v1/agent/checks").await?),
        ["c1", "c2"]
    );

    // Without the flag, checks missing from the request are kept.
    a.register_service(&def(json!([{"CheckID": "c1", "TTL": "30s"}])))
        .await?;
    assert_eq!(
        sorted_keys(&a.get_json("/v1/agent/checks").await?),
        ["c1", "c2"]
    );

    // With it, they are removed (locally and from the catalog).
    let r = a
        .put_json(
            "/v1/agent/service/register?replace-existing-checks",
            &def(json!([{"CheckID": "c1", "TTL": "30s"}])),
        )
        .await?;
    r.assert_status(200);
    assert_eq!(sorted_keys(&a.get_json("/v1/agent/checks").await?), ["c1"]);
    let v = a.get_json("/v1/health/checks/svc").await?;
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1"]);
    Ok(())
}

#[tokio::test]
async fn deregister_service_removes_it_and_its_checks() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "gone", "Check": {"TTL": "30s"}}))
        .await?;
    assert!(a
        .get_json("/v1/agent/checks")
        .await?
        .get("service:gone")
        .is_some());
    let r = a.put("/v1/agent/service/deregister/gone", "").await?;
    r.assert_status(200);
    assert!(a
        .get_json("/v1/agent/services")
        .await?
        .get("gone")
        .is_none());
    assert!(a
        .get_json("/v1/agent/checks")
        .await?
        .get("service:gone")
        .is_none());
    assert_eq!(a.get_json("/v1/catalog/service/gone").await?, json!([]));
    assert_eq!(a.get_json("/v1/health/checks/gone").await?, json!([]));
    let v = a.get_json("/v1/catalog/services").await?;
    assert!(v.get("gone").is_none(), "{v}");

    let r = a.put("/v1/agent/service/deregister/never-was", "").await?;
    r.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn check_register_update_and_deregister() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "mem", "TTL": "30s", "Notes": "memory"}),
        )
        .await?;
    r.assert_status(200);
    // ID defaults to Name.
    let c = a.get_json("/v1/agent/checks").await?;
    let m = &c["mem"];
    has_keys(
        m,
        &[
            "Node",
            "CheckID",
            "Name",
            "Status",
            "Notes",
            "Output",
            "ServiceID",
            "ServiceName",
            "Type",
        ],
    );
    assert_eq!(m["CheckID"], "mem");
    assert_eq!(m["Status"], "critical");
    assert_eq!(m["Notes"], "memory");
    assert_eq!(m["ServiceID"], "");

    for (verb, status) in [
        ("pass", "passing"),
        ("warn", "warning"),
        ("fail", "critical"),
    ] {
        let note = format!("note-{verb}");
        let r = a
            .put(&format!("/v1/agent/check/{verb}/mem?note={note}"), "")
            .await?;
        r.assert_status(200);
        let c = a.get_json("/v1/agent/checks").await?;
        assert_eq!(c["mem"]["Status"], status, "after {verb}");
        assert_eq!(c["mem"]["Output"], note.as_str(), "after {verb}");
        // The catalog sees it too.
        let v = a.get_json(&format!("/v1/health/node/{}", a.node)).await?;
        let cat = v
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["CheckID"] == "mem")
            .unwrap();
        assert_eq!(cat["Status"], status, "catalog after {verb}");
    }

    let r = a
        .put_json(
            "/v1/agent/check/update/mem",
            &json!({"Status": "warning", "Output": "80% used"}),
        )
        .await?;
    r.assert_status(200);
    let c = a.get_json("/v1/agent/checks").await?;
    assert_eq!(c["mem"]["Status"], "warning");
    assert_eq!(c["mem"]["Output"], "80% used");
    let r = a
        .put_json("/v1/agent/check/update/mem", &json!({"Status": "fine"}))
        .await?;
    r.assert_status(400);

    let r = a.put("/v1/agent/check/pass/no-such-check", "").await?;
    r.assert_status(404);

    let r = a.put("/v1/agent/check/deregister/mem", "").await?;
    r.assert_status(200);
    assert!(a.get_json("/v1/agent/checks").await?.get("mem").is_none());
    let v = a.get_json(&format!("/v1/health/node/{}", a.node)).await?;
    assert!(!v.as_array().unwrap().iter().any(|c| c["CheckID"] == "mem"));
    Ok(())
}

#[tokio::test]
async fn check_register_attached_to_service_and_validation() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "api", "Port": 9000}))
        .await?;
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"ID": "api-ttl", "Name": "api ttl", "TTL": "30s", "ServiceID": "api", "Status": "passing"}),
        )
        .await?;
    r.assert_status(200);
    let c = a.get_json("/v1/agent/checks").await?;
    assert_eq!(c["api-ttl"]["ServiceID"], "api");
    assert_eq!(c["api-ttl"]["ServiceName"], "api");
    assert_eq!(c["api-ttl"]["Status"], "passing");
    let v = a.get_json("/v1/health/checks/api").await?;
    assert_eq!(v[0]["CheckID"], "api-ttl");

    // Neither TTL nor an executable check with an interval.
    let r = a
        .put_json("/v1/agent/check/register", &json!({"Name": "bad"}))
        .await?;
    r.assert_status(400);
    // HTTP check without interval.
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "bad2", "HTTP": "http://127.0.0.1:1/"}),
        )
        .await?;
    r.assert_status(400);
    // Unknown service: Consul answers 500 `ServiceID "nope" does not exist` (a plain error, so
    // the code is incidental); any error status will do, but nothing may be registered.
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "bad3", "TTL": "10s", "ServiceID": "nope"}),
        )
        .await?;
    assert!(
        r.status >= 400,
        "check for an unknown service: {} {:?}",
        r.status,
        r.text()
    );
    assert!(
        r.text().contains("nope"),
        "the error names the service: {:?}",
        r.text()
    );
    assert!(a.get_json("/v1/agent/checks").await?.get("bad3").is_none());
    // Invalid initial status.
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "bad4", "TTL": "10s", "Status": "wonderful"}),
        )
        .await?;
    r.assert_status(400);
    // Service without a name.
    let r = a
        .put_json("/v1/agent/service/register", &json!({"Port": 1}))
        .await?;
    r.assert_status(400);
    Ok(())
}

#[tokio::test]
async fn service_maintenance() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "m", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await?;
    assert_eq!(
        a.get_json("/v1/health/service/m?passing")
            .await?
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = a
        .put(
            "/v1/agent/service/maintenance/m?enable=true&reason=upgrading",
            "",
        )
        .await?;
    r.assert_status(200);
    let c = a.get_json("/v1/agent/checks").await?;
    let mc = &c["_service_maintenance:m"];
    assert_eq!(mc["Status"], "critical", "{c}");
    assert_eq!(mc["Notes"], "upgrading");
    assert_eq!(mc["ServiceID"], "m");
    assert_eq!(a.get_json("/v1/health/service/m?passing").await?, json!([]));

    let r = a
        .put("/v1/agent/service/maintenance/m?enable=false", "")
        .await?;
    r.assert_status(200);
    assert!(a
        .get_json("/v1/agent/checks")
        .await?
        .get("_service_maintenance:m")
        .is_none());
    assert_eq!(
        a.get_json("/v1/health/service/m?passing")
            .await?
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = a.put("/v1/agent/service/maintenance/m", "").await?;
    r.assert_status(400);
    let r = a
        .put("/v1/agent/service/maintenance/nope?enable=true", "")
        .await?;
    r.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn node_maintenance() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "n", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await?;
    let r = a
        .put("/v1/agent/maintenance?enable=true&reason=patching", "")
        .await?;
    r.assert_status(200);
    let c = a.get_json("/v1/agent/checks").await?;
    assert_eq!(c["_node_maintenance"]["Status"], "critical", "{c}");
    assert_eq!(c["_node_maintenance"]["Notes"], "patching");
    assert_eq!(c["_node_maintenance"]["ServiceID"], "");
    // Node checks are part of every service entry on the node.
    assert_eq!(a.get_json("/v1/health/service/n?passing").await?, json!([]));
    let v = a.get_json("/v1/health/service/n").await?;
    let ids: Vec<&str> = v[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"_node_maintenance"), "{ids:?}");

    let r = a.put("/v1/agent/maintenance?enable=false", "").await?;
    r.assert_status(200);
    assert!(a
        .get_json("/v1/agent/checks")
        .await?
        .get("_node_maintenance")
        .is_none());
    assert_eq!(
        a.get_json("/v1/health/service/n?passing")
            .await?
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = a.put("/v1/agent/maintenance", "").await?;
    r.assert_status(400);
    Ok(())
}

#[tokio::test]
async fn agent_health_by_id_and_name() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "lb", "ID": "lb-1", "Check": {"TTL": "30s"}}))
        .await?;
    a.register_service(&json!({"Name": "lb", "ID": "lb-2", "Check": {"TTL": "30s"}}))
        .await?;
    let id = "/v1/agent/health/service/id/lb-1";

    // critical -> 503
    let r = a.get(id).await?;
    r.assert_status(503);
    let v = r.json();
    assert_eq!(v["AggregatedStatus"], "critical");
    assert_eq!(v["Service"]["ID"], "lb-1");
    assert!(v["Checks"].is_array());
    let r = a.get(&format!("{id}?format=text")).await?;
    r.assert_status(503);
    assert_eq!(r.text(), "critical");

    // warning -> 429
    a.put("/v1/agent/check/warn/service:lb-1", "")
        .await?
        .assert_status(200);
    let r = a.get(id).await?;
    r.assert_status(429);
    assert_eq!(r.json()["AggregatedStatus"], "warning");

    // passing -> 200
    a.put("/v1/agent/check/pass/service:lb-1", "")
        .await?
        .assert_status(200);
    let r = a.get(id).await?;
    r.assert_status(200);
    assert_eq!(r.json()["AggregatedStatus"], "passing");
    let r = a.get(&format!("{id}?format=text")).await?;
    r.assert_status(200);
    assert_eq!(r.text(), "passing");

    // By name: the worst instance decides the code; the body lists every instance.
    let r = a.get("/v1/agent/health/service/name/lb").await?;
    r.assert_status(503);
    let v = r.json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    for e in list {
        has_keys(e, &["AggregatedStatus", "Service", "Checks"]);
    }
    a.put("/v1/agent/check/pass/service:lb-2", "")
        .await?
        .assert_status(200);
    let r = a
        .get("/v1/agent/health/service/name/lb?format=text")
        .await?;
    r.assert_status(200);
    assert_eq!(r.text(), "passing");

    let r = a.get("/v1/agent/health/service/id/nope").await?;
    r.assert_status(404);
    let r = a.get("/v1/agent/health/service/name/nope").await?;
    r.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn agent_services_and_checks_filter() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "f1", "Tags": ["blue"], "Check": {"TTL": "30s"}}))
        .await?;
    a.register_service(
        &json!({"Name": "f2", "Tags": ["green"], "Check": {"TTL": "30s", "Status": "passing"}}),
    )
    .await?;
    let f = registry_tests::qs(r#""blue" in Tags"#);
    let v = a
        .get_json(&format!("/v1/agent/services?filter={f}"))
        .await?;
    assert_eq!(sorted_keys(&v), ["f1"]);
    let f = registry_tests::qs(r#"Status == "passing""#);
    let v = a.get_json(&format!("/v1/agent/checks?filter={f}")).await?;
    assert_eq!(sorted_keys(&v), ["service:f2"]);
    Ok(())
}
