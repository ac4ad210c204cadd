//! Client agents end to end: `registry agent` without `-server` next to a 3-server cluster.
//! A client runs no Raft (it never shows in the peers), serves its own `/v1/agent/*`, and
//! forwards everything else to a server; its HTTP registrations reach the catalog through
//! anti-entropy; when the server it talks to (the leader) dies it fails over, and a blocking
//! query in flight still returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::Result;
use registry_tests::client::ClientAgent;
use registry_tests::cluster::TestCluster;
use registry_tests::{eventually, unb64};
use serde_json::{json, Value};

/// `consul_rpc_queries_blocking` of server `i` (0 when it does not answer).
async fn blocking_queries(c: &TestCluster, i: usize) -> Result<u64> {
    let Ok(r) = c.get(i, "/v1/agent/metrics?format=prometheus").await else {
        return Ok(0);
    };
    Ok(r.text()
        .lines()
        .find_map(|l| l.strip_prefix("consul_rpc_queries_blocking "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_agents_forward_fail_over_and_sync_their_services() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let servers = c.raft_addrs(&[0, 1, 2]);
    // Each client knows one server only; it learns the others from it.
    let c1 = ClientAgent::start("client-1", &servers[leader..=leader]).await?;
    let other = (leader + 1) % 3;
    let c2 = ClientAgent::start("client-2", &servers[other..=other]).await?;

    // Clients are no Raft peers.
    let (ok, out, err) = c.cli(&[
        "operator",
        "raft",
        "list-peers",
        &format!("-http-addr={}", c.server(leader).http_addr()),
    ])?;
    assert!(ok, "list-peers: {err}");
    assert_eq!(out.lines().count(), 4, "header and three servers:\n{out}");
    assert!(!out.contains("client-"), "a client is a Raft peer:\n{out}");
    // ... even when asked through a client.
    let peers = c1.get_json("/v1/status/peers").await?;
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    let cfg = c1.get_json("/v1/operator/raft/configuration").await?;
    assert_eq!(cfg["Servers"].as_array().map(Vec::len), Some(3), "{cfg}");

    // Writes and reads through a client, seen through the servers and the other client.
    let r = c1.put("/v1/kv/cl/a", "one").await?;
    assert_eq!((r.status, r.text().trim()), (200, "true"), "{}", r.text());
    let v = c2.get_json("/v1/kv/cl/a?consistent").await?;
    assert_eq!(unb64(v[0]["Value"].as_str().unwrap()), b"one");
    let r = c2.get("/v1/kv/cl/a").await?;
    assert!(
        r.meta().index > 0 && r.meta().known_leader,
        "{:?}",
        r.headers
    );
    assert_eq!(c.get_json(other, "/v1/kv/cl/a").await?[0]["Key"], "cl/a");
    // Leader-side checks apply to a client's writes: CAS and sessions.
    assert_eq!(
        c1.put("/v1/kv/cl/a?cas=1", "x").await?.text().trim(),
        "false"
    );
    // Errors pass through with the server's status and text.
    let r = c1.get("/v1/kv/cl/a?dc=elsewhere").await?;
    assert_eq!(r.status, 500, "{}", r.text());

    // An HTTP-registered service on a client reaches the catalog through anti-entropy.
    let r = c1
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "ID": "web-1", "Port": 8080, "Check": {"TTL": "30s"}})
                .to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let svc = c1.get_json("/v1/agent/services").await?;
    assert!(svc.get("web-1").is_some(), "{svc}");
    let nodes = c.get_json(leader, "/v1/catalog/service/web").await?;
    assert_eq!(nodes[0]["Node"], "client-1", "{nodes}");
    assert_eq!(nodes[0]["ServicePort"], 8080, "{nodes}");
    // Each client registers its node at startup (anti-entropy's first full sync).
    let node = eventually(
        Duration::from_secs(10),
        "client-2 in the catalog",
        || async {
            let n = c.get_json(other, "/v1/catalog/node/client-2").await?;
            Ok((!n.is_null()).then_some(n))
        },
    )
    .await?;
    assert_eq!(node["Node"]["Node"], "client-2");
    // A session on the client's node, created through the client (checked by the leader).
    let r = c2
        .put(
            "/v1/session/create",
            json!({"Node": "client-2"}).to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c2
        .put(
            "/v1/session/create",
            json!({"Node": "no-such-node"}).to_string(),
        )
        .await?;
    assert_eq!(r.status, 500, "{}", r.text());
    // A TTL pass on the client turns the catalog check passing.
    let r = c1.put("/v1/agent/check/pass/service:web-1", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(
        Duration::from_secs(10),
        "check passing in the catalog",
        || async {
            let h = c.get_json(leader, "/v1/health/service/web?passing").await?;
            Ok((h.as_array().map(Vec::len) == Some(1)).then_some(()))
        },
    )
    .await?;

    // DNS on a client agent answers from the servers' catalog.
    let srv = eventually(
        Duration::from_secs(10),
        "SRV through client-2's DNS",
        || async {
            let out = c2.dig("web.service.consul", "SRV")?;
            Ok(out.contains(" 8080 ").then_some(out))
        },
    )
    .await?;
    assert!(srv.contains("client-1.node.dc1.consul."), "{srv}");
    assert_eq!(c1.dig("client-2.node.consul", "A")?.trim(), "127.0.0.1");
    assert_eq!(c1.dig("nothing-here.service.consul", "SRV")?.trim(), "");

    // A blocking query through client-1 is in flight while the leader dies, and while the
    // server that holds it dies (the same server, or the next one killed).
    let r = c1.put("/v1/kv/cl/watch", "before").await?;
    assert_eq!(r.text().trim(), "true");
    let idx = c1.get("/v1/kv/cl/watch").await?.meta().index;
    let api = c1.api.clone();
    let watch = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = api
            .blocking_get("/v1/kv/cl/watch", idx, Duration::from_secs(60))
            .await;
        (r, t0.elapsed())
    });
    let holder = eventually(
        Duration::from_secs(10),
        "the server holding the query",
        || {
            let c = &c;
            async move {
                for i in 0..3 {
                    if blocking_queries(c, i).await? > 0 {
                        return Ok(Some(i));
                    }
                }
                Ok(None)
            }
        },
    )
    .await?;
    c.kill9(leader);
    let killed = Instant::now();
    // Writes and reads through both clients succeed once a new leader is elected.
    for (name, cl) in [("client-1", &c1), ("client-2", &c2)] {
        eventually(
            Duration::from_secs(30),
            "a write after failover",
            || async {
                let r = cl.put(&format!("/v1/kv/cl/after-{name}"), "x").await;
                Ok(r.ok()
                    .filter(|r| r.status == 200 && r.text().trim() == "true"))
            },
        )
        .await?;
        let got = cl
            .get_json(&format!("/v1/kv/cl/after-{name}?consistent"))
            .await?;
        assert_eq!(got[0]["Key"], format!("cl/after-{name}"));
    }
    eprintln!(
        "failover: writes resumed {:?} after the kill",
        killed.elapsed()
    );
    assert!(!watch.is_finished(), "the blocking query returned early");
    if holder != leader {
        // Bring the old leader back, then kill the server that holds the query.
        c.restart(leader).await?;
        let all = c.raft_addrs(&[0, 1, 2]);
        c.wait_for_peers(&[leader], &all, Duration::from_secs(30))
            .await?;
        eventually(
            Duration::from_secs(30),
            "the restarted server to catch up",
            || async {
                let r = c
                    .kv_get(
                        leader,
                        "cl/after-client-2",
                        registry_tests::cluster::Consistency::Stale,
                    )
                    .await?;
                Ok(r.map(|_| ()))
            },
        )
        .await?;
        c.kill9(holder);
    }
    assert!(!watch.is_finished(), "the blocking query returned early");
    // A write through the other client wakes the query, wherever it now waits.
    eventually(Duration::from_secs(30), "the waking write", || async {
        let r = c2.put("/v1/kv/cl/watch", "woke").await;
        Ok(r.ok()
            .filter(|r| r.status == 200 && r.text().trim() == "true"))
    })
    .await?;
    let (r, took) = tokio::time::timeout(Duration::from_secs(40), watch).await??;
    let (r, meta) = r?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(meta.index > idx, "index {} after {idx}", meta.index);
    let v: Value = r.json()?;
    assert_eq!(unb64(v[0]["Value"].as_str().unwrap()), b"woke");
    assert!(
        took < Duration::from_secs(40),
        "blocking query took {took:?}"
    );
    // The client's services are still in the catalog, read through the client.
    let nodes = c1.get_json("/v1/catalog/service/web").await?;
    assert_eq!(nodes[0]["Node"], "client-1", "{nodes}");
    drop((c1, c2));
    c.finish();
    Ok(())
}

/// A client agent that knows no server yet still starts its API and takes registrations at
/// once (the catalog write is left to anti-entropy); joined to the servers later through
/// `PUT /v1/agent/join`, its service reaches the catalog without another request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_servers_serves_its_api_and_syncs_once_joined() -> Result<()> {
    let mut c = TestCluster::start(1).await?;
    c.leader().await?;
    let client = ClientAgent::start_alone("lonely").await?;
    let body = json!({"Name": "early", "Port": 8080}).to_string();
    let t0 = Instant::now();
    let r = client.put("/v1/agent/service/register", body).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    // Not a speed figure: a registration that waited for a server would answer only once
    // the forwarding gave up (15 s).
    assert!(
        t0.elapsed() < Duration::from_secs(12),
        "the registration waited for a server: {:?}",
        t0.elapsed()
    );
    let local = client.get_json("/v1/agent/services").await?;
    assert_eq!(local["early"]["Port"], 8080, "{local}");
    // Nothing is forwarded yet: the catalog read fails rather than hanging.
    let r = client.get("/v1/catalog/services").await?;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("No known servers"), "{}", r.text());

    let r = client
        .put(&format!("/v1/agent/join/{}:8301", c.server(0).ip), "")
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(
        Duration::from_secs(30),
        "the early service in the catalog",
        || async {
            let Ok(r) = c.get(0, "/v1/catalog/service/early").await else {
                return Ok(None);
            };
            let v: Value = r.json();
            Ok(v.as_array()
                .filter(|a| a.len() == 1 && a[0]["Node"] == "lonely")
                .map(|_| ()))
        },
    )
    .await?;
    Ok(())
}
