//! ACL replication between two datacenters joined over the WAN pool: dc1 is
//! `primary_datacenter` (one server), dc2 a secondary (three servers, token replication on,
//! the replication token being dc1's management token). A policy and a global token created
//! in dc1 authorize requests in dc2, on every dc2 server (the replicated records went through
//! dc2's Raft log); a `Local` token of dc1 does not; a `Local` token of dc2 survives
//! replication rounds; deleting the token in dc1 revokes it in dc2 within a bounded time.
//! `/v1/acl/replication` reports Consul's shape in both datacenters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use registry_tests::cluster::{ClusterOptions, TestCluster};
use registry_tests::eventually;
use serde_json::{json, Value};

const ROOT: &str = "1e0a7c1e-9d1b-4c55-a0a4-3a7f0e0d1c01";

fn acl(dc: &str, extra: &str) -> String {
    format!(
        r#"datacenter = "{dc}"
primary_datacenter = "dc1"
{extra}
acl {{
  enabled = true
  default_policy = "deny"
  enable_token_replication = true
  tokens {{
    initial_management = "{ROOT}"
    replication = "{ROOT}"
  }}
}}"#
    )
}

async fn put_json(c: &TestCluster, i: usize, path: &str, body: &Value) -> Result<Value> {
    let r = c
        .api()
        .put(i, &format!("{path}?token={ROOT}"), body.to_string())
        .await?;
    if r.status != 200 {
        bail!("PUT {path}: {} {}", r.status, r.text());
    }
    Ok(serde_json::from_slice(&r.body)?)
}

/// The policy `app-writer` (write on `app/`), made in `dc`.
async fn app_writer(dc: &TestCluster) -> Result<Value> {
    put_json(
        dc,
        0,
        "/v1/acl/policy",
        &json!({"Name": "app-writer", "Rules": "key_prefix \"app/\" { policy = \"write\" }"}),
    )
    .await
}

/// The status code of a KV write with `secret` on server `i`.
async fn kv_write(c: &TestCluster, i: usize, key: &str, secret: &str) -> Result<u16> {
    Ok(c.api()
        .put(i, &format!("/v1/kv/{key}?token={secret}"), "v")
        .await?
        .status)
}

/// The status code of a stale KV read with `secret` on server `i` (decided by that server's
/// own copy of the ACL tables).
async fn kv_read_stale(c: &TestCluster, i: usize, key: &str, secret: &str) -> Result<u16> {
    Ok(c.api()
        .get(i, &format!("/v1/kv/{key}?stale&token={secret}"))
        .await?
        .status)
}

/// Waits until dc2's replication has seen dc1's ACL index `index`.
async fn replicated_past(dc2: &TestCluster, index: u64) -> Result<Value> {
    eventually(
        Duration::from_secs(20),
        "replication to catch up",
        || async {
            let v = dc2.get_json(1, "/v1/acl/replication").await?;
            let got = v["ReplicatedTokenIndex"].as_u64().unwrap_or(0);
            Ok((got >= index).then_some(v))
        },
    )
    .await
}

