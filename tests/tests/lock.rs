//! KV locks: `?acquire`/`?release`, `LockIndex` and `Session`, lock-delay, TTL expiry, the Go
//! `api.Lock` and `api.Semaphore` protocols with their exact flags, `registry lock`, and a
//! mutual-exclusion run of 20 contending clients with sessions destroyed and holders killed.
//!
//! The agents here lower the session TTL minimum with `REGISTRY_TEST_SESSION_TTL_MIN`, so
//! that expiry can be observed in seconds. `REGISTRY_LOCK_TEST_SECS` sets the length of the
//! mutual-exclusion run (default 20 s; the full run is 60).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use registry_tests::{eventually, registry_bin, unb64, TestAgent};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `api.LockFlagValue`.
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// `api.SemaphoreFlagValue`.
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;

async fn agent() -> Result<TestAgent> {
    std::env::set_var("REGISTRY_TEST_SESSION_TTL_MIN", "100ms");
    TestAgent::dev().await
}

async fn session(a: &TestAgent, body: Value) -> Result<String> {
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

async fn put_bool(a: &TestAgent, path: &str, body: &str) -> Result<bool> {
    let r = a.put(path, body).await?;
    if r.status != 200 {
        bail!("PUT {path}: {} {:?}", r.status, r.text());
    }
    Ok(r.text().trim() == "true")
}

async fn entry(a: &TestAgent, key: &str) -> Result<Option<Value>> {
    let r = a.get(&format!("/v1/kv/{key}")).await?;
    match r.status {
        404 => Ok(None),
        200 => Ok(Some(r.json()[0].clone())),
        s => bail!("GET {key}: {s} {:?}", r.text()),
    }
}

#[tokio::test]
async fn acquire_release_lock_index_and_session_field() -> Result<()> {
    let a = agent().await?;
    let s1 = session(&a, json!({"Name": "one"})).await?;
    let s2 = session(&a, json!({"Name": "two"})).await?;

    assert!(put_bool(&a, &format!("/v1/kv/svc/leader?acquire={s1}"), "node-1").await?);
    let e = entry(&a, "svc/leader").await?.unwrap();
    assert_eq!(e["Session"], s1.as_str());
    assert_eq!(e["LockIndex"], 1);
    assert_eq!(unb64(e["Value"].as_str().unwrap()), b"node-1");

    // Held: the other session is refused and cannot release it.
    assert!(!put_bool(&a, &format!("/v1/kv/svc/leader?acquire={s2}"), "node-2").await?);
    assert!(!put_bool(&a, &format!("/v1/kv/svc/leader?release={s2}"), "").await?);
    // The holder may re-acquire (update the value) without a new LockIndex.
    assert!(put_bool(&a, &format!("/v1/kv/svc/leader?acquire={s1}"), "node-1b").await?);
    let e = entry(&a, "svc/leader").await?.unwrap();
    assert_eq!(e["LockIndex"], 1);
    assert_eq!(unb64(e["Value"].as_str().unwrap()), b"node-1b");
    // A plain write keeps the lock.
    a.kv_put("svc/leader", "overwritten").await?;
    assert_eq!(
        entry(&a, "svc/leader").await?.unwrap()["Session"],
        s1.as_str()
    );

    // Release: Session disappears (omitempty), LockIndex stays, the value is the body.
    assert!(put_bool(&a, &format!("/v1/kv/svc/leader?release={s1}"), "").await?);
    let e = entry(&a, "svc/leader").await?.unwrap();
    assert!(e.get("Session").is_none(), "{e}");
    assert_eq!(e["LockIndex"], 1);
    assert_eq!(e["Value"], Value::Null);
    // A voluntary release sets no lock-delay: the other session gets it at once.
    assert!(put_bool(&a, &format!("/v1/kv/svc/leader?acquire={s2}"), "node-2").await?);
    assert_eq!(entry(&a, "svc/leader").await?.unwrap()["LockIndex"], 2);
    // ?release on a missing key answers false.
    assert!(!put_bool(&a, &format!("/v1/kv/none?release={s2}"), "").await?);

    // Full-precision flags on an acquire.
    assert!(
        put_bool(
            &a,
            &format!("/v1/kv/flags?acquire={s1}&flags={LOCK_FLAG}"),
            ""
        )
        .await?
    );
    assert_eq!(
        entry(&a, "flags").await?.unwrap()["Flags"].as_u64(),
        Some(LOCK_FLAG)
    );
    Ok(())
}

#[tokio::test]
async fn acquire_errors() -> Result<()> {
    let a = agent().await?;
    let s = session(&a, json!({})).await?;
    let r = a
        .put("/v1/kv/k?acquire=adf4238a-882b-9ddc-4a9d-5b6758e4159e", "")
        .await?;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "invalid session \"adf4238a-882b-9ddc-4a9d-5b6758e4159e\""
    );
    let r = a.put("/v1/kv/k?acquire=", "").await?;
    assert_eq!((r.status, r.text()), (500, "missing session".to_string()));
    let r = a.put(&format!("/v1/kv/k?cas=0&acquire={s}"), "").await?;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        format!("Conflicting flags: acquire={s}&cas=0\n"),
        "Go's url.Values.Encode order"
    );
    let r = a
        .put(&format!("/v1/kv/k?release={s}&acquire={s}"), "")
        .await?;
    assert_eq!(r.status, 400);
    assert!(entry(&a, "k").await?.is_none(), "nothing was written");
    Ok(())
}

