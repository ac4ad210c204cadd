//! `/v1/acl/auth-method*`, `/v1/acl/binding-rule*`, `POST /v1/acl/login` and
//! `POST /v1/acl/logout`: JWT auth methods with static keys, the binding rules that turn a
//! verified bearer token's claims into a token's identities, roles and policies, and the login
//! tokens themselves. Every change is an ACL command through Raft, proposed by the leader
//! (these writes are forwarded to it whole, see `rpc::api::needs_leader`).

// Handlers return their refusal as the finished response; boxing it gains nothing here.
#![allow(clippy::result_large_err)]

use super::acl::{
    bad, create_body, delete_one, enabled, err, field, fstr, list_all, not_found, now_ms, propose,
    read_one, store_then, update_body, uuid, Res,
};
use super::acl_guard::RequestToken;
use super::acl_shapes::{auth_method_json, binding_rule_json, rfc3339, token_json};
use super::AppState;
use crate::acl::login::{self, JwtConfig};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_proto::acl::{AclCommand, AuthMethod, BindingRule, Link, Token, ANONYMOUS_SECRET};
use registry_proto::duration::format_go_duration;
use serde_json::{json, Value};
use std::time::Duration;

const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(86_400);

/// Builds an auth method from a request body, checking its configuration.
fn method_from(v: &Value, name: String) -> Result<AuthMethod, Response> {
    if name.is_empty() {
        return Err(bad("Invalid Auth Method: no Name is set"));
    }
    if name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad("Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"));
    }
    let method_type = fstr(v, "Type");
    match method_type.as_str() {
        "jwt" => {}
        "" => return Err(bad("Invalid Auth Method: Type is required")),
        other => {
            return Err(bad(format!(
                "Invalid Auth Method: Type should be one of: [jwt]; {other:?} is not supported here"
            )))
        }
    }
    let config = field(v, "Config").cloned().unwrap_or_else(|| json!({}));
    JwtConfig::parse(&config).map_err(bad)?;
    let ttl_text = match field(v, "MaxTokenTTL") {
        Some(Value::Number(n)) => {
            // Nanoseconds, as Go's encoding of a time.Duration.
            format_go_duration(Duration::from_nanos(n.as_u64().unwrap_or(0)))
        }
        _ => fstr(v, "MaxTokenTTL"),
    };
    let ttl = login::max_ttl(&ttl_text).map_err(bad)?;
    if let Some(d) = ttl {
        if !(MIN_TTL..=MAX_TTL).contains(&d) {
            return Err(bad(format!(
                "MaxTokenTTL {} should be between 1m0s and 24h0m0s",
                format_go_duration(d)
            )));
        }
    }
    let token_locality = fstr(v, "TokenLocality");
    if !matches!(token_locality.as_str(), "" | "local" | "global") {
        return Err(bad(format!(
            "Invalid Auth Method: TokenLocality should be one of 'local' or 'global', not {token_locality:?}"
        )));
    }
    Ok(AuthMethod {
        name,
        method_type,
        display_name: fstr(v, "DisplayName"),
        description: fstr(v, "Description"),
        max_token_ttl: ttl.map(format_go_duration).unwrap_or_default(),
        token_locality,
        config: config.to_string(),
        ..AuthMethod::default()
    })
}

async fn store_method(s: &AppState, m: AuthMethod) -> Res {
    let name = m.name.clone();
    store_then(s, AclCommand::AuthMethodSet(m), |db| {
        db.acl
            .auth_methods
            .get(&name)
            .map(|m| auth_method_json(m, false))
    })
    .await
}

/// `PUT /v1/acl/auth-method`.
pub(crate) async fn method_create(
    State(s): State<AppState>,
    tok: RequestToken,
    body: Bytes,
) -> Res {
    let v = create_body(&s, &tok, &body, "auth method")?;
    let m = method_from(&v, fstr(&v, "Name"))?;
    store_method(&s, m).await
}

/// `GET /v1/acl/auth-method/:name`.
pub(crate) async fn method_read(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
) -> Res {
    read_one(&s, &tok, |db| {
        db.acl
            .auth_methods
            .get(&name)
            .map(|m| auth_method_json(m, false))
    })
}

