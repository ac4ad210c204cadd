//! `/v1/catalog/datacenters` orders datacenters by their estimated round-trip time (WAN
//! network coordinates, else measured pings), `/v1/coordinate/datacenters` lists the servers'
//! WAN coordinates and `registry rtt -wan` estimates the delays from them. Three
//! single-server datacenters: dc2 and dc3 advertise their WAN address (`advertise_addr_wan`)
//! on a relay run by this test, which passes their WAN gossip (UDP) and server-port traffic
//! (TCP) on to them after a delay (20 ms to dc2, 120 ms to dc3; the kernels this runs on have
//! no `sch_netem`, so the delay is added in user space on the WAN path only). dc1 then lists
//! dc1, dc2, dc3; a `?dc=dc3` read goes through the relay (it takes at least the delay); and
//! when the delays are swapped, dc1's order follows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use registry_tests::cluster::{ClusterOptions, TestCluster};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A relay in front of one server: `listen:8300` (TCP) and `listen:8302` (UDP) to the
/// server's own ports, each direction delayed by half of `delay_ms`.
struct Relay {
    delay_ms: Arc<AtomicU64>,
    target: Arc<Mutex<Option<IpAddr>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn half(delay: &AtomicU64) -> Duration {
    Duration::from_micros(delay.load(Ordering::Relaxed) * 500)
}

/// Copies `from` to `to`, each chunk delivered `half(delay)` after it was read, in order.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = tx.send((Instant::now() + half(&delay), buf[..n].to_vec()));
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

impl Relay {
    async fn start(listen: IpAddr, delay_ms: u64) -> Result<Relay> {
        let delay = Arc::new(AtomicU64::new(delay_ms));
        let target: Arc<Mutex<Option<IpAddr>>> = Arc::default();
        let mut tasks = Vec::new();

        let tcp = TcpListener::bind(SocketAddr::new(listen, 8300)).await?;
        let (d, t) = (delay.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok((client, _)) = tcp.accept().await {
                let Some(ip) = *t.lock().unwrap() else {
                    continue;
                };
                let d = d.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(SocketAddr::new(ip, 8300)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, d.clone()), pipe(sr, cw, d));
                });
            }
        }));

        // UDP: a socket per sender, so the server's answers come back through the relay.
        let udp = Arc::new(UdpSocket::bind(SocketAddr::new(listen, 8302)).await?);
        let (d, t) = (delay.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let peers: Arc<Mutex<std::collections::HashMap<SocketAddr, Arc<UdpSocket>>>> =
                Arc::default();
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let Some(ip) = *t.lock().unwrap() else {
                    continue;
                };
                let packet = buf[..n].to_vec();
                let existing = peers.lock().unwrap().get(&from).cloned();
                let sock = match existing {
                    Some(s) => s,
                    None => {
                        let Ok(s) = UdpSocket::bind(SocketAddr::new(listen, 0)).await else {
                            continue;
                        };
                        let s = Arc::new(s);
                        peers.lock().unwrap().insert(from, s.clone());
                        // Answers from the server go back to the sender from the main socket.
                        let (back, main, d) = (s.clone(), udp.clone(), d.clone());
                        tokio::spawn(async move {
                            let mut b = vec![0u8; 65_536];
                            while let Ok((n, _)) = back.recv_from(&mut b).await {
                                let p = b[..n].to_vec();
                                let (main, d) = (main.clone(), d.clone());
                                tokio::spawn(async move {
                                    tokio::time::sleep(half(&d)).await;
                                    let _ = main.send_to(&p, from).await;
                                });
                            }
                        });
                        s
                    }
                };
                let d = d.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(half(&d)).await;
                    let _ = sock.send_to(&packet, SocketAddr::new(ip, 8302)).await;
                });
            }
        }));
        Ok(Relay {
            delay_ms: delay,
            target,
            tasks,
        })
    }
}

