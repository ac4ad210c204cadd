//! End to end: `k8s-sync -purge-k8s-services-from-node` (the chart's pre-delete hook) against
//! a real `registry agent -dev`, after real syncs filled the catalog from the fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn node_names(agent: &TestAgent) -> Vec<String> {
    let v = agent.get("/v1/catalog/nodes").await.unwrap().json();
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap().to_string())
        .collect()
}

async fn node_service_ids(agent: &TestAgent, node: &str) -> Vec<String> {
    let v = agent
        .get(&format!("/v1/catalog/node-services/{node}"))
        .await
        .unwrap()
        .json();
    let mut ids: Vec<String> = v["Services"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| s["ID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// What does this test do? Two clusters (tags `cluster-a`, `cluster-b`) sync into one node;
/// cluster a's purge, run without any Kubernetes API, removes exactly a's instances and their
/// checks and keeps the node (b's entries are on it); b's purge then removes the rest and the
/// node itself. A purge of an empty or missing node succeeds and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_only_this_syncs_instances_then_the_node() {
    let agent = TestAgent::dev().await.unwrap();
    let fa = FakeApi::start().await.unwrap();
    let fb = FakeApi::start().await.unwrap();
    for (f, svc, addrs) in [
        (&fa, "web", vec![("10.7.0.1", true), ("10.7.0.2", false)]),
        (&fa, "api", vec![("10.7.1.1", true)]),
        (&fb, "web", vec![("10.8.0.1", true)]),
    ] {
        f.apply(service("default", svc)).await.unwrap();
        f.apply(slice("default", svc, &format!("{svc}-1"), &addrs))
            .await
            .unwrap();
    }
    let mut sa = Sync::start(&agent, &fa, "sync-a", &["-consul-k8s-tag=cluster-a"]).unwrap();
    let mut sb = Sync::start(&agent, &fb, "sync-b", &["-consul-k8s-tag=cluster-b"]).unwrap();
    eventually(T, "both clusters synced", || async {
        Ok((node_service_ids(&agent, "k8s-sync").await.len() == 4).then_some(()))
    })
    .await;
    let checks = agent.get("/v1/health/node/k8s-sync").await.unwrap().json();
    assert_eq!(checks.as_array().unwrap().len(), 4, "{checks}");
    // The hook runs after the Deployment is gone: stop both syncs first.
    assert!(sa.proc.terminate(Duration::from_secs(10)));
    assert!(sb.proc.terminate(Duration::from_secs(10)));

    let addr = agent.http_addr();
    let (ok, out) = run_k8s_sync_once(&[
        "-http-addr",
        &addr,
        "-consul-k8s-tag=cluster-a",
        "-purge-k8s-services-from-node=true",
    ])
    .unwrap();
    assert!(ok, "purge a failed: {out}");
    assert!(out.contains("deregistered=3"), "{out}");
    let left = node_service_ids(&agent, "k8s-sync").await;
    assert_eq!(left.len(), 1, "{left:?}");
    let web = catalog_raw(&agent, "web").await.unwrap();
    assert_eq!(web.len(), 1);
    assert_eq!(web[0]["ServiceAddress"], "10.8.0.1");
    assert_eq!(web[0]["ServiceTags"], json!(["cluster-b"]));
    assert!(catalog(&agent, "api").await.unwrap().is_empty());
    let checks = agent.get("/v1/health/node/k8s-sync").await.unwrap().json();
    assert_eq!(checks.as_array().unwrap().len(), 1, "{checks}");
    assert!(node_names(&agent).await.contains(&"k8s-sync".to_string()));

    // Go-style boolean form, as the chart renders it, through the environment address.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_k8s-sync"))
        .args(["-consul-k8s-tag=cluster-b", "-purge-k8s-services-from-node"])
        .env("CONSUL_HTTP_ADDR", format!("http://{addr}"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(node_service_ids(&agent, "k8s-sync").await.is_empty());
    assert!(
        !node_names(&agent).await.contains(&"k8s-sync".to_string()),
        "the emptied node must be deregistered"
    );
    assert!(catalog(&agent, "web").await.unwrap().is_empty());

    // Nothing left: still a success (the hook may run twice). This run goes through
    // `registry k8s-sync`, which hands over to the k8s-sync executable next to it.
    let registry = registry_tests::registry_bin().unwrap();
    let beside = registry.with_file_name("k8s-sync");
    let mut cmd = std::process::Command::new(&registry);
    cmd.args([
        "k8s-sync",
        "-http-addr",
        &addr,
        "-purge-k8s-services-from-node",
    ])
    .env("KUBECONFIG", "/nonexistent/kubeconfig")
    .env("RUST_LOG", "info");
    if !beside.is_file() {
        cmd.env("REGISTRY_K8S_SYNC_BIN", env!("CARGO_BIN_EXE_k8s-sync"));
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "registry k8s-sync: {text}");
    assert!(text.contains("deregistered=0"), "{text}");
    let help = std::process::Command::new(&registry)
        .args(["k8s-sync", "--help"])
        .env("REGISTRY_K8S_SYNC_BIN", env!("CARGO_BIN_EXE_k8s-sync"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("purge-k8s-services-from-node"));
}

/// What does this test do? A purge against a registry that does not answer fails (non-zero
/// exit, so the hook Job retries) instead of reporting success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_fails_when_the_registry_does_not_answer() {
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let (ok, out) =
        run_k8s_sync_once(&["-http-addr", &addr, "-purge-k8s-services-from-node"]).unwrap();
    assert!(!ok, "a purge with no registry must fail: {out}");
    assert!(out.contains("purging the sync node"), "{out}");
}
