//! k8s-sync: keeps the registry's catalog in step with Kubernetes Services (and, behind
//! `-to-k8s`, catalog services in step with Kubernetes ExternalName Services).
//!
//! - [`translate`]: a Service + its EndpointSlices + Nodes → catalog instances (pure);
//! - [`plan`]: desired instances vs the catalog's copy of our node → writes (pure);
//! - [`registry`]: every registry HTTP call;
//! - [`source`]: kube-runtime watchers and caches; [`endpoints`]: core/v1 Endpoints read as
//!   EndpointSlices for old clusters; [`to_consul`], [`to_k8s`]: the loops;
//! - [`purge`]: `-purge-k8s-services-from-node`, the uninstall path;
//! - [`acl_init`], [`gossip_key`], [`federation_secret`]: the Helm chart's install Jobs
//!   (`acl-init`, `gossip-encryption-autogenerate`, `create-federation-secret`), which write
//!   [`secrets`];
//! - [`leader`]: Lease-based leader election; [`status`]: health, readiness, metrics;
//! - [`fake`]: the fake Kubernetes API server the tests (and `fake-apiserver`) run.
pub mod acl_init;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod fake;
pub mod federation_secret;
pub mod gossip_key;
pub mod leader;
pub mod plan;
pub mod purge;
pub mod registry;
pub mod secrets;
pub mod source;
pub mod status;
pub mod to_consul;
pub mod to_k8s;
pub mod translate;
