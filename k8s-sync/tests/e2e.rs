//! End to end: a real `registry agent -dev`, the fake Kubernetes API server and the `k8s-sync`
//! binary as processes on loopback. Objects are created with the real `kubectl` where it can
//! (proving the fake speaks the real protocol) and through the API otherwise (status
//! subresource, Nodes). Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn manifest(svc: &str, eps: &[(&str, bool)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: default\nspec:\n  selector:\n    app: {svc}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nports:\n- name: http\n  port: 8080\nendpoints:\n"
    );
    for (a, r) in eps {
        y.push_str(&format!(
            "- addresses: [\"{a}\"]\n  conditions:\n    ready: {r}\n  targetRef:\n    kind: Pod\n    name: {svc}-{a}\n    namespace: default\n"
        ));
    }
    y
}

/// What does this test do? kubectl creates a Service with two ready endpoints and one that is
/// not ready; the catalog gets three instances, health and DNS only the ready two. Scaling
/// and readiness changes follow, and deleting the EndpointSlice and the Service empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_changes_reach_catalog_health_and_dns() {
    let Some(kubectl) = kubectl_bin() else { return };
    let dig = dig_available();
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    // No periodic resync within the test: every change goes through the per-Service path.
    let sync = Sync::start(&agent, &fake, "k8s-sync", &["-sync-period=10m"]).unwrap();

    let apply = |y: String| {
        fake.kubectl(
            &kubectl,
            &["apply", "--validate=false", "-f", "-"],
            Some(&y),
        )
        .unwrap()
    };
    apply(manifest(
        "web",
        &[("10.1.0.1", true), ("10.1.0.2", true), ("10.1.0.3", false)],
    ));
    let want3 = vec![
        ("10.1.0.1".to_string(), 8080),
        ("10.1.0.2".to_string(), 8080),
        ("10.1.0.3".to_string(), 8080),
    ];
    eventually(T, "three instances", || async {
        Ok((catalog(&agent, "web").await? == want3).then_some(()))
    })
    .await;
    assert_eq!(
        passing(&agent, "web").await.unwrap(),
        vec!["10.1.0.1", "10.1.0.2"]
    );
    let e = &catalog_raw(&agent, "web").await.unwrap()[0];
    assert_eq!(e["Node"], "k8s-sync");
    assert_eq!(e["NodeMeta"]["external-source"], "kubernetes");
    assert_eq!(e["ServiceTags"], json!(["k8s"]));
    assert_eq!(e["ServiceMeta"]["external-k8s-ns"], "default");
    assert_eq!(e["ServiceMeta"]["port-http"], "80");
    assert_eq!(e["ServiceMeta"]["external-k8s-ref-kind"], "Pod");
    let health = agent.get("/v1/health/service/web").await.unwrap().json();
    let crit = health
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["Service"]["Address"] == "10.1.0.3")
        .unwrap();
    let check = crit["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == "Kubernetes Readiness Check")
        .unwrap();
    assert_eq!(check["Status"], "critical");
    assert_eq!(check["Output"], "Kubernetes health checks failing");
    assert!(check["CheckID"]
        .as_str()
        .unwrap()
        .starts_with("default/web-"));
    if dig {
        eventually(T, "two SRV records", || async {
            let srv = dig_srv(&agent, "web.service.consul");
            Ok((srv.len() == 2 && srv.iter().all(|l| l.contains(" 8080 "))).then_some(()))
        })
        .await;
    }

    // Scale up to four ready endpoints; the third becomes ready.
    let t0 = Instant::now();
    apply(manifest(
        "web",
        &[
            ("10.1.0.1", true),
            ("10.1.0.2", true),
            ("10.1.0.3", true),
            ("10.1.0.4", true),
        ],
    ));
    eventually(T, "four passing", || async {
        Ok((passing(&agent, "web").await?.len() == 4).then_some(()))
    })
    .await;
    eprintln!(
        "scale-up visible in health/service after {:?}",
        t0.elapsed()
    );
    if dig {
        eventually(T, "four SRV records", || async {
            Ok((dig_srv(&agent, "web.service.consul").len() == 4).then_some(()))
        })
        .await;
    }
    // Scale down and flip one to not ready.
    apply(manifest("web", &[("10.1.0.1", false), ("10.1.0.4", true)]));
    eventually(T, "two instances, one passing", || async {
        let c = catalog(&agent, "web").await?;
        let p = passing(&agent, "web").await?;
        Ok((c.len() == 2 && p == vec!["10.1.0.4"]).then_some(()))
    })
    .await;

    fake.kubectl(&kubectl, &["delete", "endpointslice", "web-1"], None)
        .unwrap();
    eventually(T, "no instances", || async {
        Ok(catalog(&agent, "web").await?.is_empty().then_some(()))
    })
    .await;
    fake.kubectl(&kubectl, &["delete", "service", "web"], None)
        .unwrap();
    let (code, body) = sync.get("/readyz").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "ready"));
    assert_eq!(sync.get("/healthz").await.unwrap().0, 200);
    assert_eq!(sync.get("/health/ready").await.unwrap().0, 204);
    let metrics = sync.get("/metrics").await.unwrap().1;
    assert!(
        metrics.contains("k8s_sync_registry_writes_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("k8s_sync_synced_instances{direction=\"to_consul\"}"),
        "{metrics}"
    );
}

