//! `/v1/snapshot`: `GET` saves the whole state as an archive (see [`crate::snapshot`]), `PUT`
//! restores one through Raft.
//!
//! A save encodes the state under one read lock, so the archive is the state at exactly one
//! index (its `X-Consul-Index`), then gzips and streams it from a blocking thread while the
//! store serves on. A restore reads the whole body (up to [`MAX_ARCHIVE`]), checks all of it
//! (framing, checksums, metadata, the state decodes) before it changes anything, and only
//! then proposes [`Command::Restore`], which every server applies. Once applied here, the
//! session TTL timers this leader keeps are re-armed for the restored sessions, as Consul's
//! leader re-establishes its duties after a restore.

use super::respond::{add_meta, ApiError, ApiResult};
use super::AppState;
use crate::leader::sessions::session_ttl;
use crate::query::options::Consistency;
use crate::snapshot::{self, Meta, MAX_ARCHIVE};
use crate::ServerError;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use futures::StreamExt;
use registry_proto::Command;
use std::io::Write;
use tokio::sync::mpsc;

/// Bytes per chunk of a streamed save.
const CHUNK: usize = 64 * 1024;

/// A [`Write`] that hands full chunks to the response body. Used on a blocking thread.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /v1/snapshot`: the archive of the whole state (`?stale` lets any server answer).
pub(super) async fn save(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let started = std::time::Instant::now();
    // One consistent state at one index: a copy-on-write view taken under the read lock,
    // encoded after it is released, on a blocking thread, so that writes go on meanwhile.
    let ((view, index), meta) = s
        .reader
        .once(&opts, |db| ((db.clone(), db.index), db.index))
        .await?;
    let state = tokio::task::spawn_blocking(move || view.encode())
        .await
        .map_err(|e| ServerError::Snapshot(format!("snapshot encoding failed: {e}")))??;
    let archive_meta = Meta::for_state(index, s.raft.term(), &state);
    crate::metrics::time_since("consul_snapshot_save", started);
    tracing::info!(
        index,
        bytes = state.len(),
        id = %archive_meta.id,
        "saving snapshot"
    );
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let res = snapshot::write(out, &archive_meta, &state).and_then(|mut w| {
            w.flush()
                .map_err(|e| ServerError::Snapshot(format!("failed to send snapshot: {e}")))
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, "snapshot save failed");
            // Ends the body with an error: the client sees a cut archive, never a short one
            // that looks whole.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    add_meta(h, &meta);
    Ok(resp)
}

/// Reads a request body of at most `limit` bytes; more is a 413.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = |n: &dyn std::fmt::Display| {
        ApiError(ServerError::TooLarge(format!(
            "Request body({n} bytes) too large, max size: {limit} bytes. \
             Snapshots larger than this cannot be restored."
        )))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 {
            return Err(too_large(&n));
        }
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad(format!("failed reading snapshot body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(&format!("more than {limit}")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `PUT /v1/snapshot`: restores an archive made by `GET /v1/snapshot`. A corrupt, truncated
/// or foreign archive is a 400 and changes nothing; one over the size limits a 413.
pub(super) async fn restore(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    if opts.consistency == Consistency::Stale {
        return Err(ApiError::bad("stale not allowed for restore"));
    }
    let bytes = read_body(&headers, body, MAX_ARCHIVE).await?;
    let started = std::time::Instant::now();
    let checked = tokio::task::spawn_blocking(move || snapshot::verify(&bytes))
        .await
        .map_err(|e| ApiError(ServerError::Internal(format!("verifying snapshot: {e}"))))?;
    let (archive, db) = checked.map_err(|e| match e {
        ServerError::Snapshot(m) => ApiError::bad(format!("Failed to restore snapshot: {m}")),
        other => ApiError(other),
    })?;
    let sessions: Vec<(String, std::time::Duration)> = db
        .sessions
        .values()
        .filter_map(|sess| session_ttl(sess).map(|ttl| (sess.id.clone(), ttl)))
        .collect();
    drop(db);
    tracing::warn!(
        id = %archive.meta.id,
        index = archive.meta.index,
        bytes = archive.state.len(),
        "restoring snapshot: replacing the whole state"
    );
    s.writer
        .apply(Command::Restore {
            state: archive.state,
        })
        .await?;
    // Every restored session gets a full TTL again (on the leader; elsewhere a no-op).
    for (id, ttl) in sessions {
        s.sessions.reset(&id, ttl);
    }
    crate::metrics::time_since("consul_raft_restoreUserSnapshot", started);
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
