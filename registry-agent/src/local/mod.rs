//! The agent's local state (Consul's `agent/local/state.go`): this node's identity, the
//! services and checks registered with this agent, and for each entry whether the catalog
//! already has it (`in_sync`) or must lose it (`deleted`).
//!
//! The agent is the source of truth for its node: the HTTP API and the check runners write
//! here, and anti-entropy (`crate::ae`) pushes the differences to the catalog. Every change
//! wakes anti-entropy through [`LocalState::trigger`]. A check whose *output* changes while
//! its status stays the same is not synced at once: the sync is deferred by up to
//! `check_update_interval` so that chatty checks do not write to Raft on every run.
//!
//! This module owns no tasks and does no I/O, except the short timer that ends an output
//! deferral.

mod inner;
mod node;
mod state;

pub(crate) use inner::{CheckEntry, Inner, ServiceEntry};
pub use node::{
    NodeInfo, CONSUL_SERVICE_ID, SERF_CHECK_ALIVE_OUTPUT, SERF_CHECK_ID, SERF_CHECK_NAME,
};
pub use state::{
    aggregated_status, LocalOptions, LocalState, NODE_MAINT_CHECK_ID, SERVICE_MAINT_PREFIX,
};
