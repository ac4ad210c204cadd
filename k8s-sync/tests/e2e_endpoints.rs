//! End to end: `-use-endpoint-slices=false` (clusters without EndpointSlices) reads core/v1
//! Endpoints from the fake API server and registers the same instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn endpoints(name: &str, ready: &[&str], not_ready: &[&str]) -> serde_json::Value {
    let addrs = |v: &[&str]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|a| json!({"ip": a, "nodeName": "node-1",
                            "targetRef": {"kind": "Pod", "name": format!("{name}-{a}"), "namespace": "default"}}))
            .collect()
    };
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": "default"},
        "subsets": [{"addresses": addrs(ready), "notReadyAddresses": addrs(not_ready),
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
}

/// What does this test do? With `-use-endpoint-slices=false`, a Service with an Endpoints
/// object (two ready addresses, one not ready) appears with three instances, two passing;
/// readiness changes, a shrink and the deletion of the Endpoints follow (no periodic resync
/// during the test, so each goes through the per-Service path). EndpointSlices are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_endpoints_for_old_clusters() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(service("default", "web")).await.unwrap();
    fake.apply(endpoints("web", &["10.9.0.1", "10.9.0.2"], &["10.9.0.3"]))
        .await
        .unwrap();
    // A slice that must not be read in this mode.
    fake.apply(slice("default", "web", "web-x", &[("10.9.9.9", true)]))
        .await
        .unwrap();
    let _sync = Sync::start(
        &agent,
        &fake,
        "k8s-sync",
        &["-use-endpoint-slices=false", "-sync-period=10m"],
    )
    .unwrap();
    let all =
        |v: &[&str]| -> Vec<(String, u64)> { v.iter().map(|a| (a.to_string(), 8080)).collect() };
    eventually(T, "three instances from Endpoints", || async {
        Ok(
            (catalog(&agent, "web").await? == all(&["10.9.0.1", "10.9.0.2", "10.9.0.3"]))
                .then_some(()),
        )
    })
    .await;
    assert_eq!(
        passing(&agent, "web").await.unwrap(),
        vec!["10.9.0.1", "10.9.0.2"]
    );
    let e = catalog_raw(&agent, "web").await.unwrap();
    assert_eq!(e[0]["ServiceMeta"]["external-k8s-ref-kind"], "Pod");
    assert_eq!(e[0]["ServiceTags"], json!(["k8s"]));

    fake.apply(endpoints("web", &["10.9.0.3"], &["10.9.0.1"]))
        .await
        .unwrap();
    eventually(T, "readiness and shrink followed", || async {
        Ok(
            (catalog(&agent, "web").await? == all(&["10.9.0.1", "10.9.0.3"])
                && passing(&agent, "web").await? == vec!["10.9.0.3"])
            .then_some(()),
        )
    })
    .await;

    fake.delete("/api/v1/namespaces/default/endpoints", "web")
        .await
        .unwrap();
    eventually(T, "instances gone with the Endpoints", || async {
        Ok(catalog(&agent, "web").await?.is_empty().then_some(()))
    })
    .await;
}
