//! End to end: k8s-sync against a registry that enforces ACLs (the token from
//! `CONSUL_HTTP_TOKEN` or `-consul-token`), and against a registry that goes away while
//! Kubernetes changes (no update lost, readiness follows, JSON logs, clean exit on SIGTERM).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use registry_tests::acl::{call, deny_agent, token_with_rules};
use reqwest::Method;

const T: Duration = Duration::from_secs(30);

/// Sorted service IDs on `node` carrying `tag`, read with the management token.
async fn ids_on(agent: &TestAgent, node: &str, tag: &str) -> anyhow::Result<Vec<String>> {
    let r = call(
        agent,
        Method::GET,
        &format!("/v1/catalog/node-services/{node}"),
        Some("root"),
        None,
    )
    .await?;
    anyhow::ensure!(r.status == 200, "{} {}", r.status, r.body);
    let mut ids: Vec<String> = r.json()["Services"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|s| {
            s["Tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == tag))
        })
        .map(|s| s["ID"].as_str().unwrap_or("").to_string())
        .collect();
    ids.sort();
    Ok(ids)
}

/// What does this test do? The registry denies anonymous writes. A k8s-sync given a token
/// with node and service write rights through `CONSUL_HTTP_TOKEN` syncs the Service, another
/// given it with `-consul-token` does too (on its own node and tag), and one without a token
/// writes nothing, stays not ready and counts registry errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_token_from_env_or_flag_is_required_and_used() {
    let agent = deny_agent().await.unwrap();
    let (token, _) = token_with_rules(
        &agent,
        "k8s-sync",
        "node_prefix \"\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"write\" }",
    )
    .await
    .unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(service("default", "web")).await.unwrap();
    fake.apply(slice(
        "default",
        "web",
        "web-1",
        &[("10.7.0.1", true), ("10.7.0.2", true)],
    ))
    .await
    .unwrap();

    let anon = Sync::start_env(
        &agent,
        &fake,
        "k8s-sync-anon",
        &["-consul-node-name=anon-sync", "-consul-k8s-tag=anon"],
        &[("CONSUL_HTTP_TOKEN", "")],
    )
    .unwrap();
    let env = Sync::start_env(
        &agent,
        &fake,
        "k8s-sync-env",
        &[],
        &[("CONSUL_HTTP_TOKEN", token.as_str())],
    )
    .unwrap();
    let flag_arg = format!("-consul-token={token}");
    let flag = Sync::start_env(
        &agent,
        &fake,
        "k8s-sync-flag",
        &[
            "-consul-node-name=flag-sync",
            "-consul-k8s-tag=flag",
            &flag_arg,
        ],
        &[("CONSUL_HTTP_TOKEN", "")],
    )
    .unwrap();

    for (node, tag, sync) in [("k8s-sync", "k8s", &env), ("flag-sync", "flag", &flag)] {
        eventually(T, "the Service synced with the token", || async {
            Ok((ids_on(&agent, node, tag).await?.len() == 2).then_some(()))
        })
        .await;
        eventually(T, "ready", || async {
            Ok((sync.get("/readyz").await?.0 == 200).then_some(()))
        })
        .await;
    }
    // The token-less replica had the same time and more: nothing written, not ready, errors
    // counted, the denial logged.
    eventually(T, "anonymous writes counted as errors", || async {
        let m = anon.get("/metrics").await?.1;
        Ok(
            m.contains("k8s_sync_errors_total{source=\"registry\",kind=\"write\"}")
                .then_some(()),
        )
    })
    .await;
    assert!(ids_on(&agent, "anon-sync", "anon")
        .await
        .unwrap()
        .is_empty());
    let r = call(
        &agent,
        Method::GET,
        "/v1/catalog/node/anon-sync",
        Some("root"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.json(), serde_json::Value::Null, "{}", r.body);
    assert_eq!(anon.get("/readyz").await.unwrap().0, 503);
    assert!(
        anon.proc.log_text().contains("403"),
        "{}",
        anon.proc.log_text()
    );
}

/// What does this test do? A persistent registry is killed while k8s-sync runs; meanwhile an
/// endpoint turns not ready and a new Service appears. k8s-sync reports not ready, retries
/// with backoff, and once the registry is back (with its old catalog) both changes land and
/// nothing valid is lost. Its logs are JSON lines, and SIGTERM ends it with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_loses_no_update_then_clean_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let mut agent = TestAgent::with_data_dir(data.path()).await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(service("default", "a")).await.unwrap();
    fake.apply(slice(
        "default",
        "a",
        "a-1",
        &[("10.8.0.1", true), ("10.8.0.2", true)],
    ))
    .await
    .unwrap();
    // No periodic resync in the test: recovery comes from the retry path alone.
    let mut sync = Sync::start(
        &agent,
        &fake,
        "k8s-sync",
        &["-sync-period=10m", "-log-json"],
    )
    .unwrap();
    eventually(T, "a synced", || async {
        Ok((passing(&agent, "a").await?.len() == 2).then_some(()))
    })
    .await;
    eventually(T, "ready", || async {
        Ok((sync.get("/readyz").await?.0 == 200).then_some(()))
    })
    .await;

    agent.kill9();
    fake.apply(slice(
        "default",
        "a",
        "a-1",
        &[("10.8.0.1", true), ("10.8.0.2", false)],
    ))
    .await
    .unwrap();
    fake.apply(service("default", "b")).await.unwrap();
    fake.apply(slice("default", "b", "b-1", &[("10.8.1.1", true)]))
        .await
        .unwrap();
    eventually(T, "not ready while the registry is away", || async {
        Ok((sync.get("/readyz").await?.0 == 503).then_some(()))
    })
    .await;
    // Several retries fail meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;

    agent.restart().await.unwrap();
    eventually(T, "both changes after the outage", || async {
        Ok((passing(&agent, "a").await? == vec!["10.8.0.1".to_string()]
            && catalog(&agent, "a").await?.len() == 2
            && passing(&agent, "b").await? == vec!["10.8.1.1".to_string()])
        .then_some(()))
    })
    .await;
    eventually(T, "ready again", || async {
        Ok((sync.get("/readyz").await?.0 == 200).then_some(()))
    })
    .await;
    let m = sync.get("/metrics").await.unwrap().1;
    assert!(
        m.contains("k8s_sync_errors_total{source=\"registry\",kind=\"write\"}"),
        "{m}"
    );

    // Structured logs: every line is a JSON object with a level, and the outage is in them.
    let log = sync.proc.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string()), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "sync to the registry failed"),
        "{log}"
    );
    assert!(
        sync.proc.terminate(Duration::from_secs(10)),
        "k8s-sync did not exit cleanly on SIGTERM"
    );
}

