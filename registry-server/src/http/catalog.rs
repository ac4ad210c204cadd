//! `/v1/catalog/*`: nodes, services and registrations, plus the `?filter`/`?node-meta`
//! helpers shared with the health and agent endpoints.

use super::respond::{json, ApiError, ApiResult};
use super::shapes::{NodeOut, ServiceNodeOut, ServiceOut};
use super::AppState;
use crate::state::{Table, WatchKey};
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use registry_proto::filter::Filter;
use registry_proto::lenient::Lenient;
use registry_proto::model::Node;
use registry_proto::Command;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Compiles `?filter`, if any.
pub(super) fn compile(filter: Option<&str>) -> Result<Option<Filter>, ApiError> {
    filter
        .map(|f| Filter::parse(f).map_err(|e| ApiError::bad(e.to_string())))
        .transpose()
}

/// Keeps the items of a JSON list that match the filter.
pub(super) fn filter_list<T: Serialize>(
    items: Vec<T>,
    filter: &Option<Filter>,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let v = serde_json::to_value(&it)
            .map_err(|e| ApiError(ServerError::Internal(e.to_string())))?;
        if filter.as_ref().is_none_or(|f| f.matches(&v)) {
            out.push(v);
        }
    }
    Ok(out)
}

/// Keeps the values of a JSON map (agent services and checks) that match the filter.
pub(super) fn filter_map(all: Value, filter: Option<&str>) -> Result<Value, ApiError> {
    let Some(f) = compile(filter)? else {
        return Ok(all);
    };
    Ok(match all {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| f.matches(v)).collect()),
        other => other,
    })
}

/// Whether a node carries every `?node-meta=k:v` pair.
pub(super) fn node_meta_ok(node: &Node, want: &[(String, String)]) -> bool {
    want.iter()
        .all(|(k, v)| node.meta.get(k).is_some_and(|have| have == v))
}

/// Whether a service has every `?tag=` (AND).
pub(super) fn tags_ok(tags: &[String], want: &[&str]) -> bool {
    want.iter().all(|w| tags.iter().any(|t| t == w))
}

/// `GET /v1/catalog/datacenters`.
pub(super) async fn datacenters(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    json(&s.datacenters.by_distance(), None, opts.pretty)
}

/// `GET /v1/catalog/nodes`.
pub(super) async fn nodes(
    State(s): State<AppState>,
    origin: Option<axum::extract::Extension<crate::rpc::api::OriginNode>>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let near = s.near(&opts, origin);
    let want = opts.node_meta();
    let filter = compile(opts.filter.as_deref())?;
    let (items, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Table(Table::Nodes)], |db| {
            let mut nodes: Vec<&registry_proto::model::Node> = db
                .nodes
                .values()
                .filter(|n| node_meta_ok(n, &want))
                .collect();
            if let Some(src) = &near {
                crate::prepared::near::sort(db, src, &mut nodes, |n| n.node.as_str());
            }
            let items: Vec<NodeOut<'_>> = nodes.into_iter().map(NodeOut::from).collect();
            (filter_list(items, &filter), db.table(Table::Nodes))
        })
        .await?;
    json(&items?, Some(&meta), opts.pretty)
}

/// `GET /v1/catalog/services`: service name -> union of tags.
pub(super) async fn services(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let want = opts.node_meta();
    let filter = compile(opts.filter.as_deref())?;
    let (out, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Table(Table::Services)], |db| {
            let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (name, set) in &db.services_by_name {
                for (node, id) in set {
                    let (Some(n), Some(svc)) = (
                        db.nodes.get(node),
                        db.services.get(node).and_then(|m| m.get(id)),
                    ) else {
                        continue;
                    };
                    if !node_meta_ok(n, &want) {
                        continue;
                    }
                    if let Some(f) = &filter {
                        let v = serde_json::to_value(ServiceNodeOut::new(n, svc))
                            .unwrap_or(Value::Null);
                        if !f.matches(&v) {
                            continue;
                        }
                    }
                    let e = out.entry(name.as_str()).or_default();
                    e.extend(svc.tags.iter().map(String::as_str));
                }
            }
            let body = super::respond::json_bytes(&out, opts.pretty);
            (body, db.table(Table::Services))
        })
        .await?;
    super::encoded_json(out?, &meta)
}