#[tokio::test]
async fn lock_delay_after_invalidation() -> Result<()> {
    let a = agent().await?;
    let holder = session(&a, json!({"LockDelay": "1500ms"})).await?;
    let other = session(&a, json!({})).await?;
    assert!(put_bool(&a, &format!("/v1/kv/ld/key?acquire={holder}"), "x").await?);
    let destroyed = Instant::now();
    assert!(put_bool(&a, &format!("/v1/session/destroy/{holder}"), "").await?);
    let e = entry(&a, "ld/key").await?.unwrap();
    assert!(e.get("Session").is_none(), "released on destroy: {e}");
    // Within the lock-delay the key cannot be acquired, by anyone.
    assert!(!put_bool(&a, &format!("/v1/kv/ld/key?acquire={other}"), "y").await?);
    // Nor through a transaction.
    let r = a
        .put_json(
            "/v1/txn",
            &json!([{"KV": {"Verb": "lock", "Key": "ld/key", "Session": other}}]),
        )
        .await?;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"][0]["What"],
        "failed to lock key \"ld/key\" due to lock delay"
    );
    let got = eventually(Duration::from_secs(10), "lock-delay to end", || async {
        Ok(put_bool(&a, &format!("/v1/kv/ld/key?acquire={other}"), "y")
            .await?
            .then(Instant::now))
    })
    .await?;
    let waited = got - destroyed;
    assert!(
        waited >= Duration::from_millis(1400),
        "acquired after {waited:?}, before the 1.5 s lock-delay ended"
    );
    assert_eq!(entry(&a, "ld/key").await?.unwrap()["LockIndex"], 2);

    // Behavior delete removes the key; a zero lock-delay allows immediate re-creation.
    let del = session(&a, json!({"Behavior": "delete", "LockDelay": "0s"})).await?;
    assert!(put_bool(&a, &format!("/v1/kv/ld/eph?acquire={del}"), "x").await?);
    assert!(put_bool(&a, &format!("/v1/session/destroy/{del}"), "").await?);
    assert!(entry(&a, "ld/eph").await?.is_none());
    assert!(put_bool(&a, &format!("/v1/kv/ld/eph?acquire={other}"), "z").await?);
    assert_eq!(entry(&a, "ld/eph").await?.unwrap()["LockIndex"], 1);
    Ok(())
}

