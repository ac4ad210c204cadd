//! Single-key registers: reads, blind writes of unique values and compare-and-set through
//! `?cas=<ModifyIndex>`. Writes carry globally unique values, so a `ModifyIndex` names exactly
//! one value and a successful `?cas=` on the index a read returned is a compare-and-set on that
//! read's value. Keys rotate every few seconds so that each key's history stays small enough
//! for the linearizability search.
//!
//! Reads are `?consistent` (the leader confirms its leadership with a quorum first) or, in the
//! `register-default` workload, default reads, which the registry promises to be linearizable
//! too as long as the servers' clocks advance at about the same rate: a leader serves them
//! alone only within its lease (900 ms after a quorum acknowledged it, below the 1 s minimum
//! election timeout), and a follower first asks the leader for its applied index.

use reqwest::Method;
use serde_json::{json, Value};

use crate::checker::linear::{self, Entry, Limits, RegOp, Register, Verdict};
use crate::client::{kv_value, Worker};
use crate::history::{Kind, Op};

/// Seconds each generation of keys is used.
const KEY_SECS: u64 = 8;
/// Keys in use at once.
const KEYS: u64 = 3;

fn key(w: &Worker) -> String {
    let gen = w.ctx.rec.now() / 1_000_000_000 / KEY_SECS;
    format!("jepsen/r{gen}-{}", rand::random::<u64>() % KEYS)
}

/// One worker's loop.
pub async fn client(mut w: Worker, consistent: bool) {
    while !w.done() {
        let k = key(&w);
        let r: f64 = rand::random();
        if r < 0.25 {
            write(&mut w, &k).await;
        } else if let Some((value, index)) = read(&mut w, &k, consistent).await {
            if r > 0.6 {
                cas(&mut w, &k, value, index).await;
            }
        }
        w.pause().await;
    }
}

/// A read; returns the value and its `ModifyIndex` (0 for a missing key) when it succeeded.
async fn read(w: &mut Worker, k: &str, consistent: bool) -> Option<(Option<i64>, u64)> {
    w.invoke("read", Some(k), Value::Null);
    let q = if consistent { "?consistent" } else { "" };
    match w.read(&format!("/v1/kv/{k}{q}")).await {
        Ok(r) if r.status == 404 => {
            w.complete(Kind::Ok, "read", Some(k), Value::Null, None);
            Some((None, 0))
        }
        Ok(r) => {
            let j = r.json();
            let entry = &j[0];
            let value = kv_value(entry).and_then(|s| s.parse::<i64>().ok());
            let index = entry["ModifyIndex"].as_u64();
            match (value, index) {
                (Some(v), Some(i)) => {
                    w.complete(Kind::Ok, "read", Some(k), json!(v), None);
                    Some((Some(v), i))
                }
                _ => {
                    w.complete(Kind::Fail, "read", Some(k), Value::Null, Some(r.body));
                    None
                }
            }
        }
        Err(e) => {
            w.complete(Kind::Fail, "read", Some(k), Value::Null, Some(e));
            None
        }
    }
}

async fn write(w: &mut Worker, k: &str) {
    let v = w.ctx.unique();
    w.invoke("write", Some(k), json!(v));
    match w
        .write(Method::PUT, &format!("/v1/kv/{k}"), Some(v.to_string()))
        .await
    {
        Ok(r) if r.body.trim() == "true" => w.complete(Kind::Ok, "write", Some(k), json!(v), None),
        Ok(r) => w.complete(Kind::Info, "write", Some(k), json!(v), Some(r.body)),
        Err(e) => w.complete_write_error("write", Some(k), e),
    }
}

async fn cas(w: &mut Worker, k: &str, expected: Option<i64>, index: u64) {
    let v = w.ctx.unique();
    let arg = json!([expected, v]);
    w.invoke("cas", Some(k), arg.clone());
    let path = format!("/v1/kv/{k}?cas={index}");
    match w.write(Method::PUT, &path, Some(v.to_string())).await {
        Ok(r) if r.body.trim() == "true" => w.complete(Kind::Ok, "cas", Some(k), arg, None),
        Ok(r) if r.body.trim() == "false" => {
            w.complete(Kind::Fail, "cas", Some(k), arg, Some("cas false".into()))
        }
        Ok(r) => w.complete(Kind::Info, "cas", Some(k), arg, Some(r.body)),
        Err(e) => w.complete_write_error("cas", Some(k), e),
    }
}

/// The register operations of one key as the linearizability checker's entries. Failed
/// operations had no effect and are left out, as are reads without an answer.
pub fn entries(ops: &[Op]) -> std::collections::BTreeMap<String, Vec<Entry<RegOp>>> {
    let mut by_key: std::collections::BTreeMap<String, Vec<Entry<RegOp>>> = Default::default();
    for op in ops {
        let Some(k) = &op.key else { continue };
        let unknown = op.outcome == Kind::Info;
        let reg = match (op.f.as_str(), op.outcome) {
            (_, Kind::Fail) | (_, Kind::Invoke) => continue,
            ("read", Kind::Ok) => RegOp::Read(op.result.as_i64()),
            ("read", _) => continue,
            ("write", _) => match op.arg.as_i64() {
                Some(v) => RegOp::Write(v),
                None => continue,
            },
            ("cas", _) => match op.arg[1].as_i64() {
                Some(new) => RegOp::Cas {
                    expected: op.arg[0].as_i64(),
                    new,
                    unknown,
                },
                None => continue,
            },
            _ => continue,
        };
        by_key.entry(k.clone()).or_default().push(Entry {
            call: op.invoke,
            ret: if unknown { None } else { op.complete },
            op: reg,
            id: op.index,
        });
    }
    by_key
}

