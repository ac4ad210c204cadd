//! `/v1/session/*`: create (defaults, Patroni's body, validation texts), info/list/node with
//! blocking, renew (404 text), destroy, and invalidation by checks and node deregistration.
//!
//! These run with Consul's default 10 s TTL minimum (no test override); TTL expiry and
//! lock-delay timing live in `lock.rs`, whose agents lower the minimum.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Result};
use registry_tests::{eventually, Resp, TestAgent};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Creates a session, retrying while the agent's node and `serfHealth` are not yet in the
/// catalog (anti-entropy registers them shortly after start).
async fn create(a: &TestAgent, body: Value) -> Result<String> {
    eventually(Duration::from_secs(15), "session create", || {
        let body = body.clone();
        async move {
            let r = a.put_json("/v1/session/create", &body).await?;
            match r.status {
                200 => Ok(Some(r.json()["ID"].as_str().unwrap().to_string())),
                500 if r.text().starts_with("Missing ") => Ok(None),
                _ => bail!("create {body}: {} {:?}", r.status, r.text()),
            }
        }
    })
    .await
}

async fn info(a: &TestAgent, id: &str) -> Result<Value> {
    let v = a.get_json(&format!("/v1/session/info/{id}")).await?;
    Ok(v)
}

#[track_caller]
fn assert_error(r: &Resp, status: u16, text: &str) {
    assert_eq!(r.status, status, "body: {:?}", r.text());
    assert_eq!(r.text(), text);
}

#[tokio::test]
async fn create_with_defaults_and_read_back() -> Result<()> {
    let a = TestAgent::dev().await?;
    // No body at all: this node, serfHealth, 15 s lock-delay, release.
    let id = eventually(Duration::from_secs(15), "default session", || async {
        let r = a.put("/v1/session/create", Vec::new()).await?;
        Ok((r.status == 200).then(|| r.json()["ID"].as_str().unwrap().to_string()))
    })
    .await?;
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let r = a.get(&format!("/v1/session/info/{id}")).await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let s = v.as_array().unwrap()[0].as_object().unwrap();
    let keys: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "ID",
            "Name",
            "Node",
            "LockDelay",
            "Behavior",
            "TTL",
            "NodeChecks",
            "ServiceChecks",
            "CreateIndex",
            "ModifyIndex"
        ],
        "field order and omitempty Checks: {v}"
    );
    assert_eq!(s["ID"], id.as_str());
    assert_eq!(s["Name"], "");
    assert_eq!(s["Node"], a.node.as_str());
    assert_eq!(s["LockDelay"], 15_000_000_000u64);
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["TTL"], "");
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(s["ServiceChecks"], Value::Null);
    let create_index = s["CreateIndex"].as_u64().unwrap();
    assert_eq!(s["ModifyIndex"].as_u64(), Some(create_index));
    // Session reads carry the sessions table index.
    assert_eq!(r.index(), create_index);

    let list = a.get_json("/v1/session/list").await?;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["ID"] == id.as_str()));
    let node = a.get_json(&format!("/v1/session/node/{}", a.node)).await?;
    assert_eq!(node.as_array().unwrap().len(), 1);
    assert_eq!(node[0]["ID"], id.as_str());
    assert_eq!(a.get_json("/v1/session/node/nobody").await?, json!([]));
    Ok(())
}

