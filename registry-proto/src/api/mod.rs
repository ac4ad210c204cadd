//! Consul's HTTP API request and response shapes.
//!
//! This module owns the wire forms of the catalog, health, agent and KV endpoints and their
//! conversion to and from [`crate::model`]:
//!
//! - [`agent`]: service/check registration bodies, check updates, and the runnable
//!   [`CheckSpec`] built from them.
//! - [`autopilot`]: the autopilot state report.
//! - [`catalog`]: catalog register/deregister bodies, converted into Raft commands.
//! - [`output`]: response bodies in Consul's exact field names and order.
//! - [`validate`]: shared validation rules with Consul's error texts.
//!
//! Request types implement [`crate::lenient::Lenient`]: decode them with
//! `AgentServiceRegistration::decode(body)`, which accepts any key casing and snake_case.

pub mod agent;
pub mod autopilot;
pub mod catalog;
pub mod output;
pub mod validate;

pub use agent::{
    AgentCheckRegistration, AgentServiceCheck, AgentServiceRegistration, CheckKind, CheckSpec,
    CheckUpdate, ServiceAddressIn, WeightsIn,
};
pub use catalog::{
    CatalogCheck, CatalogDeregisterRequest, CatalogRegisterRequest, CatalogService,
    CheckDefinitionIn,
};
pub use output::{
    AgentCheckOut, AgentServiceOut, CatalogNodeOut, CheckDefinitionOut, CheckServiceNode,
    HealthCheckOut, KvPairOut, NodeOut, NodeServiceOut, NodeServicesOut, ServiceNode,
};

#[cfg(test)]
mod tests;