#[tokio::test]
async fn ttl_expiry_releases_and_renew_keeps_alive() -> Result<()> {
    let a = agent().await?;
    let s = session(&a, json!({"TTL": "1s", "LockDelay": "0s", "Checks": []})).await?;
    assert!(put_bool(&a, &format!("/v1/kv/ttl/key?acquire={s}"), "x").await?);
    // Renewed every 400 ms, it outlives several TTLs.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        let r = a.put(&format!("/v1/session/renew/{s}"), Vec::new()).await?;
        r.assert_status(200);
        assert_eq!(r.json()[0]["TTL"], "1s");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        a.get_json(&format!("/v1/session/info/{s}")).await?[0]["ID"],
        s.as_str()
    );
    // Left alone it expires after TTL x 2 (the leader's timer), releasing the lock.
    let silent = Instant::now();
    let gone = eventually(Duration::from_secs(10), "session expiry", || async {
        let v = a.get_json(&format!("/v1/session/info/{s}")).await?;
        Ok((v == json!([])).then(Instant::now))
    })
    .await?;
    let lived = gone - silent;
    assert!(
        lived >= Duration::from_millis(1500),
        "expired after {lived:?}: before TTL x 2"
    );
    assert!(entry(&a, "ttl/key")
        .await?
        .unwrap()
        .get("Session")
        .is_none());
    let r = a.put(&format!("/v1/session/renew/{s}"), Vec::new()).await?;
    assert_eq!(r.status, 404);
    Ok(())
}

/// One Go `api.Lock` client: its session and `Lock()`/`Unlock()`/`Destroy()`.
struct GoLock<'a> {
    a: &'a TestAgent,
    key: String,
    session: String,
}

impl<'a> GoLock<'a> {
    async fn new(a: &'a TestAgent, prefix: &str) -> Result<GoLock<'a>> {
        // api.Lock: session "Consul API Lock", TTL 15s, default checks and lock-delay.
        let session = session(a, json!({"Name": "Consul API Lock", "TTL": "15s"})).await?;
        Ok(GoLock {
            a,
            key: format!("{prefix}/.lock"),
            session,
        })
    }

    /// `Lock()`: read, block while held, acquire with `LockFlagValue`.
    async fn lock(&self, value: &str) -> Result<()> {
        let mut index = 0;
        loop {
            let path = if index > 0 {
                format!("/v1/kv/{}?index={index}&wait=15000ms", self.key)
            } else {
                format!("/v1/kv/{}", self.key)
            };
            let r = self.a.get(&path).await?;
            if r.status == 200 {
                let pair = &r.json()[0];
                if pair["Flags"].as_u64() != Some(LOCK_FLAG) {
                    bail!("Existing key does not match lock use");
                }
                if pair.get("Session").is_some() {
                    index = r.index();
                    continue;
                }
            }
            let path = format!(
                "/v1/kv/{}?acquire={}&flags={LOCK_FLAG}",
                self.key, self.session
            );
            if put_bool(self.a, &path, value).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            index = 0;
        }
    }

    async fn unlock(&self) -> Result<bool> {
        let path = format!(
            "/v1/kv/{}?release={}&flags={LOCK_FLAG}",
            self.key, self.session
        );
        put_bool(self.a, &path, "").await
    }

    /// `Destroy()`: delete the lock key with CAS when nobody holds it.
    async fn destroy(&self) -> Result<bool> {
        let Some(pair) = entry(self.a, &self.key).await? else {
            return Ok(true);
        };
        assert_eq!(pair["Flags"].as_u64(), Some(LOCK_FLAG));
        if pair.get("Session").is_some() {
            return Ok(false);
        }
        let r = self
            .a
            .delete(&format!("/v1/kv/{}?cas={}", self.key, pair["ModifyIndex"]))
            .await?;
        Ok(r.text().trim() == "true")
    }
}

#[tokio::test]
async fn go_api_lock_protocol() -> Result<()> {
    let a = agent().await?;
    let l1 = GoLock::new(&a, "service/vault/lock").await?;
    let l2 = GoLock::new(&a, "service/vault/lock").await?;
    l1.lock("active-1").await?;
    let pair = entry(&a, &l1.key).await?.unwrap();
    assert_eq!(pair["Key"], "service/vault/lock/.lock");
    assert_eq!(pair["Flags"].as_u64(), Some(LOCK_FLAG));
    assert_eq!(pair["Flags"].to_string(), "3304740253564472344");
    assert_eq!(pair["Session"], l1.session.as_str());
    assert_eq!(pair["LockIndex"], 1);

    // The second client blocks in Lock() until the first unlocks.
    let (second, released_at) = tokio::join!(
        async {
            l2.lock("active-2").await?;
            Ok::<_, anyhow::Error>(Instant::now())
        },
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = Instant::now();
            assert!(l1.unlock().await.unwrap());
            t
        }
    );
    assert!(second? >= released_at, "acquired only after the release");
    let pair = entry(&a, &l1.key).await?.unwrap();
    assert_eq!(pair["Session"], l2.session.as_str());
    assert_eq!(pair["LockIndex"], 2);
    assert_eq!(unb64(pair["Value"].as_str().unwrap()), b"active-2");
    // monitorLock: a consistent blocking read sees the holder change.
    let idx = a.get(&format!("/v1/kv/{}", l1.key)).await?.index();
    let watch_path = format!("/v1/kv/{}?consistent&index={idx}&wait=10s", l1.key);
    let (watch, _) = tokio::join!(a.get(&watch_path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        l2.unlock().await.unwrap();
    });
    assert!(watch?.json()[0].get("Session").is_none());
    assert!(l1.destroy().await?);
    assert!(entry(&a, &l1.key).await?.is_none());
    // A key written with other flags is not a lock.
    a.kv_put("service/other/.lock", "x").await?;
    let l3 = GoLock::new(&a, "service/other").await?;
    assert_eq!(
        l3.lock("v").await.unwrap_err().to_string(),
        "Existing key does not match lock use"
    );
    Ok(())
}

