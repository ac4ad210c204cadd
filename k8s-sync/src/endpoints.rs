//! Core/v1 `Endpoints` for clusters that do not serve EndpointSlices
//! (`-use-endpoint-slices=false`): a watcher on Endpoints whose objects are converted into
//! the EndpointSlices the rest of k8s-sync reads, one per subset, so translation, the cache
//! and the reconcile stay the same. Ready addresses become ready endpoints and
//! `notReadyAddresses` not-ready ones (registered with a critical readiness check, as for
//! EndpointSlices); Endpoints carry no zone, so instances have no zone meta.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::task::JoinHandle;

use crate::source::{Dirty, Key};
use crate::translate::SERVICE_NAME_LABEL;

fn slice_name(name: &str, i: usize) -> String {
    format!("{name}-endpoints-{i}")
}

fn endpoint(a: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: None,
        }),
        hostname: a.hostname.clone(),
        node_name: a.node_name.clone(),
        target_ref: a.target_ref.clone(),
        ..Endpoint::default()
    }
}

/// The EndpointSlices an Endpoints object stands for: one per subset, labelled with the
/// Service's name (the Endpoints' own name), ports in the subset's order.
pub fn to_slices(ep: &Endpoints) -> Vec<EndpointSlice> {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), name.clone())]);
    ep.subsets
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for a in s.addresses.as_deref().unwrap_or_default() {
                endpoints.push(endpoint(a, true));
            }
            for a in s.not_ready_addresses.as_deref().unwrap_or_default() {
                endpoints.push(endpoint(a, false));
            }
            let v6 = endpoints
                .first()
                .is_some_and(|e| e.addresses.iter().any(|a| a.contains(':')));
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name(&name, i)),
                    namespace: ep.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    resource_version: ep.metadata.resource_version.clone(),
                    ..ObjectMeta::default()
                },
                address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
                endpoints,
                ports: s.ports.as_ref().map(|ps| {
                    ps.iter()
                        .map(|p| EndpointPort {
                            name: p.name.clone(),
                            port: Some(p.port),
                            protocol: p.protocol.clone(),
                            app_protocol: p.app_protocol.clone(),
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

fn key(ep: &Endpoints) -> Key {
    (
        ep.metadata.namespace.clone().unwrap_or_default(),
        ep.metadata.name.clone().unwrap_or_default(),
    )
}

fn tombstone(key: &Key, i: usize) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(&key.1, i)),
            namespace: Some(key.0.clone()),
            ..ObjectMeta::default()
        },
        ..EndpointSlice::default()
    }
}

/// Watches Endpoints in the whole cluster into a cache of the EndpointSlices they convert to.
pub fn reflect(api: Api<Endpoints>, dirty: Arc<Dirty>) -> (Store<EndpointSlice>, JoinHandle<()>) {
    let (reader, mut writer) = reflector::store::<EndpointSlice>();
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        // How many slices each Endpoints has in the cache (and in the list being built).
        let mut counts: HashMap<Key, usize> = HashMap::new();
        let mut listing: HashMap<Key, usize> = HashMap::new();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    metrics::counter!("k8s_sync_errors_total", "source" => "kubernetes", "kind" => "endpoints")
                        .increment(1);
                    tracing::warn!(error = %e, "endpoints watch error; retrying with backoff, cache kept");
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => {
                    metrics::counter!("k8s_sync_k8s_relists_total", "kind" => "endpoints")
                        .increment(1);
                    listing.clear();
                    writer.apply_watcher_event(&watcher::Event::Init);
                }
                watcher::Event::InitApply(ep) => {
                    let slices = to_slices(&ep);
                    listing.insert(key(&ep), slices.len());
                    for s in slices {
                        writer.apply_watcher_event(&watcher::Event::InitApply(s));
                    }
                }
                watcher::Event::InitDone => {
                    counts = std::mem::take(&mut listing);
                    writer.apply_watcher_event(&watcher::Event::InitDone);
                    dirty.mark_all();
                }
                watcher::Event::Apply(ep) => {
                    metrics::counter!("k8s_sync_k8s_events_total", "kind" => "endpoints")
                        .increment(1);
                    let k = key(&ep);
                    let slices = to_slices(&ep);
                    let before = counts.insert(k.clone(), slices.len()).unwrap_or(0);
                    for i in slices.len()..before {
                        writer.apply_watcher_event(&watcher::Event::Delete(tombstone(&k, i)));
                    }
                    for s in slices {
                        writer.apply_watcher_event(&watcher::Event::Apply(s));
                    }
                    dirty.mark(k);
                }
                watcher::Event::Delete(ep) => {
                    metrics::counter!("k8s_sync_k8s_events_total", "kind" => "endpoints")
                        .increment(1);
                    let k = key(&ep);
                    let before = counts.remove(&k).unwrap_or(0).max(to_slices(&ep).len());
                    for i in 0..before {
                        writer.apply_watcher_event(&watcher::Event::Delete(tombstone(&k, i)));
                    }
                    dirty.mark(k);
                }
            }
        }
    });
    (reader, task)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subsets_become_slices_with_readiness() {
        let ep: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "ns"},
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1",
                            "targetRef": {"kind": "Pod", "name": "web-a"}}],
             "notReadyAddresses": [{"ip": "10.0.0.2"}],
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 9090}]}
        ]}))
        .unwrap();
        let s = to_slices(&ep);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].metadata.name.as_deref(), Some("web-endpoints-0"));
        assert_eq!(
            s[0].metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL],
            "web"
        );
        let ready: Vec<_> = s[0]
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].as_str(),
                    e.conditions.as_ref().unwrap().ready,
                )
            })
            .collect();
        assert_eq!(ready, [("10.0.0.1", Some(true)), ("10.0.0.2", Some(false))]);
        assert_eq!(s[0].endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(s[0].ports.as_ref().unwrap()[0].port, Some(8080));
        assert_eq!(s[1].ports.as_ref().unwrap()[0].port, Some(9090));
        assert_eq!(s[1].address_type, "IPv4");
        let empty: Endpoints =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert!(to_slices(&empty).is_empty());
    }
}
