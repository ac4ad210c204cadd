//! ACL decisions across processes: a write sent through a follower that lags (cut off from the
//! leader while a token is deleted) is decided by the leader with its latest ACL state, and a
//! client agent's DNS answers are filtered by the client's own `acl.tokens.default` (sent with
//! each query to the server that answers it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Result};
use registry_tests::client::ClientAgent;
use registry_tests::cluster::{partition_support, ClusterOptions, TestCluster};
use registry_tests::{eventually, strict, Method};
use serde_json::{json, Value};
use std::time::Duration;

const ACL: &str = "acl {\n enabled = true\n default_policy = \"deny\"\n tokens {\n  initial_management = \"root\"\n }\n}";

async fn put_json(c: &TestCluster, i: usize, path: &str, body: &Value) -> Result<Value> {
    let r = c
        .api()
        .put(i, &format!("{path}?token=root"), body.to_string())
        .await?;
    if r.status != 200 {
        bail!("PUT {path}: {} {}", r.status, r.text());
    }
    Ok(serde_json::from_str(&r.text())?)
}

/// Waits until server `i` knows the management token (the leader creates it once elected).
async fn wait_root(c: &TestCluster, i: usize) -> Result<()> {
    let api = c.api();
    eventually(Duration::from_secs(20), "the management token", || async {
        let r = api.get(i, "/v1/acl/token/self?token=root").await;
        Ok(r.ok().filter(|r| r.status == 200).map(|_| ()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_lagging_follower_is_decided_by_the_leader() -> Result<()> {
    if let Err(e) = partition_support() {
        if strict() {
            bail!("network partitions need iptables with the cgroup match: {e:#}");
        }
        eprintln!("SKIPPED: network partitions need iptables with the cgroup match: {e:#}");
        return Ok(());
    }
    let opts = ClusterOptions::new(3)
        .partitionable()
        .hcl(ACL)
        .hcl("autopilot { cleanup_dead_servers = false }");
    let mut c = TestCluster::start_with(opts).await?;
    let leader = c.leader().await?;
    let f = c.followers(leader)[0];
    wait_root(&c, leader).await?;
    put_json(
        &c,
        leader,
        "/v1/acl/policy",
        &json!({"Name": "lag-writer",
        "Rules": "key_prefix \"lag/\" { policy = \"write\" }\nacl = \"write\""}),
    )
    .await?;
    let t = put_json(
        &c,
        leader,
        "/v1/acl/token",
        &json!({"Policies": [{"Name": "lag-writer"}]}),
    )
    .await?;
    let secret = t["SecretID"].as_str().unwrap().to_string();
    let accessor = t["AccessorID"].as_str().unwrap().to_string();
    let api = c.api();
    let r = api
        .put(leader, &format!("/v1/kv/lag/seed?token={secret}"), "1")
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let stale_read = format!("/v1/kv/lag/seed?stale&token={secret}");
    eventually(
        Duration::from_secs(10),
        "the follower to know the token",
        || async {
            Ok(api
                .get(f, &stale_read)
                .await
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ()))
        },
    )
    .await?;

    // Cut the follower off, then delete the token on the majority side.
    c.partition(&[f])?;
    let r = api
        .request(
            leader,
            Method::DELETE,
            &format!("/v1/acl/token/{accessor}?token=root"),
            None,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    // The follower lags: its own copy still honours the deleted token for a stale read.
    let r = api.get(f, &stale_read).await?;
    assert_eq!(
        r.status,
        200,
        "the cut-off follower already knew: {}",
        r.text()
    );

    // Writes sent to it now wait for a leader; they reach one once the network heals, and
    // the leader refuses them: its token table no longer has the secret.
    let writes = [
        (
            Method::PUT,
            format!("/v1/kv/lag/late?token={secret}"),
            b"x".to_vec(),
        ),
        (
            Method::PUT,
            format!("/v1/acl/policy?token={secret}"),
            json!({"Name": "late-policy"}).to_string().into_bytes(),
        ),
    ];
    let mut pending = Vec::new();
    for (m, path, body) in writes {
        let api = api.clone();
        pending.push(tokio::spawn(async move {
            api.request_timeout(f, m, &path, Some(body), Duration::from_secs(30))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.heal();
    for p in pending {
        let r = p.await??;
        assert_eq!((r.status, r.text()), (403, "ACL not found".to_string()));
    }
    let leader = c.wait_for_leader(Duration::from_secs(20)).await?;
    let r = api
        .get(leader, "/v1/kv/lag/late?consistent&token=root")
        .await?;
    assert_eq!(r.status, 404, "the refused write was applied: {}", r.text());
    let r = api
        .get(leader, "/v1/acl/policy/name/late-policy?token=root")
        .await?;
    assert_eq!(r.status, 404, "the refused policy exists: {}", r.text());
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_dns_answers_what_the_client_default_token_may_read() -> Result<()> {
    let c = TestCluster::start_with(ClusterOptions::new(1).hcl(ACL)).await?;
    wait_root(&c, 0).await?;
    for (node, addr, svc) in [
        ("n-web", "127.0.0.7", "web"),
        ("n-db", "127.0.0.8", "secret-db"),
    ] {
        let body = json!({"Node": node, "Address": addr, "Service": {"Service": svc, "Port": 80}});
        put_json(&c, 0, "/v1/catalog/register", &body).await?;
    }
    put_json(
        &c,
        0,
        "/v1/acl/policy",
        &json!({"Name": "dns-web",
        "Rules": "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}),
    )
    .await?;
    let t = put_json(
        &c,
        0,
        "/v1/acl/token",
        &json!({"Policies": [{"Name": "dns-web"}]}),
    )
    .await?;
    let secret = t["SecretID"].as_str().unwrap();
    let servers = vec![c.server(0).raft_addr()];
    let with = format!("acl {{\n enabled = true\n default_policy = \"deny\"\n tokens {{\n  default = \"{secret}\"\n }}\n}}");
    let scoped = ClientAgent::start_with("client-scoped", &servers, &["-hcl", &with]).await?;
    let anon =
        ClientAgent::start_with("client-anon", &servers, &["-hcl", "acl { enabled = true }"])
            .await?;

    let web = eventually(
        Duration::from_secs(10),
        "web through the client",
        || async {
            let out = scoped.dig("web.service.consul", "A")?;
            Ok((!out.trim().is_empty()).then_some(out))
        },
    )
    .await?;
    assert_eq!(web.trim(), "127.0.0.7");
    assert_eq!(
        scoped.dig("secret-db.service.consul", "A")?.trim(),
        "",
        "a service the token may not read"
    );
    assert_eq!(scoped.dig("n-db.node.consul", "A")?.trim(), "127.0.0.8");
    // Without a default token the client's queries are the anonymous token's: nothing.
    assert_eq!(anon.dig("web.service.consul", "A")?.trim(), "");
    assert_eq!(anon.dig("n-web.node.consul", "A")?.trim(), "");
    // The client's HTTP requests without a token carry its default token too.
    let r = scoped.get("/v1/catalog/services").await?;
    assert_eq!(r.status, 200);
    let v: Value = r.json()?;
    assert!(
        v.get("web").is_some() && v.get("secret-db").is_none(),
        "{v}"
    );
    Ok(())
}
