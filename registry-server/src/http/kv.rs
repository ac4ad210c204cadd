//! `/v1/kv/*`: get (single, `?recurse`, `?keys`, `?raw`), put (`?cas`, `?flags`,
//! `?acquire`, `?release`) and delete (`?recurse`, `?cas`), with blocking reads on the key or
//! prefix.

use super::respond::{empty, json, ApiError, ApiResult};
use super::AppState;
use crate::state::{Db, WatchKey};
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use registry_proto::api::output::KvPairOut;
use registry_proto::model::DirEntry;
use registry_proto::Command;
use std::collections::BTreeSet;

/// Largest value accepted (Consul's `kv_max_value_size` default).
pub(super) const MAX_VALUE_SIZE: usize = 512 * 1024;

fn key_of(path: Option<Path<String>>) -> String {
    path.map(|Path(k)| k).unwrap_or_default()
}

/// Keys under `prefix`, collapsed at the first `sep` after the prefix.
fn list_keys(db: &Db, prefix: &str, sep: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for e in db.kv_prefix(prefix) {
        let rest = &e.key[prefix.len()..];
        match (!sep.is_empty()).then(|| rest.find(sep)).flatten() {
            Some(i) => out.insert(format!("{prefix}{}", &rest[..i + sep.len()])),
            None => out.insert(e.key.clone()),
        };
    }
    out.into_iter().collect()
}

/// `GET /v1/kv/:key`.
pub(super) async fn get(
    State(s): State<AppState>,
    path: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let key = key_of(path);
    if opts.get("keys").is_some() {
        let sep = opts.get("separator").unwrap_or("").to_string();
        let watch = [WatchKey::KvPrefix(key.clone())];
        let (keys, meta) = s
            .reader
            .blocking(&opts, &watch, |db| {
                (list_keys(db, &key, &sep), db.kv_prefix_index(&key))
            })
            .await?;
        if keys.is_empty() && !key.is_empty() {
            return empty(StatusCode::NOT_FOUND, &meta);
        }
        return json(&keys, Some(&meta), opts.pretty);
    }
    let store = s.reader.store();
    let cache = &s.cache;
    if opts.get("recurse").is_some() {
        let watch = [WatchKey::KvPrefix(key.clone())];
        let cache_key = format!("kv-recurse\0{key}\0{}", opts.pretty);
        let (body, meta) = s
            .reader
            .blocking(&opts, &watch, |db| {
                let index = db.kv_prefix_index(&key);
                let generation = store.generation();
                if let Some(hit) = cache.get(&cache_key, generation, index) {
                    return (Some(Ok(hit)), index);
                }
                let items: Vec<KvPairOut> = db.kv_prefix(&key).map(KvPairOut::from).collect();
                if items.is_empty() {
                    return (None, index);
                }
                let body = super::respond::json_bytes(&items, opts.pretty).map(Bytes::from);
                if let Ok(b) = &body {
                    cache.put(cache_key.clone(), generation, index, b.clone());
                }
                (Some(body), index)
            })
            .await?;
        return match body {
            None => empty(StatusCode::NOT_FOUND, &meta),
            Some(b) => super::encoded_json(b?, &meta),
        };
    }
    if key.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    let watch = [WatchKey::KvKey(key.clone())];
    let raw = opts.get("raw").is_some();
    // The watchers a write wakes all ask for the same (key, index): the first one encodes
    // the answer, the others get the same bytes.
    let cache_key = format!("kv\0{key}\0{}", opts.pretty);
    let (found, meta) = s
        .reader
        .blocking(&opts, &watch, |db| match db.kvs.get(&key) {
            Some(e) => {
                let index = e.index.modify_index;
                if raw {
                    return (Some(Ok(e.value.clone())), index);
                }
                let generation = store.generation();
                if let Some(hit) = cache.get(&cache_key, generation, index) {
                    return (Some(Ok(hit)), index);
                }
                let body = super::respond::json_bytes(&[KvPairOut::from(&**e)], opts.pretty)
                    .map(Bytes::from);
                if let Ok(b) = &body {
                    cache.put(cache_key.clone(), generation, index, b.clone());
                }
                (Some(body), index)
            }
            None => (None, db.table(crate::state::Table::Kvs)),
        })
        .await?;
    match found {
        None => empty(StatusCode::NOT_FOUND, &meta),
        Some(body) if raw => {
            let mut resp = (StatusCode::OK, body?).into_response();
            // Consul's raw answers: never let a browser interpret stored bytes.
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(
                "X-Content-Type-Options",
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                "Content-Security-Policy",
                HeaderValue::from_static("sandbox"),
            );
            super::respond::add_meta(resp.headers_mut(), &meta);
            Ok(resp)
        }
        Some(body) => super::encoded_json(body?, &meta),
    }
}

