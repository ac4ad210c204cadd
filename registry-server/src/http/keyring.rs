//! `/v1/operator/keyring`: the gossip encryption keyring of the pool, listed (`GET`),
//! installed (`POST`), made primary (`PUT`) and removed (`DELETE`) with a `{"Key": "..."}`
//! body, by the local agent's gossip layer ([`AgentApi::keyring`](crate::agent_api::AgentApi)).

use super::respond::{json, ApiError, ApiResult};
use super::AgentState;
use crate::agent_api::KeyringOp;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;

/// `?relay-factor` must be in 0..=5 (Consul's check).
fn check_relay_factor(s: &AgentState, q: Option<&str>) -> Result<bool, ApiError> {
    let opts = s.options(q)?;
    if let Some(r) = opts.get("relay-factor") {
        match r.parse::<u8>() {
            Ok(n) if n <= 5 => {}
            _ => {
                return Err(ApiError::bad(
                    "Relay factor must be in range: [0, 5]".to_string(),
                ))
            }
        }
    }
    Ok(opts.has("local-only") && opts.get("local-only") != Some("false"))
}

/// The `Key` of the body.
fn key_of(body: &[u8]) -> Result<String, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?;
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Key")))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad("Request decode failed: missing Key".to_string()))
}

/// `GET /v1/operator/keyring` (`?local-only`, `?relay-factor`).
pub(super) async fn list(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let local_only = check_relay_factor(&s, q.as_deref())?;
    let pretty = s.options(q.as_deref())?.pretty;
    let out = s.agent.keyring(KeyringOp::List { local_only }).await?;
    json(&out, None, pretty)
}

async fn change(
    s: AgentState,
    q: Option<String>,
    body: Bytes,
    op: fn(String) -> KeyringOp,
) -> ApiResult {
    check_relay_factor(&s, q.as_deref())?;
    let key = key_of(&body)?;
    s.agent.keyring(op(key)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /v1/operator/keyring`: installs a key on every member.
pub(super) async fn install(
    State(s): State<AgentState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    change(s, q, body, KeyringOp::Install).await
}

/// `PUT /v1/operator/keyring`: makes an installed key the primary one everywhere.
pub(super) async fn use_key(
    State(s): State<AgentState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    change(s, q, body, KeyringOp::Use).await
}

/// `DELETE /v1/operator/keyring`: removes a key that is not the primary one.
pub(super) async fn remove(
    State(s): State<AgentState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    change(s, q, body, KeyringOp::Remove).await
}
