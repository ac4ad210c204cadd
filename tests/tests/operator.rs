//! `/v1/operator/raft/*`, `/v1/operator/autopilot/*` and `registry operator ...` against a
//! real `registry agent -dev` (one server: the leader, the only voter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{registry_bin, Method, TestAgent};
use serde_json::{json, Value};

/// Runs `registry operator <args> -http-addr=...`; (exit code, stdout, stderr).
async fn cli(a: &TestAgent, args: &[&str]) -> Result<(i32, String, String)> {
    let mut all: Vec<String> = vec!["operator".into()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.push(format!("-http-addr={}", a.http_addr()));
    let out = tokio::process::Command::new(registry_bin()?)
        .args(&all)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn raft_configuration_has_consuls_shape() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/operator/raft/configuration").await?;
    r.assert_status(200);
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.keys().cloned().collect::<Vec<_>>(),
        vec!["Servers".to_string(), "Index".to_string()]
    );
    assert!(v["Index"].is_u64());
    let servers = v["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{v}");
    let s = &servers[0];
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "Address",
            "ID",
            "LastIndex",
            "Leader",
            "Node",
            "ProtocolVersion",
            "Voter"
        ]
    );
    assert_eq!(s["Node"], json!(a.node));
    assert_eq!(s["Leader"], json!(true));
    assert_eq!(s["Voter"], json!(true));
    assert_eq!(s["ProtocolVersion"], json!("3"));
    assert!(s["LastIndex"].as_u64().unwrap() > 0);
    let id = s["ID"].as_str().unwrap();
    assert!(id.parse::<u64>().is_ok(), "IDs are decimal Raft IDs: {id}");
    // The address is the one /v1/status/leader reports.
    let leader = a.get_json("/v1/status/leader").await?;
    assert_eq!(s["Address"], leader);
    // Stale reads answer the same locally.
    let stale = a.get_json("/v1/operator/raft/configuration?stale").await?;
    assert_eq!(stale["Servers"][0]["ID"], s["ID"]);
    Ok(())
}

#[tokio::test]
async fn remove_peer_validates_its_input() -> Result<()> {
    let a = TestAgent::dev().await?;
    let cfg = a.get_json("/v1/operator/raft/configuration").await?;
    let id = cfg["Servers"][0]["ID"].as_str().unwrap().to_string();
    let addr = cfg["Servers"][0]["Address"].as_str().unwrap().to_string();

    let r = a.delete("/v1/operator/raft/peer").await?;
    r.assert_status(400);
    assert!(r.text().contains("Must specify either ?id"), "{}", r.text());
    let r = a
        .delete(&format!("/v1/operator/raft/peer?id={id}&address={addr}"))
        .await?;
    r.assert_status(400);
    assert_eq!(r.text(), "Must specify only one of ?id or ?address");
    let r = a.delete("/v1/operator/raft/peer?id=12345").await?;
    r.assert_status(500);
    assert_eq!(
        r.text(),
        "id \"12345\" was not found in the Raft configuration"
    );
    let r = a
        .delete("/v1/operator/raft/peer?address=10.9.9.9:8300")
        .await?;
    r.assert_status(500);
    assert!(r.text().contains("address \"10.9.9.9:8300\" was not found"));
    // The only voter cannot go.
    let r = a.delete(&format!("/v1/operator/raft/peer?id={id}")).await?;
    r.assert_status(400);
    assert!(r.text().contains("last voter"), "{}", r.text());
    let r = a
        .delete(&format!("/v1/operator/raft/peer?address={addr}"))
        .await?;
    r.assert_status(400);
    // Wrong methods.
    let r = a.get("/v1/operator/raft/peer?id=1").await?;
    r.assert_status(405);
    assert_eq!(r.header("allow").as_deref(), Some("DELETE"));
    let r = a
        .request(Method::GET, "/v1/operator/raft/transfer-leader", None)
        .await?;
    r.assert_status(405);
    let r = a
        .request(Method::POST, "/v1/operator/raft/configuration", None)
        .await?;
    r.assert_status(405);
    let r = a
        .request(Method::DELETE, "/v1/operator/autopilot/configuration", None)
        .await?;
    r.assert_status(405);
    // Unknown paths.
    let r = a.get("/v1/operator/raft/nope").await?;
    r.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn transfer_leader_needs_another_voter() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a
        .request(Method::POST, "/v1/operator/raft/transfer-leader", None)
        .await?;
    r.assert_status(500);
    assert!(r.text().contains("no other voter"), "{}", r.text());
    let cfg = a.get_json("/v1/operator/raft/configuration").await?;
    let id = cfg["Servers"][0]["ID"].as_str().unwrap().to_string();
    let r = a
        .request(
            Method::POST,
            &format!("/v1/operator/raft/transfer-leader?id={id}"),
            None,
        )
        .await?;
    r.assert_status(400);
    assert!(r.text().contains("itself"), "{}", r.text());
    let r = a
        .request(
            Method::POST,
            "/v1/operator/raft/transfer-leader?id=77",
            None,
        )
        .await?;
    r.assert_status(500);
    // Still the leader.
    let cfg = a.get_json("/v1/operator/raft/configuration").await?;
    assert_eq!(cfg["Servers"][0]["Leader"], json!(true));
    Ok(())
}