/// What does this test do? Drift made by hand on k8s-sync's node is repaired by the periodic
/// full pass (`-sync-period=2s`), without any Kubernetes event: a synced instance deregistered
/// by hand comes back, a stale instance registered by hand under k8s-sync's tag goes, and one
/// under another tag on the same node stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_full_pass_repairs_hand_made_drift() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(service("default", "web")).await.unwrap();
    fake.apply(slice(
        "default",
        "web",
        "web-1",
        &[("10.9.0.1", true), ("10.9.0.2", true)],
    ))
    .await
    .unwrap();
    let sync = Sync::start(&agent, &fake, "k8s-sync", &[]).unwrap();
    eventually(T, "web synced", || async {
        Ok((passing(&agent, "web").await?.len() == 2).then_some(()))
    })
    .await;
    eventually(T, "ready", || async {
        Ok((sync.get("/readyz").await?.0 == 200).then_some(()))
    })
    .await;
    let raw = catalog_raw(&agent, "web").await.unwrap();
    let victim = raw[0]["ServiceID"].as_str().unwrap().to_string();

    agent
        .put_json(
            "/v1/catalog/deregister",
            &serde_json::json!({"Node": "k8s-sync", "ServiceID": victim}),
        )
        .await
        .unwrap()
        .assert_status(200);
    for (id, tag) in [("stale-1", "k8s"), ("foreign-1", "other-cluster")] {
        agent
            .put_json(
                "/v1/catalog/register",
                &serde_json::json!({"Node": "k8s-sync", "Address": "127.0.0.1",
                    "SkipNodeUpdate": true,
                    "Service": {"ID": id, "Service": "web", "Address": "10.9.9.9", "Port": 1,
                                "Tags": [tag]}}),
            )
            .await
            .unwrap()
            .assert_status(200);
    }
    assert_eq!(catalog(&agent, "web").await.unwrap().len(), 3);

    eventually(T, "drift repaired by the full pass", || async {
        let ids: Vec<String> = catalog_raw(&agent, "web")
            .await?
            .iter()
            .map(|e| e["ServiceID"].as_str().unwrap_or("").to_string())
            .collect();
        Ok((ids.len() == 3
            && ids.contains(&victim)
            && ids.contains(&"foreign-1".to_string())
            && !ids.contains(&"stale-1".to_string()))
        .then_some(()))
    })
    .await;
    // It stays repaired through later full passes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(passing(&agent, "web").await.unwrap().len(), 3);
    assert_eq!(catalog(&agent, "web").await.unwrap().len(), 3);
}
