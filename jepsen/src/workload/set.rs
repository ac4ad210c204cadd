//! A grow-only set: each add writes a fresh key `jepsen/set/<n>`; after the faults are healed
//! one final `?consistent` listing of the prefix must contain every acknowledged add and
//! nothing that was never attempted (adds with an unknown outcome may be either way).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Worker;
use crate::history::{Kind, Op};

/// One worker's loop.
pub async fn client(mut w: Worker) {
    while !w.done() {
        let v = w.ctx.unique();
        w.invoke("add", None, json!(v));
        match w
            .write(
                Method::PUT,
                &format!("/v1/kv/jepsen/set/{v}"),
                Some(v.to_string()),
            )
            .await
        {
            Ok(r) if r.body.trim() == "true" => w.complete(Kind::Ok, "add", None, json!(v), None),
            Ok(r) => w.complete(Kind::Info, "add", None, json!(v), Some(r.body)),
            Err(e) => w.complete_write_error("add", None, e),
        }
        w.pause().await;
    }
}

/// The final read, retried until it succeeds (or 60 s pass).
pub async fn final_read(mut w: Worker) {
    for _ in 0..120 {
        w.invoke("read", None, Value::Null);
        match w.read("/v1/kv/jepsen/set/?keys&consistent").await {
            Ok(r) => {
                let keys: Vec<i64> = if r.status == 404 {
                    Vec::new()
                } else {
                    r.json()
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str()?.rsplit('/').next()?.parse().ok())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                w.complete(Kind::Ok, "read", None, json!(keys), None);
                return;
            }
            Err(e) => w.complete(Kind::Fail, "read", None, Value::Null, Some(e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Every acknowledged add is in the final read; nothing unattempted is.
pub fn check(ops: &[Op], anomalies: &mut Vec<usize>) -> Value {
    let attempted: BTreeSet<i64> = ops
        .iter()
        .filter(|o| o.f == "add")
        .filter_map(|o| o.arg.as_i64())
        .collect();
    let acked: Vec<&Op> = ops
        .iter()
        .filter(|o| o.f == "add" && o.outcome == Kind::Ok)
        .collect();
    let unknown: BTreeSet<i64> = ops
        .iter()
        .filter(|o| o.f == "add" && o.outcome == Kind::Info)
        .filter_map(|o| o.arg.as_i64())
        .collect();
    let Some(read) = ops
        .iter()
        .rev()
        .find(|o| o.f == "read" && o.outcome == Kind::Ok)
    else {
        return json!({"checker": "set", "valid": "unknown", "reason": "no final read succeeded"});
    };
    let seen: BTreeSet<i64> = read
        .result
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let mut lost = Vec::new();
    for o in &acked {
        if let Some(v) = o.arg.as_i64() {
            if !seen.contains(&v) {
                lost.push(v);
                anomalies.push(o.index);
            }
        }
    }
    let unexpected: Vec<i64> = seen.difference(&attempted).copied().collect();
    let recovered = seen.intersection(&unknown).count();
    json!({
        "checker": "set (final read holds every acknowledged add)",
        "valid": lost.is_empty() && unexpected.is_empty(),
        "attempted": attempted.len(),
        "acknowledged": acked.len(),
        "unknown": unknown.len(),
        "unknown_present": recovered,
        "final_read_size": seen.len(),
        "lost": lost,
        "unexpected": unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(index: usize, f: &str, outcome: Kind, arg: Value, result: Value) -> Op {
        Op {
            process: 0,
            f: f.into(),
            key: None,
            arg,
            result,
            outcome,
            invoke: index as u64,
            complete: Some(index as u64 + 1),
            end: index as u64 + 1,
            node: 1,
            index,
        }
    }

    #[test]
    fn lost_and_unexpected_elements_are_caught() {
        let adds = vec![
            op(0, "add", Kind::Ok, json!(1), Value::Null),
            op(1, "add", Kind::Ok, json!(2), Value::Null),
            op(2, "add", Kind::Info, json!(3), Value::Null),
            op(3, "add", Kind::Fail, json!(4), Value::Null),
        ];
        let mut ok = adds.clone();
        ok.push(op(4, "read", Kind::Ok, Value::Null, json!([1, 2, 3])));
        assert_eq!(check(&ok, &mut Vec::new())["valid"], json!(true));
        let mut lost = adds.clone();
        lost.push(op(4, "read", Kind::Ok, Value::Null, json!([1])));
        let mut anomalies = Vec::new();
        assert_eq!(check(&lost, &mut anomalies)["valid"], json!(false));
        assert_eq!(anomalies, vec![1]);
        let mut extra = adds;
        extra.push(op(4, "read", Kind::Ok, Value::Null, json!([1, 2, 99])));
        assert_eq!(check(&extra, &mut Vec::new())["unexpected"], json!([99]));
    }
}
