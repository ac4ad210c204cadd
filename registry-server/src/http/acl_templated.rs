//! `/v1/acl/templated-policies`, `/v1/acl/templated-policy/name/:name` and
//! `/v1/acl/templated-policy/preview/:name`: the built-in templates (`acl::templated`) and the
//! synthetic policy one renders to for given variables. All need `acl:read`.

// Handlers return their refusal as the finished response; boxing it gains nothing here.
#![allow(clippy::result_large_err)]

use super::acl::{authorize, bad, body_json, err, field, fstr, strings, Res};
use super::acl_guard::RequestToken;
use super::acl_shapes::policy_json;
use super::AppState;
use crate::acl::templated::{self, Builtin, BUILTINS};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_proto::acl::rules::Access;
use registry_proto::acl::TemplatedPolicy;
use serde_json::{json, Map, Value};

fn builtin_json(b: &Builtin) -> Value {
    json!({
        "TemplateName": b.name,
        "Schema": b.schema(),
        "Template": b.template,
        "Description": b.description,
    })
}

fn find(name: &str) -> Result<&'static Builtin, Response> {
    let name = name.trim_start_matches('/');
    templated::find(name).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            format!("Invalid templated policy Name: {name}"),
        )
    })
}

/// `GET /v1/acl/templated-policies`: every template, keyed by name.
pub(crate) async fn list(State(s): State<AppState>, tok: RequestToken) -> Res {
    authorize(&s, &tok, Access::Read)?;
    let map: Map<String, Value> = BUILTINS
        .iter()
        .map(|b| (b.name.to_string(), builtin_json(b)))
        .collect();
    Ok(Json(Value::Object(map)).into_response())
}

/// `GET /v1/acl/templated-policy/name/:name`.
pub(crate) async fn read(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
) -> Res {
    authorize(&s, &tok, Access::Read)?;
    Ok(Json(builtin_json(find(&name)?)).into_response())
}

/// `POST /v1/acl/templated-policy/preview/:name`: the body is the template's variables
/// (`{"Name": "api"}`); the answer is the synthetic policy they render to.
pub(crate) async fn preview(
    State(s): State<AppState>,
    tok: RequestToken,
    Path(name): Path<String>,
    body: Bytes,
) -> Res {
    authorize(&s, &tok, Access::Read)?;
    let b = find(&name)?;
    let v = body_json(&body)?;
    let vars = field(&v, "TemplateVariables").unwrap_or(&v);
    let tp = TemplatedPolicy {
        template_name: b.name.to_string(),
        name: fstr(vars, "Name"),
        datacenters: strings(field(&v, "Datacenters")),
    };
    templated::validate(&tp).map_err(bad)?;
    let p = templated::synthetic_policy(&tp).ok_or_else(|| bad("unknown template"))?;
    Ok(Json(policy_json(&p, false)).into_response())
}