/// What does this test do? Restarts k8s-sync while the catalog holds its instances and the
/// cluster changes underneath: the unchanged Service is never deregistered (watched every 20 ms
/// through the restart, and its instances keep their CreateIndex), the deleted one goes and
/// the new one comes. Then the registry restarts empty and k8s-sync registers everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_deletes_nothing_valid_and_keeps_nothing_stale() {
    let mut agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    for (svc, ips) in [
        ("keep", ["10.2.0.1", "10.2.0.2"]),
        ("gone", ["10.3.0.1", "10.3.0.2"]),
    ] {
        fake.apply(service("default", svc)).await.unwrap();
        fake.apply(slice(
            "default",
            svc,
            &format!("{svc}-1"),
            &[(ips[0], true), (ips[1], true)],
        ))
        .await
        .unwrap();
    }
    let mut sync = Sync::start(&agent, &fake, "k8s-sync", &[]).unwrap();
    eventually(T, "both synced", || async {
        Ok(
            (catalog(&agent, "keep").await?.len() == 2
                && catalog(&agent, "gone").await?.len() == 2)
                .then_some(()),
        )
    })
    .await;
    let indexes = |v: Vec<serde_json::Value>| {
        let mut x: Vec<u64> = v
            .iter()
            .map(|e| e["CreateIndex"].as_u64().unwrap())
            .collect();
        x.sort();
        x
    };
    let before = indexes(catalog_raw(&agent, "keep").await.unwrap());

    sync.proc.kill9();
    fake.delete("/api/v1/namespaces/default/services", "gone")
        .await
        .unwrap();
    fake.apply(service("default", "new")).await.unwrap();
    fake.apply(slice("default", "new", "new-1", &[("10.4.0.1", true)]))
        .await
        .unwrap();
    sync.restart("k8s-sync-2").unwrap();
    let deadline = Instant::now() + T;
    loop {
        assert_eq!(
            catalog(&agent, "keep").await.unwrap().len(),
            2,
            "a valid instance was deregistered"
        );
        if catalog(&agent, "gone").await.unwrap().is_empty()
            && catalog(&agent, "new").await.unwrap().len() == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not converge after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        indexes(catalog_raw(&agent, "keep").await.unwrap()),
        before,
        "instances were re-created"
    );

    // The registry (dev mode, in memory) restarts empty: the periodic resync re-registers.
    agent.restart().await.unwrap();
    eventually(T, "re-registered after the registry restart", || async {
        Ok(
            (catalog(&agent, "keep").await?.len() == 2 && catalog(&agent, "new").await?.len() == 1)
                .then_some(()),
        )
    })
    .await;
    assert!(catalog(&agent, "gone").await.unwrap().is_empty());
}

