//! Prepared query failover across the WAN: [`WanQueries`] runs a query in another datacenter
//! through [`Datacenters::run_in_datacenter`], the one path to other datacenters. It reads
//! that datacenter's `/v1/health/service/<service>` (with the query's token, else none, as
//! Consul runs a remote query with the token stored in it) and applies the query's filters
//! to the answer here, so the remote side needs nothing but its ordinary HTTP API.

use super::failover::RemoteQueryExecutor;
use super::tags_match;
use crate::rpc::api::{ApiRequest, Hop};
use crate::rpc::wan::Datacenters;
use axum::body::Bytes;
use futures::future::BoxFuture;
use registry_proto::model::status;
use registry_proto::prepared_query::PreparedQuery;
use serde_json::Value;
use std::sync::Arc;

/// The failover executor of a server that has a WAN pool.
#[derive(Debug, Clone)]
pub struct WanQueries(pub Arc<Datacenters>);

impl RemoteQueryExecutor for WanQueries {
    fn datacenters_by_rtt(&self) -> Vec<String> {
        self.0.by_distance()
    }

    fn execute_in<'a>(
        &'a self,
        dc: &'a str,
        query: &'a PreparedQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Value>, String>> {
        Box::pin(async move {
            let mut headers = Vec::new();
            if !query.token.is_empty() {
                headers.push((
                    "x-consul-token".to_string(),
                    Bytes::from(query.token.clone()),
                ));
            }
            let req = ApiRequest {
                hop: Hop::Client,
                method: "GET".into(),
                uri: format!(
                    "/v1/health/service/{}",
                    form_urlencoded::byte_serialize(query.service.service.as_bytes())
                        .collect::<String>()
                ),
                headers,
                body: Bytes::new(),
            };
            let reply = self
                .0
                .run_in_datacenter(dc, req)
                .await
                .map_err(|e| e.to_string())?;
            if reply.status != 200 {
                return Err(format!(
                    "{dc} answered {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ));
            }
            let entries: Vec<Value> =
                serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
            let mut out: Vec<Value> = entries.into_iter().filter(|e| keep(query, e)).collect();
            if limit > 0 {
                out.truncate(limit);
            }
            Ok(out)
        })
    }
}

/// [`super::select`]'s filters over one `{Node, Service, Checks}` entry of another
/// datacenter's health endpoint.
fn keep(q: &PreparedQuery, entry: &Value) -> bool {
    let svc = &q.service;
    let node = &entry["Node"];
    let service = &entry["Service"];
    let meta_ok = |have: &Value, want: &Option<std::collections::BTreeMap<String, String>>| {
        want.as_ref().is_none_or(|want| {
            want.iter()
                .all(|(k, v)| have.get(k).and_then(Value::as_str) == Some(v.as_str()))
        })
    };
    if !meta_ok(&node["Meta"], &svc.node_meta) || !meta_ok(&service["Meta"], &svc.service_meta) {
        return false;
    }
    let tags: Vec<String> = service["Tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !tags_match(&tags, svc.tags.as_deref().unwrap_or(&[])) {
        return false;
    }
    if svc.connect.enabled && service["Kind"].as_str() != Some("connect-proxy") {
        return false;
    }
    let ignore: &[String] = svc.ignore_check_ids.as_deref().unwrap_or(&[]);
    entry["Checks"].as_array().is_none_or(|checks| {
        checks.iter().all(|c| {
            let id = c["CheckID"].as_str().unwrap_or_default();
            let st = c["Status"].as_str().unwrap_or_default();
            ignore.iter().any(|i| i == id)
                || st == status::PASSING
                || (st == status::WARNING && !svc.only_passing)
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(tags: &[&str], checks: &[(&str, &str)]) -> Value {
        json!({
            "Node": {"Node": "n1", "Meta": {"rack": "a"}},
            "Service": {"ID": "web", "Service": "web", "Tags": tags, "Meta": {"v": "2"}},
            "Checks": checks.iter().map(|(id, st)| json!({"CheckID": id, "Status": st})).collect::<Vec<_>>(),
        })
    }

    fn query(v: Value) -> PreparedQuery {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn remote_entries_are_filtered_as_local_ones() {
        let q = query(json!({"Service": {"Service": "web", "Tags": ["prod", "!canary"]}}));
        assert!(keep(&q, &entry(&["prod"], &[("serfHealth", "passing")])));
        assert!(!keep(&q, &entry(&["prod", "canary"], &[])));
        assert!(!keep(&q, &entry(&["dev"], &[])));
        assert!(keep(&q, &entry(&["prod"], &[("c", "warning")])));
        assert!(!keep(&q, &entry(&["prod"], &[("c", "critical")])));

        let q = query(json!({"Service": {"Service": "web", "OnlyPassing": true,
            "IgnoreCheckIDs": ["flaky"], "NodeMeta": {"rack": "a"}, "ServiceMeta": {"v": "2"}}}));
        assert!(!keep(&q, &entry(&[], &[("c", "warning")])));
        assert!(keep(
            &q,
            &entry(&[], &[("flaky", "critical"), ("c", "passing")])
        ));
        let q = query(json!({"Service": {"Service": "web", "NodeMeta": {"rack": "b"}}}));
        assert!(!keep(&q, &entry(&[], &[])));
    }
}
