//! Failure detection of client agents, end to end: 3 servers and 5 client agents, each client
//! on its own loopback address with the default ports, each running a `web` instance from its
//! config dir with an HTTP and a TCP check against a small HTTP server this test runs.
//!
//! Every agent lists all 8 members alive; a client killed with SIGKILL turns failed, its
//! `serfHealth` critical and its instance leaves `?passing` (and DNS), within a bounded time;
//! restarted, it comes back passing. A SIGSTOPped client turns critical and recovers on
//! SIGCONT with no manual step. A client that leaves gracefully is deregistered at once.
//! Times from the fault to the catalog change are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use registry_tests::client::ClientAgent;
use registry_tests::cluster::{ClusterOptions, TestCluster};
use registry_tests::{eventually, strict, StubHttpServer};
use serde_json::{json, Value};

const CLIENTS: usize = 5;
/// Bound on fault → catalog change. Detection takes 2 to 4 s on a quiet machine; the bound
/// leaves room for a loaded CI machine and for the leader's reconciliation.
const DETECT: Duration = Duration::from_secs(30);

/// Members and their status as agent `via` (a base URL's client) lists them.
fn statuses(members: &Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = members
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["Name"].as_str().unwrap_or_default().to_string(),
                        m["Status"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits until server `via` lists `node` with `status`.
async fn wait_member(c: &TestCluster, via: usize, node: &str, status: i64) -> Result<()> {
    eventually(
        DETECT,
        &format!("{node} status {status} on server {via}"),
        || async {
            let m = statuses(&c.get_json(via, "/v1/agent/members").await?);
            Ok(m.iter()
                .any(|(n, s)| n == node && *s == status)
                .then_some(()))
        },
    )
    .await
}

/// Status of `node`'s `serfHealth` in the catalog, read through server 0.
async fn serf_health(c: &TestCluster, node: &str) -> Result<Option<String>> {
    let checks = c.get_json(0, &format!("/v1/health/node/{node}")).await?;
    Ok(checks
        .as_array()
        .ok_or_else(|| anyhow!("checks: {checks}"))?
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .and_then(|c| c["Status"].as_str().map(str::to_string)))
}

/// Nodes with a passing `web` instance, read through `via`.
async fn passing_web(via: &ClientAgent) -> Result<Vec<String>> {
    let v = via.get_json("/v1/health/service/web?passing").await?;
    let mut nodes: Vec<String> = v
        .as_array()
        .ok_or_else(|| anyhow!("health: {v}"))?
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap_or_default().to_string())
        .collect();
    nodes.sort();
    Ok(nodes)
}

/// Waits until `node`'s serfHealth is `want` and its `web` instance is (`passing`) or is not
/// in `?passing` as seen through `via`; returns the time since `since`.
async fn wait_node(
    c: &TestCluster,
    via: &ClientAgent,
    node: &str,
    want: &str,
    since: Instant,
) -> Result<Duration> {
    let passing = want == "passing";
    eventually(DETECT, &format!("{node} serfHealth {want}"), || async {
        let serf = serf_health(c, node).await?;
        let web = passing_web(via).await?;
        Ok(
            (serf.as_deref() == Some(want) && web.iter().any(|n| n == node) == passing)
                .then_some(()),
        )
    })
    .await?;
    Ok(since.elapsed())
}

fn web_config(name: &str, port: u16, check: &StubHttpServer) -> String {
    json!({
        "service": {
            "name": "web",
            "id": format!("web-{name}"),
            "port": port,
            "checks": [
                {"id": format!("http-{name}"), "http": check.url("/health"), "interval": "1s"},
                {"id": format!("tcp-{name}"), "tcp": check.addr.to_string(), "interval": "1s"}
            ]
        }
    })
    .to_string()
}

/// `dig +short web.service.consul A` through a client's DNS.
fn dig_web(via: &ClientAgent) -> Result<Vec<String>> {
    let mut ips: Vec<String> = via
        .dig("web.service.consul", "A")?
        .lines()
        .map(str::to_string)
        .collect();
    ips.sort();
    Ok(ips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_stopped_and_leaving_clients_follow_in_the_catalog() -> Result<()> {
    let has_dig = Command::new("dig").arg("-v").output().is_ok();
    if !has_dig && strict() {
        bail!("dig is missing (dnsutils)");
    }
    let c = TestCluster::start_with(ClusterOptions::new(3)).await?;
    let check = StubHttpServer::start(200, "ok").await?;
    let octets = c.server(0).ip.octets();
    let servers: Vec<String> = (0..3).map(|i| c.server(i).ip.to_string()).collect();
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let name = format!("client-{}", k + 1);
        let ip = IpAddr::V4(Ipv4Addr::new(
            octets[0],
            octets[1],
            octets[2],
            11 + u8::try_from(k)?,
        ));
        let port = 8080 + u16::try_from(k)?;
        let cfg = vec![("web.json", web_config(&name, port, &check))];
        clients.push(ClientAgent::start_at(&name, ip, &servers, &cfg).await?);
    }
    let names: Vec<String> = clients.iter().map(|a| a.name.clone()).collect();

    // Every agent lists all eight members alive.
    for via in 0..CLIENTS + 3 {
        eventually(Duration::from_secs(30), "8 members alive", || async {
            let m = if via < 3 {
                c.get_json(via, "/v1/agent/members").await?
            } else {
                clients[via - 3].get_json("/v1/agent/members").await?
            };
            let s = statuses(&m);
            Ok((s.len() == 8 && s.iter().all(|(_, st)| *st == 1)).then_some(()))
        })
        .await?;
    }
    // Every instance passing (HTTP and TCP checks run on the clients).
    eventually(
        Duration::from_secs(30),
        "5 web instances passing",
        || async { Ok((passing_web(&clients[0]).await? == names).then_some(())) },
    )
    .await?;
    if has_dig {
        eventually(Duration::from_secs(10), "5 A records", || async {
            Ok((dig_web(&clients[0])?.len() == CLIENTS).then_some(()))
        })
        .await?;
    }

    // kill -9 a client: failed, critical, gone from ?passing and DNS; back after a restart.
    let victim = 2;
    let vname = names[victim].clone();
    clients[victim].kill9();
    let t = Instant::now();
    let took = wait_node(&c, &clients[0], &vname, "critical", t).await?;
    eprintln!("kill -9 {vname}: serfHealth critical and out of ?passing after {took:?}");
    // Every server's failure detector reaches the same verdict (each on its own clock).
    for via in 0..3 {
        wait_member(&c, via, &vname, 4).await?;
    }
    if has_dig {
        let ips = dig_web(&clients[0])?;
        let vip = clients[victim].ip.to_string();
        assert_eq!(ips.len(), CLIENTS - 1, "{ips:?}");
        assert!(!ips.contains(&vip), "{ips:?}");
    }
    let t = Instant::now();
    clients[victim].restart().await?;
    let took = wait_node(&c, &clients[0], &vname, "passing", t).await?;
    eprintln!("{vname} restarted: passing again after {took:?}");

    // SIGSTOP: failed and critical; SIGCONT: alive and passing, with no manual step.
    let stopped = 3;
    let sname = names[stopped].clone();
    clients[stopped].signal("-STOP")?;
    let t = Instant::now();
    let took = wait_node(&c, &clients[0], &sname, "critical", t);
    let took = match took.await {
        Ok(d) => d,
        Err(e) => {
            clients[stopped].signal("-CONT")?;
            return Err(e);
        }
    };
    eprintln!("SIGSTOP {sname}: critical after {took:?}");
    clients[stopped].signal("-CONT")?;
    let t = Instant::now();
    let took = wait_node(&c, &clients[0], &sname, "passing", t).await?;
    eprintln!("SIGCONT {sname}: passing again after {took:?}");
    eventually(DETECT, "the stopped client alive on client-2", || async {
        let m = statuses(&clients[1].get_json("/v1/agent/members").await?);
        Ok(m.contains(&(sname.clone(), 1)).then_some(()))
    })
    .await?;

    // A graceful leave deregisters the node at once and shows it left (3).
    let leaving = 4;
    let lname = names[leaving].clone();
    let r = clients[leaving].put("/v1/agent/leave", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    clients[leaving].wait_exit(Duration::from_secs(15))?;
    let t = Instant::now();
    eventually(DETECT, &format!("{lname} deregistered"), || async {
        let n = c.get_json(0, &format!("/v1/catalog/node/{lname}")).await?;
        Ok(n.is_null().then_some(()))
    })
    .await?;
    eprintln!(
        "{lname} left: deregistered {:?} after its agent exited",
        t.elapsed()
    );
    wait_member(&c, 2, &lname, 3).await?;
    let web = passing_web(&clients[0]).await?;
    assert!(!web.contains(&lname), "{web:?}");
    // The others were never disturbed.
    for (k, name) in names.iter().enumerate() {
        if k != leaving {
            assert_eq!(serf_health(&c, name).await?.as_deref(), Some("passing"));
        }
    }
    drop(clients);
    c.finish();
    Ok(())
}
