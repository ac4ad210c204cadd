//! `/v1/acl/role*`: roles, named sets of policies and service and node identities.

// Handlers return their refusal as the finished response; boxing it gains nothing here.
#![allow(clippy::result_large_err)]

use super::acl::{
    bad, create_body, delete_one, field, fstr, identities, list_all, read_one, resolve_links,
    store_then, update_body, uuid, Res,
};
use super::acl_guard::RequestToken;
use super::acl_shapes::role_json;
use super::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use registry_proto::acl::{AclCommand, Role};
use serde_json::Value;

fn role_from(s: &AppState, v: &Value, id: String) -> Result<Role, Response> {
    let name = fstr(v, "Name");
    if name.is_empty() {
        return Err(bad("Invalid Role: no Name is set"));
    }
    let ids = identities(v)?;
    Ok(Role {
        id,
        name,
        description: fstr(v, "Description"),
        policies: resolve_links(s, field(v, "Policies"), false)?,
        service_identities: ids.service,
        node_identities: ids.node,
        templated_policies: ids.templated,
        ..Role::default()
    })
}

async fn store_role(s: &AppState, r: Role) -> Res {
    let id = r.id.clone();
    store_then(s, AclCommand::RoleSet(r), |db| {
        db.acl.roles.get(&id).map(role_json)
    })
    .await
}

/// `PUT /v1/acl/role`.
pub(crate) async fn role_create(State(s): State<AppState>, tok: RequestToken, body: Bytes) -> Res {
    let v = create_body(&s, &tok, &body, "role")?;
    let r = role_from(&s, &v, uuid())?;
    store_role(&s, r).await
}

/// `GET /v1/acl/role/:id`.
pub(crate) async fn role_read(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    read_one(&s, &tok, |db| db.acl.roles.get(&id).map(role_json))
}

/// `GET /v1/acl/role/name/:name`.
pub(crate) async fn role_read_name(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
) -> Res {
    read_one(&s, &tok, |db| db.acl.role_by_name(&name).map(role_json))
}

/// `PUT /v1/acl/role/:id`.
pub(crate) async fn role_update(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let v = update_body(&s, &tok, &body, ("role", &id), |db| {
        db.acl.roles.contains_key(&id)
    })?;
    let r = role_from(&s, &v, id)?;
    store_role(&s, r).await
}

/// `DELETE /v1/acl/role/:id`.
pub(crate) async fn role_delete(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    delete_one(&s, &tok, AclCommand::RoleDelete { id }).await
}

/// `GET /v1/acl/roles`.
pub(crate) async fn role_list(
    State(s): State<AppState>,
    tok: RequestToken,
    RawQuery(q): RawQuery,
) -> Res {
    list_all(&s, &tok, q.as_deref(), |db, opts, _| {
        db.acl
            .roles
            .values()
            .filter(|r| {
                opts.get("policy")
                    .is_none_or(|p| r.policies.iter().any(|l| l.id == p))
            })
            .map(role_json)
            .collect()
    })
}
