//! User events: `PUT /v1/event/fire/:name` (with `?node`, `?service`, `?tag` filters) and
//! `GET /v1/event/list` (with `?name` and blocking on the index derived from event IDs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{b64, TestAgent};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Consul's `uuidToUint64`.
fn uuid_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    u64::from_str_radix(&hex[..16], 16).unwrap() ^ u64::from_str_radix(&hex[16..], 16).unwrap()
}

#[tokio::test]
async fn fire_and_list() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/event/list").await?;
    r.assert_status(200);
    assert_eq!(r.json(), json!([]));
    assert_eq!(r.index(), 1, "an empty list still has a non-zero index");

    let r = a.put("/v1/event/fire/deploy", "v1.2.3").await?;
    r.assert_status(200);
    let ev = r.json();
    let keys: Vec<&str> = ev.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "ID",
            "Name",
            "Payload",
            "NodeFilter",
            "ServiceFilter",
            "TagFilter",
            "Version",
            "LTime"
        ]
    );
    assert_eq!(ev["Name"], "deploy");
    assert_eq!(ev["Payload"], b64(b"v1.2.3").as_str());
    assert_eq!(ev["Version"], 1);
    assert_eq!(ev["LTime"], 0);
    let id = ev["ID"].as_str().unwrap().to_string();

    a.put("/v1/event/fire/restart", Vec::new())
        .await?
        .assert_status(200);
    let r = a.get("/v1/event/list").await?;
    let list = r.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["deploy", "restart"]);
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(list[1]["Payload"], Value::Null);
    assert!(list[1]["LTime"].as_u64().unwrap() > list[0]["LTime"].as_u64().unwrap());
    assert_eq!(r.index(), uuid_index(list[1]["ID"].as_str().unwrap()));

    let r = a.get("/v1/event/list?name=deploy").await?;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert_eq!(r.index(), uuid_index(&id));
    Ok(())
}

#[tokio::test]
async fn list_blocks_until_a_new_event() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.put("/v1/event/fire/first", Vec::new())
        .await?
        .assert_status(200);
    let index = a.get("/v1/event/list").await?.index();

    let t0 = Instant::now();
    let r = a
        .get(&format!("/v1/event/list?index={index}&wait=300ms"))
        .await?;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.index(), index, "a timeout keeps the index");

    let t0 = Instant::now();
    let path = format!("/v1/event/list?index={index}&wait=10s");
    let (r, _) = tokio::join!(a.get(&path), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.put("/v1/event/fire/second", Vec::new()).await.unwrap();
    });
    let r = r?;
    assert!(t0.elapsed() < Duration::from_secs(8));
    assert_ne!(r.index(), index);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    Ok(())
}

#[tokio::test]
async fn filters() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.register_service(&json!({"Name": "web", "ID": "web1", "Tags": ["blue", "v2"]}))
        .await?;
    // Events that do not match this agent are fired but not kept here.
    for (q, kept) in [
        ("node=^no-such-node$", false),
        (&format!("node={}", a.node) as &str, true),
        ("service=^db$", false),
        ("service=we.&tag=^blue$", true),
        ("service=web&tag=green", false),
    ] {
        let r = a.put(&format!("/v1/event/fire/f?{q}"), Vec::new()).await?;
        r.assert_status(200);
        let id = r.json()["ID"].as_str().unwrap().to_string();
        let list = a.get_json("/v1/event/list?name=f").await?;
        let has = list
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ID"] == id.as_str());
        assert_eq!(has, kept, "{q}");
    }
    let r = a.put("/v1/event/fire/f?tag=x", Vec::new()).await?;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "Cannot provide tag filter without service filter");
    let r = a.put("/v1/event/fire/", Vec::new()).await?;
    assert_eq!((r.status, r.text()), (400, "Missing name".to_string()));
    let r = a.put("/v1/event/fire/big", vec![b'x'; 600]).await?;
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("user event exceeds"), "{}", r.text());
    Ok(())
}
