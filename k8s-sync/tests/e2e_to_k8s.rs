//! End to end for `-to-k8s` and `-leader-elect`: real registry, fake API server, k8s-sync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn k8s_service(fake: &FakeApi, name: &str) -> Option<serde_json::Value> {
    k8s_service_in(fake, "default", name).await
}

async fn k8s_service_in(fake: &FakeApi, ns: &str, name: &str) -> Option<serde_json::Value> {
    let (st, v) = fake
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/namespaces/{ns}/services/{name}"),
            None,
        )
        .await
        .unwrap();
    (st == 200).then_some(v)
}

/// What does this test do? With `-k8s-service-prefix`, `-consul-domain` and
/// `-k8s-write-namespace`, a catalog service becomes `<prefix><name>` in that namespace
/// pointing at `<name>.service.<domain>`; a user who edits its externalName sees it put back
/// (consul-k8s's updateReconcile), and nothing is written to the default namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_k8s_prefix_domain_namespace_and_edits_reconciled() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    agent
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.0.0.5", "Service": {"Service": "Orders", "Port": 80}}),
        )
        .await
        .unwrap()
        .assert_status(200);
    let _sync = Sync::start(
        &agent,
        &fake,
        "k8s-sync",
        &[
            "-to-k8s",
            "-k8s-service-prefix=ext-",
            "-consul-domain=mesh",
            "-k8s-write-namespace=apps",
        ],
    )
    .unwrap();
    let svc = eventually(T, "ext-orders in apps", || async {
        Ok(k8s_service_in(&fake, "apps", "ext-orders").await)
    })
    .await;
    assert_eq!(svc["spec"]["externalName"], "orders.service.mesh");
    assert!(k8s_service(&fake, "ext-orders").await.is_none());

    let mut edited = svc.clone();
    edited["spec"]["externalName"] = json!("elsewhere.example.com");
    let (st, _) = fake
        .call(
            reqwest::Method::PUT,
            "/api/v1/namespaces/apps/services/ext-orders",
            Some(("application/json", edited)),
        )
        .await
        .unwrap();
    assert_eq!(st, 200);
    eventually(T, "the edit reconciled", || async {
        let s = k8s_service_in(&fake, "apps", "ext-orders").await;
        Ok(
            s.filter(|s| s["spec"]["externalName"] == "orders.service.mesh")
                .map(|_| ()),
        )
    })
    .await;
}

/// What does this test do? Catalog services become ExternalName Services labelled as
/// k8s-sync's own; a Service of the same name created by someone else is left alone; services
/// synced from Kubernetes are not mirrored back; deregistering removes the ExternalName Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_k8s_creates_and_removes_external_names_and_leaves_foreign_services_alone() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(service("default", "cache")).await.unwrap();
    fake.apply(service("default", "web")).await.unwrap();
    fake.apply(slice("default", "web", "web-1", &[("10.1.1.1", true)]))
        .await
        .unwrap();
    for (name, addr) in [("Billing_DB", "10.0.0.1"), ("cache", "10.0.0.2")] {
        agent
            .put(
                "/v1/catalog/register",
                serde_json::to_vec(&json!({
            "Node": "ext", "Address": addr, "Service": {"Service": name, "Port": 5432}}))
                .unwrap(),
            )
            .await
            .unwrap()
            .assert_status(200);
    }
    let _sync = Sync::start(&agent, &fake, "k8s-sync", &["-to-k8s"]).unwrap();
    let db = eventually(T, "ExternalName billing-db", || async {
        Ok(k8s_service(&fake, "billing-db").await)
    })
    .await;
    assert_eq!(db["spec"]["type"], "ExternalName");
    assert_eq!(db["spec"]["externalName"], "billing_db.service.consul");
    assert_eq!(db["metadata"]["labels"]["consul"], "true");
    assert_eq!(
        db["metadata"]["annotations"]["consul.hashicorp.com/service-sync"],
        "false"
    );
    // web came from Kubernetes (tag k8s): it is in the catalog but not mirrored back.
    eventually(T, "web in the catalog", || async {
        Ok((!catalog(&agent, "web").await?.is_empty()).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let web = k8s_service(&fake, "web").await.unwrap();
    assert_eq!(web["spec"]["type"], "ClusterIP");
    let cache = k8s_service(&fake, "cache").await.unwrap();
    assert_eq!(
        cache["spec"]["type"], "ClusterIP",
        "a foreign Service was changed"
    );
    assert!(cache["metadata"]["labels"].get("consul").is_none());
    // Deleted by a user: recreated.
    fake.delete("/api/v1/namespaces/default/services", "billing-db")
        .await
        .unwrap();
    eventually(T, "recreated", || async {
        Ok(k8s_service(&fake, "billing-db").await)
    })
    .await;
    agent
        .put(
            "/v1/catalog/deregister",
            serde_json::to_vec(&json!({"Node": "ext", "ServiceID": "Billing_DB"})).unwrap(),
        )
        .await
        .unwrap()
        .assert_status(200);
    eventually(T, "billing-db removed", || async {
        Ok(k8s_service(&fake, "billing-db")
            .await
            .is_none()
            .then_some(()))
    })
    .await;
    assert!(
        k8s_service(&fake, "cache").await.is_some(),
        "a foreign Service was deleted"
    );
}

/// What does this test do? Two replicas with -leader-elect: exactly one holds the Lease and
/// writes, the standby writes nothing; killing the leader hands the Lease to the other, which
/// then syncs new changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_one_writer_and_takeover() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(service("default", "web")).await.unwrap();
    fake.apply(slice("default", "web", "web-1", &[("10.1.2.1", true)]))
        .await
        .unwrap();
    let le = |id: &'static str| {
        [
            "-leader-elect",
            "-leader-elect-lease-duration=3s",
            "-leader-elect-id",
            id,
        ]
    };
    let mut a = Sync::start(&agent, &fake, "replica-a", &le("replica-a")).unwrap();
    eventually(T, "a holds the lease", || async {
        let (st, v) = fake
            .call(
                reqwest::Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/k8s-sync",
                None,
            )
            .await?;
        Ok((st == 200 && v["spec"]["holderIdentity"] == "replica-a").then_some(()))
    })
    .await;
    let b = Sync::start(&agent, &fake, "replica-b", &le("replica-b")).unwrap();
    eventually(T, "web synced", || async {
        Ok((catalog(&agent, "web").await?.len() == 1).then_some(()))
    })
    .await;
    eventually(T, "b ready as a standby", || async {
        Ok((b.get("/readyz").await?.0 == 200).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bm = b.get("/metrics").await.unwrap().1;
    assert!(
        !bm.contains("k8s_sync_registry_writes_total"),
        "the standby wrote:\n{bm}"
    );
    assert!(!b.proc.log_text().contains("catalog updated"));

    a.proc.kill9();
    let t0 = Instant::now();
    eventually(T, "b takes the lease", || async {
        let (_, v) = fake
            .call(
                reqwest::Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/k8s-sync",
                None,
            )
            .await?;
        Ok((v["spec"]["holderIdentity"] == "replica-b").then_some(()))
    })
    .await;
    eprintln!("takeover after {:?}", t0.elapsed());
    fake.apply(slice(
        "default",
        "web",
        "web-1",
        &[("10.1.2.1", true), ("10.1.2.2", true)],
    ))
    .await
    .unwrap();
    eventually(T, "b syncs", || async {
        Ok((catalog(&agent, "web").await?.len() == 2).then_some(()))
    })
    .await;
}
