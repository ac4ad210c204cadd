//! `PUT /v1/txn`: KV verbs, node/service/check verbs, atomicity (one Raft entry, all or
//! nothing), Consul's `Results`/`Errors` shapes with 200/409, the 64-operation limit, and the
//! read-only fast path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{b64, unb64, Resp, TestAgent};
use serde_json::{json, Value};

async fn txn(a: &TestAgent, ops: Value) -> Result<Resp> {
    a.put_json("/v1/txn", &ops).await
}

fn kv(verb: &str, key: &str) -> Value {
    json!({"KV": {"Verb": verb, "Key": key}})
}

fn kv_set(key: &str, value: &str) -> Value {
    json!({"KV": {"Verb": "set", "Key": key, "Value": b64(value.as_bytes())}})
}

#[tokio::test]
async fn kv_writes_are_one_entry_with_results() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = txn(
        &a,
        json!([
            kv_set("cfg/a", "1"),
            kv_set("cfg/b", "2"),
            {"KV": {"Verb": "cas", "Key": "cfg/c", "Value": b64(b"3"), "Index": 0,
                    "Flags": 16210313421097356768u64}},
            kv("get", "cfg/a"),
        ]),
    )
    .await?;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["Errors"], Value::Null);
    let results = v["Results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    // Writes answer the entry without its value; get keeps it.
    assert_eq!(results[0]["KV"]["Key"], "cfg/a");
    assert_eq!(results[0]["KV"]["Value"], Value::Null);
    assert_eq!(
        results[2]["KV"]["Flags"].to_string(),
        "16210313421097356768"
    );
    assert_eq!(unb64(results[3]["KV"]["Value"].as_str().unwrap()), b"1");
    // All written by one log entry.
    let idx: Vec<u64> = results[..3]
        .iter()
        .map(|x| x["KV"]["ModifyIndex"].as_u64().unwrap())
        .collect();
    assert!(idx.iter().all(|i| *i == idx[0]), "{idx:?}");
    let e = a.get_json("/v1/kv/cfg/b").await?;
    assert_eq!(e[0]["ModifyIndex"].as_u64(), Some(idx[0]));

    // Deletes answer nothing.
    let r = txn(
        &a,
        json!([kv("delete", "cfg/a"), kv("delete-tree", "cfg/")]),
    )
    .await?;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"Results": [], "Errors": null}));
    assert_eq!(a.get("/v1/kv/cfg/?recurse").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn a_failing_op_rolls_back_and_answers_409() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("acct/alice", "100").await?;
    let alice = a.get_json("/v1/kv/acct/alice").await?[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    let r = txn(
        &a,
        json!([
            kv_set("acct/alice", "50"),
            kv_set("acct/bob", "50"),
            {"KV": {"Verb": "check-index", "Key": "acct/alice", "Index": alice + 1000}},
            {"KV": {"Verb": "delete-cas", "Key": "acct/alice", "Index": 1}},
            kv("check-not-exists", "acct/alice"),
            kv("get", "acct/nobody"),
        ]),
    )
    .await?;
    assert_eq!(r.status, 409);
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["Results"], Value::Null);
    let errors: Vec<(u64, String)> = v["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["OpIndex"].as_u64().unwrap(),
                e["What"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 4, "{v}");
    assert_eq!(errors[0].0, 2);
    assert!(errors[0]
        .1
        .starts_with("failed index check for key \"acct/alice\", current modify index "));
    assert_eq!(
        errors[1],
        (
            3,
            "failed to delete key \"acct/alice\", index is stale".to_string()
        )
    );
    assert_eq!(errors[2], (4, "key \"acct/alice\" exists".to_string()));
    assert_eq!(
        errors[3],
        (5, "key \"acct/nobody\" doesn't exist".to_string())
    );
    // Nothing applied.
    let e = a.get_json("/v1/kv/acct/alice").await?;
    assert_eq!(unb64(e[0]["Value"].as_str().unwrap()), b"100");
    assert_eq!(e[0]["ModifyIndex"].as_u64(), Some(alice));
    assert_eq!(a.get("/v1/kv/acct/bob").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn read_only_fast_path() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("ro/a", "x").await?;
    a.kv_put("ro/b", "y").await?;
    let idx = a.get_json("/v1/kv/ro/a").await?[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    for q in ["", "?stale", "?consistent"] {
        let r = txn(
            &a,
            json!([
                kv("get", "ro/a"),
                kv("get-tree", "ro/"),
                {"KV": {"Verb": "check-index", "Key": "ro/a", "Index": idx}},
                kv("check-not-exists", "ro/zzz"),
                kv("get-or-empty", "ro/zzz"),
            ]),
        )
        .await;
        let r = if q.is_empty() {
            r?
        } else {
            a.put(
                &format!("/v1/txn{q}"),
                serde_json::to_vec(&json!([kv("get", "ro/a")]))?,
            )
            .await?
        };
        r.assert_status(200);
        // A read has leadership headers but no index.
        assert_eq!(r.header("X-Consul-KnownLeader").as_deref(), Some("true"));
        assert!(r.header("X-Consul-LastContact").is_some());
        assert!(r.header("X-Consul-Index").is_none());
        let v = r.json();
        assert_eq!(v["Errors"], Value::Null);
        assert_eq!(v["KnownLeader"], true);
        if q.is_empty() {
            let res = v["Results"].as_array().unwrap();
            assert_eq!(res.len(), 5);
            assert_eq!(unb64(res[0]["KV"]["Value"].as_str().unwrap()), b"x");
            assert_eq!(res[1]["KV"]["Key"], "ro/a");
            assert_eq!(res[2]["KV"]["Key"], "ro/b");
            assert_eq!(res[3]["KV"]["Value"], Value::Null);
            assert_eq!(res[4]["KV"]["Key"], "ro/zzz");
        }
    }
    // Reads touch no state: the applied index does not move.
    let before = a.get("/v1/kv/ro/a").await?.index();
    let r = txn(&a, json!([kv("get", "ro/missing")])).await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([{"OpIndex": 0, "What": "key \"ro/missing\" doesn't exist"}])
    );
    assert_eq!(a.get("/v1/kv/ro/a").await?.index(), before);
    Ok(())
}

#[tokio::test]
async fn limits_and_malformed_requests() -> Result<()> {
    let a = TestAgent::dev().await?;
    let ops: Vec<Value> = (0..65).map(|i| kv_set(&format!("many/{i}"), "v")).collect();
    let r = txn(&a, Value::Array(ops)).await?;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.text(),
        "Transaction contains too many operations (65 > 64)"
    );
    let ops: Vec<Value> = (0..64).map(|i| kv_set(&format!("many/{i}"), "v")).collect();
    txn(&a, Value::Array(ops)).await?.assert_status(200);
    assert_eq!(
        a.get_json("/v1/kv/many/?keys")
            .await?
            .as_array()
            .unwrap()
            .len(),
        64
    );

    let r = a.put("/v1/txn", "{nope").await?;
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("Failed to parse body: "),
        "{}",
        r.text()
    );
    let r = a.put("/v1/txn", vec![b'x'; 600 * 1024]).await?;
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), "Request body too large, max size: 524288 bytes");

    let r = txn(&a, json!([kv_set("ok", "1"), kv("frob", "ok")])).await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([{"OpIndex": 1, "What": "unknown KV verb \"frob\""}])
    );
    assert_eq!(a.get("/v1/kv/ok").await?.status, 404);
    let r = txn(&a, json!([kv("set", "")])).await?;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["Errors"][0]["What"], "Must provide key");
    Ok(())
}

