//! Session locks on one key. Each worker creates a session (no health checks, lock-delay
//! [`LOCK_DELAY_MS`]), acquires `jepsen/lock` with `?acquire=`, reads the key `?consistent` to
//! learn its `LockIndex` and holder, holds it a little, then releases it with `?release=` or,
//! one time in five, destroys its session as a crashed holder would (which arms the
//! lock-delay). An acquire or release with an unknown outcome also ends in destroying the
//! session, so a lock is never stuck with a session nobody uses.
//!
//! Checked: (1) no two holders at once: an acquire acknowledged at `a` and a release that
//! returned `true` invoked at `r` prove the session held the lock throughout `[a, r]`, and such
//! intervals of different sessions must not overlap; (2) the registry's own view: during such
//! an interval a `?consistent` read never names another holder, and every acquisition observed
//! has its own `LockIndex`, increasing in real time; (3) lock-delay: once the destruction of a
//! holder's session is acknowledged, no acquire by another session sent after that succeeds
//! within the delay (counted from the destroy's invocation).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Worker;
use crate::history::{Kind, Op};

/// Lock-delay of the sessions.
pub const LOCK_DELAY_MS: u64 = 2_000;
const KEY: &str = "jepsen/lock";

/// One worker's loop.
pub async fn client(mut w: Worker) {
    let mut session: Option<String> = None;
    while !w.done() {
        let Some(s) = session.clone() else {
            session = create(&mut w).await;
            if session.is_none() {
                w.pause().await;
            }
            continue;
        };
        w.invoke("acquire", Some(KEY), json!(s));
        let body = format!("p{}", w.process);
        let acquired = match w
            .write(
                Method::PUT,
                &format!("/v1/kv/{KEY}?acquire={s}"),
                Some(body),
            )
            .await
        {
            Ok(r) if r.body.trim() == "true" => {
                w.complete(Kind::Ok, "acquire", Some(KEY), json!(s), None);
                true
            }
            Ok(r) if r.body.trim() == "false" => {
                w.complete(
                    Kind::Fail,
                    "acquire",
                    Some(KEY),
                    json!(s),
                    Some("held".into()),
                );
                false
            }
            Ok(r) => {
                w.complete(Kind::Info, "acquire", Some(KEY), json!(s), Some(r.body));
                destroy(&mut w, &s).await;
                session = None;
                false
            }
            Err(e) => {
                let unknown = matches!(e, crate::client::WriteErr::Info(_));
                w.complete_write_error("acquire", Some(KEY), e);
                if unknown {
                    destroy(&mut w, &s).await;
                    session = None;
                }
                false
            }
        };
        if !acquired {
            w.pause().await;
            continue;
        }
        holder(&mut w).await;
        let hold = 100 + rand::random::<u64>() % 300;
        tokio::time::sleep(Duration::from_millis(hold)).await;
        if rand::random::<f64>() < 0.2 {
            destroy(&mut w, &s).await;
            session = None;
            continue;
        }
        w.invoke("release", Some(KEY), json!(s));
        match w
            .write(
                Method::PUT,
                &format!("/v1/kv/{KEY}?release={s}"),
                Some(String::new()),
            )
            .await
        {
            Ok(r) if r.body.trim() == "true" => {
                w.complete(Kind::Ok, "release", Some(KEY), json!(s), None)
            }
            Ok(r) => {
                let kind = if r.body.trim() == "false" {
                    Kind::Fail
                } else {
                    Kind::Info
                };
                w.complete(kind, "release", Some(KEY), json!(s), Some(r.body));
                destroy(&mut w, &s).await;
                session = None;
            }
            Err(e) => {
                w.complete_write_error("release", Some(KEY), e);
                destroy(&mut w, &s).await;
                session = None;
            }
        }
        w.pause().await;
    }
    if let Some(s) = session {
        destroy(&mut w, &s).await;
    }
}

async fn create(w: &mut Worker) -> Option<String> {
    let body = json!({"Name": "jepsen", "LockDelay": format!("{LOCK_DELAY_MS}ms"), "Checks": [], "Behavior": "release"});
    w.invoke("create", None, Value::Null);
    match w
        .write(Method::PUT, "/v1/session/create", Some(body.to_string()))
        .await
    {
        Ok(r) => match r.json()["ID"].as_str() {
            Some(id) => {
                w.complete(Kind::Ok, "create", None, json!(id), None);
                Some(id.to_string())
            }
            None => {
                w.complete(Kind::Info, "create", None, Value::Null, Some(r.body));
                None
            }
        },
        Err(e) => {
            w.complete_write_error("create", None, e);
            None
        }
    }
}

