//! THE route table, in the order of Consul's `agent/http_register.go`. Unknown paths answer
//! 404 with Consul's text; a known path with the wrong method answers 405 with `Allow`.

use super::{
    acl, acl_auth, acl_replication, acl_role, acl_templated, agent, agent_ops, catalog,
    config_entries, connect, coordinate, event, health, keyring, kv, operator, query, session,
    snapshot, status, txn, ui, ui_api, AgentState, AppState,
};
use axum::extract::DefaultBodyLimit;
use axum::extract::FromRef;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;

/// Request bodies above this are refused before a handler runs.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Builds the HTTP API router.
pub fn router(state: AppState) -> Router {
    // The OPTIONS handler wraps the whole table so it sees the final 405 and its `Allow`.
    // Responses are gzipped for clients that send `Accept-Encoding: gzip` (Consul wraps its
    // handlers in a gzip handler too); streams that must flush line by line opt out.
    let gzip = CompressionLayer::new()
        .gzip(true)
        .compress_when(DefaultPredicate::new().and(
            |_: StatusCode,
             _: axum::http::Version,
             headers: &axum::http::HeaderMap,
             ext: &axum::http::Extensions| {
                // Snapshots are gzipped archives already.
                let gz = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.contains("gzip"));
                ext.get::<NoCompression>().is_none() && !gz
            },
        ));
    Router::new()
        .fallback_service(routes(state))
        .layer(gzip)
        .layer(axum::middleware::from_fn(options))
}

/// Response extension: never compress this response (streams such as the log monitor).
#[derive(Debug, Clone, Copy)]
pub(super) struct NoCompression;

