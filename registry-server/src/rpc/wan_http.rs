//! `?dc=` on the HTTP API: the v1 middleware that sends a request naming another datacenter
//! to that datacenter ([`to_datacenter`], through
//! [`Datacenters::run_in_datacenter`](super::wan::Datacenters::run_in_datacenter)), and
//! Consul's `translate_wan_addrs` on the answers.
//!
//! The middleware sits in front of everything else (the leader forwarding, the ACL guard, the
//! handlers): a request for another datacenter is decided there, as Consul forwards an RPC
//! before resolving its token. The agent's own endpoints (`/v1/agent/*`) act on this agent and
//! are never forwarded, and `/v1/catalog/datacenters` and `/v1/coordinate/datacenters` answer
//! about every datacenter from here.

use super::api::{mark_origin, ApiRequest, Hop};
use super::wan::Datacenters;
use crate::http::respond::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// Response header Consul sets on catalog, health and prepared-query answers when
/// `translate_wan_addrs` is on.
pub const TRANSLATE_HEADER: &str = "x-consul-translate-addresses";

/// What the middleware needs.
#[derive(Debug, Clone)]
pub struct WanState {
    /// The datacenters.
    pub dcs: Arc<Datacenters>,
    /// This agent's node name (the origin of forwarded requests).
    pub node: Arc<str>,
    /// `translate_wan_addrs`.
    pub translate: bool,
}

/// The datacenter a request names with `?dc=`, when it is not this one.
pub fn remote_dc(uri: &Uri, dcs: &Datacenters) -> Option<String> {
    let query = uri.query()?;
    let dc = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "dc")
        .map(|(_, v)| v.into_owned())?;
    (!dcs.is_local(&dc)).then_some(dc)
}

/// Whether a request for another datacenter is sent there (everything but this agent's own
/// endpoints and the datacenter lists).
pub fn forwarded_path(path: &str) -> bool {
    !(path.starts_with("/v1/agent/")
        || path == "/v1/catalog/datacenters"
        || path == "/v1/coordinate/datacenters")
}

/// Endpoints whose answers carry node and service addresses (translated with
/// `translate_wan_addrs`).
fn has_addresses(path: &str) -> bool {
    path.starts_with("/v1/catalog/service/")
        || path.starts_with("/v1/catalog/node/")
        || path == "/v1/catalog/nodes"
        || path.starts_with("/v1/health/service/")
        || path.starts_with("/v1/health/connect/")
        || (path.starts_with("/v1/query/") && path.ends_with("/execute"))
}

/// The v1 middleware: see the module.
pub async fn to_datacenter(State(w): State<WanState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let translate = w.translate && has_addresses(&path);
    let remote = remote_dc(req.uri(), &w.dcs).filter(|_| forwarded_path(&path));
    let Some(dc) = remote else {
        let mut resp = next.run(req).await;
        if translate {
            resp.headers_mut()
                .insert(TRANSLATE_HEADER, HeaderValue::from_static("true"));
        }
        return resp;
    };
    let (mut parts, body) = req.into_parts();
    let body = match super::api::buffer_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    mark_origin(&mut parts, &w.node);
    let fwd = ApiRequest::from_parts(Hop::Client, &parts, body);
    match w.dcs.run_in_datacenter(&dc, fwd).await {
        Ok(mut reply) => {
            if translate && reply.status == 200 {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&reply.body) {
                    translate_addresses(&mut v);
                    if let Ok(bytes) = serde_json::to_vec(&v) {
                        reply.body = bytes.into();
                    }
                }
            }
            let mut resp = reply.into_response();
            if translate {
                resp.headers_mut()
                    .insert(TRANSLATE_HEADER, HeaderValue::from_static("true"));
            }
            resp
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// Replaces node and service addresses by their `wan` tagged addresses, where they have
/// one, as Consul does for answers from another datacenter with `translate_wan_addrs`.
pub fn translate_addresses(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(translate_addresses),
        Value::Object(map) => {
            // A node (catalog) or a service entry (agent shape): TaggedAddresses.wan is a
            // string for nodes, an {Address, Port} object for services.
            let wan = map
                .get("TaggedAddresses")
                .and_then(|t| t.get("wan"))
                .cloned();
            match wan {
                Some(Value::String(a)) if !a.is_empty() && map.contains_key("Address") => {
                    map.insert("Address".into(), Value::String(a));
                }
                Some(Value::Object(o)) => {
                    if let Some(Value::String(a)) = o.get("Address").filter(|a| a != &"") {
                        map.insert("Address".into(), Value::String(a.clone()));
                        if let Some(p) = o.get("Port") {
                            map.insert("Port".into(), p.clone());
                        }
                    }
                }
                _ => {}
            }
            // A catalog service entry: ServiceTaggedAddresses.wan.
            let svc_wan = map
                .get("ServiceTaggedAddresses")
                .and_then(|t| t.get("wan"))
                .cloned();
            if let Some(Value::Object(o)) = svc_wan {
                if let Some(Value::String(a)) = o.get("Address").filter(|a| a != &"") {
                    map.insert("ServiceAddress".into(), Value::String(a.clone()));
                    if let Some(p) = o.get("Port") {
                        map.insert("ServicePort".into(), p.clone());
                    }
                }
            }
            for (k, child) in map.iter_mut() {
                if k != "TaggedAddresses" && k != "ServiceTaggedAddresses" {
                    translate_addresses(child);
                }
            }
        }
        _ => {}
    }
}

/// Builds an empty-bodied request (for callers that run reads in another datacenter).
pub fn get_request(uri: &str) -> ApiRequest {
    let parts = Request::get(uri)
        .body(Body::empty())
        .map(|r| r.into_parts().0)
        .ok();
    match parts {
        Some(p) => ApiRequest::from_parts(Hop::Client, &p, Default::default()),
        None => ApiRequest {
            hop: Hop::Client,
            method: "GET".into(),
            uri: uri.to_string(),
            headers: Vec::new(),
            body: Default::default(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn translates_nodes_and_services_to_wan_addresses() {
        let mut v = json!([{
            "Node": {"Address": "10.0.0.1", "TaggedAddresses": {"lan": "10.0.0.1", "wan": "1.2.3.4"}},
            "Service": {"Address": "10.0.0.2", "Port": 80,
                        "TaggedAddresses": {"wan": {"Address": "5.6.7.8", "Port": 8080}}}
        }, {
            "Address": "10.0.0.1", "TaggedAddresses": {"wan": "1.2.3.4"},
            "ServiceAddress": "10.0.0.2", "ServicePort": 80,
            "ServiceTaggedAddresses": {"wan": {"Address": "5.6.7.8", "Port": 8080}}
        }, {"Address": "10.0.0.9"}]);
        translate_addresses(&mut v);
        assert_eq!(v[0]["Node"]["Address"], "1.2.3.4");
        assert_eq!(v[0]["Service"]["Address"], "5.6.7.8");
        assert_eq!(v[0]["Service"]["Port"], 8080);
        assert_eq!(v[1]["Address"], "1.2.3.4");
        assert_eq!(v[1]["ServiceAddress"], "5.6.7.8");
        assert_eq!(v[1]["ServicePort"], 8080);
        assert_eq!(v[2]["Address"], "10.0.0.9");
    }

    #[test]
    fn agent_endpoints_and_datacenter_lists_stay_here() {
        assert!(!forwarded_path("/v1/agent/self"));
        assert!(!forwarded_path("/v1/catalog/datacenters"));
        assert!(forwarded_path("/v1/catalog/nodes"));
        assert!(forwarded_path("/v1/kv/a"));
    }
}
