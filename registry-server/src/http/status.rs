//! `/v1/status/*`: the leader's and the voters' Raft addresses.

use super::respond::{json, ApiResult};
use super::AppState;
use axum::extract::{RawQuery, State};

/// `GET /v1/status/leader`: `"ip:port"` or `""` without a leader.
pub(super) async fn leader(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let leader = s.raft.leader_addr().unwrap_or_default();
    json(&leader, None, opts.pretty)
}

/// `GET /v1/status/peers`: the voters' Raft addresses.
pub(super) async fn peers(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    json(&s.raft.peers(), None, opts.pretty)
}
