//! Index-based blocking queries: return on change, time out with the same index.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use registry_tests::{unb64, Resp, TestAgent};
use serde_json::json;

/// Starts `GET path` in the background, then runs `change` after `delay`; returns the blocking
/// response and how long it took.
async fn block_then_change<F, Fut>(
    a: &Arc<TestAgent>,
    path: String,
    delay: Duration,
    change: F,
) -> Result<(Resp, Duration)>
where
    F: FnOnce(Arc<TestAgent>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let a2 = a.clone();
    let start = Instant::now();
    let h = tokio::spawn(async move {
        let r = a2.get(&path).await;
        (r, start.elapsed())
    });
    tokio::time::sleep(delay).await;
    assert!(
        !h.is_finished(),
        "blocking query returned before the change"
    );
    change(a.clone()).await?;
    let (r, took) = tokio::time::timeout(Duration::from_secs(15), h).await??;
    Ok((r?, took))
}

#[tokio::test]
async fn kv_get_returns_on_change() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    a.kv_put("watched", "one").await?;
    let idx = a.get("/v1/kv/watched").await?.index();
    let (r, took) = block_then_change(
        &a,
        format!("/v1/kv/watched?index={idx}&wait=10s"),
        Duration::from_millis(500),
        |a| async move { a.kv_put("watched", "two").await },
    )
    .await?;
    r.assert_status(200).assert_read_headers();
    assert!(r.index() > idx, "index {} must exceed {idx}", r.index());
    assert!(
        took >= Duration::from_millis(400),
        "did not block: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "returned late: {took:?}");
    let v = r.json();
    assert_eq!(unb64(v[0]["Value"].as_str().unwrap()), b"two");
    Ok(())
}

#[tokio::test]
async fn kv_get_times_out_with_same_index() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("quiet", "v").await?;
    let idx = a.get("/v1/kv/quiet").await?.index();
    let start = Instant::now();
    let r = a.get(&format!("/v1/kv/quiet?index={idx}&wait=1s")).await?;
    let took = start.elapsed();
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.index(), idx, "timeout returns the same index");
    assert!(
        took >= Duration::from_millis(950),
        "returned early: {took:?}"
    );
    // wait + up to wait/16 jitter, plus slack for a loaded machine.
    assert!(
        took < Duration::from_millis(3000),
        "returned late: {took:?}"
    );
    Ok(())
}

#[tokio::test]
async fn kv_wait_accepts_go_durations() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("d", "v").await?;
    let idx = a.get("/v1/kv/d").await?.index();
    for wait in ["500ms", "0.5s", "1s"] {
        let start = Instant::now();
        let r = a.get(&format!("/v1/kv/d?index={idx}&wait={wait}")).await?;
        r.assert_status(200);
        assert_eq!(r.index(), idx);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(450), "wait={wait}: {took:?}");
        assert!(took < Duration::from_millis(3000), "wait={wait}: {took:?}");
    }
    Ok(())
}

#[tokio::test]
async fn write_to_another_key_does_not_end_the_wait_with_a_new_index() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    a.kv_put("mine", "v").await?;
    let idx = a.get("/v1/kv/mine").await?.index();
    let (r, took) = block_then_change(
        &a,
        format!("/v1/kv/mine?index={idx}&wait=1s"),
        Duration::from_millis(200),
        |a| async move { a.kv_put("theirs", "x").await },
    )
    .await?;
    r.assert_status(200);
    assert_eq!(
        r.index(),
        idx,
        "an unrelated write must not change this key's index"
    );
    assert!(
        took >= Duration::from_millis(950),
        "returned early: {took:?}"
    );
    Ok(())
}

#[tokio::test]
async fn missing_key_blocks_until_created() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    let r = a.get("/v1/kv/later").await?;
    r.assert_status(404);
    let idx = r.index();
    let (r, took) = block_then_change(
        &a,
        format!("/v1/kv/later?index={idx}&wait=10s"),
        Duration::from_millis(500),
        |a| async move { a.kv_put("later", "here").await },
    )
    .await?;
    r.assert_status(200).assert_read_headers();
    assert!(r.index() > idx);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(unb64(r.json()[0]["Value"].as_str().unwrap()), b"here");
    Ok(())
}

#[tokio::test]
async fn recurse_blocks_until_prefix_changes_including_delete() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    a.kv_put("cfg/a", "1").await?;
    a.kv_put("cfg/b", "2").await?;
    let idx = a.get("/v1/kv/cfg/?recurse").await?.index();
    let (r, _) = block_then_change(
        &a,
        format!("/v1/kv/cfg/?recurse&index={idx}&wait=10s"),
        Duration::from_millis(300),
        |a| async move {
            a.delete("/v1/kv/cfg/a").await?.assert_status(200);
            Ok(())
        },
    )
    .await?;
    r.assert_status(200);
    let idx2 = r.index();
    assert!(idx2 > idx, "a delete under the prefix must raise the index");
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Key"], "cfg/b");

    // ?keys blocks too.
    let (r, _) = block_then_change(
        &a,
        format!("/v1/kv/cfg/?keys&index={idx2}&wait=10s"),
        Duration::from_millis(300),
        |a| async move { a.kv_put("cfg/c", "3").await },
    )
    .await?;
    r.assert_status(200);
    assert!(r.index() > idx2);
    assert_eq!(r.json(), json!(["cfg/b", "cfg/c"]));
    Ok(())
}

