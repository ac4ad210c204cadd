//! The streaming backend for `/v1/catalog/service/:name` on client agents: a blocking (or
//! `?cached`) catalog query on a client is served from the same kind of view as
//! `health/service`, one event stream per query shape. Checked through the public HTTP API
//! of a client agent joined to 3 real servers:
//!
//! - the answer through a view is byte for byte the server's (Consul's `ServiceNode` list),
//!   with the `X-Consul-Index` / `KnownLeader` / `LastContact` headers, for `?tag` (one and
//!   several), `?node-meta`, `?filter` and `?pretty`, and an invalid `?filter` gives the
//!   server's 400;
//! - many watchers of one shape cost the servers one stream (`registry_rpc_subscriptions`),
//!   one write wakes them all with the new answer;
//! - killing the server that holds the stream moves it to another server, and the waiting
//!   watchers still see the next change;
//! - `?cached` is answered from the view; `?stale` shares the view and reports `stale`;
//! - `?near` and `?consistent` are forwarded as long polls, as Consul decides for
//!   `health/service`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use registry_tests::client::ClientAgent;
use registry_tests::cluster::TestCluster;
use registry_tests::metrics::{kill_stream_holder, server_gauge_sum};
use registry_tests::{eventually, qs};
use serde_json::{json, Value};

const SUBS: &str = "registry_rpc_subscriptions";
/// The shape the watchers hold.
const WATCHED: &str = "/v1/catalog/service/web?tag=v1";

/// Registers instance `id` of `web` on node `ext-<id>` (rack `rack`, tags `tags`, meta
/// `version`), through the first of `servers` that accepts the write.
async fn register(
    c: &TestCluster,
    servers: &[usize],
    id: &str,
    rack: &str,
    tags: &[&str],
    version: &str,
) -> Result<()> {
    let body = json!({
        "Node": format!("ext-{id}"),
        "Address": "10.1.0.1",
        "TaggedAddresses": {"lan": "10.1.0.1", "wan": "198.51.100.1"},
        "NodeMeta": {"rack": rack},
        "Service": {
            "ID": id, "Service": "web", "Tags": tags, "Address": "10.2.0.1", "Port": 8080,
            "Meta": {"version": version}, "Weights": {"Passing": 3, "Warning": 1},
            "TaggedAddresses": {"lan": {"Address": "10.2.0.1", "Port": 8080}},
            "EnableTagOverride": true,
        },
    })
    .to_string();
    c.put_through_any(servers, "/v1/catalog/register", &body)
        .await
}

/// The `ServiceID`s of a `catalog/service` answer.
fn ids(body: &[u8]) -> Result<Vec<String>> {
    let v: Value = serde_json::from_slice(body)?;
    let Some(list) = v.as_array() else {
        bail!("not a list: {v}");
    };
    let mut ids: Vec<String> = list
        .iter()
        .map(|e| e["ServiceID"].as_str().unwrap_or("").to_string())
        .collect();
    ids.sort();
    Ok(ids)
}

