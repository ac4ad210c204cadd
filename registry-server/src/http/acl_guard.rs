//! The one place every HTTP request gets its ACL decision while ACLs are enabled: the token is
//! read (`?token`, `X-Consul-Token`, `Authorization: Bearer`), resolved against the current
//! state, checked against the route's decision (`acl::routes`), and list answers are filtered
//! to what the token may read. Blocking requests resolve the token again when they wake, so a
//! token deleted meanwhile gets nothing. With ACLs disabled the guard returns at once.

use super::AppState;
use crate::acl::routes::{decision, BodyKind, Fields, Filter, Need};
use crate::acl::Authorizer;
use crate::state::Db;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registry_proto::acl::rules::{Access, Global, Resource};
use serde_json::Value;

/// The secret a request presented (empty when none), for the ACL handlers. The guard stores
/// it on the request; without the guard (ACLs disabled) it is read from the request itself.
#[derive(Debug, Clone, Default)]
pub struct RequestToken(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<RequestToken>() {
            Some(t) => t.clone(),
            None => RequestToken(request_token(parts.uri.query(), &parts.headers)),
        })
    }
}

const MAX_BODY: usize = 4 * 1024 * 1024;

/// The token of a request, in Consul's order: `?token`, `X-Consul-Token`, `Authorization`.
pub fn request_token(query: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(q) = query {
        if let Some((_, v)) = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token") {
            return v.into_owned();
        }
    }
    if let Some(v) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        return v.trim().to_string();
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return v[7..].trim().to_string();
        }
    }
    String::new()
}

fn denied(text: String) -> Response {
    (StatusCode::FORBIDDEN, format!("Permission denied: {text}")).into_response()
}

/// Percent-decodes a path segment.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name at the end of a path, after the template's fixed part.
fn path_name(template: &str, path: &str) -> String {
    let fixed = template.find('{').unwrap_or(template.len());
    path.get(fixed..).map(decode).unwrap_or_default()
}

/// Resolves a secret against the current state.
pub(crate) fn resolve(s: &AppState, secret: &str) -> Result<Authorizer, String> {
    let db = s.reader.store().read();
    if let Some(t) = db.acl.token_by_secret(secret) {
        if crate::acl::expired(t, crate::acl::now_unix_ms()) {
            return Err("ACL not found".to_string());
        }
    }
    s.acl
        .resolve(&db, secret, &s.config.datacenter)
        .map_err(|e| match e {
            crate::ServerError::PermissionDenied(m) => m,
            other => other.to_string(),
        })
}

/// Asks the primary datacenter for the global token `secret` names and keeps its answer
/// (see `AclRuntime::wants_remote`). An unreachable primary leaves nothing kept, so the
/// token is unknown here until it answers.
async fn resolve_in_primary(s: &AppState, secret: &str) {
    let mut req = crate::rpc::wan_http::get_request("/v1/internal/acl/token/resolve");
    req.headers.push((
        "x-consul-token".to_string(),
        secret.as_bytes().to_vec().into(),
    ));
    let primary = s.acl.config.primary_datacenter.clone();
    match s.datacenters.run_in_datacenter(&primary, req).await {
        Ok(r) if r.status == 200 => match serde_json::from_slice(&r.body) {
            Ok(t) => s.acl.remember_remote(secret, Some(t)),
            Err(e) => tracing::warn!(error = %e, "decoding a token resolved in the primary"),
        },
        Ok(r) if r.status == 403 => s.acl.remember_remote(secret, None),
        Ok(r) => {
            tracing::warn!(status = r.status, dc = %primary, "resolving a token in the primary")
        }
        Err(e) => tracing::warn!(error = %e, dc = %primary, "resolving a token in the primary"),
    }
}

/// The middleware.
pub(crate) async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.acl.enabled() {
        return next.run(req).await;
    }
    let mut resp = checked(&s, req, next).await;
    let policy = if s.acl.config.default_allow {
        "allow"
    } else {
        "deny"
    };
    resp.headers_mut().insert(
        "X-Consul-Default-ACL-Policy",
        HeaderValue::from_static(policy),
    );
    resp
}