/// Destroys a session, retrying until it is acknowledged (or 60 s pass).
async fn destroy(w: &mut Worker, s: &str) {
    for _ in 0..60 {
        w.invoke("destroy", None, json!(s));
        match w
            .write(Method::PUT, &format!("/v1/session/destroy/{s}"), None)
            .await
        {
            Ok(_) => {
                w.complete(Kind::Ok, "destroy", None, json!(s), None);
                return;
            }
            Err(e) => w.complete_write_error("destroy", None, e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn holder(w: &mut Worker) {
    w.invoke("holder", Some(KEY), Value::Null);
    match w.read(&format!("/v1/kv/{KEY}?consistent")).await {
        Ok(r) if r.status == 200 => {
            let e = &r.json()[0];
            let v = json!({"session": e["Session"], "lock_index": e["LockIndex"]});
            w.complete(Kind::Ok, "holder", Some(KEY), v, None);
        }
        Ok(r) => w.complete(Kind::Fail, "holder", Some(KEY), Value::Null, Some(r.body)),
        Err(e) => w.complete(Kind::Fail, "holder", Some(KEY), Value::Null, Some(e)),
    }
}

/// One acknowledged acquisition and what followed it.
#[derive(Debug)]
struct Hold<'a> {
    session: String,
    acquire: &'a Op,
    /// `?consistent` read right after.
    holder: Option<&'a Op>,
    /// The release that returned `true`.
    release: Option<&'a Op>,
    /// The destroy that ended it (when no release).
    destroy: Option<&'a Op>,
}

/// Judges the history.
pub fn check(ops: &[Op], anomalies: &mut Vec<usize>) -> Value {
    // Operations per process, in order.
    let mut by_process: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for o in ops {
        by_process.entry(o.process).or_default().push(o);
    }
    let mut holds: Vec<Hold> = Vec::new();
    for list in by_process.values() {
        for (i, o) in list.iter().enumerate() {
            if o.f != "acquire" || o.outcome != Kind::Ok {
                continue;
            }
            let session = o.arg.as_str().unwrap_or_default().to_string();
            let mut h = Hold {
                session,
                acquire: o,
                holder: None,
                release: None,
                destroy: None,
            };
            let mut released_maybe = false;
            for next in &list[i + 1..] {
                match (next.f.as_str(), next.outcome) {
                    ("holder", Kind::Ok) if h.holder.is_none() => h.holder = Some(next),
                    ("release", Kind::Ok) => {
                        h.release = Some(next);
                        break;
                    }
                    ("release", _) => released_maybe = true,
                    ("destroy", Kind::Ok) => {
                        if !released_maybe {
                            h.destroy = Some(next);
                        }
                        break;
                    }
                    ("acquire", _) => break,
                    _ => {}
                }
            }
            holds.push(h);
        }
    }
    let mut errors: Vec<Value> = Vec::new();
    // (1) definite intervals do not overlap.
    let mut definite: Vec<(u64, u64, &Hold)> = holds
        .iter()
        .filter_map(|h| Some((h.acquire.complete?, h.release?.invoke, h)))
        .collect();
    definite.sort_by_key(|d| d.0);
    for (i, a) in definite.iter().enumerate() {
        for b in &definite[i + 1..] {
            if b.0 >= a.1 {
                break;
            }
            if a.2.session != b.2.session {
                anomalies.push(a.2.acquire.index);
                anomalies.push(b.2.acquire.index);
                errors.push(
                    json!({"type": "two holders", "a": a.2.acquire.index, "b": b.2.acquire.index,
                    "a_session": a.2.session, "b_session": b.2.session}),
                );
            }
        }
    }
    // (2) the registry's own view.
    let mut indexes: BTreeMap<u64, &Hold> = BTreeMap::new();
    for h in &holds {
        let Some(r) = h.holder else { continue };
        let named = r.result["session"].as_str().unwrap_or_default();
        let li = r.result["lock_index"].as_u64().unwrap_or(0);
        if named != h.session {
            if h.release.is_some() {
                anomalies.push(r.index);
                errors.push(json!({"type": "other holder during a definite hold", "read": r.index, "holder": named}));
            }
            continue;
        }
        if let Some(prev) = indexes.insert(li, h) {
            anomalies.push(h.acquire.index);
            errors.push(
                json!({"type": "LockIndex shared by two acquisitions", "lock_index": li,
                "a": prev.acquire.index, "b": h.acquire.index}),
            );
        }
    }
    let by_index: Vec<(&u64, &&Hold)> = indexes.iter().collect();
    for (i, (li, a)) in by_index.iter().enumerate() {
        for (lj, b) in &by_index[i + 1..] {
            // b has the larger LockIndex: it must not have been acquired (completed) before a
            // was even requested.
            if b.acquire.complete.is_some_and(|c| c < a.acquire.invoke) {
                anomalies.push(b.acquire.index);
                errors.push(json!({"type": "LockIndex goes backwards in real time",
                    "earlier": b.acquire.index, "earlier_lock_index": lj,
                    "later": a.acquire.index, "later_lock_index": li}));
            }
        }
    }
    // (3) lock-delay after a holder's session was destroyed.
    let delay = LOCK_DELAY_MS * 1_000_000;
    let mut delayed = 0;
    for h in &holds {
        let Some(d) = h.destroy else { continue };
        delayed += 1;
        for other in &holds {
            if other.session == h.session {
                continue;
            }
            let Some(c) = other.acquire.complete else {
                continue;
            };
            // An acquire sent while the destroy was still in flight may be ordered before it
            // on the leader's check (as in Consul); one sent after the destroy was
            // acknowledged must see the delay.
            let Some(done) = d.complete else { continue };
            if other.acquire.invoke > done && c < d.invoke + delay {
                anomalies.push(other.acquire.index);
                errors.push(
                    json!({"type": "acquired within lock-delay", "destroy": d.index,
                    "acquire": other.acquire.index, "after_ms": (c - d.invoke) / 1_000_000}),
                );
            }
        }
    }
    json!({
        "checker": "lock (no two holders; LockIndex unique and increasing; lock-delay)",
        "valid": errors.is_empty(),
        "acquisitions": holds.len(),
        "definite_holds": definite.len(),
        "lock_indexes_seen": indexes.len(),
        "destroyed_while_held": delayed,
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(index: usize, process: u64, f: &str, arg: Value, result: Value, t: (u64, u64)) -> Op {
        Op {
            process,
            f: f.into(),
            key: Some(KEY.into()),
            arg,
            result,
            outcome: Kind::Ok,
            invoke: t.0,
            complete: Some(t.1),
            end: t.1,
            node: 1,
            index,
        }
    }

    fn hold(base: usize, p: u64, s: &str, li: u64, t: u64, len: u64) -> Vec<Op> {
        vec![
            op(base, p, "acquire", json!(s), Value::Null, (t, t + 1)),
            op(
                base + 1,
                p,
                "holder",
                Value::Null,
                json!({"session": s, "lock_index": li}),
                (t + 2, t + 3),
            ),
            op(
                base + 2,
                p,
                "release",
                json!(s),
                Value::Null,
                (t + len, t + len + 1),
            ),
        ]
    }

    #[test]
    fn sequential_holders_are_valid() {
        let mut ops = hold(0, 0, "a", 1, 0, 100);
        ops.extend(hold(10, 1, "b", 2, 200, 100));
        let mut anomalies = Vec::new();
        let v = check(&ops, &mut anomalies);
        assert_eq!(v["valid"], json!(true), "{v}");
        assert!(anomalies.is_empty());
    }

    #[test]
    fn overlapping_holders_are_caught() {
        let mut ops = hold(0, 0, "a", 1, 0, 100);
        ops.extend(hold(10, 1, "b", 2, 50, 100));
        let mut anomalies = Vec::new();
        let v = check(&ops, &mut anomalies);
        assert_eq!(v["valid"], json!(false), "{v}");
        assert!(anomalies.contains(&0) && anomalies.contains(&10));
    }

    #[test]
    fn shared_or_backwards_lock_index_is_caught() {
        let mut ops = hold(0, 0, "a", 5, 0, 100);
        ops.extend(hold(10, 1, "b", 5, 200, 100));
        let v = check(&ops, &mut Vec::new());
        assert_eq!(
            v["errors"][0]["type"],
            json!("LockIndex shared by two acquisitions")
        );
        let mut ops = hold(0, 0, "a", 5, 0, 100);
        ops.extend(hold(10, 1, "b", 3, 200, 100));
        let v = check(&ops, &mut Vec::new());
        assert_eq!(
            v["errors"][0]["type"],
            json!("LockIndex goes backwards in real time")
        );
    }

    #[test]
    fn acquire_within_lock_delay_is_caught() {
        let ms = 1_000_000;
        let mut ops = vec![
            op(0, 0, "acquire", json!("a"), Value::Null, (0, ms)),
            op(1, 0, "destroy", json!("a"), Value::Null, (10 * ms, 20 * ms)),
        ];
        // Sent after the destroy was acknowledged, acknowledged 500 ms later: too early.
        ops.push(op(
            2,
            1,
            "acquire",
            json!("b"),
            Value::Null,
            (30 * ms, 510 * ms),
        ));
        let mut anomalies = Vec::new();
        let v = check(&ops, &mut anomalies);
        assert_eq!(v["valid"], json!(false), "{v}");
        assert_eq!(anomalies, vec![2]);
        // After the delay it is fine.
        ops[2].invoke = 2_100 * ms;
        ops[2].complete = Some(2_200 * ms);
        assert_eq!(check(&ops, &mut Vec::new())["valid"], json!(true));
    }
}
