//! `/v1/query`: prepared queries end to end on a `registry agent -dev`: create, list, read,
//! update and delete with Consul's validation messages; execute by ID and by name with tag
//! (and `!tag`), health, metadata and limit filters; templates by name prefix and by
//! regexp; deletion with the bound session; snapshots; DNS `<query>.query.consul`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::TestAgent;
use serde_json::{json, Value};
use std::process::Command;

/// Registers `svc` (id `<svc>-<node>`) on `node` at `addr` with one check of `status`.
#[allow(clippy::too_many_arguments)]
async fn instance(
    a: &TestAgent,
    node: &str,
    addr: &str,
    svc: &str,
    tags: &[&str],
    status: &str,
    node_meta: Value,
    svc_meta: Value,
) -> Result<()> {
    a.put_json(
        "/v1/catalog/register",
        &json!({
            "Node": node, "Address": addr, "NodeMeta": node_meta,
            "Service": {"ID": format!("{svc}-{node}"), "Service": svc, "Tags": tags,
                        "Port": 8000, "Meta": svc_meta},
            "Check": {"CheckID": format!("chk-{svc}-{node}"), "Name": "c", "Status": status,
                      "ServiceID": format!("{svc}-{node}")}
        }),
    )
    .await?
    .assert_status(200);
    Ok(())
}