async fn checked(s: &AppState, mut req: Request, next: Next) -> Response {
    let Some(template) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let Some(dec) = decision(&method, &template) else {
        if method == Method::OPTIONS || method == Method::TRACE {
            return next.run(req).await;
        }
        return denied(format!("no ACL decision for {method} {template}"));
    };
    let query = req.uri().query().map(str::to_string);
    let secret = request_token(query.as_deref(), req.headers());
    req.extensions_mut().insert(RequestToken(secret.clone()));
    if dec.need == Need::AclEndpoint {
        return next.run(req).await;
    }
    let remote = {
        let db = s.reader.store().read();
        s.acl.wants_remote(&db, &secret, &s.config.datacenter)
    };
    if remote {
        resolve_in_primary(s, &secret).await;
    }
    let authz = match resolve(s, &secret) {
        Ok(a) => a,
        Err(m) => return (StatusCode::FORBIDDEN, m).into_response(),
    };
    let path = req.uri().path().to_string();
    let name = path_name(&template, &path);
    let has = |k: &str| {
        query
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).any(|(key, _)| key == k))
            .unwrap_or(false)
    };
    let mut filter = dec.filter;
    if template.starts_with("/v1/kv/") && method == Method::GET && has("keys") {
        filter = Filter::Strings(Resource::Key);
    }
    let list = template.starts_with("/v1/kv/") && (has("keys") || has("recurse"));
    if template.starts_with("/v1/kv/") && !list {
        // One key, whose read the check below decides: nothing to filter from its answer.
        filter = Filter::None;
    }
    let check = {
        let db = s.reader.store().read();
        pre_check(s, &db, &authz, dec.need, &name, &method, list)
    };
    let check = match check {
        Ok(()) => Ok(()),
        Err(Some(m)) => Err(m),
        Err(None) => match body_check(s, &authz, dec.need, req).await {
            Ok(r) => {
                req = r;
                Ok(())
            }
            Err(resp) => return resp,
        },
    };
    if let Err(m) = check {
        return denied(m);
    }
    let blocking = has("index");
    let resp = next.run(req).await;
    if filter == Filter::None && !blocking {
        return resp;
    }
    // A blocking query resolves the token again when it wakes.
    let authz = if blocking {
        match resolve(s, &secret) {
            Ok(a) => a,
            Err(m) => return (StatusCode::FORBIDDEN, m).into_response(),
        }
    } else {
        authz
    };
    if authz.management || filter == Filter::None || resp.status() != StatusCode::OK {
        return resp;
    }
    filter_response(resp, &authz, filter).await
}

fn need_text(r: Resource, a: Access) -> (&'static str, Access) {
    (r.as_str(), a)
}

/// Checks that need no body. `Err(None)` asks for the body check.
fn pre_check(
    s: &AppState,
    db: &Db,
    authz: &Authorizer,
    need: Need,
    name: &str,
    method: &Method,
    list: bool,
) -> Result<(), Option<String>> {
    let node = s.config.node_name.as_str();
    let deny = |r: Resource, a: Access, n: &str| {
        let (res, acc) = need_text(r, a);
        Err(Some(authz.denied(res, acc, Some(n))))
    };
    let named = |r: Resource, a: Access, n: &str| {
        if authz.allowed(r, n, a) {
            Ok(())
        } else {
            deny(r, a, n)
        }
    };
    match need {
        Need::Open | Need::AclEndpoint => Ok(()),
        Need::Management => {
            if authz.allowed_global(Global::Acl, Access::Write) {
                Ok(())
            } else {
                Err(Some(authz.denied("acl", Access::Write, None)))
            }
        }
        Need::Global(g, a) => {
            if authz.allowed_global(g, a) {
                Ok(())
            } else {
                Err(Some(authz.denied(g.as_str(), a, None)))
            }
        }
        Need::Path(r, a) => named(r, a, name),
        Need::Agent(r, a) => named(r, a, node),
        Need::Key(Access::Read) if list => Ok(()),
        Need::Key(Access::Write) if *method == Method::DELETE && list => {
            if authz.key_write_prefix(name) {
                Ok(())
            } else {
                deny(Resource::Key, Access::Write, name)
            }
        }
        Need::Key(a) => named(Resource::Key, a, name),
        Need::ServiceId(a) => {
            let svc = db
                .services
                .get(node)
                .and_then(|m| m.get(name))
                .map(|s| s.service.clone())
                .unwrap_or_else(|| name.to_string());
            named(Resource::Service, a, &svc)
        }
        Need::CheckId => match db.checks.get(node).and_then(|m| m.get(name)) {
            Some(c) if !c.service_name.is_empty() => {
                named(Resource::Service, Access::Write, &c.service_name)
            }
            _ => named(Resource::Node, Access::Write, node),
        },
        Need::SessionId(a) => match db.sessions.get(name) {
            Some(sess) => named(Resource::Session, a, &sess.node),
            None => Ok(()),
        },
        Need::QueryId(a) => match db.queries.queries.get(name).and_then(|q| q.acl_prefix()) {
            Some(prefix) => named(Resource::Query, a, prefix),
            None => Ok(()),
        },
        Need::Body(_) => Err(None),
    }
}

