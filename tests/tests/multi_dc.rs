//! Two datacenters end to end: two 3-server clusters (each on its own loopback block) with
//! `datacenter = "dc1"` / `"dc2"`, joined over the WAN pool (`retry_join_wan` on dc2's
//! servers, `registry join -wan` for the CLI), plus one client agent in each. A service that
//! exists only in dc2 is found from dc1's client over HTTP (`?dc=dc2`, a blocking query woken
//! by a change in dc2 included) and over DNS (`web.service.dc2.consul`, real packets through
//! `dig`); `members -wan` lists all six servers; KV stays per datacenter; an unknown
//! datacenter, and dc2 once its servers are gone, answer "No path to datacenter" within a
//! bounded time while dc1 keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use registry_tests::client::ClientAgent;
use registry_tests::cluster::{ClusterOptions, TestCluster};
use registry_tests::{eventually, Method};
use serde_json::{json, Value};

/// The WAN members server `i` of `c` lists: (name, status).
async fn wan_members(c: &TestCluster, i: usize) -> Result<Vec<(String, u64)>> {
    let v = c.get_json(i, "/v1/agent/members?wan=1").await?;
    Ok(v.as_array()
        .context("members is not a list")?
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap_or("").to_string(),
                m["Status"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_datacenters_forward_http_and_dns_and_fail_cleanly() -> Result<()> {
    let dc1 = TestCluster::start_with(ClusterOptions::new(3).hcl(
        r#"datacenter = "dc1"
translate_wan_addrs = true"#,
    ))
    .await?;
    let dc1_ips: Vec<String> = (0..3).map(|i| dc1.server(i).ip.to_string()).collect();
    // dc2's servers join the WAN pool through one dc1 server (resolved on every attempt).
    let mut dc2 = TestCluster::start_with(ClusterOptions::new(3).hcl(&format!(
        r#"datacenter = "dc2"
retry_join_wan = ["{}"]"#,
        dc1_ips[0]
    )))
    .await?;

    // All six servers, named node.dc, alive in the WAN pool as every server sees it.
    let mut expected: Vec<String> = (0..3)
        .map(|i| format!("{}.dc1", dc1.server(i).node))
        .chain((0..3).map(|i| format!("{}.dc2", dc2.server(i).node)))
        .collect();
    expected.sort();
    for (c, i) in [(&dc1, 1), (&dc2, 2)] {
        eventually(Duration::from_secs(30), "six alive WAN members", || async {
            let mut m = wan_members(c, i).await?;
            m.sort();
            let names: Vec<String> = m.iter().map(|(n, _)| n.clone()).collect();
            Ok((names == expected && m.iter().all(|(_, s)| *s == 1)).then_some(()))
        })
        .await?;
    }
    // `registry members -wan` prints them too, with the dc column.
    let (ok, out, err) = dc1.cli(&[
        "members",
        "-wan",
        &format!("-http-addr={}", dc1.server(0).http_addr()),
    ])?;
    assert!(ok, "members -wan: {err}");
    for name in &expected {
        assert!(out.contains(name.as_str()), "{name} missing:\n{out}");
    }
    assert_eq!(
        out.lines().filter(|l| l.contains("alive")).count(),
        6,
        "{out}"
    );
    // `registry join -wan` against a member already in the pool succeeds.
    let (ok, out, err) = dc1.cli(&[
        "join",
        "-wan",
        &format!("-http-addr={}", dc1.server(2).http_addr()),
        &dc2.server(1).ip.to_string(),
    ])?;
    assert!(ok, "join -wan: {out} {err}");

    // One client agent per datacenter.
    let c1 = ClientAgent::start_with(
        "mdc-client-1",
        &[dc1.server(0).raft_addr()],
        &["-datacenter", "dc1"],
    )
    .await?;
    // dc2's client advertises a WAN address of its own (its node's `wan` tagged address).
    let c2 = ClientAgent::start_with(
        "mdc-client-2",
        &[dc2.server(1).raft_addr()],
        &["-datacenter", "dc2", "-advertise-wan", "127.0.0.99"],
    )
    .await?;

    // Both datacenters are listed, this one first.
    let dcs = c1.get_json("/v1/catalog/datacenters").await?;
    assert_eq!(dcs, json!(["dc1", "dc2"]));
    let dcs = c2.get_json("/v1/catalog/datacenters").await?;
    assert_eq!(dcs, json!(["dc2", "dc1"]));

    // A service that exists only in dc2 (registered on dc2's client agent).
    let reg = json!({"ID": "web-1", "Name": "web", "Port": 8080, "Tags": ["v1"]});
    let r = c2
        .put("/v1/agent/service/register", reg.to_string())
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let (entries, index) = eventually(
        Duration::from_secs(30),
        "web in dc2 seen from dc1",
        || async {
            let r = c1.get("/v1/health/service/web?dc=dc2").await?;
            if r.status != 200 {
                bail!("{} {}", r.status, r.text());
            }
            let v: Value = r.json()?;
            Ok((v.as_array().map(Vec::len) == Some(1)).then(|| (v, r.meta().index)))
        },
    )
    .await?;
    assert_eq!(entries[0]["Node"]["Node"], c2.name);
    assert_eq!(entries[0]["Node"]["Datacenter"], "dc2");
    assert_eq!(entries[0]["Service"]["Port"], 8080);
    assert!(index > 0);
    // Not in dc1.
    let local = c1.get_json("/v1/health/service/web").await?;
    assert_eq!(local, json!([]));
    // The same through a dc1 server directly, and the catalog form with a tag.
    let v = dc1
        .get_json(0, "/v1/catalog/service/web?dc=dc2&tag=v1")
        .await?;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["Datacenter"], "dc2");

    // translate_wan_addrs (on dc1's servers): dc2's answers carry WAN addresses, and the
    // header says so; dc2 answering for itself does not translate.
    let r = dc1.get(0, "/v1/health/service/web?dc=dc2").await?;
    assert_eq!(
        r.header("x-consul-translate-addresses").as_deref(),
        Some("true")
    );
    assert_eq!(r.json()[0]["Node"]["Address"], "127.0.0.99", "{}", r.text());
    let r = c1.get("/v1/catalog/service/web?dc=dc2").await?;
    assert_eq!(r.json::<Value>()?[0]["Address"], "127.0.0.99");
    let r = dc2.get(0, "/v1/health/service/web").await?;
    assert_eq!(r.header("x-consul-translate-addresses"), None);
    assert_eq!(r.json()[0]["Node"]["Address"], "127.0.0.1");

    // A blocking query on dc2, asked in dc1, woken by a change in dc2.
    let path = format!("/v1/health/service/web?dc=dc2&index={index}&wait=30s");
    let started = Instant::now();
    let api = c1.api.clone();
    let waiter = tokio::spawn(async move { api.send(Method::GET, &path, None).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiter.is_finished(), "the blocking query returned early");
    let reg = json!({"ID": "web-2", "Name": "web", "Port": 8081});
    let r = c2
        .put("/v1/agent/service/register", reg.to_string())
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let woke = tokio::time::timeout(Duration::from_secs(25), waiter)
        .await
        .context("the blocking query was not woken")???;
    assert_eq!(woke.status, 200, "{}", woke.text());
    let v: Value = woke.json()?;
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    assert!(woke.meta().index > index);
    assert!(started.elapsed() < Duration::from_secs(25));

    // DNS: real packets to dc1's client, answered by dc2.
    let a = c1.dig("web.service.dc2.consul", "A")?;
    assert!(a.contains("127.0.0.1"), "A web.service.dc2.consul: {a:?}");
    let srv = c1.dig("_web._tcp.service.dc2.consul", "SRV")?;
    assert!(
        srv.contains("8080") && srv.contains("8081"),
        "SRV _web._tcp.service.dc2.consul: {srv:?}"
    );
    let tagged = c1.dig("v1.web.service.dc2.consul", "SRV")?;
    assert!(
        tagged.contains("8080") && !tagged.contains("8081"),
        "SRV v1.web.service.dc2.consul: {tagged:?}"
    );
    let node = c1.dig(&format!("{}.node.dc2.consul", c2.name), "A")?;
    assert!(node.contains("127.0.0.1"), "node lookup: {node:?}");
    // A prepared query that exists only in dc2, executed there through DNS asked in dc1
    // (`<query>.query.<dc>.consul`, real packets to dc1's client and to a dc1 server).
    let r = c1
        .post(
            "/v1/query?dc=dc2",
            json!({"Name": "web-dc2", "Service": {"Service": "web", "Tags": ["v1"]}}).to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    // DNS reads in dc2 may be served by a server that has not applied the new query yet
    // (stale reads, as Consul's `allow_stale` default): ask until it has, for 10 s at most.
    let mut srv = String::new();
    for _ in 0..50 {
        srv = c1.dig("web-dc2.query.dc2.consul", "SRV")?;
        if srv.contains("8080") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        srv.contains("8080") && !srv.contains("8081"),
        "SRV web-dc2.query.dc2.consul: {srv:?}"
    );
    let a = c1.dig("web-dc2.query.dc2.consul", "A")?;
    assert!(a.contains("127.0.0.1"), "A web-dc2.query.dc2.consul: {a:?}");
    assert_eq!(c1.dig_status("web-dc2.query.consul")?, "NXDOMAIN");
    assert_eq!(c1.dig_status("nosuch.query.dc2.consul")?, "NXDOMAIN");
    // In dc1 there is no web.
    assert_eq!(c1.dig_status("web.service.consul")?, "NXDOMAIN");
    assert_eq!(c1.dig_status("web.service.nowhere.consul")?, "NXDOMAIN");

    // A prepared query in dc1 fails over to dc2 while dc1 has no healthy web, and comes
    // back to dc1 once it has one; tags with `!` exclusions apply to dc2's answer too.
    let r = c1
        .post(
            "/v1/query",
            json!({"Name": "web-any", "Service": {"Service": "web",
                "Failover": {"Datacenters": ["dc2"]}}})
            .to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = c1.get_json("/v1/query/web-any/execute").await?;
    assert_eq!(v["Datacenter"], "dc2", "{v}");
    assert_eq!(v["Failovers"], 1, "{v}");
    assert_eq!(v["Nodes"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["Nodes"][0]["Node"]["Node"], c2.name);
    for (name, tags, want) in [
        ("web-untagged", json!(["!v1"]), json!(["web-2"])),
        ("web-v1", json!(["v1"]), json!(["web-1"])),
        ("web-v9", json!(["v9"]), json!([])),
    ] {
        let q = json!({"Name": name, "Service": {"Service": "web", "Tags": tags,
            "Failover": {"NearestN": 2}}});
        let r = c1.post("/v1/query", q.to_string()).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = c1.get_json(&format!("/v1/query/{name}/execute")).await?;
        let ids: Vec<&Value> = v["Nodes"]
            .as_array()
            .map(|a| a.iter().map(|n| &n["Service"]["ID"]).collect())
            .unwrap_or_default();
        assert_eq!(json!(ids), want, "{name}: {v}");
        assert_eq!(v["Failovers"], 1, "{name}: {v}");
    }
    let reg = json!({"ID": "web-dc1", "Name": "web", "Port": 9090});
    let r = c1
        .put("/v1/agent/service/register", reg.to_string())
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(30), "web-any back in dc1", || async {
        let v = c1.get_json("/v1/query/web-any/execute").await?;
        Ok((v["Datacenter"] == "dc1" && v["Failovers"] == 0).then_some(v))
    })
    .await?;
    let r = c1.put("/v1/agent/service/deregister/web-dc1", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(30), "web gone from dc1", || async {
        let v = c1.get_json("/v1/health/service/web").await?;
        Ok((v == json!([])).then_some(()))
    })
    .await?;

    // KV stays per datacenter; writes with ?dc= land in that datacenter.
    let r = c1.put("/v1/kv/mdc/only-dc2?dc=dc2", "two").await?;
    assert_eq!((r.status, r.text().trim()), (200, "true"), "{}", r.text());
    assert_eq!(c2.get("/v1/kv/mdc/only-dc2?raw").await?.text(), "two");
    assert_eq!(c1.get("/v1/kv/mdc/only-dc2").await?.status, 404);
    assert_eq!(
        c1.get("/v1/kv/mdc/only-dc2?dc=dc2&raw").await?.text(),
        "two"
    );

    // An unknown datacenter: Consul's error at once.
    let t = Instant::now();
    let r = c1.get("/v1/catalog/nodes?dc=nowhere").await?;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "No path to datacenter");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // dc2's servers go away: requests for dc2 fail with the no-path error within a bounded
    // time, and dc1 keeps serving.
    for i in 0..3 {
        dc2.kill9(i);
    }
    let killed = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let r = c1.get("/v1/health/service/web?dc=dc2").await?;
        slowest = slowest.max(t.elapsed());
        if r.status == 500 && r.text() == "No path to datacenter" {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "still no no-path error: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(8),
        "a request for dc2 took {slowest:?}"
    );
    eprintln!(
        "no path to dc2 {:?} after its servers were killed (slowest request {slowest:?})",
        killed.elapsed()
    );
    let r = c1.put("/v1/kv/mdc/after", "still").await?;
    assert_eq!((r.status, r.text().trim()), (200, "true"));
    assert_eq!(c1.get("/v1/kv/mdc/after?raw").await?.text(), "still");
    // The failed servers show as failed members of the WAN pool.
    eventually(
        Duration::from_secs(20),
        "dc2 servers failed in WAN",
        || async {
            let m = wan_members(&dc1, 0).await?;
            let failed = m
                .iter()
                .filter(|(n, s)| n.ends_with(".dc2") && *s == 4)
                .count();
            Ok((failed == 3).then_some(()))
        },
    )
    .await?;
    // `force-leave -prune` of a failed WAN member removes it from the WAN pool.
    let gone = format!("{}.dc2", dc2.server(0).node);
    let (ok, out, err) = dc1.cli(&[
        "force-leave",
        "-prune",
        "-wan",
        &format!("-http-addr={}", dc1.server(0).http_addr()),
        &gone,
    ])?;
    assert!(ok, "force-leave -wan: {out} {err}");
    eventually(
        Duration::from_secs(20),
        "pruned WAN member gone",
        || async {
            let m = wan_members(&dc1, 1).await?;
            Ok((!m.iter().any(|(n, _)| *n == gone)).then_some(()))
        },
    )
    .await?;
    dc1.finish();
    dc2.finish();
    Ok(())
}