/// What does this test do? Two clusters (two fakes) sync into one registry with different
/// tags on the same default node name. Each registers its own Services, deleting a Service
/// in one cluster removes only that cluster's entries, and the other cluster's entries
/// survive several full resyncs and a restart of the first k8s-sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_with_different_tags_never_delete_each_other() {
    let agent = TestAgent::dev().await.unwrap();
    let fa = FakeApi::start().await.unwrap();
    let fb = FakeApi::start().await.unwrap();
    fa.apply(service("default", "web")).await.unwrap();
    fa.apply(slice("default", "web", "web-1", &[("10.5.0.1", true)]))
        .await
        .unwrap();
    fa.apply(service("default", "only-a")).await.unwrap();
    fa.apply(slice(
        "default",
        "only-a",
        "only-a-1",
        &[("10.5.1.1", true)],
    ))
    .await
    .unwrap();
    fb.apply(service("default", "web")).await.unwrap();
    fb.apply(slice("default", "web", "web-1", &[("10.6.0.1", true)]))
        .await
        .unwrap();
    let mut sa = Sync::start(&agent, &fa, "sync-a", &["-consul-k8s-tag=cluster-a"]).unwrap();
    let _sb = Sync::start(&agent, &fb, "sync-b", &["-consul-k8s-tag=cluster-b"]).unwrap();
    eventually(T, "both clusters' web", || async {
        Ok((catalog(&agent, "web").await?
            == vec![("10.5.0.1".into(), 8080), ("10.6.0.1".into(), 8080)])
        .then_some(()))
    })
    .await;
    fa.delete("/api/v1/namespaces/default/services", "web")
        .await
        .unwrap();
    eventually(T, "cluster a's web gone", || async {
        Ok((catalog(&agent, "web").await? == vec![("10.6.0.1".into(), 8080)]).then_some(()))
    })
    .await;
    sa.restart("sync-a-2").unwrap();
    // Several 2 s resyncs of both: b's entry stays, a's other service stays.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            catalog(&agent, "web").await.unwrap(),
            vec![("10.6.0.1".to_string(), 8080)]
        );
        assert_eq!(catalog(&agent, "only-a").await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tags: Vec<_> = catalog_raw(&agent, "web")
        .await
        .unwrap()
        .iter()
        .map(|e| e["ServiceTags"].clone())
        .collect();
    assert_eq!(tags, vec![json!(["cluster-b"])]);
}