/// `api.Semaphore`'s holder set.
fn decode_sem(pair: Option<&Value>, limit: u64) -> (u64, BTreeMap<String, bool>) {
    match pair.and_then(|p| p["Value"].as_str()) {
        None => (limit, BTreeMap::new()),
        Some(v) => {
            let l: Value = serde_json::from_slice(&unb64(v)).unwrap();
            (
                l["Limit"].as_u64().unwrap(),
                serde_json::from_value(l["Holders"].clone()).unwrap(),
            )
        }
    }
}

/// `Semaphore.Acquire()`: contender entry, then CAS on the holder set. `Ok(false)` when the
/// semaphore is full and `block` is false.
async fn sem_acquire(
    a: &TestAgent,
    prefix: &str,
    s: &str,
    limit: u64,
    block: bool,
) -> Result<bool> {
    let contender = format!("/v1/kv/{prefix}/{s}?acquire={s}&flags={SEMAPHORE_FLAG}");
    assert!(put_bool(a, &contender, "").await?);
    let mut index = 0;
    loop {
        let path = if index > 0 {
            format!("/v1/kv/{prefix}?recurse&index={index}&wait=15000ms")
        } else {
            format!("/v1/kv/{prefix}?recurse")
        };
        let r = a.get(&path).await?;
        let pairs: Vec<Value> = if r.status == 200 {
            r.json().as_array().unwrap().clone()
        } else {
            Vec::new()
        };
        let key = format!("{prefix}/.lock");
        let lock = pairs.iter().find(|p| p["Key"] == key.as_str());
        if let Some(l) = lock {
            assert_eq!(l["Flags"].as_u64(), Some(SEMAPHORE_FLAG));
        }
        let (l, mut holders) = decode_sem(lock, limit);
        assert_eq!(l, limit);
        // Prune holders whose contender entry (session) is gone.
        holders.retain(|h, _| pairs.iter().any(|p| p["Session"] == h.as_str()));
        if holders.len() as u64 >= limit {
            if !block {
                return Ok(false);
            }
            index = r.index();
            continue;
        }
        holders.insert(s.to_string(), true);
        let body = serde_json::to_string(&json!({"Limit": limit, "Holders": holders}))?;
        let cas = lock.map_or(0, |l| l["ModifyIndex"].as_u64().unwrap());
        let path = format!("/v1/kv/{key}?cas={cas}&flags={SEMAPHORE_FLAG}");
        if put_bool(a, &path, &body).await? {
            return Ok(true);
        }
        index = 0;
    }
}