#[tokio::test]
async fn patroni_and_python_bodies() -> Result<()> {
    let a = TestAgent::dev().await?;
    // Patroni: lower-case keys, an empty check list, fractional durations.
    let id = create(
        &a,
        json!({"name": "pg-leader", "checks": [], "lockdelay": "0.001s",
               "behavior": "delete", "ttl": "15.0s"}),
    )
    .await?;
    let s = &info(&a, &id).await?[0];
    assert_eq!(s["Name"], "pg-leader");
    assert_eq!(
        s["NodeChecks"],
        json!([]),
        "an explicit [] drops serfHealth"
    );
    assert_eq!(s["LockDelay"], 1_000_000);
    assert_eq!(s["Behavior"], "delete");
    assert_eq!(s["TTL"], "15.0s");

    // python-consul sends `lockdelay` as "<n>s"; bare numbers below 1000 are seconds.
    let id = create(&a, json!({"LockDelay": 5, "TTL": "10s"})).await?;
    assert_eq!(info(&a, &id).await?[0]["LockDelay"], 5_000_000_000u64);
    let id = create(&a, json!({"lock_delay": 2_000_000_000u64})).await?;
    assert_eq!(info(&a, &id).await?[0]["LockDelay"], 2_000_000_000u64);

    // The deprecated Checks list with a non-default check is kept, next to NodeChecks.
    a.register_service(&json!({"Name": "db", "ID": "db1",
        "Check": {"CheckID": "db-ttl", "TTL": "60s", "Status": "passing"}}))
        .await?;
    let id = create(&a, json!({"Checks": ["db-ttl"]})).await?;
    let s = &info(&a, &id).await?[0];
    assert_eq!(s["Checks"], json!(["db-ttl"]));
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    let id = create(
        &a,
        json!({"NodeChecks": [], "ServiceChecks": [{"ID": "db-ttl", "Namespace": ""}]}),
    )
    .await?;
    let s = &info(&a, &id).await?[0];
    assert_eq!(
        s["ServiceChecks"],
        json!([{"ID": "db-ttl", "Namespace": ""}])
    );
    assert_eq!(s["NodeChecks"], json!([]));
    Ok(())
}

#[tokio::test]
async fn create_errors_use_consuls_texts() -> Result<()> {
    let a = TestAgent::dev().await?;
    // Wait until the node is registered so that only the tested field fails.
    create(&a, json!({})).await?;
    let ag = &a;
    let put = |body: Value| async move { ag.put_json("/v1/session/create", &body).await };

    // The API keeps Consul's 10 s minimum and 24 h maximum.
    assert_error(
        &put(json!({"TTL": "5s"})).await?,
        500,
        "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
    );
    assert_error(
        &put(json!({"ttl": "86401s"})).await?,
        500,
        "Invalid Session TTL '86401000000000', must be between [10s=24h0m0s]",
    );
    assert_error(
        &put(json!({"TTL": "soon"})).await?,
        500,
        "Session TTL 'soon' invalid: time: invalid duration \"soon\"",
    );
    assert_error(
        &put(json!({"Behavior": "keep"})).await?,
        500,
        "Invalid Behavior setting 'keep'",
    );
    assert_error(
        &put(json!({"Node": "no-such-node"})).await?,
        500,
        "Missing node registration",
    );
    assert_error(
        &put(json!({"Checks": ["nope"]})).await?,
        500,
        "Missing check 'nope' registration",
    );
    let r = a.put("/v1/session/create", "{not json").await?;
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("Request decode failed: "),
        "{}",
        r.text()
    );

    // A critical check cannot back a new session.
    a.register_service(&json!({"Name": "web", "ID": "web1",
        "Check": {"CheckID": "web-ttl", "TTL": "60s"}}))
        .await?;
    let r = eventually(
        Duration::from_secs(10),
        "web-ttl in the catalog",
        || async {
            let r = put(json!({"Checks": ["web-ttl"]})).await?;
            Ok((r.text() != "Missing check 'web-ttl' registration").then_some(r))
        },
    )
    .await?;
    assert_error(&r, 500, "Check 'web-ttl' is in critical state");
    // Exactly 10 s and 24 h are fine; "0s" means no TTL.
    for ttl in ["10s", "24h", "0s"] {
        create(&a, json!({ "TTL": ttl })).await?;
    }
    Ok(())
}

#[tokio::test]
async fn renew_and_destroy() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a
        .put(
            "/v1/session/renew/adf4238a-882b-9ddc-4a9d-5b6758e4159e",
            Vec::new(),
        )
        .await?;
    assert_error(
        &r,
        404,
        "Session id 'adf4238a-882b-9ddc-4a9d-5b6758e4159e' not found",
    );

    let id = create(&a, json!({"Name": "r", "TTL": "30s"})).await?;
    let r = a
        .put(&format!("/v1/session/renew/{id}"), Vec::new())
        .await?;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ID"], id.as_str());
    assert_eq!(v[0]["TTL"], "30s");

    let r = a
        .put(&format!("/v1/session/destroy/{id}"), Vec::new())
        .await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let r = a.get(&format!("/v1/session/info/{id}")).await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), json!([]), "unknown sessions read as []");
    let r = a
        .put(&format!("/v1/session/renew/{id}"), Vec::new())
        .await?;
    assert_eq!(r.status, 404);
    // Destroying again is fine.
    let r = a
        .put(&format!("/v1/session/destroy/{id}"), Vec::new())
        .await?;
    assert_eq!(r.text().trim(), "true");
    // Missing IDs.
    assert_error(
        &a.put("/v1/session/destroy/", Vec::new()).await?,
        400,
        "Missing session",
    );
    assert_error(&a.get("/v1/session/info/").await?, 400, "Missing session");
    assert_error(&a.get("/v1/session/node/").await?, 400, "Missing node name");
    Ok(())
}