/// What does this test do? Drops the fake's history so every watch gets an in-stream 410 and
/// must relist, and injects a Kubernetes API outage: the catalog never loses an instance, and
/// changes made after the relist still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relist_after_410_and_api_outage_delete_nothing() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    for i in 0..30 {
        let n = format!("svc{i}");
        fake.apply(service("default", &n)).await.unwrap();
        fake.apply(slice(
            "default",
            &n,
            &format!("{n}-1"),
            &[(&format!("10.7.{i}.1"), true)],
        ))
        .await
        .unwrap();
    }
    let sync = Sync::start(&agent, &fake, "k8s-sync", &[]).unwrap();
    let count = || async {
        let v = agent
            .get("/v1/catalog/node-services/k8s-sync")
            .await?
            .json();
        Ok::<usize, anyhow::Error>(v["Services"].as_array().map(Vec::len).unwrap_or(0))
    };
    eventually(T, "30 instances", || async {
        Ok((count().await? == 30).then_some(()))
    })
    .await;
    let lists_before = fake
        .call(reqwest::Method::GET, "/fake/requests", None)
        .await
        .unwrap();
    let _ = lists_before;
    fake.call(reqwest::Method::POST, "/fake/compact", None)
        .await
        .unwrap();
    fake.call(reqwest::Method::POST, "/fake/fail?count=15&code=503", None)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            count().await.unwrap(),
            30,
            "an instance vanished during the relist/outage"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    fake.apply(service("default", "late")).await.unwrap();
    fake.apply(slice("default", "late", "late-1", &[("10.8.0.1", true)]))
        .await
        .unwrap();
    eventually(T, "the change after the relist", || async {
        Ok((count().await? == 31).then_some(()))
    })
    .await;
    let log = reqwest::get(format!("{}/fake/requests", fake.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let relists = log
        .lines()
        .filter(|l| l.starts_with("GET /api/v1/services?") && !l.contains("watch="))
        .count();
    assert!(
        relists >= 2,
        "expected a relist of services after the 410:\n{log}"
    );
    assert!(log.contains("allowWatchBookmarks=true"), "{log}");
    assert!(
        sync.proc.log_text().contains("watch error"),
        "the outage was not seen"
    );
}

/// What does this test do? LoadBalancer (ingress set through the status subresource),
/// NodePort (node addresses from Nodes), externalIPs, ExternalName and an opted-out Service,
/// with -node-port-sync-type=ExternalFirst and -add-k8s-namespace-suffix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_types_end_to_end() {
    let agent = TestAgent::dev().await.unwrap();
    let fake = FakeApi::start().await.unwrap();
    fake.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}}),
    )
    .await
    .unwrap();
    let mut lb = service("default", "lb");
    lb["spec"]["type"] = json!("LoadBalancer");
    lb["metadata"]["annotations"] = json!({"consul.hashicorp.com/service-tags": "edge,public",
                                           "consul.hashicorp.com/service-weight": "7"});
    fake.apply(lb).await.unwrap();
    let mut np = service("default", "np");
    np["spec"]["type"] = json!("NodePort");
    np["spec"]["ports"][0]["nodePort"] = json!(30080);
    fake.apply(np).await.unwrap();
    fake.apply(slice("default", "np", "np-1", &[("10.9.0.1", true)]))
        .await
        .unwrap();
    let mut ext = service("default", "ext");
    ext["spec"]["externalIPs"] = json!(["203.0.113.5"]);
    fake.apply(ext).await.unwrap();
    fake.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "en", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}})).await.unwrap();
    let mut off = service("default", "off");
    off["metadata"]["annotations"] = json!({"consul.hashicorp.com/service-sync": "false"});
    fake.apply(off).await.unwrap();
    fake.apply(slice("default", "off", "off-1", &[("10.9.1.1", true)]))
        .await
        .unwrap();

    let _sync = Sync::start(
        &agent,
        &fake,
        "k8s-sync",
        &[
            "-node-port-sync-type=ExternalFirst",
            "-add-k8s-namespace-suffix",
        ],
    )
    .unwrap();
    eventually(T, "np and ext", || async {
        Ok(
            (catalog(&agent, "np-default").await? == vec![("192.168.0.1".into(), 30080)]
                && catalog(&agent, "ext-default").await? == vec![("203.0.113.5".into(), 80)])
            .then_some(()),
        )
    })
    .await;
    assert!(
        catalog(&agent, "lb-default").await.unwrap().is_empty(),
        "no ingress yet"
    );
    let (st, v) = fake
        .call(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/default/services/lb/status",
            Some((
                "application/merge-patch+json",
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
    eventually(T, "lb ingress", || async {
        Ok(
            (catalog(&agent, "lb-default").await? == vec![("198.51.100.9".into(), 80)])
                .then_some(()),
        )
    })
    .await;
    let e = &catalog_raw(&agent, "lb-default").await.unwrap()[0];
    assert_eq!(e["ServiceTags"], json!(["k8s", "edge", "public"]));
    assert_eq!(e["ServiceWeights"]["Passing"], 7);
    // Relabel: new tags and meta through the annotations (status is kept by a plain update).
    let mut lb2 = fake
        .call(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/services/lb",
            None,
        )
        .await
        .unwrap()
        .1;
    lb2["metadata"]["annotations"] = json!({"consul.hashicorp.com/service-tags": "internal",
                                            "consul.hashicorp.com/service-meta-team": "payments"});
    fake.apply(lb2).await.unwrap();
    eventually(T, "lb relabelled", || async {
        let e = catalog_raw(&agent, "lb-default").await?;
        Ok((e.len() == 1
            && e[0]["ServiceTags"] == json!(["k8s", "internal"])
            && e[0]["ServiceMeta"]["team"] == "payments"
            && e[0]["ServiceWeights"]["Passing"] == 1
            && e[0]["ServiceAddress"] == "198.51.100.9")
            .then_some(()))
    })
    .await;
    let services = agent.get("/v1/catalog/services").await.unwrap().json();
    assert!(
        services.get("en-default").is_none() && services.get("off-default").is_none(),
        "{services}"
    );
    // Opting out later removes the instances.
    let mut np2 = fake
        .call(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/services/np",
            None,
        )
        .await
        .unwrap()
        .1;
    np2["metadata"]["annotations"] = json!({"consul.hashicorp.com/service-sync": "false"});
    fake.apply(np2).await.unwrap();
    eventually(T, "np opted out", || async {
        Ok(catalog(&agent, "np-default")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await;
}
