//! `jepsen test --workload W --nemesis N --time-limit S`: builds a 5-server registry cluster
//! in network namespaces, runs concurrent clients that record a history while a nemesis
//! injects faults, heals, runs final reads, checks the history and writes the verdict to
//! `jepsen/store/<run>/results.json` (`jepsen/store/latest` points at the last run). Exits 1
//! when the run is not valid, 2 when the checker could not decide.
//!
//! The command sets up the namespaces, then runs itself again inside the control namespace
//! (where the clients live) and tears everything down when that ends.

mod checker;
mod client;
mod db;
mod history;
mod lazyfs;
mod nemesis;
mod netns;
mod report;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::checker::linear::Limits;
use crate::client::{Ctx, Worker};
use crate::db::{Db, DbOptions};
use crate::history::{pair, Recorder};
use crate::nemesis::Nemesis;
use crate::workload::Workload;

const INNER_ENV: &str = "JEPSEN_INNER";

#[derive(Parser, Debug)]
#[command(
    name = "jepsen",
    about = "Fault injection and consistency checks for registry"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs one test.
    Test(TestArgs),
    /// Removes namespaces and processes left by an interrupted run.
    Cleanup,
}

#[derive(Args, Debug, Clone)]
struct TestArgs {
    /// register, register-default, set, lock, catalog, watch, bank.
    #[arg(long, default_value = "register")]
    workload: String,
    /// none, partition, partition-{halves,leader,ring,bridge}, kill, pause, clock, clock-rate,
    /// lose-unsynced, lose-unsynced-all, slow-disk, all.
    #[arg(long, default_value = "partition")]
    nemesis: String,
    /// Seconds of client operations.
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Servers.
    #[arg(long, default_value_t = 5)]
    servers: usize,
    /// Client agents, each in a namespace of its own, that the clients send every request
    /// to (they forward to the servers); 0 sends them to the servers directly.
    #[arg(long, default_value_t = 0)]
    agents: usize,
    /// Mean pause between one client's operations, ms.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// Quiet time between faults and length of a fault, s.
    #[arg(long, default_value_t = 5)]
    fault_interval: u64,
    /// Timeout of one request, s.
    #[arg(long, default_value_t = 10)]
    request_timeout: u64,
    /// The registry binary (default: $REGISTRY_BIN, else next to this binary).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where runs are stored (default: jepsen/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// BROKEN ON PURPOSE: servers answer default reads without the leader lease
    /// (REGISTRY_TEST_UNSAFE_DEFAULT_READS_WITHOUT_LEASE=1). For proving the checker.
    #[arg(long)]
    broken_unsafe_reads_without_lease: bool,
    /// BROKEN ON PURPOSE: servers report log appends durable without syncing them
    /// (REGISTRY_TEST_UNSAFE_SKIP_LOG_SYNC=1). For proving the disk nemesis.
    #[arg(long)]
    broken_skip_log_sync: bool,
    /// BROKEN ON PURPOSE: rewrites one read in the recorded history into a stale read before
    /// checking. For proving the checker.
    #[arg(long)]
    broken_inject_stale_read: bool,
    /// How long the cluster may take to accept writes again after the final heal, s.
    #[arg(long, default_value_t = 60)]
    recovery_timeout: u64,
    /// Longest time the linearizability search may spend on one key, s.
    #[arg(long, default_value_t = 20)]
    check_time_limit: u64,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Cleanup => match netns::cleanup() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cleanup: {e:#}");
                1
            }
        },
        Cmd::Test(args) if std::env::var(INNER_ENV).is_ok() => {
            match tokio::runtime::Runtime::new() {
                Ok(rt) => match rt.block_on(inner(args)) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("jepsen: {e:#}");
                        3
                    }
                },
                Err(e) => {
                    eprintln!("jepsen: runtime: {e}");
                    3
                }
            }
        }
        Cmd::Test(args) => match outer(&args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("jepsen: {e:#}");
                let _ = netns::cleanup();
                3
            }
        },
    };
    std::process::exit(code);
}

/// Sets up the namespaces, runs the test inside the control namespace, cleans up.
fn outer(args: &TestArgs) -> Result<i32> {
    let uid = netns::sh("id", &["-u"])?;
    if uid.trim() != "0" {
        bail!("must run as root (it creates network namespaces)");
    }
    workload::Workload::parse(&args.workload)?;
    let faults = nemesis::parse(&args.nemesis)?;
    let clocks = [nemesis::Fault::Clock, nemesis::Fault::ClockRate];
    if faults.iter().any(|f| clocks.contains(f)) && !nemesis::clock_available() {
        bail!(
            "the clock nemesis needs libfaketime ({}): apt-get install faketime",
            nemesis::LIBFAKETIME
        );
    }
    if nemesis::needs_lazy_disks(&faults) && !nemesis::fuse_available() {
        bail!("the disk nemeses need FUSE (/dev/fuse): modprobe fuse");
    }
    netns::setup(args.servers, args.agents).context("setting up network namespaces")?;
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns::CTL])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INNER_ENV, "1")
        .status();
    let cleaned = netns::cleanup();
    let status = status.context("running the test in the control namespace")?;
    cleaned?;
    Ok(status.code().unwrap_or(3))
}

