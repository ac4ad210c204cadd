//! `/v1/snapshot` and `registry snapshot`: save on one agent, restore into a fresh one with
//! identical answers and indexes; blocking queries wake on a restore; corrupt archives are
//! refused without a change; the CLI save/inspect/restore round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Result};
use registry_tests::{eventually, registry_bin, Resp, TestAgent};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The reads whose answers (status, `X-Consul-Index`, body) a restore must reproduce.
const READS: &[&str] = &[
    "/v1/kv/?recurse",
    "/v1/kv/app?keys",
    "/v1/kv/app/config",
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/catalog/service/web",
    "/v1/catalog/service/db",
    "/v1/catalog/node/ext-1",
    "/v1/health/service/web",
    "/v1/session/list",
];

/// Fills an agent with KV entries (one deleted, one locked), external catalog nodes with
/// services and checks, an agent service and a session.
async fn seed(a: &TestAgent) -> Result<()> {
    a.kv_put("app/config", "v1").await?;
    a.kv_put("app/config", "v2").await?;
    a.put("/v1/kv/app/flags?flags=42", "f")
        .await?
        .assert_status(200);
    a.kv_put("app/gone", "x").await?;
    a.delete("/v1/kv/app/gone").await?.assert_status(200);
    for i in 0..20 {
        a.kv_put(&format!("bulk/{i:02}"), format!("value {i}"))
            .await?;
    }
    for (node, addr, svc, port) in [
        ("ext-1", "10.0.0.1", "web", 80),
        ("ext-2", "10.0.0.2", "web", 81),
        ("ext-3", "10.0.0.3", "db", 5432),
    ] {
        let body = json!({
            "Node": node,
            "Address": addr,
            "NodeMeta": {"rack": "r1"},
            "Service": {"ID": format!("{svc}-{node}"), "Service": svc, "Port": port, "Tags": ["v1"]},
            "Check": {"CheckID": format!("{svc}-alive"), "Name": "alive", "Status": "passing",
                      "ServiceID": format!("{svc}-{node}")},
        });
        a.put_json("/v1/catalog/register", &body)
            .await?
            .assert_status(200);
    }
    a.register_service(&json!({"Name": "web", "ID": "web-local", "Port": 8080}))
        .await?;
    let session = eventually(Duration::from_secs(10), "session create", || async {
        let r = a
            .put_json(
                "/v1/session/create",
                &json!({"Name": "seed", "LockDelay": "0s"}),
            )
            .await?;
        Ok((r.status == 200).then(|| r.json()["ID"].as_str().unwrap().to_string()))
    })
    .await?;
    let r = a
        .put(&format!("/v1/kv/app/leader?acquire={session}"), "me")
        .await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    Ok(())
}

/// Status, `X-Consul-Index` and body of each of [`READS`].
async fn answers(a: &TestAgent) -> Result<Vec<(String, u16, Option<String>, Value)>> {
    let mut out = Vec::new();
    for path in READS {
        let r = a.get(path).await?;
        let body = if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        };
        out.push((path.to_string(), r.status, r.header("X-Consul-Index"), body));
    }
    Ok(out)
}

#[track_caller]
fn assert_same(
    got: &[(String, u16, Option<String>, Value)],
    want: &[(String, u16, Option<String>, Value)],
) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{} differs after restore", w.0);
    }
}

async fn save(a: &TestAgent) -> Result<Resp> {
    let r = a.get("/v1/snapshot").await?;
    r.assert_status(200);
    Ok(r)
}

#[tokio::test]
async fn save_and_restore_into_a_fresh_agent() -> Result<()> {
    let a = TestAgent::dev().await?;
    seed(&a).await?;
    let want = answers(&a).await?;
    let snap = save(&a).await?;
    assert_eq!(snap.content_type(), "application/x-gzip");
    snap.assert_read_headers();
    assert_eq!(&snap.body[..2], &[0x1f, 0x8b], "a gzip stream");
    // The archive is the state at its X-Consul-Index: nothing was written since.
    let kv_index: u64 = want[0].2.as_ref().unwrap().parse()?;
    assert!(snap.index() >= kv_index);

    let b = TestAgent::dev().await?;
    b.kv_put("only/on/b", "x").await?;
    let r = b.put("/v1/snapshot", snap.body.clone()).await?;
    r.assert_status(200);
    assert!(r.body.is_empty(), "empty body: {:?}", r.text());

    let got = answers(&b).await?;
    assert_same(&got, &want);
    // The target's own data is gone.
    b.get("/v1/kv/only/on/b").await?.assert_status(404);

    // Writes after the restore get indexes above everything restored.
    b.kv_put("after/restore", "y").await?;
    let v = b.get_json("/v1/kv/after/restore").await?;
    let create = v[0]["CreateIndex"].as_u64().unwrap();
    assert!(
        create > snap.index(),
        "new write at {create}, restored index {}",
        snap.index()
    );

    // A save of the restored agent restores the same state again.
    let again = save(&b).await?;
    let c = TestAgent::dev().await?;
    c.put("/v1/snapshot", again.body).await?.assert_status(200);
    let v = c.get_json("/v1/kv/app/config").await?;
    assert_eq!(v, b.get_json("/v1/kv/app/config").await?);
    Ok(())
}

