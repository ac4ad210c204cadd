//! Benchmark, not a test (ignored by default): lock acquire/release round trips per second
//! for one contended lock and for 1,000 independent locks, and throughput of 10-operation
//! transactions. Figures go to stderr; `docs/performance.md` records them.
//!
//! ```text
//! cargo build --release -p registry-agent
//! REGISTRY_BIN=target/release/registry cargo test --release -p registry-tests \
//!     --test lock_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `LOCK_BENCH_SECS` (default 10) sets each measurement's length; `LOCK_BENCH_DISK=1` runs
//! against a persistent single-server agent (fsync'd Raft log) instead of `-dev`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Result};
use registry_tests::{b64, eventually, TestAgent};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn secs() -> u64 {
    std::env::var("LOCK_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

async fn agent() -> Result<(TestAgent, Option<tempfile::TempDir>)> {
    if std::env::var("LOCK_BENCH_DISK").is_ok_and(|v| v == "1") {
        let dir = tempfile::tempdir()?;
        let a = TestAgent::with_data_dir(dir.path().join("data")).await?;
        Ok((a, Some(dir)))
    } else {
        Ok((TestAgent::dev().await?, None))
    }
}

async fn session(a: &TestAgent) -> Result<String> {
    eventually(Duration::from_secs(15), "session create", || async {
        let r = a
            .put_json("/v1/session/create", &json!({"LockDelay": "0s"}))
            .await?;
        Ok((r.status == 200).then(|| r.json()["ID"].as_str().unwrap().to_string()))
    })
    .await
}

async fn put_true(http: &reqwest::Client, url: &str, body: &'static str) -> Result<bool> {
    let r = http.put(url).body(body).send().await?;
    if !r.status().is_success() {
        bail!("PUT {url}: {}", r.status());
    }
    Ok(r.text().await?.trim() == "true")
}

/// Runs `workers` loops of `f` for the configured time; returns completed units per second.
async fn measure<F, Fut>(workers: usize, f: F) -> Result<f64>
where
    F: Fn(usize, Arc<AtomicU64>, Instant) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(secs());
    let tasks: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(f(w, done.clone(), until)))
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark; run explicitly"]
async fn lock_and_txn_throughput() -> Result<()> {
    let (a, _dir) = agent().await?;
    let base = a.base_url();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()?;

    // One contended lock: every worker loops acquire -> release on the same key, blocking on
    // the key while someone else holds it.
    for workers in [1usize, 8, 32] {
        let mut sessions = Vec::new();
        for _ in 0..workers {
            sessions.push(session(&a).await?);
        }
        let attempts = Arc::new(AtomicU64::new(0));
        let rate = {
            let (http, base, sessions, attempts) = (
                http.clone(),
                base.clone(),
                sessions.clone(),
                attempts.clone(),
            );
            measure(workers, move |w, done, until| {
                let (http, base, s, attempts) = (
                    http.clone(),
                    base.clone(),
                    sessions[w].clone(),
                    attempts.clone(),
                );
                async move {
                    let acquire = format!("{base}/v1/kv/bench/contended?acquire={s}");
                    let release = format!("{base}/v1/kv/bench/contended?release={s}");
                    let get = format!("{base}/v1/kv/bench/contended");
                    while Instant::now() < until {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        if put_true(&http, &acquire, "x").await? {
                            put_true(&http, &release, "").await?;
                            done.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        // Held: wait for a change with a blocking read, as api.Lock does.
                        let r = http.get(&get).send().await?;
                        let index = r
                            .headers()
                            .get("X-Consul-Index")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("0")
                            .to_string();
                        let held = r.text().await?.contains("\"Session\"");
                        if held {
                            http.get(format!("{get}?index={index}&wait=1s"))
                                .send()
                                .await?
                                .bytes()
                                .await?;
                        }
                    }
                    Ok(())
                }
            })
            .await?
        };
        eprintln!(
            "contended lock, {workers:>2} clients: {rate:>8.0} acquire+release/s ({:.0} acquire attempts/s)",
            attempts.load(Ordering::Relaxed) as f64 / secs() as f64
        );
    }

    // 1,000 independent locks: 64 workers, each cycling over its own keys.
    let workers = 64;
    let mut sessions = Vec::new();
    for _ in 0..workers {
        sessions.push(session(&a).await?);
    }
    let rate = {
        let (http, base, sessions) = (http.clone(), base.clone(), sessions.clone());
        measure(workers, move |w, done, until| {
            let (http, base, s) = (http.clone(), base.clone(), sessions[w].clone());
            async move {
                // Worker w owns the keys j < 1000 with j % workers == w.
                let mut i = w;
                while Instant::now() < until {
                    let key = format!("bench/locks/{i}");
                    i += workers;
                    if i >= 1000 {
                        i = w;
                    }
                    let acquire = format!("{base}/v1/kv/{key}?acquire={s}");
                    if !put_true(&http, &acquire, "x").await? {
                        bail!("independent lock {key} was held");
                    }
                    put_true(&http, &format!("{base}/v1/kv/{key}?release={s}"), "").await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        })
        .await?
    };
    eprintln!("1,000 independent locks, {workers} clients: {rate:>8.0} acquire+release/s");

    // 10-operation transactions (10 sets on distinct keys), 32 workers.
    let workers = 32;
    let rate = {
        let (http, base) = (http.clone(), base.clone());
        measure(workers, move |w, done, until| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let ops: Vec<Value> = (0..10)
                        .map(|k| {
                            json!({"KV": {"Verb": "set", "Key": format!("bench/txn/{w}/{k}"),
                                          "Value": b64(format!("{n}").as_bytes())}})
                        })
                        .collect();
                    let r = http.put(format!("{base}/v1/txn")).json(&ops).send().await?;
                    if r.status() != 200 {
                        bail!("txn: {}", r.status());
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        })
        .await?
    };
    eprintln!(
        "10-op transactions, {workers} clients: {rate:>8.0} txn/s ({:.0} KV writes/s)",
        rate * 10.0
    );
    Ok(())
}
