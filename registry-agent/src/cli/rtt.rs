//! `registry rtt [-wan] NODE [NODE]`: the round-trip time between two nodes estimated from
//! their LAN network coordinates (the second node defaults to the agent's own), or with
//! `-wan` between two servers named `node.dc` from their WAN coordinates
//! (`/v1/coordinate/datacenters`; the second defaults to the agent's own server), printed as
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
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    if args.wan.unwrap_or(false) {
        return wan(&client, &args.nodes, ui).await;
    }
    let node1 = args.nodes[0].clone();
    let node2 = match args.nodes.get(1) {
        Some(n) => n.clone(),
        None => match get_json::<serde_json::Value>(&client, "/v1/agent/self").await {
            Ok(v) => v["Config"]["NodeName"].as_str().unwrap_or("").to_string(),
            Err(e) => return ui.fail(&format!("Unable to look up agent info: {e}")),
        },
    };
    let coords = match get_json::<Vec<NodeCoordinate>>(&client, "/v1/coordinate/nodes").await {
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

/// GET `path` and decode its JSON answer.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<T, String> {
    client.get_ok(path, &[]).await?.json()
}

/// `rtt -wan`: both nodes are servers named `node.dc`.
async fn wan(client: &Client, nodes: &[String], ui: &mut Ui<'_>) -> i32 {
    let node1 = nodes[0].clone();
    let node2 = match nodes.get(1) {
        Some(n) => n.clone(),
        None => match get_json::<serde_json::Value>(client, "/v1/agent/self").await {
            Ok(v) if v["Config"]["Server"] == true => format!(
                "{}.{}",
                v["Config"]["NodeName"].as_str().unwrap_or(""),
                v["Config"]["Datacenter"].as_str().unwrap_or("")
            ),
            Ok(_) => return ui.fail("A server name must be given when the agent is not a server"),
            Err(e) => return ui.fail(&format!("Unable to look up agent info: {e}")),
        },
    };
    let dcs = match get_json::<serde_json::Value>(client, "/v1/coordinate/datacenters").await {
        Ok(v) => v,
        Err(e) => return ui.fail(&format!("Error getting coordinates: {e}")),
    };
    let find = |n: &str| -> Option<registry_proto::coordinate::Coordinate> {
        dcs.as_array()?
            .iter()
            .flat_map(|dc| dc["Coordinates"].as_array().cloned().unwrap_or_default())
            .find(|c| c["Node"].as_str() == Some(n))
            .and_then(|c| serde_json::from_value(c["Coord"].clone()).ok())
    };
    let Some(c1) = find(&node1) else {
        return ui.fail(&format!("Could not find a coordinate for node \"{node1}\""));
    };
    let Some(c2) = find(&node2) else {
        return ui.fail(&format!("Could not find a coordinate for node \"{node2}\""));
    };
    let ms = c1.distance_to(&c2) * 1000.0;
    ui.output(&format!(
        "Estimated {node1} <-> {node2} rtt: {ms:.3} ms (using WAN coordinates)"
    ));
    0
}
