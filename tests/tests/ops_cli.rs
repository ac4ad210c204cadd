//! The everyday CLI verbs against a real agent: `kv export`/`kv import` round trips,
//! `watch` printing and running its handler, `monitor` streaming the log, `debug` writing its
//! archive and `version -format=json`, with Consul's outputs and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{b64, registry_bin, unb64, TestAgent};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Runs `registry <words...> -http-addr=<agent> <rest...>` where `words` is the number of
/// command words; (exit code, stdout, stderr).
async fn cli(a: &TestAgent, words: usize, args: &[&str]) -> Result<(i32, String, String)> {
    let mut all: Vec<String> = args[..words].iter().map(|s| s.to_string()).collect();
    all.push(format!("-http-addr={}", a.http_addr()));
    all.extend(args[words..].iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new(registry_bin()?)
        .args(&all)
        .stdin(Stdio::null())
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn kv_export_import_round_trips_flags_and_binary_values() -> Result<()> {
    let a = TestAgent::dev().await?;
    let binary: Vec<u8> = (0u8..=255).collect();
    a.put("/v1/kv/app/config/blob", binary.clone())
        .await?
        .assert_status(200);
    a.put("/v1/kv/app/config/flagged?flags=42", "on")
        .await?
        .assert_status(200);
    a.put("/v1/kv/app/folder/", Vec::new())
        .await?
        .assert_status(200);
    a.put("/v1/kv/other", "x").await?.assert_status(200);

    let (code, out, err) = cli(&a, 2, &["kv", "export", "app/"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("[\n\t{\n\t\t\"key\": \"app/config/blob\""),
        "{out}"
    );
    let exported: Value = serde_json::from_str(&out)?;
    assert_eq!(
        exported,
        json!([
            {"key": "app/config/blob", "flags": 0, "value": b64(&binary)},
            {"key": "app/config/flagged", "flags": 42, "value": b64(b"on")},
            {"key": "app/folder/", "flags": 0, "value": ""},
        ])
    );

    // Import under a new prefix, from a file; every key is printed.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.json");
    std::fs::write(&file, &out)?;
    let at = format!("@{}", file.display());
    let (code, out2, err) = cli(&a, 2, &["kv", "import", "-prefix=copy", &at]).await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out2,
        "Imported: copy/app/config/blob\nImported: copy/app/config/flagged\nImported: copy/app/folder/\n"
    );
    let blob = a.get_json("/v1/kv/copy/app/config/blob").await?;
    assert_eq!(unb64(blob[0]["Value"].as_str().unwrap()), binary);
    let flagged = a.get_json("/v1/kv/copy/app/config/flagged").await?;
    assert_eq!(flagged[0]["Flags"], 42);
    a.get("/v1/kv/copy/app/folder/").await?.assert_status(200);

    // Export of the copy equals the original, moved.
    let (_, out3, _) = cli(&a, 2, &["kv", "export", "copy/"]).await?;
    let copy: Value = serde_json::from_str(&out3)?;
    assert_eq!(copy.as_array().unwrap().len(), 3);
    assert_eq!(copy[0]["value"], exported[0]["value"]);

    // Standard input, and Consul's failures.
    let mut child = tokio::process::Command::new(registry_bin()?)
        .args([
            "kv",
            "import",
            &format!("-http-addr={}", a.http_addr()),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(br#"[{"key":"stdin/k","flags":0,"value":"dg=="}]"#)
            .await?;
    }
    let done = child.wait_with_output().await?;
    assert_eq!(done.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&done.stdout), "Imported: stdin/k\n");
    assert_eq!(a.get("/v1/kv/stdin/k?raw").await?.text(), "v");
    let (code, _, err) = cli(&a, 2, &["kv", "import", "not json"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("Cannot unmarshal data"), "{err}");
    let (code, _, err) = cli(&a, 2, &["kv", "import"]).await?;
    assert_eq!((code, err.trim()), (1, "Error! Missing DATA argument"));
    let (code, out, _) = cli(&a, 2, &["kv", "export", "nothing/here"]).await?;
    assert_eq!((code, out.as_str()), (0, "[]\n"));
    Ok(())
}

#[tokio::test]
async fn kv_get_lists_keys_recursively_and_in_detail() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("t/a", "1").await?;
    a.kv_put("t/sub/b", "2").await?;
    let (code, out, _) = cli(&a, 2, &["kv", "get", "-keys", "t/"]).await?;
    assert_eq!((code, out.as_str()), (0, "t/a\nt/sub/\n"));
    let (_, out, _) = cli(&a, 2, &["kv", "get", "-keys", "-separator=", "t/"]).await?;
    assert_eq!(out, "t/a\nt/sub/b\n");
    let (_, out, _) = cli(&a, 2, &["kv", "get", "-recurse", "t/"]).await?;
    assert_eq!(out, "t/a:1\nt/sub/b:2\n");
    let (_, out, _) = cli(&a, 2, &["kv", "get", "-detailed", "t/a"]).await?;
    assert!(out.contains("Key              t/a\n"), "{out}");
    assert!(out.ends_with("Value            1\n"), "{out}");
    let (code, _, err) = cli(&a, 2, &["kv", "get", "t/missing"]).await?;
    assert_eq!(
        (code, err.trim()),
        (1, "Error! No key exists at: t/missing")
    );
    Ok(())
}

#[tokio::test]
async fn watch_prints_once_without_a_handler_and_validates_flags() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("w/key", "hello").await?;
    let (code, out, err) = cli(&a, 1, &["watch", "-type=key", "-key=w/key"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("{\n    \""), "four-space indent: {out}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["Key"], "w/key");
    assert_eq!(unb64(v["Value"].as_str().unwrap()), b"hello");

    let (code, out, _) = cli(&a, 1, &["watch", "-type=key", "-key=w/none"]).await?;
    assert_eq!((code, out.as_str()), (0, "null\n"));
    let (code, out, _) = cli(&a, 1, &["watch", "-type=services"]).await?;
    assert_eq!(code, 0);
    assert!(
        serde_json::from_str::<Value>(&out)?["consul"].is_array(),
        "{out}"
    );

    let (code, _, err) = cli(&a, 1, &["watch", "-type=key"]).await?;
    assert_eq!(
        (code, err.trim()),
        (1, "Error: Must specify a single key to watch")
    );
    let (code, _, err) = cli(&a, 1, &["watch"]).await?;
    assert_eq!((code, err.trim()), (1, "Error: Must specify watch type"));
    let (code, _, err) = cli(&a, 1, &["watch", "-type=bogus"]).await?;
    assert_eq!(
        (code, err.trim()),
        (1, "Error: Unsupported watch type: bogus")
    );
    // An agent that does not answer.
    let out = tokio::process::Command::new(registry_bin()?)
        .args(["watch", "-http-addr=127.0.0.1:1", "-type=nodes"])
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error connecting to Consul agent"));
    Ok(())
}

/// Waits until the file has at least `n` lines; its lines.
async fn wait_lines(path: &std::path::Path, n: usize) -> Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = lines(path);
        if l.len() >= n {
            return Ok(l);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{n} lines: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of a file, or none yet.
fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn watch_runs_its_handler_on_every_change() -> Result<()> {
    let a = TestAgent::dev().await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("fired");
    let handler = format!(
        "(echo \"$CONSUL_INDEX\"; cat) >> {} ; echo >> {}",
        out.display(),
        out.display()
    );
    let mut watch = tokio::process::Command::new(registry_bin()?)
        .args([
            "watch",
            &format!("-http-addr={}", a.http_addr()),
            "-type=keyprefix",
            "-prefix=cfg/",
            &handler,
        ])
        .kill_on_drop(true)
        .spawn()?;
    // The first run has no keys yet: `null`.
    let first = wait_lines(&out, 2).await?;
    assert_eq!(first[1], "null");
    a.kv_put("cfg/a", "1").await?;
    let fired = wait_lines(&out, 5).await?;
    let index: u64 = fired[3].parse()?;
    assert!(index > 0, "{fired:?}");
    let data: Value = serde_json::from_str(&fired[4])?;
    assert_eq!(data[0]["Key"], "cfg/a");
    assert_eq!(data[0]["ModifyIndex"], index);
    // A write elsewhere does not run it again.
    a.kv_put("elsewhere", "1").await?;
    a.kv_put("cfg/b", "2").await?;
    let fired = wait_lines(&out, 8).await?;
    let data: Value = serde_json::from_str(&fired[7])?;
    assert_eq!(data.as_array().unwrap().len(), 2, "{fired:?}");
    assert!(watch.try_wait()?.is_none(), "watch keeps running");

    // A failing handler ends the watch with exit code 1.
    let status = tokio::process::Command::new(registry_bin()?)
        .args([
            "watch",
            &format!("-http-addr={}", a.http_addr()),
            "-type=nodes",
            "exit 3",
        ])
        .stderr(Stdio::piped())
        .output()
        .await?;
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stderr).contains("Error executing handler"));
    watch.kill().await?;
    Ok(())
}

#[tokio::test]
async fn monitor_streams_the_log_at_the_chosen_level() -> Result<()> {
    let a = TestAgent::dev().await?;
    let mut mon = tokio::process::Command::new(registry_bin()?)
        .args([
            "monitor",
            &format!("-http-addr={}", a.http_addr()),
            "-log-level=info",
            "-log-json",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = mon.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.contains("reload: ") {
        // Keep making log lines until the monitor is attached and shows one.
        a.request(reqwest::Method::PUT, "/v1/agent/reload", None)
            .await?;
        let mut buf = [0u8; 4096];
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(500), stdout.read(&mut buf)).await
        {
            seen.push_str(&String::from_utf8_lossy(&buf[..n?]));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no log line: {seen}"
        );
    }
    let line = seen
        .lines()
        .find(|l| l.contains("reload: "))
        .expect("reload line");
    let v: Value = serde_json::from_str(line)?;
    assert_eq!(v["@level"], "info", "{line}");
    mon.kill().await?;

    let (code, _, err) = cli(&a, 1, &["monitor", "-log-level=loud"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("Unknown log level"), "{err}");
    Ok(())
}

#[tokio::test]
async fn debug_writes_consuls_archive_layout() -> Result<()> {
    let a = TestAgent::dev().await?;
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("capture");
    let out_flag = format!("-output={}", output.display());
    let (code, out, err) =
        cli(&a, 1, &["debug", "-duration=6s", "-interval=5s", &out_flag]).await?;
    assert_eq!(code, 0, "{out}\n{err}");
    let archive = dir.path().join("capture.tar.gz");
    assert!(
        out.ends_with(&format!("Saved debug archive: {}\n", archive.display())),
        "{out}"
    );
    assert!(!output.exists(), "the directory is archived and removed");
    let file = std::fs::File::open(&archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names = std::collections::BTreeMap::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut entry, &mut body)?;
        names.insert(name, body);
    }
    for f in [
        "index.json",
        "agent.json",
        "host.json",
        "members.json",
        "metrics.json",
        "consul.log",
    ] {
        assert!(
            names.contains_key(&format!("capture/{f}")),
            "{f}: {:?}",
            names.keys()
        );
    }
    let agent: Value = serde_json::from_str(&names["capture/agent.json"])?;
    assert!(agent["Config"]["NodeName"].is_string());
    let index: Value = serde_json::from_str(&names["capture/index.json"])?;
    assert_eq!(index["Interval"], "5s");
    // Two metric samples (at 0s and 5s), each a metrics document.
    let samples: Vec<Value> = serde_json::Deserializer::from_str(&names["capture/metrics.json"])
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(samples.len(), 2);
    assert!(samples[0]["Gauges"].is_array());

    let (code, _, err) = cli(&a, 1, &["debug", "-interval=1s"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("interval must be longer than 5s"), "{err}");
    Ok(())
}

#[tokio::test]
async fn version_prints_json_on_request() -> Result<()> {
    let out = tokio::process::Command::new(registry_bin()?)
        .args(["version", "-format=json"])
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    assert!(
        v["Version"].is_string() && v["RPC"]["Default"].is_number(),
        "{v}"
    );
    let out = tokio::process::Command::new(registry_bin()?)
        .args(["version", "-format=xml"])
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(1));
    Ok(())
}
