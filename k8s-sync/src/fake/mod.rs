//! A fake Kubernetes API server for tests, faithful to the list/watch protocol: a global
//! `resourceVersion`, list paging with `limit`/`continue`, watches that replay from a
//! resourceVersion, BOOKMARK events, watch timeouts, `410 Gone` delivered as an ERROR event
//! inside a 200 stream once history is compacted, and create/update/patch/delete of Services,
//! EndpointSlices, Endpoints, Nodes, Namespaces, Leases and Secrets, every object decoded into
//! and re-encoded from its k8s-openapi type. Discovery (`/api`, `/apis`, `/version`) is complete enough for the
//! real `kubectl` to `apply -f` and `delete` against it.
//!
//! Test knobs outside the Kubernetes API live under `/fake/`: `POST /fake/compact` (drop the
//! history; open watches get an in-stream 410), `POST /fake/bookmark`, `POST
//! /fake/fail?count=N&code=C` (the next N API requests fail), `GET /fake/requests`.

mod discovery;
mod http;
mod patch;
mod select;
mod store;
#[cfg(test)]
mod tests;

pub use http::router;
pub use patch::{merge_patch, strategic_merge};
pub use select::Selector;
pub use store::{status, Fake, FakeOptions};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One served resource type.
#[derive(Debug)]
pub struct Kind {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short: &'static [&'static str],
    /// Whether it has a `status` subresource.
    pub has_status: bool,
    /// Decodes into the k8s-openapi type and encodes back (schema check and normal form).
    pub normalize: fn(Value) -> Result<Value, String>,
}

impl Kind {
    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

fn typed<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

/// The resource types the fake serves.
pub static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short: &["svc"],
        has_status: true,
        normalize: typed::<k8s_openapi::api::core::v1::Service>,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short: &["no"],
        has_status: true,
        normalize: typed::<k8s_openapi::api::core::v1::Node>,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        has_status: true,
        normalize: typed::<k8s_openapi::api::core::v1::Namespace>,
    },
    Kind {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short: &[],
        has_status: false,
        normalize: typed::<k8s_openapi::api::discovery::v1::EndpointSlice>,
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short: &[],
        has_status: false,
        normalize: typed::<k8s_openapi::api::coordination::v1::Lease>,
    },
    // Appended last: the indices above are used by position.
    Kind {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short: &["ep"],
        has_status: false,
        normalize: typed::<k8s_openapi::api::core::v1::Endpoints>,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short: &[],
        has_status: false,
        normalize: typed::<k8s_openapi::api::core::v1::Secret>,
    },
];

/// The kind served at `group`/`version`/`plural`.
pub fn kind_index(group: &str, version: &str, plural: &str) -> Option<usize> {
    KINDS
        .iter()
        .position(|k| k.group == group && k.version == version && k.plural == plural)
}
