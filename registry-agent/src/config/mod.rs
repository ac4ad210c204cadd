//! Agent configuration: JSON and HCL files with Consul's keys, merged in order with the
//! command-line flags on top, validated into a [`RuntimeConfig`] and converted into the
//! server library's `ServerConfig`.
//!
//! Flow: [`source`] reads files (through [`hcl`] for HCL) -> [`schema`] checks keys and
//! normalises shapes -> [`partial`] reads typed optional values -> [`builder`] merges over
//! the defaults and validates -> [`server`] converts.

pub mod acl;
pub mod builder;
pub(crate) mod consul_keys;
pub mod duration;
pub mod environment;
pub mod error;
pub mod hcl;
pub mod limits;
pub mod partial;
pub mod reference;
pub mod runtime;
pub(crate) mod schema;
pub mod server;
pub mod source;
pub mod tls;

#[cfg(test)]
mod tests;

pub use builder::{build, Built};
pub use environment::{Environment, SystemEnvironment};
pub use error::ConfigError;
pub use partial::PartialConfig;
pub use runtime::{LogLevel, RuntimeConfig, Storage};
pub use server::to_server_config;
pub use source::Format;

use std::path::PathBuf;

/// Everything the `agent` command line says about configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-dev`.
    pub dev: bool,
    /// `-config-file` and `-config-dir` paths, in command-line order.
    pub paths: Vec<PathBuf>,
    /// `-config-format`: parse every file as this format.
    pub format: Option<Format>,
    /// Values from the other flags.
    pub flags: PartialConfig,
    /// `-hcl` fragments, applied after the flags (as in Consul).
    pub hcl: Vec<String>,
}

/// Reads the files, merges them with the flags and builds the runtime configuration.
pub fn load(opts: LoadOptions, env: &dyn Environment) -> Result<Built, ConfigError> {
    let (mut sources, files) = source::load_paths(&opts.paths, opts.format)?;
    sources.push(opts.flags);
    for (i, fragment) in opts.hcl.iter().enumerate() {
        sources.push(source::parse_source(
            fragment,
            Format::Hcl,
            &format!("-hcl fragment {}", i + 1),
        )?);
    }
    build(opts.dev, sources, files, env)
}
