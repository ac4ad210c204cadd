//! `/v1/query`: prepared queries. `POST /v1/query` creates one (`{"ID"}`), `GET /v1/query`
//! lists them, `GET|PUT|DELETE /v1/query/:uuid` reads, replaces and deletes one,
//! `GET /v1/query/:id_or_name/execute` runs one (`?near`, `?limit`, `?connect`) and
//! `GET /v1/query/:id_or_name/explain` shows the query a name resolves to (a template
//! rendered for it). Execution is in `crate::prepared`.

use super::respond::{json, json_bytes, ApiError, ApiResult};
use super::shapes::CheckServiceNodeOut;
use super::AppState;
use crate::prepared::{self, failover, NOT_FOUND};
use crate::rpc::api::OriginNode;
use crate::state::WatchKey;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::IntoResponse;
use registry_proto::prepared_query::{decode, validate, PreparedQuery, QueryDns};
use registry_proto::Command;
use serde::Serialize;
use serde_json::Value;

fn not_found() -> ApiError {
    ApiError(ServerError::NotFound(NOT_FOUND.into()))
}

/// Stores `q` through Raft; a rejection by the state machine (a taken name, a missing
/// session, a bad template) is the client's error.
async fn store(s: &AppState, q: PreparedQuery) -> Result<(), ApiError> {
    match s.writer.apply(Command::PreparedQuerySet(q)).await {
        Ok(_) => Ok(()),
        Err(ServerError::Internal(m)) => Err(ApiError::bad(m)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/query`.
pub(super) async fn create(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let mut query = decode(&body).map_err(ApiError::bad)?;
    if !query.id.is_empty() {
        return Err(ApiError::bad(
            "ID must be empty when creating a new prepared query",
        ));
    }
    validate(&query).map_err(ApiError::bad)?;
    // Chosen here, before the log, so that applying stays deterministic.
    query.id = {
        let db = s.reader.store().read();
        loop {
            let id = uuid::Uuid::new_v4().to_string();
            if !db.queries.queries.contains_key(&id) {
                break id;
            }
        }
    };
    let id = query.id.clone();
    store(&s, query).await?;
    json(&serde_json::json!({ "ID": id }), None, opts.pretty)
}

/// `PUT /v1/query/:id`.
pub(super) async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let _opts = s.options(q.as_deref())?;
    let mut query = decode(&body).map_err(ApiError::bad)?;
    query.id = id.clone();
    validate(&query).map_err(ApiError::bad)?;
    let exists = s.reader.store().read().queries.queries.contains_key(&id);
    if !exists {
        return Err(ApiError::bad(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    }
    store(&s, query).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `DELETE /v1/query/:id`.
pub(super) async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let _opts = s.options(q.as_deref())?;
    let exists = s.reader.store().read().queries.queries.contains_key(&id);
    if !exists {
        return Err(ApiError::bad(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    }
    s.writer.apply(Command::PreparedQueryDelete { id }).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `GET /v1/query`: every query, by ID.
pub(super) async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::PreparedQueries], |db| {
            let all: Vec<&PreparedQuery> = db.queries.queries.values().collect();
            (json_bytes(&all, opts.pretty), db.queries.queries_index)
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/query/:id`: a one-element array, 404 when there is no such query.
pub(super) async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (found, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::PreparedQueries], |db| {
            (
                db.queries.queries.get(&id).cloned(),
                db.queries.queries_index,
            )
        })
        .await?;
    let q = found.ok_or_else(not_found)?;
    super::encoded_json(json_bytes(&[q], opts.pretty)?, &meta)
}

/// `GET /v1/query/:id_or_name/explain`: `{"Query": …}`.
pub(super) async fn explain(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (found, meta) = s
        .reader
        .once(&opts, |db| {
            (prepared::resolve(db, &id, ""), db.queries.queries_index)
        })
        .await?;
    let query = found.map_err(ApiError::bad)?.ok_or_else(not_found)?;
    super::encoded_json(
        json_bytes(&serde_json::json!({ "Query": query }), opts.pretty)?,
        &meta,
    )
}

#[derive(Serialize)]
#[serde(untagged)]
enum NodesOut<'a> {
    Local(Vec<CheckServiceNodeOut<'a>>),
    Remote(Vec<Value>),
}

#[derive(Serialize)]
struct ExecuteOut<'a> {
    #[serde(rename = "Service")]
    service: &'a str,
    #[serde(rename = "Nodes")]
    nodes: NodesOut<'a>,
    #[serde(rename = "DNS")]
    dns: &'a QueryDns,
    #[serde(rename = "Datacenter")]
    datacenter: &'a str,
    #[serde(rename = "Failovers")]
    failovers: u32,
}

/// What a local execution produced: the encoded answer, or the rendered query to fail over
/// with.
enum Local {
    Answer(Result<Vec<u8>, ApiError>),
    Failover(Box<PreparedQuery>),
}