#[tokio::test]
async fn autopilot_health_has_consuls_shape() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/operator/autopilot/health").await?;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["Healthy"], json!(true));
    assert_eq!(v["FailureTolerance"], json!(0));
    let servers = v["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    let s = &servers[0];
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "Address",
            "Healthy",
            "ID",
            "LastContact",
            "LastIndex",
            "LastTerm",
            "Leader",
            "Name",
            "SerfStatus",
            "StableSince",
            "Version",
            "Voter"
        ]
    );
    assert_eq!(s["Name"], json!(a.node));
    assert_eq!(s["SerfStatus"], json!("alive"));
    assert_eq!(s["LastContact"], json!("0s"));
    assert_eq!(s["Leader"], json!(true));
    assert_eq!(s["Voter"], json!(true));
    assert_eq!(s["Healthy"], json!(true));
    assert!(s["LastTerm"].as_u64().unwrap() >= 1);
    let since = s["StableSince"].as_str().unwrap();
    assert!(
        since.len() == 20 && since.ends_with('Z') && since.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {since}"
    );
    let cfg = a.get_json("/v1/operator/raft/configuration").await?;
    assert_eq!(s["ID"], cfg["Servers"][0]["ID"]);
    assert_eq!(s["Address"], cfg["Servers"][0]["Address"]);
    Ok(())
}