/// `path` through the client's view, once its answer is at the index `server` answers
/// `path` with (retried while one of them is a write behind the other): asserts the body and
/// `Content-Type` are the server's, the read headers are there and the answer came from the
/// streaming backend. Returns (index, body).
async fn same_as_server(
    c: &TestCluster,
    server: usize,
    cl: &ClientAgent,
    path: &str,
) -> Result<(u64, Vec<u8>)> {
    let mut tries = 0;
    let (direct, r, meta) = loop {
        let direct = c.get(server, path).await?;
        direct.assert_status(200).assert_read_headers();
        let at = direct.index();
        let (r, meta) = cl
            .api
            .blocking_get(path, at - 1, Duration::from_secs(30))
            .await?;
        assert_eq!(r.status, 200, "{path} on the client: {}", r.text());
        tries += 1;
        if meta.index == at || tries == 50 {
            break (direct, r, meta);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(meta.index, direct.index(), "{path}: the view's index");
    assert!(meta.known_leader, "{path}: X-Consul-KnownLeader");
    assert!(
        r.header("X-Consul-LastContact")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{path}: X-Consul-LastContact {:?}",
        r.headers
    );
    assert_eq!(
        r.header("x-consul-query-backend"),
        Some("streaming"),
        "{path}: not served from a view"
    );
    assert_eq!(
        r.header("content-type").map(str::to_string),
        direct.header("content-type"),
        "{path}: Content-Type"
    );
    assert_eq!(
        r.text(),
        direct.text(),
        "{path}: the client's answer differs from the server's"
    );
    Ok((meta.index, r.body))
}

type Watch = tokio::task::JoinHandle<Result<(u64, String, Vec<u8>)>>;

/// `n` watchers of [`WATCHED`] on `cl`, blocked at `index`: each answers (index, X-Cache,
/// body).
fn watchers(cl: &ClientAgent, n: usize, index: u64) -> Vec<Watch> {
    (0..n)
        .map(|_| {
            let api = cl.api.clone();
            tokio::spawn(async move {
                let (r, meta) = api
                    .blocking_get(WATCHED, index, Duration::from_secs(90))
                    .await?;
                if r.status != 200 {
                    bail!("HTTP {}: {}", r.status, r.text());
                }
                let cache = r.header("x-cache").unwrap_or("").to_string();
                Ok((meta.index, cache, r.body))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_service_on_a_client_is_served_from_one_stream() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    c.leader().await?;
    let servers = c.raft_addrs(&[0, 1, 2]);
    let all = [0usize, 1, 2];
    let cl = ClientAgent::start("catalog-stream-client", &servers).await?;
    register(&c, &all, "web-1", "r1", &["v1", "primary"], "1").await?;
    register(&c, &all, "web-2", "r2", &["v2"], "2").await?;
    assert_eq!(server_gauge_sum(&c, &all, SUBS).await, 0);

    // The first blocking query opens the view; its answer is the server's ServiceNode list.
    let (idx, body) = same_as_server(&c, 0, &cl, WATCHED).await?;
    assert_eq!(ids(&body)?, ["web-1"]);
    let node: Value = serde_json::from_slice(&body)?;
    let e = &node[0];
    assert_eq!(e["Node"], "ext-web-1");
    assert_eq!(e["Address"], "10.1.0.1");
    assert_eq!(e["TaggedAddresses"]["wan"], "198.51.100.1");
    assert_eq!(e["NodeMeta"]["rack"], "r1");
    assert_eq!(e["ServiceName"], "web");
    assert_eq!(e["ServiceTags"], json!(["v1", "primary"]));
    assert_eq!(e["ServiceAddress"], "10.2.0.1");
    assert_eq!(e["ServiceTaggedAddresses"]["lan"]["Port"], 8080);
    assert_eq!(e["ServiceWeights"], json!({"Passing": 3, "Warning": 1}));
    assert_eq!(e["ServiceMeta"]["version"], "1");
    assert_eq!(e["ServicePort"], 8080);
    assert_eq!(e["ServiceEnableTagOverride"], true);
    assert!(e["CreateIndex"].as_u64().unwrap_or(0) > 0, "{e}");
    assert!(e["ModifyIndex"].as_u64().unwrap_or(0) > 0, "{e}");

    // 40 watchers of that shape on the client: still one stream on the servers.
    const N: usize = 40;
    let ws = watchers(&cl, N, idx);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server_gauge_sum(&c, &all, SUBS).await,
        1,
        "{N} watchers of one shape"
    );
    for w in &ws {
        assert!(!w.is_finished(), "a watcher returned before any change");
    }

    // One write wakes them all with the server's new answer.
    let wrote = Instant::now();
    register(&c, &all, "web-3", "r1", &["v1"], "1").await?;
    let mut answers = Vec::new();
    for w in ws {
        let (index, cache, body) = w.await??;
        assert!(index > idx, "index {index} did not move past {idx}");
        assert_eq!(cache, "MISS", "a watcher that waited for a change");
        answers.push((index, body));
    }
    eprintln!(
        "write -> {N} catalog watchers on one client: {:?}",
        wrote.elapsed()
    );
    let (idx2, body2) = same_as_server(&c, 0, &cl, WATCHED).await?;
    assert_eq!(ids(&body2)?, ["web-1", "web-3"]);
    for (index, body) in answers {
        assert_eq!((index, body.as_slice()), (idx2, body2.as_slice()));
    }

    // Kill the server holding the stream while watchers wait: the stream moves and the
    // next change still wakes them.
    let ws = watchers(&cl, N, idx2);
    let rest = kill_stream_holder(&mut c, &all).await?;
    let wrote = Instant::now();
    register(&c, &rest, "web-4", "r2", &["v1"], "2").await?;
    for w in ws {
        let (index, _, body) = w.await??;
        assert!(index > idx2);
        assert_eq!(ids(&body)?, ["web-1", "web-3", "web-4"]);
    }
    eprintln!(
        "after failover: write -> {N} catalog watchers: {:?}",
        wrote.elapsed()
    );
    let (_, body) = same_as_server(&c, rest[0], &cl, WATCHED).await?;
    assert_eq!(ids(&body)?, ["web-1", "web-3", "web-4"]);

    // Every parameter the server takes gives the server's bytes through a view, one stream
    // per shape.
    let filter = qs(r#"ServiceMeta.version == "2""#);
    let shapes = [
        ("/v1/catalog/service/web".to_string(), 4),
        ("/v1/catalog/service/web?node-meta=rack:r1".to_string(), 2),
        ("/v1/catalog/service/web?tag=v1&tag=primary".to_string(), 1),
        (format!("/v1/catalog/service/web?filter={filter}"), 2),
        (format!("/v1/catalog/service/web?filter={filter}&tag=v1"), 1),
        ("/v1/catalog/service/web?pretty".to_string(), 4),
    ];
    for (path, n) in &shapes {
        let (_, body) = same_as_server(&c, rest[0], &cl, path).await?;
        assert_eq!(
            ids(&body)?.len(),
            *n,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(
        server_gauge_sum(&c, &rest, SUBS).await,
        1 + shapes.len() as u64
    );
    let bad = format!("/v1/catalog/service/web?filter={}", qs("ServicePort =="));
    let direct = c.get(rest[0], &bad).await?;
    assert_eq!(direct.status, 400, "{}", direct.text());
    let (r, _) = cl
        .api
        .blocking_get(&bad, 1, Duration::from_secs(10))
        .await?;
    assert_eq!((r.status, r.text()), (400, direct.text()));

    // `?cached` is answered from the view at once.
    let r = cl.get(&format!("{WATCHED}&cached")).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("HIT"), "{:?}", r.headers);
    assert_eq!(r.header("age"), Some("0"));
    assert_eq!(r.header("x-consul-query-backend"), Some("streaming"));
    assert_eq!(ids(&r.body)?, ["web-1", "web-3", "web-4"]);
    assert_eq!(r.header("x-consul-effective-consistency"), Some("leader"));

    // `?stale` is the same view (no new stream) and reports the consistency it asked for.
    let (r, meta) = cl
        .api
        .blocking_get(&format!("{WATCHED}&stale"), 1, Duration::from_secs(10))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(meta.consistency.as_deref(), Some("stale"));
    assert_eq!(r.header("x-consul-query-backend"), Some("streaming"));
    assert_eq!(ids(&r.body)?, ["web-1", "web-3", "web-4"]);
    let views = 1 + shapes.len() as u64;
    eventually(
        Duration::from_secs(5),
        "one stream per shape, none for ?stale or the refused query",
        || async {
            let n = server_gauge_sum(&c, &rest, SUBS).await;
            if n > views {
                bail!("{n} streams for {views} shapes");
            }
            Ok((n == views).then_some(()))
        },
    )
    .await?;

    // `?near` and `?consistent` are long polls forwarded to a server: no stream, the
    // server's own backend header.
    let before = server_gauge_sum(&c, &rest, SUBS).await;
    let now = c.get(rest[0], "/v1/catalog/service/web").await?.index();
    for q in ["near=_agent", "consistent"] {
        let path = format!("/v1/catalog/service/web?{q}");
        let (r, meta) = cl
            .api
            .blocking_get(&path, now, Duration::from_secs(1))
            .await?;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(meta.index, now);
        assert_eq!(
            r.header("x-consul-query-backend"),
            Some("blocking-query"),
            "{path} went through a view"
        );
        assert_eq!(ids(&r.body)?.len(), 4);
    }
    assert_eq!(server_gauge_sum(&c, &rest, SUBS).await, before);
    c.finish();
    Ok(())
}
