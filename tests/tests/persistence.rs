//! A `-data-dir` server keeps everything across SIGKILL and restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Result};
use registry_tests::{run_concurrently, unb64, TestAgent};
use serde_json::json;

const N: usize = 10_000;
const CONCURRENCY: usize = 32;

fn value_for(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 17))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_and_services_survive_kill9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = TestAgent::with_data_dir(dir.path().join("data")).await?;

    let start = Instant::now();
    let agent = &a;
    run_concurrently(N, CONCURRENCY, |i| async move {
        agent.kv_put(&format!("bulk/{i:05}"), value_for(i)).await
    })
    .await?;
    eprintln!("{N} KV writes in {:?}", start.elapsed());

    let start = Instant::now();
    run_concurrently(N, CONCURRENCY, |i| async move {
        agent
            .register_service(&json!({
                "Name": format!("bulk-{}", i % 100),
                "ID": format!("bulk-{i:05}"),
                "Port": 10_000 + i,
                "Tags": [format!("t{}", i % 7)],
                "Meta": {"i": i.to_string()}
            }))
            .await
    })
    .await?;
    eprintln!("{N} service registrations in {:?}", start.elapsed());

    let kv_index_before = a.get("/v1/kv/bulk/?recurse").await?.index();
    verify(&a).await?;

    a.kill9();
    let start = Instant::now();
    a.restart().await?;
    eprintln!("restart after SIGKILL took {:?}", start.elapsed());

    verify(&a).await?;
    let r = a.get("/v1/kv/bulk/?recurse").await?;
    r.assert_status(200).assert_read_headers();
    assert!(
        r.index() >= kv_index_before,
        "index went backwards across restart: {kv_index_before} -> {}",
        r.index()
    );

    // Still writable after the restart, with indexes moving forward.
    a.kv_put("after/restart", "ok").await?;
    let v = a.get_json("/v1/kv/after/restart").await?;
    assert!(v[0]["ModifyIndex"].as_u64().unwrap() > kv_index_before);
    Ok(())
}

async fn verify(a: &TestAgent) -> Result<()> {
    // Every key with its exact value.
    let v = a.get_json("/v1/kv/bulk/?recurse").await?;
    let entries = v.as_array().unwrap();
    if entries.len() != N {
        bail!("expected {N} keys, found {}", entries.len());
    }
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["Key"], format!("bulk/{i:05}").as_str());
        assert_eq!(
            unb64(e["Value"].as_str().unwrap()),
            value_for(i).as_bytes(),
            "value of bulk/{i:05}"
        );
    }

    // Every service in the catalog, under the right names with the right ports.
    let names = a.get_json("/v1/catalog/services").await?;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for s in 0..100 {
        let name = format!("bulk-{s}");
        assert!(
            names.get(&name).is_some(),
            "{name} missing from catalog/services"
        );
        let list = a.get_json(&format!("/v1/catalog/service/{name}")).await?;
        for e in list.as_array().unwrap() {
            let id = e["ServiceID"].as_str().unwrap().to_string();
            let port = e["ServicePort"].as_u64().unwrap();
            seen.insert(id, port);
        }
    }
    if seen.len() != N {
        bail!(
            "expected {N} catalog service instances, found {}",
            seen.len()
        );
    }
    for (id, port) in &seen {
        let i: u64 = id.trim_start_matches("bulk-").parse()?;
        assert_eq!(*port, 10_000 + i, "port of {id}");
    }
    // And in the agent's local state (the agent persists its own registrations).
    let v = a.get_json("/v1/agent/services").await?;
    let local: BTreeSet<String> = v
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("bulk-"))
        .cloned()
        .collect();
    if local.len() != N {
        bail!("expected {N} local services, found {}", local.len());
    }

    Ok(())
}

#[tokio::test]
async fn small_state_survives_restart_with_same_indexes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = TestAgent::with_data_dir(dir.path().join("data")).await?;
    a.kv_put("p/one", "1").await?;
    let r = a
        .put("/v1/kv/p/flags?flags=3304740253564472344", "f")
        .await?;
    r.assert_status(200);
    a.register_service(&json!({"Name": "keep", "Port": 1234, "Check": {"TTL": "60s"}}))
        .await?;
    a.put_json(
        "/v1/catalog/register",
        &json!({"Node": "ext", "Address": "127.0.0.8", "Service": {"Service": "extsvc", "Port": 1}}),
    )
    .await?
    .assert_status(200);
    let before = a.get_json("/v1/kv/p/?recurse").await?;

    a.kill9();
    a.restart().await?;

    let after = a.get_json("/v1/kv/p/?recurse").await?;
    assert_eq!(
        before, after,
        "KV entries (values, flags, indexes) unchanged"
    );
    assert_eq!(after[0]["Key"], "p/flags");
    assert_eq!(after[0]["Flags"].as_u64(), Some(3304740253564472344));
    let v = a.get_json("/v1/catalog/service/extsvc").await?;
    assert_eq!(v[0]["Node"], "ext");
    assert_eq!(v[0]["Address"], "127.0.0.8");
    let v = a.get_json("/v1/agent/services").await?;
    assert_eq!(v["keep"]["Port"], 1234, "agent services after restart: {v}");
    let v = a.get_json("/v1/agent/checks").await?;
    assert!(
        v.get("service:keep").is_some(),
        "agent checks after restart: {v}"
    );
    let v = a.get_json("/v1/catalog/service/keep").await?;
    assert_eq!(v[0]["ServicePort"], 1234, "catalog keep after restart: {v}");
    Ok(())
}
