//! Bank transfers through `/v1/txn`: [`ACCOUNTS`] accounts under `jepsen/bank/` start with
//! [`INITIAL`] each; a transfer reads two balances with their `ModifyIndex` and moves an amount
//! with one transaction of two `cas` operations, so it applies whole or not at all. Every read
//! of the whole prefix (a default read, served under the leader lease, and a final
//! `?consistent` one) must show all accounts, none negative, adding up to the constant total.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{kv_value, Worker};
use crate::history::{Kind, Op};

/// Number of accounts.
pub const ACCOUNTS: usize = 5;
/// Initial balance of each.
pub const INITIAL: i64 = 10;
const PREFIX: &str = "jepsen/bank/";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Writes the initial balances in one transaction.
pub async fn setup(w: Worker) -> Result<()> {
    let ops: Vec<Value> = (0..ACCOUNTS)
        .map(|i| json!({"KV": {"Verb": "set", "Key": format!("{PREFIX}a{i}"), "Value": b64(&INITIAL.to_string())}}))
        .collect();
    for _ in 0..20 {
        if let Ok(r) = w
            .write(
                Method::PUT,
                "/v1/txn",
                Some(Value::Array(ops.clone()).to_string()),
            )
            .await
        {
            if r.status == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    bail!("could not write the initial balances")
}

/// Balances and modify indexes from a recursive listing.
fn balances(body: &Value) -> Option<BTreeMap<String, (i64, u64)>> {
    let mut m = BTreeMap::new();
    for e in body.as_array()? {
        let key = e["Key"].as_str()?.strip_prefix(PREFIX)?.to_string();
        let v = kv_value(e)?.parse().ok()?;
        m.insert(key, (v, e["ModifyIndex"].as_u64()?));
    }
    Some(m)
}

async fn read(w: &mut Worker, consistent: bool) -> Option<BTreeMap<String, (i64, u64)>> {
    w.invoke("read", None, Value::Null);
    let q = if consistent { "&consistent" } else { "" };
    match w.read(&format!("/v1/kv/{PREFIX}?recurse{q}")).await {
        Ok(r) => match balances(&r.json()) {
            Some(b) => {
                let v: BTreeMap<&String, i64> = b.iter().map(|(k, (v, _))| (k, *v)).collect();
                w.complete(Kind::Ok, "read", None, json!(v), None);
                Some(b)
            }
            None => {
                w.complete(Kind::Fail, "read", None, Value::Null, Some(r.body));
                None
            }
        },
        Err(e) => {
            w.complete(Kind::Fail, "read", None, Value::Null, Some(e));
            None
        }
    }
}

/// One worker's loop.
pub async fn client(mut w: Worker) {
    while !w.done() {
        let consistent = rand::random::<f64>() < 0.5;
        let Some(b) = read(&mut w, consistent).await else {
            w.pause().await;
            continue;
        };
        if consistent {
            transfer(&mut w, &b).await;
        }
        w.pause().await;
    }
}

async fn transfer(w: &mut Worker, b: &BTreeMap<String, (i64, u64)>) {
    let from = format!("a{}", rand::random::<usize>() % ACCOUNTS);
    let to = format!("a{}", rand::random::<usize>() % ACCOUNTS);
    let (Some(&(fb, fi)), Some(&(tb, ti))) = (b.get(&from), b.get(&to)) else {
        return;
    };
    if from == to || fb == 0 {
        return;
    }
    let amount = 1 + rand::random::<i64>().rem_euclid(fb.min(5));
    let arg = json!({"from": from, "to": to, "amount": amount});
    let ops = json!([
        {"KV": {"Verb": "cas", "Key": format!("{PREFIX}{from}"), "Value": b64(&(fb - amount).to_string()), "Index": fi}},
        {"KV": {"Verb": "cas", "Key": format!("{PREFIX}{to}"), "Value": b64(&(tb + amount).to_string()), "Index": ti}},
    ]);
    w.invoke("transfer", None, arg.clone());
    match w.req(Method::PUT, "/v1/txn", Some(ops.to_string())).await {
        Ok(r) if r.status == 200 => w.complete(Kind::Ok, "transfer", None, arg, None),
        Ok(r) if r.status == 409 => {
            w.complete(Kind::Fail, "transfer", None, arg, Some("cas".into()))
        }
        Ok(r) if (400..500).contains(&r.status) => {
            w.complete(Kind::Fail, "transfer", None, arg, Some(r.body))
        }
        Ok(r) => w.complete(
            Kind::Info,
            "transfer",
            None,
            arg,
            Some(format!("{} {}", r.status, r.body)),
        ),
        Err(crate::client::ReqErr::NotSent(m)) => {
            w.complete(Kind::Fail, "transfer", None, arg, Some(m))
        }
        Err(crate::client::ReqErr::Unknown(m)) => {
            w.complete(Kind::Info, "transfer", None, arg, Some(m))
        }
    }
}

/// The final `?consistent` read, retried until it succeeds.
pub async fn final_read(mut w: Worker) {
    for _ in 0..120 {
        if read(&mut w, true).await.is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Every successful read shows every account, none negative, with the constant total.
pub fn check(ops: &[Op], anomalies: &mut Vec<usize>) -> Value {
    let total = INITIAL * ACCOUNTS as i64;
    let mut bad = Vec::new();
    let mut reads = 0;
    for o in ops
        .iter()
        .filter(|o| o.f == "read" && o.outcome == Kind::Ok)
    {
        reads += 1;
        let Some(m) = o.result.as_object() else {
            continue;
        };
        let vals: Vec<i64> = m.values().filter_map(Value::as_i64).collect();
        let sum: i64 = vals.iter().sum();
        if m.len() != ACCOUNTS || sum != total || vals.iter().any(|v| *v < 0) {
            anomalies.push(o.index);
            bad.push(json!({"op": o.index, "balances": o.result, "total": sum}));
        }
    }
    let transfers = ops
        .iter()
        .filter(|o| o.f == "transfer" && o.outcome == Kind::Ok)
        .count();
    json!({
        "checker": "bank (every read: all accounts, none negative, constant total)",
        "valid": if reads == 0 { json!("unknown") } else { json!(bad.is_empty()) },
        "total": total,
        "reads": reads,
        "acknowledged_transfers": transfers,
        "bad_reads": bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(index: usize, balances: Value) -> Op {
        Op {
            process: 0,
            f: "read".into(),
            key: None,
            arg: Value::Null,
            result: balances,
            outcome: Kind::Ok,
            invoke: 0,
            complete: Some(1),
            end: 1,
            node: 1,
            index,
        }
    }

    #[test]
    fn reads_must_keep_the_total() {
        let good = json!({"a0": 12, "a1": 8, "a2": 10, "a3": 10, "a4": 10});
        let bad = json!({"a0": 12, "a1": 10, "a2": 10, "a3": 10, "a4": 10});
        let negative = json!({"a0": 25, "a1": -5, "a2": 10, "a3": 10, "a4": 10});
        let missing = json!({"a0": 20, "a1": 10, "a2": 10, "a3": 10});
        assert_eq!(
            check(&[read(0, good.clone())], &mut Vec::new())["valid"],
            json!(true)
        );
        let mut anomalies = Vec::new();
        let v = check(
            &[
                read(0, good),
                read(1, bad),
                read(2, negative),
                read(3, missing),
            ],
            &mut anomalies,
        );
        assert_eq!(v["valid"], json!(false));
        assert_eq!(anomalies, vec![1, 2, 3]);
    }
}