#[tokio::test]
async fn info_list_and_node_block() -> Result<()> {
    let a = TestAgent::dev().await?;
    let id = create(&a, json!({"Name": "watched"})).await?;
    let r = a.get(&format!("/v1/session/info/{id}")).await?;
    let index = r.index();

    // A blocked info returns when the session is destroyed.
    let t0 = Instant::now();
    let info_path = format!("/v1/session/info/{id}?index={index}&wait=10s");
    let (blocked, _) = tokio::join!(a.get(&info_path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.put(&format!("/v1/session/destroy/{id}"), Vec::new())
            .await
    });
    let blocked = blocked?;
    assert!(t0.elapsed() < Duration::from_secs(8), "woke on destroy");
    assert_eq!(blocked.json(), json!([]));
    assert!(blocked.index() > index);

    // A blocked list returns on a new session; a timeout returns the same index.
    let r = a.get("/v1/session/list").await?;
    let index = r.index();
    let t0 = Instant::now();
    let timed_out = a
        .get(&format!("/v1/session/list?index={index}&wait=300ms"))
        .await?;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(timed_out.index(), index);
    let path = format!("/v1/session/node/{}?index={index}&wait=10s", a.node);
    let list_path = format!("/v1/session/list?index={index}&wait=10s");
    let (list, node, new_id) = tokio::join!(a.get(&list_path), a.get(&path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        create(&a, json!({"Name": "second"})).await
    });
    let new_id = new_id?;
    for r in [list?, node?] {
        r.assert_status(200).assert_read_headers();
        assert!(r.index() > index);
        assert!(r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["ID"] == new_id.as_str()));
    }
    Ok(())
}

/// A node outside the agent, so anti-entropy leaves its checks alone.
async fn external_node(a: &TestAgent, node: &str, check_status: &str) -> Result<()> {
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": node, "Address": "10.9.9.9",
                    "Check": {"CheckID": "ext-alive", "Name": "alive", "Status": check_status}}),
        )
        .await?;
    r.assert_status(200);
    Ok(())
}

#[tokio::test]
async fn check_failure_and_node_deregistration_invalidate() -> Result<()> {
    let a = TestAgent::dev().await?;
    external_node(&a, "ext-1", "passing").await?;
    let bound = create(
        &a,
        json!({"Node": "ext-1", "NodeChecks": ["ext-alive"], "Behavior": "release"}),
    )
    .await?;
    let bare = create(
        &a,
        json!({"Node": "ext-1", "Checks": [], "Behavior": "delete"}),
    )
    .await?;
    for (key, s) in [("ext/held", &bound), ("ext/ephemeral", &bare)] {
        let r = a.put(&format!("/v1/kv/{key}?acquire={s}"), "v").await?;
        assert_eq!(r.text().trim(), "true");
    }
    let sessions = a.get_json("/v1/session/node/ext-1").await?;
    assert_eq!(sessions.as_array().unwrap().len(), 2);

    // The bound check turns critical: that session goes and its lock is released.
    external_node(&a, "ext-1", "critical").await?;
    assert_eq!(info(&a, &bound).await?, json!([]));
    let held = a.get_json("/v1/kv/ext/held").await?;
    assert!(held[0].get("Session").is_none(), "released: {held}");
    assert_eq!(held[0]["LockIndex"], 1);
    assert_eq!(info(&a, &bare).await?[0]["ID"], bare.as_str());

    // Deregistering the node takes the rest; behavior delete removes the key.
    let r = a
        .put_json("/v1/catalog/deregister", &json!({"Node": "ext-1"}))
        .await?;
    r.assert_status(200);
    assert_eq!(info(&a, &bare).await?, json!([]));
    assert_eq!(a.get("/v1/kv/ext/ephemeral").await?.status, 404);
    assert_eq!(a.get_json("/v1/session/node/ext-1").await?, json!([]));
    Ok(())
}