/// `PUT /v1/acl/auth-method/:name`.
pub(crate) async fn method_update(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
    body: Bytes,
) -> Res {
    let mut old_type = String::new();
    let v = update_body(&s, &tok, &body, ("auth method", &name), |db| {
        db.acl.auth_methods.get(&name).is_some_and(|m| {
            old_type = m.method_type.clone();
            true
        })
    })?;
    let given = fstr(&v, "Name");
    if !given.is_empty() && given != name {
        return Err(bad("AuthMethod Name in URL and payload do not match"));
    }
    let mut v = v;
    if fstr(&v, "Type").is_empty() {
        v["Type"] = json!(old_type);
    }
    let m = method_from(&v, name)?;
    if m.method_type != old_type {
        return Err(bad("the Type field is immutable"));
    }
    store_method(&s, m).await
}

/// `DELETE /v1/acl/auth-method/:name`.
pub(crate) async fn method_delete(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
) -> Res {
    delete_one(&s, &tok, AclCommand::AuthMethodDelete { name }).await
}

/// `GET /v1/acl/auth-methods`.
pub(crate) async fn method_list(
    State(s): State<AppState>,
    tok: RequestToken,
    RawQuery(q): RawQuery,
) -> Res {
    list_all(&s, &tok, q.as_deref(), |db, _, _| {
        db.acl
            .auth_methods
            .values()
            .map(|m| auth_method_json(m, true))
            .collect()
    })
}

fn rule_from(s: &AppState, v: &Value, id: String) -> Result<BindingRule, Response> {
    let vars = field(v, "BindVars").unwrap_or(&Value::Null);
    let rule = BindingRule {
        id,
        description: fstr(v, "Description"),
        auth_method: fstr(v, "AuthMethod"),
        selector: fstr(v, "Selector"),
        bind_type: fstr(v, "BindType"),
        bind_name: fstr(v, "BindName"),
        bind_vars_name: fstr(vars, "Name"),
        ..BindingRule::default()
    };
    if rule.auth_method.is_empty() {
        return Err(bad("Invalid Binding Rule: no AuthMethod is set"));
    }
    if !s
        .reader
        .store()
        .read()
        .acl
        .auth_methods
        .contains_key(&rule.auth_method)
    {
        return Err(bad(format!(
            "Invalid Binding Rule: unknown AuthMethod {:?}",
            rule.auth_method
        )));
    }
    login::check_rule(&rule).map_err(bad)?;
    Ok(rule)
}

async fn store_rule(s: &AppState, r: BindingRule) -> Res {
    let id = r.id.clone();
    store_then(s, AclCommand::BindingRuleSet(r), |db| {
        db.acl.binding_rules.get(&id).map(binding_rule_json)
    })
    .await
}

/// `PUT /v1/acl/binding-rule`.
pub(crate) async fn rule_create(State(s): State<AppState>, tok: RequestToken, body: Bytes) -> Res {
    let v = create_body(&s, &tok, &body, "binding rule")?;
    let r = rule_from(&s, &v, uuid())?;
    store_rule(&s, r).await
}

/// `GET /v1/acl/binding-rule/:id`.
pub(crate) async fn rule_read(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    read_one(&s, &tok, |db| {
        db.acl.binding_rules.get(&id).map(binding_rule_json)
    })
}

/// `PUT /v1/acl/binding-rule/:id`.
pub(crate) async fn rule_update(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let mut old_method = String::new();
    let mut v = update_body(&s, &tok, &body, ("binding rule", &id), |db| {
        db.acl.binding_rules.get(&id).is_some_and(|r| {
            old_method = r.auth_method.clone();
            true
        })
    })?;
    match fstr(&v, "AuthMethod") {
        m if m.is_empty() => v["AuthMethod"] = json!(old_method),
        m if m != old_method => return Err(bad("the AuthMethod field is immutable")),
        _ => {}
    }
    let r = rule_from(&s, &v, id)?;
    store_rule(&s, r).await
}

/// `DELETE /v1/acl/binding-rule/:id`.
pub(crate) async fn rule_delete(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(id): Path<String>,
) -> Res {
    delete_one(&s, &tok, AclCommand::BindingRuleDelete { id }).await
}

/// `GET /v1/acl/binding-rules` with `?authmethod`.
pub(crate) async fn rule_list(
    State(s): State<AppState>,
    tok: RequestToken,
    RawQuery(q): RawQuery,
) -> Res {
    list_all(&s, &tok, q.as_deref(), |db, opts, _| {
        db.acl
            .binding_rules
            .values()
            .filter(|r| opts.get("authmethod").is_none_or(|m| r.auth_method == m))
            .map(binding_rule_json)
            .collect()
    })
}

