//! The streaming backend of client agents (`use_streaming_backend`, default true): blocking
//! `/v1/health/service/:name` queries on a client are served from one event stream per query
//! shape, not one long poll per watcher. Many watchers on one client cost the servers one
//! stream (read from the servers' `registry_rpc_subscriptions` gauge); one write wakes them
//! all; when the server holding the stream dies, the stream moves to another server and the
//! watchers still see the next change. With `use_streaming_backend = false` every watcher is
//! a forwarded long poll again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use registry_tests::client::ClientAgent;
use registry_tests::cluster::TestCluster;
use registry_tests::eventually;
use registry_tests::metrics::{kill_stream_holder, server_gauge_sum as gauge_sum};
use serde_json::json;

/// Registers instance `id` of `web` on an external node, through any server that answers.
async fn register(c: &TestCluster, servers: &[usize], id: &str) -> Result<()> {
    let body = json!({
        "Node": format!("ext-{id}"),
        "Address": "10.1.0.1",
        "Service": {"ID": id, "Service": "web", "Port": 80},
        "Check": {"CheckID": format!("chk-{id}"), "Name": "up", "Status": "passing", "ServiceID": id},
    })
    .to_string();
    c.put_through_any(servers, "/v1/catalog/register", &body)
        .await
}

type Watch = tokio::task::JoinHandle<Result<(usize, u64, String, Duration)>>;

/// `n` watchers of `web?passing` on `agent`, blocked at `index`: each answers (instances,
/// index, X-Cache, time to answer).
fn watchers(agent: &ClientAgent, n: usize, index: u64) -> Vec<Watch> {
    (0..n)
        .map(|_| {
            let api = agent.api.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let (r, meta) = api
                    .blocking_get(
                        "/v1/health/service/web?passing",
                        index,
                        Duration::from_secs(90),
                    )
                    .await?;
                if r.status != 200 {
                    bail!("HTTP {}: {}", r.status, r.text());
                }
                let v: serde_json::Value = serde_json::from_str(&r.text())?;
                let n = v.as_array().map_or(0, Vec::len);
                let cache = r.header("x-cache").unwrap_or("").to_string();
                Ok((n, meta.index, cache, t0.elapsed()))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_on_a_client_share_one_stream_and_survive_failover() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    c.leader().await?;
    let servers = c.raft_addrs(&[0, 1, 2]);
    let all = [0usize, 1, 2];
    let cl = ClientAgent::start("stream-client", &servers).await?;
    register(&c, &all, "web-1").await?;

    let first = cl.get("/v1/health/service/web?passing").await?;
    assert_eq!(first.status, 200, "{}", first.text());
    let idx = first.meta().index;
    assert!(idx > 0);
    let before = gauge_sum(&c, &all, "registry_rpc_subscriptions").await;
    assert_eq!(before, 0, "no stream before any blocking query");

    // 50 watchers of the same query on one client: one stream on the servers.
    const N: usize = 50;
    let ws = watchers(&cl, N, idx);
    let streams = eventually(Duration::from_secs(15), "one stream open", || async {
        let n = gauge_sum(&c, &all, "registry_rpc_subscriptions").await;
        Ok((n > 0).then_some(n))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        streams, 1,
        "{N} watchers on one client opened {streams} streams"
    );
    assert_eq!(gauge_sum(&c, &all, "registry_rpc_subscriptions").await, 1);
    let blocking = gauge_sum(&c, &all, "consul_rpc_queries_blocking").await;
    assert!(
        blocking <= 2,
        "{N} watchers cost the servers {blocking} blocking queries"
    );
    for w in &ws {
        assert!(!w.is_finished(), "a watcher returned before any change");
    }

    // One write wakes every watcher with the new answer.
    let wrote = Instant::now();
    register(&c, &all, "web-2").await?;
    let mut idx2 = 0;
    for w in ws {
        let (n, index, cache, _) = w.await??;
        assert_eq!(n, 2, "a watcher missed the new instance");
        assert!(index > idx, "index {index} did not move past {idx}");
        assert_eq!(cache, "MISS", "a watcher that waited for a change");
        idx2 = idx2.max(index);
    }
    eprintln!("write -> {N} watchers on one client: {:?}", wrote.elapsed());

    // `?cached` without an index is answered from the view too.
    let r = cl.get("/v1/health/service/web?passing&cached").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("HIT"), "{:?}", r.headers);
    assert_eq!(r.header("age"), Some("0"));
    assert_eq!(r.header("x-consul-query-backend"), Some("streaming"));
    assert!(r.meta().index >= idx2);

    // Kill the server that holds the stream while watchers wait: the stream moves to
    // another server and the next change still wakes them.
    let ws = watchers(&cl, N, idx2);
    let rest = kill_stream_holder(&mut c, &all).await?;
    let wrote = Instant::now();
    register(&c, &rest, "web-3").await?;
    for w in ws {
        let (n, index, _, _) = w.await??;
        assert_eq!(n, 3, "a watcher missed the change after failover");
        assert!(index > idx2);
    }
    eprintln!(
        "after failover: write -> {N} watchers: {:?}",
        wrote.elapsed()
    );

    // With the streaming backend off, each watcher is a forwarded long poll.
    let plain = ClientAgent::start_with(
        "poll-client",
        &servers[rest[0]..=rest[0]],
        &["-hcl", "use_streaming_backend = false"],
    )
    .await?;
    let me = cl.get_json("/v1/agent/self").await?;
    assert_eq!(me["DebugConfig"]["UseStreamingBackend"], true, "{me}");
    let me = plain.get_json("/v1/agent/self").await?;
    assert_eq!(me["DebugConfig"]["UseStreamingBackend"], false, "{me}");
    let r = plain.get("/v1/health/service/web?passing").await?;
    let idx3 = r.meta().index;
    let streams_before = gauge_sum(&c, &rest, "registry_rpc_subscriptions").await;
    let polls = watchers(&plain, 5, idx3);
    eventually(
        Duration::from_secs(15),
        "5 forwarded long polls",
        || async {
            let n = gauge_sum(&c, &rest, "consul_rpc_queries_blocking").await;
            Ok((n >= 5).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        gauge_sum(&c, &rest, "registry_rpc_subscriptions").await,
        streams_before,
        "a client without the streaming backend opened a stream"
    );
    register(&c, &rest, "web-4").await?;
    for w in polls {
        let (n, _, cache, _) = w.await??;
        assert_eq!(n, 4);
        assert_eq!(cache, "", "a long poll is not a cached answer");
    }
    c.finish();
    Ok(())
}
