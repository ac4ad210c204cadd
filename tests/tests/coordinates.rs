//! Network coordinates end to end: `PUT /v1/coordinate/update` batched into Raft and served
//! by `/v1/coordinate/nodes` and `/v1/coordinate/node/:node`; `?near=` sorting on the
//! catalog, health and prepared queries; `registry rtt`; and, with real agents whose gossip
//! round trips feed their coordinates, every agent's coordinate reaching the servers and
//! answering `?near=_agent` and `registry rtt`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use registry_tests::{eventually, free_tcp_port, registry_bin, Method, TestAgent};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn coord(x: f64) -> Value {
    json!({"Vec": [x, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 0.2, "Adjustment": 0.0, "Height": 0.00001})
}

fn names(v: &Value, path: &[&str]) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut cur = e;
            for p in path {
                cur = &cur[*p];
            }
            cur.as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn updates_are_batched_served_and_sort_near_queries() -> Result<()> {
    let a = TestAgent::dev().await?;
    for (n, ip) in [
        ("n1", "127.0.0.21"),
        ("n2", "127.0.0.22"),
        ("n3", "127.0.0.23"),
        ("n4", "127.0.0.24"),
    ] {
        a.put_json(
            "/v1/catalog/register",
            &json!({"Node": n, "Address": ip, "Service": {"Service": "web", "Port": 80}}),
        )
        .await?
        .assert_status(200);
    }
    // Bad input is refused at once.
    let r = a.put_json("/v1/coordinate/update", &json!({"Node": "n1", "Coord": {"Vec": [1.0], "Error": 1.5, "Adjustment": 0.0, "Height": 0.0}})).await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let before = a.get("/v1/coordinate/nodes").await?;
    before.assert_status(200).assert_read_headers();
    assert_eq!(before.json(), json!([]));
    assert_eq!(a.get("/v1/coordinate/node/n1").await?.status, 404);
    // n1 at 0, n3 at 2 ms, n2 at 20 ms; n4 has none. An unknown node is skipped.
    for (n, x) in [("n1", 0.0), ("n2", 0.020), ("n3", 0.002), ("ghost", 0.001)] {
        a.put_json(
            "/v1/coordinate/update",
            &json!({"Node": n, "Coord": coord(x)}),
        )
        .await?
        .assert_status(200);
    }
    // Written together, once the batch period is over.
    let all = eventually(
        Duration::from_secs(15),
        "coordinates to be stored",
        || async {
            let v = a.get_json("/v1/coordinate/nodes").await?;
            Ok((v.as_array().unwrap().len() == 3).then_some(v))
        },
    )
    .await?;
    assert_eq!(names(&all, &["Node"]), ["n1", "n2", "n3"]);
    assert_eq!(all[1]["Coord"]["Vec"][0], 0.020);
    assert_eq!(all[0]["Segment"], "");
    let one = a.get_json("/v1/coordinate/node/n3").await?;
    assert_eq!(one[0]["Node"], "n3");

    let order = names(&a.get_json("/v1/catalog/nodes?near=n1").await?, &["Node"]);
    assert_eq!(&order[..3], ["n1", "n3", "n2"], "{order:?}");
    assert_eq!(
        order.len(),
        5,
        "the agent's own node and n4 follow: {order:?}"
    );
    let order = names(
        &a.get_json("/v1/catalog/service/web?near=n2").await?,
        &["Node"],
    );
    assert_eq!(order, ["n2", "n3", "n1", "n4"]);
    let order = names(
        &a.get_json("/v1/health/service/web?near=n3").await?,
        &["Node", "Node"],
    );
    assert_eq!(order, ["n3", "n1", "n2", "n4"]);
    // Without a coordinate for the source, the catalog order stays.
    let order = names(
        &a.get_json("/v1/catalog/service/web?near=n4").await?,
        &["Node"],
    );
    assert_eq!(order, ["n1", "n2", "n3", "n4"]);
    // Prepared queries: `Near` in the query, or `?near` on execute.
    let r = a
        .request(
            Method::POST,
            "/v1/query",
            Some(
                json!({"Name": "web-near", "Service": {"Service": "web", "Near": "n2"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await?;
    r.assert_status(200);
    let ex = a.get_json("/v1/query/web-near/execute").await?;
    assert_eq!(
        names(&ex["Nodes"], &["Node", "Node"]),
        ["n2", "n3", "n1", "n4"]
    );
    let ex = a
        .get_json("/v1/query/web-near/execute?near=n1&limit=2")
        .await?;
    assert_eq!(names(&ex["Nodes"], &["Node", "Node"]), ["n1", "n3"]);

    // registry rtt.
    let out = Command::new(registry_bin()?)
        .args(["rtt", &format!("-http-addr={}", a.http_addr()), "n1", "n2"])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Estimated n1 <-> n2 rtt: 20.020 ms (using LAN coordinates)"
    );
    let out = Command::new(registry_bin()?)
        .args(["rtt", &format!("-http-addr={}", a.http_addr()), "n4", "n2"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Could not find a coordinate for node \"n4\""));

    // Deregistering a node drops its coordinate.
    a.put_json("/v1/catalog/deregister", &json!({"Node": "n2"}))
        .await?
        .assert_status(200);
    assert_eq!(a.get("/v1/coordinate/node/n2").await?.status, 404);
    Ok(())
}

/// Agent processes, killed on drop.
struct Agents {
    children: Vec<Child>,
    dirs: Vec<tempfile::TempDir>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Agents {
    fn start(
        &mut self,
        node: &str,
        addr: &str,
        ports: (u16, u16, u16),
        server: bool,
        join: &str,
    ) -> Result<()> {
        let dir = tempfile::Builder::new()
            .prefix("registry-coord")
            .tempdir()?;
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-node".into(),
            node.into(),
            "-data-dir".into(),
            dir.path().join("data").display().to_string(),
            "-bind".into(),
            addr.into(),
            "-client".into(),
            addr.into(),
            "-http-port".into(),
            ports.0.to_string(),
            "-server-port".into(),
            ports.1.to_string(),
            "-serf-lan-port".into(),
            ports.2.to_string(),
            "-dns-port".into(),
            "0".into(),
        ];
        if server {
            args.extend(["-server".into(), "-bootstrap-expect".into(), "1".into()]);
        } else {
            args.extend(["-retry-join".into(), join.into()]);
        }
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let child = Command::new(registry_bin()?)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children.push(child);
        self.dirs.push(dir);
        Ok(())
    }

    fn logs(&self) -> String {
        self.dirs
            .iter()
            .map(|d| std::fs::read_to_string(d.path().join("agent.log")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// A server and two client agents on loopback addresses: their coordinates come from the
/// round trips of their gossip rounds alone (nothing is written by the test), reach the
/// server in batches, and give `?near=_agent` and `registry rtt` their answers.
#[tokio::test]
async fn gossip_round_trips_give_every_agent_a_coordinate() -> Result<()> {
    let k = std::process::id() % 200 + 20;
    let (a1, a2, a3) = (
        format!("127.0.{k}.1"),
        format!("127.0.{k}.2"),
        format!("127.0.{k}.3"),
    );
    let ports = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let mut agents = Agents {
        children: Vec::new(),
        dirs: Vec::new(),
    };
    agents.start("srv", &a1, ports, true, "")?;
    agents.start("near", &a2, ports, false, &a1)?;
    agents.start("other", &a3, ports, false, &a1)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let srv_url = format!("http://{a1}:{}", ports.0);
    let near_url = format!("http://{a2}:{}", ports.0);
    let coords = eventually(
        Duration::from_secs(90),
        "every agent's coordinate to reach the servers",
        || {
            let client = client.clone();
            let srv_url = srv_url.clone();
            async move {
                let Ok(v) = get_json(&client, &format!("{srv_url}/v1/coordinate/nodes")).await
                else {
                    return Ok(None);
                };
                Ok((v.as_array().map_or(0, Vec::len) == 3).then_some(v))
            }
        },
    )
    .await
    .with_context(|| agents.logs())?;
    assert_eq!(names(&coords, &["Node"]), ["near", "other", "srv"]);
    for c in coords.as_array().unwrap() {
        let coord = &c["Coord"];
        assert_eq!(coord["Vec"].as_array().unwrap().len(), 8);
        // Moved by samples: no longer at the origin where every agent starts.
        let moved = coord["Vec"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_f64().unwrap() != 0.0);
        assert!(moved, "{c}");
    }
    // Through the client agent, `_agent` is that client.
    let order = names(
        &get_json(&client, &format!("{near_url}/v1/catalog/nodes?near=_agent")).await?,
        &["Node"],
    );
    assert_eq!(order[0], "near", "{order:?}");
    let order = names(
        &get_json(&client, &format!("{srv_url}/v1/catalog/nodes?near=_agent")).await?,
        &["Node"],
    );
    assert_eq!(order[0], "srv", "{order:?}");
    // registry rtt: a loopback estimate, positive and well under 50 ms.
    let out = Command::new(registry_bin()?)
        .args(["rtt", &format!("-http-addr={a2}:{}", ports.0), "srv"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let ms: f64 = text
        .trim()
        .strip_prefix("Estimated srv <-> near rtt: ")
        .and_then(|r| r.strip_suffix(" ms (using LAN coordinates)"))
        .with_context(|| format!("unexpected rtt output: {text:?} {out:?}"))?
        .parse()?;
    assert!(ms > 0.0 && ms < 50.0, "{ms}");
    Ok(())
}