#[tokio::test]
async fn lock_unlock_and_check_session() -> Result<()> {
    let a = TestAgent::dev().await?;
    let s = registry_tests::eventually(
        std::time::Duration::from_secs(15),
        "session create",
        || async {
            let r = a.put_json("/v1/session/create", &json!({})).await?;
            Ok((r.status == 200).then(|| r.json()["ID"].as_str().unwrap().to_string()))
        },
    )
    .await?;
    let lock = |verb: &str, session: &str| json!({"KV": {"Verb": verb, "Key": "txn/lock", "Session": session, "Value": b64(b"me")}});
    let r = txn(&a, json!([lock("lock", &s), lock("check-session", &s)])).await?;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["Results"][0]["KV"]["Session"], s.as_str());
    assert_eq!(v["Results"][0]["KV"]["LockIndex"], 1);
    let r = txn(&a, json!([lock("lock", "no-such-session")])).await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"][0]["What"],
        "invalid session \"no-such-session\""
    );
    let r = txn(&a, json!([lock("unlock", &s), lock("check-session", &s)])).await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"][0]["What"],
        format!("failed session check for key \"txn/lock\", current session \"\" != \"{s}\"")
    );
    // Rolled back: still locked.
    assert_eq!(
        a.get_json("/v1/kv/txn/lock").await?[0]["Session"],
        s.as_str()
    );
    let r = txn(&a, json!([lock("unlock", &s)])).await?;
    r.assert_status(200);
    assert!(a.get_json("/v1/kv/txn/lock").await?[0]
        .get("Session")
        .is_none());
    Ok(())
}

