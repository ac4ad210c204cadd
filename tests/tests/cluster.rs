//! Multi-server clusters end to end: real `registry` server processes on their own loopback
//! addresses forming clusters, losing servers and leaders, catching up, partitioned, growing
//! and shrinking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use registry_tests::cluster::{
    partition_support, txn_sets, ClusterClient, ClusterOptions, Consistency, TestCluster,
};
use registry_tests::{run_concurrently, unb64, Method};
use serde_json::{json, Value};

/// Whether the suite runs under `scripts/test.sh`, where every dependency is installed and a
/// test that cannot run fails instead of skipping.
fn strict() -> bool {
    std::env::var("REGISTRY_TESTS_STRICT").as_deref() == Ok("1")
}

/// The values of every entry of a `?recurse` listing by key.
fn by_key(entries: &[Value]) -> BTreeMap<String, Value> {
    entries
        .iter()
        .map(|e| (e["Key"].as_str().unwrap_or_default().to_string(), e.clone()))
        .collect()
}

fn value_of(entry: &Value) -> String {
    String::from_utf8_lossy(&unb64(entry["Value"].as_str().unwrap_or_default())).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_started_together_form_exactly_one_cluster_twenty_times() -> Result<()> {
    let reps: usize = std::env::var("REGISTRY_CLUSTER_FORM_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut times = Vec::new();
    for rep in 0..reps {
        let t0 = Instant::now();
        let mut c = TestCluster::start(3)
            .await
            .with_context(|| format!("repetition {rep}: forming the cluster"))?;
        let formed = t0.elapsed();
        let all = [0, 1, 2];
        let leader = c.leader().await?;
        // All three name the same leader (checked by `leader`) and the same three voters: a
        // server in a cluster of its own, or two clusters, would show other peers.
        let want = c.raft_addrs(&all);
        c.wait_for_peers(&all, &want, Duration::from_secs(10))
            .await
            .with_context(|| format!("repetition {rep}"))?;
        // One replicated state: a write through each server is visible through each.
        for i in all {
            c.kv_put(i, &format!("form/{i}"), format!("rep{rep}-via{i}"))
                .await?;
        }
        for i in all {
            let got = c.kv_list(i, "form/", Consistency::Consistent).await?;
            assert_eq!(
                got.len(),
                3,
                "repetition {rep}: server {i} (leader {leader}) sees {got:?}"
            );
            let stale = c.kv_list(i, "form/", Consistency::Stale).await?;
            assert_eq!(stale.len(), 3, "repetition {rep}: server {i} stale");
        }
        for i in all {
            assert_eq!(c.status_leader(i).await?, c.server(leader).raft_addr());
        }
        times.push(formed);
        c.finish();
    }
    let max = times.iter().max().copied().unwrap_or_default();
    let total: Duration = times.iter().sum();
    eprintln!(
        "{reps} clusters formed; leader agreed after {:?} on average, {max:?} at most",
        total / u32::try_from(reps.max(1)).unwrap_or(1)
    );
    Ok(())
}

/// What became of one write attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 200 `true`.
    Acked,
    /// 500 `No cluster leader`: refused before anything was proposed.
    NoLeader,
    /// Anything else (an error, a timeout, another status): it may or may not have applied.
    Unknown(String),
}

#[derive(Debug, Clone)]
struct Attempt {
    key: String,
    value: String,
    server: usize,
    started: Instant,
    finished: Instant,
    outcome: Outcome,
}

/// Writers that keep writing unique keys (`prefix/w<writer>/<seq>`, value unique too) through
/// the servers `targets(writer, seq)` picks until stopped; every attempt is recorded.
struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl Writers {
    fn start(
        api: ClusterClient,
        prefix: &str,
        writers: usize,
        timeout: Duration,
        targets: Arc<dyn Fn(usize, usize) -> usize + Send + Sync>,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..writers)
            .map(|w| {
                let api = api.clone();
                let stop = Arc::clone(&stop);
                let prefix = prefix.to_string();
                let targets = Arc::clone(&targets);
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    let mut seq = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let server = targets(w, seq);
                        let key = format!("{prefix}/w{w}/{seq:06}");
                        let value = format!("{prefix}-w{w}-s{seq}-via{server}");
                        let started = Instant::now();
                        let r = api
                            .request_timeout(
                                server,
                                Method::PUT,
                                &format!("/v1/kv/{key}"),
                                Some(value.clone().into_bytes()),
                                timeout,
                            )
                            .await;
                        let outcome = match r {
                            Ok(r) if r.status == 200 && r.text().trim() == "true" => Outcome::Acked,
                            Ok(r) if r.status == 500 && r.text().trim() == "No cluster leader" => {
                                Outcome::NoLeader
                            }
                            Ok(r) => Outcome::Unknown(format!("{} {:?}", r.status, r.text())),
                            Err(e) => Outcome::Unknown(format!("{e:#}")),
                        };
                        let failed = outcome != Outcome::Acked;
                        done.push(Attempt {
                            key,
                            value,
                            server,
                            started,
                            finished: Instant::now(),
                            outcome,
                        });
                        seq += 1;
                        if failed {
                            // A dead server refuses at once: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    done
                })
            })
            .collect();
        Writers { stop, tasks }
    }

    async fn stop(self) -> Result<Vec<Attempt>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await?);
        }
        Ok(all)
    }
}

