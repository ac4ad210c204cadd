//! Latency histograms, CPU accounting from `/proc`, and the JSON result line.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// A latency histogram in microseconds (1 µs .. 100 s, 3 significant digits).
#[derive(Clone)]
pub struct Latency {
    h: Histogram<u64>,
}

impl Latency {
    pub fn new() -> Result<Self> {
        let h = Histogram::new_with_bounds(1, 100_000_000, 3).context("histogram bounds")?;
        Ok(Latency { h })
    }

    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.h.saturating_record(us.max(1));
    }

    pub fn record_us(&mut self, us: u64) {
        self.h.saturating_record(us.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, so adding never fails; ignore the impossible error.
        let _ = self.h.add(&other.h);
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            0
        } else {
            self.h.value_at_quantile(q)
        }
    }

    /// p50/p90/p99/p99.9/max/mean as a JSON object fragment with `prefix`.
    pub fn to_json(&self, prefix: &str, out: &mut Map<String, Value>) {
        let mean = if self.h.is_empty() {
            0.0
        } else {
            self.h.mean()
        };
        out.insert(format!("{prefix}p50_us"), json!(self.quantile_us(0.50)));
        out.insert(format!("{prefix}p90_us"), json!(self.quantile_us(0.90)));
        out.insert(format!("{prefix}p99_us"), json!(self.quantile_us(0.99)));
        out.insert(format!("{prefix}p999_us"), json!(self.quantile_us(0.999)));
        out.insert(format!("{prefix}max_us"), json!(self.h.max()));
        out.insert(
            format!("{prefix}mean_us"),
            json!((mean * 10.0).round() / 10.0),
        );
    }
}

/// Clock ticks per second for `/proc/*/stat` (USER_HZ). 100 on every Linux that matters;
/// `getconf` confirms it without unsafe code.
fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime+stime of a process in seconds (all threads, live and exited).
pub fn proc_cpu_s(pid: &str, hz: f64) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / hz)
}

/// Busy CPU seconds of the whole machine (everything but idle and iowait) from /proc/stat.
fn machine_busy_s(hz: f64) -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text.lines().next().context("empty /proc/stat")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    Ok((total - idle) / hz)
}

/// Resident set size of a process in KiB.
pub fn vm_rss_kib(pid: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kib = v.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    anyhow::bail!("no VmRSS in /proc/{pid}/status")
}

/// CPU used by the servers under test, by this load generator, and by everything else.
pub struct CpuMeter {
    hz: f64,
    pids: Vec<String>,
    start_servers: f64,
    start_self: f64,
    start_machine: f64,
}

impl CpuMeter {
    /// Starts metering; `pids` are the server processes (summed).
    pub fn start(pids: &[String]) -> Result<Self> {
        let hz = clk_tck();
        let mut m = CpuMeter {
            hz,
            pids: pids.to_vec(),
            start_servers: 0.0,
            start_self: 0.0,
            start_machine: 0.0,
        };
        m.start_servers = m.servers()?;
        m.start_self = proc_cpu_s("self", hz)?;
        m.start_machine = machine_busy_s(hz)?;
        Ok(m)
    }

    fn servers(&self) -> Result<f64> {
        let mut s = 0.0;
        for p in &self.pids {
            s += proc_cpu_s(p, self.hz)?;
        }
        Ok(s)
    }

    /// CPU used since `start` (call at the end of the measured window).
    pub fn stop(&self) -> Result<CpuDelta> {
        Ok(CpuDelta {
            metered_servers: !self.pids.is_empty(),
            servers: self.servers()? - self.start_servers,
            me: proc_cpu_s("self", self.hz)? - self.start_self,
            machine: machine_busy_s(self.hz)? - self.start_machine,
        })
    }
}

/// CPU seconds used during a measured window.
#[derive(Debug, Clone, Copy)]
pub struct CpuDelta {
    metered_servers: bool,
    pub servers: f64,
    pub me: f64,
    pub machine: f64,
}

impl CpuDelta {
    /// Adds server/bench/foreign CPU figures for `ops` operations to `out`.
    pub fn add_to(&self, ops: u64, out: &mut Map<String, Value>) {
        let per = |s: f64| {
            if ops == 0 {
                Value::Null
            } else {
                json!(((s * 1e6 / ops as f64) * 10.0).round() / 10.0)
            }
        };
        if self.metered_servers {
            out.insert("server_cpu_s".into(), json!(round3(self.servers)));
            out.insert("server_cpu_us_per_op".into(), per(self.servers));
        }
        out.insert("bench_cpu_s".into(), json!(round3(self.me)));
        out.insert("bench_cpu_us_per_op".into(), per(self.me));
        let foreign = self.machine
            - self.me
            - if self.metered_servers {
                self.servers
            } else {
                0.0
            };
        out.insert("foreign_cpu_s".into(), json!(round3(foreign.max(0.0))));
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints a result as one JSON line on stdout and a readable summary on stderr.
pub fn emit(v: Map<String, Value>) {
    let line = Value::Object(v.clone());
    let get = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    eprintln!(
        "[{}] {} ops/s={} p50={}us p99={}us p999={}us errors={} server_cpu_us/op={}",
        get("mode"),
        get("label"),
        get("ops_per_s"),
        get("p50_us"),
        get("p99_us"),
        get("p999_us"),
        get("errors"),
        get("server_cpu_us_per_op"),
    );
    println!("{line}");
}
