//! `/v1/catalog/*`: register/deregister, datacenters, nodes, services, service/:name,
//! node/:node, node-services/:node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{qs, TestAgent};
use serde_json::{json, Value};

fn has_keys(v: &Value, keys: &[&str]) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object: {v}"));
    for k in keys {
        assert!(o.contains_key(*k), "missing field {k:?} in {v}");
    }
}

async fn register_ext(a: &TestAgent) -> Result<()> {
    let body = json!({
        "Datacenter": "dc1",
        "Node": "ext-node",
        "Address": "127.0.0.2",
        "TaggedAddresses": {"lan": "127.0.0.2", "wan": "127.0.0.3"},
        "NodeMeta": {"rack": "r1", "external-source": "test"},
        "Service": {
            "ID": "redis1",
            "Service": "redis",
            "Tags": ["primary", "v1"],
            "Address": "127.0.0.10",
            "Meta": {"redis_version": "4.0"},
            "Port": 8000
        },
        "Check": {
            "Node": "ext-node",
            "CheckID": "service:redis1",
            "Name": "Redis health check",
            "Status": "passing",
            "ServiceID": "redis1"
        }
    });
    let r = a.put_json("/v1/catalog/register", &body).await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    // A second instance of the same service on another node, with overlapping tags.
    let body = json!({
        "Node": "ext-node-2",
        "Address": "127.0.0.4",
        "NodeMeta": {"rack": "r2"},
        "Service": {"ID": "redis2", "Service": "redis", "Tags": ["v1", "replica"], "Port": 8001}
    });
    let r = a.put_json("/v1/catalog/register", &body).await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    Ok(())
}

#[tokio::test]
async fn datacenters() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/catalog/datacenters").await?;
    r.assert_status(200);
    assert_eq!(r.json(), json!(["dc1"]));
    Ok(())
}

#[tokio::test]
async fn nodes_lists_the_agent_with_full_shape() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/catalog/nodes").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let nodes = v.as_array().unwrap();
    let me = nodes
        .iter()
        .find(|n| n["Node"] == a.node.as_str())
        .unwrap_or_else(|| panic!("agent node {} not in {v}", a.node));
    has_keys(
        me,
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
    assert_eq!(me["Address"], "127.0.0.1");
    assert_eq!(me["Datacenter"], "dc1");
    assert!(me["Meta"].is_object());
    assert!(me["CreateIndex"].as_u64().unwrap() > 0);
    Ok(())
}

