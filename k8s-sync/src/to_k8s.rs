//! `-to-k8s`: catalog services become ExternalName Services `<name>.service.<domain>` in
//! `-k8s-write-namespace`. It follows the catalog through blocking queries on
//! `/v1/catalog/services` (via [`crate::registry`]), skips services carrying k8s-sync's own tag
//! (they came from Kubernetes), and only ever updates or deletes Services labelled as its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Api;
use tokio::sync::watch;

use crate::registry::Registry;
use crate::translate::annotations::SERVICE_SYNC;

/// Label (key, value) on every Service this direction creates.
pub const OWN_LABEL: (&str, &str) = ("consul", "true");

/// Settings of the loop.
pub struct ToK8s {
    /// Registry client.
    pub registry: Registry,
    /// Kubernetes client.
    pub client: kube::Client,
    /// `-k8s-write-namespace`.
    pub namespace: String,
    /// `-k8s-service-prefix`.
    pub prefix: String,
    /// `-consul-domain`.
    pub domain: String,
    /// `-consul-k8s-tag` (services with it are not mirrored back).
    pub tag: String,
}

/// A DNS-1035 label from `s`: lowercase letters, digits and '-', starting with a letter,
/// not ending with '-', at most 63 characters. `None` if nothing valid is left.
pub fn dns1035(s: &str) -> Option<String> {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut out: String = trimmed.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    (!out.is_empty()).then_some(out)
}

/// Desired Services (name → externalName) for the catalog's services (name → tags).
pub fn desired(
    catalog: &BTreeMap<String, Vec<String>>,
    prefix: &str,
    domain: &str,
    tag: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, tags) in catalog {
        if tags.iter().any(|t| t == tag) {
            continue;
        }
        match dns1035(&format!("{prefix}{name}")) {
            Some(k8s) => {
                out.insert(k8s, format!("{name}.service.{domain}").to_lowercase());
            }
            None => {
                tracing::warn!(service = %name, "no valid Kubernetes Service name can be made from it; skipped")
            }
        }
    }
    out
}

fn owned(s: &Service) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(OWN_LABEL.0))
        .map(String::as_str)
        == Some(OWN_LABEL.1)
}

impl ToK8s {
    fn service(&self, name: &str, external: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.namespace.clone()),
                labels: Some([(OWN_LABEL.0.to_string(), OWN_LABEL.1.to_string())].into()),
                annotations: Some([(SERVICE_SYNC.to_string(), "false".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(external.to_string()),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    async fn reconcile(
        &self,
        api: &Api<Service>,
        store: &Store<Service>,
        want: &BTreeMap<String, String>,
        warned: &mut BTreeSet<String>,
    ) -> usize {
        let mut writes = 0;
        for (name, ext) in want {
            let res = match store.get(&ObjectRef::new(name).within(&self.namespace)) {
                None => api
                    .create(&PostParams::default(), &self.service(name, ext))
                    .await
                    .map(|_| true),
                Some(s) if owned(&s) => {
                    if s.spec.as_ref().and_then(|sp| sp.external_name.as_deref())
                        == Some(ext.as_str())
                    {
                        Ok(false)
                    } else {
                        let mut new = self.service(name, ext);
                        new.metadata.resource_version = s.metadata.resource_version.clone();
                        api.replace(name, &PostParams::default(), &new)
                            .await
                            .map(|_| true)
                    }
                }
                Some(_) => {
                    if warned.insert(name.clone()) {
                        tracing::warn!(service = %name, "a Kubernetes Service not created by k8s-sync has this name; left alone");
                    }
                    Ok(false)
                }
            };
            match res {
                Ok(true) => writes += 1,
                Ok(false) => {}
                Err(e) => {
                    metrics::counter!("k8s_sync_errors_total", "source" => "kubernetes", "kind" => "write").increment(1);
                    tracing::warn!(service = %name, error = %e, "writing a Kubernetes Service failed");
                }
            }
        }
        for s in store.state() {
            let name = s.metadata.name.clone().unwrap_or_default();
            if owned(&s) && !want.contains_key(&name) {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => writes += 1,
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(service = %name, error = %e, "deleting a Kubernetes Service failed")
                    }
                }
            }
        }
        metrics::gauge!("k8s_sync_synced_instances", "direction" => "to_k8s")
            .set(want.len() as f64);
        writes
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let changed = Arc::new(crate::source::Dirty::default());
        let (store, task) = crate::source::reflect(
            api.clone(),
            "services-write-namespace",
            changed.clone(),
            |_| None,
        );
        let (tx, mut rx) = watch::channel::<Option<BTreeMap<String, Vec<String>>>>(None);
        let reg = self.registry.clone();
        let poll = tokio::spawn(async move {
            let mut index = 0;
            let mut backoff = Duration::from_millis(200);
            loop {
                match reg.services_blocking(index, Duration::from_secs(60)).await {
                    Ok((map, idx)) => {
                        backoff = Duration::from_millis(200);
                        // An index that goes backwards (registry restored or restarted) restarts at 0.
                        index = if idx < index { 0 } else { idx };
                        tx.send_if_modified(|cur| {
                            let changed = cur.as_ref() != Some(&map);
                            *cur = Some(map);
                            changed
                        });
                        if tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog query failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
        tokio::select! {
            r = store.wait_until_ready() => if r.is_err() { return },
            _ = crate::status::stopped(&mut shutdown) => { poll.abort(); task.abort(); return },
        }
        let mut warned = BTreeSet::new();
        loop {
            let catalog = rx.borrow_and_update().clone();
            if let Some(catalog) = catalog {
                let want = desired(&catalog, &self.prefix, &self.domain, &self.tag);
                let n = self.reconcile(&api, &store, &want, &mut warned).await;
                if n > 0 {
                    tracing::info!(writes = n, "kubernetes services updated");
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = changed.notified() => { changed.take(); },
                _ = tokio::time::sleep(Duration::from_secs(30)) => {},
                _ = crate::status::stopped(&mut shutdown) => break,
            }
            // Coalesce bursts.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        poll.abort();
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        assert_eq!(dns1035("Web").unwrap(), "web");
        assert_eq!(dns1035("my_svc.v2").unwrap(), "my-svc-v2");
        assert_eq!(dns1035("1abc-").unwrap(), "abc");
        assert_eq!(dns1035("---"), None);
        assert_eq!(dns1035(&"a".repeat(80)).unwrap().len(), 63);
        let cat: BTreeMap<String, Vec<String>> = [
            ("Web".to_string(), vec![]),
            ("from-k8s".to_string(), vec!["k8s".to_string()]),
        ]
        .into();
        let d = desired(&cat, "", "consul", "k8s");
        assert_eq!(
            d,
            [("web".to_string(), "web.service.consul".to_string())].into()
        );
    }
}
