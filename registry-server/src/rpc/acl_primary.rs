//! In a secondary datacenter with ACLs, writes of records that belong to the primary
//! datacenter go there, as Consul forwards them: policies, roles and global (non-`Local`)
//! tokens are created, changed and deleted in `primary_datacenter` and come back by
//! replication (`crate::acl::replication`). `Local` tokens are written here.
//!
//! The middleware sits after `?dc=` forwarding and before leader forwarding, so a follower
//! sends such a write straight to the primary.

use super::api::{add_default_token, mark_origin, ApiRequest, Hop};
use super::wan::Datacenters;
use crate::http::respond::ApiError;
use crate::state::Store;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// What the middleware needs.
#[derive(Debug, Clone)]
pub struct PrimaryRoute {
    /// The datacenters.
    pub dcs: Arc<Datacenters>,
    /// `primary_datacenter`.
    pub primary: String,
    /// This server's state (the locality of stored tokens).
    pub store: Arc<Store>,
    /// This agent's node name (the origin of forwarded requests).
    pub node: Arc<str>,
    /// This agent's ACL settings (its `default` token goes with forwarded requests).
    pub acl: Arc<crate::acl::AclRuntime>,
}

/// Where a request belongs.
#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// Served here.
    Here,
    /// A policy or role write: the primary.
    Primary,
    /// A token write: the primary unless the token is `Local` (the stored token's locality
    /// when it exists here, else the body's `Local`).
    Token(Option<&'a str>),
}

fn classify<'a>(method: &Method, path: &'a str) -> Kind<'a> {
    if !matches!(*method, Method::PUT | Method::POST | Method::DELETE) {
        return Kind::Here;
    }
    let primary = ["/v1/acl/policy", "/v1/acl/role"];
    if primary
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    {
        return Kind::Primary;
    }
    if path == "/v1/acl/token" {
        return Kind::Token(None);
    }
    match path.strip_prefix("/v1/acl/token/") {
        Some(rest) => {
            let id = rest.strip_suffix("/clone").unwrap_or(rest);
            if id.is_empty() || id.contains('/') {
                Kind::Here
            } else {
                Kind::Token(Some(id))
            }
        }
        None => Kind::Here,
    }
}

/// Whether a token body says `"Local": true`.
fn body_local(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("Local").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// The v1 middleware: see the module.
pub async fn to_primary(State(p): State<PrimaryRoute>, req: Request, next: Next) -> Response {
    let kind = classify(req.method(), req.uri().path());
    if kind == Kind::Here {
        return next.run(req).await;
    }
    let stored_local = match kind {
        Kind::Token(Some(id)) => p.store.read().acl.tokens.get(id).map(|t| t.local),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    let body = match super::api::buffer_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let global = match classify(&parts.method, parts.uri.path()) {
        Kind::Primary => true,
        _ => !stored_local.unwrap_or_else(|| body_local(&body)),
    };
    if !global {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    }
    mark_origin(&mut parts, &p.node);
    add_default_token(&mut parts, &p.acl.tokens().default);
    let fwd = ApiRequest::from_parts(Hop::Client, &parts, body);
    match p.dcs.run_in_datacenter(&p.primary, fwd).await {
        Ok(reply) => reply.into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_role_and_token_writes_are_told_apart() {
        assert_eq!(classify(&Method::PUT, "/v1/acl/policy"), Kind::Primary);
        assert_eq!(classify(&Method::DELETE, "/v1/acl/role/r1"), Kind::Primary);
        assert_eq!(classify(&Method::GET, "/v1/acl/policy/p1"), Kind::Here);
        assert_eq!(classify(&Method::PUT, "/v1/acl/policyx"), Kind::Here);
        assert_eq!(classify(&Method::PUT, "/v1/acl/token"), Kind::Token(None));
        assert_eq!(
            classify(&Method::PUT, "/v1/acl/token/a1/clone"),
            Kind::Token(Some("a1"))
        );
        assert_eq!(
            classify(&Method::DELETE, "/v1/acl/token/a1"),
            Kind::Token(Some("a1"))
        );
        assert_eq!(classify(&Method::PUT, "/v1/kv/a"), Kind::Here);
        assert!(body_local(br#"{"Local": true}"#));
        assert!(!body_local(b"{}"));
    }
}
