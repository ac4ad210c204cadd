//! `/v1/internal/ui/*`: the summaries the web UI reads, in the shapes of Consul's
//! `agent/ui_endpoint.go`, so that one blocking query feeds a whole list view instead of one
//! request per row.
//!
//! - `services`: one `ServiceSummary` per service name (instances, nodes, tags and the
//!   passing/warning/critical counts of the checks that apply to its instances).
//! - `nodes`: every node with its services and checks (`NodeDump`).
//! - `node/:node`: one node's `NodeInfo`, 404 when it is not registered.
//!
//! All three are blocking queries (`?index=&wait=`) over the nodes, services and checks
//! tables.

use super::respond::{json_bytes, ApiResult};
use super::shapes::{CheckOut, NodeOut, ServiceOut};
use super::AppState;
use crate::state::{Db, Table, WatchKey};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use registry_proto::model::{status, HealthCheck, Node};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Everything a catalog summary depends on.
const CATALOG: [WatchKey; 3] = [
    WatchKey::Table(Table::Nodes),
    WatchKey::Table(Table::Services),
    WatchKey::Table(Table::Checks),
];

fn catalog_index(db: &Db) -> u64 {
    db.table(Table::Nodes)
        .max(db.table(Table::Services))
        .max(db.table(Table::Checks))
}

/// Consul's `ServiceSummary`.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ServiceSummary<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    name: &'a str,
    datacenter: &'a str,
    tags: BTreeSet<&'a str>,
    nodes: BTreeSet<&'a str>,
    external_sources: Vec<&'a str>,
    instance_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
    gateway_config: BTreeMap<&'a str, &'a str>,
    transparent_proxy: bool,
    connect_native: bool,
}

fn summarize<'a>(db: &'a Db, dc: &'a str) -> Vec<ServiceSummary<'a>> {
    let mut out = Vec::with_capacity(db.services_by_name.len());
    for name in db.services_by_name.keys() {
        let mut sum = ServiceSummary {
            name,
            datacenter: dc,
            ..ServiceSummary::default()
        };
        // A node check applies to every instance on its node but is counted once.
        let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (n, svc) in db.service_instances(name) {
            sum.instance_count += 1;
            sum.kind = &svc.kind;
            sum.nodes.insert(&n.node);
            sum.tags.extend(svc.tags.iter().map(String::as_str));
            for c in db.instance_checks(&n.node, &svc.id) {
                if !seen.insert((&c.node, &c.check_id)) {
                    continue;
                }
                match c.status.as_str() {
                    status::PASSING => sum.checks_passing += 1,
                    status::WARNING => sum.checks_warning += 1,
                    _ => sum.checks_critical += 1,
                }
            }
        }
        if sum.instance_count > 0 {
            out.push(sum);
        }
    }
    out
}

/// Consul's `NodeInfo` (an element of `NodeDump`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeInfo<'a> {
    #[serde(flatten)]
    node: NodeOut<'a>,
    services: Vec<ServiceOut<'a>>,
    checks: Vec<CheckOut<'a>>,
}

fn node_info<'a>(db: &'a Db, n: &'a Node) -> NodeInfo<'a> {
    NodeInfo {
        node: n.into(),
        services: db
            .node_services(&n.node)
            .map(|s| ServiceOut::new(s, None))
            .collect(),
        checks: db
            .node_checks(&n.node)
            .map(|c: &HealthCheck| CheckOut::from(c))
            .collect(),
    }
}

/// `GET /v1/internal/ui/services`.
pub(super) async fn services(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let dc = s.config.datacenter.clone();
    let (body, meta) = s
        .reader
        .blocking(&opts, &CATALOG, |db| {
            (
                json_bytes(&summarize(db, &dc), opts.pretty),
                catalog_index(db),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/internal/ui/nodes`.
pub(super) async fn nodes(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &CATALOG, |db| {
            let dump: Vec<NodeInfo<'_>> = db.nodes.values().map(|n| node_info(db, n)).collect();
            (json_bytes(&dump, opts.pretty), catalog_index(db))
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/internal/ui/node/:node`.
pub(super) async fn node(
    State(s): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Node(node.clone())], |db| {
            let body = db
                .nodes
                .get(&node)
                .map(|n| json_bytes(&node_info(db, n), opts.pretty));
            (body, db.node_name_index(&node))
        })
        .await?;
    match body {
        Some(body) => super::encoded_json(body?, &meta),
        None => super::respond::empty(StatusCode::NOT_FOUND, &meta),
    }
}