#[tokio::test]
async fn stale_and_dc_parameters() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("k", "v").await?;
    let r = a.get("/v1/snapshot?stale").await?;
    r.assert_status(200);
    assert_eq!(
        r.header("X-Consul-Effective-Consistency").as_deref(),
        Some("stale")
    );
    a.get("/v1/snapshot?dc=dc1").await?.assert_status(200);
    let r = a.get("/v1/snapshot?dc=elsewhere").await?;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "No path to datacenter");
    // A restore is never stale.
    let r = a.put("/v1/snapshot?stale", r.body).await?;
    r.assert_status(400);
    assert!(
        r.text().contains("stale not allowed for restore"),
        "{}",
        r.text()
    );
    Ok(())
}

#[tokio::test]
async fn restore_wakes_blocking_queries_holding_a_higher_index() -> Result<()> {
    let a = TestAgent::dev().await?;
    for i in 0..3 {
        a.kv_put(&format!("app/{i}"), "from a").await?;
    }
    let snap = save(&a).await?;
    let want = a.get("/v1/kv/app?recurse").await?;

    let b = TestAgent::dev().await?;
    for i in 0..40 {
        b.kv_put(&format!("app/{i}"), "from b").await?;
    }
    let held = b.get("/v1/kv/app?recurse").await?.index();
    assert!(
        held > want.index(),
        "the target is ahead ({held} > {})",
        want.index()
    );

    let parked = {
        let url = format!("{}/v1/kv/app?recurse&index={held}&wait=60s", b.base_url());
        let client = b.client().clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client.get(url).send().await?;
            let index = r.headers()["X-Consul-Index"].to_str()?.parse::<u64>()?;
            let body: Value = r.json().await?;
            anyhow::Ok((started.elapsed(), index, body))
        })
    };
    // Let the query park.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!parked.is_finished(), "the blocking query returned early");
    b.put("/v1/snapshot", snap.body.clone())
        .await?
        .assert_status(200);
    let (took, index, body) = tokio::time::timeout(Duration::from_secs(20), parked).await???;
    assert!(took < Duration::from_secs(20), "returned after {took:?}");
    assert_eq!(
        index,
        want.index(),
        "the restored index, below the held one"
    );
    assert_eq!(body, want.json());
    Ok(())
}

#[tokio::test]
async fn corrupt_archives_are_refused_and_change_nothing() -> Result<()> {
    let a = TestAgent::dev().await?;
    seed(&a).await?;
    let snap = save(&a).await?.body;

    let b = TestAgent::dev().await?;
    b.kv_put("app/config", "b's own").await?;
    let before = answers(&b).await?;

    let truncated = snap[..snap.len() / 2].to_vec();
    let mut flipped = snap.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let mut trailing = snap.clone();
    trailing.extend_from_slice(b"junk");
    for (what, body) in [
        ("truncated", truncated),
        ("bit-flipped", flipped),
        ("trailing junk", trailing),
        ("not an archive", b"hello".to_vec()),
        ("empty", Vec::new()),
    ] {
        let r = b.put("/v1/snapshot", body).await?;
        assert_eq!(r.status, 400, "{what}: {:?}", r.text());
        assert!(
            r.text().starts_with("Failed to restore snapshot: "),
            "{what}: {:?}",
            r.text()
        );
        assert_same(&answers(&b).await?, &before);
    }
    // The intact archive still restores.
    b.put("/v1/snapshot", snap).await?.assert_status(200);
    assert_same(&answers(&b).await?, &answers(&a).await?);
    Ok(())
}

#[tokio::test]
async fn oversized_restore_is_413() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = TestAgent::dev().await?;
    let mut sock = tokio::net::TcpStream::connect(a.http_addr()).await?;
    let head = format!(
        "PUT /v1/snapshot HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        a.http_addr(),
        300u64 * 1024 * 1024
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&[0u8; 4096]).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut reply)).await??;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("too large"), "{text}");
    Ok(())
}