/// Seconds since midnight of an RFC 3339 UTC time (`...THH:MM:SS[.fff]Z`).
fn seconds_of_day(t: &str) -> f64 {
    let clock = &t[11..t.len() - 1];
    let mut parts = clock.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

#[tokio::test]
async fn autopilot_state_has_consuls_shape() -> Result<()> {
    let a = TestAgent::dev_with_args(&["-node-meta", "rack:r1"]).await?;
    let cfg = a.get_json("/v1/operator/raft/configuration").await?;
    let id = cfg["Servers"][0]["ID"].as_str().unwrap().to_string();
    let addr = cfg["Servers"][0]["Address"].clone();
    // The node registers itself in the catalog shortly after it leads.
    let v = a
        .eventually(
            std::time::Duration::from_secs(10),
            "the server's node metadata in the state",
            || async {
                let v = a.get_json("/v1/operator/autopilot/state").await?;
                Ok((v["Servers"][&id]["Meta"]["rack"] == json!("r1")).then_some(v))
            },
        )
        .await?;
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Healthy",
            "FailureTolerance",
            "OptimisticFailureTolerance",
            "Servers",
            "Leader",
            "Voters"
        ],
        "{v}"
    );
    assert_eq!(v["Healthy"], json!(true));
    assert_eq!(v["FailureTolerance"], json!(0));
    assert_eq!(v["OptimisticFailureTolerance"], json!(0));
    assert_eq!(v["Leader"], json!(id));
    assert_eq!(v["Voters"], json!([id]));
    let servers = v["Servers"].as_object().unwrap();
    assert_eq!(servers.len(), 1, "{v}");
    let s = &v["Servers"][&id];
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ID",
            "Name",
            "Address",
            "NodeStatus",
            "Version",
            "LastContact",
            "LastTerm",
            "LastIndex",
            "Healthy",
            "StableSince",
            "ReadReplica",
            "Status",
            "Meta",
            "NodeType"
        ]
    );
    assert_eq!(s["ID"], json!(id));
    assert_eq!(s["Name"], json!(a.node));
    assert_eq!(s["Address"], addr);
    assert_eq!(s["NodeStatus"], json!("alive"));
    assert_eq!(s["LastContact"], json!("0s"));
    assert_eq!(s["Healthy"], json!(true));
    assert_eq!(s["ReadReplica"], json!(false));
    assert_eq!(s["Status"], json!("leader"));
    assert_eq!(s["NodeType"], json!("voter"));
    assert_eq!(s["Meta"]["consul-network-segment"], json!(""));
    assert!(s["LastTerm"].as_u64().unwrap() >= 1);
    assert!(s["LastIndex"].as_u64().unwrap() > 0);
    let since = s["StableSince"].as_str().unwrap();
    assert!(
        since.len() >= 20 && since.ends_with('Z') && since.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {since}"
    );
    // The same facts as the health report.
    let health = a.get_json("/v1/operator/autopilot/health").await?;
    let h = &health["Servers"][0];
    assert_eq!(s["Version"], h["Version"]);
    assert_eq!(s["LastTerm"], h["LastTerm"]);
    // The health report rounds StableSince to the second; the state keeps the fraction.
    let rounded = h["StableSince"].as_str().unwrap();
    let gap = (seconds_of_day(since) - seconds_of_day(rounded)).rem_euclid(86_400.0);
    assert!(gap <= 0.5 || gap >= 86_399.5, "{since} vs {rounded}");

    // ?stale and ?pretty are accepted; only GET is.
    let stale = a.get_json("/v1/operator/autopilot/state?stale").await?;
    assert_eq!(stale["Leader"], json!(id));
    let r = a.get("/v1/operator/autopilot/state?pretty").await?;
    r.assert_status(200);
    assert!(r.text().starts_with("{\n"), "{}", r.text());
    assert_eq!(r.json()["Voters"], json!([id]));
    let r = a
        .request(Method::PUT, "/v1/operator/autopilot/state", None)
        .await?;
    r.assert_status(405);
    Ok(())
}

#[tokio::test]
async fn autopilot_configuration_defaults_and_cas() -> Result<()> {
    let a = TestAgent::dev().await?;
    // The leader stores the configured values shortly after it takes over.
    let cfg = a
        .eventually(
            std::time::Duration::from_secs(10),
            "stored autopilot configuration",
            || async {
                let v = a.get_json("/v1/operator/autopilot/configuration").await?;
                Ok((v["ModifyIndex"].as_u64() > Some(0)).then_some(v))
            },
        )
        .await?;
    let mut expected = json!({
        "CleanupDeadServers": true,
        "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250,
        "MinQuorum": 0,
        "ServerStabilizationTime": "10s",
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": false,
        "UpgradeVersionTag": "",
    });
    let index = cfg["ModifyIndex"].as_u64().unwrap();
    expected["CreateIndex"] = cfg["CreateIndex"].clone();
    expected["ModifyIndex"] = json!(index);
    assert_eq!(cfg, expected);

    // CAS with a stale index fails and changes nothing.
    let r = a
        .put(
            &format!("/v1/operator/autopilot/configuration?cas={}", index + 100),
            r#"{"CleanupDeadServers": false}"#,
        )
        .await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "false");
    assert_eq!(
        a.get_json("/v1/operator/autopilot/configuration").await?,
        cfg
    );

    // CAS with the current index works; omitted fields take Consul's defaults, keys are
    // case-insensitive, durations may be nanoseconds.
    let r = a
        .put(
            &format!("/v1/operator/autopilot/configuration?cas={index}"),
            r#"{"cleanup_dead_servers": false, "maxtrailinglogs": 99,
                "LastContactThreshold": 1500000000, "ServerStabilizationTime": "1m30s",
                "MinQuorum": 3, "RedundancyZoneTag": "zone", "CreateIndex": 12345}"#,
        )
        .await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let now = a.get_json("/v1/operator/autopilot/configuration").await?;
    assert_eq!(now["CleanupDeadServers"], json!(false));
    assert_eq!(now["MaxTrailingLogs"], json!(99));
    assert_eq!(now["LastContactThreshold"], json!("1.5s"));
    assert_eq!(now["ServerStabilizationTime"], json!("1m30s"));
    assert_eq!(now["MinQuorum"], json!(3));
    assert_eq!(now["RedundancyZoneTag"], json!("zone"));
    assert_eq!(now["CreateIndex"], cfg["CreateIndex"]);
    assert!(now["ModifyIndex"].as_u64().unwrap() > index);

    // Without ?cas the answer is true; an empty body restores the defaults.
    let r = a.put("/v1/operator/autopilot/configuration", "").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let reset = a.get_json("/v1/operator/autopilot/configuration").await?;
    assert_eq!(reset["CleanupDeadServers"], json!(true));
    assert_eq!(reset["MaxTrailingLogs"], json!(250));
    assert_eq!(reset["RedundancyZoneTag"], json!(""));

    // Bad input.
    let r = a
        .put("/v1/operator/autopilot/configuration?cas=abc", "{}")
        .await?;
    r.assert_status(400);
    assert!(
        r.text().starts_with("Error parsing cas value"),
        "{}",
        r.text()
    );
    let r = a
        .put("/v1/operator/autopilot/configuration", "{not json")
        .await?;
    r.assert_status(400);
    assert!(
        r.text().starts_with("Error parsing autopilot config"),
        "{}",
        r.text()
    );
    let r = a
        .put(
            "/v1/operator/autopilot/configuration",
            r#"{"MaxTrailingLogs": "lots"}"#,
        )
        .await?;
    r.assert_status(400);
    let r = a
        .put(
            "/v1/operator/autopilot/configuration",
            r#"{"LastContactThreshold": "soon"}"#,
        )
        .await?;
    r.assert_status(400);
    Ok(())
}

