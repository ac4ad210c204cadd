//! `registry catalog services|nodes|datacenters`: catalog listings as Consul prints them.

use super::http::{encode_path, Client, HttpFlags, ServerFlags};
use super::table::{columnize, tabwrite};
use super::ui::Ui;
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `catalog` subcommands.
#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Lists all registered services in a datacenter.
    Services(ServicesArgs),
    /// Lists all nodes in a datacenter.
    Nodes(NodesArgs),
    /// Lists all known datacenters.
    Datacenters(DatacentersArgs),
}

/// `catalog services`.
#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Only the services of this node (ID or name).
    #[arg(long, value_name = "NODE")]
    node: Option<String>,
    /// Only services on nodes with this `key=value` metadata; repeatable.
    #[arg(long = "node-meta", value_name = "KEY=VALUE")]
    node_meta: Vec<String>,
    /// Print each service's tags, comma-separated, beside it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    tags: Option<bool>,
}

/// `catalog nodes`.
#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Print full node IDs, tagged addresses and metadata.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    detailed: Option<bool>,
    /// Sort by estimated round-trip time from this node (`_agent`: this agent).
    #[arg(long, value_name = "NODE")]
    near: Option<String>,
    /// Only nodes with this `key=value` metadata; repeatable.
    #[arg(long = "node-meta", value_name = "KEY=VALUE")]
    node_meta: Vec<String>,
    /// Only nodes providing this service (ID or name).
    #[arg(long, value_name = "SERVICE")]
    service: Option<String>,
    /// Filter expression sent to the agent.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
}

/// `catalog datacenters`.
#[derive(Args, Debug)]
pub struct DatacentersArgs {
    #[command(flatten)]
    http: HttpFlags,
}

/// The node fields the listings use (from `catalog/nodes` or `catalog/service/:name`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default, rename = "ID")]
    id: String,
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "NodeMeta")]
    meta: Option<BTreeMap<String, String>>,
}

fn meta_query(pairs: &[String]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            ("node-meta", format!("{k}:{v}"))
        })
        .collect()
}

/// Runs one `catalog` subcommand.
pub async fn run(command: CatalogCommand, ui: &mut Ui<'_>) -> i32 {
    match command {
        CatalogCommand::Services(args) => services(args, ui).await,
        CatalogCommand::Nodes(args) => nodes(args, ui).await,
        CatalogCommand::Datacenters(args) => datacenters(args, ui).await,
    }
}

async fn services(args: ServicesArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let query = meta_query(&args.node_meta);
    let services: BTreeMap<String, Vec<String>> = if let Some(node) = &args.node {
        #[derive(Deserialize)]
        struct NodeServices {
            #[serde(rename = "Services", default)]
            services: Option<BTreeMap<String, Svc>>,
        }
        #[derive(Deserialize)]
        struct Svc {
            #[serde(rename = "Service")]
            service: String,
            #[serde(rename = "Tags", default)]
            tags: Option<Vec<String>>,
        }
        let path = format!("/v1/catalog/node/{}", encode_path(node));
        let found: Result<Option<NodeServices>, String> = match client.get_ok(&path, &query).await {
            Ok(r) => r.json(),
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => {
                let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for svc in found
                    .and_then(|f| f.services)
                    .unwrap_or_default()
                    .into_values()
                {
                    out.entry(svc.service)
                        .or_default()
                        .extend(svc.tags.unwrap_or_default());
                }
                out
            }
            Err(e) => return ui.fail(&format!("Error listing services for node: {e}")),
        }
    } else {
        let found: Result<BTreeMap<String, Option<Vec<String>>>, String> =
            match client.get_ok("/v1/catalog/services", &query).await {
                Ok(r) => r.json(),
                Err(e) => Err(e),
            };
        match found {
            Ok(found) => found
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            Err(e) => return ui.fail(&format!("Error listing services: {e}")),
        }
    };
    if services.is_empty() {
        ui.error("No services match the given query - try expanding your search.");
        return 0;
    }
    if args.tags.unwrap_or(false) {
        let rows: Vec<(String, String)> = services
            .into_iter()
            .map(|(name, mut tags)| {
                tags.sort();
                (name, tags.join(","))
            })
            .collect();
        let text = tabwrite(&rows);
        ui.output(text.trim());
    } else {
        for name in services.keys() {
            ui.output(name);
        }
    }
    0
}

async fn nodes(args: NodesArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query = meta_query(&args.node_meta);
    if let Some(near) = &args.near {
        query.push(("near", near.clone()));
    }
    if let Some(filter) = &args.filter {
        query.push(("filter", filter.clone()));
    }
    let (path, context) = match &args.service {
        Some(service) => (
            format!("/v1/catalog/service/{}", encode_path(service)),
            "Error listing nodes for service",
        ),
        None => ("/v1/catalog/nodes".to_string(), "Error listing nodes"),
    };
    let nodes: Result<Option<Vec<Node>>, String> = match client.get_ok(&path, &query).await {
        Ok(r) => r.json(),
        Err(e) => Err(e),
    };
    let nodes = match nodes {
        Ok(nodes) => nodes.unwrap_or_default(),
        Err(e) => return ui.fail(&format!("{context}: {e}")),
    };
    if nodes.is_empty() {
        ui.error("No nodes match the given query - try expanding your search.");
        return 0;
    }
    ui.output(&render_nodes(&nodes, args.detailed.unwrap_or(false)));
    0
}

fn join_map(map: &Option<BTreeMap<String, String>>) -> String {
    map.iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_nodes(nodes: &[Node], detailed: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(nodes.len() + 1);
    let mut header = vec!["Node", "ID", "Address", "DC"];
    if detailed {
        header.extend(["TaggedAddresses", "Meta"]);
    }
    rows.push(header.into_iter().map(String::from).collect());
    for node in nodes {
        let id = if detailed {
            node.id.clone()
        } else {
            node.id.chars().take(8).collect()
        };
        let mut row = vec![
            node.node.clone(),
            id,
            node.address.clone(),
            node.datacenter.clone(),
        ];
        if detailed {
            row.push(join_map(&node.tagged_addresses));
            row.push(join_map(&node.meta));
        }
        rows.push(row);
    }
    columnize(&rows)
}

async fn datacenters(args: DatacentersArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let dcs: Result<Vec<String>, String> = match client.get_ok("/v1/catalog/datacenters", &[]).await
    {
        Ok(r) => r.json(),
        Err(e) => Err(e),
    };
    match dcs {
        Ok(dcs) if dcs.is_empty() => {
            ui.error("No datacenters found");
            1
        }
        Ok(dcs) => {
            for dc in dcs {
                ui.output(&dc);
            }
            0
        }
        Err(e) => ui.fail(&format!("Error listing datacenters: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_table_truncates_ids() {
        let nodes: Vec<Node> = serde_json::from_value(json!([
            {"ID": "0e5c4a2c-1234-5678-9abc-def012345678", "Node": "n1",
             "Address": "127.0.0.1", "Datacenter": "dc1",
             "TaggedAddresses": {"lan": "127.0.0.1"}, "Meta": {"a": "b"}}
        ]))
        .expect("nodes");
        assert_eq!(
            render_nodes(&nodes, false),
            "Node  ID        Address    DC\nn1    0e5c4a2c  127.0.0.1  dc1"
        );
        assert!(render_nodes(&nodes, true).ends_with("lan=127.0.0.1    a=b"));
    }
}