#[tokio::test]
async fn node_service_and_check_verbs() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = txn(
        &a,
        json!([
            {"Node": {"Verb": "set", "Node": {"Node": "tx-node", "Address": "10.2.2.2",
                                               "Meta": {"rack": "r1"}}}},
            {"Service": {"Verb": "set", "Node": "tx-node",
                         "Service": {"ID": "pg-1", "Service": "pg", "Port": 5432, "Tags": ["primary"]}}},
            {"Check": {"Verb": "set", "Check": {"Node": "tx-node", "CheckID": "pg-alive",
                       "Name": "pg alive", "Status": "passing", "ServiceID": "pg-1"}}},
            {"Node": {"Verb": "get", "Node": {"Node": "tx-node"}}},
        ]),
    )
    .await?;
    r.assert_status(200);
    let v = r.json();
    let res = v["Results"].as_array().unwrap();
    assert_eq!(res.len(), 4);
    assert_eq!(res[0]["Node"]["Node"], "tx-node");
    assert_eq!(res[0]["Node"]["Datacenter"], "dc1");
    assert_eq!(res[1]["Service"]["ID"], "pg-1");
    assert_eq!(res[1]["Service"]["Port"], 5432);
    assert_eq!(res[2]["Check"]["CheckID"], "pg-alive");
    assert_eq!(res[2]["Check"]["ServiceName"], "pg");
    assert_eq!(res[3]["Node"]["Meta"]["rack"], "r1");

    let health = a.get_json("/v1/health/service/pg?passing").await?;
    assert_eq!(health.as_array().unwrap().len(), 1);
    assert_eq!(health[0]["Node"]["Node"], "tx-node");
    let node_index = res[0]["Node"]["ModifyIndex"].as_u64().unwrap();

    // A stale delete-cas fails the whole transaction.
    let r = txn(
        &a,
        json!([
            {"Service": {"Verb": "delete", "Node": "tx-node", "Service": {"ID": "pg-1"}}},
            {"Node": {"Verb": "delete-cas", "Node": {"Node": "tx-node", "ModifyIndex": node_index + 99}}},
        ]),
    )
    .await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([{"OpIndex": 1, "What": "failed to delete node \"tx-node\", index is stale"}])
    );
    assert_eq!(
        a.get_json("/v1/catalog/service/pg")
            .await?
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = txn(
        &a,
        json!([
            {"Check": {"Verb": "get", "Check": {"Node": "tx-node", "CheckID": "pg-alive"}}},
            {"Service": {"Verb": "get", "Node": "tx-node", "Service": {"ID": "nope"}}},
        ]),
    )
    .await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"][0]["What"],
        "service \"nope\" on node \"tx-node\" doesn't exist"
    );
    let r = txn(
        &a,
        json!([{"Node": {"Verb": "delete-cas", "Node": {"Node": "tx-node", "ModifyIndex": node_index}}}]),
    )
    .await?;
    r.assert_status(200);
    assert_eq!(a.get_json("/v1/catalog/service/pg").await?, json!([]));
    Ok(())
}
