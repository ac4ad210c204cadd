//! The ACL decision of every HTTP route, next to the route table (`http/routes.rs`): what a
//! request needs before its handler runs, and how its answer is filtered. A route missing here
//! is refused while ACLs are enabled, and a unit test fails for it.

use axum::http::Method;
use registry_proto::acl::rules::{Access, Global, Resource};

/// What a request needs before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (status, datacenters, requests the handler refuses anyway).
    Open,
    /// A management token (`acl:write`), as snapshots require.
    Management,
    /// A global permission.
    Global(Global, Access),
    /// A permission on the name at the end of the path.
    Path(Resource, Access),
    /// A permission on this agent's node name.
    Agent(Resource, Access),
    /// KV key at the end of the path; a recursive delete needs write on the whole prefix.
    Key(Access),
    /// `service:<access>` on the service whose instance ID ends the path (this node).
    ServiceId(Access),
    /// `service:write` on the service of the check whose ID ends the path, else `node:write`.
    CheckId,
    /// `session:<access>` on the node of the session whose ID ends the path.
    SessionId(Access),
    /// `query:<access>` on the name of the prepared query whose ID ends the path (a query
    /// without a name needs nothing: its ID is its secret, as in Consul).
    QueryId(Access),
    /// Decided from the request body.
    Body(BodyKind),
    /// The `/v1/acl` and `/v1/agent/token` handlers decide.
    AclEndpoint,
}

/// Request bodies the guard reads names from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `PUT /v1/catalog/register`.
    CatalogRegister,
    /// `PUT /v1/catalog/deregister`.
    CatalogDeregister,
    /// `PUT /v1/agent/service/register`.
    AgentService,
    /// `PUT /v1/agent/check/register`.
    AgentCheck,
    /// `PUT /v1/session/create`.
    SessionCreate,
    /// `PUT /v1/txn`.
    Txn,
    /// `POST /v1/query`.
    PreparedQuery,
    /// `PUT /v1/coordinate/update`.
    CoordinateUpdate,
}

/// Field paths inside one element of an answer, each with the resource it names.
pub type Fields = &'static [(Resource, &'static [&'static str])];

/// How an answer is filtered to what the token may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nothing to filter.
    None,
    /// An array of objects; an element stays when every named field is readable.
    Array(Fields),
    /// An object of objects (keyed by ID).
    ObjectValues(Fields),
    /// An object keyed by names.
    ObjectKeys(Resource),
    /// An array of names.
    Strings(Resource),
    /// One object; 403 when a field is not readable.
    One(Fields),
}

/// A route's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Checked before the handler.
    pub need: Need,
    /// Applied to its answer.
    pub filter: Filter,
}

const fn d(need: Need, filter: Filter) -> Decision {
    Decision { need, filter }
}

use Access::{Read, Write};
use Need::*;
use Resource::{Event, Node, Service, Session};

const NODE: Fields = &[(Node, &["Node"])];
const SERVICE_NODE: Fields = &[(Service, &["ServiceName"]), (Node, &["Node"])];
const CHECK: Fields = &[(Service, &["ServiceName"]), (Node, &["Node"])];
const HEALTH_SERVICE: Fields = &[
    (Service, &["Service", "Service"]),
    (Node, &["Node", "Node"]),
];
const AGENT_SERVICE: Fields = &[(Service, &["Service"])];
const EVENT: Fields = &[(Event, &["Name"])];
const KV: Fields = &[(Resource::Key, &["Key"])];
const SESSION: Fields = &[(Session, &["Node"])];
const QUERY: Fields = &[(Resource::Query, &["Name"])];
const COORD: Fields = &[(Node, &["Node"])];