#[tokio::test]
async fn register_and_read_back_everywhere() -> Result<()> {
    let a = TestAgent::dev().await?;
    register_ext(&a).await?;

    // catalog/services: name -> union of tags, deduplicated.
    let r = a.get("/v1/catalog/services").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let mut tags: Vec<String> = v["redis"]
        .as_array()
        .unwrap_or_else(|| panic!("redis missing in {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["primary", "replica", "v1"]);
    assert!(
        v["consul"].is_array(),
        "server's consul service listed: {v}"
    );

    // catalog/nodes contains both external nodes.
    let v = a.get_json("/v1/catalog/nodes").await?;
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ext-node") && names.contains(&"ext-node-2"),
        "{names:?}"
    );
    let ext = v
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Node"] == "ext-node")
        .unwrap();
    assert_eq!(ext["Address"], "127.0.0.2");
    assert_eq!(ext["Meta"]["rack"], "r1");
    assert_eq!(ext["TaggedAddresses"]["wan"], "127.0.0.3");

    // catalog/service/:name: flat ServiceNode shape.
    let r = a.get("/v1/catalog/service/redis").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    let s1 = list.iter().find(|s| s["ServiceID"] == "redis1").unwrap();
    has_keys(
        s1,
        &[
            "ID",
            "Node",
            "Address",
            "Datacenter",
            "TaggedAddresses",
            "NodeMeta",
            "ServiceKind",
            "ServiceID",
            "ServiceName",
            "ServiceTags",
            "ServiceAddress",
            "ServiceWeights",
            "ServiceMeta",
            "ServicePort",
            "ServiceEnableTagOverride",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_eq!(s1["Node"], "ext-node");
    assert_eq!(s1["Address"], "127.0.0.2");
    assert_eq!(s1["Datacenter"], "dc1");
    assert_eq!(s1["NodeMeta"]["rack"], "r1");
    assert_eq!(s1["ServiceName"], "redis");
    assert_eq!(s1["ServiceTags"], json!(["primary", "v1"]));
    assert_eq!(s1["ServiceAddress"], "127.0.0.10");
    assert_eq!(s1["ServicePort"], 8000);
    assert_eq!(s1["ServiceMeta"]["redis_version"], "4.0");
    assert_eq!(s1["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(s1["ServiceEnableTagOverride"], false);
    let s2 = list.iter().find(|s| s["ServiceID"] == "redis2").unwrap();
    assert_eq!(
        s2["ServiceAddress"], "",
        "no service address means empty string"
    );
    assert_eq!(s2["ServiceMeta"], json!({}), "Meta defaults to {{}}");

    // ?tag filters; repeated ?tag means AND.
    let v = a.get_json("/v1/catalog/service/redis?tag=v1").await?;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = a.get_json("/v1/catalog/service/redis?tag=primary").await?;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "redis1");
    let v = a
        .get_json("/v1/catalog/service/redis?tag=v1&tag=replica")
        .await?;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "redis2");
    let v = a
        .get_json("/v1/catalog/service/redis?tag=primary&tag=replica")
        .await?;
    assert_eq!(v, json!([]));

    // ?node-meta.
    let v = a
        .get_json("/v1/catalog/service/redis?node-meta=rack:r2")
        .await?;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "redis2");

    // ?filter (go-bexpr over ServiceNode fields).
    let f = qs(r#"ServiceMeta.redis_version == "4.0""#);
    let v = a
        .get_json(&format!("/v1/catalog/service/redis?filter={f}"))
        .await?;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "redis1");
    let f = qs(r#""replica" in ServiceTags"#);
    let v = a
        .get_json(&format!("/v1/catalog/service/redis?filter={f}"))
        .await?;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "redis2");

    // Unknown service: empty list, not null, with headers.
    let r = a.get("/v1/catalog/service/nope").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), json!([]));

    // catalog/node/:node: Node + Services map.
    let r = a.get("/v1/catalog/node/ext-node").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    assert_eq!(v["Node"]["Node"], "ext-node");
    assert_eq!(v["Node"]["Address"], "127.0.0.2");
    let svc = &v["Services"]["redis1"];
    has_keys(
        svc,
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
    assert_eq!(svc["Service"], "redis");
    assert_eq!(svc["Port"], 8000);

    // catalog/node-services/:node: Node + Services list.
    let r = a.get("/v1/catalog/node-services/ext-node-2").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    assert_eq!(v["Node"]["Node"], "ext-node-2");
    let list = v["Services"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["ID"], "redis2");
    assert_eq!(list[0]["Service"], "redis");
    assert_eq!(list[0]["Tags"], json!(["v1", "replica"]));
    let f = qs(r#""replica" in Tags"#);
    let v = a
        .get_json(&format!("/v1/catalog/node-services/ext-node-2?filter={f}"))
        .await?;
    assert_eq!(v["Services"].as_array().unwrap().len(), 1);
    let f = qs(r#""nope" in Tags"#);
    let v = a
        .get_json(&format!("/v1/catalog/node-services/ext-node-2?filter={f}"))
        .await?;
    assert_eq!(v["Services"], json!([]));

    // The check given with the registration is visible through health.
    let v = a.get_json("/v1/health/checks/redis").await?;
    let checks = v.as_array().unwrap();
    assert_eq!(checks.len(), 1, "{v}");
    assert_eq!(checks[0]["CheckID"], "service:redis1");
    assert_eq!(checks[0]["Status"], "passing");
    assert_eq!(checks[0]["Node"], "ext-node");
    Ok(())
}

#[tokio::test]
async fn unknown_node_reads() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/catalog/node/no-such-node").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(
        r.json(),
        Value::Null,
        "Consul answers null for an unknown node"
    );
    Ok(())
}

#[tokio::test]
async fn nodes_filters() -> Result<()> {
    let a = TestAgent::dev().await?;
    register_ext(&a).await?;
    let v = a.get_json("/v1/catalog/nodes?node-meta=rack:r1").await?;
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ext-node"]);
    let f = qs(r#"Meta.rack == "r2""#);
    let v = a.get_json(&format!("/v1/catalog/nodes?filter={f}")).await?;
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ext-node-2"]);
    Ok(())
}

#[tokio::test]
async fn deregister_service_check_and_node() -> Result<()> {
    let a = TestAgent::dev().await?;
    register_ext(&a).await?;
    let before = a.get("/v1/catalog/services").await?.index();

    // Deregister one service instance.
    let r = a
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": "ext-node-2", "ServiceID": "redis2"}),
        )
        .await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let r = a.get("/v1/catalog/service/redis").await?;
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "redis1");
    let after = a.get("/v1/catalog/services").await?.index();
    assert!(
        after > before,
        "services index must grow: {before} -> {after}"
    );
    // The node itself stays.
    let v = a.get_json("/v1/catalog/node/ext-node-2").await?;
    assert_eq!(v["Node"]["Node"], "ext-node-2");

    // Deregister a check only.
    let r = a
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": "ext-node", "CheckID": "service:redis1"}),
        )
        .await?;
    r.assert_status(200);
    assert_eq!(a.get_json("/v1/health/checks/redis").await?, json!([]));
    assert_eq!(
        a.get_json("/v1/catalog/service/redis").await?[0]["ServiceID"],
        "redis1"
    );

    // Deregister the whole node: its services go too.
    let r = a
        .put_json("/v1/catalog/deregister", &json!({"Node": "ext-node"}))
        .await?;
    r.assert_status(200);
    assert_eq!(a.get_json("/v1/catalog/service/redis").await?, json!([]));
    let v = a.get_json("/v1/catalog/services").await?;
    assert!(v.get("redis").is_none(), "redis gone from {v}");
    let v = a.get_json("/v1/catalog/nodes").await?;
    assert!(
        !v.as_array()
            .unwrap()
            .iter()
            .any(|n| n["Node"] == "ext-node"),
        "{v}"
    );
    Ok(())
}

