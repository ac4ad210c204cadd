//! What the `/v1/acl/*` handlers share: refusals in Consul's words, the `acl:read|write`
//! check, proposing a command, reading request bodies (links, identities, templated
//! policies), and the create / read / list / update / delete steps every record kind takes.

// Handlers return their refusal as the finished response; boxing it gains nothing here.
#![allow(clippy::result_large_err)]

use super::acl_guard::{resolve, RequestToken};
use super::AppState;
use crate::acl::Authorizer;
use crate::fsm::acl::BOOTSTRAP_NOT_ALLOWED;
use crate::query::QueryOptions;
use crate::state::Db;
use crate::ServerError;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_proto::acl::rules::{Access, Global};
use registry_proto::acl::{AclCommand, Link, NodeIdentity, ServiceIdentity, TemplatedPolicy};
use registry_proto::Command;
use serde_json::{json, Value};

pub(super) type Res = Result<Response, Response>;

pub(super) fn err(status: StatusCode, text: impl Into<String>) -> Response {
    (status, text.into()).into_response()
}

pub(super) fn bad(text: impl Into<String>) -> Response {
    err(StatusCode::BAD_REQUEST, text)
}

pub(super) fn not_found() -> Response {
    err(StatusCode::FORBIDDEN, "ACL not found")
}

pub(super) fn enabled(s: &AppState) -> Result<(), Response> {
    if s.acl.enabled() {
        Ok(())
    } else {
        Err(err(StatusCode::UNAUTHORIZED, "ACL support disabled"))
    }
}

/// Resolves the request's token and checks `acl:<access>`.
pub(super) fn authorize(
    s: &AppState,
    tok: &RequestToken,
    access: Access,
) -> Result<Authorizer, Response> {
    enabled(s)?;
    let a = resolve(s, &tok.0).map_err(|m| err(StatusCode::FORBIDDEN, m))?;
    if a.allowed_global(Global::Acl, access) {
        Ok(a)
    } else {
        Err(err(
            StatusCode::FORBIDDEN,
            format!("Permission denied: {}", a.denied("acl", access, None)),
        ))
    }
}

pub(super) async fn propose(s: &AppState, cmd: AclCommand) -> Result<(), Response> {
    let result = s.writer.apply(Command::Acl(cmd)).await;
    s.acl.bump();
    match result {
        Ok(_) => Ok(()),
        Err(ServerError::Internal(m)) if m.starts_with(BOOTSTRAP_NOT_ALLOWED) => Err(err(
            StatusCode::FORBIDDEN,
            format!("Permission denied: {m}"),
        )),
        Err(ServerError::Internal(m)) => Err(bad(m)),
        Err(e) => Err(super::respond::ApiError(e).into_response()),
    }
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn body_json(body: &Bytes) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("Failed to decode request body: {e}")))
}

pub(super) fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

