//! LAN gossip end to end on real server processes on their own loopback addresses: every
//! member sees every other alive; a member killed, stopped or cut off by iptables turns
//! failed and its `serfHealth` critical (its services leave `?passing` and DNS, a lock held
//! by a session on it is released), and comes back passing with no manual step; a failed
//! member is reaped after `reconnect_timeout`; graceful leave and `force-leave` deregister
//! at once (and SIGTERM is a leave with `leave_on_terminate`); user events fired on one agent
//! are listed on every other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use registry_tests::cluster::{partition_support, ClusterOptions, TestCluster};
use registry_tests::eventually;
use serde_json::{json, Value};

fn strict() -> bool {
    std::env::var("REGISTRY_TESTS_STRICT").as_deref() == Ok("1")
}

const WAIT: Duration = Duration::from_secs(30);

/// `Status` of `node` in server `via`'s `/v1/agent/members`.
async fn member_status(c: &TestCluster, via: usize, node: &str) -> Result<Option<i64>> {
    let members = c.get_json(via, "/v1/agent/members").await?;
    Ok(members
        .as_array()
        .ok_or_else(|| anyhow!("members: {members}"))?
        .iter()
        .find(|m| m["Name"] == node)
        .and_then(|m| m["Status"].as_i64()))
}

/// Status of `node`'s `serfHealth` check, read through server `via`.
async fn serf_health(c: &TestCluster, via: usize, node: &str) -> Result<Option<String>> {
    let checks = c.get_json(via, &format!("/v1/health/node/{node}")).await?;
    Ok(checks
        .as_array()
        .ok_or_else(|| anyhow!("checks: {checks}"))?
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .and_then(|c| c["Status"].as_str().map(str::to_string)))
}

/// Nodes with a passing `web` instance, read through server `via`.
async fn passing_web(c: &TestCluster, via: usize) -> Result<Vec<String>> {
    let v = c.get_json(via, "/v1/health/service/web?passing").await?;
    let mut nodes: Vec<String> = v
        .as_array()
        .ok_or_else(|| anyhow!("health: {v}"))?
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap_or_default().to_string())
        .collect();
    nodes.sort();
    Ok(nodes)
}

async fn wait_member(c: &TestCluster, via: usize, node: &str, want: i64) -> Result<()> {
    eventually(
        WAIT,
        &format!("{node} status {want} on server {via}"),
        || async { Ok((member_status(c, via, node).await? == Some(want)).then_some(())) },
    )
    .await
}

async fn wait_serf(c: &TestCluster, via: usize, node: &str, want: &str) -> Result<()> {
    eventually(WAIT, &format!("{node} serfHealth {want}"), || async {
        Ok((serf_health(c, via, node).await?.as_deref() == Some(want)).then_some(()))
    })
    .await
}

/// `dig +short web.service.consul A` against server `via`'s DNS port; `None` without dig.
fn dig_web(c: &TestCluster, via: usize) -> Option<Vec<String>> {
    let out = Command::new("dig")
        .args([
            &format!("@{}", c.server(via).ip),
            "-p",
            "8600",
            "+short",
            "+time=2",
            "+tries=1",
            "web.service.consul",
            "A",
        ])
        .output()
        .ok()?;
    let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    ips.sort();
    Some(ips)
}

