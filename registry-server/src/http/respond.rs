//! The single place where results and errors become HTTP responses: Consul's `X-Consul-*`
//! headers on every read, compact JSON (indented with `?pretty`), plain-text error bodies.

use crate::query::options::Consistency;
use crate::query::QueryMeta;
use crate::ServerError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub ServerError);

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        ApiError(e)
    }
}

impl From<registry_proto::ProtoError> for ApiError {
    fn from(e: registry_proto::ProtoError) -> Self {
        ApiError(ServerError::Proto(e))
    }
}

impl ApiError {
    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError(ServerError::BadRequest(msg.into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ServerError::BadRequest(_) | ServerError::Proto(_) => StatusCode::BAD_REQUEST,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        let mut resp = (status, self.0.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// Result type of handlers.
pub type ApiResult = Result<Response, ApiError>;

/// Adds the `X-Consul-*` read headers.
pub fn add_meta(headers: &mut HeaderMap, meta: &QueryMeta) {
    headers.insert("X-Consul-Index", HeaderValue::from(meta.index.max(1)));
    headers.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
    );
    headers.insert(
        "X-Consul-LastContact",
        HeaderValue::from(meta.last_contact_ms),
    );
    headers.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(match meta.consistency {
            Consistency::Default => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }),
    );
    headers.insert(
        "X-Consul-Query-Backend",
        HeaderValue::from_static("blocking-query"),
    );
}

/// Serializes `value` as JSON (indented when `pretty`).
pub fn json_bytes<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<Vec<u8>, ApiError> {
    let r = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    r.map_err(|e| ApiError(ServerError::Internal(format!("encoding response: {e}"))))
}

/// A JSON response, with read headers when `meta` is given.
pub fn json<T: Serialize + ?Sized>(value: &T, meta: Option<&QueryMeta>, pretty: bool) -> ApiResult {
    let body = json_bytes(value, pretty)?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(m) = meta {
        add_meta(h, m);
    }
    Ok(resp)
}

/// An empty response with a status and read headers (a missing KV key's 404).
pub fn empty(status: StatusCode, meta: &QueryMeta) -> ApiResult {
    let mut resp = status.into_response();
    add_meta(resp.headers_mut(), meta);
    Ok(resp)
}
