//! A real DNS consumer: HAProxy (Debian's package) with a `resolvers` section pointing at the
//! DNS server and `server-template` on `_web._tcp.service.consul` discovers three local HTTP
//! backends registered in the catalog, routes traffic to all of them, and stops using one
//! within a few seconds after its check turns critical — while that backend keeps running,
//! so only DNS can have told HAProxy.
//!
//! Skipped with a message (a failure under `REGISTRY_TESTS_STRICT`) when `haproxy` is not
//! installed (`apt-get install haproxy`, or
//! `tests/haproxy/run.sh`, which installs it and runs the same scenario against the
//! `registry` binary).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dns_common;

use dns_common::*;
use registry_proto::model::status;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP server that answers every request with `name`.
async fn backend(name: String) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, task)
}

/// One request through HAProxy; the body (backend name) or None.
async fn get(port: u16) -> Option<String> {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        if !text.starts_with("HTTP/1.1 200") {
            return None;
        }
        text.split("\r\n\r\n").nth(1).map(str::to_string)
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_discovers_backends_over_dns() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        skip_or_fail(
            "haproxy is not installed (apt-get install haproxy, or run tests/haproxy/run.sh)",
        );
        return;
    }
    let c = Catalog::default();
    let mut insts = Vec::new();
    let mut tasks = Vec::new();
    for i in 1..=3 {
        let (port, task) = backend(format!("backend-{i}")).await;
        tasks.push(task);
        let inst =
            Inst::new(&format!("web-node-{i}"), "127.0.0.1", "web", port).check(status::PASSING);
        c.register(&inst);
        insts.push(inst);
    }
    let dns = start(&c, test_config()).await;
    let fe = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    log stderr format raw local0 warning\n\
             defaults\n    mode http\n    log global\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             resolvers registry\n    nameserver dns1 127.0.0.1:{dns_port}\n    accepted_payload_size 8192\n\
             \x20   resolve_retries 3\n    timeout resolve 300ms\n    timeout retry 300ms\n\
             \x20   hold valid 1s\n    hold obsolete 0s\n    hold nx 0s\n    hold other 0s\n    hold refused 0s\n    hold timeout 0s\n\
             frontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\
             backend be\n    balance roundrobin\n\
             \x20   server-template web 5 _web._tcp.service.consul resolvers registry resolve-prefer ipv4 init-addr none\n",
            dns_port = dns.local_addr().port(),
        ),
    )
    .unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy rejected the config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = Proc(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    // All three backends get traffic once HAProxy has resolved the SRV records.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "backends seen through haproxy: {seen:?}"
        );
        if let Some(b) = get(fe).await {
            *seen.entry(b).or_default() += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("routed to {seen:?}");

    // backend-2's check turns critical: HAProxy drops it within a few seconds.
    let t0 = Instant::now();
    c.set_check(&insts[1], status::CRITICAL);
    let mut clean = 0;
    while clean < 30 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "haproxy still routes to backend-2 after {:?}",
            t0.elapsed()
        );
        match get(fe).await.as_deref() {
            Some("backend-2") => clean = 0,
            Some(_) => clean += 1,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let dropped = t0.elapsed();
    println!("backend-2 out of rotation after {dropped:?}");
    assert!(dropped < Duration::from_secs(5), "{dropped:?}");

    // And comes back when it passes again.
    c.set_check(&insts[1], status::PASSING);
    let t1 = Instant::now();
    loop {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "backend-2 never came back"
        );
        if get(fe).await.as_deref() == Some("backend-2") {
            break;
        }
    }
    println!("backend-2 back after {:?}", t1.elapsed());
    dns.shutdown().await;
    for t in tasks {
        t.abort();
    }
}