#[tokio::test]
async fn go_api_semaphore_protocol() -> Result<()> {
    let a = agent().await?;
    let prefix = "service/workers";
    let mut sessions = Vec::new();
    for _ in 0..3 {
        // api.Semaphore: TTL 15s, behavior delete.
        sessions.push(
            session(
                &a,
                json!({"Name": "Consul API Semaphore", "TTL": "15s", "Behavior": "delete"}),
            )
            .await?,
        );
    }
    assert!(sem_acquire(&a, prefix, &sessions[0], 2, false).await?);
    assert!(sem_acquire(&a, prefix, &sessions[1], 2, false).await?);
    assert!(!sem_acquire(&a, prefix, &sessions[2], 2, false).await?);
    let lock = entry(&a, &format!("{prefix}/.lock")).await?.unwrap();
    assert_eq!(lock["Flags"].to_string(), "16210313421097356768");
    let contender = entry(&a, &format!("{prefix}/{}", sessions[0]))
        .await?
        .unwrap();
    assert_eq!(contender["Flags"].as_u64(), Some(SEMAPHORE_FLAG));
    assert_eq!(contender["Session"], sessions[0].as_str());

    // The third blocks until a holder's session dies (its contender entry is deleted).
    let third = sessions[2].clone();
    let (got, _) = tokio::join!(sem_acquire(&a, prefix, &third, 2, true), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        put_bool(&a, &format!("/v1/session/destroy/{}", sessions[0]), "")
            .await
            .unwrap();
    });
    assert!(got?);
    assert!(entry(&a, &format!("{prefix}/{}", sessions[0]))
        .await?
        .is_none());
    let lock = entry(&a, &format!("{prefix}/.lock")).await?.unwrap();
    let (_, holders) = decode_sem(Some(&lock), 2);
    assert!(holders.contains_key(&sessions[2]));
    Ok(())
}

/// A tiny deterministic PRNG (xorshift64*), so the test needs no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One acquisition, as its holder logged it.
#[derive(Debug, Clone)]
struct Held {
    lock_index: u64,
    client: usize,
    session: String,
    /// When the acquire answer (true) arrived.
    acquired: Instant,
    /// When the holder stopped relying on the lock: it sent its release, was killed, or the
    /// chaos monkey sent the destroy of its session, whichever came first.
    end: Option<Instant>,
    how: &'static str,
}

#[derive(Default)]
struct Ledger {
    acquisitions: Vec<Held>,
    /// Position in `acquisitions` of the current holder, for the chaos monkey.
    current: Option<usize>,
}

fn end_at(ledger: &Mutex<Ledger>, pos: usize, at: Instant, how: &'static str) {
    let mut l = ledger.lock().unwrap();
    let h = &mut l.acquisitions[pos];
    if h.end.is_none() {
        h.end = Some(at);
        h.how = how;
    }
    if l.current == Some(pos) {
        l.current = None;
    }
}

