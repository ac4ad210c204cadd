//! Types shared by every crate of the registry.
//!
//! - [`model`]: the catalog and KV records as the state store keeps them.
//! - [`command`]: the commands stored in the Raft log; the only way state changes.
//! - [`error`]: this crate's error type.

pub mod command;
pub mod error;
pub mod model;

pub use command::{Command, CommandResponse};
pub use error::ProtoError;
