//! Hardened edges end to end: a client sending its headers one byte a second is cut off after
//! the header timeout while other clients are answered at once; a client past
//! `limits.http_max_conns_per_client` gets Consul's 429 while another client is served;
//! oversized headers and bodies are refused with 431/413; `request_limits` in `enforcing`
//! mode answers 429 (503 for a write on the leader) with Consul's messages; the DNS TCP port
//! caps one client's connections without starving the others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::cluster::{ClusterOptions, TestCluster, HTTP_PORT};
use registry_tests::free_tcp_udp_port;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Another address of the cluster's block, to act as a distinct client.
fn peer_ip(c: &TestCluster, last: u8) -> Ipv4Addr {
    let o = c.server(0).ip.octets();
    Ipv4Addr::new(o[0], o[1], o[2], last)
}

async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    Ok(s.connect(to).await?)
}

fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Reads what the server sends until it closes (or `limit` passes).
async fn read_until_close(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_do_not_stop_others() -> Result<()> {
    let dns_port = free_tcp_udp_port();
    let c = TestCluster::start_with(ClusterOptions::new(1).hcl(&format!(
        "limits {{\n  http_max_conns_per_client = 4\n}}\nports {{\n  dns = {dns_port}\n}}"
    )))
    .await?;
    let http = SocketAddr::from((c.server(0).ip, HTTP_PORT));
    let url = format!("http://{http}/v1/status/leader");

    // A slowloris: one header byte a second.
    let mut slow = connect_from(peer_ip(&c, 50), http).await?;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let head = b"GET /v1/status/leader HTTP/1.1\r\nHost: registry\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in head {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        slow
    });
    // Meanwhile others are answered at once.
    let other = client_from(peer_ip(&c, 52));
    for _ in 0..5 {
        let t = Instant::now();
        let r = other.get(&url).send().await?;
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The slow client is cut off after the header timeout (10 s), long before it finishes.
    let mut slow = writer.await?;
    let closed_after = started.elapsed();
    assert!(
        closed_after < Duration::from_secs(25),
        "slow client kept for {closed_after:?}"
    );
    let rest = read_until_close(&mut slow, Duration::from_secs(5)).await;
    assert!(rest.is_some(), "the slow connection is still open");
    assert!(!rest.unwrap_or_default().contains("200 OK"));

    // A greedy client holds its 4 connections; the 5th gets Consul's 429, others are served.
    let greedy = peer_ip(&c, 51);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(greedy, http).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = connect_from(greedy, http).await?;
    let _ = fifth
        .write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: r\r\n\r\n")
        .await;
    let answer = read_until_close(&mut fifth, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("too many concurrent connections"),
        "{answer}"
    );
    let r = other.get(&url).send().await?;
    assert_eq!(r.status(), 200);
    // Once the greedy client lets go, it is served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client_from(greedy).get(&url).send().await?;
    assert_eq!(r.status(), 200);

    // Oversized headers and bodies.
    let r = other
        .get(&url)
        .header("X-Big", "a".repeat(100 * 1024))
        .send()
        .await?;
    assert_eq!(r.status(), 431);
    assert!(r.text().await?.contains("Request headers too large"));
    let r = other
        .put(format!("http://{http}/v1/kv/big"))
        .body(vec![b'a'; 600_000])
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    assert!(r.text().await?.contains("too large"));

    // DNS over TCP: one client's connections are capped (64); another client still gets
    // answers.
    let dns = SocketAddr::from((c.server(0).ip, dns_port));
    let mut hog = Vec::new();
    for _ in 0..64 {
        hog.push(connect_from(greedy, dns).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = connect_from(greedy, dns).await?;
    let closed = read_until_close(&mut over, Duration::from_secs(3)).await;
    assert_eq!(
        closed.as_deref(),
        Some(""),
        "the 65th DNS connection stayed open"
    );
    let mut q = connect_from(peer_ip(&c, 53), dns).await?;
    // SOA query for `consul.`, length-prefixed.
    let msg: &[u8] = &[
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 6, b'c', b'o', b'n', b's', b'u', b'l', 0,
        0, 6, 0, 1,
    ];
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    q.write_all(&framed).await?;
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(3), q.read_exact(&mut len)).await??;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    q.read_exact(&mut reply).await?;
    assert_eq!(&reply[..2], &[0x12, 0x34]);
    drop(hog);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_enforcing_answers_429() -> Result<()> {
    let c = TestCluster::start_with(ClusterOptions::new(1).hcl(
        "limits {\n  request_limits {\n    mode = \"enforcing\"\n    read_rate = 5\n    write_rate = 5\n  }\n}",
    ))
    .await?;
    let base = format!("http://{}", SocketAddr::from((c.server(0).ip, HTTP_PORT)));
    let http = client_from(Ipv4Addr::LOCALHOST);
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..40 {
        let r = http.get(format!("{base}/v1/kv/missing")).send().await?;
        match r.status().as_u16() {
            404 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(
                    r.text().await?,
                    "rate limit exceeded, try again later or against a different server"
                );
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1 && limited >= 20, "ok {ok}, limited {limited}");
    // A write on the leader: 503, Consul's "only the leader" message.
    let mut saw_503 = false;
    for i in 0..20 {
        let r = http
            .put(format!("{base}/v1/kv/w{i}"))
            .body("x")
            .send()
            .await?;
        if r.status() == 503 {
            assert!(r
                .text()
                .await?
                .contains("can only be performed by the leader"));
            saw_503 = true;
        }
    }
    assert!(saw_503);
    // The agent's own endpoints are not limited.
    for _ in 0..20 {
        let r = http.get(format!("{base}/v1/agent/self")).send().await?;
        assert_eq!(r.status(), 200);
    }
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = http.get(format!("{base}/v1/kv/missing")).send().await?;
    assert_eq!(r.status(), 404);
    Ok(())
}