fn routes(state: AppState) -> Router {
    let table = Router::new()
        .route("/v1/acl/auth-method", put(acl_auth::method_create))
        .route(
            "/v1/acl/auth-method/{name}",
            get(acl_auth::method_read)
                .put(acl_auth::method_update)
                .delete(acl_auth::method_delete),
        )
        .route("/v1/acl/auth-methods", get(acl_auth::method_list))
        .route("/v1/acl/binding-rule", put(acl_auth::rule_create))
        .route(
            "/v1/acl/binding-rule/{id}",
            get(acl_auth::rule_read)
                .put(acl_auth::rule_update)
                .delete(acl_auth::rule_delete),
        )
        .route("/v1/acl/binding-rules", get(acl_auth::rule_list))
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/login", post(acl_auth::login))
        .route("/v1/acl/logout", post(acl_auth::logout))
        .route("/v1/acl/policies", get(acl::policy_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route("/v1/acl/policy/name/{name}", get(acl::policy_read_name))
        .route(
            "/v1/acl/policy/{id}",
            get(acl::policy_read)
                .put(acl::policy_update)
                .delete(acl::policy_delete),
        )
        .route("/v1/acl/replication", get(acl_replication::status))
        .route("/v1/acl/role", put(acl_role::role_create))
        .route("/v1/acl/role/name/{name}", get(acl_role::role_read_name))
        .route(
            "/v1/acl/role/{id}",
            get(acl_role::role_read)
                .put(acl_role::role_update)
                .delete(acl_role::role_delete),
        )
        .route("/v1/acl/roles", get(acl_role::role_list))
        .route("/v1/acl/token", put(acl::token_create))
        .route(
            "/v1/acl/token/{id}",
            get(acl::token_read)
                .put(acl::token_update)
                .delete(acl::token_delete),
        )
        .route("/v1/acl/token/{id}/clone", put(acl::token_clone))
        .route("/v1/acl/templated-policies", get(acl_templated::list))
        .route(
            "/v1/acl/templated-policy/name/{*name}",
            get(acl_templated::read),
        )
        .route(
            "/v1/acl/templated-policy/preview/{*name}",
            post(acl_templated::preview),
        )
        .route("/v1/acl/tokens", get(acl::token_list))
        .merge(agent_routes().with_state(AgentState::from_ref(&state)))
        .route("/v1/agent/self", get(agent_ops::self_info))
        .route("/v1/agent/token/{kind}", put(acl::agent_token))
        .route(
            "/v1/catalog/connect/{service}",
            get(connect::catalog_connect),
        )
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route(
            "/v1/catalog/gateway-services/{gateway}",
            get(connect::gateway_services),
        )
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
        .route("/v1/config", put(config_entries::apply))
        .route("/v1/config/{kind}", get(config_entries::list))
        .route(
            "/v1/config/{kind}/{name}",
            get(config_entries::get).delete(config_entries::delete),
        )
        .route("/v1/coordinate/datacenters", get(coordinate::datacenters))
        .route("/v1/coordinate/node/{node}", get(coordinate::node))
        .route("/v1/coordinate/nodes", get(coordinate::nodes))
        .route("/v1/coordinate/update", put(coordinate::update))
        .route("/v1/event/fire/", put(event::fire))
        .route("/v1/event/fire/{name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
        .route("/v1/health/checks/{service}", get(health::checks))
        .route("/v1/health/connect/{service}", get(connect::health_connect))
        .route("/v1/health/ingress/{service}", get(connect::health_connect))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/internal/acl/replication", get(acl_replication::source))
        .route(
            "/v1/internal/acl/token/resolve",
            get(acl_replication::resolve_token),
        )
        .route("/v1/internal/ui/node/{node}", get(ui_api::node))
        .route("/v1/internal/ui/nodes", get(ui_api::nodes))
        .route("/v1/internal/ui/services", get(ui_api::services))
        .route("/v1/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/query", get(query::list).post(query::create))
        .route(
            "/v1/query/{id}",
            get(query::get).put(query::update).delete(query::delete),
        )
        .route("/v1/query/{id}/execute", get(query::execute))
        .route("/v1/query/{id}/explain", get(query::explain))
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
        .route("/v1/operator/usage", get(agent_ops::usage))
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
        .route_layer(axum::middleware::from_fn(crate::metrics::http_timer));
    // Every matched route gets its ACL decision in this one middleware (`acl::routes` holds
    // the decisions). It is only installed while ACLs are enabled, so that a registry without
    // ACLs pays nothing for them.
    let table = if state.acl.enabled() {
        table.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::acl_guard::guard,
        ))
    } else {
        table
    };
    table
        .merge(ui::routes(&state.config))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The agent's own endpoints, served by servers and client agents alike (`/v1/agent/self` is
/// added by each router: a server's carries its Raft figures).
fn agent_routes() -> Router<AgentState> {
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
        .route(
            "/v1/operator/keyring",
            get(keyring::list)
                .post(keyring::install)
                .put(keyring::use_key)
                .delete(keyring::remove),
        )
        .route("/v1/agent/metrics", get(agent::metrics))
        .route("/v1/agent/host", get(agent_ops::host))
        .route("/v1/agent/version", get(agent_ops::version))
        .route("/v1/agent/monitor", get(agent_ops::monitor))
        .route("/v1/agent/reload", put(agent_ops::reload))
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
}

/// The HTTP API of a client agent: its own `/v1/agent/*` endpoints, and everything else
/// forwarded to a server by `forward` (which answers as the server did).
pub fn client_router(
    agent: AgentState,
    forward: Arc<dyn ForwardApi>,
    events: Arc<super::UserEvents>,
) -> Router {
    // Events are listed from what this agent received over gossip; firing one goes to a
    // server (which broadcasts it), as Consul's agents do.
    let local_events = Router::new()
        .route("/v1/event/list", get(event::list_local))
        .with_state((agent.clone(), events));
    let routes = agent_routes()
        .route("/v1/agent/self", get(agent::self_info))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(agent)
        .merge(local_events)
        .fallback(move |req: Request| {
            let forward = forward.clone();
            async move { forward.forward(req).await }
        });
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(options))
}

/// Sends an API request elsewhere and returns the answer (a client agent's path to the
/// servers).
pub trait ForwardApi: Send + Sync + 'static {
    /// Forwards `req`; any failure is answered as an error response.
    fn forward(&self, req: Request) -> futures::future::BoxFuture<'static, Response>;
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