/// A field of a JSON object, matched without regard to case.
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn field_str<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key).and_then(Value::as_str).unwrap_or("")
}

/// Reads the body, checks the names in it, and rebuilds the request.
async fn body_check(
    s: &AppState,
    authz: &Authorizer,
    need: Need,
    req: Request,
) -> Result<Request, Response> {
    let Need::Body(kind) = need else {
        return Ok(req);
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "Request body too large").into_response())
        }
    };
    // An unreadable body is the handler's to refuse; the names checked are then empty.
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let result = {
        let db = s.reader.store().read();
        body_needs(s, &db, authz, kind, &v)
    };
    match result {
        Ok(()) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Err(m) => Err(denied(m)),
    }
}

fn body_needs(
    s: &AppState,
    db: &Db,
    authz: &Authorizer,
    kind: BodyKind,
    v: &Value,
) -> Result<(), String> {
    let agent_node = s.config.node_name.as_str();
    let need = |r: Resource, a: Access, n: &str| {
        if authz.allowed(r, n, a) {
            Ok(())
        } else {
            Err(authz.denied(r.as_str(), a, Some(n)))
        }
    };
    let service_of = |node: &str, id: &str| {
        db.services
            .get(node)
            .and_then(|m| m.get(id))
            .map(|s| s.service.clone())
    };
    match kind {
        BodyKind::AgentService => {
            let name = match field_str(v, "Name") {
                "" => field_str(v, "Service"),
                n => n,
            };
            need(Resource::Service, Access::Write, name)
        }
        BodyKind::AgentCheck => match field_str(v, "ServiceID") {
            "" => need(Resource::Node, Access::Write, agent_node),
            id => {
                let svc = service_of(agent_node, id).unwrap_or_else(|| id.to_string());
                need(Resource::Service, Access::Write, &svc)
            }
        },
        BodyKind::SessionCreate => match field_str(v, "Node") {
            "" => need(Resource::Session, Access::Write, agent_node),
            n => need(Resource::Session, Access::Write, n),
        },
        BodyKind::CatalogRegister => {
            let node = field_str(v, "Node");
            let svc = field(v, "Service").map(|s| field_str(s, "Service"));
            if let Some(name) = svc {
                need(Resource::Service, Access::Write, name)?;
            }
            let unchanged = db
                .nodes
                .get(node)
                .is_some_and(|n| n.address == field_str(v, "Address"));
            if svc.is_none() || !unchanged {
                need(Resource::Node, Access::Write, node)?;
            }
            Ok(())
        }
        BodyKind::CatalogDeregister => {
            let node = field_str(v, "Node");
            let sid = field_str(v, "ServiceID");
            let cid = field_str(v, "CheckID");
            if !sid.is_empty() {
                let svc = service_of(node, sid).unwrap_or_else(|| sid.to_string());
                return need(Resource::Service, Access::Write, &svc);
            }
            if !cid.is_empty() {
                if let Some(c) = db.checks.get(node).and_then(|m| m.get(cid)) {
                    if !c.service_name.is_empty() {
                        return need(Resource::Service, Access::Write, &c.service_name);
                    }
                }
            }
            need(Resource::Node, Access::Write, node)
        }
        BodyKind::CoordinateUpdate => need(Resource::Node, Access::Write, field_str(v, "Node")),
        BodyKind::PreparedQuery => {
            let name = field_str(v, "Name");
            let template = field(v, "Template").map_or("", |t| field_str(t, "Type"));
            if name.is_empty() && template.is_empty() {
                Ok(())
            } else {
                need(Resource::Query, Access::Write, name)
            }
        }
        BodyKind::Txn => {
            for op in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(kv) = field(op, "KV") {
                    let key = field_str(kv, "Key");
                    match field_str(kv, "Verb") {
                        "get" | "get-or-empty" | "get-tree" | "check-index" | "check-session"
                        | "check-not-exists" => need(Resource::Key, Access::Read, key)?,
                        "delete-tree" => {
                            if !authz.key_write_prefix(key) {
                                return Err(authz.denied("key", Access::Write, Some(key)));
                            }
                        }
                        _ => need(Resource::Key, Access::Write, key)?,
                    }
                } else if let Some(n) = field(op, "Node") {
                    let name = field(n, "Node").map(|x| field_str(x, "Node")).unwrap_or("");
                    need(Resource::Node, Access::Write, name)?;
                } else if let Some(sv) = field(op, "Service") {
                    let name = field(sv, "Service")
                        .map(|x| field_str(x, "Service"))
                        .unwrap_or("");
                    need(Resource::Service, Access::Write, name)?;
                } else if let Some(c) = field(op, "Check") {
                    let chk = field(c, "Check").unwrap_or(&Value::Null);
                    match field_str(chk, "ServiceName") {
                        "" => need(Resource::Node, Access::Write, field_str(chk, "Node"))?,
                        svc => need(Resource::Service, Access::Write, svc)?,
                    }
                }
            }
            Ok(())
        }
    }
}