fn registry_bin(args: &TestArgs) -> Result<PathBuf> {
    if let Some(b) = &args.bin {
        return Ok(b.clone());
    }
    if let Some(b) = std::env::var_os("REGISTRY_BIN") {
        return Ok(PathBuf::from(b));
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("registry");
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "no registry binary next to {}: build it (cargo build -p registry-agent) or pass --bin",
        exe.display()
    )
}

/// `YYYYMMDDTHHMMSS` in UTC.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The test proper, inside the control namespace.
async fn inner(args: TestArgs) -> Result<i32> {
    let workload = Workload::parse(&args.workload)?;
    let faults = nemesis::parse(&args.nemesis)?;
    let store = args
        .store
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("store"));
    let name = format!("{}-{}-{}", timestamp(), args.workload, args.nemesis);
    let dir = store.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let latest = store.join("latest");
    let _ = std::fs::remove_file(&latest);
    std::os::unix::fs::symlink(&name, &latest)?;
    println!("run {} in {}", name, dir.display());

    let mut env = Vec::new();
    if args.broken_unsafe_reads_without_lease {
        env.push((
            "REGISTRY_TEST_UNSAFE_DEFAULT_READS_WITHOUT_LEASE".to_string(),
            "1".to_string(),
        ));
    }
    if args.broken_skip_log_sync {
        env.push((
            "REGISTRY_TEST_UNSAFE_SKIP_LOG_SYNC".to_string(),
            "1".to_string(),
        ));
    }
    let db = Arc::new(Db::new(
        DbOptions {
            bin: registry_bin(&args)?,
            servers: args.servers,
            env,
            lazy_disks: nemesis::needs_lazy_disks(&faults),
            agents: args.agents,
        },
        &dir,
    ));
    db.start_all()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .build()?;
    let leader = db.wait_ready(&http, Duration::from_secs(90)).await?;
    println!("cluster ready, leader n{leader}");
    if args.agents > 0 {
        db.start_agents()?;
        db.wait_agents(&http, Duration::from_secs(60)).await?;
        println!("{} client agents forwarding", args.agents);
    }

    let rec = Arc::new(Recorder::new(Instant::now()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.time_limit);
    let ctx = Arc::new(Ctx {
        rec: rec.clone(),
        servers: args.servers,
        agents: args.agents,
        concurrency: args.concurrency,
        deadline,
        timeout: Duration::from_secs(args.request_timeout),
        interval: Duration::from_millis(args.interval_ms),
        counter: AtomicI64::new(0),
    });
    workload.setup(&ctx).await?;
    let mut tasks = Vec::new();
    for slot in 0..args.concurrency {
        let w = Worker::new(ctx.clone(), slot)?;
        tasks.push(tokio::spawn(workload.client(w)));
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let nem = Nemesis {
        faults: faults.clone(),
        db: db.clone(),
        rec: rec.clone(),
        interval: Duration::from_secs(args.fault_interval),
        log: log.clone(),
    };
    nem.run(&http, deadline).await?;
    for t in tasks {
        let _ = t.await;
    }
    nem.heal()?;
    let healed_at = rec.now();
    let ready = db
        .wait_ready(&http, Duration::from_secs(args.recovery_timeout))
        .await;
    let recovery_ms = (rec.now() - healed_at) / 1_000_000;
    if let Err(e) = &ready {
        println!("cluster did not recover: {e:#}");
    }
    if ready.is_ok() {
        workload.final_reads(&ctx).await?;
    }
    let duration = rec.now();
    db.stop_all();

    let mut events = rec.events();
    let mut injected = None;
    if args.broken_inject_stale_read {
        injected = workload::register::inject_stale_read(&mut events);
        println!("injected a stale read at history index {injected:?}");
    }
    let ops = pair(&events);
    let mut anomalies = Vec::new();
    let limits = Limits {
        max_time: Duration::from_secs(args.check_time_limit),
        ..Limits::default()
    };
    let check = workload.check(&ops, limits, &mut anomalies);
    let mut valid = check["valid"].clone();
    if ready.is_err() {
        valid = json!(false);
    }
    let faults_log = match log.lock() {
        Ok(l) => l.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let results = json!({
        "valid": valid,
        "workload": args.workload,
        "nemesis": args.nemesis,
        "time_limit_s": args.time_limit,
        "concurrency": args.concurrency,
        "servers": args.servers,
        "broken_mode": {
            "unsafe_reads_without_lease": args.broken_unsafe_reads_without_lease,
            "injected_stale_read_at": injected,
        },
        "cluster_recovered_after_final_heal": ready.is_ok(),
        "recovery_after_final_heal_ms": recovery_ms,
        "election_timeout_ms": {"min": 1000, "max": 2000, "heartbeat": 150, "leader_lease": 900},
        "history_events": events.len(),
        "checker": check,
        "stats": report::stats(&ops, duration),
        "unavailability": report::unavailability(&ops, &faults_log),
        "faults": faults_log.len() / 2,
        "anomalous_ops": anomalies,
    });
    report::write(
        &dir,
        &events,
        &ops,
        &faults_log,
        &results,
        &anomalies,
        args.concurrency as u64,
    )?;
    println!(
        "{} / {}: {} operations, valid = {}  ({})",
        args.workload,
        args.nemesis,
        ops.len(),
        valid,
        dir.join("results.json").display()
    );
    Ok(match valid {
        Value::Bool(true) => 0,
        Value::Bool(false) => 1,
        _ => 2,
    })
}
