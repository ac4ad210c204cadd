//! `/v1/config`: config entries. `PUT /v1/config[?cas=]` stores one (`true`/`false`),
//! `GET /v1/config/:kind` lists a kind and `GET /v1/config/:kind/:name` reads one (both
//! blocking queries), `DELETE /v1/config/:kind/:name[?cas=]` removes one.

use super::respond::{json, json_bytes, ApiError, ApiResult};
use super::AppState;
use crate::state::WatchKey;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use registry_proto::config_entry::{check_kind, decode};
use registry_proto::Command;
use serde_json::Value;

fn cas(opts: &crate::query::QueryOptions) -> Result<Option<u64>, ApiError> {
    opts.get("cas")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|e| ApiError::bad(format!("Error parsing cas value: {e}")))
        })
        .transpose()
}

/// `PUT /v1/config[?cas=N]`.
pub(super) async fn apply(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let cas = cas(&opts)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Request decoding failed: {e}")))?;
    let entry = decode(value).map_err(ApiError::bad)?;
    let done = s
        .writer
        .apply_bool(Command::ConfigEntrySet { entry, cas })
        .await?;
    json(&done, None, opts.pretty)
}

/// `GET /v1/config/:kind`: the entries of a kind, by name.
pub(super) async fn list(
    State(s): State<AppState>,
    Path(kind): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    check_kind(&kind).map_err(ApiError::bad)?;
    let filter = super::catalog::compile(opts.filter.as_deref())?;
    let keys = [WatchKey::ConfigEntries(kind.clone())];
    let (body, meta) = s
        .reader
        .blocking(&opts, &keys, |db| {
            let mut index = 0;
            let mut out = Vec::new();
            for ((k, _), e) in db.config_entries.iter() {
                if *k == kind {
                    index = index.max(e.modify_index);
                    let v = e.to_json();
                    if filter.as_ref().is_none_or(|f| f.matches(&v)) {
                        out.push(v);
                    }
                }
            }
            (json_bytes(&out, opts.pretty), index)
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/config/:kind/:name`: one entry, 404 when there is none.
pub(super) async fn get(
    State(s): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    check_kind(&kind).map_err(ApiError::bad)?;
    let keys = [WatchKey::ConfigEntries(kind.clone())];
    let key = (kind.clone(), name.clone());
    let (found, meta) = s
        .reader
        .blocking(&opts, &keys, |db| {
            let e = db.config_entries.get(&key).cloned();
            let index = e.as_ref().map_or_else(
                || {
                    db.config_entries
                        .iter()
                        .filter(|((k, _), _)| *k == kind)
                        .map(|(_, e)| e.modify_index)
                        .max()
                        .unwrap_or(0)
                },
                |e| e.modify_index,
            );
            (e, index)
        })
        .await?;
    match found {
        Some(e) => super::encoded_json(json_bytes(&e.to_json(), opts.pretty)?, &meta),
        None => {
            let mut resp = (
                StatusCode::NOT_FOUND,
                format!("Config entry not found for \"{kind}\" / \"{name}\""),
            )
                .into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            super::respond::add_meta(resp.headers_mut(), &meta);
            Ok(resp)
        }
    }
}

/// `DELETE /v1/config/:kind/:name[?cas=N]`: `{}`, or with `?cas` whether it was deleted.
pub(super) async fn delete(
    State(s): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    check_kind(&kind).map_err(ApiError::bad)?;
    let cas = cas(&opts)?;
    let done = s
        .writer
        .apply_bool(Command::ConfigEntryDelete { kind, name, cas })
        .await?;
    match cas {
        Some(_) => json(&done, None, opts.pretty),
        None => json(&serde_json::json!({}), None, opts.pretty),
    }
}
