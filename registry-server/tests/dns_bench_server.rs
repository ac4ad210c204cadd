//! Not a test: the DNS server on its own for `benches/dns/run.sh` (dnsperf). Ignored unless
//! asked for by name:
//!
//! ```sh
//! DNS_BENCH_PORT=5300 DNS_BENCH_SECS=60 target/release/deps/dns_bench_server-* \
//!     --ignored --exact dns_bench_server --nocapture
//! ```
//!
//! The catalog is the benchmark zone: 100 services (`svc0`..`svc99`) with 3 instances each
//! on 300 nodes (`node0`..`node299`, 127.0.<n/250>.<n%250+1>), all passing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dns_common;

use dns_common::*;
use std::time::Duration;

fn env<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark server, run by benches/dns/run.sh"]
async fn dns_bench_server() {
    let port: u16 = env("DNS_BENCH_PORT", 5300);
    let secs: u64 = env("DNS_BENCH_SECS", 60);
    let workers: usize = env("DNS_BENCH_WORKERS", 2);
    let c = Catalog::default();
    for s in 0..100u32 {
        for k in 0..3u32 {
            let n = s * 3 + k;
            c.register(
                &Inst::new(
                    &format!("node{n}"),
                    &format!("127.0.{}.{}", n / 250, n % 250 + 1),
                    &format!("svc{s}"),
                    8000 + k as u16,
                )
                .id(&format!("svc{s}-{k}")),
            );
        }
    }
    let mut cfg = test_config();
    cfg.bind = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.udp_workers = workers;
    cfg.udp_reuse_port = env("DNS_BENCH_REUSEPORT", cfg.udp_reuse_port);
    let dns = start(&c, cfg).await;
    println!("READY {}", dns.local_addr());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    println!("STATS {:?}", dns.stats());
    dns.shutdown().await;
}
