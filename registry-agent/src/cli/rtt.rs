//! `registry rtt NODE [NODE]`: the round-trip time between two nodes estimated from their
//! LAN network coordinates (the second node defaults to the agent's own), printed as
//! Consul's `consul rtt` does.

use super::http::{Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use registry_proto::coordinate::NodeCoordinate;

/// `rtt` flags and arguments.
#[derive(Args, Debug)]
pub struct RttArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Use WAN coordinates (server nodes named `node.dc`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    wan: Option<bool>,
    /// The first node, and optionally the second (default: the agent's node).
    #[arg(value_name = "NODE", num_args = 1..=2)]
    nodes: Vec<String>,
}

/// Runs the command.
pub async fn run(args: RttArgs, ui: &mut Ui<'_>) -> i32 {
    if args.wan.unwrap_or(false) {
        return ui.fail("WAN coordinates are not available from this agent");
    }
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let node1 = args.nodes[0].clone();
    let node2 = match args.nodes.get(1) {
        Some(n) => n.clone(),
        None => {
            let me: Result<serde_json::Value, String> =
                match client.get_ok("/v1/agent/self", &[]).await {
                    Ok(r) => r.json(),
                    Err(e) => Err(e),
                };
            match me {
                Ok(v) => v["Config"]["NodeName"].as_str().unwrap_or("").to_string(),
                Err(e) => return ui.fail(&format!("Unable to look up agent info: {e}")),
            }
        }
    };
    let coords: Result<Vec<NodeCoordinate>, String> =
        match client.get_ok("/v1/coordinate/nodes", &[]).await {
            Ok(r) => r.json(),
            Err(e) => Err(e),
        };
    let coords = match coords {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error getting coordinates: {e}")),
    };
    let find = |n: &str| coords.iter().find(|c| c.node == n).map(|c| &c.coord);
    let Some(c1) = find(&node1) else {
        return ui.fail(&format!("Could not find a coordinate for node \"{node1}\""));
    };
    let Some(c2) = find(&node2) else {
        return ui.fail(&format!("Could not find a coordinate for node \"{node2}\""));
    };
    let ms = c1.distance_to(c2) * 1000.0;
    ui.output(&format!(
        "Estimated {node1} <-> {node2} rtt: {ms:.3} ms (using LAN coordinates)"
    ));
    0
}
