//! `/v1/status/leader` and `/v1/status/peers`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::TestAgent;
use serde_json::Value;

#[tokio::test]
async fn leader_is_a_json_host_port_string() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/status/leader").await?;
    r.assert_status(200);
    assert!(
        r.content_type().starts_with("application/json"),
        "content type {:?}",
        r.content_type()
    );
    let v = r.json();
    let leader = v
        .as_str()
        .unwrap_or_else(|| panic!("leader is a JSON string: {v}"));
    let (host, port) = leader
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("leader is ip:port: {leader:?}"));
    assert_eq!(host, "127.0.0.1", "leader address is the bind address");
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{leader:?}");
    Ok(())
}

#[tokio::test]
async fn peers_contains_the_leader() -> Result<()> {
    let a = TestAgent::dev().await?;
    let leader = a.get_json("/v1/status/leader").await?;
    let r = a.get("/v1/status/peers").await?;
    r.assert_status(200);
    let v = r.json();
    let peers = v
        .as_array()
        .unwrap_or_else(|| panic!("peers is a list: {v}"));
    assert_eq!(peers.len(), 1, "single-node cluster: {v}");
    assert_eq!(peers[0], leader);
    assert!(matches!(peers[0], Value::String(_)));
    Ok(())
}

#[tokio::test]
async fn persistent_server_also_elects_itself() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = TestAgent::with_data_dir(dir.path().join("data")).await?;
    let leader = a.get_json("/v1/status/leader").await?;
    assert!(leader.as_str().is_some_and(|s| s.starts_with("127.0.0.1:")));
    let peers = a.get_json("/v1/status/peers").await?;
    assert_eq!(peers, serde_json::json!([leader]));
    Ok(())
}