pub(super) fn fstr(v: &Value, key: &str) -> String {
    field(v, key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves `[{"ID"}|{"Name"}]` links to stored policies (`roles` = false) or roles.
pub(super) fn resolve_links(
    s: &AppState,
    v: Option<&Value>,
    roles: bool,
) -> Result<Vec<Link>, Response> {
    let db = s.reader.store().read();
    let mut out: Vec<Link> = Vec::new();
    for item in v
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (id, name) = (fstr(item, "ID"), fstr(item, "Name"));
        let found = if roles {
            if id.is_empty() {
                db.acl
                    .role_by_name(&name)
                    .map(|r| (r.id.clone(), r.name.clone()))
            } else {
                db.acl
                    .roles
                    .get(&id)
                    .map(|r| (r.id.clone(), r.name.clone()))
            }
        } else if id.is_empty() {
            db.acl
                .policy_by_name(&name)
                .map(|p| (p.id.clone(), p.name.clone()))
        } else {
            db.acl
                .policies
                .get(&id)
                .map(|p| (p.id.clone(), p.name.clone()))
        };
        let what = if roles { "role" } else { "policy" };
        let Some((id, name)) = found else {
            let key = if id.is_empty() { name } else { id };
            return Err(bad(format!("cannot find {what} {key}")));
        };
        if !out.iter().any(|l| l.id == id) {
            out.push(Link { id, name });
        }
    }
    Ok(out)
}

/// The identities and templated policies of a token or role body.
pub(super) struct Identities {
    pub(super) service: Vec<ServiceIdentity>,
    pub(super) node: Vec<NodeIdentity>,
    pub(super) templated: Vec<TemplatedPolicy>,
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    field(v, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(super) fn identities(v: &Value) -> Result<Identities, Response> {
    let mut out = Identities {
        service: Vec::new(),
        node: Vec::new(),
        templated: Vec::new(),
    };
    for si in items(v, "ServiceIdentities") {
        let name = fstr(si, "ServiceName");
        if name.is_empty() {
            return Err(bad(
                "Service identity is missing the service name field on this token",
            ));
        }
        out.service.push(ServiceIdentity {
            service_name: name,
            datacenters: strings(field(si, "Datacenters")),
        });
    }
    for ni in items(v, "NodeIdentities") {
        let (name, dc) = (fstr(ni, "NodeName"), fstr(ni, "Datacenter"));
        if name.is_empty() || dc.is_empty() {
            return Err(bad(
                "Node identity is missing the node name or datacenter field on this token",
            ));
        }
        out.node.push(NodeIdentity {
            node_name: name,
            datacenter: dc,
        });
    }
    for tp in items(v, "TemplatedPolicies") {
        let vars = field(tp, "TemplateVariables").unwrap_or(&Value::Null);
        let tp = TemplatedPolicy {
            template_name: fstr(tp, "TemplateName"),
            name: fstr(vars, "Name"),
            datacenters: strings(field(tp, "Datacenters")),
        };
        crate::acl::templated::validate(&tp).map_err(bad)?;
        if !out.templated.contains(&tp) {
            out.templated.push(tp);
        }
    }
    Ok(out)
}

/// Proposes `cmd`, then answers with the record `render` finds in the new state.
pub(super) async fn store_then(
    s: &AppState,
    cmd: AclCommand,
    render: impl FnOnce(&Db) -> Option<Value>,
) -> Res {
    propose(s, cmd).await?;
    let db = s.reader.store().read();
    let v = render(&db).ok_or_else(not_found)?;
    Ok(Json(v).into_response())
}

/// After `acl:read`, answers with the record `find` finds; a 404 with no body otherwise, as
/// Consul answers for policies, roles, auth methods and binding rules.
pub(super) fn read_one(
    s: &AppState,
    tok: &RequestToken,
    find: impl FnOnce(&Db) -> Option<Value>,
) -> Res {
    authorize(s, tok, Access::Read)?;
    let db = s.reader.store().read();
    let v = find(&db).ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
    Ok(Json(v).into_response())
}

/// After `acl:read`, answers the list `list` builds from the state and the query options
/// (`show`: whether the token may also see secrets, `acl:write`).
pub(super) fn list_all(
    s: &AppState,
    tok: &RequestToken,
    query: Option<&str>,
    list: impl FnOnce(&Db, &QueryOptions, bool) -> Vec<Value>,
) -> Res {
    let a = authorize(s, tok, Access::Read)?;
    let opts = s
        .options(query)
        .map_err(|e| super::respond::ApiError(e).into_response())?;
    let show = a.allowed_global(Global::Acl, Access::Write);
    let db = s.reader.store().read();
    Ok(Json(list(&db, &opts, show)).into_response())
}

/// After `acl:write`, proposes a deletion and answers `true`.
pub(super) async fn delete_one(s: &AppState, tok: &RequestToken, cmd: AclCommand) -> Res {
    authorize(s, tok, Access::Write)?;
    propose(s, cmd).await?;
    Ok(Json(true).into_response())
}

/// After `acl:write`, the body of a create request, which may not name an ID.
pub(super) fn create_body(
    s: &AppState,
    tok: &RequestToken,
    body: &Bytes,
    what: &str,
) -> Result<Value, Response> {
    authorize(s, tok, Access::Write)?;
    let v = body_json(body)?;
    if !fstr(&v, "ID").is_empty() {
        return Err(bad(format!("Cannot specify an ID when creating a {what}")));
    }
    Ok(v)
}

/// After `acl:write`, the body of an update of the record `id`, which must exist and may
/// repeat its ID only unchanged.
pub(super) fn update_body(
    s: &AppState,
    tok: &RequestToken,
    body: &Bytes,
    (what, id): (&str, &str),
    exists: impl FnOnce(&Db) -> bool,
) -> Result<Value, Response> {
    authorize(s, tok, Access::Write)?;
    let v = body_json(body)?;
    let given = fstr(&v, "ID");
    if !given.is_empty() && given != id {
        let mut title = what.to_string();
        if let Some(c) = title.get_mut(..1) {
            c.make_ascii_uppercase();
        }
        return Err(bad(format!("{title} ID in URL and payload do not match")));
    }
    if !exists(&s.reader.store().read()) {
        return Err(bad(format!("Cannot find {what} {id:?}")));
    }
    Ok(v)
}
