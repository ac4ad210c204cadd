//! The service-mesh views of the catalog that plain-service clients still call:
//! `/v1/catalog/connect/:service`, `/v1/health/connect/:service`,
//! `/v1/health/ingress/:service` and `/v1/catalog/gateway-services/:gateway`. Without a
//! service mesh no instance is Connect-capable and no gateway fronts a service, so they answer
//! an empty list, as Consul does for a service without proxies, as blocking queries on the
//! service name.
//!
//! Queries naming a cluster peer (`?peer=`) get the same empty answer: there is no peering.

use super::respond::{json_bytes, ApiResult};
use super::AppState;
use crate::state::WatchKey;
use axum::extract::{Path, RawQuery, State};

/// An empty list, as a blocking query on the service name `name`. Also the answer to a
/// `?peer=` query: no cluster peering exists, so no peer has instances.
pub(super) async fn empty(s: AppState, name: String, q: Option<String>) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let keys = [WatchKey::Service(name.clone())];
    let (body, meta) = s
        .reader
        .blocking(&opts, &keys, |db| {
            (
                json_bytes(&Vec::<()>::new(), opts.pretty),
                db.service_name_index(&name),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/catalog/connect/:service`.
pub(super) async fn catalog_connect(
    State(s): State<AppState>,
    Path(service): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    empty(s, service, q).await
}

/// `GET /v1/health/connect/:service` and `/v1/health/ingress/:service`.
pub(super) async fn health_connect(
    State(s): State<AppState>,
    Path(service): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    empty(s, service, q).await
}

/// `GET /v1/catalog/gateway-services/:gateway`.
pub(super) async fn gateway_services(
    State(s): State<AppState>,
    Path(gateway): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    empty(s, gateway, q).await
}
