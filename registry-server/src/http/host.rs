//! `GET /v1/agent/host`: what Consul's `debug.CollectHostInfo` reports (gopsutil's field
//! names), read from `/proc` and `uname`. A figure that cannot be read is left out and its
//! error listed under `Errors`, as Consul does.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Collects the host document (blocking: reads files).
pub(super) fn collect() -> Value {
    let mut errors: Vec<String> = Vec::new();
    let memory = match memory() {
        Ok(m) => m,
        Err(e) => {
            errors.push(format!("memory: {e}"));
            Value::Null
        }
    };
    let cpu = cpus().unwrap_or_else(|e| {
        errors.push(format!("cpu: {e}"));
        Vec::new()
    });
    let host = host_info(&mut errors);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    json!({
        "Memory": memory,
        "CPU": cpu,
        "Host": host,
        "Disk": Value::Null,
        "CollectionTime": now,
        "Errors": errors,
    })
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// `/proc/meminfo` in bytes.
fn memory() -> Result<Value, String> {
    let text = read("/proc/meminfo")?;
    let kb = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kb("MemTotal");
    let free = kb("MemFree");
    let available = kb("MemAvailable");
    let buffers = kb("Buffers");
    let cached = kb("Cached");
    let used = total.saturating_sub(free + buffers + cached);
    let pct = if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    };
    Ok(json!({
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": pct,
        "free": free,
        "buffers": buffers,
        "cached": cached,
        "swapTotal": kb("SwapTotal"),
        "swapFree": kb("SwapFree"),
    }))
}

/// One entry per logical CPU from `/proc/cpuinfo`.
fn cpus() -> Result<Vec<Value>, String> {
    let text = read("/proc/cpuinfo")?;
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let get = |k: &str| {
            block
                .lines()
                .find_map(|l| {
                    let (key, v) = l.split_once(':')?;
                    (key.trim() == k).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let cpu: i64 = get("processor").parse().unwrap_or(out.len() as i64);
        let mut m = Map::new();
        m.insert("cpu".into(), cpu.into());
        m.insert("vendorId".into(), get("vendor_id").into());
        m.insert("family".into(), get("cpu family").into());
        m.insert("model".into(), get("model").into());
        m.insert(
            "stepping".into(),
            get("stepping").parse::<i64>().unwrap_or(0).into(),
        );
        m.insert("physicalId".into(), get("physical id").into());
        m.insert("coreId".into(), get("core id").into());
        m.insert("cores".into(), 1.into());
        m.insert("modelName".into(), get("model name").into());
        m.insert(
            "mhz".into(),
            get("cpu MHz").parse::<f64>().unwrap_or(0.0).into(),
        );
        m.insert("cacheSize".into(), 0.into());
        m.insert("flags".into(), Value::Array(Vec::new()));
        m.insert("microcode".into(), get("microcode").into());
        out.push(Value::Object(m));
    }
    Ok(out)
}

fn host_info(errors: &mut Vec<String>) -> Value {
    let uptime = read("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|f| f as u64);
    if uptime.is_none() {
        errors.push("host: cannot read /proc/uptime".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u64>().is_ok())
                .count()
        })
        .unwrap_or(0);
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (platform, version) = os_release();
    json!({
        "hostname": hostname,
        "uptime": uptime.unwrap_or(0),
        "bootTime": now.saturating_sub(uptime.unwrap_or(0)),
        "procs": procs,
        "os": std::env::consts::OS,
        "platform": platform,
        "platformFamily": "",
        "platformVersion": version,
        "kernelVersion": kernel.trim(),
        "kernelArch": std::env::consts::ARCH,
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostid": read("/etc/machine-id").unwrap_or_default().trim(),
    })
}

/// `ID` and `VERSION_ID` of `/etc/os-release`.
fn os_release() -> (String, String) {
    let text = read("/etc/os-release").unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("ID"), get("VERSION_ID"))
}
