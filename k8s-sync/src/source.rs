//! The Kubernetes side of the sync: one kube-runtime watcher + reflector per watched kind
//! (Services, EndpointSlices, Nodes), their caches, and a notification whenever any cache
//! changes. Relists (after a `410 Gone` or a dropped watch) swap a cache only once the new list
//! is complete, so a relist never looks like a mass deletion.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::translate::NodeLookup;

/// Read-only caches of the watched kinds.
#[derive(Clone)]
pub struct Caches {
    /// Services in every namespace.
    pub services: Store<Service>,
    /// EndpointSlices in every namespace.
    pub slices: Store<EndpointSlice>,
    /// Nodes.
    pub nodes: Store<Node>,
}

impl Caches {
    /// Waits until every cache holds its first complete list.
    pub async fn wait_until_ready(&self) -> bool {
        self.services.wait_until_ready().await.is_ok()
            && self.slices.wait_until_ready().await.is_ok()
            && self.nodes.wait_until_ready().await.is_ok()
    }
}

impl NodeLookup for Store<Node> {
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.get(&reflector::ObjectRef::new(name))
    }
}

/// Starts a watcher + reflector for `api`; `changed` is notified on every cache change.
pub fn reflect<K>(
    api: Api<K>,
    kind: &'static str,
    changed: Arc<Notify>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::Init) => {
                    metrics::counter!("k8s_sync_k8s_relists_total", "kind" => kind).increment(1);
                    tracing::debug!(kind, "listing");
                }
                Ok(_) => {
                    metrics::counter!("k8s_sync_k8s_events_total", "kind" => kind).increment(1);
                    changed.notify_one();
                }
                Err(e) => {
                    metrics::counter!("k8s_sync_errors_total", "source" => "kubernetes", "kind" => kind)
                        .increment(1);
                    tracing::warn!(kind, error = %e, "watch error; retrying with backoff, caches kept");
                }
            }
        }
    });
    (reader, task)
}

/// Watches Services, EndpointSlices and Nodes in the whole cluster.
pub fn start(client: &Client, changed: Arc<Notify>) -> (Caches, Vec<JoinHandle<()>>) {
    let (services, a) = reflect(
        Api::<Service>::all(client.clone()),
        "services",
        changed.clone(),
    );
    let (slices, b) = reflect(
        Api::<EndpointSlice>::all(client.clone()),
        "endpointslices",
        changed.clone(),
    );
    let (nodes, c) = reflect(Api::<Node>::all(client.clone()), "nodes", changed);
    (
        Caches {
            services,
            slices,
            nodes,
        },
        vec![a, b, c],
    )
}
