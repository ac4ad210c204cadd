//! The server port's RPC layer end to end: writes that arrive at a follower are forwarded to
//! the leader as requests, so the leader's checks (lock-delay, session validity, CAS) decide
//! them, whichever server the client talks to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{bail, Result};
use registry_tests::cluster::TestCluster;
use serde_json::{json, Value};

/// `PUT` through server `i` that must answer 200 with a JSON boolean.
async fn put_bool(c: &TestCluster, i: usize, path: &str, body: &str) -> Result<bool> {
    let r = c.put(i, path, body).await?;
    match (r.status, r.json()) {
        (200, Value::Bool(b)) => Ok(b),
        (s, _) => bail!("server {i}: PUT {path}: {s} {:?}", r.text()),
    }
}

async fn session(c: &TestCluster, i: usize, body: Value) -> Result<String> {
    let r = c.put(i, "/v1/session/create", body.to_string()).await?;
    if r.status != 200 {
        bail!("server {i}: session create: {} {:?}", r.status, r.text());
    }
    Ok(r.json()["ID"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_delay_acquire_sent_to_a_follower_is_refused_as_on_the_leader() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let f = c.followers(leader)[0];
    // Sessions created and the lock taken through the follower.
    let holder = session(&c, f, json!({"LockDelay": "40s", "Name": "holder"})).await?;
    let other = session(&c, f, json!({"LockDelay": "0s", "Name": "other"})).await?;
    assert!(put_bool(&c, f, &format!("/v1/kv/ld/key?acquire={holder}"), "x").await?);
    // Held by a live session: refused through the follower and the leader alike.
    assert!(!put_bool(&c, f, &format!("/v1/kv/ld/key?acquire={other}"), "y").await?);
    assert!(!put_bool(&c, leader, &format!("/v1/kv/ld/key?acquire={other}"), "y").await?);
    // Destroying the holder releases the key and starts its 40 s lock-delay.
    assert!(put_bool(&c, f, &format!("/v1/session/destroy/{holder}"), "").await?);

    // The follower forgets lock-delays when it restarts (they are wall-clock state, not
    // replicated): only the leader's view can refuse the acquire now.
    c.restart(f).await?;
    c.wait_for_leader(Duration::from_secs(20)).await?;
    assert_eq!(
        c.leader().await?,
        leader,
        "the leader must not change during the test"
    );
    assert!(
        !put_bool(&c, f, &format!("/v1/kv/ld/key?acquire={other}"), "y").await?,
        "a follower let a lock-delayed key be acquired"
    );
    assert!(!put_bool(&c, leader, &format!("/v1/kv/ld/key?acquire={other}"), "y").await?);
    // The same through a transaction: 409 with Consul's text.
    let txn = json!([{"KV": {"Verb": "lock", "Key": "ld/key", "Value": "", "Session": other}}]);
    for i in [f, leader] {
        let r = c.put(i, "/v1/txn", txn.to_string()).await?;
        assert_eq!(r.status, 409, "server {i}: {}", r.text());
        assert_eq!(
            r.json()["Errors"][0]["What"],
            "failed to lock key \"ld/key\" due to lock delay",
            "server {i}"
        );
    }
    // A session that does not exist is refused with the leader's error.
    let r = c
        .put(
            f,
            "/v1/kv/ld/other?acquire=00000000-0000-0000-0000-000000000000",
            "z",
        )
        .await?;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("invalid session"), "{}", r.text());
    // CAS through the follower is decided by the leader's state.
    c.kv_put(f, "ld/cas", "1").await?;
    let idx = c.get_json(leader, "/v1/kv/ld/cas").await?[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert!(!put_bool(&c, f, "/v1/kv/ld/cas?cas=0", "2").await?);
    assert!(put_bool(&c, f, &format!("/v1/kv/ld/cas?cas={idx}"), "2").await?);
    assert!(!put_bool(&c, f, &format!("/v1/kv/ld/cas?cas={idx}"), "3").await?);
    // Forwarded answers carry the leader's headers and status codes.
    let r = c.put(f, "/v1/kv/ld/x?cas=1&acquire=a", "").await?;
    assert_eq!(r.status, 400, "{}", r.text());
    c.finish();
    Ok(())
}
