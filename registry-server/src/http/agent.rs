//! `/v1/agent/*`: the local agent's view (services, checks, members, self) and its writes,
//! delegated to the [`AgentApi`](crate::agent_api::AgentApi) implementation.

use super::respond::{json, ApiError, ApiResult};
use super::AgentState;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use registry_proto::model::status;
use serde_json::{json, Value};

/// `GET /v1/agent/self`.
pub(super) async fn self_info(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    json(&s.agent.self_info(), None, opts.pretty)
}

/// `GET /v1/agent/members`.
pub(super) async fn members(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    json(&s.agent.members(opts.has("wan")), None, opts.pretty)
}

/// `GET /v1/agent/services` (`?filter`).
pub(super) async fn services(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let all = super::catalog::filter_map(s.agent.services(), opts.filter.as_deref())?;
    json(&all, None, opts.pretty)
}

/// `GET /v1/agent/service/:id`.
pub(super) async fn service(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    match s.agent.service(&id) {
        Some(v) => {
            let hash = v
                .get("ContentHash")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut resp = json(&v, None, opts.pretty)?;
            if let Some(h) = hash.and_then(|h| HeaderValue::from_str(&h).ok()) {
                resp.headers_mut().insert("X-Consul-ContentHash", h);
            }
            Ok(resp)
        }
        None => Err(ApiError(ServerError::NotFound(format!(
            "unknown service ID: {id}"
        )))),
    }
}

/// `GET /v1/agent/checks` (`?filter`).
pub(super) async fn checks(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let all = super::catalog::filter_map(s.agent.checks(), opts.filter.as_deref())?;
    json(&all, None, opts.pretty)
}

fn ok_empty() -> ApiResult {
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/service/register`.
pub(super) async fn register_service(
    State(s): State<AgentState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let replace = opts.flag("replace-existing-checks")?;
    s.agent.register_service(&body, replace).await?;
    ok_empty()
}

/// `PUT /v1/agent/service/deregister/:id`.
pub(super) async fn deregister_service(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    s.options(q.as_deref())?;
    s.agent.deregister_service(&id).await?;
    ok_empty()
}

/// `PUT /v1/agent/check/register`.
pub(super) async fn register_check(
    State(s): State<AgentState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    s.options(q.as_deref())?;
    s.agent.register_check(&body).await?;
    ok_empty()
}

/// `PUT /v1/agent/check/deregister/:id`.
pub(super) async fn deregister_check(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    s.options(q.as_deref())?;
    s.agent.deregister_check(&id).await?;
    ok_empty()
}

async fn ttl(s: AgentState, id: String, q: Option<String>, st: &'static str) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let note = opts.get("note").unwrap_or("").to_string();
    s.agent.update_check(&id, st, note).await?;
    ok_empty()
}

/// `PUT /v1/agent/check/pass/:id`.
pub(super) async fn check_pass(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    ttl(s, id, q, status::PASSING).await
}

/// `PUT /v1/agent/check/warn/:id`.
pub(super) async fn check_warn(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    ttl(s, id, q, status::WARNING).await
}

/// `PUT /v1/agent/check/fail/:id`.
pub(super) async fn check_fail(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    ttl(s, id, q, status::CRITICAL).await
}

/// `PUT /v1/agent/check/update/:id` with body `{"Status": ..., "Output": ...}`.
pub(super) async fn check_update(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    s.options(q.as_deref())?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?;
    let field = |name: &str| -> Option<String> {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    };
    let st = field("Status").unwrap_or_default();
    let st = match st.as_str() {
        status::PASSING => status::PASSING,
        status::WARNING => status::WARNING,
        status::CRITICAL => status::CRITICAL,
        _ => return Err(ApiError::bad(format!("Invalid check status: '{st}'"))),
    };
    s.agent
        .update_check(&id, st, field("Output").unwrap_or_default())
        .await?;
    ok_empty()
}

fn maintenance_args(s: &AgentState, q: Option<&str>) -> Result<(bool, String), ApiError> {
    let opts = s.options(q)?;
    let enable = match opts.get("enable") {
        None => return Err(ApiError::bad("Missing value for enable")),
        Some(v) => match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(ApiError::bad(format!("Invalid value for enable: {v:?}"))),
        },
    };
    Ok((enable, opts.get("reason").unwrap_or("").to_string()))
}

/// `PUT /v1/agent/service/maintenance/:id`.
pub(super) async fn service_maintenance(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let (enable, reason) = maintenance_args(&s, q.as_deref())?;
    s.agent.service_maintenance(&id, enable, reason).await?;
    ok_empty()
}

/// `PUT /v1/agent/maintenance`.
pub(super) async fn node_maintenance(
    State(s): State<AgentState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let (enable, reason) = maintenance_args(&s, q.as_deref())?;
    s.agent.node_maintenance(enable, reason).await?;
    ok_empty()
}

fn health_code(st: &str) -> StatusCode {
    match st {
        status::PASSING => StatusCode::OK,
        status::WARNING => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn service_health(s: AgentState, key: String, q: Option<String>, by_name: bool) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let text = opts.get("format") == Some("text");
    let all = s.agent.service_health(&key, by_name);
    if all.is_empty() {
        let msg = if by_name {
            format!("ServiceName {key} Not Found")
        } else {
            format!("ServiceId {key} Not Found")
        };
        return Err(ApiError(ServerError::NotFound(msg)));
    }
    let worst = all
        .iter()
        .map(|h| h.status.as_str())
        .max_by_key(|st| status::severity(st))
        .unwrap_or(status::CRITICAL)
        .to_string();
    let code = health_code(&worst);
    let mut resp = if text {
        let mut r = (code, worst).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    } else {
        let items: Vec<Value> = all
            .into_iter()
            .map(
                |h| json!({"AggregatedStatus": h.status, "Service": h.service, "Checks": h.checks}),
            )
            .collect();
        let body = if by_name {
            super::respond::json_bytes(&items, opts.pretty)?
        } else {
            super::respond::json_bytes(&items[0], opts.pretty)?
        };
        let mut r = (code, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    resp.headers_mut().remove("X-Consul-Index");
    Ok(resp)
}

/// `GET /v1/agent/health/service/id/:id`: 200 passing, 429 warning, 503 critical.
pub(super) async fn health_by_id(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    service_health(s, id, q, false).await
}

/// `GET /v1/agent/health/service/name/:name`.
pub(super) async fn health_by_name(
    State(s): State<AgentState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    service_health(s, name, q, true).await
}

/// `PUT /v1/agent/join/:addr`.
pub(super) async fn join(
    State(s): State<AgentState>,
    Path(addr): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    s.agent.join(&addr, opts.has("wan")).await?;
    ok_empty()
}

/// `PUT /v1/agent/leave`.
pub(super) async fn leave(State(s): State<AgentState>) -> ApiResult {
    s.agent.leave().await?;
    ok_empty()
}

/// `PUT /v1/agent/force-leave/:node` (`?prune` also forgets the member).
pub(super) async fn force_leave(
    State(s): State<AgentState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    s.agent.force_leave(&node, opts.has("prune")).await?;
    ok_empty()
}

/// `GET /v1/agent/metrics` (`?format=prometheus` for the text exposition format).
pub(super) async fn metrics(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let text = crate::metrics::render();
    if opts.get("format") == Some("prometheus") {
        let mut r = (StatusCode::OK, text).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(r);
    }
    json(&crate::metrics::summary(&text), None, opts.pretty)
}
