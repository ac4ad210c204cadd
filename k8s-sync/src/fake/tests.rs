//! The fake against the real kube-runtime watcher (in process, over loopback HTTP): paging
//! with `continue`, the list resourceVersion, replay, BOOKMARKs, the in-stream 410 and the
//! relist it causes, watch timeouts, and optimistic concurrency on update.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::json;

use super::{router, Fake, FakeOptions};

async fn serve(opts: FakeOptions) -> (Fake, kube::Client) {
    let fake = Fake::new(opts);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = router(fake.clone());
    tokio::spawn(async move { axum::serve(l, app).await });
    let mut cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
    cfg.default_namespace = "default".into();
    (fake, kube::Client::try_from(cfg).unwrap())
}

fn svc(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"ports": [{"port": 80}]}})
}

fn name(e: &Event<Service>) -> String {
    match e {
        Event::Apply(s) | Event::Delete(s) | Event::InitApply(s) => {
            s.metadata.name.clone().unwrap_or_default()
        }
        Event::Init => "<init>".into(),
        Event::InitDone => "<done>".into(),
    }
}

async fn next(
    w: &mut futures::stream::BoxStream<'static, watcher::Result<Event<Service>>>,
) -> String {
    name(
        &tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
}

#[tokio::test]
async fn watcher_pages_replays_bookmarks_and_relists_after_410() {
    let (fake, client) = serve(FakeOptions {
        bookmark_interval: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await;
    for n in ["a", "b", "c"] {
        fake.create(0, "default", svc(n)).unwrap();
    }
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut w = watcher::watcher(api.clone(), watcher::Config::default().page_size(2)).boxed();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next(&mut w).await);
    }
    assert_eq!(got, ["<init>", "a", "b", "c", "<done>"]);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(svc("d")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut w).await, "d");
    // Bookmarks flow (every 100 ms) and are consumed silently; then history is dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.compact();
    fake.create(0, "default", svc("e")).unwrap();
    // The in-stream 410 surfaces as an error, then a full relist follows.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&"<done>".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relist: {seen:?}"
        );
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
        {
            Ok(e) => seen.push(name(&e)),
            Err(e) => seen.push(format!("error: {e}")),
        }
    }
    assert!(
        seen.iter().any(|s| s.contains("too old resource version")),
        "{seen:?}"
    );
    let tail: Vec<_> = seen
        .iter()
        .skip_while(|s| *s != "<init>")
        .cloned()
        .collect();
    assert_eq!(tail, ["<init>", "a", "b", "c", "d", "e", "<done>"]);
    let log = fake.st.lock().requests.join("\n");
    assert!(log.contains("limit=2&continue="), "{log}");
    assert!(log.contains("allowWatchBookmarks=true"), "{log}");
}

async fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_timeout_ends_the_stream_and_the_watcher_resumes() {
    let (fake, client) = serve(FakeOptions {
        max_watch: Duration::from_millis(300),
        ..FakeOptions::default()
    })
    .await;
    let api: Api<Service> = Api::namespaced(client, "default");
    // As in k8s-sync, errors back off (a watcher without backoff retries in a hot loop).
    let mut w = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = w.next().await {
            if let Ok(e) = e {
                let _ = tx.send(name(&e));
            }
        }
    });
    assert_eq!(recv(&mut rx).await, "<init>");
    assert_eq!(recv(&mut rx).await, "<done>");
    // Watches time out every 300 ms and are reopened from the last resourceVersion; a change
    // after several of them arrives once, with no relist.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    fake.create(0, "default", svc("late")).unwrap();
    assert_eq!(recv(&mut rx).await, "late");
    let log = fake.st.lock().requests.clone();
    let watches = log.iter().filter(|l| l.contains("watch=true")).count();
    let lists = log.iter().filter(|l| !l.contains("watch=true")).count();
    assert!(watches >= 3, "{log:?}");
    assert_eq!(lists, 1, "{log:?}");
}

#[tokio::test]
async fn update_with_a_stale_resource_version_conflicts() {
    let (_fake, client) = serve(FakeOptions::default()).await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc("x")).unwrap(),
        )
        .await
        .unwrap();
    assert!(created
        .spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .as_deref()
        .unwrap()
        .starts_with("10.96."));
    let mut a = created.clone();
    a.metadata.labels = Some([("v".to_string(), "1".to_string())].into());
    api.replace("x", &PostParams::default(), &a).await.unwrap();
    let err = api
        .replace("x", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(e) if e.code == 409));
    let err = api
        .create(&PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(e) if e.code == 409 && e.reason == "AlreadyExists"));
    let err = api.get("nope").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(e) if e.code == 404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_ends_at_timeout() {
    let fake = Fake::new(FakeOptions {
        max_watch: Duration::from_millis(300),
        ..FakeOptions::default()
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = router(fake.clone());
    tokio::spawn(async move { axum::serve(l, app).await });
    let t0 = std::time::Instant::now();
    let r = reqwest::Client::new().get(format!("http://{addr}/api/v1/namespaces/default/services?watch=true&resourceVersion=4&allowWatchBookmarks=true&timeoutSeconds=290")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "");
    assert!(t0.elapsed() < Duration::from_secs(2));
}
