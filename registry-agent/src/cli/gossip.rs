//! `registry event` and `registry force-leave`: the gossip commands beyond `members`,
//! `join` and `leave`.

use super::http::{encode_path, Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// `event` flags and payload.
#[derive(Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Event name (required).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Regular expression on the node names that should receive the event.
    #[arg(long, value_name = "REGEXP")]
    node: Option<String>,
    /// Regular expression on the service names that should receive the event.
    #[arg(long, value_name = "REGEXP")]
    service: Option<String>,
    /// Regular expression on the tags of those services (needs -service).
    #[arg(long, value_name = "REGEXP")]
    tag: Option<String>,
    /// Optional payload.
    #[arg(value_name = "PAYLOAD")]
    payload: Vec<String>,
}

/// `force-leave` flags and node.
#[derive(Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Remove the node from the member list entirely instead of marking it left.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    prune: Option<bool>,
    /// Act on the WAN pool.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    wan: Option<bool>,
    /// The node to force out.
    #[arg(value_name = "NODE")]
    node: Vec<String>,
}

/// Runs `event`: fires a user event through the local agent and prints its ID.
pub async fn event(args: EventArgs, ui: &mut Ui<'_>) -> i32 {
    let Some(name) = args.name.filter(|n| !n.is_empty()) else {
        return ui.fail("Event name must be specified");
    };
    if args.tag.is_some() && args.service.is_none() {
        return ui.fail("Cannot provide tag filter without service filter.");
    }
    if args.payload.len() > 1 {
        return ui.fail("Too many command line arguments.");
    }
    for (what, re) in [
        ("node", &args.node),
        ("service", &args.service),
        ("tag", &args.tag),
    ] {
        if let Some(re) = re {
            if let Err(e) = regex::Regex::new(re) {
                return ui.fail(&format!("Failed to compile {what} filter regexp: {e}"));
            }
        }
    }
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("node", args.node),
        ("service", args.service),
        ("tag", args.tag),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let body = args.payload.first().map(|p| p.as_bytes().to_vec());
    let path = format!("/v1/event/fire/{}", encode_path(&name));
    let resp = match client.send(Method::PUT, &path, &query, body).await {
        Ok(r) if r.status == 200 => r,
        Ok(r) => return ui.fail(&format!("Error firing event: {}", r.status_error())),
        Err(e) => return ui.fail(&format!("Error firing event: {e}")),
    };
    let id = resp
        .json::<Value>()
        .ok()
        .and_then(|v| v.get("ID").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    ui.output(&format!("Event ID: {id}"));
    0
}

/// Runs `force-leave`.
pub async fn force_leave(args: ForceLeaveArgs, ui: &mut Ui<'_>) -> i32 {
    let [node] = args.node.as_slice() else {
        return ui.fail("A single node name must be specified to force leave.");
    };
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    if args.prune.unwrap_or(false) {
        query.push(("prune", String::new()));
    }
    if args.wan.unwrap_or(false) {
        query.push(("wan", String::new()));
    }
    let path = format!("/v1/agent/force-leave/{}", encode_path(node));
    match client.send(Method::PUT, &path, &query, None).await {
        Ok(r) if r.status == 200 => 0,
        Ok(r) => ui.fail(&format!("Error force leaving: {}", r.status_error())),
        Err(e) => ui.fail(&format!("Error force leaving: {e}")),
    }
}
