//! `/v1/config` and `registry config`: config entries stored through Raft, with Consul's kind
//! and name validation, CAS, blocking queries, and inclusion in snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{registry_bin, TestAgent};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn crud_cas_and_validation() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a
        .put_json(
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        )
        .await?;
    r.assert_status(200);
    assert_eq!(r.json(), json!(true));
    let r = a.get("/v1/config/service-defaults/web").await?;
    r.assert_status(200).assert_read_headers();
    let e = r.json();
    assert_eq!(e["Kind"], "service-defaults");
    assert_eq!(e["Name"], "web");
    assert_eq!(e["Protocol"], "http");
    let modify = e["ModifyIndex"].as_u64().unwrap();
    assert_eq!(e["CreateIndex"].as_u64().unwrap(), modify);
    assert_eq!(r.index(), modify);

    // snake_case input, as Terraform and HCL files write it.
    a.put_json(
        "/v1/config",
        &json!({"kind": "proxy-defaults", "name": "global", "config": {"local_connect_timeout_ms": 1000},
                "mesh_gateway": {"mode": "local"}}),
    )
    .await?
    .assert_status(200);
    let p = a.get_json("/v1/config/proxy-defaults/global").await?;
    assert_eq!(p["Config"]["local_connect_timeout_ms"], 1000);
    assert_eq!(p["MeshGateway"]["Mode"], "local");

    // CAS.
    let upd = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"});
    let r = a
        .put_json(&format!("/v1/config?cas={}", modify + 100), &upd)
        .await?;
    assert_eq!(r.json(), json!(false));
    let r = a.put_json("/v1/config?cas=0", &upd).await?;
    assert_eq!(r.json(), json!(false), "cas=0 only creates");
    let r = a
        .put_json(&format!("/v1/config?cas={modify}"), &upd)
        .await?;
    assert_eq!(r.json(), json!(true));
    let e = a.get_json("/v1/config/service-defaults/web").await?;
    assert_eq!(e["Protocol"], "grpc");
    assert_eq!(e["CreateIndex"].as_u64().unwrap(), modify);
    let modify2 = e["ModifyIndex"].as_u64().unwrap();
    assert!(modify2 > modify);

    // List.
    a.put_json(
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "api"}),
    )
    .await?
    .assert_status(200);
    let list = a.get_json("/v1/config/service-defaults").await?;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "web"]);
    let filtered = a
        .get_json("/v1/config/service-defaults?filter=Protocol%20%3D%3D%20grpc")
        .await?;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(a.get_json("/v1/config/mesh").await?, json!([]));

    // Validation, as Consul words it.
    for (body, want) in [
        (
            json!({"Kind": "nope", "Name": "x"}),
            "invalid config entry kind: nope",
        ),
        (
            json!({"Name": "x"}),
            "Payload does not contain a kind/Kind key at the top level",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "other"}),
            "only \"global\" is supported",
        ),
        (json!({"Kind": "service-defaults"}), "Name is required"),
        (
            json!({"Kind": "service-splitter", "Name": "s", "Splits": [{"Weight": 60}, {"Weight": 30}]}),
            "the sum of all split weights must be 100",
        ),
    ] {
        let r = a.put_json("/v1/config", &body).await?;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(want), "{body}: {}", r.text());
    }
    let r = a.get("/v1/config/nope").await?;
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "invalid config entry kind: nope");
    let r = a.get("/v1/config/service-defaults/missing").await?;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "Config entry not found for \"service-defaults\" / \"missing\""
    );
    // mesh is a singleton named "mesh".
    a.put_json(
        "/v1/config",
        &json!({"Kind": "mesh", "TransparentProxy": {"MeshDestinationsOnly": true}}),
    )
    .await?
    .assert_status(200);
    assert_eq!(
        a.get_json("/v1/config/mesh/mesh").await?["TransparentProxy"]["MeshDestinationsOnly"],
        true
    );

    // Delete, with and without CAS.
    let r = a.delete("/v1/config/service-defaults/web?cas=1").await?;
    assert_eq!(r.json(), json!(false));
    let r = a
        .delete(&format!("/v1/config/service-defaults/web?cas={modify2}"))
        .await?;
    assert_eq!(r.json(), json!(true));
    let r = a.delete("/v1/config/service-defaults/api").await?;
    r.assert_status(200);
    assert_eq!(r.json(), json!({}));
    assert_eq!(a.get_json("/v1/config/service-defaults").await?, json!([]));
    Ok(())
}

#[tokio::test]
async fn blocking_list_wakes_on_a_write_of_its_kind() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.put_json(
        "/v1/config",
        &json!({"Kind": "service-resolver", "Name": "db"}),
    )
    .await?
    .assert_status(200);
    let r = a.get("/v1/config/service-resolver").await?;
    let index = r.index();
    let url = format!(
        "{}/v1/config/service-resolver?index={index}&wait=20s",
        a.base_url()
    );
    let client = a.client().clone();
    let t0 = Instant::now();
    let waiter = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A write of another kind does not wake it.
    a.put_json(
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "db"}),
    )
    .await?
    .assert_status(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "woke on another kind");
    a.put_json(
        "/v1/config",
        &json!({"Kind": "service-resolver", "Name": "cache"}),
    )
    .await?
    .assert_status(200);
    let r = waiter.await??;
    assert!(t0.elapsed() < Duration::from_secs(10));
    let new_index: u64 = r.headers()["x-consul-index"].to_str()?.parse()?;
    assert!(new_index > index);
    let v: Value = r.json().await?;
    assert_eq!(v.as_array().unwrap().len(), 2);
    Ok(())
}

#[tokio::test]
async fn cli_write_read_list_delete_and_snapshots() -> Result<()> {
    let a = TestAgent::dev().await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("web.hcl");
    std::fs::write(
        &file,
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"http\"\n",
    )?;
    let cli = |args: &[&str]| {
        let mut full: Vec<String> = vec!["config".into()];
        full.push(args[0].into());
        full.push(format!("-http-addr={}", a.http_addr()));
        full.extend(args[1..].iter().map(|s| s.to_string()));
        std::process::Command::new(registry_bin().unwrap())
            .args(&full)
            .output()
            .unwrap()
    };
    let out = cli(&["write", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Config entry written: service-defaults/web"
    );
    let out = cli(&["read", "-kind", "service-defaults", "-name", "web"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["Protocol"], "http");
    let out = cli(&["list", "-kind", "service-defaults"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web");
    let out = cli(&["write", "-cas", "-modify-index=1", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Config entry not updated: service-defaults/web"));
    let out = cli(&["read", "-kind", "service-defaults"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Must specify the -name parameter"));

    // Snapshots carry config entries.
    let snap = a.get("/v1/snapshot").await?;
    snap.assert_status(200);
    let out = cli(&["delete", "-kind", "service-defaults", "-name", "web"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Config entry deleted: service-defaults/web"
    );
    assert_eq!(a.get("/v1/config/service-defaults/web").await?.status, 404);
    a.put("/v1/snapshot", snap.body.clone())
        .await?
        .assert_status(200);
    let back = a.get_json("/v1/config/service-defaults/web").await?;
    assert_eq!(back["Protocol"], "http");
    Ok(())
}