fn acked_after(attempts: &[Attempt], t: Instant) -> usize {
    attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Acked && a.started >= t)
        .count()
}

/// Checks the attempts against the entries under their prefix: every acknowledged write is
/// there with its value, no write was applied twice (CreateIndex == ModifyIndex: every key is
/// written once), no write refused with "No cluster leader" was applied, and nothing else is
/// there.
fn check_attempts(attempts: &[Attempt], entries: &[Value]) {
    let stored = by_key(entries);
    let tried: BTreeMap<&str, &Attempt> = attempts.iter().map(|a| (a.key.as_str(), a)).collect();
    let mut lost = Vec::new();
    for a in attempts.iter().filter(|a| a.outcome == Outcome::Acked) {
        match stored.get(&a.key) {
            Some(e) if value_of(e) == a.value => {}
            Some(e) => lost.push(format!(
                "{} holds {:?}, not {:?}",
                a.key,
                value_of(e),
                a.value
            )),
            None => lost.push(format!("{} (acknowledged by server {})", a.key, a.server)),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    for (key, e) in &stored {
        let Some(a) = tried.get(key.as_str()) else {
            panic!("{key} is stored but was never written: {e}");
        };
        assert_eq!(value_of(e), a.value, "{key}: value");
        assert_eq!(
            e["CreateIndex"], e["ModifyIndex"],
            "{key} was applied more than once (attempt {a:?}): {e}"
        );
        assert_ne!(
            a.outcome,
            Outcome::NoLeader,
            "{key} was refused with \"No cluster leader\" but applied: {a:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let leader = c.leader().await?;

    // A few hundred keys through all three servers, acknowledged before the kill.
    let api = c.api();
    run_concurrently(300, 16, |n| {
        let api = api.clone();
        async move {
            api.kv_put(n % 3, &format!("pre/{n:04}"), format!("pre-value-{n}"))
                .await
        }
    })
    .await?;

    // Writers through every server (the leader too) while it dies.
    let writers = Writers::start(
        c.api(),
        "during",
        6,
        Duration::from_secs(15),
        Arc::new(|w, seq| (w + seq) % 3),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    c.kill9(leader);
    let survivors = c.followers(leader);
    let new_leader = c
        .wait_for_leader_among(&survivors, Duration::from_secs(10))
        .await
        .context("no new leader within 10 s of the kill")?;
    let elected_after = killed_at.elapsed();
    assert!(elected_after < Duration::from_secs(10));
    let elected_at = Instant::now();
    // Writes continue through the survivors.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = writers.stop().await?;
    let after = acked_after(&attempts, elected_at);
    assert!(
        after > 0,
        "no write acknowledged after the new leader was elected: {:?}",
        attempts.iter().rev().take(10).collect::<Vec<_>>()
    );
    eprintln!(
        "new leader {new_leader} after {elected_after:?}; {} attempts, {} acknowledged, {after} \
         after the election",
        attempts.len(),
        attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Acked)
            .count()
    );

    // Everything acknowledged before the kill is there, through either survivor.
    for &i in &survivors {
        let pre = by_key(&c.kv_list(i, "pre/", Consistency::Consistent).await?);
        assert_eq!(pre.len(), 300, "server {i}: pre-kill keys");
        for n in 0..300 {
            let e = &pre[&format!("pre/{n:04}")];
            assert_eq!(value_of(e), format!("pre-value-{n}"));
        }
    }
    let during = c
        .kv_list(survivors[0], "during/", Consistency::Consistent)
        .await?;
    check_attempts(&attempts, &during);
    for &i in &survivors {
        c.kv_put(i, &format!("post/{i}"), "after").await?;
    }

    // The old leader comes back as a follower and catches up.
    c.restart(leader).await?;
    c.wait_for_leader(Duration::from_secs(20)).await?;
    registry_tests::eventually(
        Duration::from_secs(20),
        "the restarted server to catch up",
        || {
            let api = c.api();
            let key = format!("post/{}", survivors[1]);
            async move { api.kv_get(leader, &key, Consistency::Stale).await }
        },
    )
    .await?;
    c.finish();
    Ok(())
}

/// The highest log index openraft says it purged up to (`purge_upto=Some(T1-N42-128)`).
fn max_purged_index(log: &str) -> u64 {
    log.match_indices("purge_upto=Some(")
        .filter_map(|(at, m)| {
            let rest = &log[at + m.len()..];
            let id = &rest[..rest.find(')')?];
            id.rsplit('-').next()?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_after_fifty_thousand_writes_catches_up_by_snapshot() -> Result<()> {
    const KEYS: usize = 50_000;
    const PER_TXN: usize = 64;
    let opts = ClusterOptions::new(3)
        .hcl("raft_snapshot_threshold = 64")
        .hcl("raft_trailing_logs = 16");
    let mut c = TestCluster::start_with(opts).await?;
    let leader = c.leader().await?;
    let follower = c.followers(leader)[0];
    let live: Vec<usize> = c.running().into_iter().filter(|i| *i != follower).collect();
    c.kv_put(leader, "first", "before the stop").await?;
    c.stop(follower);

    let t0 = Instant::now();
    let api = c.api();
    let batches = KEYS.div_ceil(PER_TXN);
    let live2 = live.clone();
    run_concurrently(batches, 12, move |b| {
        let api = api.clone();
        let server = live2[b % live2.len()];
        async move {
            let keys: Vec<(String, Vec<u8>)> = (b * PER_TXN..((b + 1) * PER_TXN).min(KEYS))
                .map(|n| (format!("bulk/{n:05}"), format!("value-{n}").into_bytes()))
                .collect();
            let body = txn_sets(keys.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            let r = api
                .request(
                    server,
                    Method::PUT,
                    "/v1/txn",
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            if r.status != 200 {
                bail!("txn {b} via {server}: {} {:?}", r.status, r.text());
            }
            Ok(())
        }
    })
    .await?;
    for n in 0..10 {
        c.kv_put(
            live[n % live.len()],
            &format!("last/{n}"),
            format!("last-{n}"),
        )
        .await?;
    }
    eprintln!("{KEYS} keys written in {:?}", t0.elapsed());
    // The leader compacted its log past what the stopped follower has (a few entries): it
    // built a snapshot and purged the log before it (openraft logs `purge_upto`).
    registry_tests::eventually(
        Duration::from_secs(30),
        "the leader to build a snapshot and purge its log",
        || {
            let log = c.server(leader).log();
            async move {
                let purged = max_purged_index(&log);
                Ok((log.contains("built snapshot") && purged >= 64).then_some(purged))
            }
        },
    )
    .await?;
    let restarted_at = Instant::now();
    c.restart(follower).await?;
    let want = c.get(leader, "/v1/kv/last/?recurse").await?;
    want.assert_status(200);
    let want_index = want.index();
    let want_body = want.json();
    registry_tests::eventually(
        Duration::from_secs(60),
        "the restarted follower to serve the last writes",
        || {
            let api = c.api();
            let want_body = want_body.clone();
            async move {
                let r = api.get(follower, "/v1/kv/last/?recurse&stale").await?;
                Ok(
                    (r.status == 200 && r.index() == want_index && r.json() == want_body)
                        .then_some(()),
                )
            }
        },
    )
    .await?;
    eprintln!(
        "follower caught up {:?} after its restart",
        restarted_at.elapsed()
    );

    let on_follower = c
        .get(follower, "/v1/kv/bulk/?keys&stale")
        .await?
        .assert_status(200)
        .clone();
    let on_leader = c.get(leader, "/v1/kv/bulk/?keys").await?;
    assert_eq!(on_follower.index(), on_leader.index(), "X-Consul-Index");
    let keys = on_follower.json();
    assert_eq!(keys.as_array().map(Vec::len), Some(KEYS));
    assert_eq!(keys, on_leader.json());
    for n in [0, 1, 4_999, 25_000, KEYS - 1] {
        let v = c
            .kv_get(follower, &format!("bulk/{n:05}"), Consistency::Stale)
            .await?;
        assert_eq!(v, Some(format!("value-{n}").into_bytes()), "bulk/{n:05}");
    }
    assert_eq!(
        c.kv_get(follower, "first", Consistency::Stale).await?,
        Some(b"before the stop".to_vec())
    );
    // It came back by installing the leader's snapshot (its second run's log says so).
    let log = c.server(follower).log();
    let second_run = log.rsplit("=== harness:").next().unwrap_or_default();
    assert!(
        second_run.contains("installed snapshot"),
        "the restarted follower did not install a snapshot; its log:\n{}",
        c.server(follower).log_tail(60)
    );
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_servers_survive_two_down_and_refuse_writes_with_three_down() -> Result<()> {
    let mut c = TestCluster::start(5).await?;
    let leader = c.leader().await?;
    let followers = c.followers(leader);
    c.kv_put(followers[0], "five/before", "1").await?;

    // Two down, the leader among them.
    c.kill9(leader);
    c.kill9(followers[0]);
    let three: Vec<usize> = followers[1..].to_vec();
    let leader2 = c
        .wait_for_leader_among(&three, Duration::from_secs(15))
        .await?;
    for &i in &three {
        c.kv_put(i, &format!("five/two-down/{i}"), "2").await?;
    }
    assert_eq!(
        c.kv_list(three[0], "five/", Consistency::Consistent)
            .await?
            .len(),
        4
    );

    // Three down: no quorum.
    c.kill9(leader2);
    let two: Vec<usize> = three.iter().copied().filter(|i| *i != leader2).collect();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for &i in &two {
        let api = c.api();
        tasks.push(tokio::spawn(async move {
            let (w, r) = tokio::join!(
                api.put(i, "/v1/kv/five/three-down", "3"),
                api.get(i, "/v1/kv/five/before")
            );
            (i, w, r, t0.elapsed())
        }));
    }
    for t in tasks {
        let (i, w, r, took) = t.await?;
        let w = w?;
        assert_eq!(
            (w.status, w.text().trim()),
            (500, "No cluster leader"),
            "write through server {i}"
        );
        let r = r?;
        assert_eq!(
            (r.status, r.text().trim()),
            (500, "No cluster leader"),
            "default read through server {i}"
        );
        assert!(took < Duration::from_secs(20), "server {i} took {took:?}");
    }
    eprintln!(
        "writes and reads refused after {:?} without a quorum",
        t0.elapsed()
    );
    // Stale reads are still served, from each survivor's own state.
    for &i in &two {
        let r = c.get(i, "/v1/kv/five/?recurse&stale").await?;
        r.assert_status(200);
        let keys: BTreeSet<String> = by_key(&r.json().as_array().cloned().unwrap_or_default())
            .into_keys()
            .collect();
        assert!(keys.contains("five/before"), "server {i}: {keys:?}");
        assert!(
            !keys.contains("five/three-down"),
            "server {i} applied a refused write"
        );
        // Without a quorum there is no leader, but a server keeps naming the dead one until
        // it starts an election of its own, so KnownLeader may still say "true" here.
        let known = r.header("X-Consul-KnownLeader");
        assert!(
            matches!(known.as_deref(), Some("true" | "false")),
            "server {i}: X-Consul-KnownLeader {known:?}"
        );
        let contact: u64 = r
            .header("X-Consul-LastContact")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("server {i}: X-Consul-LastContact missing"));
        assert!(
            contact >= 5_000,
            "server {i}: X-Consul-LastContact {contact} ms, but the last leader died 7 s ago"
        );
        eprintln!("server {i}: stale read served, KnownLeader {known:?}, LastContact {contact} ms");
    }
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_acknowledging_and_the_majority_moves_on() -> Result<()> {
    if let Err(e) = partition_support() {
        if strict() {
            bail!("network partitions need iptables with the cgroup match: {e:#}");
        }
        eprintln!("SKIPPED: network partitions need iptables with the cgroup match: {e:#}");
        return Ok(());
    }
    // Autopilot would remove the cut-off server after 30 s; this test is about Raft and the
    // write path, so it keeps every server in the configuration.
    let opts = ClusterOptions::new(3)
        .partitionable()
        .hcl("autopilot { cleanup_dead_servers = false }");
    let mut c = TestCluster::start_with(opts).await?;
    let old = c.leader().await?;
    let majority = c.followers(old);

    // Six writers, two through each server; requests give up after 12 s.
    let writers = Writers::start(
        c.api(),
        "part",
        6,
        Duration::from_secs(12),
        Arc::new(|w, _| w % 3),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_at = Instant::now();
    c.partition(&[old])?;
    // Writes sent from here on meet the rules.
    let cut_done = Instant::now();
    eprintln!("partition rules in place in {:?}", cut_done - cut_at);

    let new = c
        .wait_for_leader_among(&majority, Duration::from_secs(15))
        .await
        .context("the majority elected no leader")?;
    let elected_after = cut_at.elapsed();
    eprintln!("majority elected server {new} {elected_after:?} after the cut");

    // One write through the new leader and one through the old, at once: the first is
    // acknowledged, the second is not (refused, or still unanswered after 12 s).
    let api = c.api();
    let to_new = tokio::spawn({
        let api = api.clone();
        async move {
            let t = Instant::now();
            let r = api
                .request_timeout(
                    new,
                    Method::PUT,
                    "/v1/kv/part-direct/majority",
                    Some(b"yes".to_vec()),
                    Duration::from_secs(45),
                )
                .await;
            (r, t.elapsed())
        }
    });
    let to_old = tokio::spawn(async move {
        let t = Instant::now();
        let r = api
            .request_timeout(
                old,
                Method::PUT,
                "/v1/kv/part-direct/minority",
                Some(b"no".to_vec()),
                Duration::from_secs(12),
            )
            .await;
        (r, t.elapsed())
    });
    let (r_new, took_new) = to_new.await?;
    let (r_old, took_old) = to_old.await?;
    let describe = |r: &Result<registry_tests::Resp>| match r {
        Ok(r) => format!("{} {:?}", r.status, r.text()),
        Err(e) => format!("error: {e:#}"),
    };
    eprintln!(
        "through the new leader: {} after {took_new:?}; through the old leader: {} after \
         {took_old:?}",
        describe(&r_new),
        describe(&r_old)
    );
    let r_new = r_new.context("write through the new leader")?;
    assert_eq!(
        (r_new.status, r_new.text().trim()),
        (200, "true"),
        "write through the new leader"
    );
    if let Ok(r) = &r_old {
        assert_ne!(
            r.status,
            200,
            "the partitioned old leader acknowledged a write: {:?}",
            r.text()
        );
    }
    let healed_at = Instant::now();
    c.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = writers.stop().await?;
    let settled = c.wait_for_leader(Duration::from_secs(20)).await?;
    eprintln!(
        "healed {:?} after the cut; leader now server {settled}",
        healed_at.duration_since(cut_at)
    );

    // The old leader acknowledged nothing it received once cut off past its lease (0.9 s,
    // plus slack for the request to reach it).
    let late: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            a.server == old
                && a.outcome == Outcome::Acked
                && a.started > cut_done + Duration::from_millis(1500)
                && a.finished < healed_at
        })
        .collect();
    assert!(
        late.is_empty(),
        "the partitioned old leader acknowledged writes: {late:?}"
    );
    let mut summary = BTreeMap::new();
    for a in &attempts {
        let phase = if a.started < cut_at {
            "before"
        } else if a.started < healed_at {
            "cut"
        } else {
            "healed"
        };
        let outcome = match &a.outcome {
            Outcome::Acked => "acked",
            Outcome::NoLeader => "no-leader",
            Outcome::Unknown(_) => "unknown",
        };
        let e = summary
            .entry((a.server, phase, outcome))
            .or_insert((0usize, Duration::ZERO));
        e.0 += 1;
        e.1 = e.1.max(a.finished.duration_since(a.started));
    }
    eprintln!("attempts by (server, phase, outcome): (count, slowest)");
    for (k, v) in &summary {
        eprintln!("  {k:?}: {v:?}");
    }
    let majority_acks = attempts
        .iter()
        .filter(|a| a.server != old && a.outcome == Outcome::Acked && a.started > cut_at)
        .count();
    assert!(majority_acks > 0, "the majority acknowledged no write");

    // After healing every server agrees, nothing acknowledged is lost, nothing doubled.
    for i in 0..3 {
        let entries = c.kv_list(i, "part/", Consistency::Consistent).await?;
        check_attempts(&attempts, &entries);
    }
    let direct = by_key(
        &c.kv_list(settled, "part-direct/", Consistency::Consistent)
            .await?,
    );
    assert!(direct.contains_key("part-direct/majority"));
    if let Ok(r) = &r_old {
        if r.status == 500 && r.text().trim() == "No cluster leader" {
            assert!(!direct.contains_key("part-direct/minority"));
        }
    }
    // And writes go on through every server.
    for i in 0..3 {
        c.kv_put(i, &format!("part-after/{i}"), "ok").await?;
    }
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_server_becomes_a_learner_then_a_voter_and_a_follower_leaves() -> Result<()> {
    let mut opts = ClusterOptions::new(3);
    opts = opts.hcl(r#"autopilot { server_stabilization_time = "1s" }"#);
    let mut c = match TestCluster::start_with(opts).await {
        Ok(c) => c,
        // Before autopilot's configuration is accepted, run without it.
        Err(e) if format!("{e:#}").contains("autopilot") => TestCluster::start(3).await?,
        Err(e) => return Err(e),
    };
    let leader = c.leader().await?;
    let three = c.raft_addrs(&[0, 1, 2]);
    c.kv_put(leader, "jl/before", "1").await?;

    let fourth = c.add_server().await?;
    let http = c.server(fourth).http_addr().to_string();
    let target = c.server(leader).ip.to_string();
    let (ok, out, err) = c.cli(&["join", &format!("-http-addr={http}"), &target])?;
    assert!(ok, "registry join failed: {out} {err}");
    let fourth_raft = c.server(fourth).raft_addr();

    // It follows the cluster: same leader, replicated state.
    c.wait_for_leader(Duration::from_secs(20)).await?;
    registry_tests::eventually(
        Duration::from_secs(20),
        "the new server to replicate",
        || {
            let api = c.api();
            async move { api.kv_get(fourth, "jl/before", Consistency::Stale).await }
        },
    )
    .await?;

    let autopilot = c
        .get(leader, "/v1/operator/autopilot/configuration")
        .await?;
    let four: Vec<String> = c.raft_addrs(&[0, 1, 2, fourth]);
    if autopilot.status == 200 {
        let stabilization = autopilot.json()["ServerStabilizationTime"].clone();
        eprintln!("autopilot present (ServerStabilizationTime {stabilization}); waiting for the promotion");
        c.wait_for_peers(&[0, 1, 2, fourth], &four, Duration::from_secs(30))
            .await
            .context("autopilot did not promote the new server to voter")?;
    } else {
        // No autopilot: it stays a learner, outside the voters.
        eprintln!(
            "no autopilot endpoint ({}): checking the new server stays a learner",
            autopilot.status
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in [0, 1, 2, fourth] {
            let peers = c.status_peers(i).await?;
            assert_eq!(peers, three, "server {i}: voters");
            assert!(!peers.contains(&fourth_raft));
        }
    }
    let config = c.get(leader, "/v1/operator/raft/configuration").await?;
    if config.status == 200 {
        let servers = config.json()["Servers"].clone();
        let entry = servers
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["Address"].as_str() == Some(fourth_raft.as_str()))
            })
            .cloned()
            .unwrap_or(Value::Null);
        assert_ne!(entry, Value::Null, "raft configuration: {servers}");
        assert_eq!(entry["Voter"], json!(autopilot.status == 200), "{entry}");
    }

    // A follower leaves: the voters shrink to the rest, writes continue.
    let leaver = c
        .followers(leader)
        .into_iter()
        .find(|i| *i != fourth)
        .unwrap();
    let leaver_http = c.server(leaver).http_addr().to_string();
    let (ok, out, err) = c.cli(&["leave", &format!("-http-addr={leaver_http}")])?;
    assert!(ok, "registry leave failed: {out} {err}");
    c.wait_exit(leaver, Duration::from_secs(20)).await?;
    let rest: Vec<usize> = if autopilot.status == 200 {
        [0, 1, 2, fourth]
            .into_iter()
            .filter(|i| *i != leaver)
            .collect()
    } else {
        [0, 1, 2].into_iter().filter(|i| *i != leaver).collect()
    };
    let rest_addrs = c.raft_addrs(&rest);
    let alive: Vec<usize> = c.running();
    c.wait_for_peers(&alive, &rest_addrs, Duration::from_secs(20))
        .await?;
    for &i in &alive {
        c.kv_put(i, &format!("jl/after/{i}"), "2").await?;
    }
    let after = c
        .kv_list(alive[0], "jl/after/", Consistency::Consistent)
        .await?;
    assert_eq!(after.len(), alive.len());
    c.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autopilot_state_of_three_servers_through_any_of_them() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let follower = c.followers(leader)[0];
    let names: BTreeSet<String> = (0..3).map(|i| c.server(i).node.clone()).collect();
    let addrs: BTreeSet<String> = c.raft_addrs(&[0, 1, 2]).into_iter().collect();

    // Right after the election a follower may not yet be within LastContactThreshold.
    let mut states = Vec::new();
    for i in [follower, leader] {
        let api = c.api();
        let state = registry_tests::eventually(
            Duration::from_secs(20),
            "a healthy autopilot state",
            || {
                let api = api.clone();
                async move {
                    let v = api.get_json(i, "/v1/operator/autopilot/state").await?;
                    Ok((v["Healthy"] == json!(true)).then_some(v))
                }
            },
        )
        .await
        .with_context(|| format!("asking server {i}"))?;
        states.push(state);
    }
    for v in &states {
        assert_eq!(v["FailureTolerance"], json!(1), "{v}");
        assert_eq!(v["OptimisticFailureTolerance"], json!(1), "{v}");
        let voters: Vec<String> = v["Voters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        assert_eq!(voters.len(), 3, "{v}");
        let servers = v["Servers"].as_object().unwrap();
        assert_eq!(
            servers.keys().cloned().collect::<BTreeSet<_>>(),
            voters.iter().cloned().collect::<BTreeSet<_>>(),
            "{v}"
        );
        let lead = v["Leader"].as_str().unwrap();
        assert_eq!(voters[0], lead, "the leader comes first: {v}");
        assert_eq!(
            servers[lead]["Address"],
            json!(c.server(leader).raft_addr()),
            "{v}"
        );
        for (id, s) in servers {
            assert_eq!(s["ID"], json!(id));
            assert_eq!(s["Healthy"], json!(true), "{s}");
            assert_eq!(s["NodeStatus"], json!("alive"), "{s}");
            assert_eq!(s["NodeType"], json!("voter"), "{s}");
            assert_eq!(s["ReadReplica"], json!(false), "{s}");
            let status = if id == lead { "leader" } else { "voter" };
            assert_eq!(s["Status"], json!(status), "{s}");
            assert!(s["LastTerm"].as_u64().unwrap() >= 1, "{s}");
            assert!(s["LastIndex"].as_u64().unwrap() > 0, "{s}");
        }
        let got_names: BTreeSet<String> = servers
            .values()
            .map(|s| s["Name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got_names, names);
        let got_addrs: BTreeSet<String> = servers
            .values()
            .map(|s| s["Address"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got_addrs, addrs);
    }
    // The follower forwarded to the leader: both answers name the same leader and voters.
    assert_eq!(states[0]["Leader"], states[1]["Leader"]);
    assert_eq!(states[0]["Voters"], states[1]["Voters"]);

    // The CLI through a follower.
    let http = format!("-http-addr={}", c.server(follower).http_addr());
    let (ok, out, err) = c.cli(&["operator", "autopilot", "state", &http, "-format=json"])?;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["Leader"], states[1]["Leader"]);
    assert_eq!(v["Voters"].as_array().map(Vec::len), Some(3));
    let (ok, out, err) = c.cli(&["operator", "autopilot", "state", &http])?;
    assert!(ok, "{err}");
    let lead = states[1]["Leader"].as_str().unwrap();
    assert!(
        out.contains(&format!(
            "Leader:                       {lead}\nVoters:\n   {lead}\n"
        )),
        "{out}"
    );
    assert_eq!(
        out.matches("      Status:          voter\n").count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.matches("      Status:          leader\n").count(),
        1,
        "{out}"
    );
    c.finish();
    Ok(())
}

/// The catalog and KV entries a snapshot must carry over, indexes included.
async fn state_of(c: &TestCluster, i: usize, q: &str) -> Result<Value> {
    let kv = c.get_json(i, &format!("/v1/kv/?recurse&{q}")).await?;
    let mut nodes = BTreeMap::new();
    for n in 0..20 {
        let name = format!("snap-node-{n}");
        nodes.insert(
            name.clone(),
            c.get_json(i, &format!("/v1/catalog/node/{name}?{q}"))
                .await?,
        );
    }
    let web = c
        .get_json(i, &format!("/v1/catalog/service/snap-web?{q}"))
        .await?;
    let health = c
        .get_json(i, &format!("/v1/health/service/snap-web?{q}"))
        .await?;
    Ok(json!({"kv": kv, "nodes": nodes, "web": web, "health": health}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_on_one_cluster_restores_on_a_fresh_one() -> Result<()> {
    let mut a = TestCluster::start(3).await?;
    let la = a.leader().await?;
    let probe = a.get(la, "/v1/snapshot").await?;
    if probe.status == 404 || probe.status == 405 {
        // Under REGISTRY_TESTS_STRICT (CI) a missing endpoint fails the test.
        registry_tests::skip_or_fail(&format!(
            "this build has no /v1/snapshot endpoint ({} {:?})",
            probe.status,
            probe.text()
        ));
        a.finish();
        return Ok(());
    }
    for n in 0..20 {
        let follower = (la + 1 + n) % 3;
        let body = json!({
            "Node": format!("snap-node-{n}"),
            "Address": format!("10.1.0.{n}"),
            "Service": {"ID": format!("snap-web-{n}"), "Service": "snap-web", "Port": 8000 + n, "Tags": ["v1"]},
            "Check": {"CheckID": format!("snap-web-{n}-chk"), "Name": "web", "Status": "passing", "ServiceID": format!("snap-web-{n}")},
        });
        let r = a
            .put(follower, "/v1/catalog/register", serde_json::to_vec(&body)?)
            .await?;
        r.assert_status(200);
    }
    for n in 0..200 {
        a.kv_put(n % 3, &format!("snap/k{n:03}"), format!("v{n}"))
            .await?;
    }
    a.kv_put(la, "snap/k000", "overwritten").await?;
    let saved = a.get(la, "/v1/snapshot").await?;
    saved.assert_status(200);
    let before = state_of(&a, la, "consistent").await?;
    let index_a = saved.index();

    let mut b = TestCluster::start(3).await?;
    let lb = b.leader().await?;
    let fb = b.followers(lb)[0];
    // Through a follower: the restore is forwarded to the leader.
    let r = b.put(fb, "/v1/snapshot", saved.body.clone()).await?;
    r.assert_status(200);
    b.wait_for_leader(Duration::from_secs(20)).await?;
    for i in 0..3 {
        let after = registry_tests::eventually(
            Duration::from_secs(20),
            "the restored state on every server",
            || {
                let b = &b;
                let want = before.clone();
                async move {
                    // A stale read on each server: every server holds the restored state.
                    let got = state_of(b, i, "stale").await?;
                    Ok((got == want).then_some(got))
                }
            },
        )
        .await;
        if let Err(e) = after {
            let got = state_of(&b, i, "stale").await?;
            panic!("server {i} after restore differs: {e:#}\nwant {before}\ngot {got}");
        }
    }
    let kv_b = b.get(lb, "/v1/kv/snap/?recurse").await?;
    let kv_a = a.get(la, "/v1/kv/snap/?recurse").await?;
    assert_eq!(
        kv_b.index(),
        kv_a.index(),
        "X-Consul-Index of the KV listing"
    );
    assert!(index_a > 0);
    // The restored cluster goes on writing above the restored indexes.
    b.kv_put(lb, "snap/after", "x").await?;
    let after = b.get(lb, "/v1/kv/snap/after").await?;
    assert!(after.index() > kv_a.index());
    a.finish();
    b.finish();
    Ok(())
}

/// A restore is one Raft log entry, larger than the 4 MiB an AppendEntries otherwise carries:
/// one of 5 MB takes longer to send, decode and sync than openraft waits for an AppendEntries
/// (150 ms, in a debug build), and must still reach every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_restore_reaches_every_server() -> Result<()> {
    const VALUES: usize = 80;
    let mut c = TestCluster::start(3).await?;
    let l = c.leader().await?;
    let value = |n: usize| -> Vec<u8> {
        let mut v = format!("value {n} ").into_bytes();
        v.resize(64 * 1024, b'a' + (n % 26) as u8);
        v
    };
    for n in 0..VALUES {
        c.kv_put(l, &format!("big/k{n:03}"), value(n)).await?;
    }
    let saved = c
        .request_timeout(
            l,
            Method::GET,
            "/v1/snapshot",
            None,
            Duration::from_secs(120),
        )
        .await?;
    saved.assert_status(200);
    // Changed after the save: the restore takes these back.
    c.kv_put(l, "big/k000", "changed").await?;
    c.kv_put(l, "big/after", "x").await?;
    let started = Instant::now();
    let r = c
        .request_timeout(
            l,
            Method::PUT,
            "/v1/snapshot",
            Some(saved.body.clone()),
            Duration::from_secs(120),
        )
        .await?;
    r.assert_status(200);
    let l = c.wait_for_leader(Duration::from_secs(30)).await?;
    for i in 0..3 {
        registry_tests::eventually(
            Duration::from_secs(60),
            "the restored values on every server",
            || {
                let c = &c;
                let want = value(0);
                async move {
                    let first = c.get(i, "/v1/kv/big/k000?raw&stale").await?;
                    let after = c.get(i, "/v1/kv/big/after?stale").await?;
                    Ok(
                        (first.status == 200 && first.body == want && after.status == 404)
                            .then_some(()),
                    )
                }
            },
        )
        .await?;
    }
    eprintln!(
        "5 MiB restore on every server after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let last = c
        .get(l, &format!("/v1/kv/big/k{:03}?raw", VALUES - 1))
        .await?;
    assert_eq!(last.body, value(VALUES - 1));
    // Writes go on.
    c.kv_put(l, "big/after", "y").await?;
    c.finish();
    Ok(())
}
