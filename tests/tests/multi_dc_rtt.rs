//! `/v1/catalog/datacenters` orders datacenters by their round-trip time: three
//! single-server datacenters, each in a network namespace of its own, joined by a bridge in a
//! fourth namespace, with `netem` delaying what dc2 and dc3 send (20 ms and 120 ms). dc1
//! then lists dc1, dc2, dc3; dc3 lists dc3, dc1, dc2; and when the delays are swapped, dc1's
//! order follows. Needs root, `ip` and `tc` with netem (skipped without them, a failure under
//! `REGISTRY_TESTS_STRICT=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use registry_tests::{registry_bin, skip_or_fail};

fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Three datacenter namespaces and the bridge namespace; removed (with their processes) on
/// drop.
struct Net {
    prefix: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Net {
    fn ns(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    fn ctl(&self) -> String {
        format!("{}c", self.prefix)
    }

    fn ip(i: usize) -> String {
        format!("10.97.0.{i}")
    }

    fn create() -> Result<Net> {
        let prefix = format!("mdc{}n", std::process::id() % 100_000);
        let net = Net {
            prefix,
            children: Vec::new(),
            dir: tempfile::Builder::new().prefix("registry-mdc-rtt").tempdir()?,
        };
        let ctl = net.ctl();
        sh(&["ip", "netns", "add", &ctl])?;
        sh(&["ip", "-n", &ctl, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &ctl, "link", "set", "br0", "up"])?;
        for i in 1..=3 {
            let ns = net.ns(i);
            let veth = format!("{}v{i}", net.prefix);
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "-n", &ctl, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            sh(&["ip", "-n", &ctl, "link", "set", &veth, "master", "br0"])?;
            sh(&["ip", "-n", &ctl, "link", "set", &veth, "up"])?;
            let addr = format!("{}/24", Net::ip(i));
            sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Delays every packet datacenter `i` sends by `ms`.
    fn delay(&self, i: usize, ms: u32) -> Result<()> {
        let ns = self.ns(i);
        let d = format!("{ms}ms");
        sh(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
            "delay", &d,
        ])?;
        Ok(())
    }

    /// Starts the one server of datacenter `dc{i}`, joined over the WAN to dc1.
    fn start_server(&mut self, i: usize) -> Result<()> {
        let bin = registry_bin()?;
        let ip = Net::ip(i);
        let data = self.dir.path().join(format!("dc{i}"));
        let log = std::fs::File::create(self.dir.path().join(format!("dc{i}.log")))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i)])
            .arg(bin)
            .args(["agent", "-server", "-bootstrap-expect", "1"])
            .args(["-datacenter", &format!("dc{i}"), "-node", &format!("n{i}")])
            .args(["-bind", &ip, "-client", &ip, "-dns-port", "0"])
            .arg("-data-dir")
            .arg(&data);
        if i != 1 {
            cmd.args(["-retry-join-wan", &Net::ip(1)]);
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a server in its namespace")?;
        self.children.push(child);
        Ok(())
    }

    /// `registry catalog datacenters` asked of datacenter `i`'s server.
    fn datacenters(&self, i: usize) -> Result<Vec<String>> {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns(i),
            &registry_bin()?.display().to_string(),
            "catalog",
            "datacenters",
            &format!("-http-addr={}:8500", Net::ip(i)),
        ])?;
        Ok(out.lines().map(|l| l.trim().to_string()).collect())
    }

    fn logs(&self) -> String {
        (1..=3)
            .map(|i| {
                let text =
                    std::fs::read_to_string(self.dir.path().join(format!("dc{i}.log")))
                        .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!(
                    "----- dc{i} -----\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for name in [self.ns(1), self.ns(2), self.ns(3), self.ctl()] {
            let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        }
    }
}

/// Waits until datacenter `i` lists `want`.
async fn wait_order(net: &Net, i: usize, want: &[&str], timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < timeout {
        if let Ok(list) = net.datacenters(i) {
            if list == want {
                return Ok(started.elapsed());
            }
            last = list;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("dc{i} lists {last:?}, not {want:?}\n{}", net.logs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenters_are_sorted_by_network_delay() -> Result<()> {
    let tools = sh(&["ip", "netns", "list"])
        .and_then(|_| sh(&["tc", "-V"]))
        .and_then(|_| sh(&["id", "-u"]));
    match tools {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(_) => {
            skip_or_fail("network namespaces need root");
            return Ok(());
        }
        Err(e) => {
            skip_or_fail(&format!("ip/tc not available: {e:#}"));
            return Ok(());
        }
    }
    let mut net = match Net::create() {
        Ok(n) => n,
        Err(e) => {
            skip_or_fail(&format!("cannot create network namespaces: {e:#}"));
            return Ok(());
        }
    };
    if let Err(e) = net.delay(2, 20).and_then(|()| net.delay(3, 120)) {
        skip_or_fail(&format!("netem not available: {e:#}"));
        return Ok(());
    }
    for i in 1..=3 {
        net.start_server(i)?;
    }
    let t = wait_order(&net, 1, &["dc1", "dc2", "dc3"], Duration::from_secs(60)).await?;
    eprintln!("dc1 orders dc2 (20 ms) before dc3 (120 ms) after {t:?}");
    // From dc3 everything is at least 120 ms away, and dc2 20 ms further.
    wait_order(&net, 3, &["dc3", "dc1", "dc2"], Duration::from_secs(30)).await?;
    wait_order(&net, 2, &["dc2", "dc1", "dc3"], Duration::from_secs(30)).await?;

    // Swap the delays: dc1's order follows within the estimate's window.
    net.delay(2, 200)?;
    net.delay(3, 10)?;
    let t = wait_order(&net, 1, &["dc1", "dc3", "dc2"], Duration::from_secs(40)).await?;
    eprintln!("dc1 reorders after the delays changed in {t:?}");
    Ok(())
}
