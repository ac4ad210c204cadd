//! Catalog registrations: each worker registers fresh nodes (each with one service) and
//! deregisters some of the nodes it registered. After the faults are healed a final
//! `?consistent` node listing must hold every acknowledged registration that no deregistration
//! was attempted for, none whose deregistration was acknowledged, and nothing never registered.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Worker;
use crate::history::{Kind, Op};

const PREFIX: &str = "jn-";

/// One worker's loop.
pub async fn client(mut w: Worker) {
    let mut mine: Vec<String> = Vec::new();
    while !w.done() {
        if !mine.is_empty() && rand::random::<f64>() < 0.3 {
            let i = rand::random::<usize>() % mine.len();
            let node = mine.swap_remove(i);
            w.invoke("deregister", None, json!(node));
            let body = json!({"Node": node});
            match w
                .write(
                    Method::PUT,
                    "/v1/catalog/deregister",
                    Some(body.to_string()),
                )
                .await
            {
                Ok(_) => w.complete(Kind::Ok, "deregister", None, json!(node), None),
                Err(e) => w.complete_write_error("deregister", None, e),
            }
        } else {
            let node = format!("{PREFIX}{}", w.ctx.unique());
            w.invoke("register", None, json!(node));
            let body = json!({"Node": node, "Address": "192.0.2.1",
                "Service": {"Service": "jepsen", "Port": 80}});
            match w
                .write(Method::PUT, "/v1/catalog/register", Some(body.to_string()))
                .await
            {
                Ok(_) => {
                    w.complete(Kind::Ok, "register", None, json!(node), None);
                    mine.push(node);
                }
                Err(e) => w.complete_write_error("register", None, e),
            }
        }
        w.pause().await;
    }
}

/// The final listing, retried until it succeeds.
pub async fn final_read(mut w: Worker) {
    for _ in 0..120 {
        w.invoke("read", None, Value::Null);
        match w.read("/v1/catalog/nodes?consistent").await {
            Ok(r) => {
                let names: Vec<String> = r
                    .json()
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n["Node"].as_str())
                            .filter(|n| n.starts_with(PREFIX))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                w.complete(Kind::Ok, "read", None, json!(names), None);
                return;
            }
            Err(e) => w.complete(Kind::Fail, "read", None, Value::Null, Some(e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// No acknowledged registration lost, no acknowledged deregistration undone.
pub fn check(ops: &[Op], anomalies: &mut Vec<usize>) -> Value {
    let Some(read) = ops
        .iter()
        .rev()
        .find(|o| o.f == "read" && o.outcome == Kind::Ok)
    else {
        return json!({"checker": "catalog", "valid": "unknown", "reason": "no final read succeeded"});
    };
    let seen: BTreeSet<&str> = read
        .result
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let name = |o: &Op| o.arg.as_str().unwrap_or_default().to_string();
    let attempted: BTreeSet<String> = ops.iter().filter(|o| o.f == "register").map(name).collect();
    let dereg_tried: BTreeSet<String> = ops
        .iter()
        .filter(|o| o.f == "deregister" && o.outcome != Kind::Fail)
        .map(name)
        .collect();
    let mut lost = Vec::new();
    let mut resurrected = Vec::new();
    for o in ops {
        let n = name(o);
        if o.f == "register"
            && o.outcome == Kind::Ok
            && !dereg_tried.contains(&n)
            && !seen.contains(n.as_str())
        {
            anomalies.push(o.index);
            lost.push(n);
        } else if o.f == "deregister" && o.outcome == Kind::Ok && seen.contains(n.as_str()) {
            anomalies.push(o.index);
            resurrected.push(n);
        }
    }
    let unexpected: Vec<&str> = seen
        .iter()
        .filter(|n| !attempted.contains(**n))
        .copied()
        .collect();
    json!({
        "checker": "catalog (acknowledged registrations kept, deregistrations kept)",
        "valid": lost.is_empty() && resurrected.is_empty() && unexpected.is_empty(),
        "registrations_acknowledged": ops.iter().filter(|o| o.f == "register" && o.outcome == Kind::Ok).count(),
        "deregistrations_acknowledged": ops.iter().filter(|o| o.f == "deregister" && o.outcome == Kind::Ok).count(),
        "final_nodes": seen.len(),
        "lost": lost,
        "deregistered_but_present": resurrected,
        "unexpected": unexpected,
    })
}
