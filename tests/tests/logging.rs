//! The agent's log outputs end to end: `log_file` with rotation by size and pruning to
//! `log_rotate_max_files`, `log_json` in the file, syslog datagrams on a socket the test binds
//! (with the facility and Consul's priorities), and `log_level` changed by SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::TestAgent;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Makes the agent log an info line ("reload: no configuration files to re-read" or
/// "reload: configuration reloaded").
async fn log_something(a: &TestAgent) -> Result<()> {
    a.request(reqwest::Method::PUT, "/v1/agent/reload", None)
        .await?
        .assert_status(200);
    Ok(())
}

fn rotated(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("agent-") && n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn log_file_rotates_by_size_and_keeps_max_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("agent.log");
    let a = TestAgent::dev_with_args(&[
        &format!("-log-file={}", file.display()),
        "-log-rotate-bytes=4096",
        "-log-rotate-max-files=2",
        "-log-json",
        "-log-level=info",
    ])
    .await?;
    for _ in 0..60 {
        log_something(&a).await?;
    }
    let text = std::fs::read_to_string(&file)?;
    assert!(
        text.len() <= 4096,
        "active file is under the limit: {}",
        text.len()
    );
    let line = text
        .lines()
        .find(|l| l.contains("reload: "))
        .expect("a reload line in the active file");
    let v: Value = serde_json::from_str(line)?;
    assert_eq!(v["@level"], "info");
    assert!(v["@timestamp"].is_string());
    let archives = rotated(dir.path());
    assert_eq!(archives.len(), 2, "{archives:?}");
    for name in &archives {
        let size = std::fs::metadata(dir.path().join(name))?.len();
        assert!(size <= 4096 && size > 0, "{name}: {size}");
    }
    Ok(())
}

#[tokio::test]
async fn syslog_gets_every_line_with_facility_and_priority() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sock_path = dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path)?;
    // Drain the socket as a syslog daemon would.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap().push(msg);
        }
    });
    let cfg = dir.path().join("syslog.hcl");
    std::fs::write(&cfg, "enable_syslog = true\nsyslog_facility = \"LOCAL3\"\n")?;
    let a = TestAgent::dev_with_env(
        &[
            &format!("-config-file={}", cfg.display()),
            "-log-level=info",
        ],
        &[("REGISTRY_SYSLOG_SOCKET", sock_path.to_str().unwrap())],
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let found = loop {
        log_something(&a).await?;
        let seen = received.lock().unwrap().clone();
        if let Some(msg) = seen.iter().find(|m| m.contains("reload: ")) {
            break msg.clone();
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no syslog datagram: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // LOCAL3 (19) * 8 + notice (5, Consul's priority for INFO).
    assert!(found.starts_with("<157>consul["), "{found}");
    assert!(found.contains("[INFO]"), "{found}");

    // A facility syslog does not know stops the agent at start.
    std::fs::write(&cfg, "enable_syslog = true\nsyslog_facility = \"LOCAL9\"\n")?;
    let out = std::process::Command::new(registry_tests::registry_bin()?)
        .args(["validate", cfg.to_str().unwrap()])
        .output()?;
    assert_ne!(out.status.code(), Some(0), "validate rejects LOCAL9");
    Ok(())
}

#[tokio::test]
async fn sighup_applies_a_new_log_level() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("agent.log");
    let cfg = dir.path().join("agent.hcl");
    let write_cfg = |level: &str| {
        std::fs::write(
            &cfg,
            format!(
                "log_level = \"{level}\"\nlog_file = \"{}\"\n",
                file.display()
            ),
        )
    };
    write_cfg("warn")?;
    let a = TestAgent::dev_with_args(&[&format!("-config-file={}", cfg.display())]).await?;
    log_something(&a).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = std::fs::read_to_string(&file)?;
    assert!(!before.contains("[INFO]"), "warn level: {before}");

    write_cfg("info")?;
    let pid = a.pid().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        log_something(&a).await?;
        let text = std::fs::read_to_string(&file)?;
        if text.contains("[INFO]") && text.contains("reload: ") {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no info line: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn openraft_internals_stay_at_warn_unless_trace_is_asked_for() -> Result<()> {
    // -dev logs at info.
    let mut dev = TestAgent::dev().await?;
    dev.wait_for_leader(Duration::from_secs(30)).await?;
    log_something(&dev).await?;
    let log = dev.log();
    assert!(log.contains(" INFO "), "info lines are shown: {log}");
    assert!(!log.contains(" DEBUG "), "-dev logs at info: {log}");
    // At debug, openraft's internals are still not in it.
    let mut a = TestAgent::dev_with_args(&["-log-level", "debug"]).await?;
    a.wait_for_leader(Duration::from_secs(30)).await?;
    log_something(&a).await?;
    let log = a.log();
    assert!(log.contains(" DEBUG "), "debug lines are shown: {log}");
    let raft: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("openraft::") && (l.contains(" INFO ") || l.contains(" DEBUG ")))
        .collect();
    assert!(raft.is_empty(), "openraft internals: {raft:#?}");
    // Asked for (trace), they show.
    let mut b = TestAgent::dev_with_args(&["-log-level", "trace"]).await?;
    b.wait_for_leader(Duration::from_secs(30)).await?;
    assert!(
        b.log().lines().any(|l| l.contains("openraft::")),
        "openraft at trace: {}",
        b.log_tail(20)
    );
    Ok(())
}
