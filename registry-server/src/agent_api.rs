//! The interface between the HTTP API's `/v1/agent/*` endpoints and the local agent that
//! owns this node's registered services and runs their checks.
//!
//! The agent lives in its own crate (`registry-agent`); the server only needs these calls.
//! Bodies arrive raw so the agent decodes them with Consul's lenient rules; answers are the
//! JSON shapes Consul returns.

use crate::ServerError;
use futures::future::BoxFuture;
use serde_json::Value;

/// Aggregated health of one agent service, as `/v1/agent/health/service/*` returns it.
#[derive(Debug, Clone)]
pub struct ServiceHealth {
    /// `passing`, `warning`, `critical` or `maintenance`.
    pub status: String,
    /// The `AgentService` JSON.
    pub service: Value,
    /// The `AgentCheck` JSON of its checks.
    pub checks: Vec<Value>,
}

/// A `/v1/operator/keyring` request (keys in base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringOp {
    /// `GET`: the keys of the pool with the number of members holding each.
    List {
        /// `?local-only`: this agent's keyring only.
        local_only: bool,
    },
    /// `POST`: install a key on every member.
    Install(String),
    /// `PUT`: make a key the primary one on every member.
    Use(String),
    /// `DELETE`: remove a key from every member.
    Remove(String),
}

/// What the HTTP layer asks of the local agent.
pub trait AgentApi: Send + Sync + 'static {
    /// `/v1/agent/self`.
    fn self_info(&self) -> Value;
    /// `/v1/agent/members` (`wan` for the WAN pool).
    fn members(&self, wan: bool) -> Value;
    /// `/v1/agent/services`: service ID -> `AgentService`.
    fn services(&self) -> Value;
    /// `/v1/agent/service/:id`, `None` when unknown.
    fn service(&self, id: &str) -> Option<Value>;
    /// `/v1/agent/checks`: check ID -> `AgentCheck`.
    fn checks(&self) -> Value;
    /// Health of the services with this ID (one) or this name (all instances).
    fn service_health(&self, id_or_name: &str, by_name: bool) -> Vec<ServiceHealth>;
    /// `PUT /v1/agent/service/register`.
    fn register_service<'a>(
        &'a self,
        body: &'a [u8],
        replace_existing_checks: bool,
    ) -> BoxFuture<'a, Result<(), ServerError>>;
    /// `PUT /v1/agent/service/deregister/:id`.
    fn deregister_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ServerError>>;
    /// `PUT /v1/agent/check/register`.
    fn register_check<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ServerError>>;
    /// `PUT /v1/agent/check/deregister/:id`.
    fn deregister_check<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ServerError>>;
    /// TTL updates: `pass`/`warn`/`fail` (with `?note`) and `update` (body Status, Output).
    fn update_check<'a>(
        &'a self,
        id: &'a str,
        status: &'a str,
        output: String,
    ) -> BoxFuture<'a, Result<(), ServerError>>;
    /// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
    fn service_maintenance<'a>(
        &'a self,
        id: &'a str,
        enable: bool,
        reason: String,
    ) -> BoxFuture<'a, Result<(), ServerError>>;
    /// `PUT /v1/agent/maintenance?enable=&reason=`.
    fn node_maintenance(
        &self,
        enable: bool,
        reason: String,
    ) -> BoxFuture<'_, Result<(), ServerError>>;
    /// `PUT /v1/agent/join/:addr`.
    fn join<'a>(&'a self, addr: &'a str, wan: bool) -> BoxFuture<'a, Result<(), ServerError>>;
    /// `PUT /v1/agent/leave`.
    fn leave(&self) -> BoxFuture<'_, Result<(), ServerError>>;
    /// `PUT /v1/agent/reload`: re-read the configuration files and apply the service and
    /// check definitions in them. An agent without configuration files has nothing to do.
    fn reload(&self) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(async { Ok(()) })
    }
    /// `/v1/operator/keyring`: lists or changes the gossip keyring of the pool. An agent
    /// without gossip encryption has no keyring.
    fn keyring(&self, _op: KeyringOp) -> BoxFuture<'_, Result<Value, ServerError>> {
        Box::pin(async {
            Err(ServerError::Internal(
                "Keyring is empty (encryption not enabled)".to_string(),
            ))
        })
    }
    /// `PUT /v1/agent/force-leave/:node` (`?prune`).
    fn force_leave<'a>(
        &'a self,
        node: &'a str,
        _prune: bool,
    ) -> BoxFuture<'a, Result<(), ServerError>> {
        Box::pin(async move {
            Err(ServerError::Internal(format!(
                "agent: No node found with name '{node}'"
            )))
        })
    }
}
