//! A client agent's DNS port and user events, end to end with real DNS packets (dig) and
//! real processes: one server and two client agents.
//!
//! - DNS on a client answers over UDP and TCP with the same records; a UDP answer too large
//!   for the resolver's buffer comes back truncated (TC), and the same query over TCP has
//!   every record, as on a server.
//! - `/v1/event/list` on a client answers from the events that client received over gossip
//!   (its own buffer, with the node filter applied by each receiving agent), not from a
//!   server's; its blocking form wakes on a new event.
//! - An alias check on one client of a service on another client follows the target's
//!   checks through the servers' catalog (blocking queries).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use registry_tests::client::ClientAgent;
use registry_tests::cluster::TestCluster;
use registry_tests::{eventually, strict};
use serde_json::{json, Value};

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Names of the events in a `/v1/event/list` answer.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["Name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_dns_over_udp_and_tcp_and_events_from_its_own_buffer() -> Result<()> {
    if Command::new("dig").arg("-v").output().is_err() {
        if strict() {
            bail!("dig is missing (dnsutils)");
        }
        eprintln!("SKIPPED: dig is not installed");
        return Ok(());
    }
    let c = TestCluster::start(1).await?;
    // The server port (how the client finds a server before gossip converges) and the
    // server's serf port (a join address without a port means the client's own serf port,
    // as in Consul, and this client's is not the default).
    let servers = vec![c.server(0).raft_addr(), format!("{}:8301", c.server(0).ip)];
    let c1 = ClientAgent::start("client-1", &servers).await?;
    let c2 = ClientAgent::start("client-2", &servers).await?;

    // --- DNS ---
    for i in 0..200 {
        let r = c1
            .put(
                "/v1/catalog/register",
                json!({
                    "Node": format!("big-{i}"),
                    "Address": format!("127.3.{}.{}", i / 250, i % 250 + 1),
                    "Service": {"ID": format!("big-{i}"), "Service": "big", "Port": 9000}
                })
                .to_string(),
            )
            .await?;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = c1
        .put(
            "/v1/catalog/register",
            json!({"Node": "small-1", "Address": "127.4.0.1",
                   "Service": {"ID": "small", "Service": "small", "Port": 81}})
            .to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());

    // The same small answer over UDP and TCP.
    let udp = eventually(Duration::from_secs(10), "small over UDP", || async {
        let out = c2.dig("small.service.consul", "SRV")?;
        Ok((!out.trim().is_empty()).then_some(out))
    })
    .await?;
    let tcp = c2.dig_with("small.service.consul", "SRV", &["+tcp"])?;
    assert_eq!(sorted_lines(&udp), sorted_lines(&tcp));
    assert!(udp.contains(" 81 small-1.node.dc1.consul."), "{udp}");
    assert_eq!(
        c2.dig_with("small.service.consul", "A", &["+tcp"])?.trim(),
        "127.4.0.1"
    );
    // A large answer: truncated over UDP, complete over TCP.
    let udp = c2.dig_with(
        "big.service.consul",
        "SRV",
        &["+noshort", "+comments", "+bufsize=1232", "+ignore"],
    )?;
    // `+short` is before `+noshort +comments` on dig's command line: the full output, with
    // the header flags.
    assert!(udp.contains(" tc"), "UDP answer should be truncated: {udp}");
    let tcp = c2.dig_with("big.service.consul", "SRV", &["+tcp"])?;
    assert_eq!(sorted_lines(&tcp).len(), 200, "{tcp}");
    let tcp_a = c2.dig_with("big.service.consul", "A", &["+tcp"])?;
    assert_eq!(sorted_lines(&tcp_a).len(), 200, "{tcp_a}");
    // Unknown names: NXDOMAIN over TCP too (dig prints nothing with +short).
    let none = c2.dig_with(
        "nothing.service.consul",
        "SRV",
        &["+tcp", "+noshort", "+comments"],
    )?;
    assert!(none.contains("NXDOMAIN"), "{none}");

    // --- Events ---
    // Every agent is a gossip member before events are fired.
    for a in [&c1, &c2] {
        eventually(Duration::from_secs(30), "3 members alive", || async {
            let m = a.get_json("/v1/agent/members").await?;
            let alive = m
                .as_array()
                .map(|a| a.iter().filter(|m| m["Status"] == 1).count())
                .unwrap_or(0);
            Ok((alive == 3).then_some(()))
        })
        .await?;
    }
    // An event for client-1 alone (node filter), fired through client-2: client-1 lists
    // it; client-2 and the server, whose buffers never took it, do not.
    let r = c2
        .put("/v1/event/fire/only-c1?node=^client-1$", "x")
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(15), "only-c1 on client-1", || async {
        let l = c1.get_json("/v1/event/list").await?;
        Ok(names(&l).contains(&"only-c1".to_string()).then_some(()))
    })
    .await?;
    // An event for everyone, fired on the server: once client-2 has it, it did not have
    // the filtered one.
    let r = c.put(0, "/v1/event/fire/all", "y").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(15), "all on client-2", || async {
        let l = c2.get_json("/v1/event/list").await?;
        Ok(names(&l).contains(&"all".to_string()).then_some(()))
    })
    .await?;
    assert_eq!(names(&c2.get_json("/v1/event/list").await?), vec!["all"]);
    assert_eq!(names(&c.get_json(0, "/v1/event/list").await?), vec!["all"]);
    let l1 = names(&c1.get_json("/v1/event/list").await?);
    eventually(Duration::from_secs(15), "both on client-1", || async {
        let l = names(&c1.get_json("/v1/event/list").await?);
        Ok((l.len() == 2).then_some(()))
    })
    .await
    .map_err(|e| e.context(format!("client-1 listed {l1:?}")))?;
    // `?name` filters the local buffer.
    assert_eq!(
        names(&c1.get_json("/v1/event/list?name=all").await?),
        vec!["all"]
    );

    // A blocking list on client-2 wakes when the next event arrives over gossip.
    let r = c2.get("/v1/event/list").await?;
    let index = r.meta().index;
    assert!(index > 0, "{:?}", r.headers);
    let api = c2.api.clone();
    let watch = tokio::spawn(async move {
        api.blocking_get("/v1/event/list", index, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!watch.is_finished(), "the blocking list returned early");
    let r = c1.put("/v1/event/fire/wake", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, meta) = tokio::time::timeout(Duration::from_secs(20), watch).await???;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(meta.index, index);
    let got: Value = r.json()?;
    assert_eq!(names(&got), vec!["all", "wake"]);

    // --- An alias check on client-2 of a service on client-1 (another node) ---
    let r = c1
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "ID": "web-c1", "Port": 80,
                   "Check": {"CheckID": "web-ttl", "TTL": "600s"}})
            .to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c2
        .put(
            "/v1/agent/check/register",
            json!({"Name": "alias-web", "CheckID": "alias-web",
                   "AliasNode": "client-1", "AliasService": "web-c1"})
            .to_string(),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let alias_status = || async {
        let checks = c2.get_json("/v1/agent/checks").await?;
        Ok::<_, anyhow::Error>(checks["alias-web"]["Status"].as_str().map(str::to_string))
    };
    // The TTL check starts critical, and so does the alias.
    eventually(Duration::from_secs(15), "alias critical", || async {
        Ok((alias_status().await?.as_deref() == Some("critical")).then_some(()))
    })
    .await?;
    let out = c2.get_json("/v1/agent/checks").await?["alias-web"]["Output"].clone();
    assert!(
        out.as_str().unwrap_or_default().contains("failing"),
        "the alias follows the target's check: {out}"
    );
    let r = c1.put("/v1/agent/check/pass/web-ttl", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = std::time::Instant::now();
    eventually(Duration::from_secs(15), "alias passing", || async {
        Ok((alias_status().await?.as_deref() == Some("passing")).then_some(()))
    })
    .await?;
    eprintln!(
        "alias of another node's service followed a change in {:?}",
        t.elapsed()
    );
    let r = c1.put("/v1/agent/check/fail/web-ttl", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(15), "alias critical again", || async {
        Ok((alias_status().await?.as_deref() == Some("critical")).then_some(()))
    })
    .await?;

    drop((c1, c2));
    c.finish();
    Ok(())
}