fn readable(authz: &Authorizer, v: &Value, fields: Fields) -> bool {
    fields.iter().all(|(r, path)| {
        let mut cur = v;
        for p in *path {
            match field(cur, p) {
                Some(x) => cur = x,
                None => return true,
            }
        }
        match cur.as_str() {
            Some("") | None => true,
            Some(name) => authz.allowed(*r, name, Access::Read),
        }
    })
}

/// Filters a JSON answer; sets `X-Consul-Results-Filtered-By-ACLs` when anything was removed.
async fn filter_response(resp: Response, authz: &Authorizer, filter: Filter) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut removed = false;
    match (filter, &mut v) {
        (Filter::Array(fields), Value::Array(items)) => {
            let before = items.len();
            items.retain(|i| readable(authz, i, fields));
            removed = items.len() != before;
        }
        (Filter::ObjectValues(fields), Value::Object(m)) => {
            let before = m.len();
            m.retain(|_, i| readable(authz, i, fields));
            removed = m.len() != before;
        }
        (Filter::ObjectKeys(r), Value::Object(m)) => {
            let before = m.len();
            m.retain(|k, _| authz.allowed(r, k, Access::Read));
            removed = m.len() != before;
        }
        (Filter::Strings(r), Value::Array(items)) => {
            let before = items.len();
            items.retain(|i| i.as_str().is_none_or(|k| authz.allowed(r, k, Access::Read)));
            removed = items.len() != before;
        }
        (Filter::One(fields), one) if !readable(authz, one, fields) => {
            let name = fields
                .first()
                .and_then(|(_, p)| p.first())
                .and_then(|f| field(one, f))
                .and_then(Value::as_str)
                .unwrap_or("");
            let r = fields.first().map_or(Resource::Service, |(r, _)| *r);
            return denied(authz.denied(r.as_str(), Access::Read, Some(name)));
        }
        _ => {}
    }
    if !removed {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let out = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        "X-Consul-Results-Filtered-By-ACLs",
        HeaderValue::from_static("true"),
    );
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_query_header_or_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(request_token(None, &h), "");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b1"));
        assert_eq!(request_token(None, &h), "b1");
        h.insert("x-consul-token", HeaderValue::from_static("x1"));
        assert_eq!(request_token(None, &h), "x1");
        assert_eq!(request_token(Some("a=1&token=q1"), &h), "q1");
    }

    #[test]
    fn path_names_are_decoded() {
        assert_eq!(path_name("/v1/kv/{*key}", "/v1/kv/a%2Fb/c"), "a/b/c");
        assert_eq!(path_name("/v1/event/fire/", "/v1/event/fire/"), "");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
