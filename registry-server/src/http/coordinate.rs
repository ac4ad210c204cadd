//! `/v1/coordinate/*`: `GET /v1/coordinate/datacenters` (WAN, from memory) and, for the LAN, `GET /v1/coordinate/nodes` and `GET /v1/coordinate/node/:node`
//! serve the stored coordinates (blocking queries); `PUT /v1/coordinate/update` takes one
//! agent's coordinate. Updates are not written one by one: [`CoordinateBatcher`] keeps the
//! latest per node and writes them as one Raft entry per period, as Consul's
//! `coordinate_update_period` (5 s) batching does, at most `batch_size * max_batches`
//! updates per period (Consul's 128 * 5); the rest wait for the next period.

use super::respond::{json_bytes, ApiError, ApiResult};
use super::AppState;
use crate::query::write::Writer;
use crate::state::WatchKey;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use parking_lot::Mutex;
use registry_proto::coordinate::{Coordinate, NodeCoordinate};
use registry_proto::Command;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

/// Period between two batch writes.
pub const UPDATE_PERIOD: Duration = Duration::from_secs(5);
/// Most updates written per period.
const MAX_PER_PERIOD: usize = 128 * 5;

/// Pending coordinate updates, written to Raft once per [`UPDATE_PERIOD`].
#[derive(Debug, Default)]
pub struct CoordinateBatcher {
    pending: Mutex<BTreeMap<(String, String), Coordinate>>,
    flusher: OnceLock<()>,
}

impl CoordinateBatcher {
    /// Queues `u` (replacing a queued update of the same node) and makes sure the flush
    /// loop runs.
    pub fn push(self: &std::sync::Arc<Self>, writer: &Writer, u: NodeCoordinate) {
        self.pending.lock().insert((u.node, u.segment), u.coord);
        self.flusher.get_or_init(|| {
            let me = std::sync::Arc::downgrade(self);
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(UPDATE_PERIOD);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(b) = me.upgrade() else { return };
                    let batch = b.take(MAX_PER_PERIOD);
                    if batch.is_empty() {
                        continue;
                    }
                    let n = batch.len();
                    if let Err(e) = writer.apply(Command::CoordinateBatchUpdate(batch)).await {
                        tracing::warn!(error = %e, updates = n, "coordinate batch not written");
                    }
                }
            });
        });
    }

    /// Takes at most `max` queued updates.
    fn take(&self, max: usize) -> Vec<NodeCoordinate> {
        let mut p = self.pending.lock();
        let keys: Vec<(String, String)> = p.keys().take(max).cloned().collect();
        keys.into_iter()
            .filter_map(|k| {
                let coord = p.remove(&k)?;
                Some(NodeCoordinate {
                    node: k.0,
                    segment: k.1,
                    coord,
                })
            })
            .collect()
    }
}

fn entries(db: &crate::state::Db, node: Option<&str>) -> Vec<NodeCoordinate> {
    db.queries
        .coordinates
        .iter()
        .filter(|((n, _), _)| node.is_none_or(|want| want == n))
        .map(|((n, s), c)| NodeCoordinate {
            node: n.clone(),
            segment: s.clone(),
            coord: c.clone(),
        })
        .collect()
}

/// `GET /v1/coordinate/nodes`.
pub(super) async fn nodes(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Coordinates], |db| {
            (
                json_bytes(&entries(db, None), opts.pretty),
                db.queries.coordinates_index,
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/coordinate/datacenters`: the WAN coordinates of every datacenter's servers,
/// datacenters nearest first (`crate::rpc::wan_coord`).
pub(super) async fn datacenters(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let dcs = &s.datacenters;
    let v = dcs.coordinates.to_json(&dcs.by_distance());
    super::respond::json(&v, None, opts.pretty)
}

/// `GET /v1/coordinate/node/:node`: 404 when the node has no coordinate.
pub(super) async fn node(
    State(s): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (found, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Coordinates], |db| {
            (entries(db, Some(&node)), db.queries.coordinates_index)
        })
        .await?;
    if found.is_empty() {
        let mut resp = StatusCode::NOT_FOUND.into_response();
        super::respond::add_meta(resp.headers_mut(), &meta);
        return Ok(resp);
    }
    super::encoded_json(json_bytes(&found, opts.pretty)?, &meta)
}

/// `PUT /v1/coordinate/update`.
pub(super) async fn update(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let _opts = s.options(q.as_deref())?;
    let u: NodeCoordinate = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?;
    if u.node.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    if !u.coord.is_valid() {
        return Err(ApiError::bad("rejected bad coordinate"));
    }
    s.coordinates.push(&s.writer, u);
    Ok(StatusCode::OK.into_response())
}