/// `GET /v1/catalog/service/:name` (`?tag`, `?node-meta`, `?filter`).
pub(super) async fn service(
    State(s): State<AppState>,
    origin: Option<axum::extract::Extension<crate::rpc::api::OriginNode>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let near = s.near(&opts, origin);
    if opts.get("peer").is_some_and(|p| !p.is_empty()) {
        return super::connect::empty(s, name, q).await;
    }
    let want_meta = opts.node_meta();
    let tags: Vec<String> = opts.all("tag").into_iter().map(str::to_string).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let filter = compile(opts.filter.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Service(name.clone())], |db| {
            let mut found: Vec<_> = db
                .service_instances(&name)
                .into_iter()
                .filter(|(n, svc)| node_meta_ok(n, &want_meta) && tags_ok(&svc.tags, &tag_refs))
                .collect();
            if let Some(src) = &near {
                crate::prepared::near::sort(db, src, &mut found, |(n, _)| n.node.as_str());
            }
            let items: Vec<ServiceNodeOut<'_>> = found
                .into_iter()
                .map(|(n, svc)| ServiceNodeOut::new(n, svc))
                .collect();
            let body = match &filter {
                None => super::respond::json_bytes(&items, opts.pretty),
                Some(_) => filter_list(items, &filter)
                    .and_then(|v| super::respond::json_bytes(&v, opts.pretty)),
            };
            (body, db.service_name_index(&name))
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/catalog/node/:node`: the node and a map of its services, or `null`.
pub(super) async fn node(
    State(s): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    // As Consul: `?filter` applies to each entry of `Services`; the node itself is kept.
    let filter = compile(opts.filter.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Node(node.clone())], |db| {
            let body = match db.nodes.get(&node) {
                None => super::respond::json_bytes(&Option::<()>::None, opts.pretty),
                Some(n) => {
                    let mut services = serde_json::Map::new();
                    let mut err = None;
                    for svc in db.node_services(&node) {
                        match filter_list(vec![ServiceOut::new(svc, None)], &filter) {
                            Ok(mut kept) => {
                                if let Some(v) = kept.pop() {
                                    services.insert(svc.id.clone(), v);
                                }
                            }
                            Err(e) => err = Some(e),
                        }
                    }
                    match err {
                        Some(e) => Err(e),
                        None => super::respond::json_bytes(
                            &serde_json::json!({"Node": NodeOut::from(n), "Services": services}),
                            opts.pretty,
                        ),
                    }
                }
            };
            (body, db.node_name_index(&node))
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/catalog/node-services/:node`: the node and a list of its services.
pub(super) async fn node_services(
    State(s): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let filter = compile(opts.filter.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Node(node.clone())], |db| {
            let services: Vec<ServiceOut<'_>> = db
                .node_services(&node)
                .map(|svc| ServiceOut::new(svc, None))
                .collect();
            let body = filter_list(services, &filter).and_then(|services| {
                let v = serde_json::json!({
                    "Node": db.nodes.get(&node).map(NodeOut::from),
                    "Services": services,
                });
                super::respond::json_bytes(&v, opts.pretty)
            });
            (body, db.node_name_index(&node))
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `PUT /v1/catalog/register`.
pub(super) async fn register(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let req = registry_proto::api::CatalogRegisterRequest::decode(&body)?;
    s.check_datacenter(&req.datacenter)?;
    let cmd = Command::Register(req.into_command(&s.config.datacenter)?);
    s.writer.apply(cmd).await?;
    json(&true, None, opts.pretty)
}

/// `PUT /v1/catalog/deregister`.
pub(super) async fn deregister(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let req = registry_proto::api::CatalogDeregisterRequest::decode(&body)?;
    s.check_datacenter(&req.datacenter)?;
    let cmd = Command::Deregister(req.into_command()?);
    s.writer.apply(cmd).await?;
    json(&true, None, opts.pretty)
}
