//! `gossip-bench`: the agent's LAN gossip layer (`registry_agent::gossip`) with N members in
//! one process on loopback UDP ports.
//!
//! Measures, for one pool size: convergence (start until every member lists every other
//! alive), steady-state gossip bytes/s and CPU per member with false failures counted over a
//! window, then failure detection (one member stops gossiping; time until the first and the
//! last of the others report it failed). Prints one JSON line on stdout and a summary on
//! stderr. It measures; it asserts nothing.
//!
//! `--encrypt` runs the pool over the encrypting transport (AES-256-GCM, one key), and
//! `--codec` first prints the cost of sealing and opening one packet per size next to a copy
//! of the same bytes (the anchor, measured in the same run).

use anyhow::{Context, Result};
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::ChitchatEnvelope;
use clap::Parser;
use registry_agent::gossip::crypto::{GossipKey, Keys};
use registry_agent::gossip::transport::SecureTransport;
use registry_agent::gossip::{Gossip, GossipConfig, DEFAULT_PHI_THRESHOLD};
use registry_server::http::UserEvents;
use registry_server::leader::members::MemberStatus;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "gossip-bench",
    about = "LAN gossip convergence and failure detection"
)]
struct Args {
    /// Members in the pool.
    #[arg(long, default_value_t = 50)]
    members: usize,
    /// Steady-state window for bytes/s, CPU and false failures, in seconds.
    #[arg(long, default_value_t = 30)]
    steady_secs: u64,
    /// Gossip round interval in milliseconds (the agent's default is 200).
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// First UDP port; members use consecutive ports.
    #[arg(long, default_value_t = 24_000)]
    base_port: u16,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Phi threshold (default: the agent's).
    #[arg(long, default_value_t = DEFAULT_PHI_THRESHOLD)]
    phi: f64,
    /// Poll the member lists the way the first version of this benchmark did (a full copy
    /// of every member's list each time), to compare with runs made before the cheap
    /// accessors existed.
    #[arg(long)]
    copying_polls: bool,
    /// Label printed with the figures (e.g. `before`/`after`).
    #[arg(long, default_value = "")]
    label: String,
    /// Encrypt gossip (the agent's `encrypt`).
    #[arg(long)]
    encrypt: bool,
    /// Measure the packet codec first.
    #[arg(long)]
    codec: bool,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

struct Counting {
    counters: Arc<Counters>,
    inner: Box<dyn Transport>,
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    counters: Arc<Counters>,
}

#[async_trait]
impl Transport for Counting {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            counters: self.counters.clone(),
        }))
    }
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let out = self.inner.send(to, envelope).await?;
        self.counters
            .sent
            .fetch_add(out.num_bytes_sent as u64, Ordering::Relaxed);
        Ok(out)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let out = self.inner.recv().await?;
        self.counters
            .received
            .fetch_add(out.num_bytes_received as u64, Ordering::Relaxed);
        Ok(out)
    }
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let hz = 100.0;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

fn config(i: usize, args: &Args) -> GossipConfig {
    let port = args.base_port + u16::try_from(i).unwrap_or(u16::MAX);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let seeds = (0..3.min(args.members))
        .filter(|s| *s != i)
        .map(|s| {
            format!(
                "127.0.0.1:{}",
                args.base_port + u16::try_from(s).unwrap_or(0)
            )
        })
        .collect();
    let mut tags = BTreeMap::new();
    for (k, v) in [
        ("role", "node"),
        ("dc", "dc1"),
        ("build", "1.20.0:registry-0.1.0"),
        ("vsn", "2"),
        ("vsn_min", "2"),
        ("vsn_max", "3"),
        ("segment", ""),
    ] {
        tags.insert(k.to_string(), v.to_string());
    }
    tags.insert("id".into(), format!("00000000-0000-0000-0000-{i:012}"));
    GossipConfig {
        node_name: format!("node-{i:04}"),
        datacenter: "dc1".into(),
        bind: addr,
        advertise: addr,
        tags,
        join: seeds,
        retry_interval: Duration::from_secs(30),
        interval: Duration::from_millis(args.interval_ms),
        phi_threshold: args.phi,
        reconnect_timeout: Duration::from_secs(72 * 3600),
        keyring: None,
    }
}

fn alive_count(g: &Gossip, copying: bool) -> usize {
    if !copying {
        return g.count_with_status(MemberStatus::Alive);
    }
    g.members()
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count()
}

fn failures(g: &Gossip, copying: bool) -> usize {
    if !copying {
        return g.count_with_status(MemberStatus::Failed);
    }
    g.members()
        .iter()
        .filter(|m| m.status != MemberStatus::Alive)
        .count()
}

fn is_failed(g: &Gossip, name: &str, copying: bool) -> bool {
    if !copying {
        return g.member_status(name) == Some(MemberStatus::Failed);
    }
    g.members()
        .iter()
        .any(|m| m.name == name && m.status == MemberStatus::Failed)
}

/// `Udp: RcvbufErrors` of this machine (datagrams dropped because a socket's receive
/// buffer was full).
fn rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