/// `GET /v1/query/:id_or_name/execute`.
pub(super) async fn execute(
    State(s): State<AppState>,
    origin: Option<Extension<OriginNode>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let limit = match opts.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<usize>()
            .map_err(|e| ApiError::bad(format!("Bad limit: {e}")))?,
        _ => 0,
    };
    let agent = origin.map_or_else(|| s.config.node_name.clone(), |o| o.0 .0.clone());
    let near_param = opts.get("near").unwrap_or("").to_string();
    let dc = s.config.datacenter.clone();
    let store = s.reader.store().clone();
    let cache = s.cache.clone();
    let (local, meta) = s
        .reader
        .once(&opts, |db| {
            let query = match prepared::resolve(db, &id, "") {
                Ok(Some(q)) => q,
                Ok(None) => return (Local::Answer(Err(not_found())), 0),
                Err(e) => return (Local::Answer(Err(ApiError::bad(e))), 0),
            };
            let index = db.service_name_index(&query.service.service);
            let near = if near_param.is_empty() {
                query.service.near.as_str()
            } else {
                near_param.as_str()
            };
            if near.is_empty() && !opts.pretty {
                // Unsorted answers are a shuffle of the same instances: their encodings are
                // kept while the queries and the service are unchanged.
                let key = format!("query\0{id}\0{}", db.queries.queries_index);
                let generation = store.generation();
                let frags = match cache.get(&key, generation, index) {
                    Some(hit) => hit,
                    None => {
                        let items = prepared::select(db, &query);
                        let enc = encode_fragments(&items);
                        cache.put(key, generation, index, enc.clone());
                        enc
                    }
                };
                if !frags.is_empty() || !has_failover(&query) {
                    return (Local::Answer(assemble(&query, &frags, &dc, limit)), index);
                }
                return (Local::Failover(Box::new(query)), index);
            }
            let mut items = prepared::select(db, &query);
            let near = prepared::near_node(db, near, &agent, None);
            prepared::order(db, &mut items, &near, limit);
            if items.is_empty() && has_failover(&query) {
                return (Local::Failover(Box::new(query)), index);
            }
            let nodes = items
                .iter()
                .map(|(n, svc, checks)| CheckServiceNodeOut::new(n, svc, checks))
                .collect();
            let out = ExecuteOut {
                service: &query.service.service,
                nodes: NodesOut::Local(nodes),
                dns: &query.dns,
                datacenter: &dc,
                failovers: 0,
            };
            (Local::Answer(json_bytes(&out, opts.pretty)), index)
        })
        .await?;
    let body = match local {
        Local::Answer(b) => b?,
        Local::Failover(query) => {
            let r = failover::run(s.remote_queries.as_ref(), &dc, &query, limit).await;
            let out = ExecuteOut {
                service: &query.service.service,
                nodes: NodesOut::Remote(r.nodes),
                dns: &query.dns,
                datacenter: r.datacenter.as_deref().unwrap_or(&dc),
                failovers: r.failovers,
            };
            json_bytes(&out, opts.pretty)?
        }
    };
    super::encoded_json(body, &meta)
}

fn has_failover(q: &PreparedQuery) -> bool {
    let f = &q.service.failover;
    f.nearest_n > 0
        || f.datacenters.as_ref().is_some_and(|d| !d.is_empty())
        || f.targets.as_ref().is_some_and(|t| !t.is_empty())
}

/// The instances' encodings, one per line (compact JSON never holds a raw newline).
fn encode_fragments(items: &[prepared::Instance<'_>]) -> Bytes {
    let mut out = Vec::new();
    for (n, svc, checks) in items {
        if !out.is_empty() {
            out.push(b'\n');
        }
        if serde_json::to_writer(&mut out, &CheckServiceNodeOut::new(n, svc, checks)).is_err() {
            return Bytes::new();
        }
    }
    Bytes::from(out)
}

/// An execute answer from cached instance encodings, shuffled, at most `limit` (0: all).
fn assemble(q: &PreparedQuery, frags: &Bytes, dc: &str, limit: usize) -> Result<Vec<u8>, ApiError> {
    use rand::seq::SliceRandom;
    let mut parts: Vec<&[u8]> = if frags.is_empty() {
        Vec::new()
    } else {
        frags.split(|b| *b == b'\n').collect()
    };
    parts.shuffle(&mut rand::thread_rng());
    if limit > 0 && parts.len() > limit {
        parts.truncate(limit);
    }
    let enc = |v: &dyn erased::Json| v.to_json();
    let mut out = Vec::with_capacity(frags.len() + 128);
    out.extend_from_slice(b"{\"Service\":");
    out.extend(enc(&q.service.service)?);
    out.extend_from_slice(b",\"Nodes\":[");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"],\"DNS\":");
    out.extend(enc(&q.dns)?);
    out.extend_from_slice(b",\"Datacenter\":");
    out.extend(enc(&dc)?);
    out.extend_from_slice(b",\"Failovers\":0}");
    Ok(out)
}

mod erased {
    use super::ApiError;

    /// A value encoded as compact JSON.
    pub(super) trait Json {
        fn to_json(&self) -> Result<Vec<u8>, ApiError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, ApiError> {
            serde_json::to_vec(self).map_err(|e| ApiError::bad(e.to_string()))
        }
    }
}
