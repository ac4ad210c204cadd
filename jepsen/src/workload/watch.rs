//! Blocking queries across failovers. Half the workers write fresh values to `jepsen/watch`;
//! the other half watch it with blocking queries (`?index=<last X-Consul-Index>&wait=1s`, default
//! consistency), always passing the index they last saw, like consul-template does.
//!
//! Checked: a watcher's `X-Consul-Index` never goes backwards, neither for one client nor in
//! real time across clients (a query started after another ended never answers an older
//! index), one `ModifyIndex` always comes with one value, and after healing every server's
//! `?consistent` read agrees on the latest value, which no watcher saw superseded: nothing any
//! watcher saw has a higher `ModifyIndex` than it.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{kv_value, Worker};
use crate::history::{Kind, Op};

const KEY: &str = "jepsen/watch";

/// One worker's loop: even slots write, odd slots watch.
pub async fn client(mut w: Worker) {
    let mut last: u64 = 0;
    while !w.done() {
        if w.slot.is_multiple_of(2) {
            let v = w.ctx.unique();
            w.invoke("write", Some(KEY), json!(v));
            match w
                .write(Method::PUT, &format!("/v1/kv/{KEY}"), Some(v.to_string()))
                .await
            {
                Ok(_) => w.complete(Kind::Ok, "write", Some(KEY), json!(v), None),
                Err(e) => w.complete_write_error("write", Some(KEY), e),
            }
            w.pause().await;
        } else {
            w.invoke("watch", Some(KEY), json!(last));
            let path = format!("/v1/kv/{KEY}?index={last}&wait=1s");
            match w.read(&path).await {
                Ok(r) => {
                    let index = r.index.unwrap_or(0);
                    let j = r.json();
                    let v = json!({"index": index, "modify_index": j[0]["ModifyIndex"],
                        "value": kv_value(&j[0]).and_then(|s| s.parse::<i64>().ok())});
                    w.complete(Kind::Ok, "watch", Some(KEY), v, None);
                    last = index;
                }
                Err(e) => {
                    w.complete(Kind::Fail, "watch", Some(KEY), Value::Null, Some(e));
                    w.pause().await;
                }
            }
        }
    }
}

/// A final `?consistent` read through this worker's server.
pub async fn final_read(mut w: Worker) {
    for _ in 0..120 {
        w.invoke("final", Some(KEY), Value::Null);
        match w.read(&format!("/v1/kv/{KEY}?consistent")).await {
            Ok(r) => {
                let j = r.json();
                let v = json!({"index": r.index, "modify_index": j[0]["ModifyIndex"],
                    "value": kv_value(&j[0]).and_then(|s| s.parse::<i64>().ok())});
                w.complete(Kind::Ok, "final", Some(KEY), v, None);
                return;
            }
            Err(e) => w.complete(Kind::Fail, "final", Some(KEY), Value::Null, Some(e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Judges the watchers' observations.
pub fn check(ops: &[Op], anomalies: &mut Vec<usize>) -> Value {
    let watches: Vec<&Op> = ops
        .iter()
        .filter(|o| o.f == "watch" && o.outcome == Kind::Ok)
        .collect();
    let mut errors = Vec::new();
    // Per process.
    let mut last: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for o in &watches {
        let i = o.result["index"].as_u64().unwrap_or(0);
        if let Some((prev, at)) = last.insert(o.process, (i, o.index)) {
            if i < prev {
                anomalies.push(o.index);
                errors.push(json!({"type": "index went backwards for one client", "op": o.index, "index": i, "previous": prev, "previous_op": at}));
            }
        }
    }
    // Real time: sweep in invocation order, with the highest index of the queries completed.
    let mut by_complete: Vec<(u64, u64, usize)> = watches
        .iter()
        .filter_map(|o| Some((o.complete?, o.result["index"].as_u64()?, o.index)))
        .collect();
    by_complete.sort();
    let mut by_invoke: Vec<&&Op> = watches.iter().collect();
    by_invoke.sort_by_key(|o| o.invoke);
    let (mut j, mut best) = (0, (0u64, 0usize));
    for o in by_invoke {
        while j < by_complete.len() && by_complete[j].0 < o.invoke {
            if by_complete[j].1 > best.0 {
                best = (by_complete[j].1, by_complete[j].2);
            }
            j += 1;
        }
        let i = o.result["index"].as_u64().unwrap_or(0);
        if i < best.0 {
            anomalies.push(o.index);
            errors.push(json!({"type": "index went backwards in real time", "op": o.index, "index": i, "earlier_op": best.1, "earlier_index": best.0}));
        }
    }
    // One value per ModifyIndex.
    let mut values: BTreeMap<u64, Value> = BTreeMap::new();
    for o in &watches {
        let Some(mi) = o.result["modify_index"].as_u64() else {
            continue;
        };
        let v = o.result["value"].clone();
        if let Some(prev) = values.insert(mi, v.clone()) {
            if prev != v {
                anomalies.push(o.index);
                errors.push(json!({"type": "two values for one ModifyIndex", "op": o.index, "modify_index": mi}));
            }
        }
    }
    // Final reads agree and supersede everything seen.
    let finals: Vec<&Op> = ops
        .iter()
        .filter(|o| o.f == "final" && o.outcome == Kind::Ok)
        .collect();
    let final_mi: Vec<u64> = finals
        .iter()
        .filter_map(|o| o.result["modify_index"].as_u64())
        .collect();
    if final_mi.windows(2).any(|w| w[0] != w[1]) {
        errors.push(json!({"type": "servers disagree after healing", "modify_indexes": final_mi}));
    }
    if let (Some(f), Some((seen, _))) = (final_mi.first(), values.last_key_value()) {
        if seen > f {
            errors.push(json!({"type": "a watcher saw a change the final state lost", "seen_modify_index": seen, "final_modify_index": f}));
        }
    }
    json!({
        "checker": "watch (indexes never go backwards; final state supersedes all seen)",
        "valid": if finals.is_empty() { json!("unknown") } else { json!(errors.is_empty()) },
        "watches": watches.len(),
        "final_reads": finals.len(),
        "errors": errors,
    })
}