#[tokio::test]
async fn autopilot_seed_comes_from_the_config_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("autopilot.hcl");
    std::fs::write(
        &file,
        "autopilot {\n  cleanup_dead_servers = false\n  last_contact_threshold = \"500ms\"\n  \
         max_trailing_logs = 42\n  min_quorum = 5\n  server_stabilization_time = \"20s\"\n}\n",
    )?;
    let a = TestAgent::dev_with_args(&["-config-file", &file.display().to_string()]).await?;
    let v = a.get_json("/v1/operator/autopilot/configuration").await?;
    assert_eq!(v["CleanupDeadServers"], json!(false));
    assert_eq!(v["LastContactThreshold"], json!("500ms"));
    assert_eq!(v["MaxTrailingLogs"], json!(42));
    assert_eq!(v["MinQuorum"], json!(5));
    assert_eq!(v["ServerStabilizationTime"], json!("20s"));
    Ok(())
}

#[tokio::test]
async fn cli_lists_peers_and_edits_the_autopilot_config() -> Result<()> {
    let a = TestAgent::dev().await?;
    let cfg = a.get_json("/v1/operator/raft/configuration").await?;
    let id = cfg["Servers"][0]["ID"].as_str().unwrap().to_string();
    let addr = cfg["Servers"][0]["Address"].as_str().unwrap().to_string();

    let (code, out, err) = cli(&a, &["raft", "list-peers"]).await?;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "Node",
            "ID",
            "Address",
            "State",
            "Voter",
            "RaftProtocol",
            "Commit Index",
            "Trails Leader By"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            a.node.as_str(),
            id.as_str(),
            addr.as_str(),
            "leader",
            "true",
            "3"
        ]
    );
    assert!(row[6].parse::<u64>().is_ok(), "{out}");
    assert_eq!(row[7], "_");

    let (code, _, err) = cli(&a, &["raft", "list-peers", "-stale"]).await?;
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = cli(&a, &["raft", "remove-peer"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("an address or id is required"), "{err}");
    let (code, _, err) = cli(&a, &["raft", "remove-peer", "-id=1", "-address=x:1"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("cannot give both"), "{err}");
    let (code, _, err) = cli(&a, &["raft", "remove-peer", "-id", "999"]).await?;
    assert_eq!(code, 1);
    assert!(
        err.contains("Error removing peer: Unexpected response code: 500"),
        "{err}"
    );
    let (code, _, err) = cli(&a, &["raft", "transfer-leader"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("Error transfering leadership"), "{err}");

    // Wait for the stored configuration so that the CAS below has its index.
    a.eventually(
        std::time::Duration::from_secs(10),
        "stored autopilot configuration",
        || async {
            let v = a.get_json("/v1/operator/autopilot/configuration").await?;
            Ok((v["ModifyIndex"].as_u64() > Some(0)).then_some(()))
        },
    )
    .await?;
    let (code, out, err) = cli(&a, &["autopilot", "get-config"]).await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n\
         MinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\n\
         DisableUpgradeMigration = false\nUpgradeVersionTag = \"\"\n"
    );
    let (code, out, err) = cli(
        &a,
        &[
            "autopilot",
            "set-config",
            "-cleanup-dead-servers=false",
            "-max-trailing-logs",
            "300",
            "-last-contact-threshold=1s",
            "-server-stabilization-time=30s",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Configuration updated!");
    let v: Value = a.get_json("/v1/operator/autopilot/configuration").await?;
    assert_eq!(v["CleanupDeadServers"], json!(false));
    assert_eq!(v["MaxTrailingLogs"], json!(300));
    assert_eq!(v["LastContactThreshold"], json!("1s"));
    assert_eq!(v["ServerStabilizationTime"], json!("30s"));
    assert_eq!(v["MinQuorum"], json!(0), "unchanged");
    let (code, out, _) = cli(&a, &["autopilot", "get-config"]).await?;
    assert_eq!(code, 0);
    assert!(out.contains("CleanupDeadServers = false\n"), "{out}");
    assert!(out.contains("MaxTrailingLogs = 300\n"), "{out}");

    let (code, _, err) = cli(&a, &["autopilot", "set-config", "-max-trailing-logs=x"]).await?;
    assert_ne!(code, 0);
    assert!(!err.is_empty());

    // autopilot state: Consul's text and JSON (once the server's node is in the catalog).
    a.eventually(
        std::time::Duration::from_secs(10),
        "the server's node in the catalog",
        || async {
            let r = a.get(&format!("/v1/catalog/node/{}", a.node)).await?;
            Ok((r.status == 200 && r.json()["Node"].is_object()).then_some(()))
        },
    )
    .await?;
    let (code, out, err) = cli(&a, &["autopilot", "state"]).await?;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Healthy:                      true", "{out}");
    assert_eq!(lines[1], "Failure Tolerance:            0");
    assert_eq!(lines[2], "Optimistic Failure Tolerance: 0");
    assert_eq!(lines[3], format!("Leader:                       {id}"));
    assert_eq!(
        lines[4..7],
        ["Voters:", format!("   {id}").as_str(), "Servers:"]
    );
    assert_eq!(lines[7], format!("   {id}"));
    assert_eq!(lines[8], format!("      Name:            {}", a.node));
    assert_eq!(lines[9], format!("      Address:         {addr}"));
    assert_eq!(lines[11], "      Status:          leader");
    assert_eq!(lines[12], "      Node Type:       voter");
    assert_eq!(lines[13], "      Node Status:     alive");
    assert_eq!(lines[14], "      Healthy:         true");
    assert_eq!(lines[15], "      Last Contact:    0s");
    assert!(out.contains("      Meta\n         \"consul-network-segment\": \"\"\n"));
    let (code, out, err) = cli(&a, &["autopilot", "state", "-format", "json", "-stale"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("{\n    \"Healthy\": true,\n"), "{out}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["Leader"], json!(id));
    assert_eq!(v["Voters"], json!([id]));
    assert_eq!(v["Servers"][&id]["Status"], json!("leader"));
    let (code, _, err) = cli(&a, &["autopilot", "state", "-format=yaml"]).await?;
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "Unknown format: yaml");

    let (code, out, _) = cli(&a, &["raft", "--help"]).await?;
    assert_eq!(code, 0);
    for sub in ["list-peers", "remove-peer", "transfer-leader"] {
        assert!(out.contains(sub), "{out}");
    }
    let (code, out, _) = cli(&a, &["autopilot", "--help"]).await?;
    assert_eq!(code, 0);
    for sub in ["get-config", "set-config", "state"] {
        assert!(out.contains(sub), "{out}");
    }
    let (code, out, _) = cli(&a, &["autopilot", "set-config", "-h"]).await?;
    assert_eq!(code, 0);
    assert!(out.contains("-cleanup-dead-servers") || out.contains("--cleanup-dead-servers"));
    Ok(())
}
