//! `registry maint` (Consul's `command/maint`): put the local agent's node, or one of its
//! services, into maintenance mode or take it out (`PUT /v1/agent/maintenance`,
//! `PUT /v1/agent/service/maintenance/:id`), or, without `-enable`/`-disable`, list what
//! is in maintenance from the agent's checks.

use super::http::{encode_path, Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// The node maintenance check's ID.
const NODE_MAINT: &str = "_node_maintenance";
/// The prefix of a service maintenance check's ID.
const SERVICE_MAINT: &str = "_service_maintenance:";

/// `maint` flags.
#[derive(Args, Debug)]
pub struct MaintArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Enable maintenance mode.
    #[arg(
        long = "enable",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = super::go_bool,
        value_name = "BOOL"
    )]
    enable: Option<bool>,
    /// Disable maintenance mode.
    #[arg(
        long = "disable",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = super::go_bool,
        value_name = "BOOL"
    )]
    disable: Option<bool>,
    /// Text describing the maintenance reason.
    #[arg(long = "reason", value_name = "TEXT")]
    reason: Option<String>,
    /// Control maintenance mode for a specific service ID.
    #[arg(long = "service", value_name = "ID")]
    service: Option<String>,
}

/// Runs `maint`.
pub async fn run(args: MaintArgs, ui: &mut Ui<'_>) -> i32 {
    let enable = args.enable.unwrap_or(false);
    let disable = args.disable.unwrap_or(false);
    let reason = args.reason.clone().unwrap_or_default();
    let service = args.service.clone().unwrap_or_default();
    if enable && disable {
        return ui.fail("Only one of -enable or -disable may be provided");
    }
    if !enable && !reason.is_empty() {
        return ui.fail("Reason may only be provided with -enable");
    }
    if !enable && !disable && !service.is_empty() {
        return ui.fail("Service requires either -enable or -disable");
    }
    let client = match Client::new(&args.http, None) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let node_name = match client.get_ok("/v1/agent/self", &[]).await {
        Ok(r) => match r.json::<Value>() {
            Ok(v) => v["Config"]["NodeName"].as_str().unwrap_or("").to_string(),
            Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
        },
        Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
    };

    if !enable && !disable {
        return list(&client, &node_name, ui).await;
    }

    let mut query = vec![("enable", enable.to_string())];
    if enable && !reason.is_empty() {
        query.push(("reason", reason));
    }
    let (path, what) = if service.is_empty() {
        ("/v1/agent/maintenance".to_string(), "node")
    } else {
        (
            format!("/v1/agent/service/maintenance/{}", encode_path(&service)),
            "service",
        )
    };
    let verb = if enable { "enabling" } else { "disabling" };
    match client.send(Method::PUT, &path, &query, None).await {
        Ok(r) if r.status == 200 => {}
        Ok(r) => {
            return ui.fail(&format!(
                "Error {verb} {what} maintenance: {}",
                r.status_error()
            ))
        }
        Err(e) => return ui.fail(&format!("Error {verb} {what} maintenance: {e}")),
    }
    let state = if enable { "enabled" } else { "disabled" };
    if service.is_empty() {
        ui.output(&format!("Node maintenance is now {state}"));
    } else {
        ui.output(&format!(
            "Service maintenance is now {state} for {service:?}"
        ));
    }
    0
}

/// Lists the node and services in maintenance, from the agent's checks.
async fn list(client: &Client, node_name: &str, ui: &mut Ui<'_>) -> i32 {
    let checks = match client.get_ok("/v1/agent/checks", &[]).await {
        Ok(r) => r.json::<serde_json::Map<String, Value>>(),
        Err(e) => Err(e),
    };
    let checks = match checks {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error getting checks: {e}")),
    };
    let text = |c: &Value, k: &str| c[k].as_str().unwrap_or("").to_string();
    for check in checks.values() {
        let id = text(check, "CheckID");
        if id == NODE_MAINT {
            ui.output("Node:");
            ui.output(&format!("  Name:   {node_name}"));
            ui.output(&format!("  Reason: {}", text(check, "Notes")));
            ui.output("");
        } else if id.starts_with(SERVICE_MAINT) {
            ui.output("Service:");
            ui.output(&format!("  ID:     {}", text(check, "ServiceID")));
            ui.output(&format!("  Reason: {}", text(check, "Notes")));
            ui.output("");
        }
    }
    0
}
