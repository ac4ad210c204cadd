//! The HTTP API v1 on port 8500: one route table in Consul's order, handlers per URL
//! segment, and the shared request plumbing.
//!
//! Handlers parse parameters, call the query layer (`Reader` for reads, `Writer` for writes)
//! and the local agent, and build responses with `respond`. They never touch Raft or the
//! store's internals directly.

pub mod acl;
pub mod acl_auth;
pub mod acl_common;
pub mod acl_guard;
pub mod acl_replication;
pub mod acl_role;
pub mod acl_shapes;
pub mod acl_templated;
mod agent;
mod agent_ops;
mod cache;
mod catalog;
mod config_entries;
mod connect;
pub mod coordinate;
pub mod event;
mod health;
mod host;
mod keyring;
mod kv;
mod operator;
mod query;
pub mod respond;
mod routes;
mod session;
mod shapes;
mod snapshot;
mod status;
mod txn;
mod ui;
mod ui_api;

pub use event::{UserEvent, UserEvents};
pub use routes::{client_router, router, ForwardApi};

use crate::agent_api::AgentApi;
use crate::config::ServerConfig;
use crate::leader::sessions::SessionTimers;
use crate::query::blocking::RaftStatus;
use crate::query::write::Writer;
use crate::query::{QueryOptions, Reader};
use crate::ServerError;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Runtime configuration.
    pub config: Arc<ServerConfig>,
    /// Reads with consistency and blocking.
    pub reader: Reader,
    /// Writes through Raft.
    pub writer: Writer,
    /// Leadership and peers.
    pub raft: Arc<dyn RaftStatus>,
    /// The local agent.
    pub agent: Arc<dyn AgentApi>,
    /// Session TTL timers (armed only while this server leads).
    pub sessions: Arc<SessionTimers>,
    /// This agent's recent user events.
    pub events: Arc<UserEvents>,
    /// Encoded answers of hot read endpoints, valid while their index is unchanged.
    pub cache: Arc<cache::ResponseCache>,
    /// Cluster membership and leader-side operations.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Autopilot (and through it the Raft node, for the operator endpoints).
    pub autopilot: Arc<crate::leader::autopilot::Autopilot>,
    /// ACL settings and the agent's tokens.
    pub acl: Arc<crate::acl::AclRuntime>,
    /// Other datacenters: the list and their distance.
    pub datacenters: Arc<crate::rpc::wan::Datacenters>,
    /// Other datacenters, for prepared query failover.
    pub remote_queries: Arc<dyn crate::prepared::failover::RemoteQueryExecutor>,
    /// Coordinate updates waiting for their batch write.
    pub coordinates: Arc<coordinate::CoordinateBatcher>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// Parses the query string and checks `?dc`.
    pub(crate) fn options(&self, raw: Option<&str>) -> Result<QueryOptions, ServerError> {
        parse_options(&self.config, raw)
    }
}

fn parse_options(config: &ServerConfig, raw: Option<&str>) -> Result<QueryOptions, ServerError> {
    let opts = QueryOptions::parse(raw)?;
    if let Some(dc) = &opts.dc {
        check_datacenter(config, dc)?;
    }
    Ok(opts)
}

/// A datacenter named by a request (`?dc`, a body's `Datacenter`): "" or this one, else
/// Consul's "No path to datacenter".
fn check_datacenter(config: &ServerConfig, dc: &str) -> Result<(), ServerError> {
    if dc.is_empty() || dc.eq_ignore_ascii_case(&config.datacenter) {
        Ok(())
    } else {
        Err(ServerError::NoPathToDatacenter)
    }
}

/// What the `/v1/agent/*` handlers reach: the agent and its configuration, on a server and
/// on a client agent alike.
#[derive(Clone)]
pub struct AgentState {
    /// Runtime configuration.
    pub config: Arc<ServerConfig>,
    /// The local agent.
    pub agent: Arc<dyn AgentApi>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState").finish_non_exhaustive()
    }
}

impl AgentState {
    /// Parses the query string and checks `?dc`.
    pub(crate) fn options(&self, raw: Option<&str>) -> Result<QueryOptions, ServerError> {
        parse_options(&self.config, raw)
    }
}

impl axum::extract::FromRef<AppState> for AgentState {
    fn from_ref(s: &AppState) -> Self {
        AgentState {
            config: s.config.clone(),
            agent: s.agent.clone(),
        }
    }
}

impl AppState {
    /// The node `?near=` names (`_agent`: the agent that received the request), if any.
    pub(crate) fn near(
        &self,
        opts: &QueryOptions,
        origin: Option<axum::extract::Extension<crate::rpc::api::OriginNode>>,
    ) -> Option<String> {
        match opts.get("near") {
            None | Some("") => None,
            Some("_agent") => {
                Some(origin.map_or_else(|| self.config.node_name.clone(), |o| o.0 .0.clone()))
            }
            Some(n) => Some(n.to_string()),
        }
    }

    /// A datacenter named by a request (`?dc`, a body's `Datacenter`): "" or this one, else
    /// Consul's "No path to datacenter".
    pub(crate) fn check_datacenter(&self, dc: &str) -> Result<(), ServerError> {
        check_datacenter(&self.config, dc)
    }
}

/// A response from JSON bytes already encoded inside a read, with read headers.
pub(crate) fn encoded_json(
    body: impl Into<axum::body::Body>,
    meta: &crate::query::QueryMeta,
) -> respond::ApiResult {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let mut resp = (StatusCode::OK, body.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    respond::add_meta(resp.headers_mut(), meta);
    Ok(resp)
}