async fn run(args: Args) -> Result<()> {
    let n = args.members;
    let copying = args.copying_polls;
    let drops0 = rcvbuf_errors();
    let counters = Arc::new(Counters::default());
    let inner: Box<dyn Transport> = if args.encrypt {
        let key = GossipKey::from_bytes(&[7u8; 32])?;
        Box::new(SecureTransport::new(Arc::new(Keys::new(
            vec![key],
            true,
            true,
        ))))
    } else {
        Box::new(UdpTransport)
    };
    let transport = Counting {
        counters: counters.clone(),
        inner,
    };
    let t0 = Instant::now();
    let mut pool = Vec::with_capacity(n);
    for i in 0..n {
        let g =
            Gossip::start_with_transport(config(i, &args), Arc::new(UserEvents::new()), &transport)
                .await
                .with_context(|| format!("member {i}"))?;
        pool.push(g);
    }
    // Convergence: every member lists every member alive.
    let deadline = t0 + Duration::from_secs(120);
    while !pool.iter().all(|g| alive_count(g, copying) == n) {
        if Instant::now() > deadline {
            let worst = pool
                .iter()
                .map(|g| alive_count(g, copying))
                .min()
                .unwrap_or(0);
            eprintln!(
                "{n} members: no convergence after 120 s (worst member sees {worst}/{n} alive)"
            );
            println!(
                "{}",
                serde_json::json!({
                    "bench": "gossip",
                    "label": args.label,
                    "members": n,
                    "phi": args.phi,
                    "copying_polls": copying,
                    "converge_s": null,
                    "worst_alive_after_120s": worst,
                    "rcvbuf_errors": rcvbuf_errors().saturating_sub(drops0),
                })
            );
            for g in &pool {
                g.shutdown();
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converge = t0.elapsed();
    eprintln!("{n} members: converged in {converge:?}");

    // Steady state.
    let (s0, r0, c0, w0) = (
        counters.sent.load(Ordering::Relaxed),
        counters.received.load(Ordering::Relaxed),
        cpu_time(),
        Instant::now(),
    );
    let mut false_failures = 0usize;
    let end = w0 + Duration::from_secs(args.steady_secs);
    while Instant::now() < end {
        false_failures = false_failures.max(pool.iter().map(|g| failures(g, copying)).sum());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let window = w0.elapsed().as_secs_f64();
    let sent = counters.sent.load(Ordering::Relaxed) - s0;
    let received = counters.received.load(Ordering::Relaxed) - r0;
    let cpu = (cpu_time() - c0).as_secs_f64();
    let bytes_per_member = sent as f64 / window / n as f64;
    let cpu_per_member_pct = cpu / window / n as f64 * 100.0;
    eprintln!(
        "steady {window:.0} s: {:.1} kB/s sent per member ({:.1} kB/s received), CPU {:.2}% of a core per member, false failures {false_failures}",
        bytes_per_member / 1000.0,
        received as f64 / window / n as f64 / 1000.0,
        cpu_per_member_pct
    );

    // Failure detection: the last member stops gossiping.
    let victim = pool.pop().context("empty pool")?;
    let name = format!("node-{:04}", n - 1);
    victim.shutdown();
    let killed = Instant::now();
    let mut seen: Vec<Option<Duration>> = vec![None; pool.len()];
    let deadline = killed + Duration::from_secs(60);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, g) in pool.iter().enumerate() {
            if seen[i].is_none() && is_failed(g, &name, copying) {
                seen[i] = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut times: Vec<f64> = seen.iter().flatten().map(Duration::as_secs_f64).collect();
    times.sort_by(f64::total_cmp);
    let first = times.first().copied().unwrap_or(f64::NAN);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let all = if times.len() == pool.len() {
        times.last().copied().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    eprintln!(
        "failure of one member seen by the first after {first:.2} s, half after {median:.2} s, all {} after {all:.2} s",
        pool.len()
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "gossip",
            "label": args.label,
            "encrypt": args.encrypt,
            "members": n,
            "phi": args.phi,
            "copying_polls": copying,
            "recompute_always": std::env::var("REGISTRY_GOSSIP_ALWAYS_RECOMPUTE").is_ok_and(|v| v == "1"),
            "digest": std::env::var("REGISTRY_GOSSIP_DIGEST").unwrap_or_else(|_| "v1".into()),
            "rcvbuf_errors": rcvbuf_errors().saturating_sub(drops0),
            "interval_ms": args.interval_ms,
            "converge_s": converge.as_secs_f64(),
            "steady_s": window,
            "sent_bytes_per_s_per_member": bytes_per_member,
            "cpu_pct_per_member": cpu_per_member_pct,
            "false_failures": false_failures,
            "detect_first_s": first,
            "detect_median_s": median,
            "detect_all_s": all,
        })
    );
    for g in &pool {
        g.shutdown();
    }
    Ok(())
}

/// Nanoseconds per call of `f`, over about 0.3 s.
fn per_call(mut f: impl FnMut()) -> f64 {
    let mut n = 0u64;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Seal and open cost per packet size, next to a plain copy of the same bytes.
fn codec_bench() -> Result<()> {
    let keys = Keys::new(vec![GossipKey::from_bytes(&[9u8; 32])?], true, true);
    for size in [128usize, 512, 1_400, 8_192, 65_000] {
        let plain = vec![0x5au8; size];
        let mut sealed = Vec::new();
        keys.seal(&plain, &mut sealed);
        let copy_ns = per_call(|| {
            std::hint::black_box(std::hint::black_box(&plain).clone());
        });
        let seal_ns = per_call(|| {
            let mut out = Vec::new();
            keys.seal(std::hint::black_box(&plain), &mut out);
            std::hint::black_box(out);
        });
        let open_ns = per_call(|| {
            std::hint::black_box(keys.open(std::hint::black_box(&sealed)).ok());
        });
        eprintln!(
            "{size:>6} B: seal {:>8.0} ns, open {:>8.0} ns ({:.0} MB/s), copy (anchor) {:>6.0} ns",
            seal_ns,
            open_ns,
            size as f64 / open_ns * 1e3,
            copy_ns
        );
        println!(
            "{}",
            serde_json::json!({
                "bench": "gossip-codec", "bytes": size, "seal_ns": seal_ns,
                "open_ns": open_ns, "copy_anchor_ns": copy_ns,
            })
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.codec {
        codec_bench()?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(run(args))
}
