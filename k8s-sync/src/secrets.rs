//! The Kubernetes Secrets the install Jobs write (`acl-init`, `gossip-encryption-autogenerate`):
//! read one key of a Secret, and create or replace an Opaque Secret with labels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

use crate::config::parse_go_bool;
use crate::error::Result;

/// The flags every install Job takes besides its own.
#[derive(Debug, Clone, clap::Args)]
pub struct JobFlags {
    /// Labels of the Secrets written, `k=v,k2=v2`.
    #[arg(long = "labels", default_value = "")]
    pub labels: String,
    /// Path of a kubeconfig; default: KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// Log level.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Log as JSON.
    #[arg(long = "log-json", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub log_json: bool,
}

/// The Secrets of one namespace, labelled as this release's.
#[derive(Clone)]
pub struct Secrets {
    api: Api<Secret>,
    labels: BTreeMap<String, String>,
}

impl Secrets {
    /// Secrets in `namespace`; every Secret written carries `labels`.
    pub fn new(client: kube::Client, namespace: &str, labels: BTreeMap<String, String>) -> Self {
        Secrets {
            api: Api::namespaced(client, namespace),
            labels,
        }
    }

    /// The value of `key` in Secret `name` (UTF-8), `None` when the Secret or the key does not
    /// exist.
    pub async fn get(&self, name: &str, key: &str) -> Result<Option<String>> {
        let Some(s) = self.api.get_opt(name).await? else {
            return Ok(None);
        };
        Ok(s.data
            .and_then(|d| d.get(key).cloned())
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .or_else(|| s.string_data.and_then(|d| d.get(key).cloned())))
    }

    /// Writes Secret `name` holding `key: value`: created, or replaced when it exists.
    pub async fn put(&self, name: &str, key: &str, value: &str) -> Result<()> {
        self.put_all(name, &[(key.to_string(), value.to_string())])
            .await
    }

    /// Writes Secret `name` holding every `(key, value)`: created, or replaced when it exists.
    pub async fn put_all(&self, name: &str, data: &[(String, String)]) -> Result<()> {
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(self.labels.clone()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        match self.api.get_opt(name).await? {
            Some(existing) => {
                secret.metadata.resource_version = existing.metadata.resource_version;
                self.api
                    .replace(name, &PostParams::default(), &secret)
                    .await?;
            }
            None => {
                self.api.create(&PostParams::default(), &secret).await?;
            }
        }
        Ok(())
    }

    /// Creates Secret `name` with `key: value` unless it exists; true when it was created.
    pub async fn create_if_absent(&self, name: &str, key: &str, value: &str) -> Result<bool> {
        if self.api.get_opt(name).await?.is_some() {
            return Ok(false);
        }
        self.put(name, key, value).await?;
        Ok(true)
    }
}

/// Parses `k=v,k2=v2` (the `-labels` flag of the install Jobs).
pub fn parse_labels(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("label {part:?} is not key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}