async fn datacenters(c: &TestCluster) -> Result<Vec<String>> {
    let v = c.get_json(0, "/v1/catalog/datacenters").await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

async fn wait_order(c: &TestCluster, want: &[&str], timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < timeout {
        if let Ok(list) = datacenters(c).await {
            if list == want {
                return Ok(started.elapsed());
            }
            last = list;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("dc1 lists {last:?}, not {want:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenters_are_sorted_by_round_trip_time() -> Result<()> {
    let dc1 = TestCluster::start_with(ClusterOptions::new(1).hcl(r#"datacenter = "dc1""#)).await?;
    let dc1_ip = dc1.server(0).ip;
    // The relays listen on addresses of dc1's claimed block that no server uses.
    let o = dc1_ip.octets();
    let relay_ip = |last: u8| IpAddr::from([o[0], o[1], o[2], last]);
    let r2 = Relay::start(relay_ip(200), 20).await?;
    let r3 = Relay::start(relay_ip(201), 120).await?;
    let remote = |dc: &str, relay: IpAddr| {
        ClusterOptions::new(1).hcl(&format!(
            "datacenter = \"{dc}\"\nadvertise_addr_wan = \"{relay}\"\nretry_join_wan = [\"{dc1_ip}\"]"
        ))
    };
    let dc2 = TestCluster::launch(remote("dc2", relay_ip(200)))?;
    *r2.target.lock().unwrap() = Some(IpAddr::V4(dc2.server(0).ip));
    let dc3 = TestCluster::launch(remote("dc3", relay_ip(201)))?;
    *r3.target.lock().unwrap() = Some(IpAddr::V4(dc3.server(0).ip));

    let t = wait_order(&dc1, &["dc1", "dc2", "dc3"], Duration::from_secs(60)).await?;
    eprintln!("dc1 orders dc2 (20 ms) before dc3 (120 ms) after {t:?}");

    // WAN coordinates: every server's, per datacenter, in Consul's shape, nearest first.
    let names = [
        format!("{}.dc1", dc1.server(0).node),
        format!("{}.dc2", dc2.server(0).node),
        format!("{}.dc3", dc3.server(0).node),
    ];
    let started = Instant::now();
    let v = loop {
        let v = dc1.get_json(0, "/v1/coordinate/datacenters").await?;
        let all = v.as_array().is_some_and(|l| {
            l.len() == 3
                && l.iter()
                    .all(|d| d["Coordinates"].as_array().is_some_and(|c| !c.is_empty()))
        });
        if all {
            break v;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("not every datacenter has WAN coordinates: {v}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    assert_eq!(list[0]["Datacenter"], "dc1", "this datacenter first: {v}");
    for (i, dc) in ["dc1", "dc2", "dc3"].iter().enumerate() {
        let e = list.iter().find(|e| e["Datacenter"] == *dc).unwrap();
        assert_eq!(e["AreaID"], "wan", "{v}");
        assert_eq!(e["Coordinates"][0]["Node"], names[i].as_str(), "{v}");
        assert_eq!(
            e["Coordinates"][0]["Coord"]["Vec"]
                .as_array()
                .unwrap()
                .len(),
            8
        );
    }
    // `registry rtt -wan` estimates each delay from the coordinates (dc1's server being the
    // second node by default).
    let http = format!("-http-addr={}", dc1.server(0).http_addr());
    let rtt_ms = |node: &str| -> Result<f64> {
        let (ok, out, err) = dc1.cli(&["rtt", "-wan", &http, node])?;
        if !ok {
            bail!("rtt -wan {node}: {out} {err}");
        }
        let ms = out
            .split("rtt: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<f64>().ok());
        match ms {
            Some(ms) if out.contains("(using WAN coordinates)") => Ok(ms),
            _ => bail!("unexpected rtt output: {out}"),
        }
    };
    let started = Instant::now();
    let (to2, to3) = loop {
        let (to2, to3) = (rtt_ms(&names[1])?, rtt_ms(&names[2])?);
        // The relays make the paths between dc2 and dc3 asymmetric (each side's packets
        // take the other's relay), which no coordinate space embeds exactly: only the order
        // and a plausible size are checked.
        if to2 < to3 && (20.0..1000.0).contains(&to3) && to2 > 1.0 {
            break (to2, to3);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("WAN coordinates estimate dc2 {to2} ms and dc3 {to3} ms (delays 20 and 120 ms)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "WAN coordinates: dc2 {to2:.1} ms, dc3 {to3:.1} ms (delays 20 and 120 ms) after {:?}",
        started.elapsed()
    );
    // Once settled, the coordinates order the datacenters too.
    wait_order(&dc1, &["dc1", "dc2", "dc3"], Duration::from_secs(10)).await?;
    let (ok, out, _) = dc1.cli(&["rtt", "-wan", &http, &names[1], &names[2]])?;
    assert!(
        ok && out.contains(&format!("Estimated {} <-> {} rtt:", names[1], names[2])),
        "{out}"
    );
    let (ok, _, err) = dc1.cli(&["rtt", "-wan", &http, "nope.dc9"])?;
    assert!(!ok && err.contains("Could not find a coordinate"), "{err}");

    // A read of dc3 goes over its WAN address, through the relay.
    let started = Instant::now();
    let nodes = dc1.get_json(0, "/v1/catalog/nodes?dc=dc3").await?;
    let took = started.elapsed();
    assert_eq!(nodes[0]["Datacenter"], "dc3", "{nodes}");
    assert!(took >= Duration::from_millis(110), "?dc=dc3 took {took:?}");

    // Swap the delays: the order follows.
    r2.delay_ms.store(200, Ordering::Relaxed);
    r3.delay_ms.store(10, Ordering::Relaxed);
    let t = wait_order(&dc1, &["dc1", "dc3", "dc2"], Duration::from_secs(40)).await?;
    eprintln!("dc1 reorders after the delays were swapped in {t:?}");
    dc1.finish();
    dc2.finish();
    dc3.finish();
    Ok(())
}