/// Checks every key's history for linearizability. `anomalies` receives the history index of
/// an operation that could not be linearized, per failing key.
pub fn check(ops: &[Op], limits: Limits, anomalies: &mut Vec<usize>) -> Value {
    let mut valid = json!(true);
    let mut keys = serde_json::Map::new();
    let mut bad = Vec::new();
    let mut unknown = Vec::new();
    for (k, es) in entries(ops) {
        let n = es.len();
        let v = linear::check(&Register, &es, limits);
        let verdict = match &v {
            Verdict::Linearizable => json!({"valid": true, "ops": n}),
            Verdict::NotLinearizable { stuck, prefix } => {
                anomalies.push(*stuck);
                bad.push(k.clone());
                json!({"valid": false, "ops": n, "stuck_op_index": stuck, "linearized_prefix": prefix})
            }
            Verdict::Unknown { reason } => {
                unknown.push(k.clone());
                json!({"valid": "unknown", "ops": n, "reason": reason})
            }
        };
        keys.insert(k, verdict);
    }
    if !bad.is_empty() {
        valid = json!(false);
    } else if !unknown.is_empty() {
        valid = json!("unknown");
    }
    json!({
        "checker": "linearizable register (Wing-Gong/Lowe search, per key)",
        "valid": valid,
        "non_linearizable_keys": bad,
        "unknown_keys": unknown,
        "keys": keys,
    })
}

/// Checker-side fault injection for proving the checker works: rewrites one successful read
/// so that it returns a value that was overwritten by a write completed before the read began
/// (a stale read). Returns the history index of the rewritten completion, if one fit.
pub fn inject_stale_read(events: &mut [crate::history::Event]) -> Option<usize> {
    let ops = crate::history::pair(events);
    // For each key, ok writes in completion order.
    for r in ops
        .iter()
        .filter(|o| o.f == "read" && o.outcome == Kind::Ok)
    {
        let Some(k) = &r.key else { continue };
        let writes: Vec<&Op> = ops
            .iter()
            .filter(|o| {
                o.key.as_ref() == Some(k)
                    && o.f == "write"
                    && o.outcome == Kind::Ok
                    && o.complete.is_some_and(|c| c < r.invoke)
            })
            .collect();
        if writes.len() < 2 {
            continue;
        }
        // Two writes both finished before the read started, the second after the first
        // completed: the first's value cannot be read any more.
        let (a, b) = (writes[0], writes[writes.len() - 1]);
        if a.complete.is_some_and(|c| c < b.invoke) && a.arg != r.result {
            let stale = a.arg.clone();
            let completion = events.iter().position(|e| {
                e.index > r.index && e.process == r.process && e.kind != Kind::Invoke
            })?;
            events[completion].value = stale;
            return Some(completion);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{pair, Recorder};
    use std::time::Instant;

    /// A sequential history on one key: write 1, write 2, then reads of 2.
    fn history() -> Vec<crate::history::Event> {
        let r = Recorder::new(Instant::now());
        let k = Some("k");
        for (p, v) in [(0, 1), (1, 2)] {
            r.record(Kind::Invoke, p, "write", k, json!(v), 1, None);
            r.record(Kind::Ok, p, "write", k, json!(v), 1, None);
        }
        for p in 2..5 {
            r.record(Kind::Invoke, p, "read", k, Value::Null, 1, None);
            r.record(Kind::Ok, p, "read", k, json!(2), 1, None);
        }
        r.events()
    }

    #[test]
    fn honest_history_is_linearizable() {
        let ops = pair(&history());
        let v = check(&ops, Limits::default(), &mut Vec::new());
        assert_eq!(v["valid"], json!(true), "{v}");
    }

    #[test]
    fn injected_stale_read_is_caught() {
        let mut events = history();
        let at = inject_stale_read(&mut events).expect("a read to rewrite");
        assert_eq!(events[at].value, json!(1));
        let ops = pair(&events);
        let mut anomalies = Vec::new();
        let v = check(&ops, Limits::default(), &mut anomalies);
        assert_eq!(v["valid"], json!(false), "{v}");
        assert_eq!(anomalies.len(), 1);
    }

    #[test]
    fn unknown_cas_and_failed_ops_are_handled() {
        let r = Recorder::new(Instant::now());
        let k = Some("k");
        r.record(Kind::Invoke, 0, "write", k, json!(1), 1, None);
        r.record(Kind::Ok, 0, "write", k, json!(1), 1, None);
        // A cas with an unknown outcome that did happen, and one that failed.
        r.record(Kind::Invoke, 1, "cas", k, json!([1, 5]), 1, None);
        r.record(
            Kind::Info,
            1,
            "cas",
            k,
            json!([1, 5]),
            1,
            Some("timeout".into()),
        );
        r.record(Kind::Invoke, 2, "cas", k, json!([9, 6]), 1, None);
        r.record(Kind::Fail, 2, "cas", k, json!([9, 6]), 1, None);
        r.record(Kind::Invoke, 3, "read", k, Value::Null, 1, None);
        r.record(Kind::Ok, 3, "read", k, json!(5), 1, None);
        let ops = pair(&r.events());
        let v = check(&ops, Limits::default(), &mut Vec::new());
        assert_eq!(v["valid"], json!(true), "{v}");
    }
}