/// Runs `registry ARGS...`; returns (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> Result<(i32, String, String)> {
    let out = tokio::process::Command::new(registry_bin()?)
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn cli_save_inspect_restore() -> Result<()> {
    let a = TestAgent::dev().await?;
    seed(&a).await?;
    let want = answers(&a).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("backup.snap");
    let file_arg = file.display().to_string();
    let a_addr = format!("-http-addr={}", a.http_addr());

    let (code, out, err) = cli(&["snapshot", "save", &a_addr, &file_arg]).await?;
    assert_eq!(code, 0, "save failed: {err}");
    let index: u64 = match out
        .trim()
        .strip_prefix("Saved and verified snapshot to index ")
    {
        Some(n) => n.parse()?,
        None => bail!("unexpected save output {out:?}"),
    };
    assert!(file.is_file());
    assert!(
        !dir.path().join("backup.snap.unverified").exists(),
        "the temporary file is renamed away"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(a.get("/v1/snapshot").await?.index(), index.max(1));

    let (code, out, err) = cli(&["snapshot", "inspect", &file_arg]).await?;
    assert_eq!(code, 0, "inspect failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(" ID  "), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Index", &index.to_string()]),
        "{out}"
    );
    for row in [
        "Version", "Term", "Size", "Type", "KVS", "Node", "Service", "Session", "Total",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().next() == Some(row)),
            "no {row} row: {out}"
        );
    }
    let kvs = lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some("KVS"))
        .unwrap();
    // 23 live keys after seeding (app/config, app/flags, app/leader, bulk/00..19).
    assert_eq!(kvs.split_whitespace().nth(1), Some("23"), "{out}");

    let (code, out, err) = cli(&["snapshot", "inspect", "-format=json", &file_arg]).await?;
    assert_eq!(code, 0, "inspect -format=json failed: {err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["Meta"]["Index"], index);
    assert_eq!(v["Meta"]["Version"], 1);
    let nodes = v["Stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "Node")
        .unwrap();
    assert_eq!(
        nodes["Count"], 4,
        "three external nodes and the agent's: {v}"
    );

    let b = TestAgent::dev().await?;
    let b_addr = format!("-http-addr={}", b.http_addr());
    let (code, out, err) = cli(&["snapshot", "restore", &b_addr, &file_arg]).await?;
    assert_eq!(code, 0, "restore failed: {err}");
    assert_eq!(out.trim(), "Restored snapshot");
    assert_same(&answers(&b).await?, &want);

    // A corrupt file: inspect and restore fail, and nothing changes.
    let mut bytes = std::fs::read(&file)?;
    bytes.truncate(bytes.len() - 100);
    let bad = dir.path().join("bad.snap");
    std::fs::write(&bad, &bytes)?;
    let bad_arg = bad.display().to_string();
    let (code, _, err) = cli(&["snapshot", "inspect", &bad_arg]).await?;
    assert_eq!(code, 1);
    assert!(err.starts_with("Error verifying snapshot: "), "{err}");
    let (code, _, err) = cli(&["snapshot", "restore", &b_addr, &bad_arg]).await?;
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "Error restoring snapshot: Unexpected response code: 400 (Failed to restore snapshot: "
        ),
        "{err}"
    );
    assert_same(&answers(&b).await?, &want);

    // Usage errors, Consul's way.
    let (code, _, err) = cli(&["snapshot", "save", &a_addr]).await?;
    assert_eq!((code, err.trim()), (1, "Missing FILE argument"));
    let (code, _, err) = cli(&["snapshot", "restore", &b_addr, "x", "y"]).await?;
    assert_eq!(
        (code, err.trim()),
        (1, "Too many arguments (expected 1, got 2)")
    );
    // No agent: save fails and leaves no file behind.
    let gone = dir.path().join("never.snap");
    let (code, _, err) = cli(&[
        "snapshot",
        "save",
        "-http-addr=127.0.0.1:1",
        &gone.display().to_string(),
    ])
    .await?;
    assert_eq!(code, 1);
    assert!(err.starts_with("Error saving snapshot: "), "{err}");
    assert!(!gone.exists());

    let (code, out, _) = cli(&["snapshot", "restore", "--help"]).await?;
    assert_eq!(code, 0);
    assert!(out.contains("-http-addr") && out.contains("FILE"), "{out}");
    Ok(())
}