#[tokio::test]
async fn index_zero_or_absent_does_not_block() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("z", "v").await?;
    let start = Instant::now();
    a.get("/v1/kv/z?index=0&wait=5s").await?.assert_status(200);
    a.get("/v1/kv/z?wait=5s").await?.assert_status(200);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn stale_index_returns_at_once() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("s", "1").await?;
    let idx = a.get("/v1/kv/s").await?.index();
    a.kv_put("s", "2").await?;
    let start = Instant::now();
    let r = a.get(&format!("/v1/kv/s?index={idx}&wait=5s")).await?;
    r.assert_status(200);
    assert!(r.index() > idx);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn catalog_services_blocks_until_registration() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    let idx = a.get("/v1/catalog/services").await?.index();
    let (r, took) = block_then_change(
        &a,
        format!("/v1/catalog/services?index={idx}&wait=10s"),
        Duration::from_millis(500),
        |a| async move {
            a.register_service(&json!({"Name": "late", "Port": 1}))
                .await
        },
    )
    .await?;
    r.assert_status(200).assert_read_headers();
    assert!(r.index() > idx);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(r.json().get("late").is_some(), "{}", r.text());

    // And times out with the same index when nothing changes.
    let idx = r.index();
    let start = Instant::now();
    let r = a
        .get(&format!("/v1/catalog/services?index={idx}&wait=1s"))
        .await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.index(), idx);
    assert!(start.elapsed() >= Duration::from_millis(950));
    Ok(())
}

#[tokio::test]
async fn catalog_service_and_nodes_block() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    let idx = a.get("/v1/catalog/service/api").await?.index();
    let (r, _) = block_then_change(
        &a,
        format!("/v1/catalog/service/api?index={idx}&wait=10s"),
        Duration::from_millis(300),
        |a| async move { a.register_service(&json!({"Name": "api", "Port": 2})).await },
    )
    .await?;
    r.assert_status(200);
    assert!(r.index() > idx);
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    let idx = a.get("/v1/catalog/nodes").await?.index();
    let (r, _) = block_then_change(
        &a,
        format!("/v1/catalog/nodes?index={idx}&wait=10s"),
        Duration::from_millis(300),
        |a| async move {
            a.put_json(
                "/v1/catalog/register",
                &json!({"Node": "newnode", "Address": "127.0.0.7"}),
            )
            .await?
            .assert_status(200);
            Ok(())
        },
    )
    .await?;
    r.assert_status(200);
    assert!(r.index() > idx);
    assert!(r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["Node"] == "newnode"));
    Ok(())
}

#[tokio::test]
async fn health_service_blocks_until_check_changes() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    a.register_service(&json!({"Name": "hb", "Check": {"TTL": "60s"}}))
        .await?;
    let r = a.get("/v1/health/service/hb?passing").await?;
    assert_eq!(r.json(), json!([]));
    let idx = r.index();
    let (r, took) = block_then_change(
        &a,
        format!("/v1/health/service/hb?passing&index={idx}&wait=10s"),
        Duration::from_millis(500),
        |a| async move {
            a.put("/v1/agent/check/pass/service:hb", "")
                .await?
                .assert_status(200);
            Ok(())
        },
    )
    .await?;
    r.assert_status(200).assert_read_headers();
    assert!(r.index() > idx);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    // Time out with the same index.
    let idx = r.index();
    let start = Instant::now();
    let r = a
        .get(&format!("/v1/health/service/hb?index={idx}&wait=1s"))
        .await?;
    r.assert_status(200);
    assert_eq!(r.index(), idx);
    assert!(start.elapsed() >= Duration::from_millis(950));
    Ok(())
}

#[tokio::test]
async fn health_state_any_blocks_on_any_check_write() -> Result<()> {
    let a = Arc::new(TestAgent::dev().await?);
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "c", "TTL": "60s"}),
        )
        .await?;
    r.assert_status(200);
    let idx = a.get("/v1/health/state/any").await?.index();
    let (r, _) = block_then_change(
        &a,
        format!("/v1/health/state/any?consistent&index={idx}&wait=10s"),
        Duration::from_millis(300),
        |a| async move {
            a.put("/v1/agent/check/warn/c", "")
                .await?
                .assert_status(200);
            Ok(())
        },
    )
    .await?;
    r.assert_status(200);
    assert!(r.index() > idx);
    let c = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "c")
        .cloned()
        .unwrap();
    assert_eq!(c["Status"], "warning");
    Ok(())
}