fn nodes(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["Nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

async fn create(a: &TestAgent, body: Value) -> Result<String> {
    let r = a
        .request(
            registry_tests::Method::POST,
            "/v1/query",
            Some(body.to_string().into_bytes()),
        )
        .await?;
    r.assert_status(200);
    Ok(r.json()["ID"].as_str().unwrap().to_string())
}

async fn populate(a: &TestAgent) -> Result<()> {
    let m = |k: &str, v: &str| json!({ k: v });
    instance(
        a,
        "n1",
        "127.0.0.11",
        "db",
        &["primary", "v1"],
        "passing",
        m("rack", "r1"),
        m("ver", "1"),
    )
    .await?;
    instance(
        a,
        "n2",
        "127.0.0.12",
        "db",
        &["replica", "v1"],
        "warning",
        m("rack", "r2"),
        m("ver", "1"),
    )
    .await?;
    instance(
        a,
        "n3",
        "127.0.0.13",
        "db",
        &["replica", "v2"],
        "passing",
        m("rack", "r2"),
        m("ver", "2"),
    )
    .await?;
    instance(
        a,
        "n4",
        "127.0.0.14",
        "db",
        &["replica"],
        "critical",
        m("rack", "r1"),
        m("ver", "2"),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn crud_validation_and_execute_filters() -> Result<()> {
    let a = TestAgent::dev().await?;
    populate(&a).await?;

    // Validation, in Consul's words, and nothing stored.
    for (body, want) in [
        (
            json!({"Service": {"Service": "db"}}),
            "Must be bound to a session",
        ),
        (json!({"Name": "x"}), "Must provide a Service name to query"),
        (
            json!({"Name": "x", "Service": {"Service": "db", "Failover": {"NearestN": -1}}}),
            "Bad NearestN '-1', must be >= 0",
        ),
        (
            json!({"Name": "x", "Service": {"Service": "db"}, "DNS": {"TTL": "soon"}}),
            "Bad DNS TTL 'soon'",
        ),
        (
            json!({"Name": "x", "Service": {"Service": "db"}, "Token": "<hidden>"}),
            "redacted token",
        ),
        (
            json!({"ID": "abc", "Name": "x", "Service": {"Service": "db"}}),
            "ID must be empty when creating a new prepared query",
        ),
        (
            json!({"Name": "x", "Template": {"Type": "bogus"}, "Service": {"Service": "db"}}),
            "Bad Template.Type 'bogus'",
        ),
        (
            json!({"Name": "x", "Service": {"Service": "db"}, "Session": "8f246b77-f3e1-ff88-5b48-8ec93abf3e05"}),
            "invalid session",
        ),
    ] {
        let r = a
            .request(
                registry_tests::Method::POST,
                "/v1/query",
                Some(body.to_string().into_bytes()),
            )
            .await?;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(want), "{body}: {}", r.text());
    }
    assert_eq!(a.get_json("/v1/query").await?, json!([]));

    // Create (lower-case keys accepted, as Go's decoder does), read, list.
    let id = create(
        &a,
        json!({"name": "db-all", "service": {"service": "db"}, "dns": {"ttl": "10s"}}),
    )
    .await?;
    let r = a.get(&format!("/v1/query/{id}")).await?;
    r.assert_status(200).assert_read_headers();
    let q = &r.json()[0];
    assert_eq!(q["ID"], id.as_str());
    assert_eq!(q["Name"], "db-all");
    assert_eq!(q["Service"]["Service"], "db");
    assert_eq!(q["Service"]["OnlyPassing"], false);
    assert_eq!(q["Service"]["Failover"]["NearestN"], 0);
    assert_eq!(q["DNS"]["TTL"], "10s");
    assert_eq!(q["Template"]["Type"], "");
    assert!(q["CreateIndex"].as_u64().unwrap() > 0);
    assert_eq!(q["CreateIndex"], q["ModifyIndex"]);
    let list = a.get_json("/v1/query").await?;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Names are unique (without regard to case).
    let r = a
        .request(
            registry_tests::Method::POST,
            "/v1/query",
            Some(
                json!({"Name": "DB-ALL", "Service": {"Service": "db"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await?;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("aliases an existing query name"),
        "{}",
        r.text()
    );

    // Execute by ID and by name: critical excluded, warning counts as passing.
    let by_id = a.get_json(&format!("/v1/query/{id}/execute")).await?;
    assert_eq!(nodes(&by_id), ["n1", "n2", "n3"]);
    assert_eq!(by_id["Service"], "db");
    assert_eq!(by_id["Datacenter"], "dc1");
    assert_eq!(by_id["Failovers"], 0);
    assert_eq!(by_id["DNS"]["TTL"], "10s");
    let first = &by_id["Nodes"][0];
    assert!(first["Service"]["ID"].as_str().unwrap().starts_with("db-"));
    assert!(!first["Checks"].as_array().unwrap().is_empty());
    let by_name = a.get_json("/v1/query/db-all/execute").await?;
    assert_eq!(nodes(&by_name), ["n1", "n2", "n3"]);
    let limited = a.get_json("/v1/query/db-all/execute?limit=2").await?;
    assert_eq!(limited["Nodes"].as_array().unwrap().len(), 2);

    // Update: OnlyPassing, tags with an exclusion, then metadata, then ignored checks.
    let upd = |svc: Value| json!({"Name": "db-all", "Service": svc});
    let put = |body: Value| {
        let a = &a;
        let id = id.clone();
        async move {
            a.put_json(&format!("/v1/query/{id}"), &body)
                .await
                .unwrap()
                .assert_status(200);
        }
    };
    put(upd(json!({"Service": "db", "OnlyPassing": true}))).await;
    assert_eq!(
        nodes(&a.get_json("/v1/query/db-all/execute").await?),
        ["n1", "n3"]
    );
    put(upd(json!({"Service": "db", "Tags": ["REPLICA", "!v2"]}))).await;
    assert_eq!(
        nodes(&a.get_json("/v1/query/db-all/execute").await?),
        ["n2"]
    );
    put(upd(
        json!({"Service": "db", "NodeMeta": {"rack": "r2"}, "ServiceMeta": {"ver": "2"}}),
    ))
    .await;
    assert_eq!(
        nodes(&a.get_json("/v1/query/db-all/execute").await?),
        ["n3"]
    );
    put(upd(
        json!({"Service": "db", "IgnoreCheckIDs": ["chk-db-n4"]}),
    ))
    .await;
    assert_eq!(
        nodes(&a.get_json("/v1/query/db-all/execute").await?),
        ["n1", "n2", "n3", "n4"]
    );
    let q = &a.get_json(&format!("/v1/query/{id}")).await?[0];
    assert!(q["ModifyIndex"].as_u64() > q["CreateIndex"].as_u64());

    // Explain shows the stored query.
    let ex = a.get_json("/v1/query/db-all/explain").await?;
    assert_eq!(ex["Query"]["ID"], id.as_str());

    // Unknown queries.
    let r = a.get("/v1/query/nope/execute").await?;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Query not found");
    let r = a
        .put_json(
            "/v1/query/8f246b77-f3e1-ff88-5b48-8ec93abf3e05",
            &upd(json!({"Service": "db"})),
        )
        .await?;
    assert_eq!(r.status, 400);
    assert!(r
        .text()
        .contains("Cannot modify non-existent prepared query"));

    // Delete.
    a.delete(&format!("/v1/query/{id}"))
        .await?
        .assert_status(200);
    assert_eq!(a.get(&format!("/v1/query/{id}")).await?.status, 404);
    assert_eq!(a.get_json("/v1/query").await?, json!([]));
    Ok(())
}

#[tokio::test]
async fn templates_by_prefix_and_regexp() -> Result<()> {
    let a = TestAgent::dev().await?;
    populate(&a).await?;
    let none = |x: &str| json!({ "x": x });
    instance(
        &a,
        "n5",
        "127.0.0.15",
        "geo-db-eu",
        &["primary"],
        "passing",
        none("1"),
        none("1"),
    )
    .await?;
    // A catch-all template: the executed name is the service.
    create(
        &a,
        json!({"Name": "", "Template": {"Type": "name_prefix_match"},
               "Service": {"Service": "${name.full}"}}),
    )
    .await?;
    // A longer prefix wins; its regexp picks the parts of the name.
    create(
        &a,
        json!({"Name": "pick-", "Template": {"Type": "name_prefix_match",
               "Regexp": "^pick-([a-z]+)-([a-z]+)$"},
               "Service": {"Service": "${match(1)}", "Tags": ["${match(2)}"]}}),
    )
    .await?;
    create(
        &a,
        json!({"Name": "geo-", "Template": {"Type": "name_prefix_match"},
               "Service": {"Service": "geo-${name.suffix}"}}),
    )
    .await?;
    assert_eq!(
        nodes(&a.get_json("/v1/query/db/execute").await?),
        ["n1", "n2", "n3"]
    );
    let r = a.get_json("/v1/query/pick-db-replica/execute").await?;
    assert_eq!(nodes(&r), ["n2", "n3"]);
    assert_eq!(r["Service"], "db");
    let r = a.get_json("/v1/query/geo-db-eu/execute").await?;
    assert_eq!(nodes(&r), ["n5"]);
    let ex = a.get_json("/v1/query/pick-db-primary/explain").await?;
    assert_eq!(ex["Query"]["Service"]["Service"], "db");
    assert_eq!(ex["Query"]["Service"]["Tags"], json!(["primary"]));
    assert_eq!(ex["Query"]["Name"], "pick-");
    // A second catch-all is refused; a bad regexp is refused.
    let r = a
        .request(
            registry_tests::Method::POST,
            "/v1/query",
            Some(
                json!({"Template": {"Type": "name_prefix_match"}, "Service": {"Service": "x"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await?;
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("a query template with an empty name already exists"),
        "{}",
        r.text()
    );
    let r = a
        .request(
            registry_tests::Method::POST,
            "/v1/query",
            Some(json!({"Name": "r", "Template": {"Type": "name_prefix_match", "Regexp": "("}, "Service": {"Service": "x"}}).to_string().into_bytes()),
        )
        .await?;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Bad Regexp"), "{}", r.text());
    Ok(())
}

#[tokio::test]
async fn session_bound_query_goes_with_its_session_and_snapshots_keep_queries() -> Result<()> {
    let a = TestAgent::dev().await?;
    populate(&a).await?;
    let sess = a
        .put_json("/v1/session/create", &json!({"Name": "s"}))
        .await?;
    sess.assert_status(200);
    let sid = sess.json()["ID"].as_str().unwrap().to_string();
    let bound = create(&a, json!({"Session": sid, "Service": {"Service": "db"}})).await?;
    let kept = create(&a, json!({"Name": "kept", "Service": {"Service": "db"}})).await?;
    assert_eq!(a.get(&format!("/v1/query/{bound}")).await?.status, 200);
    // An unnamed query is reached by its ID.
    assert_eq!(
        nodes(&a.get_json(&format!("/v1/query/{bound}/execute")).await?).len(),
        3
    );

    let snap = a.get("/v1/snapshot").await?;
    snap.assert_status(200);

    a.put(&format!("/v1/session/destroy/{sid}"), Vec::new())
        .await?
        .assert_status(200);
    assert_eq!(a.get(&format!("/v1/query/{bound}")).await?.status, 404);
    assert_eq!(a.get(&format!("/v1/query/{kept}")).await?.status, 200);
    a.delete(&format!("/v1/query/{kept}"))
        .await?
        .assert_status(200);
    assert_eq!(a.get_json("/v1/query").await?, json!([]));

    // Restoring the snapshot brings both back.
    a.put("/v1/snapshot", snap.body.clone())
        .await?
        .assert_status(200);
    let ids: Vec<String> = a
        .get_json("/v1/query")
        .await?
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["ID"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&bound) && ids.contains(&kept), "{ids:?}");
    assert_eq!(
        nodes(&a.get_json("/v1/query/kept/execute").await?),
        ["n1", "n2", "n3"]
    );
    Ok(())
}

fn dig(a: &TestAgent, args: &[&str]) -> Option<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", a.dns_addr().ip()))
        .arg("-p")
        .arg(a.dns_addr().port().to_string())
        .args(["+time=2", "+tries=2"])
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

#[tokio::test]
async fn dns_answers_query_names_with_the_query_ttl() -> Result<()> {
    if !registry_tests::have_dig() {
        return Ok(());
    }
    let a = TestAgent::dev().await?;
    populate(&a).await?;
    create(
        &a,
        json!({"Name": "replicas", "Service": {"Service": "db", "Tags": ["replica"], "OnlyPassing": true},
               "DNS": {"TTL": "42s"}}),
    )
    .await?;
    let srv = dig(&a, &["+short", "replicas.query.consul", "SRV"]).unwrap();
    assert!(srv.contains("n3.node.dc1.consul."), "{srv}");
    assert!(!srv.contains("n2.node"), "{srv}");
    assert!(!srv.contains("n1.node"), "{srv}");
    let addr = dig(&a, &["+short", "replicas.query.dc1.consul", "A"]).unwrap();
    assert_eq!(addr.trim(), "127.0.0.13");
    let full = dig(&a, &["+noall", "+answer", "replicas.query.consul", "A"]).unwrap();
    assert!(full.contains("\t42\tIN\tA\t127.0.0.13"), "{full}");
    let missing = dig(&a, &["nosuch.query.consul", "A"]).unwrap();
    assert!(missing.contains("NXDOMAIN"), "{missing}");
    Ok(())
}