/// The decision for a route, by method and route template as written in `http/routes.rs`.
pub fn decision(method: &Method, template: &str) -> Option<Decision> {
    let get = method == Method::GET || method == Method::HEAD;
    let f = Filter::None;
    Some(match template {
        // Login needs no token (the bearer JWT is the credential), logout only the token it
        // deletes; every other ACL handler checks `acl:read` or `acl:write` itself.
        "/v1/acl/login" | "/v1/acl/logout" => d(AclEndpoint, f),
        t if t.starts_with("/v1/acl/") => d(AclEndpoint, f),
        "/v1/agent/token/{kind}" => d(AclEndpoint, f),
        // What a secondary datacenter replicates; the handler checks acl:read or acl:write.
        "/v1/internal/acl/replication" | "/v1/internal/acl/token/resolve" => d(AclEndpoint, f),
        "/v1/agent/checks" => d(Open, Filter::ObjectValues(CHECK)),
        "/v1/agent/check/register" => d(Body(BodyKind::AgentCheck), f),
        "/v1/agent/check/deregister/{id}"
        | "/v1/agent/check/pass/{id}"
        | "/v1/agent/check/warn/{id}"
        | "/v1/agent/check/fail/{id}"
        | "/v1/agent/check/update/{id}" => d(CheckId, f),
        "/v1/agent/health/service/id/{id}" => d(ServiceId(Read), f),
        "/v1/agent/health/service/name/{name}" => d(Path(Service, Read), f),
        "/v1/agent/join/{addr}" | "/v1/agent/leave" => d(Agent(Resource::Agent, Write), f),
        // Consul: force-leave needs operator:write.
        "/v1/agent/force-leave/{node}" => d(Global(Global::Operator, Write), f),
        "/v1/agent/maintenance" => d(Agent(Node, Write), f),
        "/v1/agent/host" => d(Global(Global::Operator, Read), f),
        "/v1/agent/monitor" => d(Agent(Resource::Agent, Read), f),
        "/v1/agent/reload" => d(Agent(Resource::Agent, Write), f),
        "/v1/agent/version" => d(Open, f),
        "/v1/catalog/connect/{service}" | "/v1/catalog/gateway-services/{gateway}" => {
            d(Path(Service, Read), Filter::Array(NODE))
        }
        "/v1/health/connect/{service}" | "/v1/health/ingress/{service}" => {
            d(Path(Service, Read), Filter::Array(HEALTH_SERVICE))
        }
        // Config entries: stricter than Consul (which asks service:read/write for a
        // service's own entries): every kind needs operator:read to read, operator:write to
        // change.
        "/v1/config" | "/v1/config/{kind}" | "/v1/config/{kind}/{name}" => {
            d(Global(Global::Operator, if get { Read } else { Write }), f)
        }
        "/v1/internal/ui/services" => d(Open, Filter::Array(&[(Service, &["Name"])])),
        "/v1/internal/ui/nodes" => d(Open, Filter::Array(NODE)),
        "/v1/internal/ui/node/{node}" => d(Path(Node, Read), f),
        "/v1/operator/usage" => d(Global(Global::Operator, Read), f),
        "/v1/operator/keyring" => d(Global(Global::Keyring, if get { Read } else { Write }), f),
        "/v1/agent/members" => d(Open, Filter::Array(&[(Node, &["Name"])])),
        "/v1/agent/metrics" | "/v1/agent/self" => d(Agent(Resource::Agent, Read), f),
        "/v1/agent/service/register" => d(Body(BodyKind::AgentService), f),
        "/v1/agent/service/deregister/{id}" | "/v1/agent/service/maintenance/{id}" => {
            d(ServiceId(Write), f)
        }
        "/v1/agent/service/{id}" => d(Open, Filter::One(AGENT_SERVICE)),
        "/v1/agent/services" => d(Open, Filter::ObjectValues(AGENT_SERVICE)),
        "/v1/catalog/datacenters" => d(Open, f),
        "/v1/catalog/deregister" => d(Body(BodyKind::CatalogDeregister), f),
        "/v1/catalog/node/{node}" => d(Path(Node, Read), f),
        "/v1/catalog/node-services/{node}" => d(Path(Node, Read), f),
        "/v1/catalog/nodes" => d(Open, Filter::Array(NODE)),
        "/v1/catalog/register" => d(Body(BodyKind::CatalogRegister), f),
        "/v1/catalog/services" => d(Open, Filter::ObjectKeys(Service)),
        "/v1/catalog/service/{name}" => d(Path(Service, Read), Filter::Array(NODE)),
        "/v1/event/fire/" | "/v1/event/fire/{name}" => d(Path(Event, Write), f),
        "/v1/event/list" => d(Open, Filter::Array(EVENT)),
        "/v1/health/checks/{service}" => d(Path(Service, Read), Filter::Array(NODE)),
        "/v1/health/node/{node}" => d(Path(Node, Read), Filter::Array(CHECK)),
        "/v1/health/service/{name}" => d(Path(Service, Read), Filter::Array(HEALTH_SERVICE)),
        "/v1/health/state/{state}" => d(Open, Filter::Array(SERVICE_NODE)),
        "/v1/kv/" | "/v1/kv/{*key}" if get => d(Need::Key(Read), Filter::Array(KV)),
        "/v1/kv/" | "/v1/kv/{*key}" => d(Need::Key(Write), f),
        "/v1/operator/autopilot/configuration"
        | "/v1/operator/autopilot/health"
        | "/v1/operator/autopilot/state"
        | "/v1/operator/raft/configuration"
        | "/v1/operator/raft/peer"
        | "/v1/operator/raft/transfer-leader" => {
            d(Global(Global::Operator, if get { Read } else { Write }), f)
        }
        // Prepared queries: writes need `query:write` on the name; listings show the
        // queries whose name the token may read; execute and explain are open, as in Consul.
        "/v1/query" if get => d(Open, Filter::Array(QUERY)),
        "/v1/query" => d(Body(BodyKind::PreparedQuery), f),
        "/v1/query/{id}" if get => d(Open, Filter::Array(QUERY)),
        "/v1/query/{id}" => d(QueryId(Write), f),
        "/v1/query/{id}/execute" | "/v1/query/{id}/explain" => d(Open, f),
        "/v1/coordinate/nodes" => d(Open, Filter::Array(COORD)),
        // Server WAN coordinates: no token needed, as in Consul.
        "/v1/coordinate/datacenters" => d(Open, f),
        "/v1/coordinate/node/{node}" => d(Path(Node, Read), f),
        "/v1/coordinate/update" => d(Body(BodyKind::CoordinateUpdate), f),
        "/v1/session/create" => d(Body(BodyKind::SessionCreate), f),
        "/v1/session/destroy/"
        | "/v1/session/info/"
        | "/v1/session/node/"
        | "/v1/session/renew/" => d(Open, f),
        "/v1/session/destroy/{id}" | "/v1/session/renew/{id}" => d(SessionId(Write), f),
        "/v1/session/info/{id}" => d(Open, Filter::Array(SESSION)),
        "/v1/session/list" => d(Open, Filter::Array(SESSION)),
        "/v1/session/node/{node}" => d(Path(Session, Read), f),
        "/v1/snapshot" => d(Management, f),
        "/v1/status/leader" | "/v1/status/peers" => d(Open, f),
        "/v1/txn" => d(Body(BodyKind::Txn), f),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Every `.route(path, methods)` in the route table, read from its source so that a route
    /// added there without a decision here fails this test.
    pub(crate) fn table_routes() -> Vec<(String, Vec<Method>)> {
        let src = include_str!("../http/routes.rs");
        let mut out = Vec::new();
        let mut rest = src;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + 7..];
            let Some(q1) = rest.find('"') else { break };
            let after = &rest[q1 + 1..];
            let Some(q2) = after.find('"') else { break };
            let path = after[..q2].to_string();
            // The methods are the handler constructors up to the end of this route call.
            let end = [".route(", ".route_layer(", ".fallback("]
                .iter()
                .filter_map(|w| after.find(w))
                .min()
                .unwrap_or(after.len());
            let body = &after[q2..end];
            let mut methods = Vec::new();
            for (word, m) in [
                ("get(", Method::GET),
                ("put(", Method::PUT),
                ("post(", Method::POST),
                ("delete(", Method::DELETE),
            ] {
                if body.contains(word) {
                    methods.push(m);
                }
            }
            out.push((path, methods));
        }
        out
    }

    #[test]
    fn every_route_has_a_decision() {
        let routes = table_routes();
        assert!(routes.len() > 50, "{}", routes.len());
        for (path, methods) in routes {
            assert!(!methods.is_empty(), "{path}");
            for m in methods {
                assert!(
                    decision(&m, &path).is_some(),
                    "{m} {path} has no ACL decision"
                );
            }
        }
    }

    #[test]
    fn kv_reads_and_writes_differ() {
        assert_eq!(
            decision(&Method::GET, "/v1/kv/{*key}").unwrap().need,
            Need::Key(Read)
        );
        assert_eq!(
            decision(&Method::DELETE, "/v1/kv/{*key}").unwrap().need,
            Need::Key(Write)
        );
        assert!(decision(&Method::GET, "/v1/nope").is_none());
    }
}
