//! Types shared by every crate of the registry.
//!
//! - [`acl`]: ACL tokens, policies, roles and the rules language.
//! - [`model`]: the catalog and KV records as the state store keeps them.
//! - [`command`]: the commands stored in the Raft log; the only way state changes.
//! - [`config_entry`]: config entries (`/v1/config`), their kinds and validation.
//! - [`prepared_query`]: prepared queries (`/v1/query`), their validation and templates.
//! - [`coordinate`]: Vivaldi network coordinates.
//! - [`error`]: this crate's error type.
//! - [`duration`]: Go duration strings and their serde form.
//! - [`lenient`]: Consul's case-insensitive, snake_case-tolerant request decoding.
//! - [`api`]: Consul's HTTP request and response shapes and their conversion to the model.
//! - [`filter`]: the go-bexpr `?filter=` expression language.

pub mod acl;
pub mod api;
pub mod command;
pub mod config_entry;
pub mod coordinate;
pub mod duration;
pub mod error;
pub mod filter;
pub mod lenient;
pub mod model;
pub mod prepared_query;

pub use command::{Command, CommandResponse};
pub use error::ProtoError;
