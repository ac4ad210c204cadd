//! `GET /v1/acl/replication` (Consul's replication status, from the leader) and the
//! internal endpoint a secondary datacenter's leader replicates from
//! (`/v1/internal/acl/replication`, a blocking query on the ACL tables). The routine itself
//! is `crate::acl::replication`.

// Handlers return their refusal as the finished response; boxing it gains nothing here.
#![allow(clippy::result_large_err)]

use super::acl_common::{authorize, enabled, Res};
use super::acl_guard::RequestToken;
use super::respond::{json, ApiError};
use super::AppState;
use crate::acl::replication::ReplicationSource;
use crate::state::WatchKey;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use registry_proto::acl::rules::Access;

/// `GET /v1/acl/replication`: no token needed, as in Consul (nothing in it is secret). The
/// request is answered by the leader, which runs the replication.
pub(crate) async fn status(State(s): State<AppState>) -> Res {
    enabled(&s)?;
    let v = s.acl.replication.lock().to_json();
    Ok(Json(v).into_response())
}

/// `GET /v1/internal/acl/replication[?tokens=1]`: every policy and role (`acl:read`), and
/// with `tokens` every global token with its secret (`acl:write`), as of an ACL index past
/// `?index`.
pub(crate) async fn source(
    State(s): State<AppState>,
    tok: RequestToken,
    RawQuery(q): RawQuery,
) -> Res {
    let opts = s
        .options(q.as_deref())
        .map_err(|e| ApiError(e).into_response())?;
    let tokens = opts.has("tokens");
    authorize(&s, &tok, if tokens { Access::Write } else { Access::Read })?;
    let (src, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Acl], |db| {
            (ReplicationSource::of(&db.acl, tokens), db.acl.index)
        })
        .await
        .map_err(|e| ApiError(e).into_response())?;
    json(&src, Some(&meta), false).map_err(IntoResponse::into_response)
}

/// `GET /v1/internal/acl/token/resolve`: the global token whose secret the request presents
/// (as `ACL.TokenRead` of the token itself in Consul), for a secondary datacenter without
/// token replication; "ACL not found" (403) for an unknown, expired or `Local` token.
/// Presenting the secret is the whole authorization.
pub(crate) async fn resolve_token(State(s): State<AppState>, tok: RequestToken) -> Res {
    enabled(&s)?;
    let db = s.reader.store().read();
    let token = db
        .acl
        .token_by_secret(&tok.0)
        .filter(|t| !t.local && !crate::acl::expired(t, crate::acl::now_unix_ms()))
        .cloned();
    drop(db);
    match token {
        Some(t) => Ok(Json(t).into_response()),
        None => {
            // The anonymous token is refused as on every other ACL endpoint.
            authorize(&s, &tok, Access::Write)?;
            Err((StatusCode::FORBIDDEN, "ACL not found").into_response())
        }
    }
}
