//! `/v1/health/*`: instances with their checks, checks by service, node and state.

use super::catalog::{compile, filter_list, node_meta_ok, tags_ok};
use super::respond::{ApiError, ApiResult};
use super::shapes::{CheckOut, CheckServiceNodeOut};
use super::AppState;
use crate::state::{Table, WatchKey};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use registry_proto::model::status;

fn encode<T: serde::Serialize>(
    items: Vec<T>,
    filter: &Option<registry_proto::filter::Filter>,
    pretty: bool,
) -> Result<Vec<u8>, ApiError> {
    match filter {
        None => super::respond::json_bytes(&items, pretty),
        Some(_) => super::respond::json_bytes(&filter_list(items, filter)?, pretty),
    }
}

/// `GET /v1/health/service/:name` (`?passing`, `?tag`, `?node-meta`, `?filter`).
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
    let passing = opts.flag("passing")?;
    let want_meta = opts.node_meta();
    let tags: Vec<String> = opts.all("tag").into_iter().map(str::to_string).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let filter = compile(opts.filter.as_deref())?;
    // Everything that shapes the answer besides the service's own index.
    let key = format!(
        "{name}\0{passing}\0{tags:?}\0{want_meta:?}\0{:?}\0{}\0{near:?}",
        opts.filter, opts.pretty
    );
    let store = s.reader.store().clone();
    let cache = s.cache.clone();
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Service(name.clone())], |db| {
            let index = db.service_name_index(&name);
            let generation = store.generation();
            if let Some(hit) = cache.get(&key, generation, index) {
                return (Ok(hit), index);
            }
            let mut found = Vec::new();
            for (n, svc) in db.service_instances(&name) {
                if !node_meta_ok(n, &want_meta) || !tags_ok(&svc.tags, &tag_refs) {
                    continue;
                }
                let checks = db.instance_checks(&n.node, &svc.id);
                if passing && checks.iter().any(|c| c.status != status::PASSING) {
                    continue;
                }
                found.push((n, svc, checks));
            }
            if let Some(src) = &near {
                crate::prepared::near::sort(db, src, &mut found, |(n, _, _)| n.node.as_str());
            }
            let items: Vec<_> = found
                .iter()
                .map(|(n, svc, checks)| CheckServiceNodeOut::new(n, svc, checks))
                .collect();
            let body = encode(items, &filter, opts.pretty).map(Bytes::from);
            if let Ok(b) = &body {
                cache.put(key.clone(), generation, index, b.clone());
            }
            (body, index)
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/health/checks/:service`.
pub(super) async fn checks(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let want_meta = opts.node_meta();
    let filter = compile(opts.filter.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Service(name.clone())], |db| {
            let mut items = Vec::new();
            for (n, svc) in db.service_instances(&name) {
                if !node_meta_ok(n, &want_meta) {
                    continue;
                }
                items.extend(
                    db.node_checks(&n.node)
                        .filter(|c| c.service_id == svc.id)
                        .map(CheckOut::from),
                );
            }
            (
                encode(items, &filter, opts.pretty),
                db.service_name_index(&name),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/health/node/:node`.
pub(super) async fn node(
    State(s): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let filter = compile(opts.filter.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Node(node.clone())], |db| {
            let items: Vec<CheckOut<'_>> = db.node_checks(&node).map(CheckOut::from).collect();
            (
                encode(items, &filter, opts.pretty),
                db.node_name_index(&node),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/health/state/:state` (`any`, `passing`, `warning`, `critical`).
pub(super) async fn state(
    State(s): State<AppState>,
    Path(state): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    if state != status::ANY && !status::is_valid(&state) {
        return Err(ApiError::bad("Invalid state"));
    }
    let want_meta = opts.node_meta();
    let filter = compile(opts.filter.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Table(Table::Checks)], |db| {
            let items: Vec<CheckOut<'_>> = db
                .checks
                .iter()
                .filter(|(node, _)| {
                    want_meta.is_empty()
                        || db
                            .nodes
                            .get(*node)
                            .is_some_and(|n| node_meta_ok(n, &want_meta))
                })
                .flat_map(|(_, m)| m.values().map(|c| &**c))
                .filter(|c| state == status::ANY || c.status == state)
                .map(CheckOut::from)
                .collect();
            (encode(items, &filter, opts.pretty), db.table(Table::Checks))
        })
        .await?;
    super::encoded_json(body?, &meta)
}