fn signal(c: &TestCluster, i: usize, sig: &str) -> Result<()> {
    let pid = c
        .server(i)
        .pid()
        .ok_or_else(|| anyhow!("server {i} not running"))?;
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    if !st.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_turns_critical_releases_its_locks_and_comes_back() -> Result<()> {
    let partitions = match partition_support() {
        Ok(()) => true,
        Err(e) if strict() => {
            bail!("network partitions need iptables with the cgroup match: {e:#}")
        }
        Err(e) => {
            eprintln!("SKIPPED (partition step): {e:#}");
            false
        }
    };
    let has_dig = Command::new("dig").arg("-v").output().is_ok();
    if !has_dig {
        if strict() {
            bail!("dig is missing (dnsutils)");
        }
        eprintln!("SKIPPED (DNS steps): dig is not installed");
    }
    // Only for this test process and the servers it starts.
    std::env::set_var("REGISTRY_TEST_RECONNECT_TIMEOUT", "25s");
    let mut opts = ClusterOptions::new(3)
        .hcl("ports { dns = 8600 }")
        .hcl("autopilot { cleanup_dead_servers = false }");
    if partitions {
        opts = opts.partitionable();
    }
    let t0 = std::time::Instant::now();
    let mut c = TestCluster::start_with(opts).await?;
    let names: Vec<String> = (0..3).map(|i| c.server(i).node.clone()).collect();

    // Every server lists every member alive, over HTTP and in `registry members`.
    for via in 0..3 {
        for n in &names {
            wait_member(&c, via, n, 1).await?;
        }
    }
    let (ok, out, err) = c.cli(&[
        "members",
        &format!("-http-addr={}", c.server(1).http_addr()),
    ])?;
    assert!(ok, "members failed: {err}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" alive ")).count(),
        3,
        "{out}"
    );
    assert!(out.starts_with("Node "), "{out}");

    let leader = c.leader().await?;
    let followers = c.followers(leader);
    let (x, y) = (followers[0], followers[1]);
    let (xn, yn) = (names[x].clone(), names[y].clone());
    for (i, port) in [(x, 8080), (y, 8081)] {
        let r = c
            .put(
                i,
                "/v1/agent/service/register",
                json!({"Name": "web", "Port": port}).to_string(),
            )
            .await?;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut both = vec![xn.clone(), yn.clone()];
    both.sort();
    eventually(WAIT, "both web instances passing", || async {
        Ok((passing_web(&c, leader).await? == both).then_some(()))
    })
    .await?;
    for n in &names {
        wait_serf(&c, leader, n, "passing").await?;
    }

    eprintln!(
        "[{:?}] all members alive; web passing on x and y",
        t0.elapsed()
    );
    // A lock held by a session on x (default checks: serfHealth of x).
    let sid = c
        .put(
            x,
            "/v1/session/create",
            r#"{"Name":"x-lock","LockDelay":"0s"}"#,
        )
        .await?
        .json()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .put(x, &format!("/v1/kv/gossip/lock?acquire={sid}"), "x")
        .await?;
    assert_eq!(r.text().trim(), "true");

    eprintln!("[{:?}] lock held on x", t0.elapsed());
    // kill -9 x: failed, critical, out of ?passing and DNS, session invalidated.
    c.kill9(x);
    wait_member(&c, leader, &xn, 4).await?;
    wait_member(&c, y, &xn, 4).await?;
    wait_serf(&c, leader, &xn, "critical").await?;
    assert_eq!(passing_web(&c, leader).await?, vec![yn.clone()]);
    let critical = c.get_json(leader, "/v1/health/state/critical").await?;
    assert!(
        critical
            .as_array()
            .unwrap()
            .iter()
            .any(|ch| ch["Node"] == xn.as_str() && ch["CheckID"] == "serfHealth"),
        "{critical}"
    );
    if has_dig {
        let ip_y = c.server(y).ip.to_string();
        eventually(WAIT, "DNS without the dead instance", || async {
            Ok((dig_web(&c, leader) == Some(vec![ip_y.clone()])).then_some(()))
        })
        .await?;
    }
    eventually(WAIT, "the session on the dead node invalidated", || async {
        let info = c
            .get_json(leader, &format!("/v1/session/info/{sid}"))
            .await?;
        Ok(info.as_array().is_none_or(|a| a.is_empty()).then_some(()))
    })
    .await?;
    let kv = c.get_json(leader, "/v1/kv/gossip/lock").await?;
    assert!(kv[0].get("Session").is_none_or(Value::is_null), "{kv}");
    let sid_y = c
        .put(y, "/v1/session/create", r#"{"Name":"y-lock"}"#)
        .await?
        .json()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .put(y, &format!("/v1/kv/gossip/lock?acquire={sid_y}"), "y")
        .await?;
    assert_eq!(r.text().trim(), "true", "another holder acquires the lock");

    eprintln!(
        "[{:?}] x killed: failed, critical, out of ?passing and DNS; lock moved to y",
        t0.elapsed()
    );
    // Restarted: alive and passing again, its (persisted) instance back everywhere.
    c.restart(x).await?;
    wait_member(&c, leader, &xn, 1).await?;
    wait_serf(&c, leader, &xn, "passing").await?;
    eventually(WAIT, "web on x passing again", || async {
        Ok((passing_web(&c, leader).await? == both).then_some(()))
    })
    .await?;
    if has_dig {
        let mut ips = vec![c.server(x).ip.to_string(), c.server(y).ip.to_string()];
        ips.sort();
        eventually(WAIT, "DNS with both instances", || async {
            Ok((dig_web(&c, leader) == Some(ips.clone())).then_some(()))
        })
        .await?;
    }

    eprintln!("[{:?}] x restarted: alive and passing", t0.elapsed());
    // SIGSTOP: failed; SIGCONT: alive.
    signal(&c, x, "-STOP")?;
    let stopped = signal_guard(&c, x);
    wait_member(&c, leader, &xn, 4).await?;
    wait_serf(&c, leader, &xn, "critical").await?;
    signal(&c, x, "-CONT")?;
    drop(stopped);
    wait_member(&c, leader, &xn, 1).await?;
    wait_serf(&c, leader, &xn, "passing").await?;

    eprintln!(
        "[{:?}] x stopped then continued: failed then alive",
        t0.elapsed()
    );
    // Cut off by iptables: failed; the rule removed: alive, with no manual step.
    if partitions {
        c.partition(&[x])?;
        let leader_now = c.wait_for_leader_among(&[leader, y], WAIT).await?;
        wait_member(&c, leader_now, &xn, 4).await?;
        wait_serf(&c, leader_now, &xn, "critical").await?;
        c.heal();
        let leader_now = c.wait_for_leader(WAIT).await?;
        wait_member(&c, leader_now, &xn, 1).await?;
        wait_member(&c, x, &names[leader_now], 1).await?;
        wait_serf(&c, leader_now, &xn, "passing").await?;
    }

    eprintln!(
        "[{:?}] partition step done (ran: {partitions})",
        t0.elapsed()
    );
    // Dead for longer than reconnect_timeout: reaped and deregistered.
    c.kill9(x);
    let leader_now = c.wait_for_leader_among(&[leader, y], WAIT).await?;
    eventually(
        Duration::from_secs(90),
        "the dead node reaped from the catalog",
        || async {
            let nodes = c.get_json(leader_now, "/v1/catalog/nodes").await?;
            let listed = nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["Node"] == xn.as_str());
            let member = member_status(&c, leader_now, &xn).await?;
            Ok((!listed && member.is_none()).then_some(()))
        },
    )
    .await?;
    eprintln!("[{:?}] x reaped after reconnect_timeout", t0.elapsed());
    c.finish();
    Ok(())
}

/// Sends SIGCONT to server `i` when dropped, so a failing assertion never leaves it stopped.
fn signal_guard(c: &TestCluster, i: usize) -> impl Drop {
    struct Cont(Option<u32>);
    impl Drop for Cont {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = Command::new("kill")
                    .args(["-CONT", &pid.to_string()])
                    .status();
            }
        }
    }
    Cont(c.server(i).pid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_agent_and_leave_and_force_leave_deregister() -> Result<()> {
    let mut c = TestCluster::start_with(
        ClusterOptions::new(4)
            .hcl("autopilot { cleanup_dead_servers = false }")
            .hcl("leave_on_terminate = true"),
    )
    .await?;
    let names: Vec<String> = (0..4).map(|i| c.server(i).node.clone()).collect();
    for via in 0..4 {
        for n in &names {
            wait_member(&c, via, n, 1).await?;
        }
    }

    // An event fired on one agent is listed on every other; a blocking list wakes for it.
    let blocked = {
        let api = c.api();
        let first = api.get(3, "/v1/event/list?name=deploy").await?;
        let index = first.index();
        tokio::spawn(async move {
            api.get(
                3,
                &format!("/v1/event/list?name=deploy&index={index}&wait=30s"),
            )
            .await
        })
    };
    let (ok, out, err) = c.cli(&[
        "event",
        &format!("-http-addr={}", c.server(0).http_addr()),
        "-name=deploy",
        "v42",
    ])?;
    assert!(ok, "event failed: {err}");
    let id = out
        .trim()
        .strip_prefix("Event ID: ")
        .ok_or_else(|| anyhow!("{out}"))?
        .to_string();
    for via in 0..4 {
        eventually(WAIT, &format!("the event on server {via}"), || async {
            let list = c.get_json(via, "/v1/event/list?name=deploy").await?;
            let found = list.as_array().unwrap().iter().any(|e| {
                e["ID"] == id.as_str() && e["Payload"] == "djQy" // base64("v42")
            });
            Ok(found.then_some(()))
        })
        .await?;
    }
    let woke = blocked.await??;
    assert!(woke.text().contains(&id), "{}", woke.text());
    // A node filter: only that node keeps it.
    let r = c
        .put(1, &format!("/v1/event/fire/only?node=^{}$", names[2]), "")
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(WAIT, "the filtered event on its node", || async {
        let list = c.get_json(2, "/v1/event/list?name=only").await?;
        Ok((list.as_array().unwrap().len() == 1).then_some(()))
    })
    .await?;
    for via in [0, 1, 3] {
        let list = c.get_json(via, "/v1/event/list?name=only").await?;
        assert_eq!(list, json!([]), "server {via}");
    }

    // A graceful leave deregisters the node at once.
    let leader = c.leader().await?;
    let followers = c.followers(leader);
    let (f1, f2) = (followers[0], followers[1]);
    let (ok, out, err) = c.cli(&["leave", &format!("-http-addr={}", c.server(f1).http_addr())])?;
    assert!(ok && out.contains("Graceful leave complete"), "{out} {err}");
    c.wait_exit(f1, WAIT).await?;
    wait_member(&c, leader, &names[f1], 3).await?;
    eventually(
        Duration::from_secs(10),
        "the left node deregistered",
        || async {
            let nodes = c.get_json(leader, "/v1/catalog/nodes").await?;
            Ok((!nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["Node"] == names[f1].as_str()))
            .then_some(()))
        },
    )
    .await?;

    // force-leave of a failed member: left, deregistered; with -prune, forgotten.
    c.kill9(f2);
    wait_member(&c, leader, &names[f2], 4).await?;
    let (ok, _, err) = c.cli(&[
        "force-leave",
        &format!("-http-addr={}", c.server(leader).http_addr()),
        &names[f2],
    ])?;
    assert!(ok, "force-leave failed: {err}");
    wait_member(&c, leader, &names[f2], 3).await?;
    eventually(
        Duration::from_secs(10),
        "the force-left node deregistered",
        || async {
            let nodes = c.get_json(leader, "/v1/catalog/nodes").await?;
            Ok((!nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["Node"] == names[f2].as_str()))
            .then_some(()))
        },
    )
    .await?;
    let r = c
        .put(
            leader,
            &format!("/v1/agent/force-leave/{}?prune", names[f2]),
            "",
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(WAIT, "the pruned member gone", || async {
        Ok(member_status(&c, leader, &names[f2])
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let r = c
        .put(leader, "/v1/agent/force-leave/no-such-node", "")
        .await?;
    assert_eq!(r.status, 500, "{}", r.text());

    // leave_on_terminate: SIGTERM is a graceful leave.
    let f3 = c
        .followers(leader)
        .into_iter()
        .find(|i| ![f1, f2].contains(i))
        .ok_or_else(|| anyhow!("no third follower"))?;
    let status = c
        .stop(f3)
        .ok_or_else(|| anyhow!("server {f3} was not running"))?;
    assert!(status.success(), "SIGTERM exit: {status:?}");
    wait_member(&c, leader, &names[f3], 3).await?;
    eventually(
        Duration::from_secs(10),
        "the terminated node deregistered",
        || async {
            let nodes = c.get_json(leader, "/v1/catalog/nodes").await?;
            Ok((!nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["Node"] == names[f3].as_str()))
            .then_some(()))
        },
    )
    .await?;
    c.finish();
    Ok(())
}