/// dc1's current ACL index (the index of what a secondary replicates from).
async fn acl_index(dc1: &TestCluster) -> Result<u64> {
    let r = dc1
        .api()
        .get(0, &format!("/v1/internal/acl/replication?token={ROOT}"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    Ok(r.index())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_global_tokens_replicate_and_local_tokens_do_not() -> Result<()> {
    let dc1 = TestCluster::start_with(ClusterOptions::new(1).hcl(&acl("dc1", ""))).await?;
    let dc1_ip = dc1.server(0).ip.to_string();
    let mut dc2 = TestCluster::start_with(
        ClusterOptions::new(3).hcl(&acl("dc2", &format!("retry_join_wan = [\"{dc1_ip}\"]"))),
    )
    .await?;

    // The primary does not replicate; the secondary's leader does, from dc1.
    let dc2_leader = dc2.leader().await?;
    let v = dc1.get_json(0, "/v1/acl/replication").await?;
    assert_eq!(v["Enabled"], false, "{v}");
    assert_eq!(v["Running"], false, "{v}");
    // The management token exists in dc2 only by replication (a secondary creates none).
    let v = eventually(
        Duration::from_secs(40),
        "the first replication round",
        || async {
            let v = dc2.get_json(2, "/v1/acl/replication").await?;
            Ok((v["ReplicatedTokenIndex"].as_u64().unwrap_or(0) > 0).then_some(v))
        },
    )
    .await?;
    assert_eq!(v["Enabled"], true, "{v}");
    assert_eq!(v["Running"], true, "{v}");
    assert_eq!(v["SourceDatacenter"], "dc1", "{v}");
    assert_eq!(v["ReplicationType"], "tokens", "{v}");
    assert!(v["ReplicatedIndex"].as_u64().unwrap() > 0, "{v}");
    assert!(v["ReplicatedRoleIndex"].as_u64().unwrap() > 0, "{v}");
    assert_ne!(v["LastSuccess"], "0001-01-01T00:00:00Z", "{v}");
    for k in ["LastError", "LastErrorMessage"] {
        assert!(v.get(k).is_some(), "{k} missing: {v}");
    }
    let me = dc2
        .get_json(0, &format!("/v1/agent/self?token={ROOT}"))
        .await?;
    assert_eq!(me["Config"]["PrimaryDatacenter"], "dc1", "{}", me["Config"]);
    let root_dc2 = dc2
        .api()
        .get(0, &format!("/v1/acl/token/self?token={ROOT}"))
        .await?;
    assert_eq!(root_dc2.status, 200, "{}", root_dc2.text());
    let root_dc1 = dc1
        .get_json(0, &format!("/v1/acl/token/self?token={ROOT}"))
        .await?;
    assert_eq!(root_dc2.json()["AccessorID"], root_dc1["AccessorID"]);

    // A policy, a role, a global token and a Local token, all made in dc1.
    let p = app_writer(&dc1).await?;
    put_json(
        &dc1,
        0,
        "/v1/acl/role",
        &json!({"Name": "app-role", "Policies": [{"ID": p["ID"]}]}),
    )
    .await?;
    let global = put_json(
        &dc1,
        0,
        "/v1/acl/token",
        &json!({"Description": "global", "Roles": [{"Name": "app-role"}]}),
    )
    .await?;
    let local = put_json(
        &dc1,
        0,
        "/v1/acl/token",
        &json!({"Description": "local", "Local": true, "Policies": [{"ID": p["ID"]}]}),
    )
    .await?;
    let g = global["SecretID"].as_str().unwrap().to_string();
    let l = local["SecretID"].as_str().unwrap().to_string();
    // Both work in dc1.
    assert_eq!(kv_write(&dc1, 0, "app/dc1", &g).await?, 200);
    assert_eq!(kv_write(&dc1, 0, "app/dc1", &l).await?, 200);
    assert_eq!(kv_write(&dc1, 0, "other", &g).await?, 403);

    // The global token authorizes in dc2: writes (decided by dc2's leader), and stale reads
    // on every dc2 server, each deciding with its own replicated copy.
    eventually(
        Duration::from_secs(20),
        "the global token in dc2",
        || async { Ok((kv_write(&dc2, 0, "app/dc2", &g).await? == 200).then_some(())) },
    )
    .await?;
    let index = acl_index(&dc1).await?;
    let status = replicated_past(&dc2, index).await?;
    // Any error is older than the last success (the rounds before the WAN join fail).
    let (ok, failed) = (status["LastSuccess"].as_str(), status["LastError"].as_str());
    assert!(ok.unwrap() > failed.unwrap(), "{status}");
    for i in 0..3 {
        eventually(Duration::from_secs(10), "every dc2 server", || async {
            Ok((kv_read_stale(&dc2, i, "app/dc2", &g).await? == 200).then_some(()))
        })
        .await?;
    }
    assert_eq!(kv_write(&dc2, 1, "other", &g).await?, 403);
    let self_dc2 = dc2
        .get_json(2, &format!("/v1/acl/token/self?token={g}"))
        .await?;
    assert_eq!(self_dc2["AccessorID"], global["AccessorID"]);
    assert_eq!(self_dc2["Local"], false);
    assert_eq!(self_dc2["Roles"][0]["Name"], "app-role");
    let pol = dc2
        .get_json(0, &format!("/v1/acl/policy/name/app-writer?token={ROOT}"))
        .await?;
    assert_eq!(pol["ID"], p["ID"]);
    // Forwarded from dc1 with `?dc=dc2`: dc2 decides with the replicated token.
    let r = dc1
        .api()
        .get(0, &format!("/v1/kv/app/dc2?dc=dc2&token={g}"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());

    // dc1's Local token is unknown in dc2, although dc2 has replicated past its creation.
    for i in 0..3 {
        let s = kv_write(&dc2, i, "app/local", &l).await?;
        assert_eq!(s, 403, "server {i}");
    }
    let r = dc2
        .api()
        .get(0, &format!("/v1/acl/token/self?token={l}"))
        .await?;
    assert_eq!(r.status, 403, "{}", r.text());

    // A Local token made in dc2 works there and survives later replication rounds.
    let local2 = put_json(
        &dc2,
        0,
        "/v1/acl/token",
        &json!({"Description": "dc2 local", "Local": true, "Policies": [{"Name": "app-writer"}]}),
    )
    .await?;
    let l2 = local2["SecretID"].as_str().unwrap().to_string();
    assert_eq!(kv_write(&dc2, 0, "app/l2", &l2).await?, 200);

    // Deleting the global token in dc1 revokes it in dc2, within a bounded time.
    let r = dc1
        .api()
        .request(
            0,
            reqwest::Method::DELETE,
            &format!(
                "/v1/acl/token/{}?token={ROOT}",
                global["AccessorID"].as_str().unwrap()
            ),
            None,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let started = Instant::now();
    for i in 0..3 {
        eventually(Duration::from_secs(10), "revocation in dc2", || async {
            Ok((kv_read_stale(&dc2, i, "app/dc2", &g).await? == 403).then_some(()))
        })
        .await?;
    }
    eprintln!(
        "token deleted in dc1 revoked on every dc2 server after {:?}",
        started.elapsed()
    );
    assert_eq!(kv_write(&dc2, 0, "app/dc2", &g).await?, 403);
    let index = acl_index(&dc1).await?;
    replicated_past(&dc2, index).await?;
    // The dc2 Local token outlived the rounds that replicated the deletion.
    assert_eq!(kv_write(&dc2, 1, "app/l2", &l2).await?, 200);

    // A policy change reaches dc2: write access to app/ is taken away. It is sent to a dc2
    // follower, which passes it to the primary (policies are written there only).
    let f = (0..3).find(|&i| i != dc2_leader).unwrap();
    put_json(
        &dc2,
        f,
        &format!("/v1/acl/policy/{}", p["ID"].as_str().unwrap()),
        &json!({"Name": "app-writer", "Rules": "key_prefix \"app/\" { policy = \"read\" }"}),
    )
    .await?;
    eventually(
        Duration::from_secs(10),
        "the changed policy in dc2",
        || async { Ok((kv_write(&dc2, 0, "app/l2", &l2).await? == 403).then_some(())) },
    )
    .await?;
    assert_eq!(kv_read_stale(&dc2, 0, "app/l2", &l2).await?, 200);
    let pol = dc1
        .get_json(0, &format!("/v1/acl/policy/name/app-writer?token={ROOT}"))
        .await?;
    assert!(pol["Rules"].as_str().unwrap().contains("read"), "{pol}");
    // A global token made through dc2 is made in dc1; a Local one stays in dc2.
    let g2 = put_json(&dc2, f, "/v1/acl/token", &json!({"Description": "via dc2"})).await?;
    let r = dc1
        .api()
        .get(
            0,
            &format!(
                "/v1/acl/token/{}?token={ROOT}",
                g2["AccessorID"].as_str().unwrap()
            ),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = dc1
        .api()
        .get(
            0,
            &format!(
                "/v1/acl/token/{}?token={ROOT}",
                local2["AccessorID"].as_str().unwrap()
            ),
        )
        .await?;
    assert_eq!(
        r.status,
        403,
        "a dc2 Local token is unknown in dc1: {}",
        r.text()
    );

    dc1.finish();
    dc2.finish();
    Ok(())
}

/// Without `enable_token_replication` (Consul's default), a secondary resolves a global token
/// it does not hold in the primary, and trusts the answer for the token TTL (30 s): the
/// token authorizes in dc2 with dc2's replicated copy of its policies, a `Local` token of dc1
/// does not, and a token deleted in dc1 stops working in dc2 once the TTL has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_replication_global_tokens_are_resolved_in_the_primary() -> Result<()> {
    let no_tokens = |dc: &str, extra: &str| {
        acl(dc, extra).replace(
            "enable_token_replication = true",
            "enable_token_replication = false",
        )
    };
    let dc1 = TestCluster::start_with(ClusterOptions::new(1).hcl(&no_tokens("dc1", ""))).await?;
    let dc1_ip = dc1.server(0).ip.to_string();
    let mut dc2 = TestCluster::start_with(ClusterOptions::new(1).hcl(&no_tokens(
        "dc2",
        &format!("retry_join_wan = [\"{dc1_ip}\"]"),
    )))
    .await?;
    dc2.leader().await?;

    let p = app_writer(&dc1).await?;
    let global = put_json(
        &dc1,
        0,
        "/v1/acl/token",
        &json!({"Description": "global", "Policies": [{"ID": p["ID"]}]}),
    )
    .await?;
    let local = put_json(
        &dc1,
        0,
        "/v1/acl/token",
        &json!({"Description": "local", "Local": true, "Policies": [{"ID": p["ID"]}]}),
    )
    .await?;
    let g = global["SecretID"].as_str().unwrap().to_string();
    let l = local["SecretID"].as_str().unwrap().to_string();

    // The policy reaches dc2 by replication; the token is never stored there.
    eventually(
        Duration::from_secs(40),
        "the global token authorizing in dc2",
        || async { Ok((kv_write(&dc2, 0, "app/dc2", &g).await? == 200).then_some(())) },
    )
    .await?;
    let v = dc2.get_json(0, "/v1/acl/replication").await?;
    assert_eq!(v["ReplicationType"], "policies", "{v}");
    assert_eq!(kv_write(&dc2, 0, "other", &g).await?, 403);
    assert_eq!(kv_write(&dc2, 0, "app/local", &l).await?, 403);
    assert_eq!(kv_write(&dc2, 0, "app/none", "not-a-token").await?, 403);

    // Deleted in dc1: refused in dc2 once the resolved copy has expired.
    let accessor = global["AccessorID"].as_str().unwrap();
    let r = dc1
        .api()
        .request(
            0,
            reqwest::Method::DELETE,
            &format!("/v1/acl/token/{accessor}?token={ROOT}"),
            None,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the deleted token refused in dc2",
        || async { Ok((kv_write(&dc2, 0, "app/dc2", &g).await? == 403).then_some(())) },
    )
    .await?;
    assert!(t0.elapsed() < Duration::from_secs(45), "{:?}", t0.elapsed());
    Ok(())
}
