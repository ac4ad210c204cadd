//! `registry debug`: captures an agent's state for a while into a `consul-debug-<unix time>`
//! archive laid out as Consul's: `index.json`, `agent.json`, `host.json`, `members.json` once,
//! `metrics.json` (one document per `-interval`) and `consul.log` (the agent's log at debug
//! level, for `-duration`). Interrupting the capture archives what was gathered so far.

use super::http::{Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use flate2::write::GzEncoder;
use flate2::Compression;
use registry_proto::duration::format_go_duration;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The targets `-capture` accepts, in Consul's default order.
const TARGETS: [&str; 5] = ["metrics", "logs", "host", "agent", "members"];
/// The shortest `-interval` (Consul's, so that a capture cannot flood the agent).
const MIN_INTERVAL: Duration = Duration::from_secs(5);

fn duration_flag(text: &str) -> Result<Duration, String> {
    crate::config::duration::parse_duration(text)
}

/// `debug` flags.
#[derive(Args, Debug)]
pub struct DebugArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// How long to capture logs and metrics for.
    #[arg(long, default_value = "2m", value_parser = duration_flag, value_name = "DURATION")]
    duration: Duration,
    /// How often to capture metrics (at least 5s).
    #[arg(long, default_value = "30s", value_parser = duration_flag, value_name = "DURATION")]
    interval: Duration,
    /// What to capture: metrics, logs, host, agent or members; repeatable. All by default.
    #[arg(long, value_name = "TARGET")]
    capture: Vec<String>,
    /// Where to write the capture (a directory, then `<output>.tar.gz`). Defaults to
    /// `consul-debug-<unix time>` in the working directory.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Write a gzipped tar archive and remove the directory; -archive=false keeps the
    /// directory.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    archive: Option<bool>,
}

/// Checks the flags as Consul does; the targets to capture.
pub fn validate(args: &DebugArgs) -> Result<Vec<String>, String> {
    if args.interval < MIN_INTERVAL {
        return Err(format!(
            "interval must be longer than {}",
            format_go_duration(MIN_INTERVAL)
        ));
    }
    if args.duration < args.interval {
        return Err("duration must be longer than interval".to_string());
    }
    if args.capture.is_empty() {
        return Ok(TARGETS.iter().map(|t| t.to_string()).collect());
    }
    let mut targets = Vec::new();
    for t in &args.capture {
        if !TARGETS.contains(&t.as_str()) {
            return Err(format!(
                "target not found: {t} (valid targets: {})",
                TARGETS.join(", ")
            ));
        }
        if !targets.contains(t) {
            targets.push(t.clone());
        }
    }
    Ok(targets)
}

async fn get_json(client: &Client, path: &str) -> Result<Value, String> {
    client.get_ok(path, &[]).await?.json()
}

fn write_json(dir: &Path, name: &str, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(name), text).map_err(|e| format!("failed to write {name}: {e}"))
}