#[tokio::test]
async fn register_accepts_lowercase_keys() -> Result<()> {
    let a = TestAgent::dev().await?;
    let body = json!({
        "node": "lc-node",
        "address": "127.0.0.5",
        "service": {"id": "lc1", "service": "lc", "tags": ["x"], "port": 9000}
    });
    let r = a.put_json("/v1/catalog/register", &body).await?;
    r.assert_status(200);
    let v = a.get_json("/v1/catalog/service/lc").await?;
    assert_eq!(v[0]["ServiceID"], "lc1");
    assert_eq!(v[0]["ServicePort"], 9000);
    assert_eq!(v[0]["Address"], "127.0.0.5");
    Ok(())
}

/// Consul rejects these in the Catalog.Register RPC with plain errors ("Must provide node",
/// "Must provide address…", "Must provide service name"), which its HTTP layer turns into 500;
/// a 400 is as good. Either way nothing may be registered.
#[tokio::test]
async fn register_requires_node_address_and_service_name() -> Result<()> {
    let a = TestAgent::dev().await?;
    let bodies = [
        json!({"Address": "127.0.0.1"}),
        json!({"Node": "n-without-addr"}),
        json!({"Node": "n-bad-svc", "Address": "127.0.0.1", "Service": {"ID": "x"}}),
    ];
    for body in bodies {
        let r = a.put_json("/v1/catalog/register", &body).await?;
        assert!(
            r.status == 400 || r.status == 500,
            "{body}: {} {:?}",
            r.status,
            r.text()
        );
    }
    let v = a.get_json("/v1/catalog/nodes").await?;
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, [a.node.as_str()], "nothing registered");
    Ok(())
}

#[tokio::test]
async fn agent_registered_service_appears_in_catalog() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["a"]}))
        .await?;
    let v = a.get_json("/v1/catalog/service/web").await?;
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["Node"], a.node.as_str());
    assert_eq!(list[0]["ServiceID"], "web-1");
    assert_eq!(list[0]["ServicePort"], 8080);
    assert_eq!(list[0]["Address"], "127.0.0.1");
    let v = a.get_json(&format!("/v1/catalog/node/{}", a.node)).await?;
    assert_eq!(v["Services"]["web-1"]["Service"], "web");
    Ok(())
}