/// One contending client: sessions with a 1 s TTL (renewed while alive), acquire, hold,
/// then release or die; sometimes its session is destroyed under it.
async fn contender(
    a: Arc<TestAgent>,
    id: usize,
    until: Instant,
    ledger: Arc<Mutex<Ledger>>,
) -> Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x1000_0001));
    let base = a.base_url();
    let http = a.client().clone();
    while Instant::now() < until {
        let s = session(
            &a,
            json!({"TTL": "1s", "LockDelay": "50ms", "Checks": [],
                                   "Name": format!("contender {id}")}),
        )
        .await?;
        // The renewer stands for the client process: killing the client stops it.
        let (kill_tx, mut kill_rx) = tokio::sync::watch::channel(false);
        let renewer = {
            let (http, base, s) = (http.clone(), base.clone(), s.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {
                            let r = http.put(format!("{base}/v1/session/renew/{s}")).send().await;
                            if matches!(r, Ok(ref r) if r.status() == 404) {
                                return;
                            }
                        }
                        _ = kill_rx.changed() => return,
                    }
                }
            })
        };
        let mut killed = false;
        'session: while Instant::now() < until {
            let r = a
                .put(
                    &format!("/v1/kv/mutex/leader?acquire={s}"),
                    format!("client-{id}"),
                )
                .await?;
            if r.status == 500 && r.text().starts_with("invalid session") {
                break 'session;
            }
            if r.status != 200 {
                bail!("acquire: {} {:?}", r.status, r.text());
            }
            if r.text().trim() != "true" {
                // Held or in lock-delay: wait for a change, as api.Lock does.
                let cur = a.get("/v1/kv/mutex/leader").await?;
                if cur.status == 200 && cur.json()[0].get("Session").is_some() {
                    let idx = cur.index();
                    a.get(&format!("/v1/kv/mutex/leader?index={idx}&wait=2s"))
                        .await?;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
            let acquired = Instant::now();
            // Learn this acquisition's LockIndex before anyone can take the lock away.
            let pair = a.get("/v1/kv/mutex/leader?consistent").await?.json()[0].clone();
            if pair["Session"] != s.as_str() {
                bail!("client {id}: acquired but the key shows {pair}");
            }
            let pos = {
                let mut l = ledger.lock().unwrap();
                l.acquisitions.push(Held {
                    lock_index: pair["LockIndex"].as_u64().unwrap(),
                    client: id,
                    session: s.clone(),
                    acquired,
                    end: None,
                    how: "",
                });
                let pos = l.acquisitions.len() - 1;
                l.current = Some(pos);
                pos
            };
            // Critical section.
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            match rng.below(100) {
                0..=5 => {
                    // Killed: no release, no more renewals; the TTL frees the lock.
                    end_at(&ledger, pos, Instant::now(), "killed");
                    killed = true;
                    break 'session;
                }
                _ => {
                    end_at(&ledger, pos, Instant::now(), "released");
                    let r = a
                        .put(&format!("/v1/kv/mutex/leader?release={s}"), "")
                        .await?;
                    if r.status == 500 && r.text().starts_with("invalid session") {
                        break 'session;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                }
            }
        }
        let _ = kill_tx.send(true);
        let _ = renewer.await;
        if !killed {
            let _ = a.put(&format!("/v1/session/destroy/{s}"), Vec::new()).await;
        }
    }
    Ok(())
}

/// The chaos monkey: destroys the current holder's session now and then.
async fn chaos(a: Arc<TestAgent>, until: Instant, ledger: Arc<Mutex<Ledger>>) -> Result<()> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(400))).await;
        let target = {
            let l = ledger.lock().unwrap();
            l.current.map(|p| (p, l.acquisitions[p].session.clone()))
        };
        if let Some((pos, s)) = target {
            // The holder's claim ends no later than this request.
            end_at(&ledger, pos, Instant::now(), "destroyed");
            a.put(&format!("/v1/session/destroy/{s}"), Vec::new())
                .await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn mutual_exclusion_20_clients_with_chaos() -> Result<()> {
    let secs: u64 = std::env::var("REGISTRY_LOCK_TEST_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let a = Arc::new(agent().await?);
    session(&a, json!({})).await?; // the node is registered
    let until = Instant::now() + Duration::from_secs(secs);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut tasks = Vec::new();
    for id in 0..20 {
        tasks.push(tokio::spawn(contender(
            a.clone(),
            id,
            until,
            ledger.clone(),
        )));
    }
    tasks.push(tokio::spawn(chaos(a.clone(), until, ledger.clone())));
    for t in tasks {
        t.await.context("task panicked")??;
    }

    let mut log = ledger.lock().unwrap().acquisitions.clone();
    log.sort_by_key(|h| h.lock_index);
    assert!(
        log.len() >= 20,
        "too few acquisitions to prove anything: {}",
        log.len()
    );
    let mut by_how: HashMap<&str, usize> = HashMap::new();
    for h in &log {
        *by_how.entry(h.how).or_default() += 1;
    }
    eprintln!(
        "{} acquisitions in {secs}s by {} clients: {by_how:?}",
        log.len(),
        log.iter()
            .map(|h| h.client)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    // Every acquisition of the free lock has its own LockIndex, one after the other.
    for w in log.windows(2) {
        assert_eq!(
            w[1].lock_index,
            w[0].lock_index + 1,
            "LockIndex sequence broken between {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    // No overlap: each holder got the lock only after the previous one stopped relying on it.
    for w in log.windows(2) {
        let (prev, next) = (&w[0], &w[1]);
        let end = prev.end.expect("every acquisition ends");
        assert!(
            next.acquired > end,
            "holders overlapped: {next:?} acquired before {prev:?} ended"
        );
    }
    Ok(())
}

#[tokio::test]
async fn registry_lock_command_serializes_children() -> Result<()> {
    let a = agent().await?;
    session(&a, json!({})).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("events");
    let bin = registry_bin()?;
    let run = |n: usize, limit: u32| {
        let out = out.clone();
        let bin = bin.clone();
        let addr = a.http_addr();
        tokio::process::Command::new(bin)
            .args([
                "lock",
                &format!("-http-addr={addr}"),
                &format!("-n={limit}"),
                "jobs/deploy",
                &format!(
                    "echo start {n} >> {p}; sleep 0.3; echo \"held=$CONSUL_LOCK_HELD\" >> {p}; echo end {n} >> {p}",
                    p = out.display()
                ),
            ])
            .output()
    };
    let (r1, r2, r3) = tokio::join!(run(1, 1), run(2, 1), run(3, 1));
    for r in [r1?, r2?, r3?] {
        assert!(
            r.status.success(),
            "lock failed: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    let text = std::fs::read_to_string(&out)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    for chunk in lines.chunks(3) {
        let n = chunk[0].strip_prefix("start ").unwrap();
        assert_eq!(chunk[1], "held=true");
        assert_eq!(
            chunk[2],
            format!("end {n}"),
            "children interleaved:\n{text}"
        );
    }
    // Cleaned up after the last holder.
    assert!(entry(&a, "jobs/deploy/.lock").await?.is_none());

    // -n 2: a semaphore; two children may overlap, the holder set ends empty.
    std::fs::remove_file(&out)?;
    let (r1, r2) = tokio::join!(run(1, 2), run(2, 2));
    assert!(r1?.status.success() && r2?.status.success());
    assert_eq!(std::fs::read_to_string(&out)?.lines().count(), 6);
    assert!(entry(&a, "jobs/deploy/.lock").await?.is_none());

    // -child-exit-code propagates a failing child as 2.
    let r = tokio::process::Command::new(registry_bin()?)
        .args([
            "lock",
            &format!("-http-addr={}", a.http_addr()),
            "-child-exit-code",
            "jobs/fail",
            "exit 7",
        ])
        .output()
        .await?;
    assert_eq!(r.status.code(), Some(2));
    Ok(())
}
