//! The web UI's HTTP side: `GET /` redirecting to `ui_config.content_path`, the UI off
//! (`-ui=false`), a content path from a config file, and `/v1/internal/ui/*` summaries as
//! blocking queries. The pages themselves are tested in a browser by tests/ui/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::TestAgent;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(a: &TestAgent, path: &str) -> Result<reqwest::Response> {
    Ok(no_redirects()
        .get(format!("{}{path}", a.base_url()))
        .send()
        .await?)
}

#[tokio::test]
async fn root_redirects_to_the_ui_which_serves_every_deep_link() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = get(&a, "/").await?;
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/ui/");
    for path in [
        "/ui/",
        "/ui/dc1/services/web",
        "/ui/dc1/kv/a/b/edit",
        "/ui/dc1/sessions",
    ] {
        let r = get(&a, path).await?;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let body = r.text().await?;
        assert!(body.contains(r#"data-datacenter="dc1""#), "{body}");
    }
    // An API path that does not exist is still the API's 404.
    assert_eq!(a.get("/v1/nope").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn with_the_ui_off_root_says_so_and_nothing_is_served() -> Result<()> {
    let a = TestAgent::dev_with_args(&["-ui=false"]).await?;
    let r = get(&a, "/").await?;
    assert_eq!(r.status(), 200, "an HTTP check on the root address passes");
    assert!(r.text().await?.contains("UI disabled"));
    assert_eq!(get(&a, "/ui/").await?.status(), 404);
    Ok(())
}

#[tokio::test]
async fn content_path_comes_from_ui_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("ui.hcl");
    std::fs::write(
        &file,
        "ui_config {\n  enabled = true\n  content_path = \"console\"\n}\n",
    )?;
    let a = TestAgent::dev_with_args(&["-config-file", file.to_str().unwrap()]).await?;
    let r = get(&a, "/").await?;
    assert_eq!(r.headers()["location"], "/console/");
    let r = get(&a, "/console/dc1/nodes").await?;
    assert_eq!(r.status(), 200);
    let body = r.text().await?;
    assert!(body.contains("data-assets=\"/console/assets/"), "{body}");
    assert_eq!(get(&a, "/ui/").await?.status(), 404);
    drop(a);
    // The command-line flag does the same.
    let a = TestAgent::dev_with_args(&["-ui-content-path", "/ops/"]).await?;
    assert_eq!(get(&a, "/").await?.headers()["location"], "/ops/");
    assert_eq!(get(&a, "/ops/dc1/kv/").await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn service_summaries_count_checks_and_block_until_they_change() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({
        "Name": "web", "ID": "web-1", "Port": 80, "Tags": ["b", "a"],
        "Check": {"CheckID": "web-1-ttl", "TTL": "10m"}
    }))
    .await?;
    a.register_service(&json!({"Name": "web", "ID": "web-2", "Port": 81, "Tags": ["a"]}))
        .await?;
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "other", "Address": "10.0.0.9",
                    "Service": {"Service": "web", "ID": "web-3", "Port": 82},
                    "Check": {"CheckID": "disk", "Name": "disk", "Status": "warning"}}),
        )
        .await?;
    r.assert_status(200);
    let summary = |list: &Value| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == "web")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let r = a.get("/v1/internal/ui/services").await?;
    r.assert_status(200).assert_read_headers();
    let web = summary(&r.json());
    assert_eq!(web["InstanceCount"], 3);
    assert_eq!(web["Tags"], json!(["a", "b"]));
    assert_eq!(web["Datacenter"], "dc1");
    assert_eq!(web["Nodes"].as_array().unwrap().len(), 2);
    // The agent's serfHealth counts once for its two instances; the TTL check starts
    // critical; the other node's check is warning.
    assert_eq!(
        (
            &web["ChecksPassing"],
            &web["ChecksWarning"],
            &web["ChecksCritical"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{web}"
    );

    // A blocking query returns when a check changes, not before.
    let index = r.index();
    let url = format!("/v1/internal/ui/services?index={index}&wait=10s");
    let started = Instant::now();
    let waiter = {
        let client = a.client().clone();
        let url = format!("{}{url}", a.base_url());
        tokio::spawn(async move { client.get(url).send().await?.json::<Value>().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "returned before any change");
    a.put("/v1/agent/check/pass/web-1-ttl", "")
        .await?
        .assert_status(200);
    let after = summary(&waiter.await??);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(after["ChecksPassing"], 2, "{after}");
    assert_eq!(after["ChecksCritical"], 0, "{after}");

    let nodes = a.get_json("/v1/internal/ui/nodes").await?;
    let other = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Node"] == "other")
        .unwrap();
    assert_eq!(other["Services"][0]["ID"], "web-3");
    assert_eq!(other["Checks"][0]["Status"], "warning");
    let node = a
        .get_json(&format!("/v1/internal/ui/node/{}", a.node))
        .await?;
    assert_eq!(node["Node"], a.node);
    assert_eq!(
        node["Services"].as_array().unwrap().len(),
        3,
        "consul, web-1, web-2"
    );
    let missing = a.get("/v1/internal/ui/node/no-such-node").await?;
    assert_eq!(missing.status, 404);
    assert!(missing.header("X-Consul-Index").is_some(), "blockable 404");
    Ok(())
}
