//! THE route table, in the order of Consul's `agent/http_register.go`. Unknown paths answer
//! 404 with Consul's text; a known path with the wrong method answers 405 with `Allow`.

use super::{
    agent, catalog, event, health, kv, operator, session, snapshot, status, txn, AppState,
};
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;

/// Request bodies above this are refused before a handler runs.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Builds the HTTP API router.
pub fn router(state: AppState) -> Router {
    // The OPTIONS handler wraps the whole table so it sees the final 405 and its `Allow`.
    Router::new()
        .fallback_service(routes(state))
        .layer(axum::middleware::from_fn(options))
}

fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/check/register", put(agent::register_check))
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent::deregister_check),
        )
        .route("/v1/agent/check/pass/{id}", put(agent::check_pass))
        .route("/v1/agent/check/warn/{id}", put(agent::check_warn))
        .route("/v1/agent/check/fail/{id}", put(agent::check_fail))
        .route("/v1/agent/check/update/{id}", put(agent::check_update))
        .route("/v1/agent/health/service/id/{id}", get(agent::health_by_id))
        .route(
            "/v1/agent/health/service/name/{name}",
            get(agent::health_by_name),
        )
        .route("/v1/agent/join/{addr}", put(agent::join))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/force-leave/{node}", put(agent::force_leave))
        .route("/v1/agent/maintenance", put(agent::node_maintenance))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/metrics", get(agent::metrics))
        .route("/v1/agent/self", get(agent::self_info))
        .route("/v1/agent/service/register", put(agent::register_service))
        .route(
            "/v1/agent/service/deregister/{id}",
            put(agent::deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent::service_maintenance),
        )
        .route("/v1/agent/service/{id}", get(agent::service))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route(
            "/v1/catalog/node-services/{node}",
            get(catalog::node_services),
        )
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/event/fire/", put(event::fire))
        .route("/v1/event/fire/{name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
        .route("/v1/health/checks/{service}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route(
            "/v1/operator/autopilot/configuration",
            get(operator::autopilot_get_config).put(operator::autopilot_set_config),
        )
        .route(
            "/v1/operator/autopilot/health",
            get(operator::autopilot_health),
        )
        .route(
            "/v1/operator/autopilot/state",
            get(operator::autopilot_state),
        )
        .route(
            "/v1/operator/raft/configuration",
            get(operator::raft_configuration),
        )
        .route("/v1/operator/raft/peer", delete(operator::raft_remove_peer))
        .route(
            "/v1/operator/raft/transfer-leader",
            post(operator::raft_transfer_leader),
        )
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/", put(session::missing_session))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/info/", get(session::missing_session))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/list", get(session::list))
        .route("/v1/session/node/", get(session::missing_node))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/renew/", put(session::missing_session))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route(
            "/v1/snapshot",
            get(snapshot::save)
                .put(snapshot::restore)
                .layer(DefaultBodyLimit::max(crate::snapshot::MAX_ARCHIVE)),
        )
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .route("/v1/txn", put(txn::txn))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "Invalid URL path: not a recognized HTTP API endpoint",
    )
}

/// `OPTIONS` on a known path answers 200 with the path's `Allow` list, as Consul does. The
/// router is asked with a method no route takes, and its 405 carries that list.
async fn options(req: Request, next: Next) -> Response {
    if req.method() != Method::OPTIONS {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    parts.method = Method::TRACE;
    let probe = next.run(Request::from_parts(parts, body)).await;
    if probe.status() != StatusCode::METHOD_NOT_ALLOWED {
        return probe;
    }
    let allow = probe
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("{v},OPTIONS"))
        .unwrap_or_else(|| "OPTIONS".to_string());
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}
