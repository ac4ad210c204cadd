//! The query layer: the only API that `http/` and `dns/` use to read and write state.
//!
//! - [`options`]: Consul's common query parameters (`?index`, `?wait`, `?stale`, ...).
//! - [`blocking`]: consistency checks and the blocking-query loop over the state store.
//! - [`write`]: turns validated requests into Raft commands.

pub mod blocking;
pub mod options;
pub mod write;

pub use blocking::{QueryMeta, Reader};
pub use options::QueryOptions;