fn denied(text: &str) -> Response {
    err(StatusCode::FORBIDDEN, format!("Permission denied: {text}"))
}

/// Links to the stored policies or roles named in `names`; names not found are skipped, as
/// Consul skips roles that do not exist.
fn links(names: &[String], find: impl Fn(&str) -> Option<(String, String)>) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    for n in names {
        if let Some((id, name)) = find(n) {
            if !out.iter().any(|l| l.id == id) {
                out.push(Link { id, name });
            }
        }
    }
    out
}

/// `POST /v1/acl/login`: `{"AuthMethod", "BearerToken", "Meta"}`.
pub(crate) async fn login(State(s): State<AppState>, body: Bytes) -> Res {
    enabled(&s)?;
    let v = super::acl::body_json(&body)?;
    let (method_name, bearer) = (fstr(&v, "AuthMethod"), fstr(&v, "BearerToken"));
    if method_name.is_empty() {
        return Err(bad("Missing auth method name"));
    }
    if bearer.is_empty() {
        return Err(bad("Missing bearer token"));
    }
    let (method, rules) = {
        let db = s.reader.store().read();
        let method = db
            .acl
            .auth_methods
            .get(&method_name)
            .cloned()
            .ok_or_else(not_found)?;
        let rules: Vec<BindingRule> = db
            .acl
            .binding_rules
            .values()
            .filter(|r| r.auth_method == method_name)
            .cloned()
            .collect();
        (method, rules)
    };
    let config: Value = serde_json::from_str(&method.config).unwrap_or_else(|_| json!({}));
    let cfg = JwtConfig::parse(&config).map_err(bad)?;
    let now = now_ms();
    let claims = cfg
        .verify(&bearer, (now / 1000) as i64)
        .map_err(|e| denied(&e))?;
    let attrs = cfg.map_claims(&claims);
    let refs: Vec<&BindingRule> = rules.iter().collect();
    let bindings = login::bind(&refs, &attrs, &s.config.datacenter).map_err(|e| denied(&e))?;
    if bindings.is_empty() {
        return Err(denied("no binding rule matched the token's claims"));
    }
    let mut description = "token created via login".to_string();
    if let Some(meta) = field(&v, "Meta").filter(|m| m.as_object().is_some_and(|o| !o.is_empty())) {
        description.push_str(&format!(": {meta}"));
    }
    let (policies, roles) = {
        let db = s.reader.store().read();
        (
            links(&bindings.policies, |n| {
                db.acl
                    .policy_by_name(n)
                    .map(|p| (p.id.clone(), p.name.clone()))
            }),
            links(&bindings.roles, |n| {
                db.acl
                    .role_by_name(n)
                    .map(|r| (r.id.clone(), r.name.clone()))
            }),
        )
    };
    let mut token = Token {
        accessor_id: uuid(),
        secret_id: uuid(),
        description,
        policies,
        roles,
        service_identities: bindings.service_identities,
        node_identities: bindings.node_identities,
        templated_policies: bindings.templated_policies,
        local: method.token_locality != "global",
        create_time: rfc3339(now),
        auth_method: method.name.clone(),
        ..Token::default()
    };
    if let Ok(Some(ttl)) = login::max_ttl(&method.max_token_ttl) {
        token.expiration_unix_ms = now + ttl.as_millis() as u64;
        token.expiration_time = rfc3339(token.expiration_unix_ms);
        token.expiration_ttl = method.max_token_ttl.clone();
    }
    let accessor = token.accessor_id.clone();
    store_then(&s, AclCommand::TokenSet(token), |db| {
        db.acl.tokens.get(&accessor).map(|t| token_json(t, true))
    })
    .await
}

/// `POST /v1/acl/logout`: deletes the request's own token, if a login created it.
pub(crate) async fn logout(State(s): State<AppState>, tok: RequestToken) -> Res {
    enabled(&s)?;
    if tok.0.is_empty() || tok.0 == ANONYMOUS_SECRET {
        return Err(not_found());
    }
    let accessor = {
        let db = s.reader.store().read();
        let t = db.acl.token_by_secret(&tok.0).ok_or_else(not_found)?;
        if crate::acl::expired(t, now_ms()) {
            return Err(not_found());
        }
        if t.auth_method.is_empty() {
            return Err(denied("token wasn't created via login"));
        }
        t.accessor_id.clone()
    };
    propose(
        &s,
        AclCommand::TokenDelete {
            accessor_id: accessor,
        },
    )
    .await?;
    Ok(Json(true).into_response())
}
