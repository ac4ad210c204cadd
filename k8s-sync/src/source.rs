//! The Kubernetes side of the sync: one kube-runtime watcher + reflector per watched kind
//! (Services, EndpointSlices, Nodes), their caches, and [`Dirty`]: which Services changed since
//! the reconcile loop last looked (a Service event marks that Service, an EndpointSlice event
//! the Service it belongs to; a Node event or a completed relist marks everything). Relists
//! (after a `410 Gone` or a dropped watch) swap a cache only once the new list is complete, so
//! a relist never looks like a mass deletion.

use std::collections::HashSet;
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

use crate::translate::{NodeLookup, SERVICE_NAME_LABEL};

/// A Service's identity: (namespace, name).
pub type Key = (String, String);

/// What changed in the caches since [`Dirty::take`] was last called.
#[derive(Debug, Default)]
pub struct Changes {
    /// Every Service must be re-translated (a Node changed, or a cache was relisted).
    pub all: bool,
    /// The Services whose Service object or EndpointSlices changed.
    pub services: HashSet<Key>,
}

/// The set of changed Services, shared by the watchers (writers) and the reconcile loop,
/// plus a wake-up for the loop.
#[derive(Default)]
pub struct Dirty {
    changes: parking_lot::Mutex<Changes>,
    notify: Notify,
}

impl Dirty {
    /// Marks one Service changed.
    pub fn mark(&self, key: Key) {
        self.changes.lock().services.insert(key);
        self.notify.notify_one();
    }

    /// Marks every Service changed.
    pub fn mark_all(&self) {
        self.changes.lock().all = true;
        self.notify.notify_one();
    }

    /// Takes the changes collected so far.
    pub fn take(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock())
    }

    /// Waits for the next mark.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// Which Service an object's change affects: `None` means every Service.
pub type KeyOf<K> = fn(&K) -> Option<Key>;

fn service_key(s: &Service) -> Option<Key> {
    Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?))
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_key(s: &EndpointSlice) -> Option<Key> {
    let name = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((s.metadata.namespace.clone()?, name.clone()))
}

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

/// Starts a watcher + reflector for `api`; every cache change is marked in `dirty`, for the
/// Service `key_of` names (everything when it names none, and after a relist).
pub fn reflect<K>(
    api: Api<K>,
    kind: &'static str,
    dirty: Arc<Dirty>,
    key_of: KeyOf<K>,
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
                Ok(watcher::Event::InitDone) => dirty.mark_all(),
                Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => {
                    metrics::counter!("k8s_sync_k8s_events_total", "kind" => kind).increment(1);
                    match key_of(&obj) {
                        Some(key) => dirty.mark(key),
                        None => dirty.mark_all(),
                    }
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

/// Watches Services, EndpointSlices (core/v1 Endpoints when `slices` is false) and Nodes in
/// the whole cluster.
pub fn start(client: &Client, dirty: Arc<Dirty>, slices: bool) -> (Caches, Vec<JoinHandle<()>>) {
    let (services, a) = reflect(
        Api::<Service>::all(client.clone()),
        "services",
        dirty.clone(),
        service_key,
    );
    let (slices, b) = if slices {
        reflect(
            Api::<EndpointSlice>::all(client.clone()),
            "endpointslices",
            dirty.clone(),
            slice_key,
        )
    } else {
        crate::endpoints::reflect(Api::all(client.clone()), dirty.clone())
    };
    let (nodes, c) = reflect(Api::<Node>::all(client.clone()), "nodes", dirty, |_| None);
    (
        Caches {
            services,
            slices,
            nodes,
        },
        vec![a, b, c],
    )
}
