//! `registry info`, `registry leave` and `registry version`: small commands about the local
//! agent.

use super::http::{Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// `info` flags.
#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    http: HttpFlags,
}

/// `leave` flags.
#[derive(Args, Debug)]
pub struct LeaveArgs {
    #[command(flatten)]
    http: HttpFlags,
}

/// `reload` flags.
#[derive(Args, Debug)]
pub struct ReloadArgs {
    #[command(flatten)]
    http: HttpFlags,
}

/// `join` flags and addresses.
#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Join the WAN pool of servers instead of the LAN pool.
    #[arg(long = "wan")]
    wan: bool,
    /// Addresses of servers or agents to join (`host` or `host:port`; without a port the
    /// server port is used).
    #[arg(required = true, value_name = "ADDRESS")]
    addresses: Vec<String>,
}

/// `version` flags.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Output format: pretty (the default) or json.
    #[arg(long, default_value = "pretty", value_name = "FORMAT")]
    format: String,
}

/// The `version -format=json` document, shaped as Consul's.
pub fn version_json() -> Value {
    let rpc = serde_json::json!({"Default": 2, "Min": 2, "Max": 3});
    serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Revision": "",
        "Prerelease": "",
        "BuildDate": "0001-01-01T00:00:00Z",
        "RPC": rpc,
    })
}

/// Runs `version`.
pub fn version(args: &VersionArgs) -> i32 {
    match args.format.as_str() {
        "pretty" => {
            println!("{}", version_text());
            0
        }
        "json" => {
            println!("{}", super::watch::pretty(&version_json()));
            0
        }
        other => {
            eprintln!("Error: Unknown format: {other}");
            1
        }
    }
}

/// The `version` text.
pub fn version_text() -> String {
    format!(
        "Registry v{}\nConsul API: v1 (HTTP, DNS and CLI compatible)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs `info`: the agent's `Stats`, sorted, as Consul prints them.
pub async fn info(args: InfoArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let this: Result<Value, String> = match client.get_ok("/v1/agent/self", &[]).await {
        Ok(r) => r.json(),
        Err(e) => Err(e),
    };
    let this = match this {
        Ok(this) => this,
        Err(e) => return ui.fail(&format!("Error querying agent: {e}")),
    };
    let Some(stats) = this.get("Stats").and_then(Value::as_object) else {
        return ui.fail(&format!(
            "Agent response did not contain 'Stats' key: {this}"
        ));
    };
    match render_stats(stats) {
        Ok(text) => {
            if !text.is_empty() {
                ui.output(&text);
            }
            0
        }
        Err(e) => ui.fail(&e),
    }
}

fn render_stats(stats: &serde_json::Map<String, Value>) -> Result<String, String> {
    let mut keys: Vec<&String> = stats.keys().collect();
    keys.sort();
    let mut lines = Vec::new();
    for key in keys {
        lines.push(format!("{key}:"));
        let Some(sub) = stats.get(key).and_then(Value::as_object) else {
            return Err(format!("Got invalid subkey in stats: {}", stats[key]));
        };
        let mut subkeys: Vec<&String> = sub.keys().collect();
        subkeys.sort();
        for subkey in subkeys {
            let value = match &sub[subkey] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            lines.push(format!("\t{subkey} = {value}"));
        }
    }
    Ok(lines.join("\n"))
}

/// Runs `join`: asks the local agent to join each address; succeeds if any joined.
pub async fn join(args: JoinArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let query: Vec<(&str, String)> = if args.wan {
        vec![("wan", "1".to_string())]
    } else {
        vec![]
    };
    let mut joined = 0;
    for addr in &args.addresses {
        let path = format!("/v1/agent/join/{addr}");
        match client.send(Method::PUT, &path, &query, None).await {
            Ok(r) if r.status == 200 => joined += 1,
            Ok(r) => ui.error(&format!(
                "Error joining address '{addr}': {}",
                r.status_error()
            )),
            Err(e) => ui.error(&format!("Error joining address '{addr}': {e}")),
        }
    }
    if joined == 0 {
        return ui.fail("Failed to join any nodes.");
    }
    ui.output(&format!(
        "Successfully joined cluster by contacting {joined} nodes."
    ));
    0
}

/// Runs `leave`.
pub async fn leave(args: LeaveArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    match client.send(Method::PUT, "/v1/agent/leave", &[], None).await {
        Ok(r) if r.status == 200 => {
            ui.output("Graceful leave complete");
            0
        }
        Ok(r) => ui.fail(&format!("Error leaving: {}", r.status_error())),
        Err(e) => ui.fail(&format!("Error leaving: {e}")),
    }
}

/// Runs the hidden `ready`: 0 once the agent names a leader, 1 while it names none or does
/// not answer.
pub async fn ready(args: LeaveArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    match client
        .send(Method::GET, "/v1/status/leader", &[], None)
        .await
    {
        Ok(r) if r.status == 200 => match serde_json::from_slice::<String>(&r.body) {
            Ok(leader) if !leader.is_empty() => {
                ui.output(&format!("Leader: {leader}"));
                0
            }
            _ => ui.fail("No cluster leader"),
        },
        Ok(r) => ui.fail(&format!("Error reading the leader: {}", r.status_error())),
        Err(e) => ui.fail(&format!("Error reading the leader: {e}")),
    }
}

/// Runs `reload`: the agent re-reads its configuration files.
pub async fn reload(args: ReloadArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    match client
        .send(Method::PUT, "/v1/agent/reload", &[], None)
        .await
    {
        Ok(r) if r.status == 200 => {
            ui.output("Configuration reload triggered");
            0
        }
        Ok(r) => ui.fail(&format!("Error reloading: {}", r.status_error())),
        Err(e) => ui.fail(&format!("Error reloading: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_are_sorted() {
        let stats =
            json!({"raft": {"state": "Leader", "applied_index": "5"}, "agent": {"checks": "0"}});
        let text = render_stats(stats.as_object().expect("object")).expect("render");
        assert_eq!(
            text,
            "agent:\n\tchecks = 0\nraft:\n\tapplied_index = 5\n\tstate = Leader"
        );
    }
}
