//! `/v1/acl/*` and `/v1/agent/token/:type`: bootstrap, tokens and policies in Consul's JSON
//! shapes (the shared steps are in `acl_common`, roles in `acl_role`, auth methods in
//! `acl_auth`, templates in `acl_templated`). Every change is an ACL command through Raft;
//! IDs, secrets and times are chosen here, on the server that proposes, so the state machine
//! stays deterministic.

// Handlers return their refusal as the finished response; boxing it gains nothing here.
#![allow(clippy::result_large_err)]

use super::acl_guard::{resolve, RequestToken};
use super::acl_shapes::{policy_json, rfc3339, token_json};
use super::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_proto::acl::rules::{Access, Global};
use registry_proto::acl::{AclCommand, Policy, Token, GLOBAL_MANAGEMENT_ID};
use registry_proto::Command;
use serde_json::{json, Value};

pub(super) use super::acl_common::*;

/// `PUT /v1/acl/bootstrap`.
pub(crate) async fn bootstrap(State(s): State<AppState>) -> Res {
    enabled(&s)?;
    let token = Token {
        accessor_id: uuid(),
        secret_id: uuid(),
        description: "Bootstrap Token (Global Management)".to_string(),
        create_time: rfc3339(now_ms()),
        ..Token::default()
    };
    let accessor = token.accessor_id.clone();
    propose(
        &s,
        AclCommand::Bootstrap {
            token,
            force: false,
        },
    )
    .await?;
    let db = s.reader.store().read();
    let t = db.acl.tokens.get(&accessor).ok_or_else(not_found)?;
    Ok(Json(token_json(t, true)).into_response())
}

/// Builds a token from a request body; `existing` when updating.
fn token_from(s: &AppState, v: &Value, existing: Option<&Token>) -> Result<Token, Response> {
    let policies = resolve_links(s, field(v, "Policies"), false)?;
    let roles = resolve_links(s, field(v, "Roles"), true)?;
    let ids = identities(v)?;
    let accessor = fstr(v, "AccessorID");
    let secret = fstr(v, "SecretID");
    let mut t = match existing {
        Some(e) => {
            if !secret.is_empty() && secret != e.secret_id {
                return Err(bad("Changing a token's SecretID is not permitted"));
            }
            e.clone()
        }
        None => {
            let now = now_ms();
            let mut t = Token {
                accessor_id: if accessor.is_empty() {
                    uuid()
                } else {
                    accessor
                },
                secret_id: if secret.is_empty() { uuid() } else { secret },
                local: field(v, "Local").and_then(Value::as_bool).unwrap_or(false),
                create_time: rfc3339(now),
                ..Token::default()
            };
            let ttl = fstr(v, "ExpirationTTL");
            if !ttl.is_empty() {
                let d = registry_proto::duration::parse_go_duration(&ttl)
                    .map_err(|_| bad(format!("Invalid ExpirationTTL: {ttl:?}")))?;
                if d < std::time::Duration::from_secs(60)
                    || d > std::time::Duration::from_secs(86_400 * 30)
                {
                    return Err(bad(
                        "ExpirationTTL cannot be less than 1m0s or more than 720h0m0s",
                    ));
                }
                t.expiration_unix_ms = now + d.as_millis() as u64;
                t.expiration_time = rfc3339(t.expiration_unix_ms);
                t.expiration_ttl = ttl;
            }
            t
        }
    };
    if field(v, "Description").is_some() || existing.is_none() {
        t.description = fstr(v, "Description");
    }
    t.policies = policies;
    t.roles = roles;
    t.service_identities = ids.service;
    t.node_identities = ids.node;
    t.templated_policies = ids.templated;
    Ok(t)
}

/// `PUT /v1/acl/token`.
pub(crate) async fn token_create(State(s): State<AppState>, tok: RequestToken, body: Bytes) -> Res {
    authorize(&s, &tok, Access::Write)?;
    let v = body_json(&body)?;
    let t = token_from(&s, &v, None)?;
    if s.reader
        .store()
        .read()
        .acl
        .tokens
        .contains_key(&t.accessor_id)
    {
        return Err(bad("Invalid Token: AccessorID is already in use"));
    }
    store_token(&s, t).await
}

