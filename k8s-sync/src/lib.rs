//! k8s-sync: keeps the registry's catalog in step with Kubernetes Services (and, behind
//! `-to-k8s`, catalog services in step with Kubernetes ExternalName Services).
//!
//! - [`translate`]: a Service + its EndpointSlices + Nodes → catalog instances (pure).
pub mod error;
pub mod translate;