/// Runs `debug`.
pub async fn run(args: DebugArgs, ui: &mut Ui<'_>) -> i32 {
    let targets = match validate(&args) {
        Ok(targets) => targets,
        Err(e) => return ui.fail(&format!("Error parsing flags: {e}")),
    };
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let this = match get_json(&client, "/v1/agent/self").await {
        Ok(this) => this,
        Err(e) => return ui.fail(&format!("Error querying target agent: {e}")),
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("consul-debug-{stamp}")));
    let archive = args.archive.unwrap_or(true);
    let archive_path = PathBuf::from(format!("{}.tar.gz", dir.display()));
    if dir.exists() || (archive && archive_path.exists()) {
        return ui.fail(&format!(
            "Error: output directory already exists: {}",
            dir.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return ui.fail(&format!("Error creating output directory: {e}"));
    }
    let version = this["Config"]["Version"].as_str().unwrap_or_default();
    ui.output("==> Starting debugger and capturing static information...");
    ui.output(&format!("     Agent Version: '{version}'"));
    ui.output(&format!(
        "          Interval: '{}'",
        format_go_duration(args.interval)
    ));
    ui.output(&format!(
        "          Duration: '{}'",
        format_go_duration(args.duration)
    ));
    let shown = if archive { &archive_path } else { &dir };
    ui.output(&format!("            Output: '{}'", shown.display()));
    ui.output(&format!("           Capture: '{}'", targets.join(", ")));
    let index = json!({
        "Version": 1,
        "AgentVersion": version,
        "Interval": format_go_duration(args.interval),
        "Duration": format_go_duration(args.duration),
        "Targets": targets,
    });
    if let Err(e) = capture_static(&client, &dir, &targets, &this, &index).await {
        return ui.fail(&format!("Error capturing static information: {e}"));
    }
    let dynamic = capture_dynamic(&client, &dir, &targets, &args, ui);
    tokio::select! {
        result = dynamic => if let Err(e) = result {
            ui.error(&format!("Error encountered during collection: {e}"));
        },
        _ = tokio::signal::ctrl_c() => ui.output("==> Capture interrupted, archiving what was captured"),
    }
    if archive {
        if let Err(e) = write_archive(&dir, &archive_path) {
            return ui.fail(&format!("Error creating archive: {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        ui.output(&format!("Saved debug archive: {}", archive_path.display()));
    } else {
        ui.output(&format!("Saved debug directory: {}", dir.display()));
    }
    0
}

async fn capture_static(
    client: &Client,
    dir: &Path,
    targets: &[String],
    this: &Value,
    index: &Value,
) -> Result<(), String> {
    write_json(dir, "index.json", index)?;
    if targets.iter().any(|t| t == "agent") {
        write_json(dir, "agent.json", this)?;
    }
    if targets.iter().any(|t| t == "host") {
        write_json(dir, "host.json", &get_json(client, "/v1/agent/host").await?)?;
    }
    if targets.iter().any(|t| t == "members") {
        let members = get_json(client, "/v1/agent/members").await?;
        write_json(dir, "members.json", &members)?;
    }
    Ok(())
}

/// Metrics every interval and the log stream, for the duration.
async fn capture_dynamic(
    client: &Client,
    dir: &Path,
    targets: &[String],
    args: &DebugArgs,
    ui: &mut Ui<'_>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + args.duration;
    let logs = if targets.iter().any(|t| t == "logs") {
        let path = dir.join("consul.log");
        let client = client.clone();
        Some(tokio::spawn(async move {
            capture_logs(&client, &path, deadline).await
        }))
    } else {
        None
    };
    if targets.iter().any(|t| t == "metrics") {
        let mut file = std::fs::File::create(dir.join("metrics.json"))
            .map_err(|e| format!("failed to create metrics.json: {e}"))?;
        let mut n = 0;
        let mut next = tokio::time::Instant::now();
        while next <= deadline {
            tokio::time::sleep_until(next).await;
            ui.output(&format!("==> Capturing metrics (interval {n})"));
            let metrics = get_json(client, "/v1/agent/metrics").await?;
            let text = serde_json::to_string_pretty(&metrics).map_err(|e| e.to_string())?;
            writeln!(file, "{text}").map_err(|e| format!("failed to write metrics.json: {e}"))?;
            n += 1;
            next += args.interval;
        }
    }
    tokio::time::sleep_until(deadline).await;
    if let Some(task) = logs {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Follows `/v1/agent/monitor` at debug level into `path` until `deadline`.
async fn capture_logs(
    client: &Client,
    path: &Path,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let mut file =
        std::fs::File::create(path).map_err(|e| format!("failed to create consul.log: {e}"))?;
    let pq = "/v1/agent/monitor?loglevel=DEBUG";
    let mut response = client
        .api()
        .request(Method::GET, pq)
        .send()
        .await
        .map_err(|e| format!("failed to start the log monitor: {e}"))?;
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        };
        match chunk {
            Ok(Some(bytes)) => file
                .write_all(&bytes)
                .map_err(|e| format!("failed to write consul.log: {e}"))?,
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// `dir` as `<name>/...` in a gzipped tar at `target`.
fn write_archive(dir: &Path, target: &Path) -> Result<(), String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "consul-debug".to_string());
    let file = std::fs::File::create(target).map_err(|e| e.to_string())?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    tar.append_dir_all(&name, dir).map_err(|e| e.to_string())?;
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: DebugArgs,
    }

    fn args(words: &[&str]) -> DebugArgs {
        let mut all = vec!["debug"];
        all.extend(words);
        Wrap::try_parse_from(all).expect("parse").args
    }

    #[test]
    fn flags_are_checked_like_consul() {
        assert_eq!(validate(&args(&[])).expect("defaults").len(), 5);
        assert!(validate(&args(&["--interval", "1s"]))
            .unwrap_err()
            .contains("interval must be longer than 5s"));
        assert!(validate(&args(&["--interval", "10s", "--duration", "5s"])).is_err());
        assert!(validate(&args(&["--capture", "pprof2"])).is_err());
        assert_eq!(
            validate(&args(&["--capture", "agent", "--capture", "agent"])).expect("one"),
            vec!["agent".to_string()]
        );
    }
}