async fn store_token(s: &AppState, t: Token) -> Res {
    let accessor = t.accessor_id.clone();
    store_then(s, AclCommand::TokenSet(t), |db| {
        db.acl.tokens.get(&accessor).map(|t| token_json(t, true))
    })
    .await
}

/// `GET /v1/acl/token/:id` (and `self`).
pub(crate) async fn token_read(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    if id == "self" {
        enabled(&s)?;
        resolve(&s, &tok.0).map_err(|m| err(StatusCode::FORBIDDEN, m))?;
        let db = s.reader.store().read();
        let t = db.acl.token_by_secret(&tok.0).ok_or_else(not_found)?;
        return Ok(Json(token_json(t, true)).into_response());
    }
    let a = authorize(&s, &tok, Access::Read)?;
    let db = s.reader.store().read();
    let t = db.acl.tokens.get(&id).ok_or_else(not_found)?;
    let show = a.allowed_global(Global::Acl, Access::Write);
    Ok(Json(token_json(t, show)).into_response())
}

/// `PUT /v1/acl/token/:id`.
pub(crate) async fn token_update(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    authorize(&s, &tok, Access::Write)?;
    let v = body_json(&body)?;
    let acc = fstr(&v, "AccessorID");
    if !acc.is_empty() && acc != id {
        return Err(bad("Token Accessor ID in URL and payload do not match"));
    }
    let existing = s.reader.store().read().acl.tokens.get(&id).cloned();
    let Some(e) = existing.filter(|e| !crate::acl::expired(e, now_ms())) else {
        return Err(bad(format!("Cannot find token {id:?}")));
    };
    let t = token_from(&s, &v, Some(&e))?;
    store_token(&s, t).await
}

/// `DELETE /v1/acl/token/:id`.
pub(crate) async fn token_delete(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    delete_one(&s, &tok, AclCommand::TokenDelete { accessor_id: id }).await
}

/// `PUT /v1/acl/token/:id/clone`.
pub(crate) async fn token_clone(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    authorize(&s, &tok, Access::Write)?;
    let v = body_json(&body)?;
    let src = s
        .reader
        .store()
        .read()
        .acl
        .tokens
        .get(&id)
        .cloned()
        .ok_or_else(not_found)?;
    let t = Token {
        accessor_id: uuid(),
        secret_id: uuid(),
        description: match field(&v, "Description") {
            Some(_) => fstr(&v, "Description"),
            None => src.description.clone(),
        },
        create_time: rfc3339(now_ms()),
        create_index: 0,
        modify_index: 0,
        ..src
    };
    store_token(&s, t).await
}

/// `GET /v1/acl/tokens` with `?policy`, `?role`, `?servicename`.
pub(crate) async fn token_list(
    State(s): State<AppState>,
    tok: RequestToken,
    RawQuery(q): RawQuery,
) -> Res {
    list_all(&s, &tok, q.as_deref(), |db, opts, show| {
        db.acl
            .tokens
            .values()
            .filter(|t| {
                opts.get("policy")
                    .is_none_or(|p| t.policies.iter().any(|l| l.id == p))
            })
            .filter(|t| {
                opts.get("role")
                    .is_none_or(|r| t.roles.iter().any(|l| l.id == r))
            })
            .filter(|t| {
                opts.get("servicename")
                    .is_none_or(|n| t.service_identities.iter().any(|si| si.service_name == n))
            })
            .filter(|t| opts.get("authmethod").is_none_or(|m| t.auth_method == m))
            .map(|t| {
                let mut j = token_json(t, show);
                j["Legacy"] = json!(false);
                j
            })
            .collect()
    })
}