fn parse_u64(opts: &crate::query::QueryOptions, name: &str) -> Result<Option<u64>, ApiError> {
    opts.get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad(format!("Invalid {name} index")))
        })
        .transpose()
}

/// `PUT /v1/kv/:key`: returns `true` or `false`.
pub(super) async fn put(
    State(s): State<AppState>,
    path: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let key = key_of(path);
    if key.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    if body.len() > MAX_VALUE_SIZE {
        return Err(ApiError(ServerError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {MAX_VALUE_SIZE} bytes. \
             Value exceeds the kv_max_value_size limit.",
            body.len()
        ))));
    }
    let flags = match opts.get("flags") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::bad("Invalid flags"))?,
        None => 0,
    };
    if let Some(resp) = conflicting_flags(q.as_deref(), &["cas", "acquire", "release"]) {
        return Ok(resp);
    }
    let mut entry = DirEntry {
        key,
        flags,
        // A copy of its exact size: the body may be a slice of a larger read buffer, which
        // the state would otherwise keep alive.
        value: Bytes::copy_from_slice(&body),
        ..Default::default()
    };
    // ?release wins over ?acquire, which wins over ?cas (they conflict anyway).
    let cmd = if let Some(session) = opts.get("release") {
        entry.session = session.to_string();
        Command::KvUnlock { entry }
    } else if let Some(session) = opts.get("acquire") {
        // Lock-delay is timed by each server from its own apply, so it is checked here, on
        // the leader, before the log: a key released by an invalidated session cannot be
        // re-acquired meanwhile.
        if let Some(left) = s.reader.store().kv_lock_delay(&entry.key) {
            tracing::warn!(key = %entry.key, remaining_ms = left.as_millis() as u64, "rejecting lock of key due to lock-delay");
            return json(&false, None, opts.pretty);
        }
        // Held by another (live) session: answer false without a log entry. Everything
        // acknowledged is applied here, so this is the answer the log would give at this
        // point; a session that does not exist still goes through the log for its error.
        let held_by_other = {
            let db = s.reader.store().read();
            db.sessions.contains_key(session)
                && db
                    .kvs
                    .get(&entry.key)
                    .is_some_and(|e| !e.session.is_empty() && e.session != session)
        };
        if held_by_other && s.raft.is_leader() {
            return json(&false, None, opts.pretty);
        }
        entry.session = session.to_string();
        Command::KvLock { entry }
    } else {
        match parse_u64(&opts, "cas")? {
            Some(index) => Command::KvCas { entry, index },
            None => Command::KvSet { entry },
        }
    };
    let ok = s.writer.apply_bool(cmd).await?;
    json(&ok, None, opts.pretty)
}

/// Consul's `conflictingFlags`: 400 `Conflicting flags: <query>` when more than one of
/// `flags` is present.
fn conflicting_flags(raw: Option<&str>, flags: &[&str]) -> Option<axum::response::Response> {
    let pairs: Vec<(String, String)> = raw
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let present = flags
        .iter()
        .filter(|f| pairs.iter().any(|(k, _)| k == *f))
        .count();
    if present < 2 {
        return None;
    }
    // Go's url.Values.Encode: sorted by key, values in order.
    let mut sorted = pairs;
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(sorted)
        .finish();
    let mut resp = (
        StatusCode::BAD_REQUEST,
        format!("Conflicting flags: {encoded}\n"),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(resp)
}

/// `DELETE /v1/kv/:key`: returns `true` or `false`.
pub(super) async fn delete(
    State(s): State<AppState>,
    path: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let key = key_of(path);
    let cmd = if opts.get("recurse").is_some() {
        Command::KvDeleteTree { prefix: key }
    } else {
        if key.is_empty() {
            return Err(ApiError::bad("Missing key name"));
        }
        match parse_u64(&opts, "cas")? {
            Some(index) => Command::KvDeleteCas { key, index },
            None => Command::KvDelete { key },
        }
    };
    let ok = s.writer.apply_bool(cmd).await?;
    json(&ok, None, opts.pretty)
}
