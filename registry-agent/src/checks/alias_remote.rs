//! Alias checks of another node on a client agent: the node's checks are read from the
//! servers' catalog through the agent's forwarding to the servers, as blocking queries
//! (`GET /v1/health/node/:node?stale&index&wait`), so a change of the target reaches the
//! alias check as soon as the server the query waits on applies it. Whether the aliased
//! service exists (asked only when none of its checks was seen) is one more, non-blocking
//! read of `/v1/catalog/node/:node`.

use super::alias::NodeView;
use axum::body::Body;
use axum::http::Request;
use registry_proto::model::HealthCheck;
use registry_server::http::ForwardApi;
use serde_json::Value;
use std::time::Duration;

/// Largest answer read (a node's checks, or its services).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Path segment escaping for a node name.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path` through `fwd`: the JSON body and `X-Consul-Index`.
async fn get(fwd: &dyn ForwardApi, path: &str) -> Result<(Value, u64), String> {
    let req = Request::builder()
        .method("GET")
        .uri(path)
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = fwd.forward(req).await;
    let status = resp.status();
    let index = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let body = axum::body::to_bytes(resp.into_body(), MAX_BODY)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let v = serde_json::from_slice(&body).map_err(|e| format!("undecodable answer: {e}"))?;
    Ok((v, index))
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// The checks of `node` once the catalog's index passes `min_index` (or after `wait`), and
/// whether it has service `service`.
pub(crate) async fn node_checks(
    fwd: &dyn ForwardApi,
    node: &str,
    service: &str,
    min_index: u64,
    wait: Duration,
) -> Result<NodeView, String> {
    let node_path = escape(node);
    let path = format!(
        "/v1/health/node/{node_path}?stale&index={min_index}&wait={}ms",
        wait.as_millis()
    );
    let (v, index) = get(fwd, &path).await?;
    let checks: Vec<HealthCheck> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| HealthCheck {
                    node: text(c, "Node"),
                    check_id: text(c, "CheckID"),
                    name: text(c, "Name"),
                    status: text(c, "Status"),
                    output: text(c, "Output"),
                    service_id: text(c, "ServiceID"),
                    service_name: text(c, "ServiceName"),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default();
    let seen = !service.is_empty() && checks.iter().any(|c| c.service_id == service);
    let service_exists = if seen || service.is_empty() {
        seen
    } else {
        let (n, _) = get(fwd, &format!("/v1/catalog/node/{node_path}?stale")).await?;
        n["Services"].get(service).is_some()
    };
    Ok(NodeView {
        index,
        checks,
        service_exists,
    })
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn node_names_are_escaped() {
        assert_eq!(escape("client-1.dc_1"), "client-1.dc_1");
        assert_eq!(escape("a b/c?"), "a%20b%2Fc%3F");
    }
}