/// Builds a policy from a request body.
fn policy_from(v: &Value, id: String) -> Result<Policy, Response> {
    let name = fstr(v, "Name");
    if name.is_empty() {
        return Err(bad("Invalid Policy: no Name is set"));
    }
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 128;
    if !valid {
        return Err(bad(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    let rules = fstr(v, "Rules");
    registry_proto::acl::rules::parse(&rules).map_err(|e| bad(format!("Invalid Policy: {e}")))?;
    Ok(Policy {
        id,
        name,
        description: fstr(v, "Description"),
        rules,
        datacenters: strings(field(v, "Datacenters")),
        ..Policy::default()
    })
}

async fn store_policy(s: &AppState, p: Policy) -> Res {
    let id = p.id.clone();
    store_then(s, AclCommand::PolicySet(p), |db| {
        db.acl.policies.get(&id).map(|p| policy_json(p, false))
    })
    .await
}

/// `PUT /v1/acl/policy`.
pub(crate) async fn policy_create(
    State(s): State<AppState>,
    tok: RequestToken,
    body: Bytes,
) -> Res {
    let v = create_body(&s, &tok, &body, "policy")?;
    store_policy(&s, policy_from(&v, uuid())?).await
}

/// `GET /v1/acl/policy/:id`.
pub(crate) async fn policy_read(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    // Consul refuses an ID that cannot be one ("ACL not found"); a policy that is gone
    // answers 404.
    if uuid::Uuid::parse_str(&id).is_err() {
        authorize(&s, &tok, Access::Read)?;
        return Err(not_found());
    }
    read_one(&s, &tok, |db| {
        db.acl.policies.get(&id).map(|p| policy_json(p, false))
    })
}

/// `GET /v1/acl/policy/name/:name`.
pub(crate) async fn policy_read_name(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
) -> Res {
    read_one(&s, &tok, |db| {
        db.acl.policy_by_name(&name).map(|p| policy_json(p, false))
    })
}

/// `PUT /v1/acl/policy/:id`.
pub(crate) async fn policy_update(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let v = update_body(&s, &tok, &body, ("policy", &id), |db| {
        db.acl.policies.contains_key(&id)
    })?;
    store_policy(&s, policy_from(&v, id)?).await
}

/// `DELETE /v1/acl/policy/:id`.
pub(crate) async fn policy_delete(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    delete_one(&s, &tok, AclCommand::PolicyDelete { id }).await
}

/// `GET /v1/acl/policies`.
pub(crate) async fn policy_list(
    State(s): State<AppState>,
    tok: RequestToken,
    RawQuery(q): RawQuery,
) -> Res {
    list_all(&s, &tok, q.as_deref(), |db, _, _| {
        db.acl
            .policies
            .values()
            .map(|p| policy_json(p, true))
            .collect()
    })
}

/// `PUT /v1/agent/token/:type`: `{"Token": "..."}`; needs `acl:write`.
pub(crate) async fn agent_token(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(kind): Path<String>,
    body: Bytes,
) -> Res {
    authorize(&s, &tok, Access::Write)?;
    let v = body_json(&body)?;
    if !s.acl.set_token(&kind, &fstr(&v, "Token")) {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("Token {kind:?} is unknown"),
        ));
    }
    Ok(StatusCode::OK.into_response())
}

/// Creates the `initial_management` token and the built-in records once this server leads.
pub async fn initialize(s: &AppState) {
    if !s.acl.enabled() {
        return;
    }
    // A secondary datacenter gets its management tokens from the primary, by replication.
    let initial = if s.acl.config.is_secondary(&s.config.datacenter) {
        String::new()
    } else {
        s.acl.config.tokens.initial_management.clone()
    };
    let (needs_init, needs_token) = {
        let db = s.reader.store().read();
        (
            !db.acl.policies.contains_key(GLOBAL_MANAGEMENT_ID),
            !initial.is_empty() && db.acl.token_by_secret(&initial).is_none(),
        )
    };
    if needs_init {
        let _ = s.writer.apply(Command::Acl(AclCommand::Init)).await;
    }
    if needs_token {
        let token = Token {
            accessor_id: uuid(),
            secret_id: initial,
            description: "Initial Management Token".to_string(),
            create_time: rfc3339(now_ms()),
            ..Token::default()
        };
        let _ = s
            .writer
            .apply(Command::Acl(AclCommand::Bootstrap { token, force: true }))
            .await;
    }
}
